/* Logging (see log.h). */

#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "log.h"

int log_verbose;

static const char *program = "tessera";
static int use_syslog;
static __thread char thread_name[16];
static const struct log_debug_flag *debug_flags;

void
log_init (const char *prog)
{
  program = prog;
}

void
log_use_syslog (void)
{
  openlog (program, LOG_PID, LOG_DAEMON);
  use_syslog = 1;
}

void
log_set_thread_name (const char *name)
{
  snprintf (thread_name, sizeof thread_name, "%s", name);
}

static const char *
level_name (enum log_level level)
{
  switch (level) {
  case LOG_LEVEL_ERROR:
    return "error";
  case LOG_LEVEL_WARN:
    return "warning";
  case LOG_LEVEL_INFO:
    return "info";
  case LOG_LEVEL_DEBUG:
    return "debug";
  }
  return "?";
}

static int
syslog_priority (enum log_level level)
{
  switch (level) {
  case LOG_LEVEL_ERROR:
    return LOG_ERR;
  case LOG_LEVEL_WARN:
    return LOG_WARNING;
  case LOG_LEVEL_INFO:
    return LOG_INFO;
  case LOG_LEVEL_DEBUG:
    return LOG_DEBUG;
  }
  return LOG_ERR;
}

void
log_msg (enum log_level level, const char *fmt, ...)
{
  int saved_errno = errno;
  va_list ap;

  va_start (ap, fmt);
  if (use_syslog)
    vsyslog (syslog_priority (level), fmt, ap);
  else {
    flockfile (stderr);
    if (thread_name[0])
      fprintf (stderr, "%s[%s]: %s: ", program, thread_name,
               level_name (level));
    else
      fprintf (stderr, "%s: %s: ", program, level_name (level));
    vfprintf (stderr, fmt, ap);
    fputc ('\n', stderr);
    funlockfile (stderr);
  }
  va_end (ap);
  errno = saved_errno;
}

void
log_register_debug_flags (const struct log_debug_flag *flags)
{
  debug_flags = flags;
}

const struct log_debug_flag *
log_debug_flags (void)
{
  return debug_flags;
}

int
log_set_debug_flag (const char *spec)
{
  const char *eq = strchr (spec, '=');
  const char *dot = strchr (spec, '.');
  size_t namelen;
  char *end;
  long v;
  size_t i;

  if (eq == NULL || dot == NULL || dot > eq || eq == spec || eq[1] == '\0')
    return -EINVAL;
  namelen = eq - spec;
  errno = 0;
  v = strtol (eq + 1, &end, 0);
  if (errno || *end != '\0' || v < -2147483647L || v > 2147483647L)
    return -EINVAL;
  for (i = 0; debug_flags && debug_flags[i].name; ++i) {
    if (strlen (debug_flags[i].name) == namelen &&
        strncmp (debug_flags[i].name, spec, namelen) == 0) {
      *debug_flags[i].value = (int)v;
      return 0;
    }
  }
  return -ENOENT;
}

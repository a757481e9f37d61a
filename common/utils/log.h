/* Logging for the daemons and the CLI.
 *
 * Each line: "PROG[THREAD]: LEVEL: message" on stderr in the foreground,
 * or to syslog once log_use_syslog() is called.  errno is saved and
 * restored by every call.  Thread-safe: one flockfile per line.
 * Messages start lower-case, have no final period, and read
 * "operation: object: reason".
 */

#ifndef TESSERA_UTILS_LOG_H
#define TESSERA_UTILS_LOG_H

#include <stdbool.h>

enum log_level {
  LOG_LEVEL_ERROR,
  LOG_LEVEL_WARN,
  LOG_LEVEL_INFO,
  LOG_LEVEL_DEBUG
};

/* Set the program name shown on every line (not copied: pass a literal). */
extern void log_init (const char *program);
/* Send further lines to syslog (daemon facility). */
extern void log_use_syslog (void);
/* Name of the calling thread (copied, up to 15 bytes). */
extern void log_set_thread_name (const char *name);

/* Non-zero turns on log_debug (-v). */
extern int log_verbose;

extern void log_msg (enum log_level level, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3)));

#define log_error(...) log_msg (LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg (LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) log_msg (LOG_LEVEL_INFO, __VA_ARGS__)
/* Skips evaluating its arguments when debugging is off. */
#define log_debug(...) \
  do { \
    if (log_verbose) \
      log_msg (LOG_LEVEL_DEBUG, __VA_ARGS__); \
  } while (0)

/* Debug flags set with -D AREA.FLAG=N.  A daemon registers a NULL-terminated
 * table before parsing options; log_set_debug_flag parses "AREA.FLAG=N"
 * and returns 0, -ENOENT (no such flag) or -EINVAL (bad syntax).
 */
struct log_debug_flag {
  const char *name; /* "area.flag" */
  int *value;
};
extern void log_register_debug_flags (const struct log_debug_flag *flags);
/* The table registered, or NULL (for --help). */
extern const struct log_debug_flag *log_debug_flags (void);
extern int log_set_debug_flag (const char *spec);

#endif /* TESSERA_UTILS_LOG_H */

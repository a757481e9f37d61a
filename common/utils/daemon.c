/* Becoming a daemon (see daemon.h).
 *
 * The shared options are parsed and their --help lines printed here, so
 * that the two daemons cannot drift apart in what an option means or how
 * a bad value is refused; each daemon's own options stay in its main.c.
 */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "addrlist.h"
#include "cleanup.h"
#include "daemon.h"
#include "log.h"
#include "parse.h"
#include "sock.h"

/* Column of the descriptions in --help. */
#define HELP_COLUMN 28

void
daemon_common_init (struct daemon_common *dc, const struct daemon_spec *spec,
                    const struct log_debug_flag *debug_flags)
{
  memset (dc, 0, sizeof *dc);
  dc->spec = spec;
  dc->max_conns = DAEMON_DEFAULT_MAX_CONNS;
  dc->max_unauth = DAEMON_DEFAULT_MAX_UNAUTH;
  dc->ready_fd = -1;
  dc->listen = strdup (spec->default_listen);
  if (dc->listen == NULL) {
    fprintf (stderr, "%s: out of memory\n", spec->program);
    exit (EXIT_FAILURE);
  }
  log_register_debug_flags (debug_flags);
}

void
daemon_bad_option (const struct daemon_common *dc, const char *opt,
                   const char *arg, const char *fmt, ...)
{
  va_list ap;

  fprintf (stderr, "%s: --%s: %s: ", dc->spec->program, opt, arg);
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fputc ('\n', stderr);
  exit (EXIT_FAILURE);
}

uint32_t
daemon_number_option (const struct daemon_common *dc, const char *opt,
                      const char *arg, uint32_t max)
{
  uint32_t n;

  if (parse_uint32 (arg, 1, max, &n) < 0)
    daemon_bad_option (dc, opt, arg, "must be a number from 1 to %" PRIu32,
                       max);
  return n;
}

char *
daemon_address_option (const struct daemon_common *dc, const char *opt,
                       const char *arg)
{
  CLEANUP_FREE char *abs = NULL;
  char *p;

  if (sock_address_check (arg) < 0)
    daemon_bad_option (dc, opt, arg, "not HOST:PORT, [V6]:PORT or unix:PATH");
  if (strncmp (arg, "unix:", 5) != 0 || arg[5] == '/')
    p = strdup (arg);
  else if ((abs = daemon_absolute_path (arg + 5)) == NULL ||
           asprintf (&p, "unix:%s", abs) == -1)
    p = NULL;
  if (p == NULL)
    daemon_bad_option (dc, opt, arg, "out of memory");
  return p;
}

char *
daemon_address_list_option (const struct daemon_common *dc, const char *opt,
                            const char *arg)
{
  struct addrlist l;
  char errmsg[256];
  char *list = NULL, *a, *p;
  size_t i;

  if (addrlist_parse (arg, &l, errmsg, sizeof errmsg) < 0) {
    fprintf (stderr, "%s: --%s: %s\n", dc->spec->program, opt, errmsg);
    exit (EXIT_FAILURE);
  }
  for (i = 0; i < l.n; ++i) {
    a = daemon_address_option (dc, opt, l.addrs[i]);
    if (asprintf (&p, "%s%s%s", list ? list : "", list ? "," : "", a) == -1)
      daemon_bad_option (dc, opt, arg, "out of memory");
    free (a);
    free (list);
    list = p;
  }
  addrlist_free (&l);
  return list;
}

/* Print one --help line: NAME, then DESC from HELP_COLUMN. */
static void
help_line (FILE *fp, const char *name, const char *desc)
{
  int n = fprintf (fp, "  %s", name);

  if (n >= HELP_COLUMN) {
    fputc ('\n', fp);
    n = 0;
  }
  fprintf (fp, "%*s%s\n", HELP_COLUMN - n, "", desc);
}

/* Print the --help lines of the shared options on FP. */
static void
shared_usage (FILE *fp, const struct daemon_common *dc)
{
  const struct log_debug_flag *f;
  char listen[128];
  int col;

  snprintf (listen, sizeof listen, "(default %s)", dc->spec->default_listen);
  help_line (fp, "--listen ADDR", "HOST:PORT, [V6]:PORT or unix:PATH");
  help_line (fp, "", listen);
  help_line (fp, "--tls", "TLS on every connection, to and from this");
  help_line (fp, "", "daemon (every component must use it)");
  help_line (fp, "--max-connections N",
             "authenticated connections at once (default 1024)");
  help_line (fp, "--max-unauthenticated N",
             "connections authenticating at once; the oldest");
  help_line (fp, "", "is dropped beyond (default 256)");
  help_line (fp, "-f, --foreground", "do not daemonize; log to stderr");
  help_line (fp, "-P, --pidfile FILE", "write the pid to FILE once serving");
  help_line (fp, "-v, --verbose", "debug messages");
  fprintf (fp, "  %-*s%s", HELP_COLUMN - 2, "-D, --debug AREA.FLAG=N",
           "set a debug flag:");
  col = HELP_COLUMN + 17;
  for (f = log_debug_flags (); f && f->name; ++f) {
    if (col + 2 + (int)strlen (f->name) > 79) {
      fprintf (fp, "\n%*s", HELP_COLUMN - 1, "");
      col = HELP_COLUMN - 1;
    }
    col += fprintf (fp, " %s%s", f->name, f[1].name ? "," : "");
  }
  fputc ('\n', fp);
  help_line (fp, "--exit-with-parent", "exit when the parent process exits");
  help_line (fp, "", "(implies -f)");
  help_line (fp, "--help", "print this help");
  help_line (fp, "-V, --version", "print the version");
}

/* Compare two option names for qsort. */
static int
compare_names (const void *a, const void *b)
{
  return strcmp (*(const char *const *)a, *(const char *const *)b);
}

/* Print the long options (LONG_ONES) or the short ones, one a line, for
 * --long-options and --short-options, then exit.
 */
static void __attribute__ ((noreturn))
list_options (const struct daemon_common *dc, bool long_ones)
{
  const struct option *lo = dc->spec->long_options;
  const char *so = DAEMON_SHORT_OPTIONS;
  const char *names[128];
  size_t i, n = 0;

  if (!long_ones) {
    for (i = 0; so[i]; ++i)
      if (so[i] != ':')
        printf ("-%c\n", so[i]);
    exit (EXIT_SUCCESS);
  }
  for (i = 0; lo[i].name; ++i)
    if (strcmp (lo[i].name, "long-options") != 0 &&
        strcmp (lo[i].name, "short-options") != 0) {
      assert (n < sizeof names / sizeof names[0]);
      names[n++] = lo[i].name;
    }
  qsort (names, n, sizeof names[0], compare_names);
  for (i = 0; i < n; ++i)
    printf ("--%s\n", names[i]);
  exit (EXIT_SUCCESS);
}

/* Take the shared option C (any getopt_long result below
 * DAEMON_OPTION_END) with its argument ARG into DC, or exit.
 */
static void
shared_option (struct daemon_common *dc, int c, const char *arg)
{
  const char *program = dc->spec->program;
  int r;

  switch (c) {
  case 'f':
    dc->foreground = true;
    break;
  case 'P':
    if (arg[0] == '\0')
      daemon_bad_option (dc, "pidfile", arg, "not a file name");
    free (dc->pidfile);
    dc->pidfile = daemon_absolute_path (arg);
    if (dc->pidfile == NULL)
      daemon_bad_option (dc, "pidfile", arg, "out of memory");
    break;
  case 'v':
    log_verbose = 1;
    break;
  case 'D':
    r = log_set_debug_flag (arg);
    if (r < 0)
      daemon_bad_option (dc, "debug", arg, "%s",
                         r == -ENOENT ? "no such debug flag"
                                      : "expected AREA.FLAG=N");
    break;
  case DAEMON_EXIT_WITH_PARENT_OPTION:
    dc->exit_with_parent = true;
    break;
  case DAEMON_LISTEN_OPTION:
    free (dc->listen);
    dc->listen = daemon_address_option (dc, "listen", arg);
    break;
  case DAEMON_TLS_OPTION:
    dc->tls = true;
    break;
  case DAEMON_MAX_CONNECTIONS_OPTION:
    dc->max_conns =
        daemon_number_option (dc, "max-connections", arg, DAEMON_MAX_CONNS_MAX);
    break;
  case DAEMON_MAX_UNAUTH_OPTION:
    dc->max_unauth = daemon_number_option (dc, "max-unauthenticated", arg,
                                           DAEMON_MAX_UNAUTH_MAX);
    break;
  case DAEMON_HELP_OPTION:
    dc->spec->usage (stdout);
    shared_usage (stdout, dc);
    exit (EXIT_SUCCESS);
  case 'V':
    printf ("%s %s\n", program, PACKAGE_VERSION);
    exit (EXIT_SUCCESS);
  case DAEMON_LONG_OPTIONS_OPTION:
    list_options (dc, true);
  case DAEMON_SHORT_OPTIONS_OPTION:
    list_options (dc, false);
  default:
    /* getopt_long has said what was wrong. */
    fprintf (stderr, "Try '%s --help' for more information.\n", program);
    exit (EXIT_FAILURE);
  }
}

void
daemon_parse_options (struct daemon_common *dc, int argc, char **argv,
                      void *opaque)
{
  int c;

  while ((c = getopt_long (argc, argv, DAEMON_SHORT_OPTIONS,
                           dc->spec->long_options, NULL)) != -1) {
    if (c >= DAEMON_OPTION_END)
      dc->spec->option (dc, opaque, c, optarg);
    else
      shared_option (dc, c, optarg);
  }
  if (optind < argc) {
    fprintf (stderr, "%s: unexpected argument: %s\n", dc->spec->program,
             argv[optind]);
    exit (EXIT_FAILURE);
  }
  /* The parent of a daemon is the process that just exited. */
  if (dc->exit_with_parent)
    dc->foreground = true;
}

int
daemon_signals (const struct daemon_common *dc, sigset_t *set)
{
  if (dc->exit_with_parent && prctl (PR_SET_PDEATHSIG, SIGTERM) == -1) {
    int e = errno;

    log_error ("--exit-with-parent: prctl: %s", strerror (e));
    return -e;
  }
  signal (SIGPIPE, SIG_IGN);
  sigemptyset (set);
  sigaddset (set, SIGTERM);
  sigaddset (set, SIGINT);
  pthread_sigmask (SIG_BLOCK, set, NULL);
  return 0;
}

int
daemon_listen (struct daemon_common *dc, char *bound, size_t len)
{
  char where[512];
  int fd;

  fd = sock_listen (dc->listen);
  if (fd < 0) {
    /* sock_listen's -EHOSTUNREACH is a name that does not resolve. */
    log_error ("--listen: %s: %s", dc->listen,
               fd == -EINVAL         ? "not an address that can be listened on"
               : fd == -EHOSTUNREACH ? "cannot resolve the host name"
                                     : strerror (-fd));
    return fd;
  }
  dc->listening = true;
  if (sock_local_address (fd, where, sizeof where) < 0)
    snprintf (where, sizeof where, "%s", dc->listen);
  log_info ("listening on %s", where);
  if (bound)
    snprintf (bound, len, "%s", where);
  return fd;
}

int
daemon_detach (struct daemon_common *dc)
{
  int fd;

  if (dc->foreground)
    return 0;
  fd = daemon_fork ();
  if (fd < 0) {
    log_error ("fork: %s", strerror (-fd));
    return fd;
  }
  dc->ready_fd = fd;
  return 0;
}

int
daemon_pidfile (struct daemon_common *dc)
{
  int r;

  if (dc->pidfile == NULL)
    return 0;
  r = daemon_write_pidfile (dc->pidfile);
  if (r < 0) {
    log_error ("--pidfile: %s: %s", dc->pidfile, strerror (-r));
    return r;
  }
  dc->pidfile_written = true;
  return 0;
}

void
daemon_serving (struct daemon_common *dc)
{
  daemon_ready (dc->ready_fd);
  dc->ready_fd = -1;
}

void
daemon_common_free (struct daemon_common *dc)
{
  if (dc->pidfile_written)
    unlink (dc->pidfile);
  if (dc->listening && strncmp (dc->listen, "unix:", 5) == 0)
    unlink (dc->listen + 5);
  if (dc->ready_fd >= 0)
    close (dc->ready_fd);
  free (dc->pidfile);
  free (dc->listen);
  dc->pidfile = dc->listen = NULL;
  dc->ready_fd = -1;
}

int
daemon_fork (void)
{
  int pfd[2], fd, status = 0;
  pid_t pid;

  if (pipe2 (pfd, O_CLOEXEC) == -1)
    return -errno;
  fflush (NULL);
  pid = fork ();
  if (pid == -1) {
    int e = errno;

    close (pfd[0]);
    close (pfd[1]);
    return -e;
  }
  if (pid > 0) {
    sigset_t sigs;
    ssize_t n;
    char c;

    /* Ctrl-C stops the waiting parent, not the daemon. */
    sigemptyset (&sigs);
    sigaddset (&sigs, SIGTERM);
    sigaddset (&sigs, SIGINT);
    pthread_sigmask (SIG_UNBLOCK, &sigs, NULL);
    close (pfd[1]);
    do
      n = read (pfd[0], &c, 1);
    while (n == -1 && errno == EINTR);
    if (n == 1)
      _exit (EXIT_SUCCESS);
    while (waitpid (pid, &status, 0) == -1 && errno == EINTR)
      ;
    _exit (WIFEXITED (status) && WEXITSTATUS (status) != 0
               ? WEXITSTATUS (status)
               : EXIT_FAILURE);
  }
  close (pfd[0]);
  setsid ();
  fd = open ("/dev/null", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    dup2 (fd, STDIN_FILENO);
    close (fd);
  }
  return pfd[1];
}

void
daemon_ready (int ready_fd)
{
  int fd;

  if (ready_fd < 0)
    return;
  if (chdir ("/") == -1)
    log_warn ("chdir: /: %s", strerror (errno));
  log_use_syslog ();
  fd = open ("/dev/null", O_RDWR | O_CLOEXEC);
  if (fd >= 0) {
    dup2 (fd, STDOUT_FILENO);
    dup2 (fd, STDERR_FILENO);
    close (fd);
  }
  while (write (ready_fd, "", 1) == -1 && errno == EINTR)
    ;
  close (ready_fd);
}

int
daemon_write_pidfile (const char *path)
{
  CLEANUP_FREE char *tmp = NULL;
  FILE *fp;
  int e;

  if (asprintf (&tmp, "%s.tmp", path) == -1) {
    tmp = NULL;
    return -ENOMEM;
  }
  fp = fopen (tmp, "we");
  if (fp == NULL)
    return -errno;
  fprintf (fp, "%ld\n", (long)getpid ());
  if (fclose (fp) == EOF || rename (tmp, path) == -1) {
    e = errno;
    unlink (tmp);
    return -e;
  }
  return 0;
}

char *
daemon_absolute_path (const char *path)
{
  CLEANUP_FREE char *cwd = NULL;
  char *out;

  if (path[0] == '/')
    return strdup (path);
  cwd = getcwd (NULL, 0);
  if (cwd == NULL || asprintf (&out, "%s/%s", cwd, path) == -1)
    return NULL;
  return out;
}

void
daemon_raise_nofile (unsigned long long want, const char *why)
{
  struct rlimit rl;

  if (getrlimit (RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur >= want)
    return;
  rl.rlim_cur =
      rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want ? rl.rlim_max : want;
  if (setrlimit (RLIMIT_NOFILE, &rl) == -1)
    getrlimit (RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < want)
    log_warn ("open files: limit %llu, below the %llu that %s need",
              (unsigned long long)rl.rlim_cur, want, why);
}

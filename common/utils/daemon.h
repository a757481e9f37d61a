/* Becoming a daemon, shared by tessera-mds and tessera-storesrv: the
 * options both take, the signals, the listening socket, fork with a
 * readiness pipe, the pidfile, absolute paths, the open-files limit.
 *
 * The life of a daemon: daemon_common_init, daemon_parse_options (its
 * own options through its daemon_spec's callback, the shared ones
 * here), daemon_signals, daemon_listen and
 * daemon_detach (in the order the daemon needs), open what must be
 * opened after a fork (LMDB, threads), daemon_pidfile, daemon_serving,
 * serve, daemon_common_free.  Until daemon_serving the daemon still
 * logs to standard error, so the operator sees start-up messages and
 * errors; the command returns only when the daemon serves (status 0)
 * or has given up (its exit status).
 */

#ifndef TESSERA_DAEMON_H
#define TESSERA_DAEMON_H

#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "log.h"

/* ---- The shared options ---- */

/* getopt_long codes of the shared long options that have no short
 * form.  A daemon numbers its own options from DAEMON_OPTION_END.
 */
enum {
  DAEMON_HELP_OPTION = CHAR_MAX + 1,
  DAEMON_LONG_OPTIONS_OPTION,
  DAEMON_SHORT_OPTIONS_OPTION,
  DAEMON_EXIT_WITH_PARENT_OPTION,
  DAEMON_LISTEN_OPTION,
  DAEMON_TLS_OPTION,
  DAEMON_MAX_CONNECTIONS_OPTION,
  DAEMON_MAX_UNAUTH_OPTION,
  DAEMON_OPTION_END
};

/* The short options (all of them shared), and the shared long options
 * as entries of the daemon's struct option table (which it ends with
 * DAEMON_LONG_OPTIONS and { NULL }).
 */
#define DAEMON_SHORT_OPTIONS "D:fP:vV"
#define DAEMON_LONG_OPTIONS \
  { "debug", required_argument, NULL, 'D' }, \
      { "exit-with-parent", no_argument, NULL, \
        DAEMON_EXIT_WITH_PARENT_OPTION }, \
      { "foreground", no_argument, NULL, 'f' }, \
      { "help", no_argument, NULL, DAEMON_HELP_OPTION }, \
      { "listen", required_argument, NULL, DAEMON_LISTEN_OPTION }, \
      { "long-options", no_argument, NULL, DAEMON_LONG_OPTIONS_OPTION }, \
      { "max-connections", required_argument, NULL, \
        DAEMON_MAX_CONNECTIONS_OPTION }, \
      { "max-unauthenticated", required_argument, NULL, \
        DAEMON_MAX_UNAUTH_OPTION }, \
      { "pidfile", required_argument, NULL, 'P' }, \
      { "short-options", no_argument, NULL, DAEMON_SHORT_OPTIONS_OPTION }, \
      { "tls", no_argument, NULL, DAEMON_TLS_OPTION }, \
      { "verbose", no_argument, NULL, 'v' }, \
  { \
    "version", no_argument, NULL, 'V' \
  }

/* Defaults and bounds of --max-connections and --max-unauthenticated. */
#define DAEMON_DEFAULT_MAX_CONNS 1024
#define DAEMON_DEFAULT_MAX_UNAUTH 256
#define DAEMON_MAX_CONNS_MAX 65536
#define DAEMON_MAX_UNAUTH_MAX 16384

struct daemon_common;

/* What a daemon tells the shared code about itself (static storage). */
struct daemon_spec {
  const char *program;               /* "tessera-mds" */
  const char *default_listen;        /* "127.0.0.1:7420" */
  const struct option *long_options; /* its own and DAEMON_LONG_OPTIONS */
  /* Print the synopsis and the daemon's own options (--help). */
  void (*usage) (FILE *fp);
  /* Take the daemon's own option C (>= DAEMON_OPTION_END) with its
   * argument ARG into OPAQUE (daemon_parse_options's); refuse a bad
   * value with daemon_bad_option.
   */
  void (*option) (const struct daemon_common *dc, void *opaque, int c,
                  const char *arg);
};

/* The shared options and the start-up state built from them.  Set up by
 * daemon_common_init, filled by daemon_parse_options; main's alone (read-only
 * once threads start).
 */
struct daemon_common {
  const struct daemon_spec *spec;
  bool foreground;       /* -f, or --exit-with-parent */
  bool exit_with_parent; /* --exit-with-parent */
  bool tls;              /* --tls */
  char *pidfile;         /* -P, absolute, or NULL */
  char *listen;          /* --listen (unix: paths absolute), malloc'd */
  uint32_t max_conns;    /* --max-connections */
  uint32_t max_unauth;   /* --max-unauthenticated */

  int ready_fd;         /* daemon_fork's pipe until daemon_serving */
  bool pidfile_written; /* remove it at exit */
  bool listening;       /* remove a unix socket at exit */
};

/* Set DC's defaults for SPEC and register the daemon's debug flags
 * DEBUG_FLAGS (-D; NULL-terminated, valid until exit).  Exits if out of
 * memory.
 */
extern void daemon_common_init (struct daemon_common *dc,
                                const struct daemon_spec *spec,
                                const struct log_debug_flag *debug_flags);

/* Parse the command line: the daemon's own options go to its
 * spec->option with OPAQUE, the shared ones into DC.  Refuses
 * arguments left over; --exit-with-parent implies --foreground (a
 * daemon's parent exits at once).  Exits on --help, --version,
 * --long-options, --short-options (status 0), on a bad value and on an
 * unknown option (status 1, after a message on stderr).  The daemon
 * checks what its options need together afterwards.
 */
extern void daemon_parse_options (struct daemon_common *dc, int argc,
                                  char **argv, void *opaque);

/* Print "PROGRAM: --OPT: ARG: REASON" on stderr and exit 1: the one
 * format of an option value refused.
 */
extern void daemon_bad_option (const struct daemon_common *dc, const char *opt,
                               const char *arg, const char *fmt, ...)
    __attribute__ ((noreturn, format (printf, 4, 5)));

/* The number ARG of option OPT, from 1 to MAX, or exit through
 * daemon_bad_option ("must be a number from 1 to MAX").
 */
extern uint32_t daemon_number_option (const struct daemon_common *dc,
                                      const char *opt, const char *arg,
                                      uint32_t max);

/* Check the address ARG of option OPT ("listen", "mds"...), or exit
 * through daemon_bad_option; returns it malloc'd, with a relative unix
 * socket path made absolute (the daemon changes to /).
 */
extern char *daemon_address_option (const struct daemon_common *dc,
                                    const char *opt, const char *arg);

/* Check the list of addresses ARG ("A,B,...", see addrlist.h) of option
 * OPT, or exit with "PROGRAM: --OPT: ENTRY: REASON" naming the bad
 * entry (or the list, if it is empty or too long); returns it malloc'd,
 * each relative unix socket path made absolute.
 */
extern char *daemon_address_list_option (const struct daemon_common *dc,
                                         const char *opt, const char *arg);

/* ---- Signals ---- */

/* With --exit-with-parent, ask for SIGTERM when the parent exits; ignore
 * SIGPIPE; block SIGTERM and SIGINT in the calling thread (every thread
 * started later inherits the mask) and put them in *SET, for sigwait or
 * a signalfd.  Call before any thread is started.  Returns 0 or -errno
 * (logged).
 */
extern int daemon_signals (const struct daemon_common *dc, sigset_t *set);

/* ---- Listening ---- */

/* Listen on --listen (sock_listen) and log the address bound ("listening
 * on 127.0.0.1:41234"); a unix socket is removed by daemon_common_free.
 * BOUND, if not NULL, receives that address (LEN bytes, at least
 * PROTO_ADDR_MAX + 1).  Returns the fd (the caller closes it) or -errno,
 * logged as "--listen: ADDR: reason".
 */
extern int daemon_listen (struct daemon_common *dc, char *bound, size_t len);

/* ---- Starting and stopping ---- */

/* Unless in the foreground, fork into the background (daemon_fork).
 * Returns 0 or -errno (logged).
 */
extern int daemon_detach (struct daemon_common *dc);

/* Write the pidfile, if -P was given (daemon_write_pidfile).  Returns 0
 * or -errno, logged as "--pidfile: FILE: reason".
 */
extern int daemon_pidfile (struct daemon_common *dc);

/* The daemon serves: release the waiting parent (daemon_ready). */
extern void daemon_serving (struct daemon_common *dc);

/* At exit: remove the pidfile if written and the unix socket if one was
 * listened on, close the readiness pipe (a waiting parent then exits
 * with our status), free DC's strings.
 */
extern void daemon_common_free (struct daemon_common *dc);

/* ---- The steps underneath ---- */

/* Fork into the background.  The parent waits until the child calls
 * daemon_ready, then exits 0, or until the child gives up (closes the
 * pipe or dies), then exits with the child's exit status (1 if it had
 * none); SIGTERM and SIGINT end the waiting parent, not the daemon.
 * The child leaves the session and reads stdin from /dev/null; its
 * stdout, stderr, log and working directory stay as they are until
 * daemon_ready.  Returns the pipe's write end in the child, or -errno
 * (no child).  Call before any thread is started.
 */
extern int daemon_fork (void);

/* The daemon serves: change to /, send stdout and stderr to /dev/null,
 * log to syslog, and release the waiting parent.  READY_FD is what
 * daemon_fork returned, or -1 in the foreground (then nothing is done).
 */
extern void daemon_ready (int ready_fd);

/* Write our pid to PATH atomically (a temporary file renamed over it:
 * readers never see a partial file).  Returns 0 or -errno.
 */
extern int daemon_write_pidfile (const char *path);

/* PATH made absolute against the current directory (malloc'd), so that
 * it survives the daemon's change to /.  NULL if out of memory.
 */
extern char *daemon_absolute_path (const char *path);

/* Raise the soft limit of open files towards WANT (capped by the hard
 * limit), for the connections the options allow.  Not fatal: logs a
 * warning naming WHY ("--max-connections and --max-unauthenticated")
 * when the limit stays below WANT.
 */
extern void daemon_raise_nofile (unsigned long long want, const char *why);

#endif /* TESSERA_DAEMON_H */

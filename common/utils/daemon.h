/* Becoming a daemon, shared by tessera-mds and tessera-storesrv: fork
 * with a readiness pipe, the pidfile, absolute paths, the open-files
 * limit.
 *
 * The life of a daemon: parse options, make paths absolute
 * (daemon_absolute_path), daemon_fork unless in the foreground, open
 * what must be opened after a fork (LMDB, threads), write the pidfile,
 * daemon_ready, serve.  Until daemon_ready the daemon still logs to
 * standard error, so the operator sees start-up messages and errors;
 * the command returns only when the daemon serves (status 0) or has
 * given up (its exit status).
 */

#ifndef TESSERA_DAEMON_H
#define TESSERA_DAEMON_H

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

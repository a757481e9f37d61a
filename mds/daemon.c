/* Becoming a daemon: fork with a readiness pipe, the pidfile, the
 * catalog directory lock.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "log.h"

#include "internal.h"

/* Name of the lock file in the catalog directory. */
#define LOCK_FILE "tessera-mds.lock"

/* Fork into the background.  The parent waits until the child calls
 * mds_daemon_ready (then exits 0) or dies (then exits with the child's
 * status), so start-up errors still reach the terminal and the caller's
 * exit status.  In the child, *READY_FD receives the pipe's write end and
 * 0 is returned.  Returns -errno if the fork fails.  Call before any
 * thread is started and before the catalog is opened.
 */
int
mds_daemonize (int *ready_fd)
{
  int pfd[2], status = 0;
  pid_t pid;
  ssize_t n;
  char c;

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
  /* Logs go to syslog from now on; fatal start-up errors are printed on
   * stderr, which stays the terminal until mds_daemon_ready.
   */
  log_use_syslog ();
  *ready_fd = pfd[1];
  return 0;
}

/* The daemon is serving: detach from the terminal (stdio to /dev/null,
 * cwd /) and release the waiting parent.  READY_FD is
 * what mds_daemonize gave, or -1 in the foreground (then nothing is
 * done).
 */
void
mds_daemon_ready (int ready_fd)
{
  int fd;

  if (ready_fd < 0)
    return;
  if (chdir ("/") == -1)
    log_warn ("chdir: /: %m");
  fd = open ("/dev/null", O_RDWR);
  if (fd >= 0) {
    dup2 (fd, STDIN_FILENO);
    dup2 (fd, STDOUT_FILENO);
    dup2 (fd, STDERR_FILENO);
    if (fd > STDERR_FILENO)
      close (fd);
  }
  while (write (ready_fd, "", 1) == -1 && errno == EINTR)
    ;
  close (ready_fd);
}

/* Write our pid to PATH, atomically (readers never see a partial file).
 * Returns 0 or -errno.
 */
int
mds_write_pidfile (const char *path)
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
  if (fclose (fp) == EOF) {
    e = errno;
    unlink (tmp);
    return -e;
  }
  if (rename (tmp, path) == -1) {
    e = errno;
    unlink (tmp);
    return -e;
  }
  return 0;
}

/* Take an exclusive lock on the catalog directory DIR, so that two MDS
 * processes never serve one catalog.  The lock is held until exit (the
 * fd is deliberately never closed).  Returns 0, -EBUSY if another MDS
 * holds it, or -errno.
 */
int
mds_lock_db (const char *dir)
{
  CLEANUP_FREE char *path = NULL;
  int fd;

  if (asprintf (&path, "%s/%s", dir, LOCK_FILE) == -1) {
    path = NULL;
    return -ENOMEM;
  }
  fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd == -1)
    return -errno;
  if (flock (fd, LOCK_EX | LOCK_NB) == -1) {
    int e = errno;

    close (fd);
    return e == EWOULDBLOCK ? -EBUSY : -e;
  }
  return 0;
}

/* PATH made absolute against the current directory (malloc'd), so that
 * it survives the daemon's chdir.  NULL if out of memory.
 */
char *
mds_absolute_path (const char *path)
{
  CLEANUP_FREE char *cwd = NULL;
  char *out;

  if (path[0] == '/')
    return strdup (path);
  cwd = getcwd (NULL, 0);
  if (cwd == NULL)
    return strdup (path);
  if (asprintf (&out, "%s/%s", cwd, path) == -1)
    return NULL;
  return out;
}

/* Becoming a daemon (see daemon.h). */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "daemon.h"
#include "log.h"

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

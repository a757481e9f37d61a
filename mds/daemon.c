/* The catalog directory lock: one MDS per catalog.  Forking, the
 * pidfile and absolute paths are common/utils/daemon.c's.
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

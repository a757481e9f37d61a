/* tessera-mds --restore FILE: install a catalog backup (made by
 * `tessera catalog backup`) as the catalog of DIR before serving.
 *
 * FILE is first copied into a fresh directory inside DIR (so the same
 * file system as the catalog, and the rename below is atomic) and
 * synced; that copy is then opened as a catalog and must hold a cluster
 * record, so anything else (not LMDB, another program's LMDB file) is
 * refused by name before DIR is touched.  Only then is it renamed over
 * DIR/data.mdb and DIR synced: a crash at any point leaves either the
 * old catalog or the restored one, never a mix.  A DIR that already
 * holds a catalog with a cluster record is refused unless FORCE.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "catalog.h"
#include "cleanup.h"
#include "full-rw.h"
#include "log.h"
#include "parse.h"

#include "internal.h"

#define DATA_FILE "data.mdb"
#define LOCK_FILE "lock.mdb"
#define COPY_BUF (1024 * 1024)

/* Print "tessera-mds: --restore: " and the message on stderr. */
static void __attribute__ ((format (printf, 1, 2)))
restore_error (const char *fmt, ...)
{
  va_list ap;

  fprintf (stderr, "%s: --restore: ", MDS_PROGRAM);
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fputc ('\n', stderr);
}

/* fsync the file or directory at PATH.  Returns 0 or -errno. */
static int
sync_path (const char *path)
{
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  int r = 0;

  if (fd == -1)
    return -errno;
  if (fsync (fd) == -1)
    r = -errno;
  close (fd);
  return r;
}

/* Copy FROM to the new file TO and sync it.  Returns 0 or -1 (printed). */
static int
copy_file (const char *from, const char *to)
{
  CLEANUP_FREE uint8_t *buf = malloc (COPY_BUF);
  int in = -1, out = -1, r = -1;
  struct stat st;
  ssize_t n;

  if (buf == NULL) {
    restore_error ("out of memory");
    return -1;
  }
  in = open (from, O_RDONLY | O_CLOEXEC);
  if (in == -1 || fstat (in, &st) == -1) {
    restore_error ("%s: %m", from);
    goto out;
  }
  if (!S_ISREG (st.st_mode)) {
    restore_error ("%s: not a regular file", from);
    goto out;
  }
  out = open (to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (out == -1) {
    restore_error ("%s: %m", to);
    goto out;
  }
  for (;;) {
    n = read (in, buf, COPY_BUF);
    if (n == -1 && errno == EINTR)
      continue;
    if (n == -1) {
      restore_error ("%s: read: %m", from);
      goto out;
    }
    if (n == 0)
      break;
    if ((r = full_write (out, buf, n)) < 0) {
      restore_error ("%s: write: %s", to, strerror (-r));
      r = -1;
      goto out;
    }
  }
  if (fsync (out) == -1) {
    restore_error ("%s: fsync: %m", to);
    goto out;
  }
  r = 0;
out:
  if (in >= 0)
    close (in);
  if (out >= 0 && close (out) == -1 && r == 0) {
    restore_error ("%s: close: %m", to);
    r = -1;
  }
  return r;
}

/* Does DIR already hold a catalog with a cluster record?  Returns 1, 0,
 * or -1 (printed).  Its uuid goes to UUID.
 */
static int
holds_catalog (const char *dir, char *uuid)
{
  CLEANUP_FREE char *data = NULL;
  struct catalog_cluster c;
  struct stat st;
  catalog *cat;
  int r;

  if (asprintf (&data, "%s/%s", dir, DATA_FILE) == -1) {
    data = NULL;
    restore_error ("out of memory");
    return -1;
  }
  if (stat (data, &st) == -1)
    return 0;
  r = catalog_open (dir, 0, &cat);
  if (r < 0) {
    restore_error ("%s: cannot open the catalog there: %s", dir,
                   catalog_strerror (r));
    return -1;
  }
  r = catalog_cluster_get (cat, &c);
  catalog_close (cat);
  if (r == -ENOENT)
    return 0;
  if (r < 0) {
    restore_error ("%s: cannot read the catalog there: %s", dir,
                   catalog_strerror (r));
    return -1;
  }
  uuid_format (c.uuid, uuid);
  return 1;
}

/* Check the catalog in directory TMP (a copy of FILE): open it, read
 * its cluster record and totals into *CLUSTER and *STATS.  Returns 0 or
 * -1 (printed, naming FILE).
 */
static int
check_copy (const char *file, const char *tmp, struct catalog_cluster *cluster,
            struct catalog_stats *stats)
{
  catalog *cat;
  int r;

  r = catalog_open (tmp, 0, &cat);
  if (r < 0) {
    restore_error ("%s: not a Tessera catalog (cannot open it as LMDB: %s)",
                   file, catalog_strerror (r));
    return -1;
  }
  r = catalog_cluster_get (cat, cluster);
  if (r == 0)
    r = catalog_stats (cat, stats);
  catalog_close (cat);
  if (r == -ENOENT) {
    restore_error ("%s: not a Tessera catalog (no cluster record)", file);
    return -1;
  }
  if (r < 0) {
    restore_error ("%s: not a Tessera catalog (%s)", file,
                   catalog_strerror (r));
    return -1;
  }
  return 0;
}

/* Install the backup FILE as the catalog of DIR (see above); DIR exists
 * and this process holds its lock (mds_lock_db).  Returns 0 or -1
 * (printed).
 */
int
mds_restore (const char *dir, const char *file, bool force)
{
  CLEANUP_FREE char *tmp = NULL, *from = NULL, *lock = NULL, *to = NULL;
  struct catalog_cluster cluster;
  struct catalog_stats stats;
  char uuid[37];
  int r, ret = -1;

  r = holds_catalog (dir, uuid);
  if (r < 0)
    return -1;
  if (r == 1 && !force) {
    restore_error ("%s: already holds the catalog of cluster %s: "
                   "use --force to replace it",
                   dir, uuid);
    return -1;
  }
  if (r == 1)
    log_warn ("restore: replacing the catalog of cluster %s in %s", uuid, dir);

  if (asprintf (&tmp, "%s/restore.XXXXXX", dir) == -1) {
    tmp = NULL;
    restore_error ("out of memory");
    return -1;
  }
  if (mkdtemp (tmp) == NULL) {
    restore_error ("%s: %m", tmp);
    return -1;
  }
  if (asprintf (&from, "%s/%s", tmp, DATA_FILE) == -1 ||
      asprintf (&lock, "%s/%s", tmp, LOCK_FILE) == -1 ||
      asprintf (&to, "%s/%s", dir, DATA_FILE) == -1) {
    restore_error ("out of memory");
    rmdir (tmp);
    return -1;
  }
  if (copy_file (file, from) < 0 ||
      check_copy (file, tmp, &cluster, &stats) < 0)
    goto out;
  /* Opening it may have written to it (LMDB commits are synced), so the
   * file is whole and durable here.
   */
  if (rename (from, to) == -1) {
    restore_error ("%s: rename to %s: %m", from, to);
    goto out;
  }
  r = sync_path (dir);
  if (r < 0) {
    restore_error ("%s: fsync: %s", dir, strerror (-r));
    goto out;
  }
  uuid_format (cluster.uuid, uuid);
  log_info ("restored catalog %s into %s: cluster %s, %" PRIu64
            " volumes, %" PRIu64 " segments, %" PRIu64 " servers",
            file, dir, uuid, stats.volumes, stats.segments, stats.servers);
  ret = 0;
out:
  unlink (from);
  unlink (lock);
  rmdir (tmp);
  return ret;
}

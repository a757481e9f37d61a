/* CATALOG_BACKUP: a hot copy of the catalog, read by the client in
 * chunks.
 *
 * The first request of a backup (id 0) makes the copy: catalog_backup
 * writes the catalog, compacted, under one LMDB read transaction into an
 * unlinked file in the catalog directory (O_TMPFILE: the same file
 * system as the catalog, which is sized for it, and nothing is left
 * behind by a crash), then the file is read once for its SHA-256.  This
 * runs on the connection's own thread without mds->lock, so other
 * requests, writers included, go on meanwhile.  Later requests read the
 * file at an offset.
 *
 * The backups live in mds->backups, a fixed table of PROTO_BACKUPS_MAX
 * slots (lock: mds->lock).  A slot belongs to the connection that
 * started it; while a request of that connection copies or reads it,
 * it is BUSY and nothing else touches its file.  A backup is dropped
 * (its file closed, so its space freed) once its last byte is sent, when
 * its connection closes (mds_backup_conn_closed, from loop.c), or when
 * a later CATALOG_BACKUP request finds it idle for PROTO_BACKUP_IDLE_MS.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nettle/sha2.h>

#include "catalog.h"
#include "cleanup.h"
#include "deadline.h"
#include "log.h"

#include "internal.h"

#define WHAT "catalog backup"
#define IDLE_NS ((uint64_t)PROTO_BACKUP_IDLE_MS * 1000000)
/* Read size when hashing the copy. */
#define HASH_BUF (256 * 1024)

/* Open the directory the copies are made in (the catalog's), before the
 * daemon changes directory.  Returns 0 or -errno.
 */
int
mds_backup_init (struct mds *mds)
{
  size_t i;

  for (i = 0; i < PROTO_BACKUPS_MAX; ++i)
    mds->backups[i].fd = -1;
  mds->backup_dir_fd = open (mds->db_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (mds->backup_dir_fd == -1)
    return -errno;
  return 0;
}

/* Free slot B.  Lock held. */
static void
slot_clear (struct mds_backup *b)
{
  if (b->fd >= 0)
    close (b->fd);
  memset (b, 0, sizeof *b);
  b->fd = -1;
}

/* Drop backups idle since before NOW - IDLE_NS.  Lock held. */
static void
sweep_idle (struct mds *mds, uint64_t now)
{
  size_t i;

  for (i = 0; i < PROTO_BACKUPS_MAX; ++i) {
    struct mds_backup *b = &mds->backups[i];

    if (b->id != 0 && !b->busy && now - b->used_ns > IDLE_NS) {
      log_info (WHAT " %" PRIu64 ": dropped, idle for %d s", b->id,
                PROTO_BACKUP_IDLE_MS / 1000);
      slot_clear (b);
    }
  }
}

/* CONN has closed: drop its backups (loop.c, before CONN is freed). */
void
mds_backup_conn_closed (struct mds *mds, struct mds_conn *conn)
{
  size_t i;

  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
  for (i = 0; i < PROTO_BACKUPS_MAX; ++i) {
    struct mds_backup *b = &mds->backups[i];

    if (b->id != 0 && b->conn == conn) {
      if (b->fd >= 0 && b->sent < b->size)
        log_info (WHAT " %" PRIu64 ": dropped, %s went away", b->id,
                  conn->peer);
      slot_clear (b);
    }
  }
}

/* Close every backup's file and the directory (shutdown; no connection
 * is left).
 */
void
mds_backup_free (struct mds *mds)
{
  size_t i;

  for (i = 0; i < PROTO_BACKUPS_MAX; ++i)
    if (mds->backups[i].id != 0)
      slot_clear (&mds->backups[i]);
  if (mds->backup_dir_fd >= 0)
    close (mds->backup_dir_fd);
  mds->backup_dir_fd = -1;
}

/* An unlinked file for copy ID in the catalog directory: O_TMPFILE, or
 * where the file system lacks it, a file created and unlinked at once.
 * Returns the fd or -errno.
 */
static int
open_copy_file (struct mds *mds, uint64_t id)
{
  char name[64];
  int fd, e;

  fd = openat (mds->backup_dir_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd >= 0)
    return fd;
  e = errno;
  if (e != EOPNOTSUPP && e != EISDIR && e != EINVAL)
    return -e;
  snprintf (name, sizeof name, "backup-%ld-%" PRIu64 ".tmp", (long)getpid (),
            id);
  fd = openat (mds->backup_dir_fd, name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC,
               0600);
  if (fd == -1)
    return -errno;
  unlinkat (mds->backup_dir_fd, name, 0);
  return fd;
}

/* Read N bytes of FD at OFFSET into BUF.  Returns 0, -EIO at an early
 * end of file, or -errno.
 */
static int
pread_full (int fd, void *buf, size_t n, uint64_t offset)
{
  uint8_t *p = buf;
  ssize_t r;

  while (n > 0) {
    r = pread (fd, p, n, (off_t)offset);
    if (r == -1 && errno == EINTR)
      continue;
    if (r == -1)
      return -errno;
    if (r == 0)
      return -EIO;
    p += r;
    n -= r;
    offset += r;
  }
  return 0;
}

/* The SHA-256 of the first SIZE bytes of FD into DIGEST.  Returns 0 or
 * -errno.
 */
static int
hash_copy (int fd, uint64_t size, uint8_t *digest)
{
  CLEANUP_FREE uint8_t *buf = malloc (HASH_BUF);
  struct sha256_ctx ctx;
  uint64_t off;
  size_t n;
  int r;

  if (buf == NULL)
    return -ENOMEM;
  sha256_init (&ctx);
  for (off = 0; off < size; off += n) {
    n = size - off < HASH_BUF ? size - off : HASH_BUF;
    r = pread_full (fd, buf, n, off);
    if (r < 0)
      return r;
    sha256_update (&ctx, n, buf);
  }
  sha256_digest (&ctx, SHA256_DIGEST_SIZE, digest);
  return 0;
}

/* Make the copy of busy slot B (no lock held: the copy may take long).
 * Fills B's fd, size and hash.  Returns 0, or fills REP and returns
 * -errno.
 */
static int
make_copy (struct mds *mds, struct mds_backup *b, struct mds_reply *rep)
{
  uint64_t start = monotonic_ns ();
  int fd, r;

  fd = open_copy_file (mds, b->id);
  if (fd < 0) {
    log_error (WHAT ": %s: cannot create the copy: %s", mds->db_dir,
               strerror (-fd));
    mds_reply_errno (rep, fd, WHAT ": %s: cannot create the copy: %s",
                     mds->db_dir, strerror (-fd));
    return fd;
  }
  r = catalog_backup (mds->cat, fd, &b->size);
  if (r == 0)
    r = hash_copy (fd, b->size, b->sha256);
  if (r == -ENOSPC) {
    log_error (WHAT ": %s: no room for a copy of the catalog", mds->db_dir);
    mds_reply_errno (rep, r,
                     WHAT ": %s: no room for a copy of the catalog "
                          "(ENOSPC): free space in the catalog's file system",
                     mds->db_dir);
  }
  else if (r < 0) {
    log_error (WHAT ": %s: %s", mds->db_dir, catalog_strerror (r));
    mds_reply_errno (rep, r, WHAT ": %s: %s", mds->db_dir,
                     catalog_strerror (r));
  }
  if (r < 0) {
    close (fd);
    return r;
  }
  b->fd = fd;
  log_info (WHAT " %" PRIu64 ": %" PRIu64 " bytes in %.3f s, for %s", b->id,
            b->size, (monotonic_ns () - start) / 1e9, b->conn->peer);
  return 0;
}

/* Start a backup for CONN: take a slot, make the copy.  Returns the busy
 * slot, or NULL with REP filled.
 */
static struct mds_backup *
backup_start (struct mds *mds, struct mds_conn *conn, struct mds_reply *rep)
{
  struct mds_backup *b = NULL;
  size_t i;

  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
    sweep_idle (mds, monotonic_ns ());
    for (i = 0; i < PROTO_BACKUPS_MAX && b == NULL; ++i)
      if (mds->backups[i].id == 0)
        b = &mds->backups[i];
    if (b == NULL) {
      mds_reply_error (rep, PROTO_EAGAIN,
                       WHAT ": %d backups are being read already: try "
                            "again later",
                       PROTO_BACKUPS_MAX);
      return NULL;
    }
    b->id = ++mds->backup_last_id;
    b->conn = conn;
    b->busy = true;
  }
  if (make_copy (mds, b, rep) < 0) {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
    slot_clear (b);
    return NULL;
  }
  return b;
}

/* Find backup ID of CONN and mark it busy.  Returns it, or NULL with REP
 * filled.
 */
static struct mds_backup *
backup_find (struct mds *mds, struct mds_conn *conn, uint64_t id,
             struct mds_reply *rep)
{
  size_t i;

  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
  sweep_idle (mds, monotonic_ns ());
  for (i = 0; i < PROTO_BACKUPS_MAX; ++i) {
    struct mds_backup *b = &mds->backups[i];

    if (b->id == id && b->conn == conn && !b->busy) {
      b->busy = true;
      return b;
    }
  }
  mds_reply_error (rep, PROTO_ENOENT,
                   WHAT " %" PRIu64 ": no such backup on this connection "
                        "(never started, fully read, or idle for %d s)",
                   id, PROTO_BACKUP_IDLE_MS / 1000);
  return NULL;
}

/* End a request's use of busy slot B; drop B if the chunk just sent
 * (DONE bytes from its start, SENT_OK: the reply is a chunk) was its
 * last.
 */
static void
backup_release (struct mds *mds, struct mds_conn *conn, struct mds_backup *b,
                bool sent_ok, uint64_t done)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
  b->busy = false;
  b->used_ns = monotonic_ns ();
  if (sent_ok && done == b->size) {
    log_info (WHAT " %" PRIu64 ": read to the end by %s", b->id, conn->peer);
    slot_clear (b);
  }
  else if (sent_ok && done > b->sent)
    b->sent = done;
}

/* Serve CATALOG_BACKUP (see protocol.h).  Runs without mds->lock (an
 * MDS_OP_UNLOCKED handler): the copy must not stop other requests.
 */
int
mds_op_catalog_backup (struct mds *mds, struct mds_conn *conn,
                       const void *payload, uint32_t len, struct mds_reply *rep)
{
  struct proto_backup_request req;
  struct proto_backup_chunk chunk = { 0 };
  CLEANUP_FREE uint8_t *buf = NULL;
  struct mds_backup *b;
  int r;

  r = proto_decode_backup_request (payload, len, &req);
  if (r < 0)
    return mds_reply_bad (rep, r, "CATALOG_BACKUP");
  if (req.backup_id == 0 && req.offset != 0)
    return mds_reply_error (rep, PROTO_EINVAL,
                            WHAT ": offset %" PRIu64
                                 ": a new backup is read from offset 0",
                            req.offset);
  b = req.backup_id == 0 ? backup_start (mds, conn, rep)
                         : backup_find (mds, conn, req.backup_id, rep);
  if (b == NULL)
    return 0;

  /* B is busy: its file is this thread's until the lock is taken below. */
  if (req.offset > b->size) {
    mds_reply_error (rep, PROTO_ERANGE,
                     WHAT " %" PRIu64 ": offset %" PRIu64
                          " is past its end (%" PRIu64 " bytes)",
                     b->id, req.offset, b->size);
    goto out;
  }
  chunk.backup_id = b->id;
  chunk.size = b->size;
  memcpy (chunk.sha256, b->sha256, sizeof chunk.sha256);
  chunk.offset = req.offset;
  chunk.len = b->size - req.offset < req.max ? b->size - req.offset : req.max;
  if (chunk.len > 0) {
    buf = malloc (chunk.len);
    r = buf ? pread_full (b->fd, buf, chunk.len, req.offset) : -ENOMEM;
    if (r < 0) {
      log_error (WHAT " %" PRIu64 ": read: %s", b->id, strerror (-r));
      mds_reply_errno (rep, r, WHAT " %" PRIu64 ": read: %s", b->id,
                       strerror (-r));
      goto out;
    }
    chunk.data = buf;
  }
  proto_encode_backup_chunk (&chunk, &rep->wb);

out:
  backup_release (mds, conn, b, rep->status == PROTO_OK,
                  chunk.offset + chunk.len);
  return 0;
}

/* tessera catalog backup FILE [--force]: a consistent copy of the MDS's
 * catalog, taken while it serves.
 *
 * The MDS makes the copy when asked (CATALOG_BACKUP with id 0) and hands
 * it out in chunks.  The tool writes them to FILE.tmp, checks the size
 * and the SHA-256 the MDS announced, syncs it, renames it to FILE and
 * syncs FILE's directory, so FILE is either absent or a whole, durable
 * backup.  An existing FILE is kept unless --force.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nettle/sha2.h>

#include "internal.h"
#include "cleanup.h"
#include "deadline.h"
#include "full-rw.h"
#include "parse.h"

#define WHAT "catalog backup"

/* fsync the directory holding PATH.  Returns 0 or -errno. */
static int
sync_parent (const char *path)
{
  CLEANUP_FREE char *copy = strdup (path);
  int fd, r = 0;

  if (copy == NULL)
    return -ENOMEM;
  fd = open (dirname (copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd == -1)
    return -errno;
  if (fsync (fd) == -1)
    r = -errno;
  close (fd);
  return r;
}

/* The state of one backup being received. */
struct receive {
  uint64_t id;
  uint64_t size;
  uint8_t sha256[PROTO_BACKUP_SHA256_SIZE];
  uint64_t offset; /* bytes received and written */
  struct sha256_ctx ctx;
};

/* Ask for the chunk at rc->offset and write it to FD.  Returns 0 or
 * -errno (printed).
 */
static int
receive_chunk (struct tool_ctx *ctx, const char *tmp, int fd,
               struct receive *rc)
{
  struct proto_backup_request req = { rc->id, rc->offset,
                                      PROTO_BACKUP_CHUNK_MAX };
  struct proto_wbuf wb = { 0 };
  struct proto_backup_chunk chunk;
  CLEANUP_FREE void *reply = NULL;
  uint32_t len;
  int r;

  proto_encode_backup_request (&req, &wb);
  r = tool_call (ctx, WHAT, PROTO_OP_CATALOG_BACKUP, &wb, &reply, &len);
  proto_wbuf_free (&wb);
  if (r < 0)
    return r;
  r = proto_decode_backup_chunk (reply, len, &chunk);
  if (r < 0)
    return tool_bad_reply (ctx, WHAT, r);
  if (rc->id == 0) {
    rc->id = chunk.backup_id;
    rc->size = chunk.size;
    memcpy (rc->sha256, chunk.sha256, sizeof rc->sha256);
  }
  if (chunk.backup_id != rc->id || chunk.size != rc->size ||
      memcmp (chunk.sha256, rc->sha256, sizeof rc->sha256) != 0 ||
      chunk.offset != rc->offset || (chunk.len == 0 && rc->offset < rc->size)) {
    tool_error (WHAT ": %s: the MDS answered out of turn (backup %" PRIu64
                     ", offset %" PRIu64 ", %" PRIu32 " bytes)",
                tool_mds_address (ctx), chunk.backup_id, chunk.offset,
                chunk.len);
    return -EPROTO;
  }
  r = full_write (fd, chunk.data, chunk.len);
  if (r < 0) {
    tool_error (WHAT ": %s: write: %s", tmp, strerror (-r));
    return r;
  }
  sha256_update (&rc->ctx, chunk.len, chunk.data);
  rc->offset += chunk.len;
  return 0;
}

/* Receive the whole backup into FD (the new file TMP) and check it.
 * Returns 0 or -errno (printed).
 */
static int
receive_all (struct tool_ctx *ctx, const char *tmp, int fd, struct receive *rc)
{
  uint8_t digest[SHA256_DIGEST_SIZE];
  struct stat st;
  int r;

  sha256_init (&rc->ctx);
  do {
    r = receive_chunk (ctx, tmp, fd, rc);
    if (r < 0)
      return r;
  } while (rc->offset < rc->size);
  sha256_digest (&rc->ctx, sizeof digest, digest);
  if (memcmp (digest, rc->sha256, sizeof digest) != 0) {
    tool_error (WHAT ": %s: SHA-256 differs from the MDS's: the copy was "
                     "damaged in transit",
                tmp);
    return -EIO;
  }
  if (fsync (fd) == -1) {
    r = -errno;
    tool_error (WHAT ": %s: fsync: %s", tmp, strerror (-r));
    return r;
  }
  if (fstat (fd, &st) == -1 || (uint64_t)st.st_size != rc->size) {
    tool_error (WHAT ": %s: %" PRIu64 " bytes written, %" PRIu64 " expected",
                tmp, (uint64_t)st.st_size, rc->size);
    return -EIO;
  }
  return 0;
}

/* Print the result: "FILE: N bytes (SIZE), sha256 HEX, in S s". */
static void
print_result (struct tool_ctx *ctx, const char *file, const struct receive *rc,
              double seconds)
{
  char hex[2 * PROTO_BACKUP_SHA256_SIZE + 1], human[32];
  struct tool_json j;
  size_t i;

  for (i = 0; i < PROTO_BACKUP_SHA256_SIZE; ++i)
    snprintf (&hex[2 * i], 3, "%02x", rc->sha256[i]);
  if (ctx->json) {
    tool_json_init (&j, ctx->out);
    tool_json_begin_object (&j);
    tool_json_kv_string (&j, "file", file);
    tool_json_kv_uint (&j, "size", rc->size);
    tool_json_kv_string (&j, "sha256", hex);
    tool_json_kv_uint (&j, "milliseconds", (uint64_t)(seconds * 1000));
    tool_json_end_object (&j);
    tool_json_finish (&j);
    return;
  }
  format_size (rc->size, human, sizeof human);
  fprintf (ctx->out, "%s: %" PRIu64 " bytes (%s) in %.3f s\n", file, rc->size,
           human, seconds);
  fprintf (ctx->out, "sha256: %s\n", hex);
}

/* tessera catalog backup FILE */
int
tool_cmd_catalog_backup (struct tool_ctx *ctx, char **args)
{
  const char *file = args[0];
  CLEANUP_FREE char *tmp = NULL;
  struct receive rc = { 0 };
  uint64_t start = monotonic_ns ();
  struct stat st;
  int fd, r;

  if (!ctx->force && lstat (file, &st) == 0) {
    tool_error (WHAT ": %s: already exists (--force replaces it)", file);
    return -EEXIST;
  }
  if (asprintf (&tmp, "%s.tmp", file) == -1) {
    tmp = NULL;
    tool_error (WHAT ": out of memory");
    return -ENOMEM;
  }
  fd = open (tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd == -1) {
    r = -errno;
    tool_error (WHAT ": %s: %s", tmp, strerror (-r));
    return r;
  }
  r = receive_all (ctx, tmp, fd, &rc);
  if (close (fd) == -1 && r == 0) {
    r = -errno;
    tool_error (WHAT ": %s: close: %s", tmp, strerror (-r));
  }
  if (r == 0 && rename (tmp, file) == -1) {
    r = -errno;
    tool_error (WHAT ": %s: rename to %s: %s", tmp, file, strerror (-r));
  }
  if (r < 0) {
    unlink (tmp);
    return r;
  }
  r = sync_parent (file);
  if (r < 0) {
    tool_error (WHAT ": %s: fsync of its directory: %s", file, strerror (-r));
    return r;
  }
  print_result (ctx, file, &rc, (monotonic_ns () - start) / 1e9);
  return 0;
}

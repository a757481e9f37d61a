/* The index guard: at start-up, refuse a store whose index is not the
 * one its superblock and clean-shutdown marker describe (audit F3).
 *
 * A formatted store's superblock names its index id, and the index's
 * "meta" database names the store uuid and the same id (index.c).  A
 * start refuses to serve when the index file is missing, has no
 * identity (an empty or re-created index), or names another store or
 * index: serving it would answer reads of the segments it forgot as if
 * this server never had them.  After a clean stop the marker also
 * records the index's commit count; an index with fewer commits was
 * rolled back (restored from an older copy) and is refused too.  An
 * index with more commits than the marker, or a marker of another
 * index, only makes the start unclean.
 *
 * A version-1 store (no index id) gets one here, written first into its
 * index and then into its superblock; an index already holding this
 * store's identity (the upgrade was interrupted) gives its id to the
 * superblock.  A new store's index gets its identity before the
 * superblock says formatted (ss_guard_format).
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cleanup.h"
#include "log.h"
#include "parse.h"

#include "internal.h"

/* What an operator can do about a refused index. */
#define FIX_HINT \
  "restore it, or move the store away and start with an empty --data so " \
  "that the server registers as a new one and the MDS re-creates its " \
  "replicas"

/* Refuse PATH: it is missing or not this store's index. */
static int
refuse_foreign (const struct ss_store *st, const char *path, const char *why)
{
  if (st->index_id == 0)
    log_error (
        "index: %s: %s: missing or not this store's index (a "
        "version-1 store, whose superblock names no index id): " FIX_HINT,
        path, why);
  else
    log_error ("index: %s: %s: missing or not this store's index (the "
               "superblock names index id %016" PRIx64 "): " FIX_HINT,
               path, why, st->index_id);
  return -ENOENT;
}

/* Give a version-1 store its index id: adopt the one its index already
 * holds (an interrupted upgrade), else draw one and write it into the
 * index, then into the superblock.  Returns 0 or -errno (logged).
 */
static int
upgrade (struct ss_store *st, struct ss_index *idx, const char *path,
         bool has_ident, uint64_t id)
{
  int r;

  if (!has_ident) {
    r = ss_store_index_id_new (&id);
    if (r == 0)
      r = ss_index_set_ident (idx, st->uuid, id);
    if (r < 0) {
      log_error ("index: %s: writing the index id: %s", path, strerror (-r));
      return r;
    }
  }
  r = ss_store_set_index_id (st, id);
  if (r < 0)
    return r;
  log_info ("store: %s: upgraded to superblock version 2 with index id "
            "%016" PRIx64,
            st->dir, id);
  return 0;
}

/* Compare the index's commit count SEQ with the clean-shutdown marker
 * found at start: fewer commits is a rolled-back index (refused), more
 * commits or a marker of another index an unclean start.
 */
static int
check_seq (struct ss_ctx *ctx, const char *path, uint64_t seq)
{
  struct ss_store *st = ctx->store;

  if (!st->clean)
    return 0;
  if (st->clean_index_id != st->index_id) {
    log_warn ("store: %s/clean: the marker names index id %016" PRIx64
              ", not %016" PRIx64 ": registering as unclean",
              st->dir, st->clean_index_id, st->index_id);
    ctx->reg_flags |= PROTO_REG_UNCLEAN;
    return 0;
  }
  if (seq < st->clean_seq) {
    log_error ("index: %s: rolled back: it has %" PRIu64 " commits, but "
               "it had %" PRIu64 " when the server last stopped cleanly "
               "(an older copy was restored?): " FIX_HINT,
               path, seq, st->clean_seq);
    return -ESTALE;
  }
  if (seq > st->clean_seq) {
    log_warn ("index: %s: %" PRIu64 " commits, more than the %" PRIu64
              " of the last clean stop: registering as unclean",
              path, seq, st->clean_seq);
    ctx->reg_flags |= PROTO_REG_UNCLEAN;
  }
  return 0;
}

/* Open the index of the formatted store into CTX->INDEX and check that
 * it is this store's, as it was at the last clean stop (see the top of
 * this file).  After the fork.  Returns 0 or -errno (logged).
 */
int
ss_guard_open_index (struct ss_ctx *ctx)
{
  struct ss_store *st = ctx->store;
  CLEANUP_FREE char *path = ss_store_index_path (st);
  CLEANUP_FREE char *file = NULL;
  uint8_t uuid[16];
  uint64_t id = 0;
  struct stat sb;
  int r;

  if (path == NULL || asprintf (&file, "%s/data.mdb", path) == -1) {
    file = NULL;
    return -ENOMEM;
  }
  /* LMDB would create an empty one. */
  if (stat (file, &sb) == -1) {
    r = -errno;
    if (r != -ENOENT) {
      log_error ("index: %s: %s", file, strerror (-r));
      return r;
    }
    return refuse_foreign (st, path, "data.mdb does not exist");
  }
  r = ss_index_open (path, st->nslots, &ctx->debug_index, &ctx->index);
  if (r < 0)
    return r;
  r = ss_index_get_ident (ctx->index, uuid, &id);
  if (r < 0 && r != -ENOENT && r != -EINVAL) {
    log_error ("index: %s: reading its identity: %s", path, strerror (-r));
    return r;
  }
  if (r == -EINVAL)
    return refuse_foreign (st, path, "its identity is malformed");
  if (r == 0 && memcmp (uuid, st->uuid, 16) != 0) {
    char u[37];

    uuid_format (uuid, u);
    log_error ("index: %s: the index of store %s, not this one: " FIX_HINT,
               path, u);
    return -ENOENT;
  }
  if (st->index_id == 0) {
    r = upgrade (st, ctx->index, path, r == 0, id);
    if (r < 0)
      return r;
  }
  else if (r == -ENOENT)
    return refuse_foreign (st, path, "it has no identity (empty or new)");
  else if (id != st->index_id) {
    log_error ("index: %s: index id %016" PRIx64 ", but the superblock "
               "names %016" PRIx64 ": " FIX_HINT,
               path, id, st->index_id);
    return -ENOENT;
  }
  return check_seq (ctx, path, ss_index_seq (ctx->index));
}

/* Format the store for the cluster named in REPLY: data file, index
 * with its identity, then the formatted superblock.  After the fork.
 * Returns 0 or -errno (logged).
 */
int
ss_guard_format (struct ss_ctx *ctx, const struct proto_register_reply *reply)
{
  struct ss_store *st = ctx->store;
  CLEANUP_FREE char *path = ss_store_index_path (st);
  int r;

  if (path == NULL)
    return -ENOMEM;
  r = ss_store_format (st, reply->cluster_uuid, reply->segment_size);
  if (r < 0)
    return r;
  r = ss_index_open (path, st->nslots, &ctx->debug_index, &ctx->index);
  if (r < 0)
    return r;
  r = ss_index_set_ident (ctx->index, st->uuid, st->index_id);
  if (r < 0) {
    log_error ("format: %s: writing the index id: %s", path, strerror (-r));
    return r;
  }
  return ss_store_format_commit (st);
}

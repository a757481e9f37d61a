/* Opening and closing volumes, writer leases and epochs: VOL_OPEN,
 * VOL_CLOSE, LEASE_RENEW, EPOCH_NEXT, EPOCH_CLEAN.  Handlers run with
 * mds->lock held.
 *
 * A read-write open takes the volume's exclusive writer lease and starts
 * a new epoch (durable in the catalog before the reply).  The lease lives
 * in memory: the writer renews it well within lease_ms, and rotates its
 * epoch with EPOCH_NEXT.  Once the lease has expired without a clean
 * close another writer may take the volume, but first the volume is
 * resynced (resync.c): that starts a newer epoch, fences the old writer
 * (its renewals, allocations and, at the storage servers, its writes
 * fail with ESTALE) and makes the replicas agree.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <string.h>

#include "buf.h"
#include "log.h"

#include "internal.h"

/* Whether TOKEN (an open token) is set, not all zero. */
static bool
token_set (const uint8_t *token)
{
  size_t i;

  for (i = 0; i < PROTO_OPEN_TOKEN_SIZE; i++)
    if (token[i] != 0)
      return true;
  return false;
}

/* Whether the read-write VOL_OPEN REQ of volume V repeats the open that
 * took its lease L (may be NULL): same token, and the writer has not
 * rotated its epoch since, so it never got the answer.
 */
static bool
open_repeated (const struct proto_vol_request *req,
               const struct catalog_volume *v, const struct mds_lease *l)
{
  return l != NULL && token_set (req->token) &&
         memcmp (l->open_token, req->token, sizeof l->open_token) == 0 &&
         l->epoch == l->base_epoch && l->epoch == v->epoch;
}

/* VOL_OPEN, read-only or read-write.  A read-write open sent again with
 * the token of the open that took the lease (its answer was lost) gets
 * that lease and epoch again, renewed.
 */
int
mds_op_vol_open (struct mds *mds, struct mds_conn *conn, const void *payload,
                 uint32_t len, struct mds_reply *rep)
{
  struct proto_vol_request req;
  struct proto_open_reply reply;
  struct catalog_volume v;
  struct mds_lease *l;
  int r;

  r = proto_decode_vol_request (payload, len, &req);
  if (r < 0)
    return mds_reply_bad (rep, r, "VOL_OPEN");
  if (req.flags & ~(uint32_t)PROTO_OPEN_RW)
    return mds_reply_error (rep, PROTO_EINVAL,
                            "volume %s: unknown open flags 0x%" PRIx32,
                            req.name, req.flags);
  r = catalog_volume_lookup (mds->cat, req.name, &v);
  if (r == -ENOENT)
    return mds_reply_error (rep, PROTO_ENOENT, "volume %s: not found",
                            req.name);
  if (r < 0)
    return mds_reply_catalog (rep, r, "volume %s", req.name);

  memset (&reply, 0, sizeof reply);
  reply.segment_size = mds->cluster.segment_size;
  if ((req.flags & PROTO_OPEN_RW) &&
      open_repeated (&req, &v, mds_lease_find (mds, v.id))) {
    l = mds_lease_find (mds, v.id);
    r = mds_lease_set (mds, v.id, l->base_epoch, l->epoch);
    if (r < 0)
      return mds_reply_errno (rep, r, "volume %s: out of memory", v.name);
    log_info ("volume %s: open for writing by %s repeated, epoch %" PRIu64,
              v.name, conn->peer, v.epoch);
    reply.lease_ms = mds->lease_ms;
  }
  else if (req.flags & PROTO_OPEN_RW) {
    if (mds_lease_active (mds, v.id))
      return mds_reply_error (rep, PROTO_EBUSY,
                              "volume %s: already open for writing", v.name);
    if (mds_resyncing (mds, v.id))
      return mds_reply_error (rep, PROTO_EAGAIN,
                              "volume %s: resyncing after an unclean close",
                              v.name);
    if (v.epoch != 0 && !(v.flags & CATALOG_VOL_CLEAN)) {
      l = mds_lease_find (mds, v.id);
      if (l)
        log_warn ("volume %s: lease of epoch %" PRIu64
                  " expired: resyncing before a new writer takes over",
                  v.name, l->epoch);
      return mds_resync_start (mds, &v, rep);
    }
    r = catalog_volume_begin_epoch (mds->cat, v.id, &v);
    if (r < 0)
      return mds_reply_catalog (rep, r, "volume %s", v.name);
    r = mds_lease_set (mds, v.id, v.epoch, v.epoch);
    if (r < 0)
      return mds_reply_errno (rep, r, "volume %s: out of memory", v.name);
    l = mds_lease_find (mds, v.id);
    memcpy (l->open_token, req.token, sizeof l->open_token);
    log_info ("volume %s: opened for writing by %s, epoch %" PRIu64, v.name,
              conn->peer, v.epoch);
    reply.lease_ms = mds->lease_ms;
  }
  mds_volume_info (mds, &v, &reply.volume);
  proto_encode_open_reply (&reply, &rep->wb);
  return 0;
}

/* LEASE_RENEW: extend the writer's lease by lease_ms from now.  The
 * writer still owns an expired lease as long as nobody took the volume
 * (nor started its resync).  Any of the writer's epochs will do.
 */
int
mds_op_lease_renew (struct mds *mds, struct mds_conn *conn, const void *payload,
                    uint32_t len, struct mds_reply *rep)
{
  struct proto_lease req;
  struct mds_lease *l;
  int r;

  r = proto_decode_lease (payload, len, &req);
  if (r < 0)
    return mds_reply_bad (rep, r, "LEASE_RENEW");
  if (mds_lease_check (mds, req.volume, req.epoch, rep) < 0)
    return 0;
  l = mds_lease_find (mds, req.volume);
  r = mds_lease_set (mds, req.volume, l->base_epoch, l->epoch);
  if (r < 0)
    return mds_reply_errno (rep, r, "volume %" PRIu64 ": out of memory",
                            req.volume);
  return 0;
}

/* EPOCH_NEXT: the writer rotates epochs.  Its current epoch must be the
 * lease's; the new one is durable in the catalog before the reply, and
 * the lease (renewed) carries it from now on.
 */
int
mds_op_epoch_next (struct mds *mds, struct mds_conn *conn, const void *payload,
                   uint32_t len, struct mds_reply *rep)
{
  struct proto_lease req, reply;
  struct catalog_volume v;
  struct mds_lease *l;
  int r;

  r = proto_decode_lease (payload, len, &req);
  if (r < 0)
    return mds_reply_bad (rep, r, "EPOCH_NEXT");
  l = mds_lease_find (mds, req.volume);
  if (l == NULL || l->epoch != req.epoch)
    return mds_reply_error (rep, PROTO_ESTALE,
                            "volume %" PRIu64 ": epoch %" PRIu64
                            " is not the writer's current epoch",
                            req.volume, req.epoch);
  r = catalog_volume_next_epoch (mds->cat, req.volume, req.epoch, &v);
  if (r == -ESTALE)
    return mds_reply_error (rep, PROTO_ESTALE,
                            "volume %" PRIu64 ": epoch %" PRIu64
                            " is not current",
                            req.volume, req.epoch);
  if (r < 0)
    return mds_reply_catalog (rep, r, "volume %" PRIu64, req.volume);
  r = mds_lease_set (mds, v.id, l->base_epoch, v.epoch);
  if (r < 0)
    return mds_reply_errno (rep, r, "volume %s: out of memory", v.name);
  log_debug ("volume %s: epoch %" PRIu64 " -> %" PRIu64, v.name, req.epoch,
             v.epoch);
  reply.volume = v.id;
  reply.epoch = v.epoch;
  proto_encode_lease (&reply, &rep->wb);
  return 0;
}

/* EPOCH_CLEAN: every write of the writer's epochs up to EPOCH is durable
 * on every ok replica; a resync after a crash skips them.
 */
int
mds_op_epoch_clean (struct mds *mds, struct mds_conn *conn, const void *payload,
                    uint32_t len, struct mds_reply *rep)
{
  struct proto_lease req;
  int r;

  r = proto_decode_lease (payload, len, &req);
  if (r < 0)
    return mds_reply_bad (rep, r, "EPOCH_CLEAN");
  if (mds_lease_check (mds, req.volume, req.epoch, rep) < 0)
    return 0;
  r = catalog_volume_set_clean_epoch (mds->cat, req.volume, req.epoch);
  if (r == -EINVAL)
    return mds_reply_error (rep, PROTO_EINVAL,
                            "volume %" PRIu64 ": epoch %" PRIu64
                            " is not started yet",
                            req.volume, req.epoch);
  if (r < 0)
    return mds_reply_catalog (rep, r, "volume %" PRIu64, req.volume);
  return 0;
}

/* VOL_CLOSE: the writer is done; its epoch is marked clean and the lease
 * released.
 */
int
mds_op_vol_close (struct mds *mds, struct mds_conn *conn, const void *payload,
                  uint32_t len, struct mds_reply *rep)
{
  struct proto_lease req;
  int r;

  r = proto_decode_lease (payload, len, &req);
  if (r < 0)
    return mds_reply_bad (rep, r, "VOL_CLOSE");
  if (mds_lease_check (mds, req.volume, req.epoch, rep) < 0)
    return 0;
  r = catalog_volume_mark_clean (mds->cat, req.volume, req.epoch);
  if (r == -ESTALE)
    return mds_reply_error (rep, PROTO_ESTALE,
                            "volume %" PRIu64 ": epoch %" PRIu64
                            " is not current",
                            req.volume, req.epoch);
  if (r < 0)
    return mds_reply_catalog (rep, r, "volume %" PRIu64, req.volume);
  mds_lease_drop (mds, req.volume);
  log_info ("volume %" PRIu64 ": closed cleanly by %s, epoch %" PRIu64,
            req.volume, conn->peer, req.epoch);
  return 0;
}

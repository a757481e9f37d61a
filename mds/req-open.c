/* Opening and closing volumes, writer leases: VOL_OPEN, VOL_CLOSE,
 * LEASE_RENEW.  Handlers run with mds->lock held.
 *
 * A read-write open takes the volume's exclusive writer lease and starts
 * a new epoch (durable in the catalog before the reply).  The lease lives
 * in memory: the writer renews it well within lease_ms.  Once it has
 * expired another writer may take the volume, which starts a newer epoch
 * and so fences the old writer (its renewals, allocations and, at the
 * storage servers, its writes fail with ESTALE).
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <string.h>

#include "buf.h"
#include "log.h"

#include "internal.h"

/* VOL_OPEN, read-only or read-write. */
int
mds_op_vol_open (struct mds *mds, struct mds_conn *conn, const void *payload,
                 uint32_t len, struct mds_reply *rep)
{
  struct proto_vol_request req;
  struct proto_open_reply reply;
  struct catalog_volume v;
  struct mds_lease *l;
  bool was_clean;
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
  if (req.flags & PROTO_OPEN_RW) {
    if (mds_lease_active (mds, v.id))
      return mds_reply_error (rep, PROTO_EBUSY,
                              "volume %s: already open for writing", v.name);
    l = mds_lease_find (mds, v.id);
    if (l)
      log_warn ("volume %s: lease of epoch %" PRIu64
                " expired: a new writer takes over",
                v.name, l->epoch);
    was_clean = v.epoch == 0 || (v.flags & CATALOG_VOL_CLEAN);
    r = catalog_volume_begin_epoch (mds->cat, v.id, &v);
    if (r < 0)
      return mds_reply_catalog (rep, r, "volume %s", v.name);
    r = mds_lease_set (mds, v.id, v.epoch);
    if (r < 0)
      return mds_reply_errno (rep, r, "volume %s: out of memory", v.name);
    /* Resyncing the replicas after a writer died comes with repair; for
     * now only say so.
     */
    log_info ("volume %s: opened for writing by %s, epoch %" PRIu64 "%s",
              v.name, conn->peer, v.epoch,
              was_clean ? "" : " (previous writer did not close it)");
    reply.lease_ms = mds->lease_ms;
  }
  mds_volume_info (mds, &v, &reply.volume);
  proto_encode_open_reply (&reply, &rep->wb);
  return 0;
}

/* LEASE_RENEW: extend the writer's lease by lease_ms from now.  The
 * writer still owns an expired lease as long as nobody took the volume.
 */
int
mds_op_lease_renew (struct mds *mds, struct mds_conn *conn, const void *payload,
                    uint32_t len, struct mds_reply *rep)
{
  struct proto_lease req;
  int r;

  r = proto_decode_lease (payload, len, &req);
  if (r < 0)
    return mds_reply_bad (rep, r, "LEASE_RENEW");
  if (mds_lease_check (mds, req.volume, req.epoch, rep) < 0)
    return 0;
  r = mds_lease_set (mds, req.volume, req.epoch);
  if (r < 0)
    return mds_reply_errno (rep, r, "volume %" PRIu64 ": out of memory",
                            req.volume);
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

/* Requests about the cluster and its storage servers: STATUS, REPAIR,
 * SERVER_REGISTER, SERVER_HEARTBEAT, SERVER_LIST, SERVER_DRAIN,
 * SERVER_REMOVE.  Handlers run with mds->lock held.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deadline.h"
#include "buf.h"
#include "cleanup.h"
#include "log.h"
#include "parse.h"
#include "sock.h"

#include "internal.h"
#include "placement.h"

/* A server's index_seq raised by heartbeats is saved in the catalog at
 * most this often.
 */
#define INDEX_SEQ_SAVE_MS 60000

/* A + B, saturating instead of wrapping. */
static uint64_t
add_sat (uint64_t a, uint64_t b)
{
  return a + b < a ? UINT64_MAX : a + b;
}

/* Log when server S's reported use ST->used crosses the high-water mark
 * (up: placement stops giving it new segments; down: it gets them
 * again).  The catalog's count may reach the mark first: placement
 * checks that one on every allocation.
 */
static void
check_high_water (struct mds *mds, const struct catalog_server *s,
                  struct mds_server_state *st)
{
  uint64_t cap = st->capacity, pct = mds->high_water;
  uint64_t mark = cap / 100 * pct + cap % 100 * pct / 100;
  bool above = cap > 0 && st->used >= mark;

  if (above == st->above_mark)
    return;
  st->above_mark = above;
  if (above)
    log_warn ("server %" PRIu32 " (%s): %" PRIu64 " of %" PRIu64
              " bytes used, at the %" PRIu64 "%% high-water mark: "
              "no new segments on it",
              s->id, s->address, st->used, cap, pct);
  else
    log_info ("server %" PRIu32 " (%s): %" PRIu64 " of %" PRIu64
              " bytes used, below the %" PRIu64 "%% high-water mark again",
              s->id, s->address, st->used, cap, pct);
}

/* The server with id ID in SERVERS[0..N) (id order), or NULL. */
static const struct catalog_server *
find_server (const struct catalog_server *servers, size_t n, uint32_t id)
{
  size_t lo = 0, hi = n;

  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;

    if (servers[mid].id == id)
      return &servers[mid];
    if (servers[mid].id < id)
      lo = mid + 1;
    else
      hi = mid;
  }
  return NULL;
}

/* The replica count of volume ID in VOLS[0..N) (id order), or 0. */
static uint32_t
volume_replicas (const struct catalog_volume *vols, size_t n, uint64_t id)
{
  size_t lo = 0, hi = n;

  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;

    if (vols[mid].id == id)
      return vols[mid].replicas;
    if (vols[mid].id < id)
      lo = mid + 1;
    else
      hi = mid;
  }
  return 0;
}

/* Count into INFO the degraded segments (fewer ok replicas than their
 * volume wants, or any replica not ok or on a server that is out or
 * draining: repair has work to do) and the replicas being copied, over
 * every segment.
 * SERVERS[0..N) is the server list.  Returns 0 or a catalog error.
 */
static int
segment_health (struct mds *mds, const struct catalog_server *servers, size_t n,
                struct proto_status_info *info)
{
  CLEANUP_FREE struct catalog_volume *vols = NULL;
  size_t nvols;
  uint64_t after = 0;
  int r;

  r = catalog_volume_list (mds->cat, &vols, &nvols);
  if (r < 0)
    return r;
  for (;;) {
    CLEANUP_FREE struct catalog_segment *segs = NULL;
    size_t nsegs, i;

    r = catalog_segment_list (mds->cat, after, MDS_REPAIR_PAGE, &segs, &nsegs);
    if (r < 0)
      return r;
    for (i = 0; i < nsegs; ++i) {
      const struct catalog_segment *sg = &segs[i];
      uint32_t want = volume_replicas (vols, nvols, sg->volume);
      uint32_t k, ok = 0;
      bool bad = false;

      for (k = 0; k < sg->nreplicas && k < CATALOG_REPLICAS_MAX; ++k) {
        const struct catalog_server *srv =
            find_server (servers, n, sg->replicas[k].server);
        uint32_t state = srv ? mds_server_state (mds, srv) : PROTO_SERVER_OUT;

        if (sg->replicas[k].state == CATALOG_REPLICA_SYNCING)
          info->syncing++;
        if (sg->replicas[k].state != CATALOG_REPLICA_OK ||
            state == PROTO_SERVER_OUT || state == PROTO_SERVER_DRAINING)
          bad = true;
        else
          ok++;
      }
      if (bad || ok < want)
        info->degraded++;
    }
    if (nsegs < MDS_REPAIR_PAGE)
      return 0;
    after = segs[nsegs - 1].id;
  }
}

/* Fill INFO (zeroed) with the cluster's totals, the standbys and
 * ETCD[0..NETCD), etcd's endpoints, and encode it into REP (mds->lock
 * held).
 */
static int
fill_status (struct mds *mds, struct mds_reply *rep,
             struct proto_status_info *info, const struct proto_etcd_info *etcd,
             uint32_t netcd)
{
  CLEANUP_FREE struct catalog_server *servers = NULL;
  struct catalog_stats stats;
  size_t n, i;
  int r;

  r = catalog_stats (mds->cat, &stats);
  if (r < 0)
    return mds_reply_catalog (rep, r, "cluster statistics");
  r = catalog_server_list (mds->cat, &servers, &n);
  if (r < 0)
    return mds_reply_catalog (rep, r, "server list");

  memcpy (info->cluster_uuid, mds->cluster.uuid, sizeof info->cluster_uuid);
  info->segment_size = mds->cluster.segment_size;
  info->servers = n > UINT32_MAX ? UINT32_MAX : n;
  info->volumes = stats.volumes > UINT32_MAX ? UINT32_MAX : stats.volumes;
  info->segments = stats.segments;
  for (i = 0; i < n; ++i) {
    uint64_t used;

    if (mds_server_is_up (mds, servers[i].id))
      info->servers_up++;
    info->capacity =
        add_sat (info->capacity, mds_server_capacity (mds, &servers[i]));
    r = mds_server_used (mds, servers[i].id, &used, NULL);
    if (r < 0)
      return mds_reply_catalog (rep, r, "server %" PRIu32, servers[i].id);
    info->used = add_sat (info->used, used);
  }
  r = segment_health (mds, servers, n, info);
  if (r < 0)
    return mds_reply_catalog (rep, r, "segment list");
  info->resyncing = mds->nresyncs;
  info->unproven = mds_unproven_count (mds);
  mds_index_status (mds, info);
  mds_ha_status (mds, info);
  if (netcd > PROTO_STATUS_ETCD_MAX)
    netcd = PROTO_STATUS_ETCD_MAX;
  if (netcd > 0)
    memcpy (info->etcd, etcd, netcd * sizeof *etcd);
  info->netcd = netcd;
  proto_encode_status_info (info, &rep->wb);
  return 0;
}

/* Reply to STATUS and REPAIR (mds->lock held): see fill_status. */
static int
reply_status (struct mds *mds, struct mds_reply *rep,
              const struct proto_etcd_info *etcd, uint32_t netcd)
{
  /* Too large for a frame (the standbys and etcd endpoints). */
  struct proto_status_info *info = calloc (1, sizeof *info);
  int r;

  if (info == NULL)
    return mds_reply_errno (rep, -ENOMEM, "STATUS");
  r = fill_status (mds, rep, info, etcd, netcd);
  free (info);
  return r;
}

/* STATUS: cluster totals, the standbys and etcd's health.  Called
 * without mds->lock (MDS_OP_UNLOCKED): etcd's members are asked first,
 * which may take a while (ha.c), then the lock is taken for the rest.
 */
int
mds_op_status (struct mds *mds, struct mds_conn *conn, const void *payload,
               uint32_t len, struct mds_reply *rep)
{
  struct proto_etcd_info etcd[PROTO_STATUS_ETCD_MAX];
  uint32_t netcd;

  if (len != 0)
    return mds_reply_bad (rep, -EBADMSG, "STATUS");
  netcd = mds_ha_etcd_health (mds, etcd, PROTO_STATUS_ETCD_MAX);
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
  return reply_status (mds, rep, etcd, netcd);
}

/* REPAIR: start a repair pass now, retrying segments that failed
 * recently; reply with the cluster's totals.
 */
int
mds_op_repair (struct mds *mds, struct mds_conn *conn, const void *payload,
               uint32_t len, struct mds_reply *rep)
{
  if (len != 0)
    return mds_reply_bad (rep, -EBADMSG, "REPAIR");
  log_info ("repair asked by %s", conn->peer);
  mds_repair_kick (mds, true);
  return reply_status (mds, rep, NULL, 0);
}

/* Save ST->index_seq in server ST->id's catalog record if it differs
 * from what was saved (mds->lock held).  A failure is logged: the value
 * stays in memory, and is saved at the next chance.
 */
static void
save_index_seq (struct mds *mds, struct mds_server_state *st)
{
  int r;

  if (st->index_seq == st->index_seq_saved)
    return;
  r = catalog_server_set_index_seq (mds->cat, st->id, st->index_seq);
  if (r < 0) {
    log_warn ("catalog: server %" PRIu32 ": saving index_seq: %s", st->id,
              catalog_strerror (r));
    return;
  }
  st->index_seq_saved = st->index_seq;
  st->index_seq_saved_ns = monotonic_ns ();
}

/* What a registration of server S (REQ) says about its store
 * (mds->lock held): record its incarnation and index_seq, and start a
 * check of its replicas if the store went back in time (its index_seq
 * is below the highest seen) or it did not stop cleanly.
 */
static void
registered (struct mds *mds, const struct catalog_server *s,
            const struct proto_register *req)
{
  struct mds_server_state *st = mds_server_find (mds, s->id);
  bool unclean = (req->flags & PROTO_REG_UNCLEAN) != 0, rollback;
  uint64_t seen;

  if (st == NULL)
    return;
  if (st->index_seq_saved < s->index_seq)
    st->index_seq_saved = s->index_seq;
  seen = st->index_seq > s->index_seq ? st->index_seq : s->index_seq;
  rollback = req->index_seq < seen;
  if (rollback) {
    log_error ("server %" PRIu32 " (%s): store went back in time: index_seq "
               "%" PRIu64 ", %" PRIu64 " seen before: every replica on it "
               "may lack writes",
               s->id, s->address, req->index_seq, seen);
    /* Its replicas are doubted once; from now on this is the baseline. */
    st->index_seq = req->index_seq;
  }
  else
    st->index_seq = seen > req->index_seq ? seen : req->index_seq;
  save_index_seq (mds, st);

  /* The same start registering again (after an MDS restart or a lost
   * connection) was checked already.
   */
  if (unclean && st->checked_incarnation == req->incarnation &&
      req->incarnation != 0 && st->incarnation == req->incarnation)
    unclean = false;
  st->incarnation = req->incarnation;
  /* It may have lost or never had the cluster tables. */
  st->tables_pushed = 0;
  mds_tables_kick (mds);
  if (unclean)
    log_warn ("server %" PRIu32 " (%s): registered after an unclean stop "
              "(incarnation %016" PRIx64 "): writes it acknowledged but had "
              "not made durable may be gone",
              s->id, s->address, req->incarnation);
  if (!unclean && !rollback) {
    if (st->checks == 0)
      st->unchecked = false;
    return;
  }
  st->checked_incarnation = req->incarnation;
  mds_check_server (mds, s->id, s->address, rollback);
}

/* SERVER_REGISTER: a storage server announces itself.  A store formatted
 * for another cluster or segment size is refused; otherwise the catalog
 * gives it an id (the same one again for a known uuid).  An unclean
 * start or a rollback starts a check of its replicas (unclean.c), and
 * every registration the announcement of its stale replicas'
 * generations (announce.c): the reply waits for neither.
 */
int
mds_op_server_register (struct mds *mds, struct mds_conn *conn,
                        const void *payload, uint32_t len,
                        struct mds_reply *rep)
{
  struct proto_register req;
  struct proto_register_reply reply;
  struct mds_server_state *st;
  struct catalog_server s;
  char uuid[37], cluster[37], theirs[37];
  int r;

  r = proto_decode_register (payload, len, &req);
  if (r < 0)
    return mds_reply_bad (rep, r, "SERVER_REGISTER");
  uuid_format (req.uuid, uuid);
  if (uuid_is_zero (req.uuid))
    return mds_reply_error (rep, PROTO_EINVAL,
                            "server register: the server uuid is zero");
  if (!uuid_is_zero (req.cluster_uuid) &&
      memcmp (req.cluster_uuid, mds->cluster.uuid, 16) != 0) {
    uuid_format (req.cluster_uuid, theirs);
    uuid_format (mds->cluster.uuid, cluster);
    log_warn ("server %s: refused: store belongs to cluster %s, not %s", uuid,
              theirs, cluster);
    return mds_reply_error (rep, PROTO_EINVAL,
                            "server %s: store belongs to cluster %s, "
                            "this is cluster %s",
                            uuid, theirs, cluster);
  }
  if (req.segment_size != 0 && req.segment_size != mds->cluster.segment_size) {
    log_warn ("server %s: refused: segment size %" PRIu32 ", not %" PRIu32,
              uuid, req.segment_size, mds->cluster.segment_size);
    return mds_reply_error (rep, PROTO_EINVAL,
                            "server %s: store segment size %" PRIu32
                            " differs from the cluster's %" PRIu32,
                            uuid, req.segment_size, mds->cluster.segment_size);
  }
  if (req.address[0] == '\0' || sock_address_check (req.address) < 0)
    return mds_reply_error (rep, PROTO_EINVAL,
                            "server %s: invalid address '%s'", uuid,
                            req.address);

  r = catalog_server_register (mds->cat, req.uuid, req.address, req.zone,
                               req.capacity, &s);
  if (r < 0)
    return mds_reply_catalog (rep, r, "server %s", uuid);
  r = mds_server_heard (mds, s.id, req.capacity, req.used);
  if (r < 0)
    return mds_reply_errno (rep, r, "server %s: out of memory", uuid);
  /* It may have missed fences while it was away. */
  st = mds_server_find (mds, s.id);
  if (st) {
    st->needs_fences = true;
    st->fence_cursor = 0;
  }
  log_info ("server %" PRIu32 " (%s) registered: address %s, zone \"%s\", "
            "capacity %" PRIu64 ", index_seq %" PRIu64 "%s",
            s.id, uuid, req.address, req.zone, req.capacity, req.index_seq,
            req.flags & PROTO_REG_UNCLEAN ? ", unclean start" : "");
  mds_index_server (mds, &s);
  registered (mds, &s, &req);
  /* It may have missed the new generations of its stale replicas. */
  mds_announce_server (mds, s.id);
  mds_repair_kick (mds, true);

  memset (&reply, 0, sizeof reply);
  reply.server_id = s.id;
  reply.segment_size = mds->cluster.segment_size;
  memcpy (reply.cluster_uuid, mds->cluster.uuid, 16);
  reply.heartbeat_ms = mds->heartbeat_ms;
  proto_encode_register_reply (&reply, &rep->wb);
  return 0;
}

/* Fill FENCES (room for MDS_FENCE_BATCH) with the next batch of fences
 * server ST needs, and *N with their count: every volume's, in id order
 * from ST->fence_cursor.  A volume with a writer is fenced at the
 * writer's first epoch (its writes of older epochs may still be in
 * flight), others at their current epoch.  Returns 0 or a catalog
 * error.
 */
static int
next_fences (struct mds *mds, struct mds_server_state *st,
             struct proto_fence *fences, uint32_t *n)
{
  CLEANUP_FREE struct catalog_volume *vols = NULL;
  size_t nvols, i;
  int r;

  *n = 0;
  if (!st->needs_fences)
    return 0;
  r = catalog_volume_list (mds->cat, &vols, &nvols);
  if (r < 0)
    return r;
  for (i = 0; i < nvols && *n < MDS_FENCE_BATCH; ++i) {
    const struct mds_lease *l;

    if (vols[i].id <= st->fence_cursor || vols[i].epoch == 0)
      continue;
    l = mds_lease_find (mds, vols[i].id);
    fences[*n].volume = vols[i].id;
    fences[*n].epoch = l ? l->base_epoch : vols[i].epoch;
    (*n)++;
    st->fence_cursor = vols[i].id;
  }
  if (i == nvols) {
    st->needs_fences = false;
    st->fence_cursor = 0;
  }
  return 0;
}

/* A heartbeat of server S (state ST) reports INDEX_SEQ (mds->lock
 * held): keep the highest seen, saving it in the catalog at most every
 * INDEX_SEQ_SAVE_MS (a commit per heartbeat would cost too much; a
 * registration saves it at once).  A lower one than seen is not a
 * rollback: only a restart can roll a store back, and a restart
 * registers.
 */
static void
index_seq_heard (struct mds *mds, const struct catalog_server *s,
                 struct mds_server_state *st, uint64_t index_seq)
{
  if (st->index_seq_saved < s->index_seq)
    st->index_seq_saved = s->index_seq;
  if (st->index_seq < s->index_seq)
    st->index_seq = s->index_seq;
  if (index_seq <= st->index_seq)
    return;
  st->index_seq = index_seq;
  if (monotonic_ns () - st->index_seq_saved_ns >=
      (uint64_t)INDEX_SEQ_SAVE_MS * 1000000u)
    save_index_seq (mds, st);
}

/* The body of SERVER_HEARTBEAT once decoded: record the server's load,
 * forget the garbage it has deleted, hand it the next batch and the
 * fences it needs.
 */
static int
heartbeat (struct mds *mds, const struct proto_heartbeat *hb,
           struct mds_reply *rep)
{
  CLEANUP_FREE uint64_t *garbage = NULL;
  CLEANUP_FREE struct proto_fence *fences = NULL;
  struct proto_heartbeat_reply reply;
  struct mds_server_state *st;
  struct catalog_server s;
  size_t n;
  int r;

  r = catalog_server_get (mds->cat, hb->server_id, &s);
  if (r == -ENOENT)
    return mds_reply_error (
        rep, PROTO_ENOENT, "server %" PRIu32 ": not registered", hb->server_id);
  if (r < 0)
    return mds_reply_catalog (rep, r, "server %" PRIu32, hb->server_id);
  if (mds_server_find (mds, s.id) == NULL || !mds_server_is_up (mds, s.id)) {
    log_info ("server %" PRIu32 " (%s): up", s.id, s.address);
    mds_repair_kick (mds, true);
  }
  r = mds_server_heard (mds, s.id, hb->capacity, hb->used);
  if (r < 0)
    return mds_reply_errno (rep, r, "server %" PRIu32 ": out of memory", s.id);
  st = mds_server_find (mds, s.id);
  check_high_water (mds, &s, st);
  index_seq_heard (mds, &s, st, hb->index_seq);
  if (hb->n > 0) {
    r = catalog_garbage_done (mds->cat, s.id, hb->segments, hb->n);
    if (r < 0)
      return mds_reply_catalog (rep, r, "server %" PRIu32 " garbage", s.id);
  }
  /* Its state, capacity and use as it reports them now, and its garbage
   * deleted: placement's entry is refreshed from the authoritative
   * numbers (place.c).
   */
  mds_index_server (mds, &s);
  r = catalog_garbage_get (mds->cat, s.id, MDS_GARBAGE_BATCH, &garbage, &n);
  if (r < 0)
    return mds_reply_catalog (rep, r, "server %" PRIu32 " garbage", s.id);
  memset (&reply, 0, sizeof reply);
  reply.n = n;
  reply.segments = garbage;
  fences = calloc (MDS_FENCE_BATCH, sizeof *fences);
  if (fences == NULL)
    return mds_reply_errno (rep, -ENOMEM, "server %" PRIu32 ": out of memory",
                            s.id);
  r = next_fences (mds, mds_server_find (mds, s.id), fences, &reply.nfences);
  if (r < 0)
    return mds_reply_catalog (rep, r, "volume list");
  reply.fences = fences;
  if (reply.nfences > 0)
    log_debug ("server %" PRIu32 ": sending %" PRIu32 " fences", s.id,
               reply.nfences);
  proto_encode_heartbeat_reply (&reply, &rep->wb);
  return 0;
}

/* SERVER_HEARTBEAT. */
int
mds_op_server_heartbeat (struct mds *mds, struct mds_conn *conn,
                         const void *payload, uint32_t len,
                         struct mds_reply *rep)
{
  struct proto_heartbeat hb;
  int r;

  r = proto_decode_heartbeat (payload, len, &hb);
  if (r < 0)
    return mds_reply_bad (rep, r, "SERVER_HEARTBEAT");
  r = heartbeat (mds, &hb, rep);
  proto_heartbeat_free (&hb);
  return r;
}

/* SERVER_LIST: every server with its state and load. */
int
mds_op_server_list (struct mds *mds, struct mds_conn *conn, const void *payload,
                    uint32_t len, struct mds_reply *rep)
{
  CLEANUP_FREE struct catalog_server *servers = NULL;
  CLEANUP_FREE struct proto_server_info *infos = NULL;
  struct proto_server_list list;
  size_t n, i;
  int r;

  if (len != 0)
    return mds_reply_bad (rep, -EBADMSG, "SERVER_LIST");
  r = catalog_server_list (mds->cat, &servers, &n);
  if (r < 0)
    return mds_reply_catalog (rep, r, "server list");
  if (n > PROTO_LIST_MAX)
    n = PROTO_LIST_MAX;
  infos = calloc (n ? n : 1, sizeof *infos);
  if (infos == NULL)
    return mds_reply_error (rep, PROTO_ENOMEM, "server list: out of memory");
  for (i = 0; i < n; ++i) {
    struct proto_server_info *p = &infos[i];

    p->id = servers[i].id;
    p->state = mds_server_state (mds, &servers[i]);
    memcpy (p->uuid, servers[i].uuid, 16);
    p->capacity = mds_server_capacity (mds, &servers[i]);
    r = mds_server_used (mds, servers[i].id, &p->used, &p->segments);
    if (r < 0)
      return mds_reply_catalog (rep, r, "server %" PRIu32, servers[i].id);
    snprintf (p->address, sizeof p->address, "%s", servers[i].address);
    snprintf (p->zone, sizeof p->zone, "%s", servers[i].zone);
  }
  list.n = n;
  list.servers = infos;
  proto_encode_server_list (&list, &rep->wb);
  return 0;
}

/* SERVER_DRAIN: mark a server draining; repair moves its replicas to
 * other servers.  Replies at once.
 */
int
mds_op_server_drain (struct mds *mds, struct mds_conn *conn,
                     const void *payload, uint32_t len, struct mds_reply *rep)
{
  struct proto_server_request req;
  struct catalog_server s;
  uint64_t count = 0;
  int r;

  r = proto_decode_server_request (payload, len, &req);
  if (r < 0)
    return mds_reply_bad (rep, r, "SERVER_DRAIN");
  r = catalog_server_get (mds->cat, req.server, &s);
  if (r == -ENOENT)
    return mds_reply_error (rep, PROTO_ENOENT, "server %" PRIu32 ": not found",
                            req.server);
  if (r < 0)
    return mds_reply_catalog (rep, r, "server %" PRIu32, req.server);
  if (s.state == CATALOG_SERVER_DRAINING)
    return 0;
  r = catalog_server_set_state (mds->cat, s.id, CATALOG_SERVER_DRAINING);
  mds_tables_kick (mds);
  if (r < 0)
    return mds_reply_catalog (rep, r, "server %" PRIu32, s.id);
  s.state = CATALOG_SERVER_DRAINING;
  mds_index_server (mds, &s); /* no new segments on it from now on */
  catalog_server_count_segments (mds->cat, s.id, &count);
  log_info ("server %" PRIu32 " (%s): draining %" PRIu64
            " replicas, asked by %s",
            s.id, s.address, count, conn->peer);
  mds_repair_kick (mds, true);
  return 0;
}

/* SERVER_REMOVE: forget a server that is draining or out and holds no
 * replica any more.
 */
int
mds_op_server_remove (struct mds *mds, struct mds_conn *conn,
                      const void *payload, uint32_t len, struct mds_reply *rep)
{
  struct proto_server_request req;
  struct catalog_server s;
  uint64_t count = 0;
  uint32_t state;
  int r;

  r = proto_decode_server_request (payload, len, &req);
  if (r < 0)
    return mds_reply_bad (rep, r, "SERVER_REMOVE");
  r = catalog_server_get (mds->cat, req.server, &s);
  if (r == -ENOENT)
    return mds_reply_error (rep, PROTO_ENOENT, "server %" PRIu32 ": not found",
                            req.server);
  if (r < 0)
    return mds_reply_catalog (rep, r, "server %" PRIu32, req.server);
  state = mds_server_state (mds, &s);
  if (state != PROTO_SERVER_DRAINING && state != PROTO_SERVER_OUT)
    return mds_reply_error (rep, PROTO_EBUSY,
                            "server %" PRIu32 ": %s: drain it first", s.id,
                            proto_server_state_name (state));
  r = catalog_server_remove (mds->cat, s.id);
  mds_tables_kick (mds);
  if (r == -EBUSY) {
    catalog_server_count_segments (mds->cat, s.id, &count);
    return mds_reply_error (
        rep, PROTO_EBUSY,
        "server %" PRIu32 ": still holds %" PRIu64 " replicas", s.id, count);
  }
  if (r < 0)
    return mds_reply_catalog (rep, r, "server %" PRIu32, s.id);
  mds_server_forget (mds, s.id);
  placement_index_remove (mds->index, s.id);
  log_info ("server %" PRIu32 " (%s): removed, asked by %s", s.id, s.address,
            conn->peer);
  return 0;
}

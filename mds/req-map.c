/* The virtualization map and its segments: MAP_GET, MAP_ALLOC,
 * REPLICA_FAILED, MAP_RAISE_GEN, SEG_RESYNC.  Handlers run with
 * mds->lock held, but MAP_GET and MAP_ALLOC let it go around their
 * catalog calls (see unlocked_begin), and MAP_RAISE_GEN and SEG_RESYNC
 * run without it (taking it between their calls to servers; resync.c
 * does SEG_RESYNC's work).
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "cleanup.h"
#include "log.h"
#include "minmax.h"

#include "internal.h"
#include "placement.h"

/* How often one MAP_ALLOC chooses again after finding a chosen server
 * down (place_holes).
 */
#define MAX_DOWN_RETRIES 1000

/* Let go of mds->lock, which loop.c holds around every handler, for
 * catalog calls that need none of the state it protects: the catalog is
 * safe for concurrent use and keeps itself consistent (LMDB serializes
 * its writers).  So lookups of several connections run in parallel, and
 * the catalog's group commit gathers the allocations of concurrent
 * MAP_ALLOCs into one synced transaction instead of queueing each behind
 * the previous one's fsync.  unlocked_end takes the lock back: call it
 * before returning to loop.c, on every path.
 */
static void
unlocked_begin (struct mds *mds)
{
  pthread_mutex_unlock (&mds->lock);
}

/* Take mds->lock back (see unlocked_begin). */
static void
unlocked_end (struct mds *mds)
{
  pthread_mutex_lock (&mds->lock);
}

/* Encode catalog map entries ENTRIES[0..N) as a map reply into REP. */
static int
reply_map (const struct catalog_map_entry *entries, size_t n,
           struct mds_reply *rep)
{
  CLEANUP_FREE struct proto_map_entry *out = NULL;
  struct proto_map map;
  size_t i;
  uint32_t k;

  out = calloc (n ? n : 1, sizeof *out);
  if (out == NULL)
    return mds_reply_error (rep, PROTO_ENOMEM, "map: out of memory");
  for (i = 0; i < n; ++i) {
    const struct catalog_segment *s = &entries[i].segment;

    out[i].index = entries[i].index;
    out[i].segment = s->id;
    out[i].gen = s->gen;
    out[i].nreplicas = MIN (s->nreplicas, (uint32_t)PROTO_REPLICAS_MAX);
    for (k = 0; k < out[i].nreplicas; ++k) {
      out[i].replicas[k].server = s->replicas[k].server;
      out[i].replicas[k].state = s->replicas[k].state;
    }
  }
  map.n = n;
  map.entries = out;
  proto_encode_map (&map, &rep->wb);
  return 0;
}

/* Look up the volume of map request REQ and clip its range to the
 * volume: *V and [REQ->start, *END) (empty if START is past the end).
 * Returns 0, or fills REP and returns -ENOENT (or another catalog error).
 */
static int
map_range (struct mds *mds, const struct proto_map_request *req,
           struct catalog_volume *v, uint64_t *end, struct mds_reply *rep)
{
  uint64_t seg = mds->cluster.segment_size;
  uint64_t nsegs;
  int r;

  r = catalog_volume_get (mds->cat, req->volume, v);
  if (r == -ENOENT) {
    mds_reply_error (rep, PROTO_ENOENT, "volume %" PRIu64 ": not found",
                     req->volume);
    return r;
  }
  if (r < 0) {
    mds_reply_catalog (rep, r, "volume %" PRIu64, req->volume);
    return r;
  }
  nsegs = v->size / seg + (v->size % seg != 0);
  if (req->start >= nsegs)
    *end = req->start;
  else
    *end = req->start + MIN ((uint64_t)req->count, nsegs - req->start);
  return 0;
}

/* Reply with the map of [START, END) of volume ID. */
static int
reply_range (struct mds *mds, uint64_t id, uint64_t start, uint64_t end,
             struct mds_reply *rep)
{
  CLEANUP_FREE struct catalog_map_entry *entries = NULL;
  size_t n = 0;
  int r;

  if (end > start) {
    r = catalog_map_get (mds->cat, id, start, end - start, &entries, &n);
    if (r < 0)
      return mds_reply_catalog (rep, r, "volume %" PRIu64 " map", id);
  }
  return reply_map (entries, n, rep);
}

/* MAP_GET: the mapped entries of a range; holes are left out.  Reads
 * only the catalog (and the cluster record, read-only while serving), so
 * it runs without mds->lock.
 */
int
mds_op_map_get (struct mds *mds, struct mds_conn *conn, const void *payload,
                uint32_t len, struct mds_reply *rep)
{
  struct proto_map_request req;
  struct catalog_volume v;
  uint64_t end;
  int r;

  r = proto_decode_map_request (payload, len, &req);
  if (r < 0)
    return mds_reply_bad (rep, r, "MAP_GET");
  unlocked_begin (mds);
  if (map_range (mds, &req, &v, &end, rep) == 0)
    reply_range (mds, v.id, req.start, end, rep);
  unlocked_end (mds);
  return 0;
}

/* Add the replica servers of catalog segment S to AVOID[0..*NAVOID),
 * which has room for 2 * PLACEMENT_REPLICAS_MAX ids.
 */
static void
add_avoid (const struct catalog_segment *s, uint32_t *avoid, size_t *navoid)
{
  uint32_t k;

  for (k = 0; k < s->nreplicas && k < PLACEMENT_REPLICAS_MAX; ++k)
    avoid[(*navoid)++] = s->replicas[k].server;
}

/* Give back to the placement index the segments HOLES[0..NHOLES)
 * charged to their servers: they are not allocated after all.
 */
static void
uncharge_holes (struct mds *mds, const struct catalog_map_entry *holes,
                size_t nholes)
{
  uint32_t ids[CATALOG_REPLICAS_MAX];
  size_t i;
  uint32_t k;

  for (i = 0; i < nholes; ++i) {
    const struct catalog_segment *s = &holes[i].segment;

    for (k = 0; k < s->nreplicas && k < CATALOG_REPLICAS_MAX; ++k)
      ids[k] = s->replicas[k].server;
    mds_index_uncharge (mds, ids, k);
  }
}

/* Choose replicas for every hole of [START, END) of volume V, given the
 * mapped entries EXISTING[0..NEXISTING) of [START - 1, END + 1).  A new
 * segment avoids the servers of both its neighbours, so that
 * consecutive segments land on different servers whatever order they
 * are allocated in.  The placement index (place.c) charges each server
 * chosen; on failure the charges are given back.  Fills HOLES (room for
 * END - START) and *NHOLES.  Returns 0, or fills REP and returns a
 * negative errno.
 */
static int
place_holes (struct mds *mds, const struct catalog_volume *v, uint64_t start,
             uint64_t end, const struct catalog_map_entry *existing,
             size_t nexisting, struct catalog_map_entry *holes, size_t *nholes,
             struct mds_reply *rep)
{
  const struct catalog_segment *prev = NULL;
  uint32_t avoid[2 * PLACEMENT_REPLICAS_MAX], out[PLACEMENT_REPLICAS_MAX];
  size_t navoid, j = 0;
  uint64_t idx;
  uint32_t k;
  unsigned tries;
  int r;

  *nholes = 0;
  for (idx = start > 0 ? start - 1 : start; idx < end; ++idx) {
    struct catalog_segment *new;

    while (j < nexisting && existing[j].index < idx)
      j++;
    if (j < nexisting && existing[j].index == idx) {
      prev = &existing[j].segment;
      continue;
    }
    if (idx < start) {
      prev = NULL; /* the index before the range is a hole */
      continue;
    }
    navoid = 0;
    if (prev)
      add_avoid (prev, avoid, &navoid);
    if (j < nexisting && existing[j].index == idx + 1)
      add_avoid (&existing[j].segment, avoid, &navoid);
    /* Until a choice has only servers that are up: each retry marks
     * one more down in the index, so this ends; the bound only guards
     * against an index that failed to take a mark (out of memory).
     */
    tries = 0;
    do {
      r = placement_index_choose (mds->index, v->replicas, avoid, navoid,
                                  &mds->rng, out);
      if (r == 0 && mds_index_check_up (mds, out, v->replicas) > 0) {
        mds_index_uncharge (mds, out, v->replicas);
        r = ++tries < MAX_DOWN_RETRIES ? -EAGAIN : -EIO;
      }
    } while (r == -EAGAIN);
    if (r < 0) {
      char why[PROTO_ERRMSG_MAX];

      placement_index_explain (mds->index, v->replicas, why, sizeof why);
      uncharge_holes (mds, holes, *nholes);
      *nholes = 0;
      /* The client logs it; a cluster out of room would flood this log
       * (place.c warns once when too few domains have room).
       */
      log_debug ("volume %s: cannot place %" PRIu32 " replicas: %s", v->name,
                 v->replicas, why);
      mds_reply_error (rep,
                       r == -ENOSPC ? PROTO_ENOSPC
                       : r == -EIO  ? PROTO_EIO
                                    : PROTO_EINVAL,
                       "volume %s: cannot place %" PRIu32 " replicas: %s",
                       v->name, v->replicas, why);
      return r;
    }
    new = &holes[(*nholes)++].segment;
    memset (new, 0, sizeof *new);
    holes[*nholes - 1].index = idx;
    new->nreplicas = v->replicas;
    for (k = 0; k < v->replicas; ++k) {
      new->replicas[k].server = out[k];
      new->replicas[k].state = CATALOG_REPLICA_OK;
    }
    prev = new;
  }
  return 0;
}

/* The bytes HOLES[0..NHOLES) place on each server: *OUT (malloc'd,
 * caller frees) and *N.  Returns 0 or -ENOMEM.
 */
static int
inflight_sum (struct mds *mds, const struct catalog_map_entry *holes,
              size_t nholes, struct mds_inflight **out, size_t *n)
{
  struct mds_inflight *list = NULL, *p;
  size_t i, j, len = 0;
  uint32_t k;

  for (i = 0; i < nholes; ++i) {
    for (k = 0; k < holes[i].segment.nreplicas; ++k) {
      uint32_t server = holes[i].segment.replicas[k].server;

      for (j = 0; j < len; ++j)
        if (list[j].server == server)
          break;
      if (j == len) {
        p = realloc (list, (len + 1) * sizeof *p);
        if (p == NULL) {
          free (list);
          return -ENOMEM;
        }
        list = p;
        list[len++] = (struct mds_inflight){ .server = server };
      }
      list[j].bytes += mds->cluster.segment_size;
    }
  }
  *out = list;
  *n = len;
  return 0;
}

/* Count LIST[0..N) as placed by a MAP_ALLOC being committed (ADD true),
 * or no longer (false).  mds->lock held.  Returns 0 or -ENOMEM (then
 * nothing is counted).
 */
static int
inflight_apply (struct mds *mds, const struct mds_inflight *list, size_t n,
                bool add)
{
  size_t i;
  int r;

  for (i = 0; i < n; ++i) {
    r = mds_inflight_change (mds, list[i].server,
                             add ? (int64_t)list[i].bytes
                                 : -(int64_t)list[i].bytes);
    if (r < 0) {
      while (i-- > 0)
        mds_inflight_change (mds, list[i].server, -(int64_t)list[i].bytes);
      return r;
    }
  }
  return 0;
}

/* Give back to the placement index the bytes LIST[0..N) charged to
 * each server by an allocation that failed.
 */
static void
uncharge_placed (struct mds *mds, const struct mds_inflight *list, size_t n)
{
  size_t i;

  for (i = 0; i < n; ++i)
    placement_index_charge (mds->index, list[i].server,
                            -(int64_t)list[i].bytes);
}

/* Allocate HOLES[0..NHOLES) of volume V, then fill REP with the map of
 * [START, END), both without mds->lock (see unlocked_begin): concurrent
 * MAP_ALLOCs share the catalog's synced commits.  The reply is built only
 * once the allocation is durable: no client may write a segment whose
 * allocation a crash could still undo.  A change made meanwhile by
 * another thread is safe: the catalog checks the volume and the servers
 * again inside its transaction, and an index allocated meanwhile is kept
 * as it is (the reply shows it).  Until the commit is over, placement
 * counts the holes' bytes as used on their servers, as if they were in
 * the catalog already (struct mds_inflight); the placement index was
 * charged them by place_holes, and is given them back if the commit
 * fails.  (An index another MAP_ALLOC allocated meanwhile stays charged
 * twice until its servers' next heartbeats refresh their entries.)
 */
static void
alloc_unlocked (struct mds *mds, const struct catalog_volume *v,
                struct catalog_map_entry *holes, size_t nholes, uint64_t start,
                uint64_t end, struct mds_reply *rep)
{
  CLEANUP_FREE struct mds_inflight *placed = NULL;
  size_t nplaced;
  int r;

  /* Sum before the call: it overwrites the replicas of an index
   * allocated meanwhile with those it has.
   */
  if (inflight_sum (mds, holes, nholes, &placed, &nplaced) < 0 ||
      inflight_apply (mds, placed, nplaced, true) < 0) {
    uncharge_holes (mds, holes, nholes);
    mds_reply_error (rep, PROTO_ENOMEM, "volume %s: out of memory", v->name);
    return;
  }
  unlocked_begin (mds);
  r = catalog_map_alloc (mds->cat, v->id, holes, nholes);
  if (r < 0) {
    mds_reply_catalog (rep, r, "volume %s allocation", v->name);
    unlocked_end (mds);
    inflight_apply (mds, placed, nplaced, false);
    uncharge_placed (mds, placed, nplaced);
    return;
  }
  log_debug ("volume %s: allocated %zu segments in [%" PRIu64 ", %" PRIu64 ")",
             v->name, nholes, start, end);
  reply_range (mds, v->id, start, end, rep);
  unlocked_end (mds);
  inflight_apply (mds, placed, nplaced, false);
}

/* MAP_ALLOC: allocate every hole of the range (one catalog transaction,
 * possibly shared with concurrent MAP_ALLOCs), then reply with the
 * range's whole map.  Needs the writer's epoch.  The lease check and the
 * placement run under mds->lock, the allocation without it.
 */
int
mds_op_map_alloc (struct mds *mds, struct mds_conn *conn, const void *payload,
                  uint32_t len, struct mds_reply *rep)
{
  CLEANUP_FREE struct catalog_map_entry *existing = NULL;
  CLEANUP_FREE struct catalog_map_entry *holes = NULL;
  struct proto_map_request req;
  struct catalog_volume v;
  uint64_t end, first;
  size_t nexisting, nholes;
  int r;

  r = proto_decode_map_request (payload, len, &req);
  if (r < 0)
    return mds_reply_bad (rep, r, "MAP_ALLOC");
  if (mds_lease_check (mds, req.volume, req.epoch, rep) < 0)
    return 0;
  if (map_range (mds, &req, &v, &end, rep) < 0)
    return 0;
  if (end == req.start)
    return reply_map (NULL, 0, rep);

  first = req.start > 0 ? req.start - 1 : req.start;
  r = catalog_map_get (mds->cat, v.id, first, end + 1 - first, &existing,
                       &nexisting);
  if (r < 0)
    return mds_reply_catalog (rep, r, "volume %s map", v.name);
  holes = calloc (end - req.start, sizeof *holes);
  if (holes == NULL)
    return mds_reply_error (rep, PROTO_ENOMEM, "volume %s: out of memory",
                            v.name);
  if (place_holes (mds, &v, req.start, end, existing, nexisting, holes, &nholes,
                   rep) < 0)
    return 0;
  if (nholes == 0)
    return reply_range (mds, v.id, req.start, end, rep);
  alloc_unlocked (mds, &v, holes, nholes, req.start, end, rep);
  return 0;
}

/* Mark SERVER's replica of SEGMENT stale, reported failed by BY: durably
 * (gen + 1), then queue the new generation for the replicas' servers
 * (announce.c) and let repair resync it.  The last good replica of a
 * segment is never marked stale: the write failed everywhere, and that
 * replica stays the best copy.  Nor is an ok replica whose loss would
 * leave fewer ok replicas than the volume's min-copies: the write then
 * fails (EIO) rather than being acknowledged on too few copies, and the
 * replica stays ok (it holds every acknowledged write).  Fills REP with
 * the refusal, if any.  Caller holds mds->lock.
 */
static void
mark_failed (struct mds *mds, uint64_t segment, uint32_t server, const char *by,
             struct mds_reply *rep)
{
  struct catalog_segment s;
  struct catalog_volume v;
  uint32_t k, ok = 0;
  int found = -1;
  int r;

  r = catalog_segment_get (mds->cat, segment, &s);
  if (r == -ENOENT) {
    mds_reply_error (rep, PROTO_ENOENT, "segment %" PRIu64 ": not found",
                     segment);
    return;
  }
  if (r < 0) {
    mds_reply_catalog (rep, r, "segment %" PRIu64, segment);
    return;
  }
  for (k = 0; k < s.nreplicas && k < CATALOG_REPLICAS_MAX; ++k) {
    if (s.replicas[k].server == server)
      found = k;
    else if (s.replicas[k].state == CATALOG_REPLICA_OK)
      ok++;
  }
  if (found < 0) {
    mds_reply_error (rep, PROTO_ENOENT,
                     "segment %" PRIu64 ": no replica on server %" PRIu32,
                     segment, server);
    return;
  }
  if (s.replicas[found].state == CATALOG_REPLICA_STALE)
    return;
  if (s.replicas[found].state == CATALOG_REPLICA_OK && ok == 0) {
    mds_reply_error (rep, PROTO_EIO,
                     "segment %" PRIu64 ": server %" PRIu32
                     " holds its last good replica",
                     segment, server);
    return;
  }
  if (s.replicas[found].state == CATALOG_REPLICA_OK) {
    r = catalog_volume_get (mds->cat, s.volume, &v);
    if (r < 0) {
      mds_reply_catalog (rep, r, "volume %" PRIu64, s.volume);
      return;
    }
    if (ok < v.min_copies) {
      log_warn ("segment %" PRIu64 ": replica on server %" PRIu32
                " reported failed by %s: kept ok, only %" PRIu32
                " other ok replicas and volume %s needs min-copies %" PRIu32,
                segment, server, by, ok, v.name, v.min_copies);
      mds_reply_error (rep, PROTO_EIO,
                       "segment %" PRIu64 ": marking server %" PRIu32
                       " stale would leave %" PRIu32
                       " ok replicas, volume %s needs min-copies %" PRIu32,
                       segment, server, ok, v.name, v.min_copies);
      return;
    }
  }
  r = catalog_replica_set_state (mds->cat, segment, server,
                                 CATALOG_REPLICA_STALE, &s);
  if (r < 0) {
    mds_reply_catalog (rep, r, "segment %" PRIu64, segment);
    return;
  }
  log_warn ("segment %" PRIu64 ": replica on server %" PRIu32
            " marked stale (reported by %s, volume %" PRIu64
            ", generation %" PRIu64 ")",
            segment, server, by, s.volume, s.gen);
  /* Readers with an older map must be refused there: the server may be
   * alive (a cut connection, a slow disk), and still serve old data.
   * Told later, on the announcer's thread: this reply must not wait.
   */
  mds_announce_stale (mds, &s, server);
  mds_repair_kick (mds, false);
}

/* REPLICA_FAILED: a writer could not write SERVER's replica of SEGMENT;
 * mark it stale (mark_failed) before the writer acknowledges its write.
 */
int
mds_op_replica_failed (struct mds *mds, struct mds_conn *conn,
                       const void *payload, uint32_t len, struct mds_reply *rep)
{
  struct proto_replica_failed req;
  int r;

  r = proto_decode_replica_failed (payload, len, &req);
  if (r < 0)
    return mds_reply_bad (rep, r, "REPLICA_FAILED");
  if (mds_lease_check (mds, req.volume, req.epoch, rep) < 0)
    return 0;
  mark_failed (mds, req.segment, req.server, conn->peer, rep);
  return 0;
}

/* MAP_RAISE_GEN (handled without mds->lock, which it takes around its
 * catalog work): a write or trim that the writer sent with generation
 * GEN may still land on a replica, its outcome there unknown (a timeout,
 * a broken connection), and that replica was not marked stale (every
 * replica was in doubt, or min-copies refused the report).  Should it
 * land after a later write of the same blocks was acknowledged, that
 * replica would hold older data than the others, unseen until they
 * fail.  So the generation goes above GEN, and every writable replica's
 * server is told (SEG_SET_GEN, which waits for the writes in flight
 * there): from then on each one refuses the write in doubt.  A server
 * that does not answer in time has its replica marked stale instead, as
 * REPLICA_FAILED would; if that is refused, so is this request (EIO),
 * and the writer asks again before its next write to the segment.
 */
/* One SEG_SET_GEN of MAP_RAISE_GEN, on a thread of its own: the writer's
 * MDS connection waits for the slowest server, not for their sum.
 */
struct tell {
  struct mds *mds;
  const struct catalog_segment *s;
  uint32_t id;
  char addr[PROTO_ADDR_MAX + 1]; /* "" if none, or the server is down */
  bool told;
  bool thread;
  pthread_t th;
  char msg[PROTO_ERRMSG_MAX + 1];
};

static void *
tell_one (void *arg)
{
  struct tell *t = arg;

  t->told = t->addr[0] != '\0' &&
            mds_srv_set_gen (t->mds, t->addr, RAISE_GEN_TIMEOUT_MS, t->s->id,
                             t->s->volume, t->s->index, t->s->gen, t->msg,
                             sizeof t->msg) == 0;
  return NULL;
}

int
mds_op_map_raise_gen (struct mds *mds, struct mds_conn *conn,
                      const void *payload, uint32_t len, struct mds_reply *rep)
{
  CLEANUP_FREE struct tell *tells = NULL;
  struct proto_raise_gen req;
  struct catalog_segment s;
  size_t n = 0, i;
  uint32_t k;
  int r;

  r = proto_decode_raise_gen (payload, len, &req);
  if (r < 0)
    return mds_reply_bad (rep, r, "MAP_RAISE_GEN");
  tells = calloc (CATALOG_REPLICAS_MAX, sizeof *tells);
  if (tells == NULL)
    return mds_reply_error (rep, PROTO_ENOMEM, "out of memory");
  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
    if (mds_lease_check (mds, req.volume, req.epoch, rep) < 0)
      return 0;
    r = catalog_segment_get (mds->cat, req.segment, &s);
    if (r == -ENOENT)
      return mds_reply_error (rep, PROTO_ENOENT,
                              "segment %" PRIu64 ": not found", req.segment);
    if (r < 0)
      return mds_reply_catalog (rep, r, "segment %" PRIu64, req.segment);
    if (s.volume != req.volume)
      return mds_reply_error (rep, PROTO_EINVAL,
                              "segment %" PRIu64 ": not of volume %" PRIu64,
                              req.segment, req.volume);
    r = catalog_segment_raise_gen (mds->cat, req.segment, req.gen, &s);
    if (r < 0)
      return mds_reply_catalog (rep, r, "segment %" PRIu64, req.segment);
    for (k = 0; k < s.nreplicas && k < CATALOG_REPLICAS_MAX; ++k) {
      struct tell *t = &tells[n];

      if (s.replicas[k].state == CATALOG_REPLICA_STALE)
        continue;
      memset (t, 0, sizeof *t);
      t->mds = mds;
      t->s = &s;
      t->id = s.replicas[k].server;
      /* A server already down is not waited for: its replica is marked
       * stale below.
       */
      if (!mds_server_is_up (mds, t->id))
        snprintf (t->msg, sizeof t->msg, "server down");
      else if (mds_server_address (mds, t->id, t->addr) < 0)
        snprintf (t->msg, sizeof t->msg, "no address");
      n++;
    }
  }
  log_info ("segment %" PRIu64 ": a write of generation %" PRIu64
            " in doubt (reported by %s): generation now %" PRIu64,
            s.id, req.gen, conn->peer, s.gen);
  for (i = 0; i < n; ++i)
    if (tells[i].addr[0] != '\0')
      tells[i].thread =
          pthread_create (&tells[i].th, NULL, tell_one, &tells[i]) == 0;
  for (i = 0; i < n; ++i) {
    if (tells[i].thread)
      pthread_join (tells[i].th, NULL);
    else
      tell_one (&tells[i]);
    if (!tells[i].told)
      log_warn ("segment %" PRIu64 ": server %" PRIu32
                " did not take generation %" PRIu64 ": %s",
                s.id, tells[i].id, s.gen, tells[i].msg);
  }
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
  for (i = 0; i < n && rep->status == PROTO_OK; ++i)
    if (!tells[i].told)
      mark_failed (mds, s.id, tells[i].id, conn->peer, rep);
  return 0;
}

/* SEG_RESYNC (handled without mds->lock, which it takes between its
 * calls to servers): make every other ok replica of the segment equal to
 * the source's, DIFF copy by copy; reply when done.
 */
int
mds_op_seg_resync (struct mds *mds, struct mds_conn *conn, const void *payload,
                   uint32_t len, struct mds_reply *rep)
{
  struct proto_resync req;
  char msg[PROTO_ERRMSG_MAX + 128];
  int r;

  r = proto_decode_resync (payload, len, &req);
  if (r < 0)
    return mds_reply_bad (rep, r, "SEG_RESYNC");
  if (req.source == 0)
    return mds_reply_error (rep, PROTO_EINVAL,
                            "segment %" PRIu64 ": no source server",
                            req.segment);
  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
    if (mds_resyncing (mds, req.volume))
      return mds_reply_error (rep, PROTO_EAGAIN,
                              "volume %" PRIu64 ": being resynced", req.volume);
    if (mds_copy_busy (mds, req.segment))
      return mds_reply_error (rep, PROTO_EAGAIN,
                              "segment %" PRIu64 ": being repaired",
                              req.segment);
  }
  log_info ("segment %" PRIu64 ": resync from server %" PRIu32 " asked by %s",
            req.segment, req.source, conn->peer);
  r = mds_resync_segment (mds, req.volume, req.segment, req.source, msg,
                          sizeof msg);
  if (r < 0)
    return mds_reply_errno (rep, r, "segment %" PRIu64 ": %s", req.segment,
                            msg);
  return 0;
}

/* Making replicas agree: the resync of a volume whose writer died
 * without closing it, and that of one segment (mds_resync_segment, for
 * SEG_RESYNC in req-map.c).
 *
 * A read-write open of a volume that is not clean and has no live lease
 * starts a resync on a thread of its own and answers EAGAIN until it is
 * done.  The resync (see docs/failure-handling.md):
 *   1. starts a new epoch E and fences the volume at E on every server
 *      that is up (the others get every fence in a later heartbeat
 *      reply);
 *   2. waits for running copies of the volume's segments;
 *   3. marks stale the ok replicas on servers that are not up, where an
 *      ok replica on a server that is up remains (they may have missed
 *      the dead writer's last writes, or have others);
 *   4. asks every server that is up for the volume's segments written
 *      after the clean epoch (SEG_LIST);
 *   5. for each such segment makes every other ok replica equal to one
 *      ok replica, chosen from evidence (source.c: the newest last epoch
 *      on its server; never by list order) (SEG_PULL in DIFF mode; no
 *      writer can write, so unlike repair's copies the replica set does
 *      not change); a segment with no ok replica that answers is left
 *      as it is, with a warning;
 *   6. marks the volume clean in epoch E.
 * If a step fails the volume stays unclean, and the next open starts
 * again.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "deadline.h"
#include "cleanup.h"
#include "log.h"
#include "minmax.h"

#include "internal.h"

/* How often the resync checks whether running copies have ended. */
#define COPY_POLL_MS 100

/* A resync being run. */
struct resync {
  struct mds *mds;
  uint64_t volume;
  uint64_t epoch;       /* E: the fence */
  uint64_t clean_epoch; /* writes of later epochs are resynced */
  uint64_t size;
  char name[CATALOG_NAME_MAX + 1];
  /* The servers that were up at the start. */
  size_t nservers;
  uint32_t *ids;
  char (*addrs)[PROTO_ADDR_MAX + 1];
  /* The segments to resync, ascending. */
  uint64_t *segs;
  size_t nsegs, segs_cap;
  size_t copies;     /* pulls done */
  uint64_t start_ns; /* CLOCK_MONOTONIC */
};

/* Release RS. */
static void
resync_free (struct resync *rs)
{
  free (rs->ids);
  free (rs->addrs);
  free (rs->segs);
  free (rs);
}

/* True if the MDS is shutting down. */
static bool
stopping (struct mds *mds)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
  return mds->stopping;
}

/* Step 1 (no lock held): note the servers that are up, and fence the
 * volume on each.  Servers not fenced get every fence in their next
 * heartbeat replies.  Returns 0, or -errno if a server that is up could
 * not be fenced.
 */
static int
fence_servers (struct mds *mds, struct resync *rs)
{
  CLEANUP_FREE struct catalog_server *servers = NULL;
  CLEANUP_FREE uint32_t *fenced = NULL;
  char msg[PROTO_ERRMSG_MAX + 64];
  size_t n, i, nfenced = 0;
  int r, err = 0;

  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
    r = catalog_server_list (mds->cat, &servers, &n);
    if (r < 0) {
      log_error ("volume %s: resync: server list: %s", rs->name,
                 catalog_strerror (r));
      return r;
    }
    rs->ids = calloc (n ? n : 1, sizeof *rs->ids);
    rs->addrs = calloc (n ? n : 1, sizeof *rs->addrs);
    fenced = calloc (n ? n : 1, sizeof *fenced);
    if (rs->ids == NULL || rs->addrs == NULL || fenced == NULL)
      return -ENOMEM;
    for (i = 0; i < n; ++i)
      if (mds_server_is_up (mds, servers[i].id)) {
        rs->ids[rs->nservers] = servers[i].id;
        snprintf (rs->addrs[rs->nservers++], PROTO_ADDR_MAX + 1, "%s",
                  servers[i].address);
      }
  }

  for (i = 0; i < rs->nservers; ++i) {
    r = mds_srv_fence (mds, rs->addrs[i], rs->volume, rs->epoch, msg,
                       sizeof msg);
    if (r < 0) {
      log_warn ("volume %s: resync: server %" PRIu32 ": SEG_FENCE: %s",
                rs->name, rs->ids[i], msg);
      err = r;
    }
    else
      fenced[nfenced++] = rs->ids[i];
  }
  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
    mds_servers_need_fences (mds, fenced, nfenced);
  }
  return err;
}

/* Step 2: wait until no copy of the volume's segments runs (repair
 * starts none meanwhile), and no check of a storage server that
 * restarted uncleanly (unclean.c): it may mark replicas stale, which
 * must happen before the plans.  Returns 0, or -ECANCELED at shutdown.
 */
static int
wait_for_copies (struct mds *mds, struct resync *rs)
{
  const struct timespec poll = { .tv_nsec = COPY_POLL_MS * 1000000L };

  for (;;) {
    {
      ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
      if (mds->stopping)
        return -ECANCELED;
      if (!mds_copy_busy_volume (mds, rs->volume) && mds->nchecks == 0)
        return 0;
    }
    nanosleep (&poll, NULL);
  }
}

/* Mark stale the ok replicas of S on servers that are not up, if an ok
 * replica on a server that is up remains (mds->lock held).
 */
static void
stale_down_replicas (struct mds *mds, struct resync *rs,
                     const struct catalog_segment *s)
{
  bool source = false;
  uint32_t k;
  int r;

  for (k = 0; k < s->nreplicas && k < CATALOG_REPLICAS_MAX; ++k)
    if (s->replicas[k].state == CATALOG_REPLICA_OK &&
        mds_server_is_up (mds, s->replicas[k].server))
      source = true;
  if (!source)
    return;
  for (k = 0; k < s->nreplicas && k < CATALOG_REPLICAS_MAX; ++k) {
    uint32_t id = s->replicas[k].server;

    if (s->replicas[k].state != CATALOG_REPLICA_OK ||
        mds_server_is_up (mds, id))
      continue;
    r = catalog_replica_set_state (mds->cat, s->id, id, CATALOG_REPLICA_STALE,
                                   NULL);
    if (r < 0)
      log_error ("catalog: segment %" PRIu64 ": %s", s->id,
                 catalog_strerror (r));
    else
      log_info ("volume %s: segment %" PRIu64 ": replica on server %" PRIu32
                " (not up) marked stale",
                rs->name, s->id, id);
  }
}

/* Step 3: stale_down_replicas on every segment of the volume, one map
 * page at a time.  Returns 0 or a catalog error.
 */
static int
stale_down (struct mds *mds, struct resync *rs)
{
  uint64_t seg = mds->cluster.segment_size;
  uint64_t nsegs = rs->size / seg + (rs->size % seg != 0);
  uint64_t start;

  for (start = 0; start < nsegs; start += PROTO_MAP_MAX) {
    CLEANUP_FREE struct catalog_map_entry *entries = NULL;
    size_t n, i;
    int r;

    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
    r = catalog_map_get (mds->cat, rs->volume, start,
                         MIN ((uint64_t)PROTO_MAP_MAX, nsegs - start), &entries,
                         &n);
    if (r < 0) {
      log_error ("volume %s: resync: map: %s", rs->name, catalog_strerror (r));
      return r;
    }
    for (i = 0; i < n; ++i)
      stale_down_replicas (mds, rs, &entries[i].segment);
  }
  return 0;
}

/* Append segment ID to RS's list.  Returns 0 or -ENOMEM. */
static int
add_segment (struct resync *rs, uint64_t id)
{
  if (rs->nsegs == rs->segs_cap) {
    size_t cap = rs->segs_cap ? rs->segs_cap * 2 : 256;
    uint64_t *p = realloc (rs->segs, cap * sizeof *p);

    if (p == NULL)
      return -ENOMEM;
    rs->segs = p;
    rs->segs_cap = cap;
  }
  rs->segs[rs->nsegs++] = id;
  return 0;
}

/* Order of segment ids, for qsort. */
static int
compare_ids (const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

  return x < y ? -1 : x > y;
}

/* Step 4 (no lock held): collect the segments of the volume written
 * after its clean epoch, from every server that was up.  Returns 0 or
 * -errno.
 */
static int
list_segments (struct mds *mds, struct resync *rs)
{
  char msg[PROTO_ERRMSG_MAX + 64];
  size_t i, j, out;
  int r;

  for (i = 0; i < rs->nservers; ++i) {
    uint64_t after = 0;

    for (;;) {
      struct proto_segment_list list;
      uint32_t k;

      r = mds_srv_list (mds, rs->addrs[i], rs->volume, rs->clean_epoch + 1,
                        after, &list, msg, sizeof msg);
      if (r < 0) {
        log_warn ("volume %s: resync: server %" PRIu32 ": SEG_LIST: %s",
                  rs->name, rs->ids[i], msg);
        return r;
      }
      for (k = 0, r = 0; k < list.n && r == 0; ++k)
        r = add_segment (rs, list.segments[k]);
      if (list.n > 0)
        after = list.segments[list.n - 1];
      j = list.n;
      proto_segment_list_free (&list);
      if (r < 0)
        return r;
      if (j < PROTO_LIST_MAX)
        break;
    }
  }
  qsort (rs->segs, rs->nsegs, sizeof *rs->segs, compare_ids);
  for (i = 0, out = 0; i < rs->nsegs; ++i)
    if (out == 0 || rs->segs[out - 1] != rs->segs[i])
      rs->segs[out++] = rs->segs[i];
  rs->nsegs = out;
  return 0;
}

/* Mark TARGET's replica of SEGMENT stale if it is ok and another ok
 * replica remains (mds->lock held).  Returns true if TARGET holds no ok
 * replica of SEGMENT any more (or the segment is gone).
 */
static bool
stale_unless_last (struct mds *mds, uint64_t segment, uint32_t target)
{
  struct catalog_segment s;
  bool target_ok = false, other_ok = false;
  uint32_t k;
  int r;

  r = catalog_segment_get (mds->cat, segment, &s);
  if (r < 0)
    return r == -ENOENT;
  for (k = 0; k < s.nreplicas && k < CATALOG_REPLICAS_MAX; ++k)
    if (s.replicas[k].state == CATALOG_REPLICA_OK) {
      if (s.replicas[k].server == target)
        target_ok = true;
      else
        other_ok = true;
    }
  if (!target_ok)
    return true;
  if (!other_ok)
    return false;
  r = catalog_replica_set_state (mds->cat, segment, target,
                                 CATALOG_REPLICA_STALE, NULL);
  if (r < 0) {
    log_error ("catalog: segment %" PRIu64 ": %s", segment,
               catalog_strerror (r));
    return false;
  }
  log_info ("segment %" PRIu64 ": replica on server %" PRIu32 " marked stale",
            segment, target);
  return true;
}

/* Copy SEGMENT from server SOURCE to server TARGET in DIFF mode, as a
 * resync of TARGET's existing replica, with no bandwidth cap.  Waits for
 * the copy.  Returns 0 or -errno with the reason in ERRMSG.
 */
static int
resync_copy (struct mds *mds, uint64_t segment, uint32_t source,
             uint32_t target, char *errmsg, size_t errlen)
{
  CLEANUP_FREE struct mds_copy *c = calloc (1, sizeof *c);
  int r;

  if (c == NULL) {
    snprintf (errmsg, errlen, "out of memory");
    return -ENOMEM;
  }
  c->segment = segment;
  c->source = source;
  c->target = target;
  c->mode = PROTO_PULL_DIFF;
  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
    r = mds_copy_prepare (mds, c, errmsg, errlen);
    /* The target cannot be made equal now (its server went down, say):
     * it must not be read as it is.  A running copy will decide.
     */
    if (r < 0 && r != -EBUSY)
      stale_unless_last (mds, segment, target);
  }
  if (r < 0)
    return r;
  r = mds_copy_run (mds, c, errmsg, errlen);
  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
    mds_copy_finish (mds, c, r);
  }
  mds_copy_announce (mds, c);
  return r;
}

/* How to make the ok replicas of one segment equal.  With SOURCE 0
 * (plan_segment), CANDS holds the ok replicas on servers that are up,
 * to choose the source from (plan_choose).
 */
struct plan {
  uint64_t index; /* the segment's, in the volume */
  uint32_t source;
  char source_addr[PROTO_ADDR_MAX + 1];
  size_t n; /* targets */
  uint32_t targets[CATALOG_REPLICAS_MAX];
  char addrs[CATALOG_REPLICAS_MAX][PROTO_ADDR_MAX + 1];
  struct mds_sources cands;
};

/* Plan P for SEGMENT of VOLUME (mds->lock held): if SOURCE is non-zero
 * it is the source and the targets are the other ok replicas on servers
 * that are up; else P->cands lists every ok replica on a server that is
 * up, for plan_choose to choose the source from evidence (never the
 * first in list order: the order says nothing about their data).  Ok
 * replicas on servers that are not up are marked stale: they cannot be
 * made equal now.  Returns 0, -ENOENT if VOLUME has no such segment,
 * -EAGAIN if SOURCE is not an ok replica on a server that is up (or none
 * is), or another catalog error; ERRMSG says why.
 */
static int
plan_segment (struct mds *mds, uint64_t volume, uint64_t segment,
              uint32_t source, struct plan *p, char *errmsg, size_t errlen)
{
  struct catalog_segment s;
  struct catalog_server srv;
  uint32_t k;
  bool found = false;
  int r;

  memset (p, 0, sizeof *p);
  r = catalog_segment_get (mds->cat, segment, &s);
  if (r == 0 && s.volume != volume)
    r = -ENOENT;
  if (r < 0) {
    snprintf (errmsg, errlen, "segment %" PRIu64 ": %s", segment,
              r == -ENOENT ? "not in this volume" : catalog_strerror (r));
    return r;
  }
  p->index = s.index;
  p->source = source;
  if (source == 0) {
    /* A server registered uncleanly during the resync, whose check is
     * still running, is a source only if no other replica can be.
     */
    r = mds_sources_collect (mds, &s, 0, true, &p->cands);
    if (r == 0 && p->cands.n == 0)
      r = mds_sources_collect (mds, &s, 0, false, &p->cands);
    if (r < 0) {
      snprintf (errmsg, errlen, "segment %" PRIu64 ": %s", segment,
                catalog_strerror (r));
      return r;
    }
    found = p->cands.n > 0;
  }
  for (k = 0; source != 0 && k < s.nreplicas && k < CATALOG_REPLICAS_MAX; ++k) {
    uint32_t id = s.replicas[k].server;

    if (s.replicas[k].state != CATALOG_REPLICA_OK ||
        !mds_server_is_up (mds, id))
      continue;
    r = catalog_server_get (mds->cat, id, &srv);
    if (r < 0) {
      snprintf (errmsg, errlen, "server %" PRIu32 ": %s", id,
                catalog_strerror (r));
      return r;
    }
    if (id == p->source) {
      found = true;
      snprintf (p->source_addr, sizeof p->source_addr, "%s", srv.address);
    }
    else {
      snprintf (p->addrs[p->n], sizeof p->addrs[p->n], "%s", srv.address);
      p->targets[p->n++] = id;
    }
  }
  if (!found) {
    snprintf (errmsg, errlen,
              source ? "segment %" PRIu64 ": server %" PRIu32
                       " holds no ok replica or is not up"
                     : "segment %" PRIu64 ": no ok replica is on a server "
                       "that is up",
              segment, source);
    return -EAGAIN;
  }
  for (k = 0; k < s.nreplicas && k < CATALOG_REPLICAS_MAX; ++k) {
    uint32_t id = s.replicas[k].server;

    if (s.replicas[k].state != CATALOG_REPLICA_OK || mds_server_is_up (mds, id))
      continue;
    r = catalog_replica_set_state (mds->cat, segment, id, CATALOG_REPLICA_STALE,
                                   NULL);
    if (r < 0)
      log_error ("catalog: segment %" PRIu64 ": %s", segment,
                 catalog_strerror (r));
    else
      log_info ("segment %" PRIu64 ": replica on server %" PRIu32
                " (not up) marked stale",
                segment, id);
  }
  return 0;
}

/* Choose P's source among P->cands from evidence (no lock held; see
 * source.c) when plan_segment was not given one: the targets are the
 * other candidates.  Returns 0, or -EAGAIN if no candidate answered
 * (ERRMSG says why).
 */
static int
plan_choose (struct mds *mds, struct plan *p, char *errmsg, size_t errlen)
{
  size_t i, chosen;
  int r;

  if (p->source != 0)
    return 0;
  r = mds_sources_choose (mds, &p->cands, false, &chosen, errmsg, errlen);
  if (r < 0)
    return r;
  p->source = p->cands.c[chosen].id;
  snprintf (p->source_addr, sizeof p->source_addr, "%s",
            p->cands.c[chosen].addr);
  p->n = 0;
  for (i = 0; i < p->cands.n; ++i)
    if (i != chosen) {
      p->targets[p->n] = p->cands.c[i].id;
      snprintf (p->addrs[p->n++], PROTO_ADDR_MAX + 1, "%s", p->cands.c[i].addr);
    }
  return 0;
}

/* SEG_RESYNC's work (req-map.c), without mds->lock, which it takes
 * between its calls to servers: make every other ok replica of SEGMENT
 * of VOLUME equal to SOURCE's, one copy (mds_copy_*) at a time, since a
 * writer may be writing: each target becomes syncing meanwhile.  A
 * replica whose copy failed ends stale, unless its copy never started
 * (then it stays ok).  Returns 0, or -errno with the first error in
 * ERRMSG.
 */
int
mds_resync_segment (struct mds *mds, uint64_t volume, uint64_t segment,
                    uint32_t source, char *errmsg, size_t errlen)
{
  CLEANUP_FREE struct plan *p = malloc (sizeof *p);
  char msg[PROTO_ERRMSG_MAX + 128];
  size_t i;
  int r, err = 0;

  if (p == NULL) {
    snprintf (errmsg, errlen, "out of memory");
    return -ENOMEM;
  }
  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
    r = plan_segment (mds, volume, segment, source, p, errmsg, errlen);
  }
  if (r < 0)
    return r;
  for (i = 0; i < p->n; ++i) {
    r = resync_copy (mds, segment, source, p->targets[i], msg, sizeof msg);
    if (r < 0) {
      log_warn ("segment %" PRIu64 ": resync of server %" PRIu32
                " from server %" PRIu32 ": %s",
                segment, p->targets[i], source, msg);
      if (err == 0) {
        err = r;
        snprintf (errmsg, errlen, "%s", msg);
      }
    }
  }
  return err;
}

/* Raise SEGMENT's generation before P's pulls, into *GEN: every target
 * becomes syncing in the catalog (each change raises the generation) and
 * SEG_SET_GEN tells the source and the targets.  A storage server keeps,
 * over copy data, the writes it saw carrying the pull's generation or a
 * newer one (they may come from a writer that already knows the new
 * replica set, storesrv/track.c); the fenced writer's unacknowledged
 * writes carry the old generation, so the pull now overwrites them.
 * Returns 0 or -EAGAIN (ERRMSG says why; targets left syncing are the
 * repair thread's once the volume is no longer resyncing).
 */
static int
raise_gen (struct mds *mds, struct resync *rs, uint64_t segment,
           const struct plan *p, uint64_t *gen, char *errmsg, size_t errlen)
{
  struct catalog_segment s;
  char msg[PROTO_ERRMSG_MAX + 64];
  size_t i;
  int r;

  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
    for (i = 0; i < p->n; ++i) {
      r = catalog_replica_set_state (mds->cat, segment, p->targets[i],
                                     CATALOG_REPLICA_SYNCING, &s);
      if (r < 0) {
        snprintf (errmsg, errlen, "segment %" PRIu64 ": %s", segment,
                  catalog_strerror (r));
        return -EAGAIN;
      }
    }
  }
  if (p->n == 0)
    return 0;
  *gen = s.gen;
  r = mds_srv_set_gen (mds, p->source_addr, MDS_SERVER_TIMEOUT_MS, segment,
                       rs->volume, p->index, s.gen, msg, sizeof msg);
  for (i = 0; r == 0 && i < p->n; ++i)
    r = mds_srv_set_gen (mds, p->addrs[i], MDS_SERVER_TIMEOUT_MS, segment,
                         rs->volume, p->index, s.gen, msg, sizeof msg);
  if (r < 0) {
    snprintf (errmsg, errlen, "segment %" PRIu64 ": SEG_SET_GEN: %s", segment,
              msg);
    return -EAGAIN;
  }
  return 0;
}

/* Pull SEGMENT as P says into P's targets.  A target whose pull failed
 * while the source still answers is marked stale.  Returns 0, -EAGAIN if
 * a target could not be marked stale, or 1 if the source does not answer
 * any more: it was marked stale, and the segment must be planned again
 * (or -EAGAIN if it holds the last ok replica).  ERRMSG says why.
 */
static int
pull_targets (struct mds *mds, struct resync *rs, uint64_t segment,
              const struct plan *p, char *errmsg, size_t errlen)
{
  char msg[PROTO_ERRMSG_MAX + 64];
  struct proto_pull pull;
  size_t i;
  int r, err = 0;

  memset (&pull, 0, sizeof pull);
  pull.segment = segment;
  pull.volume = rs->volume;
  pull.epoch = rs->epoch;
  pull.mode = PROTO_PULL_DIFF;
  pull.index = p->index;
  snprintf (pull.source, sizeof pull.source, "%s", p->source_addr);
  r = raise_gen (mds, rs, segment, p, &pull.gen, errmsg, errlen);
  if (r < 0)
    return r;
  for (i = 0; i < p->n; ++i) {
    bool alive;

    r = mds_srv_pull (mds, p->addrs[i], &pull, msg, sizeof msg);
    if (r == 0) {
      ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
      r = catalog_replica_set_state (mds->cat, segment, p->targets[i],
                                     CATALOG_REPLICA_OK, NULL);
      if (r < 0) {
        snprintf (errmsg, errlen, "segment %" PRIu64 ": %s", segment,
                  catalog_strerror (r));
        return -EAGAIN;
      }
      rs->copies++;
      continue;
    }
    log_warn ("volume %s: resync: segment %" PRIu64 ": server %" PRIu32
              ": SEG_PULL from server %" PRIu32 ": %s",
              rs->name, segment, p->targets[i], p->source, msg);
    /* Whose fault?  A source that does not answer is the one to drop. */
    alive = mds_srv_alive (mds, p->source_addr);
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
    if (!alive) {
      snprintf (errmsg, errlen, "source server %" PRIu32 " does not answer",
                p->source);
      return stale_unless_last (mds, segment, p->source) ? 1 : -EAGAIN;
    }
    if (!stale_unless_last (mds, segment, p->targets[i]) && err == 0) {
      err = -EAGAIN;
      snprintf (errmsg, errlen,
                "server %" PRIu32 ": SEG_PULL from server %" PRIu32 ": %s",
                p->targets[i], p->source, msg);
    }
  }
  return err;
}

/* Step 5 for SEGMENT (no lock held): pull it from one ok replica on a
 * server that is up into every other, in DIFF mode: no writer can write
 * meanwhile (the volume is fenced and no lease is granted); the targets
 * are syncing during their pulls only to raise the generation
 * (raise_gen).  A replica that cannot be made equal
 * is marked stale.  Returns 0 once the ok replicas agree (a segment with
 * no ok replica on a server that is up has nothing to agree with),
 * -EAGAIN if one may still differ, -ENOENT if the volume has no such
 * segment; ERRMSG says why.
 */
static int
pull_segment (struct mds *mds, struct resync *rs, uint64_t segment,
              char *errmsg, size_t errlen)
{
  CLEANUP_FREE struct plan *p = malloc (sizeof *p);
  int attempt, r;

  if (p == NULL) {
    snprintf (errmsg, errlen, "out of memory");
    return -ENOMEM;
  }
  /* Each new attempt has one ok replica fewer. */
  for (attempt = 0; attempt < CATALOG_REPLICAS_MAX; ++attempt) {
    {
      ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
      r = plan_segment (mds, rs->volume, segment, 0, p, errmsg, errlen);
    }
    if (r == -EAGAIN) {
      log_warn ("volume %s: resync: %s: left as it is", rs->name, errmsg);
      return 0;
    }
    if (r < 0)
      return r;
    r = plan_choose (mds, p, errmsg, errlen);
    if (r < 0) {
      log_warn ("volume %s: resync: segment %" PRIu64 ": %s: left as it is",
                rs->name, segment, errmsg);
      return 0;
    }
    r = pull_targets (mds, rs, segment, p, errmsg, errlen);
    if (r <= 0)
      return r;
  }
  return -EAGAIN;
}

/* Steps 1 to 5 of the resync RS.  Returns 0 or -errno. */
static int
resync_volume (struct mds *mds, struct resync *rs)
{
  char msg[PROTO_ERRMSG_MAX + 128];
  size_t i;
  int r;

  r = fence_servers (mds, rs);
  if (r == 0)
    r = wait_for_copies (mds, rs);
  if (r == 0)
    r = stale_down (mds, rs);
  if (r == 0)
    r = list_segments (mds, rs);
  if (r < 0)
    return r;
  log_debug ("volume %s: resync: %zu segments written after epoch %" PRIu64,
             rs->name, rs->nsegs, rs->clean_epoch);
  for (i = 0; i < rs->nsegs; ++i) {
    if (stopping (mds))
      return -ECANCELED;
    r = pull_segment (mds, rs, rs->segs[i], msg, sizeof msg);
    if (r == -ENOENT) /* not (any more) a segment of this volume */
      log_debug ("volume %s: resync: %s", rs->name, msg);
    else if (r < 0) {
      log_warn ("volume %s: resync: segment %" PRIu64
                ": replicas may differ: %s",
                rs->name, rs->segs[i], msg);
      return r;
    }
  }
  return 0;
}

/* The resync thread of one volume. */
static void *
resync_thread (void *arg)
{
  struct resync *rs = arg;
  struct mds *mds = rs->mds;
  int r;

  log_set_thread_name ("resync");
  r = resync_volume (mds, rs);
  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
    if (r == 0)
      r = catalog_volume_mark_clean (mds->cat, rs->volume, rs->epoch);
    if (r == 0)
      log_info ("volume %s: resync done in %.1f s (%zu segments, %zu "
                "pulls): clean in epoch %" PRIu64,
                rs->name, (monotonic_ns () - rs->start_ns) / 1e9, rs->nsegs,
                rs->copies, rs->epoch);
    else
      log_warn ("volume %s: resync failed: %s: the next open starts again",
                rs->name, r == -ECANCELED ? "shutting down" : strerror (-r));
    mds_resync_unregister (mds, rs->volume);
    mds_worker_done (mds);
    mds_repair_kick (mds, false);
  }
  resync_free (rs);
  return NULL;
}

/* A read-write open found volume V not clean and without a live lease
 * (mds->lock held): start its resync with a new epoch, which fences the
 * old writer, and fill REP with the EAGAIN answer.  Returns 0.
 */
int
mds_resync_start (struct mds *mds, const struct catalog_volume *v,
                  struct mds_reply *rep)
{
  struct resync *rs;
  struct catalog_volume nv;
  pthread_attr_t attr;
  int r;

  /* Registered first, so that nothing can fail once the thread runs
   * (the lock is held throughout: nobody sees it before it starts).
   */
  rs = calloc (1, sizeof *rs);
  if (rs == NULL || mds_resync_register (mds, v->id) < 0) {
    free (rs);
    return mds_reply_error (rep, PROTO_ENOMEM, "volume %s: out of memory",
                            v->name);
  }
  r = catalog_volume_begin_epoch (mds->cat, v->id, &nv);
  if (r < 0) {
    mds_resync_unregister (mds, v->id);
    free (rs);
    return mds_reply_catalog (rep, r, "volume %s", v->name);
  }
  /* The old writer loses the lease for good: its renewals now fail. */
  mds_lease_drop (mds, v->id);
  rs->mds = mds;
  rs->start_ns = monotonic_ns ();
  rs->volume = nv.id;
  rs->epoch = nv.epoch;
  rs->clean_epoch = nv.clean_epoch;
  rs->size = nv.size;
  snprintf (rs->name, sizeof rs->name, "%s", nv.name);

  pthread_attr_init (&attr);
  pthread_attr_setdetachstate (&attr, PTHREAD_CREATE_DETACHED);
  r = pthread_create (&(pthread_t){ 0 }, &attr, resync_thread, rs);
  pthread_attr_destroy (&attr);
  if (r != 0) {
    log_error ("volume %s: cannot start a resync thread: %s", rs->name,
               strerror (r));
    mds_resync_unregister (mds, v->id);
    resync_free (rs);
    return mds_reply_error (rep, PROTO_EAGAIN,
                            "volume %s: cannot start its resync", v->name);
  }
  mds->workers++;
  log_info ("volume %s: its writer did not close it: resyncing writes after "
            "epoch %" PRIu64 ", fenced at epoch %" PRIu64,
            nv.name, nv.clean_epoch, nv.epoch);
  return mds_reply_error (rep, PROTO_EAGAIN,
                          "volume %s: resyncing after an unclean close",
                          v->name);
}

/* One copy of a segment to one replica, in three steps: prepare (lock
 * held: the target becomes syncing, its generation raised, and the copy
 * is registered as running in jobs.c), run (no lock: SEG_SET_GEN to the
 * target and every ok replica, the source chosen among the ok replicas
 * from evidence (source.c), then SEG_PULL to the target, which copies
 * from the source server itself) and finish (lock held: the target
 * becomes ok, or stale / removed on failure), then announce (no lock:
 * SEG_SET_GEN again).  Used by repair's worker threads (repair.c) and by
 * SEG_RESYNC (resync.c).  See docs/failure-handling.md.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#include "internal.h"
#include "placement.h"

/* The index of SERVER's replica in S, or -1. */
static int
replica_index (const struct catalog_segment *s, uint32_t server)
{
  uint32_t k;

  for (k = 0; k < s->nreplicas && k < CATALOG_REPLICAS_MAX; ++k)
    if (s->replicas[k].server == server)
      return k;
  return -1;
}

/* Whether segment S keeps enough ok replicas besides the one on server
 * LOST for its volume (mds->lock held): only then may a copy that
 * replaced LOST remove it.  A replica that became stale during the copy
 * would otherwise leave fewer ok copies than the volume wants; the
 * replica on LOST then stays (repair drops it later if its server is
 * leaving, and a re-spread leaves one replica too many, which is safe).
 */
static bool
may_remove (struct mds *mds, const struct catalog_segment *s, uint32_t lost)
{
  struct catalog_volume v;
  uint32_t k, ok = 0;

  if (catalog_volume_get (mds->cat, s->volume, &v) < 0)
    return false;
  for (k = 0; k < s->nreplicas && k < CATALOG_REPLICAS_MAX; ++k)
    if (s->replicas[k].server != lost &&
        s->replicas[k].state == CATALOG_REPLICA_OK)
      ok++;
  return ok >= v.replicas;
}

/* Fill C's peers after the target (from index FIRST): every ok replica of
 * S on a server that is up, except the target.  Returns 0 or a catalog
 * error.
 */
static int
collect_peers (struct mds *mds, struct mds_copy *c,
               const struct catalog_segment *s, size_t first)
{
  uint32_t k;
  int r;

  c->npeers = first;
  for (k = 0; k < s->nreplicas && k < CATALOG_REPLICAS_MAX; ++k) {
    uint32_t id = s->replicas[k].server;

    if (id == c->target || s->replicas[k].state != CATALOG_REPLICA_OK ||
        !mds_server_is_up (mds, id))
      continue;
    r = mds_server_address (mds, id, c->peer_addrs[c->npeers]);
    if (r < 0)
      return r;
    c->peer_ids[c->npeers++] = id;
  }
  return 0;
}

/* Find C's possible sources (mds->lock held): C->source if set (it must
 * hold an ok replica of S on a server that is up), else every such
 * replica other than the target, into C->sources, to choose from in
 * mds_copy_run (source.c); C->source is the first for now.  A server that
 * may have lost writes and is not checked yet (mds_server_suspect) is no
 * source.  Returns 0, or -EAGAIN with ERRMSG set, or a catalog error.
 */
static int
choose_source (struct mds *mds, struct mds_copy *c,
               const struct catalog_segment *s, char *errmsg, size_t errlen)
{
  size_t i;
  int r;

  r = mds_sources_collect (mds, s, c->target, true, &c->sources);
  if (r < 0) {
    snprintf (errmsg, errlen, "%s", catalog_strerror (r));
    return r;
  }
  if (c->source) {
    for (i = 0; i < c->sources.n; ++i)
      if (c->sources.c[i].id == c->source) {
        c->sources.c[0] = c->sources.c[i];
        c->sources.n = 1;
        return 0;
      }
    snprintf (errmsg, errlen,
              "server %" PRIu32 " holds no ok replica, is not up or may "
              "have lost writes",
              c->source);
    return -EAGAIN;
  }
  if (c->sources.n == 0) {
    snprintf (errmsg, errlen, "no ok replica on a server that is up");
    return -EAGAIN;
  }
  c->source = c->sources.c[0].id;
  return 0;
}

/* Start copy C (mds->lock held).  The caller sets segment, target,
 * added (add TARGET as a new replica, else resync its existing one),
 * mode, bandwidth, lost (or 0) and source (or 0: any ok replica on a
 * server that is up).  The target replica becomes syncing (its
 * generation raised) and C is registered as running; the rest of C is
 * filled for mds_copy_run.  Returns 0, or -errno with the reason in
 * ERRMSG (nothing changed then).
 */
int
mds_copy_prepare (struct mds *mds, struct mds_copy *c, char *errmsg,
                  size_t errlen)
{
  struct catalog_segment s;
  struct catalog_volume v;
  int k, r;

  c->mds = mds;
  if (mds_copy_busy (mds, c->segment)) {
    snprintf (errmsg, errlen, "another copy is running");
    return -EBUSY;
  }
  r = catalog_segment_get (mds->cat, c->segment, &s);
  if (r == 0)
    r = catalog_volume_get (mds->cat, s.volume, &v);
  if (r < 0) {
    snprintf (errmsg, errlen, "%s", catalog_strerror (r));
    return r;
  }
  c->volume = s.volume;
  c->index = s.index;
  c->epoch = v.epoch;
  k = replica_index (&s, c->target);
  if (c->added ? k >= 0 : k < 0) {
    snprintf (errmsg, errlen, "server %" PRIu32 " %s", c->target,
              c->added ? "holds a replica already" : "holds no replica");
    return c->added ? -EEXIST : -ENOENT;
  }
  if (!mds_server_is_up (mds, c->target)) {
    snprintf (errmsg, errlen, "server %" PRIu32 " is not up", c->target);
    return -EAGAIN;
  }
  r = choose_source (mds, c, &s, errmsg, errlen);
  if (r < 0)
    return r;
  r = mds_server_address (mds, c->target, c->peer_addrs[0]);
  if (r == 0)
    r = mds_server_address (mds, c->source, c->source_addr);
  if (r < 0) {
    snprintf (errmsg, errlen, "%s", catalog_strerror (r));
    return r;
  }

  /* The target becomes syncing with a new generation.  A replica left
   * syncing by an earlier copy goes through stale, so that the
   * generation is raised all the same.
   */
  c->was_ok = !c->added && s.replicas[k].state == CATALOG_REPLICA_OK;
  c->pulled = false;
  if (c->added)
    r = catalog_segment_add_replica (mds->cat, c->segment, c->target,
                                     CATALOG_REPLICA_SYNCING, &s);
  else {
    if (s.replicas[k].state == CATALOG_REPLICA_SYNCING)
      r = catalog_replica_set_state (mds->cat, c->segment, c->target,
                                     CATALOG_REPLICA_STALE, &s);
    if (r == 0)
      r = catalog_replica_set_state (mds->cat, c->segment, c->target,
                                     CATALOG_REPLICA_SYNCING, &s);
  }
  if (r < 0) {
    snprintf (errmsg, errlen, "%s", catalog_strerror (r));
    return r;
  }
  c->gen = s.gen;
  c->peer_ids[0] = c->target;
  r = collect_peers (mds, c, &s, 1);
  if (r == 0)
    r = mds_copy_register (mds, c);
  if (r < 0) {
    snprintf (errmsg, errlen, "%s", catalog_strerror (r));
    c->npeers = 0;
    mds_copy_finish (mds, c, r);
    return r;
  }
  if (mds->debug_repair)
    log_msg (LOG_LEVEL_DEBUG,
             "segment %" PRIu64 ": %s copy from server %" PRIu32
             " to server %" PRIu32 " (%s), gen %" PRIu64,
             c->segment, c->mode == PROTO_PULL_FULL ? "full" : "diff",
             c->source, c->target, c->added ? "new replica" : "resync", c->gen);
  return 0;
}

/* Run copy C (no lock held): tell the target and every ok replica the
 * new generation, choose the source among C->sources from evidence
 * (source.c), then have the target pull.  Returns 0 once the copy is
 * durable on the target, or -errno with the reason in ERRMSG.
 */
int
mds_copy_run (struct mds *mds, struct mds_copy *c, char *errmsg, size_t errlen)
{
  char msg[PROTO_ERRMSG_MAX + 64];
  struct proto_pull pull;
  size_t i, chosen;
  int r;

  for (i = 0; i < c->npeers; ++i) {
    r = mds_srv_set_gen (mds, c->peer_addrs[i], MDS_SERVER_TIMEOUT_MS,
                         c->segment, c->volume, c->index, c->gen, msg,
                         sizeof msg);
    if (r < 0) {
      snprintf (errmsg, errlen, "server %" PRIu32 ": SEG_SET_GEN: %s",
                c->peer_ids[i], msg);
      return r;
    }
  }
  /* After SEG_SET_GEN: a writer that still wrote to the target with an
   * older map is refused now, so the epochs compared are final for this
   * generation.
   */
  r = mds_sources_choose (mds, &c->sources, true, &chosen, msg, sizeof msg);
  if (r < 0) {
    snprintf (errmsg, errlen, "no source: %s", msg);
    return r;
  }
  c->source = c->sources.c[chosen].id;
  snprintf (c->source_addr, sizeof c->source_addr, "%s",
            c->sources.c[chosen].addr);

  memset (&pull, 0, sizeof pull);
  pull.segment = c->segment;
  pull.volume = c->volume;
  pull.epoch = c->epoch;
  pull.gen = c->gen;
  pull.index = c->index;
  pull.mode = c->mode;
  pull.bandwidth = c->bandwidth;
  snprintf (pull.source, sizeof pull.source, "%s", c->source_addr);
  c->pulled = true;
  r = mds_srv_pull (mds, c->peer_addrs[0], &pull, msg, sizeof msg);
  if (r < 0) {
    snprintf (errmsg, errlen,
              "server %" PRIu32 ": SEG_PULL from server %" PRIu32 ": %s",
              c->target, c->source, msg);
    return r;
  }
  return 0;
}

/* End copy C (mds->lock held) with RESULT (0 or -errno from
 * mds_copy_run): on success the target becomes ok (unless a writer
 * marked it stale meanwhile) and the lost replica, if any, is removed;
 * on failure an added target is removed again, a resynced one marked
 * stale (or ok again if it was ok and the pull was not sent: its data
 * did not change), and the segment waits before it is tried again.  C is
 * unregistered and its peers refilled for mds_copy_announce.
 */
void
mds_copy_finish (struct mds *mds, struct mds_copy *c, int result)
{
  struct catalog_segment s;
  int k, r;

  mds_copy_unregister (mds, c);
  c->npeers = 0;
  r = catalog_segment_get (mds->cat, c->segment, &s);
  if (r < 0) {
    if (r != -ENOENT) /* else its volume was deleted meanwhile */
      log_error ("catalog: segment %" PRIu64 ": %s", c->segment,
                 catalog_strerror (r));
    return;
  }
  k = replica_index (&s, c->target);
  if (result == 0 && k >= 0 && s.replicas[k].state == CATALOG_REPLICA_SYNCING) {
    r = catalog_replica_set_state (mds->cat, c->segment, c->target,
                                   CATALOG_REPLICA_OK, &s);
    if (r < 0)
      log_error ("catalog: segment %" PRIu64 ": %s", c->segment,
                 catalog_strerror (r));
    else
      log_info ("segment %" PRIu64 ": replica on server %" PRIu32
                " is ok (%s copy from server %" PRIu32 ")",
                c->segment, c->target,
                c->mode == PROTO_PULL_FULL ? "full" : "diff", c->source);
    if (r == 0 && c->lost && replica_index (&s, c->lost) >= 0 &&
        !may_remove (mds, &s, c->lost))
      log_warn ("segment %" PRIu64 ": keeping the replica on server %" PRIu32
                ": too few other ok replicas",
                c->segment, c->lost);
    else if (r == 0 && c->lost && replica_index (&s, c->lost) >= 0) {
      r = catalog_segment_remove_replica (mds->cat, c->segment, c->lost, &s);
      if (r < 0)
        log_warn ("segment %" PRIu64 ": removing the replica on server %" PRIu32
                  ": %s",
                  c->segment, c->lost, catalog_strerror (r));
      else
        log_info ("segment %" PRIu64 ": replica on server %" PRIu32 " removed",
                  c->segment, c->lost);
    }
  }
  else if (k >= 0) {
    if (result == 0)
      log_warn ("segment %" PRIu64 ": replica on server %" PRIu32
                " became %s during its copy",
                c->segment, c->target,
                proto_replica_state_name (s.replicas[k].state));
    if (c->added)
      r = catalog_segment_remove_replica (mds->cat, c->segment, c->target, &s);
    else if (s.replicas[k].state == CATALOG_REPLICA_SYNCING)
      /* An ok replica whose copy never started is as good as before. */
      r = catalog_replica_set_state (
          mds->cat, c->segment, c->target,
          c->was_ok && !c->pulled ? CATALOG_REPLICA_OK : CATALOG_REPLICA_STALE,
          &s);
    if (r < 0)
      log_error ("catalog: segment %" PRIu64 ": %s", c->segment,
                 catalog_strerror (r));
    mds_repair_retry_later (mds, c->segment);
  }
  c->gen = s.gen;
  if (collect_peers (mds, c, &s, 0) < 0)
    c->npeers = 0;
}

/* After mds_copy_finish (no lock held): tell every ok replica the
 * segment's new generation, so that writers with an older map refresh
 * it.  Failures only delay that: they are not errors.
 */
void
mds_copy_announce (struct mds *mds, struct mds_copy *c)
{
  char msg[PROTO_ERRMSG_MAX + 64];
  size_t i;

  for (i = 0; i < c->npeers; ++i)
    if (mds_srv_set_gen (mds, c->peer_addrs[i], MDS_SERVER_TIMEOUT_MS,
                         c->segment, c->volume, c->index, c->gen, msg,
                         sizeof msg) < 0)
      log_debug ("segment %" PRIu64 ": server %" PRIu32 ": SEG_SET_GEN: %s",
                 c->segment, c->peer_ids[i], msg);
}

/* Repair: keep every segment at its volume's replica count.
 *
 * The repair thread wakes every second, or when kicked (REPAIR,
 * REPLICA_FAILED, a server coming back, a drain, a copy ending), and
 * pages through every segment of the catalog (unless the last pass
 * found nothing to do and nothing has changed since: repair_thread
 * says what counts as a change).  For each one, with
 * mds->lock held and no network I/O:
 *   - replicas on an out or draining server are lost; once the segment
 *     has as many ok replicas elsewhere as its volume wants, they are
 *     removed (queued as garbage for their server);
 *   - a stale replica (or one left syncing by an interrupted copy) on a
 *     server that is up is resynced in place: DIFF copy;
 *   - if fewer replicas than wanted remain besides the lost ones,
 *     placement picks a new server (the placement index, place.c,
 *     preferring servers with fewer copies headed to them), the replica
 *     is added and copied in FULL, and a lost one is removed once it is
 *     ok;
 *   - if nothing else is to be done but its replicas span fewer
 *     failure domains than they must (misplaced), it is re-spread: a
 *     replica is copied to a domain it lacks and one in its most
 *     crowded domain removed once that copy is ok.
 * Each pass counts the misplaced segments (STATUS shows the last
 * complete pass's count) and ends with a check of the zones' room.
 * Each copy (copy.c) runs on its own worker thread, at most
 * repair_concurrency per target server and MDS_COPIES_MAX in all.  A
 * segment whose copy failed waits MDS_REPAIR_RETRY_MS before it is
 * tried again (jobs.c keeps the copies running and the retries).
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cleanup.h"
#include "deadline.h"
#include "log.h"

#include "internal.h"
#include "placement.h"

/* ---- Copy threads ---- */

/* A copy's worker thread: run, finish, announce. */
static void *
copy_thread (void *arg)
{
  struct mds_copy *c = arg;
  struct mds *mds = c->mds;
  char msg[PROTO_ERRMSG_MAX + 128] = "";
  bool stopping;
  int r;

  log_set_thread_name ("copy");
  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
    stopping = mds->stopping;
  }
  if (stopping) {
    r = -ECANCELED;
    snprintf (msg, sizeof msg, "shutting down");
  }
  else
    r = mds_copy_run (mds, c, msg, sizeof msg);
  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
    mds_copy_finish (mds, c, r);
  }
  if (r < 0)
    log_warn ("segment %" PRIu64 ": copy to server %" PRIu32 " failed: %s",
              c->segment, c->target, msg);
  mds_copy_announce (mds, c);
  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
    mds_worker_done (mds);
    mds_repair_kick (mds, false); /* a copy slot is free */
  }
  free (c);
  return NULL;
}

/* Start a copy of SEGMENT to TARGET on a worker thread (mds->lock held):
 * see mds_copy_prepare for ADDED, MODE and LOST.  Returns 0 or -errno.
 */
static int
copy_start (struct mds *mds, uint64_t segment, uint32_t target, bool added,
            uint32_t mode, uint32_t lost)
{
  char msg[PROTO_ERRMSG_MAX];
  struct mds_copy *c;
  pthread_attr_t attr;
  int r;

  c = calloc (1, sizeof *c);
  if (c == NULL)
    return -ENOMEM;
  c->segment = segment;
  c->target = target;
  c->added = added;
  c->mode = mode;
  c->lost = lost;
  c->bandwidth = mds->repair_bandwidth;
  r = mds_copy_prepare (mds, c, msg, sizeof msg);
  if (r < 0) {
    log_debug ("segment %" PRIu64 ": cannot copy to server %" PRIu32 ": %s",
               segment, target, msg);
    mds_repair_retry_later (mds, segment);
    free (c);
    return r;
  }
  pthread_attr_init (&attr);
  pthread_attr_setdetachstate (&attr, PTHREAD_CREATE_DETACHED);
  r = pthread_create (&(pthread_t){ 0 }, &attr, copy_thread, c);
  pthread_attr_destroy (&attr);
  if (r != 0) {
    log_error ("segment %" PRIu64 ": cannot start a copy thread: %s", segment,
               strerror (r));
    mds_copy_finish (mds, c, -r);
    free (c);
    return -r;
  }
  mds->workers++;
  return 0;
}

/* ---- The repair pass ---- */

/* What repair sees of one server during a page: its state
 * (mds_server_state) and whether it is up (mds_server_is_up).
 */
struct pass_health {
  uint32_t state;
  bool up;
};

/* What a pass knows of the cluster, read at its start, and what it
 * counts.
 */
struct pass {
  struct catalog_server *servers; /* id order */
  size_t nservers;
  struct catalog_volume *vols; /* id order */
  size_t nvols;
  uint32_t replicas_max; /* of the volume with the most */
  uint64_t misplaced;    /* segments seen misplaced so far */
  /* The page being walked: the clock read once at its start (with
   * mds->lock held, so that no heartbeat lands during the page) and
   * each of SERVERS' health then, so that a replica costs one binary
   * search over SERVERS and no clock read.
   */
  uint64_t now_ns;
  struct pass_health *health; /* [nservers] */
  /* What the pass's decisions depend on besides the segments, as of its
   * start (see repair_thread): the catalog's change sequence, each
   * server's health and the failure domains with an up server.
   */
  uint64_t seq;
  struct pass_health *health0; /* [nservers] */
  uint32_t domains_up;
  /* A segment needed something, or the health or the domains changed
   * between pages: the next pass cannot be skipped.
   */
  bool unsettled;
  bool settled; /* complete, and not UNSETTLED */
};

/* Release P's contents. */
static void
pass_free (struct pass *p)
{
  free (p->servers);
  free (p->vols);
  free (p->health);
  free (p->health0);
  memset (p, 0, sizeof *p);
}

/* Read the clock and every server's health for the page about to be
 * walked (mds->lock held): the same answers as mds_server_state and
 * mds_server_is_up would give for each replica of the page, were they
 * asked at this instant.
 */
static void
pass_page_start (struct mds *mds, struct pass *p)
{
  size_t i;

  p->now_ns = monotonic_ns ();
  for (i = 0; i < p->nservers; ++i) {
    const struct catalog_server *s = &p->servers[i];

    p->health[i].state = mds_server_state_at (mds, s, p->now_ns);
    p->health[i].up =
        mds_server_health_at (mds, s->id, p->now_ns) == PROTO_SERVER_UP;
  }
}

/* True if health arrays A and B of N servers differ. */
static bool
health_differs (const struct pass_health *a, const struct pass_health *b,
                size_t n)
{
  size_t i;

  for (i = 0; i < n; ++i)
    if (a[i].state != b[i].state || a[i].up != b[i].up)
      return true;
  return false;
}

/* True if the page about to be walked (pass_page_start done) sees the
 * servers' health or the failure domains with an up server otherwise
 * than the pass's start did (mds->lock held).
 */
static bool
pass_page_differs (struct mds *mds, const struct pass *p)
{
  return health_differs (p->health, p->health0, p->nservers) ||
         placement_index_domains_needed (mds->index, UINT32_MAX) !=
             p->domains_up;
}

/* The volume with id ID in P, or NULL. */
static const struct catalog_volume *
pass_volume (const struct pass *p, uint64_t id)
{
  size_t lo = 0, hi = p->nvols;

  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;

    if (p->vols[mid].id == id)
      return &p->vols[mid];
    if (p->vols[mid].id < id)
      lo = mid + 1;
    else
      hi = mid;
  }
  return NULL;
}

/* The health of server ID during this page: *STATE (PROTO_SERVER_*; a
 * server the catalog does not know counts as out) and *UP (heard from
 * within the down-timeout; a draining server is up).
 */
static void
pass_server_health (struct mds *mds, const struct pass *p, uint32_t id,
                    uint32_t *state, bool *up)
{
  size_t lo = 0, hi = p->nservers;

  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;

    if (p->servers[mid].id == id) {
      *state = p->health[mid].state;
      *up = p->health[mid].up;
      return;
    }
    if (p->servers[mid].id < id)
      lo = mid + 1;
    else
      hi = mid;
  }
  *state = PROTO_SERVER_OUT;
  *up = mds_server_health_at (mds, id, p->now_ns) == PROTO_SERVER_UP;
}

/* Drop S's replicas on lost servers LOST[0..NLOST) (mds->lock held). */
static void
drop_lost (struct mds *mds, const struct catalog_segment *s,
           const uint32_t *lost, size_t nlost)
{
  size_t i;
  int r;

  for (i = 0; i < nlost; ++i) {
    r = catalog_segment_remove_replica (mds->cat, s->id, lost[i], NULL);
    if (r < 0)
      log_warn ("segment %" PRIu64 ": removing the replica on server %" PRIu32
                ": %s",
                s->id, lost[i], catalog_strerror (r));
    else
      log_info ("segment %" PRIu64 ": replica on lost server %" PRIu32
                " removed",
                s->id, lost[i]);
  }
}

/* Segment S, all of whose replicas on servers not lost (KEEP[0..NKEEP),
 * REPLICAS wanted) are ok, spans fewer failure domains than it must:
 * copy it to a server in a domain it lacks, and remove the replica
 * placement names as the victim once the copy is ok (mds_copy_finish
 * does that as for a replica on a lost server: the victim's server gets
 * it as garbage, the segment a new generation).  Respects the copy
 * limits (mds->lock held).
 */
static void
respread (struct mds *mds, const struct catalog_segment *s,
          const uint32_t *keep, size_t nkeep, uint32_t replicas)
{
  uint32_t target, victim;
  int r;

  r = placement_index_respread (mds->index, keep, nkeep, replicas, &mds->rng,
                                &target, &victim);
  if (r < 0) {
    if (mds->debug_repair)
      log_msg (LOG_LEVEL_DEBUG,
               "segment %" PRIu64 ": misplaced, no server to re-spread it to",
               s->id);
    mds_repair_retry_later (mds, s->id);
    return;
  }
  if (mds_copies_to (mds, target) >= mds->repair_concurrency ||
      copy_start (mds, s->id, target, true, PROTO_PULL_FULL, victim) < 0) {
    mds_index_uncharge (mds, &target, 1);
    return;
  }
  log_info ("segment %" PRIu64 ": misplaced: copying it to server %" PRIu32
            " to replace its replica on server %" PRIu32,
            s->id, target, victim);
}

/* Decide what segment S needs and start at most one copy for it
 * (mds->lock held); count it in P if it is misplaced.
 */
static void
repair_segment (struct mds *mds, struct pass *p,
                const struct catalog_segment *s)
{
  const struct catalog_volume *v;
  uint32_t keep[CATALOG_REPLICAS_MAX], lost[CATALOG_REPLICAS_MAX];
  uint32_t resync = 0, target;
  size_t nkeep = 0, nlost = 0, ok = 0;
  bool source = false, misplaced;
  uint32_t k;
  int r;

  v = pass_volume (p, s->volume);
  if (v == NULL)
    return; /* a volume created or deleted since the pass started */

  for (k = 0; k < s->nreplicas && k < CATALOG_REPLICAS_MAX; ++k) {
    uint32_t id = s->replicas[k].server;
    uint32_t state;
    bool up; /* draining: still a source */

    pass_server_health (mds, p, id, &state, &up);

    if (s->replicas[k].state == CATALOG_REPLICA_OK && up)
      source = true;
    if (state == PROTO_SERVER_OUT || state == PROTO_SERVER_DRAINING) {
      lost[nlost++] = id;
      continue;
    }
    keep[nkeep++] = id;
    if (s->replicas[k].state == CATALOG_REPLICA_OK)
      ok++;
    else if (up && resync == 0)
      resync = id;
  }
  misplaced = placement_index_misplaced (mds->index, keep, nkeep, v->replicas);
  if (misplaced)
    p->misplaced++;

  /* Most segments need nothing: say so before looking at the copies
   * running, the resyncs and the retries, which matter only to those
   * that need something.
   */
  if (!(nlost > 0 && ok >= v->replicas) && resync == 0 &&
      nkeep >= v->replicas && !misplaced)
    return;
  p->unsettled = true;
  if (mds->ncopies >= MDS_COPIES_MAX || mds_copy_busy (mds, s->id) ||
      mds_resyncing (mds, s->volume))
    return;
  if (nlost > 0 && ok >= v->replicas) {
    drop_lost (mds, s, lost, nlost);
    return;
  }
  if (!mds_repair_retry_due (mds, s->id))
    return;
  if (!source) {
    if (mds->debug_repair)
      log_msg (LOG_LEVEL_DEBUG,
               "segment %" PRIu64 ": no ok replica on a server that is up",
               s->id);
    return;
  }
  if (resync) {
    if (mds_copies_to (mds, resync) < mds->repair_concurrency)
      copy_start (mds, s->id, resync, false, PROTO_PULL_DIFF, 0);
    return;
  }
  if (nkeep >= v->replicas) {
    if (ok == nkeep)
      respread (mds, s, keep, nkeep, v->replicas);
    return;
  }
  r = placement_index_choose_extra (mds->index, keep, nkeep, 1, &mds->rng,
                                    &target);
  if (r < 0) {
    if (mds->debug_repair)
      log_msg (LOG_LEVEL_DEBUG,
               "segment %" PRIu64 ": no server to take a new replica", s->id);
    mds_repair_retry_later (mds, s->id);
    return;
  }
  if (mds_copies_to (mds, target) >= mds->repair_concurrency ||
      copy_start (mds, s->id, target, true, PROTO_PULL_FULL,
                  nlost ? lost[0] : 0) < 0)
    mds_index_uncharge (mds, &target, 1);
}

/* Read what a pass needs (mds->lock held).  Returns 0 or an error. */
static int
pass_init (struct mds *mds, struct pass *p)
{
  size_t i;
  int r;

  memset (p, 0, sizeof *p);
  /* First, so that any change made after it shows in the next pass. */
  r = catalog_change_seq (mds->cat, &p->seq);
  if (r == 0)
    r = catalog_server_list (mds->cat, &p->servers, &p->nservers);
  if (r == 0)
    r = catalog_volume_list (mds->cat, &p->vols, &p->nvols);
  if (r < 0) {
    log_error ("repair: reading the catalog: %s", catalog_strerror (r));
    pass_free (p);
    return r;
  }
  p->health = calloc (p->nservers ? p->nservers : 1, sizeof *p->health);
  p->health0 = calloc (p->nservers ? p->nservers : 1, sizeof *p->health0);
  if (p->health == NULL || p->health0 == NULL) {
    log_error ("repair: %s", strerror (ENOMEM));
    pass_free (p);
    return -ENOMEM;
  }
  for (i = 0; i < p->nvols; ++i)
    if (p->vols[i].replicas > p->replicas_max)
      p->replicas_max = p->vols[i].replicas;
  /* Servers that fell silent, and the copies running to each now. */
  mds_index_pass (mds, p->servers, p->nservers);
  pass_page_start (mds, p);
  memcpy (p->health0, p->health, p->nservers * sizeof *p->health);
  p->domains_up = placement_index_domains_needed (mds->index, UINT32_MAX);
  return 0;
}

/* True if pass P, just started, would find what settled pass Q found:
 * nothing to do.  Q's decisions were functions of the segments and
 * volumes (the catalog: its change sequence is the same), each server's
 * catalog record and health (the same at every page of Q, and now) and
 * the failure domains with an up server (likewise); retries, copies and
 * resyncs running are consulted only for a segment that needs
 * something, and Q had none.
 */
static bool
pass_same (const struct pass *q, const struct pass *p)
{
  size_t i;

  if (!q->settled || q->seq != p->seq || q->nservers != p->nservers ||
      q->domains_up != p->domains_up)
    return false;
  for (i = 0; i < p->nservers; ++i)
    if (q->servers[i].id != p->servers[i].id ||
        q->servers[i].state != p->servers[i].state)
      return false;
  return !health_differs (q->health0, p->health0, p->nservers);
}

/* After a complete pass P (mds->lock held): keep its misplaced count for
 * STATUS, saying when it changes from or to none, and check the room of
 * the zones.
 */
static void
pass_done (struct mds *mds, const struct pass *p)
{
  if (p->misplaced > 0 && (mds->misplaced == 0 || !mds->misplaced_known))
    log_warn ("repair: %" PRIu64 " segments misplaced: their replicas span "
              "fewer failure domains (zones) than they must",
              p->misplaced);
  else if (p->misplaced == 0 && mds->misplaced > 0)
    log_info ("repair: no segment misplaced any more");
  else if (p->misplaced != mds->misplaced && mds->debug_repair)
    log_msg (LOG_LEVEL_DEBUG, "repair: %" PRIu64 " segments misplaced",
             p->misplaced);
  mds->misplaced = p->misplaced;
  mds->misplaced_known = true;
  mds_index_zones_check (mds, p->servers, p->nservers, p->replicas_max);
}

/* One pass over every segment.  Takes mds->lock for each page.  With
 * MAY_SKIP, if the pass would find what the last one, QUIET, found
 * (pass_same), only the walk over the segments is left out.  QUIET
 * becomes this pass if it completes settled, else is cleared.
 */
static void
repair_pass (struct mds *mds, struct pass *quiet, bool may_skip)
{
  struct pass p;
  uint64_t after = 0;

  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
    if (pass_init (mds, &p) < 0) {
      pass_free (quiet);
      return;
    }
    if (may_skip && pass_same (quiet, &p)) {
      pass_done (mds, &p);
      pass_free (&p);
      return;
    }
  }
  pass_free (quiet);
  for (;;) {
    CLEANUP_FREE struct catalog_segment *segs = NULL;
    size_t n, i;
    int r;

    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
    if (mds->stopping)
      break;
    r = catalog_segment_list (mds->cat, after, MDS_REPAIR_PAGE, &segs, &n);
    if (r < 0) {
      log_error ("repair: reading the segments: %s", catalog_strerror (r));
      break;
    }
    /* Past MDS_COPIES_MAX no copy starts, but segments are still
     * counted (misplaced).
     */
    pass_page_start (mds, &p);
    if (pass_page_differs (mds, &p))
      p.unsettled = true;
    for (i = 0; i < n; ++i)
      repair_segment (mds, &p, &segs[i]);
    if (n < MDS_REPAIR_PAGE) {
      pass_done (mds, &p);
      p.settled = !p.unsettled;
      break;
    }
    after = segs[n - 1].id;
  }
  if (p.settled)
    *quiet = p;
  else
    pass_free (&p);
}

/* The repair thread: a pass every second, or at once when kicked.
 *
 * A pass that is not kicked leaves out the walk over the segments if
 * the last pass was complete and found nothing to do (no segment
 * needed anything: none misplaced, short, stale on an up server or with
 * a lost replica) and nothing it decides by changed since its start
 * (pass_same).  The walk would find nothing: every decision for a
 * segment that needs nothing depends only on
 *   - the catalog (segments, volumes, servers' records and zones): any
 *     change raises catalog_change_seq, whoever makes it (MAP_ALLOC,
 *     REPLICA_FAILED's stale mark, a drain, a registration, a removal,
 *     copies and resyncs ending, a standby applying changes);
 *   - each catalog server's health (mds_server_health: heartbeats, and
 *     the down- and out-timeouts running out with no event at all):
 *     compared at every pass, skipped or not, so a server falling
 *     silent is seen within a second, as before;
 *   - the placement index's failure domains with an up server, which
 *     follow that health and the catalog (mds_index_pass, run at every
 *     pass).
 * Retries (MDS_REPAIR_RETRY_MS), the copies and resyncs running and the
 * sources' suspicion count only for a segment that needs something, and
 * then the pass was not settled and the next one walks.  Kicks
 * (mds_repair_kick: REPAIR, a registration, a server heard again, a
 * drain, REPLICA_FAILED, a copy, resync or unclean check ending) always
 * walk.  The zones' room check and the index refresh run at every pass.
 */
static void *
repair_thread (void *arg)
{
  struct mds *mds = arg;
  struct pass quiet = { 0 };
  struct timespec ts;
  bool kicked;

  log_set_thread_name ("repair");
  pthread_mutex_lock (&mds->lock);
  while (!mds->stopping) {
    if (!mds->repair_kicked) {
      clock_gettime (CLOCK_MONOTONIC, &ts);
      ts.tv_sec += 1;
      pthread_cond_timedwait (&mds->repair_wake, &mds->lock, &ts);
    }
    if (mds->stopping)
      break;
    kicked = mds->repair_kicked;
    mds->repair_kicked = false;
    pthread_mutex_unlock (&mds->lock);
    repair_pass (mds, &quiet, !kicked);
    pthread_mutex_lock (&mds->lock);
  }
  pthread_mutex_unlock (&mds->lock);
  pass_free (&quiet);
  return NULL;
}

/* Start the repair thread and the generation announcer's (announce.c).
 * Returns 0 or -errno (then neither runs).
 */
int
mds_repair_start (struct mds *mds)
{
  int r = mds_announce_start (mds);

  if (r < 0)
    return r;
  r = mds_tables_start (mds);
  if (r == 0)
    r = -pthread_create (&mds->repair_thread, NULL, repair_thread, mds);
  if (r != 0) {
    {
      ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
      mds->stopping = true;
    }
    mds_tables_stop (mds);
    mds_announce_stop (mds);
    return r;
  }
  mds->repair_started = true;
  return 0;
}

/* Stop the repair and announcer threads (mds->stopping must be set
 * already) and wait up to TIMEOUT_MS for the copy and resync threads.
 * Returns 0, or -ETIMEDOUT if some still run (the catalog must then stay
 * open).
 */
int
mds_repair_stop (struct mds *mds, int timeout_ms)
{
  struct timespec deadline;

  mds_announce_stop (mds);
  mds_tables_stop (mds);
  if (mds->repair_started) {
    {
      ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
      pthread_cond_broadcast (&mds->repair_wake);
    }
    pthread_join (mds->repair_thread, NULL);
    mds->repair_started = false;
  }
  deadline = deadline_after_ms (timeout_ms);
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
  while (mds->workers > 0)
    if (pthread_cond_timedwait (&mds->workers_done, &mds->lock, &deadline) ==
        ETIMEDOUT)
      break;
  if (mds->workers > 0) {
    log_warn ("shutdown: %zu copies or resyncs still running", mds->workers);
    return -ETIMEDOUT;
  }
  return 0;
}

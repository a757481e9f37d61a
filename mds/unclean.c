/* Storage servers that may have lost writes: an unclean restart (the
 * server found no clean-shutdown marker, PROTO_REG_UNCLEAN) or a store
 * that went back in time (a registration whose index_seq is below the
 * highest the MDS has seen of it).  See docs/failure-handling.md and
 * issue 10, rules 3 and 4.
 *
 * SERVER_REGISTER answers at once and starts a check on a thread of its
 * own (mds_check_server), so that the registration never waits for calls
 * to the server, which may not even serve yet.  The check:
 *   - after an unclean start: for every volume that was not clean at the
 *     registration (a writer holds it, or its writer died: its epoch is
 *     past its clean epoch), asks the server which of its segments of
 *     that volume were written after the clean epoch (SEG_LIST); those
 *     writes may not have reached its disk;
 *   - after a rollback: takes every segment with a replica on it;
 * and for each such segment marks the server's replica stale (gen + 1,
 * durably), unless it is the segment's last ok replica: then it is kept,
 * logged as an error and counted as unproven (tessera status).  Then it
 * tells the new generation to the other ok replicas and, best effort,
 * to the stale one, so that readers and writers with an older map are
 * refused there and fetch the new one.  Repair resyncs the stale
 * replicas in place.
 *
 * While a check of a server is pending or running, or if the last one
 * could not finish, the server's replicas are no source for copies and
 * resyncs (mds_server_suspect), and a resync waits for running checks
 * before it plans its copies.  What the checks find (unclean
 * registrations, unproven segments) is kept in suspects.c, which source
 * choice and STATUS read without calling this file.
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

#include "internal.h"

/* How long a check waits for the server to answer (it registers before
 * it serves), and how often it tries meanwhile.
 */
#define CHECK_WAIT_MS 60000
#define CHECK_POLL_MS 200

/* A volume to check: not clean when the server registered. */
struct check_volume {
  uint64_t id;
  uint64_t clean_epoch;
  char name[CATALOG_NAME_MAX + 1];
};

/* A check of one server, owned by its thread. */
struct check {
  struct mds *mds;
  uint32_t server;
  char addr[PROTO_ADDR_MAX + 1];
  bool rollback; /* every replica, else the volumes below */
  struct check_volume *vols;
  size_t nvols;
  size_t doubtful; /* replicas that may have lost writes */
  size_t stale;    /* of them, marked stale */
  size_t unproven; /* of them, kept as the last ok replica */
  uint64_t start_ns;
};

/* ---- One replica ---- */

/* The servers to tell a segment's new generation. */
struct peers {
  uint64_t volume;
  uint64_t index;
  uint64_t gen;
  size_t n;
  uint32_t ids[CATALOG_REPLICAS_MAX];
  char addrs[CATALOG_REPLICAS_MAX][PROTO_ADDR_MAX + 1];
};

/* Server C->server's replica of SEGMENT may have lost writes (mds->lock
 * held): mark it stale unless it is the segment's last ok replica, and
 * fill P with the servers to tell the new generation (the ok replicas on
 * servers that are up, then the stale one).  Returns 1 if it was marked
 * stale, 0 if there is nothing to do (no such segment or ok replica),
 * 2 if it was kept as the last ok replica, or a catalog error.
 */
static int
doubt_replica (struct mds *mds, struct check *c, uint64_t segment,
               struct peers *p)
{
  struct catalog_segment s;
  struct catalog_server srv;
  struct catalog_volume v;
  uint32_t k, others = 0;
  bool mine = false;
  int r;

  p->n = 0;
  r = catalog_segment_get (mds->cat, segment, &s);
  if (r == -ENOENT)
    return 0;
  if (r < 0)
    return r;
  for (k = 0; k < s.nreplicas && k < CATALOG_REPLICAS_MAX; ++k) {
    if (s.replicas[k].state != CATALOG_REPLICA_OK)
      continue;
    if (s.replicas[k].server == c->server)
      mine = true;
    else
      others++;
  }
  if (!mine)
    return 0;
  c->doubtful++;
  if (catalog_volume_get (mds->cat, s.volume, &v) < 0)
    snprintf (v.name, sizeof v.name, "%" PRIu64, s.volume);
  if (others == 0) {
    c->unproven++;
    mds_unproven_add (mds, segment);
    log_error ("volume %s: segment %" PRIu64 ": server %" PRIu32
               " %s, and may have lost writes to it, but holds its last ok "
               "replica: kept ok, unproven",
               v.name, segment, c->server,
               c->rollback ? "went back in time" : "restarted uncleanly");
    return 2;
  }
  r = catalog_replica_set_state (mds->cat, segment, c->server,
                                 CATALOG_REPLICA_STALE, &s);
  if (r < 0)
    return r;
  c->stale++;
  log_info ("volume %s: segment %" PRIu64 ": replica on server %" PRIu32
            " marked stale: it may have lost writes (%s)",
            v.name, segment, c->server,
            c->rollback ? "store went back in time" : "unclean restart");
  p->volume = s.volume;
  p->index = s.index;
  p->gen = s.gen;
  for (k = 0; k < s.nreplicas && k < CATALOG_REPLICAS_MAX; ++k) {
    uint32_t id = s.replicas[k].server;

    if ((s.replicas[k].state != CATALOG_REPLICA_OK ||
         !mds_server_is_up (mds, id)) &&
        id != c->server)
      continue;
    if (catalog_server_get (mds->cat, id, &srv) < 0)
      continue;
    p->ids[p->n] = id;
    snprintf (p->addrs[p->n++], PROTO_ADDR_MAX + 1, "%s", srv.address);
  }
  return 1;
}

/* Tell P's servers SEGMENT's new generation (no lock held).  A failure
 * only delays that (the catalog is marked already): logged.
 */
static void
announce (struct mds *mds, struct check *c, uint64_t segment,
          const struct peers *p)
{
  char msg[PROTO_ERRMSG_MAX + 64];
  size_t i;

  for (i = 0; i < p->n; ++i)
    if (mds_srv_set_gen (mds, p->addrs[i], MDS_SERVER_TIMEOUT_MS, segment,
                         p->volume, p->index, p->gen, msg, sizeof msg) < 0)
      log_msg (p->ids[i] == c->server ? LOG_LEVEL_DEBUG : LOG_LEVEL_WARN,
               "segment %" PRIu64 ": server %" PRIu32 ": SEG_SET_GEN %" PRIu64
               ": %s",
               segment, p->ids[i], p->gen, msg);
}

/* Doubt server C->server's replicas of SEGS[0..N) (no lock held).
 * Returns 0 or a catalog error.
 */
static int
doubt_segments (struct mds *mds, struct check *c, const uint64_t *segs,
                size_t n)
{
  struct peers p;
  size_t i;
  int r;

  for (i = 0; i < n; ++i) {
    {
      ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
      r = doubt_replica (mds, c, segs[i], &p);
    }
    if (r < 0) {
      log_error ("catalog: segment %" PRIu64 ": %s", segs[i],
                 catalog_strerror (r));
      return r;
    }
    if (r == 1)
      announce (mds, c, segs[i], &p);
  }
  return 0;
}

/* ---- The check thread ---- */

/* True if the MDS is shutting down. */
static bool
stopping (struct mds *mds)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
  return mds->stopping;
}

/* Wait until C's server answers (it registers before it serves).
 * Returns 0, -ETIMEDOUT, or -ECANCELED at shutdown.
 */
static int
wait_for_server (struct mds *mds, struct check *c)
{
  const struct timespec poll = { .tv_nsec = CHECK_POLL_MS * 1000000L };
  uint64_t deadline = monotonic_ns () + (uint64_t)CHECK_WAIT_MS * 1000000u;

  while (!mds_srv_alive (mds, c->addr)) {
    if (stopping (mds))
      return -ECANCELED;
    if (monotonic_ns () >= deadline)
      return -ETIMEDOUT;
    nanosleep (&poll, NULL);
  }
  return 0;
}

/* After an unclean start: doubt C's server's replicas of the segments
 * of volume V it wrote after the volume's clean epoch.  Returns 0 or
 * -errno.
 */
static int
check_volume (struct mds *mds, struct check *c, const struct check_volume *v)
{
  char msg[PROTO_ERRMSG_MAX + 64];
  uint64_t after = 0;
  int r;

  for (;;) {
    struct proto_segment_list list;
    uint32_t n;

    r = mds_srv_list (mds, c->addr, v->id, v->clean_epoch + 1, after, &list,
                      msg, sizeof msg);
    if (r < 0) {
      log_error ("server %" PRIu32 ": volume %s: SEG_LIST: %s", c->server,
                 v->name, msg);
      return r;
    }
    r = doubt_segments (mds, c, list.segments, list.n);
    n = list.n;
    if (n > 0)
      after = list.segments[n - 1];
    proto_segment_list_free (&list);
    if (r < 0)
      return r;
    if (n < PROTO_LIST_MAX)
      return 0;
  }
}

/* After a rollback: doubt every replica on C's server.  Returns 0 or a
 * catalog error.
 */
static int
check_all (struct mds *mds, struct check *c)
{
  uint64_t after = 0;
  int r;

  for (;;) {
    CLEANUP_FREE uint64_t *segs = NULL;
    size_t n;

    {
      ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
      r = catalog_server_segments (mds->cat, c->server, after, MDS_REPAIR_PAGE,
                                   &segs, &n);
    }
    if (r < 0) {
      log_error ("catalog: server %" PRIu32 " segments: %s", c->server,
                 catalog_strerror (r));
      return r;
    }
    r = doubt_segments (mds, c, segs, n);
    if (r < 0)
      return r;
    if (n < MDS_REPAIR_PAGE)
      return 0;
    after = segs[n - 1];
  }
}

/* Run check C.  Returns 0 or -errno. */
static int
check_run (struct mds *mds, struct check *c)
{
  size_t i;
  int r;

  if (c->rollback)
    return check_all (mds, c);
  if (c->nvols == 0)
    return 0;
  r = wait_for_server (mds, c);
  if (r < 0) {
    log_error ("server %" PRIu32 ": cannot check its segments after its "
               "unclean restart: %s",
               c->server,
               r == -ECANCELED ? "shutting down" : "it does not answer");
    return r;
  }
  for (i = 0; i < c->nvols; ++i) {
    r = check_volume (mds, c, &c->vols[i]);
    if (r < 0)
      return r;
  }
  return 0;
}

/* The thread of check C. */
static void *
check_thread (void *arg)
{
  struct check *c = arg;
  struct mds *mds = c->mds;
  struct mds_server_state *st;
  int r;

  log_set_thread_name ("check");
  r = check_run (mds, c);
  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
    st = mds_server_find (mds, c->server);
    if (st) {
      st->checks--;
      st->unchecked = r < 0;
    }
    if (r == 0)
      log_info ("server %" PRIu32 ": %s checked in %.1f s: %zu replicas "
                "may have lost writes, %zu marked stale, %zu unproven",
                c->server,
                c->rollback ? "every replica after the rollback"
                            : "segments of unclean volumes",
                (monotonic_ns () - c->start_ns) / 1e9, c->doubtful, c->stale,
                c->unproven);
    else
      log_error ("server %" PRIu32 ": check failed after %zu replicas (%zu "
                 "marked stale): its replicas are no copy source until it "
                 "registers again",
                 c->server, c->doubtful, c->stale);
    mds->nchecks--;
    mds_worker_done (mds);
    mds_repair_kick (mds, true);
  }
  free (c->vols);
  free (c);
  return NULL;
}

/* Snapshot into C the volumes that are not clean, and remember that C's
 * server registered uncleanly during their epochs (mds->lock held).
 * Returns 0, -ENOMEM or a catalog error.
 */
static int
unclean_volumes (struct mds *mds, struct check *c)
{
  CLEANUP_FREE struct catalog_volume *vols = NULL;
  size_t n, i;
  int r;

  r = catalog_volume_list (mds->cat, &vols, &n);
  if (r < 0)
    return r;
  c->vols = calloc (n ? n : 1, sizeof *c->vols);
  if (c->vols == NULL)
    return -ENOMEM;
  for (i = 0; i < n; ++i) {
    struct check_volume *cv = &c->vols[c->nvols];

    if ((vols[i].flags & CATALOG_VOL_CLEAN) &&
        vols[i].epoch == vols[i].clean_epoch)
      continue;
    cv->id = vols[i].id;
    cv->clean_epoch = vols[i].clean_epoch;
    snprintf (cv->name, sizeof cv->name, "%s", vols[i].name);
    c->nvols++;
    mds_suspect_add (mds, c->server, vols[i].id, vols[i].epoch);
  }
  return 0;
}

/* SERVER_REGISTER met an unclean start (ROLLBACK false) or a rollback
 * of server SERVER at ADDR (mds->lock held): start its check on a thread
 * of its own; its replicas are no source until the check is over.
 * Returns 0 or -errno (logged; the server then stays suspect).
 */
int
mds_check_server (struct mds *mds, uint32_t server, const char *addr,
                  bool rollback)
{
  struct mds_server_state *st = mds_server_find (mds, server);
  struct check *c;
  pthread_attr_t attr;
  int r;

  c = calloc (1, sizeof *c);
  if (c == NULL || st == NULL) {
    r = -ENOMEM;
    goto err;
  }
  c->mds = mds;
  c->server = server;
  c->rollback = rollback;
  c->start_ns = monotonic_ns ();
  snprintf (c->addr, sizeof c->addr, "%s", addr);
  if (!rollback) {
    r = unclean_volumes (mds, c);
    if (r < 0)
      goto err;
  }
  pthread_attr_init (&attr);
  pthread_attr_setdetachstate (&attr, PTHREAD_CREATE_DETACHED);
  r = -pthread_create (&(pthread_t){ 0 }, &attr, check_thread, c);
  pthread_attr_destroy (&attr);
  if (r < 0)
    goto err;
  st->checks++;
  mds->nchecks++;
  mds->workers++;
  if (!rollback)
    log_info ("server %" PRIu32 ": checking its segments of %zu volumes "
              "that are not clean",
              server, c->nvols);
  return 0;

err:
  log_error ("server %" PRIu32 ": cannot start its check: %s", server,
             strerror (-r));
  if (st)
    st->unchecked = true;
  if (c)
    free (c->vols);
  free (c);
  return r;
}

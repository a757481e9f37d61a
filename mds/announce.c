/* Telling storage servers a segment's new generation after its replica
 * set changed outside a copy: the generation announcer.
 *
 * Storage servers refuse a SEG_READ whose generation is older than the
 * one they hold for the segment (PROTO_ESTALEMAP), and the reader then
 * re-reads its map entry.  That protects a reader with an old map (a
 * read-only plugin caches entries for up to 30 s) from a stale replica
 * only once the stale replica's server knows the new generation.  Copies
 * (copy.c) and the unclean-restart checks (unclean.c) tell it
 * themselves; two other changes are told here, on a thread of its own,
 * so that neither waits for a storage server:
 *   - REPLICA_FAILED marked a replica stale (req-map.c): the segment is
 *     queued with its replicas' servers: the stale one, and the ok and
 *     syncing ones on servers that are up (so that readers refused there
 *     refresh at once).  The writer's reply never waits for this;
 *   - a storage server registered (req-server.c): every replica of it
 *     that the catalog holds stale or syncing is told its segment's
 *     generation (a scan of the catalog's server_segments index, a page
 *     at a time), as the server may have missed the announcement.
 *
 * Every SEG_SET_GEN is best effort, within ANNOUNCE_TIMEOUT_MS: the
 * generation is durable in the catalog already, and repair resyncs the
 * stale replica (its copy tells the generation again).  A server that
 * does not answer is tried again, backing off, for ANNOUNCE_GIVE_UP_MS
 * (twice the plugin's map refresh period: by then no reader's cached
 * entry predates the change), and not more than once per round whatever
 * the number of segments waiting for it.  If it comes back later by
 * restarting, its registration tells it.
 *
 * The queue holds one entry per segment (a new change of a queued
 * segment is merged: the newest generation wins, the servers add up) and
 * at most ANNOUNCE_QUEUE_MAX; when full, the oldest entry is dropped,
 * logged, and its stale replicas' servers scanned instead, so that no
 * stale replica is left untold.  Before each call the catalog is read
 * again: a segment deleted meanwhile is not announced (SEG_SET_GEN would
 * create it again, empty, on a server that dropped it), nor to a server
 * that no longer holds a replica of it, and the generation sent is the
 * catalog's current one.  State: mds->lock (see struct mds); the
 * thread's own memory (struct announcer) is the thread's.
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

/* Bound of each SEG_SET_GEN (connect, and again the reply). */
#define ANNOUNCE_TIMEOUT_MS 1000
/* How long a server that does not answer is tried again. */
#define ANNOUNCE_GIVE_UP_MS 60000
/* First delay before trying again; it doubles up to ANNOUNCE_BACKOFF_MAX_MS. */
#define ANNOUNCE_BACKOFF_MS 200
#define ANNOUNCE_BACKOFF_MAX_MS 2000
/* Most announcements queued (one per segment). */
#define ANNOUNCE_QUEUE_MAX 4096
/* A full queue is warned about at most this often. */
#define ANNOUNCE_DROP_LOG_MS 10000
/* Servers the thread remembers as not answering. */
#define ANNOUNCE_UNREACHABLE_MAX 64

/* Flags of one target of an announcement. */
#define TARGET_TOLD 0x1  /* told the entry's generation */
#define TARGET_STALE 0x2 /* the stale replica: failures are expected */

/* ---- The queue (mds->lock held) ---- */

/* The delay before try number TRIES (0: the first retry). */
static uint64_t
backoff_ns (unsigned tries)
{
  uint64_t ms = ANNOUNCE_BACKOFF_MS;

  while (tries-- > 0 && ms < ANNOUNCE_BACKOFF_MAX_MS)
    ms *= 2;
  if (ms > ANNOUNCE_BACKOFF_MAX_MS)
    ms = ANNOUNCE_BACKOFF_MAX_MS;
  return ms * 1000000u;
}

/* The index of SERVER among A's targets, or -1. */
static int
target_index (const struct mds_announce *a, uint32_t server)
{
  size_t i;

  for (i = 0; i < a->n; ++i)
    if (a->ids[i] == server)
      return i;
  return -1;
}

/* Add SERVER to A's targets with FLAGS (a known one keeps its TOLD
 * unless the generation changed, which the caller handles).
 */
static void
target_add (struct mds_announce *a, uint32_t server, uint8_t flags)
{
  int k = target_index (a, server);

  if (k >= 0) {
    a->flags[k] |= flags & TARGET_STALE;
    return;
  }
  if (a->n == MDS_ANNOUNCE_TARGETS)
    return;
  a->ids[a->n] = server;
  a->flags[a->n++] = flags;
}

/* Schedule a scan of server SERVER's stale and syncing replicas from the
 * start, due now.  Returns 0 or -ENOMEM.
 */
static int
scan_add (struct mds *mds, uint32_t server)
{
  uint64_t now = monotonic_ns ();
  struct mds_announce_scan *p;
  size_t i;

  for (i = 0; i < mds->nscans; ++i)
    if (mds->scans[i].server == server)
      break;
  if (i == mds->nscans) {
    p = realloc (mds->scans, (mds->nscans + 1) * sizeof *p);
    if (p == NULL)
      return -ENOMEM;
    mds->scans = p;
    mds->nscans++;
  }
  mds->scans[i] = (struct mds_announce_scan){
    .server = server,
    .start_ns = now,
    .give_up_ns = now + (uint64_t)ANNOUNCE_GIVE_UP_MS * 1000000u,
    .not_before_ns = now,
  };
  pthread_cond_signal (&mds->announce_wake);
  return 0;
}

/* The queue is full: drop its oldest entry, and scan the servers of its
 * stale replicas that were not told instead.
 */
static void
drop_oldest (struct mds *mds)
{
  struct mds_announce *a = &mds->announces[0];
  size_t i;

  uint64_t now = monotonic_ns ();

  /* A mass failure drops many: one warning per ANNOUNCE_DROP_LOG_MS. */
  mds->announce_dropped++;
  if (now >= mds->announce_drop_log_ns) {
    log_warn ("segment %" PRIu64 ": generation %" PRIu64 " not announced: "
              "%d announcements waiting already (%" PRIu64 " dropped so "
              "far); the servers of their stale replicas get a scan instead",
              a->segment, a->gen, ANNOUNCE_QUEUE_MAX, mds->announce_dropped);
    mds->announce_drop_log_ns = now + (uint64_t)ANNOUNCE_DROP_LOG_MS * 1000000u;
  }
  else
    log_debug ("segment %" PRIu64 ": generation %" PRIu64 " not announced: "
               "queue full",
               a->segment, a->gen);
  for (i = 0; i < a->n; ++i)
    if ((a->flags[i] & (TARGET_STALE | TARGET_TOLD)) == TARGET_STALE &&
        scan_add (mds, a->ids[i]) < 0)
      log_error ("server %" PRIu32 ": cannot schedule a scan: out of memory",
                 a->ids[i]);
  memmove (a, a + 1, --mds->nannounces * sizeof *a);
}

/* Queue A (or merge it into the entry of the same segment: the newer
 * generation wins, the targets add up, and a new generation is told to
 * every target again).
 */
static void
queue_entry (struct mds *mds, const struct mds_announce *a)
{
  struct mds_announce *q, *p;
  size_t i, k;

  for (i = 0; i < mds->nannounces; ++i) {
    q = &mds->announces[i];
    if (q->segment != a->segment)
      continue;
    if (a->gen > q->gen) {
      q->gen = a->gen;
      for (k = 0; k < q->n; ++k)
        q->flags[k] &= ~TARGET_TOLD;
    }
    for (k = 0; k < a->n; ++k)
      target_add (q, a->ids[k], a->flags[k] & ~TARGET_TOLD);
    if (a->marked_ns < q->marked_ns)
      q->marked_ns = a->marked_ns;
    if (a->give_up_ns > q->give_up_ns)
      q->give_up_ns = a->give_up_ns;
    if (a->not_before_ns < q->not_before_ns)
      q->not_before_ns = a->not_before_ns;
    pthread_cond_signal (&mds->announce_wake);
    return;
  }
  if (mds->nannounces == ANNOUNCE_QUEUE_MAX)
    drop_oldest (mds);
  p = realloc (mds->announces, (mds->nannounces + 1) * sizeof *p);
  if (p == NULL) {
    log_error ("segment %" PRIu64 ": generation %" PRIu64 " not announced: "
               "out of memory",
               a->segment, a->gen);
    return;
  }
  mds->announces = p;
  p[mds->nannounces++] = *a;
  pthread_cond_signal (&mds->announce_wake);
}

/* REPLICA_FAILED marked server STALE's replica of S stale (S as it is
 * now, mds->lock held): queue the announcement of S's generation to
 * STALE and to the servers of its ok and syncing replicas that are up.
 * Never blocks.
 */
void
mds_announce_stale (struct mds *mds, const struct catalog_segment *s,
                    uint32_t stale)
{
  uint64_t now = monotonic_ns ();
  struct mds_announce a = {
    .segment = s->id,
    .volume = s->volume,
    .index = s->index,
    .gen = s->gen,
    .marked_ns = now,
    .give_up_ns = now + (uint64_t)ANNOUNCE_GIVE_UP_MS * 1000000u,
    .not_before_ns = now,
  };
  uint32_t k;

  /* Ok replicas first: they answer at once, the stale one may not. */
  for (k = 0; k < s->nreplicas && k < CATALOG_REPLICAS_MAX; ++k)
    if (s->replicas[k].server != stale &&
        s->replicas[k].state != CATALOG_REPLICA_STALE &&
        mds_server_is_up (mds, s->replicas[k].server))
      target_add (&a, s->replicas[k].server, 0);
  target_add (&a, stale, TARGET_STALE);
  queue_entry (mds, &a);
}

/* Server SERVER registered (mds->lock held): tell it the generation of
 * every segment of which it holds a stale or syncing replica.  Never
 * blocks.
 */
void
mds_announce_server (struct mds *mds, uint32_t server)
{
  if (scan_add (mds, server) < 0)
    log_error ("server %" PRIu32 ": cannot schedule the announcement of its "
               "stale replicas' generations: out of memory",
               server);
}

/* ---- The thread ---- */

/* True if the MDS is shutting down. */
static bool
stopping (struct mds *mds)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
  return mds->stopping;
}

/* Servers that did not answer lately: not called again before UNTIL_NS,
 * so that a hung server costs one timeout per round, not one per
 * segment.  The thread's own.
 */
struct announcer {
  size_t n;
  struct {
    uint32_t id;
    uint64_t until_ns;
  } down[ANNOUNCE_UNREACHABLE_MAX];
};

/* True if server ID did not answer lately. */
static bool
unreachable (const struct announcer *an, uint32_t id, uint64_t now)
{
  size_t i;

  for (i = 0; i < an->n; ++i)
    if (an->down[i].id == id)
      return now < an->down[i].until_ns;
  return false;
}

/* Remember whether server ID answered (OK) at NOW. */
static void
heard (struct announcer *an, uint32_t id, bool ok, uint64_t now)
{
  size_t i;

  for (i = 0; i < an->n; ++i)
    if (an->down[i].id == id)
      break;
  if (ok) {
    if (i < an->n)
      an->down[i] = an->down[--an->n];
    return;
  }
  if (i == an->n) {
    if (an->n == ANNOUNCE_UNREACHABLE_MAX)
      i = 0; /* forget one: it costs one more timeout at worst */
    else
      an->n++;
  }
  an->down[i].id = id;
  an->down[i].until_ns = now + (uint64_t)ANNOUNCE_TIMEOUT_MS * 1000000u;
}

/* True if S has a replica on SERVER. */
static bool
holds (const struct catalog_segment *s, uint32_t server)
{
  uint32_t k;

  for (k = 0; k < s->nreplicas && k < CATALOG_REPLICAS_MAX; ++k)
    if (s->replicas[k].server == server)
      return true;
  return false;
}

/* Bring A up to date with the catalog and fill ADDRS with the addresses
 * of the targets to call now (mds->lock held).  Targets that need no
 * call (no replica there any more, no such server) are marked told.
 * Returns the number of targets to call, or -ENOENT if the segment is
 * gone, or another catalog error.
 */
static int
announce_prepare (struct mds *mds, struct announcer *an, struct mds_announce *a,
                  char addrs[][PROTO_ADDR_MAX + 1], bool *call)
{
  struct catalog_segment s;
  uint64_t now = monotonic_ns ();
  size_t i;
  int r, n = 0;

  r = catalog_segment_get (mds->cat, a->segment, &s);
  if (r < 0)
    return r;
  if (s.gen > a->gen) {
    a->gen = s.gen;
    for (i = 0; i < a->n; ++i)
      a->flags[i] &= ~TARGET_TOLD;
  }
  for (i = 0; i < a->n; ++i) {
    call[i] = false;
    if (a->flags[i] & TARGET_TOLD)
      continue;
    if (!holds (&s, a->ids[i]) ||
        mds_server_address (mds, a->ids[i], addrs[i]) < 0) {
      a->flags[i] |= TARGET_TOLD;
      continue;
    }
    if (unreachable (an, a->ids[i], now))
      continue;
    call[i] = true;
    n++;
  }
  return n;
}

/* Announce entry A (taken off the queue; no lock held on entry or exit),
 * and put it back if some target is still to be told.
 */
static void
announce_one (struct mds *mds, struct announcer *an, struct mds_announce *a)
{
  char addrs[MDS_ANNOUNCE_TARGETS][PROTO_ADDR_MAX + 1];
  char msg[PROTO_ERRMSG_MAX + 64];
  bool call[MDS_ANNOUNCE_TARGETS];
  uint64_t now;
  size_t i, left = 0;
  int r;

  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
    r = announce_prepare (mds, an, a, addrs, call);
  }
  if (r == -ENOENT)
    return; /* deleted meanwhile: nothing to tell */
  if (r < 0) {
    log_error ("catalog: segment %" PRIu64 ": %s", a->segment,
               catalog_strerror (r));
    return;
  }
  for (i = 0; i < a->n && !stopping (mds); ++i) {
    if (!call[i])
      continue;
    r = mds_srv_set_gen (mds, addrs[i], ANNOUNCE_TIMEOUT_MS, a->segment,
                         a->volume, a->index, a->gen, msg, sizeof msg);
    now = monotonic_ns ();
    heard (an, a->ids[i], r == 0, now);
    if (r == 0) {
      a->flags[i] |= TARGET_TOLD;
      log_debug ("segment %" PRIu64 ": generation %" PRIu64
                 " told to server %" PRIu32 "%s, %.3f s after the change",
                 a->segment, a->gen, a->ids[i],
                 a->flags[i] & TARGET_STALE ? " (stale replica)" : "",
                 (now - a->marked_ns) / 1e9);
    }
    else
      log_debug ("segment %" PRIu64 ": server %" PRIu32 ": SEG_SET_GEN %" PRIu64
                 ": %s",
                 a->segment, a->ids[i], a->gen, msg);
  }
  for (i = 0; i < a->n; ++i)
    if (!(a->flags[i] & TARGET_TOLD))
      left++;
  if (left == 0)
    return;
  now = monotonic_ns ();
  if (now >= a->give_up_ns) {
    for (i = 0; i < a->n; ++i)
      if (!(a->flags[i] & TARGET_TOLD))
        log_msg (a->flags[i] & TARGET_STALE ? LOG_LEVEL_INFO : LOG_LEVEL_WARN,
                 "segment %" PRIu64 ": server %" PRIu32 " (%s replica) did "
                 "not answer for %d s: not told generation %" PRIu64
                 " (it is, when it registers again)",
                 a->segment, a->ids[i],
                 a->flags[i] & TARGET_STALE ? "stale" : "ok",
                 ANNOUNCE_GIVE_UP_MS / 1000, a->gen);
    return;
  }
  a->not_before_ns = now + backoff_ns (a->tries++);
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
  queue_entry (mds, a);
}

/* A segment of a scanned server to tell. */
struct scan_item {
  uint64_t segment;
  uint64_t volume;
  uint64_t index;
  uint64_t gen;
};

/* Read the next page of SC's server's stale and syncing replicas into
 * ITEMS (room for MDS_REPAIR_PAGE), its address into ADDR, and the last
 * segment id of the page into *LAST (mds->lock held).  Returns the
 * number of segments of the page (a page shorter than MDS_REPAIR_PAGE
 * is the last), *NITEMS those to tell, or a catalog error (-ENOENT: the
 * server is gone).
 */
static int
scan_page (struct mds *mds, const struct mds_announce_scan *sc,
           struct scan_item *items, size_t *nitems, char *addr, uint64_t *last)
{
  CLEANUP_FREE uint64_t *segs = NULL;
  struct catalog_segment s;
  size_t n, i;
  uint32_t k;
  int r;

  *nitems = 0;
  r = mds_server_address (mds, sc->server, addr);
  if (r == 0)
    r = catalog_server_segments (mds->cat, sc->server, sc->after,
                                 MDS_REPAIR_PAGE, &segs, &n);
  if (r < 0)
    return r;
  *last = n > 0 ? segs[n - 1] : sc->after;
  for (i = 0; i < n; ++i) {
    if (catalog_segment_get (mds->cat, segs[i], &s) < 0)
      continue;
    for (k = 0; k < s.nreplicas && k < CATALOG_REPLICAS_MAX; ++k)
      if (s.replicas[k].server == sc->server &&
          s.replicas[k].state != CATALOG_REPLICA_OK) {
        items[(*nitems)++] = (struct scan_item){
          .segment = s.id, .volume = s.volume, .index = s.index, .gen = s.gen
        };
        break;
      }
  }
  return n;
}

/* Take one page of scan SC (a copy of the queued one; no lock held on
 * entry or exit), and update or remove the queued one.
 */
static void
scan_step (struct mds *mds, struct announcer *an, struct mds_announce_scan *sc)
{
  CLEANUP_FREE struct scan_item *items = NULL;
  char addr[PROTO_ADDR_MAX + 1];
  char msg[PROTO_ERRMSG_MAX + 64] = "";
  uint64_t last, now, start_ns = sc->start_ns;
  size_t nitems = 0, i;
  bool done = false, failed = false;
  int n;

  items = malloc (MDS_REPAIR_PAGE * sizeof *items);
  if (items == NULL)
    n = -ENOMEM;
  else {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
    n = scan_page (mds, sc, items, &nitems, addr, &last);
  }
  if (n < 0) {
    if (n != -ENOENT) /* else the server was removed meanwhile */
      log_error ("server %" PRIu32 ": announcing its stale replicas' "
                 "generations: %s",
                 sc->server, catalog_strerror (n));
    done = true;
  }
  for (i = 0; n >= 0 && i < nitems && !stopping (mds); ++i) {
    if (mds_srv_set_gen (mds, addr, ANNOUNCE_TIMEOUT_MS, items[i].segment,
                         items[i].volume, items[i].index, items[i].gen, msg,
                         sizeof msg) < 0) {
      failed = true;
      break;
    }
    sc->told++;
    sc->after = items[i].segment;
  }
  now = monotonic_ns ();
  if (nitems > 0)
    heard (an, sc->server, !failed, now);
  if (n >= 0 && !failed && i == nitems) {
    sc->after = last;
    done = n < MDS_REPAIR_PAGE;
    if (done && sc->told > 0)
      log_info ("server %" PRIu32 ": told the generation of its %zu stale "
                "or syncing replicas, %.3f s after it registered",
                sc->server, sc->told, (now - sc->start_ns) / 1e9);
  }
  else if (failed) {
    log_debug ("server %" PRIu32 ": SEG_SET_GEN: %s", sc->server, msg);
    if (now >= sc->give_up_ns) {
      log_warn ("server %" PRIu32 ": does not answer %d s after it "
                "registered: the generation of some of its stale replicas "
                "is not told (told %zu)",
                sc->server, ANNOUNCE_GIVE_UP_MS / 1000, sc->told);
      done = true;
    }
    else
      sc->not_before_ns = now + backoff_ns (sc->tries++);
  }

  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
  for (i = 0; i < mds->nscans; ++i) {
    struct mds_announce_scan *q = &mds->scans[i];

    if (q->server != sc->server)
      continue;
    if (q->start_ns != start_ns)
      return; /* registered again meanwhile: that scan starts over */
    if (done)
      mds->scans[i] = mds->scans[--mds->nscans];
    else
      *q = *sc;
    return;
  }
}

/* The thread's next work (mds->lock held): an announcement due now
 * (taken off the queue into *A, returns 1), a scan due now (copied into
 * *SC, returns 2), or 0 and the time of the next one in *NEXT_NS.
 */
static int
next_work (struct mds *mds, struct mds_announce *a,
           struct mds_announce_scan *sc, uint64_t *next_ns)
{
  uint64_t now = monotonic_ns ();
  size_t i;

  *next_ns = now + 1000000000u;
  for (i = 0; i < mds->nannounces; ++i) {
    if (mds->announces[i].not_before_ns <= now) {
      *a = mds->announces[i];
      memmove (&mds->announces[i], &mds->announces[i + 1],
               (--mds->nannounces - i) * sizeof *a);
      return 1;
    }
    if (mds->announces[i].not_before_ns < *next_ns)
      *next_ns = mds->announces[i].not_before_ns;
  }
  for (i = 0; i < mds->nscans; ++i) {
    if (mds->scans[i].not_before_ns <= now) {
      *sc = mds->scans[i];
      /* Not again before this step is over. */
      mds->scans[i].not_before_ns = UINT64_MAX;
      return 2;
    }
    if (mds->scans[i].not_before_ns < *next_ns)
      *next_ns = mds->scans[i].not_before_ns;
  }
  return 0;
}

/* The announcer thread. */
static void *
announce_thread (void *arg)
{
  struct mds *mds = arg;
  struct announcer an = { .n = 0 };
  struct mds_announce a;
  struct mds_announce_scan sc;
  struct timespec ts;
  uint64_t next_ns;
  int w;

  log_set_thread_name ("announce");
  pthread_mutex_lock (&mds->lock);
  while (!mds->stopping) {
    w = next_work (mds, &a, &sc, &next_ns);
    if (w == 0) {
      ts.tv_sec = next_ns / 1000000000u;
      ts.tv_nsec = next_ns % 1000000000u;
      pthread_cond_timedwait (&mds->announce_wake, &mds->lock, &ts);
      continue;
    }
    pthread_mutex_unlock (&mds->lock);
    if (w == 1)
      announce_one (mds, &an, &a);
    else
      scan_step (mds, &an, &sc);
    pthread_mutex_lock (&mds->lock);
  }
  pthread_mutex_unlock (&mds->lock);
  return NULL;
}

/* Start the announcer thread.  Returns 0 or -errno. */
int
mds_announce_start (struct mds *mds)
{
  int r = pthread_create (&mds->announce_thread, NULL, announce_thread, mds);

  if (r != 0)
    return -r;
  mds->announce_started = true;
  return 0;
}

/* Stop the announcer thread (mds->stopping must be set already): it
 * ends after its current call, within 2 * ANNOUNCE_TIMEOUT_MS.  What is
 * still queued is dropped: registrations after the restart tell it.
 */
void
mds_announce_stop (struct mds *mds)
{
  if (!mds->announce_started)
    return;
  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
    pthread_cond_broadcast (&mds->announce_wake);
  }
  pthread_join (mds->announce_thread, NULL);
  mds->announce_started = false;
}

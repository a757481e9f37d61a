/* nbdkit-tessera-plugin: the open volume.
 *
 * One struct volume per nbdkit process, shared by every NBD connection.
 * This file composes its rooms: volume_open connects the MDS session
 * (mds-session.c), opens the volume read-only (VOL_OPEN) and loads the
 * storage-server table (servers.c); volume_start starts the lease
 * thread, which renews the writer lease (lease.c) and reads and re-reads
 * the map cache (map.c); volume_close stops it, flushes (flush.c) and
 * sends VOL_CLOSE; volume_free frees the rooms.
 *
 * The writer lease is taken by the first connection that nbdkit opens
 * read-write (volume_take_lease, from .open), not at start-up: nbdkit
 * tells a plugin about -r only there, so nbdkit -r never takes it.
 * Until then the volume is served as a read-only open is.
 *
 * stop_lock and stop_cond stop and wake the lease thread; lease_lock
 * serializes taking the lease; nothing else here is shared but through
 * the rooms, each with its own locks.
 */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "buf.h"
#include "cleanup.h"
#include "deadline.h"
#include "minmax.h"
#include "protocol.h"

#include "internal.h"

/* How often the lease thread re-reads the loaded parts of the map (see
 * map_refresh).
 */
#define MAP_REFRESH_SECONDS 30

/* The background read of the map: at most this long at a time, this
 * often, so that lease renewals stay on time.
 */
#define MAP_PREFETCH_MS 200
#define PREFETCH_PERIOD_MS UINT64_C (100)

/* ---- Lease thread ---- */

/* The period of the lease thread: a third of the lease once it is
 * taken, else MAP_REFRESH_SECONDS, and at least 50 ms.  Caller holds
 * v->stop_lock (lease_ms is set before leased, under it).
 */
static uint64_t
lease_period_ms (struct volume *v)
{
  uint64_t period_ms = v->lease_ms / 3;

  if (!atomic_load (&v->leased) || v->lease_ms == 0 ||
      period_ms > 1000 * MAP_REFRESH_SECONDS)
    period_ms = 1000 * MAP_REFRESH_SECONDS;
  if (period_ms < 50)
    period_ms = 50;
  return period_ms;
}

/* The lease thread: renew the writer lease every lease_ms/3 once it is
 * taken (volume_take_lease wakes the thread), read the rest of the map
 * in the background (map_prefetch: MAP_PREFETCH_MS at a time, every
 * PREFETCH_PERIOD_MS until done), re-read the cached map every
 * MAP_REFRESH_SECONDS, until volume_close.
 */
static void *
lease_thread (void *arg)
{
  struct volume *v = arg;
  uint64_t period_ms;
  uint64_t last_refresh = monotonic_ns (), last_renew = 0;
  struct timespec ts;
  bool renew = false;
  bool prefetched = !v->cfg->map_prefetch;
  int e;

  pthread_mutex_lock (&v->stop_lock);
  while (!v->stopping) {
    period_ms = lease_period_ms (v);
    ts = deadline_after_ms (prefetched ? period_ms
                                       : MIN (period_ms, PREFETCH_PERIOD_MS));
    e = 0;
    while (!v->stopping && !v->wake && e != ETIMEDOUT)
      e = pthread_cond_timedwait (&v->stop_cond, &v->stop_lock, &ts);
    if (v->stopping)
      break;
    if (v->wake) {
      /* The lease was just taken: renew a period from now. */
      v->wake = false;
      last_renew = monotonic_ns ();
    }
    renew = atomic_load (&v->leased) && v->lease_ms > 0;
    pthread_mutex_unlock (&v->stop_lock);

    if (renew && !atomic_load (&v->lease_lost) &&
        monotonic_ns () - last_renew >= period_ms * 1000000) {
      lease_renew (v);
      last_renew = monotonic_ns ();
    }
    if (!prefetched)
      prefetched = map_prefetch (v, MAP_PREFETCH_MS);
    if (monotonic_ns () - last_refresh >= MAP_REFRESH_SECONDS * 1000000000ull) {
      map_refresh (v);
      last_refresh = monotonic_ns ();
    }

    pthread_mutex_lock (&v->stop_lock);
  }
  pthread_mutex_unlock (&v->stop_lock);
  return NULL;
}

/* ---- Open and close ---- */

/* Fill TOKEN with a random open token, so that the MDS recognizes this
 * open if it is sent again after its answer was lost.  It need not be
 * secret, only unlike any other writer's: without getrandom, the time
 * and the process id do.
 */
static void
make_open_token (uint8_t token[PROTO_OPEN_TOKEN_SIZE])
{
  struct timespec ts;
  uint64_t x[2];

  if (getrandom (token, PROTO_OPEN_TOKEN_SIZE, 0) == PROTO_OPEN_TOKEN_SIZE)
    return;
  clock_gettime (CLOCK_REALTIME, &ts);
  x[0] = (uint64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
  x[1] = ((uint64_t)getpid () << 32) ^ monotonic_ns () ^ 1;
  memcpy (token, x, PROTO_OPEN_TOKEN_SIZE);
}

/* Send VOL_OPEN, read-write if RW, and decode the reply into *REP.
 * While the MDS answers EAGAIN (it is resyncing the volume after a
 * writer crash), retry every second for up to open-timeout seconds.  A
 * read-write open carries a random token: sent again after a transport
 * error, it gets the lease that the first one may have taken rather
 * than EBUSY.  Returns 0 or -errno (reported with the MDS's message).
 */
static int
send_open (struct volume *v, bool rw, struct proto_open_reply *rep)
{
  struct proto_vol_request req = { .flags = rw ? PROTO_OPEN_RW : 0 };
  struct proto_wbuf wb = { 0 };
  CLEANUP_FREE void *reply = NULL;
  char errmsg[PROTO_ERRMSG_MAX + 1];
  uint64_t start = monotonic_ns (), waited;
  uint32_t len;
  unsigned tries;
  int outcome, r;

  snprintf (req.name, sizeof req.name, "%s", v->name);
  if (rw)
    make_open_token (req.token);
  proto_encode_vol_request (&req, &wb);
  for (tries = 0;; tries++) {
    r = mds_session_request (v, PROTO_OP_VOL_OPEN, &wb, false, &outcome, &reply,
                             &len, errmsg, sizeof errmsg);
    if (r != -EAGAIN || outcome != MDS_ANSWERED)
      break;
    waited = (monotonic_ns () - start) / 1000000000;
    if (waited >= v->cfg->open_timeout)
      break;
    if (tries % 10 == 0)
      nbdkit_debug ("volume %s: open: %s: retrying for up to %" PRIu64
                    " more seconds",
                    v->name, errmsg[0] ? errmsg : strerror (-r),
                    v->cfg->open_timeout - waited);
    request_sleep_ms (1000);
    free (reply);
    reply = NULL;
  }
  proto_wbuf_free (&wb);
  if (r < 0) {
    nbdkit_error ("volume %s: open%s: %s", v->name, rw ? " for writing" : "",
                  errmsg[0] ? errmsg : strerror (-r));
    return r;
  }
  r = proto_decode_open_reply (reply, len, rep);
  if (r < 0) {
    nbdkit_error ("volume %s: open: malformed reply", v->name);
    return -EIO;
  }
  if (rep->segment_size < 4096 || rep->segment_size > (1u << 30) ||
      (rep->segment_size & (rep->segment_size - 1)) != 0) {
    nbdkit_error ("volume %s: open: bad segment size %" PRIu32, v->name,
                  rep->segment_size);
    return -EIO;
  }
  return 0;
}

/* Log what the VOL_OPEN reply of V said. */
static void
debug_open (struct volume *v, bool rw)
{
  nbdkit_debug ("volume %s: id %" PRIu64 ", size %" PRIu64
                ", segment size %" PRIu32 ", epoch %" PRIu64 ", lease %" PRIu32
                " ms, min-copies %" PRIu32 ", %s",
                v->name, v->id, v->size, v->segment_size, epoch_current (v),
                v->lease_ms, v->min_copies, rw ? "read-write" : "read-only");
}

/* Fill in V from the read-only VOL_OPEN reply REP (volume_open). */
static void
apply_open (struct volume *v, const struct proto_open_reply *rep)
{
  v->opened = true;
  v->id = rep->volume.id;
  v->size = rep->volume.size;
  v->epoch = rep->volume.epoch;
  v->segment_size = rep->segment_size;
  v->lease_ms = rep->lease_ms;
  /* An MDS older than min-copies sends 0: one copy, as it did. */
  v->min_copies = rep->volume.min_copies ? rep->volume.min_copies : 1;
  v->seg_shift = __builtin_ctz (rep->segment_size);
  v->nsegments =
      (v->size >> v->seg_shift) + ((v->size & (v->segment_size - 1)) != 0);
  v->nchunks = (v->nsegments + PROTO_MAP_MAX - 1) / PROTO_MAP_MAX;
  debug_open (v, false);
}

/* Open the volume named in CFG (.get_ready): connect to the MDS, open
 * the volume read-only (volume_take_lease makes it read-write), fetch
 * the server list.  CFG must outlive the volume.  Starts no thread.
 * Returns 0 and *OUT (close with volume_close, free with volume_free),
 * or -errno after an nbdkit_error.
 */
int
volume_open (const struct tessera_config *cfg, struct volume **out)
{
  pthread_condattr_t attr;
  struct proto_open_reply rep;
  struct volume *v;
  int r;

  *out = NULL;
  v = calloc (1, sizeof *v);
  if (v == NULL) {
    nbdkit_error ("calloc: %m");
    return -ENOMEM;
  }
  v->cfg = cfg;
  snprintf (v->name, sizeof v->name, "%s", cfg->volume);
  atomic_init (&v->rw, false);
  atomic_init (&v->leased, false);
  mds_session_init (v);
  map_init (v);
  doubt_init (v);
  servers_init (v);
  pthread_mutex_init (&v->flush_lock, NULL);
  pthread_mutex_init (&v->lost_lock, NULL);
  atomic_init (&v->lost_pending, 0);
  pthread_mutex_init (&v->stop_lock, NULL);
  pthread_mutex_init (&v->lease_lock, NULL);
  pthread_condattr_init (&attr);
  pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
  pthread_cond_init (&v->stop_cond, &attr);
  pthread_condattr_destroy (&attr);
  rangelock_init (&v->rl);
  epoch_init (v);
  v->last_rotation_ns = monotonic_ns ();
  atomic_init (&v->read_rr, 0);
  atomic_init (&v->lease_lost, false);

  r = mds_session_connect (v);
  if (r < 0)
    goto err;
  r = send_open (v, false, &rep);
  if (r < 0)
    goto err;
  apply_open (v, &rep);
  v->chunks = calloc (v->nchunks ? v->nchunks : 1, sizeof v->chunks[0]);
  if (v->chunks == NULL) {
    nbdkit_error ("calloc: %m");
    r = -ENOMEM;
    goto err;
  }
  r = servers_load (v);
  if (r < 0)
    goto err;
  *out = v;
  return 0;

err:
  volume_close (v);
  volume_free (v);
  return r;
}

/* Start the lease thread (.after_fork).  Returns 0 or -errno (reported).
 */
int
volume_start (struct volume *v)
{
  int e;

  e = pthread_create (&v->lease_thread, NULL, lease_thread, v);
  if (e != 0) {
    nbdkit_error ("volume %s: start lease thread: %s", v->name, strerror (e));
    return -e;
  }
  v->lease_thread_started = true;
  return 0;
}

/* Take the writer lease (.open of a read-write connection): VOL_OPEN
 * read-write, then re-read the map cache so that its holes can be
 * trusted, then allow writes (v->rw).  The first caller does it; the
 * others wait for it (lease_lock) and return at once once it is done.
 * A volume resized or recreated since volume_open is refused: its
 * geometry is fixed.  Returns 0, or -errno after an nbdkit_error: a
 * refused lease (another writer holds it) names the volume and the
 * MDS's reason, and a later call tries again.
 */
int
volume_take_lease (struct volume *v)
{
  struct proto_open_reply rep;
  uint32_t min_copies;
  int r;

  if (atomic_load (&v->rw))
    return 0;
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&v->lease_lock);
  if (atomic_load (&v->rw))
    return 0;

  if (!atomic_load (&v->leased)) {
    r = send_open (v, true, &rep);
    if (r < 0)
      return r;
    if (rep.volume.id != v->id || rep.volume.size != v->size ||
        rep.segment_size != v->segment_size) {
      /* Not ours to keep: let it expire (or be released by its
       * rightful user's resync).
       */
      nbdkit_error ("volume %s: open for writing: the volume was resized "
                    "or recreated since nbdkit started: restart nbdkit",
                    v->name);
      return -EIO;
    }
    min_copies = rep.volume.min_copies ? rep.volume.min_copies : 1;
    pthread_rwlock_wrlock (&v->epoch_rw);
    pthread_mutex_lock (&v->epoch_lock);
    v->epoch = rep.volume.epoch;
    pthread_mutex_unlock (&v->epoch_lock);
    pthread_rwlock_unlock (&v->epoch_rw);
    v->min_copies = min_copies;

    pthread_mutex_lock (&v->stop_lock);
    v->lease_ms = rep.lease_ms;
    atomic_store (&v->leased, true);
    v->wake = true;
    pthread_cond_broadcast (&v->stop_cond);
    pthread_mutex_unlock (&v->stop_lock);
    debug_open (v, true);
  }

  /* Entries cached before the lease may show holes that the previous
   * writer has allocated since; from now on we are the only allocator.
   */
  r = map_revalidate (v);
  if (r < 0)
    return r;
  atomic_store (&v->rw, true);
  return 0;
}

/* Send VOL_CLOSE in the current epoch, so that the MDS marks the
 * volume clean and releases the lease.  Returns 0 or -errno (logged for
 * debugging only).
 */
static int
send_close (struct volume *v)
{
  struct proto_lease l = { .volume = v->id };
  CLEANUP_FREE void *reply = NULL;
  char errmsg[PROTO_ERRMSG_MAX + 1];
  uint32_t len;
  int attempt, r;

  for (attempt = 0;; attempt++) {
    struct proto_wbuf wb = { 0 };

    l.epoch = epoch_current (v);
    proto_encode_lease (&l, &wb);
    r = mds_session_call (v, PROTO_OP_VOL_CLOSE, &wb, &reply, &len, errmsg,
                          sizeof errmsg);
    proto_wbuf_free (&wb);
    if (r == -ESTALE && attempt == 0 && epoch_resolve (v, l.epoch) == 0)
      continue;
    break;
  }
  if (r < 0)
    nbdkit_debug ("volume %s: close: %s", v->name,
                  errmsg[0] ? errmsg : strerror (-r));
  else
    nbdkit_debug ("volume %s: closed cleanly, epoch %" PRIu64, v->name,
                  l.epoch);
  return r;
}

/* Close the volume once no request is running (.cleanup, or .unload if
 * .cleanup was not reached): stop the lease thread, flush what is not
 * durable yet, send VOL_CLOSE with the epoch so that the MDS records a
 * clean close, and close the storage-server connections.  If the flush
 * fails, the lease was lost, or a write failed part way (its replicas
 * may differ), VOL_CLOSE is not sent: the epoch stays dirty and the MDS
 * resyncs the replicas before the next writer.  A volume that never
 * took the lease sends nothing.  Idempotent; accepts NULL.
 */
void
volume_close (struct volume *v)
{
  const char *why = NULL;

  if (v == NULL || v->closed)
    return;
  v->closed = true;

  pthread_mutex_lock (&v->stop_lock);
  v->stopping = true;
  pthread_cond_broadcast (&v->stop_cond);
  pthread_mutex_unlock (&v->stop_lock);
  if (v->lease_thread_started) {
    pthread_join (v->lease_thread, NULL);
    v->lease_thread_started = false;
  }

  /* A read-only open holds no lease: VOL_CLOSE with the epoch it was
   * shown would release the writer's lease.
   */
  if (v->opened && atomic_load (&v->leased)) {
    if (atomic_load (&v->lease_lost))
      why = "the writer lease was lost";
    else if (flush_volume (v, false) < 0)
      why = "the last flush failed";
    else if (atomic_load (&v->unclean))
      why = "a write failed on some replicas";
    if (why == NULL)
      send_close (v);
    else
      nbdkit_debug ("volume %s: not closed cleanly (%s): epoch %" PRIu64
                    " stays dirty",
                    v->name, why, epoch_current (v));
  }
  servers_disconnect (v);
}

/* Free V and everything it owns (accepts NULL).  Call volume_close
 * first.
 */
void
volume_free (struct volume *v)
{
  if (v == NULL)
    return;
  assert (v->closed && !v->lease_thread_started);
  map_free (v);
  doubt_free (v);
  servers_free (v);
  mds_session_destroy (v);
  rangelock_destroy (&v->rl);
  epoch_destroy (v);
  pthread_cond_destroy (&v->stop_cond);
  pthread_mutex_destroy (&v->stop_lock);
  pthread_mutex_destroy (&v->lease_lock);
  pthread_mutex_destroy (&v->flush_lock);
  pthread_mutex_destroy (&v->lost_lock);
  free (v);
}

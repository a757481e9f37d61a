/* nbdkit-tessera-plugin: the writer's epochs.
 *
 * Every write and trim carries the writer's epoch; the storage servers
 * record each segment's last writing epoch.  At a flush, at most every
 * epoch-interval seconds, the plugin rotates: EPOCH_NEXT gives epoch E+1
 * for the writes that start from then on; once every write of epoch E
 * (and older) has completed and the flush has made them durable,
 * EPOCH_CLEAN(E) lets the MDS record that a resync after a crash need
 * only look at later epochs (see flush_volume and docs/failure-handling.md).
 *
 * Writes in flight are counted per epoch in a few slots (epoch-slots.c):
 * at most the current epoch and the one a flush is draining have writes
 * in flight.
 *
 * Rotating and marking clean are bookkeeping that a flush can do
 * without, so neither holds a flush up for long: a rotation that cannot
 * take epoch_rw soon (MDS requests naming the epoch are slow) is
 * skipped, and a drain waits half the timeout at most; an epoch not
 * seen drained is not marked clean (a later EPOCH_CLEAN covers it).
 *
 * EPOCH_NEXT is not idempotent.  If its answer is lost (the MDS died or
 * the connection broke) the MDS may or may not have moved the lease to
 * E+1; the plugin keeps E and remembers E+1 in maybe_next.  When the MDS
 * then says that E is stale, a LEASE_RENEW with E+1 settles it
 * (epoch_resolve): if it succeeds the plugin adopts E+1, else the lease
 * is lost.  Nobody else can hold E+1: a new writer taking the volume
 * over always resyncs it first, which uses up an epoch of its own.
 */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "buf.h"
#include "cleanup.h"
#include "deadline.h"
#include "protocol.h"

#include "internal.h"

/* Initialize the epoch state of V (volume_open, before VOL_OPEN sets
 * v->epoch).
 */
void
epoch_init (struct volume *v)
{
  pthread_rwlockattr_t rwattr;
  pthread_condattr_t attr;

  pthread_rwlockattr_init (&rwattr);
  /* A rotation must not wait behind a stream of MAP_ALLOCs. */
  pthread_rwlockattr_setkind_np (&rwattr,
                                 PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init (&v->epoch_rw, &rwattr);
  pthread_rwlockattr_destroy (&rwattr);
  pthread_mutex_init (&v->epoch_lock, NULL);
  pthread_condattr_init (&attr);
  pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
  pthread_cond_init (&v->epoch_cond, &attr);
  pthread_condattr_destroy (&attr);
  memset (v->slots, 0, sizeof v->slots);
  v->maybe_next = 0;
  v->drained = 0;
  atomic_init (&v->epoch_written, false);
  atomic_init (&v->unclean, false);
}

/* Destroy the epoch state of V (volume_free). */
void
epoch_destroy (struct volume *v)
{
  pthread_cond_destroy (&v->epoch_cond);
  pthread_mutex_destroy (&v->epoch_lock);
  pthread_rwlock_destroy (&v->epoch_rw);
}

/* The epoch that a write starting now carries. */
uint64_t
epoch_current (struct volume *v)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&v->epoch_lock);
  return v->epoch;
}

/* A write or trim starts: count it in flight in the current epoch and
 * set *EPOCH to that epoch, which it must carry and pass to epoch_end.
 * Returns 0, or -ETIMEDOUT if every slot stayed taken by older epochs
 * until the running request's deadline (nothing is counted then).
 */
int
epoch_begin (struct volume *v, uint64_t *epoch)
{
  atomic_store (&v->epoch_written, true);
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&v->epoch_lock);
  for (;;) {
    if (epoch_slots_add (v->slots, v->epoch) == 0) {
      *epoch = v->epoch;
      return 0;
    }
    /* Older epochs are still draining: their requests end by their
     * deadlines.
     */
    if (request_cond_wait (&v->epoch_cond, &v->epoch_lock) == -ETIMEDOUT)
      return -ETIMEDOUT;
  }
}

/* The write counted by epoch_begin, which returned EPOCH, is over. */
void
epoch_end (struct volume *v, uint64_t epoch)
{
  int r;

  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&v->epoch_lock);
  r = epoch_slots_remove (v->slots, epoch);
  assert (r >= 0 && "epoch_end: no write of that epoch in flight");
  if (r == 1)
    pthread_cond_broadcast (&v->epoch_cond);
}

/* Wait until no write of EPOCH or an older epoch is in flight, for half
 * the timeout at most (writes stuck on a failing server take up to
 * twice that).  If they drained, EPOCH may be marked clean once the
 * flush that follows is done (epoch_clean); else it stays dirty.
 */
void
epoch_drain (struct volume *v, uint64_t epoch)
{
  struct timespec ts =
      deadline_after_ms (request_step_ms (v->cfg->timeout_ms / 2));
  int e = 0;

  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&v->epoch_lock);
  for (;;) {
    if (!epoch_slots_busy (v->slots, epoch)) {
      if (epoch > v->drained)
        v->drained = epoch;
      return;
    }
    if (e == ETIMEDOUT) {
      nbdkit_debug ("volume %s: writes of epoch %" PRIu64 " still in "
                    "flight: it stays dirty",
                    v->name, epoch);
      return;
    }
    e = pthread_cond_timedwait (&v->epoch_cond, &v->epoch_lock, &ts);
  }
}

/* Make EPOCH the current epoch.  Caller holds v->epoch_rw for writing. */
static void
set_epoch (struct volume *v, uint64_t epoch)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&v->epoch_lock);
  v->epoch = epoch;
  v->maybe_next = 0;
}

/* Remember that the MDS may have moved the lease to EPOCH.  Caller holds
 * v->epoch_rw for writing.
 */
static void
set_maybe_next (struct volume *v, uint64_t epoch)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&v->epoch_lock);
  v->maybe_next = epoch;
}

/* The MDS said the current epoch is stale: if an unanswered EPOCH_NEXT
 * may have moved the lease to the next epoch, renew the lease in that
 * epoch, and adopt it if the MDS agrees.  Caller holds v->epoch_rw for
 * writing.  Returns 0 if the epoch was adopted, -ESTALE if the MDS
 * answered that E+1 does not hold the lease either (ESTALE or EPERM: the
 * lease is lost, not reported), or another -errno if the MDS could not
 * be asked or gave another answer (the question stays open).
 */
static int
resolve_locked (struct volume *v)
{
  struct proto_lease l = { .volume = v->id };
  struct proto_wbuf wb = { 0 };
  CLEANUP_FREE void *reply = NULL;
  char errmsg[PROTO_ERRMSG_MAX + 1];
  uint32_t len;
  int outcome, r;

  pthread_mutex_lock (&v->epoch_lock);
  l.epoch = v->maybe_next;
  pthread_mutex_unlock (&v->epoch_lock);
  if (l.epoch == 0 || l.epoch != v->epoch + 1)
    return -ESTALE;

  proto_encode_lease (&l, &wb);
  r = mds_session_request (v, PROTO_OP_LEASE_RENEW, &wb, false, &outcome,
                           &reply, &len, errmsg, sizeof errmsg);
  proto_wbuf_free (&wb);
  if (r == 0) {
    nbdkit_debug ("volume %s: the unanswered EPOCH_NEXT had moved the "
                  "lease to epoch %" PRIu64,
                  v->name, l.epoch);
    set_epoch (v, l.epoch);
    return 0;
  }
  if (outcome == MDS_ANSWERED && (r == -ESTALE || r == -EPERM)) {
    nbdkit_debug ("volume %s: lease in epoch %" PRIu64 ": %s", v->name, l.epoch,
                  errmsg[0] ? errmsg : strerror (-r));
    set_maybe_next (v, 0);
    return -ESTALE;
  }
  /* Any other answer (EBADMSG after a damaged request, EIO, EAGAIN ...)
   * or no answer settles nothing: the question stays open and is asked
   * again the next time the MDS calls the epoch stale.
   */
  nbdkit_debug ("volume %s: lease in epoch %" PRIu64 ": unsettled: %s", v->name,
                l.epoch, errmsg[0] ? errmsg : strerror (-r));
  return r == -ESTALE || r == -EPERM ? -EIO : r;
}

/* The MDS refused a request made in epoch STALE as not holding the
 * lease.  Settle whether an unanswered EPOCH_NEXT explains it (see the
 * top of this file).  Must not be called with v->epoch_rw held.
 * Returns 0 if the request should be retried in the current epoch,
 * -ESTALE if the lease is lost (not reported), or another -errno.
 */
int
epoch_resolve (struct volume *v, uint64_t stale)
{
  int r;

  pthread_rwlock_wrlock (&v->epoch_rw);
  if (v->epoch != stale)
    r = 0; /* a rotation since: retry with the new epoch */
  else
    r = resolve_locked (v);
  pthread_rwlock_unlock (&v->epoch_rw);
  return r;
}

/* Rotate the writer's epoch (EPOCH_NEXT): writes starting from now carry
 * the new one.  Caller holds v->flush_lock.  Returns 0 and *OLD, the
 * epoch replaced (wait for its writes with epoch_drain, flush, then
 * epoch_clean it); -ESTALE if the lease is lost, with the reason in
 * WHY (WHYLEN bytes; not reported: the caller passes it to
 * lease_mark_lost); or another -errno if the MDS cannot rotate now
 * (logged for debugging only: the writer simply stays in its epoch).
 */
int
epoch_rotate (struct volume *v, uint64_t *old, char *why, size_t whylen)
{
  struct proto_lease l = { .volume = v->id }, rep;
  struct proto_wbuf wb = { 0 };
  CLEANUP_FREE void *reply = NULL;
  char errmsg[PROTO_ERRMSG_MAX + 1];
  struct timespec ts;
  uint32_t len;
  int outcome, r;

  *old = 0;
  /* Requests naming the epoch hold epoch_rw while the MDS answers: if
   * it is slow, skip this rotation rather than hold up the flush.
   */
  ts = deadline_after_ms (request_step_ms (v->cfg->timeout_ms / 4));
  if (pthread_rwlock_clockwrlock (&v->epoch_rw, CLOCK_MONOTONIC, &ts) != 0) {
    nbdkit_debug ("volume %s: rotate epoch: the MDS is busy, skipped", v->name);
    return -EAGAIN;
  }
  l.epoch = v->epoch;
  proto_encode_lease (&l, &wb);
  /* Sent once: retrying on a new connection after a lost answer would
   * be refused as stale if the first one was applied.
   */
  r = mds_session_request (v, PROTO_OP_EPOCH_NEXT, &wb, true, &outcome, &reply,
                           &len, errmsg, sizeof errmsg);
  proto_wbuf_free (&wb);
  if (r == 0) {
    r = proto_decode_lease (reply, len, &rep);
    if (r == 0 && (rep.volume != v->id || rep.epoch <= l.epoch))
      r = -EBADMSG;
    if (r == 0)
      set_epoch (v, rep.epoch);
    else {
      snprintf (errmsg, sizeof errmsg, "malformed reply");
      set_maybe_next (v, l.epoch + 1);
      r = -EIO;
    }
  }
  else if (outcome == MDS_UNKNOWN)
    set_maybe_next (v, l.epoch + 1);
  else if (r == -ESTALE || r == -EPERM) {
    /* An earlier EPOCH_NEXT may have been applied after all: then that
     * was the rotation.
     */
    r = resolve_locked (v);
    if (r < 0 && r != -ESTALE)
      r = -EIO;
  }
  pthread_rwlock_unlock (&v->epoch_rw);

  if (r == 0) {
    *old = l.epoch;
    if (tessera_debug_lease)
      nbdkit_debug ("volume %s: epoch %" PRIu64 " -> %" PRIu64, v->name,
                    l.epoch, epoch_current (v));
  }
  else if (r == -ESTALE)
    snprintf (why, whylen, "%s", errmsg[0] ? errmsg : "epoch rotation refused");
  else
    nbdkit_debug ("volume %s: rotate epoch %" PRIu64 ": %s", v->name, l.epoch,
                  errmsg[0] ? errmsg : strerror (-r));
  return r;
}

/* Tell the MDS that every write of EPOCH and older epochs is durable on
 * every ok replica (EPOCH_CLEAN), if epoch_drain saw EPOCH drained.  Not
 * retried: a later EPOCH_CLEAN covers this one.  Returns 0, -EAGAIN if
 * EPOCH was not seen drained, or -errno (logged for debugging only).
 */
int
epoch_clean (struct volume *v, uint64_t epoch)
{
  struct proto_lease l = { .volume = v->id, .epoch = epoch };
  struct proto_wbuf wb = { 0 };
  CLEANUP_FREE void *reply = NULL;
  char errmsg[PROTO_ERRMSG_MAX + 1];
  uint32_t len;
  int outcome, r;

  pthread_mutex_lock (&v->epoch_lock);
  r = v->drained >= epoch ? 0 : -EAGAIN;
  pthread_mutex_unlock (&v->epoch_lock);
  if (r < 0)
    return r;
  proto_encode_lease (&l, &wb);
  r = mds_session_request (v, PROTO_OP_EPOCH_CLEAN, &wb, true, &outcome, &reply,
                           &len, errmsg, sizeof errmsg);
  proto_wbuf_free (&wb);
  if (r < 0)
    nbdkit_debug ("volume %s: mark epoch %" PRIu64 " clean: %s", v->name, epoch,
                  errmsg[0] ? errmsg : strerror (-r));
  else if (tessera_debug_lease)
    nbdkit_debug ("volume %s: epoch %" PRIu64 " clean", v->name, epoch);
  return r;
}

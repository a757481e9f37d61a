/* Fences and write barriers.
 *
 * A fence is a volume's minimum writer epoch: the MDS raises it (SEG_FENCE,
 * or in a heartbeat reply) when it hands the volume to a new writer after
 * the last one lost its lease, and from then on writes and trims carrying
 * an older epoch are refused with PROTO_ESTALE.  Fences live in the
 * index's "fences" table (only ever raised) and, on the ring thread, in a
 * sorted array that every write and trim consults.
 *
 * A fence must also cover writes that passed the check just before it:
 * SEG_FENCE answers only once every write or trim issued before it has
 * completed.  Writes and trims join a list, in the order they are issued,
 * when their data I/O starts and leave it when it ends; a barrier waits
 * until the oldest write still in the list is younger than itself.
 */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#include "internal.h"

/* Index of the first fence with a volume >= VOLUME (binary search). */
static size_t
fence_find (const struct ss_loop *loop, uint64_t volume)
{
  size_t lo = 0, hi = loop->nfences;

  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;

    if (loop->fences[mid].volume < volume)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/* Raise VOLUME's fence to EPOCH in memory.  Returns 1 if it was raised,
 * 0 if it was already at least EPOCH, or -ENOMEM.  Ring thread.
 */
static int
fence_raise (struct ss_loop *loop, uint64_t volume, uint64_t epoch)
{
  size_t i = fence_find (loop, volume);

  if (i < loop->nfences && loop->fences[i].volume == volume) {
    if (loop->fences[i].epoch >= epoch)
      return 0;
    loop->fences[i].epoch = epoch;
    return 1;
  }
  if (epoch == 0)
    return 0;
  if (loop->nfences == loop->fences_cap) {
    size_t cap = loop->fences_cap ? loop->fences_cap * 2 : 16;
    struct ss_fence *f = realloc (loop->fences, cap * sizeof *f);

    if (f == NULL)
      return -ENOMEM;
    loop->fences = f;
    loop->fences_cap = cap;
  }
  memmove (&loop->fences[i + 1], &loop->fences[i],
           (loop->nfences - i) * sizeof *loop->fences);
  loop->fences[i].volume = volume;
  loop->fences[i].epoch = epoch;
  loop->nfences++;
  return 1;
}

/* The fence of VOLUME: writes with an older epoch are refused (0: no
 * fence).  Ring thread.
 */
uint64_t
ss_fence_get (struct ss_loop *loop, uint64_t volume)
{
  size_t i = fence_find (loop, volume);

  if (i < loop->nfences && loop->fences[i].volume == volume)
    return loop->fences[i].epoch;
  return 0;
}

/* ss_index_load_fences callback. */
static int
load_one (void *arg, uint64_t volume, uint64_t epoch)
{
  struct ss_loop *loop = arg;
  int r = fence_raise (loop, volume, epoch);

  return r < 0 ? r : 0;
}

/* Load the fences recorded in the index.  Start-up, ring thread. */
int
ss_fences_load (struct ss_loop *loop, struct ss_index *idx)
{
  int r = ss_index_load_fences (idx, load_one, loop);

  if (r == 0 && loop->nfences > 0)
    log_info ("store: %zu volumes fenced", loop->nfences);
  return r;
}

/* Free the fences (at exit). */
void
ss_fences_free (struct ss_loop *loop)
{
  free (loop->fences);
  loop->fences = NULL;
  loop->nfences = loop->fences_cap = 0;
}

/* ---- Writes in flight and barriers ---- */

/* R's write or trim is issued now: number it and append it to the list
 * of writes in flight.  Ring thread.
 */
void
ss_writes_begin (struct ss_loop *loop, struct ss_req *r)
{
  assert (!r->in_writes);
  r->in_writes = true;
  r->write_seq = ++loop->write_seq;
  r->wnext = NULL;
  r->wprev = loop->writes_tail;
  if (loop->writes_tail)
    loop->writes_tail->wnext = r;
  else
    loop->writes_head = r;
  loop->writes_tail = r;
}

/* True if every write numbered up to B's seq has completed. */
static bool
barrier_passed (const struct ss_loop *loop, const struct ss_barrier *b)
{
  return loop->writes_head == NULL || loop->writes_head->write_seq > b->seq;
}

/* R's write or trim has completed: drop it from the list, and release
 * the barriers that only it held.  Ring thread.
 */
void
ss_writes_end (struct ss_loop *loop, struct ss_req *r)
{
  struct ss_barrier *b;

  assert (r->in_writes);
  r->in_writes = false;
  if (r->wprev)
    r->wprev->wnext = r->wnext;
  else
    loop->writes_head = r->wnext;
  if (r->wnext)
    r->wnext->wprev = r->wprev;
  else
    loop->writes_tail = r->wprev;
  r->wprev = r->wnext = NULL;

  /* Barriers are in seq order: release from the front. */
  while ((b = loop->barriers_head) != NULL && barrier_passed (loop, b)) {
    loop->barriers_head = b->next;
    if (loop->barriers_head == NULL)
      loop->barriers_tail = NULL;
    b->done (loop, b);
  }
}

/* Call B->done once every write and trim issued so far has completed
 * (at once if none is in flight).  Ring thread.
 */
void
ss_barrier_wait (struct ss_loop *loop, struct ss_barrier *b)
{
  b->seq = loop->write_seq;
  b->next = NULL;
  if (barrier_passed (loop, b)) {
    b->done (loop, b);
    return;
  }
  if (loop->barriers_tail)
    loop->barriers_tail->next = b;
  else
    loop->barriers_head = b;
  loop->barriers_tail = b;
}

/* ---- SEG_FENCE ---- */

/* One step of a SEG_FENCE (the index update, the barrier) is done; the
 * last one answers.
 */
static void
fence_step (struct ss_loop *loop, struct ss_req *r, int err)
{
  if (err < 0 && r->err == 0)
    r->err = err;
  assert (r->pending > 0);
  if (--r->pending > 0)
    return;
  if (r->err < 0)
    ss_req_error (loop, r, proto_status_from_errno (-r->err),
                  "SEG_FENCE: recording the fence: %s", strerror (-r->err));
  else
    ss_req_reply (loop, r, NULL, 0, NULL);
}

/* The fence is durable (or failed to be). */
static void
fence_recorded (struct ss_loop *loop, struct ss_index_op *iop)
{
  struct ss_req *r = SS_CONTAINER_OF (iop, struct ss_req, iop);

  fence_step (loop, r, iop->err);
}

/* Every write issued before the fence has completed. */
static void
fence_drained (struct ss_loop *loop, struct ss_barrier *b)
{
  struct ss_req *r = SS_CONTAINER_OF (b, struct ss_req, barrier);

  fence_step (loop, r, 0);
}

/* SEG_FENCE: raise the volume's fence in memory at once (later writes
 * with an older epoch are refused from now on), then answer when it is
 * durable and every write or trim issued before it has completed.
 */
void
ss_req_fence (struct ss_loop *loop, struct ss_req *r)
{
  struct proto_fence f;
  int e;

  if (proto_decode_fence (r->payload, r->hdr.length, &f) < 0) {
    ss_req_fatal (loop, r, PROTO_EBADMSG,
                  "SEG_FENCE: payload of %" PRIu32 " bytes, expected 16",
                  r->hdr.length);
    return;
  }
  if (r->hdr.flags & PROTO_FLAG_FUA) {
    ss_req_error (loop, r, PROTO_EINVAL, "SEG_FENCE: FUA flag not allowed");
    return;
  }
  e = fence_raise (loop, f.volume, f.epoch);
  if (e < 0) {
    ss_req_error (loop, r, PROTO_ENOMEM, "SEG_FENCE: %s", strerror (-e));
    return;
  }
  if (e > 0)
    log_info ("volume %" PRIu64 ": fenced at epoch %" PRIu64, f.volume,
              f.epoch);
  r->pending = 2;
  r->err = 0;
  /* Recorded even if not raised: an earlier raise may not be durable. */
  memset (&r->iop, 0, sizeof r->iop);
  r->iop.type = SS_INDEX_FENCE;
  r->iop.rec.volume = f.volume;
  r->iop.rec.epoch = f.epoch;
  r->iop.done = fence_recorded;
  ss_index_submit_op (loop, &r->iop);
  r->barrier.done = fence_drained;
  ss_barrier_wait (loop, &r->barrier);
}

/* ---- Fences from heartbeat replies ---- */

struct mds_fence {
  struct ss_index_op iop;
};

/* A fence from the MDS is durable (or failed to be: the MDS sends every
 * fence again after a registration, and a SEG_FENCE before any resync).
 */
static void
mds_fence_recorded (struct ss_loop *loop, struct ss_index_op *iop)
{
  struct mds_fence *mf = SS_CONTAINER_OF (iop, struct mds_fence, iop);

  assert (loop->jobs > 0);
  loop->jobs--;
  free (mf);
}

/* Apply the fences the MDS client has queued: in memory at once, then in
 * the index.  Ring thread.
 */
void
ss_mds_fences_apply (struct ss_loop *loop)
{
  struct proto_fence *fences;
  size_t n, i;

  ss_mds_take_fences (loop->ctx->mds, &fences, &n);
  for (i = 0; i < n; i++) {
    struct mds_fence *mf = NULL;
    int e = fence_raise (loop, fences[i].volume, fences[i].epoch);

    if (e == 0)
      continue;
    if (e > 0) {
      log_info ("volume %" PRIu64 ": fenced at epoch %" PRIu64 " (heartbeat)",
                fences[i].volume, fences[i].epoch);
      mf = calloc (1, sizeof *mf);
    }
    if (e < 0 || mf == NULL) {
      log_warn ("volume %" PRIu64 ": fence at epoch %" PRIu64 ": %s",
                fences[i].volume, fences[i].epoch, strerror (ENOMEM));
      continue;
    }
    mf->iop.type = SS_INDEX_FENCE;
    mf->iop.rec.volume = fences[i].volume;
    mf->iop.rec.epoch = fences[i].epoch;
    mf->iop.done = mds_fence_recorded;
    loop->jobs++;
    ss_index_submit_op (loop, &mf->iop);
  }
  free (fences);
}

/* SEG_FENCE, and the fences the MDS sends in heartbeat replies: raise a
 * volume's fence (fences.c) at once, record it in the index, and answer
 * SEG_FENCE once the fence is durable and every write or trim issued
 * before it has completed (ss_barrier_wait).
 */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#include "internal.h"

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
  e = ss_fence_raise (loop, f.volume, f.epoch);
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
 * the index; none if they came from an MDS older than the newest seen.
 * Ring thread.
 */
void
ss_mds_fences_apply (struct ss_loop *loop)
{
  struct proto_fence *fences;
  uint64_t epoch;
  size_t n, i;

  ss_mds_take_fences (loop->ctx->mds, &fences, &n, &epoch);
  if (n > 0 && ss_mds_epoch_stale (loop->ctx, epoch, "mds: heartbeat fences"))
    n = 0; /* the new leader sends its own */
  for (i = 0; i < n; i++) {
    struct mds_fence *mf = NULL;
    int e = ss_fence_raise (loop, fences[i].volume, fences[i].epoch);

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

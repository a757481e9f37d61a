/* Delete batches: SEG_DELETE and the deletes the MDS asks for in its
 * heartbeat replies.
 *
 * A delete batch (SEG_DELETE's list, or the MDS's) deletes each segment
 * through segments.c (ss_seg_delete: index record and tombstone in one
 * commit, then the slot punched and freed; gone.c keeps the tombstones),
 * waiting for busy ones, and finishes when the last item is done:
 * SEG_DELETE answers with the first failure, the MDS is told which
 * succeeded in the next heartbeat.  loop.c counts the batches in flight
 * (deletes_pending) before it stops.  Ring thread.
 */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#include "internal.h"

struct ss_delete_item {
  struct ss_waiter wait;
  struct ss_index_op iop; /* the tombstone of an absent segment */
  struct ss_delete *batch;
  uint64_t id;
  int err;
};

/* A list of segments being deleted, for a SEG_DELETE request (REQ) or
 * for the MDS (REQ NULL).  DONE runs once every item is done.
 */
struct ss_delete {
  uint32_t n;
  uint32_t left; /* items not done, plus one while starting */
  struct ss_delete_item *items;
  struct ss_req *req;
  void (*done) (struct ss_loop *loop, struct ss_delete *d);
};

/* One item of D is done; the last one finishes and frees D. */
static void
batch_step (struct ss_loop *loop, struct ss_delete *d)
{
  assert (d->left > 0);
  if (--d->left > 0)
    return;
  assert (loop->deletes_pending > 0);
  loop->deletes_pending--;
  d->done (loop, d);
  free (d->items);
  free (d);
}

/* Delete IT's segment, or note it done if it is absent. */
static void
item_go (struct ss_loop *loop, struct ss_delete_item *it)
{
  if (ss_seg_delete (loop, it->id, &it->wait, &it->iop) == 1) {
    it->err = 0;
    batch_step (loop, it->batch);
  }
}

/* The segment is gone (or was busy: try again), or its delete failed. */
static void
item_resume (struct ss_loop *loop, struct ss_waiter *w, int err)
{
  struct ss_delete_item *it = SS_CONTAINER_OF (w, struct ss_delete_item, wait);

  if (err < 0) {
    it->err = err;
    batch_step (loop, it->batch);
  }
  else
    item_go (loop, it);
}

/* Delete the N segments IDS; DONE (with REQ) runs when all are done.
 * Returns 0 or -ENOMEM.
 */
static int
delete_start (struct ss_loop *loop, const uint64_t *ids, uint32_t n,
              struct ss_req *req,
              void (*done) (struct ss_loop *, struct ss_delete *))
{
  struct ss_delete *d = calloc (1, sizeof *d);
  uint32_t i;

  if (d == NULL || (d->items = calloc (n ? n : 1, sizeof *d->items)) == NULL) {
    free (d);
    return -ENOMEM;
  }
  d->n = n;
  d->left = n + 1;
  d->req = req;
  d->done = done;
  loop->deletes_pending++;
  for (i = 0; i < n; i++) {
    d->items[i].wait.resume = item_resume;
    d->items[i].batch = d;
    d->items[i].id = ids[i];
    item_go (loop, &d->items[i]);
  }
  batch_step (loop, d);
  return 0;
}

/* A SEG_DELETE is done: answer with the first failure, if any. */
static void
req_delete_done (struct ss_loop *loop, struct ss_delete *d)
{
  uint32_t i;

  for (i = 0; i < d->n; i++)
    if (d->items[i].err < 0) {
      ss_req_error (loop, d->req, proto_status_from_errno (-d->items[i].err),
                    "SEG_DELETE: segment %" PRIu64 ": %s", d->items[i].id,
                    strerror (-d->items[i].err));
      return;
    }
  ss_req_reply (loop, d->req, NULL, 0, NULL);
}

/* SEG_DELETE: drop each listed segment from the index durably, punch its
 * slot and free it.  Unknown segments succeed.
 */
void
ss_req_delete (struct ss_loop *loop, struct ss_req *r)
{
  struct proto_segment_list list = { 0 };
  int e;

  if (proto_decode_segment_list (r->payload, r->hdr.length, &list) < 0) {
    ss_req_fatal (loop, r, PROTO_EBADMSG, "SEG_DELETE: malformed segment list");
    return;
  }
  if (r->hdr.flags & PROTO_FLAG_FUA) {
    proto_segment_list_free (&list);
    ss_req_error (loop, r, PROTO_EINVAL, "SEG_DELETE: FUA flag not allowed");
    return;
  }
  e = delete_start (loop, list.segments, list.n, r, req_delete_done);
  proto_segment_list_free (&list);
  if (e < 0)
    ss_req_error (loop, r, PROTO_ENOMEM, "SEG_DELETE: %s", strerror (-e));
}

/* The MDS's deletes are done: report the ones that succeeded in the
 * next heartbeat.
 */
static void
mds_delete_done (struct ss_loop *loop, struct ss_delete *d)
{
  uint64_t *ok = malloc ((d->n ? d->n : 1) * sizeof *ok);
  uint32_t i, k = 0;

  if (ok == NULL)
    return; /* the MDS asks again */
  for (i = 0; i < d->n; i++)
    if (d->items[i].err == 0)
      ok[k++] = d->items[i].id;
  if (k > 0)
    log_debug ("mds: deleted %" PRIu32 " segments", k);
  ss_mds_deleted (loop->ctx->mds, ok, k);
  free (ok);
}

/* Start the deletes the MDS client has queued, if any, unless they came
 * from an MDS older than the newest seen.
 */
void
ss_mds_deletes_start (struct ss_loop *loop)
{
  uint64_t *ids, epoch;
  size_t n;

  if (ss_mds_take_deletes (loop->ctx->mds, &ids, &n, &epoch) < 0 || n == 0)
    return;
  if (ss_mds_epoch_stale (loop->ctx, epoch, "mds: heartbeat deletes")) {
    free (ids);
    return;
  }
  if (n > UINT32_MAX || delete_start (loop, ids, n, NULL, mds_delete_done) < 0)
    log_warn ("mds: cannot delete %zu segments now: %s", n, strerror (ENOMEM));
  free (ids);
}

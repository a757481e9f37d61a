/* SEG_FLUSH, SEG_DELETE, and the deletes the MDS asks for in its
 * heartbeat replies.
 */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "log.h"

#include "internal.h"

/* One step of a flush is done; the last one answers. */
static void
flush_step (struct ss_loop *loop, struct ss_req *r, int err)
{
  if (err < 0 && r->err == 0)
    r->err = err;
  assert (r->pending > 0);
  if (--r->pending > 0)
    return;
  if (loop->failed)
    ss_req_failed (loop, r);
  else if (r->err < 0) {
    log_error ("flush: %s", strerror (-r->err));
    ss_req_error (loop, r, proto_status_from_errno (-r->err), "SEG_FLUSH: %s",
                  strerror (-r->err));
  }
  else
    ss_req_reply (loop, r, NULL, 0, NULL);
}

/* Submit the flush's fdatasync of the data file. */
static void
flush_submit_sync (struct ss_loop *loop, struct ss_req *r)
{
  struct io_uring_sqe *sqe = ss_get_sqe (loop);

  io_uring_prep_fsync (sqe, loop->store->data_fd, IORING_FSYNC_DATASYNC);
  io_uring_sqe_set_data (sqe, &r->op);
}

/* The flush's fdatasync completed. */
static void
flush_synced (struct ss_loop *loop, struct ss_op *op, int res)
{
  struct ss_req *r = SS_CONTAINER_OF (op, struct ss_req, op);

  if (res == -EAGAIN || res == -EINTR) {
    flush_submit_sync (loop, r);
    return;
  }
  if (res < 0)
    ss_store_fail (loop, "data: fdatasync", res);
  flush_step (loop, r, res < 0 ? res : 0);
}

/* Every index update queued before the flush has committed. */
static void
flush_indexed (struct ss_loop *loop, struct ss_index_op *iop)
{
  struct ss_req *r = SS_CONTAINER_OF (iop, struct ss_req, iop);

  flush_step (loop, r, iop->err);
}

/* SEG_FLUSH: fdatasync the data file, and wait for every index update
 * queued before it, in parallel.
 */
void
ss_req_flush (struct ss_loop *loop, struct ss_req *r)
{
  if (r->hdr.length != 0) {
    ss_req_fatal (loop, r, PROTO_EBADMSG,
                  "SEG_FLUSH: payload of %" PRIu32 " bytes, expected 0",
                  r->hdr.length);
    return;
  }
  if (r->hdr.flags & PROTO_FLAG_FUA) {
    ss_req_error (loop, r, PROTO_EINVAL, "SEG_FLUSH: FUA flag not allowed");
    return;
  }
  r->pending = 2;
  r->err = 0;
  r->op.done = flush_synced;
  flush_submit_sync (loop, r);
  r->iop.type = SS_INDEX_SYNC;
  r->iop.done = flush_indexed;
  ss_index_submit_op (loop, &r->iop);
}

/* ---- Deletes ---- */

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

/* Start the deletes the MDS client has queued, if any. */
void
ss_mds_deletes_start (struct ss_loop *loop)
{
  uint64_t *ids;
  size_t n;

  if (ss_mds_take_deletes (loop->ctx->mds, &ids, &n) < 0 || n == 0)
    return;
  if (n > UINT32_MAX || delete_start (loop, ids, n, NULL, mds_delete_done) < 0)
    log_warn ("mds: cannot delete %zu segments now: %s", n, strerror (ENOMEM));
  free (ids);
}

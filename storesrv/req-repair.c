/* SEG_SET_GEN, SEG_HASH and SEG_LIST: what the MDS (and the tool's
 * verify) ask of a storage server to repair and resync segments.
 * SEG_PULL, the copy itself, is in pull.c.
 */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "checked-overflow.h"
#include "cleanup.h"
#include "crc32c.h"
#include "log.h"

#include "internal.h"

/* Bytes read at once while hashing a block. */
#define HASH_READ_MAX (1024u * 1024)

/* ---- SEG_SET_GEN ---- */

/* Every write issued before the new generation was recorded has
 * completed: no write with an older generation can land any more.
 */
static void
set_gen_drained (struct ss_loop *loop, struct ss_barrier *b)
{
  struct ss_req *r = SS_CONTAINER_OF (b, struct ss_req, barrier);

  if (loop->failed)
    ss_req_failed (loop, r);
  else
    ss_req_reply (loop, r, NULL, 0, NULL);
}

/* Raise the segment's generation (R->io.segment, .volume, .gen). */
static void
set_gen_go (struct ss_loop *loop, struct ss_req *r)
{
  struct ss_seg *seg;
  int e;

  e = ss_seg_raise (loop, r->io.segment, r->io.volume, 0, r->io.gen,
                    r->io.index, true, &r->wait, &seg);
  if (e == -SS_EINDEX) {
    seg = ss_seg_lookup (loop, r->io.segment);
    ss_req_error (
        loop, r, PROTO_EINVAL,
        "SEG_SET_GEN: segment %" PRIu64 ": index %" PRIu64
        " differs from the index this server recorded for it (%" PRIu64 ")",
        r->io.segment, r->io.index, seg->index);
    return;
  }
  if (e < 0) {
    ss_req_error (loop, r, proto_status_from_errno (-e),
                  "SEG_SET_GEN: segment %" PRIu64 ": %s", r->io.segment,
                  e == -ENOSPC ? "no free slot in this store" : strerror (-e));
    return;
  }
  if (e == 0)
    return; /* resumed by set_gen_resume */
  if (loop->ctx->debug_requests)
    log_debug ("segment %" PRIu64 ": generation %" PRIu64, r->io.segment,
               seg->gen);
  /* A pull may follow (this server is the copy's target). */
  if (seg->pull == NULL)
    ss_track_start (loop, seg);
  r->barrier.done = set_gen_drained;
  ss_barrier_wait (loop, &r->barrier);
}

/* The segment R waited for is idle (or its index update failed). */
static void
set_gen_resume (struct ss_loop *loop, struct ss_waiter *w, int err)
{
  struct ss_req *r = SS_CONTAINER_OF (w, struct ss_req, wait);

  if (err < 0)
    ss_req_error (loop, r, proto_status_from_errno (-err),
                  "SEG_SET_GEN: segment %" PRIu64 ": index update: %s",
                  r->io.segment, strerror (-err));
  else
    set_gen_go (loop, r);
}

/* SEG_SET_GEN: record the segment's generation durably (only ever
 * raised; an absent segment is created, empty), then answer once no
 * write with an older generation is in flight.
 */
void
ss_req_set_gen (struct ss_loop *loop, struct ss_req *r)
{
  struct proto_set_gen sg;

  if (proto_decode_set_gen (r->payload, r->hdr.length, &sg) < 0) {
    ss_req_fatal (loop, r, PROTO_EBADMSG,
                  "SEG_SET_GEN: payload of %" PRIu32 " bytes, expected 32",
                  r->hdr.length);
    return;
  }
  if (r->hdr.flags & PROTO_FLAG_FUA) {
    ss_req_error (loop, r, PROTO_EINVAL, "SEG_SET_GEN: FUA flag not allowed");
    return;
  }
  r->io.segment = sg.segment;
  r->io.volume = sg.volume;
  r->io.gen = sg.gen;
  r->io.index = sg.index;
  r->wait.resume = set_gen_resume;
  set_gen_go (loop, r);
}

/* ---- SEG_HASH ---- */

/* A checksum job: the request, and what the worker reads. */
struct hash_job {
  struct ss_work work;
  struct ss_req *r;
  struct ss_seg *seg; /* io_inflight reference, or NULL: zeros */
  const void *zeros;  /* PROTO_MAX_DATA zero bytes */
  int fd;
  uint64_t pos; /* of the range in the data file */
  uint32_t length, block;
  struct proto_hash hash; /* CRCS allocated, N entries */
  int err;
};

/* Worker: the CRC-32C of each block of the job's range. */
static void
hash_run (struct ss_work *w)
{
  struct hash_job *j = SS_CONTAINER_OF (w, struct hash_job, work);
  uint32_t i, full = 0, last = 0, n = j->hash.n;
  CLEANUP_FREE uint8_t *buf = NULL;
  size_t buflen;

  if (j->seg == NULL) {
    /* Every block is zeros: two checksums serve them all. */
    if (n > 0) {
      full = crc32c (0, j->zeros, j->block);
      last = crc32c (0, j->zeros, j->length - (uint64_t)(n - 1) * j->block);
    }
    for (i = 0; i < n; i++)
      j->hash.crcs[i] = i + 1 < n ? full : last;
    return;
  }
  buflen = j->block < HASH_READ_MAX ? j->block : HASH_READ_MAX;
  buf = malloc (buflen);
  if (buf == NULL) {
    j->err = -ENOMEM;
    return;
  }
  for (i = 0; i < n; i++) {
    uint64_t off = (uint64_t)i * j->block;
    uint32_t len = j->length - off < j->block ? j->length - off : j->block;

    j->err =
        ss_crc_file (j->fd, j->pos + off, len, buf, buflen, &j->hash.crcs[i]);
    if (j->err < 0)
      return;
  }
}

/* Ring thread: the checksums are ready; answer. */
static void
hash_done (struct ss_loop *loop, struct ss_msg *msg)
{
  struct hash_job *j = SS_CONTAINER_OF (msg, struct hash_job, work.done);
  struct ss_req *r = j->r;
  struct proto_wbuf wb = { 0 };

  assert (loop->jobs > 0);
  loop->jobs--;
  if (j->seg)
    ss_seg_io_end (loop, j->seg);
  if (loop->failed)
    ss_req_failed (loop, r);
  else if (j->err < 0) {
    log_error ("hash: segment %" PRIu64 ": %s", r->io.segment,
               strerror (-j->err));
    ss_req_error (loop, r, proto_status_from_errno (-j->err),
                  "SEG_HASH: segment %" PRIu64 ": %s", r->io.segment,
                  strerror (-j->err));
  }
  else {
    proto_encode_hash (&j->hash, &wb);
    if (wb.err) {
      proto_wbuf_free (&wb);
      ss_req_error (loop, r, PROTO_ENOMEM, "SEG_HASH: %s", strerror (-wb.err));
    }
    else
      ss_req_reply (loop, r, wb.data, wb.len, wb.data);
  }
  proto_hash_free (&j->hash);
  free (j);
}

/* SEG_HASH: the CRC-32C of each block of a range, computed on a worker
 * thread (reading the slot there); a segment this server does not have
 * hashes as zeros, with epoch 0.
 */
void
ss_req_hash (struct ss_loop *loop, struct ss_req *r)
{
  struct proto_hash_request hr;
  struct hash_job *j;
  uint32_t end;
  bool gone;

  if (proto_decode_hash_request (r->payload, r->hdr.length, &hr) < 0) {
    ss_req_fatal (loop, r, PROTO_EBADMSG,
                  "SEG_HASH: malformed request (the block must be a power "
                  "of two from 4 KiB to 4 MiB and divide the offset)");
    return;
  }
  if (r->hdr.flags & PROTO_FLAG_FUA) {
    ss_req_error (loop, r, PROTO_EINVAL, "SEG_HASH: FUA flag not allowed");
    return;
  }
  if (ADD_OVERFLOW (hr.offset, hr.length, &end) ||
      end > loop->store->segment_size) {
    ss_req_error (loop, r, PROTO_ERANGE,
                  "SEG_HASH: segment %" PRIu64 ": offset %" PRIu32
                  " + length %" PRIu32 " exceeds the segment size %" PRIu32,
                  hr.segment, hr.offset, hr.length, loop->store->segment_size);
    return;
  }
  r->io.segment = hr.segment;
  j = calloc (1, sizeof *j);
  if (j == NULL)
    goto nomem;
  j->hash.n = hr.length / hr.block + (hr.length % hr.block != 0);
  if (j->hash.n > 0) {
    j->hash.crcs = calloc (j->hash.n, sizeof *j->hash.crcs);
    if (j->hash.crcs == NULL) {
      free (j);
      goto nomem;
    }
  }
  j->r = r;
  j->zeros = loop->zeros;
  j->fd = loop->store->data_fd;
  j->length = hr.length;
  j->block = hr.block;
  j->seg = ss_seg_get_readable (loop, hr.segment, &gone);
  if (j->seg) {
    j->hash.epoch = j->seg->epoch;
    j->pos = ss_store_slot_offset (loop->store, j->seg->slot) + hr.offset;
  }
  ss_req_add_bytes (r, (uint64_t)j->hash.n * 4);
  j->work.run = hash_run;
  j->work.done.fn = hash_done;
  loop->jobs++;
  ss_workq_submit (loop->hashq, &j->work);
  return;

nomem:
  ss_req_error (loop, r, PROTO_ENOMEM, "SEG_HASH: %s", strerror (ENOMEM));
}

/* ---- SEG_LIST ---- */

/* qsort comparison of segment ids. */
static int
cmp_u64 (const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

  return x < y ? -1 : x > y;
}

/* SEG_LIST: the volume's segments here with id > start_after whose last
 * epoch (as recorded in the index) is >= min_epoch, ascending, at most
 * max.  Segments being created or deleted hold no data and are left out.
 */
void
ss_req_seg_list (struct ss_loop *loop, struct ss_req *r)
{
  struct proto_seg_list_request q;
  struct proto_segment_list list = { 0 };
  struct proto_wbuf wb = { 0 };
  CLEANUP_FREE uint64_t *ids = NULL;
  size_t n = 0, cap = 0, i;

  if (proto_decode_seg_list_request (r->payload, r->hdr.length, &q) < 0) {
    ss_req_fatal (loop, r, PROTO_EBADMSG,
                  "SEG_LIST: malformed request (max must be 1 to %d)",
                  PROTO_LIST_MAX);
    return;
  }
  if (r->hdr.flags & PROTO_FLAG_FUA) {
    ss_req_error (loop, r, PROTO_EINVAL, "SEG_LIST: FUA flag not allowed");
    return;
  }
  for (i = 0; i < loop->segs.nbuckets; i++) {
    struct ss_seg *s;

    for (s = loop->segs.buckets[i]; s; s = s->hnext) {
      if (s->volume != q.volume || s->id <= q.start_after ||
          s->epoch < q.min_epoch || (s->busy & (SS_SEG_NEW | SS_SEG_DELETING)))
        continue;
      if (n == cap) {
        size_t c = cap ? cap * 2 : 64;
        uint64_t *p = realloc (ids, c * sizeof *p);

        if (p == NULL) {
          ss_req_error (loop, r, PROTO_ENOMEM, "SEG_LIST: %s",
                        strerror (ENOMEM));
          return;
        }
        ids = p;
        cap = c;
      }
      ids[n++] = s->id;
    }
  }
  if (n > 1)
    qsort (ids, n, sizeof *ids, cmp_u64);
  list.n = n < q.max ? n : q.max;
  list.segments = ids;
  proto_encode_segment_list (&list, &wb);
  if (wb.err) {
    proto_wbuf_free (&wb);
    ss_req_error (loop, r, PROTO_ENOMEM, "SEG_LIST: %s", strerror (-wb.err));
    return;
  }
  ss_req_reply (loop, r, wb.data, wb.len, wb.data);
}

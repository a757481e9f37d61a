/* SEG_READ, SEG_WRITE, SEG_TRIM and SEG_FLUSH: data I/O on a segment's
 * slot, and making it durable.
 *
 * Writes go into the page cache with pwrite on the ring thread, not as
 * io_uring writes: io_uring cannot complete a buffered ext4 write without
 * blocking, so it hands every one to an io-wq worker thread and back (two
 * wakeups and a task-work interrupt, most of the 42 us of CPU a 4 KiB
 * write used to cost: docs/performance.md).  A pwrite into the page
 * cache takes a few microseconds; it blocks only when the kernel
 * throttles a writer that dirties pages faster than they are written
 * back (balance_dirty_pages), as the io-wq workers were throttled before,
 * and then reads wait too.  A write is done WRITE_TURN bytes per loop
 * turn (a NOP on the ring brings it back for the next turn) so that a
 * large one does not hold up the other connections, in pieces that never
 * cross a multiple of WRITE_PIECE (see there).  A FUA write then syncs
 * its range with an io_uring fsync (IORING_FSYNC_DATASYNC on the range:
 * what RWF_DSYNC does after a write) before it is answered; SEG_FLUSH's
 * fdatasync covers every write answered before it, as the data is in the
 * page cache by then.  SEG_FLUSH runs that fdatasync and, beside it, an
 * index SYNC that completes once every index update queued before it
 * has committed; it answers when both are done.
 *
 * Reads stay io_uring reads: those of cached pages complete inline, in
 * the io_uring_enter that submits them (with the other reads of the
 * turn), and the others wait for the disk without holding up the ring.
 *
 * Each request runs at most one ring operation at a time through R->op;
 * short transfers are resubmitted for the rest and -EAGAIN/-EINTR retried.
 * While its data I/O is in flight a request holds an io_inflight
 * reference on the segment (R->seg) so a delete cannot free the slot
 * under it, and a write or trim is in the loop's list of writes in
 * flight, which SEG_FENCE and SEG_SET_GEN wait on.
 *
 * Writes and trims are checked, every time they are resumed, against the
 * volume's fence (an older epoch: PROTO_ESTALE) and the segment's
 * generation (an older one: PROTO_ESTALEMAP).  Reads ignore the fence;
 * a read with a generation (not 0, which repair copies send) older than
 * the segment's is refused with PROTO_ESTALEMAP too, so that a reader
 * whose map predates a change of the replica set re-reads it.
 */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checked-overflow.h"
#include "log.h"

#include "internal.h"

/* Writes are split so that no piece crosses a multiple of WRITE_PIECE.
 * A buffered write makes page cache folios as large as itself (ext4 has
 * large folios since Linux 6.16), and a later small write into a folio
 * walks every buffer head of it: measured in CPU time on ext4 (Linux
 * 6.18), a random 4 KiB write into cached pages costs 1.2 us in 4 KiB
 * folios, 2.5 us in 32 KiB ones, 3.6 us in 64 KiB ones and 24-29 us in
 * the 1 MiB folios a 1 MiB write leaves behind.  Writing 1 MiB in 64 KiB
 * pieces costs 91-98 us against 82-86 us for one pwrite (167 against
 * 121 us into new pages), and reading it back 53-56 us against 43-47 us.
 */
#define WRITE_PIECE (64u * 1024)

/* Bytes of a write done on the ring thread in one loop turn. */
#define WRITE_TURN (1024u * 1024)

/* Decode R's 40-byte head into R->io and check the payload length (the
 * head, plus exactly LENGTH data bytes for SEG_WRITE) and the range.
 * Returns true to go on, false once R has been answered.
 */
static bool
io_parse (struct ss_loop *loop, struct ss_req *r)
{
  const char *name = proto_opcode_name (r->hdr.opcode);
  uint32_t segment_size = loop->store->segment_size;
  uint64_t expect = PROTO_SEG_IO_SIZE;
  uint32_t end;

  if (proto_decode_seg_io (r->payload, r->hdr.length, &r->io) < 0) {
    ss_req_fatal (loop, r, PROTO_EBADMSG,
                  "%s: payload of %" PRIu32 " bytes is shorter than the "
                  "%d-byte head",
                  name, r->hdr.length, PROTO_SEG_IO_SIZE);
    return false;
  }
  if (r->hdr.opcode == PROTO_OP_SEG_WRITE)
    expect += r->io.length;
  if (r->hdr.length != expect) {
    ss_req_fatal (loop, r, PROTO_EBADMSG,
                  "%s: payload of %" PRIu32 " bytes, expected %" PRIu64, name,
                  r->hdr.length, expect);
    return false;
  }
  if (r->io.length > PROTO_MAX_DATA) {
    ss_req_error (loop, r, PROTO_ERANGE,
                  "%s: length %" PRIu32 " exceeds the limit of %u bytes", name,
                  r->io.length, PROTO_MAX_DATA);
    return false;
  }
  if (ADD_OVERFLOW (r->io.offset, r->io.length, &end) || end > segment_size) {
    ss_req_error (loop, r, PROTO_ERANGE,
                  "%s: segment %" PRIu64 ": offset %" PRIu32
                  " + length %" PRIu32 " exceeds the segment size %" PRIu32,
                  name, r->io.segment, r->io.offset, r->io.length,
                  segment_size);
    return false;
  }
  return true;
}

/* End R's data I/O reference (and its place among the writes in
 * flight).
 */
static void
io_end (struct ss_loop *loop, struct ss_req *r)
{
  if (r->seg) {
    ss_seg_io_end (loop, r->seg);
    r->seg = NULL;
  }
  if (r->in_writes)
    ss_writes_end (loop, r);
}

/* End R's data I/O reference and answer with errno ERR (positive):
 * PROTO_EIO if the store failed (ss_store_fail).
 */
static void
io_fail (struct ss_loop *loop, struct ss_req *r, const char *what, int err)
{
  io_end (loop, r);
  if (loop->failed) {
    ss_req_failed (loop, r);
    return;
  }
  log_error ("%s: segment %" PRIu64 ": %s", what, r->io.segment,
             strerror (err));
  ss_req_error (loop, r, proto_status_from_errno (err),
                "%s: segment %" PRIu64 ": %s", what, r->io.segment,
                strerror (err));
}

/* End R's data I/O reference and answer PROTO_OK with DATA, or
 * PROTO_EIO if the store failed meanwhile.
 */
static void
io_finish (struct ss_loop *loop, struct ss_req *r, const void *data,
           uint32_t len, void *owned)
{
  io_end (loop, r);
  if (loop->failed)
    ss_req_failed (loop, r);
  else
    ss_req_reply (loop, r, data, len, owned);
}

/* Submit the rest of R's read (R->done bytes are done). */
static void
read_submit (struct ss_loop *loop, struct ss_req *r)
{
  struct io_uring_sqe *sqe = ss_get_sqe (loop);

  io_uring_prep_read (sqe, loop->store->data_fd, r->buf + r->done,
                      r->io.length - r->done, r->pos + r->done);
  io_uring_sqe_set_data (sqe, &r->op);
}

/* A read of the data file completed: read on, or answer with the data. */
static void
read_done (struct ss_loop *loop, struct ss_op *op, int res)
{
  struct ss_req *r = SS_CONTAINER_OF (op, struct ss_req, op);

  if (res == -EAGAIN || res == -EINTR) {
    read_submit (loop, r);
    return;
  }
  if (res < 0) {
    io_fail (loop, r, "read", -res);
    return;
  }
  if (res == 0) {
    /* Past the end of the data file: reads as zeros. */
    memset (r->buf + r->done, 0, r->io.length - r->done);
    res = r->io.length - r->done;
  }
  else
    SS_MARK_DEFINED (r->buf + r->done, res);
  r->done += res;
  if (r->done < r->io.length) {
    read_submit (loop, r);
    return;
  }
  io_finish (loop, r, r->buf, r->io.length, r->buf);
}

/* SEG_READ: a segment this server does not hold (never written here,
 * not yet recorded, or lost) is refused with PROTO_ENOENT, never read as
 * zeros: the reader tries the other replicas, and reads zeros only if
 * none holds it.  One it deleted (a tombstone), or one whose generation
 * is newer than the reader's, is refused with PROTO_ESTALEMAP: the
 * reader's map is out of date.
 */
void
ss_req_read (struct ss_loop *loop, struct ss_req *r)
{
  struct ss_seg *seg;
  bool gone;

  if (!io_parse (loop, r))
    return;
  if (r->hdr.flags & PROTO_FLAG_FUA) {
    ss_req_error (loop, r, PROTO_EINVAL, "SEG_READ: FUA flag not allowed");
    return;
  }
  if (r->io.length == 0) {
    ss_req_reply (loop, r, NULL, 0, NULL);
    return;
  }
  seg = ss_seg_get_readable (loop, r->io.segment, &gone);
  if (seg == NULL && gone) {
    ss_req_error (loop, r, PROTO_ESTALEMAP,
                  "SEG_READ: segment %" PRIu64 " was deleted from this server",
                  r->io.segment);
    return;
  }
  if (seg == NULL) {
    ss_req_error (loop, r, PROTO_ENOENT,
                  "SEG_READ: segment %" PRIu64 ": not on this server",
                  r->io.segment);
    return;
  }
  r->seg = seg;
  if (r->io.gen != 0 && r->io.gen < seg->gen) {
    io_end (loop, r);
    ss_req_error (loop, r, PROTO_ESTALEMAP,
                  "SEG_READ: segment %" PRIu64 ": generation %" PRIu64
                  " is older than this server's (%" PRIu64 ")",
                  r->io.segment, r->io.gen, seg->gen);
    return;
  }
  r->buf = malloc (r->io.length);
  if (r->buf == NULL) {
    io_fail (loop, r, "read", ENOMEM);
    return;
  }
  r->rdata_owned = r->buf; /* freed with R, replied or not */
  ss_req_add_bytes (r, r->io.length);
  r->pos = ss_store_slot_offset (loop->store, seg->slot) + r->io.offset;
  r->done = 0;
  r->op.done = read_done;
  read_submit (loop, r);
}

static void write_step (struct ss_loop *loop, struct ss_req *r);

/* Write up to WRITE_TURN more bytes of R's data with pwrite, in pieces
 * that do not cross a multiple of WRITE_PIECE.  Returns 0 or -errno.
 */
static int
write_turn (struct ss_loop *loop, struct ss_req *r)
{
  int fd = loop->store->data_fd;
  uint32_t end =
      r->io.length - r->done > WRITE_TURN ? r->done + WRITE_TURN : r->io.length;

  while (r->done < end) {
    uint64_t at = r->pos + r->done;
    size_t len = end - r->done;
    ssize_t n;

    if (len > WRITE_PIECE - at % WRITE_PIECE)
      len = WRITE_PIECE - at % WRITE_PIECE;
    n = pwrite (fd, r->buf + r->done, len, at);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -errno;
    if (n == 0)
      return -EIO; /* no progress: never expected of a regular file */
    r->done += n;
  }
  return 0;
}

/* Submit R's FUA sync: fdatasync of the range written, as RWF_DSYNC
 * would do after the write.
 */
static void
write_submit_sync (struct ss_loop *loop, struct ss_req *r)
{
  struct io_uring_sqe *sqe = ss_get_sqe (loop);

  io_uring_prep_fsync (sqe, loop->store->data_fd, IORING_FSYNC_DATASYNC);
  sqe->off = r->pos;
  sqe->len = r->io.length;
  io_uring_sqe_set_data (sqe, &r->op);
}

/* The loop turned (the NOP completed, stage 0) or R's FUA sync completed
 * (stage 1).
 */
static void
write_done (struct ss_loop *loop, struct ss_op *op, int res)
{
  struct ss_req *r = SS_CONTAINER_OF (op, struct ss_req, op);

  if (r->stage == 0) {
    write_step (loop, r);
    return;
  }
  if (res == -EAGAIN || res == -EINTR) {
    write_submit_sync (loop, r);
    return;
  }
  if (res < 0) {
    ss_store_fail (loop, "data: fdatasync", res);
    io_fail (loop, r, "write: fdatasync", -res);
    return;
  }
  io_finish (loop, r, NULL, 0, NULL);
}

/* Write the next turn's share of R's data; then come back next turn
 * (a NOP), sync it (FUA), or answer.
 */
static void
write_step (struct ss_loop *loop, struct ss_req *r)
{
  struct io_uring_sqe *sqe;
  int e = write_turn (loop, r);

  if (e < 0) {
    /* ENOSPC and EDQUOT lose nothing: the client is told. */
    if (ss_store_write_failed (e))
      ss_store_fail (loop, "data: pwrite", e);
    io_fail (loop, r, "write", -e);
    return;
  }
  if (r->done < r->io.length) {
    sqe = ss_get_sqe (loop);
    io_uring_prep_nop (sqe);
    io_uring_sqe_set_data (sqe, &r->op);
    return;
  }
  if (r->hdr.flags & PROTO_FLAG_FUA) {
    r->stage = 1;
    write_submit_sync (loop, r);
    return;
  }
  io_finish (loop, r, NULL, 0, NULL);
}

/* Check R's epoch against its volume's fence; answer PROTO_ESTALE and
 * return false if it is older.
 */
static bool
fence_ok (struct ss_loop *loop, struct ss_req *r)
{
  uint64_t fence = ss_fence_get (loop, r->io.volume);

  if (r->io.epoch >= fence)
    return true;
  ss_req_error (loop, r, PROTO_ESTALE,
                "%s: volume %" PRIu64 ": epoch %" PRIu64
                " is fenced (the fence is at epoch %" PRIu64 ")",
                proto_opcode_name (r->hdr.opcode), r->io.volume, r->io.epoch,
                fence);
  return false;
}

/* Answer R after ss_seg_prepare_write failed with E. */
static void
prepare_failed (struct ss_loop *loop, struct ss_req *r, int e)
{
  const char *name = proto_opcode_name (r->hdr.opcode);

  struct ss_seg *seg = ss_seg_lookup (loop, r->io.segment);

  if (e == -EREMCHG && seg == NULL)
    ss_req_error (loop, r, PROTO_ESTALEMAP,
                  "%s: segment %" PRIu64 " was deleted from this server", name,
                  r->io.segment);
  else if (e == -SS_EINDEX)
    ss_req_error (
        loop, r, PROTO_EINVAL,
        "%s: segment %" PRIu64 ": index %" PRIu64
        " differs from the index this server recorded for it (%" PRIu64 ")",
        name, r->io.segment, r->io.index, seg->index);
  else if (e == -EREMCHG)
    ss_req_error (loop, r, PROTO_ESTALEMAP,
                  "%s: segment %" PRIu64 ": generation %" PRIu64
                  " is older than this server's (%" PRIu64 ")",
                  name, r->io.segment, r->io.gen, seg->gen);
  else
    ss_req_error (loop, r, proto_status_from_errno (-e),
                  "%s: segment %" PRIu64 ": %s", name, r->io.segment,
                  e == -ENOSPC ? "no free slot in this store" : strerror (-e));
}

/* Issue R's write once its segment is recorded in the index. */
static void
write_go (struct ss_loop *loop, struct ss_req *r)
{
  struct ss_seg *seg;
  int e;

  if (loop->failed) {
    ss_req_failed (loop, r);
    return;
  }
  if (!fence_ok (loop, r))
    return;
  e = ss_seg_prepare_write (loop, &r->io, true, &r->wait, &seg);
  if (e < 0) {
    prepare_failed (loop, r, e);
    return;
  }
  if (e == 0)
    return; /* resumed by write_resume */
  r->seg = seg;
  ss_writes_begin (loop, r);
  r->buf = r->payload + PROTO_SEG_IO_SIZE;
  r->pos = ss_store_slot_offset (loop->store, seg->slot) + r->io.offset;
  r->done = 0;
  r->stage = 0;
  r->op.done = write_done;
  write_step (loop, r);
}

/* The segment R waited for is idle (or its index update failed). */
static void
write_resume (struct ss_loop *loop, struct ss_waiter *w, int err)
{
  struct ss_req *r = SS_CONTAINER_OF (w, struct ss_req, wait);

  if (err < 0)
    ss_req_error (loop, r, proto_status_from_errno (-err),
                  "SEG_WRITE: segment %" PRIu64 ": index update: %s",
                  r->io.segment, strerror (-err));
  else
    write_go (loop, r);
}

/* SEG_WRITE: a new segment gets a slot; FUA syncs the range written. */
void
ss_req_write (struct ss_loop *loop, struct ss_req *r)
{
  if (!io_parse (loop, r))
    return;
  if (r->io.length == 0) {
    ss_req_reply (loop, r, NULL, 0, NULL);
    return;
  }
  r->wait.resume = write_resume;
  write_go (loop, r);
}

/* Submit R's trim (stage 0) or its datasync for FUA (stage 1). */
static void
trim_submit (struct ss_loop *loop, struct ss_req *r)
{
  struct io_uring_sqe *sqe = ss_get_sqe (loop);

  if (r->stage == 0)
    io_uring_prep_fallocate (sqe, loop->store->data_fd,
                             FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, r->pos,
                             r->io.length);
  else
    io_uring_prep_fsync (sqe, loop->store->data_fd, IORING_FSYNC_DATASYNC);
  io_uring_sqe_set_data (sqe, &r->op);
}

/* The punch (or the FUA datasync after it) completed. */
static void
trim_done (struct ss_loop *loop, struct ss_op *op, int res)
{
  struct ss_req *r = SS_CONTAINER_OF (op, struct ss_req, op);

  if (res == -EAGAIN || res == -EINTR) {
    trim_submit (loop, r);
    return;
  }
  if (res < 0) {
    if (r->stage == 1)
      ss_store_fail (loop, "data: fdatasync", res);
    else if (ss_store_punch_failed (res))
      ss_store_fail (loop, "data: punch", res);
    io_fail (loop, r, r->stage == 0 ? "trim" : "trim: fdatasync", -res);
    return;
  }
  if (r->stage == 0 && (r->hdr.flags & PROTO_FLAG_FUA)) {
    r->stage = 1;
    trim_submit (loop, r);
    return;
  }
  io_finish (loop, r, NULL, 0, NULL);
}

/* Punch R's range once its segment's epoch is recorded. */
static void
trim_go (struct ss_loop *loop, struct ss_req *r)
{
  struct ss_seg *seg;
  int e;

  if (loop->failed) {
    ss_req_failed (loop, r);
    return;
  }
  if (!fence_ok (loop, r))
    return;
  e = ss_seg_prepare_write (loop, &r->io, false, &r->wait, &seg);
  if (e < 0) {
    prepare_failed (loop, r, e);
    return;
  }
  if (e == 0)
    return; /* resumed by trim_resume */
  if (seg == NULL) {
    /* Never written here: already zeros. */
    ss_req_reply (loop, r, NULL, 0, NULL);
    return;
  }
  r->seg = seg;
  ss_writes_begin (loop, r);
  r->pos = ss_store_slot_offset (loop->store, seg->slot) + r->io.offset;
  r->stage = 0;
  r->op.done = trim_done;
  trim_submit (loop, r);
}

/* The segment R waited for is idle (or its index update failed). */
static void
trim_resume (struct ss_loop *loop, struct ss_waiter *w, int err)
{
  struct ss_req *r = SS_CONTAINER_OF (w, struct ss_req, wait);

  if (err < 0)
    ss_req_error (loop, r, proto_status_from_errno (-err),
                  "SEG_TRIM: segment %" PRIu64 ": index update: %s",
                  r->io.segment, strerror (-err));
  else
    trim_go (loop, r);
}

/* SEG_TRIM: punch a range of a present segment; FUA adds a datasync. */
void
ss_req_trim (struct ss_loop *loop, struct ss_req *r)
{
  if (!io_parse (loop, r))
    return;
  if (r->io.length == 0) {
    ss_req_reply (loop, r, NULL, 0, NULL);
    return;
  }
  r->wait.resume = trim_resume;
  trim_go (loop, r);
}

/* ---- SEG_FLUSH ---- */

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

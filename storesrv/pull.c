/* SEG_PULL: copy a segment from another storage server (the target side
 * of repair and resync).
 *
 * On the ring thread the pull gets hold of its segment (created, empty,
 * if absent) and attaches itself to it, taking over the ranges that the
 * segment's tracker (track.c) saw written with the pull's generation or
 * a newer one; from then on every client write or trim of the
 * segment marks its byte range in the pull's dirty set before it is
 * issued.  The copy runs on a worker of the pull queue (at
 * most --max-pulls at once): it connects to the source as a storage
 * server, plans the copy (FULL: the whole segment; DIFF: the 64 KiB
 * blocks whose CRC-32C differ between the source and here), reads it in
 * chunks of up to 1 MiB with a few reads in flight, and hands each chunk
 * to the ring thread, which writes only the parts outside the dirty set
 * (all-zero chunks are punched instead).  While a chunk is being written
 * client writes that overlap it wait, so a client write that comes after
 * copy data always lands after it.  Then the worker syncs the data file,
 * and the ring thread records the pull's epoch and generation durably
 * and answers.
 *
 * A pull is cancelled when its segment is deleted or the server shuts
 * down: the worker's socket is shut down and it stops at its next step.
 * What the segment and the shutdown use of a running pull (the dirty
 * set, the copy window, cancelling) is in pull-ctl.c, and struct ss_pull
 * in internal.h, so that segments.c need not call this file.
 */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "cleanup.h"
#include "deadline.h"
#include "frame.h"
#include "log.h"
#include "sock.h"

#include "internal.h"

#define PULL_CHUNK (1024u * 1024) /* bytes per SEG_READ */
#define PULL_BLOCK (64u * 1024)   /* DIFF mode's SEG_HASH block */
#define PULL_WINDOW 4             /* SEG_READs in flight */
#define PULL_TIMEOUT_MS 30000     /* connect, and each reply */

/* ---- Copy writes (ring thread) ---- */

static void copy_next (struct ss_loop *loop, struct ss_pull *p);

/* The chunk is written (ERR 0) or failed: let held-off client writes go
 * on and wake the worker.
 */
static void
copy_complete (struct ss_loop *loop, struct ss_pull *p, int err)
{
  p->copying = false;
  ss_seg_wake (loop, p->seg);
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&p->lock);
  p->copy_done = true;
  p->copy_err = err;
  pthread_cond_broadcast (&p->cond);
}

/* Submit the write (or punch) of [WPOS, WEND) of the chunk. */
static void
copy_submit (struct ss_loop *loop, struct ss_pull *p)
{
  struct io_uring_sqe *sqe = ss_get_sqe (loop);

  if (p->copy_zero)
    io_uring_prep_fallocate (sqe, p->data_fd,
                             FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                             p->slot_pos + p->wpos, p->wend - p->wpos);
  else
    io_uring_prep_write (sqe, p->data_fd, p->copy_buf + (p->wpos - p->copy_off),
                         p->wend - p->wpos, p->slot_pos + p->wpos);
  io_uring_sqe_set_data (sqe, &p->op);
}

/* A write or punch of copy data completed. */
static void
copy_written (struct ss_loop *loop, struct ss_op *op, int res)
{
  struct ss_pull *p = SS_CONTAINER_OF (op, struct ss_pull, op);

  if (res == -EAGAIN || res == -EINTR) {
    copy_submit (loop, p);
    return;
  }
  if (res < 0 || (res == 0 && !p->copy_zero)) {
    if (p->copy_zero ? ss_store_punch_failed (res)
                     : ss_store_write_failed (res < 0 ? res : -EIO))
      ss_store_fail (loop, p->copy_zero ? "data: punch" : "data: write",
                     res < 0 ? res : -EIO);
    copy_complete (loop, p, res < 0 ? res : -EIO);
    return;
  }
  if (p->copy_zero) {
    p->written_bytes += p->wend - p->wpos;
    p->wpos = p->wend;
  }
  else {
    p->written_bytes += res;
    p->wpos += res;
  }
  if (p->wpos < p->wend) {
    copy_submit (loop, p);
    return;
  }
  p->cpos = p->wend;
  copy_next (loop, p);
}

/* Write the next clean part of the chunk, or complete it. */
static void
copy_next (struct ss_loop *loop, struct ss_pull *p)
{
  if (p->dirty.failed) {
    copy_complete (loop, p, -ENOMEM);
    return;
  }
  if (!ss_ranges_next_gap (&p->dirty, p->cpos, p->copy_off + p->copy_len,
                           &p->wpos, &p->wend)) {
    copy_complete (loop, p, 0);
    return;
  }
  p->op.done = copy_written;
  copy_submit (loop, p);
}

/* The worker posted a chunk to write. */
static void
copy_start (struct ss_loop *loop, struct ss_msg *msg)
{
  struct ss_pull *p = SS_CONTAINER_OF (msg, struct ss_pull, copy_msg);

  if (p->cancel) {
    copy_complete (loop, p, -ECANCELED);
    return;
  }
  p->copying = true;
  p->cpos = p->copy_off;
  copy_next (loop, p);
}

/* ---- The worker ---- */

static void pull_fail (struct ss_pull *p, int err, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

/* Record the worker's first failure: ERR (-errno) and a message. */
static void
pull_fail (struct ss_pull *p, int err, const char *fmt, ...)
{
  va_list ap;

  if (p->err < 0)
    return;
  p->err = err;
  va_start (ap, fmt);
  vsnprintf (p->errmsg, sizeof p->errmsg, fmt, ap);
  va_end (ap);
}

/* True if the pull was cancelled (then the failure is recorded). */
static bool
cancelled (struct ss_pull *p)
{
  const char *why = NULL;

  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&p->lock);
    if (p->cancel)
      why = p->why;
  }
  if (why == NULL)
    return false;
  p->err = 0;
  pull_fail (p, -ECANCELED, "cancelled: %s", why);
  return true;
}

/* Hand DATA (LEN bytes at segment offset OFF; NULL: zeros) to the ring
 * thread and wait until it is written outside the dirty ranges.
 */
static int
copy_write (struct ss_pull *p, uint32_t off, uint32_t len, const uint8_t *data)
{
  int err;

  p->copy_off = off;
  p->copy_len = len;
  p->copy_buf = data;
  p->copy_zero = data == NULL || memcmp (data, p->zeros, len) == 0;
  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&p->lock);
    p->copy_done = false;
  }
  p->copy_msg.fn = copy_start;
  ss_loop_post (p->loop, &p->copy_msg);
  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&p->lock);
    while (!p->copy_done)
      pthread_cond_wait (&p->cond, &p->lock);
    err = p->copy_err;
  }
  return err;
}

/* Sleep until the copy is back under its bandwidth cap, having asked for
 * READ_BYTES so far.  Returns false if cancelled meanwhile.
 */
static bool
throttle (struct ss_pull *p)
{
  struct timespec t;
  uint64_t ns;

  if (p->p.bandwidth == 0 || p->read_bytes == 0)
    return true;
  if (p->read_bytes > UINT64_MAX / 1000000000)
    ns = p->read_bytes / p->p.bandwidth * 1000000000;
  else
    ns = p->read_bytes * 1000000000 / p->p.bandwidth;
  t = timespec_from_ns (p->start_ns + ns);
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&p->lock);
  while (!p->cancel)
    if (pthread_cond_timedwait (&p->cond, &p->lock, &t) == ETIMEDOUT)
      break;
  return !p->cancel;
}

/* Send a request and read its reply on FD (no other request in flight).
 * Returns 0 and *REPLY (caller frees) and *LEN, or -errno (the failure
 * recorded, naming WHAT).
 */
static int
call (struct ss_pull *p, int fd, uint8_t opcode, const void *payload,
      uint32_t plen, const char *what, void **reply, uint32_t *len)
{
  struct proto_header hdr;
  int r;

  *reply = NULL;
  r = proto_send_frame (fd, opcode, 0, 0, 1, payload, plen);
  if (r == 0)
    r = proto_recv_frame (fd, proto_max_payload (opcode), &hdr, reply);
  if (r < 0) {
    pull_fail (p, r == -EAGAIN ? -ETIMEDOUT : r, "%s: %s: %s", p->p.source,
               what, strerror (r == -EAGAIN ? ETIMEDOUT : -r));
    return p->err;
  }
  if (hdr.opcode != opcode || !(hdr.flags & PROTO_FLAG_REPLY) || hdr.tag != 1) {
    free (*reply);
    *reply = NULL;
    pull_fail (p, -EPROTO, "%s: %s: unexpected reply", p->p.source, what);
    return p->err;
  }
  if (hdr.status != PROTO_OK) {
    pull_fail (
        p, -proto_status_to_errno (hdr.status), "%s: %s: %s: %.*s", p->p.source,
        what, proto_status_name (hdr.status),
        (int)(hdr.length < PROTO_ERRMSG_MAX ? hdr.length : PROTO_ERRMSG_MAX),
        *reply ? (const char *)*reply : "");
    free (*reply);
    *reply = NULL;
    return p->err;
  }
  *len = hdr.length;
  return 0;
}

/* Connect to the source and authenticate (proto_handshake, as a storage
 * server).  Returns the fd (published in P->fd so that a cancel can shut
 * it down) or -errno.
 */
static int
source_connect (struct ss_pull *p)
{
  struct proto_hello peer;
  char errmsg[256];
  int fd, r;

  fd = proto_connect (p->p.source, PULL_TIMEOUT_MS, errmsg, sizeof errmsg);
  if (fd < 0) {
    pull_fail (p, fd, "%s: %s", p->p.source, errmsg);
    return fd;
  }
  sock_set_timeout (fd, PULL_TIMEOUT_MS);
  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&p->lock);
    p->fd = fd;
  }
  if (cancelled (p))
    return -ECANCELED;
  r = proto_handshake (fd, PROTO_ROLE_STORESRV, p->uuid, &peer, errmsg,
                       sizeof errmsg);
  if (r < 0) {
    if (!cancelled (p))
      pull_fail (p, r, "%s: handshake: %s", p->p.source, errmsg);
    return r;
  }
  if (peer.role != PROTO_ROLE_STORESRV) {
    pull_fail (p, -EPROTO, "%s: not a storage server (a %s)", p->p.source,
               proto_role_name (peer.role));
    return -EPROTO;
  }
  return fd;
}

/* Drop the connection to the source. */
static void
source_close (struct ss_pull *p)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&p->lock);
  if (p->fd >= 0)
    close (p->fd);
  p->fd = -1;
}

/* A run of the segment to copy. */
struct chunk {
  uint32_t off, len;
};

/* Plan a FULL copy: the whole segment in PULL_CHUNK pieces.  Returns the
 * number of chunks, or -ENOMEM.
 */
static int
plan_full (struct ss_pull *p, struct chunk **out)
{
  uint32_t n = (p->segment_size + PULL_CHUNK - 1) / PULL_CHUNK, i;
  struct chunk *c = calloc (n, sizeof *c);

  *out = c;
  if (c == NULL) {
    pull_fail (p, -ENOMEM, "%s", strerror (ENOMEM));
    return -ENOMEM;
  }
  for (i = 0; i < n; i++) {
    c[i].off = i * PULL_CHUNK;
    c[i].len = p->segment_size - c[i].off < PULL_CHUNK
                   ? p->segment_size - c[i].off
                   : PULL_CHUNK;
  }
  return n;
}

/* Plan a DIFF copy: the PULL_BLOCK blocks whose CRC-32C at the source
 * differs from ours, joined into runs of at most PULL_CHUNK.  Returns the
 * number of chunks, or -errno.
 */
static int
plan_diff (struct ss_pull *p, int fd, struct chunk **out)
{
  struct proto_hash_request hr = { .segment = p->p.segment,
                                   .offset = 0,
                                   .length = p->segment_size,
                                   .block = PULL_BLOCK };
  struct proto_hash hash = { 0 };
  struct proto_wbuf wb = { 0 };
  CLEANUP_FREE void *reply = NULL;
  CLEANUP_FREE uint8_t *buf = NULL;
  uint32_t nblocks = p->segment_size / PULL_BLOCK, i, len = 0;
  struct chunk *c;
  int n = 0, r;

  *out = NULL;
  proto_encode_hash_request (&hr, &wb);
  if (wb.err) {
    pull_fail (p, wb.err, "SEG_HASH: %s", strerror (-wb.err));
    proto_wbuf_free (&wb);
    return wb.err;
  }
  r = call (p, fd, PROTO_OP_SEG_HASH, wb.data, wb.len, "SEG_HASH", &reply,
            &len);
  proto_wbuf_free (&wb);
  if (r < 0)
    return r;
  if (proto_decode_hash (reply, len, &hash) < 0 || hash.n != nblocks) {
    proto_hash_free (&hash);
    pull_fail (p, -EBADMSG, "%s: SEG_HASH: malformed reply", p->p.source);
    return -EBADMSG;
  }
  c = calloc (nblocks, sizeof *c);
  buf = malloc (PULL_BLOCK);
  if (c == NULL || buf == NULL) {
    free (c);
    proto_hash_free (&hash);
    pull_fail (p, -ENOMEM, "%s", strerror (ENOMEM));
    return -ENOMEM;
  }
  for (i = 0; i < nblocks; i++) {
    uint32_t crc, off = i * PULL_BLOCK;

    r = ss_crc_file (p->data_fd, p->slot_pos + off, PULL_BLOCK, buf, PULL_BLOCK,
                     &crc);
    if (r < 0) {
      free (c);
      proto_hash_free (&hash);
      pull_fail (p, r, "reading the local copy: %s", strerror (-r));
      return r;
    }
    if (crc == hash.crcs[i])
      continue;
    if (n > 0 && c[n - 1].off + c[n - 1].len == off &&
        c[n - 1].len + PULL_BLOCK <= PULL_CHUNK)
      c[n - 1].len += PULL_BLOCK;
    else {
      c[n].off = off;
      c[n].len = PULL_BLOCK;
      n++;
    }
  }
  proto_hash_free (&hash);
  if (p->debug)
    log_debug ("pull: segment %" PRIu64 ": %d runs differ", p->p.segment, n);
  *out = c;
  return n;
}

/* Send the SEG_READ of chunk I (tag I + 1). */
static int
send_read (struct ss_pull *p, int fd, const struct chunk *c, uint32_t i)
{
  struct proto_seg_io io = { .segment = p->p.segment,
                             .volume = p->p.volume,
                             .offset = c[i].off,
                             .length = c[i].len,
                             .index = PROTO_INDEX_NONE };
  uint8_t head[PROTO_SEG_IO_SIZE];
  int r;

  proto_encode_seg_io (&io, head);
  r = proto_send_frame (fd, PROTO_OP_SEG_READ, 0, 0, (uint64_t)i + 1, head,
                        sizeof head);
  if (r < 0)
    pull_fail (p, r, "%s: SEG_READ: %s", p->p.source, strerror (-r));
  return r;
}

/* Receive one SEG_READ reply and write its chunk.  Returns 0 or -errno. */
static int
recv_chunk (struct ss_pull *p, int fd, const struct chunk *c, uint32_t nc)
{
  struct proto_header hdr;
  CLEANUP_FREE void *data = NULL;
  uint32_t i;
  int r;

  r = proto_recv_frame (fd, PROTO_MAX_IO_PAYLOAD, &hdr, &data);
  if (r < 0) {
    if (r == -EAGAIN)
      r = -ETIMEDOUT;
    pull_fail (p, r, "%s: SEG_READ: %s", p->p.source, strerror (-r));
    return r;
  }
  i = hdr.tag - 1;
  if (hdr.opcode != PROTO_OP_SEG_READ || !(hdr.flags & PROTO_FLAG_REPLY) ||
      hdr.tag == 0 || hdr.tag > nc) {
    pull_fail (p, -EPROTO, "%s: SEG_READ: unexpected reply", p->p.source);
    return -EPROTO;
  }
  /* The source never held the segment (it was allocated and never
   * written, or only trimmed there): its content is zeros.
   */
  if (hdr.status == PROTO_ENOENT) {
    if (p->debug)
      log_debug ("pull: segment %" PRIu64 ": not on %s: zeros", p->p.segment,
                 p->p.source);
    r = copy_write (p, c[i].off, c[i].len, NULL);
    if (r < 0 && !cancelled (p))
      pull_fail (p, r, "writing the copy: %s", strerror (-r));
    return r;
  }
  if (hdr.status != PROTO_OK) {
    pull_fail (
        p, -proto_status_to_errno (hdr.status), "%s: SEG_READ: %s: %.*s",
        p->p.source, proto_status_name (hdr.status),
        (int)(hdr.length < PROTO_ERRMSG_MAX ? hdr.length : PROTO_ERRMSG_MAX),
        data ? (const char *)data : "");
    return p->err;
  }
  if (hdr.length != c[i].len) {
    pull_fail (p, -EBADMSG,
               "%s: SEG_READ: %" PRIu32 " bytes, expected %" PRIu32,
               p->p.source, hdr.length, c[i].len);
    return -EBADMSG;
  }
  r = copy_write (p, c[i].off, c[i].len, data);
  if (r < 0 && !cancelled (p))
    pull_fail (p, r, "writing the copy: %s", strerror (-r));
  return r;
}

/* Worker: copy the segment (see the top of this file). */
static void
pull_run (struct ss_work *w)
{
  struct ss_pull *p = SS_CONTAINER_OF (w, struct ss_pull, work);
  CLEANUP_FREE struct chunk *c = NULL;
  uint32_t next = 0, got = 0, inflight = 0;
  int fd, nc;

  p->start_ns = monotonic_ns ();
  if (cancelled (p))
    return;
  fd = source_connect (p);
  if (fd < 0)
    goto out;
  nc = p->p.mode == PROTO_PULL_DIFF ? plan_diff (p, fd, &c) : plan_full (p, &c);
  if (nc < 0)
    goto out;
  while (got < (uint32_t)nc) {
    while (inflight < PULL_WINDOW && next < (uint32_t)nc) {
      p->read_bytes += c[next].len;
      if (!throttle (p) || send_read (p, fd, c, next) < 0)
        goto out;
      next++;
      inflight++;
    }
    if (recv_chunk (p, fd, c, nc) < 0)
      goto out;
    inflight--;
    got++;
    if (cancelled (p))
      goto out;
  }
  source_close (p);
  if (fdatasync (p->data_fd) == -1) {
    p->sync_err = -errno;
    pull_fail (p, p->sync_err, "fdatasync: %s", strerror (-p->sync_err));
  }

out:
  if (p->err < 0)
    cancelled (p); /* a shut-down socket: say why */
  source_close (p);
}

/* ---- The request (ring thread) ---- */

/* Answer the pull, detach it from its segment and free it. */
static void
pull_end (struct ss_loop *loop, struct ss_pull *p, int err, const char *msg)
{
  struct ss_req *r = p->req;
  double secs;

  if (p->seg) {
    p->seg->pull = NULL;
    ss_seg_io_end (loop, p->seg);
    p->seg = NULL;
  }
  if (p->prev)
    p->prev->next = p->next;
  else
    loop->pulls = p->next;
  if (p->next)
    p->next->prev = p->prev;

  secs = (monotonic_ns () - p->start_ns) / 1e9;
  if (loop->failed)
    ss_req_failed (loop, r);
  else if (err == 0) {
    log_info ("segment %" PRIu64 ": pulled from %s (%s): %" PRIu64
              " bytes copied in %.1f s",
              p->p.segment, p->p.source,
              p->p.mode == PROTO_PULL_DIFF ? "diff" : "full", p->written_bytes,
              secs);
    ss_req_reply (loop, r, NULL, 0, NULL);
  }
  else {
    log_warn ("segment %" PRIu64 ": pull from %s failed: %s", p->p.segment,
              p->p.source, msg);
    ss_req_error (loop, r, proto_status_from_errno (-err),
                  "SEG_PULL: segment %" PRIu64 ": %s", p->p.segment, msg);
  }
  ss_ranges_free (&p->dirty);
  pthread_cond_destroy (&p->cond);
  pthread_mutex_destroy (&p->lock);
  free (p);
}

/* Record the pull's epoch and generation, then answer OK. */
static void
pull_finish (struct ss_loop *loop, struct ss_pull *p)
{
  struct ss_seg *seg;
  int e;

  if (p->cancel) {
    pull_end (loop, p, -ECANCELED, p->why);
    return;
  }
  if (p->dirty.failed) {
    pull_end (loop, p, -ENOMEM, "out of memory for the dirty ranges");
    return;
  }
  p->finishing = true;
  e = ss_seg_raise (loop, p->p.segment, p->p.volume, p->p.epoch, p->p.gen,
                    p->p.index, false, &p->wait, &seg);
  if (e == 0)
    return; /* resumed by pull_resume */
  if (e < 0 || seg != p->seg)
    pull_end (loop, p, e < 0 ? e : -ENOENT, "recording the epoch failed");
  else
    pull_end (loop, p, 0, NULL);
}

/* The worker is done: finish, or answer its failure. */
static void
pull_done (struct ss_loop *loop, struct ss_msg *msg)
{
  struct ss_pull *p = SS_CONTAINER_OF (msg, struct ss_pull, work.done);

  if (p->sync_err < 0)
    ss_store_fail (loop, "data: fdatasync", p->sync_err);
  if (p->err < 0)
    pull_end (loop, p, p->err, p->errmsg);
  else
    pull_finish (loop, p);
}

/* Attach P to its segment (creating it if absent) and queue the copy. */
static void
pull_attach (struct ss_loop *loop, struct ss_pull *p)
{
  struct ss_seg *seg;
  int e;

  if (p->cancel) {
    pull_end (loop, p, -ECANCELED, p->why);
    return;
  }
  e = ss_seg_raise (loop, p->p.segment, p->p.volume, 0, 0, p->p.index, true,
                    &p->wait, &seg);
  if (e == -SS_EINDEX) {
    /* The worker has not started: its message buffer is free. */
    snprintf (p->errmsg, sizeof p->errmsg,
              "index %" PRIu64
              " differs from the index this server recorded for it (%" PRIu64
              ")",
              p->p.index, ss_seg_lookup (loop, p->p.segment)->index);
    pull_end (loop, p, -EINVAL, p->errmsg);
    return;
  }
  if (e < 0) {
    pull_end (loop, p, e,
              e == -ENOSPC ? "no free slot in this store" : strerror (-e));
    return;
  }
  if (e == 0)
    return; /* resumed by pull_resume */
  if (seg->pull) {
    pull_end (loop, p, -EBUSY, "another pull of this segment is running");
    return;
  }
  seg->pull = p;
  seg->io_inflight++;
  p->seg = seg;
  ss_track_take (loop, seg, p->p.gen, &p->dirty);
  p->slot_pos = ss_store_slot_offset (loop->store, seg->slot);
  ss_workq_submit (loop->pullq, &p->work);
}

/* The segment P waited for is idle (or its index update failed). */
static void
pull_resume (struct ss_loop *loop, struct ss_waiter *w, int err)
{
  struct ss_pull *p = SS_CONTAINER_OF (w, struct ss_pull, wait);

  if (err < 0)
    pull_end (loop, p, err, "index update failed");
  else if (p->finishing)
    pull_finish (loop, p);
  else
    pull_attach (loop, p);
}

/* SEG_PULL: copy a segment from the storage server named in the request
 * (see the top of this file).  The reply comes when the copy is durable.
 */
void
ss_req_pull (struct ss_loop *loop, struct ss_req *r)
{
  pthread_condattr_t attr;
  struct ss_pull *p;

  p = calloc (1, sizeof *p);
  if (p == NULL) {
    ss_req_error (loop, r, PROTO_ENOMEM, "SEG_PULL: %s", strerror (ENOMEM));
    return;
  }
  if (proto_decode_pull (r->payload, r->hdr.length, &p->p) < 0) {
    free (p);
    ss_req_fatal (loop, r, PROTO_EBADMSG,
                  "SEG_PULL: malformed request (mode must be %d or %d)",
                  PROTO_PULL_FULL, PROTO_PULL_DIFF);
    return;
  }
  if (r->hdr.flags & PROTO_FLAG_FUA) {
    free (p);
    ss_req_error (loop, r, PROTO_EINVAL, "SEG_PULL: FUA flag not allowed");
    return;
  }
  if (sock_address_check (p->p.source) < 0) {
    ss_req_error (loop, r, PROTO_EINVAL, "SEG_PULL: invalid source: %s",
                  p->p.source);
    free (p);
    return;
  }
  p->loop = loop;
  p->req = r;
  p->fd = -1;
  p->data_fd = loop->store->data_fd;
  p->segment_size = loop->store->segment_size;
  p->uuid = loop->store->uuid;
  p->zeros = loop->zeros;
  p->debug = loop->ctx->debug_pull;
  p->wait.resume = pull_resume;
  p->work.run = pull_run;
  p->work.done.fn = pull_done;
  pthread_mutex_init (&p->lock, NULL);
  pthread_condattr_init (&attr);
  pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
  pthread_cond_init (&p->cond, &attr);
  pthread_condattr_destroy (&attr);
  p->start_ns = monotonic_ns ();
  p->next = loop->pulls;
  if (p->next)
    p->next->prev = p;
  loop->pulls = p;
  if (p->debug)
    log_debug ("pull: segment %" PRIu64 " from %s (%s, epoch %" PRIu64
               ", gen %" PRIu64 ", %" PRIu64 " bytes/s)",
               p->p.segment, p->p.source,
               p->p.mode == PROTO_PULL_DIFF ? "diff" : "full", p->p.epoch,
               p->p.gen, p->p.bandwidth);
  pull_attach (loop, p);
}

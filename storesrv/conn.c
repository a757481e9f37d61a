/* Client connections: the handshake, receiving frames and handing them
 * to req.c as requests, sending the replies req.c queues.
 *
 * Before authentication a connection reads one 24-byte header, then its
 * payload, into a new request, dispatches it and reads the next header.
 * Once authenticated it receives into a buffer of SS_RECV_BUF bytes and
 * takes every whole frame one recv brought (a payload that does not fit
 * is received into its request directly), so that a client with many
 * requests in flight costs one recv for several, not two for each.  It
 * stops taking frames while it holds --max-inflight requests or
 * SS_CONN_MAX_BYTES of buffers, until replies have gone out.  Replies
 * are queued in completion order (tags let the client match them); the
 * replies a connection has ready when a loop turn's completions have
 * been processed go out in one sendmsg, their data gathered by iovecs
 * (never copied).
 * Malformed input gets an error reply, then the connection is closed;
 * requests still working when it closes finish and are dropped.
 *
 * Every connection starts with HELLO and AUTH, the mutual proof of the
 * cluster key (auth.h, handshake.c).  Until AUTH succeeds a connection is
 * held at constant cost: one request at a time, headers of any other
 * opcode or with a payload over PROTO_MAX_PREAUTH_PAYLOAD refused as
 * they arrive (nothing is read or allocated by their length), closed
 * after --handshake-timeout seconds, and at most --max-unauthenticated
 * of them: a new one pushes out the oldest, so that a flood of idle
 * sockets can delay a real client but never lock it out.  Authenticated
 * connections are limited to --max-connections.
 *
 * An authenticated connection may stay idle between frames as long as
 * it likes, but once a frame has begun to arrive, each --frame-timeout
 * seconds must bring more of it: a peer that sends a header announcing
 * a large payload and then stalls would otherwise hold the payload's
 * buffer for ever.  Connections in the middle of a frame are kept in
 * order of their last progress, so that one timer, armed for the oldest
 * and not disarmed when the list empties, serves all of them: receiving
 * costs a few pointer moves, never a timer operation.
 */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"
#include "log.h"
#include "sock.h"

#include "internal.h"

static void recv_done (struct ss_loop *loop, struct ss_op *op, int res);
static void send_done (struct ss_loop *loop, struct ss_op *op, int res);
static void hs_timer_arm (struct ss_loop *loop);
static void frame_timer_arm (struct ss_loop *loop);
static void conn_parse (struct ss_loop *loop, struct ss_conn *c);

/* CLOCK_MONOTONIC in milliseconds. */
static uint64_t
now_ms (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Take C off the loop's list of unauthenticated connections (if on it).
 * When the list empties the handshake timer has nothing left to do:
 * cancel it, so that it never holds up a shutdown.
 */
static void
unauth_remove (struct ss_loop *loop, struct ss_conn *c)
{
  if (!c->in_unauth)
    return;
  if (c->uprev)
    c->uprev->unext = c->unext;
  else
    loop->unauth_head = c->unext;
  if (c->unext)
    c->unext->uprev = c->uprev;
  else
    loop->unauth_tail = c->uprev;
  c->uprev = c->unext = NULL;
  c->in_unauth = false;
  loop->nunauth--;
  if (loop->nunauth > 0)
    return;
  if (loop->evicted > 0) {
    log_warn ("dropped %" PRIu64 " unauthenticated connections at the "
              "limit of --max-unauthenticated %" PRIu32,
              loop->evicted, loop->ctx->max_unauth);
    loop->evicted = 0;
  }
  if (loop->hs_timer_armed) {
    struct io_uring_sqe *sqe = ss_get_sqe (loop);

    io_uring_prep_timeout_remove (sqe, (uintptr_t)&loop->hs_timer_op, 0);
    io_uring_sqe_set_data (sqe, &loop->cancel_op);
  }
}

/* Take C off the loop's list of connections in the middle of a frame
 * (if on it).  The frame timer stays armed: it finds nothing to do when
 * it expires, which costs less than cancelling it for every frame.
 */
static void
frame_untrack (struct ss_loop *loop, struct ss_conn *c)
{
  if (!c->in_frames)
    return;
  if (c->fprev)
    c->fprev->fnext = c->fnext;
  else
    loop->frames_head = c->fnext;
  if (c->fnext)
    c->fnext->fprev = c->fprev;
  else
    loop->frames_tail = c->fprev;
  c->fprev = c->fnext = NULL;
  c->in_frames = false;
}

/* Bytes arrived on C, or C reads again after a pause: if C is
 * authenticated, reading and holds part of a frame, note the progress
 * (moving C to the tail of the loop's list, which stays in order of
 * progress); otherwise take it off the list.  A paused connection is
 * not waiting for its peer, but for its own replies to go out.
 */
static void
frame_progress (struct ss_loop *loop, struct ss_conn *c)
{
  if (c->state != SS_CONN_READY || c->closing || c->paused ||
      (c->got == 0 && c->rreq == NULL && c->rlen == c->roff)) {
    frame_untrack (loop, c);
    return;
  }
  c->progress_ms = loop->now_ms;
  if (c->in_frames) {
    if (loop->frames_tail == c)
      return;
    frame_untrack (loop, c);
  }
  c->fprev = loop->frames_tail;
  c->fnext = NULL;
  if (loop->frames_tail)
    loop->frames_tail->fnext = c;
  else
    loop->frames_head = c;
  loop->frames_tail = c;
  c->in_frames = true;
  frame_timer_arm (loop);
}

/* Drop a reference; the last one frees the connection. */
static void
conn_put (struct ss_loop *loop, struct ss_conn *c)
{
  assert (c->refs > 0);
  if (--c->refs > 0)
    return;
  assert (c->closing && !c->recv_inflight && !c->send_inflight);
  assert (!c->in_flush);
  assert (c->nreqs == 0 && c->sendq_head == NULL && c->rreq == NULL);
  assert (!c->in_unauth && !c->in_frames);
  if (c->state == SS_CONN_READY)
    loop->nauth--;
  if (c->prev)
    c->prev->next = c->next;
  else
    loop->conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  loop->nconns--;
  if (loop->ctx->debug_requests)
    log_debug ("%s: connection closed", c->peer);
  close (c->fd);
  free (c->siov);
  free (c->rbuf);
  free (c);
}

/* Read on: post a recv for the rest of RREQ's payload, for more frames
 * into RBUF once authenticated (or take those it holds already), or for
 * the rest of the header.  Does nothing while conn_parse runs, which
 * reads on when it is done.
 */
static void
conn_recv (struct ss_loop *loop, struct ss_conn *c)
{
  struct io_uring_sqe *sqe;

  if (c->parsing)
    return;
  assert (!c->recv_inflight && !c->closing);
  /* Without memory for it, go on a header at a time. */
  if (!c->rreq && c->got == 0 && c->state == SS_CONN_READY && c->rbuf == NULL)
    c->rbuf = malloc (SS_RECV_BUF);
  c->recv_rbuf = false;
  if (!c->rreq && c->rbuf && c->rlen - c->roff >= PROTO_HEADER_SIZE) {
    /* Frames are buffered (C was paused): take them first. */
    conn_parse (loop, c);
    return;
  }
  sqe = ss_get_sqe (loop);
  if (c->rreq)
    io_uring_prep_recv (sqe, c->fd, c->rreq->payload + c->got,
                        c->rreq->hdr.length - c->got, 0);
  else if (c->rbuf) {
    assert (c->got == 0 && c->rlen - c->roff < PROTO_HEADER_SIZE);
    if (c->roff > 0) {
      memmove (c->rbuf, c->rbuf + c->roff, c->rlen - c->roff);
      c->rlen -= c->roff;
      c->roff = 0;
    }
    io_uring_prep_recv (sqe, c->fd, c->rbuf + c->rlen, SS_RECV_BUF - c->rlen,
                        0);
    c->recv_rbuf = true;
  }
  else
    io_uring_prep_recv (sqe, c->fd, c->hdrbuf + c->got,
                        PROTO_HEADER_SIZE - c->got, 0);
  io_uring_sqe_set_data (sqe, &c->recv_op);
  c->recv_inflight = true;
  c->refs++;
}

/* The handshake timer expired (or was removed): close every
 * unauthenticated connection past its deadline, then wait for the next.
 */
static void
hs_timer_done (struct ss_loop *loop, struct ss_op *op, int res)
{
  uint64_t now = now_ms ();
  struct ss_conn *c;

  loop->hs_timer_armed = false;
  while ((c = loop->unauth_head) != NULL && c->deadline_ms <= now) {
    log_debug ("%s: no authentication within %" PRIu32 " s, closing", c->peer,
               loop->ctx->handshake_timeout);
    ss_conn_close (loop, c);
  }
  hs_timer_arm (loop);
}

/* Arm the handshake timer for the oldest unauthenticated connection's
 * deadline, unless it is armed or there is none.
 */
static void
hs_timer_arm (struct ss_loop *loop)
{
  struct io_uring_sqe *sqe;
  uint64_t now, wait;

  if (loop->hs_timer_armed || loop->unauth_head == NULL || loop->stopping)
    return;
  now = now_ms ();
  /* A millisecond late rather than early. */
  wait = loop->unauth_head->deadline_ms > now
             ? loop->unauth_head->deadline_ms - now + 1
             : 1;
  loop->hs_timer_ts.tv_sec = wait / 1000;
  loop->hs_timer_ts.tv_nsec = (wait % 1000) * 1000000;
  loop->hs_timer_op.done = hs_timer_done;
  sqe = ss_get_sqe (loop);
  io_uring_prep_timeout (sqe, &loop->hs_timer_ts, 0, 0);
  io_uring_sqe_set_data (sqe, &loop->hs_timer_op);
  loop->hs_timer_armed = true;
}

/* The frame timer expired (or was removed): close every connection
 * whose frame made no progress for --frame-timeout seconds, then wait
 * for the next deadline, if any connection is in the middle of a frame.
 */
static void
frame_timer_done (struct ss_loop *loop, struct ss_op *op, int res)
{
  uint64_t timeout_ms = (uint64_t)loop->ctx->frame_timeout * 1000;
  uint64_t now = now_ms ();
  struct ss_conn *c;

  loop->frame_timer_armed = false;
  while ((c = loop->frames_head) != NULL &&
         c->progress_ms + timeout_ms <= now) {
    if (c->rreq)
      log_warn ("%s: %s: frame incomplete after %" PRIu32 " s (%" PRIu32
                " of %" PRIu32 " payload bytes), closing the connection",
                c->peer, proto_opcode_name (c->rreq->hdr.opcode),
                loop->ctx->frame_timeout, c->got, c->rreq->hdr.length);
    else
      log_warn ("%s: frame incomplete after %" PRIu32 " s (%" PRIu32
                " of %d header bytes), closing the connection",
                c->peer, loop->ctx->frame_timeout, c->got + (c->rlen - c->roff),
                PROTO_HEADER_SIZE);
    ss_conn_close (loop, c);
  }
  frame_timer_arm (loop);
}

/* Arm the frame timer for the deadline of the connection whose frame
 * made progress least recently, unless it is armed (for that deadline
 * or an earlier one: deadlines only grow along the list) or there is
 * none.
 */
static void
frame_timer_arm (struct ss_loop *loop)
{
  struct io_uring_sqe *sqe;
  uint64_t now, deadline, wait;

  if (loop->frame_timer_armed || loop->frames_head == NULL || loop->stopping)
    return;
  now = now_ms ();
  deadline = loop->frames_head->progress_ms +
             (uint64_t)loop->ctx->frame_timeout * 1000;
  /* A millisecond late rather than early. */
  wait = deadline > now ? deadline - now + 1 : 1;
  loop->frame_timer_ts.tv_sec = wait / 1000;
  loop->frame_timer_ts.tv_nsec = (wait % 1000) * 1000000;
  loop->frame_timer_op.done = frame_timer_done;
  sqe = ss_get_sqe (loop);
  io_uring_prep_timeout (sqe, &loop->frame_timer_ts, 0, 0);
  io_uring_sqe_set_data (sqe, &loop->frame_timer_op);
  loop->frame_timer_armed = true;
}

/* Shut down (loop.c): close every connection and remove the frame
 * timer, so that it does not hold up the end of the loop.
 */
void
ss_conns_stop (struct ss_loop *loop)
{
  struct ss_conn *c, *next;

  assert (loop->stopping);
  for (c = loop->conns; c; c = next) {
    next = c->next;
    ss_conn_close (loop, c);
  }
  if (loop->frame_timer_armed) {
    struct io_uring_sqe *sqe = ss_get_sqe (loop);

    io_uring_prep_timeout_remove (sqe, (uintptr_t)&loop->frame_timer_op, 0);
    io_uring_sqe_set_data (sqe, &loop->cancel_op);
  }
}

/* Take ownership of the accepted socket FD and start the handshake.  At
 * --max-unauthenticated unauthenticated connections, the oldest of them
 * is closed to make room.  Returns 0 or -errno (FD closed).
 */
int
ss_conn_new (struct ss_loop *loop, int fd)
{
  struct ss_conn *c;
  int one = 1;

  while (loop->nunauth >= loop->ctx->max_unauth && loop->unauth_head) {
    if (loop->evicted++ == 0)
      log_warn ("%u unauthenticated connections (--max-unauthenticated): "
                "dropping the oldest to admit new ones",
                loop->nunauth);
    log_debug ("%s: dropped: too many unauthenticated connections",
               loop->unauth_head->peer);
    ss_conn_close (loop, loop->unauth_head);
  }
  c = calloc (1, sizeof *c);
  if (c == NULL) {
    log_warn ("accept: %s", strerror (ENOMEM));
    close (fd);
    return -ENOMEM;
  }
  c->loop = loop;
  c->refs = 1;
  c->recv_op.done = recv_done;
  c->send_op.done = send_done;
  c->state = SS_CONN_HELLO;
  sock_peer_address (fd, c->peer, sizeof c->peer);
  /* Unix peers have no address: number them to tell them apart. */
  loop->conn_serial++;
  if (strcmp (c->peer, "unix") == 0 || strcmp (c->peer, "unix:") == 0)
    snprintf (c->peer, sizeof c->peer, "unix#%" PRIu64, loop->conn_serial);
  /* Fails harmlessly on unix sockets. */
  setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  /* With --tls the ring speaks to a relay (tls.h) instead. */
  fd = proto_accepted (fd, (int)loop->ctx->handshake_timeout * 1000, c->peer);
  if (fd < 0) {
    log_warn ("%s: TLS: %s", c->peer, strerror (-fd));
    free (c);
    return fd;
  }
  c->fd = fd;
  c->next = loop->conns;
  if (c->next)
    c->next->prev = c;
  loop->conns = c;
  loop->nconns++;

  c->deadline_ms = now_ms () + (uint64_t)loop->ctx->handshake_timeout * 1000;
  c->uprev = loop->unauth_tail;
  if (loop->unauth_tail)
    loop->unauth_tail->unext = c;
  else
    loop->unauth_head = c;
  loop->unauth_tail = c;
  c->in_unauth = true;
  loop->nunauth++;
  hs_timer_arm (loop);

  if (loop->ctx->debug_requests)
    log_debug ("%s: connection accepted", c->peer);
  conn_recv (loop, c);
  return 0;
}

/* C's peer proved the cluster key (handshake.c): count it against
 * --max-connections and let it send requests.  Returns 0, or -EAGAIN if
 * the server has as many authenticated connections as it accepts.
 */
int
ss_conn_authenticated (struct ss_loop *loop, struct ss_conn *c)
{
  assert (c->state == SS_CONN_AUTH);
  if (loop->nauth >= loop->ctx->max_conns)
    return -EAGAIN;
  unauth_remove (loop, c);
  c->state = SS_CONN_READY;
  loop->nauth++;
  return 0;
}

/* The most requests C may hold before it stops reading. */
static unsigned
conn_max_reqs (const struct ss_conn *c)
{
  return c->state == SS_CONN_READY ? c->loop->ctx->max_inflight : 1;
}

/* A request of C was freed (ss_req_free): a paused C below its bounds
 * reads again; the request's reference to C is dropped.
 */
void
ss_conn_req_done (struct ss_loop *loop, struct ss_conn *c)
{
  if (c->paused && !c->closing && !c->close_after_send &&
      c->nreqs < conn_max_reqs (c) && c->req_bytes < SS_CONN_MAX_BYTES) {
    c->paused = false;
    conn_recv (loop, c);
    frame_progress (loop, c);
  }
  conn_put (loop, c);
}

/* Shut C down: no more reads or replies.  Requests still working finish
 * and are freed; C is freed when the last of them and of its ring
 * operations is done.
 */
void
ss_conn_close (struct ss_loop *loop, struct ss_conn *c)
{
  struct ss_req *r, *next;

  if (c->closing)
    return;
  c->closing = true;
  unauth_remove (loop, c);
  frame_untrack (loop, c);
  shutdown (c->fd, SHUT_RDWR);
  /* The first SEND_NREQS replies may be in the kernel's hands. */
  r = c->sendq_head;
  if (r && c->send_inflight) {
    unsigned i;

    for (i = 1; i < c->send_nreqs; i++)
      r = r->next;
    next = r->next;
    r->next = NULL;
    c->sendq_tail = r;
    r = next;
  }
  else
    c->sendq_head = c->sendq_tail = NULL;
  for (; r; r = next) {
    next = r->next;
    ss_req_free (loop, r);
  }
  if (c->rreq && !c->recv_inflight) {
    ss_req_free (loop, c->rreq);
    c->rreq = NULL;
  }
  conn_put (loop, c);
}

/* Send the replies queued on C, as many as one sendmsg takes, unless a
 * send is in flight.
 */
static void
conn_send (struct ss_loop *loop, struct ss_conn *c)
{
  struct ss_req *r = c->sendq_head;
  struct io_uring_sqe *sqe;
  struct msghdr *msg;
  unsigned nreqs = 1;

  if (c->send_inflight || r == NULL || c->closing)
    return;
  msg = &r->msg;
  /* Several replies ready: one sendmsg for all (their data stays where
   * it is: only the iovecs are gathered).
   */
  if (r->next && c->siov == NULL)
    c->siov = malloc (SS_SEND_IOV * sizeof *c->siov);
  if (r->next && c->siov) {
    size_t n = 0;

    nreqs = 0;
    for (; r && n + r->msg.msg_iovlen <= SS_SEND_IOV; r = r->next) {
      memcpy (&c->siov[n], r->msg.msg_iov, r->msg.msg_iovlen * sizeof *c->siov);
      n += r->msg.msg_iovlen;
      nreqs++;
    }
    memset (&c->send_msg, 0, sizeof c->send_msg);
    c->send_msg.msg_iov = c->siov;
    c->send_msg.msg_iovlen = n;
    msg = &c->send_msg;
  }
  sqe = ss_get_sqe (loop);
  io_uring_prep_sendmsg (sqe, c->fd, msg, MSG_NOSIGNAL);
  io_uring_sqe_set_data (sqe, &c->send_op);
  c->send_nreqs = nreqs;
  c->send_inflight = true;
  c->refs++;
}

/* Send C's replies once this loop turn's completions are processed, so
 * that the replies they produce go out together.
 */
static void
conn_flush_later (struct ss_loop *loop, struct ss_conn *c)
{
  if (c->in_flush || c->send_inflight || c->closing)
    return;
  c->in_flush = true;
  c->refs++;
  c->flush_next = loop->flush_head;
  loop->flush_head = c;
}

/* Called after each batch of completions (loop.c): send what the
 * connections have queued, one sendmsg per connection.
 */
void
ss_conns_flush (struct ss_loop *loop)
{
  struct ss_conn *c;

  while ((c = loop->flush_head) != NULL) {
    loop->flush_head = c->flush_next;
    c->flush_next = NULL;
    c->in_flush = false;
    conn_send (loop, c);
    conn_put (loop, c);
  }
}

/* A sendmsg completed: free the replies it sent, resume a short send
 * where it stopped, and send what has been queued since.
 */
static void
send_done (struct ss_loop *loop, struct ss_op *op, int res)
{
  struct ss_conn *c = SS_CONTAINER_OF (op, struct ss_conn, send_op);
  struct ss_req *r, *next;
  size_t n;

  c->send_inflight = false;
  if (c->closing) {
    /* ss_conn_close left only the replies of this send. */
    r = c->sendq_head;
    c->sendq_head = c->sendq_tail = NULL;
    for (; r; r = next) {
      next = r->next;
      ss_req_free (loop, r);
    }
    goto out;
  }
  if (res == -EAGAIN || res == -EINTR) {
    conn_send (loop, c);
    goto out;
  }
  if (res <= 0) {
    log_debug ("send: %s: %s", c->peer,
               res < 0 ? strerror (-res) : "no progress");
    ss_conn_close (loop, c);
    goto out;
  }
  /* Step over what went out: whole replies are freed, a reply cut short
   * keeps its rest for the next send.
   */
  n = res;
  while ((r = c->sendq_head) != NULL && n > 0) {
    while (r->msg.msg_iovlen > 0 && r->msg.msg_iov[0].iov_len <= n) {
      n -= r->msg.msg_iov[0].iov_len;
      r->msg.msg_iov++;
      r->msg.msg_iovlen--;
    }
    if (r->msg.msg_iovlen > 0) {
      r->msg.msg_iov[0].iov_base = (char *)r->msg.msg_iov[0].iov_base + n;
      r->msg.msg_iov[0].iov_len -= n;
      break;
    }
    c->sendq_head = r->next;
    if (c->sendq_head == NULL)
      c->sendq_tail = NULL;
    ss_req_free (loop, r);
  }
  if (c->closing)
    goto out;
  if (c->sendq_head)
    conn_flush_later (loop, c);
  else if (c->close_after_send)
    ss_conn_close (loop, c);
out:
  conn_put (loop, c);
}

/* Queue R, its reply encoded (req.c), to be sent on its connection
 * once this loop turn's completions are processed.
 */
void
ss_conn_queue (struct ss_loop *loop, struct ss_req *r)
{
  struct ss_conn *c = r->conn;

  r->next = NULL;
  if (c->sendq_tail)
    c->sendq_tail->next = r;
  else
    c->sendq_head = r;
  c->sendq_tail = r;
  conn_flush_later (loop, c);
}

/* Hand a complete request to its handler (req.c), then read on, unless
 * C is closing or at its bounds.
 */
static void
conn_dispatch (struct ss_loop *loop, struct ss_conn *c, struct ss_req *r)
{
  ss_req_dispatch (loop, r);
  if (c->closing || c->close_after_send)
    return;
  if (c->nreqs >= conn_max_reqs (c) || c->req_bytes >= SS_CONN_MAX_BYTES)
    c->paused = true;
  else
    conn_recv (loop, c);
}

/* Describe why proto_header_decode rejected HDR (with the payload limit
 * MAX) with error E.
 */
static void
header_error (const struct proto_header *hdr, uint32_t max, int e, char *buf,
              size_t len)
{
  if (hdr->magic != PROTO_MAGIC)
    snprintf (buf, len, "bad magic 0x%08" PRIx32, hdr->magic);
  else if (e == -EPROTO)
    snprintf (buf, len, "protocol version %u (this server speaks %d)",
              hdr->version, PROTO_VERSION);
  else if (e == -EMSGSIZE)
    snprintf (buf, len,
              "%s: payload of %" PRIu32 " bytes exceeds the limit"
              " of %" PRIu32 "%s",
              proto_opcode_name (hdr->opcode), hdr->length, max,
              max < proto_max_payload (hdr->opcode) ? " before authentication"
                                                    : "");
  else if (strcmp (proto_opcode_name (hdr->opcode), "unknown") == 0)
    snprintf (buf, len, "unknown opcode %u", hdr->opcode);
  else if (hdr->flags & ~PROTO_FLAGS_KNOWN)
    snprintf (buf, len, "%s: unknown flags 0x%x",
              proto_opcode_name (hdr->opcode), hdr->flags);
  else
    snprintf (buf, len, "%s: status %" PRIu32 " set in a request",
              proto_opcode_name (hdr->opcode), hdr->status);
}

/* A whole header is in C->hdrbuf: check it, then read the payload or
 * dispatch.  Before authentication only HELLO or AUTH with at most
 * PROTO_MAX_PREAUTH_PAYLOAD bytes get past here.
 */
static void
header_received (struct ss_loop *loop, struct ss_conn *c)
{
  struct ss_req *r = ss_req_new (c);
  uint32_t max;
  int e;

  if (r == NULL) {
    log_warn ("%s: %s", c->peer, strerror (ENOMEM));
    ss_conn_close (loop, c);
    return;
  }
  /* The opcode byte follows the 4-byte magic and the version byte. */
  max = proto_max_payload (c->hdrbuf[5]);
  if (c->state != SS_CONN_READY && max > PROTO_MAX_PREAUTH_PAYLOAD)
    max = PROTO_MAX_PREAUTH_PAYLOAD;
  e = proto_header_decode (c->hdrbuf, &r->hdr, max);
  /* Before authentication a wrong opcode is the first thing to say. */
  if (e < 0 && !(e == -EMSGSIZE && c->state != SS_CONN_READY)) {
    char why[128];

    header_error (&r->hdr, max, e, why, sizeof why);
    ss_req_fatal (loop, r, proto_status_from_errno (-e), "bad frame: %s", why);
    return;
  }
  if (r->hdr.flags & PROTO_FLAG_REPLY) {
    ss_req_fatal (loop, r, PROTO_EPROTO, "%s: unexpected reply frame",
                  proto_opcode_name (r->hdr.opcode));
    return;
  }
  if (!ss_handshake_order (loop, c, r))
    return;
  if (e < 0) {
    char why[128];

    header_error (&r->hdr, max, e, why, sizeof why);
    ss_req_fatal (loop, r, proto_status_from_errno (-e), "bad frame: %s", why);
    return;
  }
  if (r->hdr.length == 0) {
    conn_dispatch (loop, c, r);
    return;
  }
  r->payload = malloc (r->hdr.length);
  if (r->payload == NULL) {
    ss_req_fatal (loop, r, PROTO_ENOMEM, "%s: no memory for %" PRIu32 " bytes",
                  proto_opcode_name (r->hdr.opcode), r->hdr.length);
    return;
  }
  ss_req_add_bytes (r, r->hdr.length);
  c->rreq = r;
  conn_recv (loop, c);
}

/* Take the frames buffered in C->rbuf: dispatch the whole ones, start
 * the payload of one that goes on beyond, then read on, unless C is at
 * its bounds (paused: the rest waits in RBUF) or closing.
 */
static void
conn_parse (struct ss_loop *loop, struct ss_conn *c)
{
  c->parsing = true;
  while (!c->closing && !c->close_after_send && !c->paused &&
         c->rlen - c->roff >= PROTO_HEADER_SIZE) {
    struct ss_req *r;
    uint32_t n;

    memcpy (c->hdrbuf, c->rbuf + c->roff, PROTO_HEADER_SIZE);
    c->roff += PROTO_HEADER_SIZE;
    header_received (loop, c);
    if (c->rreq == NULL)
      continue;
    r = c->rreq;
    n = r->hdr.length - c->got;
    if (n > c->rlen - c->roff)
      n = c->rlen - c->roff;
    memcpy (r->payload + c->got, c->rbuf + c->roff, n);
    c->roff += n;
    c->got += n;
    if (c->got < r->hdr.length)
      break;
    c->rreq = NULL;
    c->got = 0;
    conn_dispatch (loop, c, r);
  }
  if (c->roff == c->rlen)
    c->roff = c->rlen = 0;
  c->parsing = false;
  if (!c->closing && !c->close_after_send && !c->paused && !c->recv_inflight)
    conn_recv (loop, c);
  frame_progress (loop, c);
}

/* A recv completed: go on with the header or payload, or handle the
 * peer's close.
 */
static void
recv_done (struct ss_loop *loop, struct ss_op *op, int res)
{
  struct ss_conn *c = SS_CONTAINER_OF (op, struct ss_conn, recv_op);
  struct ss_req *r;

  c->recv_inflight = false;
  if (c->closing) {
    if (c->rreq) {
      ss_req_free (loop, c->rreq);
      c->rreq = NULL;
    }
    goto out;
  }
  if (res == -EAGAIN || res == -EINTR || res == -ENOBUFS) {
    conn_recv (loop, c);
    goto out;
  }
  if (res <= 0) {
    if (res < 0)
      log_debug ("recv: %s: %s", c->peer, strerror (-res));
    else if (c->got > 0 || c->rreq || c->rlen > c->roff)
      log_debug ("%s: connection closed in the middle of a frame", c->peer);
    ss_conn_close (loop, c);
    goto out;
  }
  if (c->recv_rbuf) {
    SS_MARK_DEFINED (c->rbuf + c->rlen, res);
    c->rlen += res;
    conn_parse (loop, c);
  }
  else if (c->rreq) {
    r = c->rreq;
    SS_MARK_DEFINED (r->payload + c->got, res);
    c->got += res;
    if (c->got < r->hdr.length)
      conn_recv (loop, c);
    else {
      c->rreq = NULL;
      c->got = 0;
      conn_dispatch (loop, c, r);
    }
  }
  else {
    SS_MARK_DEFINED (c->hdrbuf + c->got, res);
    c->got += res;
    if (c->got < PROTO_HEADER_SIZE)
      conn_recv (loop, c);
    else {
      c->got = 0;
      header_received (loop, c);
    }
  }
  frame_progress (loop, c);
out:
  conn_put (loop, c);
}

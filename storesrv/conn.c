/* Client connections: the socket engine.  Receiving frames into
 * requests (req.c) and handing them to their handlers (dispatch.c),
 * sending the replies req.c queues.
 *
 * Before authentication a connection reads one 24-byte header, then its
 * payload, into a new request, dispatches it and reads the next header.
 * Once authenticated it receives into a buffer of SS_RECV_BUF bytes and
 * takes every whole frame one recv brought (a payload that does not fit
 * is received into its request directly), so that a client with many
 * requests in flight costs one recv for several, not two for each.  It
 * stops taking frames while it is at the bounds of admit.c
 * (--max-inflight requests or SS_CONN_MAX_BYTES of buffers), until
 * replies have gone out.  Replies are queued in completion order (tags
 * let the client match them); the replies a connection has ready when a
 * loop turn's completions have been processed go out in one sendmsg,
 * their data gathered by iovecs (never copied).
 * Malformed input gets an error reply, then the connection is closed;
 * requests still working when it closes finish and are dropped.
 *
 * Every connection starts with HELLO and AUTH, the mutual proof of the
 * cluster key (auth.h, handshake.c).  Until AUTH succeeds a connection
 * holds one request at a time, and headers of any other opcode
 * (ss_handshake_order) or with a payload over PROTO_MAX_PREAUTH_PAYLOAD
 * are refused as they arrive: nothing is read or allocated by their
 * length.  How many connections are admitted, and how long they may
 * take over the handshake or a frame, is admit.c's: conn.c tells it of
 * every connection accepted, making progress or closed, and closes the
 * connections admit.c names (pushed out by a new one, or past a
 * deadline when one of its timers, whose completions run here, expires).
 *
 * Only loop.c calls this file: it hands over accepted sockets, runs the
 * flush pass after each batch of completions (ss_conns_flush) and shuts
 * the connections down.  This file calls the services below it (req.c,
 * dispatch.c, handshake.c's ss_handshake_order, admit.c, ring.c) and
 * none of them calls back: req.c only queues replies and puts the
 * connection on the flush list, and the flush pass here sends them,
 * resumes paused connections and frees closed ones.
 */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "frame.h"
#include "log.h"
#include "sock.h"

#include "internal.h"

static void recv_done (struct ss_loop *loop, struct ss_op *op, int res);
static void send_done (struct ss_loop *loop, struct ss_op *op, int res);
static void conn_parse (struct ss_loop *loop, struct ss_conn *c);

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

/* The handshake timer (admit.c) expired or was removed: close the
 * unauthenticated connections admit.c finds past their deadline.
 */
static void
hs_timer_done (struct ss_loop *loop, struct ss_op *op, int res)
{
  struct ss_conn *c;

  while ((c = ss_admit_hs_overdue (loop)) != NULL)
    ss_conn_close (loop, c);
}

/* The frame timer (admit.c) expired or was removed: close the
 * connections admit.c finds stalled in the middle of a frame.
 */
static void
frame_timer_done (struct ss_loop *loop, struct ss_op *op, int res)
{
  struct ss_conn *c;

  while ((c = ss_admit_frame_overdue (loop)) != NULL)
    ss_conn_close (loop, c);
}

/* Set up (ss_loop_new): admit.c's timers complete here, where the
 * connections they find overdue are closed.
 */
void
ss_conns_init (struct ss_loop *loop)
{
  loop->hs_timer_op.done = hs_timer_done;
  loop->frame_timer_op.done = frame_timer_done;
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
  ss_admit_stop (loop);
}

/* Take ownership of the accepted socket FD and start the handshake.  At
 * --max-unauthenticated unauthenticated connections, the oldest of them
 * is closed to make room.  Returns 0 or -errno (FD closed).
 */
int
ss_conn_new (struct ss_loop *loop, int fd)
{
  struct ss_conn *c, *old;
  int one = 1;

  while ((old = ss_admit_to_drop (loop)) != NULL)
    ss_conn_close (loop, old);
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

  ss_admit_unauth_add (loop, c);

  if (loop->ctx->debug_requests)
    log_debug ("%s: connection accepted", c->peer);
  conn_recv (loop, c);
  return 0;
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
  ss_admit_unauth_remove (loop, c);
  ss_admit_frame_untrack (loop, c);
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
 * that the replies they produce go out together (req.c lists C the same
 * way when it queues a reply or frees a request).
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

/* Called after each batch of completions (loop.c): the engine's pass
 * over the connections on the flush list (req.c put them there when it
 * queued a reply or freed a request).  A paused connection now below
 * its bounds reads again, what a connection has queued goes out in one
 * sendmsg, and the list's reference is dropped, which frees a closed
 * connection whose requests are all gone.
 */
void
ss_conns_flush (struct ss_loop *loop)
{
  struct ss_conn *c;

  while ((c = loop->flush_head) != NULL) {
    loop->flush_head = c->flush_next;
    c->flush_next = NULL;
    c->in_flush = false;
    if (c->paused && !c->closing && !c->close_after_send &&
        !ss_admit_at_bounds (c)) {
      c->paused = false;
      conn_recv (loop, c);
      ss_admit_frame_progress (loop, c);
    }
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

/* Hand a complete request to its handler (dispatch.c), then read on, unless
 * C is closing or at its bounds.
 */
static void
conn_dispatch (struct ss_loop *loop, struct ss_conn *c, struct ss_req *r)
{
  ss_req_dispatch (loop, r);
  if (c->closing || c->close_after_send)
    return;
  if (ss_admit_at_bounds (c))
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
  else if (!proto_opcode_known (hdr->opcode))
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
  ss_admit_frame_progress (loop, c);
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
  ss_admit_frame_progress (loop, c);
out:
  conn_put (loop, c);
}

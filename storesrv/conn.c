/* Client connections: receiving frames, dispatching requests, queueing
 * replies.
 *
 * A connection reads one 24-byte header, then its payload, into a new
 * request, dispatches it and reads the next header, unless it holds
 * SS_CONN_MAX_REQS requests or SS_CONN_MAX_BYTES of buffers: then it
 * pauses until replies have gone out.  Replies are queued in completion
 * order (tags let the client match them) and sent one sendmsg at a time.
 * Malformed input gets an error reply, then the connection is closed;
 * requests still working when it closes finish and are dropped.
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
#include <unistd.h>

#include "log.h"
#include "sock.h"

#include "internal.h"

static void recv_done (struct ss_loop *loop, struct ss_op *op, int res);
static void send_done (struct ss_loop *loop, struct ss_op *op, int res);

/* Drop a reference; the last one frees the connection. */
static void
conn_put (struct ss_loop *loop, struct ss_conn *c)
{
  assert (c->refs > 0);
  if (--c->refs > 0)
    return;
  assert (c->closing && !c->recv_inflight && !c->send_inflight);
  assert (c->nreqs == 0 && c->sendq_head == NULL && c->rreq == NULL);
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
  free (c);
}

/* Post a recv for the rest of the header or of RREQ's payload. */
static void
conn_recv (struct ss_loop *loop, struct ss_conn *c)
{
  struct io_uring_sqe *sqe = ss_get_sqe (loop);

  assert (!c->recv_inflight && !c->closing);
  if (c->rreq)
    io_uring_prep_recv (sqe, c->fd, c->rreq->payload + c->got,
                        c->rreq->hdr.length - c->got, 0);
  else
    io_uring_prep_recv (sqe, c->fd, c->hdrbuf + c->got,
                        PROTO_HEADER_SIZE - c->got, 0);
  io_uring_sqe_set_data (sqe, &c->recv_op);
  c->recv_inflight = true;
  c->refs++;
}

/* Take ownership of the accepted socket FD and start reading.  Returns 0
 * or -ENOMEM (FD closed).
 */
int
ss_conn_new (struct ss_loop *loop, int fd)
{
  struct ss_conn *c = calloc (1, sizeof *c);
  int one = 1;

  if (c == NULL) {
    log_warn ("accept: %s", strerror (ENOMEM));
    close (fd);
    return -ENOMEM;
  }
  c->loop = loop;
  c->fd = fd;
  c->refs = 1;
  c->recv_op.done = recv_done;
  c->send_op.done = send_done;
  sock_peer_address (fd, c->peer, sizeof c->peer);
  if (strcmp (c->peer, "unix") == 0 || strcmp (c->peer, "unix:") == 0)
    snprintf (c->peer, sizeof c->peer, "unix socket (fd %d)", fd);
  /* Fails harmlessly on unix sockets. */
  setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  c->next = loop->conns;
  if (c->next)
    c->next->prev = c;
  loop->conns = c;
  loop->nconns++;
  if (loop->ctx->debug_requests)
    log_debug ("%s: connection accepted", c->peer);
  conn_recv (loop, c);
  return 0;
}

/* A new request on C for the header just received. */
static struct ss_req *
req_new (struct ss_conn *c)
{
  struct ss_req *r = calloc (1, sizeof *r);

  if (r == NULL)
    return NULL;
  r->conn = c;
  c->nreqs++;
  c->refs++;
  return r;
}

/* Count BYTES more of R's buffers against its connection's bound. */
void
ss_req_add_bytes (struct ss_req *r, uint64_t bytes)
{
  r->bytes += bytes;
  r->conn->req_bytes += bytes;
}

/* Free R (its last ring operation has completed); a paused connection
 * below its bounds reads again.
 */
static void
req_free (struct ss_loop *loop, struct ss_req *r)
{
  struct ss_conn *c = r->conn;

  assert (r->seg == NULL);
  free (r->payload);
  free (r->rdata_owned);
  c->nreqs--;
  c->req_bytes -= r->bytes;
  free (r);
  if (c->paused && !c->closing && !c->close_after_send &&
      c->nreqs < SS_CONN_MAX_REQS && c->req_bytes < SS_CONN_MAX_BYTES) {
    c->paused = false;
    conn_recv (loop, c);
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
  shutdown (c->fd, SHUT_RDWR);
  /* The head of the queue may be in the kernel's hands. */
  r = c->sendq_head;
  if (r && c->send_inflight) {
    next = r->next;
    r->next = NULL;
    c->sendq_tail = r;
    r = next;
  }
  else
    c->sendq_head = c->sendq_tail = NULL;
  for (; r; r = next) {
    next = r->next;
    req_free (loop, r);
  }
  if (c->rreq && !c->recv_inflight) {
    req_free (loop, c->rreq);
    c->rreq = NULL;
  }
  conn_put (loop, c);
}

/* Send the head of C's queue unless a send is in flight. */
static void
conn_send (struct ss_loop *loop, struct ss_conn *c)
{
  struct ss_req *r = c->sendq_head;
  struct io_uring_sqe *sqe;

  if (c->send_inflight || r == NULL || c->closing)
    return;
  sqe = ss_get_sqe (loop);
  io_uring_prep_sendmsg (sqe, c->fd, &r->msg, MSG_NOSIGNAL);
  io_uring_sqe_set_data (sqe, &c->send_op);
  c->send_inflight = true;
  c->refs++;
}

/* A sendmsg completed: resume a short send, or free the sent request and
 * send the next reply.
 */
static void
send_done (struct ss_loop *loop, struct ss_op *op, int res)
{
  struct ss_conn *c = SS_CONTAINER_OF (op, struct ss_conn, send_op);
  struct ss_req *r = c->sendq_head;
  size_t n;

  c->send_inflight = false;
  if (c->closing) {
    c->sendq_head = c->sendq_tail = NULL;
    req_free (loop, r);
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
  /* Step over what went out; a short send resumes where it stopped. */
  n = res;
  while (r->msg.msg_iovlen > 0 && r->msg.msg_iov[0].iov_len <= n) {
    n -= r->msg.msg_iov[0].iov_len;
    r->msg.msg_iov++;
    r->msg.msg_iovlen--;
  }
  if (r->msg.msg_iovlen > 0) {
    r->msg.msg_iov[0].iov_base = (char *)r->msg.msg_iov[0].iov_base + n;
    r->msg.msg_iov[0].iov_len -= n;
    conn_send (loop, c);
    goto out;
  }
  c->sendq_head = r->next;
  if (c->sendq_head == NULL)
    c->sendq_tail = NULL;
  req_free (loop, r);
  if (c->sendq_head)
    conn_send (loop, c);
  else if (c->close_after_send)
    ss_conn_close (loop, c);
out:
  conn_put (loop, c);
}

/* Queue R's reply with STATUS and payload DATA (LEN bytes).  OWNED, if
 * not NULL, is freed with R (it may be DATA itself).
 */
static void
req_send (struct ss_loop *loop, struct ss_req *r, uint32_t status,
          const void *data, uint32_t len, void *owned)
{
  struct ss_conn *c = r->conn;
  struct proto_header h = {
    .magic = PROTO_MAGIC,
    .version = PROTO_VERSION,
    .opcode = r->hdr.opcode,
    .flags = PROTO_FLAG_REPLY,
    .status = status,
    .length = len,
    .tag = r->hdr.tag,
  };

  assert (r->seg == NULL);
  if (owned != r->rdata_owned) {
    free (r->rdata_owned);
    r->rdata_owned = owned;
  }
  if (c->closing) {
    req_free (loop, r);
    return;
  }
  proto_header_encode (&h, r->rhdr);
  r->iov[0].iov_base = r->rhdr;
  r->iov[0].iov_len = PROTO_HEADER_SIZE;
  r->iov[1].iov_base = (void *)data;
  r->iov[1].iov_len = len;
  memset (&r->msg, 0, sizeof r->msg);
  r->msg.msg_iov = r->iov;
  r->msg.msg_iovlen = len > 0 ? 2 : 1;
  r->next = NULL;
  if (c->sendq_tail)
    c->sendq_tail->next = r;
  else
    c->sendq_head = r;
  c->sendq_tail = r;
  conn_send (loop, c);
}

/* Reply PROTO_OK with DATA (see req_send for OWNED). */
void
ss_req_reply (struct ss_loop *loop, struct ss_req *r, const void *data,
              uint32_t len, void *owned)
{
  req_send (loop, r, PROTO_OK, data, len, owned);
}

/* Reply STATUS with the message MSG (N bytes, malloc'd: R owns it). */
static void
req_send_error (struct ss_loop *loop, struct ss_req *r, uint32_t status,
                char *msg, int n)
{
  if (n < 0 || msg == NULL)
    n = 0;
  if (n > PROTO_ERRMSG_MAX)
    n = PROTO_ERRMSG_MAX;
  if (r->conn->loop->ctx->debug_requests)
    log_debug ("%s: %s tag %" PRIu64 ": %s: %.*s", r->conn->peer,
               proto_opcode_name (r->hdr.opcode), r->hdr.tag,
               proto_status_name (status), n, msg ? msg : "");
  req_send (loop, r, status, msg, n, msg);
}

/* Reply STATUS (not PROTO_OK) with a message; the connection goes on. */
void
ss_req_error (struct ss_loop *loop, struct ss_req *r, uint32_t status,
              const char *fmt, ...)
{
  char *msg = malloc (PROTO_ERRMSG_MAX + 1);
  va_list ap;
  int n = 0;

  if (msg) {
    va_start (ap, fmt);
    n = vsnprintf (msg, PROTO_ERRMSG_MAX + 1, fmt, ap);
    va_end (ap);
  }
  req_send_error (loop, r, status, msg, n);
}

/* Reply STATUS with a message, then close the connection: for malformed
 * frames and protocol violations, after which the stream cannot be
 * trusted.  Logged once per connection.
 */
void
ss_req_fatal (struct ss_loop *loop, struct ss_req *r, uint32_t status,
              const char *fmt, ...)
{
  struct ss_conn *c = r->conn;
  char *msg = malloc (PROTO_ERRMSG_MAX + 1);
  va_list ap;
  int n = 0;

  if (msg) {
    va_start (ap, fmt);
    n = vsnprintf (msg, PROTO_ERRMSG_MAX + 1, fmt, ap);
    va_end (ap);
  }
  if (!c->close_after_send && !c->closing)
    log_warn ("%s: %s: %s, closing the connection", c->peer,
              proto_status_name (status), msg ? msg : strerror (ENOMEM));
  c->close_after_send = true;
  req_send_error (loop, r, status, msg, n);
}

/* Hand a complete request to its opcode's handler, then read on. */
static void
dispatch (struct ss_loop *loop, struct ss_conn *c, struct ss_req *r)
{
  if (loop->ctx->debug_requests)
    log_debug ("%s: %s tag %" PRIu64 " flags 0x%x length %" PRIu32, c->peer,
               proto_opcode_name (r->hdr.opcode), r->hdr.tag, r->hdr.flags,
               r->hdr.length);
  switch (r->hdr.opcode) {
  case PROTO_OP_HELLO:
    ss_req_hello (loop, r);
    break;
  case PROTO_OP_SEG_READ:
    ss_req_read (loop, r);
    break;
  case PROTO_OP_SEG_WRITE:
    ss_req_write (loop, r);
    break;
  case PROTO_OP_SEG_TRIM:
    ss_req_trim (loop, r);
    break;
  case PROTO_OP_SEG_FLUSH:
    ss_req_flush (loop, r);
    break;
  case PROTO_OP_SEG_DELETE:
    ss_req_delete (loop, r);
    break;
  case PROTO_OP_SEG_FENCE:
    ss_req_fence (loop, r);
    break;
  case PROTO_OP_SEG_SET_GEN:
    ss_req_set_gen (loop, r);
    break;
  case PROTO_OP_SEG_PULL:
    ss_req_pull (loop, r);
    break;
  case PROTO_OP_SEG_HASH:
    ss_req_hash (loop, r);
    break;
  case PROTO_OP_SEG_LIST:
    ss_req_seg_list (loop, r);
    break;
  default:
    ss_req_error (loop, r, PROTO_ENOTSUP, "%s: not served by a storage server",
                  proto_opcode_name (r->hdr.opcode));
  }
  if (c->closing || c->close_after_send)
    return;
  if (c->nreqs >= SS_CONN_MAX_REQS || c->req_bytes >= SS_CONN_MAX_BYTES)
    c->paused = true;
  else
    conn_recv (loop, c);
}

/* Describe why proto_header_decode rejected HDR with error E. */
static void
header_error (const struct proto_header *hdr, int e, char *buf, size_t len)
{
  if (hdr->magic != PROTO_MAGIC)
    snprintf (buf, len, "bad magic 0x%08" PRIx32, hdr->magic);
  else if (e == -EPROTO)
    snprintf (buf, len, "protocol version %u (this server speaks %d)",
              hdr->version, PROTO_VERSION);
  else if (e == -EMSGSIZE)
    snprintf (buf, len,
              "%s: payload of %" PRIu32 " bytes exceeds the limit"
              " of %" PRIu32,
              proto_opcode_name (hdr->opcode), hdr->length,
              proto_max_payload (hdr->opcode));
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
 * dispatch.
 */
static void
header_received (struct ss_loop *loop, struct ss_conn *c)
{
  struct ss_req *r = req_new (c);
  int e;

  if (r == NULL) {
    log_warn ("%s: %s", c->peer, strerror (ENOMEM));
    ss_conn_close (loop, c);
    return;
  }
  /* The opcode byte follows the 4-byte magic and the version byte. */
  e = proto_header_decode (c->hdrbuf, &r->hdr,
                           proto_max_payload (c->hdrbuf[5]));
  if (e < 0) {
    char why[128];

    header_error (&r->hdr, e, why, sizeof why);
    ss_req_fatal (loop, r, proto_status_from_errno (-e), "bad frame: %s", why);
    return;
  }
  if (r->hdr.flags & PROTO_FLAG_REPLY) {
    ss_req_fatal (loop, r, PROTO_EPROTO, "%s: unexpected reply frame",
                  proto_opcode_name (r->hdr.opcode));
    return;
  }
  if (!c->hello_done && r->hdr.opcode != PROTO_OP_HELLO) {
    ss_req_fatal (loop, r, PROTO_EPROTO, "%s before HELLO",
                  proto_opcode_name (r->hdr.opcode));
    return;
  }
  if (c->hello_done && r->hdr.opcode == PROTO_OP_HELLO) {
    ss_req_fatal (loop, r, PROTO_EPROTO, "HELLO sent twice");
    return;
  }
  if (r->hdr.length == 0) {
    dispatch (loop, c, r);
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
      req_free (loop, c->rreq);
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
    else if (c->got > 0 || c->rreq)
      log_debug ("%s: connection closed in the middle of a frame", c->peer);
    ss_conn_close (loop, c);
    goto out;
  }
  if (c->rreq) {
    r = c->rreq;
    SS_MARK_DEFINED (r->payload + c->got, res);
    c->got += res;
    if (c->got < r->hdr.length) {
      conn_recv (loop, c);
      goto out;
    }
    c->rreq = NULL;
    c->got = 0;
    dispatch (loop, c, r);
  }
  else {
    SS_MARK_DEFINED (c->hdrbuf + c->got, res);
    c->got += res;
    if (c->got < PROTO_HEADER_SIZE) {
      conn_recv (loop, c);
      goto out;
    }
    c->got = 0;
    header_received (loop, c);
  }
out:
  conn_put (loop, c);
}

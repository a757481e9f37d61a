/* Requests: the request object and the reply API every handler answers
 * through.
 *
 * The connection engine (conn.c) makes a request for each header it
 * receives, fills its payload and hands it to ss_req_dispatch
 * (dispatch.c), which calls its opcode's handler.  The handler owns the
 * request until it answers once, with ss_req_reply (PROTO_OK and data),
 * ss_req_error (an error status; the connection goes on) or
 * ss_req_fatal (an error status, then the connection is closed: for
 * malformed frames and protocol violations).  The reply is encoded here
 * and appended to the connection's send queue; the connection engine
 * sends it and frees the request with ss_req_free once it is out.  A
 * handler never frees its request, and must clear R->seg before
 * answering.
 *
 * This file only changes data: it calls no other file of the daemon.
 * A reply queued or a request freed puts its connection on the loop's
 * flush list (holding a reference), and the engine's pass after each
 * batch of completions (ss_conns_flush) does the rest: it sends the
 * queued replies, lets a paused connection read again, and frees a
 * closed connection whose last reference was the list's.  The handlers
 * call this file, never conn.c nor dispatch.c.
 */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "log.h"

#include "internal.h"

/* A new request on C for the header just received (conn.c), or NULL
 * without memory.  It holds a reference to C until ss_req_free.
 */
struct ss_req *
ss_req_new (struct ss_conn *c)
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

/* Put C on the loop's flush list, if it is not on it, taking a
 * reference: the connection engine's pass after this batch of
 * completions (ss_conns_flush) sends C's queued replies, lets C read
 * again if it was paused at its bounds, and drops the reference.
 */
static void
req_conn_flush_later (struct ss_loop *loop, struct ss_conn *c)
{
  if (c->in_flush)
    return;
  c->in_flush = true;
  c->refs++;
  c->flush_next = loop->flush_head;
  loop->flush_head = c;
}

/* Free R (its last ring operation has completed) and drop its reference
 * to its connection, which the flush list holds on to until the
 * engine's pass has let it read again (or freed it).
 */
void
ss_req_free (struct ss_loop *loop, struct ss_req *r)
{
  struct ss_conn *c = r->conn;

  assert (r->seg == NULL);
  free (r->payload);
  free (r->rdata_owned);
  c->nreqs--;
  c->req_bytes -= r->bytes;
  free (r);
  req_conn_flush_later (loop, c);
  /* Never the last reference: the flush list holds one. */
  assert (c->refs > 1);
  c->refs--;
}

/* Queue R's reply with STATUS and payload DATA (LEN bytes) on its
 * connection, to be sent once this batch of completions is processed.
 * OWNED, if not NULL, is freed with R (it may be DATA itself).
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
    ss_req_free (loop, r);
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
  req_conn_flush_later (loop, c);
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

/* Format an error message into *MSG (malloc'd, NULL without memory).
 * Returns what vsnprintf returns, 0 without memory.
 */
static int __attribute__ ((format (printf, 2, 0)))
format_msg (char **msg, const char *fmt, va_list ap)
{
  *msg = malloc (PROTO_ERRMSG_MAX + 1);
  if (*msg == NULL)
    return 0;
  return vsnprintf (*msg, PROTO_ERRMSG_MAX + 1, fmt, ap);
}

/* Reply STATUS (not PROTO_OK) with a message; the connection goes on. */
void
ss_req_error (struct ss_loop *loop, struct ss_req *r, uint32_t status,
              const char *fmt, ...)
{
  char *msg;
  va_list ap;
  int n;

  va_start (ap, fmt);
  n = format_msg (&msg, fmt, ap);
  va_end (ap);
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
  char *msg;
  va_list ap;
  int n;

  va_start (ap, fmt);
  n = format_msg (&msg, fmt, ap);
  va_end (ap);
  if (!c->close_after_send && !c->closing)
    log_warn ("%s: %s: %s, closing the connection", c->peer,
              proto_status_name (status), msg ? msg : strerror (ENOMEM));
  c->close_after_send = true;
  req_send_error (loop, r, status, msg, n);
}

/* Answer R with PROTO_EIO: the store failed (ss_store_fail). */
void
ss_req_failed (struct ss_loop *loop, struct ss_req *r)
{
  assert (loop->failed);
  ss_req_error (loop, r, PROTO_EIO, "%s: the store failed (%s): not serving",
                proto_opcode_name (r->hdr.opcode), loop->fail_why);
}

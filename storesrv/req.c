/* Requests: the request object, the reply API every handler answers
 * through, and the opcode -> handler table.
 *
 * The connection engine (conn.c) makes a request for each header it
 * receives, fills its payload and hands it to ss_req_dispatch, which
 * looks its opcode up in HANDLERS below.  The handler owns the request
 * until it answers once, with ss_req_reply (PROTO_OK and data),
 * ss_req_error (an error status; the connection goes on) or
 * ss_req_fatal (an error status, then the connection is closed: for
 * malformed frames and protocol violations).  The reply is encoded here
 * and queued on the connection (ss_conn_queue), which sends it and frees
 * the request with ss_req_free once it is out.  A handler never frees
 * its request, and must clear R->seg before answering.
 *
 * The connection engine and this file are one tie: it hands requests
 * here, and replies go back to it to be sent.  The handlers (the
 * functions in HANDLERS) call this file's reply API, never conn.c, and
 * nothing calls a handler but ss_req_dispatch.
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
#include "static-assert.h"

#include "internal.h"

/* An opcode's handler.  HANDSHAKE: part of the handshake, which goes on
 * after the store failed (everything else gets PROTO_EIO then).
 */
struct ss_handler {
  void (*fn) (struct ss_loop *loop, struct ss_req *r);
  bool handshake;
};

/* The opcodes a storage server serves: OP (NAME, handler, handshake).
 * Checked below against opcodes.def at build time.
 */
/* clang-format off */
#define SS_OPS(OP)                             \
  OP (HELLO,       ss_req_hello,    true)     \
  OP (AUTH,        ss_req_auth,     true)     \
  OP (SEG_READ,    ss_req_read,     false)    \
  OP (SEG_WRITE,   ss_req_write,    false)    \
  OP (SEG_TRIM,    ss_req_trim,     false)    \
  OP (SEG_FLUSH,   ss_req_flush,    false)    \
  OP (SEG_DELETE,  ss_req_delete,   false)    \
  OP (SEG_FENCE,   ss_req_fence,    false)    \
  OP (SEG_SET_GEN, ss_req_set_gen,  false)    \
  OP (SEG_PULL,    ss_req_pull,     false)    \
  OP (SEG_HASH,    ss_req_hash,     false)    \
  OP (SEG_LIST,    ss_req_seg_list, false)

static const struct ss_handler handlers[256] = {
#define OP(name, fn, handshake) [PROTO_OP_##name] = { fn, handshake },
  SS_OPS (OP)
#undef OP
};

/* SS_OPS matches opcodes.def: each opcode in it is one opcodes.def says
 * a storage server serves, none is there twice (SS_HANDLES_NAME would be
 * defined twice), and it has as many as opcodes.def gives a storage
 * server, so none is missing.
 */
#define OP(name, fn, handshake)                                          \
  STATIC_ASSERT (PROTO_SERVED_BY_##name & PROTO_BY_STORESRV,            \
                 name##_is_not_served_by_a_storage_server_in_opcodes_def);
SS_OPS (OP)
#undef OP
enum {
#define OP(name, fn, handshake) SS_HANDLES_##name,
  SS_OPS (OP)
#undef OP
  SS_NR_OPS
};
STATIC_ASSERT ((int)SS_NR_OPS == (int)PROTO_NR_OPS_STORESRV,
               an_opcode_opcodes_def_gives_storage_servers_has_no_handler);
/* clang-format on */

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

/* Free R (its last ring operation has completed) and tell its
 * connection, which may read again (ss_conn_req_done).
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
  ss_conn_req_done (loop, c);
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
  ss_conn_queue (loop, r);
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

/* Hand a complete request to its opcode's handler: PROTO_EIO for all
 * but the handshake once the store failed, PROTO_ENOTSUP for an opcode
 * a storage server does not serve.  The caller reads on.
 */
void
ss_req_dispatch (struct ss_loop *loop, struct ss_req *r)
{
  const struct ss_handler *h = &handlers[r->hdr.opcode];

  if (loop->ctx->debug_requests)
    log_debug ("%s: %s tag %" PRIu64 " flags 0x%x length %" PRIu32,
               r->conn->peer, proto_opcode_name (r->hdr.opcode), r->hdr.tag,
               r->hdr.flags, r->hdr.length);
  if (loop->failed && !h->handshake)
    ss_req_failed (loop, r);
  else if (h->fn)
    h->fn (loop, r);
  else
    ss_req_error (loop, r, PROTO_ENOTSUP, "%s: not served by a storage server",
                  proto_opcode_name (r->hdr.opcode));
}

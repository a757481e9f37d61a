/* The handshake: HELLO, then AUTH, the mutual proof of the cluster key
 * (auth.h), before anything else a connection sends.
 *
 * A connection's STATE (internal.h) goes SS_CONN_HELLO -> SS_CONN_AUTH
 * -> SS_CONN_READY.  ss_handshake_order checks each header as it
 * arrives (conn.c), so that a frame out of order is refused before its
 * payload is read; ss_req_hello and ss_req_auth are the handlers of the
 * two opcodes (dispatch.c's table), and they alone move the state on.  AUTH
 * makes the connection count against --max-connections
 * (ss_admit_authenticated); what an unauthenticated connection may cost
 * meanwhile is admit.c's business.
 */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "buf.h"
#include "log.h"

#include "internal.h"

/* Check that R's opcode is the one C's handshake state allows: HELLO,
 * then AUTH, then anything but those (conn.c, as each header arrives).
 * Returns true to go on, false once R has been refused (and the
 * connection is closing).
 */
bool
ss_handshake_order (struct ss_loop *loop, struct ss_conn *c, struct ss_req *r)
{
  uint8_t op = r->hdr.opcode;

  switch (c->state) {
  case SS_CONN_HELLO:
    if (op == PROTO_OP_HELLO)
      return true;
    if (op == PROTO_OP_AUTH)
      ss_req_fatal (loop, r, PROTO_EPROTO, "AUTH before HELLO");
    else
      ss_req_fatal (loop, r, PROTO_EPROTO, "%s: HELLO and AUTH expected first",
                    proto_opcode_name (op));
    return false;
  case SS_CONN_AUTH:
    if (op == PROTO_OP_AUTH)
      return true;
    if (op == PROTO_OP_HELLO)
      ss_req_fatal (loop, r, PROTO_EPROTO, "HELLO sent twice");
    else
      ss_req_fatal (loop, r, PROTO_EPROTO, "%s: HELLO and AUTH expected first",
                    proto_opcode_name (op));
    return false;
  case SS_CONN_READY:
    if (op != PROTO_OP_HELLO && op != PROTO_OP_AUTH)
      return true;
    ss_req_fatal (loop, r, PROTO_EPROTO, "%s sent twice",
                  proto_opcode_name (op));
    return false;
  }
  abort ();
}

/* HELLO: check the version, start the handshake with the client's nonce
 * and answer with our role, uuid, incarnation, nonce and proof of the
 * cluster key (auth.h).  ss_handshake_order lets HELLO through only as
 * a connection's first frame.
 */
void
ss_req_hello (struct ss_loop *loop, struct ss_req *r)
{
  struct ss_conn *c = r->conn;
  const struct auth_key *key = auth_key_current ();
  struct proto_hello h;
  struct proto_hello reply = {
    .version = PROTO_VERSION,
    .role = PROTO_ROLE_STORESRV,
    .auth_len = AUTH_SERVER_HELLO_LEN,
  };
  struct proto_wbuf wb = { 0 };
  int e;

  assert (c->state == SS_CONN_HELLO);
  if (proto_decode_hello (r->payload, r->hdr.length, &h) < 0) {
    ss_req_fatal (loop, r, PROTO_EBADMSG, "HELLO: malformed payload");
    return;
  }
  if (h.version != PROTO_VERSION) {
    ss_req_fatal (loop, r, PROTO_EPROTO,
                  "HELLO: protocol version %" PRIu32 " (this server speaks %d)",
                  h.version, PROTO_VERSION);
    return;
  }
  if (r->hdr.flags & PROTO_FLAG_FUA) {
    ss_req_fatal (loop, r, PROTO_EINVAL, "HELLO: FUA flag not allowed");
    return;
  }
  assert (key != NULL);
  e = auth_server_start (key, &c->auth, h.role, h.auth, h.auth_len,
                         PROTO_ROLE_STORESRV, reply.auth);
  if (e == -EACCES) {
    ss_req_fatal (loop, r, PROTO_EACCES,
                  "HELLO from a %s: authentication required",
                  proto_role_name (h.role));
    return;
  }
  if (e < 0) {
    ss_req_fatal (loop, r, proto_status_from_errno (-e), "HELLO: %s",
                  strerror (-e));
    return;
  }
  memcpy (reply.uuid, loop->store->uuid, 16);
  reply.incarnation = loop->ctx->incarnation;
  proto_encode_hello (&reply, &wb);
  if (wb.err) {
    proto_wbuf_free (&wb);
    ss_req_fatal (loop, r, PROTO_ENOMEM, "HELLO: %s", strerror (-wb.err));
    return;
  }
  c->state = SS_CONN_AUTH;
  if (loop->ctx->debug_requests)
    log_debug ("%s: HELLO from a %s", c->peer, proto_role_name (h.role));
  ss_req_reply (loop, r, wb.data, wb.len, wb.data);
}

/* AUTH: check the client's proof of the cluster key; on success the
 * connection may send requests (ss_admit_authenticated), else it is
 * closed.
 */
void
ss_req_auth (struct ss_loop *loop, struct ss_req *r)
{
  struct ss_conn *c = r->conn;
  const char *role = proto_role_name (c->auth.crole);
  int e;

  assert (c->state == SS_CONN_AUTH);
  if (r->hdr.flags & PROTO_FLAG_FUA) {
    ss_req_fatal (loop, r, PROTO_EINVAL, "AUTH: FUA flag not allowed");
    return;
  }
  e = auth_server_check (auth_key_current (), &c->auth, r->payload,
                         r->hdr.length);
  if (e < 0) {
    ss_req_fatal (loop, r, PROTO_EACCES,
                  "AUTH from a %s: authentication failed "
                  "(not the cluster key)",
                  role);
    return;
  }
  e = ss_admit_authenticated (loop, c);
  if (e < 0) {
    ss_req_fatal (loop, r, PROTO_EAGAIN,
                  "AUTH from a %s: too many connections "
                  "(--max-connections %" PRIu32 ")",
                  role, loop->ctx->max_conns);
    return;
  }
  if (loop->ctx->debug_requests)
    log_debug ("%s: authenticated a %s", c->peer, role);
  ss_req_reply (loop, r, NULL, 0, NULL);
}

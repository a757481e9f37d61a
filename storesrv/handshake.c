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
 *
 * Fencing a deposed MDS leader (docs/high-availability.md): an MDS's
 * HELLO carries its epoch (0 without --etcd).  The server keeps the
 * highest epoch claimed by a connection that then proved the cluster key
 * (ctx->mds_epoch; never an unauthenticated claim, which anyone could
 * make), durably in the index's meta database: AUTH refuses an MDS whose
 * epoch is lower with PROTO_ESTALE, and accepts a higher one only once
 * the index has committed it, so that after a restart the server still
 * refuses the older leader.  Every later request on an MDS connection is
 * checked again (ss_mds_epoch_current), since a newer leader may have
 * spoken since its handshake; so are the deletes and fences of the MDS
 * client's heartbeat replies (mds-client.c, ss_mds_epoch_stale).
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
  /* Checked at AUTH, once the claim comes with a proof of the key. */
  c->mds_epoch = h.mds_epoch;
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

/* The highest MDS epoch seen (any thread). */
static uint64_t
highest_of (const struct ss_ctx *ctx)
{
  return __atomic_load_n (&ctx->mds_epoch, __ATOMIC_SEQ_CST);
}

/* The same, from the ring thread. */
static uint64_t
highest (const struct ss_loop *loop)
{
  return highest_of (loop->ctx);
}

/* Load the highest MDS epoch the index holds.  Start-up, ring thread,
 * before the index worker starts.  Returns 0 or -errno (logged).
 */
int
ss_mds_epoch_load (struct ss_loop *loop, struct ss_index *idx)
{
  uint64_t epoch;
  int r;

  r = ss_index_get_mds_epoch (idx, &epoch);
  if (r < 0) {
    log_error ("index: reading the MDS epoch: %s", strerror (-r));
    return r;
  }
  loop->mds_epoch_durable = epoch;
  __atomic_store_n (&loop->ctx->mds_epoch, epoch, __ATOMIC_SEQ_CST);
  if (epoch > 0)
    log_info ("store: MDS epoch %" PRIu64 " (older ones are refused)", epoch);
  return 0;
}

/* True if an MDS at EPOCH is older than the newest one CTX has seen,
 * after logging that WHAT was refused.  Any thread.
 */
bool
ss_mds_epoch_stale (struct ss_ctx *ctx, uint64_t epoch, const char *what)
{
  uint64_t h = highest_of (ctx);

  if (epoch >= h)
    return false;
  log_warn ("%s refused: MDS epoch %" PRIu64 " is older than %" PRIu64
            ": a newer leader exists",
            what, epoch, h);
  return true;
}

/* Refuse R (PROTO_ESTALE, closing its connection) if R's connection is
 * an MDS whose epoch is older than the newest seen.  Returns true to go
 * on.  Ring thread (dispatch.c, for every request after the handshake).
 */
bool
ss_mds_epoch_current (struct ss_loop *loop, struct ss_req *r)
{
  struct ss_conn *c = r->conn;
  uint64_t h = highest (loop);

  if (c->auth.crole != PROTO_ROLE_MDS || c->mds_epoch >= h)
    return true;
  ss_req_fatal (loop, r, PROTO_ESTALE,
                "%s: MDS epoch %" PRIu64 " is older than %" PRIu64
                ": a newer leader exists",
                proto_opcode_name (r->hdr.opcode), c->mds_epoch, h);
  return false;
}

/* Admit R's connection and answer its AUTH. */
static void
auth_accept (struct ss_loop *loop, struct ss_req *r)
{
  struct ss_conn *c = r->conn;
  const char *role = proto_role_name (c->auth.crole);

  if (c->closing) {
    ss_req_reply (loop, r, NULL, 0, NULL); /* frees R */
    return;
  }
  if (ss_admit_authenticated (loop, c) < 0) {
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

/* The index committed (or failed to commit) the epoch of R's MDS. */
static void
mds_epoch_recorded (struct ss_loop *loop, struct ss_index_op *iop)
{
  struct ss_req *r = SS_CONTAINER_OF (iop, struct ss_req, iop);
  struct ss_conn *c = r->conn;

  if (iop->err < 0) {
    ss_req_fatal (loop, r, proto_status_from_errno (-iop->err),
                  "AUTH: recording MDS epoch %" PRIu64 ": %s", iop->rec.epoch,
                  strerror (-iop->err));
    return;
  }
  if (iop->rec.epoch > loop->mds_epoch_durable)
    loop->mds_epoch_durable = iop->rec.epoch;
  /* A newer leader may have spoken while this one was recorded. */
  if (c->mds_epoch < highest (loop)) {
    ss_req_fatal (loop, r, PROTO_ESTALE,
                  "AUTH: MDS epoch %" PRIu64 " is older than %" PRIu64
                  ": a newer leader exists",
                  c->mds_epoch, highest (loop));
    return;
  }
  auth_accept (loop, r);
}

/* AUTH of an MDS (its proof checked): refuse an epoch older than the
 * newest seen; raise the newest to a higher one at once, and answer once
 * the index holds it.
 */
static void
auth_mds (struct ss_loop *loop, struct ss_req *r)
{
  struct ss_conn *c = r->conn;
  uint64_t h = highest (loop);

  if (c->mds_epoch < h) {
    ss_req_fatal (loop, r, PROTO_ESTALE,
                  "AUTH: MDS epoch %" PRIu64 " is older than %" PRIu64
                  ": a newer leader exists",
                  c->mds_epoch, h);
    return;
  }
  if (c->mds_epoch > h) {
    __atomic_store_n (&loop->ctx->mds_epoch, c->mds_epoch, __ATOMIC_SEQ_CST);
    log_info ("%s: MDS epoch %" PRIu64 " (was %" PRIu64
              "): older ones are refused from now on",
              c->peer, c->mds_epoch, h);
  }
  if (c->mds_epoch <= loop->mds_epoch_durable) {
    auth_accept (loop, r);
    return;
  }
  memset (&r->iop, 0, sizeof r->iop);
  r->iop.type = SS_INDEX_MDS_EPOCH;
  r->iop.rec.epoch = c->mds_epoch;
  r->iop.done = mds_epoch_recorded;
  ss_index_submit_op (loop, &r->iop);
}

/* AUTH: check the client's proof of the cluster key; on success the
 * connection may send requests (ss_admit_authenticated), else it is
 * closed.  An MDS's epoch is checked, and recorded, first (auth_mds).
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
  if (c->auth.crole == PROTO_ROLE_MDS)
    auth_mds (loop, r);
  else
    auth_accept (loop, r);
}

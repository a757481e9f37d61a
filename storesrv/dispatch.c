/* The opcode -> handler table of the requests a storage server serves.
 *
 * The connection engine (conn.c) hands each complete request to
 * ss_req_dispatch, which looks its opcode up in HANDLERS below and calls
 * the handler (handshake.c, req-io.c, req-repair.c, req-fence.c,
 * delete.c, pull.c, req-rebuild.c).  Handlers answer through req.c's
 * reply API; nothing calls a
 * handler but ss_req_dispatch, and no handler calls this file.  Ring
 * thread.
 */

#include <config.h>

#include <inttypes.h>
#include <stdbool.h>

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
  OP (SEG_LIST,    ss_req_seg_list, false)    \
  OP (TABLES_PUT,  ss_req_tables_put, false)  \
  OP (TABLES_GET,  ss_req_tables_get, false)  \
  OP (SEG_DESCRIBE, ss_req_describe, false)

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

/* Hand a complete request to its opcode's handler: PROTO_EIO for all
 * but the handshake once the store failed, PROTO_ESTALE for all but the
 * handshake from an MDS older than the newest seen (handshake.c),
 * PROTO_ENOTSUP for an opcode a storage server does not serve.  The caller reads on.
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
  else if (!h->handshake && !ss_mds_epoch_current (loop, r))
    return; /* a deposed MDS leader: refused */
  else if (h->fn)
    h->fn (loop, r);
  else
    ss_req_error (loop, r, PROTO_ENOTSUP, "%s: not served by a storage server",
                  proto_opcode_name (r->hdr.opcode));
}

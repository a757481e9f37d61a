/* The frame header codec and the per-opcode limits it checks: what a
 * receiver needs to accept or refuse a frame before its payload.  The
 * opcodes come from opcodes.def; names for debug output and the status
 * <-> errno mapping are in status.c.
 */

#include <config.h>

#include <endian.h>
#include <errno.h>
#include <string.h>

#include "protocol.h"
#include "static-assert.h"

STATIC_ASSERT (sizeof (struct proto_header) == PROTO_HEADER_SIZE,
               proto_header_size);

void
proto_header_encode (const struct proto_header *hdr, void *buf)
{
  struct proto_header be;

  be.magic = htobe32 (hdr->magic);
  be.version = hdr->version;
  be.opcode = hdr->opcode;
  be.flags = htobe16 (hdr->flags);
  be.status = htobe32 (hdr->status);
  be.length = htobe32 (hdr->length);
  be.tag = htobe64 (hdr->tag);
  memcpy (buf, &be, PROTO_HEADER_SIZE);
}

int
proto_header_decode (const void *buf, struct proto_header *hdr,
                     uint32_t max_payload)
{
  struct proto_header be;

  memcpy (&be, buf, PROTO_HEADER_SIZE);
  hdr->magic = be32toh (be.magic);
  hdr->version = be.version;
  hdr->opcode = be.opcode;
  hdr->flags = be16toh (be.flags);
  hdr->status = be32toh (be.status);
  hdr->length = be32toh (be.length);
  hdr->tag = be64toh (be.tag);

  if (hdr->magic != PROTO_MAGIC)
    return -EBADMSG;
  if (hdr->version != PROTO_VERSION)
    return -EPROTO;
  if (!proto_opcode_known (hdr->opcode))
    return -EBADMSG;
  if (hdr->flags & ~PROTO_FLAGS_KNOWN)
    return -EBADMSG;
  if (hdr->status > PROTO_STATUS_MAX)
    return -EBADMSG;
  if (!(hdr->flags & PROTO_FLAG_REPLY) && hdr->status != PROTO_OK)
    return -EBADMSG;
  if (hdr->length > max_payload)
    return -EMSGSIZE;
  return 0;
}

/* The two functions below are made from opcodes.def, one case per
 * opcode (proto_opcode_name, in status.c, too).
 */

uint32_t
proto_max_payload (uint8_t opcode)
{
  switch (opcode) {
#define X(name, value, payload_max, served_by) \
  case PROTO_OP_##name: \
    return (payload_max);
#include "opcodes.def"
#undef X
  default:
    return PROTO_MAX_META_PAYLOAD;
  }
}

bool
proto_opcode_known (uint8_t opcode)
{
  switch (opcode) {
#define X(name, value, payload_max, served_by) \
  case PROTO_OP_##name: \
    return true;
#include "opcodes.def"
#undef X
  default:
    return false;
  }
}

/* Frame header codec, per-opcode limits, names and status <-> errno. */

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

/* The three functions below are made from opcodes.def, one case per
 * opcode.
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

const char *
proto_opcode_name (uint8_t opcode)
{
  switch (opcode) {
#define X(name, value, payload_max, served_by) \
  case PROTO_OP_##name: \
    return #name;
#include "opcodes.def"
#undef X
  default:
    return "unknown";
  }
}

/* One table drives the status names and both errno mappings. */
static const struct {
  uint32_t status;
  int err;
  const char *name;
} statuses[] = {
  { PROTO_OK, 0, "OK" },
  { PROTO_EPERM, EPERM, "EPERM" },
  { PROTO_ENOENT, ENOENT, "ENOENT" },
  { PROTO_EIO, EIO, "EIO" },
  { PROTO_ENOMEM, ENOMEM, "ENOMEM" },
  { PROTO_EBUSY, EBUSY, "EBUSY" },
  { PROTO_EEXIST, EEXIST, "EEXIST" },
  { PROTO_EINVAL, EINVAL, "EINVAL" },
  { PROTO_ENOSPC, ENOSPC, "ENOSPC" },
  { PROTO_EROFS, EROFS, "EROFS" },
  { PROTO_ERANGE, ERANGE, "ERANGE" },
  { PROTO_ENOTSUP, ENOTSUP, "ENOTSUP" },
  { PROTO_EBADMSG, EBADMSG, "EBADMSG" },
  { PROTO_ESTALE, ESTALE, "ESTALE" },
  { PROTO_EPROTO, EPROTO, "EPROTO" },
  { PROTO_ETIMEDOUT, ETIMEDOUT, "ETIMEDOUT" },
  { PROTO_EAGAIN, EAGAIN, "EAGAIN" },
  { PROTO_EFBIG, EFBIG, "EFBIG" },
  { PROTO_EACCES, EACCES, "EACCES" },
  { PROTO_ESTALEMAP, EREMCHG, "ESTALEMAP" },
};
#define NR_STATUSES (sizeof statuses / sizeof statuses[0])

const char *
proto_status_name (uint32_t status)
{
  size_t i;

  for (i = 0; i < NR_STATUSES; ++i)
    if (statuses[i].status == status)
      return statuses[i].name;
  return "unknown";
}

uint32_t
proto_status_from_errno (int err)
{
  size_t i;

  /* Equivalent host errors map to one status. */
  if (err == EOPNOTSUPP)
    err = ENOTSUP;
  else if (err == EWOULDBLOCK)
    err = EAGAIN;
  else if (err == EDQUOT)
    err = ENOSPC;
  else if (err == EOVERFLOW)
    err = EINVAL;
  else if (err == EMSGSIZE) /* a frame over its size limit is malformed */
    err = EBADMSG;
  for (i = 0; i < NR_STATUSES; ++i)
    if (statuses[i].err == err)
      return statuses[i].status;
  return PROTO_EIO;
}

int
proto_status_to_errno (uint32_t status)
{
  size_t i;

  for (i = 0; i < NR_STATUSES; ++i)
    if (statuses[i].status == status)
      return statuses[i].err;
  return EIO;
}

const char *
proto_role_name (uint32_t role)
{
  switch (role) {
  case PROTO_ROLE_CLI:
    return "cli";
  case PROTO_ROLE_PLUGIN:
    return "plugin";
  case PROTO_ROLE_STORESRV:
    return "storesrv";
  case PROTO_ROLE_MDS:
    return "mds";
  default:
    return "unknown";
  }
}

const char *
proto_server_state_name (uint32_t state)
{
  switch (state) {
  case PROTO_SERVER_UP:
    return "up";
  case PROTO_SERVER_DOWN:
    return "down";
  case PROTO_SERVER_DRAINING:
    return "draining";
  case PROTO_SERVER_OUT:
    return "out";
  default:
    return "unknown";
  }
}

const char *
proto_replica_state_name (uint32_t state)
{
  switch (state) {
  case PROTO_REPLICA_OK:
    return "ok";
  case PROTO_REPLICA_STALE:
    return "stale";
  case PROTO_REPLICA_SYNCING:
    return "syncing";
  default:
    return "unknown";
  }
}

/* Names for debug output (opcodes, statuses, roles, server and replica
 * states) and the one mapping between PROTO_E* statuses and host errno
 * values (STYLE.md: never send a raw host errno).
 */

#include <config.h>

#include <errno.h>

#include "protocol.h"

/* Made from opcodes.def, one case per opcode. */
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
  { PROTO_ENOTLEADER, EREMOTE, "ENOTLEADER" },
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

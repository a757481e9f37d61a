/* Volume requests: VOL_CREATE, VOL_LIST, VOL_INFO, VOL_RESIZE,
 * VOL_DELETE.  Handlers run with mds->lock held.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "cleanup.h"
#include "log.h"

#include "internal.h"

/* Replicas of a volume created with replicas 0. */
#define DEFAULT_REPLICAS 2

/* Largest volume: byte offsets must fit in int64 (NBD, nbdkit). */
#define VOLUME_SIZE_MAX ((uint64_t)INT64_MAX / 512 * 512)

/* Check a volume name as the catalog will: 1..PROTO_NAME_MAX bytes of
 * [A-Za-z0-9._-], not starting with '.' or '-'.  Returns NULL if valid,
 * else the reason.
 */
static const char *
name_problem (const char *name)
{
  size_t i;

  if (name[0] == '\0')
    return "empty volume name";
  if (name[0] == '.' || name[0] == '-')
    return "a volume name must not start with '.' or '-'";
  for (i = 0; name[i]; ++i) {
    char c = name[i];

    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
      return "a volume name may contain only letters, digits, '.', '_' "
             "and '-'";
  }
  return NULL;
}

/* Check SIZE for volume NAME: a positive multiple of 512, not too large.
 * Returns 0, or fills REP and returns -EINVAL.
 */
static int
check_size (const char *name, uint64_t size, struct mds_reply *rep)
{
  if (size == 0 || size % 512 != 0) {
    mds_reply_error (rep, PROTO_EINVAL,
                     "volume %s: size %" PRIu64
                     " is not a positive multiple of 512",
                     name, size);
    return -EINVAL;
  }
  if (size > VOLUME_SIZE_MAX) {
    mds_reply_error (rep, PROTO_EFBIG,
                     "volume %s: size %" PRIu64 " is too large", name, size);
    return -EINVAL;
  }
  return 0;
}

/* Number of servers that can take new replicas now: heard from within
 * the down-timeout and neither draining nor out.  Returns the count or a
 * catalog error.
 */
static int64_t
servers_up (struct mds *mds)
{
  CLEANUP_FREE struct catalog_server *servers = NULL;
  size_t n, i;
  int64_t up = 0;
  int r;

  r = catalog_server_list (mds->cat, &servers, &n);
  if (r < 0)
    return r;
  for (i = 0; i < n; ++i)
    if (servers[i].state == CATALOG_SERVER_UP &&
        mds_server_is_up (mds, servers[i].id))
      up++;
  return up;
}

/* Decode a vol_request naming a volume and look that volume up.  Returns
 * 0 with *V filled; or fills REP and returns 1 (not found, refused: keep
 * the connection) or a negative errno (malformed: close).
 */
static int
lookup_request (struct mds *mds, const char *op, const void *payload,
                uint32_t len, struct proto_vol_request *req,
                struct catalog_volume *v, struct mds_reply *rep)
{
  int r;

  r = proto_decode_vol_request (payload, len, req);
  if (r < 0) {
    r = mds_reply_bad (rep, r, op);
    return r < 0 ? r : 1;
  }
  r = catalog_volume_lookup (mds->cat, req->name, v);
  if (r == -ENOENT) {
    mds_reply_error (rep, PROTO_ENOENT, "volume %s: not found", req->name);
    return 1;
  }
  if (r < 0) {
    mds_reply_catalog (rep, r, "volume %s", req->name);
    return 1;
  }
  return 0;
}

/* VOL_CREATE: a new, empty, clean volume. */
int
mds_op_vol_create (struct mds *mds, struct mds_conn *conn, const void *payload,
                   uint32_t len, struct mds_reply *rep)
{
  struct proto_vol_request req;
  struct proto_volume_info info;
  struct catalog_volume v;
  const char *problem;
  uint32_t replicas;
  int64_t up;
  int r;

  r = proto_decode_vol_request (payload, len, &req);
  if (r < 0)
    return mds_reply_bad (rep, r, "VOL_CREATE");
  problem = name_problem (req.name);
  if (problem)
    return mds_reply_error (rep, PROTO_EINVAL, "volume '%s': %s", req.name,
                            problem);
  if (req.flags != 0)
    return mds_reply_error (rep, PROTO_EINVAL, "volume %s: flags must be zero",
                            req.name);
  if (check_size (req.name, req.size, rep) < 0)
    return 0;
  replicas = req.replicas ? req.replicas : DEFAULT_REPLICAS;
  if (replicas > CATALOG_REPLICAS_MAX)
    return mds_reply_error (rep, PROTO_EINVAL,
                            "volume %s: %" PRIu32
                            " replicas: at most %d are supported",
                            req.name, replicas, CATALOG_REPLICAS_MAX);
  if (req.min_copies > replicas)
    return mds_reply_error (rep, PROTO_EINVAL,
                            "volume %s: min-copies %" PRIu32
                            " is more than its %" PRIu32
                            " replicas (it must be 1 to %" PRIu32 ")",
                            req.name, req.min_copies, replicas, replicas);
  r = catalog_volume_lookup (mds->cat, req.name, &v);
  if (r == 0)
    return mds_reply_error (rep, PROTO_EEXIST, "volume %s: already exists",
                            req.name);
  if (r != -ENOENT)
    return mds_reply_catalog (rep, r, "volume %s", req.name);
  up = servers_up (mds);
  if (up < 0)
    return mds_reply_catalog (rep, (int)up, "server list");
  if (replicas > up)
    return mds_reply_error (rep, PROTO_ENOSPC,
                            "volume %s: %" PRIu32
                            " replicas requested but only %" PRIi64
                            " servers are up",
                            req.name, replicas, up);

  r = catalog_volume_create_min_copies (mds->cat, req.name, req.size, replicas,
                                        req.min_copies, &v);
  mds_tables_kick (mds);
  if (r == -EEXIST)
    return mds_reply_error (rep, PROTO_EEXIST, "volume %s: already exists",
                            req.name);
  if (r == -EINVAL)
    return mds_reply_error (rep, PROTO_EINVAL,
                            "volume %s: invalid name, size or replica count",
                            req.name);
  if (r < 0)
    return mds_reply_catalog (rep, r, "volume %s", req.name);
  log_info ("volume %s: created: id %" PRIu64 ", size %" PRIu64 ", %" PRIu32
            " replicas, min-copies %" PRIu32,
            v.name, v.id, v.size, v.replicas, v.min_copies);
  mds_volume_info (mds, &v, &info);
  proto_encode_volume_info (&info, &rep->wb);
  return 0;
}

/* VOL_LIST: every volume in id order (at most PROTO_LIST_MAX). */
int
mds_op_vol_list (struct mds *mds, struct mds_conn *conn, const void *payload,
                 uint32_t len, struct mds_reply *rep)
{
  CLEANUP_FREE struct catalog_volume *vols = NULL;
  CLEANUP_FREE struct proto_volume_info *infos = NULL;
  struct proto_volume_list list;
  size_t n, i;
  int r;

  if (len != 0)
    return mds_reply_bad (rep, -EBADMSG, "VOL_LIST");
  r = catalog_volume_list (mds->cat, &vols, &n);
  if (r < 0)
    return mds_reply_catalog (rep, r, "volume list");
  if (n > PROTO_LIST_MAX) {
    log_warn ("volume list: %zu volumes, listing the first %d", n,
              PROTO_LIST_MAX);
    n = PROTO_LIST_MAX;
  }
  infos = calloc (n ? n : 1, sizeof *infos);
  if (infos == NULL)
    return mds_reply_error (rep, PROTO_ENOMEM, "volume list: out of memory");
  for (i = 0; i < n; ++i)
    mds_volume_info (mds, &vols[i], &infos[i]);
  list.n = n;
  list.volumes = infos;
  proto_encode_volume_list (&list, &rep->wb);
  return 0;
}

/* VOL_INFO: one volume by name. */
int
mds_op_vol_info (struct mds *mds, struct mds_conn *conn, const void *payload,
                 uint32_t len, struct mds_reply *rep)
{
  struct proto_vol_request req;
  struct proto_volume_info info;
  struct catalog_volume v;
  int r;

  r = lookup_request (mds, "VOL_INFO", payload, len, &req, &v, rep);
  if (r != 0)
    return r < 0 ? r : 0;
  mds_volume_info (mds, &v, &info);
  proto_encode_volume_info (&info, &rep->wb);
  return 0;
}

/* VOL_RESIZE: grow a volume (new segments are holes). */
int
mds_op_vol_resize (struct mds *mds, struct mds_conn *conn, const void *payload,
                   uint32_t len, struct mds_reply *rep)
{
  struct proto_vol_request req;
  struct proto_volume_info info;
  struct catalog_volume v;
  int r;

  r = lookup_request (mds, "VOL_RESIZE", payload, len, &req, &v, rep);
  if (r != 0)
    return r < 0 ? r : 0;
  if (req.size < v.size)
    return mds_reply_error (rep, PROTO_EINVAL,
                            "volume %s: shrinking is not supported "
                            "(size %" PRIu64 ", asked %" PRIu64 ")",
                            v.name, v.size, req.size);
  if (check_size (v.name, req.size, rep) < 0)
    return 0;
  if (req.size > v.size) {
    r = catalog_volume_resize (mds->cat, v.id, req.size, &v);
    mds_tables_kick (mds);
    if (r < 0)
      return mds_reply_catalog (rep, r, "volume %s", req.name);
    log_info ("volume %s: resized to %" PRIu64, v.name, v.size);
  }
  mds_volume_info (mds, &v, &info);
  proto_encode_volume_info (&info, &rep->wb);
  return 0;
}

/* VOL_DELETE: refused while a writer holds the lease or a resync runs.
 * The segments' replicas become garbage that heartbeats hand back to
 * their servers.
 */
int
mds_op_vol_delete (struct mds *mds, struct mds_conn *conn, const void *payload,
                   uint32_t len, struct mds_reply *rep)
{
  struct proto_vol_request req;
  struct catalog_volume v;
  int r;

  r = lookup_request (mds, "VOL_DELETE", payload, len, &req, &v, rep);
  if (r != 0)
    return r < 0 ? r : 0;
  if (mds_lease_active (mds, v.id))
    return mds_reply_error (rep, PROTO_EBUSY, "volume %s: open for writing",
                            v.name);
  if (mds_resyncing (mds, v.id))
    return mds_reply_error (rep, PROTO_EBUSY,
                            "volume %s: resyncing after an unclean close",
                            v.name);
  r = catalog_volume_delete (mds->cat, v.id);
  mds_tables_kick (mds);
  if (r < 0)
    return mds_reply_catalog (rep, r, "volume %s", v.name);
  mds_lease_drop (mds, v.id);
  log_info ("volume %s: deleted (%" PRIu64 " segments)", v.name, v.segments);
  return 0;
}

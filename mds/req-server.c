/* Requests about the cluster and its storage servers: STATUS,
 * SERVER_REGISTER, SERVER_HEARTBEAT, SERVER_LIST.  Handlers run with
 * mds->lock held.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "cleanup.h"
#include "log.h"
#include "parse.h"
#include "sock.h"

#include "internal.h"

/* A + B, saturating instead of wrapping. */
static uint64_t
add_sat (uint64_t a, uint64_t b)
{
  return a + b < a ? UINT64_MAX : a + b;
}

/* Bytes allocated on server ID: its replicas times the segment size.
 * *SEGMENTS (may be NULL) receives the replica count.  Returns 0 or a
 * catalog error.
 */
static int
server_used (struct mds *mds, uint32_t id, uint64_t *used, uint64_t *segments)
{
  uint64_t count = 0;
  int r;

  r = catalog_server_count_segments (mds->cat, id, &count);
  if (r < 0)
    return r;
  *used = count > UINT64_MAX / mds->cluster.segment_size
              ? UINT64_MAX
              : count * mds->cluster.segment_size;
  if (segments)
    *segments = count;
  return 0;
}

/* STATUS: cluster totals. */
int
mds_op_status (struct mds *mds, struct mds_conn *conn, const void *payload,
               uint32_t len, struct mds_reply *rep)
{
  CLEANUP_FREE struct catalog_server *servers = NULL;
  struct proto_status_info info;
  struct catalog_stats stats;
  size_t n, i;
  int r;

  if (len != 0)
    return mds_reply_bad (rep, -EBADMSG, "STATUS");
  r = catalog_stats (mds->cat, &stats);
  if (r < 0)
    return mds_reply_catalog (rep, r, "cluster statistics");
  r = catalog_server_list (mds->cat, &servers, &n);
  if (r < 0)
    return mds_reply_catalog (rep, r, "server list");

  memset (&info, 0, sizeof info);
  memcpy (info.cluster_uuid, mds->cluster.uuid, sizeof info.cluster_uuid);
  info.segment_size = mds->cluster.segment_size;
  info.servers = n > UINT32_MAX ? UINT32_MAX : n;
  info.volumes = stats.volumes > UINT32_MAX ? UINT32_MAX : stats.volumes;
  info.segments = stats.segments;
  for (i = 0; i < n; ++i) {
    uint64_t used;

    if (mds_server_is_up (mds, servers[i].id))
      info.servers_up++;
    info.capacity =
        add_sat (info.capacity, mds_server_capacity (mds, &servers[i]));
    r = server_used (mds, servers[i].id, &used, NULL);
    if (r < 0)
      return mds_reply_catalog (rep, r, "server %" PRIu32, servers[i].id);
    info.used = add_sat (info.used, used);
  }
  proto_encode_status_info (&info, &rep->wb);
  return 0;
}

/* SERVER_REGISTER: a storage server announces itself.  A store formatted
 * for another cluster or segment size is refused; otherwise the catalog
 * gives it an id (the same one again for a known uuid).
 */
int
mds_op_server_register (struct mds *mds, struct mds_conn *conn,
                        const void *payload, uint32_t len,
                        struct mds_reply *rep)
{
  struct proto_register req;
  struct proto_register_reply reply;
  struct catalog_server s;
  char uuid[37], cluster[37], theirs[37];
  int r;

  r = proto_decode_register (payload, len, &req);
  if (r < 0)
    return mds_reply_bad (rep, r, "SERVER_REGISTER");
  uuid_format (req.uuid, uuid);
  if (uuid_is_zero (req.uuid))
    return mds_reply_error (rep, PROTO_EINVAL,
                            "server register: the server uuid is zero");
  if (!uuid_is_zero (req.cluster_uuid) &&
      memcmp (req.cluster_uuid, mds->cluster.uuid, 16) != 0) {
    uuid_format (req.cluster_uuid, theirs);
    uuid_format (mds->cluster.uuid, cluster);
    log_warn ("server %s: refused: store belongs to cluster %s, not %s", uuid,
              theirs, cluster);
    return mds_reply_error (rep, PROTO_EINVAL,
                            "server %s: store belongs to cluster %s, "
                            "this is cluster %s",
                            uuid, theirs, cluster);
  }
  if (req.segment_size != 0 && req.segment_size != mds->cluster.segment_size) {
    log_warn ("server %s: refused: segment size %" PRIu32 ", not %" PRIu32,
              uuid, req.segment_size, mds->cluster.segment_size);
    return mds_reply_error (rep, PROTO_EINVAL,
                            "server %s: store segment size %" PRIu32
                            " differs from the cluster's %" PRIu32,
                            uuid, req.segment_size, mds->cluster.segment_size);
  }
  if (req.address[0] == '\0' || sock_address_check (req.address) < 0)
    return mds_reply_error (rep, PROTO_EINVAL,
                            "server %s: invalid address '%s'", uuid,
                            req.address);

  r = catalog_server_register (mds->cat, req.uuid, req.address, req.zone,
                               req.capacity, &s);
  if (r < 0)
    return mds_reply_catalog (rep, r, "server %s", uuid);
  r = mds_server_heard (mds, s.id, req.capacity, req.used);
  if (r < 0)
    return mds_reply_errno (rep, r, "server %s: out of memory", uuid);
  log_info ("server %" PRIu32 " (%s) registered: address %s, zone \"%s\", "
            "capacity %" PRIu64,
            s.id, uuid, req.address, req.zone, req.capacity);

  memset (&reply, 0, sizeof reply);
  reply.server_id = s.id;
  reply.segment_size = mds->cluster.segment_size;
  memcpy (reply.cluster_uuid, mds->cluster.uuid, 16);
  reply.heartbeat_ms = mds->heartbeat_ms;
  proto_encode_register_reply (&reply, &rep->wb);
  return 0;
}

/* The body of SERVER_HEARTBEAT once decoded: record the server's load,
 * forget the garbage it has deleted, hand it the next batch.
 */
static int
heartbeat (struct mds *mds, const struct proto_heartbeat *hb,
           struct mds_reply *rep)
{
  CLEANUP_FREE uint64_t *garbage = NULL;
  struct proto_segment_list list;
  struct catalog_server s;
  size_t n;
  int r;

  r = catalog_server_get (mds->cat, hb->server_id, &s);
  if (r == -ENOENT)
    return mds_reply_error (
        rep, PROTO_ENOENT, "server %" PRIu32 ": not registered", hb->server_id);
  if (r < 0)
    return mds_reply_catalog (rep, r, "server %" PRIu32, hb->server_id);
  if (!mds_server_is_up (mds, s.id))
    log_info ("server %" PRIu32 " (%s): up", s.id, s.address);
  r = mds_server_heard (mds, s.id, hb->capacity, hb->used);
  if (r < 0)
    return mds_reply_errno (rep, r, "server %" PRIu32 ": out of memory", s.id);
  if (hb->n > 0) {
    r = catalog_garbage_done (mds->cat, s.id, hb->segments, hb->n);
    if (r < 0)
      return mds_reply_catalog (rep, r, "server %" PRIu32 " garbage", s.id);
  }
  r = catalog_garbage_get (mds->cat, s.id, MDS_GARBAGE_BATCH, &garbage, &n);
  if (r < 0)
    return mds_reply_catalog (rep, r, "server %" PRIu32 " garbage", s.id);
  list.n = n;
  list.segments = garbage;
  proto_encode_segment_list (&list, &rep->wb);
  return 0;
}

/* SERVER_HEARTBEAT. */
int
mds_op_server_heartbeat (struct mds *mds, struct mds_conn *conn,
                         const void *payload, uint32_t len,
                         struct mds_reply *rep)
{
  struct proto_heartbeat hb;
  int r;

  r = proto_decode_heartbeat (payload, len, &hb);
  if (r < 0)
    return mds_reply_bad (rep, r, "SERVER_HEARTBEAT");
  r = heartbeat (mds, &hb, rep);
  proto_heartbeat_free (&hb);
  return r;
}

/* The state SERVER_LIST shows for server S: draining and out come from
 * the catalog, up and down from its heartbeats.
 */
static uint32_t
server_state (struct mds *mds, const struct catalog_server *s)
{
  if (s->state == CATALOG_SERVER_DRAINING || s->state == CATALOG_SERVER_OUT)
    return s->state;
  return mds_server_is_up (mds, s->id) ? PROTO_SERVER_UP : PROTO_SERVER_DOWN;
}

/* SERVER_LIST: every server with its state and load. */
int
mds_op_server_list (struct mds *mds, struct mds_conn *conn, const void *payload,
                    uint32_t len, struct mds_reply *rep)
{
  CLEANUP_FREE struct catalog_server *servers = NULL;
  CLEANUP_FREE struct proto_server_info *infos = NULL;
  struct proto_server_list list;
  size_t n, i;
  int r;

  if (len != 0)
    return mds_reply_bad (rep, -EBADMSG, "SERVER_LIST");
  r = catalog_server_list (mds->cat, &servers, &n);
  if (r < 0)
    return mds_reply_catalog (rep, r, "server list");
  if (n > PROTO_LIST_MAX)
    n = PROTO_LIST_MAX;
  infos = calloc (n ? n : 1, sizeof *infos);
  if (infos == NULL)
    return mds_reply_error (rep, PROTO_ENOMEM, "server list: out of memory");
  for (i = 0; i < n; ++i) {
    struct proto_server_info *p = &infos[i];

    p->id = servers[i].id;
    p->state = server_state (mds, &servers[i]);
    memcpy (p->uuid, servers[i].uuid, 16);
    p->capacity = mds_server_capacity (mds, &servers[i]);
    r = server_used (mds, servers[i].id, &p->used, &p->segments);
    if (r < 0)
      return mds_reply_catalog (rep, r, "server %" PRIu32, servers[i].id);
    snprintf (p->address, sizeof p->address, "%s", servers[i].address);
    snprintf (p->zone, sizeof p->zone, "%s", servers[i].zone);
  }
  list.n = n;
  list.servers = infos;
  proto_encode_server_list (&list, &rep->wb);
  return 0;
}

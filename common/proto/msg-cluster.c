/* Payloads of the cluster and its servers: STATUS and REPAIR replies,
 * SERVER_REGISTER, SERVER_HEARTBEAT and its reply (with the fences the
 * MDS hands out; the same fence is SEG_FENCE's payload), SERVER_DRAIN,
 * SERVER_REMOVE and SERVER_LIST.  See messages.c for the decoders'
 * rules.
 */

#include <config.h>

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "msg-internal.h"
#include "protocol.h"

/* Smallest wire size of one SERVER_LIST entry, used to bound counts. */
#define SERVER_INFO_MIN (4 + 4 + 16 + 8 + 8 + 8 + 2 + 2)

void
proto_encode_status_info (const struct proto_status_info *m,
                          struct proto_wbuf *wb)
{
  uint32_t i, n;

  proto_put_bytes (wb, m->cluster_uuid, 16);
  proto_put_u32 (wb, m->segment_size);
  proto_put_u32 (wb, m->servers);
  proto_put_u32 (wb, m->servers_up);
  proto_put_u32 (wb, m->volumes);
  proto_put_u64 (wb, m->segments);
  proto_put_u64 (wb, m->capacity);
  proto_put_u64 (wb, m->used);
  proto_put_u64 (wb, m->degraded);
  proto_put_u64 (wb, m->syncing);
  proto_put_u32 (wb, m->resyncing);
  proto_put_u64 (wb, m->unproven);
  proto_put_u64 (wb, m->misplaced);
  proto_put_u32 (wb, m->domains_needed);
  proto_put_u32 (wb, m->domains_room);
  proto_put_u32 (wb, m->zones_total);
  n = m->nzones < PROTO_STATUS_ZONES_MAX ? m->nzones : PROTO_STATUS_ZONES_MAX;
  proto_put_u32 (wb, n);
  for (i = 0; i < n; ++i) {
    const struct proto_zone_room *z = &m->zones[i];

    proto_put_str (wb, z->zone, PROTO_ZONE_MAX);
    proto_put_u32 (wb, z->servers);
    proto_put_u32 (wb, z->flags);
    proto_put_u64 (wb, z->room);
    proto_put_u64 (wb, z->usable);
  }
  proto_put_u32 (wb, m->ha_flags);
  proto_put_str (wb, m->mds_name, PROTO_NAME_MAX);
  proto_put_u64 (wb, m->epoch);
  proto_put_u64 (wb, m->published);
  proto_put_str (wb, m->sync, PROTO_NAME_MAX);
  n = m->nstandbys < PROTO_STATUS_STANDBYS_MAX ? m->nstandbys
                                               : PROTO_STATUS_STANDBYS_MAX;
  proto_put_u32 (wb, n);
  for (i = 0; i < n; ++i) {
    const struct proto_standby_info *sb = &m->standbys[i];

    proto_put_str (wb, sb->name, PROTO_NAME_MAX);
    proto_put_u32 (wb, sb->flags);
    proto_put_u64 (wb, sb->acked);
    proto_put_u64 (wb, sb->lag);
    proto_put_u32 (wb, sb->seen_ms);
  }
  n = m->netcd < PROTO_STATUS_ETCD_MAX ? m->netcd : PROTO_STATUS_ETCD_MAX;
  proto_put_u32 (wb, n);
  for (i = 0; i < n; ++i) {
    proto_put_str (wb, m->etcd[i].url, PROTO_ETCD_URL_MAX);
    proto_put_u32 (wb, m->etcd[i].flags);
    proto_put_str (wb, m->etcd[i].version, PROTO_ETCD_VERSION_MAX);
  }
}

int
proto_decode_status_info (const void *p, size_t len,
                          struct proto_status_info *m)
{
  struct proto_rbuf rb;
  uint32_t i;

  memset (m, 0, sizeof *m);
  proto_rbuf_init (&rb, p, len);
  proto_get_bytes (&rb, m->cluster_uuid, 16);
  m->segment_size = proto_get_u32 (&rb);
  m->servers = proto_get_u32 (&rb);
  m->servers_up = proto_get_u32 (&rb);
  m->volumes = proto_get_u32 (&rb);
  m->segments = proto_get_u64 (&rb);
  m->capacity = proto_get_u64 (&rb);
  m->used = proto_get_u64 (&rb);
  m->degraded = proto_get_u64 (&rb);
  m->syncing = proto_get_u64 (&rb);
  m->resyncing = proto_get_u32 (&rb);
  m->unproven = proto_get_u64 (&rb);
  m->misplaced = proto_get_u64 (&rb);
  m->domains_needed = proto_get_u32 (&rb);
  m->domains_room = proto_get_u32 (&rb);
  m->zones_total = proto_get_u32 (&rb);
  m->nzones = proto_get_u32 (&rb);
  if (m->nzones > PROTO_STATUS_ZONES_MAX || m->nzones > m->zones_total) {
    m->nzones = 0;
    return -EBADMSG;
  }
  for (i = 0; i < m->nzones; ++i) {
    struct proto_zone_room *z = &m->zones[i];

    proto_get_str (&rb, z->zone, PROTO_ZONE_MAX);
    z->servers = proto_get_u32 (&rb);
    z->flags = proto_get_u32 (&rb);
    z->room = proto_get_u64 (&rb);
    z->usable = proto_get_u64 (&rb);
    if (z->flags & ~PROTO_ZONE_FLAGS_KNOWN)
      return -EBADMSG;
  }
  m->ha_flags = proto_get_u32 (&rb);
  if (m->ha_flags & ~PROTO_STATUS_HA_FLAGS_KNOWN)
    return -EBADMSG;
  proto_get_str (&rb, m->mds_name, PROTO_NAME_MAX);
  m->epoch = proto_get_u64 (&rb);
  m->published = proto_get_u64 (&rb);
  proto_get_str (&rb, m->sync, PROTO_NAME_MAX);
  m->nstandbys = proto_get_u32 (&rb);
  if (m->nstandbys > PROTO_STATUS_STANDBYS_MAX) {
    m->nstandbys = 0;
    return -EBADMSG;
  }
  for (i = 0; i < m->nstandbys; ++i) {
    struct proto_standby_info *sb = &m->standbys[i];

    proto_get_str (&rb, sb->name, PROTO_NAME_MAX);
    sb->flags = proto_get_u32 (&rb);
    sb->acked = proto_get_u64 (&rb);
    sb->lag = proto_get_u64 (&rb);
    sb->seen_ms = proto_get_u32 (&rb);
    if (sb->flags & ~PROTO_STANDBY_FLAGS_KNOWN)
      return -EBADMSG;
  }
  m->netcd = proto_get_u32 (&rb);
  if (m->netcd > PROTO_STATUS_ETCD_MAX) {
    m->netcd = 0;
    return -EBADMSG;
  }
  for (i = 0; i < m->netcd; ++i) {
    proto_get_str (&rb, m->etcd[i].url, PROTO_ETCD_URL_MAX);
    m->etcd[i].flags = proto_get_u32 (&rb);
    proto_get_str (&rb, m->etcd[i].version, PROTO_ETCD_VERSION_MAX);
    if (m->etcd[i].flags & ~PROTO_ETCD_FLAGS_KNOWN)
      return -EBADMSG;
  }
  return proto_rbuf_finish (&rb);
}

void
proto_encode_register (const struct proto_register *m, struct proto_wbuf *wb)
{
  proto_put_bytes (wb, m->uuid, 16);
  proto_put_bytes (wb, m->cluster_uuid, 16);
  proto_put_u32 (wb, m->segment_size);
  proto_put_u64 (wb, m->capacity);
  proto_put_u64 (wb, m->used);
  proto_put_u64 (wb, m->incarnation);
  proto_put_u32 (wb, m->flags);
  proto_put_u64 (wb, m->index_seq);
  proto_put_str (wb, m->address, PROTO_ADDR_MAX);
  proto_put_str (wb, m->zone, PROTO_ZONE_MAX);
}

int
proto_decode_register (const void *p, size_t len, struct proto_register *m)
{
  struct proto_rbuf rb;

  proto_rbuf_init (&rb, p, len);
  proto_get_bytes (&rb, m->uuid, 16);
  proto_get_bytes (&rb, m->cluster_uuid, 16);
  m->segment_size = proto_get_u32 (&rb);
  m->capacity = proto_get_u64 (&rb);
  m->used = proto_get_u64 (&rb);
  m->incarnation = proto_get_u64 (&rb);
  m->flags = proto_get_u32 (&rb);
  m->index_seq = proto_get_u64 (&rb);
  if (m->flags & ~PROTO_REG_FLAGS_KNOWN)
    return -EBADMSG;
  proto_get_str (&rb, m->address, PROTO_ADDR_MAX);
  proto_get_str (&rb, m->zone, PROTO_ZONE_MAX);
  return proto_rbuf_finish (&rb);
}

void
proto_encode_register_reply (const struct proto_register_reply *m,
                             struct proto_wbuf *wb)
{
  proto_put_u32 (wb, m->server_id);
  proto_put_u32 (wb, m->segment_size);
  proto_put_bytes (wb, m->cluster_uuid, 16);
  proto_put_u32 (wb, m->heartbeat_ms);
}

int
proto_decode_register_reply (const void *p, size_t len,
                             struct proto_register_reply *m)
{
  struct proto_rbuf rb;

  proto_rbuf_init (&rb, p, len);
  m->server_id = proto_get_u32 (&rb);
  m->segment_size = proto_get_u32 (&rb);
  proto_get_bytes (&rb, m->cluster_uuid, 16);
  m->heartbeat_ms = proto_get_u32 (&rb);
  return proto_rbuf_finish (&rb);
}

void
proto_encode_heartbeat (const struct proto_heartbeat *m, struct proto_wbuf *wb)
{
  proto_put_u32 (wb, m->server_id);
  proto_put_u64 (wb, m->capacity);
  proto_put_u64 (wb, m->used);
  proto_put_u64 (wb, m->index_seq);
  proto_put_segments (wb, m->n, m->segments);
}

int
proto_decode_heartbeat (const void *p, size_t len, struct proto_heartbeat *m)
{
  struct proto_rbuf rb;
  int r;

  memset (m, 0, sizeof *m);
  proto_rbuf_init (&rb, p, len);
  m->server_id = proto_get_u32 (&rb);
  m->capacity = proto_get_u64 (&rb);
  m->used = proto_get_u64 (&rb);
  m->index_seq = proto_get_u64 (&rb);
  r = proto_get_segments (&rb, &m->n, &m->segments);
  if (r == 0)
    r = proto_rbuf_finish (&rb);
  if (r < 0)
    proto_heartbeat_free (m);
  return r;
}

void
proto_heartbeat_free (struct proto_heartbeat *m)
{
  free (m->segments);
  m->segments = NULL;
  m->n = 0;
}

static void
put_fence (struct proto_wbuf *wb, const struct proto_fence *f)
{
  proto_put_u64 (wb, f->volume);
  proto_put_u64 (wb, f->epoch);
}

void
proto_encode_heartbeat_reply (const struct proto_heartbeat_reply *m,
                              struct proto_wbuf *wb)
{
  uint32_t i;

  proto_put_segments (wb, m->n, m->segments);
  proto_put_u32 (wb, m->nfences);
  for (i = 0; i < m->nfences; ++i)
    put_fence (wb, &m->fences[i]);
}

int
proto_decode_heartbeat_reply (const void *p, size_t len,
                              struct proto_heartbeat_reply *m)
{
  struct proto_rbuf rb;
  uint32_t i, nf;
  int r;

  memset (m, 0, sizeof *m);
  proto_rbuf_init (&rb, p, len);
  r = proto_get_segments (&rb, &m->n, &m->segments);
  if (r < 0)
    return r;
  nf = proto_get_u32 (&rb);
  if (proto_count_fits (&rb, nf, 16, PROTO_LIST_MAX) < 0) {
    proto_heartbeat_reply_free (m);
    return -EBADMSG;
  }
  if (nf > 0) {
    m->fences = calloc (nf, sizeof *m->fences);
    if (m->fences == NULL) {
      proto_heartbeat_reply_free (m);
      return -ENOMEM;
    }
  }
  m->nfences = nf;
  for (i = 0; i < nf; ++i) {
    m->fences[i].volume = proto_get_u64 (&rb);
    m->fences[i].epoch = proto_get_u64 (&rb);
  }
  r = proto_rbuf_finish (&rb);
  if (r < 0)
    proto_heartbeat_reply_free (m);
  return r;
}

void
proto_heartbeat_reply_free (struct proto_heartbeat_reply *m)
{
  free (m->segments);
  free (m->fences);
  m->segments = NULL;
  m->fences = NULL;
  m->n = m->nfences = 0;
}

void
proto_encode_server_request (const struct proto_server_request *m,
                             struct proto_wbuf *wb)
{
  proto_put_u32 (wb, m->server);
}

int
proto_decode_server_request (const void *p, size_t len,
                             struct proto_server_request *m)
{
  struct proto_rbuf rb;

  proto_rbuf_init (&rb, p, len);
  m->server = proto_get_u32 (&rb);
  return proto_rbuf_finish (&rb);
}

static void
put_server_info (struct proto_wbuf *wb, const struct proto_server_info *s)
{
  proto_put_u32 (wb, s->id);
  proto_put_u32 (wb, s->state);
  proto_put_bytes (wb, s->uuid, 16);
  proto_put_u64 (wb, s->capacity);
  proto_put_u64 (wb, s->used);
  proto_put_u64 (wb, s->segments);
  proto_put_str (wb, s->address, PROTO_ADDR_MAX);
  proto_put_str (wb, s->zone, PROTO_ZONE_MAX);
}

static int
get_server_info (struct proto_rbuf *rb, void *elem, void *prev)
{
  struct proto_server_info *s = elem;

  s->id = proto_get_u32 (rb);
  s->state = proto_get_u32 (rb);
  proto_get_bytes (rb, s->uuid, 16);
  s->capacity = proto_get_u64 (rb);
  s->used = proto_get_u64 (rb);
  s->segments = proto_get_u64 (rb);
  proto_get_str (rb, s->address, PROTO_ADDR_MAX);
  proto_get_str (rb, s->zone, PROTO_ZONE_MAX);
  return rb->err;
}

void
proto_encode_server_list (const struct proto_server_list *m,
                          struct proto_wbuf *wb)
{
  uint32_t i;

  proto_put_u32 (wb, m->n);
  for (i = 0; i < m->n; ++i)
    put_server_info (wb, &m->servers[i]);
}

int
proto_decode_server_list (const void *p, size_t len,
                          struct proto_server_list *m)
{
  struct proto_rbuf rb;
  int r;

  proto_rbuf_init (&rb, p, len);
  r = proto_get_list (&rb, SERVER_INFO_MIN, PROTO_LIST_MAX, sizeof *m->servers,
                      get_server_info, (void **)&m->servers, &m->n);
  if (r == 0 && proto_rbuf_finish (&rb) < 0) {
    proto_server_list_free (m);
    r = -EBADMSG;
  }
  return r;
}

void
proto_server_list_free (struct proto_server_list *m)
{
  free (m->servers);
  m->servers = NULL;
  m->n = 0;
}

void
proto_encode_fence (const struct proto_fence *m, struct proto_wbuf *wb)
{
  put_fence (wb, m);
}

int
proto_decode_fence (const void *p, size_t len, struct proto_fence *m)
{
  struct proto_rbuf rb;

  proto_rbuf_init (&rb, p, len);
  m->volume = proto_get_u64 (&rb);
  m->epoch = proto_get_u64 (&rb);
  return proto_rbuf_finish (&rb);
}

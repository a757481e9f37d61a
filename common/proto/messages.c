/* Encoders and decoders of every message payload (see protocol.h).
 *
 * Decoders validate before they trust: every count is checked against the
 * bytes actually left in the payload before anything is allocated, every
 * string against its maximum, reserved bytes must be zero, and the whole
 * payload must be consumed.
 *
 * Grouped by message family, in the order of protocol.h's opcodes:
 * shared list helpers, the handshake, cluster and servers, volumes and
 * leases, segment maps, then the segment messages of storage servers.
 */

#include <config.h>

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "protocol.h"
#include "static-assert.h"

/* ---- Shared list helpers ---- */

/* Smallest wire size of one list element, used to bound counts. */
#define SERVER_INFO_MIN (4 + 4 + 16 + 8 + 8 + 8 + 2 + 2)
#define VOLUME_INFO_MIN (8 + 8 + 4 + 4 + 8 + 8 + 4 + 2)
#define MAP_ENTRY_MIN (8 + 8 + 8 + 4)
#define REPLICA_SIZE 8

/* Check a decoded count against the bytes left: N elements of at least
 * MIN bytes each must fit, and N must not exceed MAX.
 */
static int
count_fits (struct proto_rbuf *rb, uint32_t n, size_t min, uint32_t max)
{
  if (rb->err)
    return rb->err;
  if (n > max || (uint64_t)n * min > proto_rbuf_left (rb)) {
    rb->err = -EBADMSG;
    return -EBADMSG;
  }
  return 0;
}

/* Decode a u32 count and that many elements of ELEMSIZE bytes in memory
 * (at least MIN on the wire, at most MAX of them) with GET into a calloc'd
 * array.  GET returns 0 or -EBADMSG.  On any error nothing is left
 * allocated; the caller's *OUT and *N are set only on success.
 */
static int
get_list (struct proto_rbuf *rb, size_t min, uint32_t max, size_t elemsize,
          int (*get) (struct proto_rbuf *rb, void *elem, void *prev),
          void **out, uint32_t *n)
{
  uint32_t i, count;
  uint8_t *a = NULL;

  *out = NULL;
  *n = 0;
  count = proto_get_u32 (rb);
  if (count_fits (rb, count, min, max) < 0)
    return -EBADMSG;
  if (count > 0 && (a = calloc (count, elemsize)) == NULL)
    return -ENOMEM;
  for (i = 0; i < count; ++i) {
    if (get (rb, a + i * elemsize, i ? a + (i - 1) * elemsize : NULL) < 0 ||
        rb->err) {
      free (a);
      return -EBADMSG;
    }
  }
  *out = a;
  *n = count;
  return 0;
}

/* A u32 count then that many u64 segment ids. */
static void
put_segments (struct proto_wbuf *wb, uint32_t n, const uint64_t *segments)
{
  uint32_t i;

  proto_put_u32 (wb, n);
  for (i = 0; i < n; ++i)
    proto_put_u64 (wb, segments[i]);
}

static int
get_segments (struct proto_rbuf *rb, uint32_t *n, uint64_t **segments)
{
  uint32_t i, count;
  uint64_t *s;

  *n = 0;
  *segments = NULL;
  count = proto_get_u32 (rb);
  if (count_fits (rb, count, 8, PROTO_LIST_MAX) < 0)
    return -EBADMSG;
  if (count == 0)
    return 0;
  s = calloc (count, sizeof *s);
  if (s == NULL)
    return -ENOMEM;
  for (i = 0; i < count; ++i)
    s[i] = proto_get_u64 (rb);
  *n = count;
  *segments = s;
  return 0;
}

/* ---- Handshake: HELLO (AUTH's payload is opaque, auth.h) ---- */

void
proto_encode_hello (const struct proto_hello *m, struct proto_wbuf *wb)
{
  proto_put_u32 (wb, m->version);
  proto_put_u32 (wb, m->role);
  proto_put_bytes (wb, m->uuid, 16);
  proto_put_u64 (wb, m->incarnation);
  proto_put_u16 (wb, m->auth_len);
  proto_put_u16 (wb, 0);
  proto_put_bytes (wb, m->auth,
                   m->auth_len <= PROTO_AUTH_MAX ? m->auth_len
                                                 : PROTO_AUTH_MAX);
}

int
proto_decode_hello (const void *p, size_t len, struct proto_hello *m)
{
  struct proto_rbuf rb;

  memset (m, 0, sizeof *m);
  proto_rbuf_init (&rb, p, len);
  m->version = proto_get_u32 (&rb);
  m->role = proto_get_u32 (&rb);
  proto_get_bytes (&rb, m->uuid, 16);
  m->incarnation = proto_get_u64 (&rb);
  m->auth_len = proto_get_u16 (&rb);
  if (proto_get_u16 (&rb) != 0 || m->auth_len > PROTO_AUTH_MAX)
    return -EBADMSG;
  proto_get_bytes (&rb, m->auth, m->auth_len);
  return proto_rbuf_finish (&rb);
}

/* ---- Cluster and servers: STATUS, REPAIR, SERVER_* ---- */

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
  put_segments (wb, m->n, m->segments);
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
  r = get_segments (&rb, &m->n, &m->segments);
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

  put_segments (wb, m->n, m->segments);
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
  r = get_segments (&rb, &m->n, &m->segments);
  if (r < 0)
    return r;
  nf = proto_get_u32 (&rb);
  if (count_fits (&rb, nf, 16, PROTO_LIST_MAX) < 0) {
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
  r = get_list (&rb, SERVER_INFO_MIN, PROTO_LIST_MAX, sizeof *m->servers,
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

/* ---- Volumes and leases: VOL_*, LEASE_RENEW, EPOCH_* ---- */

static void
put_volume_info (struct proto_wbuf *wb, const struct proto_volume_info *v)
{
  proto_put_u64 (wb, v->id);
  proto_put_u64 (wb, v->size);
  proto_put_u32 (wb, v->replicas);
  proto_put_u32 (wb, v->flags);
  proto_put_u64 (wb, v->epoch);
  proto_put_u64 (wb, v->segments);
  proto_put_u32 (wb, v->min_copies);
  proto_put_str (wb, v->name, PROTO_NAME_MAX);
}

static int
get_volume_info (struct proto_rbuf *rb, void *elem, void *prev)
{
  struct proto_volume_info *v = elem;

  v->id = proto_get_u64 (rb);
  v->size = proto_get_u64 (rb);
  v->replicas = proto_get_u32 (rb);
  v->flags = proto_get_u32 (rb);
  v->epoch = proto_get_u64 (rb);
  v->segments = proto_get_u64 (rb);
  v->min_copies = proto_get_u32 (rb);
  proto_get_str (rb, v->name, PROTO_NAME_MAX);
  return rb->err;
}

void
proto_encode_volume_info (const struct proto_volume_info *m,
                          struct proto_wbuf *wb)
{
  put_volume_info (wb, m);
}

int
proto_decode_volume_info (const void *p, size_t len,
                          struct proto_volume_info *m)
{
  struct proto_rbuf rb;

  proto_rbuf_init (&rb, p, len);
  get_volume_info (&rb, m, NULL);
  return proto_rbuf_finish (&rb);
}

void
proto_encode_volume_list (const struct proto_volume_list *m,
                          struct proto_wbuf *wb)
{
  uint32_t i;

  proto_put_u32 (wb, m->n);
  for (i = 0; i < m->n; ++i)
    put_volume_info (wb, &m->volumes[i]);
}

int
proto_decode_volume_list (const void *p, size_t len,
                          struct proto_volume_list *m)
{
  struct proto_rbuf rb;
  int r;

  proto_rbuf_init (&rb, p, len);
  r = get_list (&rb, VOLUME_INFO_MIN, PROTO_LIST_MAX, sizeof *m->volumes,
                get_volume_info, (void **)&m->volumes, &m->n);
  if (r == 0 && proto_rbuf_finish (&rb) < 0) {
    proto_volume_list_free (m);
    r = -EBADMSG;
  }
  return r;
}

void
proto_volume_list_free (struct proto_volume_list *m)
{
  free (m->volumes);
  m->volumes = NULL;
  m->n = 0;
}

void
proto_encode_vol_request (const struct proto_vol_request *m,
                          struct proto_wbuf *wb)
{
  size_t i;

  proto_put_u64 (wb, m->size);
  proto_put_u32 (wb, m->replicas);
  proto_put_u32 (wb, m->flags);
  proto_put_u32 (wb, m->min_copies);
  proto_put_str (wb, m->name, PROTO_NAME_MAX);
  /* The token is optional on the wire: all zero is sent as nothing. */
  for (i = 0; i < sizeof m->token; i++)
    if (m->token[i] != 0) {
      proto_put_bytes (wb, m->token, sizeof m->token);
      break;
    }
}

int
proto_decode_vol_request (const void *p, size_t len,
                          struct proto_vol_request *m)
{
  struct proto_rbuf rb;

  proto_rbuf_init (&rb, p, len);
  m->size = proto_get_u64 (&rb);
  m->replicas = proto_get_u32 (&rb);
  m->flags = proto_get_u32 (&rb);
  m->min_copies = proto_get_u32 (&rb);
  proto_get_str (&rb, m->name, PROTO_NAME_MAX);
  memset (m->token, 0, sizeof m->token);
  if (proto_rbuf_left (&rb) == sizeof m->token)
    proto_get_bytes (&rb, m->token, sizeof m->token);
  return proto_rbuf_finish (&rb);
}

void
proto_encode_open_reply (const struct proto_open_reply *m,
                         struct proto_wbuf *wb)
{
  put_volume_info (wb, &m->volume);
  proto_put_u32 (wb, m->segment_size);
  proto_put_u32 (wb, m->lease_ms);
}

int
proto_decode_open_reply (const void *p, size_t len, struct proto_open_reply *m)
{
  struct proto_rbuf rb;

  proto_rbuf_init (&rb, p, len);
  get_volume_info (&rb, &m->volume, NULL);
  m->segment_size = proto_get_u32 (&rb);
  m->lease_ms = proto_get_u32 (&rb);
  return proto_rbuf_finish (&rb);
}

void
proto_encode_lease (const struct proto_lease *m, struct proto_wbuf *wb)
{
  proto_put_u64 (wb, m->volume);
  proto_put_u64 (wb, m->epoch);
}

int
proto_decode_lease (const void *p, size_t len, struct proto_lease *m)
{
  struct proto_rbuf rb;

  proto_rbuf_init (&rb, p, len);
  m->volume = proto_get_u64 (&rb);
  m->epoch = proto_get_u64 (&rb);
  return proto_rbuf_finish (&rb);
}

/* ---- Segment maps: MAP_*, REPLICA_FAILED, SEG_RESYNC ---- */

void
proto_encode_map_request (const struct proto_map_request *m,
                          struct proto_wbuf *wb)
{
  proto_put_u64 (wb, m->volume);
  proto_put_u64 (wb, m->epoch);
  proto_put_u64 (wb, m->start);
  proto_put_u32 (wb, m->count);
}

int
proto_decode_map_request (const void *p, size_t len,
                          struct proto_map_request *m)
{
  struct proto_rbuf rb;

  proto_rbuf_init (&rb, p, len);
  m->volume = proto_get_u64 (&rb);
  m->epoch = proto_get_u64 (&rb);
  m->start = proto_get_u64 (&rb);
  m->count = proto_get_u32 (&rb);
  if (proto_rbuf_finish (&rb) < 0)
    return -EBADMSG;
  if (m->count == 0 || m->count > PROTO_MAP_MAX)
    return -EBADMSG;
  return 0;
}

void
proto_encode_map (const struct proto_map *m, struct proto_wbuf *wb)
{
  uint32_t i, j;

  proto_put_u32 (wb, m->n);
  for (i = 0; i < m->n; ++i) {
    const struct proto_map_entry *e = &m->entries[i];

    proto_put_u64 (wb, e->index);
    proto_put_u64 (wb, e->segment);
    proto_put_u64 (wb, e->gen);
    proto_put_u8 (wb, e->nreplicas);
    proto_put_u8 (wb, 0);
    proto_put_u16 (wb, 0);
    for (j = 0; j < e->nreplicas && j < PROTO_REPLICAS_MAX; ++j) {
      proto_put_u32 (wb, e->replicas[j].server);
      proto_put_u8 (wb, e->replicas[j].state);
      proto_put_u8 (wb, 0);
      proto_put_u16 (wb, 0);
    }
  }
}

/* Decode one map entry; entries must come in strictly ascending index
 * order (PREV is the previous entry, NULL for the first).
 */
static int
get_map_entry (struct proto_rbuf *rb, void *elem, void *prevp)
{
  struct proto_map_entry *e = elem;
  const struct proto_map_entry *prev = prevp;
  uint32_t j;

  e->index = proto_get_u64 (rb);
  e->segment = proto_get_u64 (rb);
  e->gen = proto_get_u64 (rb);
  e->nreplicas = proto_get_u8 (rb);
  if (proto_get_u8 (rb) != 0 || proto_get_u16 (rb) != 0)
    return -EBADMSG;
  if (rb->err || e->nreplicas == 0 || e->nreplicas > PROTO_REPLICAS_MAX)
    return -EBADMSG;
  if (prev && e->index <= prev->index)
    return -EBADMSG;
  for (j = 0; j < e->nreplicas; ++j) {
    e->replicas[j].server = proto_get_u32 (rb);
    e->replicas[j].state = proto_get_u8 (rb);
    if (proto_get_u8 (rb) != 0 || proto_get_u16 (rb) != 0)
      return -EBADMSG;
    if (e->replicas[j].state > PROTO_REPLICA_SYNCING)
      return -EBADMSG;
  }
  return rb->err;
}

int
proto_decode_map (const void *p, size_t len, struct proto_map *m)
{
  struct proto_rbuf rb;
  int r;

  proto_rbuf_init (&rb, p, len);
  r = get_list (&rb, MAP_ENTRY_MIN + REPLICA_SIZE, PROTO_MAP_MAX,
                sizeof *m->entries, get_map_entry, (void **)&m->entries, &m->n);
  if (r == 0 && proto_rbuf_finish (&rb) < 0) {
    proto_map_free (m);
    r = -EBADMSG;
  }
  return r;
}

void
proto_map_free (struct proto_map *m)
{
  free (m->entries);
  m->entries = NULL;
  m->n = 0;
}

void
proto_encode_replica_failed (const struct proto_replica_failed *m,
                             struct proto_wbuf *wb)
{
  proto_put_u64 (wb, m->volume);
  proto_put_u64 (wb, m->epoch);
  proto_put_u64 (wb, m->segment);
  proto_put_u32 (wb, m->server);
}

int
proto_decode_replica_failed (const void *p, size_t len,
                             struct proto_replica_failed *m)
{
  struct proto_rbuf rb;

  proto_rbuf_init (&rb, p, len);
  m->volume = proto_get_u64 (&rb);
  m->epoch = proto_get_u64 (&rb);
  m->segment = proto_get_u64 (&rb);
  m->server = proto_get_u32 (&rb);
  return proto_rbuf_finish (&rb);
}

void
proto_encode_resync (const struct proto_resync *m, struct proto_wbuf *wb)
{
  proto_put_u64 (wb, m->volume);
  proto_put_u64 (wb, m->segment);
  proto_put_u32 (wb, m->source);
}

int
proto_decode_resync (const void *p, size_t len, struct proto_resync *m)
{
  struct proto_rbuf rb;

  proto_rbuf_init (&rb, p, len);
  m->volume = proto_get_u64 (&rb);
  m->segment = proto_get_u64 (&rb);
  m->source = proto_get_u32 (&rb);
  return proto_rbuf_finish (&rb);
}

/* ---- Segments on storage servers: SEG_* ---- */

void
proto_encode_segment_list (const struct proto_segment_list *m,
                           struct proto_wbuf *wb)
{
  put_segments (wb, m->n, m->segments);
}

int
proto_decode_segment_list (const void *p, size_t len,
                           struct proto_segment_list *m)
{
  struct proto_rbuf rb;
  int r;

  proto_rbuf_init (&rb, p, len);
  r = get_segments (&rb, &m->n, &m->segments);
  if (r == 0)
    r = proto_rbuf_finish (&rb);
  if (r < 0)
    proto_segment_list_free (m);
  return r;
}

void
proto_segment_list_free (struct proto_segment_list *m)
{
  free (m->segments);
  m->segments = NULL;
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

void
proto_encode_set_gen (const struct proto_set_gen *m, struct proto_wbuf *wb)
{
  proto_put_u64 (wb, m->segment);
  proto_put_u64 (wb, m->volume);
  proto_put_u64 (wb, m->gen);
}

int
proto_decode_set_gen (const void *p, size_t len, struct proto_set_gen *m)
{
  struct proto_rbuf rb;

  proto_rbuf_init (&rb, p, len);
  m->segment = proto_get_u64 (&rb);
  m->volume = proto_get_u64 (&rb);
  m->gen = proto_get_u64 (&rb);
  return proto_rbuf_finish (&rb);
}

void
proto_encode_pull (const struct proto_pull *m, struct proto_wbuf *wb)
{
  proto_put_u64 (wb, m->segment);
  proto_put_u64 (wb, m->volume);
  proto_put_u64 (wb, m->epoch);
  proto_put_u64 (wb, m->gen);
  proto_put_u32 (wb, m->mode);
  proto_put_u32 (wb, 0);
  proto_put_u64 (wb, m->bandwidth);
  proto_put_str (wb, m->source, PROTO_ADDR_MAX);
}

int
proto_decode_pull (const void *p, size_t len, struct proto_pull *m)
{
  struct proto_rbuf rb;

  proto_rbuf_init (&rb, p, len);
  m->segment = proto_get_u64 (&rb);
  m->volume = proto_get_u64 (&rb);
  m->epoch = proto_get_u64 (&rb);
  m->gen = proto_get_u64 (&rb);
  m->mode = proto_get_u32 (&rb);
  if (proto_get_u32 (&rb) != 0)
    return -EBADMSG;
  m->bandwidth = proto_get_u64 (&rb);
  proto_get_str (&rb, m->source, PROTO_ADDR_MAX);
  if (proto_rbuf_finish (&rb) < 0)
    return -EBADMSG;
  if (m->mode != PROTO_PULL_FULL && m->mode != PROTO_PULL_DIFF)
    return -EBADMSG;
  return 0;
}

void
proto_encode_hash_request (const struct proto_hash_request *m,
                           struct proto_wbuf *wb)
{
  proto_put_u64 (wb, m->segment);
  proto_put_u32 (wb, m->offset);
  proto_put_u32 (wb, m->length);
  proto_put_u32 (wb, m->block);
}

int
proto_decode_hash_request (const void *p, size_t len,
                           struct proto_hash_request *m)
{
  struct proto_rbuf rb;

  proto_rbuf_init (&rb, p, len);
  m->segment = proto_get_u64 (&rb);
  m->offset = proto_get_u32 (&rb);
  m->length = proto_get_u32 (&rb);
  m->block = proto_get_u32 (&rb);
  if (proto_rbuf_finish (&rb) < 0)
    return -EBADMSG;
  /* A power of two from 4 KiB to 4 MiB, and an aligned offset. */
  if (m->block < 4096 || m->block > (4u << 20) ||
      (m->block & (m->block - 1)) != 0 || m->offset % m->block != 0)
    return -EBADMSG;
  return 0;
}

void
proto_encode_hash (const struct proto_hash *m, struct proto_wbuf *wb)
{
  uint32_t i;

  proto_put_u64 (wb, m->epoch);
  proto_put_u32 (wb, m->n);
  for (i = 0; i < m->n; ++i)
    proto_put_u32 (wb, m->crcs[i]);
}

int
proto_decode_hash (const void *p, size_t len, struct proto_hash *m)
{
  struct proto_rbuf rb;
  uint32_t i, n;

  memset (m, 0, sizeof *m);
  proto_rbuf_init (&rb, p, len);
  m->epoch = proto_get_u64 (&rb);
  n = proto_get_u32 (&rb);
  /* At most a 64 MiB segment in 4 KiB blocks. */
  if (count_fits (&rb, n, 4, 16384) < 0)
    return -EBADMSG;
  if (n > 0) {
    m->crcs = calloc (n, sizeof *m->crcs);
    if (m->crcs == NULL)
      return -ENOMEM;
  }
  m->n = n;
  for (i = 0; i < n; ++i)
    m->crcs[i] = proto_get_u32 (&rb);
  if (proto_rbuf_finish (&rb) < 0) {
    proto_hash_free (m);
    return -EBADMSG;
  }
  return 0;
}

void
proto_hash_free (struct proto_hash *m)
{
  free (m->crcs);
  m->crcs = NULL;
  m->n = 0;
}

void
proto_encode_seg_list_request (const struct proto_seg_list_request *m,
                               struct proto_wbuf *wb)
{
  proto_put_u64 (wb, m->volume);
  proto_put_u64 (wb, m->min_epoch);
  proto_put_u64 (wb, m->start_after);
  proto_put_u32 (wb, m->max);
}

int
proto_decode_seg_list_request (const void *p, size_t len,
                               struct proto_seg_list_request *m)
{
  struct proto_rbuf rb;

  proto_rbuf_init (&rb, p, len);
  m->volume = proto_get_u64 (&rb);
  m->min_epoch = proto_get_u64 (&rb);
  m->start_after = proto_get_u64 (&rb);
  m->max = proto_get_u32 (&rb);
  if (proto_rbuf_finish (&rb) < 0)
    return -EBADMSG;
  if (m->max == 0 || m->max > PROTO_LIST_MAX)
    return -EBADMSG;
  return 0;
}

/* The segment I/O head is on the hot path: fixed offsets, no cursor. */
struct seg_io_wire {
  uint64_t segment;
  uint64_t volume;
  uint64_t epoch;
  uint64_t gen;
  uint32_t offset;
  uint32_t length;
} __attribute__ ((packed));
STATIC_ASSERT (sizeof (struct seg_io_wire) == PROTO_SEG_IO_SIZE,
               seg_io_wire_size);

void
proto_encode_seg_io (const struct proto_seg_io *m, void *buf)
{
  struct seg_io_wire w;

  w.segment = htobe64 (m->segment);
  w.volume = htobe64 (m->volume);
  w.epoch = htobe64 (m->epoch);
  w.gen = htobe64 (m->gen);
  w.offset = htobe32 (m->offset);
  w.length = htobe32 (m->length);
  memcpy (buf, &w, sizeof w);
}

int
proto_decode_seg_io (const void *p, size_t len, struct proto_seg_io *m)
{
  struct seg_io_wire w;

  if (len < PROTO_SEG_IO_SIZE)
    return -EBADMSG;
  memcpy (&w, p, sizeof w);
  m->segment = be64toh (w.segment);
  m->volume = be64toh (w.volume);
  m->epoch = be64toh (w.epoch);
  m->gen = be64toh (w.gen);
  m->offset = be32toh (w.offset);
  m->length = be32toh (w.length);
  return 0;
}

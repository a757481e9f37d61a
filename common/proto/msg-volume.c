/* Payloads of volumes and their segment maps: VOL_*, LEASE_RENEW,
 * EPOCH_*, MAP_GET, MAP_ALLOC, REPLICA_FAILED, MAP_RAISE_GEN and SEG_RESYNC, the
 * requests clients send the MDS.  See messages.c for the decoders'
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

/* Smallest wire size of one list element, used to bound counts. */
#define VOLUME_INFO_MIN (8 + 8 + 4 + 4 + 8 + 8 + 4 + 2)
#define MAP_ENTRY_MIN (8 + 8 + 8 + 4)
#define REPLICA_SIZE 8

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
  r = proto_get_list (&rb, VOLUME_INFO_MIN, PROTO_LIST_MAX, sizeof *m->volumes,
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
  r = proto_get_list (&rb, MAP_ENTRY_MIN + REPLICA_SIZE, PROTO_MAP_MAX,
                      sizeof *m->entries, get_map_entry, (void **)&m->entries,
                      &m->n);
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
proto_encode_raise_gen (const struct proto_raise_gen *m, struct proto_wbuf *wb)
{
  proto_put_u64 (wb, m->volume);
  proto_put_u64 (wb, m->epoch);
  proto_put_u64 (wb, m->segment);
  proto_put_u64 (wb, m->gen);
}

int
proto_decode_raise_gen (const void *p, size_t len, struct proto_raise_gen *m)
{
  struct proto_rbuf rb;

  proto_rbuf_init (&rb, p, len);
  m->volume = proto_get_u64 (&rb);
  m->epoch = proto_get_u64 (&rb);
  m->segment = proto_get_u64 (&rb);
  m->gen = proto_get_u64 (&rb);
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

/* Payloads of the segment messages storage servers serve: SEG_DELETE
 * and SEG_LIST (segment lists, also in heartbeats), SEG_SET_GEN,
 * SEG_PULL, SEG_HASH, SEG_DESCRIBE, TABLES_PUT and TABLES_GET, and the
 * fixed head of SEG_READ, SEG_WRITE,
 * SEG_TRIM and SEG_FLUSH.  SEG_FENCE's payload is in msg-cluster.c with
 * the heartbeat's fences.  See messages.c for the decoders' rules.
 */

#include <config.h>

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "msg-internal.h"
#include "protocol.h"
#include "static-assert.h"

void
proto_encode_segment_list (const struct proto_segment_list *m,
                           struct proto_wbuf *wb)
{
  proto_put_segments (wb, m->n, m->segments);
}

int
proto_decode_segment_list (const void *p, size_t len,
                           struct proto_segment_list *m)
{
  struct proto_rbuf rb;
  int r;

  proto_rbuf_init (&rb, p, len);
  r = proto_get_segments (&rb, &m->n, &m->segments);
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
proto_encode_set_gen (const struct proto_set_gen *m, struct proto_wbuf *wb)
{
  proto_put_u64 (wb, m->segment);
  proto_put_u64 (wb, m->volume);
  proto_put_u64 (wb, m->gen);
  proto_put_u64 (wb, m->index);
}

int
proto_decode_set_gen (const void *p, size_t len, struct proto_set_gen *m)
{
  struct proto_rbuf rb;

  proto_rbuf_init (&rb, p, len);
  m->segment = proto_get_u64 (&rb);
  m->volume = proto_get_u64 (&rb);
  m->gen = proto_get_u64 (&rb);
  m->index = proto_get_u64 (&rb);
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
  proto_put_u64 (wb, m->index);
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
  m->index = proto_get_u64 (&rb);
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
  if (proto_count_fits (&rb, n, 4, 16384) < 0)
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

void
proto_encode_describe_request (const struct proto_describe_request *m,
                               struct proto_wbuf *wb)
{
  proto_put_u64 (wb, m->start_after);
  proto_put_u32 (wb, m->max);
}

int
proto_decode_describe_request (const void *p, size_t len,
                               struct proto_describe_request *m)
{
  struct proto_rbuf rb;

  proto_rbuf_init (&rb, p, len);
  m->start_after = proto_get_u64 (&rb);
  m->max = proto_get_u32 (&rb);
  if (proto_rbuf_finish (&rb) < 0 || m->max == 0)
    return -EBADMSG;
  return 0;
}

void
proto_encode_describe (const struct proto_describe *m, struct proto_wbuf *wb)
{
  static const uint8_t reserved[7];
  uint32_t i;

  proto_put_u32 (wb, m->n);
  for (i = 0; i < m->n; ++i) {
    const struct proto_seg_desc *d = &m->segs[i];

    proto_put_u64 (wb, d->segment);
    proto_put_u64 (wb, d->volume);
    proto_put_u64 (wb, d->index);
    proto_put_u64 (wb, d->gen);
    proto_put_u64 (wb, d->epoch);
    proto_put_u8 (wb, d->state);
    proto_put_bytes (wb, reserved, sizeof reserved);
  }
  proto_put_u32 (wb, m->nfences);
  for (i = 0; i < m->nfences; ++i) {
    proto_put_u64 (wb, m->fences[i].volume);
    proto_put_u64 (wb, m->fences[i].epoch);
  }
}

/* One segment description; -EBADMSG if its reserved bytes are not zero
 * or it is not above PREV's id (the list is in ascending order).
 */
static int
get_seg_desc (struct proto_rbuf *rb, void *elem, void *prev)
{
  static const uint8_t zero[7];
  struct proto_seg_desc *d = elem;
  const struct proto_seg_desc *p = prev;
  uint8_t reserved[7];

  d->segment = proto_get_u64 (rb);
  d->volume = proto_get_u64 (rb);
  d->index = proto_get_u64 (rb);
  d->gen = proto_get_u64 (rb);
  d->epoch = proto_get_u64 (rb);
  d->state = proto_get_u8 (rb);
  proto_get_bytes (rb, reserved, sizeof reserved);
  if (memcmp (reserved, zero, sizeof zero) != 0 ||
      (p && d->segment <= p->segment))
    return -EBADMSG;
  return 0;
}

/* One fence of a SEG_DESCRIBE reply. */
static int
get_desc_fence (struct proto_rbuf *rb, void *elem, void *prev)
{
  struct proto_fence *f = elem;

  f->volume = proto_get_u64 (rb);
  f->epoch = proto_get_u64 (rb);
  return 0;
}

int
proto_decode_describe (const void *p, size_t len, struct proto_describe *m)
{
  struct proto_rbuf rb;
  void *segs = NULL, *fences = NULL;
  int r;

  memset (m, 0, sizeof *m);
  proto_rbuf_init (&rb, p, len);
  r = proto_get_list (&rb, PROTO_SEG_DESC_SIZE, PROTO_LIST_MAX, sizeof *m->segs,
                      get_seg_desc, &segs, &m->n);
  m->segs = segs;
  if (r == 0) {
    r = proto_get_list (&rb, 16, PROTO_DESCRIBE_FENCES_MAX, sizeof *m->fences,
                        get_desc_fence, &fences, &m->nfences);
    m->fences = fences;
  }
  if (r == 0)
    r = proto_rbuf_finish (&rb);
  if (r < 0)
    proto_describe_free (m);
  return r;
}

void
proto_describe_free (struct proto_describe *m)
{
  free (m->segs);
  free (m->fences);
  memset (m, 0, sizeof *m);
}

void
proto_encode_tables (const struct proto_tables *m, struct proto_wbuf *wb)
{
  proto_put_u64 (wb, m->version);
  if (m->len > 0)
    proto_put_bytes (wb, m->blob, m->len);
}

int
proto_decode_tables (const void *p, size_t len, struct proto_tables *m)
{
  uint64_t v;

  if (len < 8 || len - 8 > PROTO_TABLES_MAX)
    return -EBADMSG;
  memcpy (&v, p, 8);
  m->version = be64toh (v);
  m->len = len - 8;
  m->blob = m->len > 0 ? (const uint8_t *)p + 8 : NULL;
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
  uint64_t index;
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
  w.index = htobe64 (m->index);
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
  m->index = be64toh (w.index);
  return 0;
}

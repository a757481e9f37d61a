/* Growable write buffer and bounds-checked read cursor (see buf.h). */

#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "byteorder.h"
#include "buf.h"
#include "protocol.h"

/* Release the buffer's memory (accepts a zeroed or freed buffer). */
void
proto_wbuf_free (struct proto_wbuf *wb)
{
  free (wb->data);
  wb->data = NULL;
  wb->len = wb->cap = 0;
}

/* Make room for N more bytes; returns a pointer to them or NULL (and sets
 * the sticky error).  Metadata frames are bounded, so the buffer never
 * grows past PROTO_MAX_IO_PAYLOAD.
 */
static uint8_t *
wbuf_reserve (struct proto_wbuf *wb, size_t n)
{
  size_t need, cap;
  uint8_t *p;

  if (wb->err)
    return NULL;
  if (n > PROTO_MAX_IO_PAYLOAD || wb->len > PROTO_MAX_IO_PAYLOAD - n) {
    wb->err = -EMSGSIZE;
    return NULL;
  }
  need = wb->len + n;
  if (need > wb->cap) {
    cap = wb->cap ? wb->cap : 256;
    while (cap < need)
      cap *= 2;
    p = realloc (wb->data, cap);
    if (p == NULL) {
      wb->err = -ENOMEM;
      return NULL;
    }
    wb->data = p;
    wb->cap = cap;
  }
  p = wb->data + wb->len;
  wb->len += n;
  return p;
}

void
proto_put_u8 (struct proto_wbuf *wb, uint8_t v)
{
  uint8_t *p = wbuf_reserve (wb, 1);

  if (p)
    *p = v;
}

void
proto_put_u16 (struct proto_wbuf *wb, uint16_t v)
{
  uint8_t *p = wbuf_reserve (wb, 2);

  if (p)
    put_be16 (p, v);
}

void
proto_put_u32 (struct proto_wbuf *wb, uint32_t v)
{
  uint8_t *p = wbuf_reserve (wb, 4);

  if (p)
    put_be32 (p, v);
}

void
proto_put_u64 (struct proto_wbuf *wb, uint64_t v)
{
  uint8_t *p = wbuf_reserve (wb, 8);

  if (p)
    put_be64 (p, v);
}

void
proto_put_bytes (struct proto_wbuf *wb, const void *src, size_t n)
{
  uint8_t *p;

  if (n == 0)
    return;
  p = wbuf_reserve (wb, n);
  if (p)
    memcpy (p, src, n);
}

void
proto_put_str (struct proto_wbuf *wb, const char *s, size_t max)
{
  size_t n = strnlen (s, max + 1);

  if (n > max) {
    if (!wb->err)
      wb->err = -EMSGSIZE;
    return;
  }
  proto_put_u16 (wb, n);
  proto_put_bytes (wb, s, n);
}

void
proto_rbuf_init (struct proto_rbuf *rb, const void *p, size_t len)
{
  rb->p = p;
  rb->len = len;
  rb->pos = 0;
  rb->err = 0;
}

/* Take N bytes from the cursor: a pointer to them, or NULL (and the
 * sticky -EBADMSG) on underrun.
 */
static const uint8_t *
rbuf_take (struct proto_rbuf *rb, size_t n)
{
  const uint8_t *p;

  if (rb->err)
    return NULL;
  if (n > rb->len - rb->pos) {
    rb->err = -EBADMSG;
    return NULL;
  }
  p = rb->p + rb->pos;
  rb->pos += n;
  return p;
}

uint8_t
proto_get_u8 (struct proto_rbuf *rb)
{
  const uint8_t *p = rbuf_take (rb, 1);

  return p ? *p : 0;
}

uint16_t
proto_get_u16 (struct proto_rbuf *rb)
{
  const uint8_t *p = rbuf_take (rb, 2);

  return p ? get_be16 (p) : 0;
}

uint32_t
proto_get_u32 (struct proto_rbuf *rb)
{
  const uint8_t *p = rbuf_take (rb, 4);

  return p ? get_be32 (p) : 0;
}

uint64_t
proto_get_u64 (struct proto_rbuf *rb)
{
  const uint8_t *p = rbuf_take (rb, 8);

  return p ? get_be64 (p) : 0;
}

void
proto_get_bytes (struct proto_rbuf *rb, void *out, size_t n)
{
  const uint8_t *p = rbuf_take (rb, n);

  if (p)
    memcpy (out, p, n);
  else
    memset (out, 0, n);
}

const uint8_t *
proto_get_ref (struct proto_rbuf *rb, size_t n)
{
  return rbuf_take (rb, n);
}

void
proto_get_str (struct proto_rbuf *rb, char *out, size_t max)
{
  uint16_t n = proto_get_u16 (rb);
  const uint8_t *p;

  out[0] = '\0';
  if (rb->err)
    return;
  if (n > max) {
    rb->err = -EBADMSG;
    return;
  }
  p = rbuf_take (rb, n);
  if (!p)
    return;
  if (memchr (p, '\0', n) != NULL) {
    rb->err = -EBADMSG;
    return;
  }
  memcpy (out, p, n);
  out[n] = '\0';
}

size_t
proto_rbuf_left (const struct proto_rbuf *rb)
{
  return rb->err ? 0 : rb->len - rb->pos;
}

int
proto_rbuf_finish (const struct proto_rbuf *rb)
{
  if (rb->err)
    return rb->err;
  return rb->pos == rb->len ? 0 : -EBADMSG;
}

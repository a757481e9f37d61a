/* Encoders and decoders of message payloads (see protocol.h): the list
 * helpers every family shares (msg-internal.h) and the handshake.
 *
 * Decoders validate before they trust: every count is checked against the
 * bytes actually left in the payload before anything is allocated, every
 * string against its maximum, reserved bytes must be zero, and the whole
 * payload must be consumed.
 *
 * One file per message family, in the order of protocol.h's opcodes:
 * this one (shared list helpers, the handshake HELLO; AUTH's payload is
 * opaque, auth.h), msg-cluster.c (STATUS, REPAIR, SERVER_*),
 * msg-catalog.c (CATALOG_BACKUP), msg-volume.c (volumes, leases,
 * segment maps) and msg-segment.c (the SEG_* messages of storage
 * servers).
 */

#include <config.h>

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "msg-internal.h"
#include "protocol.h"

/* ---- Shared list helpers ---- */

/* Check a decoded count against the bytes left: N elements of at least
 * MIN bytes each must fit, and N must not exceed MAX.
 */
int
proto_count_fits (struct proto_rbuf *rb, uint32_t n, size_t min, uint32_t max)
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
int
proto_get_list (struct proto_rbuf *rb, size_t min, uint32_t max,
                size_t elemsize,
                int (*get) (struct proto_rbuf *rb, void *elem, void *prev),
                void **out, uint32_t *n)
{
  uint32_t i, count;
  uint8_t *a = NULL;

  *out = NULL;
  *n = 0;
  count = proto_get_u32 (rb);
  if (proto_count_fits (rb, count, min, max) < 0)
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
void
proto_put_segments (struct proto_wbuf *wb, uint32_t n, const uint64_t *segments)
{
  uint32_t i;

  proto_put_u32 (wb, n);
  for (i = 0; i < n; ++i)
    proto_put_u64 (wb, segments[i]);
}

int
proto_get_segments (struct proto_rbuf *rb, uint32_t *n, uint64_t **segments)
{
  uint32_t i, count;
  uint64_t *s;

  *n = 0;
  *segments = NULL;
  count = proto_get_u32 (rb);
  if (proto_count_fits (rb, count, 8, PROTO_LIST_MAX) < 0)
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

/* ---- Handshake: HELLO ---- */

void
proto_encode_hello (const struct proto_hello *m, struct proto_wbuf *wb)
{
  proto_put_u32 (wb, m->version);
  proto_put_u32 (wb, m->role);
  proto_put_bytes (wb, m->uuid, 16);
  /* One field: the storage server's incarnation or the MDS's epoch. */
  proto_put_u64 (wb, m->role == PROTO_ROLE_MDS ? m->mds_epoch : m->incarnation);
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
  if (m->role == PROTO_ROLE_MDS)
    m->mds_epoch = proto_get_u64 (&rb);
  else
    m->incarnation = proto_get_u64 (&rb);
  m->auth_len = proto_get_u16 (&rb);
  if (proto_get_u16 (&rb) != 0 || m->auth_len > PROTO_AUTH_MAX)
    return -EBADMSG;
  proto_get_bytes (&rb, m->auth, m->auth_len);
  return proto_rbuf_finish (&rb);
}

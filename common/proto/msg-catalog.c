/* Payloads of the catalog's own messages: CATALOG_BACKUP's request and
 * its reply, a chunk of the copy.  See messages.c for the decoders'
 * rules.
 */

#include <config.h>

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "buf.h"
#include "protocol.h"

/* Wire size of a chunk reply without its data. */
#define BACKUP_CHUNK_HEAD (8 + 8 + PROTO_BACKUP_SHA256_SIZE + 8 + 4)

void
proto_encode_backup_request (const struct proto_backup_request *m,
                             struct proto_wbuf *wb)
{
  proto_put_u64 (wb, m->backup_id);
  proto_put_u64 (wb, m->offset);
  proto_put_u32 (wb, m->max);
}

/* MAX out of 1..PROTO_BACKUP_CHUNK_MAX is malformed; the id and offset
 * are the MDS's to check against its backups.
 */
int
proto_decode_backup_request (const void *p, size_t len,
                             struct proto_backup_request *m)
{
  struct proto_rbuf rb;

  proto_rbuf_init (&rb, p, len);
  m->backup_id = proto_get_u64 (&rb);
  m->offset = proto_get_u64 (&rb);
  m->max = proto_get_u32 (&rb);
  if (rb.err == 0 && (m->max == 0 || m->max > PROTO_BACKUP_CHUNK_MAX))
    return -EBADMSG;
  return proto_rbuf_finish (&rb);
}

void
proto_encode_backup_chunk (const struct proto_backup_chunk *m,
                           struct proto_wbuf *wb)
{
  uint32_t n = m->len <= PROTO_BACKUP_CHUNK_MAX ? m->len : 0;

  proto_put_u64 (wb, m->backup_id);
  proto_put_u64 (wb, m->size);
  proto_put_bytes (wb, m->sha256, PROTO_BACKUP_SHA256_SIZE);
  proto_put_u64 (wb, m->offset);
  proto_put_u32 (wb, n);
  proto_put_bytes (wb, m->data, n);
}

/* The chunk must lie inside the copy (OFFSET + LEN <= SIZE, no
 * overflow), LEN at most PROTO_BACKUP_CHUNK_MAX and exactly the bytes
 * left; the id of a backup is never 0.  M->DATA points into P.
 */
int
proto_decode_backup_chunk (const void *p, size_t len,
                           struct proto_backup_chunk *m)
{
  struct proto_rbuf rb;

  memset (m, 0, sizeof *m);
  proto_rbuf_init (&rb, p, len);
  m->backup_id = proto_get_u64 (&rb);
  m->size = proto_get_u64 (&rb);
  proto_get_bytes (&rb, m->sha256, PROTO_BACKUP_SHA256_SIZE);
  m->offset = proto_get_u64 (&rb);
  m->len = proto_get_u32 (&rb);
  if (rb.err)
    return -EBADMSG;
  if (m->backup_id == 0 || m->len > PROTO_BACKUP_CHUNK_MAX ||
      m->len != len - BACKUP_CHUNK_HEAD || m->offset > m->size ||
      m->len > m->size - m->offset) {
    m->len = 0;
    return -EBADMSG;
  }
  m->data = m->len ? (const uint8_t *)p + BACKUP_CHUNK_HEAD : NULL;
  return 0;
}

/* Payloads of the catalog's own messages: CATALOG_BACKUP's request and
 * its reply, a chunk of the copy; REPL_PULL's request and its reply,
 * chunks of change batches.  See messages.c for the decoders' rules.
 */

#include <config.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
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

void
proto_encode_repl_pull (const struct proto_repl_pull *m, struct proto_wbuf *wb)
{
  proto_put_u64 (wb, m->after);
  proto_put_u32 (wb, m->have);
  proto_put_u32 (wb, m->max);
  proto_put_u32 (wb, m->wait_ms);
  proto_put_str (wb, m->name, PROTO_NAME_MAX);
}

/* MAX out of 1..PROTO_REPL_CHUNK_MAX, WAIT_MS over
 * PROTO_REPL_WAIT_MAX_MS or an empty NAME is malformed.
 */
int
proto_decode_repl_pull (const void *p, size_t len, struct proto_repl_pull *m)
{
  struct proto_rbuf rb;

  proto_rbuf_init (&rb, p, len);
  m->after = proto_get_u64 (&rb);
  m->have = proto_get_u32 (&rb);
  m->max = proto_get_u32 (&rb);
  m->wait_ms = proto_get_u32 (&rb);
  proto_get_str (&rb, m->name, PROTO_NAME_MAX);
  if (rb.err == 0 &&
      (m->max == 0 || m->max > PROTO_REPL_CHUNK_MAX ||
       m->wait_ms > PROTO_REPL_WAIT_MAX_MS || m->name[0] == '\0'))
    return -EBADMSG;
  return proto_rbuf_finish (&rb);
}

void
proto_encode_repl_reply_head (uint64_t published, uint32_t n,
                              struct proto_wbuf *wb)
{
  proto_put_u64 (wb, published);
  proto_put_u32 (wb, n);
}

void
proto_encode_repl_chunk (const struct proto_repl_chunk *c,
                         struct proto_wbuf *wb)
{
  proto_put_u64 (wb, c->seq);
  proto_put_u32 (wb, c->total);
  proto_put_u32 (wb, c->offset);
  proto_put_u32 (wb, c->len);
  proto_put_bytes (wb, c->data, c->len);
}

void
proto_repl_reply_free (struct proto_repl_reply *m)
{
  free (m->chunks);
  m->chunks = NULL;
  m->n = 0;
}

/* Each chunk must lie inside its batch (OFFSET + LEN <= TOTAL, no
 * overflow, LEN > 0 unless TOTAL is 0), a sequence must not be 0, and
 * chunks must follow each other: the first may start anywhere in its
 * batch (where the standby stopped); a chunk of the same sequence starts
 * where the last ended; a new sequence starts at offset 0, only once
 * the last one is complete, and is the next one.  Chunk data points
 * into P.
 */
int
proto_decode_repl_reply (const void *p, size_t len, struct proto_repl_reply *m)
{
  struct proto_rbuf rb;
  uint32_t i;
  uint64_t seq = 0;
  uint32_t end = 0, total = 0;

  memset (m, 0, sizeof *m);
  proto_rbuf_init (&rb, p, len);
  m->published = proto_get_u64 (&rb);
  m->n = proto_get_u32 (&rb);
  if (rb.err || m->n > proto_rbuf_left (&rb) / PROTO_REPL_CHUNK_HEAD) {
    m->n = 0;
    return -EBADMSG;
  }
  if (m->n > 0) {
    m->chunks = calloc (m->n, sizeof *m->chunks);
    if (m->chunks == NULL) {
      m->n = 0;
      return -ENOMEM;
    }
  }
  for (i = 0; i < m->n; i++) {
    struct proto_repl_chunk *c = &m->chunks[i];

    c->seq = proto_get_u64 (&rb);
    c->total = proto_get_u32 (&rb);
    c->offset = proto_get_u32 (&rb);
    c->len = proto_get_u32 (&rb);
    if (rb.err || c->seq == 0 || c->len > proto_rbuf_left (&rb) ||
        c->offset > c->total || c->len > c->total - c->offset ||
        (c->len == 0 && c->total != 0))
      goto bad;
    if (i > 0 && c->seq == seq) {
      if (c->offset != end || c->total != total)
        goto bad;
    }
    else if (i > 0 && (c->offset != 0 || end != total || c->seq != seq + 1))
      goto bad;
    c->data = proto_get_ref (&rb, c->len);
    seq = c->seq;
    end = c->offset + c->len;
    total = c->total;
  }
  if (proto_rbuf_finish (&rb) < 0)
    goto bad;
  return 0;

bad:
  proto_repl_reply_free (m);
  return -EBADMSG;
}

/* Growable write buffer and bounds-checked read cursor for wire messages.
 *
 * Errors are sticky: after the first failure every further call is a
 * no-op, and the caller checks ERR once at the end.
 */

#ifndef TESSERA_PROTO_BUF_H
#define TESSERA_PROTO_BUF_H

#include <stddef.h>
#include <stdint.h>

/* Write buffer.  Zero-initialize it; proto_wbuf_free releases DATA.
 * DATA is owned by the buffer until the caller takes it (then set DATA to
 * NULL).  ERR is 0 or -ENOMEM (or -EMSGSIZE past PROTO_MAX_META_PAYLOAD).
 */
struct proto_wbuf {
  uint8_t *data;
  size_t len;
  size_t cap;
  int err;
};

extern void proto_wbuf_free (struct proto_wbuf *wb);
extern void proto_put_u8 (struct proto_wbuf *wb, uint8_t v);
extern void proto_put_u16 (struct proto_wbuf *wb, uint16_t v);
extern void proto_put_u32 (struct proto_wbuf *wb, uint32_t v);
extern void proto_put_u64 (struct proto_wbuf *wb, uint64_t v);
extern void proto_put_bytes (struct proto_wbuf *wb, const void *p, size_t n);
/* A string: u16 length + bytes (no NUL).  Longer than MAX: -EMSGSIZE. */
extern void proto_put_str (struct proto_wbuf *wb, const char *s, size_t max);

/* Read cursor over LEN bytes at P (not owned).  ERR becomes -EBADMSG on
 * any underrun or bad string; reads then return zeros.
 */
struct proto_rbuf {
  const uint8_t *p;
  size_t len;
  size_t pos;
  int err;
};

extern void proto_rbuf_init (struct proto_rbuf *rb, const void *p, size_t len);
extern uint8_t proto_get_u8 (struct proto_rbuf *rb);
extern uint16_t proto_get_u16 (struct proto_rbuf *rb);
extern uint32_t proto_get_u32 (struct proto_rbuf *rb);
extern uint64_t proto_get_u64 (struct proto_rbuf *rb);
extern void proto_get_bytes (struct proto_rbuf *rb, void *out, size_t n);
/* The next N bytes where they are (not copied), or NULL (error set). */
extern const uint8_t *proto_get_ref (struct proto_rbuf *rb, size_t n);
/* Reads a string into OUT (MAX + 1 bytes), NUL-terminated.  A length over
 * MAX or an embedded NUL sets -EBADMSG.
 */
extern void proto_get_str (struct proto_rbuf *rb, char *out, size_t max);
/* Bytes not yet read. */
extern size_t proto_rbuf_left (const struct proto_rbuf *rb);
/* 0 if no error and every byte was read, else -EBADMSG. */
extern int proto_rbuf_finish (const struct proto_rbuf *rb);

#endif /* TESSERA_PROTO_BUF_H */

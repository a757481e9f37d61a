/* List helpers the message codecs share (messages.c); for the msg-*.c
 * files of common/proto only.  Each works on a cursor of buf.h and keeps
 * its sticky error.
 */

#ifndef TESSERA_PROTO_MSG_INTERNAL_H
#define TESSERA_PROTO_MSG_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Check a decoded count against the bytes left in RB: N elements of at
 * least MIN bytes each must fit, and N must not exceed MAX.  Returns 0,
 * RB's earlier error, or -EBADMSG (then also RB's error).
 */
extern int proto_count_fits (struct proto_rbuf *rb, uint32_t n, size_t min,
                             uint32_t max);

/* Decode a u32 count and that many elements of ELEMSIZE bytes in memory
 * (at least MIN on the wire, at most MAX of them) with GET into a
 * calloc'd array (the caller frees *OUT).  GET returns 0 or -EBADMSG;
 * PREV is the element before, NULL for the first.  Returns 0, -EBADMSG
 * or -ENOMEM; on error nothing is left allocated, and *OUT and *N are
 * NULL and 0.
 */
extern int proto_get_list (struct proto_rbuf *rb, size_t min, uint32_t max,
                           size_t elemsize,
                           int (*get) (struct proto_rbuf *rb, void *elem,
                                       void *prev),
                           void **out, uint32_t *n);

/* A u32 count then that many u64 segment ids (at most PROTO_LIST_MAX).
 * proto_get_segments allocates *SEGMENTS (NULL when the count is 0; the
 * caller frees it) and returns 0, -EBADMSG or -ENOMEM.
 */
extern void proto_put_segments (struct proto_wbuf *wb, uint32_t n,
                                const uint64_t *segments);
extern int proto_get_segments (struct proto_rbuf *rb, uint32_t *n,
                               uint64_t **segments);

#endif /* TESSERA_PROTO_MSG_INTERNAL_H */

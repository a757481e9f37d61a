/* Read and write whole buffers on blocking fds, retrying short transfers
 * and EINTR.
 */

#ifndef TESSERA_UTILS_FULL_RW_H
#define TESSERA_UTILS_FULL_RW_H

#include <stddef.h>

/* Returns 0 when all N bytes moved, -EPIPE on end of file before that
 * (full_read), or -errno.
 */
extern int full_read (int fd, void *buf, size_t n);
extern int full_write (int fd, const void *buf, size_t n);

#endif /* TESSERA_UTILS_FULL_RW_H */

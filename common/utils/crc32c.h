/* CRC-32C (Castagnoli), as used by iSCSI and ext4: used to compare
 * replicas block by block (SEG_HASH) and to check on-disk records.
 */

#ifndef TESSERA_UTILS_CRC32C_H
#define TESSERA_UTILS_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continue a CRC-32C over LEN bytes at BUF.  Start with CRC = 0; the
 * result of one call is the CRC to pass to the next.  crc32c (0, "123456789",
 * 9) == 0xe3069283.  Thread-safe.
 */
extern uint32_t crc32c (uint32_t crc, const void *buf, size_t len);

#endif /* TESSERA_UTILS_CRC32C_H */

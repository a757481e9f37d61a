/* Parsing of sizes and numbers from the command line and configuration. */

#ifndef TESSERA_UTILS_PARSE_H
#define TESSERA_UTILS_PARSE_H

#include <stddef.h>
#include <stdint.h>

/* Parse a size: decimal digits optionally followed by one suffix
 * b (512 bytes), k/K, M, G, T, P, E (powers of 1024), optionally followed
 * by "iB" or "B" ("4G", "512M", "1T", "64KiB", "4096").
 * Returns 0 and sets *OUT, or:
 *   -EINVAL  empty, no digits, a sign, junk after the number, unknown suffix;
 *   -ERANGE  the value does not fit in 63 bits.
 */
extern int parse_size (const char *s, uint64_t *out);

/* Parse an unsigned decimal number in [MIN, MAX].  Returns 0, -EINVAL
 * (not a number) or -ERANGE (out of range).
 */
extern int parse_uint64 (const char *s, uint64_t min, uint64_t max,
                         uint64_t *out);
extern int parse_uint32 (const char *s, uint32_t min, uint32_t max,
                         uint32_t *out);

/* Format a byte count for humans ("4.0G", "512M", "100") into BUF. */
extern void format_size (uint64_t bytes, char *buf, size_t len);

/* Uuids: 16 random bytes (getrandom); "8-4-4-4-12" text form into BUF
 * (at least 37 bytes).  uuid_is_zero tells an unset uuid.
 */
extern int uuid_generate_random (uint8_t uuid[16]);
extern void uuid_format (const uint8_t uuid[16], char *buf);
extern int uuid_is_zero (const uint8_t uuid[16]);

#endif /* TESSERA_UTILS_PARSE_H */

/* Big-endian (network order) stores and loads at any alignment: the
 * order of the wire protocol, the catalog's keys and records, and the
 * storage server's on-disk formats.
 */

#ifndef TESSERA_BYTEORDER_H
#define TESSERA_BYTEORDER_H

#include <endian.h>
#include <stdint.h>
#include <string.h>

static inline void
put_be16 (uint8_t *p, uint16_t v)
{
  v = htobe16 (v);
  memcpy (p, &v, sizeof v);
}

static inline void
put_be32 (uint8_t *p, uint32_t v)
{
  v = htobe32 (v);
  memcpy (p, &v, sizeof v);
}

static inline void
put_be64 (uint8_t *p, uint64_t v)
{
  v = htobe64 (v);
  memcpy (p, &v, sizeof v);
}

static inline uint16_t
get_be16 (const uint8_t *p)
{
  uint16_t v;

  memcpy (&v, p, sizeof v);
  return be16toh (v);
}

static inline uint32_t
get_be32 (const uint8_t *p)
{
  uint32_t v;

  memcpy (&v, p, sizeof v);
  return be32toh (v);
}

static inline uint64_t
get_be64 (const uint8_t *p)
{
  uint64_t v;

  memcpy (&v, p, sizeof v);
  return be64toh (v);
}

#endif /* TESSERA_BYTEORDER_H */

/* CRC-32C, slicing by 8 (see crc32c.h). */

#include <config.h>

#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "crc32c.h"

#define POLY 0x82f63b78u /* reflected Castagnoli polynomial */

static uint32_t table[8][256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void
make_table (void)
{
  uint32_t i, j, c;

  for (i = 0; i < 256; ++i) {
    c = i;
    for (j = 0; j < 8; ++j)
      c = c & 1 ? (c >> 1) ^ POLY : c >> 1;
    table[0][i] = c;
  }
  for (i = 0; i < 256; ++i)
    for (j = 1; j < 8; ++j)
      table[j][i] = (table[j - 1][i] >> 8) ^ table[0][table[j - 1][i] & 0xff];
}

uint32_t
crc32c (uint32_t crc, const void *buf, size_t len)
{
  const uint8_t *p = buf;
  uint64_t w;

  pthread_once (&table_once, make_table);
  crc = ~crc;
  /* Eight bytes at a time (little-endian hosts), then the tail. */
  while (len >= 8 && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__) {
    memcpy (&w, p, 8);
    w ^= crc;
    crc = table[7][w & 0xff] ^ table[6][(w >> 8) & 0xff] ^
          table[5][(w >> 16) & 0xff] ^ table[4][(w >> 24) & 0xff] ^
          table[3][(w >> 32) & 0xff] ^ table[2][(w >> 40) & 0xff] ^
          table[1][(w >> 48) & 0xff] ^ table[0][w >> 56];
    p += 8;
    len -= 8;
  }
  while (len--)
    crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xff];
  return ~crc;
}

/* The superblock and the clean-shutdown marker: their encoding and the
 * checks a start makes of them (store.c reads and writes the files).
 * Pure functions of their arguments: part of libstoresrv.la, so that the
 * unit test (tests/unit/test-superblock.c) and the fuzzer
 * (tests/fuzz/fuzz-superblock.c) link them alone.
 *
 * The superblock is SS_SB_SIZE bytes, big-endian:
 *   0   magic "TESSSTOR"        8
 *   8   format version u32      (SS_SB_VERSION)
 *   12  flags u32               (SB_FORMATTED)
 *   16  server uuid             16
 *   32  cluster uuid            16 (zero until formatted)
 *   48  segment size u32        (zero until formatted)
 *   52  reserved u32            (zero)
 *   56  capacity u64            (bytes; whole slots once formatted)
 *   64  index id u64            (version 2; zero until formatted)
 *   72  reserved                (zero) up to SS_SB_SIZE - 4
 *   508 crc32c u32 of bytes 0..507
 * The index id is a random non-zero number drawn when the store is
 * formatted and also kept in the index (index.c, "meta"), so that an
 * index that is missing, empty or another store's is refused
 * (guard.c).  Version 1 had no index id (bytes 64..71 zero); such a
 * store is upgraded to version 2 at its first start (guard.c).
 *
 * DIR/clean, the clean-shutdown marker, is SS_CLEAN_SIZE bytes, big-endian:
 *   0   magic "TESSCLEN"        8
 *   8   index id u64            (the superblock's; 0 before it had one)
 *   16  index seq u64           (the index's commit count at the stop)
 *   24  reserved u32            (zero)
 *   28  crc32c u32 of bytes 0..27
 * A clean stop writes it; a start reads and removes it (store.c).
 */

#include <config.h>

#include <endian.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "crc32c.h"
#include "log.h"
#include "parse.h"

#include "internal.h"

#define SB_MAGIC "TESSSTOR"
#define SB_FORMATTED 0x1
#define CLEAN_MAGIC "TESSCLEN"

/* True if SEGMENT_SIZE is a power of two in the allowed range. */
int
ss_segment_size_valid (uint32_t segment_size)
{
  return segment_size >= SS_MIN_SEGMENT_SIZE &&
         segment_size <= SS_MAX_SEGMENT_SIZE &&
         (segment_size & (segment_size - 1)) == 0;
}

/* Encode ST's superblock into BUF (SS_SB_SIZE bytes). */
void
ss_sb_encode (const struct ss_store *st, uint8_t *buf)
{
  uint32_t v32;
  uint64_t v64;

  memset (buf, 0, SS_SB_SIZE);
  memcpy (buf, SB_MAGIC, 8);
  v32 = htobe32 (st->sb_version);
  memcpy (buf + 8, &v32, 4);
  v32 = htobe32 (st->formatted ? SB_FORMATTED : 0);
  memcpy (buf + 12, &v32, 4);
  memcpy (buf + 16, st->uuid, 16);
  memcpy (buf + 32, st->cluster_uuid, 16);
  v32 = htobe32 (st->segment_size);
  memcpy (buf + 48, &v32, 4);
  v64 = htobe64 (st->capacity);
  memcpy (buf + 56, &v64, 8);
  v64 = htobe64 (st->index_id);
  memcpy (buf + 64, &v64, 8);
  v32 = htobe32 (crc32c (0, buf, SS_SB_SIZE - 4));
  memcpy (buf + SS_SB_SIZE - 4, &v32, 4);
}

/* Decode and check the superblock in BUF into ST.  Returns 0 or
 * -EINVAL (corrupt) or -EPROTONOSUPPORT (newer format), logging why.
 */
int
ss_sb_decode (struct ss_store *st, const uint8_t *buf)
{
  uint32_t v32, flags, version;
  uint64_t v64;
  size_t i;

  memcpy (&v32, buf + SS_SB_SIZE - 4, 4);
  if (memcmp (buf, SB_MAGIC, 8) != 0 ||
      be32toh (v32) != crc32c (0, buf, SS_SB_SIZE - 4)) {
    log_error ("superblock: %s/%s: bad magic or checksum", st->dir, SS_SB_NAME);
    return -EINVAL;
  }
  memcpy (&v32, buf + 8, 4);
  version = be32toh (v32);
  if (version != SS_SB_VERSION && version != SS_SB_VERSION_NO_INDEX_ID) {
    log_error ("superblock: %s/%s: format version %u is not supported "
               "(this program writes %u)",
               st->dir, SS_SB_NAME, version, SS_SB_VERSION);
    return -EPROTONOSUPPORT;
  }
  memcpy (&v32, buf + 12, 4);
  flags = be32toh (v32);
  memcpy (st->uuid, buf + 16, 16);
  memcpy (st->cluster_uuid, buf + 32, 16);
  memcpy (&v32, buf + 48, 4);
  st->segment_size = be32toh (v32);
  memcpy (&v64, buf + 56, 8);
  st->capacity = be64toh (v64);
  memcpy (&v64, buf + 64, 8);
  st->index_id = be64toh (v64);
  st->formatted = flags & SB_FORMATTED;
  st->sb_version = version;

  for (i = 52; i < 56; i++)
    if (buf[i])
      goto corrupt;
  for (i = 72; i < SS_SB_SIZE - 4; i++)
    if (buf[i])
      goto corrupt;
  if ((flags & ~SB_FORMATTED) || uuid_is_zero (st->uuid))
    goto corrupt;
  /* Version 1 has no index id; version 2 has one once formatted. */
  if (version == SS_SB_VERSION_NO_INDEX_ID
          ? st->index_id != 0
          : st->formatted != (st->index_id != 0))
    goto corrupt;
  if (st->formatted) {
    if (!ss_segment_size_valid (st->segment_size) ||
        uuid_is_zero (st->cluster_uuid) || st->capacity < st->segment_size ||
        st->capacity % st->segment_size != 0 ||
        st->capacity / st->segment_size >= UINT32_MAX)
      goto corrupt;
    st->nslots = st->capacity / st->segment_size;
  }
  return 0;

corrupt:
  log_error ("superblock: %s/%s: inconsistent fields", st->dir, SS_SB_NAME);
  return -EINVAL;
}

/* Encode a clean-shutdown marker into BUF (SS_CLEAN_SIZE bytes). */
void
ss_clean_encode (uint64_t index_id, uint64_t seq, uint8_t *buf)
{
  uint64_t v64;
  uint32_t v32;

  memset (buf, 0, SS_CLEAN_SIZE);
  memcpy (buf, CLEAN_MAGIC, 8);
  v64 = htobe64 (index_id);
  memcpy (buf + 8, &v64, 8);
  v64 = htobe64 (seq);
  memcpy (buf + 16, &v64, 8);
  v32 = htobe32 (crc32c (0, buf, SS_CLEAN_SIZE - 4));
  memcpy (buf + SS_CLEAN_SIZE - 4, &v32, 4);
}

/* Decode the marker in BUF (LEN bytes) into *INDEX_ID and *SEQ.
 * Returns 0, or -EINVAL if it is not a marker this program wrote.
 */
int
ss_clean_decode (const uint8_t *buf, size_t len, uint64_t *index_id,
                 uint64_t *seq)
{
  uint64_t v64;
  uint32_t v32;

  if (len != SS_CLEAN_SIZE || memcmp (buf, CLEAN_MAGIC, 8) != 0)
    return -EINVAL;
  memcpy (&v32, buf + SS_CLEAN_SIZE - 4, 4);
  if (be32toh (v32) != crc32c (0, buf, SS_CLEAN_SIZE - 4))
    return -EINVAL;
  memcpy (&v32, buf + 24, 4);
  if (v32 != 0)
    return -EINVAL;
  memcpy (&v64, buf + 8, 8);
  *index_id = be64toh (v64);
  memcpy (&v64, buf + 16, 8);
  *seq = be64toh (v64);
  return 0;
}

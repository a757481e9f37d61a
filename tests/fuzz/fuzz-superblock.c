/* Fuzz the storage server's superblock decoder (ss_sb_decode in
 * storesrv/superblock.c), which checks DIR/superblock at start-up, and
 * the clean-shutdown marker's (ss_clean_decode), which reads DIR/clean.
 * Links libstoresrv.la, where they live, and nothing else of the daemon.
 *
 * Input: exactly SS_SB_SIZE (512) bytes are decoded as they are,
 * checksum included.  Any other size is cut or zero-padded to
 * SS_SB_SIZE - 4 bytes and given a correct CRC-32C, so that the fuzzer
 * gets past the checksum to the field checks.  Promises checked
 * (superblock.c):
 *  - ss_sb_decode returns 0, -EINVAL or -EPROTONOSUPPORT;
 *  - what it accepts is canonical: ss_sb_encode gives back the same 512
 *    bytes (version included: 1 or 2);
 *  - an accepted formatted store has a valid segment size and a capacity
 *    of NSLOTS (>= 1, < UINT32_MAX) whole segments;
 *  - an index id only in a formatted version-2 store, and always there.
 * The input as it is also goes to ss_clean_decode, which must return 0
 * or -EINVAL, and accept only what ss_clean_encode gives back byte for
 * byte.
 */

#include <config.h>

#include <endian.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "crc32c.h"
#include "parse.h"

#include "internal.h"

#include "fuzz.h"

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  struct ss_store st;
  uint8_t buf[SS_SB_SIZE], again[SS_SB_SIZE];
  uint32_t crc;
  int r;

  if (size == SS_SB_SIZE)
    memcpy (buf, data, SS_SB_SIZE);
  else {
    memset (buf, 0, SS_SB_SIZE);
    memcpy (buf, data, size < SS_SB_SIZE - 4 ? size : SS_SB_SIZE - 4);
    crc = htobe32 (crc32c (0, buf, SS_SB_SIZE - 4));
    memcpy (buf + SS_SB_SIZE - 4, &crc, 4);
  }
  uint8_t cbuf[SS_CLEAN_SIZE];
  uint64_t cid, cseq;

  r = ss_clean_decode (data, size, &cid, &cseq);
  FUZZ_CHECK (r == 0 || r == -EINVAL, "ss_clean_decode returned %d", r);
  if (r == 0) {
    ss_clean_encode (cid, cseq, cbuf);
    FUZZ_CHECK (size == SS_CLEAN_SIZE &&
                    memcmp (data, cbuf, SS_CLEAN_SIZE) == 0,
                "ss_clean_decode accepted a marker that encodes differently");
  }

  memset (&st, 0, sizeof st);
  st.dir = (char *)"fuzz";
  st.dir_fd = st.data_fd = -1;
  r = ss_sb_decode (&st, buf);
  FUZZ_CHECK (r == 0 || r == -EINVAL || r == -EPROTONOSUPPORT,
              "ss_sb_decode returned %d", r);
  if (r < 0)
    return 0;
  ss_sb_encode (&st, again);
  FUZZ_CHECK (memcmp (buf, again, SS_SB_SIZE) == 0,
              "ss_sb_decode accepted a superblock that encodes differently");
  FUZZ_CHECK (!uuid_is_zero (st.uuid), "accepted a zero server uuid");
  FUZZ_CHECK (st.sb_version == SS_SB_VERSION ||
                  st.sb_version == SS_SB_VERSION_NO_INDEX_ID,
              "accepted version %u", st.sb_version);
  FUZZ_CHECK ((st.index_id != 0) ==
                  (st.formatted && st.sb_version == SS_SB_VERSION),
              "accepted index id %lu in a %s version %u superblock",
              (unsigned long)st.index_id,
              st.formatted ? "formatted" : "unformatted", st.sb_version);
  if (st.formatted) {
    FUZZ_CHECK (ss_segment_size_valid (st.segment_size),
                "accepted segment size %u", st.segment_size);
    FUZZ_CHECK (st.nslots >= 1 && st.nslots < UINT32_MAX &&
                    (uint64_t)st.nslots * st.segment_size == st.capacity,
                "accepted capacity %lu with %u slots of %u",
                (unsigned long)st.capacity, st.nslots, st.segment_size);
  }
  return 0;
}

#ifdef FUZZ_SEEDS
int
fuzz_make_seeds (const char *dir)
{
  static const uint8_t u1[16] = { 0x11, 0x22, 0x33, 0x44, 1, 2,  3,  4,
                                  5,    6,    7,    8,    9, 10, 11, 12 };
  static const uint8_t u2[16] = { 0xca, 0xfe, 0xba, 0xbe, 4, 3, 2, 1,
                                  0,    0,    0,    0,    0, 0, 0, 1 };
  struct ss_store st;
  uint8_t buf[SS_SB_SIZE];
  int r = 0;

  memset (&st, 0, sizeof st);
  st.sb_version = SS_SB_VERSION;
  memcpy (st.uuid, u1, 16);
  st.capacity = 10ull << 30;
  ss_sb_encode (&st, buf);
  r |= fuzz_write_seed (dir, "unformatted", buf, SS_SB_SIZE);
  /* The same, short: the harness recomputes the checksum. */
  r |= fuzz_write_seed (dir, "unformatted-nocrc", buf, 64);

  st.formatted = true;
  memcpy (st.cluster_uuid, u2, 16);
  st.segment_size = 4 << 20;
  st.capacity = 2560ull * (4 << 20);
  st.index_id = 0x0123456789abcdefull;
  ss_sb_encode (&st, buf);
  r |= fuzz_write_seed (dir, "formatted", buf, SS_SB_SIZE);
  r |= fuzz_write_seed (dir, "formatted-nocrc", buf, 72);
  /* Version 1: no index id. */
  st.sb_version = SS_SB_VERSION_NO_INDEX_ID;
  st.index_id = 0;
  ss_sb_encode (&st, buf);
  r |= fuzz_write_seed (dir, "formatted-v1", buf, SS_SB_SIZE);
  r |= fuzz_write_seed (dir, "formatted-v1-nocrc", buf, 72);
  st.sb_version = SS_SB_VERSION;
  st.index_id = 1;

  st.segment_size = SS_MIN_SEGMENT_SIZE;
  st.capacity = SS_MIN_SEGMENT_SIZE;
  ss_sb_encode (&st, buf);
  r |= fuzz_write_seed (dir, "formatted-one-slot", buf, SS_SB_SIZE);
  st.segment_size = SS_MAX_SEGMENT_SIZE;
  st.capacity = (uint64_t)SS_MAX_SEGMENT_SIZE * (UINT32_MAX - 1);
  ss_sb_encode (&st, buf);
  r |= fuzz_write_seed (dir, "formatted-max-nocrc", buf, 72);

  /* Clean-shutdown markers. */
  ss_clean_encode (0x0123456789abcdefull, 42, buf);
  r |= fuzz_write_seed (dir, "clean", buf, SS_CLEAN_SIZE);
  ss_clean_encode (0, 0, buf);
  r |= fuzz_write_seed (dir, "clean-zero", buf, SS_CLEAN_SIZE);
  return r ? -1 : 0;
}
#endif /* FUZZ_SEEDS */

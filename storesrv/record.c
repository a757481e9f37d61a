/* The segment index's record codec: what index.c stores in LMDB for
 * each segment, as bytes.  The key is the segment id (u64 BE); the value
 * is, big-endian:
 *   0   slot u32
 *   4   volume u64
 *   12  last epoch u64       (the last epoch that wrote the segment)
 *   20  state u8             (SS_SEG_STATE_*)
 *   21  generation u64       (the replica-set generation, SEG_SET_GEN)
 *   29  index u64            (the segment's index in its volume;
 *                             SS_INDEX_NONE: not known)
 * SS_INDEX_REC_SIZE (37) bytes.  Records written before indexes existed
 * have SS_INDEX_V2_REC_SIZE (29) bytes and read as index SS_INDEX_NONE;
 * those written before generations existed have SS_INDEX_OLD_REC_SIZE
 * (21) bytes and read as generation 0 too.  A record is rewritten at
 * the full size whenever it changes.
 *
 * Pure functions of their arguments: part of libstoresrv.la, so that the
 * unit test (tests/unit/test-record.c) links them alone.
 */

#include <config.h>

#include <endian.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "internal.h"

/* Encode REC's value (not its segment id, the key) into BUF
 * (SS_INDEX_REC_SIZE bytes).
 */
void
ss_index_rec_encode (const struct ss_index_rec *rec, uint8_t *buf)
{
  uint32_t v32 = htobe32 (rec->slot);
  uint64_t v64;

  memcpy (buf, &v32, 4);
  v64 = htobe64 (rec->volume);
  memcpy (buf + 4, &v64, 8);
  v64 = htobe64 (rec->epoch);
  memcpy (buf + 12, &v64, 8);
  buf[20] = rec->state;
  v64 = htobe64 (rec->gen);
  memcpy (buf + 21, &v64, 8);
  v64 = htobe64 (rec->index);
  memcpy (buf + 29, &v64, 8);
}

/* Decode the record with key KEY (KEYLEN bytes) and value VAL (VALLEN
 * bytes) into *REC.  Returns 0, or -EINVAL if the key is not 8 bytes or
 * the value not SS_INDEX_REC_SIZE, SS_INDEX_V2_REC_SIZE or
 * SS_INDEX_OLD_REC_SIZE bytes (*REC is then untouched).
 */
int
ss_index_rec_decode (const void *key, size_t keylen, const void *val,
                     size_t vallen, struct ss_index_rec *rec)
{
  const uint8_t *v = val;
  uint64_t v64;
  uint32_t v32;

  if (keylen != 8 ||
      (vallen != SS_INDEX_REC_SIZE && vallen != SS_INDEX_V2_REC_SIZE &&
       vallen != SS_INDEX_OLD_REC_SIZE))
    return -EINVAL;
  memcpy (&v64, key, 8);
  rec->segment = be64toh (v64);
  memcpy (&v32, v, 4);
  rec->slot = be32toh (v32);
  memcpy (&v64, v + 4, 8);
  rec->volume = be64toh (v64);
  memcpy (&v64, v + 12, 8);
  rec->epoch = be64toh (v64);
  rec->state = v[20];
  rec->gen = 0;
  rec->index = SS_INDEX_NONE;
  if (vallen >= SS_INDEX_V2_REC_SIZE) {
    memcpy (&v64, v + 21, 8);
    rec->gen = be64toh (v64);
  }
  if (vallen == SS_INDEX_REC_SIZE) {
    memcpy (&v64, v + 29, 8);
    rec->index = be64toh (v64);
  }
  return 0;
}

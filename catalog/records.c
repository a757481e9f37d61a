/* Record codecs: the fixed binary layouts of the catalog's values.
 *
 * Every record starts with CATALOG_RECORD_VERSION; all integers are
 * big-endian; reserved bytes are written as zero.  Decoders check the
 * exact length and every range before filling the caller's struct, and
 * answer anything else with -EIO and a debug line: a corrupt record must
 * never crash the MDS.
 *
 * cluster (28 bytes):
 *   0 version  1 reserved[3]  4 format_version u32  8 segment_size u32
 *   12 uuid[16]
 * server (32 + address + zone bytes, + 8 if index_seq is not 0):
 *   0 version  1 state u8  2 address length u16  4 zone length u8
 *   5 reserved[3]  8 uuid[16]  24 capacity u64  32 address  zone
 *   [index_seq u64] (records without it, such as those written before
 *   it existed, decode as index_seq 0)
 * volume (48 + name bytes):
 *   0 version  1 name length u8  2 reserved[2]  4 replicas u32
 *   8 flags u32  12 min_copies u32  16 size u64  24 epoch u64
 *   32 segments u64  40 clean_epoch u64  48 name
 *   (min_copies was reserved, so zero, in records written before it
 *   existed: 0 decodes as CATALOG_MIN_COPIES_DEFAULT (replicas))
 * segment (24 + 8 * nreplicas bytes, + 8 with SEGMENT_HAS_INDEX):
 *   0 version  1 nreplicas u8  2 flags u8  3 reserved  4 refcount u32
 *   8 volume u64  16 gen u64
 *   24 replicas: server u32, state u8, reserved[3]
 *   [index u64] (flag SEGMENT_HAS_INDEX: the segment's index in its
 *   volume's map; records written before it existed have flags 0 and
 *   decode as CATALOG_INDEX_NONE, and catalog_open fills them in from
 *   the map, see catalog.c)
 */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <string.h>

#include <lmdb.h>

#include "catalog-internal.h"
#include "log.h"

/* Check the length and version common to every record. */
static int
check_record (const char *what, const MDB_val *val, size_t min, size_t max)
{
  const uint8_t *p = val->mv_data;

  if (val->mv_size < min || val->mv_size > max) {
    log_debug ("catalog: %s record: bad length %zu", what, val->mv_size);
    return -EIO;
  }
  if (p[0] != CATALOG_RECORD_VERSION) {
    log_debug ("catalog: %s record: unknown version %u", what, p[0]);
    return -EIO;
  }
  return 0;
}

/* Encode the cluster record into BUF (CLUSTER_REC_LEN bytes). */
size_t
catalog_cluster_encode (const struct catalog_cluster *c, uint8_t *buf)
{
  memset (buf, 0, CLUSTER_REC_LEN);
  buf[0] = CATALOG_RECORD_VERSION;
  put_be32 (buf + 4, c->format_version);
  put_be32 (buf + 8, c->segment_size);
  memcpy (buf + 12, c->uuid, 16);
  return CLUSTER_REC_LEN;
}

/* Decode the cluster record VAL into *C. */
int
catalog_cluster_decode (const MDB_val *val, struct catalog_cluster *c)
{
  const uint8_t *p = val->mv_data;
  int r;

  r = check_record ("cluster", val, CLUSTER_REC_LEN, CLUSTER_REC_LEN);
  if (r < 0)
    return r;
  c->format_version = get_be32 (p + 4);
  c->segment_size = get_be32 (p + 8);
  memcpy (c->uuid, p + 12, 16);
  return 0;
}

/* Encode server S (id excluded: it is the key) into BUF, which must
 * hold SERVER_REC_MAX bytes.  The strings must fit their maxima.
 */
size_t
catalog_server_encode (const struct catalog_server *s, uint8_t *buf)
{
  size_t alen = strlen (s->address);
  size_t zlen = strlen (s->zone);

  assert (alen <= CATALOG_ADDR_MAX && zlen <= CATALOG_ZONE_MAX);
  memset (buf, 0, 32);
  buf[0] = CATALOG_RECORD_VERSION;
  buf[1] = s->state;
  put_be16 (buf + 2, alen);
  buf[4] = zlen;
  memcpy (buf + 8, s->uuid, 16);
  put_be64 (buf + 24, s->capacity);
  memcpy (buf + 32, s->address, alen);
  memcpy (buf + 32 + alen, s->zone, zlen);
  if (s->index_seq == 0)
    return 32 + alen + zlen;
  put_be64 (buf + 32 + alen + zlen, s->index_seq);
  return 32 + alen + zlen + 8;
}

/* Decode the record VAL of server ID into *S. */
int
catalog_server_decode (uint32_t id, const MDB_val *val,
                       struct catalog_server *s)
{
  const uint8_t *p = val->mv_data;
  size_t alen, zlen, fixed;
  uint64_t index_seq = 0;
  int r;

  r = check_record ("server", val, 32, SERVER_REC_MAX);
  if (r < 0)
    return r;
  alen = get_be16 (p + 2);
  zlen = p[4];
  fixed = 32 + alen + zlen;
  if (val->mv_size == fixed + 8)
    index_seq = get_be64 (p + fixed);
  /* A NUL inside the address or zone would truncate it when the record
   * is written back.  A trailing index_seq of 0 is never written.
   */
  if (alen > CATALOG_ADDR_MAX || zlen > CATALOG_ZONE_MAX ||
      (val->mv_size != fixed &&
       (val->mv_size != fixed + 8 || index_seq == 0)) ||
      p[1] > CATALOG_SERVER_OUT || memchr (p + 32, '\0', alen + zlen) != NULL) {
    log_debug ("catalog: server %" PRIu32 " record: corrupt", id);
    return -EIO;
  }
  s->id = id;
  s->state = p[1];
  memcpy (s->uuid, p + 8, 16);
  s->capacity = get_be64 (p + 24);
  s->index_seq = index_seq;
  memcpy (s->address, p + 32, alen);
  s->address[alen] = '\0';
  memcpy (s->zone, p + 32 + alen, zlen);
  s->zone[zlen] = '\0';
  return 0;
}

/* Encode volume V (id excluded) into BUF (VOLUME_REC_MAX bytes).  The
 * name must be valid.
 */
size_t
catalog_volume_encode (const struct catalog_volume *v, uint8_t *buf)
{
  size_t nlen = strlen (v->name);

  assert (nlen >= 1 && nlen <= CATALOG_NAME_MAX);
  memset (buf, 0, VOLUME_REC_FIXED);
  buf[0] = CATALOG_RECORD_VERSION;
  buf[1] = nlen;
  put_be32 (buf + 4, v->replicas);
  put_be32 (buf + 8, v->flags);
  put_be32 (buf + 12, v->min_copies);
  put_be64 (buf + 16, v->size);
  put_be64 (buf + 24, v->epoch);
  put_be64 (buf + 32, v->segments);
  put_be64 (buf + 40, v->clean_epoch);
  memcpy (buf + VOLUME_REC_FIXED, v->name, nlen);
  return VOLUME_REC_FIXED + nlen;
}

/* Decode the record VAL of volume ID into *V. */
int
catalog_volume_decode (uint64_t id, const MDB_val *val,
                       struct catalog_volume *v)
{
  const uint8_t *p = val->mv_data;
  size_t nlen;
  uint32_t replicas, min_copies;
  uint64_t epoch, clean_epoch;
  int r;

  r = check_record ("volume", val, VOLUME_REC_FIXED, VOLUME_REC_MAX);
  if (r < 0)
    return r;
  nlen = p[1];
  replicas = get_be32 (p + 4);
  min_copies = get_be32 (p + 12);
  epoch = get_be64 (p + 24);
  clean_epoch = get_be64 (p + 40);
  /* A NUL in the name would decode as a shorter (even empty) name that
   * the encoder refuses when the record is written back.
   */
  if (nlen < 1 || nlen > CATALOG_NAME_MAX ||
      val->mv_size != VOLUME_REC_FIXED + nlen || replicas < 1 ||
      replicas > CATALOG_REPLICAS_MAX || min_copies > replicas ||
      clean_epoch > epoch ||
      memchr (p + VOLUME_REC_FIXED, '\0', nlen) != NULL) {
    log_debug ("catalog: volume %" PRIu64 " record: corrupt", id);
    return -EIO;
  }
  v->id = id;
  v->replicas = replicas;
  v->min_copies =
      min_copies ? min_copies : CATALOG_MIN_COPIES_DEFAULT (replicas);
  v->flags = get_be32 (p + 8);
  v->size = get_be64 (p + 16);
  v->epoch = epoch;
  v->segments = get_be64 (p + 32);
  v->clean_epoch = clean_epoch;
  memcpy (v->name, p + VOLUME_REC_FIXED, nlen);
  v->name[nlen] = '\0';
  return 0;
}

/* Encode segment G (id excluded) into BUF (SEGMENT_REC_MAX bytes). */
size_t
catalog_segment_encode (const struct catalog_segment *g, uint8_t *buf)
{
  size_t len = SEGMENT_REC_FIXED + 8 * g->nreplicas;
  uint32_t i;

  assert (g->nreplicas <= CATALOG_REPLICAS_MAX);
  memset (buf, 0, len);
  buf[0] = CATALOG_RECORD_VERSION;
  buf[1] = g->nreplicas;
  if (g->index != CATALOG_INDEX_NONE) {
    buf[2] = SEGMENT_HAS_INDEX;
    put_be64 (buf + len, g->index);
  }
  put_be32 (buf + 4, g->refcount);
  put_be64 (buf + 8, g->volume);
  put_be64 (buf + 16, g->gen);
  for (i = 0; i < g->nreplicas; ++i) {
    put_be32 (buf + SEGMENT_REC_FIXED + 8 * i, g->replicas[i].server);
    buf[SEGMENT_REC_FIXED + 8 * i + 4] = g->replicas[i].state;
  }
  return g->index != CATALOG_INDEX_NONE ? len + 8 : len;
}

/* Decode the record VAL of segment ID into *G; unused replica slots are
 * zeroed.
 */
int
catalog_segment_decode (uint64_t id, const MDB_val *val,
                        struct catalog_segment *g)
{
  const uint8_t *p = val->mv_data;
  uint32_t i, n;
  uint8_t flags;
  int r;

  r = check_record ("segment", val, SEGMENT_REC_FIXED, SEGMENT_REC_MAX);
  if (r < 0)
    return r;
  n = p[1];
  flags = p[2];
  if (n > CATALOG_REPLICAS_MAX || (flags & ~SEGMENT_HAS_INDEX) != 0 ||
      val->mv_size !=
          SEGMENT_REC_FIXED + 8 * n + (flags & SEGMENT_HAS_INDEX ? 8 : 0) ||
      get_be64 (p + 16) == 0) {
    log_debug ("catalog: segment %" PRIu64 " record: corrupt", id);
    return -EIO;
  }
  for (i = 0; i < n; ++i) {
    if (p[SEGMENT_REC_FIXED + 8 * i + 4] > CATALOG_REPLICA_SYNCING) {
      log_debug ("catalog: segment %" PRIu64 " record: bad replica state", id);
      return -EIO;
    }
  }
  g->id = id;
  g->refcount = get_be32 (p + 4);
  g->volume = get_be64 (p + 8);
  g->gen = get_be64 (p + 16);
  g->nreplicas = n;
  g->index = flags & SEGMENT_HAS_INDEX
                 ? get_be64 (p + SEGMENT_REC_FIXED + 8 * n)
                 : CATALOG_INDEX_NONE;
  for (i = 0; i < n; ++i) {
    g->replicas[i].server = get_be32 (p + SEGMENT_REC_FIXED + 8 * i);
    g->replicas[i].state = p[SEGMENT_REC_FIXED + 8 * i + 4];
  }
  memset (&g->replicas[n], 0,
          (CATALOG_REPLICAS_MAX - n) * sizeof g->replicas[0]);
  return 0;
}

/* Decode an 8-byte big-endian value (counters, names, segmap). */
int
catalog_u64_decode (const char *what, const MDB_val *val, uint64_t *out)
{
  if (val->mv_size != 8) {
    log_debug ("catalog: %s: bad value length %zu", what, val->mv_size);
    return -EIO;
  }
  *out = get_be64 (val->mv_data);
  return 0;
}

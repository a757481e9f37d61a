/* Fuzz the catalog's record decoders (catalog/records.c): cluster,
 * server, volume and segment records and 8-byte values.
 *
 * Input: one selector byte (0 cluster, 1 server, 2 volume, 3 segment,
 * 4 u64; others are ignored), then the record bytes.  Promises checked
 * (records.c, catalog-internal.h):
 *  - a decoder returns 0 or -EIO, whatever the bytes ("a corrupt record
 *    must never crash the MDS");
 *  - what it accepts is within the ranges the rest of the catalog
 *    assumes, so the MDS can write it back: encoding the decoded struct
 *    (as every read-modify-write in catalog/ does) neither trips the
 *    encoder's assertions nor changes the struct when decoded again.
 */

#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <lmdb.h>

#include "catalog-internal.h"

#include "fuzz.h"

#define ID 42

/* Bytes at least as large as any record. */
#define REC_BUF \
  (SERVER_REC_MAX > VOLUME_REC_MAX ? SERVER_REC_MAX : VOLUME_REC_MAX)

static void
check_result (const char *what, int r)
{
  FUZZ_CHECK (r == 0 || r == -EIO, "catalog_%s_decode returned %d", what, r);
}

static void
fuzz_cluster (const MDB_val *val)
{
  struct catalog_cluster a, b;
  uint8_t buf[CLUSTER_REC_LEN];
  MDB_val v2 = { .mv_data = buf };
  int r;

  memset (&a, 0, sizeof a);
  r = catalog_cluster_decode (val, &a);
  check_result ("cluster", r);
  if (r < 0)
    return;
  v2.mv_size = catalog_cluster_encode (&a, buf);
  memset (&b, 0, sizeof b);
  FUZZ_CHECK (catalog_cluster_decode (&v2, &b) == 0 &&
                  memcmp (&a, &b, sizeof a) == 0,
              "cluster: re-encoded record differs");
}

static void
fuzz_server (const MDB_val *val)
{
  struct catalog_server a, b;
  uint8_t buf[SERVER_REC_MAX];
  MDB_val v2 = { .mv_data = buf };
  int r;

  memset (&a, 0, sizeof a);
  r = catalog_server_decode (ID, val, &a);
  check_result ("server", r);
  if (r < 0)
    return;
  FUZZ_CHECK (a.id == ID && a.state <= CATALOG_SERVER_OUT,
              "server: id %u state %u", a.id, a.state);
  FUZZ_CHECK (strlen (a.address) <= CATALOG_ADDR_MAX &&
                  strlen (a.zone) <= CATALOG_ZONE_MAX,
              "server: strings too long");
  v2.mv_size = catalog_server_encode (&a, buf);
  memset (&b, 0, sizeof b);
  FUZZ_CHECK (catalog_server_decode (ID, &v2, &b) == 0,
              "server: re-encoded record refused");
  FUZZ_CHECK (
      a.id == b.id && a.state == b.state && a.capacity == b.capacity &&
          a.index_seq == b.index_seq && memcmp (a.uuid, b.uuid, 16) == 0 &&
          strcmp (a.address, b.address) == 0 && strcmp (a.zone, b.zone) == 0,
      "server: re-encoded record differs");
}

static void
fuzz_volume (const MDB_val *val)
{
  struct catalog_volume a, b;
  uint8_t buf[VOLUME_REC_MAX];
  MDB_val v2 = { .mv_data = buf };
  size_t nlen;
  int r;

  memset (&a, 0, sizeof a);
  r = catalog_volume_decode (ID, val, &a);
  check_result ("volume", r);
  if (r < 0)
    return;
  nlen = strlen (a.name);
  /* catalog_volume_encode asserts this: a volume record that decodes
   * but cannot be written back aborts the MDS on its next update.
   * Known bug (corpus/catalog/crash-volume-nul-name); run-fuzz.sh with
   * FUZZ_SKIP_KNOWN=1 steps over it to fuzz further, replay never does.
   */
#ifdef FUZZ_SKIP_KNOWN
  if (nlen == 0)
    return;
#endif
  FUZZ_CHECK (nlen >= 1 && nlen <= CATALOG_NAME_MAX,
              "volume: decoder accepted a %zu-byte name (record %zu bytes, "
              "name length byte %u) that catalog_volume_encode asserts on",
              nlen, val->mv_size, ((const uint8_t *)val->mv_data)[1]);
  /* min_copies 0 (records from before the field) decodes as the
   * default, so what the MDS sees is always 1..replicas.
   */
  FUZZ_CHECK (a.replicas >= 1 && a.replicas <= CATALOG_REPLICAS_MAX &&
                  a.min_copies >= 1 && a.min_copies <= a.replicas &&
                  a.clean_epoch <= a.epoch,
              "volume: replicas %u min_copies %u clean %lu epoch %lu",
              a.replicas, a.min_copies, (unsigned long)a.clean_epoch,
              (unsigned long)a.epoch);
  v2.mv_size = catalog_volume_encode (&a, buf);
  memset (&b, 0, sizeof b);
  FUZZ_CHECK (catalog_volume_decode (ID, &v2, &b) == 0,
              "volume: re-encoded record refused");
  FUZZ_CHECK (a.id == b.id && a.size == b.size && a.replicas == b.replicas &&
                  a.min_copies == b.min_copies && a.flags == b.flags &&
                  a.epoch == b.epoch && a.clean_epoch == b.clean_epoch &&
                  a.segments == b.segments && strcmp (a.name, b.name) == 0,
              "volume: re-encoded record differs");
}

static void
fuzz_segment (const MDB_val *val)
{
  struct catalog_segment a, b;
  uint8_t buf[SEGMENT_REC_MAX];
  MDB_val v2 = { .mv_data = buf };
  uint32_t i;
  int r;

  memset (&a, 0xa5, sizeof a);
  r = catalog_segment_decode (ID, val, &a);
  check_result ("segment", r);
  if (r < 0)
    return;
  FUZZ_CHECK (a.nreplicas <= CATALOG_REPLICAS_MAX && a.gen != 0,
              "segment: nreplicas %u gen %lu", a.nreplicas,
              (unsigned long)a.gen);
  for (i = 0; i < CATALOG_REPLICAS_MAX; i++) {
    if (i < a.nreplicas)
      FUZZ_CHECK (a.replicas[i].state <= CATALOG_REPLICA_SYNCING,
                  "segment: replica %u state %u", i, a.replicas[i].state);
    else
      FUZZ_CHECK (a.replicas[i].server == 0 && a.replicas[i].state == 0,
                  "segment: unused replica slot %u not zeroed", i);
  }
  v2.mv_size = catalog_segment_encode (&a, buf);
  memset (&b, 0xa5, sizeof b);
  FUZZ_CHECK (catalog_segment_decode (ID, &v2, &b) == 0,
              "segment: re-encoded record refused");
  FUZZ_CHECK (a.id == b.id && a.volume == b.volume && a.gen == b.gen &&
                  a.refcount == b.refcount && a.nreplicas == b.nreplicas,
              "segment: re-encoded record differs");
  for (i = 0; i < CATALOG_REPLICAS_MAX; i++)
    FUZZ_CHECK (a.replicas[i].server == b.replicas[i].server &&
                    a.replicas[i].state == b.replicas[i].state,
                "segment: re-encoded replica %u differs", i);
}

static void
fuzz_u64 (const MDB_val *val)
{
  uint64_t v = 1;
  int r;

  r = catalog_u64_decode ("fuzz", val, &v);
  check_result ("u64", r);
  FUZZ_CHECK ((r == 0) == (val->mv_size == 8), "u64: %d on %zu bytes", r,
              val->mv_size);
  if (r == 0)
    FUZZ_CHECK (v == get_be64 (val->mv_data), "u64: wrong value");
}

static void (*const targets[]) (const MDB_val *val) = {
  fuzz_cluster, fuzz_server, fuzz_volume, fuzz_segment, fuzz_u64,
};
#define NTARGETS (sizeof targets / sizeof targets[0])

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  MDB_val val;
  uint8_t *copy;

  if (size < 1 || data[0] >= NTARGETS)
    return 0;
  /* LMDB hands out exactly mv_size bytes: an exact heap copy lets ASAN
   * catch any read past the record.
   */
  copy = malloc (size - 1 ? size - 1 : 1);
  if (copy == NULL)
    return 0;
  memcpy (copy, data + 1, size - 1);
  val.mv_size = size - 1;
  val.mv_data = copy;
  targets[data[0]](&val);
  free (copy);
  return 0;
}

#ifdef FUZZ_SEEDS
static int
emit (const char *dir, uint8_t sel, const char *name, const uint8_t *rec,
      size_t len)
{
  uint8_t buf[1 + REC_BUF];

  buf[0] = sel;
  memcpy (buf + 1, rec, len);
  return fuzz_write_seed (dir, name, buf, len + 1);
}

int
fuzz_make_seeds (const char *dir)
{
  uint8_t rec[REC_BUF];
  int r = 0;

  {
    struct catalog_cluster c = { { 0xde, 0xad, 1, 2 },
                                 4 << 20,
                                 CATALOG_FORMAT_VERSION };

    r |= emit (dir, 0, "cluster", rec, catalog_cluster_encode (&c, rec));
  }
  {
    struct catalog_server s = { 1,          { 9, 8, 7 },      CATALOG_SERVER_UP,
                                1ull << 36, "127.0.0.1:7421", "rack-a" };

    r |= emit (dir, 1, "server-up", rec, catalog_server_encode (&s, rec));
    s.state = CATALOG_SERVER_OUT;
    strcpy (s.address, "unix:/run/tessera/storesrv.sock");
    s.zone[0] = '\0';
    r |= emit (dir, 1, "server-out", rec, catalog_server_encode (&s, rec));
  }
  {
    struct catalog_volume v = { 1, "vol0", 10ull << 30, 2, 0, 5, 4, 100 };

    r |= emit (dir, 2, "volume", rec, catalog_volume_encode (&v, rec));
    memset (v.name, 'x', CATALOG_NAME_MAX);
    v.name[CATALOG_NAME_MAX] = '\0';
    v.replicas = CATALOG_REPLICAS_MAX;
    v.epoch = v.clean_epoch = 0;
    r |= emit (dir, 2, "volume-long", rec, catalog_volume_encode (&v, rec));
  }
  {
    struct catalog_segment g = {
      100, 1, 1,
      1,   2, { { 1, CATALOG_REPLICA_OK }, { 2, CATALOG_REPLICA_STALE } }
    };

    r |= emit (dir, 3, "segment", rec, catalog_segment_encode (&g, rec));
    g.nreplicas = 0;
    r |= emit (dir, 3, "segment-empty", rec, catalog_segment_encode (&g, rec));
  }
  {
    uint8_t v[8];

    put_be64 (v, 12345);
    r |= emit (dir, 4, "u64", v, 8);
  }
  return r ? -1 : 0;
}
#endif /* FUZZ_SEEDS */

/* The cluster tables: what of the catalog the MDS keeps on every storage
 * server (TABLES_PUT), so that a lost catalog can be rebuilt from the
 * storage servers (tessera-mds --rebuild), and the calls that rebuild
 * one from them.
 *
 * The tables are the cluster record, the id counters, every volume
 * record and every server record.  Segments are not in them: storage
 * servers describe their own (SEG_DESCRIBE).  The meta key
 * "tables_version" counts their changes: every transaction that
 * changes a volume or server record raises it (catalog_tables_bump,
 * txn.c, which servers.c and volumes.c call);
 * epochs, clean epochs, segment counts and the counters moving on
 * allocation do not, since a rebuild raises those from what the
 * servers hold; but the segment id reservation does (alloc.c: it moves
 * once every CATALOG_SEGMENT_ID_RESERVE / 2 ids), and the tables carry
 * it as next_segment, so that no id is given twice even if it was
 * allocated and never written.
 *
 * The blob (big-endian, TABLES_HEAD bytes then the records):
 *   0 magic "TTBL" u32  4 format u32 (1)  8 version u64
 *   16 uuid[16]  32 segment_size u32  36 reserved u32
 *   40 next_volume u64  48 next_server u64  56 next_segment u64
 *   64 nvolumes u32  68 nservers u32
 *   volume (TABLES_VOL + name bytes): id u64, size u64, epoch u64,
 *     clean_epoch u64, replicas u32, min_copies u32, flags u32,
 *     name length u8, reserved u8[3], name
 *   server (TABLES_SRV + address + zone bytes): id u32, state u8, zone
 *     length u8, address length u16, uuid[16], capacity u64, address,
 *     zone
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <lmdb.h>

#include "catalog-internal.h"
#include "log.h"

#define TABLES_MAGIC 0x5454424cu /* "TTBL" */
#define TABLES_FORMAT 1
#define TABLES_HEAD 72
#define TABLES_VOL 48
#define TABLES_SRV 32
#define META_TABLES_VERSION CATALOG_META_TABLES_VERSION

/* The tables version (1 before any change). */
int
catalog_tables_version (catalog *cat, uint64_t *version)
{
  CLEANUP_RTXN struct catalog_rtxn rt = { .cat = cat };
  int r;

  r = catalog_rtxn_begin (&rt);
  if (r < 0)
    return r;
  return catalog_counter_get (cat, rt.txn, META_TABLES_VERSION, version);
}

/* A growing output buffer; ERR is sticky. */
struct obuf {
  uint8_t *p;
  size_t len, cap;
  int err;
};

static uint8_t *
obuf_take (struct obuf *b, size_t n)
{
  uint8_t *q;

  if (b->err)
    return NULL;
  if (b->len + n > b->cap) {
    size_t c = b->cap ? b->cap : 4096;

    while (c < b->len + n)
      c *= 2;
    q = realloc (b->p, c);
    if (q == NULL) {
      b->err = -ENOMEM;
      return NULL;
    }
    b->p = q;
    b->cap = c;
  }
  q = b->p + b->len;
  b->len += n;
  return q;
}

/* Append volume V. */
static void
put_volume (struct obuf *b, const struct catalog_volume *v)
{
  size_t nlen = strlen (v->name);
  uint8_t *p = obuf_take (b, TABLES_VOL + nlen);

  if (p == NULL)
    return;
  memset (p, 0, TABLES_VOL);
  put_be64 (p, v->id);
  put_be64 (p + 8, v->size);
  put_be64 (p + 16, v->epoch);
  put_be64 (p + 24, v->clean_epoch);
  put_be32 (p + 32, v->replicas);
  put_be32 (p + 36, v->min_copies);
  put_be32 (p + 40, v->flags);
  p[44] = nlen;
  memcpy (p + TABLES_VOL, v->name, nlen);
}

/* Append server S. */
static void
put_server (struct obuf *b, const struct catalog_server *s)
{
  size_t alen = strlen (s->address), zlen = strlen (s->zone);
  uint8_t *p = obuf_take (b, TABLES_SRV + alen + zlen);

  if (p == NULL)
    return;
  put_be32 (p, s->id);
  p[4] = s->state;
  p[5] = zlen;
  put_be16 (p + 6, alen);
  memcpy (p + 8, s->uuid, 16);
  put_be64 (p + 24, s->capacity);
  memcpy (p + TABLES_SRV, s->address, alen);
  memcpy (p + TABLES_SRV + alen, s->zone, zlen);
}

/* Encode every record of table DBI with EACH, counting them in *N. */
static int
encode_table (catalog *cat, MDB_txn *txn, MDB_dbi dbi, size_t keylen,
              int (*each) (struct obuf *b, const MDB_val *key,
                           const MDB_val *val),
              struct obuf *b, uint32_t *n)
{
  MDB_cursor *cur;
  MDB_val key, val;
  int rc, r = 0;

  rc = mdb_cursor_open (txn, dbi, &cur);
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_cursor_open");
  for (rc = mdb_cursor_get (cur, &key, &val, MDB_FIRST); rc == MDB_SUCCESS;
       rc = mdb_cursor_get (cur, &key, &val, MDB_NEXT)) {
    if (key.mv_size != keylen) {
      r = -EIO;
      break;
    }
    r = each (b, &key, &val);
    if (r < 0)
      break;
    (*n)++;
  }
  mdb_cursor_close (cur);
  if (r < 0)
    return r;
  if (rc != MDB_NOTFOUND)
    return catalog_mdb_err (rc, "mdb_cursor_get");
  return b->err;
}

static int
each_volume (struct obuf *b, const MDB_val *key, const MDB_val *val)
{
  struct catalog_volume v;
  int r = catalog_volume_decode (get_be64 (key->mv_data), val, &v);

  if (r == 0)
    put_volume (b, &v);
  return r;
}

static int
each_server (struct obuf *b, const MDB_val *key, const MDB_val *val)
{
  struct catalog_server s;
  int r = catalog_server_decode (get_be32 (key->mv_data), val, &s);

  if (r == 0)
    put_server (b, &s);
  return r;
}

/* Encode the tables as they are now, in one read transaction: *BLOB
 * (malloc'd, the caller frees it), *LEN bytes, and their version in
 * *VERSION.  -ENOENT before the cluster record exists.
 */
int
catalog_tables_encode (catalog *cat, uint8_t **blob, size_t *len,
                       uint64_t *version)
{
  CLEANUP_RTXN struct catalog_rtxn rt = { .cat = cat };
  struct catalog_cluster c;
  struct obuf b = { 0 };
  uint64_t v, nv, ns, ng, reserved;
  uint32_t nvol = 0, nsrv = 0;
  uint8_t *h;
  int r;

  *blob = NULL;
  *len = 0;
  r = catalog_rtxn_begin (&rt);
  if (r == 0)
    r = catalog_get_cluster_txn (cat, rt.txn, &c);
  if (r == 0)
    r = catalog_counter_get (cat, rt.txn, META_TABLES_VERSION, &v);
  if (r == 0)
    r = catalog_counter_get (cat, rt.txn, CATALOG_META_NEXT_VOLUME, &nv);
  if (r == 0)
    r = catalog_counter_get (cat, rt.txn, CATALOG_META_NEXT_SERVER, &ns);
  if (r == 0)
    r = catalog_counter_get (cat, rt.txn, CATALOG_META_NEXT_SEGMENT, &ng);
  if (r == 0)
    r = catalog_counter_get (cat, rt.txn, CATALOG_META_SEGMENT_RESERVED,
                             &reserved);
  if (r < 0)
    return r;
  /* The next segment id of the tables: past every id that may have been
   * given (alloc.c keeps the reservation ahead of the counter).
   */
  if (reserved > ng)
    ng = reserved;
  if (obuf_take (&b, TABLES_HEAD) == NULL)
    return b.err;
  r = encode_table (cat, rt.txn, cat->volumes, KEY_U64_LEN, each_volume, &b,
                    &nvol);
  if (r == 0)
    r = encode_table (cat, rt.txn, cat->servers, KEY_U32_LEN, each_server, &b,
                      &nsrv);
  if (r < 0) {
    free (b.p);
    return r;
  }
  h = b.p;
  memset (h, 0, TABLES_HEAD);
  put_be32 (h, TABLES_MAGIC);
  put_be32 (h + 4, TABLES_FORMAT);
  put_be64 (h + 8, v);
  memcpy (h + 16, c.uuid, 16);
  put_be32 (h + 32, c.segment_size);
  put_be64 (h + 40, nv);
  put_be64 (h + 48, ns);
  put_be64 (h + 56, ng);
  put_be32 (h + 64, nvol);
  put_be32 (h + 68, nsrv);
  *blob = b.p;
  *len = b.len;
  *version = v;
  return 0;
}

/* Free what catalog_tables_decode allocated (accepts a zeroed struct). */
void
catalog_tables_free (struct catalog_tables *t)
{
  free (t->volumes);
  free (t->servers);
  t->volumes = NULL;
  t->servers = NULL;
  t->nvolumes = t->nservers = 0;
}

/* Decode volume record I at *P (LEFT bytes left), advancing both. */
static int
get_volume (const uint8_t **p, size_t *left, struct catalog_volume *v)
{
  const uint8_t *q = *p;
  size_t nlen;

  if (*left < TABLES_VOL)
    return -EINVAL;
  nlen = q[44];
  if (nlen < 1 || nlen > CATALOG_NAME_MAX || *left - TABLES_VOL < nlen ||
      memchr (q + TABLES_VOL, '\0', nlen) != NULL)
    return -EINVAL;
  memset (v, 0, sizeof *v);
  v->id = get_be64 (q);
  v->size = get_be64 (q + 8);
  v->epoch = get_be64 (q + 16);
  v->clean_epoch = get_be64 (q + 24);
  v->replicas = get_be32 (q + 32);
  v->min_copies = get_be32 (q + 36);
  v->flags = get_be32 (q + 40);
  memcpy (v->name, q + TABLES_VOL, nlen);
  v->name[nlen] = '\0';
  if (v->id == 0 || v->size == 0 || v->size % 512 != 0 || v->replicas < 1 ||
      v->replicas > CATALOG_REPLICAS_MAX || v->min_copies < 1 ||
      v->min_copies > v->replicas || v->clean_epoch > v->epoch)
    return -EINVAL;
  *p += TABLES_VOL + nlen;
  *left -= TABLES_VOL + nlen;
  return 0;
}

/* Decode a server record at *P (LEFT bytes left), advancing both. */
static int
get_server (const uint8_t **p, size_t *left, struct catalog_server *s)
{
  const uint8_t *q = *p;
  size_t alen, zlen;

  if (*left < TABLES_SRV)
    return -EINVAL;
  zlen = q[5];
  alen = get_be16 (q + 6);
  if (alen < 1 || alen > CATALOG_ADDR_MAX || zlen > CATALOG_ZONE_MAX ||
      *left - TABLES_SRV < alen + zlen || q[4] > CATALOG_SERVER_OUT ||
      memchr (q + TABLES_SRV, '\0', alen + zlen) != NULL)
    return -EINVAL;
  memset (s, 0, sizeof *s);
  s->id = get_be32 (q);
  s->state = q[4];
  memcpy (s->uuid, q + 8, 16);
  s->capacity = get_be64 (q + 24);
  memcpy (s->address, q + TABLES_SRV, alen);
  s->address[alen] = '\0';
  memcpy (s->zone, q + TABLES_SRV + alen, zlen);
  s->zone[zlen] = '\0';
  if (s->id == 0)
    return -EINVAL;
  *p += TABLES_SRV + alen + zlen;
  *left -= TABLES_SRV + alen + zlen;
  return 0;
}

/* Decode the LEN bytes at BLOB into *T (its arrays malloc'd: free with
 * catalog_tables_free).  Returns 0, -EINVAL (not tables of this format,
 * truncated, trailing bytes, a field out of range) or -ENOMEM; on error
 * nothing is left allocated.
 */
int
catalog_tables_decode (const void *blob, size_t len, struct catalog_tables *t)
{
  const uint8_t *p = blob;
  size_t left, i;
  uint32_t nvol, nsrv;
  int r = 0;

  memset (t, 0, sizeof *t);
  if (len < TABLES_HEAD || get_be32 (p) != TABLES_MAGIC ||
      get_be32 (p + 4) != TABLES_FORMAT)
    return -EINVAL;
  t->version = get_be64 (p + 8);
  memcpy (t->cluster.uuid, p + 16, 16);
  t->cluster.segment_size = get_be32 (p + 32);
  t->cluster.format_version = CATALOG_FORMAT_VERSION;
  t->next_volume = get_be64 (p + 40);
  t->next_server = get_be64 (p + 48);
  t->next_segment = get_be64 (p + 56);
  nvol = get_be32 (p + 64);
  nsrv = get_be32 (p + 68);
  left = len - TABLES_HEAD;
  /* Bounded by the bytes there, not by the counts. */
  if (nvol > left / TABLES_VOL || nsrv > left / TABLES_SRV ||
      t->cluster.segment_size == 0)
    return -EINVAL;
  p += TABLES_HEAD;
  if ((nvol && (t->volumes = calloc (nvol, sizeof *t->volumes)) == NULL) ||
      (nsrv && (t->servers = calloc (nsrv, sizeof *t->servers)) == NULL)) {
    catalog_tables_free (t);
    return -ENOMEM;
  }
  for (i = 0; r == 0 && i < nvol; i++)
    r = get_volume (&p, &left, &t->volumes[i]);
  for (i = 0; r == 0 && i < nsrv; i++)
    r = get_server (&p, &left, &t->servers[i]);
  if (r == 0 && left != 0)
    r = -EINVAL;
  if (r < 0) {
    catalog_tables_free (t);
    return r;
  }
  t->nvolumes = nvol;
  t->nservers = nsrv;
  return 0;
}

/* Raise counter COUNTER to at least NEXT inside TXN. */
static int
raise_counter (catalog *cat, MDB_txn *txn, const char *counter, uint64_t next)
{
  uint64_t cur;
  int r;

  r = catalog_counter_get (cat, txn, counter, &cur);
  if (r < 0 || cur >= next)
    return r;
  return catalog_counter_put (cat, txn, counter, next);
}

/* Install volume V (with no segments) unless its id or name is taken. */
static int
install_volume (catalog *cat, MDB_txn *txn, const struct catalog_volume *v)
{
  struct catalog_volume old, nv = *v;
  MDB_val nkey = { .mv_size = strlen (v->name), .mv_data = (void *)v->name };
  MDB_val val;
  uint8_t idbuf[8];
  int rc, r;

  r = catalog_volume_get_txn (cat, txn, v->id, &old);
  if (r != -ENOENT)
    return r == 0 ? 0 : r;
  put_be64 (idbuf, v->id);
  val.mv_size = sizeof idbuf;
  val.mv_data = idbuf;
  rc = catalog_put (cat, txn, cat->names, &nkey, &val, MDB_NOOVERWRITE);
  if (rc == MDB_KEYEXIST) {
    log_debug ("catalog: tables: volume %" PRIu64 ": name %s is taken", v->id,
               v->name);
    return 0;
  }
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_put names");
  nv.segments = 0;
  return catalog_volume_put_txn (cat, txn, &nv);
}

/* Install server S unless its id or uuid is known. */
static int
install_server (catalog *cat, MDB_txn *txn, const struct catalog_server *s)
{
  MDB_val ukey = { .mv_size = 16, .mv_data = (void *)s->uuid };
  MDB_val val;
  uint8_t idbuf[4];
  int rc, r;

  r = catalog_server_exists (cat, txn, s->id);
  if (r != -ENOENT)
    return r;
  put_be32 (idbuf, s->id);
  val.mv_size = sizeof idbuf;
  val.mv_data = idbuf;
  rc = catalog_put (cat, txn, cat->server_uuids, &ukey, &val, MDB_NOOVERWRITE);
  if (rc == MDB_KEYEXIST) {
    log_debug ("catalog: tables: server %" PRIu32 ": uuid is known", s->id);
    return 0;
  }
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_put server_uuids");
  return catalog_server_put_txn (cat, txn, s);
}

/* Install tables T (see catalog.h), in one transaction. */
int
catalog_tables_install (catalog *cat, const struct catalog_tables *t)
{
  CLEANUP_MDB_TXN_ABORT MDB_txn *txn = NULL;
  struct catalog_cluster c;
  uint8_t buf[CLUSTER_REC_LEN];
  MDB_val key = { .mv_size = strlen (CATALOG_META_CLUSTER),
                  .mv_data = (void *)CATALOG_META_CLUSTER };
  MDB_val val = { .mv_data = buf };
  size_t i;
  int rc, r;

  r = catalog_wtxn_begin (cat, &txn, "tables_install");
  if (r < 0)
    return r;
  r = catalog_get_cluster_txn (cat, txn, &c);
  if (r == -ENOENT) {
    c = t->cluster;
    c.format_version = CATALOG_FORMAT_VERSION;
    val.mv_size = catalog_cluster_encode (&c, buf);
    rc = catalog_put (cat, txn, cat->meta, &key, &val, MDB_NOOVERWRITE);
    if (rc != MDB_SUCCESS)
      return catalog_mdb_err (rc, "mdb_put cluster");
  }
  else if (r < 0)
    return r;
  else if (memcmp (c.uuid, t->cluster.uuid, 16) != 0 ||
           c.segment_size != t->cluster.segment_size) {
    log_debug ("catalog: tables: another cluster's");
    return -EINVAL;
  }
  for (i = 0; i < t->nservers; i++) {
    r = install_server (cat, txn, &t->servers[i]);
    if (r < 0)
      return r;
  }
  for (i = 0; i < t->nvolumes; i++) {
    r = install_volume (cat, txn, &t->volumes[i]);
    if (r < 0)
      return r;
  }
  r = raise_counter (cat, txn, CATALOG_META_NEXT_VOLUME, t->next_volume);
  if (r == 0)
    r = raise_counter (cat, txn, CATALOG_META_NEXT_SERVER, t->next_server);
  if (r == 0)
    r = raise_counter (cat, txn, CATALOG_META_NEXT_SEGMENT, t->next_segment);
  if (r == 0)
    r = raise_counter (cat, txn, META_TABLES_VERSION, t->version + 1);
  if (r < 0)
    return r;
  return catalog_wtxn_commit (cat, &txn, "tables_install");
}

/* Raise the id counters to at least the given next ids (0: leave). */
int
catalog_counters_raise (catalog *cat, uint64_t next_volume,
                        uint64_t next_server, uint64_t next_segment)
{
  CLEANUP_MDB_TXN_ABORT MDB_txn *txn = NULL;
  int r;

  r = catalog_wtxn_begin (cat, &txn, "counters_raise");
  if (r < 0)
    return r;
  r = raise_counter (cat, txn, CATALOG_META_NEXT_VOLUME, next_volume);
  if (r == 0)
    r = raise_counter (cat, txn, CATALOG_META_NEXT_SERVER, next_server);
  if (r == 0)
    r = raise_counter (cat, txn, CATALOG_META_NEXT_SEGMENT, next_segment);
  if (r < 0)
    return r;
  return catalog_wtxn_commit (cat, &txn, "counters_raise");
}

/* Adopt one segment in TXN (see catalog_segments_adopt). */
static int
adopt_one (catalog *cat, MDB_txn *txn, uint32_t segment_size,
           const struct catalog_segment *g)
{
  struct catalog_segment old, ng = *g;
  struct catalog_volume v;
  uint8_t kbuf[KEY_MAP_LEN], vbuf[8];
  MDB_val key, val;
  uint32_t i, j;
  int rc, r;

  if (g->id == 0 || g->gen == 0 || g->nreplicas < 1 ||
      g->nreplicas > CATALOG_REPLICAS_MAX || g->index == CATALOG_INDEX_NONE)
    return -EINVAL;
  for (i = 0; i < g->nreplicas; i++) {
    if (g->replicas[i].state > CATALOG_REPLICA_SYNCING)
      return -EINVAL;
    for (j = 0; j < i; j++)
      if (g->replicas[j].server == g->replicas[i].server)
        return -EINVAL;
    r = catalog_server_exists (cat, txn, g->replicas[i].server);
    if (r < 0)
      return r;
  }
  r = catalog_segment_get_txn (cat, txn, g->id, &old);
  if (r == 0)
    return -EEXIST;
  if (r != -ENOENT)
    return r;
  r = catalog_volume_get_txn (cat, txn, g->volume, &v);
  if (r < 0)
    return r;
  if (g->index >= (v.size + segment_size - 1) / segment_size)
    return -ERANGE;
  key = key_map (kbuf, g->volume, g->index);
  rc = mdb_get (txn, cat->segmap, &key, &val);
  if (rc == MDB_SUCCESS)
    return -EBUSY;
  if (rc != MDB_NOTFOUND)
    return catalog_mdb_err (rc, "mdb_get segmap");

  ng.refcount = 1;
  r = catalog_segment_put_txn (cat, txn, &ng);
  if (r < 0)
    return r;
  put_be64 (vbuf, g->id);
  val.mv_size = sizeof vbuf;
  val.mv_data = vbuf;
  rc = catalog_put (cat, txn, cat->segmap, &key, &val, MDB_NOOVERWRITE);
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_put segmap");
  for (i = 0; i < g->nreplicas; i++) {
    r = catalog_server_segment_add (cat, txn, g->replicas[i].server, g->id,
                                    NULL);
    if (r < 0)
      return r;
  }
  v.segments++;
  r = catalog_volume_put_txn (cat, txn, &v);
  if (r < 0)
    return r;
  return raise_counter (cat, txn, CATALOG_META_NEXT_SEGMENT, g->id + 1);
}

/* Adopt segments (see catalog.h), in one transaction. */
int
catalog_segments_adopt (catalog *cat, struct catalog_adopt *a, size_t n)
{
  CLEANUP_MDB_TXN_ABORT MDB_txn *txn = NULL;
  struct catalog_cluster c;
  size_t i;
  int r;

  r = catalog_wtxn_begin (cat, &txn, "segments_adopt");
  if (r < 0)
    return r;
  r = catalog_get_cluster_txn (cat, txn, &c);
  if (r < 0)
    return r;
  for (i = 0; i < n; i++) {
    /* A failed adoption must change nothing: run it in a child
     * transaction.
     */
    MDB_txn *child;
    int rc = mdb_txn_begin (cat->env, txn, 0, &child);

    if (rc != MDB_SUCCESS)
      return catalog_mdb_err (rc, "mdb_txn_begin child");
    a[i].result = adopt_one (cat, child, c.segment_size, &a[i].segment);
    if (a[i].result < 0) {
      mdb_txn_abort (child);
      if (a[i].result == -ENOMEM || a[i].result == -ENOSPC ||
          a[i].result == -EIO)
        return a[i].result;
      continue;
    }
    rc = mdb_txn_commit (child);
    if (rc != MDB_SUCCESS)
      return catalog_mdb_err (rc, "mdb_txn_commit child");
  }
  return catalog_wtxn_commit (cat, &txn, "segments_adopt");
}

/* Raise volume ID's epoch to at least EPOCH and mark it not clean. */
int
catalog_volume_raise_epoch (catalog *cat, uint64_t id, uint64_t epoch)
{
  CLEANUP_MDB_TXN_ABORT MDB_txn *txn = NULL;
  struct catalog_volume v;
  int r;

  r = catalog_wtxn_begin (cat, &txn, "volume_raise_epoch");
  if (r < 0)
    return r;
  r = catalog_volume_get_txn (cat, txn, id, &v);
  if (r < 0)
    return r;
  if (epoch > v.epoch)
    v.epoch = epoch;
  v.flags &= ~CATALOG_VOL_CLEAN;
  r = catalog_volume_put_txn (cat, txn, &v);
  if (r < 0)
    return r;
  return catalog_wtxn_commit (cat, &txn, "volume_raise_epoch");
}

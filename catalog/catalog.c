/* The catalog handle: open and close, transactions, error mapping, id
 * counters, the cluster record, statistics and error strings.
 */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#include <lmdb.h>

#include "catalog-internal.h"
#include "cleanup.h"
#include "log.h"
#include "mdb-errno.h"

#define DEFAULT_MAP_SIZE (UINT64_C (1) << 30)
#define SEGMENT_SIZE_MIN (UINT32_C (64) << 10)
#define SEGMENT_SIZE_MAX (UINT32_C (64) << 20)

/* Map an LMDB (or system) return code to the catalog's -errno
 * convention (mdb_errno).  OP names the failing call in the debug line
 * that every unexpected code gets.
 */
int
catalog_mdb_err (int rc, const char *op)
{
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND && rc != MDB_KEYEXIST)
    log_debug ("catalog: %s: %s", op, mdb_strerror (rc));
  return mdb_errno (rc);
}

/* Free reader RD: its cursors, then its transaction (accepts NULL). */
static void
reader_free (struct catalog_reader *rd)
{
  size_t i;

  if (rd == NULL)
    return;
  for (i = 0; i < CATALOG_NCURSORS; ++i)
    if (rd->cursors[i])
      mdb_cursor_close (rd->cursors[i]);
  if (rd->txn)
    mdb_txn_abort (rd->txn);
  free (rd);
}

/* True if read transaction TXN (live) sees the latest commit. */
static bool
snapshot_is_latest (catalog *cat, MDB_txn *txn)
{
  MDB_envinfo info;

  if (mdb_env_info (cat->env, &info) != MDB_SUCCESS)
    return false;
  return mdb_txn_id (txn) == info.me_last_txnid;
}

/* Reset reader RD's transaction: it releases its snapshot. */
static void
reader_reset (struct catalog_reader *rd)
{
  if (rd->live) {
    mdb_txn_reset (rd->txn);
    rd->live = false;
    rd->renewed = 0;
  }
}

/* Begin a read-only transaction in RT (declared { .cat = cat }) with a
 * reader from the pool when there is one.  A pooled reader whose
 * snapshot is still the latest commit is used as it is, cursors
 * included; any other is renewed (mdb_txn_renew is far cheaper than
 * mdb_txn_begin with MDB_NOTLS).  Either way the transaction sees every
 * commit that returned before this call.  End it with catalog_rtxn_end
 * (CLEANUP_RTXN does), never mdb_txn_abort.
 */
int
catalog_rtxn_begin (struct catalog_rtxn *rt)
{
  catalog *cat = rt->cat;
  struct catalog_reader *rd = NULL;
  int rc;

  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&cat->lock);
    if (cat->npool > 0)
      rd = cat->pool[--cat->npool];
  }

  if (rd) {
    if (rd->live && !snapshot_is_latest (cat, rd->txn))
      reader_reset (rd);
    if (!rd->live) {
      rc = mdb_txn_renew (rd->txn);
      if (rc != MDB_SUCCESS) {
        reader_free (rd);
        return catalog_mdb_err (rc, "mdb_txn_renew");
      }
      rd->live = true;
    }
  }
  else {
    rd = calloc (1, sizeof *rd);
    if (rd == NULL)
      return -ENOMEM;
    rc = mdb_txn_begin (cat->env, NULL, MDB_RDONLY, &rd->txn);
    if (rc != MDB_SUCCESS) {
      free (rd);
      return catalog_mdb_err (rc, "mdb_txn_begin");
    }
    rd->live = true;
  }
  rt->rd = rd;
  rt->txn = rd->txn;
  return 0;
}

/* End the read-only transaction of RT: back into the pool, still live if
 * its snapshot is the latest commit, else reset (releasing the
 * snapshot); freed when the pool is full.  The check and the push are
 * under the pool's lock, as catalog_wtxn_commit's reset of the pool: no
 * reader enters the pool live with an older snapshot.
 */
void
catalog_rtxn_end (struct catalog_rtxn *rt)
{
  catalog *cat = rt->cat;
  struct catalog_reader *rd = rt->rd;

  rt->rd = NULL;
  rt->txn = NULL;
  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&cat->lock);
    if (cat->npool < CATALOG_RTXN_POOL) {
      if (!snapshot_is_latest (cat, rd->txn))
        reader_reset (rd);
      cat->pool[cat->npool++] = rd;
      rd = NULL;
    }
  }
  reader_free (rd);
}

/* A cursor on table WHICH (CATALOG_CUR_*) in RT's transaction: the
 * reader's cached one, renewed into the transaction at its first use
 * (opened at the reader's very first).  It stays valid until
 * catalog_rtxn_end, which keeps it for the next user: never close it.
 */
int
catalog_rtxn_cursor (struct catalog_rtxn *rt, unsigned which, MDB_cursor **cur)
{
  struct catalog_reader *rd = rt->rd;
  MDB_dbi dbi;
  int rc;

  assert (which < CATALOG_NCURSORS);
  if (!(rd->renewed & (1u << which))) {
    if (rd->cursors[which])
      rc = mdb_cursor_renew (rd->txn, rd->cursors[which]);
    else {
      dbi = which == CATALOG_CUR_SEGMAP ? rt->cat->segmap : rt->cat->segments;
      rc = mdb_cursor_open (rd->txn, dbi, &rd->cursors[which]);
    }
    if (rc != MDB_SUCCESS)
      return catalog_mdb_err (rc, "mdb_cursor_renew");
    rd->renewed |= 1u << which;
  }
  *cur = rd->cursors[which];
  return 0;
}

/* LMDB's default order of keys: memcmp of the common length, then the
 * shorter first.  Out of line, so that the comparisons below stay leaf
 * functions on their fast path.
 */
static int __attribute__ ((noinline))
cmp_bytes (const MDB_val *a, const MDB_val *b)
{
  size_t len = a->mv_size < b->mv_size ? a->mv_size : b->mv_size;
  int diff;

  diff = memcmp (a->mv_data, b->mv_data, len);
  if (diff != 0)
    return diff;
  return a->mv_size < b->mv_size ? -1 : a->mv_size > b->mv_size;
}

/* -1, 0 or 1 as X is below, equal to or above Y. */
static inline int
cmp_u64 (uint64_t x, uint64_t y)
{
  return (x > y) - (x < y);
}

/* The order of the fixed-width big-endian keys of the tables: byte
 * order, as LMDB's default comparison, but computed on 32- and 64-bit
 * integers instead of by a memcmp call per probe (a lookup makes about
 * twenty).  Same order, so the files stay readable by any LMDB program
 * (mdb_dump, mdb_stat).  One function per key width; any other length
 * (which no table holds) falls back to the byte order.
 */
static int
cmp_key4 (const MDB_val *a, const MDB_val *b)
{
  if (a->mv_size != KEY_U32_LEN || b->mv_size != KEY_U32_LEN)
    return cmp_bytes (a, b);
  return cmp_u64 (get_be32 (a->mv_data), get_be32 (b->mv_data));
}

static int
cmp_key8 (const MDB_val *a, const MDB_val *b)
{
  if (a->mv_size != KEY_U64_LEN || b->mv_size != KEY_U64_LEN)
    return cmp_bytes (a, b);
  return cmp_u64 (get_be64 (a->mv_data), get_be64 (b->mv_data));
}

static int
cmp_key12 (const MDB_val *a, const MDB_val *b)
{
  const uint8_t *p = a->mv_data, *q = b->mv_data;
  uint32_t x, y;

  if (a->mv_size != KEY_PAIR_LEN || b->mv_size != KEY_PAIR_LEN)
    return cmp_bytes (a, b);
  x = get_be32 (p);
  y = get_be32 (q);
  if (x != y)
    return x < y ? -1 : 1;
  return cmp_u64 (get_be64 (p + 4), get_be64 (q + 4));
}

static int
cmp_key16 (const MDB_val *a, const MDB_val *b)
{
  const uint8_t *p = a->mv_data, *q = b->mv_data;
  uint64_t x, y;

  if (a->mv_size != KEY_MAP_LEN || b->mv_size != KEY_MAP_LEN)
    return cmp_bytes (a, b);
  x = get_be64 (p);
  y = get_be64 (q);
  if (x != y)
    return x < y ? -1 : 1;
  return cmp_u64 (get_be64 (p + 8), get_be64 (q + 8));
}

/* The comparison for keys of KEYLEN bytes, NULL for LMDB's default. */
MDB_cmp_func *
catalog_key_cmp (size_t keylen)
{
  switch (keylen) {
  case KEY_U32_LEN:
    return cmp_key4;
  case KEY_U64_LEN:
    return cmp_key8;
  case KEY_PAIR_LEN:
    return cmp_key12;
  case KEY_MAP_LEN:
    return cmp_key16;
  default:
    return NULL;
  }
}

/* Begin a write transaction (LMDB serializes writers). */
int
catalog_wtxn_begin (catalog *cat, MDB_txn **txn, const char *op)
{
  int rc;

  rc = mdb_txn_begin (cat->env, NULL, 0, txn);
  if (rc != MDB_SUCCESS) {
    *txn = NULL;
    return catalog_mdb_err (rc, op);
  }
  return 0;
}

/* Commit *TXN durably (the environment syncs on commit) and set it to
 * NULL: LMDB frees the transaction whether or not the commit worked.
 * After a commit the pooled readers hold an older snapshot: reset them,
 * so that none pins the pages the next writer may reuse.
 */
int
catalog_wtxn_commit (catalog *cat, MDB_txn **txn, const char *op)
{
  size_t i;
  int rc;

  rc = mdb_txn_commit (*txn);
  *txn = NULL;
  if (rc == MDB_SUCCESS) {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&cat->lock);
    for (i = 0; i < cat->npool; ++i)
      reader_reset (cat->pool[i]);
  }
  return catalog_mdb_err (rc, op);
}

/* Read the meta counter COUNTER (the next id to give; 1 when never
 * written) inside transaction TXN.
 */
int
catalog_counter_get (catalog *cat, MDB_txn *txn, const char *counter,
                     uint64_t *next)
{
  MDB_val key = { .mv_size = strlen (counter), .mv_data = (void *)counter };
  MDB_val val;
  int rc;

  *next = 1;
  rc = mdb_get (txn, cat->meta, &key, &val);
  if (rc == MDB_NOTFOUND)
    return 0;
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_get meta");
  return catalog_u64_decode (counter, &val, next);
}

/* Write NEXT into the meta counter COUNTER inside write transaction
 * TXN.
 */
int
catalog_counter_put (catalog *cat, MDB_txn *txn, const char *counter,
                     uint64_t next)
{
  MDB_val key = { .mv_size = strlen (counter), .mv_data = (void *)counter };
  uint8_t buf[8];
  MDB_val val = { .mv_size = sizeof buf, .mv_data = buf };
  int rc;

  put_be64 (buf, next);
  rc = mdb_put (txn, cat->meta, &key, &val, 0);
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_put meta");
  return 0;
}

/* Take the next id from the meta counter COUNTER inside write
 * transaction TXN.  Ids start at 1; -ENOSPC past LIMIT.
 */
int
catalog_next_id (catalog *cat, MDB_txn *txn, const char *counter,
                 uint64_t limit, uint64_t *id)
{
  uint64_t next;
  int r;

  r = catalog_counter_get (cat, txn, counter, &next);
  if (r < 0)
    return r;
  if (next == 0 || next > limit) {
    log_debug ("catalog: %s: ids exhausted", counter);
    return -ENOSPC;
  }
  r = catalog_counter_put (cat, txn, counter, next + 1);
  if (r < 0)
    return r;
  *id = next;
  return 0;
}

/* Open every named database, creating the missing ones, in one write
 * transaction.
 */
static int
open_dbis (catalog *cat)
{
  const struct {
    const char *name;
    MDB_dbi *dbi;
    size_t keylen; /* fixed-width binary keys, or 0 */
  } tables[] = {
    { "meta", &cat->meta, 0 },
    { "servers", &cat->servers, KEY_U32_LEN },
    { "server_uuids", &cat->server_uuids, 16 },
    { "volumes", &cat->volumes, KEY_U64_LEN },
    { "names", &cat->names, 0 },
    { "segmap", &cat->segmap, KEY_MAP_LEN },
    { "segments", &cat->segments, KEY_U64_LEN },
    { "server_segments", &cat->server_segments, KEY_PAIR_LEN },
    { "server_counts", &cat->server_counts, KEY_U32_LEN },
    { "garbage", &cat->garbage, KEY_PAIR_LEN },
  };
  MDB_cmp_func *cmp;
  bool rebuild = false;
  CLEANUP_MDB_TXN_ABORT MDB_txn *txn = NULL;
  size_t i;
  int rc, r;

  r = catalog_wtxn_begin (cat, &txn, "open");
  if (r < 0)
    return r;
  for (i = 0; i < sizeof tables / sizeof tables[0]; ++i) {
    rc = mdb_dbi_open (txn, tables[i].name, 0, tables[i].dbi);
    if (rc == MDB_NOTFOUND) {
      /* Catalogs made before server_counts get it filled here. */
      rebuild |= tables[i].dbi == &cat->server_counts;
      rc = mdb_dbi_open (txn, tables[i].name, MDB_CREATE, tables[i].dbi);
    }
    if (rc != MDB_SUCCESS) {
      log_debug ("catalog: open table %s: %s", tables[i].name,
                 mdb_strerror (rc));
      return catalog_mdb_err (rc, "mdb_dbi_open");
    }
    /* The comparison is the environment's from now on (LMDB keeps it
     * with the handle), for every later transaction.
     */
    cmp = catalog_key_cmp (tables[i].keylen);
    if (cmp) {
      rc = mdb_set_compare (txn, *tables[i].dbi, cmp);
      if (rc != MDB_SUCCESS)
        return catalog_mdb_err (rc, "mdb_set_compare");
    }
  }
  if (rebuild) {
    r = catalog_server_counts_rebuild (cat, txn);
    if (r < 0)
      return r;
  }
  return catalog_wtxn_commit (cat, &txn, "open");
}

/* Open the environment in DIR (see catalog.h): check DIR, then a goto
 * ladder of LMDB setup steps, undone in reverse on failure.
 */
int
catalog_open (const char *dir, uint64_t map_size, catalog **out)
{
  struct stat st;
  catalog *cat;
  int dead;
  int rc, r;

  if (stat (dir, &st) == -1) {
    r = errno;
    log_debug ("catalog: open: %s: %s", dir, strerror (r));
    return r == EACCES ? -EACCES : r == ENOMEM ? -ENOMEM : -ENOENT;
  }
  if (!S_ISDIR (st.st_mode)) {
    log_debug ("catalog: open: %s: not a directory", dir);
    return -ENOENT;
  }
  if (map_size == 0)
    map_size = DEFAULT_MAP_SIZE;
#if SIZE_MAX < UINT64_MAX
  if (map_size > SIZE_MAX)
    return -EINVAL;
#endif

  cat = calloc (1, sizeof *cat);
  if (cat == NULL)
    return -ENOMEM;
  r = pthread_mutex_init (&cat->lock, NULL);
  if (r != 0) {
    r = -r;
    goto err_free;
  }
  r = pthread_mutex_init (&cat->alloc_lock, NULL);
  if (r != 0) {
    r = -r;
    goto err_mutex;
  }

  rc = mdb_env_create (&cat->env);
  if (rc != MDB_SUCCESS) {
    r = catalog_mdb_err (rc, "mdb_env_create");
    goto err_alloc_lock;
  }
  rc = mdb_env_set_maxdbs (cat->env, 16);
  if (rc == MDB_SUCCESS)
    rc = mdb_env_set_mapsize (cat->env, (size_t)map_size);
  if (rc != MDB_SUCCESS) {
    r = catalog_mdb_err (rc, "mdb_env_set");
    goto err_env;
  }
  /* Several MDS threads call in: read transactions are not tied to a
   * thread.  No NOSYNC flags: every commit is durable.
   */
  rc = mdb_env_open (cat->env, dir, MDB_NOTLS, 0600);
  if (rc != MDB_SUCCESS) {
    log_debug ("catalog: open: %s", dir);
    r = catalog_mdb_err (rc, "mdb_env_open");
    goto err_env;
  }
  /* Free reader slots left by a crashed process. */
  rc = mdb_reader_check (cat->env, &dead);
  if (rc == MDB_SUCCESS && dead > 0)
    log_debug ("catalog: open: %s: cleared %d stale readers", dir, dead);

  r = open_dbis (cat);
  if (r < 0)
    goto err_env;

  *out = cat;
  return 0;

err_env:
  mdb_env_close (cat->env);
err_alloc_lock:
  pthread_mutex_destroy (&cat->alloc_lock);
err_mutex:
  pthread_mutex_destroy (&cat->lock);
err_free:
  free (cat);
  return r;
}

/* Close the handle and its pooled readers (accepts NULL).  No other
 * thread may be using it.
 */
void
catalog_close (catalog *cat)
{
  size_t i;

  if (cat == NULL)
    return;
  assert (cat->alloc_head == NULL && !cat->alloc_busy);
  for (i = 0; i < cat->npool; ++i)
    reader_free (cat->pool[i]);
  mdb_env_close (cat->env);
  pthread_mutex_destroy (&cat->alloc_lock);
  pthread_mutex_destroy (&cat->lock);
  free (cat);
}

/* Create the cluster record once; -EEXIST after that. */
int
catalog_cluster_init (catalog *cat, uint32_t segment_size,
                      const uint8_t uuid[16])
{
  CLEANUP_MDB_TXN_ABORT MDB_txn *txn = NULL;
  struct catalog_cluster c = { .segment_size = segment_size,
                               .format_version = CATALOG_FORMAT_VERSION };
  uint8_t buf[CLUSTER_REC_LEN];
  MDB_val key = { .mv_size = strlen (CATALOG_META_CLUSTER),
                  .mv_data = (void *)CATALOG_META_CLUSTER };
  MDB_val val = { .mv_data = buf };
  int rc, r;

  if (uuid == NULL || segment_size < SEGMENT_SIZE_MIN ||
      segment_size > SEGMENT_SIZE_MAX ||
      (segment_size & (segment_size - 1)) != 0)
    return -EINVAL;
  memcpy (c.uuid, uuid, sizeof c.uuid);
  val.mv_size = catalog_cluster_encode (&c, buf);

  r = catalog_wtxn_begin (cat, &txn, "cluster_init");
  if (r < 0)
    return r;
  rc = mdb_put (txn, cat->meta, &key, &val, MDB_NOOVERWRITE);
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_put cluster");
  return catalog_wtxn_commit (cat, &txn, "cluster_init");
}

/* Read the cluster record inside transaction TXN. */
int
catalog_get_cluster_txn (catalog *cat, MDB_txn *txn,
                         struct catalog_cluster *out)
{
  MDB_val key = { .mv_size = strlen (CATALOG_META_CLUSTER),
                  .mv_data = (void *)CATALOG_META_CLUSTER };
  MDB_val val;
  int rc;

  rc = mdb_get (txn, cat->meta, &key, &val);
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_get cluster");
  return catalog_cluster_decode (&val, out);
}

/* Read the cluster record; -ENOENT before catalog_cluster_init. */
int
catalog_cluster_get (catalog *cat, struct catalog_cluster *out)
{
  CLEANUP_RTXN struct catalog_rtxn rt = { .cat = cat };
  int r;

  r = catalog_rtxn_begin (&rt);
  if (r < 0)
    return r;
  return catalog_get_cluster_txn (cat, rt.txn, out);
}

/* Count volumes, segments and servers from the tables' entry counts
 * (no scan).
 */
int
catalog_stats (catalog *cat, struct catalog_stats *out)
{
  CLEANUP_RTXN struct catalog_rtxn rt = { .cat = cat };
  MDB_stat st;
  int rc, r;

  r = catalog_rtxn_begin (&rt);
  if (r < 0)
    return r;
  rc = mdb_stat (rt.txn, cat->volumes, &st);
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_stat volumes");
  out->volumes = st.ms_entries;
  rc = mdb_stat (rt.txn, cat->segments, &st);
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_stat segments");
  out->segments = st.ms_entries;
  rc = mdb_stat (rt.txn, cat->servers, &st);
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_stat servers");
  out->servers = st.ms_entries;
  return 0;
}

/* Static text for a catalog error code (negative or positive). */
const char *
catalog_strerror (int err)
{
  const char *d;

  switch (err < 0 ? -err : err) {
  case 0:
    return "success";
  case ENOENT:
    return "not found";
  case EEXIST:
    return "already exists";
  case EINVAL:
    return "invalid argument";
  case ENOSPC:
    return "catalog is full";
  case ENOMEM:
    return "out of memory";
  case EIO:
    return "catalog database error";
  case EACCES:
    return "permission denied";
  case ESTALE:
    return "stale epoch";
  case EBUSY:
    return "still in use";
  default:
    /* A system error LMDB passed on keeps its own name (a static
     * string, unlike strerror's).
     */
    d = strerrordesc_np (err < 0 ? -err : err);
    return d ? d : "unknown catalog error";
  }
}

/* Read every record of a table (see catalog-internal.h). */
int
catalog_table_list (catalog *cat, MDB_dbi dbi, const char *what, size_t keylen,
                    size_t elemsize,
                    int (*decode) (const MDB_val *key, const MDB_val *val,
                                   void *elem),
                    void **out, size_t *n)
{
  CLEANUP_RTXN struct catalog_rtxn rt = { .cat = cat };
  CLEANUP_CURSOR MDB_cursor *cur = NULL;
  CLEANUP_FREE uint8_t *list = NULL;
  MDB_stat st;
  MDB_val key, val;
  size_t i = 0;
  int rc, r;

  r = catalog_rtxn_begin (&rt);
  if (r < 0)
    return r;
  rc = mdb_stat (rt.txn, dbi, &st);
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_stat");
  if (st.ms_entries > 0) {
    list = calloc (st.ms_entries, elemsize);
    if (list == NULL)
      return -ENOMEM;
  }
  rc = mdb_cursor_open (rt.txn, dbi, &cur);
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_cursor_open");

  for (rc = mdb_cursor_get (cur, &key, &val, MDB_FIRST); rc == MDB_SUCCESS;
       rc = mdb_cursor_get (cur, &key, &val, MDB_NEXT)) {
    if (key.mv_size != keylen || i >= st.ms_entries) {
      log_debug ("catalog: %s: corrupt table", what);
      return -EIO;
    }
    r = decode (&key, &val, list + i * elemsize);
    if (r < 0)
      return r;
    i++;
  }
  if (rc != MDB_NOTFOUND)
    return catalog_mdb_err (rc, "mdb_cursor_get");

  *out = list;
  list = NULL;
  *n = i;
  return 0;
}

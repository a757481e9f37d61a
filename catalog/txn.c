/* The catalog's transactions and the helpers every table uses: error
 * mapping, read transactions (pooled readers), write transactions, key
 * order, id counters, whole-table reads and the (server, segment) key
 * scan that garbage and server_segments share.  Calls nothing else in
 * the catalog but the change log (changelog.c, which a write
 * transaction's begin and commit drive): every table's file is above
 * it.
 */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include <lmdb.h>

#include "catalog-internal.h"
#include "cleanup.h"
#include "log.h"
#include "mdb-errno.h"

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

/* Free CAT's pooled readers (catalog_close). */
void
catalog_readers_free (catalog *cat)
{
  size_t i;

  for (i = 0; i < cat->npool; ++i)
    reader_free (cat->pool[i]);
  cat->npool = 0;
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
  catalog_changelog_reset (cat);
  return 0;
}

/* Commit *TXN durably (the environment syncs on commit) and set it to
 * NULL: LMDB frees the transaction whether or not the commit worked.
 * A transaction that changed anything raises the change sequence first,
 * and its changes go to the commit hook after the commit (changelog.c).
 * After a commit the pooled readers hold an older snapshot: reset them,
 * so that none pins the pages the next writer may reuse.
 */
int
catalog_wtxn_commit (catalog *cat, MDB_txn **txn, const char *op)
{
  struct catalog_changes done;
  uint64_t seq;
  size_t i;
  int rc, r;

  r = catalog_changelog_seal (cat, *txn, &seq, &done);
  if (r < 0) {
    mdb_txn_abort (*txn);
    *txn = NULL;
    log_error ("catalog: %s: the change could not be recorded: %s", op,
               strerror (-r));
    return r;
  }
  rc = mdb_txn_commit (*txn);
  *txn = NULL;
  if (rc == MDB_SUCCESS) {
    {
      ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&cat->lock);
      for (i = 0; i < cat->npool; ++i)
        reader_reset (cat->pool[i]);
    }
    if (done.len > 0)
      cat->hook (cat->hook_arg, seq, done.buf, done.len);
  }
  free (done.buf);
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
  rc = catalog_put (cat, txn, cat->meta, &key, &val, 0);
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_put meta");
  return 0;
}

/* Raise the cluster tables' version inside write transaction TXN: the
 * caller changed a volume or server record in it (tables.c).
 */
int
catalog_tables_bump (catalog *cat, MDB_txn *txn)
{
  uint64_t v;
  int r;

  r = catalog_counter_get (cat, txn, CATALOG_META_TABLES_VERSION, &v);
  if (r < 0)
    return r;
  return catalog_counter_put (cat, txn, CATALOG_META_TABLES_VERSION, v + 1);
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

/* Grow *LIST (capacity *CAP) past USED entries, at most LIMIT in all. */
static int
grow_ids (uint64_t **list, size_t *cap, size_t used, size_t limit)
{
  uint64_t *p;
  size_t ncap;

  if (used < *cap)
    return 0;
  ncap = *cap ? *cap * 2 : 256;
  if (ncap > limit)
    ncap = limit;
  if (ncap <= used || ncap > SIZE_MAX / sizeof **list)
    return -ENOMEM;
  p = realloc (*list, ncap * sizeof **list);
  if (p == NULL)
    return -ENOMEM;
  *list = p;
  *cap = ncap;
  return 0;
}

/* Up to MAX segment ids > START_AFTER keyed under SERVER in table DBI
 * (keys (server u32, segment u64): garbage, server_segments), in id
 * order: a cursor range scan inside transaction TXN, which must be a
 * read transaction.  WHAT names the table in debug lines.  *OUT is
 * malloc'd, NULL when *N is 0.
 */
int
catalog_scan_pairs (catalog *cat, MDB_txn *txn, MDB_dbi dbi, const char *what,
                    uint32_t server, uint64_t start_after, size_t max,
                    uint64_t **out, size_t *n)
{
  CLEANUP_CURSOR MDB_cursor *cur = NULL;
  CLEANUP_FREE uint64_t *list = NULL;
  uint8_t kbuf[KEY_PAIR_LEN];
  MDB_val key, val;
  size_t cap = 0, i = 0;
  int rc, r;

  *out = NULL;
  *n = 0;
  if (max == 0 || start_after == UINT64_MAX)
    return 0;

  rc = mdb_cursor_open (txn, dbi, &cur);
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_cursor_open");
  key = key_pair (kbuf, server, start_after + 1);
  for (rc = mdb_cursor_get (cur, &key, &val, MDB_SET_RANGE);
       rc == MDB_SUCCESS && i < max;
       rc = mdb_cursor_get (cur, &key, &val, MDB_NEXT)) {
    if (key.mv_size != KEY_PAIR_LEN) {
      log_debug ("catalog: %s: bad key length %zu", what, key.mv_size);
      return -EIO;
    }
    if (get_be32 (key.mv_data) != server)
      break;
    r = grow_ids (&list, &cap, i, max);
    if (r < 0)
      return r;
    list[i++] = get_be64 ((const uint8_t *)key.mv_data + 4);
  }
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
    return catalog_mdb_err (rc, "mdb_cursor_get");

  if (i > 0) {
    *out = list;
    list = NULL;
  }
  *n = i;
  return 0;
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

/* Garbage: replicas of deleted segments, and replicas removed from
 * segments, that their servers have yet to delete (table garbage, keyed
 * by (server id, segment id)); and the (server, segment) key scan that
 * garbage and server_segments share.
 */

#include <config.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include <lmdb.h>

#include "catalog-internal.h"
#include "cleanup.h"
#include "log.h"

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

/* Up to MAX segment ids queued for SERVER, in id order. */
int
catalog_garbage_get (catalog *cat, uint32_t server, size_t max, uint64_t **out,
                     size_t *n)
{
  CLEANUP_RTXN struct catalog_rtxn rt = { .cat = cat };
  int r;

  r = catalog_rtxn_begin (&rt);
  if (r < 0)
    return r;
  r = catalog_server_exists (cat, rt.txn, server);
  if (r < 0)
    return r;
  return catalog_scan_pairs (cat, rt.txn, cat->garbage, "garbage", server, 0,
                             max, out, n);
}

/* Forget the listed SEGMENTS of SERVER's garbage; ids not queued are
 * ignored.
 */
int
catalog_garbage_done (catalog *cat, uint32_t server, const uint64_t *segments,
                      size_t n)
{
  CLEANUP_MDB_TXN_ABORT MDB_txn *txn = NULL;
  uint8_t kbuf[KEY_PAIR_LEN];
  MDB_val key;
  size_t i, done = 0;
  int rc, r;

  r = catalog_wtxn_begin (cat, &txn, "garbage_done");
  if (r < 0)
    return r;
  r = catalog_server_exists (cat, txn, server);
  if (r < 0)
    return r;
  for (i = 0; i < n; ++i) {
    key = key_pair (kbuf, server, segments[i]);
    rc = mdb_del (txn, cat->garbage, &key, NULL);
    if (rc == MDB_SUCCESS)
      done++;
    else if (rc != MDB_NOTFOUND)
      return catalog_mdb_err (rc, "mdb_del garbage");
  }
  if (done == 0)
    return 0;
  return catalog_wtxn_commit (cat, &txn, "garbage_done");
}

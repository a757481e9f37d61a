/* The map and segments: range lookups, segment reads and listing,
 * replica lists and states (tables segmap, segments, server_segments,
 * and garbage for removed replicas).  Allocation is in alloc.c.
 */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lmdb.h>

#include "catalog-internal.h"
#include "checked-overflow.h"
#include "cleanup.h"
#include "log.h"

/* Read segment ID inside transaction TXN.  -ENOENT if unknown. */
int
catalog_segment_get_txn (catalog *cat, MDB_txn *txn, uint64_t id,
                         struct catalog_segment *out)
{
  uint8_t kbuf[KEY_U64_LEN];
  MDB_val key = key_u64 (kbuf, id);
  MDB_val val;
  int rc;

  rc = mdb_get (txn, cat->segments, &key, &val);
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_get segments");
  return catalog_segment_decode (id, &val, out);
}

/* Write segment record G inside write transaction TXN. */
int
catalog_segment_put_txn (catalog *cat, MDB_txn *txn,
                         const struct catalog_segment *g)
{
  uint8_t kbuf[KEY_U64_LEN], vbuf[SEGMENT_REC_MAX];
  MDB_val key = key_u64 (kbuf, g->id);
  MDB_val val = { .mv_data = vbuf };
  int rc;

  val.mv_size = catalog_segment_encode (g, vbuf);
  rc = catalog_put (cat, txn, cat->segments, &key, &val, 0);
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_put segments");
  return 0;
}

/* Grow *LIST (capacity *CAP entries) so that it holds at least one more
 * entry than USED, never beyond LIMIT entries in all.
 */
static int
grow_entries (struct catalog_map_entry **list, size_t *cap, size_t used,
              uint64_t limit)
{
  struct catalog_map_entry *p;
  size_t ncap;

  if (used < *cap)
    return 0;
  ncap = *cap ? *cap * 2 : 64;
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

/* Read segment ID in read transaction RT with its cached segments
 * cursor.  -ENOENT if unknown.
 */
static int
segment_read (struct catalog_rtxn *rt, uint64_t id, struct catalog_segment *out)
{
  uint8_t kbuf[KEY_U64_LEN];
  MDB_val key = key_u64 (kbuf, id);
  MDB_val val;
  MDB_cursor *cur;
  int rc, r;

  r = catalog_rtxn_cursor (rt, CATALOG_CUR_SEGMENTS, &cur);
  if (r < 0)
    return r;
  rc = mdb_cursor_get (cur, &key, &val, MDB_SET);
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_cursor_get segments");
  return catalog_segment_decode (id, &val, out);
}

/* Map entries of VOLUME in [START, START + COUNT): one read transaction
 * and one range scan of segmap with the reader's cached cursor, each
 * entry joined with its segment record.  The volume's own record is read
 * only when the range is empty: map entries exist only for existing
 * volumes (catalog_volume_delete removes both in one transaction).
 */
int
catalog_map_get (catalog *cat, uint64_t volume, uint64_t start, uint64_t count,
                 struct catalog_map_entry **out, size_t *n)
{
  CLEANUP_RTXN struct catalog_rtxn rt = { .cat = cat };
  CLEANUP_FREE struct catalog_map_entry *list = NULL;
  MDB_cursor *cur = NULL;
  uint8_t kbuf[KEY_MAP_LEN];
  MDB_val key, val;
  uint64_t last, index, seg;
  size_t cap = 0, i = 0;
  int rc = MDB_NOTFOUND, r;

  *out = NULL;
  *n = 0;
  r = catalog_rtxn_begin (&rt);
  if (r < 0)
    return r;
  if (ADD_OVERFLOW (start, count - 1, &last))
    last = UINT64_MAX;

  if (count > 0) {
    r = catalog_rtxn_cursor (&rt, CATALOG_CUR_SEGMAP, &cur);
    if (r < 0)
      return r;
    key = key_map (kbuf, volume, start);
    rc = mdb_cursor_get (cur, &key, &val, MDB_SET_RANGE);
  }
  while (rc == MDB_SUCCESS) {
    if (key.mv_size != KEY_MAP_LEN) {
      log_debug ("catalog: segmap: bad key length %zu", key.mv_size);
      return -EIO;
    }
    if (get_be64 (key.mv_data) != volume)
      break;
    index = get_be64 ((const uint8_t *)key.mv_data + 8);
    if (index > last)
      break;
    r = catalog_u64_decode ("segmap", &val, &seg);
    if (r < 0)
      return r;
    r = grow_entries (&list, &cap, i, count);
    if (r < 0)
      return r;
    list[i].index = index;
    r = segment_read (&rt, seg, &list[i].segment);
    if (r == -ENOENT) {
      log_debug ("catalog: segmap names missing segment %" PRIu64, seg);
      return -EIO;
    }
    if (r < 0)
      return r;
    i++;
    if (index == last)
      break; /* rc stays MDB_SUCCESS: no step past the range */
    rc = mdb_cursor_get (cur, &key, &val, MDB_NEXT);
  }
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
    return catalog_mdb_err (rc, "mdb_cursor_get segmap");

  if (i == 0) {
    key = key_u64 (kbuf, volume);
    rc = mdb_get (rt.txn, cat->volumes, &key, &val);
    if (rc != MDB_SUCCESS)
      return catalog_mdb_err (rc, "mdb_get volumes");
  }
  *out = list;
  list = NULL;
  *n = i;
  return 0;
}

/* Read segment ID. */
int
catalog_segment_get (catalog *cat, uint64_t id, struct catalog_segment *out)
{
  CLEANUP_RTXN struct catalog_rtxn rt = { .cat = cat };
  int r;

  r = catalog_rtxn_begin (&rt);
  if (r < 0)
    return r;
  return segment_read (&rt, id, out);
}

/* Segments with id > START_AFTER, at most MAX, in id order: one read
 * transaction and one cursor scan of segments.
 */
int
catalog_segment_list (catalog *cat, uint64_t start_after, size_t max,
                      struct catalog_segment **out, size_t *n)
{
  CLEANUP_RTXN struct catalog_rtxn rt = { .cat = cat };
  CLEANUP_CURSOR MDB_cursor *cur = NULL;
  CLEANUP_FREE struct catalog_segment *list = NULL;
  struct catalog_segment *p;
  uint8_t kbuf[KEY_U64_LEN];
  MDB_val key, val;
  size_t cap = 0, ncap, i = 0;
  int rc, r;

  *out = NULL;
  *n = 0;
  if (max == 0 || start_after == UINT64_MAX)
    return 0;
  r = catalog_rtxn_begin (&rt);
  if (r < 0)
    return r;
  rc = mdb_cursor_open (rt.txn, cat->segments, &cur);
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_cursor_open segments");

  key = key_u64 (kbuf, start_after + 1);
  for (rc = mdb_cursor_get (cur, &key, &val, MDB_SET_RANGE);
       rc == MDB_SUCCESS && i < max;
       rc = mdb_cursor_get (cur, &key, &val, MDB_NEXT)) {
    if (key.mv_size != KEY_U64_LEN) {
      log_debug ("catalog: segments: bad key length %zu", key.mv_size);
      return -EIO;
    }
    if (i == cap) {
      ncap = cap ? cap * 2 : 64;
      if (ncap > max)
        ncap = max;
      if (ncap > SIZE_MAX / sizeof *list)
        return -ENOMEM;
      p = realloc (list, ncap * sizeof *list);
      if (p == NULL)
        return -ENOMEM;
      list = p;
      cap = ncap;
    }
    r = catalog_segment_decode (get_be64 (key.mv_data), &val, &list[i]);
    if (r < 0)
      return r;
    i++;
  }
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
    return catalog_mdb_err (rc, "mdb_cursor_get segments");

  if (i > 0) {
    *out = list;
    list = NULL;
  }
  *n = i;
  return 0;
}

/* Index of SERVER in G's replica list, or -1. */
static int
find_replica (const struct catalog_segment *g, uint32_t server)
{
  uint32_t j;

  for (j = 0; j < g->nreplicas; ++j)
    if (g->replicas[j].server == server)
      return j;
  return -1;
}

/* Add a replica on SERVER in STATE to segment ID.  A garbage entry left
 * for the same (server, segment) by an earlier removal is dropped: the
 * server must keep what it now holds again.
 */
int
catalog_segment_add_replica (catalog *cat, uint64_t id, uint32_t server,
                             uint8_t state, struct catalog_segment *out)
{
  CLEANUP_MDB_TXN_ABORT MDB_txn *txn = NULL;
  struct catalog_segment g;
  uint8_t kbuf[KEY_PAIR_LEN];
  MDB_val key;
  int rc, r;

  if (state > CATALOG_REPLICA_SYNCING)
    return -EINVAL;
  r = catalog_wtxn_begin (cat, &txn, "segment_add_replica");
  if (r < 0)
    return r;
  r = catalog_segment_get_txn (cat, txn, id, &g);
  if (r < 0)
    return r;
  r = catalog_server_exists (cat, txn, server);
  if (r < 0)
    return r;
  if (find_replica (&g, server) >= 0)
    return -EEXIST;
  if (g.nreplicas >= CATALOG_REPLICAS_MAX)
    return -EINVAL;

  g.replicas[g.nreplicas].server = server;
  g.replicas[g.nreplicas].state = state;
  g.nreplicas++;
  g.gen++;
  r = catalog_segment_put_txn (cat, txn, &g);
  if (r < 0)
    return r;
  r = catalog_server_segment_add (cat, txn, server, id, NULL);
  if (r < 0)
    return r;
  key = key_pair (kbuf, server, id);
  rc = catalog_del (cat, txn, cat->garbage, &key);
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
    return catalog_mdb_err (rc, "mdb_del garbage");
  r = catalog_wtxn_commit (cat, &txn, "segment_add_replica");
  if (r < 0)
    return r;
  if (out)
    *out = g;
  return 0;
}

/* Remove SERVER's replica of segment ID, keeping the order of the
 * others, and queue it in garbage for SERVER.
 */
int
catalog_segment_remove_replica (catalog *cat, uint64_t id, uint32_t server,
                                struct catalog_segment *out)
{
  CLEANUP_MDB_TXN_ABORT MDB_txn *txn = NULL;
  struct catalog_segment g;
  uint8_t kbuf[KEY_PAIR_LEN];
  MDB_val key, empty = { .mv_size = 0, .mv_data = NULL };
  int j, rc, r;

  r = catalog_wtxn_begin (cat, &txn, "segment_remove_replica");
  if (r < 0)
    return r;
  r = catalog_segment_get_txn (cat, txn, id, &g);
  if (r < 0)
    return r;
  j = find_replica (&g, server);
  if (j < 0)
    return -ENOENT;
  if (g.nreplicas == 1)
    return -EBUSY;

  memmove (&g.replicas[j], &g.replicas[j + 1],
           (g.nreplicas - j - 1) * sizeof g.replicas[0]);
  g.nreplicas--;
  memset (&g.replicas[g.nreplicas], 0, sizeof g.replicas[0]);
  g.gen++;
  r = catalog_segment_put_txn (cat, txn, &g);
  if (r < 0)
    return r;
  r = catalog_server_segment_del (cat, txn, server, id, NULL);
  if (r < 0)
    return r;
  key = key_pair (kbuf, server, id);
  rc = catalog_put (cat, txn, cat->garbage, &key, &empty, 0);
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_put garbage");
  r = catalog_wtxn_commit (cat, &txn, "segment_remove_replica");
  if (r < 0)
    return r;
  if (out)
    *out = g;
  return 0;
}

/* Set the state of SERVER's replica of segment ID; a change raises the
 * generation.
 */
int
catalog_replica_set_state (catalog *cat, uint64_t id, uint32_t server,
                           uint8_t state, struct catalog_segment *out)
{
  CLEANUP_MDB_TXN_ABORT MDB_txn *txn = NULL;
  struct catalog_segment g;
  int j, r;

  if (state > CATALOG_REPLICA_SYNCING)
    return -EINVAL;
  r = catalog_wtxn_begin (cat, &txn, "replica_set_state");
  if (r < 0)
    return r;
  r = catalog_segment_get_txn (cat, txn, id, &g);
  if (r < 0)
    return r;
  j = find_replica (&g, server);
  if (j < 0)
    return -ENOENT;

  if (g.replicas[j].state != state) {
    g.replicas[j].state = state;
    g.gen++;
    r = catalog_segment_put_txn (cat, txn, &g);
    if (r < 0)
      return r;
    r = catalog_wtxn_commit (cat, &txn, "replica_set_state");
    if (r < 0)
      return r;
  }
  if (out)
    *out = g;
  return 0;
}

/* Raise segment ID's generation to ABOVE + 1 if it is not above ABOVE
 * already.
 */
int
catalog_segment_raise_gen (catalog *cat, uint64_t id, uint64_t above,
                           struct catalog_segment *out)
{
  CLEANUP_MDB_TXN_ABORT MDB_txn *txn = NULL;
  struct catalog_segment g;
  int r;

  if (above == UINT64_MAX)
    return -EINVAL;
  r = catalog_wtxn_begin (cat, &txn, "segment_raise_gen");
  if (r < 0)
    return r;
  r = catalog_segment_get_txn (cat, txn, id, &g);
  if (r < 0)
    return r;
  if (g.gen <= above) {
    g.gen = above + 1;
    r = catalog_segment_put_txn (cat, txn, &g);
    if (r < 0)
      return r;
    r = catalog_wtxn_commit (cat, &txn, "segment_raise_gen");
    if (r < 0)
      return r;
  }
  if (out)
    *out = g;
  return 0;
}

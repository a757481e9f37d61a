/* The map and segments: range lookups, allocation of segments for holes,
 * segment reads and listing, replica lists and states (tables segmap,
 * segments, server_segments, and garbage for removed replicas).
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
  rc = mdb_put (txn, cat->segments, &key, &val, 0);
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

/* Map entries of VOLUME in [START, START + COUNT): one read transaction
 * and one cursor range scan of segmap, each entry joined with its
 * segment record.
 */
int
catalog_map_get (catalog *cat, uint64_t volume, uint64_t start, uint64_t count,
                 struct catalog_map_entry **out, size_t *n)
{
  CLEANUP_RTXN struct catalog_rtxn rt = { .cat = cat };
  CLEANUP_CURSOR MDB_cursor *cur = NULL;
  CLEANUP_FREE struct catalog_map_entry *list = NULL;
  uint8_t kbuf[KEY_MAP_LEN];
  MDB_val key, val;
  uint64_t last, index, seg;
  size_t cap = 0, i = 0;
  int rc, r;

  r = catalog_rtxn_begin (cat, &rt.txn);
  if (r < 0)
    return r;
  key = key_u64 (kbuf, volume);
  rc = mdb_get (rt.txn, cat->volumes, &key, &val);
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_get volumes");

  *out = NULL;
  *n = 0;
  if (count == 0)
    return 0;
  if (ADD_OVERFLOW (start, count - 1, &last))
    last = UINT64_MAX;

  rc = mdb_cursor_open (rt.txn, cat->segmap, &cur);
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_cursor_open segmap");
  key = key_map (kbuf, volume, start);
  for (rc = mdb_cursor_get (cur, &key, &val, MDB_SET_RANGE); rc == MDB_SUCCESS;
       rc = mdb_cursor_get (cur, &key, &val, MDB_NEXT)) {
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
    r = catalog_segment_get_txn (cat, rt.txn, seg, &list[i].segment);
    if (r == -ENOENT) {
      log_debug ("catalog: segmap names missing segment %" PRIu64, seg);
      return -EIO;
    }
    if (r < 0)
      return r;
    i++;
  }
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
    return catalog_mdb_err (rc, "mdb_cursor_get segmap");

  if (i > 0) {
    *out = list;
    list = NULL;
  }
  *n = i;
  return 0;
}

/* Check what can be checked of ENTRIES without the catalog: replica
 * counts and distinct servers.
 */
static int
check_entries (const struct catalog_map_entry *entries, size_t n)
{
  size_t i;
  uint32_t j, k;

  for (i = 0; i < n; ++i) {
    const struct catalog_segment *g = &entries[i].segment;

    if (g->nreplicas < 1 || g->nreplicas > CATALOG_REPLICAS_MAX)
      return -EINVAL;
    for (j = 0; j < g->nreplicas; ++j)
      for (k = j + 1; k < g->nreplicas; ++k)
        if (g->replicas[j].server == g->replicas[k].server)
          return -EINVAL;
  }
  return 0;
}

/* Allocate a new segment for hole INDEX of VOLUME with the replicas of
 * *G inside write transaction TXN; on success *G is the new segment.
 */
static int
alloc_one (catalog *cat, MDB_txn *txn, uint64_t volume, uint64_t index,
           struct catalog_segment *g)
{
  uint8_t kbuf[KEY_MAP_LEN], vbuf[8];
  MDB_val key, val, empty = { .mv_size = 0, .mv_data = NULL };
  uint64_t id;
  uint32_t j;
  int rc, r;

  r = catalog_next_id (cat, txn, CATALOG_META_NEXT_SEGMENT, UINT64_MAX - 1,
                       &id);
  if (r < 0)
    return r;
  g->id = id;
  g->volume = volume;
  g->gen = 1;
  g->refcount = 1;
  for (j = 0; j < g->nreplicas; ++j)
    g->replicas[j].state = CATALOG_REPLICA_OK;
  memset (&g->replicas[g->nreplicas], 0,
          (CATALOG_REPLICAS_MAX - g->nreplicas) * sizeof g->replicas[0]);
  r = catalog_segment_put_txn (cat, txn, g);
  if (r < 0)
    return r;

  key = key_map (kbuf, volume, index);
  put_be64 (vbuf, id);
  val.mv_size = sizeof vbuf;
  val.mv_data = vbuf;
  rc = mdb_put (txn, cat->segmap, &key, &val, MDB_NOOVERWRITE);
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_put segmap");

  for (j = 0; j < g->nreplicas; ++j) {
    key = key_pair (kbuf, g->replicas[j].server, id);
    rc = mdb_put (txn, cat->server_segments, &key, &empty, 0);
    if (rc != MDB_SUCCESS)
      return catalog_mdb_err (rc, "mdb_put server_segments");
  }
  return 0;
}

/* Allocate segments for the holes among ENTRIES of VOLUME, in one write
 * transaction.  Every entry is validated before anything changes.  On
 * error ENTRIES may have been partly overwritten.
 */
int
catalog_map_alloc (catalog *cat, uint64_t volume,
                   struct catalog_map_entry *entries, size_t n)
{
  CLEANUP_MDB_TXN_ABORT MDB_txn *txn = NULL;
  struct catalog_volume v;
  struct catalog_cluster c;
  uint8_t kbuf[KEY_MAP_LEN];
  MDB_val key, val;
  uint64_t nsegs, seg, allocated = 0;
  size_t i;
  uint32_t j;
  int rc, r;

  r = check_entries (entries, n);
  if (r < 0)
    return r;

  r = catalog_wtxn_begin (cat, &txn, "map_alloc");
  if (r < 0)
    return r;
  r = catalog_volume_get_txn (cat, txn, volume, &v);
  if (r < 0)
    return r;
  r = catalog_get_cluster_txn (cat, txn, &c);
  if (r < 0)
    return r;
  assert (c.segment_size > 0);
  nsegs = v.size / c.segment_size + (v.size % c.segment_size != 0);

  for (i = 0; i < n; ++i) {
    if (entries[i].index >= nsegs)
      return -EINVAL;
    for (j = 0; j < entries[i].segment.nreplicas; ++j) {
      r = catalog_server_exists (cat, txn,
                                 entries[i].segment.replicas[j].server);
      if (r < 0)
        return r;
    }
  }

  for (i = 0; i < n; ++i) {
    key = key_map (kbuf, volume, entries[i].index);
    rc = mdb_get (txn, cat->segmap, &key, &val);
    if (rc == MDB_SUCCESS) {
      /* Already mapped (earlier, or by an earlier entry of this call). */
      r = catalog_u64_decode ("segmap", &val, &seg);
      if (r < 0)
        return r;
      r = catalog_segment_get_txn (cat, txn, seg, &entries[i].segment);
      if (r == -ENOENT) {
        log_debug ("catalog: segmap names missing segment %" PRIu64, seg);
        return -EIO;
      }
      if (r < 0)
        return r;
    }
    else if (rc == MDB_NOTFOUND) {
      r = alloc_one (cat, txn, volume, entries[i].index, &entries[i].segment);
      if (r < 0)
        return r;
      allocated++;
    }
    else
      return catalog_mdb_err (rc, "mdb_get segmap");
  }

  if (allocated == 0)
    return 0; /* nothing changed: the abort is the cheaper end */
  v.segments += allocated;
  r = catalog_volume_put_txn (cat, txn, &v);
  if (r < 0)
    return r;
  return catalog_wtxn_commit (&txn, "map_alloc");
}

/* Read segment ID. */
int
catalog_segment_get (catalog *cat, uint64_t id, struct catalog_segment *out)
{
  CLEANUP_RTXN struct catalog_rtxn rt = { .cat = cat };
  int r;

  r = catalog_rtxn_begin (cat, &rt.txn);
  if (r < 0)
    return r;
  return catalog_segment_get_txn (cat, rt.txn, id, out);
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
  r = catalog_rtxn_begin (cat, &rt.txn);
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
  MDB_val key, empty = { .mv_size = 0, .mv_data = NULL };
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
  key = key_pair (kbuf, server, id);
  rc = mdb_put (txn, cat->server_segments, &key, &empty, 0);
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_put server_segments");
  rc = mdb_del (txn, cat->garbage, &key, NULL);
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
    return catalog_mdb_err (rc, "mdb_del garbage");
  r = catalog_wtxn_commit (&txn, "segment_add_replica");
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
  key = key_pair (kbuf, server, id);
  rc = mdb_del (txn, cat->server_segments, &key, NULL);
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
    return catalog_mdb_err (rc, "mdb_del server_segments");
  rc = mdb_put (txn, cat->garbage, &key, &empty, 0);
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_put garbage");
  r = catalog_wtxn_commit (&txn, "segment_remove_replica");
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
    r = catalog_wtxn_commit (&txn, "replica_set_state");
    if (r < 0)
      return r;
  }
  if (out)
    *out = g;
  return 0;
}

/* Volumes: creation, lookup by id or name, listing, resize, deletion
 * (with the release of their segments), writer epochs and clean epochs
 * (tables volumes, names, and for deletion segmap, segments,
 * server_segments and garbage).
 */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lmdb.h>

#include "catalog-internal.h"
#include "cleanup.h"
#include "log.h"

/* True if NAME is a valid volume name: 1..CATALOG_NAME_MAX bytes of
 * [A-Za-z0-9._-], not starting with '.' or '-'.
 */
bool
catalog_name_valid (const char *name)
{
  size_t i;

  if (name == NULL || name[0] == '\0' || name[0] == '.' || name[0] == '-')
    return false;
  for (i = 0; name[i] != '\0'; ++i) {
    char c = name[i];

    if (i >= CATALOG_NAME_MAX)
      return false;
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
          (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
      return false;
  }
  return true;
}

/* Read volume ID inside transaction TXN.  -ENOENT if unknown. */
int
catalog_volume_get_txn (catalog *cat, MDB_txn *txn, uint64_t id,
                        struct catalog_volume *out)
{
  uint8_t kbuf[KEY_U64_LEN];
  MDB_val key = key_u64 (kbuf, id);
  MDB_val val;
  int rc;

  rc = mdb_get (txn, cat->volumes, &key, &val);
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_get volumes");
  return catalog_volume_decode (id, &val, out);
}

/* Write volume record V inside write transaction TXN. */
int
catalog_volume_put_txn (catalog *cat, MDB_txn *txn,
                        const struct catalog_volume *v)
{
  uint8_t kbuf[KEY_U64_LEN], vbuf[VOLUME_REC_MAX];
  MDB_val key = key_u64 (kbuf, v->id);
  MDB_val val = { .mv_data = vbuf };
  int rc;

  val.mv_size = catalog_volume_encode (v, vbuf);
  rc = catalog_put (cat, txn, cat->volumes, &key, &val, 0);
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_put volumes");
  return 0;
}

/* Create a volume (see catalog.h for the rules). */
int
catalog_volume_create (catalog *cat, const char *name, uint64_t size,
                       uint32_t replicas, struct catalog_volume *out)
{
  return catalog_volume_create_min_copies (cat, name, size, replicas, 0, out);
}

/* Create a volume with MIN_COPIES (see catalog.h for the rules). */
int
catalog_volume_create_min_copies (catalog *cat, const char *name, uint64_t size,
                                  uint32_t replicas, uint32_t min_copies,
                                  struct catalog_volume *out)
{
  CLEANUP_MDB_TXN_ABORT MDB_txn *txn = NULL;
  struct catalog_volume v = { 0 };
  MDB_val nkey, val;
  uint8_t idbuf[8];
  uint64_t id;
  int rc, r;

  if (!catalog_name_valid (name) || size == 0 || size % 512 != 0 ||
      replicas < 1 || replicas > CATALOG_REPLICAS_MAX || min_copies > replicas)
    return -EINVAL;

  r = catalog_wtxn_begin (cat, &txn, "volume_create");
  if (r < 0)
    return r;
  r = catalog_next_id (cat, txn, CATALOG_META_NEXT_VOLUME, UINT64_MAX - 1, &id);
  if (r < 0)
    return r;

  nkey.mv_size = strlen (name);
  nkey.mv_data = (void *)name;
  put_be64 (idbuf, id);
  val.mv_size = sizeof idbuf;
  val.mv_data = idbuf;
  rc = catalog_put (cat, txn, cat->names, &nkey, &val, MDB_NOOVERWRITE);
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_put names");

  v.id = id;
  strcpy (v.name, name);
  v.size = size;
  v.replicas = replicas;
  v.min_copies =
      min_copies ? min_copies : CATALOG_MIN_COPIES_DEFAULT (replicas);
  v.flags = CATALOG_VOL_CLEAN;
  r = catalog_volume_put_txn (cat, txn, &v);
  if (r == 0)
    r = catalog_tables_bump (cat, txn);
  if (r < 0)
    return r;
  r = catalog_wtxn_commit (cat, &txn, "volume_create");
  if (r < 0)
    return r;
  if (out)
    *out = v;
  return 0;
}

/* Read volume ID. */
int
catalog_volume_get (catalog *cat, uint64_t id, struct catalog_volume *out)
{
  CLEANUP_RTXN struct catalog_rtxn rt = { .cat = cat };
  int r;

  r = catalog_rtxn_begin (&rt);
  if (r < 0)
    return r;
  return catalog_volume_get_txn (cat, rt.txn, id, out);
}

/* Read a volume by name: -EINVAL for an invalid name, -ENOENT for a
 * valid one that is not in use.
 */
int
catalog_volume_lookup (catalog *cat, const char *name,
                       struct catalog_volume *out)
{
  CLEANUP_RTXN struct catalog_rtxn rt = { .cat = cat };
  MDB_val nkey, val;
  uint64_t id;
  int rc, r;

  if (!catalog_name_valid (name))
    return -EINVAL;
  r = catalog_rtxn_begin (&rt);
  if (r < 0)
    return r;
  nkey.mv_size = strlen (name);
  nkey.mv_data = (void *)name;
  rc = mdb_get (rt.txn, cat->names, &nkey, &val);
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_get names");
  r = catalog_u64_decode ("names", &val, &id);
  if (r < 0)
    return r;
  r = catalog_volume_get_txn (cat, rt.txn, id, out);
  if (r == -ENOENT) {
    log_debug ("catalog: names: %s names a missing volume", name);
    return -EIO;
  }
  return r;
}

/* Decode one record of the volumes table for catalog_table_list. */
static int
volumes_entry (const MDB_val *key, const MDB_val *val, void *elem)
{
  return catalog_volume_decode (get_be64 (key->mv_data), val, elem);
}

/* List every volume in id order into a malloc'd array. */
int
catalog_volume_list (catalog *cat, struct catalog_volume **out, size_t *n)
{
  return catalog_table_list (cat, cat->volumes, "volumes", KEY_U64_LEN,
                             sizeof **out, volumes_entry, (void **)out, n);
}

/* Grow volume ID to NEW_SIZE. */
int
catalog_volume_resize (catalog *cat, uint64_t id, uint64_t new_size,
                       struct catalog_volume *out)
{
  CLEANUP_MDB_TXN_ABORT MDB_txn *txn = NULL;
  struct catalog_volume v;
  int r;

  if (new_size == 0 || new_size % 512 != 0)
    return -EINVAL;
  r = catalog_wtxn_begin (cat, &txn, "volume_resize");
  if (r < 0)
    return r;
  r = catalog_volume_get_txn (cat, txn, id, &v);
  if (r < 0)
    return r;
  if (new_size < v.size)
    return -EINVAL;
  v.size = new_size;
  r = catalog_volume_put_txn (cat, txn, &v);
  if (r == 0)
    r = catalog_tables_bump (cat, txn);
  if (r < 0)
    return r;
  r = catalog_wtxn_commit (cat, &txn, "volume_resize");
  if (r < 0)
    return r;
  if (out)
    *out = v;
  return 0;
}

/* Drop one reference to segment SEG inside write transaction TXN.  The
 * last reference deletes the segment and queues each replica in garbage
 * for its server (the replica counts go into COUNTS).
 */
static int
release_segment (catalog *cat, MDB_txn *txn, uint64_t seg,
                 struct catalog_counts *counts)
{
  struct catalog_segment g;
  uint8_t kbuf[KEY_PAIR_LEN];
  MDB_val key, empty = { .mv_size = 0, .mv_data = NULL };
  uint32_t i;
  int rc, r;

  r = catalog_segment_get_txn (cat, txn, seg, &g);
  if (r == -ENOENT) {
    log_debug ("catalog: segmap names missing segment %" PRIu64, seg);
    return -EIO;
  }
  if (r < 0)
    return r;

  if (g.refcount > 1) {
    g.refcount--;
    return catalog_segment_put_txn (cat, txn, &g);
  }

  key = key_u64 (kbuf, seg);
  rc = catalog_del (cat, txn, cat->segments, &key);
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_del segments");
  for (i = 0; i < g.nreplicas; ++i) {
    r = catalog_server_segment_del (cat, txn, g.replicas[i].server, seg,
                                    counts);
    if (r < 0)
      return r;
    key = key_pair (kbuf, g.replicas[i].server, seg);
    rc = catalog_put (cat, txn, cat->garbage, &key, &empty, 0);
    if (rc != MDB_SUCCESS)
      return catalog_mdb_err (rc, "mdb_put garbage");
  }
  return 0;
}

/* Delete volume ID, its name and its map, releasing its segments: a
 * cursor walk of the volume's segmap range, in one transaction.
 */
int
catalog_volume_delete (catalog *cat, uint64_t id)
{
  CLEANUP_MDB_TXN_ABORT MDB_txn *txn = NULL;
  MDB_cursor *cur; /* freed with the write transaction */
  struct catalog_volume v;
  struct catalog_counts counts = { .n = 0 };
  uint8_t kbuf[KEY_MAP_LEN];
  MDB_val key, val;
  uint64_t seg;
  int rc, r;

  r = catalog_wtxn_begin (cat, &txn, "volume_delete");
  if (r < 0)
    return r;
  r = catalog_volume_get_txn (cat, txn, id, &v);
  if (r < 0)
    return r;

  rc = mdb_cursor_open (txn, cat->segmap, &cur);
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_cursor_open segmap");
  for (;;) {
    /* Entries go in index order, so the first one at or after
     * (ID, 0) is always the next to delete.
     */
    key = key_map (kbuf, id, 0);
    rc = mdb_cursor_get (cur, &key, &val, MDB_SET_RANGE);
    if (rc == MDB_NOTFOUND)
      break;
    if (rc != MDB_SUCCESS)
      return catalog_mdb_err (rc, "mdb_cursor_get segmap");
    if (key.mv_size != KEY_MAP_LEN) {
      log_debug ("catalog: segmap: bad key length %zu", key.mv_size);
      return -EIO;
    }
    if (get_be64 (key.mv_data) != id)
      break;
    r = catalog_u64_decode ("segmap", &val, &seg);
    if (r < 0)
      return r;
    rc = catalog_cursor_del (cat, cur);
    if (rc != MDB_SUCCESS)
      return catalog_mdb_err (rc, "mdb_cursor_del segmap");
    r = release_segment (cat, txn, seg, &counts);
    if (r < 0)
      return r;
  }
  r = catalog_counts_flush (cat, txn, &counts);
  if (r < 0)
    return r;

  key.mv_size = strlen (v.name);
  key.mv_data = v.name;
  rc = catalog_del (cat, txn, cat->names, &key);
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
    return catalog_mdb_err (rc, "mdb_del names");
  key = key_u64 (kbuf, id);
  rc = catalog_del (cat, txn, cat->volumes, &key);
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_del volumes");
  r = catalog_tables_bump (cat, txn);
  if (r < 0)
    return r;
  return catalog_wtxn_commit (cat, &txn, "volume_delete");
}

/* Move volume ID to its next epoch, not clean, in one transaction.  If
 * CURRENT is not NULL the volume must be at epoch *CURRENT (-ESTALE
 * otherwise).  WHAT names the operation in debug lines.
 */
static int
advance_epoch (catalog *cat, uint64_t id, const uint64_t *current,
               const char *what, struct catalog_volume *out)
{
  CLEANUP_MDB_TXN_ABORT MDB_txn *txn = NULL;
  struct catalog_volume v;
  int r;

  r = catalog_wtxn_begin (cat, &txn, what);
  if (r < 0)
    return r;
  r = catalog_volume_get_txn (cat, txn, id, &v);
  if (r < 0)
    return r;
  if (current && *current != v.epoch)
    return -ESTALE;
  if (v.epoch == UINT64_MAX)
    return -ENOSPC;
  v.epoch++;
  v.flags &= ~CATALOG_VOL_CLEAN;
  r = catalog_volume_put_txn (cat, txn, &v);
  if (r < 0)
    return r;
  r = catalog_wtxn_commit (cat, &txn, what);
  if (r < 0)
    return r;
  if (out)
    *out = v;
  return 0;
}

/* Start a writer on volume ID: a new epoch, not clean. */
int
catalog_volume_begin_epoch (catalog *cat, uint64_t id,
                            struct catalog_volume *out)
{
  return advance_epoch (cat, id, NULL, "volume_begin_epoch", out);
}

/* The writer of epoch CURRENT of volume ID moves on to the next one. */
int
catalog_volume_next_epoch (catalog *cat, uint64_t id, uint64_t current,
                           struct catalog_volume *out)
{
  return advance_epoch (cat, id, &current, "volume_next_epoch", out);
}

/* Every epoch of volume ID up to EPOCH is clean (never lowers it). */
int
catalog_volume_set_clean_epoch (catalog *cat, uint64_t id, uint64_t epoch)
{
  CLEANUP_MDB_TXN_ABORT MDB_txn *txn = NULL;
  struct catalog_volume v;
  int r;

  r = catalog_wtxn_begin (cat, &txn, "volume_set_clean_epoch");
  if (r < 0)
    return r;
  r = catalog_volume_get_txn (cat, txn, id, &v);
  if (r < 0)
    return r;
  if (epoch > v.epoch)
    return -EINVAL;
  if (epoch <= v.clean_epoch)
    return 0;
  v.clean_epoch = epoch;
  r = catalog_volume_put_txn (cat, txn, &v);
  if (r < 0)
    return r;
  return catalog_wtxn_commit (cat, &txn, "volume_set_clean_epoch");
}

/* The writer of EPOCH closed volume ID cleanly, or a resync made it
 * consistent: CLEAN, and every epoch up to EPOCH is clean.
 */
int
catalog_volume_mark_clean (catalog *cat, uint64_t id, uint64_t epoch)
{
  CLEANUP_MDB_TXN_ABORT MDB_txn *txn = NULL;
  struct catalog_volume v;
  int r;

  r = catalog_wtxn_begin (cat, &txn, "volume_mark_clean");
  if (r < 0)
    return r;
  r = catalog_volume_get_txn (cat, txn, id, &v);
  if (r < 0)
    return r;
  if (epoch != v.epoch)
    return -ESTALE;
  if ((v.flags & CATALOG_VOL_CLEAN) && v.clean_epoch == epoch)
    return 0;
  v.flags |= CATALOG_VOL_CLEAN;
  v.clean_epoch = epoch;
  r = catalog_volume_put_txn (cat, txn, &v);
  if (r < 0)
    return r;
  return catalog_wtxn_commit (cat, &txn, "volume_mark_clean");
}

/* Servers: registration by uuid, lookup, listing, state, the replicas
 * placed on each, and removal (tables servers, server_uuids,
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

/* Read server ID inside transaction TXN.  -ENOENT if unknown. */
static int
get_server_txn (catalog *cat, MDB_txn *txn, uint32_t id,
                struct catalog_server *out)
{
  uint8_t kbuf[KEY_U32_LEN];
  MDB_val key = key_u32 (kbuf, id);
  MDB_val val;
  int rc;

  rc = mdb_get (txn, cat->servers, &key, &val);
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_get servers");
  return catalog_server_decode (id, &val, out);
}

/* Write server record S inside write transaction TXN. */
static int
put_server_txn (catalog *cat, MDB_txn *txn, const struct catalog_server *s)
{
  uint8_t kbuf[KEY_U32_LEN], vbuf[SERVER_REC_MAX];
  MDB_val key = key_u32 (kbuf, s->id);
  MDB_val val = { .mv_data = vbuf };
  int rc;

  val.mv_size = catalog_server_encode (s, vbuf);
  rc = catalog_put (cat, txn, cat->servers, &key, &val, 0);
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_put servers");
  return 0;
}

/* Write server record S inside write transaction TXN (for tables.c). */
int
catalog_server_put_txn (catalog *cat, MDB_txn *txn,
                        const struct catalog_server *s)
{
  return put_server_txn (cat, txn, s);
}

/* Set the count of server SERVER in server_counts to COUNT inside write
 * transaction TXN (zero: no record).
 */
static int
put_count (catalog *cat, MDB_txn *txn, uint32_t server, uint64_t count)
{
  uint8_t kbuf[KEY_U32_LEN], vbuf[8];
  MDB_val key = key_u32 (kbuf, server);
  MDB_val val = { .mv_size = sizeof vbuf, .mv_data = vbuf };
  int rc;

  if (count == 0) {
    rc = catalog_del (cat, txn, cat->server_counts, &key);
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
      return catalog_mdb_err (rc, "mdb_del server_counts");
    return 0;
  }
  put_be64 (vbuf, count);
  rc = catalog_put (cat, txn, cat->server_counts, &key, &val, 0);
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_put server_counts");
  return 0;
}

/* Read the count of server SERVER in server_counts inside transaction
 * TXN into *COUNT (no record: zero).
 */
static int
get_count (catalog *cat, MDB_txn *txn, uint32_t server, uint64_t *count)
{
  uint8_t kbuf[KEY_U32_LEN];
  MDB_val key = key_u32 (kbuf, server);
  MDB_val val;
  int rc;

  *count = 0;
  rc = mdb_get (txn, cat->server_counts, &key, &val);
  if (rc == MDB_NOTFOUND)
    return 0;
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_get server_counts");
  return catalog_u64_decode ("server_counts", &val, count);
}

/* Add DELTA to the count of server SERVER inside write transaction TXN.
 * A count that would go below zero (tables out of step) stays at zero,
 * with a debug line.
 */
static int
count_add (catalog *cat, MDB_txn *txn, uint32_t server, int64_t delta)
{
  uint64_t count;
  int r;

  if (delta == 0)
    return 0;
  r = get_count (cat, txn, server, &count);
  if (r < 0)
    return r;
  if (delta < 0 && count < (uint64_t)-delta) {
    log_debug ("catalog: server %" PRIu32 ": replica count below zero", server);
    count = 0;
  }
  else
    count += delta;
  return put_count (cat, txn, server, count);
}

/* Count DELTA for SERVER: into *COUNTS if it has room for it, else (or
 * with COUNTS NULL) into server_counts at once.
 */
static int
count_change (catalog *cat, MDB_txn *txn, uint32_t server, int64_t delta,
              struct catalog_counts *counts)
{
  size_t i;

  if (counts) {
    for (i = 0; i < counts->n; ++i)
      if (counts->e[i].server == server) {
        counts->e[i].delta += delta;
        return 0;
      }
    if (counts->n < CATALOG_COUNTS_MAX) {
      counts->e[counts->n].server = server;
      counts->e[counts->n].delta = delta;
      counts->n++;
      return 0;
    }
  }
  return count_add (cat, txn, server, delta);
}

/* Write the changes added up in COUNTS into server_counts inside write
 * transaction TXN, and empty COUNTS.
 */
int
catalog_counts_flush (catalog *cat, MDB_txn *txn, struct catalog_counts *counts)
{
  size_t i;
  int r;

  for (i = 0; i < counts->n; ++i) {
    r = count_add (cat, txn, counts->e[i].server, counts->e[i].delta);
    if (r < 0)
      return r;
  }
  counts->n = 0;
  return 0;
}

/* List SEGMENT's replica on SERVER in server_segments, and count it (see
 * struct catalog_counts), inside write transaction TXN.  Already listed:
 * nothing changes.
 */
int
catalog_server_segment_add (catalog *cat, MDB_txn *txn, uint32_t server,
                            uint64_t segment, struct catalog_counts *counts)
{
  uint8_t kbuf[KEY_PAIR_LEN];
  MDB_val key = key_pair (kbuf, server, segment);
  MDB_val empty = { .mv_size = 0, .mv_data = NULL };
  int rc;

  rc = catalog_put (cat, txn, cat->server_segments, &key, &empty,
                    MDB_NOOVERWRITE);
  if (rc == MDB_KEYEXIST)
    return 0;
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_put server_segments");
  return count_change (cat, txn, server, 1, counts);
}

/* Unlist SEGMENT's replica on SERVER from server_segments, and uncount
 * it (see struct catalog_counts), inside write transaction TXN.  Not
 * listed: nothing changes.
 */
int
catalog_server_segment_del (catalog *cat, MDB_txn *txn, uint32_t server,
                            uint64_t segment, struct catalog_counts *counts)
{
  uint8_t kbuf[KEY_PAIR_LEN];
  MDB_val key = key_pair (kbuf, server, segment);
  int rc;

  rc = catalog_del (cat, txn, cat->server_segments, &key);
  if (rc == MDB_NOTFOUND)
    return 0;
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_del server_segments");
  return count_change (cat, txn, server, -1, counts);
}

/* Fill server_counts from server_segments inside write transaction TXN
 * (catalog_open, for a catalog made before server_counts): one walk of
 * server_segments, whose keys come grouped by server.
 */
int
catalog_server_counts_rebuild (catalog *cat, MDB_txn *txn)
{
  MDB_cursor *cur; /* freed with the write transaction */
  MDB_val key, val;
  uint64_t count = 0;
  uint32_t server = 0;
  bool end;
  int rc, r;

  rc = catalog_drop (cat, txn, cat->server_counts);
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_drop server_counts");
  rc = mdb_cursor_open (txn, cat->server_segments, &cur);
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_cursor_open server_segments");
  rc = mdb_cursor_get (cur, &key, &val, MDB_FIRST);
  for (;;) {
    end = rc == MDB_NOTFOUND;
    if (!end && rc != MDB_SUCCESS)
      return catalog_mdb_err (rc, "mdb_cursor_get server_segments");
    if (!end && key.mv_size != KEY_PAIR_LEN) {
      log_debug ("catalog: server_segments: bad key length %zu", key.mv_size);
      return -EIO;
    }
    if (count > 0 && (end || get_be32 (key.mv_data) != server)) {
      r = put_count (cat, txn, server, count);
      if (r < 0)
        return r;
      count = 0;
    }
    if (end)
      break;
    server = get_be32 (key.mv_data);
    count++;
    rc = mdb_cursor_get (cur, &key, &val, MDB_NEXT);
  }
  log_debug ("catalog: server_counts filled from server_segments");
  return 0;
}

/* 0 if server ID exists, -ENOENT if not (used to validate replicas). */
int
catalog_server_exists (catalog *cat, MDB_txn *txn, uint32_t id)
{
  uint8_t kbuf[KEY_U32_LEN];
  MDB_val key = key_u32 (kbuf, id);
  MDB_val val;
  int rc;

  rc = mdb_get (txn, cat->servers, &key, &val);
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_get servers");
  return 0;
}

/* Register a server by uuid: an existing one keeps its id and state and
 * gets the new address, zone and capacity; a new one gets the next id
 * and state UP.
 */
int
catalog_server_register (catalog *cat, const uint8_t uuid[16],
                         const char *address, const char *zone,
                         uint64_t capacity, struct catalog_server *out)
{
  CLEANUP_MDB_TXN_ABORT MDB_txn *txn = NULL;
  struct catalog_server s = { 0 };
  MDB_val ukey = { .mv_size = 16, .mv_data = (void *)uuid };
  MDB_val val;
  uint8_t idbuf[4];
  size_t alen, zlen;
  uint64_t id;
  bool changed;
  int rc, r;

  if (zone == NULL)
    zone = "";
  if (uuid == NULL || address == NULL)
    return -EINVAL;
  alen = strlen (address);
  zlen = strlen (zone);
  if (alen == 0 || alen > CATALOG_ADDR_MAX || zlen > CATALOG_ZONE_MAX)
    return -EINVAL;

  r = catalog_wtxn_begin (cat, &txn, "server_register");
  if (r < 0)
    return r;

  rc = mdb_get (txn, cat->server_uuids, &ukey, &val);
  if (rc == MDB_SUCCESS) {
    /* Known disk: same id, same state, fresh address/zone/capacity. */
    if (val.mv_size != 4) {
      log_debug ("catalog: server_uuids: bad value length %zu", val.mv_size);
      return -EIO;
    }
    r = get_server_txn (cat, txn, get_be32 (val.mv_data), &s);
    if (r == -ENOENT) {
      log_debug ("catalog: server_uuids: names a missing server");
      return -EIO;
    }
    if (r < 0)
      return r;
  }
  else if (rc == MDB_NOTFOUND) {
    r = catalog_next_id (cat, txn, CATALOG_META_NEXT_SERVER, UINT32_MAX, &id);
    if (r < 0)
      return r;
    s.id = id;
    s.state = CATALOG_SERVER_UP;
    memcpy (s.uuid, uuid, sizeof s.uuid);
    put_be32 (idbuf, s.id);
    val.mv_size = sizeof idbuf;
    val.mv_data = idbuf;
    rc =
        catalog_put (cat, txn, cat->server_uuids, &ukey, &val, MDB_NOOVERWRITE);
    if (rc != MDB_SUCCESS)
      return catalog_mdb_err (rc, "mdb_put server_uuids");
  }
  else
    return catalog_mdb_err (rc, "mdb_get server_uuids");

  /* The cluster tables hold the address, zone and capacity. */
  changed = rc == MDB_NOTFOUND || strcmp (s.address, address) != 0 ||
            strcmp (s.zone, zone) != 0 || s.capacity != capacity;
  memcpy (s.address, address, alen + 1);
  memcpy (s.zone, zone, zlen + 1);
  s.capacity = capacity;
  r = put_server_txn (cat, txn, &s);
  if (r == 0 && changed)
    r = catalog_tables_bump (cat, txn);
  if (r < 0)
    return r;
  r = catalog_wtxn_commit (cat, &txn, "server_register");
  if (r < 0)
    return r;
  if (out)
    *out = s;
  return 0;
}

/* Read server ID. */
int
catalog_server_get (catalog *cat, uint32_t id, struct catalog_server *out)
{
  CLEANUP_RTXN struct catalog_rtxn rt = { .cat = cat };
  int r;

  r = catalog_rtxn_begin (&rt);
  if (r < 0)
    return r;
  return get_server_txn (cat, rt.txn, id, out);
}

/* Decode one record of the servers table for catalog_table_list. */
static int
servers_entry (const MDB_val *key, const MDB_val *val, void *elem)
{
  return catalog_server_decode (get_be32 (key->mv_data), val, elem);
}

/* List every server in id order into a malloc'd array. */
int
catalog_server_list (catalog *cat, struct catalog_server **out, size_t *n)
{
  return catalog_table_list (cat, cat->servers, "servers", KEY_U32_LEN,
                             sizeof **out, servers_entry, (void **)out, n);
}

/* Set the state of server ID (no commit if it is unchanged). */
int
catalog_server_set_state (catalog *cat, uint32_t id, uint32_t state)
{
  CLEANUP_MDB_TXN_ABORT MDB_txn *txn = NULL;
  struct catalog_server s;
  int r;

  if (state > CATALOG_SERVER_OUT)
    return -EINVAL;
  r = catalog_wtxn_begin (cat, &txn, "server_set_state");
  if (r < 0)
    return r;
  r = get_server_txn (cat, txn, id, &s);
  if (r < 0)
    return r;
  if (s.state == state)
    return 0;
  s.state = state;
  r = put_server_txn (cat, txn, &s);
  if (r == 0)
    r = catalog_tables_bump (cat, txn);
  if (r < 0)
    return r;
  return catalog_wtxn_commit (cat, &txn, "server_set_state");
}

/* Save server ID's index_seq. */
int
catalog_server_set_index_seq (catalog *cat, uint32_t id, uint64_t index_seq)
{
  CLEANUP_MDB_TXN_ABORT MDB_txn *txn = NULL;
  struct catalog_server s;
  int r;

  r = catalog_wtxn_begin (cat, &txn, "server_set_index_seq");
  if (r < 0)
    return r;
  r = get_server_txn (cat, txn, id, &s);
  if (r < 0)
    return r;
  if (s.index_seq == index_seq)
    return 0;
  s.index_seq = index_seq;
  r = put_server_txn (cat, txn, &s);
  if (r < 0)
    return r;
  return catalog_wtxn_commit (cat, &txn, "server_set_index_seq");
}

/* The replicas on server ID: its count in server_counts. */
int
catalog_server_count_segments (catalog *cat, uint32_t id, uint64_t *count)
{
  CLEANUP_RTXN struct catalog_rtxn rt = { .cat = cat };
  int r;

  r = catalog_rtxn_begin (&rt);
  if (r < 0)
    return r;
  r = catalog_server_exists (cat, rt.txn, id);
  if (r < 0)
    return r;
  return get_count (cat, rt.txn, id, count);
}

/* Segment ids with a replica on server ID, > START_AFTER, at most MAX:
 * a cursor range scan of its part of server_segments.
 */
int
catalog_server_segments (catalog *cat, uint32_t id, uint64_t start_after,
                         size_t max, uint64_t **out, size_t *n)
{
  CLEANUP_RTXN struct catalog_rtxn rt = { .cat = cat };
  int r;

  r = catalog_rtxn_begin (&rt);
  if (r < 0)
    return r;
  r = catalog_server_exists (cat, rt.txn, id);
  if (r < 0)
    return r;
  return catalog_scan_pairs (cat, rt.txn, cat->server_segments,
                             "server_segments", id, start_after, max, out, n);
}

/* Delete every key of SERVER's range of table DBI (keys (server u32,
 * segment u64)) inside write transaction TXN.  With REFUSE set, any key
 * makes it fail with -EBUSY instead.
 */
static int
delete_pairs (catalog *cat, MDB_txn *txn, MDB_dbi dbi, const char *what,
              uint32_t server, bool refuse)
{
  MDB_cursor *cur; /* freed with the write transaction */
  uint8_t kbuf[KEY_PAIR_LEN];
  MDB_val key, val;
  int rc;

  rc = mdb_cursor_open (txn, dbi, &cur);
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_cursor_open");
  for (;;) {
    key = key_pair (kbuf, server, 0);
    rc = mdb_cursor_get (cur, &key, &val, MDB_SET_RANGE);
    if (rc == MDB_NOTFOUND)
      return 0;
    if (rc != MDB_SUCCESS)
      return catalog_mdb_err (rc, "mdb_cursor_get");
    if (key.mv_size != KEY_PAIR_LEN) {
      log_debug ("catalog: %s: bad key length %zu", what, key.mv_size);
      return -EIO;
    }
    if (get_be32 (key.mv_data) != server)
      return 0;
    if (refuse)
      return -EBUSY;
    rc = catalog_cursor_del (cat, cur);
    if (rc != MDB_SUCCESS)
      return catalog_mdb_err (rc, "mdb_cursor_del");
  }
}

/* Forget server ID: its record, its uuid and its garbage, in one
 * transaction; -EBUSY while server_segments lists a replica on it.
 */
int
catalog_server_remove (catalog *cat, uint32_t id)
{
  CLEANUP_MDB_TXN_ABORT MDB_txn *txn = NULL;
  struct catalog_server s;
  uint8_t kbuf[KEY_U32_LEN];
  MDB_val key, val;
  int rc, r;

  r = catalog_wtxn_begin (cat, &txn, "server_remove");
  if (r < 0)
    return r;
  r = get_server_txn (cat, txn, id, &s);
  if (r < 0)
    return r;
  r = delete_pairs (cat, txn, cat->server_segments, "server_segments", id,
                    true);
  if (r < 0)
    return r;
  r = put_count (cat, txn, id, 0);
  if (r < 0)
    return r;
  r = delete_pairs (cat, txn, cat->garbage, "garbage", id, false);
  if (r < 0)
    return r;

  /* The uuid maps to this id unless the tables disagree: then leave it. */
  key.mv_size = sizeof s.uuid;
  key.mv_data = s.uuid;
  rc = mdb_get (txn, cat->server_uuids, &key, &val);
  if (rc == MDB_SUCCESS && val.mv_size == 4 && get_be32 (val.mv_data) == id) {
    rc = catalog_del (cat, txn, cat->server_uuids, &key);
    if (rc != MDB_SUCCESS)
      return catalog_mdb_err (rc, "mdb_del server_uuids");
  }
  else if (rc == MDB_SUCCESS)
    log_debug ("catalog: server %" PRIu32 ": uuid names another server", id);
  else if (rc != MDB_NOTFOUND)
    return catalog_mdb_err (rc, "mdb_get server_uuids");

  key = key_u32 (kbuf, id);
  rc = catalog_del (cat, txn, cat->servers, &key);
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_del servers");
  r = catalog_tables_bump (cat, txn);
  if (r < 0)
    return r;
  return catalog_wtxn_commit (cat, &txn, "server_remove");
}

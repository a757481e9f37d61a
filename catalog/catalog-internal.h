/* Private to catalog/: the handle, LMDB helpers, key builders and the
 * record codecs.  Nothing here may be included outside catalog/.
 *
 * Sections follow the .c file that defines them.
 */

#ifndef TESSERA_CATALOG_CATALOG_INTERNAL_H
#define TESSERA_CATALOG_CATALOG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <endian.h>
#include <pthread.h>
#include <semaphore.h>

#include <lmdb.h>

#include "byteorder.h"
#include "catalog.h"
#include "cleanup.h"

/* Version of the catalog as a whole (struct catalog_cluster).  3:
 * every segment record carries its index (catalog_open upgrades a
 * version 2 catalog by filling them in from the map).
 */
#define CATALOG_FORMAT_VERSION 3
#define CATALOG_FORMAT_NO_INDEX 2

/* Leading byte of every record in every table.  2: segments carry their
 * volume and generation, volumes their clean epoch.  Records of other
 * versions are refused (-EIO): there is no migration.
 */
#define CATALOG_RECORD_VERSION 2

/* Read transactions kept reset for reuse (see catalog_rtxn_begin). */
#define CATALOG_RTXN_POOL 16

/* Cursors a pooled reader keeps open across its transactions (see
 * catalog_rtxn_cursor): the tables of the lookup paths.
 */
enum {
  CATALOG_CUR_SEGMAP,
  CATALOG_CUR_SEGMENTS,
  CATALOG_NCURSORS,
};

/* A read-only transaction with its cached cursors.  Owned by one thread
 * from catalog_rtxn_begin to catalog_rtxn_end, by the pool otherwise.
 * In the pool it stays live only while its snapshot is the latest
 * commit: the next reader then uses it as it is, and every commit resets
 * the pooled ones (catalog_wtxn_commit), so that an idle reader never
 * pins pages a writer could reuse.
 */
struct catalog_reader {
  MDB_txn *txn;
  bool live;                             /* TXN is live (renewed, not reset) */
  MDB_cursor *cursors[CATALOG_NCURSORS]; /* NULL until first used */
  unsigned renewed; /* bit I: cursors[I] belongs to the live TXN */
};

/* Bounds of one group commit of catalog_map_alloc calls: requests, and
 * entries in all past the first request (4 MAP_ALLOCs of PROTO_MAP_MAX).
 */
#define CATALOG_GROUP_MAX 128
#define CATALOG_GROUP_ENTRIES 16384

/* A catalog_map_alloc call in the group commit (map.c).  A waiter
 * sleeps on its own semaphore, posted exactly once: when its request is
 * done, or when it is to lead the next group.  DONE and LEAD are set
 * before the post and read after the wait (which orders them).
 */
struct catalog_alloc_waiter {
  struct catalog_alloc_request *req;
  struct catalog_alloc_waiter *next; /* in the queue; lock: alloc_lock */
  bool done;
  bool lead;
  sem_t wake;
};

/* The handle.  The LMDB handles are set in catalog_open and then only
 * read, so they need no lock.
 *
 * Locks (never held together, never held across an LMDB call but the
 * pool's cheap ones):
 *   LOCK protects POOL and NPOOL;
 *   ALLOC_LOCK protects the group commit queue ALLOC_HEAD/ALLOC_TAIL and
 *   ALLOC_BUSY (there is a leader: it is committing a group, or has
 *   handed over to the head of the queue; when it is false the queue is
 *   empty).
 */
/* A write transaction's recorded changes (changelog.c). */
struct catalog_changes {
  uint8_t *buf; /* encoded changes, LEN bytes (only with a commit hook) */
  size_t len, cap;
  uint32_t n;  /* changes made, recorded or not */
  bool failed; /* one could not be recorded: the commit must fail */
};

struct catalog {
  MDB_env *env;
  MDB_dbi meta;
  MDB_dbi servers;
  MDB_dbi server_uuids;
  MDB_dbi volumes;
  MDB_dbi names;
  MDB_dbi segmap;
  MDB_dbi segments;
  MDB_dbi server_segments;
  MDB_dbi server_counts;
  MDB_dbi garbage;

  pthread_mutex_t lock;
  struct catalog_reader *pool[CATALOG_RTXN_POOL];
  size_t npool;

  /* changelog.c: the open write transaction's changes (LMDB's writer
   * lock guards them), and the hook that gets them after each commit
   * (set before any writer runs).
   */
  struct catalog_changes wlog;
  catalog_commit_hook *hook;
  void *hook_arg;

  pthread_mutex_t alloc_lock;
  struct catalog_alloc_waiter *alloc_head, *alloc_tail;
  bool alloc_busy;
};

/* Keys of the meta table. */
#define CATALOG_META_CLUSTER "cluster"
#define CATALOG_META_NEXT_SERVER "next_server_id"
#define CATALOG_META_NEXT_VOLUME "next_volume_id"
#define CATALOG_META_NEXT_SEGMENT "next_segment_id"
/* Segment ids below this one may have been given (alloc.c): the cluster
 * tables carry it, so that a rebuild never gives an id twice, even one
 * allocated and never written.
 */
#define CATALOG_META_SEGMENT_RESERVED "segment_id_reserved"
#define CATALOG_SEGMENT_ID_RESERVE 65536
#define CATALOG_META_CHANGE_SEQ "change_seq"
#define CATALOG_META_TABLES_VERSION "tables_version" /* tables.c */

/* Keys.  Each builder fills BUF and returns an MDB_val pointing at it,
 * so BUF must outlive the value.
 */
#define KEY_U32_LEN 4
#define KEY_U64_LEN 8
#define KEY_PAIR_LEN 12 /* (u32, u64): server_segments, garbage */
#define KEY_MAP_LEN 16  /* (u64, u64): segmap */

static inline MDB_val
key_u32 (uint8_t buf[KEY_U32_LEN], uint32_t v)
{
  put_be32 (buf, v);
  return (MDB_val){ .mv_size = KEY_U32_LEN, .mv_data = buf };
}

static inline MDB_val
key_u64 (uint8_t buf[KEY_U64_LEN], uint64_t v)
{
  put_be64 (buf, v);
  return (MDB_val){ .mv_size = KEY_U64_LEN, .mv_data = buf };
}

static inline MDB_val
key_pair (uint8_t buf[KEY_PAIR_LEN], uint32_t server, uint64_t segment)
{
  put_be32 (buf, server);
  put_be64 (buf + 4, segment);
  return (MDB_val){ .mv_size = KEY_PAIR_LEN, .mv_data = buf };
}

static inline MDB_val
key_map (uint8_t buf[KEY_MAP_LEN], uint64_t volume, uint64_t index)
{
  put_be64 (buf, volume);
  put_be64 (buf + 8, index);
  return (MDB_val){ .mv_size = KEY_MAP_LEN, .mv_data = buf };
}

/* catalog.c */
extern int catalog_mdb_err (int rc, const char *op);
struct catalog_rtxn;
extern int catalog_rtxn_begin (struct catalog_rtxn *rt);
extern void catalog_rtxn_end (struct catalog_rtxn *rt);
extern void catalog_readers_free (catalog *cat);
extern int catalog_rtxn_cursor (struct catalog_rtxn *rt, unsigned which,
                                MDB_cursor **cur);
extern MDB_cmp_func *catalog_key_cmp (size_t keylen);
extern int catalog_wtxn_begin (catalog *cat, MDB_txn **txn, const char *op);
extern int catalog_wtxn_commit (catalog *cat, MDB_txn **txn, const char *op);
extern int catalog_counter_get (catalog *cat, MDB_txn *txn, const char *counter,
                                uint64_t *next);
extern int catalog_counter_put (catalog *cat, MDB_txn *txn, const char *counter,
                                uint64_t next);
extern int catalog_next_id (catalog *cat, MDB_txn *txn, const char *counter,
                            uint64_t limit, uint64_t *id);
extern int catalog_tables_bump (catalog *cat, MDB_txn *txn);
extern int catalog_get_cluster_txn (catalog *cat, MDB_txn *txn,
                                    struct catalog_cluster *out);

/* changelog.c: the only writers of the catalog's tables. */
extern int catalog_put (catalog *cat, MDB_txn *txn, MDB_dbi dbi, MDB_val *key,
                        MDB_val *val, unsigned flags);
extern int catalog_del (catalog *cat, MDB_txn *txn, MDB_dbi dbi, MDB_val *key);
extern int catalog_cursor_del (catalog *cat, MDB_cursor *cur);
extern int catalog_drop (catalog *cat, MDB_txn *txn, MDB_dbi dbi);
extern void catalog_changelog_reset (catalog *cat);
extern int catalog_changelog_seal (catalog *cat, MDB_txn *txn, uint64_t *seq,
                                   struct catalog_changes *done);
extern int catalog_changelog_seq_get (catalog *cat, MDB_txn *txn,
                                      uint64_t *seq);
extern int catalog_changelog_seq_put (catalog *cat, MDB_txn *txn, uint64_t seq);
extern int catalog_changelog_apply_one (catalog *cat, MDB_txn *txn,
                                        const uint8_t *p, size_t len,
                                        size_t *used);

/* A read transaction that returns itself to the pool at end of scope:
 * declare it as { .cat = cat }, then catalog_rtxn_begin (&rt) sets RD
 * and TXN (RD's transaction, for the LMDB calls).
 */
struct catalog_rtxn {
  catalog *cat;
  struct catalog_reader *rd;
  MDB_txn *txn;
};

static inline void
catalog_cleanup_rtxn (struct catalog_rtxn *r)
{
  if (r->rd)
    catalog_rtxn_end (r);
}
#define CLEANUP_RTXN __attribute__ ((cleanup (catalog_cleanup_rtxn)))

/* Cursors of read transactions must be closed explicitly; those of write
 * transactions are freed by the commit or abort, so never put this on a
 * write transaction's cursor.  Declare the cursor after its transaction
 * so that it is closed first.
 */
static inline void
catalog_cleanup_cursor (MDB_cursor **cur)
{
  if (*cur)
    mdb_cursor_close (*cur);
}
#define CLEANUP_CURSOR __attribute__ ((cleanup (catalog_cleanup_cursor)))

/* records.c: encode into BUF (at least the stated size), returning the
 * length; decode returns 0 or -EIO (with a debug line) for a record of
 * the wrong length, version or contents.
 */
#define CLUSTER_REC_LEN 28
#define SERVER_REC_MAX (32 + CATALOG_ADDR_MAX + CATALOG_ZONE_MAX + 8)
#define VOLUME_REC_FIXED 48
#define VOLUME_REC_MAX (VOLUME_REC_FIXED + CATALOG_NAME_MAX)
#define SEGMENT_REC_FIXED 24
#define SEGMENT_REC_MAX (SEGMENT_REC_FIXED + 8 * CATALOG_REPLICAS_MAX + 8)
#define SEGMENT_HAS_INDEX 0x1 /* segment record flag: index u64 at the end */

extern size_t catalog_cluster_encode (const struct catalog_cluster *c,
                                      uint8_t *buf);
extern int catalog_cluster_decode (const MDB_val *val,
                                   struct catalog_cluster *c);
extern size_t catalog_server_encode (const struct catalog_server *s,
                                     uint8_t *buf);
extern int catalog_server_decode (uint32_t id, const MDB_val *val,
                                  struct catalog_server *s);
extern size_t catalog_volume_encode (const struct catalog_volume *v,
                                     uint8_t *buf);
extern int catalog_volume_decode (uint64_t id, const MDB_val *val,
                                  struct catalog_volume *v);
extern size_t catalog_segment_encode (const struct catalog_segment *g,
                                      uint8_t *buf);
extern int catalog_segment_decode (uint64_t id, const MDB_val *val,
                                   struct catalog_segment *g);
extern int catalog_u64_decode (const char *what, const MDB_val *val,
                               uint64_t *out);

/* catalog.c: read every record of table DBI (keys of KEYLEN bytes) into a
 * calloc'd array of elements of ELEMSIZE bytes, in key order, decoding
 * each with DECODE (0 or -errno).  WHAT names the table in debug lines.
 */
extern int catalog_table_list (catalog *cat, MDB_dbi dbi, const char *what,
                               size_t keylen, size_t elemsize,
                               int (*decode) (const MDB_val *key,
                                              const MDB_val *val, void *elem),
                               void **out, size_t *n);

/* servers.c.  Changes of server_segments keep server_counts in step:
 * at once (COUNTS NULL), or added up in *COUNTS for a run of changes in
 * one write transaction, then written by catalog_counts_flush.
 */
#define CATALOG_COUNTS_MAX 16
struct catalog_counts {
  size_t n;
  struct {
    uint32_t server;
    int64_t delta;
  } e[CATALOG_COUNTS_MAX];
};
extern int catalog_server_exists (catalog *cat, MDB_txn *txn, uint32_t id);
extern int catalog_server_segment_add (catalog *cat, MDB_txn *txn,
                                       uint32_t server, uint64_t segment,
                                       struct catalog_counts *counts);
extern int catalog_server_segment_del (catalog *cat, MDB_txn *txn,
                                       uint32_t server, uint64_t segment,
                                       struct catalog_counts *counts);
extern int catalog_counts_flush (catalog *cat, MDB_txn *txn,
                                 struct catalog_counts *counts);
extern int catalog_server_counts_rebuild (catalog *cat, MDB_txn *txn);

extern int catalog_server_put_txn (catalog *cat, MDB_txn *txn,
                                   const struct catalog_server *s);

/* garbage.c */
extern int catalog_scan_pairs (catalog *cat, MDB_txn *txn, MDB_dbi dbi,
                               const char *what, uint32_t server,
                               uint64_t start_after, size_t max, uint64_t **out,
                               size_t *n);

/* volumes.c */
extern bool catalog_name_valid (const char *name);
extern int catalog_volume_get_txn (catalog *cat, MDB_txn *txn, uint64_t id,
                                   struct catalog_volume *out);
extern int catalog_volume_put_txn (catalog *cat, MDB_txn *txn,
                                   const struct catalog_volume *v);

/* map.c */
extern int catalog_segment_get_txn (catalog *cat, MDB_txn *txn, uint64_t id,
                                    struct catalog_segment *out);
extern int catalog_segment_put_txn (catalog *cat, MDB_txn *txn,
                                    const struct catalog_segment *g);

#endif /* TESSERA_CATALOG_CATALOG_INTERNAL_H */

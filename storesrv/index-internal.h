/* The segment index's private parts (index.c), shared only with the
 * fuzzer of its loaders (tests/fuzz/fuzz-index.c), which stores records
 * through these database handles on a real LMDB environment.  The rest
 * of the daemon sees struct ss_index as opaque (internal.h).
 */

#ifndef TESSERA_STORESRV_INDEX_INTERNAL_H
#define TESSERA_STORESRV_INDEX_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <lmdb.h>

#include "internal.h"

#define FENCES_DB "fences"
#define GONE_DB "gone"
#define META_DB "meta"
#define META_SEQ "seq"
#define META_STORE "store"
#define META_ID "id"
#define META_TABLES "tables"
#define META_MDS_EPOCH "mds_epoch"

/* Lock order: LOCK is a leaf; nothing else is held while it is. */
struct ss_index {
  MDB_env *env;
  MDB_dbi dbi;  /* segments (the main database) */
  MDB_dbi fdbi; /* fences */
  MDB_dbi gdbi; /* tombstones */
  MDB_dbi mdbi; /* meta, if HAS_META */
  bool has_meta;
  uint64_t seq; /* commits: written by the worker, read with __atomic */
  int *debug;   /* -D storesrv.index */
  int efd;

  pthread_t thread;
  bool started;
  pthread_mutex_t lock;
  pthread_cond_t cond;       /* signalled when QUEUE grows or STOP is set */
  bool stop;                 /* under LOCK */
  struct ss_index_op *queue; /* under LOCK: submitted, FIFO */
  struct ss_index_op *queue_tail;
  struct ss_index_op *done; /* under LOCK: handed back, FIFO */
  struct ss_index_op *done_tail;
};

/* True if KEY is the main database's entry for one of the named
 * databases above (the segment loader skips those).
 */
extern bool ss_index_is_named_db (const MDB_val *key);

#endif /* TESSERA_STORESRV_INDEX_INTERNAL_H */

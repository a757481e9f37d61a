/* The segment index: an LMDB environment in DIR/index.  Its main
 * database maps segment id (u64 BE) to a record (record.c: slot,
 * volume, last epoch, state, generation; 29 bytes, or 21 for records
 * written before generations existed, read as generation 0).  The named
 * database "fences" maps volume id (u64 BE) to the volume's fence epoch
 * (u64 BE); the named database "gone" holds the ids (u64 BE, with a
 * one-byte value) of segments this server deleted (tombstones, gone.c);
 * the named database "meta" holds the index's identity, "store" (the
 * store's uuid, 16 bytes) and "id" (the index id the superblock names,
 * u64 BE), written once when the store is formatted (or upgraded from
 * superblock version 1), and "seq" (u64 BE), the number of write
 * transactions the worker has committed: every one of them raises it in
 * the same transaction, so it only ever grows and costs no extra sync;
 * and "tables" (version u64 BE, then the blob of TABLES_PUT): the
 * cluster tables the MDS keeps here, only ever replaced by a higher
 * version; and "mds_epoch" (u64 BE), the highest MDS epoch a connection
 * has claimed after proving the cluster key, only ever raised
 * (handshake.c refuses MDS connections below it).
 * An index without "meta" is not this store's (guard.c).
 * Every MDB_* name stays in this file.
 *
 * At start-up the ring thread reads the whole index (ss_index_load);
 * afterwards only the worker thread touches LMDB.  The ring thread queues
 * updates with ss_index_submit; the worker takes everything queued,
 * commits it in one write transaction (group commit), and hands the ops
 * back on the done list, writing the eventfd the ring thread reads.
 */

#include <config.h>

#include <assert.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <lmdb.h>

#include "cleanup.h"
#include "log.h"
#include "mdb-errno.h"

#include "internal.h"
#include "index-internal.h"


/* Map an LMDB return code to -errno (mdb_errno), logging the
 * unexpected ones.
 */
static int
mdb_to_errno (int rc, const char *what)
{
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND && rc != MDB_KEYEXIST)
    log_debug ("index: %s: %s", what, mdb_strerror (rc));
  return mdb_errno (rc);
}

/* Remove an index environment's files (for re-formatting). */
int
ss_index_wipe (const char *path)
{
  static const char *const files[] = { "data.mdb", "lock.mdb" };
  CLEANUP_FREE char *p = NULL;
  size_t i;

  for (i = 0; i < sizeof files / sizeof files[0]; i++) {
    free (p);
    if (asprintf (&p, "%s/%s", path, files[i]) == -1) {
      p = NULL;
      return -ENOMEM;
    }
    if (unlink (p) == -1 && errno != ENOENT)
      return -errno;
  }
  return 0;
}

/* Read the u64 NAME of the meta database in TXN into *OUT (0 if
 * absent).  Returns an LMDB code (MDB_CORRUPTED: not 8 bytes).
 */
static int
meta_get_u64 (struct ss_index *idx, MDB_txn *txn, const char *name,
              uint64_t *out)
{
  MDB_val key = { .mv_size = strlen (name), .mv_data = (void *)name };
  MDB_val val;
  uint64_t v;
  int rc;

  *out = 0;
  rc = mdb_get (txn, idx->mdbi, &key, &val);
  if (rc == MDB_NOTFOUND)
    return MDB_SUCCESS;
  if (rc != MDB_SUCCESS)
    return rc;
  if (val.mv_size != 8)
    return MDB_CORRUPTED;
  memcpy (&v, val.mv_data, 8);
  *out = be64toh (v);
  return MDB_SUCCESS;
}

/* Store the u64 V as NAME in the meta database in TXN. */
static int
meta_put_u64 (struct ss_index *idx, MDB_txn *txn, const char *name, uint64_t v)
{
  MDB_val key = { .mv_size = strlen (name), .mv_data = (void *)name };
  MDB_val val = { .mv_size = 8, .mv_data = &v };

  v = htobe64 (v);
  return mdb_put (txn, idx->mdbi, &key, &val, 0);
}

/* Open (creating) the environment at PATH (an existing directory), sized
 * for NSLOTS segments.  DEBUG points at the index debug flag.  Must be
 * called after the daemon forked.  Returns 0 and *OUT, or -errno after
 * logging why.
 */
int
ss_index_open (const char *path, uint32_t nslots, int *debug,
               struct ss_index **out)
{
  struct ss_index *idx;
  MDB_txn *txn = NULL;
  size_t mapsize;
  int rc, r;

  *out = NULL;
  idx = calloc (1, sizeof *idx);
  if (idx == NULL)
    return -ENOMEM;
  idx->debug = debug;
  idx->efd = -1;
  pthread_mutex_init (&idx->lock, NULL);
  pthread_cond_init (&idx->cond, NULL);

  idx->efd = eventfd (0, EFD_CLOEXEC);
  if (idx->efd == -1) {
    r = -errno;
    log_error ("index: eventfd: %s", strerror (-r));
    goto err;
  }
  /* A record costs well under 128 bytes with B-tree overhead. */
  mapsize = (size_t)64 * 1024 * 1024 + (size_t)nslots * 128;
  rc = mdb_env_create (&idx->env);
  if (rc == MDB_SUCCESS)
    rc = mdb_env_set_mapsize (idx->env, mapsize);
  if (rc == MDB_SUCCESS)
    rc = mdb_env_set_maxdbs (idx->env, 4);
  if (rc == MDB_SUCCESS)
    rc = mdb_env_open (idx->env, path, MDB_NOTLS, 0644);
  if (rc == MDB_SUCCESS)
    rc = mdb_txn_begin (idx->env, NULL, 0, &txn);
  if (rc == MDB_SUCCESS)
    rc = mdb_dbi_open (txn, NULL, 0, &idx->dbi);
  if (rc == MDB_SUCCESS)
    rc = mdb_dbi_open (txn, FENCES_DB, MDB_CREATE, &idx->fdbi);
  if (rc == MDB_SUCCESS)
    rc = mdb_dbi_open (txn, GONE_DB, MDB_CREATE, &idx->gdbi);
  /* Not created here: its absence tells a foreign or new index. */
  if (rc == MDB_SUCCESS) {
    rc = mdb_dbi_open (txn, META_DB, 0, &idx->mdbi);
    idx->has_meta = rc == MDB_SUCCESS;
    if (rc == MDB_NOTFOUND)
      rc = MDB_SUCCESS;
  }
  if (rc == MDB_SUCCESS && idx->has_meta)
    rc = meta_get_u64 (idx, txn, META_SEQ, &idx->seq);
  if (rc == MDB_SUCCESS) {
    rc = mdb_txn_commit (txn);
    txn = NULL;
  }
  if (rc != MDB_SUCCESS) {
    log_error ("index: %s: %s", path, mdb_strerror (rc));
    if (txn)
      mdb_txn_abort (txn);
    r = mdb_to_errno (rc, "open");
    goto err;
  }
  *out = idx;
  return 0;

err:
  ss_index_close (idx);
  return r;
}

/* True if KEY is the main database's entry for a named database. */
bool
ss_index_is_named_db (const MDB_val *key)
{
  return (key->mv_size == strlen (FENCES_DB) &&
          memcmp (key->mv_data, FENCES_DB, key->mv_size) == 0) ||
         (key->mv_size == strlen (GONE_DB) &&
          memcmp (key->mv_data, GONE_DB, key->mv_size) == 0) ||
         (key->mv_size == strlen (META_DB) &&
          memcmp (key->mv_data, META_DB, key->mv_size) == 0);
}

/* Walk table DBI in key order at start-up (before ss_index_start),
 * calling EACH (CTX, key, value) for every entry; EACH returning non-zero
 * stops the walk and is returned.  WHAT names the table in the log.
 * Returns 0, EACH's value, or -errno.
 */
static int
index_walk (struct ss_index *idx, MDB_dbi dbi, const char *what,
            int (*each) (void *ctx, const MDB_val *key, const MDB_val *val),
            void *ctx)
{
  MDB_txn *txn = NULL;
  MDB_cursor *cur = NULL;
  MDB_val key, val;
  int rc, r = 0;

  assert (!idx->started);
  rc = mdb_txn_begin (idx->env, NULL, MDB_RDONLY, &txn);
  if (rc == MDB_SUCCESS)
    rc = mdb_cursor_open (txn, dbi, &cur);
  if (rc != MDB_SUCCESS)
    goto out;
  for (rc = mdb_cursor_get (cur, &key, &val, MDB_FIRST); rc == MDB_SUCCESS;
       rc = mdb_cursor_get (cur, &key, &val, MDB_NEXT)) {
    r = each (ctx, &key, &val);
    if (r != 0)
      goto out;
  }
  if (rc == MDB_NOTFOUND)
    rc = MDB_SUCCESS;

out:
  if (cur)
    mdb_cursor_close (cur);
  if (txn)
    mdb_txn_abort (txn);
  if (rc != MDB_SUCCESS) {
    log_error ("index: load %s: %s", what, mdb_strerror (rc));
    return mdb_to_errno (rc, what);
  }
  return r;
}

/* The caller's callback and its argument, for the walks below. */
struct load_ctx {
  union {
    int (*rec) (void *arg, const struct ss_index_rec *rec);
    int (*fence) (void *arg, uint64_t volume, uint64_t epoch);
    int (*gone) (void *arg, uint64_t segment);
  } fn;
  void *arg;
};

/* Decode one segment record and pass it on. */
static int
load_rec (void *ctx, const MDB_val *key, const MDB_val *val)
{
  struct load_ctx *c = ctx;
  struct ss_index_rec rec;

  if (ss_index_is_named_db (key))
    return 0;
  if (ss_index_rec_decode (key->mv_data, key->mv_size, val->mv_data,
                           val->mv_size, &rec) < 0) {
    log_error ("index: a record has a %zu-byte key and a %zu-byte value",
               key->mv_size, val->mv_size);
    return -EIO;
  }
  return c->fn.rec (c->arg, &rec);
}

/* Call FN (ARG, rec) for every record, in segment order; FN returning
 * non-zero stops the walk and is returned.  Start-up only, before
 * ss_index_start.  Returns 0, FN's value, or -errno (-EIO: a record of
 * the wrong size).
 */
int
ss_index_load (struct ss_index *idx,
               int (*fn) (void *arg, const struct ss_index_rec *rec), void *arg)
{
  struct load_ctx c = { .fn.rec = fn, .arg = arg };

  return index_walk (idx, idx->dbi, "records", load_rec, &c);
}

/* Decode one fence and pass it on. */
static int
load_fence (void *ctx, const MDB_val *key, const MDB_val *val)
{
  struct load_ctx *c = ctx;
  uint64_t volume, epoch;

  if (key->mv_size != 8 || val->mv_size != 8) {
    log_error ("index: a fence has a %zu-byte key and a %zu-byte value",
               key->mv_size, val->mv_size);
    return -EIO;
  }
  memcpy (&volume, key->mv_data, 8);
  memcpy (&epoch, val->mv_data, 8);
  return c->fn.fence (c->arg, be64toh (volume), be64toh (epoch));
}

/* Call FN (ARG, volume, epoch) for every fence, in volume order; FN
 * returning non-zero stops the walk and is returned.  Start-up only,
 * before ss_index_start.  Returns 0, FN's value, or -errno (-EIO: a
 * record of the wrong size).
 */
int
ss_index_load_fences (struct ss_index *idx,
                      int (*fn) (void *arg, uint64_t volume, uint64_t epoch),
                      void *arg)
{
  struct load_ctx c = { .fn.fence = fn, .arg = arg };

  return index_walk (idx, idx->fdbi, "fences", load_fence, &c);
}

/* Decode one tombstone and pass it on. */
static int
load_gone (void *ctx, const MDB_val *key, const MDB_val *val)
{
  struct load_ctx *c = ctx;
  uint64_t id;

  if (key->mv_size != 8) {
    log_error ("index: a tombstone has a %zu-byte key", key->mv_size);
    return -EIO;
  }
  memcpy (&id, key->mv_data, 8);
  return c->fn.gone (c->arg, be64toh (id));
}

/* Call FN (ARG, segment) for every tombstone, in segment order; FN
 * returning non-zero stops the walk and is returned.  Start-up only,
 * before ss_index_start.  Returns 0, FN's value, or -errno.
 */
int
ss_index_load_gone (struct ss_index *idx,
                    int (*fn) (void *arg, uint64_t segment), void *arg)
{
  struct load_ctx c = { .fn.gone = fn, .arg = arg };

  return index_walk (idx, idx->gdbi, "tombstones", load_gone, &c);
}

/* Record (GONE) or forget (!GONE) KEY's tombstone in TXN. */
static int
gone_put (struct ss_index *idx, MDB_txn *txn, MDB_val *key, bool gone)
{
  uint8_t one = 1;
  MDB_val val = { .mv_size = 1, .mv_data = &one };
  int rc;

  if (gone)
    return mdb_put (txn, idx->gdbi, key, &val, 0);
  rc = mdb_del (txn, idx->gdbi, key, NULL);
  return rc == MDB_NOTFOUND ? MDB_SUCCESS : rc;
}

/* Raise VOLUME's fence to EPOCH in TXN unless it is already as high. */
static int
fence_put (struct ss_index *idx, MDB_txn *txn, uint64_t volume, uint64_t epoch)
{
  uint64_t k = htobe64 (volume), v, old;
  MDB_val key = { .mv_size = 8, .mv_data = &k };
  MDB_val val;
  int rc;

  rc = mdb_get (txn, idx->fdbi, &key, &val);
  if (rc == MDB_SUCCESS && val.mv_size == 8) {
    memcpy (&old, val.mv_data, 8);
    if (be64toh (old) >= epoch)
      return MDB_SUCCESS;
  }
  else if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
    return rc;
  v = htobe64 (epoch);
  val.mv_size = 8;
  val.mv_data = &v;
  return mdb_put (txn, idx->fdbi, &key, &val, 0);
}

/* Store OP's tables in TXN unless the stored ones are as new. */
static int
tables_put (struct ss_index *idx, MDB_txn *txn, const struct ss_index_op *op)
{
  MDB_val key = { .mv_size = strlen (META_TABLES),
                  .mv_data = (void *)META_TABLES };
  MDB_val val;
  uint64_t v;
  int rc;

  rc = mdb_get (txn, idx->mdbi, &key, &val);
  if (rc == MDB_SUCCESS && val.mv_size >= 8) {
    memcpy (&v, val.mv_data, 8);
    if (be64toh (v) >= op->tables_version)
      return MDB_SUCCESS;
  }
  else if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND)
    return rc;
  val.mv_size = 8 + (size_t)op->tables_len;
  rc = mdb_put (txn, idx->mdbi, &key, &val, MDB_RESERVE);
  if (rc != MDB_SUCCESS)
    return rc;
  v = htobe64 (op->tables_version);
  memcpy (val.mv_data, &v, 8);
  if (op->tables_len > 0)
    memcpy ((uint8_t *)val.mv_data + 8, op->tables_blob, op->tables_len);
  return MDB_SUCCESS;
}

/* Raise the highest MDS epoch to EPOCH in TXN unless it is as high. */
static int
mds_epoch_put (struct ss_index *idx, MDB_txn *txn, uint64_t epoch)
{
  uint64_t old;
  int rc;

  rc = meta_get_u64 (idx, txn, META_MDS_EPOCH, &old);
  if (rc != MDB_SUCCESS || old >= epoch)
    return rc;
  return meta_put_u64 (idx, txn, META_MDS_EPOCH, epoch);
}

/* Apply the ops from HEAD up to (not including) END in one write
 * transaction, which also raises the commit count.  Returns 0 or
 * -errno; on error nothing was committed.
 */
static int
commit_ops (struct ss_index *idx, struct ss_index_op *head,
            struct ss_index_op *end)
{
  MDB_txn *txn;
  struct ss_index_op *op;
  int rc;

  rc = mdb_txn_begin (idx->env, NULL, 0, &txn);
  if (rc != MDB_SUCCESS)
    return mdb_to_errno (rc, "begin");
  for (op = head; op != end; op = op->next) {
    uint64_t k = htobe64 (op->rec.segment);
    uint8_t v[SS_INDEX_REC_SIZE];
    MDB_val key = { .mv_size = 8, .mv_data = &k };
    MDB_val val = { .mv_size = SS_INDEX_REC_SIZE, .mv_data = v };

    switch (op->type) {
    case SS_INDEX_PUT:
      ss_index_rec_encode (&op->rec, v);
      rc = mdb_put (txn, idx->dbi, &key, &val, 0);
      if (rc == MDB_SUCCESS && op->gone)
        rc = gone_put (idx, txn, &key, false);
      break;
    case SS_INDEX_DEL:
      rc = mdb_del (txn, idx->dbi, &key, NULL);
      if (rc == MDB_NOTFOUND)
        rc = MDB_SUCCESS;
      if (rc == MDB_SUCCESS && op->gone)
        rc = gone_put (idx, txn, &key, true);
      break;
    case SS_INDEX_UNGONE:
      rc = gone_put (idx, txn, &key, false);
      break;
    case SS_INDEX_FENCE:
      rc = fence_put (idx, txn, op->rec.volume, op->rec.epoch);
      break;
    case SS_INDEX_TABLES:
      rc = tables_put (idx, txn, op);
      break;
    case SS_INDEX_MDS_EPOCH:
      rc = mds_epoch_put (idx, txn, op->rec.epoch);
      break;
    case SS_INDEX_SYNC:
      break;
    }
    if (rc != MDB_SUCCESS) {
      mdb_txn_abort (txn);
      return mdb_to_errno (rc, "update");
    }
  }
  rc = meta_put_u64 (idx, txn, META_SEQ, idx->seq + 1);
  if (rc != MDB_SUCCESS) {
    mdb_txn_abort (txn);
    return mdb_to_errno (rc, "update");
  }
  rc = mdb_txn_commit (txn);
  if (rc == MDB_SUCCESS)
    __atomic_store_n (&idx->seq, idx->seq + 1, __ATOMIC_RELAXED);
  return mdb_to_errno (rc, "commit");
}

/* Commit a batch: all ops in one transaction; if that fails, each op in
 * its own so that one bad op fails alone.  Sets every op's ERR.
 */
static void
apply_batch (struct ss_index *idx, struct ss_index_op *batch)
{
  struct ss_index_op *op;
  unsigned n = 0, writes = 0;
  int r = 0;

  for (op = batch; op; op = op->next) {
    n++;
    if (op->type != SS_INDEX_SYNC)
      writes++;
  }
  if (writes > 0)
    r = commit_ops (idx, batch, NULL);
  if (*idx->debug)
    log_debug ("index: committed %u ops (%u updates): %s", n, writes,
               r == 0 ? "ok" : strerror (-r));
  for (op = batch; op; op = op->next) {
    if (r == 0 || op->type == SS_INDEX_SYNC)
      op->err = 0;
    else if (writes == 1)
      op->err = r;
    else
      op->err = commit_ops (idx, op, op->next);
    if (op->err < 0 && op->type == SS_INDEX_TABLES)
      log_error ("index: tables version %" PRIu64 ": %s", op->tables_version,
                 strerror (-op->err));
    else if (op->err < 0 && op->type == SS_INDEX_MDS_EPOCH)
      log_error ("index: MDS epoch %" PRIu64 ": %s", op->rec.epoch,
                 strerror (-op->err));
    else if (op->err < 0 && op->type == SS_INDEX_FENCE)
      log_error ("index: fence of volume %" PRIu64 ": %s", op->rec.volume,
                 strerror (-op->err));
    else if (op->err < 0)
      log_error ("index: segment %" PRIu64 ": %s", op->rec.segment,
                 strerror (-op->err));
  }
}

/* The worker thread: commit whatever is queued, hand it back, repeat. */
static void *
worker (void *arg)
{
  struct ss_index *idx = arg;
  struct ss_index_op *batch, *tail;
  uint64_t one = 1;

  log_set_thread_name ("index");
  for (;;) {
    {
      ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&idx->lock);
      while (idx->queue == NULL && !idx->stop)
        pthread_cond_wait (&idx->cond, &idx->lock);
      if (idx->queue == NULL)
        return NULL;
      batch = idx->queue;
      tail = idx->queue_tail;
      idx->queue = idx->queue_tail = NULL;
    }
    apply_batch (idx, batch);
    {
      ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&idx->lock);
      if (idx->done)
        idx->done_tail->next = batch;
      else
        idx->done = batch;
      idx->done_tail = tail;
    }
    if (write (idx->efd, &one, sizeof one) != sizeof one)
      log_error ("index: eventfd write: %s", strerror (errno));
  }
}

/* Start the worker.  Returns 0 or -errno. */
int
ss_index_start (struct ss_index *idx)
{
  int r;

  assert (idx->has_meta); /* commits raise "seq" there */
  r = pthread_create (&idx->thread, NULL, worker, idx);
  if (r != 0) {
    log_error ("index: pthread_create: %s", strerror (r));
    return -r;
  }
  idx->started = true;
  return 0;
}

/* Read the index's identity: the store uuid into UUID and the index id
 * into *ID.  Start-up only, before ss_index_start.  Returns 0, -ENOENT
 * if the index has none (no "meta", or no "store" or "id" in it),
 * -EINVAL if they have the wrong size, or -errno.
 */
int
ss_index_get_ident (struct ss_index *idx, uint8_t uuid[16], uint64_t *id)
{
  MDB_val key = { .mv_size = strlen (META_STORE),
                  .mv_data = (void *)META_STORE };
  MDB_val val;
  MDB_txn *txn = NULL;
  int rc, r = 0;

  assert (!idx->started);
  *id = 0;
  if (!idx->has_meta)
    return -ENOENT;
  rc = mdb_txn_begin (idx->env, NULL, MDB_RDONLY, &txn);
  if (rc == MDB_SUCCESS)
    rc = mdb_get (txn, idx->mdbi, &key, &val);
  if (rc == MDB_SUCCESS && val.mv_size != 16)
    r = -EINVAL;
  else if (rc == MDB_SUCCESS) {
    memcpy (uuid, val.mv_data, 16);
    rc = meta_get_u64 (idx, txn, META_ID, id);
    if (rc == MDB_CORRUPTED)
      r = -EINVAL;
    else if (rc == MDB_SUCCESS && *id == 0)
      r = -ENOENT;
  }
  if (txn)
    mdb_txn_abort (txn);
  if (r < 0)
    return r;
  return mdb_to_errno (rc, "identity");
}

/* Read the tables stored by TABLES_PUT: *VERSION (0 if none) and a
 * malloc'd copy of the blob in *BLOB (NULL when empty; the caller
 * frees it), *LEN bytes.  Start-up only, before ss_index_start.
 * Returns 0, -EIO (a value shorter than its version) or -errno.
 */
int
ss_index_get_tables (struct ss_index *idx, uint64_t *version, uint8_t **blob,
                     uint32_t *len)
{
  MDB_val key = { .mv_size = strlen (META_TABLES),
                  .mv_data = (void *)META_TABLES };
  MDB_val val;
  MDB_txn *txn = NULL;
  uint64_t v;
  int rc, r = 0;

  assert (!idx->started);
  *version = 0;
  *blob = NULL;
  *len = 0;
  if (!idx->has_meta)
    return 0;
  rc = mdb_txn_begin (idx->env, NULL, MDB_RDONLY, &txn);
  if (rc == MDB_SUCCESS)
    rc = mdb_get (txn, idx->mdbi, &key, &val);
  if (rc == MDB_NOTFOUND)
    rc = MDB_SUCCESS;
  else if (rc == MDB_SUCCESS &&
           (val.mv_size < 8 || val.mv_size - 8 > PROTO_TABLES_MAX))
    r = -EIO;
  else if (rc == MDB_SUCCESS) {
    memcpy (&v, val.mv_data, 8);
    *version = be64toh (v);
    *len = val.mv_size - 8;
    if (*len > 0) {
      *blob = malloc (*len);
      if (*blob == NULL)
        r = -ENOMEM;
      else
        memcpy (*blob, (uint8_t *)val.mv_data + 8, *len);
    }
    if (r < 0)
      *version = *len = 0;
  }
  if (txn)
    mdb_txn_abort (txn);
  if (r < 0)
    return r;
  return mdb_to_errno (rc, "tables");
}

/* Read the highest MDS epoch stored (0 if none) into *EPOCH.
 * Start-up only, before ss_index_start.  Returns 0, -EIO (not 8 bytes)
 * or -errno.
 */
int
ss_index_get_mds_epoch (struct ss_index *idx, uint64_t *epoch)
{
  MDB_txn *txn = NULL;
  int rc;

  assert (!idx->started);
  *epoch = 0;
  if (!idx->has_meta)
    return 0;
  rc = mdb_txn_begin (idx->env, NULL, MDB_RDONLY, &txn);
  if (rc == MDB_SUCCESS)
    rc = meta_get_u64 (idx, txn, META_MDS_EPOCH, epoch);
  if (txn)
    mdb_txn_abort (txn);
  if (rc == MDB_CORRUPTED)
    return -EIO;
  return mdb_to_errno (rc, "MDS epoch");
}

/* Write the index's identity (store UUID, index id ID) durably,
 * creating the "meta" database.  Start-up only, before ss_index_start.
 * Returns 0 or -errno.
 */
int
ss_index_set_ident (struct ss_index *idx, const uint8_t uuid[16], uint64_t id)
{
  MDB_val key = { .mv_size = strlen (META_STORE),
                  .mv_data = (void *)META_STORE };
  MDB_val val = { .mv_size = 16, .mv_data = (void *)uuid };
  MDB_txn *txn = NULL;
  int rc;

  assert (!idx->started);
  rc = mdb_txn_begin (idx->env, NULL, 0, &txn);
  if (rc == MDB_SUCCESS)
    rc = mdb_dbi_open (txn, META_DB, MDB_CREATE, &idx->mdbi);
  if (rc == MDB_SUCCESS)
    rc = mdb_put (txn, idx->mdbi, &key, &val, 0);
  if (rc == MDB_SUCCESS)
    rc = meta_put_u64 (idx, txn, META_ID, id);
  if (rc == MDB_SUCCESS)
    rc = meta_put_u64 (idx, txn, META_SEQ, idx->seq);
  if (rc == MDB_SUCCESS) {
    rc = mdb_txn_commit (txn);
    txn = NULL;
  }
  if (txn)
    mdb_txn_abort (txn);
  if (rc == MDB_SUCCESS)
    idx->has_meta = true;
  return mdb_to_errno (rc, "identity");
}

/* The number of write transactions committed so far (the meta
 * database's "seq"): only ever grows.  Any thread.
 */
uint64_t
ss_index_seq (const struct ss_index *idx)
{
  return __atomic_load_n (&idx->seq, __ATOMIC_RELAXED);
}

/* The eventfd written whenever ops are handed back. */
int
ss_index_eventfd (const struct ss_index *idx)
{
  return idx->efd;
}

/* Queue OP for the worker (ring thread).  OP belongs to the worker until
 * ss_index_take_done returns it.
 */
void
ss_index_submit (struct ss_index *idx, struct ss_index_op *op)
{
  assert (idx->started);
  op->next = NULL;
  op->err = 0;
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&idx->lock);
  if (idx->queue)
    idx->queue_tail->next = op;
  else
    idx->queue = op;
  idx->queue_tail = op;
  pthread_cond_signal (&idx->cond);
}

/* Take the ops handed back so far, in submission order (ring thread). */
struct ss_index_op *
ss_index_take_done (struct ss_index *idx)
{
  struct ss_index_op *ops;

  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&idx->lock);
  ops = idx->done;
  idx->done = idx->done_tail = NULL;
  return ops;
}

/* Stop the worker (after it commits what is queued), close the
 * environment and free IDX.  Accepts NULL.
 */
void
ss_index_close (struct ss_index *idx)
{
  if (idx == NULL)
    return;
  if (idx->started) {
    {
      ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&idx->lock);
      idx->stop = true;
      pthread_cond_signal (&idx->cond);
    }
    pthread_join (idx->thread, NULL);
  }
  if (idx->env)
    mdb_env_close (idx->env);
  if (idx->efd >= 0)
    close (idx->efd);
  pthread_cond_destroy (&idx->cond);
  pthread_mutex_destroy (&idx->lock);
  free (idx);
}

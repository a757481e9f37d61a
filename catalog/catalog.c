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

#define DEFAULT_MAP_SIZE (UINT64_C (1) << 30)
#define SEGMENT_SIZE_MIN (UINT32_C (64) << 10)
#define SEGMENT_SIZE_MAX (UINT32_C (64) << 20)

/* Map an LMDB (or system) return code to the catalog's -errno
 * convention.  OP names the failing call in the debug line that every
 * unexpected code gets.
 */
int
catalog_mdb_err (int rc, const char *op)
{
  switch (rc) {
  case MDB_SUCCESS:
    return 0;
  case MDB_NOTFOUND:
    return -ENOENT;
  case MDB_KEYEXIST:
    return -EEXIST;
  case MDB_MAP_FULL:
    log_debug ("catalog: %s: %s", op, mdb_strerror (rc));
    return -ENOSPC;
  case ENOMEM:
    return -ENOMEM;
  default:
    log_debug ("catalog: %s: %s", op, mdb_strerror (rc));
    return -EIO;
  }
}

/* Begin a read-only transaction, reusing a reset one from the pool when
 * there is one (mdb_txn_renew is far cheaper than mdb_txn_begin with
 * MDB_NOTLS).  End it with catalog_rtxn_end, never mdb_txn_abort.
 */
int
catalog_rtxn_begin (catalog *cat, MDB_txn **txn)
{
  MDB_txn *t = NULL;
  int rc;

  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&cat->lock);
    if (cat->npool > 0)
      t = cat->pool[--cat->npool];
  }

  if (t) {
    rc = mdb_txn_renew (t);
    if (rc != MDB_SUCCESS) {
      mdb_txn_abort (t);
      return catalog_mdb_err (rc, "mdb_txn_renew");
    }
  }
  else {
    rc = mdb_txn_begin (cat->env, NULL, MDB_RDONLY, &t);
    if (rc != MDB_SUCCESS)
      return catalog_mdb_err (rc, "mdb_txn_begin");
  }
  *txn = t;
  return 0;
}

/* End a read-only transaction from catalog_rtxn_begin: reset it into the
 * pool, or abort it when the pool is full.
 */
void
catalog_rtxn_end (catalog *cat, MDB_txn *txn)
{
  mdb_txn_reset (txn);
  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&cat->lock);
    if (cat->npool < CATALOG_RTXN_POOL) {
      cat->pool[cat->npool++] = txn;
      txn = NULL;
    }
  }
  if (txn)
    mdb_txn_abort (txn);
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
 */
int
catalog_wtxn_commit (MDB_txn **txn, const char *op)
{
  int rc;

  rc = mdb_txn_commit (*txn);
  *txn = NULL;
  return catalog_mdb_err (rc, op);
}

/* Take the next id from the meta counter COUNTER inside write
 * transaction TXN.  Ids start at 1; -ENOSPC past LIMIT.
 */
int
catalog_next_id (catalog *cat, MDB_txn *txn, const char *counter,
                 uint64_t limit, uint64_t *id)
{
  MDB_val key = { .mv_size = strlen (counter), .mv_data = (void *)counter };
  MDB_val val;
  uint8_t buf[8];
  uint64_t next = 1;
  int rc, r;

  rc = mdb_get (txn, cat->meta, &key, &val);
  if (rc == MDB_SUCCESS) {
    r = catalog_u64_decode (counter, &val, &next);
    if (r < 0)
      return r;
  }
  else if (rc != MDB_NOTFOUND)
    return catalog_mdb_err (rc, "mdb_get meta");

  if (next == 0 || next > limit) {
    log_debug ("catalog: %s: ids exhausted", counter);
    return -ENOSPC;
  }

  put_be64 (buf, next + 1);
  val.mv_size = sizeof buf;
  val.mv_data = buf;
  rc = mdb_put (txn, cat->meta, &key, &val, 0);
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_put meta");
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
  } tables[] = {
    { "meta", &cat->meta },
    { "servers", &cat->servers },
    { "server_uuids", &cat->server_uuids },
    { "volumes", &cat->volumes },
    { "names", &cat->names },
    { "segmap", &cat->segmap },
    { "segments", &cat->segments },
    { "server_segments", &cat->server_segments },
    { "garbage", &cat->garbage },
  };
  CLEANUP_MDB_TXN_ABORT MDB_txn *txn = NULL;
  size_t i;
  int rc, r;

  r = catalog_wtxn_begin (cat, &txn, "open");
  if (r < 0)
    return r;
  for (i = 0; i < sizeof tables / sizeof tables[0]; ++i) {
    rc = mdb_dbi_open (txn, tables[i].name, MDB_CREATE, tables[i].dbi);
    if (rc != MDB_SUCCESS) {
      log_debug ("catalog: open table %s: %s", tables[i].name,
                 mdb_strerror (rc));
      return catalog_mdb_err (rc, "mdb_dbi_open");
    }
  }
  return catalog_wtxn_commit (&txn, "open");
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

  rc = mdb_env_create (&cat->env);
  if (rc != MDB_SUCCESS) {
    r = catalog_mdb_err (rc, "mdb_env_create");
    goto err_mutex;
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
    log_debug ("catalog: open: %s: %s", dir, mdb_strerror (rc));
    r = rc == EACCES   ? -EACCES
        : rc == ENOENT ? -ENOENT
                       : catalog_mdb_err (rc, "mdb_env_open");
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
err_mutex:
  pthread_mutex_destroy (&cat->lock);
err_free:
  free (cat);
  return r;
}

/* Close the handle and its pooled read transactions (accepts NULL).
 * No other thread may be using it.
 */
void
catalog_close (catalog *cat)
{
  size_t i;

  if (cat == NULL)
    return;
  for (i = 0; i < cat->npool; ++i)
    mdb_txn_abort (cat->pool[i]);
  mdb_env_close (cat->env);
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
  return catalog_wtxn_commit (&txn, "cluster_init");
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

  r = catalog_rtxn_begin (cat, &rt.txn);
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

  r = catalog_rtxn_begin (cat, &rt.txn);
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
    return "unknown catalog error";
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

  r = catalog_rtxn_begin (cat, &rt.txn);
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

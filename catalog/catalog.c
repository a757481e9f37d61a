/* The catalog handle: open and close, the cluster record, statistics
 * and error strings (transactions and the helpers every table uses are
 * txn.c's).
 */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <lmdb.h>

#include "catalog-internal.h"
#include "cleanup.h"
#include "log.h"
#include "mdb-errno.h"

#define DEFAULT_MAP_SIZE (UINT64_C (1) << 30)
#define SEGMENT_SIZE_MIN (UINT32_C (64) << 10)
#define SEGMENT_SIZE_MAX (UINT32_C (64) << 20)

/* Open every named database, creating the missing ones, in one write
 * transaction.
 */
static int
open_dbis (catalog *cat)
{
  const struct {
    const char *name;
    MDB_dbi *dbi;
    size_t keylen; /* fixed-width binary keys, or 0 */
  } tables[] = {
    { "meta", &cat->meta, 0 },
    { "servers", &cat->servers, KEY_U32_LEN },
    { "server_uuids", &cat->server_uuids, 16 },
    { "volumes", &cat->volumes, KEY_U64_LEN },
    { "names", &cat->names, 0 },
    { "segmap", &cat->segmap, KEY_MAP_LEN },
    { "segments", &cat->segments, KEY_U64_LEN },
    { "server_segments", &cat->server_segments, KEY_PAIR_LEN },
    { "server_counts", &cat->server_counts, KEY_U32_LEN },
    { "garbage", &cat->garbage, KEY_PAIR_LEN },
  };
  MDB_cmp_func *cmp;
  bool rebuild = false;
  CLEANUP_MDB_TXN_ABORT MDB_txn *txn = NULL;
  size_t i;
  int rc, r;

  r = catalog_wtxn_begin (cat, &txn, "open");
  if (r < 0)
    return r;
  for (i = 0; i < sizeof tables / sizeof tables[0]; ++i) {
    rc = mdb_dbi_open (txn, tables[i].name, 0, tables[i].dbi);
    if (rc == MDB_NOTFOUND) {
      /* Catalogs made before server_counts get it filled here. */
      rebuild |= tables[i].dbi == &cat->server_counts;
      rc = mdb_dbi_open (txn, tables[i].name, MDB_CREATE, tables[i].dbi);
    }
    if (rc != MDB_SUCCESS) {
      log_debug ("catalog: open table %s: %s", tables[i].name,
                 mdb_strerror (rc));
      return catalog_mdb_err (rc, "mdb_dbi_open");
    }
    /* The comparison is the environment's from now on (LMDB keeps it
     * with the handle), for every later transaction.
     */
    cmp = catalog_key_cmp (tables[i].keylen);
    if (cmp) {
      rc = mdb_set_compare (txn, *tables[i].dbi, cmp);
      if (rc != MDB_SUCCESS)
        return catalog_mdb_err (rc, "mdb_set_compare");
    }
  }
  if (rebuild) {
    r = catalog_server_counts_rebuild (cat, txn);
    if (r < 0)
      return r;
  }
  return catalog_wtxn_commit (cat, &txn, "open");
}

/* Fill in the index of every segment record written before records
 * carried one, from the map entries that name it, and mark the catalog
 * upgraded (CATALOG_FORMAT_VERSION): once, in one write transaction,
 * at the first open by a version that knows indexes.  A catalog without
 * a cluster record yet needs nothing.
 */
static int
upgrade_indexes (catalog *cat)
{
  CLEANUP_MDB_TXN_ABORT MDB_txn *txn = NULL;
  MDB_cursor *cur = NULL; /* freed with the write transaction */
  MDB_val key, val;
  struct catalog_cluster c;
  struct catalog_segment g;
  uint8_t buf[CLUSTER_REC_LEN];
  MDB_val ckey = { .mv_size = strlen (CATALOG_META_CLUSTER),
                   .mv_data = (void *)CATALOG_META_CLUSTER };
  uint64_t filled = 0;
  int rc, r;

  r = catalog_wtxn_begin (cat, &txn, "upgrade");
  if (r < 0)
    return r;
  /* A corrupt cluster record is reported where it is read. */
  r = catalog_get_cluster_txn (cat, txn, &c);
  if (r < 0 || c.format_version >= CATALOG_FORMAT_VERSION)
    return r == -ENOENT || r == -EIO ? 0 : r;
  rc = mdb_cursor_open (txn, cat->segmap, &cur);
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_cursor_open segmap");
  for (rc = mdb_cursor_get (cur, &key, &val, MDB_FIRST); rc == MDB_SUCCESS;
       rc = mdb_cursor_get (cur, &key, &val, MDB_NEXT)) {
    uint64_t id;

    if (key.mv_size != KEY_MAP_LEN)
      return -EIO;
    r = catalog_u64_decode ("segmap", &val, &id);
    if (r < 0)
      return r;
    /* A missing or corrupt record is reported where it is read. */
    r = catalog_segment_get_txn (cat, txn, id, &g);
    if (r == -ENOENT || r == -EIO)
      continue;
    if (r < 0)
      return r;
    if (g.index != CATALOG_INDEX_NONE)
      continue;
    g.index = get_be64 ((const uint8_t *)key.mv_data + 8);
    r = catalog_segment_put_txn (cat, txn, &g);
    if (r < 0)
      return r;
    filled++;
  }
  if (rc != MDB_NOTFOUND)
    return catalog_mdb_err (rc, "mdb_cursor_get segmap");
  c.format_version = CATALOG_FORMAT_VERSION;
  val.mv_data = buf;
  val.mv_size = catalog_cluster_encode (&c, buf);
  rc = catalog_put (cat, txn, cat->meta, &ckey, &val, 0);
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_put cluster");
  log_debug ("catalog: upgrade: %" PRIu64 " segment records given their index",
             filled);
  return catalog_wtxn_commit (cat, &txn, "upgrade");
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
  r = pthread_mutex_init (&cat->alloc_lock, NULL);
  if (r != 0) {
    r = -r;
    goto err_mutex;
  }

  rc = mdb_env_create (&cat->env);
  if (rc != MDB_SUCCESS) {
    r = catalog_mdb_err (rc, "mdb_env_create");
    goto err_alloc_lock;
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
    log_debug ("catalog: open: %s", dir);
    r = catalog_mdb_err (rc, "mdb_env_open");
    goto err_env;
  }
  /* Free reader slots left by a crashed process. */
  rc = mdb_reader_check (cat->env, &dead);
  if (rc == MDB_SUCCESS && dead > 0)
    log_debug ("catalog: open: %s: cleared %d stale readers", dir, dead);

  r = open_dbis (cat);
  if (r == 0)
    r = upgrade_indexes (cat);
  if (r < 0)
    goto err_env;

  *out = cat;
  return 0;

err_env:
  mdb_env_close (cat->env);
err_alloc_lock:
  pthread_mutex_destroy (&cat->alloc_lock);
err_mutex:
  pthread_mutex_destroy (&cat->lock);
err_free:
  free (cat);
  return r;
}

/* Close the handle and its pooled readers (accepts NULL).  No other
 * thread may be using it.
 */
void
catalog_close (catalog *cat)
{
  if (cat == NULL)
    return;
  assert (cat->alloc_head == NULL && !cat->alloc_busy);
  catalog_readers_free (cat);
  mdb_env_close (cat->env);
  pthread_mutex_destroy (&cat->alloc_lock);
  pthread_mutex_destroy (&cat->lock);
  free (cat->wlog.buf);
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
  rc = catalog_put (cat, txn, cat->meta, &key, &val, MDB_NOOVERWRITE);
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_put cluster");
  return catalog_wtxn_commit (cat, &txn, "cluster_init");
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

  r = catalog_rtxn_begin (&rt);
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

  r = catalog_rtxn_begin (&rt);
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

/* Copy the catalog, compacted, to FD (see catalog.h).  LMDB's own copy
 * takes the read transaction and writes from a thread of its own; the
 * room check before it turns the common failure, a full file system,
 * into a clear -ENOSPC without writing gigabytes first.
 */
int
catalog_backup (catalog *cat, int fd, uint64_t *size)
{
  MDB_envinfo info;
  MDB_stat st;
  struct statvfs vfs;
  struct stat sb;
  off_t start, end;
  uint64_t need, room;
  int rc;

  if (fstat (fd, &sb) == -1)
    return -errno;
  if (!S_ISREG (sb.st_mode))
    return -EINVAL;
  start = lseek (fd, 0, SEEK_CUR);
  if (start == -1)
    return -errno;
  rc = mdb_env_info (cat->env, &info);
  if (rc == MDB_SUCCESS)
    rc = mdb_env_stat (cat->env, &st);
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_env_info");
  /* The used pages bound the compacted copy from above. */
  need = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
  if (fstatvfs (fd, &vfs) == 0) {
    room = (uint64_t)vfs.f_bavail * vfs.f_frsize;
    if (room < need) {
      log_debug ("catalog: backup: %" PRIu64 " bytes free, up to %" PRIu64
                 " needed",
                 room, need);
      return -ENOSPC;
    }
  }
  rc = mdb_env_copyfd2 (cat->env, fd, MDB_CP_COMPACT);
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_env_copyfd2");
  end = lseek (fd, 0, SEEK_CUR);
  if (end == -1)
    return -errno;
  *size = (uint64_t)(end - start);
  return 0;
}

/* Static text for a catalog error code (negative or positive). */
const char *
catalog_strerror (int err)
{
  const char *d;

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
    /* A system error LMDB passed on keeps its own name (a static
     * string, unlike strerror's).
     */
    d = strerrordesc_np (err < 0 ? -err : err);
    return d ? d : "unknown catalog error";
  }
}

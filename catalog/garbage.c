/* Garbage: replicas of deleted segments, and replicas removed from
 * segments, that their servers have yet to delete (table garbage, keyed
 * by (server id, segment id)).
 */

#include <config.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include <lmdb.h>

#include "catalog-internal.h"
#include "cleanup.h"
#include "log.h"

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
    rc = catalog_del (cat, txn, cat->garbage, &key);
    if (rc == MDB_SUCCESS)
      done++;
    else if (rc != MDB_NOTFOUND)
      return catalog_mdb_err (rc, "mdb_del garbage");
  }
  if (done == 0)
    return 0;
  return catalog_wtxn_commit (cat, &txn, "garbage_done");
}

/* Replication's other end: where a catalog's change sequence stands,
 * and applying a leader's changes on a standby (catalog.h).  Above
 * txn.c and changelog.c.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>

#include <lmdb.h>

#include "catalog-internal.h"
#include "cleanup.h"
#include "log.h"

int
catalog_change_seq (catalog *cat, uint64_t *seq)
{
  CLEANUP_RTXN struct catalog_rtxn rt = { .cat = cat };
  int r;

  r = catalog_rtxn_begin (&rt);
  if (r < 0)
    return r;
  return catalog_changelog_seq_get (cat, rt.txn, seq);
}

int
catalog_apply_changes (catalog *cat, uint64_t seq, const void *changes,
                       size_t len)
{
  CLEANUP_MDB_TXN_ABORT MDB_txn *txn = NULL;
  const uint8_t *p = changes;
  uint64_t have;
  size_t off, used;
  int r;

  if (len == 0 || seq == 0)
    return -EBADMSG;
  r = catalog_wtxn_begin (cat, &txn, "apply_changes");
  if (r < 0)
    return r;
  r = catalog_changelog_seq_get (cat, txn, &have);
  if (r < 0)
    return r;
  if (have != seq - 1) {
    log_debug ("catalog: changes %" PRIu64 " do not follow %" PRIu64, seq,
               have);
    return -ESTALE;
  }
  for (off = 0; off < len; off += used) {
    r = catalog_changelog_apply_one (cat, txn, p + off, len - off, &used);
    if (r < 0)
      return r;
  }
  /* Raw writes: nothing was recorded, the commit does not raise the
   * sequence; set it to the leader's.
   */
  r = catalog_changelog_seq_put (cat, txn, seq);
  if (r < 0)
    return r;
  return catalog_wtxn_commit (cat, &txn, "apply_changes");
}

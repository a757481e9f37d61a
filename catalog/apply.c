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
  struct catalog_change_batch b = { .seq = seq,
                                    .changes = changes,
                                    .len = len };

  return catalog_apply_changes_many (cat, &b, 1);
}

int
catalog_apply_changes_many (catalog *cat, const struct catalog_change_batch *b,
                            size_t n)
{
  CLEANUP_MDB_TXN_ABORT MDB_txn *txn = NULL;
  uint64_t have;
  size_t i, off, used;
  int r;

  if (n == 0)
    return -EBADMSG;
  for (i = 0; i < n; i++)
    if (b[i].len == 0 || b[i].seq == 0)
      return -EBADMSG;
  r = catalog_wtxn_begin (cat, &txn, "apply_changes");
  if (r < 0)
    return r;
  r = catalog_changelog_seq_get (cat, txn, &have);
  if (r < 0)
    return r;
  for (i = 0; i < n; i++) {
    const uint8_t *p = b[i].changes;

    if (have != b[i].seq - 1) {
      log_debug ("catalog: changes %" PRIu64 " do not follow %" PRIu64,
                 b[i].seq, have);
      return -ESTALE;
    }
    for (off = 0; off < b[i].len; off += used) {
      r = catalog_changelog_apply_one (cat, txn, p + off, b[i].len - off,
                                       &used);
      if (r < 0)
        return r;
    }
    have = b[i].seq;
  }
  /* Raw writes: nothing was recorded, the commit does not raise the
   * sequence; set it to the leader's.
   */
  r = catalog_changelog_seq_put (cat, txn, have);
  if (r < 0)
    return r;
  return catalog_wtxn_commit (cat, &txn, "apply_changes");
}

/* The change log: every put, delete and drop of a write transaction,
 * recorded so that a standby MDS can apply the same changes
 * (docs/high-availability.md, "Replication").
 *
 * Every write in the catalog goes through catalog_put, catalog_del,
 * catalog_cursor_del and catalog_drop (scripts/lint checks that no
 * other file of catalog/ calls LMDB's writers).  Each does the write
 * and, if it worked and a commit hook is set, appends it to CAT->wlog.
 * A write transaction that changed anything also raises the change
 * sequence (meta key "change_seq") in the same transaction
 * (catalog_changelog_seal, from catalog_wtxn_commit), so a catalog and
 * every copy of it (a backup, a snapshot) say which change they are at.
 * After the commit the hook gets the sequence and the changes.  This
 * file calls nothing else of the catalog (txn.c calls it); applying
 * changes on a standby is apply.c's.
 *
 * Only one write transaction exists at a time (LMDB's writer lock, held
 * from catalog_wtxn_begin to the commit or abort), so WLOG needs no lock
 * of its own: it is reset at begin and taken out before the commit
 * releases the writer lock.
 *
 * Encoding, per change, big-endian:
 *   op u8 (1 put, 2 delete, 3 drop), table u8 (CATALOG_TABLE_*),
 *   key length u16, value length u32, key, value
 * A delete has no value; a drop neither key nor value.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lmdb.h>

#include "catalog-internal.h"
#include "cleanup.h"
#include "log.h"
#include "mdb-errno.h"

enum {
  CHANGE_PUT = 1,
  CHANGE_DEL = 2,
  CHANGE_DROP = 3,
};

#define CHANGE_HEAD 8
#define CHANGE_KEY_MAX 511 /* LMDB's default key size limit */

/* Table ids on the wire: their order is part of the encoding. */
static MDB_dbi *
table_dbi (catalog *cat, unsigned id)
{
  switch (id) {
  case 0:
    return &cat->meta;
  case 1:
    return &cat->servers;
  case 2:
    return &cat->server_uuids;
  case 3:
    return &cat->volumes;
  case 4:
    return &cat->names;
  case 5:
    return &cat->segmap;
  case 6:
    return &cat->segments;
  case 7:
    return &cat->server_segments;
  case 8:
    return &cat->server_counts;
  case 9:
    return &cat->garbage;
  default:
    return NULL;
  }
}

static int
table_id (catalog *cat, MDB_dbi dbi)
{
  unsigned id;
  MDB_dbi *d;

  for (id = 0; (d = table_dbi (cat, id)) != NULL; id++)
    if (*d == dbi)
      return (int)id;
  return -1;
}

/* Append one change to CAT->wlog (a failure to record is remembered:
 * the commit then fails rather than lose it).
 */
static void
record (catalog *cat, uint8_t op, MDB_dbi dbi, const MDB_val *key,
        const MDB_val *val)
{
  struct catalog_changes *w = &cat->wlog;
  size_t klen = key ? key->mv_size : 0, vlen = val ? val->mv_size : 0;
  size_t need = CHANGE_HEAD + klen + vlen;
  int id;
  uint8_t *p;

  w->n++;
  if (!cat->hook || w->failed)
    return;
  id = table_id (cat, dbi);
  if (id < 0 || klen > CHANGE_KEY_MAX || vlen > UINT32_MAX) {
    log_error ("catalog: change log: a write to an unknown table or with a "
               "key of %zu bytes",
               klen);
    w->failed = true;
    return;
  }
  if (w->len + need > w->cap) {
    size_t cap = w->cap ? w->cap : 4096;
    uint8_t *b;

    while (cap < w->len + need)
      cap *= 2;
    b = realloc (w->buf, cap);
    if (b == NULL) {
      w->failed = true;
      return;
    }
    w->buf = b;
    w->cap = cap;
  }
  p = w->buf + w->len;
  p[0] = op;
  p[1] = (uint8_t)id;
  put_be16 (p + 2, (uint16_t)klen);
  put_be32 (p + 4, (uint32_t)vlen);
  if (klen)
    memcpy (p + CHANGE_HEAD, key->mv_data, klen);
  if (vlen)
    memcpy (p + CHANGE_HEAD + klen, val->mv_data, vlen);
  w->len += need;
}

int
catalog_put (catalog *cat, MDB_txn *txn, MDB_dbi dbi, MDB_val *key,
             MDB_val *val, unsigned flags)
{
  int rc = mdb_put (txn, dbi, key, val, flags);

  if (rc == MDB_SUCCESS)
    record (cat, CHANGE_PUT, dbi, key, val);
  return rc;
}

int
catalog_del (catalog *cat, MDB_txn *txn, MDB_dbi dbi, MDB_val *key)
{
  int rc = mdb_del (txn, dbi, key, NULL);

  if (rc == MDB_SUCCESS)
    record (cat, CHANGE_DEL, dbi, key, NULL);
  return rc;
}

int
catalog_cursor_del (catalog *cat, MDB_cursor *cur)
{
  MDB_val key, val;
  uint8_t kbuf[CHANGE_KEY_MAX];
  int rc;

  rc = mdb_cursor_get (cur, &key, &val, MDB_GET_CURRENT);
  if (rc != MDB_SUCCESS)
    return rc;
  /* The key's memory is the page's: copy it before the delete. */
  if (key.mv_size <= sizeof kbuf) {
    memcpy (kbuf, key.mv_data, key.mv_size);
    key.mv_data = kbuf;
  }
  rc = mdb_cursor_del (cur, 0);
  if (rc == MDB_SUCCESS)
    record (cat, CHANGE_DEL, mdb_cursor_dbi (cur), &key, NULL);
  return rc;
}

int
catalog_drop (catalog *cat, MDB_txn *txn, MDB_dbi dbi)
{
  int rc = mdb_drop (txn, dbi, 0);

  if (rc == MDB_SUCCESS)
    record (cat, CHANGE_DROP, dbi, NULL, NULL);
  return rc;
}

/* Read the change sequence in TXN (0: none yet). */
int
catalog_changelog_seq_get (catalog *cat, MDB_txn *txn, uint64_t *seq)
{
  MDB_val key = { .mv_size = strlen (CATALOG_META_CHANGE_SEQ),
                  .mv_data = (void *)CATALOG_META_CHANGE_SEQ };
  MDB_val val;
  int rc;

  *seq = 0;
  rc = mdb_get (txn, cat->meta, &key, &val);
  if (rc == MDB_NOTFOUND)
    return 0;
  if (rc != MDB_SUCCESS) {
    log_debug ("catalog: change_seq: %s", mdb_strerror (rc));
    return mdb_errno (rc);
  }
  if (val.mv_size != 8) {
    log_debug ("catalog: change_seq: bad length %zu", val.mv_size);
    return -EIO;
  }
  *seq = get_be64 (val.mv_data);
  return 0;
}

/* Write SEQ as the change sequence in TXN (not itself a change). */
int
catalog_changelog_seq_put (catalog *cat, MDB_txn *txn, uint64_t seq)
{
  MDB_val key = { .mv_size = strlen (CATALOG_META_CHANGE_SEQ),
                  .mv_data = (void *)CATALOG_META_CHANGE_SEQ };
  uint8_t buf[8];
  MDB_val val = { .mv_size = 8, .mv_data = buf };
  int rc;

  put_be64 (buf, seq);
  rc = mdb_put (txn, cat->meta, &key, &val, 0);
  if (rc != MDB_SUCCESS) {
    log_debug ("catalog: change_seq: %s", mdb_strerror (rc));
    return mdb_errno (rc);
  }
  return 0;
}

/* catalog_wtxn_begin: a new transaction, an empty log. */
void
catalog_changelog_reset (catalog *cat)
{
  cat->wlog.len = 0;
  cat->wlog.n = 0;
  cat->wlog.failed = false;
}

/* catalog_wtxn_commit, before the commit: if TXN changed anything,
 * raise the change sequence in it (*SEQ the new one, else 0) and take
 * the recorded changes out of CAT->wlog into *DONE (the caller frees
 * DONE->buf).  Returns 0 or -errno (the changes could not all be
 * recorded: the transaction must not commit).
 */
int
catalog_changelog_seal (catalog *cat, MDB_txn *txn, uint64_t *seq,
                        struct catalog_changes *done)
{
  int r;

  *seq = 0;
  memset (done, 0, sizeof *done);
  if (cat->wlog.n == 0)
    return 0;
  if (cat->wlog.failed)
    return -ENOMEM;
  r = catalog_changelog_seq_get (cat, txn, seq);
  if (r < 0)
    return r;
  (*seq)++;
  r = catalog_changelog_seq_put (cat, txn, *seq);
  if (r < 0)
    return r;
  if (cat->hook) {
    *done = cat->wlog;
    memset (&cat->wlog, 0, sizeof cat->wlog);
  }
  return 0;
}

void
catalog_set_commit_hook (catalog *cat, catalog_commit_hook *hook, void *arg)
{
  cat->hook = hook;
  cat->hook_arg = arg;
}

/* Check and apply one encoded change at P (LEN bytes left) in TXN, with
 * LMDB's writers (it is not itself recorded); *USED its length.
 * Returns 0, -EBADMSG (malformed) or -errno.
 */
int
catalog_changelog_apply_one (catalog *cat, MDB_txn *txn, const uint8_t *p,
                             size_t len, size_t *used)
{
  MDB_val key, val;
  MDB_dbi *dbi;
  size_t klen, vlen;
  int rc = MDB_SUCCESS;

  if (len < CHANGE_HEAD)
    return -EBADMSG;
  klen = get_be16 (p + 2);
  vlen = get_be32 (p + 4);
  dbi = table_dbi (cat, p[1]);
  if (dbi == NULL || klen > CHANGE_KEY_MAX || vlen > len - CHANGE_HEAD ||
      klen > len - CHANGE_HEAD - vlen)
    return -EBADMSG;
  key = (MDB_val){ .mv_size = klen, .mv_data = (void *)(p + CHANGE_HEAD) };
  val =
      (MDB_val){ .mv_size = vlen, .mv_data = (void *)(p + CHANGE_HEAD + klen) };
  switch (p[0]) {
  case CHANGE_PUT:
    if (klen == 0)
      return -EBADMSG;
    rc = mdb_put (txn, *dbi, &key, &val, 0);
    break;
  case CHANGE_DEL:
    if (klen == 0 || vlen != 0)
      return -EBADMSG;
    rc = mdb_del (txn, *dbi, &key, NULL);
    if (rc == MDB_NOTFOUND)
      return -EBADMSG; /* the leader deleted what it had: so must we */
    break;
  case CHANGE_DROP:
    if (klen != 0 || vlen != 0)
      return -EBADMSG;
    rc = mdb_drop (txn, *dbi, 0);
    break;
  default:
    return -EBADMSG;
  }
  if (rc != MDB_SUCCESS) {
    log_debug ("catalog: apply: %s", mdb_strerror (rc));
    return mdb_errno (rc);
  }
  *used = CHANGE_HEAD + klen + vlen;
  return 0;
}

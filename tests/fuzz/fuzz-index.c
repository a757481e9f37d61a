/* Fuzz the storage server's index loaders (storesrv/index.c): the
 * records ss_index_load, ss_index_load_fences and ss_index_load_gone read
 * back from LMDB at start-up, and the identity ss_index_get_ident reads
 * from the "meta" database, whatever a crash, a bug, an older version or
 * another store left there.
 *
 * The loaders walk LMDB through the handle's database handles, so this
 * file includes index-internal.h (for those handles) and drives them on
 * a real LMDB environment in a temporary directory; index.c and the
 * record codec it uses (record.c, which tests/unit/test-record.c tests
 * alone) come from libstoresrv.la.
 *
 * Input: a byte STOP (the callback asks to stop at its STOP-th call, 0:
 * never), then records, each: database u8 (0 segments, 1 fences, 2
 * tombstones, 3 meta; taken mod 4), key length u8, value length u8, key,
 * value.
 * They are stored in one transaction (replacing the previous input's);
 * then each loader is run and compared with a model of what it must do:
 * walk the keys in LMDB order, skip the named databases' entries in the
 * main one, return -EIO at the first record of the wrong size, and hand
 * every other record over exactly (ss_index_rec_encode of what ss_index_load
 * hands over is the stored value; a 21-byte record has generation 0).
 * ss_index_get_ident must return 0 with the stored uuid and id only when
 * "store" is 16 bytes and "id" 8 bytes and not zero, -EINVAL when either
 * has another size, and -ENOENT otherwise.
 */

#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "index-internal.h"

#include "fuzz.h"

#define MAX_RECS 256
#define NDB 4

struct rec {
  int db;
  size_t klen, vlen;
  uint8_t key[255], val[255];
};

/* The stored records of each database, in LMDB key order. */
struct model {
  struct rec recs[MAX_RECS];
  size_t n;
};

static struct ss_index *idx;
static char dir[4096];
static int debug;
static struct model model[NDB]; /* what is stored now */

static void
cleanup (void)
{
  ss_index_close (idx);
  idx = NULL;
  ss_index_wipe (dir);
  rmdir (dir);
}

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  const char *tmp = getenv ("TMPDIR");
  int r;

  snprintf (dir, sizeof dir, "%s/fuzz-index.XXXXXX", tmp ? tmp : "/tmp");
  if (mkdtemp (dir) == NULL)
    FUZZ_FAIL ("mkdtemp: %s: %m", dir);
  static const uint8_t u[16] = { 1 };
  MDB_txn *txn;

  r = ss_index_open (dir, 1024, &debug, &idx);
  if (r < 0)
    FUZZ_FAIL ("ss_index_open: %s", strerror (-r));
  /* Commits in memory only: this is about decoding, not durability. */
  mdb_env_set_flags (idx->env, MDB_NOSYNC | MDB_NOMETASYNC, 1);
  /* Create "meta", then empty it: the inputs fill it. */
  r = ss_index_set_ident (idx, u, 1);
  if (r < 0)
    FUZZ_FAIL ("ss_index_set_ident: %s", strerror (-r));
  if (mdb_txn_begin (idx->env, NULL, 0, &txn) != 0 ||
      mdb_drop (txn, idx->mdbi, 0) != 0 || mdb_txn_commit (txn) != 0)
    FUZZ_FAIL ("emptying meta");
  atexit (cleanup);
  return 0;
}

/* LMDB's default key order: bytes, then length. */
static int
key_cmp (const struct rec *a, const struct rec *b)
{
  size_t n = a->klen < b->klen ? a->klen : b->klen;
  int c = memcmp (a->key, b->key, n);

  if (c)
    return c;
  return (a->klen > b->klen) - (a->klen < b->klen);
}

static int
rec_qsort_cmp (const void *a, const void *b)
{
  return key_cmp (a, b);
}

/* Insert or replace R in M, as mdb_put does. */
static void
model_put (struct model *m, const struct rec *r)
{
  size_t i;

  for (i = 0; i < m->n; i++) {
    if (key_cmp (&m->recs[i], r) == 0) {
      m->recs[i] = *r;
      return;
    }
  }
  if (m->n < MAX_RECS)
    m->recs[m->n++] = *r;
}

static MDB_dbi
dbi_of (int db)
{
  return db == 0   ? idx->dbi
         : db == 1 ? idx->fdbi
         : db == 2 ? idx->gdbi
                   : idx->mdbi;
}

/* Replace the stored records with those of the input. */
static void
store (const uint8_t *p, size_t n)
{
  MDB_txn *txn;
  MDB_val k, v;
  struct rec r;
  int db, rc;
  size_t i;

  rc = mdb_txn_begin (idx->env, NULL, 0, &txn);
  FUZZ_CHECK (rc == 0, "mdb_txn_begin: %s", mdb_strerror (rc));
  for (db = 0; db < NDB; db++) {
    for (i = 0; i < model[db].n; i++) {
      k.mv_size = model[db].recs[i].klen;
      k.mv_data = model[db].recs[i].key;
      rc = mdb_del (txn, dbi_of (db), &k, NULL);
      FUZZ_CHECK (rc == 0, "mdb_del: %s", mdb_strerror (rc));
    }
    model[db].n = 0;
  }
  while (n >= 3 && n - 3 >= (size_t)p[1] + p[2]) {
    r.db = p[0] % NDB;
    r.klen = p[1];
    r.vlen = p[2];
    memcpy (r.key, p + 3, r.klen);
    memcpy (r.val, p + 3 + r.klen, r.vlen);
    p += 3 + r.klen + r.vlen;
    n -= 3 + r.klen + r.vlen;
    /* LMDB refuses empty keys, and the main database's entries for the
     * named databases cannot be overwritten with plain values.
     */
    k.mv_size = r.klen;
    k.mv_data = r.key;
    if (r.klen == 0 || (r.db == 0 && ss_index_is_named_db (&k)))
      continue;
    if (model[r.db].n == MAX_RECS)
      break;
    v.mv_size = r.vlen;
    v.mv_data = r.val;
    rc = mdb_put (txn, dbi_of (r.db), &k, &v, 0);
    FUZZ_CHECK (rc == 0, "mdb_put: %s", mdb_strerror (rc));
    model_put (&model[r.db], &r);
  }
  rc = mdb_txn_commit (txn);
  FUZZ_CHECK (rc == 0, "mdb_txn_commit: %s", mdb_strerror (rc));
  for (db = 0; db < NDB; db++)
    qsort (model[db].recs, model[db].n, sizeof model[db].recs[0],
           rec_qsort_cmp);
}

/* State of one loader run: the records it must hand over, in order. */
struct walk {
  const struct rec *expect[MAX_RECS];
  size_t nexpect, calls, stop;
};

/* Which records of DB a loader must hand over, and what it must return. */
static int
expect (int db, struct walk *w)
{
  size_t i;

  w->nexpect = w->calls = 0;
  for (i = 0; i < model[db].n; i++) {
    const struct rec *r = &model[db].recs[i];
    bool ok;

    switch (db) {
    case 0:
      ok = r->klen == 8 &&
           (r->vlen == SS_INDEX_REC_SIZE || r->vlen == SS_INDEX_V2_REC_SIZE ||
            r->vlen == SS_INDEX_OLD_REC_SIZE);
      break;
    case 1:
      ok = r->klen == 8 && r->vlen == 8;
      break;
    default:
      ok = r->klen == 8;
      break;
    }
    if (!ok)
      return -EIO;
    w->expect[w->nexpect++] = r;
    if (w->nexpect == w->stop)
      return 1;
  }
  return 0;
}

/* Count a call; returns the record it must be about. */
static const struct rec *
next (struct walk *w, const char *what)
{
  FUZZ_CHECK (w->calls < w->nexpect, "%s: handed over an extra record", what);
  return w->expect[w->calls++];
}

static int
on_rec (void *arg, const struct ss_index_rec *rec)
{
  struct walk *w = arg;
  const struct rec *r = next (w, "ss_index_load");
  uint8_t buf[SS_INDEX_REC_SIZE];
  uint64_t kv;

  memcpy (&kv, r->key, 8);
  ss_index_rec_encode (rec, buf);
  FUZZ_CHECK (rec->segment == be64toh (kv) &&
                  memcmp (buf, r->val, r->vlen) == 0 &&
                  (r->vlen >= SS_INDEX_V2_REC_SIZE || rec->gen == 0) &&
                  (r->vlen == SS_INDEX_REC_SIZE || rec->index == SS_INDEX_NONE),
              "ss_index_load: record %zu handed over wrongly", w->calls);
  return w->calls == w->stop;
}

static int
on_fence (void *arg, uint64_t volume, uint64_t epoch)
{
  struct walk *w = arg;
  const struct rec *r = next (w, "ss_index_load_fences");
  uint64_t kv, vv;

  memcpy (&kv, r->key, 8);
  memcpy (&vv, r->val, 8);
  FUZZ_CHECK (volume == be64toh (kv) && epoch == be64toh (vv),
              "ss_index_load_fences: fence %zu handed over wrongly", w->calls);
  return w->calls == w->stop;
}

static int
on_gone (void *arg, uint64_t segment)
{
  struct walk *w = arg;
  const struct rec *r = next (w, "ss_index_load_gone");
  uint64_t kv;

  memcpy (&kv, r->key, 8);
  FUZZ_CHECK (segment == be64toh (kv),
              "ss_index_load_gone: tombstone %zu handed over wrongly",
              w->calls);
  return w->calls == w->stop;
}

/* The stored meta value of NAME, or NULL. */
static const struct rec *
meta_find (const char *name)
{
  size_t i, len = strlen (name);

  for (i = 0; i < model[3].n; i++)
    if (model[3].recs[i].klen == len &&
        memcmp (model[3].recs[i].key, name, len) == 0)
      return &model[3].recs[i];
  return NULL;
}

/* Check ss_index_get_ident against the model of "meta". */
static void
check_ident (void)
{
  const struct rec *st = meta_find (META_STORE), *id = meta_find (META_ID);
  uint8_t uuid[16];
  uint64_t got, want_id = 0;
  int want, r;

  if (st && st->vlen != 16)
    want = -EINVAL;
  else if (st == NULL)
    want = -ENOENT;
  else if (id && id->vlen != 8)
    want = -EINVAL;
  else {
    if (id)
      memcpy (&want_id, id->val, 8);
    want_id = be64toh (want_id);
    want = want_id == 0 ? -ENOENT : 0;
  }
  r = ss_index_get_ident (idx, uuid, &got);
  FUZZ_CHECK (r == want, "ss_index_get_ident returned %d, expected %d", r,
              want);
  if (r == 0)
    FUZZ_CHECK (got == want_id && memcmp (uuid, st->val, 16) == 0,
                "ss_index_get_ident handed over the identity wrongly");
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static struct walk w;
  int want, r;

  if (size < 1)
    return 0;
  store (data + 1, size - 1);

  w.stop = data[0];
  want = expect (0, &w);
  r = ss_index_load (idx, on_rec, &w);
  FUZZ_CHECK (r == want && w.calls == w.nexpect,
              "ss_index_load returned %d after %zu records, expected %d "
              "after %zu",
              r, w.calls, want, w.nexpect);
  want = expect (1, &w);
  r = ss_index_load_fences (idx, on_fence, &w);
  FUZZ_CHECK (r == want && w.calls == w.nexpect,
              "ss_index_load_fences returned %d after %zu, expected %d "
              "after %zu",
              r, w.calls, want, w.nexpect);
  want = expect (2, &w);
  r = ss_index_load_gone (idx, on_gone, &w);
  FUZZ_CHECK (r == want && w.calls == w.nexpect,
              "ss_index_load_gone returned %d after %zu, expected %d "
              "after %zu",
              r, w.calls, want, w.nexpect);
  check_ident ();
  return 0;
}

#ifdef FUZZ_SEEDS
/* Append one record to BUF at *N. */
static void
add (uint8_t *buf, size_t *n, int db, const void *key, size_t klen,
     const void *val, size_t vlen)
{
  buf[(*n)++] = db;
  buf[(*n)++] = klen;
  buf[(*n)++] = vlen;
  memcpy (buf + *n, key, klen);
  *n += klen;
  memcpy (buf + *n, val, vlen);
  *n += vlen;
}

int
fuzz_make_seeds (const char *d)
{
  uint8_t buf[1024], k[8], v[SS_INDEX_REC_SIZE];
  struct ss_index_rec rec = { 0, 3, 1, 7, SS_SEG_STATE_OK, 2, 5 };
  size_t n;
  uint64_t be;
  int r = 0, i;

  /* Three segments (one in the old 21-byte form, one in the 29-byte
   * form without an index), two fences, a
   * tombstone.
   */
  n = 0;
  buf[n++] = 0;
  for (i = 0; i < 3; i++) {
    rec.segment = 100 + i;
    rec.slot = i;
    be = htobe64 (rec.segment);
    memcpy (k, &be, 8);
    ss_index_rec_encode (&rec, v);
    add (buf, &n, 0, k, 8, v,
         i == 2   ? SS_INDEX_OLD_REC_SIZE
         : i == 1 ? SS_INDEX_V2_REC_SIZE
                  : SS_INDEX_REC_SIZE);
  }
  be = htobe64 (1);
  memcpy (k, &be, 8);
  be = htobe64 (9);
  add (buf, &n, 1, k, 8, &be, 8);
  be = htobe64 (2);
  memcpy (k, &be, 8);
  add (buf, &n, 1, k, 8, &be, 8);
  be = htobe64 (99);
  memcpy (k, &be, 8);
  add (buf, &n, 2, k, 8, "\1", 1);
  r |= fuzz_write_seed (d, "store", buf, n);

  /* The same, stopping after two records of each. */
  buf[0] = 2;
  r |= fuzz_write_seed (d, "store-stop", buf, n);

  /* A segment record of a bad size after a good one: -EIO. */
  n = 1;
  add (buf, &n, 0, k, 8, v, SS_INDEX_REC_SIZE - 1);
  be = htobe64 (1);
  memcpy (k, &be, 8);
  add (buf, &n, 0, k, 8, v, SS_INDEX_REC_SIZE);
  r |= fuzz_write_seed (d, "bad-size", buf, n);

  /* A fence with a short key, and a key named like a database. */
  n = 1;
  add (buf, &n, 1, "vol", 3, k, 8);
  add (buf, &n, 0, "fencez", 6, v, SS_INDEX_REC_SIZE);
  add (buf, &n, 2, "gone", 4, "", 0);
  r |= fuzz_write_seed (d, "odd-keys", buf, n);

  /* An identity, then one with a zero id, then a short uuid. */
  n = 1;
  add (buf, &n, 3, META_STORE, strlen (META_STORE), "0123456789abcdef", 16);
  be = htobe64 (0x0123456789abcdefull);
  add (buf, &n, 3, META_ID, strlen (META_ID), &be, 8);
  be = htobe64 (42);
  add (buf, &n, 3, META_SEQ, strlen (META_SEQ), &be, 8);
  r |= fuzz_write_seed (d, "meta", buf, n);
  be = 0;
  add (buf, &n, 3, META_ID, strlen (META_ID), &be, 8);
  r |= fuzz_write_seed (d, "meta-zero-id", buf, n);
  n = 1;
  add (buf, &n, 3, META_STORE, strlen (META_STORE), "0123456789", 10);
  r |= fuzz_write_seed (d, "meta-short-uuid", buf, n);
  return r ? -1 : 0;
}
#endif /* FUZZ_SEEDS */

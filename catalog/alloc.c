/* Allocation of segments for holes of the map (tables segmap, segments,
 * server_segments, server_counts): catalog_map_alloc_many carries out
 * several requests in one transaction, and catalog_map_alloc gathers
 * concurrent calls into such transactions (group commit), so that they
 * share one synced commit instead of queueing for one each.
 */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <lmdb.h>

#include "catalog-internal.h"
#include "cleanup.h"
#include "log.h"

/* Check what can be checked of ENTRIES without the catalog: replica
 * counts and distinct servers.
 */
static int
check_entries (const struct catalog_map_entry *entries, size_t n)
{
  size_t i;
  uint32_t j, k;

  for (i = 0; i < n; ++i) {
    const struct catalog_segment *g = &entries[i].segment;

    if (g->nreplicas < 1 || g->nreplicas > CATALOG_REPLICAS_MAX)
      return -EINVAL;
    for (j = 0; j < g->nreplicas; ++j)
      for (k = j + 1; k < g->nreplicas; ++k)
        if (g->replicas[j].server == g->replicas[k].server)
          return -EINVAL;
  }
  return 0;
}

/* What the allocations of one request batch: segment ids taken from
 * the meta counter read once (at the first hole) and written back once,
 * and the replica counts of servers added up (struct catalog_counts).
 */
struct alloc_batch {
  bool have_ids;
  uint64_t next_id;
  struct catalog_counts counts;
};

/* Allocate a new segment for hole INDEX of VOLUME with the replicas of
 * *G inside write transaction TXN; on success *G is the new segment.
 * The id counter and the replica counts are left in B (alloc_end).
 */
static int
alloc_one (catalog *cat, MDB_txn *txn, uint64_t volume, uint64_t index,
           struct catalog_segment *g, struct alloc_batch *b)
{
  uint8_t kbuf[KEY_MAP_LEN], vbuf[8];
  MDB_val key, val;
  uint64_t id;
  uint32_t j;
  int rc, r;

  if (!b->have_ids) {
    r = catalog_counter_get (cat, txn, CATALOG_META_NEXT_SEGMENT, &b->next_id);
    if (r < 0)
      return r;
    b->have_ids = true;
  }
  if (b->next_id == 0 || b->next_id > UINT64_MAX - 1) {
    log_debug ("catalog: %s: ids exhausted", CATALOG_META_NEXT_SEGMENT);
    return -ENOSPC;
  }
  id = b->next_id++;
  g->id = id;
  g->volume = volume;
  g->index = index;
  g->gen = 1;
  g->refcount = 1;
  for (j = 0; j < g->nreplicas; ++j)
    g->replicas[j].state = CATALOG_REPLICA_OK;
  memset (&g->replicas[g->nreplicas], 0,
          (CATALOG_REPLICAS_MAX - g->nreplicas) * sizeof g->replicas[0]);
  r = catalog_segment_put_txn (cat, txn, g);
  if (r < 0)
    return r;

  key = key_map (kbuf, volume, index);
  put_be64 (vbuf, id);
  val.mv_size = sizeof vbuf;
  val.mv_data = vbuf;
  rc = catalog_put (cat, txn, cat->segmap, &key, &val, MDB_NOOVERWRITE);
  if (rc != MDB_SUCCESS)
    return catalog_mdb_err (rc, "mdb_put segmap");

  for (j = 0; j < g->nreplicas; ++j) {
    r = catalog_server_segment_add (cat, txn, g->replicas[j].server, id,
                                    &b->counts);
    if (r < 0)
      return r;
  }
  return 0;
}

/* Write back what B batched. */
static int
alloc_end (catalog *cat, MDB_txn *txn, struct alloc_batch *b)
{
  int r;

  if (b->have_ids) {
    uint64_t reserved;

    r = catalog_counter_put (cat, txn, CATALOG_META_NEXT_SEGMENT, b->next_id);
    if (r < 0)
      return r;
    /* Keep the reservation in the cluster tables half a reserve ahead
     * of the ids given: a rebuild then starts past every id that may
     * have been given, written or not.  Moving it changes the tables,
     * which the MDS pushes to the storage servers within a second.
     */
    r = catalog_counter_get (cat, txn, CATALOG_META_SEGMENT_RESERVED,
                             &reserved);
    if (r < 0)
      return r;
    if (b->next_id + CATALOG_SEGMENT_ID_RESERVE / 2 > reserved &&
        b->next_id <= UINT64_MAX - CATALOG_SEGMENT_ID_RESERVE) {
      r = catalog_counter_put (cat, txn, CATALOG_META_SEGMENT_RESERVED,
                               b->next_id + CATALOG_SEGMENT_ID_RESERVE);
      if (r == 0)
        r = catalog_tables_bump (cat, txn);
      if (r < 0)
        return r;
    }
  }
  return catalog_counts_flush (cat, txn, &b->counts);
}

/* Validate request REQ inside write transaction TXN without changing
 * anything: the volume exists, every index is inside it, every replica
 * server exists.  *V receives the volume.
 */
static int
check_request (catalog *cat, MDB_txn *txn,
               const struct catalog_alloc_request *req,
               struct catalog_volume *v)
{
  const struct catalog_map_entry *entries = req->entries;
  struct catalog_cluster c;
  uint32_t checked[16];
  uint64_t nsegs;
  size_t i, k, nchecked = 0;
  uint32_t j;
  int r;

  r = check_entries (entries, req->n);
  if (r < 0)
    return r;
  r = catalog_volume_get_txn (cat, txn, req->volume, v);
  if (r < 0)
    return r;
  r = catalog_get_cluster_txn (cat, txn, &c);
  if (r < 0)
    return r;
  assert (c.segment_size > 0);
  nsegs = v->size / c.segment_size + (v->size % c.segment_size != 0);

  for (i = 0; i < req->n; ++i) {
    if (entries[i].index >= nsegs)
      return -EINVAL;
    for (j = 0; j < entries[i].segment.nreplicas; ++j) {
      uint32_t server = entries[i].segment.replicas[j].server;

      /* Entries mostly name the same few servers: check each once. */
      for (k = 0; k < nchecked; ++k)
        if (checked[k] == server)
          break;
      if (k < nchecked)
        continue;
      r = catalog_server_exists (cat, txn, server);
      if (r < 0)
        return r;
      if (nchecked < sizeof checked / sizeof checked[0])
        checked[nchecked++] = server;
    }
  }
  return 0;
}

/* Carry out request REQ inside write transaction TXN: allocate its
 * holes, write back what each entry maps to.  *CHANGED is set once TXN
 * holds a change of REQ's: an error after that leaves TXN half done for
 * REQ, and only an abort undoes it.
 */
static int
alloc_request (catalog *cat, MDB_txn *txn, struct catalog_alloc_request *req,
               bool *changed)
{
  struct catalog_map_entry *entries = req->entries;
  struct catalog_volume v;
  struct alloc_batch b = { .have_ids = false };
  uint8_t kbuf[KEY_MAP_LEN];
  MDB_val key, val;
  uint64_t seg, allocated = 0;
  size_t i;
  int rc, r;

  *changed = false;
  r = check_request (cat, txn, req, &v);
  if (r < 0)
    return r;

  for (i = 0; i < req->n; ++i) {
    key = key_map (kbuf, req->volume, entries[i].index);
    rc = mdb_get (txn, cat->segmap, &key, &val);
    if (rc == MDB_SUCCESS) {
      /* Already mapped (earlier, or by an earlier entry or request of
       * this transaction).
       */
      r = catalog_u64_decode ("segmap", &val, &seg);
      if (r < 0)
        return r;
      r = catalog_segment_get_txn (cat, txn, seg, &entries[i].segment);
      if (r == -ENOENT) {
        log_debug ("catalog: segmap names missing segment %" PRIu64, seg);
        return -EIO;
      }
      if (r < 0)
        return r;
    }
    else if (rc == MDB_NOTFOUND) {
      *changed = true;
      r = alloc_one (cat, txn, req->volume, entries[i].index,
                     &entries[i].segment, &b);
      if (r < 0)
        return r;
      allocated++;
    }
    else
      return catalog_mdb_err (rc, "mdb_get segmap");
  }

  if (allocated == 0)
    return 0;
  r = alloc_end (cat, txn, &b);
  if (r < 0)
    return r;
  v.segments += allocated;
  return catalog_volume_put_txn (cat, txn, &v);
}

/* Carry out REQS[0..N) in one write transaction and one synced commit.
 * Each request's RESULT must be 0 on entry; a request that fails gets its
 * error there and changes nothing: if it had changed TXN already, the
 * transaction is aborted and redone without it (bounded: each redo has
 * one request fewer).  Returns 0, or the error of the transaction as a
 * whole (begin or commit), which every request still at 0 gets too.
 */
static int
commit_group (catalog *cat, struct catalog_alloc_request *const *reqs, size_t n)
{
  MDB_txn *txn;
  bool changed, any, redo;
  size_t i;
  int r;

  do {
    r = catalog_wtxn_begin (cat, &txn, "map_alloc");
    if (r < 0)
      goto fail_all;
    any = redo = false;
    for (i = 0; i < n && !redo; ++i) {
      if (reqs[i]->result < 0)
        continue;
      r = alloc_request (cat, txn, reqs[i], &changed);
      if (r < 0) {
        reqs[i]->result = r;
        redo = changed;
      }
      else
        any |= changed;
    }
    if (redo || !any) {
      /* A redo, or nothing changed (the abort is the cheaper end). */
      mdb_txn_abort (txn);
      txn = NULL;
    }
  } while (redo);
  if (!any)
    return 0;
  r = catalog_wtxn_commit (cat, &txn, "map_alloc");
  if (r == 0)
    return 0;

fail_all:
  for (i = 0; i < n; ++i)
    if (reqs[i]->result == 0)
      reqs[i]->result = r;
  return r;
}

/* Carry out several allocation requests in one transaction (see
 * catalog.h).
 */
int
catalog_map_alloc_many (catalog *cat, struct catalog_alloc_request *reqs,
                        size_t n)
{
  CLEANUP_FREE struct catalog_alloc_request **ptrs = NULL;
  size_t i;

  if (n == 0)
    return 0;
  ptrs = calloc (n, sizeof *ptrs);
  if (ptrs == NULL)
    return -ENOMEM;
  for (i = 0; i < n; ++i) {
    reqs[i].result = 0;
    ptrs[i] = &reqs[i];
  }
  return commit_group (cat, ptrs, n);
}

/* Append W to CAT's queue (alloc_lock held).  W stays queued until a
 * leader takes it (take_group), which is before its DONE is set: the
 * waiter, whose stack holds W, returns only after that.
 */
static void
enqueue (catalog *cat, struct catalog_alloc_waiter *w)
{
  w->next = NULL;
  if (cat->alloc_tail)
    cat->alloc_tail->next = w;
  else
    cat->alloc_head = w;
  cat->alloc_tail = w;
}

/* Take the group at the head of CAT's queue (alloc_lock held): at most
 * CATALOG_GROUP_MAX requests and, past the first, CATALOG_GROUP_ENTRIES
 * entries in all.  Fills GROUP, returns its size and sets *FIRST to the
 * group's waiters, a NULL-terminated list.
 */
static size_t
take_group (catalog *cat, struct catalog_alloc_request **group,
            struct catalog_alloc_waiter **first)
{
  struct catalog_alloc_waiter *w = cat->alloc_head, *last = NULL;
  size_t n = 0, entries = 0;

  *first = w;
  while (w && n < CATALOG_GROUP_MAX &&
         (n == 0 || entries + w->req->n <= CATALOG_GROUP_ENTRIES)) {
    group[n++] = w->req;
    entries += w->req->n;
    last = w;
    w = w->next;
  }
  assert (last != NULL);
  last->next = NULL;
  cat->alloc_head = w;
  if (w == NULL)
    cat->alloc_tail = NULL;
  return n;
}

/* Lead one group commit (alloc_lock held, alloc_busy set, ME at the
 * head of the queue): take the queue's head group, commit it, hand over
 * to the next waiter if any, wake every member.  Returns with the lock
 * released.
 */
static void
lead_group (catalog *cat, struct catalog_alloc_waiter *me)
{
  struct catalog_alloc_request *group[CATALOG_GROUP_MAX];
  struct catalog_alloc_waiter *w, *next, *heir;
  size_t ngroup;

  assert (cat->alloc_busy && cat->alloc_head == me);
  ngroup = take_group (cat, group, &w);
  pthread_mutex_unlock (&cat->alloc_lock);

  commit_group (cat, group, ngroup);

  /* Hand over while still busy, so that no other caller starts a group
   * before the heir takes it.
   */
  pthread_mutex_lock (&cat->alloc_lock);
  heir = cat->alloc_head;
  if (heir)
    heir->lead = true;
  else
    cat->alloc_busy = false;
  pthread_mutex_unlock (&cat->alloc_lock);

  /* Each post is the waiter's only one: it cannot return (and free W)
   * before it.  Read NEXT first all the same.
   */
  if (heir)
    sem_post (&heir->wake);
  for (; w != NULL; w = next) {
    next = w->next;
    if (w != me) {
      w->done = true;
      sem_post (&w->wake);
    }
  }
}

/* Allocate segments for the holes among ENTRIES of VOLUME: group commit.
 * The call queues its request.  If there is no leader it becomes one;
 * else it sleeps until a leader has committed its request, or hands it
 * the lead.  A leader takes the head group of the queue (its own request
 * included) and commits it in one transaction; once it is durable it
 * hands the lead to the waiter at the head of the queue, if any, and
 * wakes the group's members with their results.  Each sleeper is woken
 * once, and takes no lock to return.  A lone caller commits alone, as
 * before.
 */
int
catalog_map_alloc (catalog *cat, uint64_t volume,
                   struct catalog_map_entry *entries, size_t n)
{
  struct catalog_alloc_request req = {
    .volume = volume, .entries = entries, .n = n, .result = 0
  };
  struct catalog_alloc_waiter me = { .req = &req };
  int r;

  r = check_entries (entries, n); /* fail fast, without queueing */
  if (r < 0)
    return r;
  if (sem_init (&me.wake, 0, 0) == -1)
    return -ENOMEM; /* cannot happen: only EINVAL for a huge value */

  pthread_mutex_lock (&cat->alloc_lock);
  enqueue (cat, &me);
  if (!cat->alloc_busy) {
    cat->alloc_busy = true;
    lead_group (cat, &me);
  }
  else {
    pthread_mutex_unlock (&cat->alloc_lock);
    while (sem_wait (&me.wake) == -1)
      ; /* EINTR */
    if (!me.done) {
      assert (me.lead);
      pthread_mutex_lock (&cat->alloc_lock);
      lead_group (cat, &me);
    }
  }
  sem_destroy (&me.wake);
  return req.result;
}

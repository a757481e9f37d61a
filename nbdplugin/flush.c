/* nbdkit-tessera-plugin: flush.
 *
 * Every non-FUA write or trim records its segment in the dirty set of
 * each server that acknowledged it (dirty_mark, dirty.c); a flush takes
 * those sets and sends SEG_FLUSH to each server named, waiting for all.
 * A server whose flush fails may have lost writes: its replicas of the
 * dirty segments are reported to the MDS as failed where another ok
 * replica was flushed, else the flush fails and the segments stay dirty.
 * At most every epoch-interval seconds a flush also rotates the
 * writer's epoch (see epoch.c).
 *
 * Storage servers send a random incarnation, new at every start, in
 * their HELLO.  A server that restarted may have died with writes it
 * had acknowledged but not made durable, and its new process has
 * nothing to flush.  So each dirty set belongs to the incarnation that
 * took its writes: a handshake that finds another one moves the whole
 * set to the server's lost set, and so does a write acknowledged by an
 * older incarnation, or a SEG_FLUSH answered by a newer one.  Lost
 * segments are settled (flush_settle_lost) before any request proceeds
 * and before a write or flush is acknowledged: each replica there is
 * reported failed (REPLICA_FAILED, stale at the MDS) unless it is
 * already stale.  Until then no connection to that server is used, so
 * that it serves no read that may miss those writes.  If the MDS
 * refuses (the last ok replica, min-copies) or cannot be reached,
 * requests fail with EIO and the segments stay pending.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "cleanup.h"
#include "deadline.h"
#include "protocol.h"

#include "internal.h"

/* Times a flush is sent again after finding a server restarted. */
#define MAX_RESTARTS 3

/* Report the lost segments of server S as failed, holding v->lost_lock.
 * Returns 0, or -EIO (reported) with the segments not settled put back.
 */
static int
settle_server (struct volume *v, struct ss_server *s)
{
  const struct seg *seg;
  uint64_t *set;
  size_t n, i, k;
  bool was;
  int r = 0;
  unsigned j;

  pthread_mutex_lock (&s->lock);
  set = s->lost;
  n = s->nlost;
  s->lost = NULL;
  s->nlost = s->lost_cap = 0;
  s->npending = n;
  pthread_mutex_unlock (&s->lock);
  if (n == 0) {
    free (set);
    return 0;
  }

  n = dirty_set_unique (set, n);
  for (i = 0; i < n; i++) {
    r = map_lookup (v, set[i], &seg);
    if (r < 0)
      break;
    if (seg == NULL)
      continue;
    for (j = 0; j < seg->nreplicas; j++)
      if (seg->replicas[j].server == s->id)
        break;
    if (j == seg->nreplicas || seg->replicas[j].state == PROTO_REPLICA_STALE)
      continue; /* reported already, or replaced */
    r = map_replica_failed (v, seg, s->id);
    if (r < 0)
      break;
  }

  /* Put back what is not settled: the set itself, if S has no new lost
   * segments (so that this cannot fail), else one by one.
   */
  pthread_mutex_lock (&s->lock);
  was = true;
  s->npending = 0;
  if (r < 0 && s->nlost == 0) {
    memmove (set, set + i, (n - i) * sizeof set[0]);
    free (s->lost);
    s->lost = set;
    s->nlost = n - i;
    s->lost_cap = n;
    set = NULL;
  }
  for (k = i; r < 0 && set && k < n; k++)
    if (dirty_set_add (&s->lost, &s->nlost, &s->lost_cap, set[k]) < 0)
      break; /* out of memory: nothing to do but forget it */
  dirty_lost_account_locked (s, was);
  pthread_mutex_unlock (&s->lock);
  free (set);
  if (r < 0) {
    nbdkit_error ("volume %s: storage server %" PRIu32 " restarted and lost "
                  "writes, which could not be reported: failing the request",
                  v->name, s->id);
    return -EIO;
  }
  return 0;
}

struct settle_ctx {
  struct volume *v;
  int err;
};

/* Settle server S's lost segments (servers_for_each callback). */
static void
settle_one (struct ss_server *s, void *opaque)
{
  struct settle_ctx *c = opaque;
  bool pending;

  if (c->err)
    return;
  pthread_mutex_lock (&s->lock);
  pending = s->nlost > 0;
  pthread_mutex_unlock (&s->lock);
  if (pending)
    c->err = settle_server (c->v, s);
}

/* Settle the lost segments of every restarted server: report each
 * replica that may have lost acknowledged writes as failed, durably at
 * the MDS (REPLICA_FAILED: stale), unless it is stale already.  Called
 * before every request proceeds and before a write or flush is
 * acknowledged; costs one atomic load when nothing is pending.  Returns
 * 0, or -EIO (reported) if the MDS could not record one (the last ok
 * replica, min-copies, the MDS down): the request must fail, and the
 * segments stay pending.  Caller holds no lock but perhaps
 * v->flush_lock and a range of the range lock.
 */
int
flush_settle_lost (struct volume *v)
{
  struct settle_ctx c = { .v = v };

  if (atomic_load (&v->lost_pending) == 0)
    return 0;
  if (request_lock (&v->lost_lock) < 0) {
    nbdkit_error ("volume %s: out of time waiting to report the lost writes "
                  "of a restarted storage server (timeout=%d s)",
                  v->name, v->cfg->timeout_ms / 1000);
    return -ETIMEDOUT;
  }
  servers_for_each (v, settle_one, &c);
  pthread_mutex_unlock (&v->lost_lock);
  return c.err;
}

/* One server's dirty set, taken by a flush. */
struct flush_item {
  struct ss_server *server;
  uint64_t incarnation; /* the server's when the set was taken */
  uint64_t *dirty;
  size_t n;
};

struct flush_set {
  struct flush_item *items;
  size_t n, cap;
  int err;
};

/* Take server S's dirty set into the flush set OPAQUE
 * (servers_for_each callback).
 */
static void
take_dirty (struct ss_server *s, void *opaque)
{
  struct flush_set *f = opaque;

  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&s->lock);
  if (s->ndirty == 0 || f->err)
    return;
  if (f->n == f->cap) {
    size_t cap = f->cap ? f->cap * 2 : 16;
    struct flush_item *p = realloc (f->items, cap * sizeof *p);

    if (p == NULL) {
      f->err = -ENOMEM;
      return;
    }
    f->items = p;
    f->cap = cap;
  }
  s->ndirty = dirty_set_unique (s->dirty, s->ndirty);
  f->items[f->n].server = s;
  f->items[f->n].incarnation = s->incarnation;
  f->items[f->n].dirty = s->dirty;
  f->items[f->n].n = s->ndirty;
  f->n++;
  s->ntaken = s->ndirty;
  s->dirty = NULL;
  s->ndirty = s->dirty_cap = 0;
}

/* Whether server ID is in FAILED (the N servers whose flush failed). */
static bool
flush_failed_on (const struct flush_item *items, const struct ss_request *reqs,
                 size_t n, uint32_t id)
{
  size_t i;

  for (i = 0; i < n; i++)
    if (reqs[i].err != 0 && items[i].server->id == id)
      return true;
  return false;
}

/* Server IT's flush failed: its replicas of the dirty segments may have
 * lost writes.  Report each as failed to the MDS where another ok
 * replica was flushed, so that it is repaired from there.  Returns 0 if
 * every segment is accounted for, else -EIO (reported).
 */
static int
flush_failed (struct volume *v, const struct flush_item *it,
              const struct flush_item *items, const struct ss_request *reqs,
              size_t n)
{
  const struct seg *seg;
  uint32_t id = it->server->id;
  size_t i;
  unsigned j;
  bool mine, other;
  int r;

  if (atomic_load (&v->lease_lost))
    return -EIO;
  dirty_set_sort (it->dirty, it->n);
  for (i = 0; i < it->n; i++) {
    if (i > 0 && it->dirty[i] == it->dirty[i - 1])
      continue;
    r = map_lookup (v, it->dirty[i], &seg);
    if (r < 0)
      return -EIO;
    if (seg == NULL)
      continue;
    mine = other = false;
    for (j = 0; j < seg->nreplicas; j++) {
      if (seg->replicas[j].server == id)
        mine = seg->replicas[j].state != PROTO_REPLICA_STALE;
      else if (seg->replicas[j].state == PROTO_REPLICA_OK &&
               !flush_failed_on (items, reqs, n, seg->replicas[j].server))
        other = true;
    }
    if (!mine)
      continue; /* already reported */
    if (!other) {
      nbdkit_error ("volume %s: flush: segment %" PRIu64
                    ": no replica could be made durable",
                    v->name, seg->id);
      return -EIO;
    }
    if (map_replica_failed (v, seg, id) < 0)
      return -EIO;
  }
  return 0;
}

/* The flush is done with the set it took from server S: whatever of it
 * is not durable is back in S's sets.
 */
static void
untake (struct ss_server *s)
{
  bool was;

  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&s->lock);
  was = dirty_lost_pending_locked (s);
  s->ntaken = 0;
  s->taken_lost = false;
  dirty_lost_account_locked (s, was);
}

/* Put the set IT took back into its server's sets, as written by the
 * incarnation it was taken from (dirty_mark).
 */
static void
put_back (const struct flush_item *it)
{
  size_t k;

  for (k = 0; k < it->n; k++)
    dirty_mark (it->server, it->dirty[k], it->incarnation);
}

/* Make every write and trim acknowledged so far durable: SEG_FLUSH to
 * every server written since the last flush, in parallel.  Caller holds
 * v->flush_lock.  Returns 0, -SS_ERESTARTED if a server turned out to
 * have restarted (settle the lost sets and call again), or -errno
 * (reported).
 */
static int
flush_dirty (struct volume *v)
{
  struct flush_set f = { 0 };
  CLEANUP_FREE struct ss_request *reqs = NULL;
  struct ss_batch b;
  bool restarted = false;
  size_t i;
  int err = 0;

  servers_for_each (v, take_dirty, &f);
  if (tessera_debug_io)
    nbdkit_debug ("flush: %zu servers", f.n);
  if (f.err == 0 && f.n > 0) {
    reqs = calloc (f.n, sizeof *reqs);
    if (reqs == NULL)
      f.err = -ENOMEM;
  }
  if (f.err) {
    nbdkit_error ("volume %s: flush: out of memory", v->name);
    err = f.err;
    goto out;
  }
  if (f.n == 0)
    return 0;

  for (i = 0; i < f.n; i++) {
    reqs[i].opcode = PROTO_OP_SEG_FLUSH;
    reqs[i].hurry = true;
    reqs[i].server = f.items[i].server;
  }
  if (!request_can_start (v->cfg->timeout_ms)) {
    nbdkit_error ("volume %s: flush: out of time (timeout=%d s)", v->name,
                  v->cfg->timeout_ms / 1000);
    err = -ETIMEDOUT;
    /* Nothing was sent: the sets go back (below). */
    free (reqs);
    reqs = NULL;
    goto out;
  }
  ss_batch_init (&b, v->cfg->timeout_ms);
  ss_submit (&b, reqs, f.n);
  ss_batch_wait (&b, reqs, f.n);
  ss_batch_destroy (&b);

  for (i = 0; i < f.n; i++) {
    if (reqs[i].err == 0 && reqs[i].incarnation == f.items[i].incarnation)
      continue;
    if (reqs[i].err == 0 || reqs[i].err == -SS_ERESTARTED) {
      /* The server restarted after taking these writes: the new process
       * has nothing of them to flush.  Back in the sets they become
       * lost, to be reported (or, if the flush was never sent for lost
       * segments of an earlier restart, dirty, to be flushed again).
       */
      f.items[i].n = dirty_set_unique (f.items[i].dirty, f.items[i].n);
      if (reqs[i].err == 0)
        nbdkit_error ("storage server %" PRIu32 " restarted (incarnation "
                      "%#" PRIx64 " -> %#" PRIx64 "): %zu segments written "
                      "since the last flush are reported failed",
                      f.items[i].server->id, f.items[i].incarnation,
                      reqs[i].incarnation, f.items[i].n);
      put_back (&f.items[i]);
      restarted = true;
      continue;
    }
    nbdkit_debug ("volume %s: flush: server %" PRIu32 ": %s%s%s", v->name,
                  f.items[i].server->id, strerror (-reqs[i].err),
                  reqs[i].errmsg[0] ? ": " : "", reqs[i].errmsg);
    if (reqs[i].err == -SS_EOUTOFTIME) {
      /* Not the server's fault: the flush fails, the segments stay
       * dirty for the next one.
       */
      if (err == 0) {
        nbdkit_error ("volume %s: flush: out of time waiting for server "
                      "%" PRIu32 " (timeout=%d s)",
                      v->name, f.items[i].server->id,
                      v->cfg->timeout_ms / 1000);
        err = -ETIMEDOUT;
      }
      put_back (&f.items[i]);
      continue;
    }
    if (flush_failed (v, &f.items[i], f.items, reqs, f.n) < 0) {
      if (err == 0) {
        nbdkit_error ("volume %s: flush: server %" PRIu32 ": %s%s%s", v->name,
                      f.items[i].server->id, strerror (-reqs[i].err),
                      reqs[i].errmsg[0] ? ": " : "", reqs[i].errmsg);
        err = -EIO;
      }
      /* Keep the segments dirty so that the next flush retries. */
      put_back (&f.items[i]);
    }
  }
  if (err == 0 && restarted)
    err = -SS_ERESTARTED;

out:
  /* A set taken but not flushed goes back. */
  for (i = 0; i < f.n; i++) {
    if (reqs == NULL)
      put_back (&f.items[i]);
    untake (f.items[i].server);
    free (f.items[i].dirty);
  }
  free (f.items);
  return err;
}

/* Flush (NBD_CMD_FLUSH, and at close): make every write and trim
 * acknowledged so far durable on every replica.  One flush runs at a
 * time, so a flush never returns before the writes that an earlier,
 * still running, flush took from the dirty sets are durable.
 *
 * If ROTATE, something was written since the last rotation, and at
 * least epoch-interval seconds have passed since it, the writer's epoch
 * is rotated first: once every write of the old epoch has completed and
 * the flush has succeeded, the old epoch is marked clean at the MDS.  A
 * failed flush leaves it dirty.  After the lease is lost every flush
 * fails.  Returns 0 or -errno (reported).
 */
int
flush_volume (struct volume *v, bool rotate)
{
  uint64_t old = 0, interval;
  char why[PROTO_ERRMSG_MAX + 1];
  unsigned tries;
  int r, err;

  if (request_lock (&v->flush_lock) < 0) {
    nbdkit_error ("volume %s: flush: out of time waiting for the flush "
                  "before it (timeout=%d s)",
                  v->name, v->cfg->timeout_ms / 1000);
    return -ETIMEDOUT;
  }
  CLEANUP_UNLOCK pthread_mutex_t *locked __attribute__ ((unused)) =
      &v->flush_lock;

  if (v->rw && atomic_load (&v->lease_lost)) {
    nbdkit_debug ("volume %s: writer lease lost: failing the flush", v->name);
    return -EIO;
  }

  interval = (uint64_t)v->cfg->epoch_interval * 1000000000;
  if (rotate && v->rw && !atomic_load (&v->unclean) &&
      atomic_load (&v->epoch_written) &&
      monotonic_ns () - v->last_rotation_ns >= interval) {
    v->last_rotation_ns = monotonic_ns ();
    atomic_store (&v->epoch_written, false);
    r = epoch_rotate (v, &old, why, sizeof why);
    if (r == -ESTALE) {
      lease_mark_lost (v, why);
      return -EIO;
    }
    if (r < 0) {
      old = 0;
      atomic_store (&v->epoch_written, true);
    }
    else
      /* The old epoch's writes must be in the dirty sets taken below. */
      epoch_drain (v, old);
  }

  /* A restarted server's writes must be reported failed before a
   * flush succeeds (and a flush may find out about a restart).
   */
  for (tries = 0;; tries++) {
    err = flush_settle_lost (v);
    if (err == 0)
      err = flush_dirty (v);
    if (err != -SS_ERESTARTED)
      break;
    if (tries == MAX_RESTARTS) {
      nbdkit_error ("volume %s: flush: storage servers keep restarting",
                    v->name);
      err = -EIO;
      break;
    }
  }
  if (err == 0)
    err = flush_settle_lost (v);

  if (old) {
    if (err == 0 && !atomic_load (&v->unclean) &&
        !atomic_load (&v->lease_lost) && epoch_clean (v, old) == 0)
      return 0;
    /* Try again at the next rotation: EPOCH_CLEAN covers older epochs. */
    atomic_store (&v->epoch_written, true);
    nbdkit_debug ("volume %s: epoch %" PRIu64 " stays dirty", v->name, old);
  }
  return err;
}

/* nbdkit-tessera-plugin: flush.
 *
 * Every non-FUA write or trim records its segment in the dirty set of
 * each server that acknowledged it (flush_mark_dirty); a flush takes
 * those sets and sends SEG_FLUSH to each server named, waiting for all.
 * A server whose flush fails may have lost writes: its replicas of the
 * dirty segments are reported to the MDS as failed where another ok
 * replica was flushed, else the flush fails and the segments stay dirty.
 * At most every epoch-interval seconds a flush also rotates the
 * writer's epoch (see epoch.c).
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

/* Dirty sets are compacted (sorted, duplicates dropped) past this. */
#define DIRTY_COMPACT 1024

/* qsort comparison of two uint64_t. */
static int
compare_u64 (const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

  return x < y ? -1 : x > y;
}

/* Record that segment INDEX on server S has data that may not be
 * durable yet: the next flush sends SEG_FLUSH to S.  Returns 0 or
 * -ENOMEM.
 */
int
flush_mark_dirty (struct ss_server *s, uint64_t index)
{
  size_t i, j;
  uint64_t *p;

  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&s->lock);
  if (s->ndirty > 0 && s->dirty[s->ndirty - 1] == index)
    return 0;
  if (s->ndirty == s->dirty_cap) {
    /* Full: drop duplicates first, grow only if that frees too little. */
    if (s->ndirty >= DIRTY_COMPACT) {
      qsort (s->dirty, s->ndirty, sizeof s->dirty[0], compare_u64);
      for (i = 1, j = 1; i < s->ndirty; i++)
        if (s->dirty[i] != s->dirty[j - 1])
          s->dirty[j++] = s->dirty[i];
      s->ndirty = j;
    }
    if (s->dirty_cap == 0 || s->ndirty * 2 > s->dirty_cap) {
      size_t cap = s->dirty_cap ? s->dirty_cap * 2 : 64;

      p = realloc (s->dirty, cap * sizeof *p);
      if (p == NULL)
        return -ENOMEM;
      s->dirty = p;
      s->dirty_cap = cap;
    }
  }
  s->dirty[s->ndirty++] = index;
  return 0;
}

/* One server's dirty set, taken by a flush. */
struct flush_item {
  struct ss_server *server;
  uint64_t *dirty;
  size_t n;
};

struct flush_set {
  struct flush_item *items;
  size_t n, cap;
  int err;
};

/* Take server S's dirty set into the flush set OPAQUE
 * (volume_for_each_server callback).
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
  f->items[f->n].server = s;
  f->items[f->n].dirty = s->dirty;
  f->items[f->n].n = s->ndirty;
  f->n++;
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
  qsort (it->dirty, it->n, sizeof it->dirty[0], compare_u64);
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

/* Make every write and trim acknowledged so far durable: SEG_FLUSH to
 * every server written since the last flush, in parallel.  Caller holds
 * v->flush_lock.  Returns 0 or -errno (reported).
 */
static int
flush_dirty (struct volume *v)
{
  struct flush_set f = { 0 };
  CLEANUP_FREE struct ss_request *reqs = NULL;
  struct ss_batch b;
  size_t i, k;
  int err = 0;

  volume_for_each_server (v, take_dirty, &f);
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
    if (reqs[i].err == 0)
      continue;
    nbdkit_debug ("volume %s: flush: server %" PRIu32 ": %s%s%s", v->name,
                  f.items[i].server->id, strerror (-reqs[i].err),
                  reqs[i].errmsg[0] ? ": " : "", reqs[i].errmsg);
    if (flush_failed (v, &f.items[i], f.items, reqs, f.n) < 0) {
      if (err == 0) {
        nbdkit_error ("volume %s: flush: server %" PRIu32 ": %s%s%s", v->name,
                      f.items[i].server->id, strerror (-reqs[i].err),
                      reqs[i].errmsg[0] ? ": " : "", reqs[i].errmsg);
        err = -EIO;
      }
      /* Keep the segments dirty so that the next flush retries. */
      for (k = 0; k < f.items[i].n; k++)
        flush_mark_dirty (f.items[i].server, f.items[i].dirty[k]);
    }
  }

out:
  /* A set taken but not flushed goes back. */
  for (i = 0; i < f.n; i++) {
    if (reqs == NULL)
      for (k = 0; k < f.items[i].n; k++)
        flush_mark_dirty (f.items[i].server, f.items[i].dirty[k]);
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
    r = epoch_rotate (v, &old);
    if (r == -ESTALE)
      return -EIO;
    if (r < 0) {
      old = 0;
      atomic_store (&v->epoch_written, true);
    }
    else
      /* The old epoch's writes must be in the dirty sets taken below. */
      epoch_drain (v, old);
  }

  err = flush_dirty (v);

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

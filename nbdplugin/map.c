/* nbdkit-tessera-plugin: the map cache.
 *
 * The map (segment index -> segment id and replicas) is fetched lazily
 * from the MDS, one chunk of PROTO_MAP_MAX segments per MAP_GET, and
 * cached for the life of the volume.  Readers find entries through
 * atomic pointers without taking a lock; every change (allocation, a
 * replica marked stale, a refresh) publishes a new immutable entry and
 * keeps the old one on a retired list until the volume is freed, so an
 * entry a reader holds never goes away under it.
 *
 * No lock is held across an MDS request (a slow or failing MDS must not
 * queue every writer behind one request): a request that needs what one
 * in flight will bring (the same chunk, an allocation covering its
 * segments, the same failed replica) waits for that one and shares its
 * result, for at most the timeout.  Two MAP_ALLOCs of overlapping
 * ranges may cross; the MDS allocates each hole once and answers both
 * with the same entries.
 */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "buf.h"
#include "cleanup.h"
#include "deadline.h"
#include "protocol.h"

#include "internal.h"

/* Publish map entry E, from the MAP request of map ticket TICKET, in
 * chunk CH, retiring the entry it replaces.  An entry of an older
 * generation than the cached one is ignored (a reply that crossed a
 * newer one), and so is one asked for before the failure report that
 * marked a replica stale in the cached entry was answered: whatever
 * its generation, it may predate the report and list that replica ok,
 * and writes acknowledged since went past it (map_entry_store_action).
 * MARKED: E is such a mark (mark_stale_locked), published as it is.
 * Caller holds v->map_lock, or owns CH (not published yet).  Returns 0
 * or -ENOMEM.
 */
static int
store_entry (struct volume *v, struct map_chunk *ch,
             const struct proto_map_entry *e, uint64_t ticket, bool marked)
{
  _Atomic (struct seg *) *slot = &ch->e[e->index % PROTO_MAP_MAX];
  struct seg *old = atomic_load_explicit (slot, memory_order_relaxed);
  struct seg *s;

  switch (map_entry_store_action (old, e, ticket, marked)) {
  case MAP_STORE_IGNORE:
    return 0;
  case MAP_STORE_TICKET:
    /* Only map_lock holders read the ticket. */
    old->ticket = ticket;
    return 0;
  case MAP_STORE_REPLACE:
    break;
  }
  s = calloc (1, sizeof *s);
  if (s == NULL)
    return -ENOMEM;
  map_entry_fill (s, e, ticket, marked);
  atomic_store_explicit (slot, s, memory_order_release);
  if (old) {
    if (tessera_debug_map)
      nbdkit_debug ("map: index %" PRIu64 ": segment %" PRIu64
                    " changed, gen %" PRIu64,
                    e->index, e->segment, e->gen);
    old->retired_next = v->retired;
    v->retired = old;
  }
  return 0;
}

/* Encode the map request OPAQUE with EPOCH (lease_writer_call). */
static void
encode_map_request (uint64_t epoch, void *opaque, struct proto_wbuf *wb)
{
  struct proto_map_request *mr = opaque;

  mr->epoch = epoch;
  proto_encode_map_request (mr, wb);
}

/* Send MAP_GET or MAP_ALLOC (OPCODE) for [START, START+COUNT) and decode
 * the reply into MAP (free with proto_map_free), and set *TICKET to the
 * map ticket taken before sending it.  Checks that every entry lies in
 * the range.  Returns 0 or -errno; if REPORT, failures are reported
 * with nbdkit_error.
 */
static int
map_fetch (struct volume *v, uint8_t opcode, uint64_t start, uint32_t count,
           bool report, struct proto_map *map, uint64_t *ticket)
{
  struct proto_map_request mr = {
    .volume = v->id,
    .start = start,
    .count = count,
  };
  struct proto_wbuf wb = { 0 };
  CLEANUP_FREE void *reply = NULL;
  char errmsg[PROTO_ERRMSG_MAX + 1];
  uint32_t len;
  int r;

  memset (map, 0, sizeof *map);
  *ticket = atomic_fetch_add (&v->map_seq, 1) + 1;
  if (opcode == PROTO_OP_MAP_ALLOC)
    /* Needs the writer's epoch. */
    r = lease_writer_call (v, opcode, encode_map_request, &mr, &reply, &len,
                           errmsg, sizeof errmsg);
  else {
    proto_encode_map_request (&mr, &wb);
    r = mds_session_call (v, opcode, &wb, &reply, &len, errmsg, sizeof errmsg);
    proto_wbuf_free (&wb);
  }
  if (r < 0) {
    if (report && r != -ESTALE)
      nbdkit_error ("volume %s: %s %" PRIu64 "+%" PRIu32 ": %s", v->name,
                    proto_opcode_name (opcode), start, count,
                    errmsg[0] ? errmsg : strerror (-r));
    return r;
  }
  r = map_entry_decode (reply, len, start, count, v->nsegments, map);
  if (r < 0) {
    if (report)
      nbdkit_error ("volume %s: %s %" PRIu64 "+%" PRIu32 ": malformed reply",
                    v->name, proto_opcode_name (opcode), start, count);
    return -EIO;
  }
  if (tessera_debug_map)
    nbdkit_debug ("map: %s %" PRIu64 "+%" PRIu32 ": %" PRIu32 " entries",
                  proto_opcode_name (opcode), start, count, map->n);
  return 0;
}

/* An MDS request about the map in flight.  Under v->map_lock; freed by
 * the last of its sender and its waiters.
 */
struct map_op {
  struct map_op *next; /* in v->map_ops while not done */
  uint8_t opcode;      /* MAP_GET (a chunk), MAP_ALLOC, REPLICA_FAILED */
  uint64_t a, b;       /* MAP_GET: chunk, 1; MAP_ALLOC: start, count;
                        * REPLICA_FAILED: segment, server */
  bool done;
  int err; /* once done: 0 or -errno */
  unsigned refs;
};

/* The time by which a map operation starting now must be over (the
 * timeout, or the end of the running request).
 */
static uint64_t
map_deadline (struct volume *v)
{
  return request_clamp (monotonic_ns () +
                        (uint64_t)v->cfg->timeout_ms * 1000000);
}

/* Find the operation in flight that answers OPCODE for (A, B): for
 * MAP_ALLOC one whose range covers [A, A+B), else the same one.  Caller
 * holds v->map_lock.  Returns NULL if there is none.
 */
static struct map_op *
op_find (struct volume *v, uint8_t opcode, uint64_t a, uint64_t b)
{
  struct map_op *op;

  for (op = v->map_ops; op != NULL; op = op->next) {
    if (op->opcode != opcode)
      continue;
    if (opcode == PROTO_OP_MAP_ALLOC ? op->a <= a && a + b <= op->a + op->b
                                     : op->a == a && op->b == b)
      return op;
  }
  return NULL;
}

/* Register operation OPCODE (A, B) as in flight.  Caller holds
 * v->map_lock, sends the request without it, then calls op_finish.
 * Returns the operation, or NULL (reported) if out of memory.
 */
static struct map_op *
op_start (struct volume *v, uint8_t opcode, uint64_t a, uint64_t b)
{
  struct map_op *op = calloc (1, sizeof *op);

  if (op == NULL) {
    nbdkit_error ("calloc: %m");
    return NULL;
  }
  op->opcode = opcode;
  op->a = a;
  op->b = b;
  op->refs = 1;
  op->next = v->map_ops;
  v->map_ops = op;
  return op;
}

/* Drop one reference to OP, freeing it with the last.  Caller holds
 * v->map_lock.
 */
static void
op_unref (struct map_op *op)
{
  if (--op->refs == 0)
    free (op);
}

/* Operation OP, started by the caller, ended with ERR: wake its waiters.
 * Caller holds v->map_lock.
 */
static void
op_finish (struct volume *v, struct map_op *op, int err)
{
  struct map_op **pp;

  for (pp = &v->map_ops; *pp != op; pp = &(*pp)->next)
    assert (*pp != NULL);
  *pp = op->next;
  op->next = NULL;
  op->done = true;
  op->err = err;
  pthread_cond_broadcast (&v->map_cond);
  op_unref (op);
}

/* Wait until operation OP, sent by another request, is over, but not
 * past DEADLINE.  Caller holds v->map_lock (released while waiting).
 * Returns OP's result, or -ETIMEDOUT.
 */
static int
op_wait (struct volume *v, struct map_op *op, uint64_t deadline)
{
  struct timespec ts = timespec_from_ns (deadline);
  int e = 0, r;

  op->refs++;
  while (!op->done && e != ETIMEDOUT)
    e = pthread_cond_timedwait (&v->map_cond, &v->map_lock, &ts);
  r = op->done ? op->err : -ETIMEDOUT;
  op_unref (op);
  return r;
}

/* Report that a request waited in vain for operation OPCODE of another
 * request, which ended with ERR; return the error to pass on.
 */
static int
op_failed (struct volume *v, uint8_t opcode, int err)
{
  if (err == -ETIMEDOUT) {
    nbdkit_error ("volume %s: %s: timed out waiting for the MDS", v->name,
                  proto_opcode_name (opcode));
    return -EIO;
  }
  if (err != -ESTALE)
    nbdkit_error ("volume %s: %s: %s", v->name, proto_opcode_name (opcode),
                  strerror (-err));
  return err;
}

/* Free chunk CH and the entries in it. */
static void
chunk_free (struct map_chunk *ch)
{
  size_t i;

  if (ch == NULL)
    return;
  for (i = 0; i < PROTO_MAP_MAX; i++)
    free (atomic_load (&ch->e[i]));
  free (ch);
}

/* Return in *OUT chunk CI of the map cache, fetching it if needed, or
 * waiting (until DEADLINE) for the fetch in flight.  Caller does not
 * hold v->map_lock.  Returns 0 or -errno (reported if REPORT).
 */
static int
chunk_load (struct volume *v, uint64_t ci, struct map_chunk **out,
            uint64_t deadline, bool report)
{
  struct map_chunk *ch = NULL;
  struct map_op *op;
  struct proto_map map;
  uint64_t start = ci * PROTO_MAP_MAX, ticket;
  uint32_t count, i;
  int r;

  assert (ci < v->nchunks);
  *out = atomic_load_explicit (&v->chunks[ci], memory_order_acquire);
  if (*out)
    return 0;

  pthread_mutex_lock (&v->map_lock);
  while ((*out = atomic_load (&v->chunks[ci])) == NULL &&
         (op = op_find (v, PROTO_OP_MAP_GET, ci, 1)) != NULL) {
    r = op_wait (v, op, deadline);
    if (r < 0) {
      pthread_mutex_unlock (&v->map_lock);
      return op_failed (v, PROTO_OP_MAP_GET, r);
    }
  }
  if (*out) {
    pthread_mutex_unlock (&v->map_lock);
    return 0;
  }
  op = op_start (v, PROTO_OP_MAP_GET, ci, 1);
  pthread_mutex_unlock (&v->map_lock);
  if (op == NULL)
    return -ENOMEM;

  count = v->nsegments - start < PROTO_MAP_MAX ? v->nsegments - start
                                               : PROTO_MAP_MAX;
  r = map_fetch (v, PROTO_OP_MAP_GET, start, count, report, &map, &ticket);
  if (r == 0) {
    ch = calloc (1, sizeof *ch);
    if (ch == NULL)
      r = -ENOMEM;
    /* A fresh chunk: store_entry retires nothing. */
    for (i = 0; r == 0 && i < map.n; i++)
      r = store_entry (v, ch, &map.entries[i], ticket, false);
    if (r < 0) {
      nbdkit_error ("calloc: %s", strerror (-r));
      chunk_free (ch);
    }
    proto_map_free (&map);
  }

  pthread_mutex_lock (&v->map_lock);
  /* Nobody else fetches or fills a chunk while its MAP_GET is in
   * flight (apply_map skips chunks not loaded).
   */
  if (r == 0) {
    assert (atomic_load (&v->chunks[ci]) == NULL);
    atomic_store_explicit (&v->chunks[ci], ch, memory_order_release);
    *out = ch;
  }
  op_finish (v, op, r);
  pthread_mutex_unlock (&v->map_lock);
  return r;
}

/* Publish every entry of MAP, from the MAP request of map ticket
 * TICKET, that falls in a loaded chunk.  Caller holds
 * v->map_lock.  Entries are only added or replaced, never removed: a
 * segment once mapped stays mapped.  Entries of chunks not loaded are
 * dropped: loading the chunk fetches them afresh.  Returns 0 or -ENOMEM
 * (reported).
 */
static int
apply_map (struct volume *v, const struct proto_map *map, uint64_t ticket)
{
  struct map_chunk *ch;
  uint32_t i;
  int r;

  for (i = 0; i < map->n; i++) {
    ch = atomic_load (&v->chunks[map->entries[i].index / PROTO_MAP_MAX]);
    if (ch == NULL)
      continue;
    r = store_entry (v, ch, &map->entries[i], ticket, false);
    if (r < 0) {
      nbdkit_error ("calloc: %s", strerror (-r));
      return r;
    }
  }
  return 0;
}

/* Look up segment INDEX (< nsegments).  Sets *OUT to its entry, or NULL
 * for a hole.  The entry stays valid until volume_free, but may be
 * replaced by a newer one.  Takes no lock once the chunk is cached.
 * Returns 0 or -errno (reported).
 */
int
map_lookup (struct volume *v, uint64_t index, const struct seg **out)
{
  uint64_t ci = index / PROTO_MAP_MAX;
  struct map_chunk *ch;
  int r;

  assert (index < v->nsegments);
  ch = atomic_load_explicit (&v->chunks[ci], memory_order_acquire);
  if (ch == NULL) {
    r = chunk_load (v, ci, &ch, map_deadline (v), true);
    if (r < 0)
      return r;
  }
  *out = atomic_load_explicit (&ch->e[index % PROTO_MAP_MAX],
                               memory_order_acquire);
  return 0;
}

/* Whether any of segments [START, START+NEEDED) is a hole.  Their chunks
 * are loaded.
 */
static bool
any_hole (struct volume *v, uint64_t start, uint64_t needed)
{
  struct map_chunk *ch;
  uint64_t i;

  for (i = start; i < start + needed; i++) {
    ch = atomic_load_explicit (&v->chunks[i / PROTO_MAP_MAX],
                               memory_order_acquire);
    if (atomic_load (&ch->e[i % PROTO_MAP_MAX]) == NULL)
      return true;
  }
  return false;
}

/* Make sure segments [START, START+NEEDED) are allocated: if any is
 * still a hole, MAP_ALLOC [START, START+WANT) (WANT >= NEEDED adds
 * read-ahead; clipped to the volume and PROTO_MAP_MAX), or wait for an
 * allocation in flight that covers them.  Fails within about the
 * timeout however slow the MDS is.  Returns 0 or -errno (reported).
 */
int
map_alloc (struct volume *v, uint64_t start, uint64_t needed, uint64_t want)
{
  uint64_t deadline = map_deadline (v);
  struct map_chunk *ch;
  struct map_op *op;
  struct proto_map map;
  uint64_t ci, ticket;
  int r;

  assert (needed > 0 && needed <= PROTO_MAP_MAX && start < v->nsegments);
  if (!v->rw) {
    nbdkit_error ("volume %s: opened read-only", v->name);
    return -EROFS;
  }
  if (want < needed)
    want = needed;
  if (want > v->nsegments - start)
    want = v->nsegments - start;
  if (want > PROTO_MAP_MAX)
    want = PROTO_MAP_MAX;
  if (needed > want)
    needed = want;
  for (ci = start / PROTO_MAP_MAX; ci <= (start + needed - 1) / PROTO_MAP_MAX;
       ci++) {
    r = chunk_load (v, ci, &ch, deadline, true);
    if (r < 0)
      return r;
  }

  pthread_mutex_lock (&v->map_lock);
  for (;;) {
    if (!any_hole (v, start, needed)) {
      pthread_mutex_unlock (&v->map_lock);
      return 0;
    }
    op = op_find (v, PROTO_OP_MAP_ALLOC, start, needed);
    if (op == NULL)
      break;
    r = op_wait (v, op, deadline);
    if (r < 0) {
      pthread_mutex_unlock (&v->map_lock);
      return op_failed (v, PROTO_OP_MAP_ALLOC, r);
    }
  }
  op = op_start (v, PROTO_OP_MAP_ALLOC, start, want);
  pthread_mutex_unlock (&v->map_lock);
  if (op == NULL)
    return -ENOMEM;

  r = map_fetch (v, PROTO_OP_MAP_ALLOC, start, want, true, &map, &ticket);
  pthread_mutex_lock (&v->map_lock);
  if (r == 0) {
    r = apply_map (v, &map, ticket);
    proto_map_free (&map);
  }
  if (r == 0 && any_hole (v, start, needed)) {
    nbdkit_error ("volume %s: allocate segments %" PRIu64 "+%" PRIu64
                  ": the MDS left some unallocated",
                  v->name, start, needed);
    r = -EIO;
  }
  op_finish (v, op, r);
  pthread_mutex_unlock (&v->map_lock);
  return r;
}

/* Re-read map entries [START, START+COUNT) from the MDS and publish
 * those of loaded chunks.  Caller does not hold v->map_lock.  Returns 0,
 * or -errno (reported if REPORT).
 */
static int
reload (struct volume *v, uint64_t start, uint32_t count, bool report)
{
  struct proto_map map;
  uint64_t ticket;
  int r;

  r = map_fetch (v, PROTO_OP_MAP_GET, start, count, report, &map, &ticket);
  if (r < 0)
    return r;
  pthread_mutex_lock (&v->map_lock);
  r = apply_map (v, &map, ticket);
  pthread_mutex_unlock (&v->map_lock);
  proto_map_free (&map);
  return r;
}

/* Ask the MDS again about segments [START, START+COUNT) (COUNT at most
 * PROTO_MAP_MAX), whose chunks are loaded: a read-only open's check of
 * the holes it has cached, which a writer may have allocated since.
 * Returns 0 or -errno (reported).
 */
int
map_recheck (struct volume *v, uint64_t start, uint64_t count)
{
  assert (count > 0 && count <= PROTO_MAP_MAX && start < v->nsegments &&
          count <= v->nsegments - start);
  return reload (v, start, count, true);
}

/* Re-read map entry INDEX (< nsegments) from the MDS, after a storage
 * server said that its replica set changed (ESTALEMAP), and set *OUT to
 * the new entry (NULL: a hole).  Returns 0 or -errno (reported).
 */
int
map_reload (struct volume *v, uint64_t index, const struct seg **out)
{
  struct map_chunk *ch;
  int r;

  assert (index < v->nsegments);
  /* Load the chunk first, or apply_map would drop the entry. */
  r = chunk_load (v, index / PROTO_MAP_MAX, &ch, map_deadline (v), true);
  if (r == 0)
    r = reload (v, index, 1, true);
  if (r < 0)
    return r;
  return map_lookup (v, index, out);
}

/* Encode the REPLICA_FAILED request OPAQUE with EPOCH
 * (lease_writer_call).
 */
static void
encode_replica_failed (uint64_t epoch, void *opaque, struct proto_wbuf *wb)
{
  struct proto_replica_failed *rf = opaque;

  rf->epoch = epoch;
  proto_encode_replica_failed (rf, wb);
}

/* Whether entry S has a writable (ok or syncing) replica on SERVER. */
static bool
writable_on (const struct seg *s, uint32_t server)
{
  unsigned i;

  for (i = 0; s && i < s->nreplicas; i++)
    if (s->replicas[i].server == server)
      return s->replicas[i].state != PROTO_REPLICA_STALE;
  return false;
}

/* Whether the cache, chunk CH, no longer lists the replica of SEG on
 * SERVER as writable.  Caller holds v->map_lock.
 */
static bool
accounted_for (struct map_chunk *ch, const struct seg *seg, uint32_t server)
{
  const struct seg *cur = atomic_load (&ch->e[seg->index % PROTO_MAP_MAX]);

  return cur && cur->id == seg->id && !writable_on (cur, server);
}

/* Mark the replica of SEG on SERVER stale in the cached entry (chunk CH)
 * until the entry can be read again: the MDS answered its failure report
 * (map ticket TICKET).  Its old generation makes the next write refused
 * (ESTALEMAP) if the replica set moved on, which re-reads it.  An entry
 * asked for after that answer is the MDS's word, newer than the report
 * (the replica may even be ok again after a resync), and is left alone:
 * marking it would stop writes to an ok replica behind the MDS's back.
 * Caller holds v->map_lock.
 */
static void
mark_stale_locked (struct volume *v, struct map_chunk *ch,
                   const struct seg *seg, uint32_t server, uint64_t ticket)
{
  const struct seg *cur = atomic_load (&ch->e[seg->index % PROTO_MAP_MAX]);
  struct proto_map_entry e;
  unsigned i;

  if (cur == NULL || cur->id != seg->id)
    return;
  if (!cur->marked && cur->ticket > ticket)
    return;
  if (cur->marked && cur->ticket > ticket)
    ticket = cur->ticket;
  memset (&e, 0, sizeof e);
  e.index = cur->index;
  e.segment = cur->id;
  e.gen = cur->gen;
  e.nreplicas = cur->nreplicas;
  memcpy (e.replicas, cur->replicas, sizeof e.replicas);
  for (i = 0; i < e.nreplicas; i++)
    if (e.replicas[i].server == server)
      e.replicas[i].state = PROTO_REPLICA_STALE;
  store_entry (v, ch, &e, ticket, true);
}

/* Report to the MDS that the replica of SEG on SERVER failed, and update
 * the cache once the MDS has marked it stale (re-reading the entry: its
 * generation changed).  A replica that the cache no longer lists as
 * writable has been reported by another request, or replaced, and is
 * not reported again; a report in flight is waited for.  Returns 0 when
 * the replica is accounted for, or -errno (reported).
 */
int
map_replica_failed (struct volume *v, const struct seg *seg, uint32_t server)
{
  struct proto_replica_failed rf = {
    .volume = v->id,
    .segment = seg->id,
    .server = server,
  };
  uint64_t deadline = map_deadline (v), ticket;
  CLEANUP_FREE void *reply = NULL;
  char errmsg[PROTO_ERRMSG_MAX + 1];
  const struct seg *again = NULL;
  struct map_chunk *ch;
  struct map_op *op;
  uint32_t len;
  int r;

  r = chunk_load (v, seg->index / PROTO_MAP_MAX, &ch, deadline, true);
  if (r < 0)
    return r;
  pthread_mutex_lock (&v->map_lock);
  if (accounted_for (ch, seg, server)) {
    pthread_mutex_unlock (&v->map_lock);
    return 0;
  }
  op = op_find (v, PROTO_OP_REPLICA_FAILED, seg->id, server);
  if (op) {
    r = op_wait (v, op, deadline);
    pthread_mutex_unlock (&v->map_lock);
    return r < 0 ? op_failed (v, PROTO_OP_REPLICA_FAILED, r) : 0;
  }
  op = op_start (v, PROTO_OP_REPLICA_FAILED, seg->id, server);
  pthread_mutex_unlock (&v->map_lock);
  if (op == NULL)
    return -ENOMEM;

  nbdkit_debug ("volume %s: segment %" PRIu64 ": replica on server %" PRIu32
                " failed, reporting it",
                v->name, seg->id, server);
  r = lease_writer_call (v, PROTO_OP_REPLICA_FAILED, encode_replica_failed, &rf,
                         &reply, &len, errmsg, sizeof errmsg);
  if (r < 0 && r != -ESTALE) {
    /* The replica set may have changed meanwhile (the replica was
     * replaced, or another request reported it): then it is accounted
     * for.
     */
    if (reload (v, seg->index, 1, false) == 0) {
      pthread_mutex_lock (&v->map_lock);
      if (accounted_for (ch, seg, server))
        r = 0;
      pthread_mutex_unlock (&v->map_lock);
    }
    if (r < 0)
      nbdkit_error ("volume %s: segment %" PRIu64 ": report failed replica "
                    "on server %" PRIu32 ": %s",
                    v->name, seg->id, server,
                    errmsg[0] ? errmsg : strerror (-r));
  }
  else if (r == 0) {
    ticket = atomic_fetch_add (&v->map_seq, 1) + 1;
    if (reload (v, seg->index, 1, false) < 0) {
      /* The entry has a new generation, and the MDS may have added a
       * replacement replica; until it can be read again, at least stop
       * writing there.  But a newer entry than SEG, asked for before
       * the answer, may come from before the report or from after it
       * (the replica resynced and ok again): only the MDS can tell, so
       * report again from that entry rather than mark it.
       */
      pthread_mutex_lock (&v->map_lock);
      again = atomic_load (&ch->e[seg->index % PROTO_MAP_MAX]);
      if (again == NULL || again->id != seg->id || again->gen <= seg->gen ||
          again->marked || again->ticket > ticket ||
          !writable_on (again, server)) {
        again = NULL;
        mark_stale_locked (v, ch, seg, server, ticket);
      }
      pthread_mutex_unlock (&v->map_lock);
    }
  }
  /* r == -ESTALE: reported as the lease lost. */

  pthread_mutex_lock (&v->map_lock);
  op_finish (v, op, r);
  pthread_mutex_unlock (&v->map_lock);
  if (again)
    return map_replica_failed (v, again, server);
  return r;
}

/* Re-read every cached chunk of the map (lease thread), so that
 * replicas added by repair (state syncing) start receiving writes.
 */
void
map_refresh (struct volume *v)
{
  struct proto_map map;
  uint64_t ci, start, ticket;
  uint32_t count;

  for (ci = 0; ci < v->nchunks; ci++) {
    if (atomic_load (&v->chunks[ci]) == NULL)
      continue;
    start = ci * PROTO_MAP_MAX;
    count = v->nsegments - start < PROTO_MAP_MAX ? v->nsegments - start
                                                 : PROTO_MAP_MAX;
    if (map_fetch (v, PROTO_OP_MAP_GET, start, count, false, &map, &ticket) < 0)
      return;
    pthread_mutex_lock (&v->map_lock);
    apply_map (v, &map, ticket);
    pthread_mutex_unlock (&v->map_lock);
    proto_map_free (&map);
  }
}

/* Re-read every cached chunk of the map from the MDS (volume_take_lease,
 * once the writer lease is taken), so that no cached hole predates the
 * lease: a chunk fetched earlier may show a hole that the previous
 * writer has allocated since.  A fetch of a chunk in flight may have
 * been sent before the lease: wait for it, then re-read that chunk too.
 * Replies that cross are harmless: entries are only added or replaced
 * by newer ones, never removed (apply_map).  Returns 0 or -errno
 * (reported).
 */
int
map_revalidate (struct volume *v)
{
  uint64_t deadline = monotonic_ns () + (uint64_t)v->cfg->timeout_ms * 1000000;
  struct map_op *op;
  uint64_t ci, start;
  uint32_t count;
  bool loaded;
  int r;

  for (ci = 0; ci < v->nchunks; ci++) {
    pthread_mutex_lock (&v->map_lock);
    while ((op = op_find (v, PROTO_OP_MAP_GET, ci, 1)) != NULL) {
      r = op_wait (v, op, deadline);
      if (r == -ETIMEDOUT) {
        pthread_mutex_unlock (&v->map_lock);
        return op_failed (v, PROTO_OP_MAP_GET, r);
      }
    }
    /* Not loaded and no fetch in flight: a later one is sent now. */
    loaded = atomic_load (&v->chunks[ci]) != NULL;
    pthread_mutex_unlock (&v->map_lock);
    if (!loaded)
      continue;
    start = ci * PROTO_MAP_MAX;
    count = v->nsegments - start < PROTO_MAP_MAX ? v->nsegments - start
                                                 : PROTO_MAP_MAX;
    r = reload (v, start, count, true);
    if (r < 0)
      return r;
  }
  return 0;
}

/* Load the chunks of the map not cached yet, in order from where the
 * last call stopped, for about BUDGET_MS at most or until one fails
 * (the MDS away: the next call tries again).  So once it has run its
 * course, reads and writes of every allocated segment, even of regions
 * nobody touched since the open, need the MDS only to change the map.
 * Lease thread only (it alone moves v->prefetch_next).  Returns true
 * once every chunk is cached.
 */
bool
map_prefetch (struct volume *v, int budget_ms)
{
  uint64_t end = monotonic_ns () + (uint64_t)budget_ms * 1000000;
  struct map_chunk *ch;
  uint64_t ci;

  while ((ci = v->prefetch_next) < v->nchunks) {
    if (atomic_load (&v->chunks[ci]) == NULL &&
        chunk_load (v, ci, &ch, map_deadline (v), false) < 0)
      return false;
    v->prefetch_next = ci + 1;
    if (monotonic_ns () >= end)
      break;
  }
  if (v->prefetch_next >= v->nchunks && tessera_debug_map)
    nbdkit_debug ("map: all %" PRIu64 " chunks cached", v->nchunks);
  return v->prefetch_next >= v->nchunks;
}

/* Initialize the map cache's locks (volume_open; the chunks are
 * allocated once the volume's size is known).
 */
void
map_init (struct volume *v)
{
  pthread_condattr_t attr;

  pthread_mutex_init (&v->map_lock, NULL);
  pthread_condattr_init (&attr);
  pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
  pthread_cond_init (&v->map_cond, &attr);
  pthread_condattr_destroy (&attr);
  v->map_ops = NULL;
}

/* Free the map cache of V: every chunk with its entries, the retired
 * entries and its locks.  No request may be running.
 */
void
map_free (struct volume *v)
{
  struct seg *s, *next;
  uint64_t ci;

  assert (v->map_ops == NULL);
  if (v->chunks)
    for (ci = 0; ci < v->nchunks; ci++)
      chunk_free (atomic_load (&v->chunks[ci]));
  free (v->chunks);
  v->chunks = NULL;
  for (s = v->retired; s != NULL; s = next) {
    next = s->retired_next;
    free (s);
  }
  v->retired = NULL;
  pthread_cond_destroy (&v->map_cond);
  pthread_mutex_destroy (&v->map_lock);
}

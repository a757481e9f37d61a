/* nbdkit-tessera-plugin: the map cache.
 *
 * The map (segment index -> segment id and replicas) is fetched lazily
 * from the MDS, one chunk of PROTO_MAP_MAX segments per MAP_GET, and
 * cached for the life of the volume.  Readers find entries through
 * atomic pointers without taking a lock; every change (allocation, a
 * replica marked stale, a refresh) publishes a new immutable entry and
 * keeps the old one on a retired list until the volume is freed, so an
 * entry a reader holds never goes away under it.
 */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "buf.h"
#include "cleanup.h"
#include "protocol.h"

#include "internal.h"

/* Whether cached entry S says the same as map entry E. */
static bool
seg_equal (const struct seg *s, const struct proto_map_entry *e)
{
  unsigned i;

  if (s->id != e->segment || s->gen != e->gen || s->nreplicas != e->nreplicas)
    return false;
  for (i = 0; i < e->nreplicas; i++)
    if (s->replicas[i].server != e->replicas[i].server ||
        s->replicas[i].state != e->replicas[i].state)
      return false;
  return true;
}

/* Publish map entry E in chunk CH, retiring the entry it replaces.  An
 * entry of an older generation than the cached one is ignored (a reply
 * that crossed a newer one).  Caller holds v->map_lock.  Returns 0 or
 * -ENOMEM.
 */
static int
store_entry (struct volume *v, struct map_chunk *ch,
             const struct proto_map_entry *e)
{
  _Atomic (struct seg *) *slot = &ch->e[e->index % PROTO_MAP_MAX];
  struct seg *old = atomic_load_explicit (slot, memory_order_relaxed);
  struct seg *s;

  if (old &&
      (seg_equal (old, e) || (old->id == e->segment && e->gen < old->gen)))
    return 0;
  s = calloc (1, sizeof *s);
  if (s == NULL)
    return -ENOMEM;
  s->index = e->index;
  s->id = e->segment;
  s->gen = e->gen;
  s->nreplicas = e->nreplicas;
  memcpy (s->replicas, e->replicas, sizeof s->replicas);
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

/* Encode the map request OPAQUE with EPOCH (volume_writer_call). */
static void
encode_map_request (uint64_t epoch, void *opaque, struct proto_wbuf *wb)
{
  struct proto_map_request *mr = opaque;

  mr->epoch = epoch;
  proto_encode_map_request (mr, wb);
}

/* Send MAP_GET or MAP_ALLOC (OPCODE) for [START, START+COUNT) and decode
 * the reply into MAP (free with proto_map_free).  Checks that every
 * entry lies in the range.  Returns 0 or -errno; if REPORT, failures
 * are reported with nbdkit_error.
 */
static int
map_fetch (struct volume *v, uint8_t opcode, uint64_t start, uint32_t count,
           bool report, struct proto_map *map)
{
  struct proto_map_request mr = {
    .volume = v->id,
    .start = start,
    .count = count,
  };
  struct proto_wbuf wb = { 0 };
  CLEANUP_FREE void *reply = NULL;
  char errmsg[PROTO_ERRMSG_MAX + 1];
  uint32_t len, i;
  int r;

  memset (map, 0, sizeof *map);
  if (opcode == PROTO_OP_MAP_ALLOC)
    /* Needs the writer's epoch. */
    r = volume_writer_call (v, opcode, encode_map_request, &mr, &reply, &len,
                            errmsg, sizeof errmsg);
  else {
    proto_encode_map_request (&mr, &wb);
    r = volume_mds_call (v, opcode, &wb, &reply, &len, errmsg, sizeof errmsg);
    proto_wbuf_free (&wb);
  }
  if (r < 0) {
    if (report && r != -ESTALE)
      nbdkit_error ("volume %s: %s %" PRIu64 "+%" PRIu32 ": %s", v->name,
                    proto_opcode_name (opcode), start, count,
                    errmsg[0] ? errmsg : strerror (-r));
    return r;
  }
  r = proto_decode_map (reply, len, map);
  for (i = 0; r == 0 && i < map->n; i++)
    if (map->entries[i].index < start ||
        map->entries[i].index - start >= count ||
        map->entries[i].index >= v->nsegments)
      r = -EBADMSG;
  if (r < 0) {
    if (report)
      nbdkit_error ("volume %s: %s %" PRIu64 "+%" PRIu32 ": malformed reply",
                    v->name, proto_opcode_name (opcode), start, count);
    proto_map_free (map);
    return -EIO;
  }
  if (tessera_debug_map)
    nbdkit_debug ("map: %s %" PRIu64 "+%" PRIu32 ": %" PRIu32 " entries",
                  proto_opcode_name (opcode), start, count, map->n);
  return 0;
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

/* Return in *OUT chunk CI of the map cache, fetching it if needed.
 * Caller holds v->map_lock.  Returns 0 or -errno (reported).
 */
static int
chunk_load_locked (struct volume *v, uint64_t ci, struct map_chunk **out)
{
  struct map_chunk *ch;
  struct proto_map map;
  uint64_t start = ci * PROTO_MAP_MAX;
  uint32_t count, i;
  int r;

  assert (ci < v->nchunks);
  *out = atomic_load_explicit (&v->chunks[ci], memory_order_acquire);
  if (*out)
    return 0;
  count = v->nsegments - start < PROTO_MAP_MAX ? v->nsegments - start
                                               : PROTO_MAP_MAX;
  r = map_fetch (v, PROTO_OP_MAP_GET, start, count, true, &map);
  if (r < 0)
    return r;
  ch = calloc (1, sizeof *ch);
  if (ch == NULL) {
    nbdkit_error ("calloc: %m");
    proto_map_free (&map);
    return -ENOMEM;
  }
  for (i = 0; i < map.n; i++) {
    r = store_entry (v, ch, &map.entries[i]);
    if (r < 0) {
      nbdkit_error ("calloc: %s", strerror (-r));
      chunk_free (ch);
      proto_map_free (&map);
      return r;
    }
  }
  proto_map_free (&map);
  atomic_store_explicit (&v->chunks[ci], ch, memory_order_release);
  *out = ch;
  return 0;
}

/* Publish every entry of MAP.  Caller holds v->map_lock.  Entries are
 * only added or replaced, never removed: a segment once mapped stays
 * mapped.  Returns 0 or -errno (reported).
 */
static int
apply_map (struct volume *v, const struct proto_map *map)
{
  struct map_chunk *ch;
  uint32_t i;
  int r;

  for (i = 0; i < map->n; i++) {
    r = chunk_load_locked (v, map->entries[i].index / PROTO_MAP_MAX, &ch);
    if (r == 0)
      r = store_entry (v, ch, &map->entries[i]);
    if (r < 0) {
      if (r == -ENOMEM)
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

  assert (index < v->nsegments);
  ch = atomic_load_explicit (&v->chunks[ci], memory_order_acquire);
  if (ch == NULL) {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&v->map_lock);
    int r = chunk_load_locked (v, ci, &ch);

    if (r < 0)
      return r;
  }
  *out = atomic_load_explicit (&ch->e[index % PROTO_MAP_MAX],
                               memory_order_acquire);
  return 0;
}

/* Make sure segments [START, START+NEEDED) are allocated: if any is
 * still a hole, MAP_ALLOC [START, START+WANT) (WANT >= NEEDED adds
 * read-ahead; clipped to the volume and PROTO_MAP_MAX).  Serialized by
 * map_lock so that concurrent writers do not allocate twice.
 * Returns 0 or -errno (reported).
 */
int
map_alloc (struct volume *v, uint64_t start, uint64_t needed, uint64_t want)
{
  struct map_chunk *ch;
  struct proto_map map;
  bool hole = false;
  uint64_t i;
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

  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&v->map_lock);
  for (i = start; !hole && i < start + needed; i++) {
    r = chunk_load_locked (v, i / PROTO_MAP_MAX, &ch);
    if (r < 0)
      return r;
    hole = atomic_load (&ch->e[i % PROTO_MAP_MAX]) == NULL;
  }
  if (!hole)
    return 0;

  r = map_fetch (v, PROTO_OP_MAP_ALLOC, start, want, true, &map);
  if (r < 0)
    return r;
  r = apply_map (v, &map);
  proto_map_free (&map);
  if (r < 0)
    return r;
  for (i = start; i < start + needed; i++) {
    r = chunk_load_locked (v, i / PROTO_MAP_MAX, &ch);
    if (r < 0)
      return r;
    if (atomic_load (&ch->e[i % PROTO_MAP_MAX]) == NULL) {
      nbdkit_error ("volume %s: allocate segment %" PRIu64
                    ": the MDS left it unallocated",
                    v->name, i);
      return -EIO;
    }
  }
  return 0;
}

/* Re-read map entry INDEX from the MDS and publish it.  Caller holds
 * v->map_lock.  Returns 0, or -errno (reported if REPORT).
 */
static int
reload_locked (struct volume *v, uint64_t index, bool report)
{
  struct proto_map map;
  int r;

  r = map_fetch (v, PROTO_OP_MAP_GET, index, 1, report, &map);
  if (r < 0)
    return r;
  r = apply_map (v, &map);
  proto_map_free (&map);
  return r;
}

/* Re-read map entry INDEX (< nsegments) from the MDS, after a storage
 * server said that its replica set changed (ESTALEMAP), and set *OUT to
 * the new entry (NULL: a hole).  Returns 0 or -errno (reported).
 */
int
map_reload (struct volume *v, uint64_t index, const struct seg **out)
{
  int r;

  assert (index < v->nsegments);
  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&v->map_lock);
    r = reload_locked (v, index, true);
  }
  if (r < 0)
    return r;
  return map_lookup (v, index, out);
}

/* Encode the REPLICA_FAILED request OPAQUE with EPOCH
 * (volume_writer_call).
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

/* Report to the MDS that the replica of SEG on SERVER failed, and update
 * the cache once the MDS has marked it stale (re-reading the entry: its
 * generation changed).  A replica that the cache no longer lists as
 * writable has been reported by another request, or replaced, and is
 * not reported again.  Returns 0 when the replica is accounted for, or
 * -errno (reported).
 */
int
map_replica_failed (struct volume *v, const struct seg *seg, uint32_t server)
{
  struct proto_replica_failed rf = {
    .volume = v->id,
    .segment = seg->id,
    .server = server,
  };
  CLEANUP_FREE void *reply = NULL;
  char errmsg[PROTO_ERRMSG_MAX + 1];
  const struct seg *cur;
  struct map_chunk *ch;
  struct proto_map_entry e;
  uint32_t len;
  unsigned i;
  int r;

  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&v->map_lock);
  r = chunk_load_locked (v, seg->index / PROTO_MAP_MAX, &ch);
  if (r < 0)
    return r;
  cur = atomic_load (&ch->e[seg->index % PROTO_MAP_MAX]);
  if (cur && cur->id == seg->id && !writable_on (cur, server))
    return 0;

  nbdkit_debug ("volume %s: segment %" PRIu64 ": replica on server %" PRIu32
                " failed, reporting it",
                v->name, seg->id, server);
  r = volume_writer_call (v, PROTO_OP_REPLICA_FAILED, encode_replica_failed,
                          &rf, &reply, &len, errmsg, sizeof errmsg);
  if (r == -ESTALE)
    return r; /* reported as the lease lost */
  if (r < 0) {
    /* The replica set may have changed meanwhile (the replica was
     * replaced, or another request reported it): then it is accounted
     * for.
     */
    if (reload_locked (v, seg->index, false) == 0) {
      cur = atomic_load (&ch->e[seg->index % PROTO_MAP_MAX]);
      if (cur && cur->id == seg->id && !writable_on (cur, server))
        return 0;
    }
    nbdkit_error ("volume %s: segment %" PRIu64 ": report failed replica on "
                  "server %" PRIu32 ": %s",
                  v->name, seg->id, server, errmsg[0] ? errmsg : strerror (-r));
    return r;
  }

  /* Re-read the entry: it has a new generation, and the MDS may have
   * added a replacement replica.
   */
  if (reload_locked (v, seg->index, false) == 0)
    return 0;
  if (cur == NULL || cur->id != seg->id)
    return 0;
  /* Until the entry can be read again, at least stop writing there.  Its
   * old generation makes the next write refused (ESTALEMAP) if the
   * replica set moved on, which re-reads it.
   */
  memset (&e, 0, sizeof e);
  e.index = cur->index;
  e.segment = cur->id;
  e.gen = cur->gen;
  e.nreplicas = cur->nreplicas;
  memcpy (e.replicas, cur->replicas, sizeof e.replicas);
  for (i = 0; i < e.nreplicas; i++)
    if (e.replicas[i].server == server)
      e.replicas[i].state = PROTO_REPLICA_STALE;
  store_entry (v, ch, &e);
  return 0;
}

/* Re-read every cached chunk of the map (lease thread), so that
 * replicas added by repair (state syncing) start receiving writes.
 */
void
map_refresh (struct volume *v)
{
  struct proto_map map;
  uint64_t ci, start;
  uint32_t count;

  for (ci = 0; ci < v->nchunks; ci++) {
    if (atomic_load (&v->chunks[ci]) == NULL)
      continue;
    start = ci * PROTO_MAP_MAX;
    count = v->nsegments - start < PROTO_MAP_MAX ? v->nsegments - start
                                                 : PROTO_MAP_MAX;
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&v->map_lock);
    if (map_fetch (v, PROTO_OP_MAP_GET, start, count, false, &map) < 0)
      return;
    apply_map (v, &map);
    proto_map_free (&map);
  }
}

/* Free the map cache of V: every chunk with its entries, and the
 * retired entries.
 */
void
map_free (struct volume *v)
{
  struct seg *s, *next;
  uint64_t ci;

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
}

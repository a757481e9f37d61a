/* Tombstones: the record of the segments this server deleted.
 *
 * A segment this server has never had reads as zeros: the MDS allocates
 * segments before anyone writes them.  A segment it deleted is another
 * matter: it was deleted because its volume was deleted or because its
 * replica here was removed (drained, replaced), and a client whose map
 * is older than that removal must not read zeros here, nor re-create the
 * segment with a write.  So deleting a segment (delete.c, through
 * segments.c's ss_seg_delete) leaves a tombstone, and reads, writes and
 * trims of a tombstoned segment are refused with PROTO_ESTALEMAP
 * (re-read the map).  SEG_SET_GEN or SEG_PULL, which make this server a
 * replica of the segment again, clear it.
 *
 * Tombstones are recorded in the index (in the same transaction as the
 * delete) and kept in memory in a hash set; at most SS_GONE_MAX of them
 * are kept, the oldest forgotten first.  This file calls only the index
 * and the ring (ring.c): segments.c asks it, it asks nobody above.
 */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#include "internal.h"

#define SS_GONE_MAX (1u << 20)

/* Home slot of ID in a table of NSLOTS (a power of two). */
static size_t
home (uint64_t id, size_t nslots)
{
  id ^= id >> 33;
  id *= UINT64_C (0xc4ceb9fe1a85ec53);
  id ^= id >> 33;
  return id & (nslots - 1);
}

/* Insert ID (not 0) into SLOTS (NSLOTS, with room).  Returns false if it
 * was there already.
 */
static bool
slots_insert (uint64_t *slots, size_t nslots, uint64_t id)
{
  size_t i = home (id, nslots);

  while (slots[i] != 0) {
    if (slots[i] == id)
      return false;
    i = (i + 1) & (nslots - 1);
  }
  slots[i] = id;
  return true;
}

/* Make room for one more id (load at most 1/2).  Returns 0 or -ENOMEM. */
static int
set_grow (struct ss_gone_set *g)
{
  size_t n, i;
  uint64_t *slots;

  if ((g->count + 1) * 2 <= g->nslots)
    return 0;
  n = g->nslots ? g->nslots * 2 : 1024;
  slots = calloc (n, sizeof *slots);
  if (slots == NULL)
    return -ENOMEM;
  for (i = 0; i < g->nslots; i++)
    if (g->slots[i])
      slots_insert (slots, n, g->slots[i]);
  free (g->slots);
  g->slots = slots;
  g->nslots = n;
  return 0;
}

/* True if segment ID has a tombstone.  Ring thread. */
bool
ss_gone_has (const struct ss_loop *loop, uint64_t id)
{
  const struct ss_gone_set *g = &loop->gone;
  size_t i;

  if (id == 0)
    return g->has_zero;
  if (g->nslots == 0)
    return false;
  for (i = home (id, g->nslots); g->slots[i] != 0;
       i = (i + 1) & (g->nslots - 1))
    if (g->slots[i] == id)
      return true;
  return false;
}

/* Remove ID from the set (backward-shift deletion keeps every probe
 * chain unbroken).  Returns true if it was there.
 */
static bool
set_remove (struct ss_gone_set *g, uint64_t id)
{
  size_t i, j, mask = g->nslots - 1;

  if (id == 0) {
    bool had = g->has_zero;

    g->has_zero = false;
    g->count -= had;
    return had;
  }
  if (g->nslots == 0)
    return false;
  for (i = home (id, g->nslots); g->slots[i] != id; i = (i + 1) & mask)
    if (g->slots[i] == 0)
      return false;
  for (j = (i + 1) & mask; g->slots[j] != 0; j = (j + 1) & mask) {
    size_t h = home (g->slots[j], g->nslots);

    /* Move slot J back to I unless its home lies in (I, J]. */
    if (i <= j ? (h <= i || h > j) : (h <= i && h > j)) {
      g->slots[i] = g->slots[j];
      i = j;
    }
  }
  g->slots[i] = 0;
  g->count--;
  return true;
}

/* Append ID to the ring of ids in the order added.  Returns 0 or
 * -ENOMEM.
 */
static int
ring_push (struct ss_gone_set *g, uint64_t id)
{
  if (g->ring_len == g->ring_cap) {
    size_t cap = g->ring_cap ? g->ring_cap * 2 : 1024, i;
    uint64_t *ring = malloc (cap * sizeof *ring);

    if (ring == NULL)
      return -ENOMEM;
    for (i = 0; i < g->ring_len; i++)
      ring[i] = g->ring[(g->ring_head + i) % g->ring_cap];
    free (g->ring);
    g->ring = ring;
    g->ring_cap = cap;
    g->ring_head = 0;
  }
  g->ring[(g->ring_head + g->ring_len) % g->ring_cap] = id;
  g->ring_len++;
  return 0;
}

/* An index update of tombstones is done (a failure was logged). */
static void
ungone_recorded (struct ss_loop *loop, struct ss_index_op *iop)
{
  free (iop);
}

/* Add ID to the set in memory (its tombstone is durable, or being
 * loaded).  Past SS_GONE_MAX, forget the oldest, also in the index if
 * FORGET_DURABLY.  Returns 0 or -ENOMEM.
 */
static int
gone_insert (struct ss_loop *loop, uint64_t id, bool forget_durably)
{
  struct ss_gone_set *g = &loop->gone;
  int r;

  if (ss_gone_has (loop, id))
    return 0;
  r = set_grow (g);
  if (r == 0)
    r = ring_push (g, id);
  if (r < 0)
    return r;
  if (id == 0)
    g->has_zero = true;
  else
    slots_insert (g->slots, g->nslots, id);
  g->count++;
  /* The ring may hold ids removed (and re-added) since: bound it too. */
  while ((g->count > SS_GONE_MAX || g->ring_len > 2 * SS_GONE_MAX) &&
         g->ring_len > 0) {
    uint64_t old = g->ring[g->ring_head];
    struct ss_index_op *iop;

    g->ring_head = (g->ring_head + 1) % g->ring_cap;
    g->ring_len--;
    if (!set_remove (g, old) || !forget_durably)
      continue;
    iop = calloc (1, sizeof *iop);
    if (iop == NULL)
      continue; /* forgotten at the next start */
    iop->type = SS_INDEX_UNGONE;
    iop->rec.segment = old;
    iop->done = ungone_recorded;
    ss_index_submit_op (loop, iop);
  }
  return 0;
}

/* Segment ID was deleted and its tombstone recorded: refuse it from now
 * on.  Ring thread.
 */
void
ss_gone_add (struct ss_loop *loop, uint64_t id)
{
  if (gone_insert (loop, id, true) < 0)
    log_warn ("segment %" PRIu64 ": tombstone: %s", id, strerror (ENOMEM));
}

/* Segment ID is here again (its tombstone was cleared in the index).
 * Ring thread.
 */
void
ss_gone_remove (struct ss_loop *loop, uint64_t id)
{
  set_remove (&loop->gone, id);
}

/* ss_index_load_gone callback. */
static int
load_one (void *arg, uint64_t id)
{
  return gone_insert (arg, id, false);
}

/* Load the tombstones recorded in the index.  Start-up, ring thread
 * (the index worker is not running: tombstones past SS_GONE_MAX are
 * dropped in memory only, and again at every start).
 */
int
ss_gone_load (struct ss_loop *loop, struct ss_index *idx)
{
  return ss_index_load_gone (idx, load_one, loop);
}

/* Free the set (at exit). */
void
ss_gone_free (struct ss_loop *loop)
{
  free (loop->gone.slots);
  free (loop->gone.ring);
  memset (&loop->gone, 0, sizeof loop->gone);
}

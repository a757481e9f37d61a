/* nbdkit-tessera-plugin: the storage servers' dirty and lost sets.
 *
 * Each struct ss_server carries two sets of segment indexes (see
 * flush.c for what they are for): DIRTY, the segments written or
 * trimmed there since the last flush took them, by the server process
 * (incarnation) that its handshakes found; and LOST, the segments whose
 * writes an earlier incarnation took and may have lost, to be reported
 * failed (flush_settle_lost).  Writers add to them (dirty_mark), a
 * handshake that finds a new incarnation moves DIRTY to LOST
 * (dirty_check_incarnation), and flush.c takes and returns them.
 *
 * Sets are unsorted arrays that may hold duplicates, compacted when
 * they fill up.  ss_server.lock protects them and is never held across
 * other calls; volume.lost_pending counts the servers whose lost
 * segments are not settled yet, kept right by dirty_lost_account_locked
 * around every change of a lost set.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "cleanup.h"

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

/* Sort the N entries of SET in increasing order. */
void
dirty_set_sort (uint64_t *set, size_t n)
{
  qsort (set, n, sizeof set[0], compare_u64);
}

/* Sort and deduplicate the N entries of SET.  Returns the new count. */
size_t
dirty_set_unique (uint64_t *set, size_t n)
{
  size_t i, j;

  if (n == 0)
    return 0;
  dirty_set_sort (set, n);
  for (i = 1, j = 1; i < n; i++)
    if (set[i] != set[j - 1])
      set[j++] = set[i];
  return j;
}

/* Add INDEX to the segment set *SET (*N entries, room for *CAP),
 * dropping duplicates when it is full.  Caller holds the set's server's
 * lock.  Returns 0 or -ENOMEM.
 */
int
dirty_set_add (uint64_t **set, size_t *n, size_t *cap, uint64_t index)
{
  uint64_t *p;

  if (*n > 0 && (*set)[*n - 1] == index)
    return 0;
  if (*n == *cap) {
    /* Full: drop duplicates first, grow only if that frees too little. */
    if (*n >= DIRTY_COMPACT)
      *n = dirty_set_unique (*set, *n);
    if (*cap == 0 || *n * 2 > *cap) {
      size_t c = *cap ? *cap * 2 : 64;

      p = realloc (*set, c * sizeof *p);
      if (p == NULL)
        return -ENOMEM;
      *set = p;
      *cap = c;
    }
  }
  (*set)[(*n)++] = index;
  return 0;
}

/* Whether S has lost segments not yet settled (or a flush in progress
 * holds segments that a restart lost).  Caller holds S->lock.
 */
bool
dirty_lost_pending_locked (const struct ss_server *s)
{
  return s->nlost > 0 || s->npending > 0 || s->taken_lost;
}

/* S's lost segments were pending (WAS) before a change of its lost set:
 * keep the volume's count of servers with pending lost segments right.
 * Caller holds S->lock.
 */
void
dirty_lost_account_locked (struct ss_server *s, bool was)
{
  bool now = dirty_lost_pending_locked (s);

  if (now && !was)
    atomic_fetch_add (s->lost_pending, 1);
  else if (!now && was)
    atomic_fetch_sub (s->lost_pending, 1);
}

/* Record that segment INDEX on server S has data that may not be
 * durable yet, written by the server process INCARNATION (the one whose
 * handshake the connection carrying the write saw): the next flush
 * sends SEG_FLUSH to S.  If S has restarted since, the write may be
 * lost already: the segment goes to S's lost set instead, to be
 * reported failed (flush_settle_lost).  Returns 0 or -ENOMEM.
 */
int
dirty_mark (struct ss_server *s, uint64_t index, uint64_t incarnation)
{
  bool was;
  int r;

  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&s->lock);
  if (incarnation == s->incarnation)
    return dirty_set_add (&s->dirty, &s->ndirty, &s->dirty_cap, index);
  was = dirty_lost_pending_locked (s);
  r = dirty_set_add (&s->lost, &s->nlost, &s->lost_cap, index);
  dirty_lost_account_locked (s, was);
  if (tessera_debug_io)
    nbdkit_debug ("server %" PRIu32 ": segment index %" PRIu64
                  " written by incarnation %#" PRIx64 ", now %#" PRIx64
                  ": lost",
                  s->id, index, incarnation, s->incarnation);
  return r;
}

/* A handshake with server S (ssconn.c) found the server process
 * INCARNATION.  If S had another one before, that process may have
 * died with the writes of the dirty set not durable: the whole set
 * becomes lost.  Returns 0 if the connection may be used, -SS_ERESTARTED
 * if lost segments of S are not settled yet (a read from S could miss
 * those writes; the caller fails this attempt, not counting it against
 * the server), or -ENOMEM (nothing changed).
 */
int
dirty_check_incarnation (struct ss_server *s, uint64_t incarnation)
{
  uint64_t *p;
  size_t k;
  bool was;

  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&s->lock);
  if (incarnation != s->incarnation && s->incarnation != 0) {
    was = dirty_lost_pending_locked (s);
    k = s->ndirty = dirty_set_unique (s->dirty, s->ndirty);
    if (s->nlost > 0 && k > 0 && s->nlost + k > s->lost_cap) {
      p = realloc (s->lost, (s->nlost + k) * sizeof *p);
      if (p == NULL)
        return -ENOMEM;
      s->lost = p;
      s->lost_cap = s->nlost + k;
    }
    /* A flush in progress took segments of the old incarnation: they
     * are lost too, and it puts them in the lost set when its SEG_FLUSH
     * fails here; until then this server serves nothing.
     */
    if (s->ntaken > 0)
      s->taken_lost = true;
    if (s->nlost == 0) {
      free (s->lost);
      s->lost = s->dirty;
      s->nlost = k;
      s->lost_cap = s->dirty_cap;
      s->dirty = NULL;
      s->dirty_cap = 0;
    }
    else if (k > 0) {
      memcpy (s->lost + s->nlost, s->dirty, k * sizeof *p);
      s->nlost += k;
      free (s->dirty);
      s->dirty = NULL;
      s->dirty_cap = 0;
    }
    s->ndirty = 0;
    dirty_lost_account_locked (s, was);
    k += s->ntaken;
    if (k > 0)
      nbdkit_error ("storage server %" PRIu32
                    " restarted (incarnation %#" PRIx64 " -> %#" PRIx64
                    "): %zu segments written since the last "
                    "flush are reported failed",
                    s->id, s->incarnation, incarnation, k);
    else
      nbdkit_debug ("storage server %" PRIu32
                    " restarted (incarnation %#" PRIx64 " -> %#" PRIx64
                    "): nothing to flush was lost",
                    s->id, s->incarnation, incarnation);
  }
  s->incarnation = incarnation;
  return dirty_lost_pending_locked (s) ? -SS_ERESTARTED : 0;
}

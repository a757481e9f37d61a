/* Fences and write barriers.
 *
 * A fence is a volume's minimum writer epoch: the MDS raises it (SEG_FENCE,
 * or in a heartbeat reply) when it hands the volume to a new writer after
 * the last one lost its lease, and from then on writes and trims carrying
 * an older epoch are refused with PROTO_ESTALE.  Fences live in the
 * index's "fences" table (only ever raised) and, on the ring thread, in a
 * sorted array that every write and trim consults.
 *
 * A fence must also cover writes that passed the check just before it:
 * SEG_FENCE answers only once every write or trim issued before it has
 * completed.  Writes and trims join a list, in the order they are issued,
 * when their data I/O starts and leave it when it ends; a barrier waits
 * until the oldest write still in the list is younger than itself.
 *
 * This file is a service: the write handlers (req-io.c), SEG_SET_GEN
 * (req-repair.c) and the fences' own handlers (req-fence.c: SEG_FENCE
 * and the fences of heartbeat replies) call it, and it calls nothing but
 * the index.
 */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#include "internal.h"

/* Index of the first fence with a volume >= VOLUME (binary search). */
static size_t
fence_find (const struct ss_loop *loop, uint64_t volume)
{
  size_t lo = 0, hi = loop->nfences;

  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;

    if (loop->fences[mid].volume < volume)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/* Raise VOLUME's fence to EPOCH in memory.  Returns 1 if it was raised,
 * 0 if it was already at least EPOCH, or -ENOMEM.  Ring thread.
 */
int
ss_fence_raise (struct ss_loop *loop, uint64_t volume, uint64_t epoch)
{
  size_t i = fence_find (loop, volume);

  if (i < loop->nfences && loop->fences[i].volume == volume) {
    if (loop->fences[i].epoch >= epoch)
      return 0;
    loop->fences[i].epoch = epoch;
    return 1;
  }
  if (epoch == 0)
    return 0;
  if (loop->nfences == loop->fences_cap) {
    size_t cap = loop->fences_cap ? loop->fences_cap * 2 : 16;
    struct ss_fence *f = realloc (loop->fences, cap * sizeof *f);

    if (f == NULL)
      return -ENOMEM;
    loop->fences = f;
    loop->fences_cap = cap;
  }
  memmove (&loop->fences[i + 1], &loop->fences[i],
           (loop->nfences - i) * sizeof *loop->fences);
  loop->fences[i].volume = volume;
  loop->fences[i].epoch = epoch;
  loop->nfences++;
  return 1;
}

/* The fence of VOLUME: writes with an older epoch are refused (0: no
 * fence).  Ring thread.
 */
uint64_t
ss_fence_get (struct ss_loop *loop, uint64_t volume)
{
  size_t i = fence_find (loop, volume);

  if (i < loop->nfences && loop->fences[i].volume == volume)
    return loop->fences[i].epoch;
  return 0;
}

/* ss_index_load_fences callback. */
static int
load_one (void *arg, uint64_t volume, uint64_t epoch)
{
  struct ss_loop *loop = arg;
  int r = ss_fence_raise (loop, volume, epoch);

  return r < 0 ? r : 0;
}

/* Load the fences recorded in the index.  Start-up, ring thread. */
int
ss_fences_load (struct ss_loop *loop, struct ss_index *idx)
{
  int r = ss_index_load_fences (idx, load_one, loop);

  if (r == 0 && loop->nfences > 0)
    log_info ("store: %zu volumes fenced", loop->nfences);
  return r;
}

/* Free the fences (at exit). */
void
ss_fences_free (struct ss_loop *loop)
{
  free (loop->fences);
  loop->fences = NULL;
  loop->nfences = loop->fences_cap = 0;
}

/* ---- Writes in flight and barriers ---- */

/* R's write or trim is issued now: number it and append it to the list
 * of writes in flight.  Ring thread.
 */
void
ss_writes_begin (struct ss_loop *loop, struct ss_req *r)
{
  assert (!r->in_writes);
  r->in_writes = true;
  r->write_seq = ++loop->write_seq;
  r->wnext = NULL;
  r->wprev = loop->writes_tail;
  if (loop->writes_tail)
    loop->writes_tail->wnext = r;
  else
    loop->writes_head = r;
  loop->writes_tail = r;
}

/* True if every write numbered up to B's seq has completed. */
static bool
barrier_passed (const struct ss_loop *loop, const struct ss_barrier *b)
{
  return loop->writes_head == NULL || loop->writes_head->write_seq > b->seq;
}

/* R's write or trim has completed: drop it from the list, and release
 * the barriers that only it held.  Ring thread.
 */
void
ss_writes_end (struct ss_loop *loop, struct ss_req *r)
{
  struct ss_barrier *b;

  assert (r->in_writes);
  r->in_writes = false;
  if (r->wprev)
    r->wprev->wnext = r->wnext;
  else
    loop->writes_head = r->wnext;
  if (r->wnext)
    r->wnext->wprev = r->wprev;
  else
    loop->writes_tail = r->wprev;
  r->wprev = r->wnext = NULL;

  /* Barriers are in seq order: release from the front. */
  while ((b = loop->barriers_head) != NULL && barrier_passed (loop, b)) {
    loop->barriers_head = b->next;
    if (loop->barriers_head == NULL)
      loop->barriers_tail = NULL;
    b->done (loop, b);
  }
}

/* Call B->done once every write and trim issued so far has completed
 * (at once if none is in flight).  Ring thread.
 */
void
ss_barrier_wait (struct ss_loop *loop, struct ss_barrier *b)
{
  b->seq = loop->write_seq;
  b->next = NULL;
  if (barrier_passed (loop, b)) {
    b->done (loop, b);
    return;
  }
  if (loop->barriers_tail)
    loop->barriers_tail->next = b;
  else
    loop->barriers_head = b;
  loop->barriers_tail = b;
}

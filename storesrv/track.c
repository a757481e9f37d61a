/* Byte ranges written by clients, for SEG_PULL.
 *
 * A pull must never overwrite a client write with older data from its
 * source.  The writes that reach the target while the pull runs are
 * marked in the pull (pull-ctl.c); but a writer learns of the new replica as
 * soon as the MDS changes the catalog, so its writes may reach the
 * target a little before the SEG_PULL does.  So a segment gets a tracker
 * for SS_TRACK_SECS when it is created here, when SEG_SET_GEN names it,
 * and when a write carries a newer generation than this server knows
 * (the writer knows of a newer replica set): writes and trims mark their
 * ranges in it, by the generation they carry, and a pull that arrives
 * meanwhile starts from the ranges written with its generation or a
 * newer one.  Older ones are left out on purpose: they were written
 * before this server became the copy's target (while it was an ok
 * replica, before it went stale, say), and later writes may have missed
 * it.  Trackers live in a list in the order of their deadlines and
 * expire lazily.
 *
 * This file touches only the loop's and the segments' fields and calls
 * nothing else of the daemon: it is part of libstoresrv.la, so that its
 * unit test (tests/unit/test-track.c) links it alone.
 */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "deadline.h"
#include "internal.h"

/* How long a tracker waits for its pull. */
#define SS_TRACK_SECS 60

/* Monotonic time in seconds. */
static uint64_t
now_secs (void)
{
  return monotonic_ns () / 1000000000;
}

/* ---- Range sets ---- */

/* The index of the first range of R that ends at or after POS (R->n if
 * none does).
 */
static size_t
first_ending_at (const struct ss_ranges *r, uint32_t pos)
{
  size_t lo = 0, hi = r->n;

  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;

    if (r->v[mid].end < pos)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/* Add [OFFSET, OFFSET+LENGTH) to R, merging.  On ENOMEM R->failed is
 * set (R then no longer knows every range).
 */
void
ss_ranges_add (struct ss_ranges *r, uint32_t offset, uint32_t length)
{
  uint32_t start = offset, end = offset + length;
  size_t i, j;

  if (length == 0)
    return;
  /* First range that ends at or after START (touching ones merge): a
   * binary search, as a segment written at random holds many ranges.
   */
  i = first_ending_at (r, start);
  /* Ranges from I up to J overlap or touch [START, END). */
  for (j = i; j < r->n && r->v[j].start <= end; j++) {
    if (r->v[j].start < start)
      start = r->v[j].start;
    if (r->v[j].end > end)
      end = r->v[j].end;
  }
  if (j == i) {
    if (r->n == r->cap) {
      size_t cap = r->cap ? r->cap * 2 : 16;
      struct ss_range *v = realloc (r->v, cap * sizeof *v);

      if (v == NULL) {
        r->failed = true;
        return;
      }
      r->v = v;
      r->cap = cap;
    }
    memmove (&r->v[i + 1], &r->v[i], (r->n - i) * sizeof *r->v);
    r->n++;
  }
  else {
    /* Keep I, drop I+1 .. J-1. */
    memmove (&r->v[i + 1], &r->v[j], (r->n - j) * sizeof *r->v);
    r->n -= j - i - 1;
  }
  r->v[i].start = start;
  r->v[i].end = end;
}

/* The first range [*S, *E) at or after POS and before END that R does
 * not cover.  Returns false if there is none.
 */
bool
ss_ranges_next_gap (const struct ss_ranges *r, uint32_t pos, uint32_t end,
                    uint32_t *s, uint32_t *e)
{
  size_t i;

  for (i = first_ending_at (r, pos); i < r->n && pos < end; i++) {
    if (r->v[i].end <= pos)
      continue;
    if (r->v[i].start > pos)
      break;
    pos = r->v[i].end;
  }
  if (pos >= end)
    return false;
  *s = pos;
  *e = i < r->n && r->v[i].start < end ? r->v[i].start : end;
  return true;
}

/* Free R's ranges (R itself is not freed). */
void
ss_ranges_free (struct ss_ranges *r)
{
  free (r->v);
  memset (r, 0, sizeof *r);
}

/* ---- Trackers ---- */

/* Take T out of the list. */
static void
unlink_track (struct ss_loop *loop, struct ss_track *t)
{
  if (t->prev)
    t->prev->next = t->next;
  else
    loop->tracks_head = t->next;
  if (t->next)
    t->next->prev = t->prev;
  else
    loop->tracks_tail = t->prev;
  t->prev = t->next = NULL;
}

/* Drop SEG's tracker, if any.  Ring thread. */
void
ss_track_drop (struct ss_loop *loop, struct ss_seg *seg)
{
  struct ss_track *t = seg->track;
  unsigned i;

  if (t == NULL)
    return;
  unlink_track (loop, t);
  for (i = 0; i < t->nsets; i++)
    ss_ranges_free (&t->sets[i].ranges);
  free (t);
  seg->track = NULL;
}

/* Drop the expired trackers at the head of the list. */
static void
expire (struct ss_loop *loop, uint64_t now)
{
  while (loop->tracks_head && loop->tracks_head->deadline <= now)
    ss_track_drop (loop, loop->tracks_head->seg);
}

/* Track the writes to SEG from now on, for SS_TRACK_SECS (a tracker
 * already there goes on, with a new deadline).  Ring thread.
 */
void
ss_track_start (struct ss_loop *loop, struct ss_seg *seg)
{
  uint64_t now = now_secs ();
  struct ss_track *t;

  expire (loop, now);
  t = seg->track;
  if (t)
    unlink_track (loop, t);
  else {
    t = calloc (1, sizeof *t);
    if (t == NULL)
      return; /* a pull arriving later may miss an early write */
    t->seg = seg;
    seg->track = t;
  }
  t->deadline = now + SS_TRACK_SECS;
  t->prev = loop->tracks_tail;
  if (loop->tracks_tail)
    loop->tracks_tail->next = t;
  else
    loop->tracks_head = t;
  loop->tracks_tail = t;
}

/* A client write or trim of [OFFSET, OFFSET+LENGTH) of SEG carrying
 * generation GEN is about to be issued: mark it in SEG's tracker, if it
 * has a live one.  Ring thread.
 */
void
ss_track_mark (struct ss_loop *loop, struct ss_seg *seg, uint64_t gen,
               uint32_t offset, uint32_t length)
{
  struct ss_track *t = seg->track;
  unsigned i;

  if (t == NULL)
    return;
  if (t->deadline <= now_secs ()) {
    ss_track_drop (loop, seg);
    return;
  }
  for (i = 0; i < t->nsets && t->sets[i].gen < gen; i++)
    ;
  if (i == t->nsets || t->sets[i].gen != gen) {
    /* A new generation at I; the oldest goes if all are taken. */
    if (t->nsets == SS_TRACK_GENS) {
      if (i == 0)
        return; /* older than every one kept: no pull wants it */
      ss_ranges_free (&t->sets[0].ranges);
      memmove (&t->sets[0], &t->sets[1], (i - 1) * sizeof t->sets[0]);
      i--;
    }
    else {
      memmove (&t->sets[i + 1], &t->sets[i],
               (t->nsets - i) * sizeof t->sets[0]);
      t->nsets++;
    }
    memset (&t->sets[i], 0, sizeof t->sets[i]);
    t->sets[i].gen = gen;
  }
  ss_ranges_add (&t->sets[i].ranges, offset, length);
}

/* Add to OUT the ranges SEG's live tracker saw written with generation
 * GEN or newer, for a pull of that generation, and drop the tracker.
 * Ring thread.
 */
void
ss_track_take (struct ss_loop *loop, struct ss_seg *seg, uint64_t gen,
               struct ss_ranges *out)
{
  struct ss_track *t = seg->track;
  unsigned i;
  size_t k;

  if (t == NULL)
    return;
  if (t->deadline > now_secs ())
    for (i = 0; i < t->nsets; i++) {
      if (t->sets[i].gen < gen)
        continue;
      if (t->sets[i].ranges.failed)
        out->failed = true;
      for (k = 0; k < t->sets[i].ranges.n; k++)
        ss_ranges_add (out, t->sets[i].ranges.v[k].start,
                       t->sets[i].ranges.v[k].end -
                           t->sets[i].ranges.v[k].start);
    }
  ss_track_drop (loop, seg);
}

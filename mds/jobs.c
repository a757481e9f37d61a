/* Jobs: the registry of the segment work the MDS has running or put
 * off, which the repair thread, copies (copy.c), resyncs (resync.c),
 * unclean checks (unclean.c) and request handlers consult so as not to
 * step on each other:
 *   - the copies running (mds->copies), registered from
 *     mds_copy_prepare to mds_copy_finish;
 *   - the segments whose repair failed recently (mds->retries), left
 *     alone for MDS_REPAIR_RETRY_MS, and the repair thread's kick;
 *   - the volumes being resynced (mds->resyncs);
 *   - the count of worker threads (copies, resyncs, checks) that
 *     shutdown waits for.
 * The workers call this file and never each other for this state.
 * Every function here is called with mds->lock held; none blocks or
 * calls another file of the MDS but cluster.c's clock.
 */

#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "deadline.h"
#include "internal.h"

/* ---- Running copies ---- */

/* True if a copy of SEGMENT is running. */
bool
mds_copy_busy (struct mds *mds, uint64_t segment)
{
  size_t i;

  for (i = 0; i < mds->ncopies; ++i)
    if (mds->copies[i]->segment == segment)
      return true;
  return false;
}

/* True if a copy of a segment of VOLUME is running. */
bool
mds_copy_busy_volume (struct mds *mds, uint64_t volume)
{
  size_t i;

  for (i = 0; i < mds->ncopies; ++i)
    if (mds->copies[i]->volume == volume)
      return true;
  return false;
}

/* Number of copies running to server TARGET. */
size_t
mds_copies_to (struct mds *mds, uint32_t target)
{
  size_t i, n = 0;

  for (i = 0; i < mds->ncopies; ++i)
    if (mds->copies[i]->target == target)
      n++;
  return n;
}

/* Add C to the running copies.  Returns 0 or -ENOMEM. */
int
mds_copy_register (struct mds *mds, struct mds_copy *c)
{
  struct mds_copy **p;

  p = realloc (mds->copies, (mds->ncopies + 1) * sizeof *p);
  if (p == NULL)
    return -ENOMEM;
  mds->copies = p;
  p[mds->ncopies++] = c;
  return 0;
}

/* Remove C from the running copies (if it is there). */
void
mds_copy_unregister (struct mds *mds, struct mds_copy *c)
{
  size_t i;

  for (i = 0; i < mds->ncopies; ++i)
    if (mds->copies[i] == c) {
      mds->copies[i] = mds->copies[--mds->ncopies];
      return;
    }
}

/* ---- Repair retries and kicks ---- */

/* True if SEGMENT may be repaired now: it did not fail recently.  A
 * retry entry whose time has come is dropped (mds->lock held).
 */
bool
mds_repair_retry_due (struct mds *mds, uint64_t segment)
{
  size_t i;

  for (i = 0; i < mds->nretries; ++i)
    if (mds->retries[i].segment == segment) {
      if (monotonic_ns () < mds->retries[i].not_before_ns)
        return false;
      mds->retries[i] = mds->retries[--mds->nretries];
      return true;
    }
  return true;
}

/* Repairing SEGMENT failed: leave it alone for a while (mds->lock
 * held).
 */
void
mds_repair_retry_later (struct mds *mds, uint64_t segment)
{
  uint64_t when = monotonic_ns () + (uint64_t)MDS_REPAIR_RETRY_MS * 1000000u;
  struct mds_retry *p;
  size_t i;

  for (i = 0; i < mds->nretries; ++i)
    if (mds->retries[i].segment == segment) {
      mds->retries[i].not_before_ns = when;
      return;
    }
  p = realloc (mds->retries, (mds->nretries + 1) * sizeof *p);
  if (p == NULL)
    return; /* then it is retried at once: harmless */
  mds->retries = p;
  p[mds->nretries].segment = segment;
  p[mds->nretries++].not_before_ns = when;
}

/* Wake the repair thread for a pass now.  RETRY_NOW forgets the recent
 * failures, so that every segment is tried again (something changed:
 * a server came back, or an operator asked).
 */
void
mds_repair_kick (struct mds *mds, bool retry_now)
{
  if (retry_now)
    mds->nretries = 0;
  mds->repair_kicked = true;
  pthread_cond_signal (&mds->repair_wake);
}

/* ---- Volumes being resynced ---- */

/* True if VOLUME is being resynced (mds->lock held). */
bool
mds_resyncing (struct mds *mds, uint64_t volume)
{
  size_t i;

  for (i = 0; i < mds->nresyncs; ++i)
    if (mds->resyncs[i] == volume)
      return true;
  return false;
}

/* Record that VOLUME is being resynced.  Returns 0 or -ENOMEM. */
int
mds_resync_register (struct mds *mds, uint64_t volume)
{
  uint64_t *p;

  p = realloc (mds->resyncs, (mds->nresyncs + 1) * sizeof *p);
  if (p == NULL)
    return -ENOMEM;
  mds->resyncs = p;
  p[mds->nresyncs++] = volume;
  return 0;
}

/* Forget that VOLUME is being resynced (mds->lock held). */
void
mds_resync_unregister (struct mds *mds, uint64_t volume)
{
  size_t i;

  for (i = 0; i < mds->nresyncs; ++i)
    if (mds->resyncs[i] == volume) {
      mds->resyncs[i] = mds->resyncs[--mds->nresyncs];
      return;
    }
}

/* ---- Worker threads ---- */

/* One worker less (mds->lock held). */
void
mds_worker_done (struct mds *mds)
{
  if (--mds->workers == 0)
    pthread_cond_broadcast (&mds->workers_done);
}

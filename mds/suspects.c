/* Evidence that replicas may have lost writes, which the unclean-restart
 * checks (unclean.c) gather and source choice (source.c), STATUS and the
 * checks themselves consult:
 *   - suspect servers: a check of the server is pending or running, or
 *     the last one could not finish (counted in its struct
 *     mds_server_state), so its replicas are no source for copies and
 *     resyncs;
 *   - unclean registrations (mds->suspects): the server restarted
 *     uncleanly while a volume was not clean, so its replicas of that
 *     volume are the last choice as a resync source until the volume is
 *     clean past that epoch;
 *   - unproven segments (mds->unproven): their last ok replica may have
 *     lost writes, and was kept because nothing better is left.
 * Memory only.  Every function here is called with mds->lock held; none
 * calls another file of the MDS but cluster.c.
 */

#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Most unclean registrations remembered for resync source choices. */
#define SUSPECTS_MAX 4096

/* True if server ID's replicas must not be a source: a check of it is
 * pending or running, or the last one could not finish.
 */
bool
mds_server_suspect (struct mds *mds, uint32_t id)
{
  const struct mds_server_state *st = mds_server_find (mds, id);

  return st && (st->checks > 0 || st->unchecked);
}

/* True if SERVER registered uncleanly while VOLUME was not clean, and
 * the volume has not been clean past that epoch since (CLEAN_EPOCH).
 */
bool
mds_unclean_since (struct mds *mds, uint32_t server, uint64_t volume,
                   uint64_t clean_epoch)
{
  size_t i;

  for (i = 0; i < mds->nsuspects; ++i)
    if (mds->suspects[i].server == server &&
        mds->suspects[i].volume == volume &&
        mds->suspects[i].epoch > clean_epoch)
      return true;
  return false;
}

/* True if SEGMENT is unproven. */
bool
mds_unproven (struct mds *mds, uint64_t segment)
{
  size_t i;

  for (i = 0; i < mds->nunproven; ++i)
    if (mds->unproven[i] == segment)
      return true;
  return false;
}

/* The number of unproven segments, forgetting those deleted since. */
uint64_t
mds_unproven_count (struct mds *mds)
{
  struct catalog_segment s;
  size_t i = 0;

  while (i < mds->nunproven)
    if (catalog_segment_get (mds->cat, mds->unproven[i], &s) == -ENOENT)
      mds->unproven[i] = mds->unproven[--mds->nunproven];
    else
      i++;
  return mds->nunproven;
}

/* Remember SEGMENT as unproven. */
void
mds_unproven_add (struct mds *mds, uint64_t segment)
{
  uint64_t *p;

  if (mds_unproven (mds, segment))
    return;
  p = realloc (mds->unproven, (mds->nunproven + 1) * sizeof *p);
  if (p == NULL)
    return; /* the error is logged: only the count is short */
  mds->unproven = p;
  p[mds->nunproven++] = segment;
}

/* Remember that SERVER registered uncleanly while VOLUME was at EPOCH
 * and not clean.  The oldest entry makes room.
 */
void
mds_suspect_add (struct mds *mds, uint32_t server, uint64_t volume,
                 uint64_t epoch)
{
  struct mds_suspect *p;
  size_t i;

  for (i = 0; i < mds->nsuspects; ++i)
    if (mds->suspects[i].server == server &&
        mds->suspects[i].volume == volume) {
      mds->suspects[i].epoch = epoch;
      return;
    }
  if (mds->nsuspects == SUSPECTS_MAX) {
    memmove (mds->suspects, mds->suspects + 1,
             --mds->nsuspects * sizeof *mds->suspects);
  }
  p = realloc (mds->suspects, (mds->nsuspects + 1) * sizeof *p);
  if (p == NULL)
    return;
  mds->suspects = p;
  p[mds->nsuspects].server = server;
  p[mds->nsuspects].volume = volume;
  p[mds->nsuspects++].epoch = epoch;
}

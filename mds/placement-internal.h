/* Rules shared by placement.c (the snapshot functions) and
 * placement-index.c (the index): not part of placement.h's interface.
 */

#ifndef TESSERA_MDS_PLACEMENT_INTERNAL_H
#define TESSERA_MDS_PLACEMENT_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "placement.h"

/* The bytes of S that new segments may fill: HIGH_WATER percent of its
 * capacity (computed without overflow), or all of it.
 */
static inline uint64_t
placement_mark (const struct placement_server *s)
{
  uint64_t pct = s->high_water;

  if (pct == 0 || pct >= 100)
    return s->capacity;
  return s->capacity / 100 * pct + s->capacity % 100 * pct / 100;
}

/* True if S may receive a replica of a new segment (NEW_SEGMENT: up and
 * below its high-water mark) or of a segment being repaired (up, below
 * its capacity).
 */
static inline bool
placement_can_take (const struct placement_server *s, bool new_segment)
{
  if (!s->up || s->capacity <= s->used)
    return false;
  return !new_segment || placement_mark (s) > s->used;
}

#endif /* TESSERA_MDS_PLACEMENT_INTERNAL_H */

/* Replica placement (see placement.h for the rule). */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "placement.h"

/* Weights are scaled so that their sum stays below 2^48: the modulo that
 * draws a number below the sum is then biased by less than 2^-16.
 */
#define WEIGHT_TOTAL_MAX (UINT64_C (1) << 48)

uint64_t
placement_random (uint64_t *rng)
{
  uint64_t z;

  *rng += UINT64_C (0x9e3779b97f4a7c15);
  z = *rng;
  z = (z ^ (z >> 30)) * UINT64_C (0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C (0x94d049bb133111eb);
  return z ^ (z >> 31);
}

/* The bytes of S that new segments may fill: HIGH_WATER percent of its
 * capacity (computed without overflow), or all of it.
 */
static uint64_t
high_water_mark (const struct placement_server *s)
{
  uint64_t pct = s->high_water;

  if (pct == 0 || pct >= 100)
    return s->capacity;
  return s->capacity / 100 * pct + s->capacity % 100 * pct / 100;
}

/* True if S may receive a replica: of a new segment (NEW_SEGMENT) only
 * below its high-water mark, of a segment being repaired up to its
 * capacity.
 */
static bool
is_eligible (const struct placement_server *s, bool new_segment)
{
  if (!s->up || s->capacity <= s->used)
    return false;
  return !new_segment || high_water_mark (s) > s->used;
}

size_t
placement_eligible (const struct placement_server *servers, size_t n)
{
  size_t i, count = 0;

  for (i = 0; i < n; ++i)
    if (is_eligible (&servers[i], true))
      count++;
  return count;
}

/* Append the printf-style FMT to the message in BUF (LEN bytes, LEN >
 * 0), whose first *USED bytes are taken; a part that does not fit is
 * cut, and BUF stays terminated.
 */
static void __attribute__ ((format (printf, 4, 5)))
append (char *buf, size_t len, size_t *used, const char *fmt, ...)
{
  va_list ap;
  int k;

  if (*used >= len - 1)
    return;
  va_start (ap, fmt);
  k = vsnprintf (buf + *used, len - *used, fmt, ap);
  va_end (ap);
  if (k < 0)
    buf[*used] = '\0';
  else
    *used = (size_t)k < len - *used ? *used + k : len - 1;
}

void
placement_explain (const struct placement_server *servers, size_t n,
                   uint32_t replicas, char *buf, size_t len)
{
  size_t i, down = 0, full = 0, marked = 0, used = 0;
  uint32_t pct = 0;
  const char *sep = " (";

  if (len == 0)
    return;
  buf[0] = '\0';
  for (i = 0; i < n; ++i) {
    const struct placement_server *s = &servers[i];

    if (!s->up)
      down++;
    else if (s->capacity <= s->used)
      full++;
    else if (high_water_mark (s) <= s->used) {
      marked++;
      pct = s->high_water;
    }
  }
  append (buf, len, &used,
          "%zu of %zu servers can take a new segment, %" PRIu32 " needed",
          placement_eligible (servers, n), n, replicas);
  if (down) {
    append (buf, len, &used, "%s%zu not up", sep, down);
    sep = ", ";
  }
  if (full) {
    append (buf, len, &used, "%s%zu full", sep, full);
    sep = ", ";
  }
  if (marked)
    append (buf, len, &used, "%s%zu at %s %" PRIu32 "%% high-water mark", sep,
            marked, marked == 1 ? "its" : "their", pct);
  if (down + full + marked > 0)
    append (buf, len, &used, ")");
}

/* True if ZONE names a failure domain shared by its servers. */
static bool
has_zone (const char *zone)
{
  return zone != NULL && zone[0] != '\0';
}

/* True if server I is one of the K chosen (indexes CHOSEN[0..K)). */
static bool
is_chosen (const size_t *chosen, size_t k, size_t i)
{
  size_t j;

  for (j = 0; j < k; ++j)
    if (chosen[j] == i)
      return true;
  return false;
}

/* How many of the K chosen servers share server I's zone.  A server
 * without a zone shares its domain with nobody.
 */
static size_t
zone_count (const struct placement_server *servers, const size_t *chosen,
            size_t k, size_t i)
{
  size_t j, count = 0;

  if (!has_zone (servers[i].zone))
    return 0;
  for (j = 0; j < k; ++j) {
    const char *z = servers[chosen[j]].zone;

    if (has_zone (z) && strcmp (z, servers[i].zone) == 0)
      count++;
  }
  return count;
}

/* How many times ID is listed in AVOID[0..NAVOID). */
static size_t
avoid_count (const uint32_t *avoid, size_t navoid, uint32_t id)
{
  size_t j, count = 0;

  for (j = 0; j < navoid; ++j)
    if (avoid[j] == id)
      count++;
  return count;
}

/* The weight of eligible server S: its free space scaled down by SHIFT
 * bits, at least 1 so that an almost full server stays eligible.
 */
static uint64_t
weight (const struct placement_server *s, unsigned shift)
{
  uint64_t w = (s->capacity - s->used) >> shift;

  return w > 0 ? w : 1;
}

/* What one pick may choose from: the filters of rules 3 and 4 that are
 * in force, decided before any candidate is drawn.
 */
struct pick_filter {
  bool new_segment; /* rule 1: high-water marks apply */
  size_t zone_max;  /* rule 3: most replicas already in the zone */
  size_t avoid_max; /* rule 4: most times listed in AVOID */
};

/* True if server I passes the candidate test and the filter F. */
static bool
passes (const struct placement_server *servers, const size_t *chosen, size_t k,
        const uint32_t *avoid, size_t navoid, size_t i,
        const struct pick_filter *f)
{
  if (!is_eligible (&servers[i], f->new_segment) || is_chosen (chosen, k, i))
    return false;
  if (zone_count (servers, chosen, k, i) > f->zone_max)
    return false;
  if (avoid_count (avoid, navoid, servers[i].id) > f->avoid_max)
    return false;
  return true;
}

/* Choose the index of the next replica of a new segment (NEW_SEGMENT)
 * or of a segment being repaired, given K already chosen.  The caller
 * has checked that enough eligible servers exist, so a candidate always
 * remains.
 */
static size_t
pick_one (const struct placement_server *servers, size_t n,
          const size_t *chosen, size_t k, const uint32_t *avoid, size_t navoid,
          bool new_segment, uint64_t *rng)
{
  struct pick_filter f = { new_segment, SIZE_MAX, SIZE_MAX };
  uint64_t max_free = 0, limit, total = 0, r;
  unsigned shift = 0;
  size_t i, last = n;

  /* Rule 3: only the zones holding the fewest replicas so far. */
  for (i = 0; i < n; ++i)
    if (passes (servers, chosen, k, avoid, navoid, i, &f)) {
      size_t c = zone_count (servers, chosen, k, i);

      if (c < f.zone_max)
        f.zone_max = c;
    }
  /* Rule 4: then only the servers listed the fewest times in AVOID. */
  for (i = 0; i < n; ++i)
    if (passes (servers, chosen, k, avoid, navoid, i, &f)) {
      size_t c = avoid_count (avoid, navoid, servers[i].id);

      if (c < f.avoid_max)
        f.avoid_max = c;
    }

  /* Scale the weights (free bytes) so that their sum cannot overflow. */
  for (i = 0; i < n; ++i)
    if (passes (servers, chosen, k, avoid, navoid, i, &f) &&
        servers[i].capacity - servers[i].used > max_free)
      max_free = servers[i].capacity - servers[i].used;
  limit = WEIGHT_TOTAL_MAX / (n + 1);
  while (shift < 63 && (max_free >> shift) > limit)
    shift++;

  for (i = 0; i < n; ++i)
    if (passes (servers, chosen, k, avoid, navoid, i, &f))
      total += weight (&servers[i], shift);
  r = placement_random (rng) % total;
  for (i = 0; i < n; ++i) {
    if (!passes (servers, chosen, k, avoid, navoid, i, &f))
      continue;
    last = i;
    if (r < weight (&servers[i], shift))
      return i;
    r -= weight (&servers[i], shift);
  }
  return last; /* not reached: r < total */
}

int
placement_choose (const struct placement_server *servers, size_t n,
                  uint32_t replicas, const uint32_t *avoid, size_t navoid,
                  uint64_t *rng, uint32_t *out)
{
  size_t chosen[PLACEMENT_REPLICAS_MAX];
  size_t k;

  if (replicas == 0 || replicas > PLACEMENT_REPLICAS_MAX)
    return -EINVAL;
  if (placement_eligible (servers, n) < replicas)
    return -ENOSPC;
  for (k = 0; k < replicas; ++k) {
    chosen[k] = pick_one (servers, n, chosen, k, avoid, navoid, true, rng);
    out[k] = servers[chosen[k]].id;
  }
  return 0;
}

int
placement_choose_extra (const struct placement_server *servers, size_t n,
                        const uint32_t *holders, size_t nholders,
                        uint32_t count, uint64_t *rng, uint32_t *out)
{
  size_t chosen[PLACEMENT_REPLICAS_MAX];
  size_t k = 0, kept, eligible = 0, i, j;
  uint32_t c;

  if (count == 0 || nholders > PLACEMENT_REPLICAS_MAX ||
      count > PLACEMENT_REPLICAS_MAX - nholders)
    return -EINVAL;
  /* The holders found in SERVERS count as chosen already. */
  for (j = 0; j < nholders; ++j)
    for (i = 0; i < n; ++i)
      if (servers[i].id == holders[j] && !is_chosen (chosen, k, i)) {
        chosen[k++] = i;
        break;
      }
  kept = k;
  for (i = 0; i < n; ++i)
    if (is_eligible (&servers[i], false) && !is_chosen (chosen, kept, i))
      eligible++;
  if (eligible < count)
    return -ENOSPC;
  for (c = 0; c < count; ++c, ++k) {
    chosen[k] = pick_one (servers, n, chosen, k, NULL, 0, false, rng);
    out[c] = servers[chosen[k]].id;
  }
  return 0;
}

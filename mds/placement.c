/* Replica placement over a snapshot of the servers (see placement.h for
 * the rules).
 *
 * These functions predate the placement index and keep their interface
 * for callers that hold a snapshot: each builds a temporary index over
 * the snapshot (linear in servers) and asks it, so that the rules have
 * one implementation, in placement-index.c.
 */

#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "placement.h"
#include "placement-internal.h"

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

size_t
placement_eligible (const struct placement_server *servers, size_t n)
{
  size_t i, count = 0;

  for (i = 0; i < n; ++i)
    if (placement_can_take (&servers[i], true))
      count++;
  return count;
}

void
placement_explain (const struct placement_server *servers, size_t n,
                   uint32_t replicas, char *buf, size_t len)
{
  struct placement_index *idx;

  if (len == 0)
    return;
  idx = placement_index_new (servers, n, 0);
  if (idx == NULL) {
    snprintf (buf, len, "out of memory");
    return;
  }
  placement_index_explain (idx, replicas, buf, len);
  placement_index_free (idx);
}

int
placement_choose (const struct placement_server *servers, size_t n,
                  uint32_t replicas, const uint32_t *avoid, size_t navoid,
                  uint64_t *rng, uint32_t *out)
{
  struct placement_index *idx;
  int r;

  if (replicas == 0 || replicas > PLACEMENT_REPLICAS_MAX)
    return -EINVAL;
  if (placement_eligible (servers, n) < replicas)
    return -ENOSPC;
  idx = placement_index_new (servers, n, 0);
  if (idx == NULL)
    return -ENOMEM;
  r = placement_index_choose (idx, replicas, avoid, navoid, rng, out);
  placement_index_free (idx);
  return r;
}

int
placement_choose_extra (const struct placement_server *servers, size_t n,
                        const uint32_t *holders, size_t nholders,
                        uint32_t count, uint64_t *rng, uint32_t *out)
{
  struct placement_index *idx;
  int r;

  if (count == 0 || nholders > PLACEMENT_REPLICAS_MAX ||
      count > PLACEMENT_REPLICAS_MAX - nholders)
    return -EINVAL;
  idx = placement_index_new (servers, n, 0);
  if (idx == NULL)
    return -ENOMEM;
  r = placement_index_choose_extra (idx, holders, nholders, count, rng, out);
  placement_index_free (idx);
  return r;
}

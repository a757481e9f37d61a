/* The cluster as the MDS sees it beyond the catalog: the health and
 * load of storage servers from their heartbeats, what placement counts
 * as used on each (the catalog's replicas and garbage, the reported
 * use, the bytes of allocations being committed), their addresses, and
 * the clock all of it is measured by.  None of the memory state is in
 * the catalog: after a restart servers count as heard at the start
 * (down, then out, if they stay silent).  Handlers, workers and
 * placement (place.c) all read the cluster here; this file calls no
 * other file of the MDS.
 *
 * Lock: the functions that read or change the memory state
 * (mds->servers, mds->inflight) are called with mds->lock held (or at
 * start-up and exit, when no other thread runs); mds_server_address
 * needs none.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "deadline.h"
#include "cleanup.h"
#include "log.h"

#include "internal.h"

/* Where server ID is, or would be inserted, in mds->servers (kept in id
 * order, so that every lookup by id is a binary search: repair looks
 * every server up once per page of segments).
 */
static size_t
server_slot (const struct mds *mds, uint32_t id)
{
  size_t lo = 0, hi = mds->nservers;

  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;

    if (mds->servers[mid].id < id)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/* The state of server ID (writable), or NULL. */
static struct mds_server_state *
find_server (struct mds *mds, uint32_t id)
{
  size_t i = server_slot (mds, id);

  if (i < mds->nservers && mds->servers[i].id == id)
    return &mds->servers[i];
  return NULL;
}

/* The state of server ID, or NULL if it has not been heard from since the
 * MDS started.
 */
struct mds_server_state *
mds_server_find (struct mds *mds, uint32_t id)
{
  return find_server (mds, id);
}

/* Record that server ID (known to the catalog) spoke just now, reporting
 * CAPACITY and USED bytes.  Returns 0 or -ENOMEM.
 */
int
mds_server_heard (struct mds *mds, uint32_t id, uint64_t capacity,
                  uint64_t used)
{
  struct mds_server_state *s = find_server (mds, id);

  if (s == NULL) {
    struct mds_server_state *p;
    size_t i = server_slot (mds, id);

    p = realloc (mds->servers, (mds->nservers + 1) * sizeof *p);
    if (p == NULL)
      return -ENOMEM;
    mds->servers = p;
    memmove (&p[i + 1], &p[i], (mds->nservers - i) * sizeof *p);
    mds->nservers++;
    s = &p[i];
    memset (s, 0, sizeof *s);
    s->id = id;
    /* Fences made while the MDS did not hear from it may be missing. */
    s->needs_fences = true;
  }
  s->last_heard_ns = monotonic_ns ();
  s->capacity = capacity;
  s->used = used;
  return 0;
}

/* The health of server ID from its heartbeats alone: PROTO_SERVER_UP if
 * heard from within the down-timeout, PROTO_SERVER_OUT if silent for the
 * out-timeout, else PROTO_SERVER_DOWN.  A server not heard from since the
 * MDS started counts as heard at the start: after a restart the servers
 * that were running stay up (allocations do not fail) until they have
 * had the time to heartbeat.
 */
uint32_t
mds_server_health (struct mds *mds, uint32_t id)
{
  return mds_server_health_at (mds, id, monotonic_ns ());
}

/* mds_server_health as of NOW (CLOCK_MONOTONIC ns, not before any
 * heartbeat recorded): for a caller that asks about many servers at
 * one instant (a repair page) and reads the clock once.
 */
uint32_t
mds_server_health_at (struct mds *mds, uint32_t id, uint64_t now)
{
  const struct mds_server_state *s = mds_server_find (mds, id);
  uint64_t age;

  age = now - (s ? s->last_heard_ns : mds->start_ns);
  if (age <= (uint64_t)mds->down_ms * 1000000u)
    return PROTO_SERVER_UP;
  if (age <= (uint64_t)mds->out_ms * 1000000u)
    return PROTO_SERVER_DOWN;
  return PROTO_SERVER_OUT;
}

/* Forget what is known of server ID (it was removed). */
void
mds_server_forget (struct mds *mds, uint32_t id)
{
  struct mds_server_state *s = find_server (mds, id);

  if (s) {
    size_t i = s - mds->servers;

    memmove (s, s + 1, (--mds->nservers - i) * sizeof *s);
  }
}

/* True if server ID was heard from within the down-timeout. */
bool
mds_server_is_up (struct mds *mds, uint32_t id)
{
  return mds_server_health (mds, id) == PROTO_SERVER_UP;
}

/* The state of server S as SERVER_LIST shows it and repair sees it:
 * draining (and out, if ever recorded) come from the catalog, the rest
 * from its heartbeats (mds_server_health).
 */
uint32_t
mds_server_state (struct mds *mds, const struct catalog_server *s)
{
  return mds_server_state_at (mds, s, monotonic_ns ());
}

/* mds_server_state as of NOW (see mds_server_health_at). */
uint32_t
mds_server_state_at (struct mds *mds, const struct catalog_server *s,
                     uint64_t now)
{
  if (s->state == CATALOG_SERVER_DRAINING || s->state == CATALOG_SERVER_OUT)
    return s->state;
  return mds_server_health_at (mds, s->id, now);
}

/* Every server heard from, except EXCEPT[0..NEXCEPT), gets every
 * volume's fence in its next heartbeat replies: a fence was made that
 * could not be sent to it.  (Servers not heard from yet get them anyway
 * when they are.)
 */
void
mds_servers_need_fences (struct mds *mds, const uint32_t *except,
                         size_t nexcept)
{
  size_t i, j;

  for (i = 0; i < mds->nservers; ++i) {
    for (j = 0; j < nexcept; ++j)
      if (except[j] == mds->servers[i].id)
        break;
    if (j == nexcept) {
      mds->servers[i].needs_fences = true;
      mds->servers[i].fence_cursor = 0;
    }
  }
}

/* The capacity of server S: what it last reported, else what it reported
 * when it registered (kept in the catalog).
 */
uint64_t
mds_server_capacity (struct mds *mds, const struct catalog_server *s)
{
  const struct mds_server_state *st = mds_server_find (mds, s->id);

  return st ? st->capacity : s->capacity;
}

/* A + B, saturating instead of wrapping. */
static uint64_t
add_sat (uint64_t a, uint64_t b)
{
  return a + b < a ? UINT64_MAX : a + b;
}

/* Bytes of server ID's capacity taken, as placement counts them: its
 * replicas plus the garbage it has not deleted yet (its slots are still
 * in use), times the segment size, or what it last reported if more
 * (room its filesystem lacks).  *SEGMENTS (may be NULL) receives the
 * replica count.  Returns 0 or a catalog error.
 */
int
mds_server_used (struct mds *mds, uint32_t id, uint64_t *used,
                 uint64_t *segments)
{
  const struct mds_server_state *st = mds_server_find (mds, id);
  uint64_t seg = mds->cluster.segment_size;
  CLEANUP_FREE uint64_t *garbage = NULL;
  uint64_t count = 0;
  size_t ngarbage = 0;
  int r;

  r = catalog_server_count_segments (mds->cat, id, &count);
  if (r < 0)
    return r;
  if (segments)
    *segments = count;
  r = catalog_garbage_get (mds->cat, id, SIZE_MAX, &garbage, &ngarbage);
  if (r < 0)
    return r;
  count = add_sat (count, ngarbage);
  *used = count > UINT64_MAX / seg ? UINT64_MAX : count * seg;
  if (st && st->used > *used)
    *used = st->used;
  return 0;
}

/* Copy server ID's address into ADDR (PROTO_ADDR_MAX + 1 bytes).
 * Returns 0 or a catalog error.
 */
int
mds_server_address (struct mds *mds, uint32_t id, char *addr)
{
  struct catalog_server srv;
  int r;

  r = catalog_server_get (mds->cat, id, &srv);
  if (r < 0)
    return r;
  snprintf (addr, PROTO_ADDR_MAX + 1, "%s", srv.address);
  return 0;
}

/* Add DELTA (negative: remove) to the bytes placed on SERVER by
 * MAP_ALLOCs being committed (struct mds_inflight).  Returns 0, or
 * -ENOMEM (only when DELTA is positive).
 */
int
mds_inflight_change (struct mds *mds, uint32_t server, int64_t delta)
{
  struct mds_inflight *p;
  size_t i;

  for (i = 0; i < mds->ninflight; ++i)
    if (mds->inflight[i].server == server)
      break;
  if (i == mds->ninflight) {
    if (delta <= 0)
      return 0;
    p = realloc (mds->inflight, (mds->ninflight + 1) * sizeof *p);
    if (p == NULL)
      return -ENOMEM;
    mds->inflight = p;
    p[mds->ninflight++] = (struct mds_inflight){ .server = server };
  }
  p = &mds->inflight[i];
  if (delta < 0 && (uint64_t)-delta >= p->bytes)
    *p = mds->inflight[--mds->ninflight];
  else
    p->bytes += delta;
  return 0;
}

/* Bytes placed on SERVER by MAP_ALLOCs being committed. */
uint64_t
mds_inflight_bytes (struct mds *mds, uint32_t server)
{
  size_t i;

  for (i = 0; i < mds->ninflight; ++i)
    if (mds->inflight[i].server == server)
      return mds->inflight[i].bytes;
  return 0;
}

/* Release the in-memory state of every room: servers, leases, jobs,
 * unclean checks and announcements (at exit).
 */
void
mds_state_free (struct mds *mds)
{
  free (mds->servers);
  mds->servers = NULL;
  mds->nservers = 0;
  free (mds->leases);
  mds->leases = NULL;
  mds->nleases = 0;
  free (mds->inflight);
  mds->inflight = NULL;
  mds->ninflight = 0;
  free (mds->copies);
  mds->copies = NULL;
  mds->ncopies = 0;
  free (mds->retries);
  mds->retries = NULL;
  mds->nretries = 0;
  free (mds->resyncs);
  mds->resyncs = NULL;
  mds->nresyncs = 0;
  free (mds->suspects);
  mds->suspects = NULL;
  mds->nsuspects = 0;
  free (mds->unproven);
  mds->unproven = NULL;
  mds->nunproven = 0;
  free (mds->announces);
  mds->announces = NULL;
  mds->nannounces = 0;
  free (mds->scans);
  mds->scans = NULL;
  mds->nscans = 0;
}

/* Placement's view of the servers: one struct placement_index for the
 * MDS's life, built at start-up from the catalog and kept up to date one
 * server at a time, so that neither an allocation nor a repair step
 * sweeps every server (docs/placement.md).
 *
 * Used space.  A server's USED in the index must be what the catalog
 * counts for it (mds_server_used: its replicas and undeleted garbage,
 * or its own report if more) plus what MAP_ALLOCs being committed have
 * placed on it (mds->inflight), with nothing counted twice.  It is set
 * from those numbers whenever they are read anyway: at start-up, when
 * the server registers, at each of its heartbeats and when it drains.
 * In between, placement_index_choose and _choose_extra charge every
 * server they choose one segment, which is what the in-flight list and
 * then the catalog count for it once the choice is used (a MAP_ALLOC
 * enters its choices in mds->inflight before it lets go of the lock, a
 * copy adds its replica to the catalog in mds_copy_prepare); a choice
 * that is not used is uncharged (mds_index_uncharge).  A replica removed
 * becomes garbage and stays counted until the server deletes it and its
 * next heartbeat refreshes the entry.
 *
 * States.  UP follows mds_server_state: it is set when a server
 * registers, heartbeats, drains or is removed, and at the start of every
 * repair pass, which also catches servers that fell silent.  LOAD, the
 * copies running to a server, is set at the start of every pass (and
 * raised by the index itself as repair chooses targets).
 *
 * Every function here runs with mds->lock held, which serialises every
 * use of the index, or at start-up before other threads exist.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "log.h"

#include "internal.h"
#include "placement.h"

/* A zone is low on room below this percentage of its usable space. */
#define ZONE_LOW_PERCENT 10

/* The catalog's used bytes of server ID plus the in-flight ones: what
 * the index must hold for it.  Returns 0 or a catalog error.
 */
static int
authoritative_used (struct mds *mds, uint32_t id, uint64_t *used)
{
  uint64_t inflight = mds_inflight_bytes (mds, id);
  int r;

  r = mds_server_used (mds, id, used, NULL);
  if (r < 0)
    return r;
  *used = *used + inflight < inflight ? UINT64_MAX : *used + inflight;
  return 0;
}

/* Fill OUT, placement's view of catalog server S with USED bytes and
 * LOAD copies headed to it: capacity rounded down to whole segments, up
 * if heard from within the down-timeout and neither draining nor out,
 * the MDS's high-water mark.  OUT->zone borrows S->zone.
 */
static void
fill_server (struct mds *mds, const struct catalog_server *s, uint64_t used,
             uint32_t load, struct placement_server *out)
{
  uint64_t seg = mds->cluster.segment_size;

  memset (out, 0, sizeof *out);
  out->id = s->id;
  out->zone = s->zone;
  out->capacity = mds_server_capacity (mds, s) / seg * seg;
  out->used = used;
  out->up = mds_server_state (mds, s) == PROTO_SERVER_UP;
  out->high_water = mds->high_water;
  out->load = load;
}

/* Build mds->index from the catalog's servers (at start-up).  Returns 0
 * or a negative errno.
 */
int
mds_index_build (struct mds *mds)
{
  CLEANUP_FREE struct catalog_server *servers = NULL;
  CLEANUP_FREE struct placement_server *ps = NULL;
  size_t n, i;
  int r;

  r = catalog_server_list (mds->cat, &servers, &n);
  if (r < 0)
    return r;
  ps = calloc (n ? n : 1, sizeof *ps);
  if (ps == NULL)
    return -ENOMEM;
  for (i = 0; i < n; ++i) {
    uint64_t used;

    r = authoritative_used (mds, servers[i].id, &used);
    if (r < 0)
      return r;
    fill_server (mds, &servers[i], used, 0, &ps[i]);
  }
  mds->index = placement_index_new (ps, n, mds->cluster.segment_size);
  return mds->index ? 0 : -ENOMEM;
}

/* Set the index's entry of catalog server S from the authoritative
 * numbers (its used space is read from the catalog): S registered,
 * heartbeated or changed state.  A failure is logged; the entry is then
 * refreshed at the next chance.
 */
void
mds_index_server (struct mds *mds, const struct catalog_server *s)
{
  const struct placement_server *old =
      placement_index_server (mds->index, s->id);
  struct placement_server ps;
  uint64_t used;
  int r;

  r = authoritative_used (mds, s->id, &used);
  if (r < 0) {
    log_warn ("catalog: server %" PRIu32 ": reading its use: %s", s->id,
              catalog_strerror (r));
    return;
  }
  fill_server (mds, s, used, old ? old->load : 0, &ps);
  r = placement_index_update (mds->index, &ps);
  if (r < 0)
    log_warn ("placement: server %" PRIu32 ": out of memory", s->id);
}

/* True if A and B differ in anything placement_index_update sets. */
static bool
server_differs (const struct placement_server *a,
                const struct placement_server *b)
{
  const char *za = a->zone ? a->zone : "", *zb = b->zone ? b->zone : "";

  return a->capacity != b->capacity || a->used != b->used || a->up != b->up ||
         a->high_water != b->high_water || a->load != b->load ||
         strcmp (za, zb) != 0;
}

/* At the start of a repair pass, with SERVERS[0..N) the catalog's
 * servers: refresh every server's state and capacity (a server may have
 * fallen silent since it last spoke), and set its load to the copies
 * running to it.  Used space is kept as the index has it (see above),
 * except for a server new to the index.  Linear in servers, once a pass.
 */
void
mds_index_pass (struct mds *mds, const struct catalog_server *servers, size_t n)
{
  size_t i;

  for (i = 0; i < n; ++i) {
    const struct placement_server *old =
        placement_index_server (mds->index, servers[i].id);
    uint32_t load = mds->ncopies ? mds_copies_to (mds, servers[i].id) : 0;
    struct placement_server ps;

    if (old == NULL) {
      mds_index_server (mds, &servers[i]);
      continue;
    }
    fill_server (mds, &servers[i], old->used, load, &ps);
    if (server_differs (old, &ps) &&
        placement_index_update (mds->index, &ps) < 0)
      log_warn ("placement: server %" PRIu32 ": out of memory", ps.id);
  }
}

/* Check that the servers IDS[0..N) the index chose are up: a server
 * that fell silent is marked so in the index only at the next repair
 * pass, and an allocation must not wait for that.  Each one found down
 * is marked down now.  Returns how many were down (the caller then
 * uncharges the choice and chooses again).
 */
size_t
mds_index_check_up (struct mds *mds, const uint32_t *ids, size_t n)
{
  size_t i, down = 0;

  for (i = 0; i < n; ++i) {
    const struct placement_server *old =
        placement_index_server (mds->index, ids[i]);
    struct placement_server ps;

    if (old == NULL || mds_server_is_up (mds, ids[i]))
      continue;
    down++;
    ps = *old;
    ps.up = false;
    if (placement_index_update (mds->index, &ps) < 0)
      log_warn ("placement: server %" PRIu32 ": out of memory", ids[i]);
  }
  return down;
}

/* Give back one segment to each of the servers IDS[0..N), chosen by the
 * index but not used after all.
 */
void
mds_index_uncharge (struct mds *mds, const uint32_t *ids, size_t n)
{
  size_t i;

  for (i = 0; i < n; ++i)
    placement_index_charge (mds->index, ids[i],
                            -(int64_t)mds->cluster.segment_size);
}

/* True if zone room Z is low: below ZONE_LOW_PERCENT of its usable
 * space.
 */
static bool
zone_low (const struct placement_zone_room *z)
{
  return z->usable > 0 && z->room < z->usable / 100 * ZONE_LOW_PERCENT;
}

/* The warning state of zone NAME, added (not low) if new; NULL if out
 * of memory.
 */
static struct mds_zone_warn *
zone_warn (struct mds *mds, const char *name)
{
  struct mds_zone_warn *p;
  size_t i;

  for (i = 0; i < mds->nzone_warns; ++i)
    if (strcmp (mds->zone_warns[i].zone, name) == 0)
      return &mds->zone_warns[i];
  p = realloc (mds->zone_warns, (mds->nzone_warns + 1) * sizeof *p);
  if (p == NULL)
    return NULL;
  mds->zone_warns = p;
  p = &p[mds->nzone_warns++];
  memset (p, 0, sizeof *p);
  snprintf (p->zone, sizeof p->zone, "%s", name);
  return p;
}

/* Whether server P, up, has room below its high-water mark for a new
 * segment.
 */
static bool
server_has_room (const struct placement_server *p, uint64_t seg)
{
  uint64_t cap = p->capacity, pct = p->high_water;
  uint64_t mark =
      pct == 0 || pct >= 100 ? cap : cap / 100 * pct + cap % 100 * pct / 100;

  return p->up && p->used < mark && mark - p->used >= seg;
}

/* Warn, once per change, about zones low on room and about too few
 * failure domains with room for the volume with the most replicas,
 * REPLICAS_MAX (0: no volume); SERVERS[0..N) are the catalog's servers.
 * Records what it found for STATUS.  Called after each repair pass.
 */
void
mds_index_zones_check (struct mds *mds, const struct catalog_server *servers,
                       size_t n, uint32_t replicas_max)
{
  uint64_t seg = mds->cluster.segment_size;
  CLEANUP_FREE struct placement_zone_room *zones = NULL;
  size_t nz, i;
  uint32_t room = 0, needed;
  bool short_now;

  zones = calloc (n + 1, sizeof *zones);
  if (zones == NULL)
    return;
  nz = placement_index_zones (mds->index, zones, n + 1);
  if (nz > n + 1)
    nz = n + 1;
  for (i = 0; i < nz; ++i) {
    const struct placement_zone_room *z = &zones[i];
    struct mds_zone_warn *w;
    bool low = zone_low (z);

    if (z->zone[0] != '\0' && z->room >= seg)
      room++;
    w = zone_warn (mds, z->zone[0] ? z->zone : "");
    if (w == NULL || w->low == low)
      continue;
    w->low = low;
    if (low)
      log_warn ("zone %s has room for %" PRIu64 " segments, below %d %% of "
                "its usable space (%" PRIu64 " segments on %" PRIu32
                " servers up)",
                z->zone[0] ? z->zone : "(none)", z->room / seg,
                ZONE_LOW_PERCENT, z->usable / seg, z->servers);
    else
      log_info ("zone %s has room for %" PRIu64 " segments again",
                z->zone[0] ? z->zone : "(none)", z->room / seg);
  }
  /* A server without a zone is a failure domain of its own. */
  for (i = 0; i < n; ++i) {
    const struct placement_server *p;

    if (servers[i].zone[0] != '\0')
      continue;
    p = placement_index_server (mds->index, servers[i].id);
    if (p && server_has_room (p, seg))
      room++;
  }
  needed = replicas_max
               ? placement_index_domains_needed (mds->index, replicas_max)
               : 0;
  mds->domains_needed = needed;
  mds->domains_room = room;
  short_now = room < needed;
  if (short_now != mds->domains_warned) {
    mds->domains_warned = short_now;
    if (short_now) {
      char why[PROTO_ERRMSG_MAX];

      placement_index_explain (mds->index, replicas_max, why, sizeof why);
      log_warn ("placement: only %" PRIu32 " failure domains have room for "
                "a new segment, volumes of %" PRIu32 " replicas need %" PRIu32
                ": %s",
                room, replicas_max, needed, why);
    }
    else
      log_info ("placement: %" PRIu32 " failure domains have room for a new "
                "segment again (%" PRIu32 " needed)",
                room, needed);
  }
}

/* Fill INFO's placement fields for STATUS: the misplaced count of the
 * last complete repair pass, the domains, and the room of every zone.
 */
void
mds_index_status (struct mds *mds, struct proto_status_info *info)
{
  struct placement_zone_room zones[PROTO_STATUS_ZONES_MAX];
  size_t nz, i;

  info->misplaced = mds->misplaced;
  info->domains_needed = mds->domains_needed;
  info->domains_room = mds->domains_room;
  nz = placement_index_zones (mds->index, zones, PROTO_STATUS_ZONES_MAX);
  info->zones_total = nz > UINT32_MAX ? UINT32_MAX : nz;
  info->nzones = nz < PROTO_STATUS_ZONES_MAX ? nz : PROTO_STATUS_ZONES_MAX;
  for (i = 0; i < info->nzones; ++i) {
    struct proto_zone_room *z = &info->zones[i];

    snprintf (z->zone, sizeof z->zone, "%s", zones[i].zone);
    z->servers = zones[i].servers;
    z->flags = zone_low (&zones[i]) ? PROTO_ZONE_LOW : 0;
    z->room = zones[i].room;
    z->usable = zones[i].usable;
  }
}

/* Release the index and the zone warnings (at exit). */
void
mds_index_free (struct mds *mds)
{
  placement_index_free (mds->index);
  mds->index = NULL;
  free (mds->zone_warns);
  mds->zone_warns = NULL;
  mds->nzone_warns = 0;
}

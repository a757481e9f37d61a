/* tessera status: the cluster at a glance. */

#include <config.h>

#include <inttypes.h>
#include <stdio.h>

#include "internal.h"
#include "cleanup.h"
#include "parse.h"

/* Print the STATUS (or REPAIR) reply as JSON. */
void
tool_print_status_json (struct tool_ctx *ctx,
                        const struct proto_status_info *st)
{
  struct tool_json j;
  char uuid[37];
  uint32_t i;

  uuid_format (st->cluster_uuid, uuid);
  tool_json_init (&j, ctx->out);
  tool_json_begin_object (&j);
  tool_json_kv_string (&j, "cluster_uuid", uuid);
  tool_json_kv_uint (&j, "segment_size", st->segment_size);
  tool_json_kv_uint (&j, "servers", st->servers);
  tool_json_kv_uint (&j, "servers_up", st->servers_up);
  tool_json_kv_uint (&j, "volumes", st->volumes);
  tool_json_kv_uint (&j, "segments", st->segments);
  tool_json_kv_uint (&j, "capacity", st->capacity);
  tool_json_kv_uint (&j, "used", st->used);
  tool_json_kv_uint (&j, "degraded", st->degraded);
  tool_json_kv_uint (&j, "syncing", st->syncing);
  tool_json_kv_uint (&j, "resyncing", st->resyncing);
  tool_json_kv_uint (&j, "unproven", st->unproven);
  tool_json_kv_uint (&j, "misplaced", st->misplaced);
  tool_json_kv_uint (&j, "domains_needed", st->domains_needed);
  tool_json_kv_uint (&j, "domains_room", st->domains_room);
  tool_json_kv_uint (&j, "zones_total", st->zones_total);
  tool_json_key (&j, "zones");
  tool_json_begin_array (&j);
  for (i = 0; i < st->nzones; ++i) {
    const struct proto_zone_room *z = &st->zones[i];

    tool_json_begin_object (&j);
    tool_json_kv_string (&j, "zone", z->zone);
    tool_json_kv_uint (&j, "servers", z->servers);
    tool_json_kv_uint (&j, "room", z->room);
    tool_json_kv_uint (&j, "usable", z->usable);
    tool_json_kv_bool (&j, "low", (z->flags & PROTO_ZONE_LOW) != 0);
    tool_json_end_object (&j);
  }
  tool_json_end_array (&j);
  tool_json_end_object (&j);
  tool_json_finish (&j);
}

/* The name of zone Z for humans, sanitized, into BUF (LEN bytes). */
static void
zone_name (const struct proto_zone_room *z, char *buf, size_t len)
{
  if (z->zone[0] == '\0')
    snprintf (buf, len, "(no zone)");
  else
    tool_sanitize (z->zone, buf, len);
}

/* Print the room of every zone of ST, then a warning line for each zone
 * low on room and one if too few failure domains have room for a new
 * segment (allocations fail).
 */
static void
print_zones (FILE *fp, const struct proto_status_info *st)
{
  uint64_t seg = st->segment_size ? st->segment_size : 1;
  char name[PROTO_ZONE_MAX * 3 + 1], key[PROTO_ZONE_MAX * 3 + 8];
  char room[32], usable[32];
  uint32_t i;

  for (i = 0; i < st->nzones; ++i) {
    const struct proto_zone_room *z = &st->zones[i];

    zone_name (z, name, sizeof name);
    snprintf (key, sizeof key, "zone %s", name);
    format_size (z->room, room, sizeof room);
    format_size (z->usable, usable, sizeof usable);
    tool_print_field (
        fp, key, "%s of %s free (%" PRIu64 " segments), %" PRIu32 " servers up",
        room, usable, z->room / seg, z->servers);
  }
  if (st->zones_total > st->nzones)
    tool_print_field (fp, "zones", "%" PRIu32 " more not shown",
                      st->zones_total - st->nzones);
  for (i = 0; i < st->nzones; ++i) {
    const struct proto_zone_room *z = &st->zones[i];

    if (!(z->flags & PROTO_ZONE_LOW))
      continue;
    zone_name (z, name, sizeof name);
    fprintf (fp,
             "warning: zone %s has room for %" PRIu64
             " segments, below 10 %% of its usable space\n",
             name, z->room / seg);
  }
  if (st->domains_room < st->domains_needed)
    fprintf (fp,
             "warning: only %" PRIu32 " failure domains have room for a "
             "new segment, %" PRIu32 " needed: allocations fail\n",
             st->domains_room, st->domains_needed);
}

/* Print the STATUS reply for humans. */
static void
print_human (struct tool_ctx *ctx, const struct proto_status_info *st)
{
  char uuid[37], segsize[32], capacity[32], used[32];
  FILE *fp = ctx->out;

  uuid_format (st->cluster_uuid, uuid);
  format_size (st->segment_size, segsize, sizeof segsize);
  format_size (st->capacity, capacity, sizeof capacity);
  format_size (st->used, used, sizeof used);

  tool_print_field (fp, "cluster", "%s", uuid);
  tool_print_field (fp, "segment size", "%s", segsize);
  tool_print_field (fp, "servers", "%" PRIu32 " up, %" PRIu32 " total",
                    st->servers_up, st->servers);
  tool_print_field (fp, "volumes", "%" PRIu32, st->volumes);
  tool_print_field (fp, "segments", "%" PRIu64, st->segments);
  tool_print_field (fp, "capacity", "%s", capacity);
  tool_print_field (fp, "used", "%s", used);
  tool_print_field (fp, "degraded", "%" PRIu64 " segments", st->degraded);
  tool_print_field (fp, "syncing", "%" PRIu64 " replicas", st->syncing);
  tool_print_field (fp, "resyncing", "%" PRIu32 " volumes", st->resyncing);
  tool_print_field (fp, "unproven", "%" PRIu64 " segments", st->unproven);
  tool_print_field (fp, "misplaced", "%" PRIu64 " segments", st->misplaced);
  print_zones (fp, st);
}

/* tessera status */
int
tool_cmd_status (struct tool_ctx *ctx, char **args)
{
  CLEANUP_FREE struct proto_status_info *st = NULL;
  int r;

  r = tool_get_status (ctx, "status", &st);
  if (r < 0)
    return r;

  if (ctx->json)
    tool_print_status_json (ctx, st);
  else
    print_human (ctx, st);
  return 0;
}

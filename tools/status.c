/* tessera status: the cluster at a glance. */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>

#include "internal.h"
#include "cleanup.h"
#include "parse.h"

/* The HA part of ST as JSON members: the leader, its standbys, etcd. */
static void
json_ha (struct tool_json *j, const struct proto_status_info *st)
{
  uint32_t i;

  tool_json_kv_string (j, "leader", st->mds_name);
  tool_json_kv_uint (j, "epoch", st->epoch);
  tool_json_kv_uint (j, "published", st->published);
  tool_json_kv_string (j, "sync_standby", st->sync);
  tool_json_key (j, "standbys");
  tool_json_begin_array (j);
  for (i = 0; i < st->nstandbys; ++i) {
    const struct proto_standby_info *sb = &st->standbys[i];

    tool_json_begin_object (j);
    tool_json_kv_string (j, "name", sb->name);
    tool_json_kv_bool (j, "sync", (sb->flags & PROTO_STANDBY_SYNC) != 0);
    tool_json_kv_uint (j, "acked", sb->acked);
    tool_json_kv_uint (j, "lag", sb->lag);
    tool_json_kv_uint (j, "last_seen_ms", sb->seen_ms);
    tool_json_end_object (j);
  }
  tool_json_end_array (j);
  /* REPAIR's reply does not ask etcd. */
  if (st->netcd == 0)
    return;
  tool_json_key (j, "etcd");
  tool_json_begin_array (j);
  for (i = 0; i < st->netcd; ++i) {
    const struct proto_etcd_info *e = &st->etcd[i];

    tool_json_begin_object (j);
    tool_json_kv_string (j, "url", e->url);
    tool_json_kv_bool (j, "healthy", (e->flags & PROTO_ETCD_HEALTHY) != 0);
    tool_json_kv_string (j, "version", e->version);
    tool_json_kv_bool (j, "leader", (e->flags & PROTO_ETCD_LEADER) != 0);
    tool_json_end_object (j);
  }
  tool_json_end_array (j);
}

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
  tool_json_kv_bool (&j, "ha", (st->ha_flags & PROTO_STATUS_HA) != 0);
  if (st->ha_flags & PROTO_STATUS_HA)
    json_ha (&j, st);
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

/* Print the metadata servers of ST (with --etcd): the leader and its
 * standbys in a table, then whether one may take over.  Returns 0 or
 * -ENOMEM (printed).
 */
static int
print_mds (FILE *fp, const struct proto_status_info *st)
{
  static const char *const headers[] = {
    "NAME", "ROLE", "ACKED", "LAG", "SEEN",
  };
  struct tool_table t;
  char acked[24], lag[24], seen[32];
  uint32_t i;
  int r;

  fprintf (fp, "\nMetadata servers (epoch %" PRIu64 ", change %" PRIu64 "):\n",
           st->epoch, st->published);
  tool_table_init (&t, 5, headers, "llrrr");
  snprintf (acked, sizeof acked, "%" PRIu64, st->published);
  r = tool_table_add_row (&t, st->mds_name, "leader", acked, "-", "-");
  for (i = 0; i < st->nstandbys && r == 0; ++i) {
    const struct proto_standby_info *sb = &st->standbys[i];

    snprintf (acked, sizeof acked, "%" PRIu64, sb->acked);
    snprintf (lag, sizeof lag, "%" PRIu64, sb->lag);
    snprintf (seen, sizeof seen, "%.1f s ago", sb->seen_ms / 1000.0);
    r = tool_table_add_row (&t, sb->name,
                            sb->flags & PROTO_STANDBY_SYNC ? "standby (sync)"
                                                           : "standby",
                            acked, lag, seen);
  }
  if (r == 0)
    tool_table_print (&t, fp);
  tool_table_free (&t);
  if (r < 0) {
    tool_error ("status: out of memory");
    return r;
  }
  if (st->sync[0] == '\0')
    fprintf (fp, "no synchronous standby: no other MDS may take over\n");
  return 0;
}

/* Print the health of etcd's endpoints in ST, if asked.  Returns 0 or
 * -ENOMEM (printed).
 */
static int
print_etcd (FILE *fp, const struct proto_status_info *st)
{
  static const char *const headers[] = {
    "ENDPOINT",
    "HEALTH",
    "VERSION",
    "LEADER",
  };
  struct tool_table t;
  uint32_t i;
  int r = 0;

  if (st->netcd == 0)
    return 0;
  fprintf (fp, "\netcd:\n");
  tool_table_init (&t, 4, headers, "llll");
  for (i = 0; i < st->netcd && r == 0; ++i) {
    const struct proto_etcd_info *e = &st->etcd[i];
    bool ok = e->flags & PROTO_ETCD_HEALTHY;

    r = tool_table_add_row (&t, e->url, ok ? "healthy" : "unhealthy",
                            ok ? e->version : "-",
                            e->flags & PROTO_ETCD_LEADER ? "yes"
                            : ok                         ? "no"
                                                         : "-");
  }
  if (r == 0)
    tool_table_print (&t, fp);
  tool_table_free (&t);
  if (r < 0)
    tool_error ("status: out of memory");
  return r;
}

/* Print the STATUS reply for humans.  Returns 0 or -errno (printed). */
static int
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
  if (!(st->ha_flags & PROTO_STATUS_HA))
    return 0;
  if (print_mds (fp, st) < 0 || print_etcd (fp, st) < 0)
    return -ENOMEM;
  return 0;
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

  if (ctx->json) {
    tool_print_status_json (ctx, st);
    return 0;
  }
  return print_human (ctx, st);
}

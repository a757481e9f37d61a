/* tessera status: the cluster at a glance. */

#include <config.h>

#include <inttypes.h>
#include <stdio.h>

#include "internal.h"
#include "parse.h"

/* Print the STATUS (or REPAIR) reply as JSON. */
void
tool_print_status_json (struct tool_ctx *ctx,
                        const struct proto_status_info *st)
{
  struct tool_json j;
  char uuid[37];

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
  tool_json_end_object (&j);
  tool_json_finish (&j);
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
}

/* tessera status */
int
tool_cmd_status (struct tool_ctx *ctx, char **args)
{
  struct proto_status_info st;
  int r;

  r = tool_get_status (ctx, "status", &st);
  if (r < 0)
    return r;

  if (ctx->json)
    tool_print_status_json (ctx, &st);
  else
    print_human (ctx, &st);
  return 0;
}

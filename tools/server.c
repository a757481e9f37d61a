/* tessera server list: the storage servers the MDS knows. */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#include "internal.h"
#include "cleanup.h"
#include "parse.h"

/* Print the list as {"servers": [...]}. */
static void
print_json (struct tool_ctx *ctx, const struct proto_server_list *list)
{
  struct tool_json j;
  uint32_t i;

  tool_json_init (&j, ctx->out);
  tool_json_begin_object (&j);
  tool_json_key (&j, "servers");
  tool_json_begin_array (&j);
  for (i = 0; i < list->n; ++i) {
    const struct proto_server_info *s = &list->servers[i];
    char uuid[37];

    uuid_format (s->uuid, uuid);
    tool_json_begin_object (&j);
    tool_json_kv_uint (&j, "id", s->id);
    tool_json_kv_string (&j, "address", s->address);
    tool_json_kv_string (&j, "zone", s->zone);
    tool_json_kv_string (&j, "state", proto_server_state_name (s->state));
    tool_json_kv_uint (&j, "capacity", s->capacity);
    tool_json_kv_uint (&j, "used", s->used);
    tool_json_kv_uint (&j, "segments", s->segments);
    tool_json_kv_string (&j, "uuid", uuid);
    tool_json_end_object (&j);
  }
  tool_json_end_array (&j);
  tool_json_end_object (&j);
  tool_json_finish (&j);
}

/* Print the list as a table.  Returns 0 or -ENOMEM (printed). */
static int
print_table (struct tool_ctx *ctx, const struct proto_server_list *list)
{
  static const char *const headers[] = {
    "ID", "ADDRESS", "ZONE", "STATE", "CAPACITY", "USED", "SEGMENTS",
  };
  struct tool_table t;
  uint32_t i;
  int r = 0;

  tool_table_init (&t, 7, headers, "rlllrrr");
  for (i = 0; i < list->n && r == 0; ++i) {
    const struct proto_server_info *s = &list->servers[i];
    char id[16], capacity[32], used[32], segments[32];

    snprintf (id, sizeof id, "%" PRIu32, s->id);
    format_size (s->capacity, capacity, sizeof capacity);
    format_size (s->used, used, sizeof used);
    snprintf (segments, sizeof segments, "%" PRIu64, s->segments);
    r = tool_table_add_row (&t, id, s->address, s->zone[0] ? s->zone : "-",
                            proto_server_state_name (s->state), capacity, used,
                            segments);
  }
  if (r == 0)
    tool_table_print (&t, ctx->out);
  else
    tool_error ("server list: out of memory");
  tool_table_free (&t);
  return r;
}

/* tessera server list */
int
tool_cmd_server_list (struct tool_ctx *ctx, char **args)
{
  const char *what = "server list";
  struct proto_server_list list = { 0 };
  CLEANUP_FREE void *reply = NULL;
  uint32_t len;
  int r;

  r = tool_call (ctx, what, PROTO_OP_SERVER_LIST, NULL, &reply, &len);
  if (r < 0)
    return r;
  r = proto_decode_server_list (reply, len, &list);
  if (r < 0)
    return tool_bad_reply (ctx, what, r);

  if (ctx->json)
    print_json (ctx, &list);
  else
    r = print_table (ctx, &list);
  proto_server_list_free (&list);
  return r;
}

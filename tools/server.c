/* tessera server list|drain|remove: the storage servers the MDS knows. */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
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
  struct proto_server_list list;
  int r;

  r = tool_get_servers (ctx, "server list", &list);
  if (r < 0)
    return r;

  if (ctx->json)
    print_json (ctx, &list);
  else
    r = print_table (ctx, &list);
  proto_server_list_free (&list);
  return r;
}

/* Send OPCODE (SERVER_DRAIN or SERVER_REMOVE) for the server whose id is
 * ARG; CMD names the command ("server drain").  On success prints
 * "server ID: DONE" for humans, or {"server": ID, KEY: VALUE} with
 * --json.
 */
static int
server_request (struct tool_ctx *ctx, const char *cmd, uint8_t opcode,
                const char *arg, const char *done, const char *key,
                const char *value)
{
  struct proto_server_request req;
  struct proto_wbuf wb = { 0 };
  CLEANUP_FREE void *reply = NULL;
  char what[64];
  uint32_t len;
  int r;

  if (parse_uint32 (arg, 0, UINT32_MAX, &req.server) < 0) {
    tool_error ("%s: %s: invalid server id (a number from "
                "\"server list\")",
                cmd, arg);
    return -EINVAL;
  }
  snprintf (what, sizeof what, "%s: %" PRIu32, cmd, req.server);

  proto_encode_server_request (&req, &wb);
  r = tool_call (ctx, what, opcode, &wb, &reply, &len);
  proto_wbuf_free (&wb);
  if (r < 0)
    return r;

  if (ctx->json) {
    struct tool_json j;

    tool_json_init (&j, ctx->out);
    tool_json_begin_object (&j);
    tool_json_kv_uint (&j, "server", req.server);
    if (value)
      tool_json_kv_string (&j, key, value);
    else
      tool_json_kv_bool (&j, key, true);
    tool_json_end_object (&j);
    tool_json_finish (&j);
  }
  else
    fprintf (ctx->out, "server %" PRIu32 ": %s\n", req.server, done);
  return 0;
}

/* tessera server drain ID: move every replica off server ID (the MDS's
 * repair thread does it; this returns at once).
 */
int
tool_cmd_server_drain (struct tool_ctx *ctx, char **args)
{
  return server_request (ctx, "server drain", PROTO_OP_SERVER_DRAIN, args[0],
                         "draining", "state", "draining");
}

/* tessera server remove ID: forget a server that holds nothing. */
int
tool_cmd_server_remove (struct tool_ctx *ctx, char **args)
{
  return server_request (ctx, "server remove", PROTO_OP_SERVER_REMOVE, args[0],
                         "removed", "removed", NULL);
}

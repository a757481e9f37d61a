/* tessera volume create|list|info|resize|delete */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "cleanup.h"
#include "parse.h"

/* Parse a volume size: parse_size, then a multiple of 512. */
int
tool_parse_volume_size (const char *opt, const char *s, uint64_t *out)
{
  int r = parse_size (s, out);

  if (r == -ERANGE) {
    tool_error ("%s: %s: size too large", opt, s);
    return r;
  }
  if (r < 0) {
    tool_error ("%s: %s: invalid size", opt, s);
    return r;
  }
  if (*out % 512 != 0) {
    tool_error ("%s: %s: the size must be a multiple of 512 bytes", opt, s);
    return -EINVAL;
  }
  return 0;
}

/* The STATE column: "open-rw" while a writer holds the lease, else
 * "clean" or "dirty" after the last writer.
 */
static const char *
volume_state (const struct proto_volume_info *v)
{
  if (v->flags & PROTO_VOL_OPEN_RW)
    return "open-rw";
  if (v->flags & PROTO_VOL_CLEAN)
    return "clean";
  return "dirty";
}

/* Write the JSON object of volume V. */
static void
json_volume (struct tool_json *j, const struct proto_volume_info *v)
{
  tool_json_begin_object (j);
  tool_json_kv_uint (j, "id", v->id);
  tool_json_kv_string (j, "name", v->name);
  tool_json_kv_uint (j, "size", v->size);
  tool_json_kv_uint (j, "replicas", v->replicas);
  tool_json_kv_uint (j, "min_copies", v->min_copies);
  tool_json_kv_uint (j, "segments", v->segments);
  tool_json_kv_uint (j, "epoch", v->epoch);
  tool_json_kv_bool (j, "clean", (v->flags & PROTO_VOL_CLEAN) != 0);
  tool_json_kv_bool (j, "open", (v->flags & PROTO_VOL_OPEN_RW) != 0);
  tool_json_end_object (j);
}

/* Print one volume: a JSON document or a key/value block.  Used by
 * create, info and resize.
 */
static void
print_volume (struct tool_ctx *ctx, const struct proto_volume_info *v)
{
  char name[PROTO_NAME_MAX + 1], size[32];

  if (ctx->json) {
    struct tool_json j;

    tool_json_init (&j, ctx->out);
    json_volume (&j, v);
    tool_json_finish (&j);
    return;
  }

  tool_sanitize (v->name, name, sizeof name);
  format_size (v->size, size, sizeof size);
  tool_print_field (ctx->out, "name", "%s", name);
  tool_print_field (ctx->out, "id", "%" PRIu64, v->id);
  tool_print_field (ctx->out, "size", "%s (%" PRIu64 " bytes)", size, v->size);
  tool_print_field (ctx->out, "replicas", "%" PRIu32, v->replicas);
  tool_print_field (ctx->out, "min-copies", "%" PRIu32, v->min_copies);
  tool_print_field (ctx->out, "segments", "%" PRIu64, v->segments);
  tool_print_field (ctx->out, "epoch", "%" PRIu64, v->epoch);
  tool_print_field (ctx->out, "state", "%s", volume_state (v));
}

/* Send a VOL_* request that returns a volume info (VOL_CREATE,
 * VOL_RESIZE) and decode it into OUT.
 */
static int
volume_request (struct tool_ctx *ctx, const char *what, uint8_t opcode,
                const struct proto_vol_request *req,
                struct proto_volume_info *out)
{
  struct proto_wbuf wb = { 0 };
  CLEANUP_FREE void *reply = NULL;
  uint32_t len;
  int r;

  proto_encode_vol_request (req, &wb);
  r = tool_call (ctx, what, opcode, &wb, &reply, &len);
  proto_wbuf_free (&wb);
  if (r < 0)
    return r;
  r = proto_decode_volume_info (reply, len, out);
  if (r < 0)
    return tool_bad_reply (ctx, what, r);
  return 0;
}

/* tessera volume create NAME --size SIZE [--replicas N] [--min-copies N].
 * The MDS checks min-copies against the replica count (one rule, one
 * message).
 */
int
tool_cmd_volume_create (struct tool_ctx *ctx, char **args)
{
  struct proto_vol_request req = { 0 };
  struct proto_volume_info v;
  char what[TOOL_WHAT_MAX];
  int r;

  tool_what (what, sizeof what, "volume create", args[0]);
  r = tool_check_name (what, args[0]);
  if (r < 0)
    return r;

  req.size = ctx->size;
  req.replicas = ctx->replicas_set ? ctx->replicas : TOOL_DEFAULT_REPLICAS;
  req.min_copies = ctx->min_copies_set ? ctx->min_copies : 0;
  strcpy (req.name, args[0]);
  r = volume_request (ctx, what, PROTO_OP_VOL_CREATE, &req, &v);
  if (r < 0)
    return r;
  print_volume (ctx, &v);
  return 0;
}

/* Print the volume list as {"volumes": [...]}. */
static void
list_json (struct tool_ctx *ctx, const struct proto_volume_list *list)
{
  struct tool_json j;
  uint32_t i;

  tool_json_init (&j, ctx->out);
  tool_json_begin_object (&j);
  tool_json_key (&j, "volumes");
  tool_json_begin_array (&j);
  for (i = 0; i < list->n; ++i)
    json_volume (&j, &list->volumes[i]);
  tool_json_end_array (&j);
  tool_json_end_object (&j);
  tool_json_finish (&j);
}

/* Print the volume list as a table.  Returns 0 or -ENOMEM (printed). */
static int
list_table (struct tool_ctx *ctx, const struct proto_volume_list *list)
{
  static const char *const headers[] = {
    "ID",         "NAME",     "SIZE",  "REPLICAS",
    "MIN-COPIES", "SEGMENTS", "EPOCH", "STATE",
  };
  struct tool_table t;
  uint32_t i;
  int r = 0;

  tool_table_init (&t, 8, headers, "rlrrrrrl");
  for (i = 0; i < list->n && r == 0; ++i) {
    const struct proto_volume_info *v = &list->volumes[i];
    char id[32], size[32], replicas[16], min[16], segments[32], epoch[32];

    snprintf (id, sizeof id, "%" PRIu64, v->id);
    format_size (v->size, size, sizeof size);
    snprintf (replicas, sizeof replicas, "%" PRIu32, v->replicas);
    snprintf (min, sizeof min, "%" PRIu32, v->min_copies);
    snprintf (segments, sizeof segments, "%" PRIu64, v->segments);
    snprintf (epoch, sizeof epoch, "%" PRIu64, v->epoch);
    r = tool_table_add_row (&t, id, v->name, size, replicas, min, segments,
                            epoch, volume_state (v));
  }
  if (r == 0)
    tool_table_print (&t, ctx->out);
  else
    tool_error ("volume list: out of memory");
  tool_table_free (&t);
  return r;
}

/* tessera volume list */
int
tool_cmd_volume_list (struct tool_ctx *ctx, char **args)
{
  const char *what = "volume list";
  struct proto_volume_list list = { 0 };
  CLEANUP_FREE void *reply = NULL;
  uint32_t len;
  int r;

  r = tool_call (ctx, what, PROTO_OP_VOL_LIST, NULL, &reply, &len);
  if (r < 0)
    return r;
  r = proto_decode_volume_list (reply, len, &list);
  if (r < 0)
    return tool_bad_reply (ctx, what, r);

  if (ctx->json)
    list_json (ctx, &list);
  else
    r = list_table (ctx, &list);
  proto_volume_list_free (&list);
  return r;
}

/* tessera volume info NAME */
int
tool_cmd_volume_info (struct tool_ctx *ctx, char **args)
{
  struct proto_volume_info v;
  char what[TOOL_WHAT_MAX];
  int r;

  tool_what (what, sizeof what, "volume info", args[0]);
  r = tool_get_volume (ctx, what, args[0], &v);
  if (r < 0)
    return r;
  print_volume (ctx, &v);
  return 0;
}

/* tessera volume resize NAME SIZE */
int
tool_cmd_volume_resize (struct tool_ctx *ctx, char **args)
{
  struct proto_vol_request req = { 0 };
  struct proto_volume_info v;
  char what[TOOL_WHAT_MAX];
  int r;

  tool_what (what, sizeof what, "volume resize", args[0]);
  r = tool_check_name (what, args[0]);
  if (r < 0)
    return r;
  r = tool_parse_volume_size (what, args[1], &req.size);
  if (r < 0)
    return r;

  strcpy (req.name, args[0]);
  r = volume_request (ctx, what, PROTO_OP_VOL_RESIZE, &req, &v);
  if (r < 0)
    return r;
  print_volume (ctx, &v);
  return 0;
}

/* tessera volume delete NAME.  Prints nothing for humans; with --json,
 * {"volume": NAME, "deleted": true} so that there is always a document.
 */
int
tool_cmd_volume_delete (struct tool_ctx *ctx, char **args)
{
  struct proto_vol_request req = { 0 };
  struct proto_wbuf wb = { 0 };
  CLEANUP_FREE void *reply = NULL;
  char what[TOOL_WHAT_MAX];
  uint32_t len;
  int r;

  tool_what (what, sizeof what, "volume delete", args[0]);
  r = tool_check_name (what, args[0]);
  if (r < 0)
    return r;

  strcpy (req.name, args[0]);
  proto_encode_vol_request (&req, &wb);
  r = tool_call (ctx, what, PROTO_OP_VOL_DELETE, &wb, &reply, &len);
  proto_wbuf_free (&wb);
  if (r < 0)
    return r;

  if (ctx->json) {
    struct tool_json j;

    tool_json_init (&j, ctx->out);
    tool_json_begin_object (&j);
    tool_json_kv_string (&j, "volume", args[0]);
    tool_json_kv_bool (&j, "deleted", true);
    tool_json_end_object (&j);
    tool_json_finish (&j);
  }
  return 0;
}

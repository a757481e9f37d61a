/* tessera volume map NAME: where each allocated segment lives.
 *
 * The map comes in MAP_GET chunks of at most PROTO_MAP_MAX segment
 * indexes, covering the whole volume (its size from VOL_INFO, the segment
 * size from STATUS).  JSON is written as the chunks arrive; the table is
 * collected first to align its columns.  Segments whose replicas span
 * fewer failure domains than the MDS's rule asks (misplaced) are marked:
 * the zones and states come from SERVER_LIST, and the rule is the
 * MDS's (tessera-mds(8), "Failure domains").
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "cleanup.h"
#include "parse.h"
#include "minmax.h"

/* Format the byte offset OFFSET exactly, in the largest unit that
 * divides it ("16360M", not format_size's rounded "16.0G").
 */
static void
format_offset (uint64_t offset, char *buf, size_t len)
{
  static const char units[] = "KMGTPE";
  int i;

  for (i = 5; i >= 0; --i) {
    uint64_t unit = UINT64_C (1) << (10 * (i + 1));

    if (offset != 0 && offset % unit == 0) {
      snprintf (buf, len, "%" PRIu64 "%c", offset / unit, units[i]);
      return;
    }
  }
  snprintf (buf, len, "%" PRIu64, offset);
}

/* Where the output of one map goes: a JSON writer or a table. */
struct map_out {
  struct tool_ctx *ctx;
  uint32_t segment_size;
  uint32_t replicas;   /* the volume's */
  uint32_t domains_up; /* failure domains with a server up */
  struct proto_server_list servers;
  struct tool_json j;
  struct tool_table t;
};

/* The server with id ID in M's server list, or NULL. */
static const struct proto_server_info *
find_server (const struct map_out *m, uint32_t id)
{
  uint32_t i;

  for (i = 0; i < m->servers.n; ++i)
    if (m->servers.servers[i].id == id)
      return &m->servers.servers[i];
  return NULL;
}

/* True if servers A and B are in one failure domain: the
 * same zone name, or the same server when it has no zone.
 */
static bool
same_domain (const struct proto_server_info *a,
             const struct proto_server_info *b)
{
  if (a->zone[0] == '\0' || b->zone[0] == '\0')
    return a->id == b->id;
  return strcmp (a->zone, b->zone) == 0;
}

/* Count into M->domains_up the failure domains with a server up. */
static void
count_domains (struct map_out *m)
{
  uint32_t i, j;

  m->domains_up = 0;
  for (i = 0; i < m->servers.n; ++i) {
    const struct proto_server_info *s = &m->servers.servers[i];

    if (s->state != PROTO_SERVER_UP)
      continue;
    for (j = 0; j < i; ++j)
      if (m->servers.servers[j].state == PROTO_SERVER_UP &&
          same_domain (&m->servers.servers[j], s))
        break;
    if (j == i)
      m->domains_up++;
  }
}

/* True if entry E is misplaced: its replicas on servers neither out nor
 * draining (unknown ones count as out) span fewer failure domains than
 * min (those replicas, the volume's replicas, domains with a server up).
 */
static bool
misplaced (const struct map_out *m, const struct proto_map_entry *e)
{
  const struct proto_server_info *held[PROTO_REPLICAS_MAX];
  uint32_t i, j, n = 0, spans = 0, needed;

  for (i = 0; i < e->nreplicas && i < PROTO_REPLICAS_MAX; ++i) {
    const struct proto_server_info *s = find_server (m, e->replicas[i].server);

    if (s && s->state != PROTO_SERVER_OUT && s->state != PROTO_SERVER_DRAINING)
      held[n++] = s;
  }
  for (i = 0; i < n; ++i) {
    for (j = 0; j < i; ++j)
      if (same_domain (held[j], held[i]))
        break;
    if (j == i)
      spans++;
  }
  needed = MIN (m->replicas, m->domains_up);
  return spans < MIN (n, needed);
}

/* Add entry E to the output.  Returns 0 or -ENOMEM. */
static int
add_entry (struct map_out *m, const struct proto_map_entry *e)
{
  char idx[32], offset[32], seg[32], replicas[PROTO_REPLICAS_MAX * 24];
  size_t used = 0;
  unsigned i;

  if (m->ctx->json) {
    tool_json_begin_object (&m->j);
    tool_json_kv_uint (&m->j, "index", e->index);
    tool_json_kv_uint (&m->j, "id", e->segment);
    tool_json_kv_uint (&m->j, "gen", e->gen);
    tool_json_key (&m->j, "replicas");
    tool_json_begin_array (&m->j);
    for (i = 0; i < e->nreplicas; ++i) {
      tool_json_begin_object (&m->j);
      tool_json_kv_uint (&m->j, "server", e->replicas[i].server);
      tool_json_kv_string (&m->j, "state",
                           proto_replica_state_name (e->replicas[i].state));
      tool_json_end_object (&m->j);
    }
    tool_json_end_array (&m->j);
    tool_json_kv_bool (&m->j, "misplaced", misplaced (m, e));
    tool_json_end_object (&m->j);
    return 0;
  }

  /* "SERVER:STATE" for each replica, space separated. */
  replicas[0] = '\0';
  for (i = 0; i < e->nreplicas && used < sizeof replicas; ++i)
    used += snprintf (replicas + used, sizeof replicas - used,
                      "%s%" PRIu32 ":%s", i ? " " : "", e->replicas[i].server,
                      proto_replica_state_name (e->replicas[i].state));
  snprintf (idx, sizeof idx, "%" PRIu64, e->index);
  format_offset (e->index * m->segment_size, offset, sizeof offset);
  snprintf (seg, sizeof seg, "%" PRIu64, e->segment);
  return tool_table_add_row (&m->t, idx, offset, seg, replicas,
                             misplaced (m, e) ? "misplaced" : "");
}

/* Fetch map entries [START, START+COUNT) of volume V and add them to M.
 * Returns 0 or -errno (printed).
 */
static int
map_chunk (struct map_out *m, const char *what,
           const struct proto_volume_info *v, uint64_t start, uint32_t count)
{
  struct proto_map map;
  uint32_t i;
  int r;

  r = tool_get_map (m->ctx, what, v->id, start, count, &map);
  if (r < 0)
    return r;
  for (i = 0; i < map.n && r == 0; ++i) {
    r = add_entry (m, &map.entries[i]);
    if (r < 0)
      tool_error ("%s: out of memory", what);
  }
  proto_map_free (&map);
  return r;
}

/* tessera volume map NAME */
int
tool_cmd_volume_map (struct tool_ctx *ctx, char **args)
{
  static const char *const headers[] = {
    "INDEX", "OFFSET", "SEGMENT", "REPLICAS", "NOTE",
  };
  CLEANUP_FREE struct proto_status_info *st = NULL;
  struct proto_volume_info v;
  struct map_out m = { .ctx = ctx };
  char what[TOOL_WHAT_MAX];
  uint64_t nsegs, start;
  int r;

  tool_what (what, sizeof what, "volume map", args[0]);
  r = tool_get_volume (ctx, what, args[0], &v);
  if (r < 0)
    return r;
  r = tool_get_status (ctx, what, &st);
  if (r < 0)
    return r;
  if (st->segment_size == 0)
    return tool_bad_reply (ctx, what, -EBADMSG);
  m.segment_size = st->segment_size;
  m.replicas = v.replicas;
  r = tool_get_servers (ctx, what, &m.servers);
  if (r < 0)
    return r;
  count_domains (&m);
  nsegs = v.size / st->segment_size + (v.size % st->segment_size != 0);

  if (ctx->json) {
    tool_json_init (&m.j, ctx->out);
    tool_json_begin_object (&m.j);
    tool_json_kv_string (&m.j, "volume", v.name);
    tool_json_kv_uint (&m.j, "segment_size", st->segment_size);
    tool_json_key (&m.j, "segments");
    tool_json_begin_array (&m.j);
  }
  else
    tool_table_init (&m.t, 5, headers, "rrrll");

  for (start = 0; start < nsegs && r == 0; start += PROTO_MAP_MAX)
    r = map_chunk (&m, what, &v, start,
                   (uint32_t)MIN (nsegs - start, (uint64_t)PROTO_MAP_MAX));

  if (ctx->json) {
    /* On error the output is discarded, but keep the writer balanced. */
    tool_json_end_array (&m.j);
    tool_json_end_object (&m.j);
    tool_json_finish (&m.j);
  }
  else {
    if (r == 0)
      tool_table_print (&m.t, ctx->out);
    tool_table_free (&m.t);
  }
  proto_server_list_free (&m.servers);
  return r;
}

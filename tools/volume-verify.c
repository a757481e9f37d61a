/* tessera volume verify NAME [--repair]: do the replicas of every segment
 * hold the same data?
 *
 * The map comes from the MDS in MAP_GET chunks, as for volume map.  For
 * each allocated segment the tool asks every ok replica's storage server
 * directly for the CRC-32C of each VERIFY_BLOCK of the whole segment
 * (SEG_HASH; one connection per server, opened when first needed and
 * kept), and compares them with the SOURCE replica's: the one with the
 * newest last epoch, ties going to the lowest server id, which is the
 * copy --repair makes the others equal to (SEG_RESYNC through the MDS).
 * Stale and syncing replicas are not compared (repair owns them) but are
 * reported.  Segments with anything to report are kept in a list and
 * printed at the end, so that the JSON document can begin with the
 * totals.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "cleanup.h"
#include "frame.h"
#include "minmax.h"
#include "parse.h"

/* Bytes covered by one CRC. */
#define VERIFY_BLOCK (64 * 1024)

/* A storage server of the cluster and the tool's connection to it. */
struct vserver {
  const struct proto_server_info *info; /* in verify.servers */
  struct proto_client *client;          /* NULL until first needed */
  char *error; /* why the server cannot be used (malloc'd), or NULL */
};

/* One replica of a segment as found. */
struct vreplica {
  uint32_t server;
  uint8_t state;          /* PROTO_REPLICA_* */
  bool compared;          /* ok and its CRCs were read */
  uint64_t epoch;         /* the segment's last epoch there (if compared) */
  uint32_t differing;     /* blocks that differ from the source (if compared) */
  char *error;            /* why it could not be read (malloc'd), or NULL */
  struct proto_hash hash; /* its CRCs, while the segment is checked */
};

/* A segment with something to report. */
struct vsegment {
  uint64_t index;
  uint64_t id;
  uint8_t nreplicas;
  struct vreplica replicas[PROTO_REPLICAS_MAX]; /* hashes freed */
  bool differ;                                  /* compared replicas differ */
  int source;         /* replicas[] index of the source, or -1 */
  bool repair_tried;  /* --repair sent SEG_RESYNC */
  bool resync_failed; /* ... and the MDS refused it */
  bool repaired;      /* ... or the replicas agree now */
};

/* One run of volume verify. */
struct verify {
  struct tool_ctx *ctx;
  const char *what; /* "volume verify: NAME" */
  struct proto_volume_info vol;
  uint32_t segment_size;
  struct proto_server_list servers;
  struct vserver *vservers; /* one per servers.servers[] */
  uint64_t segments;        /* allocated segments checked */
  uint64_t compared;        /* replicas whose CRCs were compared */
  uint64_t differ;          /* segments whose replicas differ */
  uint64_t unreadable;      /* ok replicas that could not be read */
  uint64_t repaired;        /* differing segments repaired */
  struct vsegment *report;  /* segments to report, in index order */
  size_t nreport, report_cap;
};

/* Free the heap parts of replica R (its error and hash). */
static void
vreplica_clear (struct vreplica *r)
{
  free (r->error);
  r->error = NULL;
  proto_hash_free (&r->hash);
}

/* Set replica R's error to a formatted message.  Out of memory leaves
 * a fixed one.
 */
static void vreplica_error (struct vreplica *r, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3)));
static void
vreplica_error (struct vreplica *r, const char *fmt, ...)
{
  va_list ap;

  free (r->error);
  va_start (ap, fmt);
  if (vasprintf (&r->error, fmt, ap) == -1)
    r->error = NULL;
  va_end (ap);
  if (r->error == NULL)
    r->error = strdup ("out of memory");
}

/* The server with id ID, or NULL. */
static struct vserver *
find_server (struct verify *v, uint32_t id)
{
  uint32_t i;

  for (i = 0; i < v->servers.n; ++i)
    if (v->servers.servers[i].id == id)
      return &v->vservers[i];
  return NULL;
}

/* Connect to server S unless connected already.  Returns 0, or -1 with
 * s->error set (and then every later call fails the same way at once).
 */
static int
server_connect (struct verify *v, struct vserver *s)
{
  const struct proto_server_info *info = s->info;
  struct proto_hello peer;
  char errmsg[256];
  int r;

  if (s->error)
    return -1;
  if (s->client)
    return 0;

  if (info->state == PROTO_SERVER_DOWN || info->state == PROTO_SERVER_OUT) {
    if (asprintf (&s->error, "server %" PRIu32 " is %s", info->id,
                  proto_server_state_name (info->state)) == -1)
      s->error = NULL;
    goto fail;
  }

  r = proto_client_connect (info->address, PROTO_ROLE_CLI, NULL,
                            v->ctx->timeout_ms, &s->client, &peer, errmsg,
                            sizeof errmsg);
  if (r < 0) {
    s->client = NULL;
    if (asprintf (&s->error, "server %" PRIu32 ": %s: %s", info->id,
                  info->address, errmsg) == -1)
      s->error = NULL;
    goto fail;
  }
  /* The address could now belong to another process or store. */
  if (peer.role != PROTO_ROLE_STORESRV ||
      (!uuid_is_zero (peer.uuid) && !uuid_is_zero (info->uuid) &&
       memcmp (peer.uuid, info->uuid, 16) != 0)) {
    if (asprintf (&s->error,
                  "server %" PRIu32 ": %s: not this storage server "
                  "(a %s with another uuid)",
                  info->id, info->address, proto_role_name (peer.role)) == -1)
      s->error = NULL;
    proto_client_close (s->client);
    s->client = NULL;
    goto fail;
  }
  return 0;

fail:
  if (s->error == NULL)
    s->error = strdup ("out of memory");
  return -1;
}

/* Read the CRCs of the whole of segment SEGMENT from replica R's server
 * into r->hash, and set r->compared and r->epoch.  On failure sets
 * r->error instead.
 */
static void
hash_replica (struct verify *v, uint64_t segment, struct vreplica *r)
{
  struct proto_hash_request req = {
    .segment = segment,
    .offset = 0,
    .length = v->segment_size,
    .block = VERIFY_BLOCK,
  };
  char errmsg[PROTO_ERRMSG_MAX + 1] = "";
  struct proto_wbuf wb = { 0 };
  CLEANUP_FREE void *reply = NULL;
  struct vserver *s = find_server (v, r->server);
  uint32_t len, want = v->segment_size / VERIFY_BLOCK;
  int err;

  if (s == NULL) {
    vreplica_error (r, "server %" PRIu32 " is unknown to the metadata server",
                    r->server);
    return;
  }
  if (server_connect (v, s) < 0) {
    vreplica_error (r, "%s", s->error);
    return;
  }

  proto_encode_hash_request (&req, &wb);
  if (wb.err) {
    vreplica_error (r, "%s", strerror (-wb.err));
    proto_wbuf_free (&wb);
    return;
  }
  err =
      proto_client_call (s->client, PROTO_OP_SEG_HASH, 0, wb.data,
                         (uint32_t)wb.len, &reply, &len, errmsg, sizeof errmsg);
  proto_wbuf_free (&wb);
  if (err < 0) {
    vreplica_error (r, "server %" PRIu32 ": %s", r->server,
                    errmsg[0] ? errmsg : strerror (-err));
    /* A broken connection stays broken: do not use it again. */
    if (proto_client_broken (s->client) && s->error == NULL)
      s->error = strdup (r->error);
    return;
  }
  err = proto_decode_hash (reply, len, &r->hash);
  if (err == 0 && r->hash.n != want) {
    proto_hash_free (&r->hash);
    err = -EBADMSG;
  }
  if (err < 0) {
    vreplica_error (r, "server %" PRIu32 ": malformed SEG_HASH reply: %s",
                    r->server, strerror (-err));
    return;
  }
  r->compared = true;
  r->epoch = r->hash.epoch;
}

/* Read the replicas of map entry E into REPS (E->nreplicas of them,
 * zeroed by the caller) and compare them.  Returns the index of the
 * source in REPS (-1 if no replica could be read) and sets *DIFFER.
 * The caller clears REPS.
 */
static int
check_replicas (struct verify *v, const struct proto_map_entry *e,
                struct vreplica *reps, bool *differ)
{
  int source = -1;
  unsigned i;
  uint32_t b;

  *differ = false;
  for (i = 0; i < e->nreplicas; ++i) {
    reps[i].server = e->replicas[i].server;
    reps[i].state = e->replicas[i].state;
    if (reps[i].state == PROTO_REPLICA_OK)
      hash_replica (v, e->segment, &reps[i]);
  }

  /* The source: newest epoch, then lowest server id. */
  for (i = 0; i < e->nreplicas; ++i) {
    if (!reps[i].compared)
      continue;
    if (source == -1 || reps[i].epoch > reps[source].epoch ||
        (reps[i].epoch == reps[source].epoch &&
         reps[i].server < reps[source].server))
      source = i;
  }
  if (source == -1)
    return -1;

  /* Every hash has the same length (checked in hash_replica). */
  for (i = 0; i < e->nreplicas; ++i) {
    if (!reps[i].compared)
      continue;
    reps[i].differing = 0;
    for (b = 0; b < reps[i].hash.n; ++b)
      if (reps[i].hash.crcs[b] != reps[source].hash.crcs[b])
        reps[i].differing++;
    if (reps[i].differing > 0)
      *differ = true;
  }
  return source;
}

/* Make every replica of segment SEG equal to its source (SEG_RESYNC),
 * then read the map entry and the replicas again and record whether
 * they agree now.  Returns 0 or -errno (printed: the MDS refused, or the
 * map could not be read).
 */
static int
repair_segment (struct verify *v, struct vsegment *seg)
{
  struct proto_resync req = {
    .volume = v->vol.id,
    .segment = seg->id,
    .source = seg->replicas[seg->source].server,
  };
  struct vreplica reps[PROTO_REPLICAS_MAX];
  struct proto_wbuf wb = { 0 };
  struct proto_map map;
  CLEANUP_FREE void *reply = NULL;
  char what[TOOL_WHAT_MAX + 64];
  uint32_t len;
  bool differ = true;
  unsigned i;
  int r, source;

  seg->repair_tried = true;
  snprintf (what, sizeof what, "%s: segment %" PRIu64, v->what, seg->index);
  proto_encode_resync (&req, &wb);
  r = tool_call (v->ctx, what, PROTO_OP_SEG_RESYNC, &wb, &reply, &len);
  proto_wbuf_free (&wb);
  if (r < 0) {
    seg->resync_failed = true;
    return r;
  }

  /* The resync may have changed the replica list: read it again. */
  r = tool_get_map (v->ctx, what, v->vol.id, seg->index, 1, &map);
  if (r < 0)
    return r;
  if (map.n == 1 && map.entries[0].segment == seg->id) {
    memset (reps, 0, sizeof reps);
    source = check_replicas (v, &map.entries[0], reps, &differ);
    seg->repaired = source >= 0 && !differ;
    for (i = 0; i < map.entries[0].nreplicas; ++i)
      vreplica_clear (&reps[i]);
  }
  proto_map_free (&map);
  if (seg->repaired)
    v->repaired++;
  return 0;
}

/* Add SEG to the report.  Returns 0 or -ENOMEM (printed). */
static int
report_add (struct verify *v, const struct vsegment *seg)
{
  if (v->nreport == v->report_cap) {
    size_t cap = v->report_cap ? v->report_cap * 2 : 16;
    struct vsegment *p = reallocarray (v->report, cap, sizeof *p);

    if (p == NULL) {
      tool_error ("%s: out of memory", v->what);
      return -ENOMEM;
    }
    v->report = p;
    v->report_cap = cap;
  }
  v->report[v->nreport++] = *seg;
  return 0;
}

/* Check the segment of map entry E, repair it if asked to, and add it
 * to the report if there is anything to say.  Returns 0 or -errno
 * (printed) if the run must stop.
 */
static int
verify_entry (struct verify *v, const struct proto_map_entry *e)
{
  struct vsegment seg = { .index = e->index, .id = e->segment };
  bool notable = false;
  unsigned i;
  int r = 0;

  v->segments++;
  seg.nreplicas = e->nreplicas;
  seg.source = check_replicas (v, e, seg.replicas, &seg.differ);
  for (i = 0; i < seg.nreplicas; ++i) {
    struct vreplica *rep = &seg.replicas[i];

    proto_hash_free (&rep->hash);
    if (rep->compared)
      v->compared++;
    if (rep->error)
      v->unreadable++;
    if (rep->error || rep->state != PROTO_REPLICA_OK)
      notable = true;
  }
  if (seg.differ) {
    v->differ++;
    notable = true;
    /* A refused resync is printed and reported; the run goes on. */
    if (v->ctx->repair)
      (void)repair_segment (v, &seg);
  }

  if (notable)
    r = report_add (v, &seg);
  if (!notable || r < 0)
    for (i = 0; i < seg.nreplicas; ++i)
      vreplica_clear (&seg.replicas[i]);
  return r;
}

/* Print segment SEG's report lines for humans. */
static void
print_segment_human (struct verify *v, const struct vsegment *seg)
{
  FILE *fp = v->ctx->out;
  char head[96];
  unsigned i;

  snprintf (head, sizeof head, "segment %" PRIu64 " (id %" PRIu64 ")",
            seg->index, seg->id);
  if (seg->differ) {
    fprintf (fp, "%s: replicas differ\n", head);
    for (i = 0; i < seg->nreplicas; ++i) {
      const struct vreplica *rep = &seg->replicas[i];

      if (!rep->compared)
        continue;
      fprintf (fp,
               "  server %" PRIu32 ": %s, epoch %" PRIu64 ", %" PRIu32
               " blocks differ%s\n",
               rep->server, proto_replica_state_name (rep->state), rep->epoch,
               rep->differing, (int)i == seg->source ? " (source)" : "");
    }
    if (seg->resync_failed)
      fprintf (fp, "%s: resync from server %" PRIu32 " failed\n", head,
               seg->replicas[seg->source].server);
    else if (seg->repair_tried)
      fprintf (fp, "%s: %s from server %" PRIu32 "\n", head,
               seg->repaired ? "repaired" : "still differs after resync",
               seg->replicas[seg->source].server);
  }
  for (i = 0; i < seg->nreplicas; ++i) {
    const struct vreplica *rep = &seg->replicas[i];
    char error[PROTO_ERRMSG_MAX + PROTO_ADDR_MAX + 64];

    if (rep->error) {
      tool_sanitize (rep->error, error, sizeof error);
      fprintf (fp, "%s: server %" PRIu32 ": cannot read: %s\n", head,
               rep->server, error);
    }
    else if (rep->state != PROTO_REPLICA_OK)
      fprintf (fp, "%s: server %" PRIu32 ": %s, not compared\n", head,
               rep->server, proto_replica_state_name (rep->state));
  }
}

/* Print the whole report for humans. */
static void
print_human (struct verify *v)
{
  size_t i;

  for (i = 0; i < v->nreport; ++i)
    print_segment_human (v, &v->report[i]);
  fprintf (v->ctx->out,
           "verify: %" PRIu64 " segments, %" PRIu64
           " replicas each compared, %" PRIu64 " differ\n",
           v->segments, v->compared, v->differ);
  if (v->ctx->repair && v->differ > 0)
    fprintf (v->ctx->out,
             "verify: %" PRIu64 " of %" PRIu64 " differing segments "
             "repaired\n",
             v->repaired, v->differ);
}

/* Print the report as one JSON document. */
static void
print_json (struct verify *v)
{
  struct tool_json j;
  size_t i;
  unsigned k;

  tool_json_init (&j, v->ctx->out);
  tool_json_begin_object (&j);
  tool_json_kv_string (&j, "volume", v->vol.name);
  tool_json_kv_uint (&j, "segments", v->segments);
  tool_json_kv_uint (&j, "compared", v->compared);

  tool_json_key (&j, "differ");
  tool_json_begin_array (&j);
  for (i = 0; i < v->nreport; ++i) {
    const struct vsegment *seg = &v->report[i];

    if (!seg->differ)
      continue;
    tool_json_begin_object (&j);
    tool_json_kv_uint (&j, "index", seg->index);
    tool_json_kv_uint (&j, "id", seg->id);
    tool_json_kv_uint (&j, "source", seg->replicas[seg->source].server);
    if (seg->repair_tried)
      tool_json_kv_bool (&j, "repaired", seg->repaired);
    tool_json_key (&j, "replicas");
    tool_json_begin_array (&j);
    for (k = 0; k < seg->nreplicas; ++k) {
      const struct vreplica *rep = &seg->replicas[k];

      if (!rep->compared)
        continue;
      tool_json_begin_object (&j);
      tool_json_kv_uint (&j, "server", rep->server);
      tool_json_kv_string (&j, "state", proto_replica_state_name (rep->state));
      tool_json_kv_uint (&j, "epoch", rep->epoch);
      tool_json_kv_uint (&j, "differing_blocks", rep->differing);
      tool_json_end_object (&j);
    }
    tool_json_end_array (&j);
    tool_json_end_object (&j);
  }
  tool_json_end_array (&j);

  /* Replicas not compared: not ok, or unreadable. */
  tool_json_key (&j, "not_compared");
  tool_json_begin_array (&j);
  for (i = 0; i < v->nreport; ++i) {
    const struct vsegment *seg = &v->report[i];

    for (k = 0; k < seg->nreplicas; ++k) {
      const struct vreplica *rep = &seg->replicas[k];

      if (rep->compared)
        continue;
      tool_json_begin_object (&j);
      tool_json_kv_uint (&j, "index", seg->index);
      tool_json_kv_uint (&j, "id", seg->id);
      tool_json_kv_uint (&j, "server", rep->server);
      tool_json_kv_string (&j, "state", proto_replica_state_name (rep->state));
      if (rep->error)
        tool_json_kv_string (&j, "error", rep->error);
      tool_json_end_object (&j);
    }
  }
  tool_json_end_array (&j);

  tool_json_kv_uint (&j, "unreadable", v->unreadable);
  tool_json_kv_uint (&j, "repaired", v->repaired);
  tool_json_end_object (&j);
  tool_json_finish (&j);
}

/* Free everything V holds (not V). */
static void
verify_free (struct verify *v)
{
  size_t i;
  unsigned k;

  for (i = 0; i < v->nreport; ++i)
    for (k = 0; k < v->report[i].nreplicas; ++k)
      vreplica_clear (&v->report[i].replicas[k]);
  free (v->report);
  if (v->vservers)
    for (i = 0; i < v->servers.n; ++i) {
      proto_client_close (v->vservers[i].client);
      free (v->vservers[i].error);
    }
  free (v->vservers);
  proto_server_list_free (&v->servers);
}

/* Fetch what the run needs from the MDS: the volume, the segment size
 * and the servers.  Returns 0 or -errno (printed).
 */
static int
verify_setup (struct verify *v, const char *name)
{
  CLEANUP_FREE struct proto_status_info *st = NULL;
  uint32_t i;
  int r;

  r = tool_get_volume (v->ctx, v->what, name, &v->vol);
  if (r < 0)
    return r;
  r = tool_get_status (v->ctx, v->what, &st);
  if (r < 0)
    return r;
  /* A power of two from 64 KiB: a whole number of blocks. */
  if (st->segment_size < VERIFY_BLOCK || st->segment_size % VERIFY_BLOCK != 0)
    return tool_bad_reply (v->ctx, v->what, -EBADMSG);
  v->segment_size = st->segment_size;

  r = tool_get_servers (v->ctx, v->what, &v->servers);
  if (r < 0)
    return r;
  v->vservers = calloc (MAX (v->servers.n, 1u), sizeof *v->vservers);
  if (v->vservers == NULL) {
    tool_error ("%s: out of memory", v->what);
    return -ENOMEM;
  }
  for (i = 0; i < v->servers.n; ++i)
    v->vservers[i].info = &v->servers.servers[i];

  if (v->vol.flags & PROTO_VOL_OPEN_RW)
    tool_error ("%s: warning: the volume is open for writing: blocks "
                "being written may differ",
                v->what);
  return 0;
}

/* tessera volume verify NAME [--repair] */
int
tool_cmd_volume_verify (struct tool_ctx *ctx, char **args)
{
  struct verify v = { .ctx = ctx };
  char what[TOOL_WHAT_MAX];
  uint64_t nsegs, start;
  uint32_t i;
  int r;

  tool_what (what, sizeof what, "volume verify", args[0]);
  v.what = what;
  r = verify_setup (&v, args[0]);
  if (r < 0)
    goto out;

  nsegs = v.vol.size / v.segment_size + (v.vol.size % v.segment_size != 0);
  for (start = 0; start < nsegs && r == 0; start += PROTO_MAP_MAX) {
    struct proto_map map;

    r = tool_get_map (ctx, what, v.vol.id, start,
                      (uint32_t)MIN (nsegs - start, (uint64_t)PROTO_MAP_MAX),
                      &map);
    for (i = 0; r == 0 && i < map.n; ++i)
      r = verify_entry (&v, &map.entries[i]);
    proto_map_free (&map);
  }
  if (r < 0)
    goto out;

  if (ctx->json)
    print_json (&v);
  else
    print_human (&v);

  /* Fail if anything is left differing or could not be checked. */
  if (v.differ > v.repaired)
    tool_error ("%s: %" PRIu64 " segments differ", what, v.differ - v.repaired);
  if (v.unreadable > 0)
    tool_error ("%s: %" PRIu64 " replicas could not be read", what,
                v.unreadable);
  if (v.differ > v.repaired || v.unreadable > 0)
    r = TOOL_FAILED_WITH_OUTPUT;

out:
  verify_free (&v);
  return r;
}

/* Fuzz every wire decoder of common/proto: the frame header
 * (proto_header_decode), whole frames read from a pipe
 * (proto_recv_frame) and every proto_decode_* (messages.c, msg-*.c).
 *
 * Input: one selector byte (index into TARGETS; others are ignored), then
 * the bytes given to that decoder.  Promises checked (protocol.h):
 *  - a decoder returns 0 or one of its documented errors;
 *  - what a decoder accepts is canonical: encoding the decoded message
 *    gives back exactly the input bytes (the segment I/O head: its first
 *    48 bytes);
 *  - decoded counts and strings are within their maxima;
 *  - a failed list decoder leaves nothing allocated (LeakSanitizer) and
 *    a successful one's *_free releases everything.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "frame.h"
#include "protocol.h"

#include "fuzz.h"

/* Bytes of fresh message structs, so that fields a decoder forgets to set
 * show up in the round trip.
 */
#define POISON 0xa5

/* Check R against a decoder's documented results. */
static void
check_result (const char *name, int r, int allow_enomem)
{
  FUZZ_CHECK (r == 0 || r == -EBADMSG || (allow_enomem && r == -ENOMEM),
              "proto_decode_%s returned %d", name, r);
}

/* Check that WB holds exactly the N input bytes at P. */
static void
check_same (const char *name, struct proto_wbuf *wb, const uint8_t *p, size_t n)
{
  FUZZ_CHECK (wb->err == 0, "proto_encode_%s failed (%d) on a decoded message",
              name, wb->err);
  FUZZ_CHECK (wb->len == n && (n == 0 || memcmp (wb->data, p, n) == 0),
              "proto_decode_%s accepted %zu bytes that encode back to %zu "
              "different bytes",
              name, n, wb->len);
  proto_wbuf_free (wb);
}

/* A decoder of a message without allocations. */
#define FLAT(name, type) \
  static void fuzz_##name (const uint8_t *p, size_t n) \
  { \
    struct type m; \
    struct proto_wbuf wb = { 0 }; \
    int r; \
    memset (&m, POISON, sizeof m); \
    r = proto_decode_##name (p, n, &m); \
    check_result (#name, r, 0); \
    if (r == 0) { \
      check_##name (&m); \
      proto_encode_##name (&m, &wb); \
      check_same (#name, &wb, p, n); \
    } \
  }

/* A decoder of a list: RELEASE frees it. */
#define LIST(name, type, release) \
  static void fuzz_##name (const uint8_t *p, size_t n) \
  { \
    struct type m; \
    struct proto_wbuf wb = { 0 }; \
    int r; \
    memset (&m, POISON, sizeof m); \
    r = proto_decode_##name (p, n, &m); \
    check_result (#name, r, 1); \
    if (r == 0) { \
      check_##name (&m); \
      proto_encode_##name (&m, &wb); \
      check_same (#name, &wb, p, n); \
      release (&m); \
    } \
  }

/* Field checks beyond the round trip. */
static void
check_str (const char *what, const char *s, size_t max)
{
  FUZZ_CHECK (memchr (s, '\0', max + 1) != NULL,
              "%s is not NUL-terminated within %zu bytes", what, max);
}

static void
check_hello (const struct proto_hello *m)
{
  FUZZ_CHECK (m->auth_len <= PROTO_AUTH_MAX, "hello: auth_len %u", m->auth_len);
}

static void
check_status_info (const struct proto_status_info *m)
{
  uint32_t i;

  FUZZ_CHECK (m->nzones <= PROTO_STATUS_ZONES_MAX &&
                  m->nzones <= m->zones_total,
              "status: nzones %u of %u", m->nzones, m->zones_total);
  for (i = 0; i < m->nzones; i++) {
    check_str ("status zone", m->zones[i].zone, PROTO_ZONE_MAX);
    FUZZ_CHECK ((m->zones[i].flags & ~PROTO_ZONE_FLAGS_KNOWN) == 0,
                "status zone %u: flags %x", i, m->zones[i].flags);
  }
  FUZZ_CHECK ((m->ha_flags & ~PROTO_STATUS_HA_FLAGS_KNOWN) == 0,
              "status: ha_flags %x", m->ha_flags);
  check_str ("status mds_name", m->mds_name, PROTO_NAME_MAX);
  check_str ("status sync", m->sync, PROTO_NAME_MAX);
  FUZZ_CHECK (m->nstandbys <= PROTO_STATUS_STANDBYS_MAX, "status: nstandbys %u",
              m->nstandbys);
  for (i = 0; i < m->nstandbys; i++) {
    check_str ("status standby", m->standbys[i].name, PROTO_NAME_MAX);
    FUZZ_CHECK ((m->standbys[i].flags & ~PROTO_STANDBY_FLAGS_KNOWN) == 0,
                "status standby %u: flags %x", i, m->standbys[i].flags);
  }
  FUZZ_CHECK (m->netcd <= PROTO_STATUS_ETCD_MAX, "status: netcd %u", m->netcd);
  for (i = 0; i < m->netcd; i++) {
    check_str ("status etcd url", m->etcd[i].url, PROTO_ETCD_URL_MAX);
    check_str ("status etcd version", m->etcd[i].version,
               PROTO_ETCD_VERSION_MAX);
    FUZZ_CHECK ((m->etcd[i].flags & ~PROTO_ETCD_FLAGS_KNOWN) == 0,
                "status etcd %u: flags %x", i, m->etcd[i].flags);
  }
}

static void
check_register (const struct proto_register *m)
{
  check_str ("register address", m->address, PROTO_ADDR_MAX);
  check_str ("register zone", m->zone, PROTO_ZONE_MAX);
}

static void
check_register_reply (const struct proto_register_reply *m)
{
}

static void
check_heartbeat (const struct proto_heartbeat *m)
{
  FUZZ_CHECK (m->n <= PROTO_LIST_MAX, "heartbeat: n %u", m->n);
  FUZZ_CHECK ((m->n == 0) == (m->segments == NULL), "heartbeat: n %u, %p", m->n,
              (void *)m->segments);
}

static void
check_heartbeat_reply (const struct proto_heartbeat_reply *m)
{
  FUZZ_CHECK (m->n <= PROTO_LIST_MAX && m->nfences <= PROTO_LIST_MAX,
              "heartbeat reply: n %u nfences %u", m->n, m->nfences);
}

static void
check_fence (const struct proto_fence *m)
{
}

static void
check_server_request (const struct proto_server_request *m)
{
}

static void
check_set_gen (const struct proto_set_gen *m)
{
}

static void
check_pull (const struct proto_pull *m)
{
  FUZZ_CHECK (m->mode == PROTO_PULL_FULL || m->mode == PROTO_PULL_DIFF,
              "pull: mode %u", m->mode);
  check_str ("pull source", m->source, PROTO_ADDR_MAX);
}

static void
check_hash_request (const struct proto_hash_request *m)
{
  FUZZ_CHECK (m->block >= 4096 && m->block <= (4u << 20) &&
                  (m->block & (m->block - 1)) == 0 && m->offset % m->block == 0,
              "hash request: block %u offset %u", m->block, m->offset);
}

static void
check_hash (const struct proto_hash *m)
{
  FUZZ_CHECK (m->n <= 16384, "hash: n %u", m->n);
}

static void
check_seg_list_request (const struct proto_seg_list_request *m)
{
  FUZZ_CHECK (m->max >= 1 && m->max <= PROTO_LIST_MAX, "seg list: max %u",
              m->max);
}

static void
check_resync (const struct proto_resync *m)
{
}

static void
check_segment_list (const struct proto_segment_list *m)
{
  FUZZ_CHECK (m->n <= PROTO_LIST_MAX, "segment list: n %u", m->n);
}

static void
check_server_list (const struct proto_server_list *m)
{
  uint32_t i;

  FUZZ_CHECK (m->n <= PROTO_LIST_MAX, "server list: n %u", m->n);
  for (i = 0; i < m->n; i++) {
    check_str ("server address", m->servers[i].address, PROTO_ADDR_MAX);
    check_str ("server zone", m->servers[i].zone, PROTO_ZONE_MAX);
  }
}

static void
check_volume_info (const struct proto_volume_info *m)
{
  check_str ("volume name", m->name, PROTO_NAME_MAX);
}

static void
check_volume_list (const struct proto_volume_list *m)
{
  uint32_t i;

  FUZZ_CHECK (m->n <= PROTO_LIST_MAX, "volume list: n %u", m->n);
  for (i = 0; i < m->n; i++)
    check_volume_info (&m->volumes[i]);
}

static void
check_vol_request (const struct proto_vol_request *m)
{
  check_str ("vol request name", m->name, PROTO_NAME_MAX);
}

static void
check_open_reply (const struct proto_open_reply *m)
{
  check_volume_info (&m->volume);
}

static void
check_lease (const struct proto_lease *m)
{
}

static void
check_map_request (const struct proto_map_request *m)
{
  FUZZ_CHECK (m->count >= 1 && m->count <= PROTO_MAP_MAX, "map request: %u",
              m->count);
}

static void
check_map (const struct proto_map *m)
{
  uint32_t i, j;

  FUZZ_CHECK (m->n <= PROTO_MAP_MAX, "map: n %u", m->n);
  for (i = 0; i < m->n; i++) {
    const struct proto_map_entry *e = &m->entries[i];

    FUZZ_CHECK (e->nreplicas >= 1 && e->nreplicas <= PROTO_REPLICAS_MAX,
                "map entry %u: nreplicas %u", i, e->nreplicas);
    FUZZ_CHECK (i == 0 || e->index > m->entries[i - 1].index,
                "map entry %u: index not ascending", i);
    for (j = 0; j < e->nreplicas; j++)
      FUZZ_CHECK (e->replicas[j].state <= PROTO_REPLICA_SYNCING,
                  "map entry %u replica %u: state %u", i, j,
                  e->replicas[j].state);
  }
}

static void
check_replica_failed (const struct proto_replica_failed *m)
{
}

static void
check_raise_gen (const struct proto_raise_gen *m)
{
}

static void
check_describe_request (const struct proto_describe_request *m)
{
  FUZZ_CHECK (m->max >= 1, "describe request: max %u", m->max);
}

static void
check_describe (const struct proto_describe *m)
{
  uint32_t i;

  FUZZ_CHECK (m->n <= PROTO_LIST_MAX, "describe: n %u", m->n);
  FUZZ_CHECK (m->nfences <= PROTO_DESCRIBE_FENCES_MAX, "describe: nfences %u",
              m->nfences);
  for (i = 1; i < m->n; i++)
    FUZZ_CHECK (m->segs[i].segment > m->segs[i - 1].segment,
                "describe: segment %u not ascending", i);
}

static void
check_tables (const struct proto_tables *m)
{
  FUZZ_CHECK (m->len <= PROTO_TABLES_MAX && (m->len == 0) == (m->blob == NULL),
              "tables: %u bytes at %p", m->len, (const void *)m->blob);
}

FLAT (hello, proto_hello)
FLAT (status_info, proto_status_info)
FLAT (register, proto_register)
FLAT (register_reply, proto_register_reply)
LIST (heartbeat, proto_heartbeat, proto_heartbeat_free)
LIST (heartbeat_reply, proto_heartbeat_reply, proto_heartbeat_reply_free)
FLAT (fence, proto_fence)
FLAT (server_request, proto_server_request)
FLAT (set_gen, proto_set_gen)
FLAT (pull, proto_pull)
FLAT (hash_request, proto_hash_request)
LIST (hash, proto_hash, proto_hash_free)
FLAT (seg_list_request, proto_seg_list_request)
FLAT (resync, proto_resync)
LIST (segment_list, proto_segment_list, proto_segment_list_free)
LIST (server_list, proto_server_list, proto_server_list_free)
FLAT (volume_info, proto_volume_info)
LIST (volume_list, proto_volume_list, proto_volume_list_free)
FLAT (vol_request, proto_vol_request)
FLAT (open_reply, proto_open_reply)
FLAT (lease, proto_lease)
FLAT (map_request, proto_map_request)
LIST (map, proto_map, proto_map_free)
FLAT (replica_failed, proto_replica_failed)
FLAT (raise_gen, proto_raise_gen)
FLAT (describe_request, proto_describe_request)
LIST (describe, proto_describe, proto_describe_free)
FLAT (tables, proto_tables)

static void
check_backup_request (const struct proto_backup_request *m)
{
  FUZZ_CHECK (m->max >= 1 && m->max <= PROTO_BACKUP_CHUNK_MAX,
              "backup_request: max %u", m->max);
}

/* DATA points into the input: the chunk must lie inside it and inside
 * the copy.
 */
static void
check_backup_chunk (const struct proto_backup_chunk *m)
{
  FUZZ_CHECK (m->backup_id != 0, "backup_chunk: id 0");
  FUZZ_CHECK (m->len <= PROTO_BACKUP_CHUNK_MAX && m->offset <= m->size &&
                  m->len <= m->size - m->offset,
              "backup_chunk: %u bytes at %" PRIu64 " of %" PRIu64, m->len,
              m->offset, m->size);
  FUZZ_CHECK ((m->len == 0) == (m->data == NULL), "backup_chunk: data %p",
              (const void *)m->data);
}
FLAT (backup_request, proto_backup_request)
FLAT (backup_chunk, proto_backup_chunk)

static void
check_repl_pull (const struct proto_repl_pull *m)
{
  FUZZ_CHECK (m->max >= 1 && m->max <= PROTO_REPL_CHUNK_MAX &&
                  m->wait_ms <= PROTO_REPL_WAIT_MAX_MS && m->name[0] != '\0',
              "repl_pull: max %u wait %u", m->max, m->wait_ms);
  check_str ("repl_pull name", m->name, PROTO_NAME_MAX);
}
FLAT (repl_pull, proto_repl_pull)

/* REPL_PULL's reply: chunks inside their batches and the payload, in
 * order; encoded back piecewise.
 */
static void
fuzz_repl_reply (const uint8_t *p, size_t n)
{
  struct proto_repl_reply m;
  struct proto_wbuf wb = { 0 };
  uint32_t i;
  int r;

  memset (&m, POISON, sizeof m);
  r = proto_decode_repl_reply (p, n, &m);
  check_result ("repl_reply", r, 1);
  if (r < 0)
    return;
  for (i = 0; i < m.n; i++) {
    const struct proto_repl_chunk *c = &m.chunks[i];

    FUZZ_CHECK (c->seq != 0 && c->offset <= c->total &&
                    c->len <= c->total - c->offset,
                "repl_reply: chunk %u: %u bytes at %u of %u", i, c->len,
                c->offset, c->total);
    FUZZ_CHECK (c->len == 0 || (c->data >= p && c->data + c->len <= p + n),
                "repl_reply: chunk %u points outside the input", i);
  }
  proto_encode_repl_reply_head (m.published, m.n, &wb);
  for (i = 0; i < m.n; i++)
    proto_encode_repl_chunk (&m.chunks[i], &wb);
  check_same ("repl_reply", &wb, p, n);
  proto_repl_reply_free (&m);
}

/* The segment I/O head reads the first 48 bytes and ignores the rest
 * (the caller checks the length against the opcode).
 */
static void
fuzz_seg_io (const uint8_t *p, size_t n)
{
  struct proto_seg_io m;
  uint8_t buf[PROTO_SEG_IO_SIZE];
  int r;

  memset (&m, POISON, sizeof m);
  r = proto_decode_seg_io (p, n, &m);
  check_result ("seg_io", r, 0);
  FUZZ_CHECK ((r == 0) == (n >= PROTO_SEG_IO_SIZE), "seg_io: %d on %zu bytes",
              r, n);
  if (r == 0) {
    proto_encode_seg_io (&m, buf);
    FUZZ_CHECK (memcmp (buf, p, PROTO_SEG_IO_SIZE) == 0,
                "seg_io: round trip differs");
  }
}

/* The names used when logging a header, for any value. */
static void
check_names (const struct proto_header *hdr)
{
  FUZZ_CHECK (proto_opcode_name (hdr->opcode) != NULL, "opcode name");
  FUZZ_CHECK (proto_status_name (hdr->status) != NULL, "status name");
  FUZZ_CHECK (proto_role_name (hdr->status) != NULL, "role name");
  FUZZ_CHECK (proto_server_state_name (hdr->status) != NULL, "state name");
  FUZZ_CHECK (proto_replica_state_name (hdr->status) != NULL, "replica name");
}

/* The 24-byte header, with the limit its opcode allows. */
static void
fuzz_header (const uint8_t *p, size_t n)
{
  struct proto_header hdr;
  uint8_t buf[PROTO_HEADER_SIZE];
  int r, e;

  if (n < PROTO_HEADER_SIZE)
    return;
  r = proto_header_decode (p, &hdr, proto_max_payload (p[5]));
  FUZZ_CHECK (r == 0 || r == -EBADMSG || r == -EPROTO || r == -EMSGSIZE,
              "proto_header_decode returned %d", r);
  check_names (&hdr); /* filled even on error, for the log line */
  proto_header_encode (&hdr, buf);
  FUZZ_CHECK (memcmp (buf, p, PROTO_HEADER_SIZE) == 0,
              "header: decode then encode differs");
  if (r == 0) {
    FUZZ_CHECK (hdr.magic == PROTO_MAGIC && hdr.version == PROTO_VERSION &&
                    (hdr.flags & ~PROTO_FLAGS_KNOWN) == 0 &&
                    hdr.status <= PROTO_STATUS_MAX &&
                    hdr.length <= proto_max_payload (hdr.opcode),
                "header: accepted a bad header");
    if (hdr.status != PROTO_OK) {
      e = proto_status_to_errno (hdr.status);
      FUZZ_CHECK (e > 0 && proto_status_from_errno (e) == hdr.status,
                  "status %u -> errno %d -> status %u", hdr.status, e,
                  proto_status_from_errno (e));
    }
  }
}

/* Frames read from a pipe, as the MDS and the clients read them: the
 * first input byte picks the caller's limit.
 */
static void
fuzz_frame (const uint8_t *p, size_t n)
{
  static const uint32_t limits[] = { 0, 64, 4096, PROTO_MAX_META_PAYLOAD,
                                     UINT32_MAX };
  struct proto_header hdr;
  uint32_t limit;
  int fds[2], r;

  if (n < 1 || n > 60000) /* within the pipe's buffer */
    return;
  limit = limits[p[0] % (sizeof limits / sizeof limits[0])];
  p++, n--;
  if (pipe2 (fds, O_CLOEXEC) == -1)
    FUZZ_FAIL ("pipe2: %m");
  if (n > 0 && write (fds[1], p, n) != (ssize_t)n)
    FUZZ_FAIL ("write to pipe: %m");
  close (fds[1]);
  for (;;) {
    void *payload = (void *)1;

    r = proto_recv_frame (fds[0], limit, &hdr, &payload);
    if (r < 0) {
      FUZZ_CHECK (payload == NULL, "recv_frame: payload set on error %d", r);
      FUZZ_CHECK (r == -EPIPE || r == -EBADMSG || r == -EPROTO ||
                      r == -EMSGSIZE || r == -EIO || r == -ENOMEM,
                  "proto_recv_frame returned %d", r);
      break;
    }
    FUZZ_CHECK (
        hdr.length <= limit && hdr.length <= proto_max_payload (hdr.opcode),
        "recv_frame: accepted length %u over the limit %u", hdr.length, limit);
    FUZZ_CHECK ((hdr.length == 0) == (payload == NULL),
                "recv_frame: length %u but payload %p", hdr.length, payload);
    free (payload);
  }
  close (fds[0]);
}

struct target {
  const char *name;
  void (*fn) (const uint8_t *p, size_t n);
};

/* Append only: the selector byte of saved inputs indexes this table. */
static const struct target targets[] = {
  { "header", fuzz_header },
  { "frame", fuzz_frame },
  { "hello", fuzz_hello },
  { "status_info", fuzz_status_info },
  { "register", fuzz_register },
  { "register_reply", fuzz_register_reply },
  { "heartbeat", fuzz_heartbeat },
  { "heartbeat_reply", fuzz_heartbeat_reply },
  { "fence", fuzz_fence },
  { "server_request", fuzz_server_request },
  { "set_gen", fuzz_set_gen },
  { "pull", fuzz_pull },
  { "hash_request", fuzz_hash_request },
  { "hash", fuzz_hash },
  { "seg_list_request", fuzz_seg_list_request },
  { "resync", fuzz_resync },
  { "segment_list", fuzz_segment_list },
  { "server_list", fuzz_server_list },
  { "volume_info", fuzz_volume_info },
  { "volume_list", fuzz_volume_list },
  { "vol_request", fuzz_vol_request },
  { "open_reply", fuzz_open_reply },
  { "lease", fuzz_lease },
  { "map_request", fuzz_map_request },
  { "map", fuzz_map },
  { "replica_failed", fuzz_replica_failed },
  { "seg_io", fuzz_seg_io },
  { "backup_request", fuzz_backup_request },
  { "backup_chunk", fuzz_backup_chunk },
  { "describe_request", fuzz_describe_request },
  { "describe", fuzz_describe },
  { "tables", fuzz_tables },
  { "repl_pull", fuzz_repl_pull },
  { "repl_reply", fuzz_repl_reply },
  { "raise_gen", fuzz_raise_gen },
};
#define NTARGETS (sizeof targets / sizeof targets[0])

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  uint8_t *copy;

  if (size < 1 || data[0] >= NTARGETS)
    return 0;
  /* An exact-size heap copy: ASAN catches any read past the payload. */
  copy = malloc (size - 1 ? size - 1 : 1);
  if (copy == NULL)
    return 0;
  memcpy (copy, data + 1, size - 1);
  targets[data[0]].fn (copy, size - 1);
  free (copy);
  return 0;
}

#ifdef FUZZ_SEEDS
/* Write the encoding in WB as seed NAME-I of target SEL. */
static int
emit (const char *dir, uint8_t sel, int i, struct proto_wbuf *wb)
{
  char name[64];
  uint8_t *buf;
  int r;

  if (wb->err) {
    fprintf (stderr, "make-seeds: %s: encoding failed\n", targets[sel].name);
    return -1;
  }
  buf = malloc (wb->len + 1);
  if (buf == NULL)
    return -1;
  buf[0] = sel;
  if (wb->len)
    memcpy (buf + 1, wb->data, wb->len);
  snprintf (name, sizeof name, "%s-%d", targets[sel].name, i);
  r = fuzz_write_seed (dir, name, buf, wb->len + 1);
  free (buf);
  proto_wbuf_free (wb);
  memset (wb, 0, sizeof *wb);
  return r;
}

static const uint8_t uuid_a[16] = { 0xde, 0xad, 0xbe, 0xef, 1, 2,  3,  4,
                                    5,    6,    7,    8,    9, 10, 11, 12 };

int
fuzz_make_seeds (const char *dir)
{
  struct proto_wbuf wb = { 0 };
  int r = 0, i;

  /* Headers: a request, a reply with an error, a segment write. */
  {
    static const struct proto_header h[] = {
      { PROTO_MAGIC, PROTO_VERSION, PROTO_OP_HELLO, 0, 0, 36, 1 },
      { PROTO_MAGIC, PROTO_VERSION, PROTO_OP_VOL_OPEN, PROTO_FLAG_REPLY,
        PROTO_ESTALE, 11, 7 },
      { PROTO_MAGIC, PROTO_VERSION, PROTO_OP_SEG_WRITE, PROTO_FLAG_FUA, 0,
        PROTO_SEG_IO_SIZE + 4096, 99 },
      { PROTO_MAGIC, PROTO_VERSION, PROTO_OP_SEG_READ, PROTO_FLAG_REPLY,
        PROTO_ESTALEMAP, 0, UINT64_MAX },
    };
    uint8_t buf[PROTO_HEADER_SIZE];

    for (i = 0; i < 4; i++) {
      proto_header_encode (&h[i], buf);
      proto_put_bytes (&wb, buf, sizeof buf);
      r |= emit (dir, 0, i, &wb);
    }
    /* Frames: HELLO then a STATUS request and its reply. */
    {
      struct proto_header f[3] = {
        { PROTO_MAGIC, PROTO_VERSION, PROTO_OP_HELLO, 0, 0, 8, 1 },
        { PROTO_MAGIC, PROTO_VERSION, PROTO_OP_STATUS, 0, 0, 0, 2 },
        { PROTO_MAGIC, PROTO_VERSION, PROTO_OP_STATUS, PROTO_FLAG_REPLY,
          PROTO_ENOENT, 5, 2 },
      };

      proto_put_u8 (&wb, 3); /* limit: PROTO_MAX_META_PAYLOAD */
      for (i = 0; i < 3; i++) {
        proto_header_encode (&f[i], buf);
        proto_put_bytes (&wb, buf, sizeof buf);
        if (f[i].length)
          proto_put_bytes (&wb, "payload!", f[i].length);
      }
      r |= emit (dir, 1, 0, &wb);
      proto_put_u8 (&wb, 1); /* limit 64, a frame too large for it */
      f[0].length = 65;
      proto_header_encode (&f[0], buf);
      proto_put_bytes (&wb, buf, sizeof buf);
      r |= emit (dir, 1, 1, &wb);
    }
  }
  {
    struct proto_hello m = { .version = PROTO_VERSION,
                             .role = PROTO_ROLE_PLUGIN };

    proto_encode_hello (&m, &wb);
    r |= emit (dir, 2, 0, &wb);
    memcpy (m.uuid, uuid_a, 16);
    m.role = PROTO_ROLE_STORESRV;
    m.auth_len = 5;
    memcpy (m.auth, "token", 5);
    proto_encode_hello (&m, &wb);
    r |= emit (dir, 2, 1, &wb);
  }
  {
    struct proto_status_info m = {
      .segment_size = 4 << 20,
      .servers = 3,
      .servers_up = 2,
      .volumes = 1,
      .segments = 10,
      .capacity = 1ull << 40,
      .used = 1 << 30,
      .degraded = 1,
      .misplaced = 2,
      .domains_needed = 2,
      .domains_room = 1,
      .zones_total = 2,
      .nzones = 2,
      .zones = { { .zone = "rack1",
                   .servers = 2,
                   .flags = PROTO_ZONE_LOW,
                   .room = 1 << 22,
                   .usable = 1 << 30 },
                 { .zone = "rack2" } },
      .ha_flags = PROTO_STATUS_HA,
      .mds_name = "a",
      .epoch = 7,
      .published = 12,
      .sync = "b",
      .nstandbys = 2,
      .standbys = { { .name = "b",
                      .flags = PROTO_STANDBY_SYNC,
                      .acked = 12,
                      .seen_ms = 100 },
                    { .name = "c", .acked = 10, .lag = 2 } },
      .netcd = 2,
      .etcd = { { .url = "http://127.0.0.1:2379",
                  .flags = PROTO_ETCD_HEALTHY | PROTO_ETCD_LEADER,
                  .version = "3.4.23" },
                { .url = "http://[::1]:2379" } }
    };

    memcpy (m.cluster_uuid, uuid_a, 16);
    proto_encode_status_info (&m, &wb);
    r |= emit (dir, 3, 0, &wb);
  }
  {
    struct proto_register m = { .segment_size = 4 << 20,
                                .capacity = 1ull << 34,
                                .used = 0,
                                .address = "127.0.0.1:7421",
                                .zone = "rack1" };

    memcpy (m.uuid, uuid_a, 16);
    proto_encode_register (&m, &wb);
    r |= emit (dir, 4, 0, &wb);
    strcpy (m.address, "unix:/run/tessera/ss.sock");
    m.zone[0] = '\0';
    proto_encode_register (&m, &wb);
    r |= emit (dir, 4, 1, &wb);
  }
  {
    struct proto_register_reply m = { 3, 4 << 20, { 0 }, 1000 };

    memcpy (m.cluster_uuid, uuid_a, 16);
    proto_encode_register_reply (&m, &wb);
    r |= emit (dir, 5, 0, &wb);
  }
  {
    uint64_t segs[3] = { 1, 7, UINT64_MAX };
    struct proto_heartbeat m = { 2, 1 << 30, 1 << 20, 9, 3, segs };
    struct proto_fence fences[2] = { { 1, 5 }, { 9, 1 } };
    struct proto_heartbeat_reply hr = { 2, segs, 2, fences };

    proto_encode_heartbeat (&m, &wb);
    r |= emit (dir, 6, 0, &wb);
    m.n = 0;
    proto_encode_heartbeat (&m, &wb);
    r |= emit (dir, 6, 1, &wb);
    proto_encode_heartbeat_reply (&hr, &wb);
    r |= emit (dir, 7, 0, &wb);
    hr.n = 0;
    proto_encode_heartbeat_reply (&hr, &wb);
    r |= emit (dir, 7, 1, &wb);
    proto_encode_fence (&fences[0], &wb);
    r |= emit (dir, 8, 0, &wb);
  }
  {
    struct proto_server_request m = { 4 };

    proto_encode_server_request (&m, &wb);
    r |= emit (dir, 9, 0, &wb);
  }
  {
    struct proto_set_gen m = { 12, 3, 2, 5 };

    proto_encode_set_gen (&m, &wb);
    r |= emit (dir, 10, 0, &wb);
  }
  {
    struct proto_pull m = {
      12, 3, 4, 2, PROTO_PULL_DIFF, 1 << 20, 5, "127.0.0.1:7422"
    };

    proto_encode_pull (&m, &wb);
    r |= emit (dir, 11, 0, &wb);
    m.mode = PROTO_PULL_FULL;
    strcpy (m.source, "unix:/tmp/ss2.sock");
    proto_encode_pull (&m, &wb);
    r |= emit (dir, 11, 1, &wb);
  }
  {
    struct proto_hash_request m = { 12, 1 << 20, 1 << 20, 65536 };
    uint32_t crcs[4] = { 0, 0xdeadbeef, 1, 0xffffffff };
    struct proto_hash h = { 4, 4, crcs };

    proto_encode_hash_request (&m, &wb);
    r |= emit (dir, 12, 0, &wb);
    proto_encode_hash (&h, &wb);
    r |= emit (dir, 13, 0, &wb);
    h.n = 0;
    proto_encode_hash (&h, &wb);
    r |= emit (dir, 13, 1, &wb);
  }
  {
    struct proto_seg_list_request m = { 3, 2, 0, PROTO_LIST_MAX };
    struct proto_resync rs = { 3, 12, 1 };
    uint64_t segs[2] = { 5, 6 };
    struct proto_segment_list sl = { 2, segs };

    proto_encode_seg_list_request (&m, &wb);
    r |= emit (dir, 14, 0, &wb);
    proto_encode_resync (&rs, &wb);
    r |= emit (dir, 15, 0, &wb);
    proto_encode_segment_list (&sl, &wb);
    r |= emit (dir, 16, 0, &wb);
    sl.n = 0;
    proto_encode_segment_list (&sl, &wb);
    r |= emit (dir, 16, 1, &wb);
  }
  {
    struct proto_server_info s[2] = {
      { 1, PROTO_SERVER_UP, { 1 }, 1 << 30, 1 << 22, 1, "127.0.0.1:7421", "a" },
      { 2, PROTO_SERVER_DRAINING, { 2 }, 1 << 30, 0, 0, "unix:/s", "" },
    };
    struct proto_server_list m = { 2, s };

    proto_encode_server_list (&m, &wb);
    r |= emit (dir, 17, 0, &wb);
    m.n = 0;
    proto_encode_server_list (&m, &wb);
    r |= emit (dir, 17, 1, &wb);
  }
  {
    struct proto_volume_info v[2] = {
      { 1, 10ull << 30, 2, PROTO_VOL_CLEAN, 3, 4, "vol0" },
      { 2, 1 << 20, 3, PROTO_VOL_OPEN_RW, 1, 0, "db" },
    };
    struct proto_volume_list m = { 2, v };
    struct proto_vol_request vr = { 1 << 30, 2, PROTO_OPEN_RW, 1, "vol0" };
    struct proto_open_reply orp = { .segment_size = 4 << 20,
                                    .lease_ms = 10000 };

    proto_encode_volume_info (&v[0], &wb);
    r |= emit (dir, 18, 0, &wb);
    proto_encode_volume_list (&m, &wb);
    r |= emit (dir, 19, 0, &wb);
    proto_encode_vol_request (&vr, &wb);
    r |= emit (dir, 20, 0, &wb);
    orp.volume = v[1];
    proto_encode_open_reply (&orp, &wb);
    r |= emit (dir, 21, 0, &wb);
  }
  {
    struct proto_lease m = { 1, 7 };
    struct proto_map_request mr = { 1, 7, 0, 16 };

    proto_encode_lease (&m, &wb);
    r |= emit (dir, 22, 0, &wb);
    proto_encode_map_request (&mr, &wb);
    r |= emit (dir, 23, 0, &wb);
  }
  {
    struct proto_map_entry e[2] = {
      { 0, 100, 1, 2, { { 1, PROTO_REPLICA_OK }, { 2, PROTO_REPLICA_OK } } },
      { 5,
        101,
        3,
        3,
        { { 1, PROTO_REPLICA_OK },
          { 3, PROTO_REPLICA_STALE },
          { 2, PROTO_REPLICA_SYNCING } } },
    };
    struct proto_map m = { 2, e };

    proto_encode_map (&m, &wb);
    r |= emit (dir, 24, 0, &wb);
    m.n = 0;
    proto_encode_map (&m, &wb);
    r |= emit (dir, 24, 1, &wb);
  }
  {
    struct proto_replica_failed m = { 1, 7, 100, 2 };

    proto_encode_replica_failed (&m, &wb);
    r |= emit (dir, 25, 0, &wb);
  }
  {
    struct proto_seg_io m = { 100, 1, 7, 2, 4096, 512, 5 };
    uint8_t buf[PROTO_SEG_IO_SIZE + 16];

    proto_encode_seg_io (&m, buf);
    memset (buf + PROTO_SEG_IO_SIZE, 0x55, 16);
    proto_put_bytes (&wb, buf, PROTO_SEG_IO_SIZE);
    r |= emit (dir, 26, 0, &wb);
    proto_put_bytes (&wb, buf, sizeof buf);
    r |= emit (dir, 26, 1, &wb);
  }
  {
    struct proto_backup_request m = { 0, 0, PROTO_BACKUP_CHUNK_MAX };

    proto_encode_backup_request (&m, &wb);
    r |= emit (dir, 27, 0, &wb);
  }
  {
    static const uint8_t data[16] = { 0xde, 0xc0, 0xad, 0xde };
    struct proto_backup_chunk m = { 3, 8192, { 0xab }, 4096, 16, data };

    proto_encode_backup_chunk (&m, &wb);
    r |= emit (dir, 28, 0, &wb);
    m.offset = 8192;
    m.len = 0;
    m.data = NULL;
    proto_encode_backup_chunk (&m, &wb);
    r |= emit (dir, 28, 1, &wb);
  }
  {
    struct proto_describe_request q = { 0, PROTO_LIST_MAX };
    struct proto_seg_desc segs[2] = {
      { 5, 1, 3, 2, 9, 0 },
      { 8, 2, PROTO_INDEX_NONE, 1, 4, 1 },
    };
    struct proto_fence fences[2] = { { 1, 10 }, { 2, 4 } };
    struct proto_describe d = { 2, segs, 2, fences };
    const uint8_t blob[6] = { 'T', 'B', 'L', 0, 1, 2 };
    struct proto_tables t = { 7, blob, sizeof blob };

    proto_encode_describe_request (&q, &wb);
    r |= emit (dir, 29, 0, &wb);
    proto_encode_describe (&d, &wb);
    r |= emit (dir, 30, 0, &wb);
    d.nfences = 0;
    proto_encode_describe (&d, &wb);
    r |= emit (dir, 30, 1, &wb);
    proto_encode_tables (&t, &wb);
    r |= emit (dir, 31, 0, &wb);
    t.len = 0;
    t.blob = NULL;
    proto_encode_tables (&t, &wb);
    r |= emit (dir, 31, 1, &wb);
  }
  {
    struct proto_raise_gen m = { 1, 7, 100, 3 };

    proto_encode_raise_gen (&m, &wb);
    r |= emit (dir, 34, 0, &wb);
  }
  return r ? -1 : 0;
}
#endif /* FUZZ_SEEDS */

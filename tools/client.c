/* The tool's side of the MDS connection: connect, call, report errors. */

#include <config.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "auth.h"
#include "tls.h"
#include "frame.h"
#include "cleanup.h"

/* Print "tessera: " FMT "\n" on stderr: the only error output format. */
void
tool_error (const char *fmt, ...)
{
  va_list ap;

  fprintf (stderr, "%s: ", TOOL_PROGRAM);
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fputc ('\n', stderr);
}

/* Load the key once (auth.h); every connection of the process uses it. */
int
tool_load_key (struct tool_ctx *ctx)
{
  struct auth_key key;
  char errmsg[512];
  int r;

  if (auth_key_current ())
    return 0;
  r = auth_key_load (ctx->key_file, &key, errmsg, sizeof errmsg);
  if (r < 0) {
    tool_error ("%s", errmsg);
    return r;
  }
  auth_key_use (&key);
  if (ctx->tls && tls_enable (&key, errmsg, sizeof errmsg) < 0) {
    tool_error ("%s", errmsg);
    return -1;
  }
  return 0;
}

/* Connect to ADDR and check that it is an MDS.  Returns 0 (ctx->client
 * set) or -errno with a message in ERRMSG.
 */
static int
connect_one (struct tool_ctx *ctx, const char *addr, char *errmsg,
             size_t errlen)
{
  struct proto_hello peer;
  int r;

  r = proto_client_connect (addr, PROTO_ROLE_CLI, NULL, ctx->timeout_ms,
                            &ctx->client, &peer, errmsg, errlen);
  if (r < 0) {
    ctx->client = NULL;
    return r;
  }
  if (peer.role != PROTO_ROLE_MDS) {
    snprintf (errmsg, errlen, "not a metadata server (it is a %s)",
              proto_role_name (peer.role));
    proto_client_close (ctx->client);
    ctx->client = NULL;
    return -EPROTO;
  }
  return 0;
}

/* Connect to the current MDS address, else the next ones (one pass);
 * later calls reuse the connection.
 */
int
tool_connect (struct tool_ctx *ctx)
{
  char errmsg[256] = "";
  const char *addr = addrlist_current (&ctx->mds);
  size_t i;
  int r;

  if (ctx->client)
    return 0;

  r = tool_load_key (ctx);
  if (r < 0)
    return r;
  for (i = 0; i < ctx->mds.n; ++i) {
    addr = addrlist_current (&ctx->mds);
    r = connect_one (ctx, addr, errmsg, sizeof errmsg);
    if (r == 0)
      return 0;
    if (i + 1 < ctx->mds.n)
      addrlist_next (&ctx->mds, NULL);
  }
  /* One address reports as it always has; a list names the addresses
   * tried and the last failure.
   */
  if (ctx->mds.n == 1)
    tool_error ("%s: %s", addr, errmsg);
  else
    tool_error ("%s: no metadata server answered (last: %s: %s)", ctx->mds.text,
                addr, errmsg);
  return r;
}

const char *
tool_mds_address (const struct tool_ctx *ctx)
{
  return addrlist_current (&ctx->mds);
}

/* Send one request and wait for its reply; see internal.h. */
int
tool_call (struct tool_ctx *ctx, const char *what, uint8_t opcode,
           const struct proto_wbuf *req, void **reply, uint32_t *reply_len)
{
  char errmsg[PROTO_ERRMSG_MAX + 1] = "";
  size_t tries;
  int r;

  *reply = NULL;
  *reply_len = 0;
  if (req && req->err) {
    tool_error ("%s: cannot encode the request: %s", what,
                strerror (-req->err));
    return req->err;
  }

  for (tries = 1;; tries++) {
    r = tool_connect (ctx);
    if (r < 0)
      return r;

    r = proto_client_call (ctx->client, opcode, 0, req ? req->data : NULL,
                           req ? (uint32_t)req->len : 0, reply, reply_len,
                           errmsg, sizeof errmsg);
    /* A standby did not apply the request: ask the next MDS, the leader
     * it names first.
     */
    if (r == -EREMOTE && !proto_client_broken (ctx->client) &&
        tries < ctx->mds.n) {
      proto_client_close (ctx->client);
      ctx->client = NULL;
      addrlist_next (&ctx->mds, errmsg);
      continue;
    }
    break;
  }
  if (r < 0) {
    /* A transport error names the MDS; a failed status carries the
     * MDS's own message, which already names the object.
     */
    if (proto_client_broken (ctx->client))
      tool_error ("%s: %s: %s", what, tool_mds_address (ctx), strerror (-r));
    else if (r == -EREMOTE && errmsg[0])
      tool_error ("%s: %s: %s", what, tool_mds_address (ctx), errmsg);
    else if (errmsg[0])
      tool_error ("%s: %s", what, errmsg);
    else
      tool_error ("%s: %s", what, strerror (-r));
    return r;
  }
  return 0;
}

/* Report a reply that did not decode. */
int
tool_bad_reply (struct tool_ctx *ctx, const char *what, int r)
{
  tool_error ("%s: malformed reply from %s: %s", what, tool_mds_address (ctx),
              strerror (-r));
  return r;
}

/* "CMD: NAME", or "CMD" when NAME is empty. */
void
tool_what (char *buf, size_t len, const char *cmd, const char *name)
{
  if (name[0])
    snprintf (buf, len, "%s: %s", cmd, name);
  else
    snprintf (buf, len, "%s", cmd);
}

/* Check a volume name from the command line. */
int
tool_check_name (const char *what, const char *name)
{
  if (name[0] == '\0') {
    tool_error ("%s: the volume name must not be empty", what);
    return -EINVAL;
  }
  if (strlen (name) > PROTO_NAME_MAX) {
    tool_error ("%s: volume name too long (at most %d bytes)", what,
                PROTO_NAME_MAX);
    return -EINVAL;
  }
  return 0;
}

/* A STATUS or REPAIR reply, decoded into a malloc'd struct. */
int
tool_decode_status (struct tool_ctx *ctx, const char *what, const void *reply,
                    uint32_t len, struct proto_status_info **out)
{
  CLEANUP_FREE struct proto_status_info *st = malloc (sizeof *st);
  int r;

  if (st == NULL) {
    tool_error ("%s: %s", what, strerror (ENOMEM));
    return -ENOMEM;
  }
  r = proto_decode_status_info (reply, len, st);
  if (r < 0)
    return tool_bad_reply (ctx, what, r);
  *out = st;
  st = NULL;
  return 0;
}

/* STATUS. */
int
tool_get_status (struct tool_ctx *ctx, const char *what,
                 struct proto_status_info **out)
{
  CLEANUP_FREE void *reply = NULL;
  uint32_t len;
  int r;

  r = tool_call (ctx, what, PROTO_OP_STATUS, NULL, &reply, &len);
  if (r < 0)
    return r;
  return tool_decode_status (ctx, what, reply, len, out);
}

/* VOL_INFO for NAME. */
int
tool_get_volume (struct tool_ctx *ctx, const char *what, const char *name,
                 struct proto_volume_info *out)
{
  struct proto_vol_request req = { 0 };
  struct proto_wbuf wb = { 0 };
  CLEANUP_FREE void *reply = NULL;
  uint32_t len;
  int r;

  r = tool_check_name (what, name);
  if (r < 0)
    return r;
  strcpy (req.name, name);
  proto_encode_vol_request (&req, &wb);
  r = tool_call (ctx, what, PROTO_OP_VOL_INFO, &wb, &reply, &len);
  proto_wbuf_free (&wb);
  if (r < 0)
    return r;
  r = proto_decode_volume_info (reply, len, out);
  if (r < 0)
    return tool_bad_reply (ctx, what, r);
  return 0;
}

/* SERVER_LIST. */
int
tool_get_servers (struct tool_ctx *ctx, const char *what,
                  struct proto_server_list *out)
{
  CLEANUP_FREE void *reply = NULL;
  uint32_t len;
  int r;

  memset (out, 0, sizeof *out);
  r = tool_call (ctx, what, PROTO_OP_SERVER_LIST, NULL, &reply, &len);
  if (r < 0)
    return r;
  r = proto_decode_server_list (reply, len, out);
  if (r < 0)
    return tool_bad_reply (ctx, what, r);
  return 0;
}

/* MAP_GET of [START, START+COUNT) of VOLUME, checked. */
int
tool_get_map (struct tool_ctx *ctx, const char *what, uint64_t volume,
              uint64_t start, uint32_t count, struct proto_map *out)
{
  struct proto_map_request req = {
    .volume = volume, .epoch = 0, .start = start, .count = count
  };
  struct proto_wbuf wb = { 0 };
  CLEANUP_FREE void *reply = NULL;
  uint64_t next = start;
  uint32_t len, i;
  int r;

  memset (out, 0, sizeof *out);
  proto_encode_map_request (&req, &wb);
  r = tool_call (ctx, what, PROTO_OP_MAP_GET, &wb, &reply, &len);
  proto_wbuf_free (&wb);
  if (r < 0)
    return r;
  r = proto_decode_map (reply, len, out);
  if (r < 0)
    return tool_bad_reply (ctx, what, r);

  /* Entries must be in the range asked for, in ascending order. */
  for (i = 0; i < out->n; ++i) {
    const struct proto_map_entry *e = &out->entries[i];

    if (e->index < next || e->index - start >= count) {
      proto_map_free (out);
      return tool_bad_reply (ctx, what, -EBADMSG);
    }
    next = e->index + 1;
  }
  return 0;
}

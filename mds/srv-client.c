/* The MDS as a client of storage servers: SEG_FENCE, SEG_SET_GEN,
 * SEG_PULL, SEG_LIST, SEG_HASH for a segment's last epoch, TABLES_PUT
 * and TABLES_GET, and SEG_DESCRIBE (rebuild.c).  Each call opens its own
 * connection (HELLO as
 * PROTO_ROLE_MDS with the cluster uuid and the MDS epoch, mds->ha_epoch,
 * and AUTH with the cluster key),
 * makes one request and closes it, so callers on different threads never
 * share a socket.  A server that has seen a newer leader's epoch refuses
 * the handshake (-ESTALE): a deposed leader can command nothing there.  Never called with mds->lock held: every call may block
 * for its timeout.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deadline.h"
#include "buf.h"
#include "cleanup.h"
#include "frame.h"
#include "log.h"

#include "internal.h"

/* A copy may take this long on top of its bandwidth-bound time. */
#define PULL_TIMEOUT_BASE_MS 120000
/* Failed handshakes are warned about at most this often (repair retries
 * every few seconds); the others are logged at debug level.
 */
#define AUTH_WARN_INTERVAL_NS UINT64_C (60000000000)

/* Connect to the storage server at ADDR within TIMEOUT_MS and
 * authenticate, into *C, with this MDS's epoch in HELLO.  Returns 0, or
 * -errno with the reason in ERRMSG (ERRLEN bytes).  A failed handshake
 * (either side did not prove the cluster key, another protocol version,
 * or -ESTALE: the server has seen a newer leader's epoch) is also logged
 * here, as it means a misconfigured cluster or a deposed leader, not a
 * server that is down.
 */
static int
srv_connect (struct mds *mds, const char *addr, int timeout_ms,
             struct proto_client **c, char *errmsg, size_t errlen)
{
  char msg[PROTO_ERRMSG_MAX + 64];
  uint64_t now;
  bool warn;
  int r;

  /* The epoch lets storage servers refuse a deposed leader. */
  r = proto_client_connect_mds (
      addr, mds->cluster.uuid,
      __atomic_load_n (&mds->ha_epoch, __ATOMIC_SEQ_CST), timeout_ms, c, NULL,
      msg, sizeof msg);
  if (r == 0)
    return 0;
  if (r != -EACCES && r != -EPROTO && r != -ENOKEY && r != -ESTALE) {
    snprintf (errmsg, errlen, "%s", msg);
    return r;
  }
  snprintf (errmsg, errlen, "handshake: %s", msg);
  now = monotonic_ns ();
  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
    warn = now >= mds->srv_auth_warn_ns;
    if (warn)
      mds->srv_auth_warn_ns = now + AUTH_WARN_INTERVAL_NS;
  }
  if (warn)
    log_warn ("storage server %s: handshake failed: %s (more failures "
              "are logged at debug level for a minute)",
              addr, msg);
  else
    log_debug ("storage server %s: handshake failed: %s", addr, msg);
  return r;
}

/* Send request OPCODE with the payload in REQ (its encoding error, if
 * any, is returned first) to the storage server at ADDR, within
 * TIMEOUT_MS for the connection and again for the reply.  On success
 * returns 0 and, if REPLY is not NULL, the reply payload in *REPLY
 * (malloc'd, caller frees, may be NULL) and *REPLY_LEN; a non-empty
 * reply to a caller that passed no REPLY is -EBADMSG.  On failure returns
 * -errno and puts the reason in ERRMSG (ERRLEN bytes, NUL-terminated): the
 * server's message, or the transport error.
 */
int
mds_srv_call (struct mds *mds, const char *addr, int timeout_ms, uint8_t opcode,
              struct proto_wbuf *req, void **reply, uint32_t *reply_len,
              char *errmsg, size_t errlen)
{
  struct proto_client *c = NULL;
  void *payload = NULL;
  uint32_t len = 0;
  int r;

  errmsg[0] = '\0';
  if (reply) {
    *reply = NULL;
    *reply_len = 0;
  }
  /* No command rests on a change the synchronous standby lacks. */
  mds_repl_barrier (mds);
  if (req->err) {
    snprintf (errmsg, errlen, "cannot encode the request: %s",
              strerror (-req->err));
    return req->err;
  }
  r = srv_connect (mds, addr, timeout_ms, &c, errmsg, errlen);
  if (r < 0)
    return r;
  r = proto_client_call (c, opcode, 0, req->data, req->len, &payload, &len,
                         errmsg, errlen);
  proto_client_close (c);
  if (r < 0) {
    if (errmsg[0] == '\0')
      snprintf (errmsg, errlen, "%s", strerror (-r));
    return r;
  }
  if (reply) {
    *reply = payload;
    *reply_len = len;
  }
  else {
    free (payload);
    if (len != 0) {
      snprintf (errmsg, errlen, "unexpected reply payload");
      return -EBADMSG;
    }
  }
  return 0;
}

/* True if the storage server at ADDR answers the handshake. */
bool
mds_srv_alive (struct mds *mds, const char *addr)
{
  struct proto_client *c = NULL;
  char msg[PROTO_ERRMSG_MAX + 64];

  if (srv_connect (mds, addr, MDS_SERVER_TIMEOUT_MS, &c, msg, sizeof msg) < 0)
    return false;
  proto_client_close (c);
  return true;
}

/* SEG_FENCE: the server at ADDR refuses writes to VOLUME older than
 * EPOCH from now on.  Returns 0 or -errno (reason in ERRMSG).
 */
int
mds_srv_fence (struct mds *mds, const char *addr, uint64_t volume,
               uint64_t epoch, char *errmsg, size_t errlen)
{
  struct proto_fence f = { .volume = volume, .epoch = epoch };
  struct proto_wbuf wb = { 0 };
  int r;

  proto_encode_fence (&f, &wb);
  r = mds_srv_call (mds, addr, MDS_SERVER_TIMEOUT_MS, PROTO_OP_SEG_FENCE, &wb,
                    NULL, NULL, errmsg, errlen);
  proto_wbuf_free (&wb);
  return r;
}

/* SEG_SET_GEN: SEGMENT (of VOLUME, at INDEX in its map) on the server
 * at ADDR is at generation GEN, within TIMEOUT_MS for the connection
 * and again for the reply.  Returns 0 or -errno (reason in ERRMSG).
 */
int
mds_srv_set_gen (struct mds *mds, const char *addr, int timeout_ms,
                 uint64_t segment, uint64_t volume, uint64_t index,
                 uint64_t gen, char *errmsg, size_t errlen)
{
  struct proto_set_gen g = {
    .segment = segment, .volume = volume, .gen = gen, .index = index
  };
  struct proto_wbuf wb = { 0 };
  int r;

  proto_encode_set_gen (&g, &wb);
  r = mds_srv_call (mds, addr, timeout_ms, PROTO_OP_SEG_SET_GEN, &wb, NULL,
                    NULL, errmsg, errlen);
  proto_wbuf_free (&wb);
  return r;
}

/* How long to wait for the reply to a SEG_PULL capped at BANDWIDTH
 * bytes/s: twice the time the capped copy of a segment takes, plus a
 * fixed margin.
 */
static int
pull_timeout_ms (struct mds *mds, uint64_t bandwidth)
{
  uint64_t ms = PULL_TIMEOUT_BASE_MS;

  if (bandwidth > 0)
    ms += (uint64_t)mds->cluster.segment_size * 2000 / bandwidth;
  return ms > INT_MAX ? INT_MAX : (int)ms;
}

/* SEG_PULL: the server at ADDR copies a segment as PULL says; returns
 * once the copy is durable there (0) or has failed (-errno, reason in
 * ERRMSG).
 */
int
mds_srv_pull (struct mds *mds, const char *addr, const struct proto_pull *pull,
              char *errmsg, size_t errlen)
{
  struct proto_wbuf wb = { 0 };
  int r;

  proto_encode_pull (pull, &wb);
  r = mds_srv_call (mds, addr, pull_timeout_ms (mds, pull->bandwidth),
                    PROTO_OP_SEG_PULL, &wb, NULL, NULL, errmsg, errlen);
  proto_wbuf_free (&wb);
  return r;
}

/* SEG_LIST: up to PROTO_LIST_MAX segments of VOLUME on the server at
 * ADDR with ids above START_AFTER, last written in MIN_EPOCH or later.
 * *OUT receives the list (free with proto_segment_list_free), checked to
 * be in ascending order above START_AFTER.  Returns 0 or -errno (reason
 * in ERRMSG).
 */
int
mds_srv_list (struct mds *mds, const char *addr, uint64_t volume,
              uint64_t min_epoch, uint64_t start_after,
              struct proto_segment_list *out, char *errmsg, size_t errlen)
{
  struct proto_seg_list_request req = {
    .volume = volume,
    .min_epoch = min_epoch,
    .start_after = start_after,
    .max = PROTO_LIST_MAX,
  };
  struct proto_wbuf wb = { 0 };
  CLEANUP_FREE void *reply = NULL;
  uint64_t prev = start_after;
  uint32_t len, i;
  int r;

  memset (out, 0, sizeof *out);
  proto_encode_seg_list_request (&req, &wb);
  r = mds_srv_call (mds, addr, MDS_SERVER_TIMEOUT_MS, PROTO_OP_SEG_LIST, &wb,
                    &reply, &len, errmsg, errlen);
  proto_wbuf_free (&wb);
  if (r < 0)
    return r;
  r = proto_decode_segment_list (reply, len, out);
  if (r < 0) {
    snprintf (errmsg, errlen, "malformed SEG_LIST reply");
    return r;
  }
  for (i = 0; i < out->n; ++i) {
    if (out->segments[i] <= prev) {
      proto_segment_list_free (out);
      snprintf (errmsg, errlen, "SEG_LIST reply out of order");
      return -EBADMSG;
    }
    prev = out->segments[i];
  }
  return 0;
}

/* The last epoch of SEGMENT on the server at ADDR into *EPOCH: 0 if the
 * server does not hold it.  Asks SEG_HASH for the CRC of the first 4 KiB
 * only, since the reply carries the epoch whatever the range.  Returns 0
 * or -errno (reason in ERRMSG).
 */
int
mds_srv_seg_epoch (struct mds *mds, const char *addr, uint64_t segment,
                   uint64_t *epoch, char *errmsg, size_t errlen)
{
  struct proto_hash_request req = {
    .segment = segment,
    .offset = 0,
    .length = 4096,
    .block = 4096,
  };
  struct proto_wbuf wb = { 0 };
  struct proto_hash h;
  CLEANUP_FREE void *reply = NULL;
  uint32_t len;
  int r;

  *epoch = 0;
  proto_encode_hash_request (&req, &wb);
  r = mds_srv_call (mds, addr, MDS_SERVER_TIMEOUT_MS, PROTO_OP_SEG_HASH, &wb,
                    &reply, &len, errmsg, errlen);
  proto_wbuf_free (&wb);
  if (r == -ENOENT) /* a server that answers it does not hold it */
    return 0;
  if (r < 0)
    return r;
  r = proto_decode_hash (reply, len, &h);
  if (r < 0) {
    snprintf (errmsg, errlen, "malformed SEG_HASH reply");
    return r;
  }
  *epoch = h.epoch;
  proto_hash_free (&h);
  return 0;
}

/* TABLES_PUT: the server at ADDR stores the cluster tables BLOB (LEN
 * bytes) of VERSION if it holds an older version; *STORED (may be NULL)
 * receives the version it holds afterwards.  Returns 0 or -errno (reason
 * in ERRMSG).
 */
int
mds_srv_tables_put (struct mds *mds, const char *addr, uint64_t version,
                    const uint8_t *blob, size_t len, uint64_t *stored,
                    char *errmsg, size_t errlen)
{
  struct proto_tables t = { .version = version, .blob = blob, .len = len };
  struct proto_wbuf wb = { 0 };
  CLEANUP_FREE void *reply = NULL;
  uint32_t rlen;
  int r;

  if (len > PROTO_TABLES_MAX) {
    snprintf (errmsg, errlen, "the tables (%zu bytes) exceed %u bytes", len,
              (unsigned)PROTO_TABLES_MAX);
    return -EFBIG;
  }
  proto_encode_tables (&t, &wb);
  r = mds_srv_call (mds, addr, MDS_SERVER_TIMEOUT_MS, PROTO_OP_TABLES_PUT, &wb,
                    &reply, &rlen, errmsg, errlen);
  proto_wbuf_free (&wb);
  if (r < 0)
    return r;
  if (proto_decode_tables (reply, rlen, &t) < 0 || t.len != 0) {
    snprintf (errmsg, errlen, "malformed TABLES_PUT reply");
    return -EBADMSG;
  }
  if (stored)
    *stored = t.version;
  return 0;
}

/* TABLES_GET: the cluster tables the server at ADDR holds, into *OUT,
 * whose blob points into *PAYLOAD (malloc'd, the caller frees it).
 * Returns 0 or -errno (reason in ERRMSG).
 */
int
mds_srv_tables_get (struct mds *mds, const char *addr, struct proto_tables *out,
                    void **payload, char *errmsg, size_t errlen)
{
  struct proto_wbuf wb = { 0 };
  uint32_t len;
  int r;

  r = mds_srv_call (mds, addr, MDS_SERVER_TIMEOUT_MS, PROTO_OP_TABLES_GET, &wb,
                    payload, &len, errmsg, errlen);
  if (r < 0)
    return r;
  if (proto_decode_tables (*payload, len, out) < 0) {
    free (*payload);
    *payload = NULL;
    snprintf (errmsg, errlen, "malformed TABLES_GET reply");
    return -EBADMSG;
  }
  return 0;
}

/* SEG_DESCRIBE: the page of segments after START_AFTER the server at
 * ADDR holds, into *OUT (free with proto_describe_free).  Returns 0 or
 * -errno (reason in ERRMSG).
 */
int
mds_srv_describe (struct mds *mds, const char *addr, uint64_t start_after,
                  struct proto_describe *out, char *errmsg, size_t errlen)
{
  struct proto_describe_request q = { .start_after = start_after,
                                      .max = PROTO_LIST_MAX };
  struct proto_wbuf wb = { 0 };
  CLEANUP_FREE void *reply = NULL;
  uint32_t len;
  int r;

  memset (out, 0, sizeof *out);
  proto_encode_describe_request (&q, &wb);
  r = mds_srv_call (mds, addr, MDS_SERVER_TIMEOUT_MS, PROTO_OP_SEG_DESCRIBE,
                    &wb, &reply, &len, errmsg, errlen);
  proto_wbuf_free (&wb);
  if (r < 0)
    return r;
  r = proto_decode_describe (reply, len, out);
  if (r == 0 && out->n > 0 && out->segs[0].segment <= start_after) {
    proto_describe_free (out);
    r = -EBADMSG;
  }
  if (r < 0)
    snprintf (errmsg, errlen, "malformed SEG_DESCRIBE reply");
  return r;
}

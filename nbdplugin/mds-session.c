/* nbdkit-tessera-plugin: the MDS session.
 *
 * One connection to the MDS per volume, shared by every thread: a
 * request takes mds_lock, sends and waits for its answer on the
 * connection, and gives the lock back (one request on the wire at a
 * time).  A transport error leaves the connection broken; the next
 * request reconnects.  Each request is bounded by the timeout and by
 * the running NBD request's deadline (request.c), waiting for the
 * connection included, so that a stalled MDS holds no request up for
 * longer than that.  Idempotent requests are retried on a new
 * connection after a transport error (mds_session_call); the others are
 * sent once and the caller learns whether the MDS answered, never saw
 * the request, or may have applied it (mds_session_request).
 *
 * Only this file touches volume.mds and volume.mds_lock, which is never
 * held across anything but the MDS exchange itself.
 */

#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "buf.h"
#include "cleanup.h"
#include "deadline.h"
#include "frame.h"
#include "minmax.h"
#include "protocol.h"

#include "internal.h"

/* Connect (or reconnect) to the MDS.  Caller holds v->mds_lock.
 * Returns 0 or -errno.  ON_ERROR: report every failure as an error (the
 * first connection), else only authentication failures (reconnects).
 */
static int
mds_connect (struct volume *v, bool on_error)
{
  struct proto_client *c;
  struct proto_hello peer;
  char errmsg[256];
  int r;

  proto_client_close (v->mds);
  v->mds = NULL;
  /* Within a request, connecting ends with the request too; the calls
   * on the connection then get the full timeout (mds_session_request
   * cuts it per attempt).
   */
  r = proto_client_connect (v->cfg->mds, PROTO_ROLE_PLUGIN, NULL,
                            request_step_ms (v->cfg->timeout_ms), &c, &peer,
                            errmsg, sizeof errmsg);
  if (r == 0 && request_deadline != 0 &&
      (r = proto_client_set_timeout (c, v->cfg->timeout_ms)) < 0) {
    snprintf (errmsg, sizeof errmsg, "set timeout: %s", strerror (-r));
    proto_client_close (c);
  }
  if (r < 0) {
    if (on_error || r == -EACCES || r == -ENOKEY)
      nbdkit_error ("mds %s: %s", v->cfg->mds, errmsg);
    else
      nbdkit_debug ("mds %s: %s", v->cfg->mds, errmsg);
    return r;
  }
  if (peer.role != PROTO_ROLE_MDS) {
    nbdkit_debug ("mds %s: peer is a %s, not an MDS", v->cfg->mds,
                  proto_role_name (peer.role));
    proto_client_close (c);
    return -EPROTO;
  }
  v->mds = c;
  return 0;
}

/* Initialize V's MDS session, not connected yet (volume_open). */
void
mds_session_init (struct volume *v)
{
  pthread_mutex_init (&v->mds_lock, NULL);
  v->mds = NULL;
}

/* Make the first connection to the MDS (volume_open): unlike the
 * reconnects of later requests, every failure is reported.  Returns 0
 * or -errno (after an nbdkit_error).
 */
int
mds_session_connect (struct volume *v)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&v->mds_lock);
  return mds_connect (v, true);
}

/* Close V's MDS connection and free the session (volume_free). */
void
mds_session_destroy (struct volume *v)
{
  proto_client_close (v->mds);
  v->mds = NULL;
  pthread_mutex_destroy (&v->mds_lock);
}

/* Send request OPCODE with payload REQ (NULL: empty) to the MDS and wait
 * for the reply; see proto_client_call for REPLY, REPLY_LEN, ERRMSG and
 * the return value.  Unless ONCE, a transport error is retried on a new
 * connection until the timeout has passed, so such a request must be
 * idempotent.  Waiting for the connection (other requests use it) counts
 * against the timeout too, and no attempt starts in its last quarter
 * (one attempt may take the timeout against a stalled MDS), so that the
 * whole takes at most about twice the timeout.  A request sent ONCE is
 * one the caller can do without (an epoch rotation, EPOCH_CLEAN): it
 * waits for a busy connection a quarter of the timeout at most.
 * *OUTCOME (may be NULL)
 * tells whether the result is the MDS's answer, or the request was never
 * sent, or its fate is unknown.
 */
int
mds_session_request (struct volume *v, uint8_t opcode,
                     const struct proto_wbuf *req, bool once, int *outcome,
                     void **reply, uint32_t *reply_len, char *errmsg,
                     size_t errlen)
{
  uint64_t timeout_ns = (uint64_t)v->cfg->timeout_ms * 1000000;
  uint64_t start = monotonic_ns ();
  uint64_t deadline = request_clamp (start + timeout_ns);
  uint64_t last_start = MIN (start + timeout_ns - timeout_ns / 4, deadline);
  uint64_t lock_deadline =
      once ? MIN (start + timeout_ns / 4, deadline) : deadline;
  uint64_t now;
  int how = MDS_NOT_SENT, r = -ETIMEDOUT, ms;
  unsigned attempt;

  *reply = NULL;
  *reply_len = 0;
  if (outcome)
    *outcome = MDS_NOT_SENT;
  if (errmsg && errlen)
    errmsg[0] = '\0';
  if (req && req->err)
    return req->err;
  for (attempt = 0;; attempt++) {
    struct timespec ts = timespec_from_ns (lock_deadline);

    if (pthread_mutex_clocklock (&v->mds_lock, CLOCK_MONOTONIC, &ts) != 0)
      goto timed_out;
    if (monotonic_ns () > last_start) {
      pthread_mutex_unlock (&v->mds_lock);
      goto timed_out;
    }
    r = 0;
    if (v->mds == NULL || proto_client_broken (v->mds)) {
      r = mds_connect (v, false);
      if (tessera_debug_lease)
        nbdkit_debug ("mds %s: reconnect: %s", v->cfg->mds,
                      r < 0 ? strerror (-r) : "ok");
    }
    /* Within a request, the attempt ends with the request. */
    ms = request_step_ms (v->cfg->timeout_ms);
    if (r == 0 && ms < v->cfg->timeout_ms)
      r = proto_client_set_timeout (v->mds, ms);
    if (r == 0) {
      r = proto_client_call (v->mds, opcode, 0, req ? req->data : NULL,
                             req ? req->len : 0, reply, reply_len, errmsg,
                             errlen);
      if (ms < v->cfg->timeout_ms && !proto_client_broken (v->mds))
        proto_client_set_timeout (v->mds, v->cfg->timeout_ms);
      if (r >= 0 || !proto_client_broken (v->mds)) {
        pthread_mutex_unlock (&v->mds_lock);
        if (outcome)
          *outcome = MDS_ANSWERED;
        return r;
      }
      how = MDS_UNKNOWN;
      if (outcome)
        *outcome = how;
    }
    pthread_mutex_unlock (&v->mds_lock);

    now = monotonic_ns ();
    if (once || now >= deadline)
      return r;
    /* A fresh connection usually works at once; then back off. */
    if (attempt > 0)
      request_sleep_ms (
          MIN (attempt == 1 ? 50 : 250, (int)((deadline - now) / 1000000) + 1));
  }

timed_out:
  if (r == -ETIMEDOUT && errmsg && errlen && errmsg[0] == '\0')
    snprintf (errmsg, errlen, "timed out waiting for the MDS connection");
  return r;
}

/* mds_session_request, retried after transport errors (idempotent
 * requests only).
 */
int
mds_session_call (struct volume *v, uint8_t opcode,
                  const struct proto_wbuf *req, void **reply,
                  uint32_t *reply_len, char *errmsg, size_t errlen)
{
  return mds_session_request (v, opcode, req, false, NULL, reply, reply_len,
                              errmsg, errlen);
}

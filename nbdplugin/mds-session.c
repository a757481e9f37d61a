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
 * mds= may list several MDS processes, one the leader (addrlist.h):
 * connecting tries them in turn from the one that last worked, and a
 * standby's PROTO_ENOTLEADER answer sends the request on to the next
 * (the leader it names first), within the same deadline.
 *
 * Only this file touches volume.mds, volume.mds_addrs and
 * volume.mds_lock, which is never held across anything but the MDS
 * exchange itself.
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

/* Connect to ADDR, the connect and the handshake bounded by MS, and
 * check that the peer is an MDS.  Caller holds v->mds_lock.  Returns 0
 * (v->mds set) or -errno with a message in ERRMSG.
 */
static int
mds_connect_one (struct volume *v, const char *addr, int ms, char *errmsg,
                 size_t errlen)
{
  struct proto_client *c;
  struct proto_hello peer;
  int r;

  r = proto_client_connect (addr, PROTO_ROLE_PLUGIN, NULL, ms, &c, &peer,
                            errmsg, errlen);
  if (r == 0 && request_deadline != 0 &&
      (r = proto_client_set_timeout (c, v->cfg->timeout_ms)) < 0) {
    snprintf (errmsg, errlen, "set timeout: %s", strerror (-r));
    proto_client_close (c);
  }
  if (r < 0)
    return r;
  if (peer.role != PROTO_ROLE_MDS) {
    snprintf (errmsg, errlen, "peer is a %s, not an MDS",
              proto_role_name (peer.role));
    proto_client_close (c);
    return -EPROTO;
  }
  v->mds = c;
  return 0;
}

/* Connect (or reconnect) to the MDS: the current address of the list,
 * else the next ones, one pass at most; the one that answers becomes
 * current.  Each attempt is bounded by the timeout and DEADLINE (0:
 * none), and none starts after DEADLINE.  Caller holds v->mds_lock.
 * Returns 0 or -errno.  ON_ERROR: report a failed pass as an error (the
 * first connection), else only authentication failures (reconnects).
 */
static int
mds_connect (struct volume *v, bool on_error, uint64_t deadline)
{
  struct addrlist *l = &v->mds_addrs;
  const char *addr = addrlist_current (l);
  char errmsg[256];
  uint64_t now;
  size_t i;
  int r = -ETIMEDOUT, ms;

  proto_client_close (v->mds);
  v->mds = NULL;
  snprintf (errmsg, sizeof errmsg, "%s", strerror (ETIMEDOUT));
  for (i = 0; i < l->n; ++i) {
    if (i > 0)
      addr = l->addrs[addrlist_next (l, NULL)];
    /* Within a request, connecting ends with the request too; the calls
     * on the connection then get the full timeout (mds_session_request
     * cuts it per attempt).
     */
    ms = request_step_ms (v->cfg->timeout_ms);
    if (deadline != 0) {
      now = monotonic_ns ();
      if (now >= deadline)
        break;
      ms = MIN (ms, (int)((deadline - now) / 1000000) + 1);
    }
    r = mds_connect_one (v, addr, ms, errmsg, sizeof errmsg);
    if (r == 0) {
      if (v->mds_used != (int)l->current && (l->n > 1 || tessera_debug_lease))
        nbdkit_debug ("mds: connected to %s (address %zu of %zu)", addr,
                      l->current + 1, l->n);
      v->mds_used = (int)l->current;
      return 0;
    }
    if (r == -EACCES || r == -ENOKEY || (on_error && l->n == 1))
      nbdkit_error ("mds %s: %s", addr, errmsg);
    else
      nbdkit_debug ("mds %s: %s", addr, errmsg);
  }
  /* A list names the addresses tried and the last failure. */
  if (on_error && l->n > 1)
    nbdkit_error ("mds %s: no MDS answered (last: %s: %s)", l->text, addr,
                  errmsg);
  return r;
}

/* Initialize V's MDS session, not connected yet (volume_open). */
void
mds_session_init (struct volume *v)
{
  pthread_mutex_init (&v->mds_lock, NULL);
  v->mds = NULL;
  memset (&v->mds_addrs, 0, sizeof v->mds_addrs);
  v->mds_used = -1;
}

/* Make the first connection to the MDS (volume_open): unlike the
 * reconnects of later requests, every failure is reported.  Returns 0
 * or -errno (after an nbdkit_error).
 */
int
mds_session_connect (struct volume *v)
{
  char errmsg[256];
  int r;

  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&v->mds_lock);
  if (v->mds_addrs.n == 0) {
    /* .config checked the list: only memory can run out here. */
    r = addrlist_parse (v->cfg->mds, &v->mds_addrs, errmsg, sizeof errmsg);
    if (r < 0) {
      nbdkit_error ("mds: %s", errmsg);
      return r;
    }
  }
  return mds_connect (v, true, 0);
}

/* Close V's MDS connection and free the session (volume_free). */
void
mds_session_destroy (struct volume *v)
{
  proto_client_close (v->mds);
  v->mds = NULL;
  addrlist_free (&v->mds_addrs);
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
 * waits for a busy connection a quarter of the timeout at most.  A
 * standby's PROTO_ENOTLEADER answer (the request was not applied) sends
 * the request to the next address at once, ONCE or not; a whole pass of
 * standbys counts as one failed attempt (-EREMOTE with the last
 * standby's message).  *OUTCOME (may be NULL) tells whether the result
 * is the MDS's answer, or the request was never sent (or only to
 * standbys), or its fate is unknown.
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
  unsigned attempt = 0;
  size_t standbys = 0;

  *reply = NULL;
  *reply_len = 0;
  if (outcome)
    *outcome = MDS_NOT_SENT;
  if (errmsg && errlen)
    errmsg[0] = '\0';
  if (req && req->err)
    return req->err;
  for (;;) {
    struct timespec ts = timespec_from_ns (lock_deadline);

    if (pthread_mutex_clocklock (&v->mds_lock, CLOCK_MONOTONIC, &ts) != 0)
      goto timed_out;
    if (monotonic_ns () > last_start) {
      pthread_mutex_unlock (&v->mds_lock);
      goto timed_out;
    }
    r = 0;
    if (v->mds == NULL || proto_client_broken (v->mds)) {
      r = mds_connect (v, false, deadline);
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
      if (r == -EREMOTE && !proto_client_broken (v->mds)) {
        /* A standby, which did not apply the request: ask the next
         * address (the leader it names first) at once, until a whole
         * pass has met standbys; then back off as after a failure.
         */
        nbdkit_debug ("mds %s: %s", proto_client_address (v->mds), errmsg);
        proto_client_close (v->mds);
        v->mds = NULL;
        addrlist_next (&v->mds_addrs, errmsg);
        if (++standbys % v->mds_addrs.n != 0) {
          pthread_mutex_unlock (&v->mds_lock);
          continue;
        }
      }
      else if (r >= 0 || !proto_client_broken (v->mds)) {
        pthread_mutex_unlock (&v->mds_lock);
        if (outcome)
          *outcome = MDS_ANSWERED;
        return r;
      }
      else {
        how = MDS_UNKNOWN;
        if (outcome)
          *outcome = how;
      }
    }
    pthread_mutex_unlock (&v->mds_lock);

    now = monotonic_ns ();
    if (once || now >= deadline)
      return r;
    /* A fresh connection usually works at once; then back off. */
    if (attempt > 0)
      request_sleep_ms (
          MIN (attempt == 1 ? 50 : 250, (int)((deadline - now) / 1000000) + 1));
    attempt++;
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

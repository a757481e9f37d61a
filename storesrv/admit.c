/* Admission limits and timers: what a connection may cost, and for how
 * long it may keep the server waiting.
 *
 * Until AUTH succeeds (handshake.c) a connection is held at constant
 * cost: conn.c reads one request at a time and refuses headers of any
 * other opcode or with a payload over PROTO_MAX_PREAUTH_PAYLOAD as they
 * arrive; here it is closed after --handshake-timeout seconds, and at
 * most --max-unauthenticated of them are kept: a new one pushes out the
 * oldest, so that a flood of idle sockets can delay a real client but
 * never lock it out.  Authenticated connections are limited to
 * --max-connections, and each to --max-inflight requests and
 * SS_CONN_MAX_BYTES of buffers (ss_admit_at_bounds), past which conn.c
 * stops reading until replies have gone out.
 *
 * An authenticated connection may stay idle between frames as long as
 * it likes, but once a frame has begun to arrive, each --frame-timeout
 * seconds must bring more of it: a peer that sends a header announcing
 * a large payload and then stalls would otherwise hold the payload's
 * buffer for ever.  Connections in the middle of a frame are kept in
 * order of their last progress (conn.c reports it with
 * ss_admit_frame_progress), so that one timer, armed for the oldest and
 * not disarmed when the list empties, serves all of them: receiving
 * costs a few pointer moves, never a timer operation.
 *
 * The lists and timers live in struct ss_loop and are touched only on
 * the ring thread.  This file decides and conn.c acts: it calls nothing
 * of the daemon but ring.c.  The connections to close, past a deadline
 * (ss_admit_hs_overdue, ss_admit_frame_overdue, asked by the timers'
 * completions in conn.c) or pushed out by a new one (ss_admit_to_drop),
 * are returned to conn.c, which closes them.
 */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "deadline.h"
#include "log.h"

#include "internal.h"

static void hs_timer_arm (struct ss_loop *loop);
static void frame_timer_arm (struct ss_loop *loop);

/* CLOCK_MONOTONIC in milliseconds. */
static uint64_t
now_ms (void)
{
  return monotonic_ns () / 1000000;
}

/* Take C off the loop's list of unauthenticated connections (if on it).
 * When the list empties the handshake timer has nothing left to do:
 * cancel it, so that it never holds up a shutdown.
 */
void
ss_admit_unauth_remove (struct ss_loop *loop, struct ss_conn *c)
{
  if (!c->in_unauth)
    return;
  if (c->uprev)
    c->uprev->unext = c->unext;
  else
    loop->unauth_head = c->unext;
  if (c->unext)
    c->unext->uprev = c->uprev;
  else
    loop->unauth_tail = c->uprev;
  c->uprev = c->unext = NULL;
  c->in_unauth = false;
  loop->nunauth--;
  if (loop->nunauth > 0)
    return;
  if (loop->evicted > 0) {
    log_warn ("dropped %" PRIu64 " unauthenticated connections at the "
              "limit of --max-unauthenticated %" PRIu32,
              loop->evicted, loop->ctx->max_unauth);
    loop->evicted = 0;
  }
  if (loop->hs_timer_armed) {
    struct io_uring_sqe *sqe = ss_get_sqe (loop);

    io_uring_prep_timeout_remove (sqe, (uintptr_t)&loop->hs_timer_op, 0);
    io_uring_sqe_set_data (sqe, &loop->cancel_op);
  }
}

/* Take C off the loop's list of connections in the middle of a frame
 * (if on it).  The frame timer stays armed: it finds nothing to do when
 * it expires, which costs less than cancelling it for every frame.
 */
void
ss_admit_frame_untrack (struct ss_loop *loop, struct ss_conn *c)
{
  if (!c->in_frames)
    return;
  if (c->fprev)
    c->fprev->fnext = c->fnext;
  else
    loop->frames_head = c->fnext;
  if (c->fnext)
    c->fnext->fprev = c->fprev;
  else
    loop->frames_tail = c->fprev;
  c->fprev = c->fnext = NULL;
  c->in_frames = false;
}

/* Bytes arrived on C, or C reads again after a pause: if C is
 * authenticated, reading and holds part of a frame, note the progress
 * (moving C to the tail of the loop's list, which stays in order of
 * progress); otherwise take it off the list.  A paused connection is
 * not waiting for its peer, but for its own replies to go out.
 */
void
ss_admit_frame_progress (struct ss_loop *loop, struct ss_conn *c)
{
  if (c->state != SS_CONN_READY || c->closing || c->paused ||
      (c->got == 0 && c->rreq == NULL && c->rlen == c->roff)) {
    ss_admit_frame_untrack (loop, c);
    return;
  }
  c->progress_ms = loop->now_ms;
  if (c->in_frames) {
    if (loop->frames_tail == c)
      return;
    ss_admit_frame_untrack (loop, c);
  }
  c->fprev = loop->frames_tail;
  c->fnext = NULL;
  if (loop->frames_tail)
    loop->frames_tail->fnext = c;
  else
    loop->frames_head = c;
  loop->frames_tail = c;
  c->in_frames = true;
  frame_timer_arm (loop);
}

/* The handshake timer expired or was removed: returns the oldest
 * unauthenticated connection past its deadline, for the caller to
 * close, or NULL once there is none, the timer then armed for the next
 * deadline.  Called by the timer's completion (conn.c) until it
 * returns NULL.
 */
struct ss_conn *
ss_admit_hs_overdue (struct ss_loop *loop)
{
  struct ss_conn *c = loop->unauth_head;

  loop->hs_timer_armed = false;
  if (c != NULL && c->deadline_ms <= now_ms ()) {
    log_debug ("%s: no authentication within %" PRIu32 " s, closing", c->peer,
               loop->ctx->handshake_timeout);
    return c;
  }
  hs_timer_arm (loop);
  return NULL;
}

/* Arm the handshake timer for the oldest unauthenticated connection's
 * deadline, unless it is armed or there is none.
 */
static void
hs_timer_arm (struct ss_loop *loop)
{
  struct io_uring_sqe *sqe;
  uint64_t now, wait;

  if (loop->hs_timer_armed || loop->unauth_head == NULL || loop->stopping)
    return;
  now = now_ms ();
  /* A millisecond late rather than early. */
  wait = loop->unauth_head->deadline_ms > now
             ? loop->unauth_head->deadline_ms - now + 1
             : 1;
  loop->hs_timer_ts.tv_sec = wait / 1000;
  loop->hs_timer_ts.tv_nsec = (wait % 1000) * 1000000;
  sqe = ss_get_sqe (loop);
  io_uring_prep_timeout (sqe, &loop->hs_timer_ts, 0, 0);
  io_uring_sqe_set_data (sqe, &loop->hs_timer_op);
  loop->hs_timer_armed = true;
}

/* The frame timer expired or was removed: returns the connection whose
 * frame made no progress for --frame-timeout seconds, for the caller to
 * close, or NULL once there is none, the timer then armed for the next
 * deadline, if any connection is in the middle of a frame.  Called by
 * the timer's completion (conn.c) until it returns NULL.
 */
struct ss_conn *
ss_admit_frame_overdue (struct ss_loop *loop)
{
  uint64_t timeout_ms = (uint64_t)loop->ctx->frame_timeout * 1000;
  struct ss_conn *c = loop->frames_head;

  loop->frame_timer_armed = false;
  if (c == NULL || c->progress_ms + timeout_ms > now_ms ()) {
    frame_timer_arm (loop);
    return NULL;
  }
  if (c->rreq)
    log_warn ("%s: %s: frame incomplete after %" PRIu32 " s (%" PRIu32
              " of %" PRIu32 " payload bytes), closing the connection",
              c->peer, proto_opcode_name (c->rreq->hdr.opcode),
              loop->ctx->frame_timeout, c->got, c->rreq->hdr.length);
  else
    log_warn ("%s: frame incomplete after %" PRIu32 " s (%" PRIu32
              " of %d header bytes), closing the connection",
              c->peer, loop->ctx->frame_timeout, c->got + (c->rlen - c->roff),
              PROTO_HEADER_SIZE);
  return c;
}

/* Arm the frame timer for the deadline of the connection whose frame
 * made progress least recently, unless it is armed (for that deadline
 * or an earlier one: deadlines only grow along the list) or there is
 * none.
 */
static void
frame_timer_arm (struct ss_loop *loop)
{
  struct io_uring_sqe *sqe;
  uint64_t now, deadline, wait;

  if (loop->frame_timer_armed || loop->frames_head == NULL || loop->stopping)
    return;
  now = now_ms ();
  deadline = loop->frames_head->progress_ms +
             (uint64_t)loop->ctx->frame_timeout * 1000;
  /* A millisecond late rather than early. */
  wait = deadline > now ? deadline - now + 1 : 1;
  loop->frame_timer_ts.tv_sec = wait / 1000;
  loop->frame_timer_ts.tv_nsec = (wait % 1000) * 1000000;
  sqe = ss_get_sqe (loop);
  io_uring_prep_timeout (sqe, &loop->frame_timer_ts, 0, 0);
  io_uring_sqe_set_data (sqe, &loop->frame_timer_op);
  loop->frame_timer_armed = true;
}

/* A connection is being accepted (ss_conn_new): at
 * --max-unauthenticated unauthenticated connections, returns the oldest
 * of them, for the caller to close to make room, else NULL.  Called
 * until it returns NULL.
 */
struct ss_conn *
ss_admit_to_drop (struct ss_loop *loop)
{
  if (loop->nunauth < loop->ctx->max_unauth || loop->unauth_head == NULL)
    return NULL;
  if (loop->evicted++ == 0)
    log_warn ("%u unauthenticated connections (--max-unauthenticated): "
              "dropping the oldest to admit new ones",
              loop->nunauth);
  log_debug ("%s: dropped: too many unauthenticated connections",
             loop->unauth_head->peer);
  return loop->unauth_head;
}

/* C was accepted (ss_conn_new): put it on the loop's list of
 * unauthenticated connections, with --handshake-timeout from now to
 * authenticate.
 */
void
ss_admit_unauth_add (struct ss_loop *loop, struct ss_conn *c)
{
  c->deadline_ms = now_ms () + (uint64_t)loop->ctx->handshake_timeout * 1000;
  c->uprev = loop->unauth_tail;
  if (loop->unauth_tail)
    loop->unauth_tail->unext = c;
  else
    loop->unauth_head = c;
  loop->unauth_tail = c;
  c->in_unauth = true;
  loop->nunauth++;
  hs_timer_arm (loop);
}

/* C's peer proved the cluster key (handshake.c): count it against
 * --max-connections and let it send requests.  Returns 0, or -EAGAIN if
 * the server has as many authenticated connections as it accepts.
 */
int
ss_admit_authenticated (struct ss_loop *loop, struct ss_conn *c)
{
  assert (c->state == SS_CONN_AUTH);
  if (loop->nauth >= loop->ctx->max_conns)
    return -EAGAIN;
  ss_admit_unauth_remove (loop, c);
  c->state = SS_CONN_READY;
  loop->nauth++;
  return 0;
}

/* The most requests C may hold before it stops reading. */
static unsigned
max_reqs (const struct ss_conn *c)
{
  return c->state == SS_CONN_READY ? c->loop->ctx->max_inflight : 1;
}

/* Whether C holds as many requests, or as many bytes of their buffers,
 * as it may: then it stops reading until replies have gone out.
 */
bool
ss_admit_at_bounds (const struct ss_conn *c)
{
  return c->nreqs >= max_reqs (c) || c->req_bytes >= SS_CONN_MAX_BYTES;
}


/* Shut down (ss_conns_stop): remove the frame timer, so that it does
 * not hold up the end of the loop.
 */
void
ss_admit_stop (struct ss_loop *loop)
{
  if (loop->frame_timer_armed) {
    struct io_uring_sqe *sqe = ss_get_sqe (loop);

    io_uring_prep_timeout_remove (sqe, (uintptr_t)&loop->frame_timer_op, 0);
    io_uring_sqe_set_data (sqe, &loop->cancel_op);
  }
}

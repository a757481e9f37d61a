/* The ring primitives every module of the ring thread uses: getting an
 * SQE, handing an index update to the index worker (counted until it
 * comes back), posting a message to the ring thread from any thread, and
 * failing the store after a disk error.  This file calls nothing of the
 * daemon above it (only index.c's queue): loop.c, which runs the ring
 * and orchestrates shutdown, sits on top and reaps the completions.
 *
 * Failing the store (ss_store_fail, PostgreSQL's "fsyncgate" rule):
 * since Linux 4.13 a writeback error is reported once per open file and
 * the failed pages are then marked clean, so a retried sync would
 * succeed over lost data.  The failing request and every later one get
 * PROTO_EIO, and loop.c's fail timer (armed here) stops the loop
 * SS_FAIL_GRACE_MS later.
 */

#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "log.h"

#include "internal.h"

#define SS_FAIL_GRACE_MS 1000 /* after a store failure, then stop */

/* Get an SQE, submitting what is queued when the SQ is full. */
struct io_uring_sqe *
ss_get_sqe (struct ss_loop *loop)
{
  struct io_uring_sqe *sqe;

  SS_ASSERT_RING (loop);
  while ((sqe = io_uring_get_sqe (&loop->ring)) == NULL) {
    int r = io_uring_submit (&loop->ring);

    if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
      log_error ("io_uring_submit: %s", strerror (-r));
      abort ();
    }
  }
  return sqe;
}

/* Queue an index update, counting it until it is handed back. */
void
ss_index_submit_op (struct ss_loop *loop, struct ss_index_op *op)
{
  SS_ASSERT_RING (loop);
  loop->index_pending++;
  ss_index_submit (loop->ctx->index, op);
}

/* Post MSG to the ring thread, which runs MSG->fn soon.  Any thread. */
void
ss_loop_post (struct ss_loop *loop, struct ss_msg *msg)
{
  uint64_t one = 1;

  msg->next = NULL;
  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&loop->post.lock);
    if (loop->post.tail)
      loop->post.tail->next = msg;
    else
      loop->post.head = msg;
    loop->post.tail = msg;
  }
  if (write (loop->post.efd, &one, sizeof one) != sizeof one) {
    log_error ("post: eventfd write: %s", strerror (errno));
    abort ();
  }
}

/* True if ERR (-errno), from a write of the data file, fails the store:
 * anything but ENOSPC and EDQUOT, which lose nothing (the write did not
 * happen and the client is told).
 */
bool
ss_store_write_failed (int err)
{
  return err < 0 && err != -ENOSPC && err != -EDQUOT;
}

/* True if ERR (-errno), from a punch (fallocate) of the data file, fails
 * the store: anything but EOPNOTSUPP (the filesystem cannot punch).
 */
bool
ss_store_punch_failed (int err)
{
  return err < 0 && err != -EOPNOTSUPP;
}

/* Fail the store after WHAT failed with ERR (-errno): a write, sync or
 * punch of the data file, or an index commit, that may have lost data
 * the server acknowledged or is about to.  Logs once; from now on every
 * request gets PROTO_EIO, and the daemon stops SS_FAIL_GRACE_MS later
 * with exit status 1 and no clean-shutdown marker.  Never undone.  Ring
 * thread.
 */
void
ss_store_fail (struct ss_loop *loop, const char *what, int err)
{
  struct io_uring_sqe *sqe;

  SS_ASSERT_RING (loop);
  if (loop->failed)
    return;
  loop->failed = true;
  snprintf (loop->fail_why, sizeof loop->fail_why, "%s: %s", what,
            strerror (-err));
  __atomic_store_n (&loop->ctx->store_failed, true, __ATOMIC_SEQ_CST);
  __atomic_store_n (&loop->ctx->exit_status, EXIT_FAILURE, __ATOMIC_SEQ_CST);
  log_error ("store failed: %s: not serving any more; check the disk, "
             "then restart the server (it will register as unclean, and "
             "the MDS marks the replicas written since as stale)",
             loop->fail_why);
  if (loop->stopping)
    return;
  sqe = ss_get_sqe (loop);
  loop->fail_timer_ts.tv_sec = SS_FAIL_GRACE_MS / 1000;
  loop->fail_timer_ts.tv_nsec = (SS_FAIL_GRACE_MS % 1000) * 1000000;
  io_uring_prep_timeout (sqe, &loop->fail_timer_ts, 0, 0);
  io_uring_sqe_set_data (sqe, &loop->fail_timer_op);
  loop->fail_timer_armed = true;
}

/* The io_uring event loop: runs the one ring of the ring thread (ring.c
 * holds the primitives the modules use to queue work on it) and
 * orchestrates startup and shutdown.  It arms accept, the signalfd and
 * the eventfds of the index worker, the MDS client and the messages other
 * threads post (ss_loop_post), and reaps every completion.
 *
 * Every SQE's user_data points at a struct ss_op embedded in the object
 * that owns the operation's buffers; completions are reaped in batches
 * and the CQ is advanced once per batch.  On SIGTERM or SIGINT the loop
 * stops accepting, closes every connection, cancels the pulls, waits
 * until no request, index update, delete or worker job is in flight,
 * cancels its own reads and returns.
 *
 * A disk error that may have lost acknowledged data fails the store
 * (ss_store_fail in ring.c): the failing request and every later one get
 * PROTO_EIO, and the fail timer stops the loop SS_FAIL_GRACE_MS later;
 * main then exits 1 without writing the clean-shutdown marker, so the
 * next start registers as unclean.
 */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "cleanup.h"
#include "deadline.h"
#include "log.h"

#include "internal.h"

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define SS_HAVE_VALGRIND 1
#endif
#endif

#define RING_ENTRIES 256
#define CQ_ENTRIES 4096
#define REAP_BATCH 256
#define ACCEPT_RETRY_NS 100000000 /* 100 ms after EMFILE and the like */

/* Cancel the operation whose user_data is TARGET. */
static void
cancel_op (struct ss_loop *loop, struct ss_op *target)
{
  struct io_uring_sqe *sqe = ss_get_sqe (loop);

  io_uring_prep_cancel (sqe, target, 0);
  io_uring_sqe_set_data (sqe, &loop->cancel_op);
}

/* A cancel request completed; its target reports separately. */
static void
cancel_done (struct ss_loop *loop, struct ss_op *op, int res)
{
  /* -ENOENT or -EALREADY: the target completed by itself. */
}

/* Accept the next connection. */
static void
arm_accept (struct ss_loop *loop)
{
  struct io_uring_sqe *sqe = ss_get_sqe (loop);

  io_uring_prep_accept (sqe, loop->listen_fd, NULL, NULL, SOCK_CLOEXEC);
  io_uring_sqe_set_data (sqe, &loop->accept_op);
  loop->accept_armed = true;
}

/* Re-arm accept after ACCEPT_RETRY_NS. */
static void
arm_timer (struct ss_loop *loop)
{
  struct io_uring_sqe *sqe = ss_get_sqe (loop);

  loop->timer_ts.tv_sec = 0;
  loop->timer_ts.tv_nsec = ACCEPT_RETRY_NS;
  io_uring_prep_timeout (sqe, &loop->timer_ts, 0, 0);
  io_uring_sqe_set_data (sqe, &loop->timer_op);
  loop->timer_armed = true;
}

/* Read the 8-byte counter of eventfd FD into *VAL through OP. */
static void
arm_eventfd (struct ss_loop *loop, int fd, uint64_t *val, struct ss_op *op,
             bool *armed)
{
  struct io_uring_sqe *sqe = ss_get_sqe (loop);

  io_uring_prep_read (sqe, fd, val, sizeof *val, 0);
  io_uring_sqe_set_data (sqe, op);
  *armed = true;
}

/* Read the next SIGTERM or SIGINT from the signalfd. */
static void
arm_signal (struct ss_loop *loop)
{
  struct io_uring_sqe *sqe = ss_get_sqe (loop);

  io_uring_prep_read (sqe, loop->signal_fd, &loop->siginfo,
                      sizeof loop->siginfo, 0);
  io_uring_sqe_set_data (sqe, &loop->signal_op);
  loop->signal_armed = true;
}

/* Begin shutting down: stop accepting and close every connection. */
static void
loop_stop (struct ss_loop *loop)
{
  if (loop->stopping)
    return;
  loop->stopping = true;
  if (loop->accept_armed)
    cancel_op (loop, &loop->accept_op);
  if (loop->fail_timer_armed) {
    struct io_uring_sqe *sqe = ss_get_sqe (loop);

    io_uring_prep_timeout_remove (sqe, (uintptr_t)&loop->fail_timer_op, 0);
    io_uring_sqe_set_data (sqe, &loop->cancel_op);
  }
  ss_conns_stop (loop);
  ss_pulls_cancel_all (loop);
}

/* The store failed: the grace for the last replies is over, stop. */
static void
fail_timer_done (struct ss_loop *loop, struct ss_op *op, int res)
{
  loop->fail_timer_armed = false;
  loop_stop (loop);
}

/* A connection arrived (or accept failed): serve it, accept again. */
static void
accept_done (struct ss_loop *loop, struct ss_op *op, int res)
{
  loop->accept_armed = false;
  if (res >= 0) {
    if (loop->stopping) {
      close (res);
      return;
    }
    loop->accept_error_logged = false;
    ss_conn_new (loop, res);
    arm_accept (loop);
    return;
  }
  if (loop->stopping)
    return;
  switch (res) {
  case -EAGAIN:
  case -EINTR:
  case -ECONNABORTED:
    arm_accept (loop);
    return;
  default:
    /* EMFILE, ENFILE, ENOBUFS, ENOMEM...: wait before retrying. */
    if (!loop->accept_error_logged)
      log_error ("accept: %s", strerror (-res));
    loop->accept_error_logged = true;
    arm_timer (loop);
  }
}

/* The accept retry delay is over. */
static void
timer_done (struct ss_loop *loop, struct ss_op *op, int res)
{
  loop->timer_armed = false;
  if (!loop->stopping)
    arm_accept (loop);
}

/* SIGTERM or SIGINT arrived: shut down. */
static void
signal_done (struct ss_loop *loop, struct ss_op *op, int res)
{
  loop->signal_armed = false;
  if (res == (int)sizeof loop->siginfo) {
    SS_MARK_DEFINED (&loop->siginfo, sizeof loop->siginfo);
    log_info ("%s: shutting down", strsignal (loop->siginfo.ssi_signo));
    loop_stop (loop);
    return;
  }
  if (res == -ECANCELED)
    return;
  if (res != -EAGAIN && res != -EINTR)
    log_error ("signalfd read: %s", res < 0 ? strerror (-res) : "short");
  if (!loop->stopping)
    arm_signal (loop);
}

/* The index worker handed ops back: finish them. */
static void
index_done (struct ss_loop *loop, struct ss_op *op, int res)
{
  struct ss_index_op *iop, *next;

  loop->index_armed = false;
  if (res == (int)sizeof loop->index_val)
    SS_MARK_DEFINED (&loop->index_val, sizeof loop->index_val);
  for (iop = ss_index_take_done (loop->ctx->index); iop; iop = next) {
    next = iop->next;
    assert (loop->index_pending > 0);
    loop->index_pending--;
    /* A commit that failed for another reason than a full filesystem
     * may leave the index behind the data: fail the store.
     */
    if (iop->err < 0 && ss_index_errno (loop, iop->err) != -ENOSPC) {
      ss_store_fail (loop, "index: commit", iop->err);
      iop->err = -EIO;
    }
    iop->done (loop, iop);
  }
  if (res == -ECANCELED || loop->cancelled)
    return;
  if (res < 0 && res != -EAGAIN && res != -EINTR) {
    log_error ("index eventfd read: %s", strerror (-res));
    abort ();
  }
  arm_eventfd (loop, loop->index_efd, &loop->index_val, &loop->index_op,
               &loop->index_armed);
}

/* The MDS client queued segments to delete. */
static void
mds_done (struct ss_loop *loop, struct ss_op *op, int res)
{
  loop->mds_armed = false;
  if (res == (int)sizeof loop->mds_val)
    SS_MARK_DEFINED (&loop->mds_val, sizeof loop->mds_val);
  if (res == -ECANCELED || loop->cancelled)
    return;
  if (res < 0 && res != -EAGAIN && res != -EINTR) {
    log_error ("mds eventfd read: %s", strerror (-res));
    abort ();
  }
  if (!loop->stopping) {
    ss_mds_fences_apply (loop);
    ss_mds_deletes_start (loop);
  }
  arm_eventfd (loop, loop->mds_efd, &loop->mds_val, &loop->mds_op,
               &loop->mds_armed);
}

/* Other threads posted messages: run them, in order. */
static void
post_done (struct ss_loop *loop, struct ss_op *op, int res)
{
  struct ss_msg *msg, *next;

  loop->post_armed = false;
  if (res == (int)sizeof loop->post_val)
    SS_MARK_DEFINED (&loop->post_val, sizeof loop->post_val);
  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&loop->post.lock);
    msg = loop->post.head;
    loop->post.head = loop->post.tail = NULL;
  }
  for (; msg; msg = next) {
    next = msg->next;
    msg->fn (loop, msg);
  }
  if (res == -ECANCELED || loop->cancelled)
    return;
  if (res < 0 && res != -EAGAIN && res != -EINTR) {
    log_error ("post eventfd read: %s", strerror (-res));
    abort ();
  }
  arm_eventfd (loop, loop->post.efd, &loop->post_val, &loop->post_op,
               &loop->post_armed);
}

/* Set up the ring and the loop's fds.  CTX's store, index and MDS client
 * exist; the listening socket is CTX->listen_fd.  Must be called on the
 * thread that will run the loop.  Returns 0 and *OUT or -errno.
 */
int
ss_loop_new (struct ss_ctx *ctx, struct ss_loop **out)
{
  struct io_uring_params p = { .flags = IORING_SETUP_CQSIZE,
                               .cq_entries = CQ_ENTRIES };
  struct ss_loop *loop;
  sigset_t sigs;
  void *zeros;
  int r;

  *out = NULL;
  loop = calloc (1, sizeof *loop);
  if (loop == NULL)
    return -ENOMEM;
  loop->ctx = ctx;
  loop->store = ctx->store;
  loop->thread = pthread_self ();
  loop->listen_fd = ctx->listen_fd;
  loop->index_efd = ss_index_eventfd (ctx->index);
  loop->mds_efd = ss_mds_eventfd (ctx->mds);
  loop->signal_fd = -1;
  loop->accept_op.done = accept_done;
  loop->timer_op.done = timer_done;
  loop->signal_op.done = signal_done;
  loop->index_op.done = index_done;
  loop->mds_op.done = mds_done;
  loop->post_op.done = post_done;
  loop->cancel_op.done = cancel_done;
  loop->fail_timer_op.done = fail_timer_done;
  ss_conns_init (loop);
  pthread_mutex_init (&loop->post.lock, NULL);
  loop->post.efd = eventfd (0, EFD_CLOEXEC);
  if (loop->post.efd == -1) {
    r = -errno;
    log_error ("eventfd: %s", strerror (-r));
    pthread_mutex_destroy (&loop->post.lock);
    free (loop);
    return r;
  }

  /* Never written: its pages stay the shared zero page. */
  zeros = mmap (NULL, PROTO_MAX_DATA, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS,
                -1, 0);
  if (zeros == MAP_FAILED) {
    r = -errno;
    close (loop->post.efd);
    pthread_mutex_destroy (&loop->post.lock);
    free (loop);
    return r;
  }
  loop->zeros = zeros;

  r = ss_segs_init (loop);
  if (r < 0)
    goto err;
  sigemptyset (&sigs);
  sigaddset (&sigs, SIGTERM);
  sigaddset (&sigs, SIGINT);
  loop->signal_fd = signalfd (-1, &sigs, SFD_CLOEXEC);
  if (loop->signal_fd == -1) {
    r = -errno;
    log_error ("signalfd: %s", strerror (-r));
    goto err;
  }
  /* Checksums are CPU work: as many threads as this machine has cores
   * would compete with the ring, so two.
   */
  r = ss_workq_new (loop, "hash", 2, &loop->hashq);
  if (r < 0)
    goto err;
  r = ss_workq_new (loop, "pull", ctx->max_pulls, &loop->pullq);
  if (r < 0)
    goto err;
  r = io_uring_queue_init_params (RING_ENTRIES, &loop->ring, &p);
  if (r < 0) {
    log_error ("io_uring_queue_init: %s", strerror (-r));
    goto err;
  }
  *out = loop;
  return 0;

err:
  ss_workq_free (loop->pullq);
  ss_workq_free (loop->hashq);
  ss_segs_free (loop);
  if (loop->signal_fd >= 0)
    close (loop->signal_fd);
  close (loop->post.efd);
  pthread_mutex_destroy (&loop->post.lock);
  munmap (zeros, PROTO_MAX_DATA);
  free (loop);
  return r;
}

/* True when nothing is left in flight but the loop's own reads. */
static bool
loop_quiet (const struct ss_loop *loop)
{
  return !loop->accept_armed && !loop->timer_armed && !loop->hs_timer_armed &&
         !loop->frame_timer_armed && !loop->fail_timer_armed &&
         loop->nconns == 0 && loop->index_pending == 0 &&
         loop->deletes_pending == 0 && loop->jobs == 0 && loop->pulls == NULL;
}

/* Process up to REAP_BATCH completions, then advance the CQ once. */
static void
loop_reap (struct ss_loop *loop)
{
  struct io_uring_cqe *cqe;
  unsigned head, n = 0;

  io_uring_for_each_cqe (&loop->ring, head, cqe)
  {
    struct ss_op *op = io_uring_cqe_get_data (cqe);

    op->done (loop, op, cqe->res);
    if (++n == REAP_BATCH)
      break;
  }
  io_uring_cq_advance (&loop->ring, n);
}

/* Submit what is queued and wait for at least one completion. */
static int
loop_wait (struct ss_loop *loop)
{
#ifdef SS_HAVE_VALGRIND
  /* Valgrind (3.19) keeps its big lock across io_uring_enter, so the
   * other threads would stall while the ring waits: wait in poll on the
   * ring fd instead, which valgrind knows may block.
   */
  if (RUNNING_ON_VALGRIND) {
    struct pollfd pfd = { .fd = loop->ring.ring_fd, .events = POLLIN };
    int r = io_uring_submit (&loop->ring);

    if (r < 0)
      return r;
    if (io_uring_cq_ready (&loop->ring) == 0 && poll (&pfd, 1, -1) == -1)
      return -errno;
    return 0;
  }
#endif
  return io_uring_submit_and_wait (&loop->ring, 1);
}

/* Serve until SIGTERM or SIGINT and a quiet shutdown.  Returns 0, or
 * -errno if the ring failed.
 */
int
ss_loop_run (struct ss_loop *loop)
{
  SS_ASSERT_RING (loop);
  arm_signal (loop);
  arm_eventfd (loop, loop->index_efd, &loop->index_val, &loop->index_op,
               &loop->index_armed);
  arm_eventfd (loop, loop->mds_efd, &loop->mds_val, &loop->mds_op,
               &loop->mds_armed);
  arm_eventfd (loop, loop->post.efd, &loop->post_val, &loop->post_op,
               &loop->post_armed);
  arm_accept (loop);
  /* Fences and deletes the MDS sent before the loop ran. */
  ss_mds_fences_apply (loop);
  ss_mds_deletes_start (loop);

  for (;;) {
    int r = loop_wait (loop);

    if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY && r != -ETIME) {
      log_error ("io_uring_enter: %s", strerror (-r));
      return r;
    }
    loop->now_ms = monotonic_ns () / 1000000;
    loop_reap (loop);
    ss_conns_flush (loop);
    if (loop->stopping && loop_quiet (loop)) {
      if (!loop->cancelled) {
        if (loop->signal_armed)
          cancel_op (loop, &loop->signal_op);
        if (loop->index_armed)
          cancel_op (loop, &loop->index_op);
        if (loop->mds_armed)
          cancel_op (loop, &loop->mds_op);
        if (loop->post_armed)
          cancel_op (loop, &loop->post_op);
        loop->cancelled = true;
      }
      if (!loop->signal_armed && !loop->index_armed && !loop->mds_armed &&
          !loop->post_armed)
        return 0;
    }
  }
}

/* Tear down the ring and free the loop (after ss_loop_run returned, or
 * before it ran).  Accepts NULL.
 */
void
ss_loop_free (struct ss_loop *loop)
{
  if (loop == NULL)
    return;
  /* Idle by now: nothing is queued, so the threads just exit. */
  ss_workq_free (loop->pullq);
  ss_workq_free (loop->hashq);
  io_uring_queue_exit (&loop->ring);
  ss_segs_free (loop);
  ss_gone_free (loop);
  ss_fences_free (loop);
  ss_tables_free (loop);
  if (loop->signal_fd >= 0)
    close (loop->signal_fd);
  close (loop->post.efd);
  pthread_mutex_destroy (&loop->post.lock);
  munmap ((void *)loop->zeros, PROTO_MAX_DATA);
  free (loop);
}

/* Worker threads for work that must not stall the ring: SEG_HASH
 * checksums and SEG_PULL copies (which block on another server).
 *
 * A queue has a fixed number of threads; each takes the oldest job, runs
 * it, and posts its DONE message to the ring thread (ss_loop_post).  So
 * at most NTHREADS jobs of a queue run at once and the others wait, in
 * order.
 */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "log.h"

#include "internal.h"

/* Lock order: LOCK is a leaf. */
struct ss_workq {
  struct ss_loop *loop;
  char name[16];
  unsigned nthreads;
  unsigned started;
  pthread_t *threads;

  pthread_mutex_t lock;
  pthread_cond_t cond;  /* signalled when HEAD grows or STOP is set */
  bool stop;            /* under LOCK */
  struct ss_work *head; /* under LOCK: waiting, FIFO */
  struct ss_work *tail;
};

/* A worker: run jobs until asked to stop with none left. */
static void *
worker (void *arg)
{
  struct ss_workq *q = arg;
  struct ss_work *w;

  log_set_thread_name (q->name);
  for (;;) {
    {
      ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->lock);
      while (q->head == NULL && !q->stop)
        pthread_cond_wait (&q->cond, &q->lock);
      if (q->head == NULL)
        return NULL;
      w = q->head;
      q->head = w->next;
      if (q->head == NULL)
        q->tail = NULL;
    }
    w->run (w);
    ss_loop_post (q->loop, &w->done);
  }
}

/* Start a queue of NTHREADS threads named NAME whose jobs report to
 * LOOP.  Returns 0 and *OUT, or -errno after logging why.
 */
int
ss_workq_new (struct ss_loop *loop, const char *name, unsigned nthreads,
              struct ss_workq **out)
{
  struct ss_workq *q;
  unsigned i;
  int r;

  assert (nthreads > 0);
  *out = NULL;
  q = calloc (1, sizeof *q);
  if (q == NULL)
    return -ENOMEM;
  q->threads = calloc (nthreads, sizeof *q->threads);
  if (q->threads == NULL) {
    free (q);
    return -ENOMEM;
  }
  q->loop = loop;
  q->nthreads = nthreads;
  snprintf (q->name, sizeof q->name, "%s", name);
  pthread_mutex_init (&q->lock, NULL);
  pthread_cond_init (&q->cond, NULL);
  for (i = 0; i < nthreads; i++) {
    r = pthread_create (&q->threads[i], NULL, worker, q);
    if (r != 0) {
      log_error ("%s: pthread_create: %s", name, strerror (r));
      ss_workq_free (q);
      return -r;
    }
    q->started++;
  }
  *out = q;
  return 0;
}

/* Queue W (RUN and DONE.fn set) for a worker.  Ring thread. */
void
ss_workq_submit (struct ss_workq *q, struct ss_work *w)
{
  w->next = NULL;
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->lock);
  assert (!q->stop);
  if (q->tail)
    q->tail->next = w;
  else
    q->head = w;
  q->tail = w;
  pthread_cond_signal (&q->cond);
}

/* Stop the threads once the jobs queued are done, and free Q.  Accepts
 * NULL.
 */
void
ss_workq_free (struct ss_workq *q)
{
  unsigned i;

  if (q == NULL)
    return;
  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&q->lock);
    q->stop = true;
    pthread_cond_broadcast (&q->cond);
  }
  for (i = 0; i < q->started; i++)
    pthread_join (q->threads[i], NULL);
  pthread_cond_destroy (&q->cond);
  pthread_mutex_destroy (&q->lock);
  free (q->threads);
  free (q);
}

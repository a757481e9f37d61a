/* nbdkit-tessera-plugin: request deadlines (see request.h).
 *
 * nbdkit calls a plugin's data callbacks for one request on one thread,
 * so the running request's deadline is a thread-local variable that the
 * steps below the callbacks consult: storage-server batches and
 * connects, MDS requests, map operations, epoch waits, the range lock
 * and the flush lock.  Threads that serve no request (lease renewal,
 * connection helpers, open and close) have none, and their steps wait
 * their own timeouts as before.
 */

#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "deadline.h"

#include "request.h"

__thread uint64_t request_deadline;

/* A request starts on this thread: its deadline is the budget from now. */
void
request_start (int timeout_ms)
{
  request_deadline = monotonic_ns () + (uint64_t)timeout_ms * 1000000 *
                                           REQUEST_BUDGET_NUM /
                                           REQUEST_BUDGET_DEN;
}

/* The request running on this thread is over. */
void
request_end (void)
{
  request_deadline = 0;
}

/* DEADLINE, or the running request's deadline if that is earlier. */
uint64_t
request_clamp (uint64_t deadline)
{
  uint64_t r = request_deadline;

  return r != 0 && r < deadline ? r : deadline;
}

/* The time a step of TIMEOUT_MS may take: TIMEOUT_MS, cut to what is
 * left of the running request but never below 1 ms.
 */
int
request_step_ms (int timeout_ms)
{
  uint64_t r = request_deadline, now;

  if (r == 0)
    return timeout_ms;
  now = monotonic_ns ();
  if (r <= now + 1000000)
    return 1;
  if (r - now < (uint64_t)timeout_ms * 1000000)
    return (int)((r - now) / 1000000);
  return timeout_ms;
}

/* Whether a step that may count a server as failed after no answer for
 * its timeout (TIMEOUT_MS) may start: at least a quarter of it is left
 * of the running request (or no request is running).
 */
bool
request_can_start (int timeout_ms)
{
  uint64_t r = request_deadline;

  return r == 0 || monotonic_ns () + (uint64_t)timeout_ms * 250000 <= r;
}

/* Lock M, waiting no later than the running request's deadline.
 * Returns 0 or -ETIMEDOUT.
 */
int
request_lock (pthread_mutex_t *m)
{
  struct timespec ts;
  int e;

  if (request_deadline == 0)
    return -pthread_mutex_lock (m);
  ts = timespec_from_ns (request_deadline);
  e = pthread_mutex_clocklock (m, CLOCK_MONOTONIC, &ts);
  return e == 0 ? 0 : -e;
}

/* Wait on COND (a CLOCK_MONOTONIC condition variable) with M held, no
 * later than the running request's deadline.  Returns 0 when woken
 * (spuriously too: callers loop), or -ETIMEDOUT once the deadline has
 * passed.
 */
int
request_cond_wait (pthread_cond_t *cond, pthread_mutex_t *m)
{
  struct timespec ts;
  int e;

  if (request_deadline == 0)
    return -pthread_cond_wait (cond, m);
  ts = timespec_from_ns (request_deadline);
  e = pthread_cond_timedwait (cond, m, &ts);
  return e == 0 ? 0 : -e;
}

/* Sleep for MS milliseconds, inside a request or not (the MDS session's
 * back-off, VOL_OPEN's retries).  Not nbdkit_nanosleep: these sleeps
 * are short or happen in .get_ready, where nbdkit 1.32's
 * nbdkit_nanosleep aborts (it polls a quit pipe that does not exist
 * yet).
 */
void
request_sleep_ms (unsigned ms)
{
  struct timespec ts = { .tv_sec = ms / 1000,
                         .tv_nsec = (long)(ms % 1000) * 1000000 };

  while (nanosleep (&ts, &ts) == -1 && errno == EINTR)
    ;
}

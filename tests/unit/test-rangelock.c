/* Unit tests for nbdplugin/rangelock.c: which ranges overlap, zero-length
 * and end-of-space ranges, a waiter woken by a release, and the wait
 * cut off by the running request's deadline (nbdplugin/request.c).
 */

#include <config.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include <check.h>

#include "deadline.h"
#include "rangelock.h"
#include "request.h"

/* Try to acquire [OFFSET, OFFSET+COUNT) in RL within a request of
 * TIMEOUT_MS (which gives up after 1.5 times that).  Returns what
 * rangelock_acquire returned; on success R is held.
 */
static int
try_acquire (struct rangelock *rl, struct range *r, uint64_t offset,
             uint64_t count, int timeout_ms)
{
  int ret;

  request_start (timeout_ms);
  ret = rangelock_acquire (rl, r, offset, count);
  request_end ();
  return ret;
}

/* Ranges that do not overlap are held together; touching is not
 * overlapping.
 */
START_TEST (test_disjoint)
{
  struct rangelock rl;
  struct range a, b, c;

  rangelock_init (&rl);
  ck_assert_int_eq (try_acquire (&rl, &a, 0, 10, 20), 0);
  ck_assert_int_eq (try_acquire (&rl, &b, 10, 10, 20), 0);
  ck_assert_int_eq (try_acquire (&rl, &c, 100, 1, 20), 0);
  ck_assert_uint_eq (a.start, 0);
  ck_assert_uint_eq (a.end, 10);
  rangelock_release (&rl, &b);
  rangelock_release (&rl, &a);
  rangelock_release (&rl, &c);
  rangelock_destroy (&rl);
}
END_TEST

/* An overlapping range waits until the request's deadline, then gives
 * up holding nothing.
 */
START_TEST (test_overlap_times_out)
{
  struct rangelock rl;
  struct range a, b;
  uint64_t t0;

  rangelock_init (&rl);
  ck_assert_int_eq (try_acquire (&rl, &a, 100, 50, 20), 0);
  t0 = monotonic_ns ();
  ck_assert_int_eq (try_acquire (&rl, &b, 149, 10, 20), -ETIMEDOUT);
  /* The budget is 1.5 times the timeout: 30 ms. */
  ck_assert_uint_ge (monotonic_ns () - t0, 29000000);
  ck_assert_int_eq (try_acquire (&rl, &b, 0, 101, 20), -ETIMEDOUT);
  ck_assert_ptr_eq (rl.held, &a);
  ck_assert_ptr_null (a.next);
  rangelock_release (&rl, &a);
  ck_assert_int_eq (try_acquire (&rl, &b, 0, 1000, 20), 0);
  rangelock_release (&rl, &b);
  rangelock_destroy (&rl);
}
END_TEST

/* A zero count holds one byte; a range past UINT64_MAX ends there. */
START_TEST (test_edges)
{
  struct rangelock rl;
  struct range a, b;

  rangelock_init (&rl);
  ck_assert_int_eq (try_acquire (&rl, &a, 5, 0, 20), 0);
  ck_assert_uint_eq (a.end, 6);
  ck_assert_int_eq (try_acquire (&rl, &b, 5, 1, 20), -ETIMEDOUT);
  ck_assert_int_eq (try_acquire (&rl, &b, 6, 0, 20), 0);
  rangelock_release (&rl, &b);
  rangelock_release (&rl, &a);

  ck_assert_int_eq (try_acquire (&rl, &a, UINT64_MAX - 1, 10, 20), 0);
  ck_assert_uint_eq (a.start, UINT64_MAX - 1);
  ck_assert_uint_eq (a.end, UINT64_MAX);
  ck_assert_int_eq (try_acquire (&rl, &b, UINT64_MAX - 2, 2, 20), -ETIMEDOUT);
  ck_assert_int_eq (try_acquire (&rl, &b, UINT64_MAX - 2, 1, 20), 0);
  rangelock_release (&rl, &b);
  rangelock_release (&rl, &a);
  rangelock_destroy (&rl);
}
END_TEST

struct waiter {
  struct rangelock *rl;
  struct range r;
  atomic_bool acquired;
  int ret;
};

/* Thread: acquire [0, 10) outside any request (no deadline). */
static void *
waiter_thread (void *arg)
{
  struct waiter *w = arg;

  w->ret = rangelock_acquire (w->rl, &w->r, 0, 10);
  atomic_store (&w->acquired, true);
  return NULL;
}

/* Outside a request the wait has no end but the release of the range
 * in the way, which wakes the waiter.
 */
START_TEST (test_release_wakes)
{
  struct rangelock rl;
  struct range a;
  struct waiter w = { .rl = &rl };
  struct timespec ts = { .tv_nsec = 50000000 };
  pthread_t t;

  rangelock_init (&rl);
  atomic_init (&w.acquired, false);
  ck_assert_int_eq (rangelock_acquire (&rl, &a, 5, 1), 0);
  ck_assert_int_eq (pthread_create (&t, NULL, waiter_thread, &w), 0);
  nanosleep (&ts, NULL);
  ck_assert (!atomic_load (&w.acquired));
  rangelock_release (&rl, &a);
  ck_assert_int_eq (pthread_join (t, NULL), 0);
  ck_assert (atomic_load (&w.acquired));
  ck_assert_int_eq (w.ret, 0);
  ck_assert_ptr_eq (rl.held, &w.r);
  rangelock_release (&rl, &w.r);
  rangelock_destroy (&rl);
}
END_TEST

static Suite *
rangelock_suite (void)
{
  Suite *s = suite_create ("rangelock");
  TCase *tc;

  tc = tcase_create ("overlap");
  tcase_add_test (tc, test_disjoint);
  tcase_add_test (tc, test_overlap_times_out);
  tcase_add_test (tc, test_edges);
  suite_add_tcase (s, tc);

  tc = tcase_create ("wake");
  tcase_add_test (tc, test_release_wakes);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (rangelock_suite ());
  int failed;

  srunner_run_all (sr, CK_ENV);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

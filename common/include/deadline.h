/* Deadlines for pthread_cond_timedwait on condition variables set to
 * CLOCK_MONOTONIC (pthread_condattr_setclock), which every timed wait in
 * Tessera uses.
 */

#ifndef TESSERA_DEADLINE_H
#define TESSERA_DEADLINE_H

#include <stdint.h>
#include <time.h>

/* Nanoseconds on the monotonic clock. */
static inline uint64_t
monotonic_ns (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000 + (uint64_t)ts.tv_nsec;
}

/* The monotonic time NS (as from monotonic_ns) as a timespec. */
static inline struct timespec
timespec_from_ns (uint64_t ns)
{
  struct timespec ts = { .tv_sec = (time_t)(ns / 1000000000),
                         .tv_nsec = (long)(ns % 1000000000) };

  return ts;
}

/* Add NS nanoseconds to *TS, keeping tv_nsec below one second. */
static inline void
timespec_add_ns (struct timespec *ts, uint64_t ns)
{
  ts->tv_sec += (time_t)(ns / 1000000000);
  ts->tv_nsec += (long)(ns % 1000000000);
  if (ts->tv_nsec >= 1000000000) {
    ts->tv_sec++;
    ts->tv_nsec -= 1000000000;
  }
}

/* The monotonic clock's time MS milliseconds from now. */
static inline struct timespec
deadline_after_ms (uint64_t ms)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  timespec_add_ns (&ts, ms * 1000000);
  return ts;
}

#endif /* TESSERA_DEADLINE_H */

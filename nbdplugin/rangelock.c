/* nbdkit-tessera-plugin: byte-range lock.
 *
 * Writes, trims and zeroes that overlap are serialized here so that every
 * replica applies them in the same order.  Reads do not lock.  The number
 * of ranges held at once is bounded by nbdkit's worker threads, so a
 * list is enough.
 */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "cleanup.h"

#include "rangelock.h"
#include "request.h"

/* Initialize RL, which must not be in use. */
void
rangelock_init (struct rangelock *rl)
{
  pthread_mutex_init (&rl->lock, NULL);
  pthread_condattr_t attr;

  pthread_condattr_init (&attr);
  pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
  pthread_cond_init (&rl->cond, &attr);
  pthread_condattr_destroy (&attr);
  rl->held = NULL;
}

/* Destroy RL.  No range may be held. */
void
rangelock_destroy (struct rangelock *rl)
{
  assert (rl->held == NULL);
  pthread_cond_destroy (&rl->cond);
  pthread_mutex_destroy (&rl->lock);
}

/* Whether [START, END) overlaps a held range. */
static bool
overlaps_held (const struct rangelock *rl, uint64_t start, uint64_t end)
{
  const struct range *h;

  for (h = rl->held; h != NULL; h = h->next)
    if (start < h->end && h->start < end)
      return true;
  return false;
}

/* Wait until no held range overlaps [OFFSET, OFFSET+COUNT), then hold it
 * using R as storage, and return 0; the caller must then call
 * rangelock_release with the same R.  A zero COUNT is treated as one
 * byte so that it still orders.  Within a request, the wait ends with
 * the request: then nothing is held and -ETIMEDOUT is returned.
 */
int
rangelock_acquire (struct rangelock *rl, struct range *r, uint64_t offset,
                   uint64_t count)
{
  uint64_t end;

  if (count == 0)
    count = 1;
  if (__builtin_add_overflow (offset, count, &end))
    end = UINT64_MAX;
  r->start = offset;
  r->end = end;

  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&rl->lock);
  while (overlaps_held (rl, r->start, r->end))
    if (request_cond_wait (&rl->cond, &rl->lock) == -ETIMEDOUT)
      return -ETIMEDOUT;
  r->next = rl->held;
  rl->held = r;
  return 0;
}

/* Release the range R taken by rangelock_acquire and wake the waiters. */
void
rangelock_release (struct rangelock *rl, struct range *r)
{
  struct range **pp;

  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&rl->lock);
  for (pp = &rl->held; *pp != NULL; pp = &(*pp)->next) {
    if (*pp == r) {
      *pp = r->next;
      r->next = NULL;
      pthread_cond_broadcast (&rl->cond);
      return;
    }
  }
  assert (!"rangelock_release: range not held");
}

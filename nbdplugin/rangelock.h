/* nbdkit-tessera-plugin: byte-range lock (rangelock.c).
 *
 * A lock on byte ranges: acquiring [offset, offset+count) waits while
 * any held range overlaps it.  Overlapping writes are thus applied in
 * the same order on every replica.  Part of libtesseraplugin.la.
 *
 * Threads: any; rangelock.lock is never held across other calls.
 */

#ifndef TESSERA_NBDPLUGIN_RANGELOCK_H
#define TESSERA_NBDPLUGIN_RANGELOCK_H

#include <pthread.h>
#include <stdint.h>

/* One held range, in the caller's storage (usually its stack). */
struct range {
  uint64_t start, end; /* [start, end) */
  struct range *next;
};

struct rangelock {
  pthread_mutex_t lock; /* protects held */
  pthread_cond_t cond;  /* broadcast on every release */
  struct range *held;   /* ranges held now, unordered */
};

/* Initialize RL (not in use).  Cannot fail. */
extern void rangelock_init (struct rangelock *rl);

/* Destroy RL: no range may be held (asserted). */
extern void rangelock_destroy (struct rangelock *rl);

/* Hold [OFFSET, OFFSET+COUNT) in RL once no held range overlaps it,
 * using R as storage; R stays linked until rangelock_release (RL, R).
 * A zero COUNT holds one byte, so that it still orders; a range past
 * UINT64_MAX ends there.  Within a request (request.h) the wait ends
 * with the request's deadline.  Returns 0, or -ETIMEDOUT with nothing
 * held.
 */
extern int rangelock_acquire (struct rangelock *rl, struct range *r,
                              uint64_t offset, uint64_t count);

/* Release R, held in RL by rangelock_acquire (asserted), and wake the
 * waiters.
 */
extern void rangelock_release (struct rangelock *rl, struct range *r);

#endif /* TESSERA_NBDPLUGIN_RANGELOCK_H */

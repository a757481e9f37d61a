/* nbdkit-tessera-plugin: request deadlines (request.c).
 *
 * Every NBD request (read, write, trim, zero, flush, extents) must be
 * over within one and a half times timeout= of its start: a full
 * timeout for a step that a failing server or MDS stalls, half of one
 * to report the failure and fail over.  Each step waits at most its own
 * timeout cut to what is left of the request; a step that may condemn a
 * server (a storage-server batch, a connect) is not started with less
 * than a quarter of the timeout left, so that a server is only counted
 * failed after that long a silence.  A request out of time fails with
 * ETIMEDOUT (EIO to the client), unacknowledged.  The deadline is per
 * thread: nbdkit runs each request on one thread.
 *
 * Part of libtesseraplugin.la (no nbdkit calls), so that the modules
 * built on it have unit tests.
 */

#ifndef TESSERA_NBDPLUGIN_REQUEST_H
#define TESSERA_NBDPLUGIN_REQUEST_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define REQUEST_BUDGET_NUM 3 /* the budget: timeout * 3 / 2 */
#define REQUEST_BUDGET_DEN 2

/* The running request's deadline (monotonic ns), 0 outside requests. */
extern __thread uint64_t request_deadline;

extern void request_start (int timeout_ms);
extern void request_end (void);
extern uint64_t request_clamp (uint64_t deadline);
extern int request_step_ms (int timeout_ms);
extern bool request_can_start (int timeout_ms);
extern int request_lock (pthread_mutex_t *m);
extern int request_cond_wait (pthread_cond_t *cond, pthread_mutex_t *m);
extern void request_sleep_ms (unsigned ms);

#endif /* TESSERA_NBDPLUGIN_REQUEST_H */

/* Keeping the cluster tables on every storage server: the pusher thread.
 *
 * The catalog raises its tables version with every change of a volume
 * or server record (catalog/tables.c).  This thread wakes when kicked
 * (a registration, a volume or server change) and at least once a
 * second, reads the version, and sends the tables (TABLES_PUT) to every
 * up server that has not taken that version yet; a server holding a
 * newer one keeps it.  A registration forgets what the server took, so
 * a server that restarted, or whose index was replaced, gets them
 * again.  The calls block only this thread: request handlers just kick
 * it, and a failed push is tried again a second later.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cleanup.h"
#include "deadline.h"
#include "log.h"

#include "internal.h"

/* How often the pusher looks at the tables version without a kick. */
#define PUSH_INTERVAL_MS 1000

/* A server to push to. */
struct target {
  uint32_t id;
  uint64_t incarnation;
  char addr[PROTO_ADDR_MAX + 1];
};

/* Ring the pusher: the tables may have changed or a server registered.
 * Called with mds->lock held.
 */
void
mds_tables_kick (struct mds *mds)
{
  mds->tables_kicked = true;
  pthread_cond_signal (&mds->tables_wake);
}

/* The up servers that have not taken VERSION, into *OUT (malloc'd).
 * mds->lock held.
 */
static size_t
targets (struct mds *mds, uint64_t version, struct target **out)
{
  struct target *t;
  size_t i, n = 0;

  *out = NULL;
  if (mds->nservers == 0)
    return 0;
  t = calloc (mds->nservers, sizeof *t);
  if (t == NULL)
    return 0;
  for (i = 0; i < mds->nservers; i++) {
    struct mds_server_state *st = &mds->servers[i];

    if (st->tables_pushed >= version || !mds_server_is_up (mds, st->id))
      continue;
    t[n].id = st->id;
    t[n].incarnation = st->incarnation;
    n++;
  }
  *out = t;
  return n;
}

/* One round: push the current tables where they are missing.  No lock
 * held on entry or exit.
 */
static void
push_round (struct mds *mds)
{
  CLEANUP_FREE struct target *t = NULL;
  CLEANUP_FREE uint8_t *blob = NULL;
  char msg[PROTO_ERRMSG_MAX + 64];
  uint64_t version, stored;
  size_t len, n, i;
  int r;

  r = catalog_tables_version (mds->cat, &version);
  if (r < 0)
    return;
  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
    n = targets (mds, version, &t);
  }
  if (n == 0)
    return;
  /* The blob may be newer than VERSION: it says its own. */
  r = catalog_tables_encode (mds->cat, &blob, &len, &version);
  if (r < 0) {
    log_error ("catalog: encoding the cluster tables: %s",
               catalog_strerror (r));
    return;
  }
  for (i = 0; i < n; i++) {
    r = mds_server_address (mds, t[i].id, t[i].addr);
    if (r < 0)
      continue;
    r = mds_srv_tables_put (mds, t[i].addr, version, blob, len, &stored, msg,
                            sizeof msg);
    if (r < 0) {
      log_debug ("server %" PRIu32 ": TABLES_PUT version %" PRIu64 ": %s",
                 t[i].id, version, msg);
      continue;
    }
    if (stored > version)
      log_warn ("server %" PRIu32 ": holds cluster tables version %" PRIu64
                ", newer than the catalog's %" PRIu64,
                t[i].id, stored, version);
    else
      log_debug ("server %" PRIu32 ": cluster tables version %" PRIu64, t[i].id,
                 version);
    {
      ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
      struct mds_server_state *st = mds_server_find (mds, t[i].id);

      /* A registration meanwhile asks for another push. */
      if (st && st->incarnation == t[i].incarnation)
        st->tables_pushed = version;
    }
  }
}

/* The pusher thread. */
static void *
push_thread (void *arg)
{
  struct mds *mds = arg;
  struct timespec ts;
  uint64_t ns;

  log_set_thread_name ("tables");
  pthread_mutex_lock (&mds->lock);
  while (!mds->stopping) {
    if (!mds->tables_kicked) {
      ns = monotonic_ns () + (uint64_t)PUSH_INTERVAL_MS * 1000000u;
      ts.tv_sec = ns / 1000000000u;
      ts.tv_nsec = ns % 1000000000u;
      pthread_cond_timedwait (&mds->tables_wake, &mds->lock, &ts);
      if (mds->stopping)
        break;
    }
    mds->tables_kicked = false;
    pthread_mutex_unlock (&mds->lock);
    push_round (mds);
    pthread_mutex_lock (&mds->lock);
  }
  pthread_mutex_unlock (&mds->lock);
  return NULL;
}

/* Start the pusher thread.  Returns 0 or -errno. */
int
mds_tables_start (struct mds *mds)
{
  int r = pthread_create (&mds->tables_thread, NULL, push_thread, mds);

  if (r != 0)
    return -r;
  mds->tables_started = true;
  return 0;
}

/* Stop the pusher thread (mds->stopping must be set already): it ends
 * after its current call, within MDS_SERVER_TIMEOUT_MS twice.
 */
void
mds_tables_stop (struct mds *mds)
{
  if (!mds->tables_started)
    return;
  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
    pthread_cond_broadcast (&mds->tables_wake);
  }
  pthread_join (mds->tables_thread, NULL);
  mds->tables_started = false;
}

/* nbdkit-tessera-plugin: writes in doubt.
 *
 * A write or trim whose request to a replica timed out, or whose
 * connection broke after it was sent, may or may not have reached that
 * replica, and may still reach it: its frame can sit in a socket buffer
 * or in the server's queue on a connection the plugin has given up on.
 * If the replica was reported and marked stale, nothing can read it
 * before repair tells its server a newer generation and copies over it.
 * But if it stays writable (every replica was in doubt, so nothing was
 * reported; the MDS refused the report for min-copies; the request ran
 * out of time and blamed nobody) the late frame may land after a later
 * write of the same blocks, sent on another socket, was acknowledged:
 * that replica then holds older data than the others, unseen until
 * they fail.
 *
 * So such a segment is "in doubt" at the generation the request carried
 * (doubt_note), and before this writer's next write or trim to it
 * (doubt_settle) the MDS raises its generation above that one and tells
 * every writable replica's server (MAP_RAISE_GEN; SEG_SET_GEN waits for
 * the writes in flight there), which then refuses the late frame
 * (ESTALEMAP).  Settling costs one MDS request per segment in doubt, and
 * nothing while none is: a write only reads an atomic counter.  A write
 * to a segment that cannot be settled (the MDS is unreachable, or a
 * server neither answers nor may be marked stale) fails with EIO and
 * the segment stays in doubt.
 *
 * Reads are not held back: a failed write leaves its blocks undefined
 * until a later write, and the later write is what settling protects.
 * A writer that dies with segments in doubt leaves its volume unclean,
 * and the next writer's resync fences the old epoch on every server.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "buf.h"
#include "cleanup.h"
#include "protocol.h"

#include "internal.h"

/* One segment in doubt. */
struct doubt {
  uint64_t segment;
  uint64_t gen; /* the newest generation a request in doubt carried */
};

void
doubt_init (struct volume *v)
{
  pthread_mutex_init (&v->doubt_lock, NULL);
  v->doubts = NULL;
  v->doubts_cap = 0;
  atomic_store (&v->ndoubts, 0);
}

void
doubt_free (struct volume *v)
{
  free (v->doubts);
  v->doubts = NULL;
  pthread_mutex_destroy (&v->doubt_lock);
}

/* The index of SEGMENT in v->doubts, or -1.  Caller holds doubt_lock. */
static ssize_t
find (struct volume *v, uint64_t segment)
{
  size_t i, n = atomic_load (&v->ndoubts);

  for (i = 0; i < n; i++)
    if (v->doubts[i].segment == segment)
      return i;
  return -1;
}

/* Whether entry S lists a writable (ok or syncing) replica on SERVER. */
static bool
writable (const struct seg *s, uint32_t server)
{
  unsigned j;

  for (j = 0; s && j < s->nreplicas; j++)
    if (s->replicas[j].server == server)
      return s->replicas[j].state != PROTO_REPLICA_STALE;
  return false;
}

/* A request to SERVER of segment SEGMENT (at INDEX in the map), sent
 * with generation GEN, may still land there.  Unless the cached entry
 * no longer lists a writable replica of it there (it was reported and
 * marked stale), the segment is in doubt.  Returns 0 or -ENOMEM.
 */
int
doubt_note (struct volume *v, uint64_t index, uint64_t segment, uint64_t gen,
            uint32_t server)
{
  const struct seg *s;
  struct doubt *d;
  size_t n;
  ssize_t k;

  if (map_lookup (v, index, &s) == 0 && s != NULL && s->id == segment &&
      !writable (s, server))
    return 0;

  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&v->doubt_lock);
  k = find (v, segment);
  if (k >= 0) {
    if (v->doubts[k].gen < gen)
      v->doubts[k].gen = gen;
    return 0;
  }
  n = atomic_load (&v->ndoubts);
  if (n == v->doubts_cap) {
    size_t cap = v->doubts_cap ? 2 * v->doubts_cap : 16;

    d = realloc (v->doubts, cap * sizeof *d);
    if (d == NULL) {
      nbdkit_error ("volume %s: segment %" PRIu64 ": out of memory noting a "
                    "write in doubt",
                    v->name, segment);
      return -ENOMEM;
    }
    v->doubts = d;
    v->doubts_cap = cap;
  }
  v->doubts[n].segment = segment;
  v->doubts[n].gen = gen;
  atomic_store (&v->ndoubts, n + 1);
  nbdkit_debug ("volume %s: segment %" PRIu64 ": a request of generation "
                "%" PRIu64 " to server %" PRIu32 " is in doubt",
                v->name, segment, gen, server);
  return 0;
}

/* Encode the MAP_RAISE_GEN request OPAQUE with EPOCH
 * (lease_writer_call).
 */
static void
encode_raise_gen (uint64_t epoch, void *opaque, struct proto_wbuf *wb)
{
  struct proto_raise_gen *rg = opaque;

  rg->epoch = epoch;
  proto_encode_raise_gen (rg, wb);
}

/* Before a write or trim of the segment at INDEX (entry *SEGP): if it is
 * in doubt, have the MDS raise its generation on every writable replica
 * (MAP_RAISE_GEN), then re-read the entry into *SEGP.  Returns 0, or
 * -EIO (reported) with the segment still in doubt.
 */
int
doubt_settle (struct volume *v, uint64_t index, const struct seg **segp)
{
  struct proto_raise_gen rg = { .volume = v->id };
  char errmsg[PROTO_ERRMSG_MAX + 1];
  CLEANUP_FREE void *reply = NULL;
  uint32_t len;
  ssize_t k;
  int r;

  if (atomic_load (&v->ndoubts) == 0 || *segp == NULL)
    return 0;
  rg.segment = (*segp)->id;
  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&v->doubt_lock);
    k = find (v, rg.segment);
    if (k < 0)
      return 0;
    rg.gen = v->doubts[k].gen;
  }

  errmsg[0] = '\0';
  r = lease_writer_call (v, PROTO_OP_MAP_RAISE_GEN, encode_raise_gen, &rg,
                         &reply, &len, errmsg, sizeof errmsg);
  if (r < 0 && r != -ENOENT) {
    if (r != -ESTALE)
      nbdkit_error ("volume %s: segment %" PRIu64 ": a write of generation "
                    "%" PRIu64 " is in doubt, and its generation could not "
                    "be raised: %s",
                    v->name, rg.segment, rg.gen,
                    errmsg[0] ? errmsg : strerror (-r));
    return -EIO;
  }
  nbdkit_debug ("volume %s: segment %" PRIu64 ": generation raised above "
                "%" PRIu64 ": no write in doubt can land",
                v->name, rg.segment, rg.gen);
  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&v->doubt_lock);
    k = find (v, rg.segment);
    /* A request in doubt since, of a newer generation, stays. */
    if (k >= 0 && v->doubts[k].gen <= rg.gen) {
      size_t n = atomic_load (&v->ndoubts) - 1;

      v->doubts[k] = v->doubts[n];
      atomic_store (&v->ndoubts, n);
    }
  }
  r = map_reload (v, index, segp);
  return r < 0 ? -EIO : 0;
}

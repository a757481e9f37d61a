/* nbdkit-tessera-plugin: the writer lease.
 *
 * A read-write open (VOL_OPEN, volume.c) takes the volume's writer
 * lease in the epoch that the MDS hands out; the lease thread (volume.c)
 * renews it every third of its term (lease_renew).  Requests that act
 * as the writer name its epoch (lease_writer_call): the MDS refuses
 * them with ESTALE once another writer has taken the volume over or
 * the lease expired, unless an unanswered EPOCH_NEXT explains it
 * (epoch_resolve, see epoch.c).
 *
 * Losing the lease is final (lease_mark_lost): volume.lease_lost is set
 * once, never cleared, and from then on every write, trim, zero and
 * flush fails with EIO; the volume is not closed cleanly.  It is lost
 * when the MDS refuses the epoch, when a renewal is refused (EPERM),
 * when an epoch rotation is refused (flush.c) and when a storage server
 * fences a write (io.c).
 *
 * No lock of its own: lease_lost is atomic, and a request naming the
 * epoch holds volume.epoch_rw for reading while the MDS answers, so
 * that no rotation replaces the epoch meanwhile.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "buf.h"
#include "cleanup.h"
#include "deadline.h"
#include "protocol.h"

#include "internal.h"

/* The writer lease is gone (fenced by a newer writer, or expired and
 * taken): from now on writes, trims, zeroes and flushes fail with EIO.
 * WHY is logged, once.
 */
void
lease_mark_lost (struct volume *v, const char *why)
{
  if (!atomic_exchange (&v->lease_lost, true))
    nbdkit_error ("volume %s: writer lease lost, writes will fail: %s", v->name,
                  why);
}

/* Send an idempotent request OPCODE that names the writer's epoch: ENCODE
 * (EPOCH, OPAQUE, WB) builds its payload with the current epoch, which
 * cannot change until the answer is in.  Otherwise as mds_session_call.
 * If the MDS says the epoch does not hold the lease, an unanswered
 * EPOCH_NEXT may explain it (epoch_resolve) and the request is sent once
 * more; else the lease is lost (reported) and -ESTALE returned.
 */
int
lease_writer_call (struct volume *v, uint8_t opcode,
                   void (*encode) (uint64_t epoch, void *opaque,
                                   struct proto_wbuf *wb),
                   void *opaque, void **reply, uint32_t *reply_len,
                   char *errmsg, size_t errlen)
{
  uint64_t deadline =
      request_clamp (monotonic_ns () + (uint64_t)v->cfg->timeout_ms * 1000000);
  struct proto_wbuf wb;
  struct timespec ts;
  uint64_t epoch;
  int attempt, r;

  for (attempt = 0;; attempt++) {
    memset (&wb, 0, sizeof wb);
    /* A rotation in progress holds it for up to the timeout. */
    ts = timespec_from_ns (deadline);
    if (pthread_rwlock_clockrdlock (&v->epoch_rw, CLOCK_MONOTONIC, &ts) != 0) {
      *reply = NULL;
      *reply_len = 0;
      if (errmsg && errlen)
        snprintf (errmsg, errlen, "timed out waiting for an epoch rotation");
      return -ETIMEDOUT;
    }
    epoch = v->epoch;
    encode (epoch, opaque, &wb);
    r = mds_session_call (v, opcode, &wb, reply, reply_len, errmsg, errlen);
    pthread_rwlock_unlock (&v->epoch_rw);
    proto_wbuf_free (&wb);
    if (r != -ESTALE)
      return r;
    free (*reply);
    *reply = NULL;
    if (attempt == 0) {
      r = epoch_resolve (v, epoch);
      if (r == 0)
        continue;
      if (r != -ESTALE)
        return r;
    }
    lease_mark_lost (v, errmsg && errmsg[0] ? errmsg : strerror (ESTALE));
    return -ESTALE;
  }
}

/* Encode a proto_lease of volume OPAQUE in EPOCH (lease_writer_call). */
static void
encode_lease (uint64_t epoch, void *opaque, struct proto_wbuf *wb)
{
  struct volume *v = opaque;
  struct proto_lease l = { .volume = v->id, .epoch = epoch };

  proto_encode_lease (&l, wb);
}

/* Renew the writer lease once (the lease thread, volume.c).  Losing it
 * (ESTALE, EPERM) is final: writes fail from then on.  Other failures
 * are logged for debugging only: the next renewal tries again.
 */
void
lease_renew (struct volume *v)
{
  CLEANUP_FREE void *reply = NULL;
  char errmsg[PROTO_ERRMSG_MAX + 1];
  uint32_t len;
  int r;

  r = lease_writer_call (v, PROTO_OP_LEASE_RENEW, encode_lease, v, &reply, &len,
                         errmsg, sizeof errmsg);
  if (r == -EPERM)
    lease_mark_lost (v, errmsg[0] ? errmsg : strerror (-r));
  else if (r < 0 && r != -ESTALE)
    nbdkit_debug ("volume %s: lease renewal: %s", v->name,
                  errmsg[0] ? errmsg : strerror (-r));
  else if (r == 0 && tessera_debug_lease)
    nbdkit_debug ("volume %s: lease renewed, epoch %" PRIu64, v->name,
                  epoch_current (v));
}

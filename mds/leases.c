/* Writer leases: memory only, one record per volume (struct mds_lease).
 * A read-write open takes one (req-open.c), the writer renews it and
 * rotates its epoch; a resync (resync.c), VOL_CLOSE and VOL_DELETE drop
 * it.  After a restart the leases of volumes not closed cleanly are
 * rebuilt by mds_leases_recover.  The wire form of a volume is built
 * here too: its flags say whether a writer holds it.  Every function
 * here is called with mds->lock held (or at start-up, before any other
 * thread exists).
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deadline.h"
#include "cleanup.h"
#include "log.h"

#include "internal.h"

/* The lease record of VOLUME (live or expired), or NULL. */
struct mds_lease *
mds_lease_find (struct mds *mds, uint64_t volume)
{
  size_t i;

  for (i = 0; i < mds->nleases; ++i)
    if (mds->leases[i].volume == volume)
      return &mds->leases[i];
  return NULL;
}

/* Give VOLUME's lease to the writer whose epochs run from BASE_EPOCH to
 * EPOCH (its current one) for the lease time from now, replacing any
 * record.  Returns 0 or -ENOMEM.
 */
int
mds_lease_set (struct mds *mds, uint64_t volume, uint64_t base_epoch,
               uint64_t epoch)
{
  struct mds_lease *l = mds_lease_find (mds, volume);

  if (l == NULL) {
    struct mds_lease *p;

    p = realloc (mds->leases, (mds->nleases + 1) * sizeof *p);
    if (p == NULL)
      return -ENOMEM;
    mds->leases = p;
    l = &p[mds->nleases++];
    l->volume = volume;
    memset (l->open_token, 0, sizeof l->open_token);
  }
  l->base_epoch = base_epoch;
  l->epoch = epoch;
  l->expiry_ns = monotonic_ns () + (uint64_t)mds->lease_ms * 1000000u;
  return 0;
}

/* Forget VOLUME's lease record, if any. */
void
mds_lease_drop (struct mds *mds, uint64_t volume)
{
  struct mds_lease *l = mds_lease_find (mds, volume);

  if (l)
    *l = mds->leases[--mds->nleases];
}

/* True if a writer holds an unexpired lease on VOLUME. */
bool
mds_lease_active (struct mds *mds, uint64_t volume)
{
  struct mds_lease *l = mds_lease_find (mds, volume);

  return l != NULL && monotonic_ns () < l->expiry_ns;
}

/* Check that EPOCH is an epoch of VOLUME's writer: its current one or
 * an older one since its open (requests of an epoch the writer has just
 * rotated away from may still arrive).  An expired lease still counts
 * until another writer takes the volume: nobody else can have written
 * meanwhile.  Returns 0, or fills REP with PROTO_ESTALE and returns
 * -ESTALE.
 */
int
mds_lease_check (struct mds *mds, uint64_t volume, uint64_t epoch,
                 struct mds_reply *rep)
{
  struct mds_lease *l = mds_lease_find (mds, volume);

  if (l != NULL && epoch >= l->base_epoch && epoch <= l->epoch)
    return 0;
  mds_reply_error (rep, PROTO_ESTALE,
                   "volume %" PRIu64 ": epoch %" PRIu64
                   " does not hold the writer lease",
                   volume, epoch);
  return -ESTALE;
}

/* After a restart, give every volume whose writer did not close it a
 * fresh lease in its current epoch: that writer may still be running and
 * renew it, and no new writer gets the volume before it would have
 * expired.  The writer's first epoch is not known any more: every epoch
 * after the clean one is taken as its (no other writer can have used
 * them: a writer takes a volume only once it is clean).  Returns 0 or
 * -errno.
 */
int
mds_leases_recover (struct mds *mds)
{
  CLEANUP_FREE struct catalog_volume *vols = NULL;
  size_t n, i;
  int r;

  r = catalog_volume_list (mds->cat, &vols, &n);
  if (r < 0)
    return r;
  for (i = 0; i < n; ++i) {
    if (vols[i].epoch == 0 || (vols[i].flags & CATALOG_VOL_CLEAN))
      continue;
    r = mds_lease_set (mds, vols[i].id,
                       vols[i].clean_epoch < vols[i].epoch
                           ? vols[i].clean_epoch + 1
                           : vols[i].epoch,
                       vols[i].epoch);
    if (r < 0)
      return r;
    log_info ("volume %s: not closed cleanly in epoch %" PRIu64
              ": held for its writer for %" PRIu32 " ms",
              vols[i].name, vols[i].epoch, mds->lease_ms);
  }
  return 0;
}

/* Fill OUT, the wire form of volume V. */
void
mds_volume_info (struct mds *mds, const struct catalog_volume *v,
                 struct proto_volume_info *out)
{
  memset (out, 0, sizeof *out);
  out->id = v->id;
  out->size = v->size;
  out->replicas = v->replicas;
  out->flags = 0;
  if (v->flags & CATALOG_VOL_CLEAN)
    out->flags |= PROTO_VOL_CLEAN;
  if (mds_lease_active (mds, v->id))
    out->flags |= PROTO_VOL_OPEN_RW;
  out->epoch = v->epoch;
  out->segments = v->segments;
  out->min_copies = v->min_copies;
  snprintf (out->name, sizeof out->name, "%s", v->name);
}

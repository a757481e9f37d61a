/* Choosing the source of a copy or a resync from evidence (issue 10,
 * rule 7), never from the order of the replica list.
 *
 * The candidates are the segment's ok replicas on servers that are up:
 * a stale or syncing replica is never a source.  When there are several,
 * each server is asked for the segment's last epoch (SEG_HASH of 4 KiB:
 * its reply carries the epoch), and the source is the one with the
 * highest: a replica that missed writes of a later epoch loses, and so
 * does one whose server does not hold the segment (epoch 0, or ENOENT)
 * when another does.  On a tie, a server that registered uncleanly while
 * the volume was not clean, since its clean epoch (its data of those
 * epochs may be older than its index says), comes last; then repair
 * picks at random among the rest (to spread the load) and a resync the
 * first.  A candidate that does not answer is no source.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cleanup.h"
#include "log.h"

#include "internal.h"
#include "placement.h"

/* Fill *OUT with the candidate sources of segment S (mds->lock held):
 * its ok replicas on servers that are up, but server EXCEPT (0: none);
 * with SKIP_SUSPECT, not those whose server is being checked or could
 * not be (mds_server_suspect).  Returns 0 or a catalog error.
 */
int
mds_sources_collect (struct mds *mds, const struct catalog_segment *s,
                     uint32_t except, bool skip_suspect,
                     struct mds_sources *out)
{
  struct catalog_volume v;
  struct catalog_server srv;
  uint32_t k;
  int r;

  memset (out, 0, sizeof *out);
  out->segment = s->id;
  r = catalog_volume_get (mds->cat, s->volume, &v);
  if (r < 0)
    return r;
  for (k = 0; k < s->nreplicas && k < CATALOG_REPLICAS_MAX; ++k) {
    uint32_t id = s->replicas[k].server;
    struct mds_source *c = &out->c[out->n];

    if (id == except || s->replicas[k].state != CATALOG_REPLICA_OK ||
        !mds_server_is_up (mds, id))
      continue;
    if (skip_suspect && mds_server_suspect (mds, id))
      continue;
    r = catalog_server_get (mds->cat, id, &srv);
    if (r < 0)
      return r;
    c->id = id;
    snprintf (c->addr, sizeof c->addr, "%s", srv.address);
    c->doubtful = mds_server_suspect (mds, id) ||
                  mds_unclean_since (mds, id, v.id, v.clean_epoch);
    out->n++;
  }
  return 0;
}

/* True if candidate A is a better source than B. */
static bool
better (const struct mds_source *a, const struct mds_source *b)
{
  if (a->epoch != b->epoch)
    return a->epoch > b->epoch;
  return !a->doubtful && b->doubtful;
}

/* Choose the source among SS (no lock held) into *CHOSEN (an index into
 * SS->c): see above; RANDOM breaks the last ties at random, else the
 * first wins.  A single candidate is taken without asking.  Returns 0,
 * or -EAGAIN if there is no candidate or none answered (ERRMSG says
 * why).
 */
int
mds_sources_choose (struct mds *mds, struct mds_sources *ss, bool random,
                    size_t *chosen, char *errmsg, size_t errlen)
{
  char msg[PROTO_ERRMSG_MAX + 64];
  bool answered[CATALOG_REPLICAS_MAX] = { false };
  size_t i, best = SIZE_MAX, ties = 0, pick;

  if (ss->n == 0) {
    snprintf (errmsg, errlen, "no ok replica on a server that is up");
    return -EAGAIN;
  }
  if (ss->n == 1) {
    *chosen = 0;
    return 0;
  }
  for (i = 0; i < ss->n; ++i) {
    if (mds_srv_seg_epoch (mds, ss->c[i].addr, ss->segment, &ss->c[i].epoch,
                           msg, sizeof msg) < 0) {
      log_warn ("segment %" PRIu64 ": server %" PRIu32
                ": no source: its last epoch: %s",
                ss->segment, ss->c[i].id, msg);
      continue;
    }
    answered[i] = true;
  }
  for (i = 0; i < ss->n; ++i)
    if (answered[i] && (best == SIZE_MAX || better (&ss->c[i], &ss->c[best])))
      best = i;
  if (best == SIZE_MAX) {
    snprintf (errmsg, errlen, "no ok replica answered");
    return -EAGAIN;
  }
  if (random) {
    /* Any of the candidates as good as the best. */
    for (i = 0; i < ss->n; ++i)
      if (answered[i] && !better (&ss->c[best], &ss->c[i]))
        ties++;
    {
      ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
      pick = placement_random (&mds->rng) % ties;
    }
    for (i = 0; i < ss->n; ++i)
      if (answered[i] && !better (&ss->c[best], &ss->c[i]) && pick-- == 0) {
        best = i;
        break;
      }
  }
  for (i = 0; i < ss->n; ++i)
    if (answered[i] && i != best && better (&ss->c[best], &ss->c[i]))
      log_info (
          "segment %" PRIu64 ": source server %" PRIu32 " (last epoch %" PRIu64
          "%s), not server %" PRIu32 " (last epoch %" PRIu64 "%s)",
          ss->segment, ss->c[best].id, ss->c[best].epoch,
          ss->c[best].doubtful ? ", doubtful" : "", ss->c[i].id, ss->c[i].epoch,
          ss->c[i].doubtful ? ", restarted uncleanly" : "");
  *chosen = best;
  return 0;
}

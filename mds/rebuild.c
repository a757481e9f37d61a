/* Rebuilding the catalog from the storage servers (tessera-mds
 * --rebuild), and reconciling a restored one with them.
 *
 * Every storage server keeps the cluster tables the MDS pushed to it
 * (tables-push.c: the cluster record, the id counters, every volume and
 * server) and describes each segment it holds (SEG_DESCRIBE: volume,
 * index in the volume, generation, last epoch, state) and its fences.
 * mds_reconcile asks every server given, then:
 *  - installs the newest tables any server holds (servers and volumes
 *    the catalog lacks; counters raised);
 *  - groups the replicas of each segment id by server: the highest
 *    generation wins, replicas with a lower one or a state that is not
 *    ok are recorded stale (repair copies them again);
 *  - adopts each segment the catalog lacks at (volume, index), if its
 *    volume is in the catalog and its index is known and inside the
 *    volume; the others are listed, not placed;
 *  - raises the id counters past every id seen, and each volume's
 *    epoch to the newest last epoch and fence seen, marking it not
 *    clean, so that its next writer's open resyncs it and no epoch is
 *    ever used twice.
 * Nothing is ever lowered or overwritten: on top of a restored catalog
 * this only adds what the servers know and it lacks.
 *
 * Runs before the MDS serves (no other thread): the calls block.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "log.h"

#include "internal.h"

/* Segments adopted in one catalog transaction. */
#define ADOPT_BATCH 1024
/* Segments not placed that are logged one by one; the rest are counted. */
#define NOT_PLACED_LOG 100

/* One replica described by a server. */
struct replica_desc {
  struct proto_seg_desc d;
  uint32_t server; /* catalog server id */
};

/* A volume's newest epoch seen (last epochs and fences). */
struct vol_epoch {
  uint64_t volume;
  uint64_t epoch;
};

/* What the servers said, gathered. */
struct gathered {
  struct replica_desc *r;
  size_t n, cap;
  struct vol_epoch *e;
  size_t ne, cape;
};

/* Note that VOLUME was seen at EPOCH. */
static int
see_epoch (struct gathered *g, uint64_t volume, uint64_t epoch)
{
  size_t i;

  for (i = 0; i < g->ne; i++)
    if (g->e[i].volume == volume) {
      if (epoch > g->e[i].epoch)
        g->e[i].epoch = epoch;
      return 0;
    }
  if (g->ne == g->cape) {
    size_t c = g->cape ? g->cape * 2 : 64;
    struct vol_epoch *p = realloc (g->e, c * sizeof *p);

    if (p == NULL)
      return -ENOMEM;
    g->e = p;
    g->cape = c;
  }
  g->e[g->ne].volume = volume;
  g->e[g->ne].epoch = epoch;
  g->ne++;
  return 0;
}

/* Add the replica D on SERVER. */
static int
add_replica (struct gathered *g, const struct proto_seg_desc *d,
             uint32_t server)
{
  if (g->n == g->cap) {
    size_t c = g->cap ? g->cap * 2 : 4096;
    struct replica_desc *p = realloc (g->r, c * sizeof *p);

    if (p == NULL)
      return -ENOMEM;
    g->r = p;
    g->cap = c;
  }
  g->r[g->n].d = *d;
  g->r[g->n].server = server;
  g->n++;
  return see_epoch (g, d->volume, d->epoch);
}

/* The catalog id of the server at ADDR, or 0. */
static uint32_t
server_by_address (const struct catalog_server *srv, size_t n, const char *addr)
{
  size_t i;

  for (i = 0; i < n; i++)
    if (strcmp (srv[i].address, addr) == 0)
      return srv[i].id;
  return 0;
}

/* Read every page of SEG_DESCRIBE from the server at ADDR (catalog id
 * ID) into G.  Returns 0 or -errno (reason in ERRMSG).
 */
static int
describe_server (struct mds *mds, const char *addr, uint32_t id,
                 struct gathered *g, char *errmsg, size_t errlen)
{
  struct proto_describe d;
  uint64_t after = 0;
  uint32_t i;
  int r;

  for (;;) {
    r = mds_srv_describe (mds, addr, after, &d, errmsg, errlen);
    if (r < 0)
      return r;
    for (i = 0; r == 0 && i < d.nfences; i++)
      r = see_epoch (g, d.fences[i].volume, d.fences[i].epoch);
    for (i = 0; r == 0 && i < d.n; i++)
      r = add_replica (g, &d.segs[i], id);
    if (d.n > 0)
      after = d.segs[d.n - 1].segment;
    i = d.n;
    proto_describe_free (&d);
    if (r < 0) {
      snprintf (errmsg, errlen, "%s", strerror (-r));
      return r;
    }
    if (i < PROTO_LIST_MAX)
      return 0;
  }
}

/* qsort: replicas by segment id, then server. */
static int
cmp_replica (const void *a, const void *b)
{
  const struct replica_desc *x = a, *y = b;

  if (x->d.segment != y->d.segment)
    return x->d.segment < y->d.segment ? -1 : 1;
  return x->server < y->server ? -1 : x->server > y->server;
}

/* Log that SEGMENT is not placed, and why. */
static void not_placed (struct mds_rebuild_report *rep, uint64_t segment,
                        const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));
static void
not_placed (struct mds_rebuild_report *rep, uint64_t segment, const char *fmt,
            ...)
{
  char why[256];
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (why, sizeof why, fmt, ap);
  va_end (ap);
  if (rep->not_placed < NOT_PLACED_LOG)
    log_warn ("rebuild: segment %" PRIu64 " not placed: %s", segment, why);
  rep->not_placed++;
}

/* Turn the replicas R[0..N) of one segment into A's segment, or say why
 * it cannot be placed (returns false).  VOLS are the catalog's volumes.
 */
static bool
make_segment (struct mds *mds, const struct replica_desc *r, size_t n,
              const struct catalog_volume *vols, size_t nvols,
              struct catalog_adopt *a, struct mds_rebuild_report *rep)
{
  struct catalog_segment *g = &a->segment;
  uint64_t id = r[0].d.segment, volume = r[0].d.volume;
  uint64_t index = PROTO_INDEX_NONE, gen = 0, nsegs;
  const struct catalog_volume *v = NULL;
  size_t i;

  for (i = 0; i < n; i++) {
    if (r[i].d.volume != volume) {
      not_placed (rep, id, "its replicas name volumes %" PRIu64 " and %" PRIu64,
                  volume, r[i].d.volume);
      return false;
    }
    if (r[i].d.index != PROTO_INDEX_NONE) {
      if (index != PROTO_INDEX_NONE && index != r[i].d.index) {
        not_placed (rep, id,
                    "its replicas name indexes %" PRIu64 " and %" PRIu64, index,
                    r[i].d.index);
        return false;
      }
      index = r[i].d.index;
    }
    if (r[i].d.gen > gen)
      gen = r[i].d.gen;
  }
  for (i = 0; i < nvols; i++)
    if (vols[i].id == volume)
      v = &vols[i];
  if (v == NULL) {
    not_placed (rep, id, "volume %" PRIu64 " is not in the cluster tables",
                volume);
    return false;
  }
  if (index == PROTO_INDEX_NONE) {
    not_placed (rep, id, "no replica knows its index in volume %s", v->name);
    return false;
  }
  nsegs = (v->size + mds->cluster.segment_size - 1) / mds->cluster.segment_size;
  if (index >= nsegs) {
    not_placed (rep, id,
                "index %" PRIu64 " is past the end of volume %s (%" PRIu64
                " segments)",
                index, v->name, nsegs);
    return false;
  }
  memset (a, 0, sizeof *a);
  g->id = id;
  g->volume = volume;
  g->index = index;
  g->gen = gen ? gen : 1;
  for (i = 0; i < n && g->nreplicas < CATALOG_REPLICAS_MAX; i++) {
    bool ok = r[i].d.gen == gen && r[i].d.state == 0;

    g->replicas[g->nreplicas].server = r[i].server;
    g->replicas[g->nreplicas].state =
        ok ? CATALOG_REPLICA_OK : CATALOG_REPLICA_STALE;
    g->nreplicas++;
    if (!ok)
      rep->stale++;
  }
  return true;
}

/* Adopt A[0..N) and count the results. */
static int
adopt (struct mds *mds, struct catalog_adopt *a, size_t n,
       struct mds_rebuild_report *rep)
{
  size_t i;
  int r;

  if (n == 0)
    return 0;
  r = catalog_segments_adopt (mds->cat, a, n);
  if (r < 0) {
    log_error ("rebuild: recording segments: %s", catalog_strerror (r));
    return r;
  }
  for (i = 0; i < n; i++) {
    if (a[i].result == 0)
      rep->placed++;
    else if (a[i].result == -EEXIST)
      rep->known++;
    else if (a[i].result == -EBUSY)
      not_placed (rep, a[i].segment.id,
                  "volume %" PRIu64 " index %" PRIu64
                  " is mapped to another segment",
                  a[i].segment.volume, a[i].segment.index);
    else
      not_placed (rep, a[i].segment.id, "%s", catalog_strerror (a[i].result));
  }
  return 0;
}

/* Ask every server at ADDRS for the cluster tables; install the newest
 * into the catalog.  Returns 0 (none found is an error only for an empty
 * catalog) or -1.
 */
static int
install_tables (struct mds *mds, char *const *addrs, size_t naddrs,
                bool *answered, struct mds_rebuild_report *rep)
{
  char msg[PROTO_ERRMSG_MAX + 64];
  struct catalog_tables best = { 0 }, t;
  struct catalog_cluster c;
  size_t i;
  int r;

  for (i = 0; i < naddrs; i++) {
    struct proto_tables pt;
    CLEANUP_FREE void *payload = NULL;

    r = mds_srv_tables_get (mds, addrs[i], &pt, &payload, msg, sizeof msg);
    if (r < 0) {
      log_warn ("rebuild: storage server %s: %s", addrs[i], msg);
      continue;
    }
    answered[i] = true;
    rep->answered++;
    if (pt.version == 0) {
      log_warn ("rebuild: storage server %s holds no cluster tables", addrs[i]);
      continue;
    }
    r = catalog_tables_decode (pt.blob, pt.len, &t);
    if (r < 0) {
      log_warn ("rebuild: storage server %s: cluster tables version %" PRIu64
                ": %s",
                addrs[i], pt.version, catalog_strerror (r));
      continue;
    }
    if (best.version > 0 &&
        (memcmp (t.cluster.uuid, best.cluster.uuid, 16) != 0 ||
         t.cluster.segment_size != best.cluster.segment_size)) {
      log_error ("rebuild: storage server %s belongs to another cluster",
                 addrs[i]);
      catalog_tables_free (&t);
      catalog_tables_free (&best);
      return -1;
    }
    log_info ("rebuild: storage server %s: cluster tables version %" PRIu64,
              addrs[i], t.version);
    if (t.version > best.version) {
      catalog_tables_free (&best);
      best = t;
    }
    else
      catalog_tables_free (&t);
  }
  if (best.version == 0) {
    if (catalog_cluster_get (mds->cat, &c) == 0)
      return 0;
    log_error ("rebuild: no storage server gave the cluster tables");
    return -1;
  }
  rep->tables_version = best.version;
  r = catalog_tables_install (mds->cat, &best);
  catalog_tables_free (&best);
  if (r < 0) {
    log_error ("rebuild: installing the cluster tables: %s",
               r == -EINVAL ? "the catalog is another cluster's"
                            : catalog_strerror (r));
    return -1;
  }
  return 0;
}

/* Reconcile the catalog with the storage servers at ADDRS[0..NADDRS)
 * (see the top of this file); REP receives the counts, which are also
 * logged.  The catalog may be empty (a rebuild) or restored from a
 * backup.  No other thread may use MDS yet.  Returns 0, or -1 after
 * logging why (the catalog may then hold part of the result, never less
 * than before).
 */
int
mds_reconcile (struct mds *mds, char *const *addrs, size_t naddrs,
               struct mds_rebuild_report *rep)
{
  struct gathered g = { 0 };
  CLEANUP_FREE bool *answered = NULL;
  CLEANUP_FREE struct catalog_server *srv = NULL;
  CLEANUP_FREE struct catalog_volume *vols = NULL;
  CLEANUP_FREE struct catalog_adopt *batch = NULL;
  char msg[PROTO_ERRMSG_MAX + 64];
  size_t nsrv, nvols, nb = 0, i, j;
  uint64_t max_seg = 0, max_vol = 0;
  int r, ret = -1;

  memset (rep, 0, sizeof *rep);
  answered = calloc (naddrs ? naddrs : 1, sizeof *answered);
  batch = calloc (ADOPT_BATCH, sizeof *batch);
  if (answered == NULL || batch == NULL)
    goto nomem;
  if (install_tables (mds, addrs, naddrs, answered, rep) < 0)
    goto out;
  r = catalog_cluster_get (mds->cat, &mds->cluster);
  if (r == 0)
    r = catalog_server_list (mds->cat, &srv, &nsrv);
  if (r == 0)
    r = catalog_volume_list (mds->cat, &vols, &nvols);
  if (r < 0) {
    log_error ("rebuild: reading the catalog: %s", catalog_strerror (r));
    goto out;
  }

  for (i = 0; i < naddrs; i++) {
    uint32_t id;

    if (!answered[i])
      continue;
    id = server_by_address (srv, nsrv, addrs[i]);
    if (id == 0) {
      log_warn ("rebuild: storage server %s is not in the cluster tables "
                "(give the addresses the servers registered with): its "
                "segments are left out",
                addrs[i]);
      continue;
    }
    r = describe_server (mds, addrs[i], id, &g, msg, sizeof msg);
    if (r < 0) {
      log_warn ("rebuild: storage server %s: SEG_DESCRIBE: %s", addrs[i], msg);
      continue;
    }
    rep->described++;
  }
  if (g.n > 1)
    qsort (g.r, g.n, sizeof *g.r, cmp_replica);

  for (i = 0; i < g.n; i = j) {
    for (j = i + 1; j < g.n && g.r[j].d.segment == g.r[i].d.segment; j++)
      ;
    rep->segments++;
    if (g.r[i].d.segment > max_seg)
      max_seg = g.r[i].d.segment;
    if (g.r[i].d.volume > max_vol)
      max_vol = g.r[i].d.volume;
    if (!make_segment (mds, &g.r[i], j - i, vols, nvols, &batch[nb], rep))
      continue;
    if (++nb == ADOPT_BATCH) {
      if (adopt (mds, batch, nb, rep) < 0)
        goto out;
      nb = 0;
    }
  }
  if (adopt (mds, batch, nb, rep) < 0)
    goto out;

  /* Ids never given twice; epochs never used twice. */
  r = catalog_counters_raise (mds->cat, max_vol + 1, 0, max_seg + 1);
  for (i = 0; r == 0 && i < nvols; i++) {
    uint64_t e = vols[i].epoch;

    for (j = 0; j < g.ne; j++)
      if (g.e[j].volume == vols[i].id && g.e[j].epoch > e)
        e = g.e[j].epoch;
    r = catalog_volume_raise_epoch (mds->cat, vols[i].id, e);
  }
  if (r < 0) {
    log_error ("rebuild: raising counters and epochs: %s",
               catalog_strerror (r));
    goto out;
  }
  rep->volumes = nvols;
  rep->servers = nsrv;
  log_info ("rebuild: %zu of %zu storage servers answered (%zu described "
            "their segments); cluster tables version %" PRIu64
            ": %zu servers, %zu volumes",
            rep->answered, naddrs, rep->described, rep->tables_version,
            rep->servers, rep->volumes);
  log_info ("rebuild: %" PRIu64 " segments seen: %" PRIu64 " placed, %" PRIu64
            " already in the catalog, %" PRIu64 " not placed; %" PRIu64
            " stale replicas",
            rep->segments, rep->placed, rep->known, rep->not_placed,
            rep->stale);
  ret = 0;
  goto out;

nomem:
  log_error ("rebuild: %s", strerror (ENOMEM));
out:
  free (g.r);
  free (g.e);
  return ret;
}

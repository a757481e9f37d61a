/* catalog-bench: allocations/s and lookups/s of the MDS's LMDB catalog.
 *
 *   catalog-bench DIR NSEGMENTS [SECONDS]
 *
 * In an empty directory DIR (created; removed by the caller), creates a
 * cluster (64 KiB segments), 3 servers and one 2-replica volume large
 * enough for NSEGMENTS segments, then measures:
 *   alloc-1      catalog_map_alloc of 1 segment per call (one synced
 *                transaction each: what a first write to a hole costs),
 *                for at most SECONDS or 2000 calls;
 *   alloc-1024   catalog_map_alloc of 1024 segments per call (a MAP_ALLOC
 *                batch), until NSEGMENTS are allocated;
 *   map_get-1    catalog_map_get of one random index, for SECONDS;
 *   map_get-1024 catalog_map_get of 1024 indexes from a random start;
 *   segment_get  catalog_segment_get of a random segment id;
 * and prints one line per measure (operations/s and segments/s) and the
 * catalog's size on disk.  SECONDS defaults to 3.
 *
 * Build: see bench/Makefile (links libcatalog.a and libcommon.a).
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "catalog.h"

#define SEGSIZE (64u * 1024)
#define BATCH 1024

static double
now (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
check (int r, const char *what)
{
  if (r < 0) {
    fprintf (stderr, "catalog-bench: %s: %s\n", what, catalog_strerror (r));
    exit (EXIT_FAILURE);
  }
}

/* xorshift64*: cheap random numbers. */
static uint64_t rng = 88172645463325252ull;
static uint64_t
rnd (void)
{
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return rng * 2685821657736338717ull;
}

static void
fill (struct catalog_map_entry *e, uint64_t index)
{
  memset (e, 0, sizeof *e);
  e->index = index;
  e->segment.nreplicas = 2;
  e->segment.replicas[0].server = 1 + index % 3;
  e->segment.replicas[1].server = 1 + (index + 1) % 3;
}

static void
result (const char *what, uint64_t nseg, uint64_t ops, uint64_t segs,
        double secs)
{
  printf ("catalog-bench n=%" PRIu64 " %-12s %10.0f ops/s %12.0f segments/s"
          " (%" PRIu64 " ops in %.2f s)\n",
          nseg, what, ops / secs, segs / secs, ops, secs);
  fflush (stdout);
}

int
main (int argc, char *argv[])
{
  const char *dir;
  uint64_t nseg, next = 0, ops, segs, maxid = 0;
  double secs = 3, t0, t;
  struct catalog_map_entry *batch;
  struct catalog_volume vol;
  struct catalog_server srv;
  uint8_t uuid[16] = { 1 };
  catalog *cat;
  size_t n, i;
  char path[4096];
  struct stat st;

  if (argc < 3 || argc > 4) {
    fprintf (stderr, "usage: catalog-bench DIR NSEGMENTS [SECONDS]\n");
    exit (2);
  }
  dir = argv[1];
  nseg = strtoull (argv[2], NULL, 0);
  if (argc == 4)
    secs = strtod (argv[3], NULL);
  if (mkdir (dir, 0700) == -1 && errno != EEXIST) {
    perror (dir);
    exit (EXIT_FAILURE);
  }
  /* About 300 bytes per segment in all databases, with room to spare. */
  check (catalog_open (dir, (uint64_t)1 << 30 | (nseg * 2048), &cat), "open");
  check (catalog_cluster_init (cat, SEGSIZE, uuid), "cluster init");
  for (i = 1; i <= 3; i++) {
    uuid[0] = i + 1;
    snprintf (path, sizeof path, "unix:/nonexistent/ss%zu.sock", i);
    check (catalog_server_register (cat, uuid, path, "", 1ull << 50, &srv),
           "server register");
  }
  check (catalog_volume_create (cat, "bench", nseg * SEGSIZE, 2, &vol),
         "volume create");
  batch = malloc (BATCH * sizeof *batch);
  if (batch == NULL)
    exit (EXIT_FAILURE);

  /* alloc-1: one synced transaction per segment. */
  t0 = now ();
  for (ops = 0; next < nseg && ops < 2000; ops++) {
    fill (&batch[0], next++);
    check (catalog_map_alloc (cat, vol.id, batch, 1), "map alloc");
    if (batch[0].segment.id > maxid)
      maxid = batch[0].segment.id;
    if ((ops & 15) == 15 && now () - t0 > secs)
      break;
  }
  result ("alloc-1", nseg, ops, ops, now () - t0);

  /* alloc-1024: the rest, in batches. */
  t0 = now ();
  ops = segs = 0;
  while (next < nseg) {
    n = nseg - next < BATCH ? nseg - next : BATCH;
    for (i = 0; i < n; i++)
      fill (&batch[i], next++);
    check (catalog_map_alloc (cat, vol.id, batch, n), "map alloc");
    for (i = 0; i < n; i++)
      if (batch[i].segment.id > maxid)
        maxid = batch[i].segment.id;
    ops++, segs += n;
  }
  if (ops)
    result ("alloc-1024", nseg, ops, segs, now () - t0);

  /* map_get-1: random single lookups. */
  t0 = now ();
  ops = 0;
  do {
    struct catalog_map_entry *out;

    for (i = 0; i < 256; i++, ops++) {
      check (catalog_map_get (cat, vol.id, rnd () % nseg, 1, &out, &n),
             "map get");
      if (n != 1) {
        fprintf (stderr, "catalog-bench: map get: %zu entries\n", n);
        exit (EXIT_FAILURE);
      }
      free (out);
    }
  } while ((t = now () - t0) < secs);
  result ("map_get-1", nseg, ops, ops, t);

  /* map_get-1024: ranges. */
  t0 = now ();
  ops = segs = 0;
  do {
    struct catalog_map_entry *out;
    uint64_t start = nseg > BATCH ? rnd () % (nseg - BATCH) : 0;

    check (catalog_map_get (cat, vol.id, start, BATCH, &out, &n), "map get");
    free (out);
    ops++, segs += n;
  } while ((t = now () - t0) < secs);
  result ("map_get-1024", nseg, ops, segs, t);

  /* segment_get: random segment records. */
  t0 = now ();
  ops = 0;
  do {
    struct catalog_segment s;

    for (i = 0; i < 256; i++, ops++)
      check (catalog_segment_get (cat, 1 + rnd () % maxid, &s), "segment get");
  } while ((t = now () - t0) < secs);
  result ("segment_get", nseg, ops, ops, t);

  catalog_close (cat);
  snprintf (path, sizeof path, "%s/data.mdb", dir);
  if (stat (path, &st) == 0)
    printf ("catalog-bench n=%" PRIu64 " size on disk %.1f MiB "
            "(%.0f bytes/segment)\n",
            nseg, st.st_blocks * 512 / 1048576.0, st.st_blocks * 512.0 / nseg);
  free (batch);
  return 0;
}

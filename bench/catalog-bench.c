/* catalog-bench: allocations/s and lookups/s of the MDS's LMDB catalog.
 *
 *   catalog-bench DIR NSEGMENTS [SECONDS]
 *
 * In an empty directory DIR (created; removed by the caller), creates a
 * cluster (64 KiB segments), 3 servers and one 2-replica volume, fills
 * the catalog with NSEGMENTS segments in batches of 1024 (reported as
 * prefill-1024, from 0 to NSEGMENTS), then measures at that size:
 *   alloc-1      catalog_map_alloc of 1 segment per call from one thread
 *                (one synced transaction each: what a first write to a
 *                hole costs), for at most SECONDS or 2000 calls (or a
 *                quarter of NSEGMENTS, at least 100);
 *   alloc-1x64   the same from 64 threads at once, for at most SECONDS
 *                or 64000 calls (or a quarter of NSEGMENTS, at least
 *                6400): the calls meet in the catalog's group commit,
 *                as concurrent MAP_ALLOCs of the MDS's connection
 *                threads do;
 *   alloc-1024   catalog_map_alloc of 1024 segments per call (a MAP_ALLOC
 *                batch), for at most SECONDS or a quarter of NSEGMENTS
 *                (at least 16 batches);
 *   map_get-1    catalog_map_get of one random index, for SECONDS;
 *   map_get-1x2  the same from 2 threads at once (the MDS serves MAP_GET
 *                of several connections in parallel);
 *   map_get-1024 catalog_map_get of 1024 indexes from a random start;
 *   segment_get  catalog_segment_get of a random segment id;
 * and prints one line per measure (operations/s, segments/s, and the
 * process's CPU time per operation, the steadier figure on a busy
 * machine) and the catalog's size on disk.  Each line names the number
 * of segments in the catalog when the measure started ("at N"), and a
 * measure that allocates also how many it added ("+K"): the allocations
 * are measured on the filled catalog, not on an empty one.  SECONDS
 * defaults to 3.
 *
 * Build: see bench/Makefile (links libcatalog.a and libcommon.a).
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "catalog.h"

#define SEGSIZE (64u * 1024)
#define BATCH 1024
#define ALLOC_THREADS 64
#define GET_THREADS 2

/* Seconds on CLOCK (monotonic: wall time; process CPU time). */
static double
clock_secs (clockid_t clock)
{
  struct timespec ts;

  clock_gettime (clock, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double
now (void)
{
  return clock_secs (CLOCK_MONOTONIC);
}

static double
cpu_now (void)
{
  return clock_secs (CLOCK_PROCESS_CPUTIME_ID);
}

static void
check (int r, const char *what)
{
  if (r < 0) {
    fprintf (stderr, "catalog-bench: %s: %s\n", what, catalog_strerror (r));
    exit (EXIT_FAILURE);
  }
}

/* xorshift64*: cheap random numbers from state *S. */
static uint64_t
rnd_r (uint64_t *s)
{
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 2685821657736338717ull;
}

static uint64_t rng = 88172645463325252ull;
static uint64_t
rnd (void)
{
  return rnd_r (&rng);
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

/* One result line: WHAT measured from catalog size AT (segments) on,
 * adding ADDED; CPU is the process's CPU seconds over the case.
 */
static void
result (const char *what, uint64_t at, uint64_t added, uint64_t ops,
        uint64_t segs, double secs, double cpu)
{
  char size[64];

  if (added)
    snprintf (size, sizeof size, "at %" PRIu64 " +%" PRIu64, at, added);
  else
    snprintf (size, sizeof size, "at %" PRIu64, at);
  printf ("catalog-bench %-12s %-20s %10.0f ops/s %12.0f segments/s"
          " (%" PRIu64 " ops in %.2f s, %.2f us CPU/op)\n",
          what, size, ops / secs, segs / secs, ops, secs,
          ops ? cpu * 1e6 / ops : 0.0);
  fflush (stdout);
}

/* Allocate indexes [*NEXT, LIMIT) in batches of BATCH through BUF, for
 * at most SECS seconds (no bound if SECS <= 0), raising *MAXID to the
 * largest segment id handed out; returns the number of calls.
 */
static uint64_t
alloc_batches (catalog *cat, uint64_t volume, struct catalog_map_entry *buf,
               uint64_t *next, uint64_t limit, double secs, uint64_t *maxid)
{
  double t0 = now ();
  uint64_t ops = 0;
  size_t n, i;

  while (*next < limit && (secs <= 0 || now () - t0 < secs)) {
    n = limit - *next < BATCH ? limit - *next : BATCH;
    for (i = 0; i < n; i++)
      fill (&buf[i], (*next)++);
    check (catalog_map_alloc (cat, volume, buf, n), "map alloc");
    for (i = 0; i < n; i++)
      if (buf[i].segment.id > *maxid)
        *maxid = buf[i].segment.id;
    ops++;
  }
  return ops;
}

/* What the threads of a concurrent case share. */
struct shared {
  catalog *cat;
  uint64_t volume;
  uint64_t nseg;
  double t0, secs;
  pthread_mutex_t lock;
  uint64_t next, limit; /* alloc: next index to take, end; lock: LOCK */
  uint64_t ops, maxid;  /* totals; lock: LOCK */
};

/* alloc-1x64 thread: allocate one index at a time until the budget or
 * the time is spent.
 */
static void *
alloc_thread (void *arg)
{
  struct shared *sh = arg;
  struct catalog_map_entry e;
  uint64_t index, ops = 0, maxid = 0;

  for (;;) {
    pthread_mutex_lock (&sh->lock);
    index = sh->next < sh->limit && now () - sh->t0 < sh->secs ? sh->next++
                                                               : UINT64_MAX;
    pthread_mutex_unlock (&sh->lock);
    if (index == UINT64_MAX)
      break;
    fill (&e, index);
    check (catalog_map_alloc (sh->cat, sh->volume, &e, 1), "map alloc");
    if (e.segment.id > maxid)
      maxid = e.segment.id;
    ops++;
  }
  pthread_mutex_lock (&sh->lock);
  sh->ops += ops;
  if (maxid > sh->maxid)
    sh->maxid = maxid;
  pthread_mutex_unlock (&sh->lock);
  return NULL;
}

/* map_get-1x2 thread: random single lookups for the case's time. */
static void *
get_thread (void *arg)
{
  struct shared *sh = arg;
  struct catalog_map_entry *out;
  uint64_t s, ops = 0;
  size_t n, i;

  pthread_mutex_lock (&sh->lock);
  s = rnd ();
  pthread_mutex_unlock (&sh->lock);
  do {
    for (i = 0; i < 256; i++, ops++) {
      check (catalog_map_get (sh->cat, sh->volume, rnd_r (&s) % sh->nseg, 1,
                              &out, &n),
             "map get");
      if (n != 1) {
        fprintf (stderr, "catalog-bench: map get: %zu entries\n", n);
        exit (EXIT_FAILURE);
      }
      free (out);
    }
  } while (now () - sh->t0 < sh->secs);
  pthread_mutex_lock (&sh->lock);
  sh->ops += ops;
  pthread_mutex_unlock (&sh->lock);
  return NULL;
}

/* Run NTHREADS threads of FN on SH from now; returns the wall time. */
static double
run_threads (size_t nthreads, void *(*fn) (void *), struct shared *sh)
{
  pthread_t t[ALLOC_THREADS];
  size_t i;
  int r;

  sh->t0 = now ();
  sh->ops = 0;
  for (i = 0; i < nthreads; i++) {
    r = pthread_create (&t[i], NULL, fn, sh);
    if (r != 0) {
      fprintf (stderr, "catalog-bench: pthread_create: %s\n", strerror (r));
      exit (EXIT_FAILURE);
    }
  }
  for (i = 0; i < nthreads; i++)
    pthread_join (t[i], NULL);
  return now () - sh->t0;
}

int
main (int argc, char *argv[])
{
  const char *dir;
  uint64_t nseg, next = 0, ops, maxid = 0, at, total;
  uint64_t budget1, budget64, budget;
  double secs = 3, t0, c0, t;
  struct catalog_map_entry *batch;
  struct catalog_volume vol;
  struct catalog_server srv;
  struct shared sh;
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
  if (nseg == 0) {
    fprintf (stderr, "catalog-bench: NSEGMENTS must be at least 1\n");
    exit (2);
  }
  if (mkdir (dir, 0700) == -1 && errno != EEXIST) {
    perror (dir);
    exit (EXIT_FAILURE);
  }
  /* The prefill, then at most a quarter of NSEGMENTS for each measure
   * that allocates (so the catalog's size changes little under it), but
   * at least 100 single calls, 100 per thread, 16 batches; and no more
   * than 2000 single calls or 64000 from the threads.
   */
  budget1 = nseg / 4 < 100 ? 100 : nseg / 4 > 2000 ? 2000 : nseg / 4;
  budget64 = nseg / 4 < 6400 ? 6400 : nseg / 4 > 64000 ? 64000 : nseg / 4;
  budget = nseg / 4 > 16 * BATCH ? nseg / 4 : 16 * BATCH;
  total = nseg + budget1 + budget64 + budget;
  /* About 300 bytes per segment in all databases, with room to spare. */
  check (catalog_open (dir, ((uint64_t)1 << 30) + total * 2048, &cat), "open");
  check (catalog_cluster_init (cat, SEGSIZE, uuid), "cluster init");
  for (i = 1; i <= 3; i++) {
    uuid[0] = i + 1;
    snprintf (path, sizeof path, "unix:/nonexistent/ss%zu.sock", i);
    check (catalog_server_register (cat, uuid, path, "", 1ull << 50, &srv),
           "server register");
  }
  check (catalog_volume_create (cat, "bench", total * SEGSIZE, 2, &vol),
         "volume create");
  batch = malloc (BATCH * sizeof *batch);
  if (batch == NULL)
    exit (EXIT_FAILURE);
  memset (&sh, 0, sizeof sh);
  pthread_mutex_init (&sh.lock, NULL);
  sh.cat = cat;
  sh.volume = vol.id;
  sh.secs = secs;

  /* prefill-1024: NSEGMENTS in batches, from an empty catalog. */
  t0 = now ();
  c0 = cpu_now ();
  ops = alloc_batches (cat, vol.id, batch, &next, nseg, 0, &maxid);
  result ("prefill-1024", 0, next, ops, next, now () - t0, cpu_now () - c0);

  /* alloc-1: one synced transaction per segment. */
  at = next;
  t0 = now ();
  c0 = cpu_now ();
  for (ops = 0; next < at + budget1; ops++) {
    fill (&batch[0], next++);
    check (catalog_map_alloc (cat, vol.id, batch, 1), "map alloc");
    if (batch[0].segment.id > maxid)
      maxid = batch[0].segment.id;
    if ((ops & 15) == 15 && now () - t0 > secs) {
      ops++;
      break;
    }
  }
  result ("alloc-1", at, next - at, ops, ops, now () - t0, cpu_now () - c0);

  /* alloc-1x64: single allocations from 64 threads, group committed. */
  at = next;
  sh.next = next;
  sh.limit = next + budget64;
  c0 = cpu_now ();
  t = run_threads (ALLOC_THREADS, alloc_thread, &sh);
  result ("alloc-1x64", at, sh.next - at, sh.ops, sh.ops, t, cpu_now () - c0);
  next = sh.next;
  if (sh.maxid > maxid)
    maxid = sh.maxid;

  /* alloc-1024: batches. */
  at = next;
  t0 = now ();
  c0 = cpu_now ();
  ops = alloc_batches (cat, vol.id, batch, &next, next + budget, secs, &maxid);
  result ("alloc-1024", at, next - at, ops, next - at, now () - t0,
          cpu_now () - c0);

  /* Lookups over every allocated index [0, NEXT). */
  at = next;
  sh.nseg = next;

  /* map_get-1: random single lookups. */
  t0 = now ();
  c0 = cpu_now ();
  ops = 0;
  do {
    struct catalog_map_entry *out;

    for (i = 0; i < 256; i++, ops++) {
      check (catalog_map_get (cat, vol.id, rnd () % at, 1, &out, &n),
             "map get");
      if (n != 1) {
        fprintf (stderr, "catalog-bench: map get: %zu entries\n", n);
        exit (EXIT_FAILURE);
      }
      free (out);
    }
  } while ((t = now () - t0) < secs);
  result ("map_get-1", at, 0, ops, ops, t, cpu_now () - c0);

  /* map_get-1x2: the same from 2 threads. */
  c0 = cpu_now ();
  t = run_threads (GET_THREADS, get_thread, &sh);
  result ("map_get-1x2", at, 0, sh.ops, sh.ops, t, cpu_now () - c0);

  /* map_get-1024: ranges. */
  t0 = now ();
  c0 = cpu_now ();
  ops = 0;
  {
    uint64_t segs = 0;

    do {
      struct catalog_map_entry *out;
      uint64_t start = at > BATCH ? rnd () % (at - BATCH) : 0;

      check (catalog_map_get (cat, vol.id, start, BATCH, &out, &n), "map get");
      free (out);
      ops++, segs += n;
    } while ((t = now () - t0) < secs);
    result ("map_get-1024", at, 0, ops, segs, t, cpu_now () - c0);
  }

  /* segment_get: random segment records. */
  t0 = now ();
  c0 = cpu_now ();
  ops = 0;
  do {
    struct catalog_segment s;

    for (i = 0; i < 256; i++, ops++)
      check (catalog_segment_get (cat, 1 + rnd () % maxid, &s), "segment get");
  } while ((t = now () - t0) < secs);
  result ("segment_get", at, 0, ops, ops, t, cpu_now () - c0);

  catalog_close (cat);
  pthread_mutex_destroy (&sh.lock);
  snprintf (path, sizeof path, "%s/data.mdb", dir);
  if (stat (path, &st) == 0)
    printf ("catalog-bench size on disk at %" PRIu64 ": %.1f MiB "
            "(%.0f bytes/segment)\n",
            at, st.st_blocks * 512 / 1048576.0, st.st_blocks * 512.0 / at);
  free (batch);
  return 0;
}

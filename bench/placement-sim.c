/* placement-sim: the placement index at cluster scale (issue 13).
 *
 * Drives mds/libplacement.la's placement index the way the MDS does and
 * prints Markdown tables for docs/performance.md.  Placement: volumes
 * allocate 17 consecutive segments per turn (1 + the plugin's
 * readahead), each segment avoiding the replicas of the one before it;
 * in the 100-volume runs the volumes take turns.  The index charges
 * each chosen server one 4 MiB segment.  Servers have ids 1..N; server
 * I is in zone z(I mod 10) unless a scenario says otherwise; the
 * high-water mark is 90 %.  Every seed is fixed, so counts and balance
 * figures are the same on every run; only timings vary.  Timings are
 * CPU time of the placement calls alone.
 *
 * Scenarios (the same questions as the review of the previous
 * placement): q1 balance on equal servers, q2 servers of unequal size,
 * q3 servers added to a full cluster, q4 re-placement after a server is
 * lost, q5 cost against cluster size.
 */

#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "placement.h"

#define SEG (UINT64_C (4) << 20)
#define BATCH 17
#define NONE UINT32_MAX

static bool quick;

/* ---- Clusters ---- */

/* A cluster as the simulation knows it, independently of the index. */
struct cluster {
  struct placement_server *s; /* s[i].id = i + 1 */
  uint32_t *zone;             /* zone number of each server */
  char (*names)[16];          /* zone names, by number */
  uint32_t n, nzones;
};

static void *
xcalloc (size_t n, size_t size)
{
  void *p = calloc (n ? n : 1, size);

  if (p == NULL) {
    perror ("placement-sim: calloc");
    exit (EXIT_FAILURE);
  }
  return p;
}

/* N servers of CAP segments each, server I (1-based) in zone I mod
 * NZONES (no zones if NZONES is 0), mark 90 %, up, empty.
 */
static void
cluster_init (struct cluster *c, uint32_t n, uint32_t nzones, uint64_t cap)
{
  uint32_t i, nz = nzones ? nzones : 1;

  c->n = n;
  c->nzones = nzones;
  c->s = xcalloc (n, sizeof *c->s);
  c->zone = xcalloc (n, sizeof *c->zone);
  c->names = xcalloc (nz + 1, sizeof *c->names);
  for (i = 0; i <= nz; ++i)
    snprintf (c->names[i], sizeof c->names[i], "z%" PRIu32, i);
  for (i = 0; i < n; ++i) {
    c->s[i].id = i + 1;
    c->zone[i] = nzones ? (i + 1) % nzones : i;
    c->s[i].zone = nzones ? c->names[c->zone[i]] : NULL;
    c->s[i].capacity = cap * SEG;
    c->s[i].up = true;
    c->s[i].high_water = 90;
  }
}

static void
cluster_free (struct cluster *c)
{
  free (c->s);
  free (c->zone);
  free (c->names);
}

/* Seconds of CPU time this thread has used: on a shared machine it
 * leaves out the time other jobs held the CPU, which wall-clock time
 * would count.
 */
static double
now (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- Driving placement as the MDS does ---- */

struct driver {
  struct placement_index *idx;
  const struct cluster *c;
  uint32_t r, nvol, domains; /* DOMAINS: zones with an up server */
  uint32_t *prev;            /* per volume: the last segment's replicas */
  uint64_t *pos;             /* per volume: segments allocated */
  uint32_t vol, left;        /* volume allocating, segments left in batch */
  uint64_t rng;
  uint64_t placed, zone_viol, pair_viol, pairs;
  double seconds;
  uint32_t *cnt;    /* replicas per server (by id - 1) */
  uint32_t *record; /* if not NULL: every segment's replicas */
  uint64_t record_max;
  int err; /* the error that stopped the last drive, or 0 */
};

static void
driver_init (struct driver *d, const struct cluster *c, uint32_t r,
             uint32_t nvol, uint64_t seed)
{
  memset (d, 0, sizeof *d);
  d->idx = placement_index_new (c->s, c->n, SEG);
  if (d->idx == NULL) {
    fprintf (stderr, "placement-sim: placement_index_new: out of memory\n");
    exit (EXIT_FAILURE);
  }
  d->c = c;
  d->r = r;
  d->nvol = nvol;
  d->domains = c->nzones ? c->nzones : c->n;
  d->prev = xcalloc ((size_t)nvol * r, sizeof *d->prev);
  d->pos = xcalloc (nvol, sizeof *d->pos);
  d->cnt = xcalloc (c->n, sizeof *d->cnt);
  d->left = BATCH;
  d->rng = seed;
}

static void
driver_free (struct driver *d)
{
  placement_index_free (d->idx);
  free (d->prev);
  free (d->pos);
  free (d->cnt);
  free (d->record);
}

/* Count the rule violations of segment OUT[0..R) placed after PREV
 * (NULL for a volume's first segment).
 */
static void
check_segment (struct driver *d, const uint32_t *out, const uint32_t *prev)
{
  uint32_t a, b, zones = 0, most = 0, same, need, cap;

  need = d->r < d->domains ? d->r : d->domains;
  cap = (d->r + need - 1) / need;
  for (a = 0; a < d->r; ++a) {
    same = 0;
    for (b = 0; b < d->r; ++b)
      same += d->c->zone[out[a] - 1] == d->c->zone[out[b] - 1];
    most = same > most ? same : most;
    for (b = 0; b < a; ++b)
      if (d->c->zone[out[a] - 1] == d->c->zone[out[b] - 1])
        break;
    zones += b == a;
  }
  if (zones < need || most > cap)
    d->zone_viol++;
  if (prev) {
    bool shared = false;

    for (a = 0; a < d->r; ++a)
      for (b = 0; b < d->r; ++b)
        shared |= out[a] == prev[b];
    d->pairs++;
    d->pair_viol += shared;
  }
}

/* Place up to NSEG segments, volume batches in turn; stops early on an
 * error (kept in d->err).  Returns the segments placed.
 */
static uint64_t
drive (struct driver *d, uint64_t nseg)
{
  uint32_t out[BATCH][PLACEMENT_REPLICAS_MAX];
  uint64_t done = 0;
  double t0;
  uint32_t j, k, m;

  d->err = 0;
  while (done < nseg && d->err == 0) {
    uint32_t *prev = &d->prev[(size_t)d->vol * d->r];
    uint64_t first = d->pos[d->vol];

    m = d->left < nseg - done ? d->left : (uint32_t)(nseg - done);
    t0 = now ();
    for (j = 0; j < m; ++j) {
      const uint32_t *avoid = j ? out[j - 1] : prev;
      size_t navoid = (j || first) ? d->r : 0;

      d->err =
          placement_index_choose (d->idx, d->r, avoid, navoid, &d->rng, out[j]);
      if (d->err)
        break;
    }
    d->seconds += now () - t0;
    for (k = 0; k < j; ++k) {
      const uint32_t *before = k ? out[k - 1] : (first ? prev : NULL);
      uint32_t x;

      check_segment (d, out[k], before);
      for (x = 0; x < d->r; ++x)
        d->cnt[out[k][x] - 1]++;
      if (d->record && d->placed < d->record_max)
        memcpy (&d->record[d->placed * d->r], out[k], d->r * sizeof out[k][0]);
      d->placed++;
    }
    if (j > 0)
      memcpy (prev, out[j - 1], d->r * sizeof *prev);
    d->pos[d->vol] += j;
    done += j;
    d->left -= j;
    if (d->left == 0) {
      d->left = BATCH;
      d->vol = (d->vol + 1) % d->nvol;
    }
  }
  return done;
}

/* ---- Statistics ---- */

struct stats {
  double mean, sd, min, max;
};

/* Mean, standard deviation and extremes of V[I] over the I in [0, N)
 * where PICK is NULL or PICK[I] is true.
 */
static struct stats
stats_of (const double *v, const bool *pick, size_t n)
{
  struct stats st = { 0, 0, INFINITY, -INFINITY };
  double sum = 0, sq = 0;
  size_t i, k = 0;

  for (i = 0; i < n; ++i)
    if (pick == NULL || pick[i]) {
      sum += v[i];
      sq += v[i] * v[i];
      st.min = v[i] < st.min ? v[i] : st.min;
      st.max = v[i] > st.max ? v[i] : st.max;
      k++;
    }
  if (k == 0)
    return (struct stats){ 0, 0, 0, 0 };
  st.mean = sum / k;
  st.sd = sqrt (fmax (0, sq / k - st.mean * st.mean));
  return st;
}

/* Fill (used / capacity, %) of every server, by id - 1, from the index. */
static void
fills (const struct driver *d, double *f)
{
  uint32_t i;

  for (i = 0; i < d->c->n; ++i) {
    const struct placement_server *s = placement_index_server (d->idx, i + 1);

    f[i] = s && s->capacity ? 100.0 * s->used / s->capacity : 0;
  }
}

/* ---- Q1: equal servers ---- */

static void
q1_row (uint32_t r, uint32_t nvol, uint64_t cap, const char *capname,
        uint64_t nseg)
{
  struct cluster c;
  struct driver d;
  struct stats st;
  double *v;
  uint32_t i;

  cluster_init (&c, 1000, 10, cap);
  driver_init (&d, &c, r, nvol, 1);
  drive (&d, nseg);
  v = xcalloc (c.n, sizeof *v);
  for (i = 0; i < c.n; ++i)
    v[i] = d.cnt[i];
  st = stats_of (v, NULL, c.n);
  printf ("| %" PRIu32 " | %" PRIu32 " × %" PRIu64 " | %s | %.0f | %.2f "
          "(%.2f %%) | **%+.2f %%** | %+.2f %% | %" PRIu64 " | %" PRIu64
          " of %" PRIu64 " | %.2f |%s\n",
          r, nvol, nseg / nvol, capname, st.mean, st.sd, 100 * st.sd / st.mean,
          100 * (st.max / st.mean - 1), 100 * (st.min / st.mean - 1),
          d.zone_viol, d.pair_viol, d.pairs, 1e6 * d.seconds / d.placed,
          d.err ? " ENOSPC" : "");
  fflush (stdout);
  free (v);
  driver_free (&d);
  cluster_free (&c);
}

static void
q1 (void)
{
  uint64_t nseg = quick ? 100000 : 1000000;
  uint32_t r;

  printf ("\n### Q1: 1,000 equal servers, 10 zones, %" PRIu64
          " segments (seed 1)\n\n",
          nseg);
  printf ("| R | volumes × segments | capacity | mean | sd | max/mean "
          "| min/mean | zone violations | consecutive pairs sharing a "
          "server | µs/segment |\n");
  printf ("|---|---|---|---|---|---|---|---|---|---|\n");
  for (r = 3; r >= 2; --r) {
    q1_row (r, 1, 1048576, "4 TiB", nseg);
    q1_row (r, 100, 1048576, "4 TiB", nseg);
  }
  /* Capacity that ends at 80 % fill. */
  q1_row (3, 1, nseg * 3 / 1000 * 10 / 8, "80 % at the end", nseg);
  q1_row (2, 1, nseg * 2 / 1000 * 10 / 8, "80 % at the end", nseg);
}

/* ---- Q2: servers of unequal size ---- */

/* One Q2 layout: 900 servers of 1,000 segments and 100 of 4,000; the
 * big ones 10 per zone (SPREAD) or all in zone z0.
 */
static void
q2_layout (bool spread)
{
  static const double marks[] = { 25, 50, 75, 85, 89, 101 };
  struct cluster c;
  struct driver d;
  bool *big;
  double *f, slots = 0, fill;
  uint32_t i, m;

  cluster_init (&c, 1000, 10, 1000);
  big = xcalloc (c.n, sizeof *big);
  for (i = 0; i < c.n; ++i) {
    big[i] = spread ? i < 100 : c.zone[i] == 0;
    if (big[i])
      c.s[i].capacity = 4000 * SEG;
    slots += c.s[i].capacity / SEG;
  }
  driver_init (&d, &c, 3, 1, 2);
  f = xcalloc (c.n, sizeof *f);
  printf ("\n**Layout %s: the 100 big servers %s.**\n\n", spread ? "A" : "B",
          spread ? "spread, 10 in every zone" : "all in zone z0");
  printf ("| cluster fill | big: mean (sd) [min, max] | small: mean (sd) "
          "[min, max] | big ÷ small fill | zone violations |\n");
  printf ("|---|---|---|---|---|\n");
  for (m = 0; m < sizeof marks / sizeof marks[0]; ++m) {
    struct stats b, s;
    uint64_t want = (uint64_t)(marks[m] / 100 * slots / 3);

    if (want > d.placed)
      drive (&d, want - d.placed);
    fills (&d, f);
    b = stats_of (f, big, c.n);
    for (i = 0; i < c.n; ++i)
      big[i] = !big[i];
    s = stats_of (f, big, c.n);
    for (i = 0; i < c.n; ++i)
      big[i] = !big[i];
    fill = 100.0 * d.placed * 3 / slots;
    if (d.err)
      printf ("| -ENOSPC at %.2f %% (%" PRIu64 " segments)", fill, d.placed);
    else
      printf ("| %.0f %%", marks[m]);
    printf (" | %.2f (%.2f) [%.2f, %.2f] | %.2f (%.2f) [%.2f, %.2f] | %.3f "
            "| %" PRIu64 " |\n",
            b.mean, b.sd, b.min, b.max, s.mean, s.sd, s.min, s.max,
            b.mean / s.mean, d.zone_viol);
    if (d.err)
      break;
  }
  fflush (stdout);
  free (f);
  free (big);
  driver_free (&d);
  cluster_free (&c);
}

static void
q2 (void)
{
  printf ("\n### Q2: unequal servers (900 × 1,000 segments, 100 × 4,000; "
          "R = 3, seed 2)\n");
  q2_layout (true);
  q2_layout (false);
}

/* ---- Q3: servers added to a full cluster ---- */

/* Why the Q3 scenarios stopped, printed after their table. */
static char q3_why[8][512];
static int q3_nwhy;

/* 1,000 old servers of 10,000 segments at OLD % and 100 empty new ones,
 * 10 per zone (SPREAD) or in a new zone z10, high-water mark MARK %;
 * NSEG new segments.
 */
static void
q3_row (const char *name, uint32_t r, double old, uint32_t mark, bool spread,
        uint64_t nseg)
{
  struct cluster c;
  struct driver d;
  bool *isnew;
  double *f, room_new = 0, room_all = 0, onnew = 0;
  struct stats so, sn;
  uint32_t i;

  cluster_init (&c, 1100, 10, 10000);
  isnew = xcalloc (c.n, sizeof *isnew);
  for (i = 0; i < c.n; ++i) {
    uint64_t room_mark = c.s[i].capacity / 100 * mark;

    c.s[i].high_water = mark;
    isnew[i] = i >= 1000;
    if (!isnew[i])
      c.s[i].used = (uint64_t)(old / 100 * (c.s[i].capacity / SEG)) * SEG;
    else if (!spread) {
      c.zone[i] = 10;
      c.s[i].zone = c.names[10];
    }
    room_all += room_mark > c.s[i].used ? room_mark - c.s[i].used : 0;
    if (isnew[i])
      room_new += room_mark;
  }
  driver_init (&d, &c, r, 1, 3);
  d.domains = spread ? 10 : 11;
  drive (&d, nseg);
  if (d.err && q3_nwhy < 8) {
    int k = snprintf (q3_why[q3_nwhy], sizeof q3_why[0],
                      "%s, R = %" PRIu32 ": ", name, r);

    placement_index_explain (d.idx, r, q3_why[q3_nwhy] + k,
                             sizeof q3_why[0] - k);
    q3_nwhy++;
  }
  for (i = 1000; i < c.n; ++i)
    onnew += d.cnt[i];
  f = xcalloc (c.n, sizeof *f);
  fills (&d, f);
  so = stats_of (f, NULL, 1000);
  sn = stats_of (f + 1000, NULL, 100);
  printf ("| %s | %" PRIu32 " | %" PRIu64 "%s | %.1f %% | %.1f %% | %.2f "
          "[%.2f, %.2f] | %.2f [%.2f, %.2f] | %" PRIu64 " |\n",
          name, r, d.placed, d.err ? " (then -ENOSPC)" : "",
          d.placed ? 100 * onnew / (d.placed * r) : 0,
          100 * room_new / room_all, so.mean, so.min, so.max, sn.mean, sn.min,
          sn.max, d.zone_viol);
  fflush (stdout);
  free (f);
  free (isnew);
  driver_free (&d);
  cluster_free (&c);
}

static void
q3 (void)
{
  uint64_t nseg = quick ? 20000 : 100000;
  int i;

  printf ("\n### Q3: 100 empty servers added to 1,000 servers of 10,000 "
          "segments (%" PRIu64 " new segments, seed 3)\n\n",
          nseg);
  printf ("| scenario | R | segments placed | share of the new replicas on "
          "new servers | new servers' share of the room | old fill after "
          "(%%) [min, max] | new fill after (%%) [min, max] | zone "
          "violations |\n");
  printf ("|---|---|---|---|---|---|---|---|\n");
  q3_row ("s0: old at 90 %, new spread", 3, 90, 90, true, nseg);
  q3_row ("s0: old at 90 %, new spread", 2, 90, 90, true, nseg);
  q3_row ("s1: old at 90 %, new in zone z10", 3, 90, 90, false, nseg);
  q3_row ("s2: old at 90 %, mark raised to 95", 3, 90, 95, true, nseg);
  q3_row ("s3: old at 80 %, new spread", 3, 80, 90, true, nseg);
  q3_row ("s3b: old at 80 %, new in zone z10", 3, 80, 90, false, nseg);
  if (q3_nwhy > 0)
    printf ("\n");
  for (i = 0; i < q3_nwhy; ++i)
    printf ("- %s\n", q3_why[i]);
}

/* ---- Q4: a server lost ---- */

/* True if server ID is lost: server 501, or every server of its zone
 * (z1) if ZONE.
 */
static bool
is_lost (const struct cluster *c, uint32_t id, bool zone)
{
  return zone ? c->zone[id - 1] == c->zone[500] : id == 501;
}

/* Fill 1,000 servers of CAP segments with NSEG 3-replica segments, take
 * server 501 (or its whole zone, ZONE) out and re-place the lost
 * replicas with choose_extra.
 */
static void
q4_row (const char *name, uint64_t cap, uint64_t nseg, bool zone)
{
  struct cluster c;
  struct driver d;
  uint32_t *got, holders[3], out[3], i, k, x, nh, max = 0, none = 0;
  uint32_t targets = 0;
  uint64_t seg, moved = 0, inzone = 0, samezone = 0;
  double t0, secs = 0, mean;

  cluster_init (&c, 1000, 10, cap);
  driver_init (&d, &c, 3, 1, 1);
  d.record_max = nseg;
  d.record = xcalloc (nseg * 3, sizeof *d.record);
  drive (&d, nseg);
  for (i = 0; i < c.n; ++i)
    if (is_lost (&c, i + 1, zone)) {
      c.s[i] = *placement_index_server (d.idx, i + 1);
      c.s[i].up = false;
      placement_index_update (d.idx, &c.s[i]);
    }
    else
      targets++;
  got = xcalloc (c.n, sizeof *got);
  for (seg = 0; seg < d.placed; ++seg) {
    const uint32_t *rep = &d.record[seg * 3];

    for (k = 0, nh = 0; k < 3; ++k)
      if (!is_lost (&c, rep[k], zone))
        holders[nh++] = rep[k];
    if (nh == 3)
      continue;
    t0 = now ();
    if (placement_index_choose_extra (d.idx, holders, nh, 3 - nh, &d.rng, out) <
        0)
      continue;
    secs += now () - t0;
    for (x = 0; x < 3 - nh; ++x) {
      moved++;
      got[out[x] - 1]++;
      for (k = 0; k < nh; ++k)
        samezone += c.zone[out[x] - 1] == c.zone[holders[k] - 1];
      inzone += c.zone[out[x] - 1] == c.zone[500];
    }
  }
  for (i = 0; i < c.n; ++i)
    if (!is_lost (&c, i + 1, zone)) {
      max = got[i] > max ? got[i] : max;
      none += got[i] == 0;
    }
  mean = (double)moved / targets;
  printf ("| %s | %" PRIu64 " | %" PRIu32 " | %.2f | **%" PRIu32
          "** (%.2f×) | %" PRIu32 " | %" PRIu64 " | %.1f %% | %.2f |\n",
          name, moved, targets, mean, max, max / mean, none, samezone,
          100.0 * inzone / moved, 1e6 * secs / moved);
  fflush (stdout);
  free (got);
  driver_free (&d);
  cluster_free (&c);
}

static void
q4 (void)
{
  uint64_t nseg = quick ? 100000 : 1000000;

  printf ("\n### Q4: server 501 of 1,000 (or its zone) lost, its replicas "
          "re-placed with choose_extra (load never reset)\n\n");
  printf ("| state | replicas re-placed | possible targets | mean per "
          "target | max per target (× mean) | targets that got none | "
          "targets in a zone holding the segment | share in the lost "
          "server's zone | µs per choose_extra |\n");
  printf ("|---|---|---|---|---|---|---|---|---|\n");
  q4_row ("Q1 R=3, 4 TiB", 1048576, nseg, false);
  q4_row ("Q1 R=3, 80 % full", nseg * 3 / 1000 * 10 / 8, nseg, false);
  q4_row ("Q1 R=3, 4 TiB, all of zone z1 lost", 1048576, nseg, true);
}

/* ---- Q5: cost ---- */

/* Median of V[0..3). */
static double
median3 (const double *v)
{
  double a = v[0], b = v[1], c = v[2];

  if ((a <= b && b <= c) || (c <= b && b <= a))
    return b;
  if ((b <= a && a <= c) || (c <= a && a <= b))
    return a;
  return c;
}

/* Three repetitions of: build an index over N servers in NZONES zones,
 * place segments of 2 and then 3 replicas on fresh indexes.
 */
static void
q5_row (uint32_t n, uint32_t nzones)
{
  uint64_t nseg = quick ? 20000 : 200000;
  double build[3], per[2][3];
  struct cluster c;
  uint32_t r, rep;

  cluster_init (&c, n, nzones, 1048576);
  for (rep = 0; rep < 3; ++rep) {
    double t0 = now ();
    struct placement_index *idx = placement_index_new (c.s, c.n, SEG);

    build[rep] = 1e3 * (now () - t0);
    placement_index_free (idx);
    for (r = 2; r <= 3; ++r) {
      struct driver d;

      driver_init (&d, &c, r, 1, 5 + rep);
      drive (&d, nseg);
      per[r - 2][rep] = 1e6 * d.seconds / d.placed;
      driver_free (&d);
    }
  }
  printf ("| %" PRIu32 "%s | %.2f (%.2f–%.2f) | %.2f (%.2f–%.2f) | %.2f "
          "(%.2f–%.2f) |\n",
          n, nzones ? "" : ", no zones", median3 (per[0]),
          fmin (per[0][0], fmin (per[0][1], per[0][2])),
          fmax (per[0][0], fmax (per[0][1], per[0][2])), median3 (per[1]),
          fmin (per[1][0], fmin (per[1][1], per[1][2])),
          fmax (per[1][0], fmax (per[1][1], per[1][2])), median3 (build),
          fmin (build[0], fmin (build[1], build[2])),
          fmax (build[0], fmax (build[1], build[2])));
  fflush (stdout);
  cluster_free (&c);
}

static void
q5 (void)
{
  printf ("\n### Q5: cost of one placement (index choose, charge included) "
          "against cluster size\n\n");
  printf ("| servers | R=2: µs/segment, median (min–max) of 3 | R=3: "
          "µs/segment | index build, ms |\n");
  printf ("|---|---|---|---|\n");
  q5_row (100, 10);
  q5_row (1000, 10);
  q5_row (10000, 10);
  q5_row (30000, 10);
  q5_row (1000, 0);
  q5_row (10000, 0);
}

/* ---- Main ---- */

static void
usage (FILE *fp)
{
  fprintf (fp, "usage: placement-sim [--quick] [--scenarios q1,q2,q3,q4,q5]\n"
               "\n"
               "Simulates the placement index (mds/placement.h) at cluster\n"
               "scale and prints Markdown tables: q1 balance on 1,000 equal\n"
               "servers, q2 servers of unequal size, q3 servers added to a "
               "full\n"
               "cluster, q4 re-placement after a server is lost, q5 cost at "
               "100\n"
               "to 30,000 servers.  Seeds are fixed; times are CPU time.\n"
               "\n"
               "  --quick          10x fewer segments (a few seconds)\n"
               "  --scenarios L    only the scenarios in the comma list L\n"
               "  --help           this text\n");
}

int
main (int argc, char *argv[])
{
  static const struct option opts[] = {
    { "quick", no_argument, NULL, 'q' },
    { "scenarios", required_argument, NULL, 's' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  static void (*const run[5]) (void) = { q1, q2, q3, q4, q5 };
  const char *which = "q1,q2,q3,q4,q5";
  int c, i;

  while ((c = getopt_long (argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
    case 'q':
      quick = true;
      break;
    case 's':
      which = optarg;
      break;
    case 'h':
      usage (stdout);
      return EXIT_SUCCESS;
    default:
      usage (stderr);
      return EXIT_FAILURE;
    }
  }
  if (optind != argc) {
    usage (stderr);
    return EXIT_FAILURE;
  }
  printf ("## placement-sim%s\n", quick ? " --quick" : "");
  for (i = 0; i < 5; ++i) {
    char name[3] = { 'q', (char)('1' + i), '\0' };

    if (strstr (which, name))
      run[i]();
  }
  return EXIT_SUCCESS;
}

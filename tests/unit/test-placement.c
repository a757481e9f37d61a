/* Unit tests for mds/placement.c: distinct servers, zones, spread of
 * consecutive segments, balance by free space, -ENOSPC, and servers that
 * are down or full.
 *
 * Random tests draw from a seed printed at start-up; set
 * TESSERA_TEST_SEED=N to replay a run.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <check.h>

#include "placement.h"

#define SEG (UINT64_C (4) * 1024 * 1024)
#define BIG (UINT64_C (1) << 50) /* capacity that never fills here */

/* The run's seed: set in main before the tests fork. */
static uint64_t seed;

/* A per-test generator state derived from the run's seed and SALT. */
static uint64_t
test_rng (uint64_t salt)
{
  uint64_t rng = seed ^ (salt * UINT64_C (0x9e3779b97f4a7c15));

  placement_random (&rng);
  return rng;
}

/* Server I of the fixture: id I + 1, up, capacity CAP, nothing used,
 * no high-water mark, no load.
 */
static void
server_init (struct placement_server *s, size_t i, const char *zone,
             uint64_t cap)
{
  s->id = i + 1;
  s->zone = zone;
  s->capacity = cap;
  s->used = 0;
  s->up = true;
  s->high_water = 0;
  s->load = 0;
}

/* Index of server ID in SERVERS[0..N), failing the test if absent. */
static size_t
index_of (const struct placement_server *servers, size_t n, uint32_t id)
{
  size_t i;

  for (i = 0; i < n; ++i)
    if (servers[i].id == id)
      return i;
  ck_abort_msg ("server id %" PRIu32 " not in the table", id);
  return 0;
}

/* Charge one segment to every chosen server, as the MDS does. */
static void
charge (struct placement_server *servers, size_t n, const uint32_t *out,
        uint32_t replicas, uint64_t seg)
{
  uint32_t k;

  for (k = 0; k < replicas; ++k)
    servers[index_of (servers, n, out[k])].used += seg;
}

/* Assert OUT[0..R) names distinct servers, each up with free space. */
static void
check_valid (const struct placement_server *servers, size_t n,
             const uint32_t *out, uint32_t r)
{
  uint32_t a, b;

  for (a = 0; a < r; ++a) {
    const struct placement_server *s = &servers[index_of (servers, n, out[a])];

    ck_assert (s->up);
    ck_assert_uint_gt (s->capacity, s->used);
    for (b = a + 1; b < r; ++b)
      ck_assert_uint_ne (out[a], out[b]);
  }
}

/* True if the two replica sets hold the same servers. */
static bool
same_set (const uint32_t *a, const uint32_t *b, uint32_t r)
{
  uint32_t i, j;

  for (i = 0; i < r; ++i) {
    for (j = 0; j < r; ++j)
      if (a[i] == b[j])
        break;
    if (j == r)
      return false;
  }
  return true;
}

START_TEST (test_distinct)
{
  struct placement_server servers[8];
  uint32_t out[PLACEMENT_REPLICAS_MAX];
  uint64_t rng = test_rng (1);
  uint32_t r;
  size_t i;
  int iter;

  /* At least 2 Ki segments each: the loop below charges a server up to
   * 1,600 and must never reach the high-water mark (a smaller server
   * did with some seeds, and placement rightly answered ENOSPC).
   */
  for (i = 0; i < 8; ++i)
    server_init (&servers[i], i, NULL,
                 (2 + placement_random (&rng) % 16) * SEG * 1024);
  for (r = 1; r <= 8; ++r)
    for (iter = 0; iter < 200; ++iter) {
      ck_assert_int_eq (placement_choose (servers, 8, r, NULL, 0, &rng, out),
                        0);
      check_valid (servers, 8, out, r);
      charge (servers, 8, out, r, SEG);
    }
}
END_TEST

START_TEST (test_zones)
{
  static const char *zones[6] = { "a", "a", "b", "b", "c", "c" };
  struct placement_server servers[6];
  uint32_t out[3], prev[3] = { 0, 0, 0 };
  uint64_t rng = test_rng (2);
  size_t i;
  int iter;

  for (i = 0; i < 6; ++i)
    server_init (&servers[i], i, zones[i], BIG);
  for (iter = 0; iter < 1000; ++iter) {
    /* Alternate with and without an avoid list: zones win either way. */
    ck_assert_int_eq (
        placement_choose (servers, 6, 3, prev, iter % 2 ? 3 : 0, &rng, out), 0);
    check_valid (servers, 6, out, 3);
    ck_assert_str_ne (zones[out[0] - 1], zones[out[1] - 1]);
    ck_assert_str_ne (zones[out[0] - 1], zones[out[2] - 1]);
    ck_assert_str_ne (zones[out[1] - 1], zones[out[2] - 1]);
    charge (servers, 6, out, 3, SEG);
    memcpy (prev, out, sizeof prev);
  }
}
END_TEST

/* Fewer zones than replicas: every zone is used, then zones repeat. */
START_TEST (test_zones_fallback)
{
  static const char *zones[6] = { "a", "a", "a", "b", "b", "b" };
  struct placement_server servers[6];
  uint32_t out[4];
  uint64_t rng = test_rng (3);
  size_t i;
  int iter, na, nb;
  uint32_t k;

  for (i = 0; i < 6; ++i)
    server_init (&servers[i], i, zones[i], BIG);
  for (iter = 0; iter < 1000; ++iter) {
    uint32_t r = 3 + iter % 2;

    ck_assert_int_eq (placement_choose (servers, 6, r, NULL, 0, &rng, out), 0);
    check_valid (servers, 6, out, r);
    na = nb = 0;
    for (k = 0; k < r; ++k) {
      if (strcmp (zones[out[k] - 1], "a") == 0)
        na++;
      else
        nb++;
    }
    /* Both zones, and as even as the rule makes them. */
    ck_assert_int_ge (na, 1);
    ck_assert_int_ge (nb, 1);
    ck_assert_int_le (abs (na - nb), 1);
  }
}
END_TEST

/* A server with no zone is a failure domain of its own. */
START_TEST (test_unzoned)
{
  static const char *zones[4] = { "a", "a", "", NULL };
  struct placement_server servers[4];
  uint32_t out[3];
  uint64_t rng = test_rng (4);
  size_t i;
  int iter, na;
  uint32_t k;

  for (i = 0; i < 4; ++i)
    server_init (&servers[i], i, zones[i], BIG);
  for (iter = 0; iter < 500; ++iter) {
    ck_assert_int_eq (placement_choose (servers, 4, 3, NULL, 0, &rng, out), 0);
    check_valid (servers, 4, out, 3);
    na = 0;
    for (k = 0; k < 3; ++k)
      if (out[k] <= 2)
        na++;
    ck_assert_int_eq (na, 1);
  }
}
END_TEST

/* Consecutive segments never get the same replica set, and every server
 * carries its share.
 */
START_TEST (test_spread)
{
  const int nseg = 3000;
  struct placement_server servers[3];
  uint32_t out[2], prev[2] = { 0, 0 };
  uint64_t rng = test_rng (5);
  unsigned count[3] = { 0, 0, 0 };
  size_t i;
  int iter;

  for (i = 0; i < 3; ++i)
    server_init (&servers[i], i, NULL, BIG);
  for (iter = 0; iter < nseg; ++iter) {
    ck_assert_int_eq (
        placement_choose (servers, 3, 2, prev, iter > 0 ? 2 : 0, &rng, out), 0);
    check_valid (servers, 3, out, 2);
    if (iter > 0)
      ck_assert (!same_set (out, prev, 2));
    count[out[0] - 1]++;
    count[out[1] - 1]++;
    charge (servers, 3, out, 2, SEG);
    memcpy (prev, out, sizeof prev);
  }
  /* Each server holds about 2/3 of the segments. */
  for (i = 0; i < 3; ++i) {
    ck_assert_uint_ge (count[i], nseg * 2 / 3 - nseg / 20);
    ck_assert_uint_le (count[i], nseg * 2 / 3 + nseg / 20);
  }
}
END_TEST

/* A segment placed between two others differs from both when it can:
 * with 3 servers and 2 replicas between {1,2} and {1,3} only {2,3} is
 * left.
 */
START_TEST (test_between)
{
  static const uint32_t neighbours[4] = { 1, 2, 1, 3 };
  struct placement_server servers[3];
  uint32_t out[2];
  uint64_t rng = test_rng (10);
  size_t i;
  int iter;

  for (i = 0; i < 3; ++i)
    server_init (&servers[i], i, NULL, BIG);
  for (iter = 0; iter < 200; ++iter) {
    ck_assert_int_eq (
        placement_choose (servers, 3, 2, neighbours, 4, &rng, out), 0);
    ck_assert (same_set (out, (const uint32_t[]){ 2, 3 }, 2));
  }
}
END_TEST

/* Servers fill evenly: the emptiest (by used / mark) take the new
 * segments, in proportion to their room, and a server already 2/3 full
 * takes almost none while the others are empty.
 */
START_TEST (test_balance)
{
  const int nalloc = 10000;
  struct placement_server servers[4];
  uint64_t rng = test_rng (6);
  unsigned count[4] = { 0, 0, 0, 0 };
  uint32_t out[1];
  int iter;

  server_init (&servers[0], 0, NULL, BIG * 2);
  server_init (&servers[1], 1, NULL, BIG);
  server_init (&servers[2], 2, NULL, BIG * 2);
  server_init (&servers[3], 3, NULL, BIG * 3);
  servers[3].used = BIG * 2; /* 3x capacity, but 2/3 full */
  for (iter = 0; iter < nalloc; ++iter) {
    ck_assert_int_eq (placement_choose (servers, 4, 1, NULL, 0, &rng, out), 0);
    count[out[0] - 1]++;
    charge (servers, 4, out, 1, SEG);
  }
  fprintf (stderr, "balance: %u %u %u %u\n", count[0], count[1], count[2],
           count[3]);
  /* Room 2:1:2 among the empty ones: 4000, 2000, 4000, give or take the
   * few segments that fill-balancing leaves; server 4 only when every
   * draw lands on it, (1/6)^3 of the time: about 46.
   */
  ck_assert_uint_ge (count[0], 4000 - 100);
  ck_assert_uint_le (count[0], 4000 + 100);
  ck_assert_uint_ge (count[1], 2000 - 100);
  ck_assert_uint_le (count[1], 2000 + 100);
  ck_assert_uint_ge (count[2], 4000 - 100);
  ck_assert_uint_le (count[2], 4000 + 100);
  ck_assert_uint_le (count[3], 150);
}
END_TEST

/* Fill servers of CAP0, CAP1, CAP2 segments with 2-replica segments,
 * each avoiding the previous one's servers, until -ENOSPC.  Checks that
 * no server goes past its capacity and that -ENOSPC comes exactly when
 * fewer than two servers have room.  Returns the number of segments.
 */
static int
fill (uint64_t salt, uint64_t cap0, uint64_t cap1, uint64_t cap2)
{
  struct placement_server servers[3];
  uint32_t out[2], prev[2] = { 0, 0 };
  uint64_t rng = test_rng (salt);
  int r, allocs = 0;
  size_t i;

  server_init (&servers[0], 0, NULL, cap0 * SEG);
  server_init (&servers[1], 1, NULL, cap1 * SEG);
  server_init (&servers[2], 2, NULL, cap2 * SEG);
  while ((r = placement_choose (servers, 3, 2, prev, 2, &rng, out)) == 0) {
    check_valid (servers, 3, out, 2);
    charge (servers, 3, out, 2, SEG);
    memcpy (prev, out, sizeof prev);
    ck_assert_int_lt (++allocs, 1000);
  }
  ck_assert_int_eq (r, -ENOSPC);
  ck_assert_uint_lt (placement_eligible (servers, 3), 2);
  for (i = 0; i < 3; ++i)
    ck_assert_uint_le (servers[i].used, servers[i].capacity);
  return allocs;
}

START_TEST (test_fill)
{
  int allocs;

  /* Equal servers fill evenly: 75 segments at best, 50 at worst; drawing
   * by free space keeps it near the best (70 or more in 100,000 runs).
   */
  allocs = fill (7, 50, 50, 50);
  ck_assert_int_ge (allocs, 65);
  ck_assert_int_le (allocs, 75);
  /* Unequal servers: the invariants hold. */
  allocs = fill (8, 100, 50, 60);
  ck_assert_int_le (allocs, 105);
}
END_TEST

START_TEST (test_enospc)
{
  struct placement_server servers[3];
  uint32_t out[PLACEMENT_REPLICAS_MAX + 1];
  uint64_t rng = test_rng (18);
  size_t i;

  for (i = 0; i < 3; ++i)
    server_init (&servers[i], i, NULL, 10 * SEG);

  ck_assert_int_eq (placement_choose (servers, 0, 1, NULL, 0, &rng, out),
                    -ENOSPC);
  ck_assert_int_eq (placement_choose (servers, 3, 4, NULL, 0, &rng, out),
                    -ENOSPC);
  ck_assert_int_eq (placement_choose (servers, 3, 0, NULL, 0, &rng, out),
                    -EINVAL);
  ck_assert_int_eq (placement_choose (servers, 3, PLACEMENT_REPLICAS_MAX + 1,
                                      NULL, 0, &rng, out),
                    -EINVAL);
  ck_assert_int_eq (placement_choose (servers, 3, 3, NULL, 0, &rng, out), 0);

  servers[0].up = false;
  ck_assert_int_eq (placement_eligible (servers, 3), 2);
  ck_assert_int_eq (placement_choose (servers, 3, 3, NULL, 0, &rng, out),
                    -ENOSPC);
  servers[0].up = true;
  servers[1].used = servers[1].capacity;
  ck_assert_int_eq (placement_choose (servers, 3, 3, NULL, 0, &rng, out),
                    -ENOSPC);
  servers[0].capacity = 0;
  ck_assert_int_eq (placement_eligible (servers, 3), 1);
  ck_assert_int_eq (placement_choose (servers, 3, 2, NULL, 0, &rng, out),
                    -ENOSPC);
  ck_assert_int_eq (placement_choose (servers, 3, 1, NULL, 0, &rng, out), 0);
  ck_assert_uint_eq (out[0], 3);
}
END_TEST

START_TEST (test_down_full)
{
  struct placement_server servers[7];
  uint32_t out[3], prev[3] = { 0, 0, 0 };
  uint64_t rng = test_rng (9);
  size_t i;
  int iter;

  for (i = 0; i < 7; ++i)
    server_init (&servers[i], i, i % 2 ? "odd" : "even", BIG);
  servers[0].up = false;                       /* down */
  servers[1].up = false;                       /* down */
  servers[2].used = servers[2].capacity;       /* full */
  servers[3].used = servers[3].capacity + SEG; /* over full */
  servers[4].capacity = 0;                     /* no store */
  ck_assert_int_eq (placement_eligible (servers, 7), 2);
  for (iter = 0; iter < 1000; ++iter) {
    ck_assert_int_eq (
        placement_choose (servers, 7, 2, prev, iter ? 2 : 0, &rng, out), 0);
    /* Avoided, but the only two left: chosen anyway. */
    ck_assert (out[0] >= 6 && out[1] >= 6);
    check_valid (servers, 7, out, 2);
    memcpy (prev, out, sizeof prev);
  }
  ck_assert_int_eq (placement_choose (servers, 7, 3, NULL, 0, &rng, out),
                    -ENOSPC);
}
END_TEST

/* The same seed gives the same placements; any seed, even 0, works. */
START_TEST (test_reproducible)
{
  struct placement_server servers[5];
  uint32_t a[2], b[2];
  uint64_t r1 = 0, r2 = 0;
  size_t i;
  int iter, differ = 0;

  for (i = 0; i < 5; ++i)
    server_init (&servers[i], i, NULL, (i + 1) * BIG);
  for (iter = 0; iter < 200; ++iter) {
    ck_assert_int_eq (placement_choose (servers, 5, 2, NULL, 0, &r1, a), 0);
    ck_assert_int_eq (placement_choose (servers, 5, 2, NULL, 0, &r2, b), 0);
    ck_assert_mem_eq (a, b, sizeof a);
  }
  r1 = seed;
  r2 = seed + 1;
  for (iter = 0; iter < 200; ++iter) {
    ck_assert_int_eq (placement_choose (servers, 5, 2, NULL, 0, &r1, a), 0);
    ck_assert_int_eq (placement_choose (servers, 5, 2, NULL, 0, &r2, b), 0);
    if (memcmp (a, b, sizeof a) != 0)
      differ++;
  }
  ck_assert_int_gt (differ, 0);
}
END_TEST

/* placement_choose_extra never picks a holder, even one that is up,
 * and fails when the servers besides the holders are too few.
 */
START_TEST (test_extra_holders)
{
  struct placement_server servers[5];
  uint32_t holders[4] = { 1, 2, 3, 99 }, out[4];
  uint64_t rng = test_rng (12);
  size_t i;
  int iter;

  for (i = 0; i < 5; ++i)
    server_init (&servers[i], i, NULL, BIG);
  servers[3].up = false; /* server 4: down */
  for (iter = 0; iter < 500; ++iter) {
    /* 99 is unknown: ignored. */
    ck_assert_int_eq (
        placement_choose_extra (servers, 5, holders, 4, 1, &rng, out), 0);
    ck_assert_uint_eq (out[0], 5);
  }
  ck_assert_int_eq (
      placement_choose_extra (servers, 5, holders, 2, 1, &rng, out), 0);
  ck_assert (out[0] == 3 || out[0] == 5);
  ck_assert_int_eq (
      placement_choose_extra (servers, 5, holders, 2, 2, &rng, out), 0);
  check_valid (servers, 5, out, 2);
  ck_assert (same_set (out, (uint32_t[]){ 3, 5 }, 2));
  ck_assert_int_eq (
      placement_choose_extra (servers, 5, holders, 2, 3, &rng, out), -ENOSPC);
  /* No holders: like placement_choose without AVOID. */
  ck_assert_int_eq (placement_choose_extra (servers, 5, NULL, 0, 4, &rng, out),
                    0);
  check_valid (servers, 5, out, 4);
  ck_assert_int_eq (
      placement_choose_extra (servers, 5, holders, 2, 0, &rng, out), -EINVAL);
  ck_assert_int_eq (placement_choose_extra (servers, 5, holders, 2,
                                            PLACEMENT_REPLICAS_MAX - 1, &rng,
                                            out),
                    -EINVAL);
}
END_TEST

/* A replacement goes to a zone that holds none of the segment's other
 * replicas, whichever server of that zone is lost.
 */
START_TEST (test_extra_zones)
{
  static const char *zones[6] = { "a", "a", "b", "b", "c", "c" };
  struct placement_server servers[6];
  uint32_t holders[2], out[2];
  uint64_t rng = test_rng (13);
  size_t i;
  int iter;

  for (i = 0; i < 6; ++i)
    server_init (&servers[i], i, zones[i], BIG);
  for (iter = 0; iter < 500; ++iter) {
    /* Replicas in zones a and b remain (servers 1 and 3 or 4). */
    holders[0] = 1;
    holders[1] = 3 + iter % 2;
    servers[4 - iter % 2].up = iter % 3 != 0; /* the other b: up or not */
    ck_assert_int_eq (
        placement_choose_extra (servers, 6, holders, 2, 1, &rng, out), 0);
    ck_assert (out[0] == 5 || out[0] == 6);
    servers[4 - iter % 2].up = true;
  }
  /* Zone c is down: the replacement shares a zone with a holder, but
   * never its server.
   */
  servers[4].up = servers[5].up = false;
  for (iter = 0; iter < 200; ++iter) {
    holders[0] = 1;
    holders[1] = 3;
    ck_assert_int_eq (
        placement_choose_extra (servers, 6, holders, 2, 1, &rng, out), 0);
    ck_assert (out[0] == 2 || out[0] == 4);
  }
  /* Two more for one holder in zone a, with one server of zone c up:
   * one goes to zone b, the other to zone c.
   */
  servers[4].up = true;
  for (iter = 0; iter < 200; ++iter) {
    ck_assert_int_eq (
        placement_choose_extra (servers, 6, holders, 1, 2, &rng, out), 0);
    check_valid (servers, 6, out, 2);
    ck_assert (out[0] == 5 || out[1] == 5);
    ck_assert (out[0] == 3 || out[0] == 4 || out[1] == 3 || out[1] == 4);
  }
}
END_TEST

/* The seed from TESSERA_TEST_SEED, else from the clock and pid. */
static uint64_t
choose_seed (void)
{
  const char *s = getenv ("TESSERA_TEST_SEED");
  struct timespec ts;

  if (s && *s)
    return strtoull (s, NULL, 0);
  clock_gettime (CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000007u ^ (uint64_t)ts.tv_nsec ^
         (uint64_t)getpid () << 32;
}

/* One suite, one test case per behaviour. */
static Suite *
placement_suite (void)
{
  Suite *s = suite_create ("placement");
  struct {
    const char *name;
    const TTest *test;
  } cases[] = {
    { "distinct", test_distinct },
    { "zones", test_zones },
    { "zones_fallback", test_zones_fallback },
    { "unzoned", test_unzoned },
    { "spread", test_spread },
    { "between", test_between },
    { "balance", test_balance },
    { "fill", test_fill },
    { "enospc", test_enospc },
    { "down_full", test_down_full },
    { "reproducible", test_reproducible },
    { "extra_holders", test_extra_holders },
    { "extra_zones", test_extra_zones },
  };
  size_t i;

  for (i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
    TCase *tc = tcase_create (cases[i].name);

    tcase_add_test (tc, cases[i].test);
    suite_add_tcase (s, tc);
  }
  return s;
}

int
main (void)
{
  SRunner *sr;
  int failed;

  seed = choose_seed ();
  printf ("test-placement: seed %" PRIu64
          " (set TESSERA_TEST_SEED to replay)\n",
          seed);
  fflush (stdout);
  sr = srunner_create (placement_suite ());
  srunner_run_all (sr, CK_ENV);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

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

/* ---- The placement index ---- */

/* An index over SERVERS[0..N), failing the test if out of memory. */
static struct placement_index *
index_new (const struct placement_server *servers, size_t n)
{
  struct placement_index *idx = placement_index_new (servers, n, SEG);

  ck_assert_ptr_nonnull (idx);
  return idx;
}

/* The index's used bytes of server ID. */
static uint64_t
used_of (const struct placement_index *idx, uint32_t id)
{
  const struct placement_server *s = placement_index_server (idx, id);

  ck_assert_ptr_nonnull (s);
  return s->used;
}

/* The zone of server ID in the index ("" for none). */
static const char *
zone_of (const struct placement_index *idx, uint32_t id)
{
  const struct placement_server *s = placement_index_server (idx, id);

  ck_assert_ptr_nonnull (s);
  return s->zone ? s->zone : "";
}

/* Assert OUT[0..R) spans min (R, D) zones with at most ceil (R / D) in
 * each, where D is the number of distinct zones.
 */
static void
check_zones (const struct placement_index *idx, const uint32_t *out, uint32_t r,
             uint32_t d)
{
  uint32_t a, b, same, cap = (r + d - 1) / d, distinct = 0;

  for (a = 0; a < r; ++a) {
    same = 0;
    for (b = 0; b < r; ++b)
      if (strcmp (zone_of (idx, out[a]), zone_of (idx, out[b])) == 0)
        same++;
    ck_assert_uint_le (same, cap);
    for (b = 0; b < a; ++b)
      if (strcmp (zone_of (idx, out[a]), zone_of (idx, out[b])) == 0)
        break;
    distinct += b == a;
    for (b = a + 1; b < r; ++b)
      ck_assert_uint_ne (out[a], out[b]);
  }
  ck_assert_uint_eq (distinct, r < d ? r : d);
}

/* Only one zone has room: refused with the zone text, nothing placed,
 * nothing charged; one replica still fits.
 */
START_TEST (test_index_one_zone)
{
  static const char *zones[7] = { "a", "a", "b", "b", "c", "c", "c" };
  struct placement_server servers[7];
  struct placement_index *idx;
  uint32_t out[3];
  uint64_t rng = test_rng (20);
  char why[256];
  size_t i;

  for (i = 0; i < 7; ++i) {
    server_init (&servers[i], i, zones[i], 100 * SEG);
    servers[i].high_water = 90;
    if (i < 4)
      servers[i].used = 90 * SEG; /* zones a and b at their marks */
  }
  servers[5].used = 10 * SEG;
  idx = index_new (servers, 7);
  ck_assert_uint_eq (placement_index_domains_needed (idx, 3), 3);
  ck_assert_int_eq (placement_index_choose (idx, 3, NULL, 0, &rng, out),
                    -ENOSPC);
  ck_assert_int_eq (placement_index_choose (idx, 2, NULL, 0, &rng, out),
                    -ENOSPC);
  for (i = 0; i < 7; ++i)
    ck_assert_uint_eq (used_of (idx, i + 1), servers[i].used);
  placement_index_explain (idx, 3, why, sizeof why);
  ck_assert_str_eq (why, "only 1 of 3 zones has room for a new segment, 3 "
                         "needed (zone a: 0 segments, zone b: 0, zone c: 260)");
  /* The snapshot functions follow the same rule and say the same. */
  ck_assert_int_eq (placement_choose (servers, 7, 3, NULL, 0, &rng, out),
                    -ENOSPC);
  placement_explain (servers, 7, 3, why, sizeof why);
  ck_assert_str_eq (why, "only 1 of 3 zones has room for a new segment, 3 "
                         "needed (zone a: 0 MiB, zone b: 0, zone c: 1040)");
  /* Short of servers too: both reasons. */
  servers[6].up = false;
  ck_assert_int_eq (placement_index_update (idx, &servers[6]), 0);
  placement_index_explain (idx, 3, why, sizeof why);
  ck_assert_str_eq (why, "only 1 of 3 zones has room for a new segment, 3 "
                         "needed (zone a: 0 segments, zone b: 0, zone c: "
                         "170); 2 of 7 servers can take a new segment, 3 "
                         "needed (1 not up, 4 at their 90% high-water mark)");
  /* One replica needs one zone. */
  ck_assert_int_eq (placement_index_choose (idx, 1, NULL, 0, &rng, out), 0);
  ck_assert (out[0] == 5 || out[0] == 6);
  ck_assert_uint_eq (used_of (idx, out[0]), servers[out[0] - 1].used + SEG);
  /* Truncated, still terminated. */
  placement_index_explain (idx, 3, why, 12);
  ck_assert_str_eq (why, "only 1 of 3");
  placement_index_free (idx);
}
END_TEST

/* A zone with 30.8 % of the capacity (the review's layout B) fills at
 * the rate of the others, up to the marks; then -ENOSPC, never a
 * segment in too few zones.
 */
START_TEST (test_index_unequal_zones)
{
  static char names[10][4];
  static struct placement_server servers[100];
  struct placement_index *idx;
  uint32_t out[3], prev[3];
  uint64_t rng = test_rng (21), used[10], usable[10];
  size_t i, navoid = 0;
  int r, segs = 0, z;

  for (i = 0; i < 100; ++i) {
    snprintf (names[i % 10], sizeof names[0], "z%zu", i % 10);
    server_init (&servers[i], i, names[i % 10],
                 (i % 10 == 0 ? 400 : 100) * SEG);
    servers[i].high_water = 90;
  }
  idx = index_new (servers, 100);
  while ((r = placement_index_choose (idx, 3, prev, navoid, &rng, out)) == 0) {
    check_zones (idx, out, 3, 10);
    memcpy (prev, out, sizeof prev);
    navoid = 3;
    if (++segs % 500 == 0 || segs == 3800) {
      double f0, fmin = 2, fmax = 0;

      memset (used, 0, sizeof used);
      memset (usable, 0, sizeof usable);
      for (i = 0; i < 100; ++i) {
        used[i % 10] += used_of (idx, i + 1);
        usable[i % 10] += servers[i].capacity / 10 * 9;
      }
      for (z = 1; z < 10; ++z) {
        double f = (double)used[z] / usable[z];

        fmin = f < fmin ? f : fmin;
        fmax = f > fmax ? f : fmax;
      }
      f0 = (double)used[0] / usable[0];
      /* The big zone within 3 % of the others' fill. */
      ck_assert_double_ge (f0, fmin * 0.97);
      ck_assert_double_le (f0, fmax * 1.03);
    }
  }
  ck_assert_int_eq (r, -ENOSPC);
  /* 3,900 segments fit below the marks; fill-balancing leaves few. */
  ck_assert_int_ge (segs, 3850);
  for (i = 0; i < 100; ++i)
    ck_assert_uint_le (used_of (idx, i + 1), servers[i].capacity / 10 * 9);
  placement_index_free (idx);
}
END_TEST

/* A server at its mark takes nothing new, one just below takes one
 * segment (then it is past), repair still uses the room above.
 */
START_TEST (test_index_high_water)
{
  struct placement_server servers[3];
  struct placement_index *idx;
  uint32_t out[2];
  uint64_t rng = test_rng (22);
  char why[256];
  size_t i;

  for (i = 0; i < 3; ++i) {
    server_init (&servers[i], i, NULL, 100 * SEG);
    servers[i].high_water = 90;
  }
  servers[0].used = 90 * SEG;     /* at its mark */
  servers[1].used = 90 * SEG - 1; /* one byte below */
  idx = index_new (servers, 3);
  ck_assert_int_eq (placement_index_choose (idx, 2, NULL, 0, &rng, out), 0);
  ck_assert (same_set (out, (const uint32_t[]){ 2, 3 }, 2));
  ck_assert_uint_eq (used_of (idx, 2), 91 * SEG - 1);
  ck_assert_int_eq (placement_index_choose (idx, 2, NULL, 0, &rng, out),
                    -ENOSPC);
  placement_index_explain (idx, 2, why, sizeof why);
  ck_assert_str_eq (why, "1 of 3 servers can take a new segment, 2 needed "
                         "(2 at their 90% high-water mark)");
  ck_assert_int_eq (placement_index_choose (idx, 1, NULL, 0, &rng, out), 0);
  ck_assert_uint_eq (out[0], 3);
  /* Repair may go above the mark. */
  ck_assert_int_eq (placement_index_choose_extra (idx, (const uint32_t[]){ 3 },
                                                  1, 2, &rng, out),
                    0);
  ck_assert (same_set (out, (const uint32_t[]){ 1, 2 }, 2));
  ck_assert_uint_eq (placement_index_server (idx, 1)->load, 1);
  placement_index_free (idx);
}
END_TEST

/* Fewer zones than replicas: the replicas spread evenly; when a zone
 * cannot take its share, -ENOSPC and the reason.
 */
START_TEST (test_index_fewer_zones)
{
  static const char *zones[6] = { "a", "a", "a", "b", "b", "b" };
  struct placement_server servers[6];
  struct placement_index *idx;
  uint32_t out[4], r;
  uint64_t rng = test_rng (23);
  char why[256];
  size_t i;
  int iter;

  for (i = 0; i < 6; ++i)
    server_init (&servers[i], i, zones[i], BIG);
  idx = index_new (servers, 6);
  ck_assert_uint_eq (placement_index_domains_needed (idx, 3), 2);
  for (iter = 0; iter < 1000; ++iter) {
    r = 2 + iter % 3;
    ck_assert_int_eq (placement_index_choose (idx, r, NULL, 0, &rng, out), 0);
    check_zones (idx, out, r, 2);
  }
  /* Zone a down to one server with room: 4 replicas need 2 there. */
  servers[0].used = servers[0].capacity;
  servers[1].up = false;
  ck_assert_int_eq (placement_index_update (idx, &servers[0]), 0);
  ck_assert_int_eq (placement_index_update (idx, &servers[1]), 0);
  ck_assert_int_eq (placement_index_choose (idx, 4, NULL, 0, &rng, out),
                    -ENOSPC);
  placement_index_explain (idx, 4, why, sizeof why);
  ck_assert_str_eq (why, "only 3 of 4 replicas fit with at most 2 per zone "
                         "(zone a: 1 servers with room, zone b: 3)");
  ck_assert_int_eq (placement_index_choose (idx, 3, NULL, 0, &rng, out), 0);
  check_zones (idx, out, 3, 2);
  placement_index_free (idx);
}
END_TEST

/* A zone lost and replaced: segments repaired into the remaining zones
 * are misplaced once a new zone has room; respread moves one replica
 * from the crowded zone to the new one, or says -ENOSPC.
 */
START_TEST (test_index_respread)
{
  static const char *zones[6] = { "a", "a", "b", "b", "c", "c" };
  struct placement_server servers[8];
  struct placement_index *idx;
  uint32_t holders[3] = { 1, 3, 5 }, out[3], target, victim;
  uint64_t rng = test_rng (24);
  size_t i;
  int iter;

  for (i = 0; i < 6; ++i)
    server_init (&servers[i], i, zones[i], 100 * SEG);
  idx = index_new (servers, 6);
  ck_assert (!placement_index_misplaced (idx, holders, 3, 3));
  /* Zone c removed: its replica goes to a or b. */
  placement_index_remove (idx, 5);
  placement_index_remove (idx, 6);
  ck_assert_ptr_null (placement_index_server (idx, 5));
  ck_assert_uint_eq (placement_index_domains_needed (idx, 3), 2);
  ck_assert_int_eq (
      placement_index_choose_extra (idx, holders, 2, 1, &rng, out), 0);
  ck_assert (out[0] == 2 || out[0] == 4);
  holders[2] = out[0];
  ck_assert (!placement_index_misplaced (idx, holders, 3, 3));
  ck_assert_int_eq (placement_index_choose (idx, 3, NULL, 0, &rng, out) == 0,
                    1);
  /* A new zone d arrives: the segment spans 2 of 3 zones. */
  for (i = 6; i < 8; ++i) {
    server_init (&servers[i], i, "d", 100 * SEG);
    servers[i].high_water = 90;
    ck_assert_int_eq (placement_index_update (idx, &servers[i]), 0);
  }
  ck_assert (placement_index_misplaced (idx, holders, 3, 3));
  /* Short of a replica: repair's business, not misplaced. */
  ck_assert (!placement_index_misplaced (idx, holders, 2, 3));
  for (iter = 0; iter < 20; ++iter) {
    ck_assert_int_eq (
        placement_index_respread (idx, holders, 3, 3, &rng, &target, &victim),
        0);
    ck_assert (target == 7 || target == 8);
    ck_assert_str_eq (zone_of (idx, victim), zone_of (idx, holders[2]));
    ck_assert (victim == holders[2] ||
               victim == holders[holders[2] <= 2 ? 0 : 1]);
  }
  /* Loads went up by one per target. */
  ck_assert_uint_eq (placement_index_server (idx, 7)->load +
                         placement_index_server (idx, 8)->load,
                     20);
  ck_assert_uint_eq (used_of (idx, 7) + used_of (idx, 8), 20 * SEG);
  /* Zone d at its marks: no target. */
  for (i = 6; i < 8; ++i) {
    servers[i].used = 90 * SEG;
    ck_assert_int_eq (placement_index_update (idx, &servers[i]), 0);
  }
  ck_assert_int_eq (
      placement_index_respread (idx, holders, 3, 3, &rng, &target, &victim),
      -ENOSPC);
  ck_assert_int_eq (
      placement_index_respread (idx, holders, 0, 3, &rng, &target, &victim),
      -EINVAL);
  placement_index_free (idx);
}
END_TEST

/* Re-placing the replicas of a lost server spreads them: the busiest
 * target gets at most twice the mean.
 */
START_TEST (test_index_extra_spread)
{
  static char names[10][4];
  static struct placement_server servers[100];
  struct placement_index *idx;
  uint32_t holders[2], out[1], max = 0, total = 0;
  uint64_t rng = test_rng (25);
  size_t i;
  int iter;

  for (i = 0; i < 100; ++i) {
    snprintf (names[i % 10], sizeof names[0], "z%zu", i % 10);
    server_init (&servers[i], i, names[i % 10], BIG);
    servers[i].used = placement_random (&rng) % (BIG / 2);
  }
  idx = index_new (servers, 100);
  for (iter = 0; iter < 300; ++iter) {
    /* Two survivors in two zones (ids 1..100, zone = (id - 1) % 10). */
    holders[0] = 1 + placement_random (&rng) % 100;
    do
      holders[1] = 1 + placement_random (&rng) % 100;
    while ((holders[1] - 1) % 10 == (holders[0] - 1) % 10);
    ck_assert_int_eq (
        placement_index_choose_extra (idx, holders, 2, 1, &rng, out), 0);
    ck_assert_uint_ne ((out[0] - 1) % 10, (holders[0] - 1) % 10);
    ck_assert_uint_ne ((out[0] - 1) % 10, (holders[1] - 1) % 10);
  }
  for (i = 0; i < 100; ++i) {
    uint32_t load = placement_index_server (idx, i + 1)->load;

    max = load > max ? load : max;
    total += load;
  }
  ck_assert_uint_eq (total, 300);
  ck_assert_uint_le (max, 2 * 3);
  placement_index_free (idx);
}
END_TEST

/* Update adds, changes and moves servers between zones; zone strings are
 * copied; remove and charge; the zone table.
 */
START_TEST (test_index_update)
{
  struct placement_server s, servers[3];
  struct placement_zone_room z[4];
  struct placement_index *idx;
  char zone[8] = "b";
  uint32_t out[2];
  uint64_t rng = test_rng (26);

  server_init (&servers[0], 0, "a", 100 * SEG);
  server_init (&servers[1], 1, zone, 100 * SEG);
  server_init (&servers[2], 2, NULL, 100 * SEG);
  servers[2].high_water = 50;
  idx = index_new (servers, 3);
  strcpy (zone, "x"); /* the index has its own copy */
  ck_assert_str_eq (placement_index_server (idx, 2)->zone, "b");
  ck_assert_ptr_null (placement_index_server (idx, 4));
  ck_assert_uint_eq (placement_index_zones (idx, z, 4), 3);
  ck_assert_str_eq (z[0].zone, "");
  ck_assert_uint_eq (z[0].usable, 50 * SEG);
  ck_assert_str_eq (z[1].zone, "a");
  ck_assert_str_eq (z[2].zone, "b");
  ck_assert_uint_eq (z[2].servers, 1);
  ck_assert_uint_eq (z[2].room, 100 * SEG);
  ck_assert_uint_eq (placement_index_zones (idx, z, 1), 3);

  /* Charge, including below zero. */
  placement_index_charge (idx, 1, 10 * SEG);
  ck_assert_uint_eq (used_of (idx, 1), 10 * SEG);
  placement_index_charge (idx, 1, -(int64_t)(4 * SEG));
  ck_assert_uint_eq (used_of (idx, 1), 6 * SEG);
  placement_index_charge (idx, 1, -(int64_t)(100 * SEG));
  ck_assert_uint_eq (used_of (idx, 1), 0);
  placement_index_charge (idx, 99, SEG); /* unknown: no-op */

  /* Move server 2 into zone a: two zones left for 3 servers. */
  s = servers[1];
  s.zone = "a";
  s.load = 7;
  ck_assert_int_eq (placement_index_update (idx, &s), 0);
  ck_assert_str_eq (zone_of (idx, 2), "a");
  ck_assert_uint_eq (placement_index_server (idx, 2)->load, 7);
  ck_assert_uint_eq (placement_index_zones (idx, z, 4), 2);
  ck_assert_uint_eq (z[1].servers, 2);
  ck_assert_uint_eq (placement_index_domains_needed (idx, 3), 2);
  /* Down servers do not count as domains. */
  s = servers[2];
  s.up = false;
  ck_assert_int_eq (placement_index_update (idx, &s), 0);
  ck_assert_uint_eq (placement_index_domains_needed (idx, 3), 1);
  ck_assert_int_eq (placement_index_choose (idx, 2, NULL, 0, &rng, out), 0);
  ck_assert (same_set (out, (const uint32_t[]){ 1, 2 }, 2));
  /* Remove, re-add without a zone, and free the rest. */
  placement_index_remove (idx, 1);
  placement_index_remove (idx, 1);
  ck_assert_ptr_null (placement_index_server (idx, 1));
  s = servers[0];
  s.zone = "";
  ck_assert_int_eq (placement_index_update (idx, &s), 0);
  ck_assert_str_eq (zone_of (idx, 1), "");
  ck_assert_uint_eq (placement_index_domains_needed (idx, 3), 2);
  ck_assert_int_eq (placement_index_choose (idx, 2, NULL, 0, &rng, out), 0);
  ck_assert (same_set (out, (const uint32_t[]){ 1, 2 }, 2));
  ck_assert_int_eq (placement_index_choose (idx, 0, NULL, 0, &rng, out),
                    -EINVAL);
  ck_assert_int_eq (placement_index_choose (idx, PLACEMENT_REPLICAS_MAX + 1,
                                            NULL, 0, &rng, out),
                    -EINVAL);
  ck_assert_int_eq (placement_index_choose_extra (idx, NULL, 0, 0, &rng, out),
                    -EINVAL);
  placement_index_free (idx);
  placement_index_free (NULL);
}
END_TEST

/* Building from a table that lists a server twice (the second time in
 * another zone and down): the index keeps the second, and its trees
 * are right (placements follow the rules).
 */
START_TEST (test_index_build)
{
  struct placement_server servers[7];
  struct placement_index *idx;
  uint32_t out[3];
  uint64_t rng = test_rng (28);
  size_t i;
  int iter;

  for (i = 0; i < 6; ++i)
    server_init (&servers[i], i, i < 3 ? "a" : "b", 1000 * SEG);
  servers[6] = servers[0];
  servers[6].zone = "c";
  servers[6].up = false;
  idx = index_new (servers, 7);
  ck_assert_str_eq (zone_of (idx, 1), "c");
  ck_assert (!placement_index_server (idx, 1)->up);
  ck_assert_uint_eq (placement_index_domains_needed (idx, 3), 2);
  for (iter = 0; iter < 200; ++iter) {
    ck_assert_int_eq (placement_index_choose (idx, 3, NULL, 0, &rng, out), 0);
    check_zones (idx, out, 3, 2);
    ck_assert (out[0] != 1 && out[1] != 1 && out[2] != 1);
  }
  /* 600 replicas on 5 equal servers: about 120 each, though zone a
   * has 2 servers and zone b 3.
   */
  for (i = 1; i < 6; ++i) {
    ck_assert_uint_ge (used_of (idx, i + 1), 115 * SEG);
    ck_assert_uint_le (used_of (idx, i + 1), 125 * SEG);
  }
  placement_index_free (idx);
}
END_TEST

/* Many servers added and removed at random: the index stays consistent
 * with a plain table (every placement valid, counts right).
 */
START_TEST (test_index_churn)
{
  static const char *zones[5] = { "a", "b", "c", "", NULL };
  static struct placement_server servers[64];
  bool present[64];
  struct placement_index *idx = index_new (NULL, 0);
  uint32_t out[3];
  uint64_t rng = test_rng (27);
  size_t i, n;
  int iter;

  memset (present, 0, sizeof present);
  for (iter = 0; iter < 5000; ++iter) {
    i = placement_random (&rng) % 64;
    if (present[i] && placement_random (&rng) % 3 == 0) {
      placement_index_remove (idx, i + 1);
      present[i] = false;
    }
    else {
      server_init (&servers[i], i, zones[placement_random (&rng) % 5],
                   (1 + placement_random (&rng) % 100) * SEG);
      servers[i].up = placement_random (&rng) % 8 != 0;
      servers[i].used = placement_random (&rng) % servers[i].capacity;
      ck_assert_int_eq (placement_index_update (idx, &servers[i]), 0);
      present[i] = true;
    }
    if (placement_index_choose (idx, 3, NULL, 0, &rng, out) == 0) {
      uint32_t k;

      for (k = 0; k < 3; ++k) {
        ck_assert (present[out[k] - 1]);
        ck_assert (servers[out[k] - 1].up);
        servers[out[k] - 1].used += SEG;
        ck_assert_uint_eq (used_of (idx, out[k]), servers[out[k] - 1].used);
      }
      ck_assert_uint_ne (out[0], out[1]);
      ck_assert_uint_ne (out[0], out[2]);
      ck_assert_uint_ne (out[1], out[2]);
    }
  }
  for (i = 0, n = 0; i < 64; ++i)
    if (present[i]) {
      ck_assert_uint_eq (placement_index_server (idx, i + 1)->capacity,
                         servers[i].capacity);
      n++;
    }
    else
      ck_assert_ptr_null (placement_index_server (idx, i + 1));
  ck_assert_uint_gt (n, 0);
  placement_index_free (idx);
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
    { "index_one_zone", test_index_one_zone },
    { "index_unequal_zones", test_index_unequal_zones },
    { "index_high_water", test_index_high_water },
    { "index_fewer_zones", test_index_fewer_zones },
    { "index_respread", test_index_respread },
    { "index_extra_spread", test_index_extra_spread },
    { "index_update", test_index_update },
    { "index_build", test_index_build },
    { "index_churn", test_index_churn },
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

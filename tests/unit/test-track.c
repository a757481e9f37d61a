/* Unit tests for storesrv/track.c: range sets (merging, gaps, against a
 * bitmap model with random writes) and the trackers of client writes
 * that SEG_PULL takes (by generation, at most SS_TRACK_GENS of them).
 *
 * Random tests draw from a seed printed at start-up; set
 * TESSERA_TEST_SEED=N to replay a run.
 */

#include <config.h>

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <check.h>

#include "internal.h"

/* The run's seed: set in main before the tests fork. */
static uint64_t seed;

/* xorshift64*: the next number of the generator at *RNG. */
static uint64_t
next_random (uint64_t *rng)
{
  *rng ^= *rng >> 12;
  *rng ^= *rng << 25;
  *rng ^= *rng >> 27;
  return *rng * UINT64_C (0x2545f4914f6cdd1d);
}

/* Check that R is sorted, its ranges non-empty and apart. */
static void
check_canonical (const struct ss_ranges *r)
{
  size_t i;

  for (i = 0; i < r->n; i++) {
    ck_assert_uint_lt (r->v[i].start, r->v[i].end);
    if (i > 0)
      ck_assert_uint_lt (r->v[i - 1].end, r->v[i].start);
  }
}

START_TEST (test_ranges_merge)
{
  struct ss_ranges r = { 0 };

  ss_ranges_add (&r, 10, 10);
  ss_ranges_add (&r, 30, 10);
  ss_ranges_add (&r, 0, 0); /* empty: nothing */
  ck_assert_uint_eq (r.n, 2);
  ss_ranges_add (&r, 0, 5);
  ck_assert_uint_eq (r.n, 3);
  ck_assert_uint_eq (r.v[0].start, 0);
  ck_assert_uint_eq (r.v[0].end, 5);
  /* Touching ranges merge. */
  ss_ranges_add (&r, 20, 10);
  ck_assert_uint_eq (r.n, 2);
  ck_assert_uint_eq (r.v[1].start, 10);
  ck_assert_uint_eq (r.v[1].end, 40);
  ss_ranges_add (&r, 3, 100);
  ck_assert_uint_eq (r.n, 1);
  ck_assert_uint_eq (r.v[0].start, 0);
  ck_assert_uint_eq (r.v[0].end, 103);
  ck_assert (!r.failed);
  ss_ranges_free (&r);
  ck_assert_uint_eq (r.n, 0);
  ck_assert_ptr_null (r.v);
}
END_TEST

START_TEST (test_ranges_gaps)
{
  struct ss_ranges r = { 0 };
  uint32_t s, e;

  ck_assert (ss_ranges_next_gap (&r, 5, 50, &s, &e));
  ck_assert_uint_eq (s, 5);
  ck_assert_uint_eq (e, 50);
  ss_ranges_add (&r, 10, 10);
  ss_ranges_add (&r, 30, 10);
  ck_assert (ss_ranges_next_gap (&r, 0, 50, &s, &e));
  ck_assert_uint_eq (s, 0);
  ck_assert_uint_eq (e, 10);
  ck_assert (ss_ranges_next_gap (&r, 15, 50, &s, &e));
  ck_assert_uint_eq (s, 20);
  ck_assert_uint_eq (e, 30);
  ck_assert (ss_ranges_next_gap (&r, 30, 50, &s, &e));
  ck_assert_uint_eq (s, 40);
  ck_assert_uint_eq (e, 50);
  ck_assert (ss_ranges_next_gap (&r, 0, 15, &s, &e));
  ck_assert_uint_eq (e, 10);
  ck_assert (ss_ranges_next_gap (&r, 20, 35, &s, &e));
  ck_assert_uint_eq (s, 20);
  ck_assert_uint_eq (e, 30);
  ck_assert (!ss_ranges_next_gap (&r, 10, 20, &s, &e));
  ck_assert (!ss_ranges_next_gap (&r, 32, 40, &s, &e));
  ck_assert (!ss_ranges_next_gap (&r, 50, 50, &s, &e));
  ss_ranges_free (&r);
}
END_TEST

/* Random writes of a 4096-byte segment against a bitmap; the gaps
 * walked from 0 must be exactly the bytes never written.
 */
START_TEST (test_ranges_random)
{
  enum { SIZE = 4096 };
  uint64_t rng = seed ^ UINT64_C (0x9e3779b97f4a7c15);
  static bool written[SIZE];
  struct ss_ranges r = { 0 };
  uint32_t pos, s, e, i;
  int round;

  if (rng == 0)
    rng = 1;
  memset (written, 0, sizeof written);
  for (round = 0; round < 300; round++) {
    uint32_t off = next_random (&rng) % SIZE;
    uint32_t len = next_random (&rng) % 64;

    if (off + len > SIZE)
      len = SIZE - off;
    ss_ranges_add (&r, off, len);
    for (i = off; i < off + len; i++)
      written[i] = true;
    check_canonical (&r);
  }
  ck_assert (!r.failed);
  for (pos = 0; ss_ranges_next_gap (&r, pos, SIZE, &s, &e); pos = e) {
    ck_assert_uint_ge (s, pos);
    ck_assert_uint_lt (s, e);
    for (i = pos; i < s; i++)
      ck_assert_msg (written[i], "byte %u in no gap but never written", i);
    for (i = s; i < e; i++)
      ck_assert_msg (!written[i], "byte %u in a gap but written", i);
    ck_assert (e == SIZE || written[e]);
  }
  for (i = pos; i < SIZE; i++)
    ck_assert_msg (written[i], "byte %u after the last gap", i);
  ss_ranges_free (&r);
}
END_TEST

/* A loop and two segments with nothing tracked. */
static struct ss_loop *loop;
static struct ss_seg seg1, seg2;

static void
setup (void)
{
  loop = calloc (1, sizeof *loop);
  ck_assert_ptr_nonnull (loop);
  memset (&seg1, 0, sizeof seg1);
  memset (&seg2, 0, sizeof seg2);
  seg1.id = 1;
  seg2.id = 2;
}

static void
teardown (void)
{
  ss_track_drop (loop, &seg1);
  ss_track_drop (loop, &seg2);
  ck_assert_ptr_null (loop->tracks_head);
  ck_assert_ptr_null (loop->tracks_tail);
  free (loop);
}

START_TEST (test_track_by_generation)
{
  struct ss_ranges out = { 0 };

  /* Without a tracker nothing is marked. */
  ss_track_mark (loop, &seg1, 5, 0, 10);
  ck_assert_ptr_null (seg1.track);
  ss_track_start (loop, &seg1);
  ck_assert_ptr_nonnull (seg1.track);
  ck_assert_ptr_eq (loop->tracks_head, seg1.track);
  ss_track_mark (loop, &seg1, 5, 0, 10);
  ss_track_mark (loop, &seg1, 3, 100, 10);
  ss_track_mark (loop, &seg1, 7, 50, 10);
  ss_track_mark (loop, &seg1, 5, 10, 5);
  ck_assert_uint_eq (seg1.track->nsets, 3);
  /* A pull of generation 5 gets what 5 and newer wrote, not 3. */
  ss_track_take (loop, &seg1, 5, &out);
  ck_assert_ptr_null (seg1.track);
  ck_assert_uint_eq (out.n, 2);
  ck_assert_uint_eq (out.v[0].start, 0);
  ck_assert_uint_eq (out.v[0].end, 15);
  ck_assert_uint_eq (out.v[1].start, 50);
  ck_assert_uint_eq (out.v[1].end, 60);
  ck_assert (!out.failed);
  /* Taken once: a second pull finds nothing. */
  ss_ranges_free (&out);
  ss_track_take (loop, &seg1, 0, &out);
  ck_assert_uint_eq (out.n, 0);
}
END_TEST

START_TEST (test_track_generations_kept)
{
  struct ss_ranges out = { 0 };
  uint64_t gen;

  ss_track_start (loop, &seg1);
  for (gen = 1; gen <= SS_TRACK_GENS + 1; gen++)
    ss_track_mark (loop, &seg1, gen, gen * 100, 1);
  ck_assert_uint_eq (seg1.track->nsets, SS_TRACK_GENS);
  ck_assert_uint_eq (seg1.track->sets[0].gen, 2);
  /* Older than every generation kept: dropped. */
  ss_track_mark (loop, &seg1, 1, 0, 1);
  ck_assert_uint_eq (seg1.track->sets[0].gen, 2);
  ss_track_take (loop, &seg1, 0, &out);
  ck_assert_uint_eq (out.n, SS_TRACK_GENS);
  ck_assert_uint_eq (out.v[0].start, 200);
  ck_assert_uint_eq (out.v[SS_TRACK_GENS - 1].start, (SS_TRACK_GENS + 1) * 100);
  ss_ranges_free (&out);
}
END_TEST

START_TEST (test_track_list)
{
  struct ss_track *t1;

  ss_track_start (loop, &seg1);
  t1 = seg1.track;
  ss_track_mark (loop, &seg1, 1, 0, 8);
  ss_track_start (loop, &seg2);
  ck_assert_ptr_eq (loop->tracks_head, t1);
  ck_assert_ptr_eq (loop->tracks_tail, seg2.track);
  /* Starting again keeps the tracker and its ranges, moved to the end. */
  ss_track_start (loop, &seg1);
  ck_assert_ptr_eq (seg1.track, t1);
  ck_assert_uint_eq (t1->nsets, 1);
  ck_assert_ptr_eq (loop->tracks_head, seg2.track);
  ck_assert_ptr_eq (loop->tracks_tail, t1);
  ss_track_drop (loop, &seg2);
  ck_assert_ptr_null (seg2.track);
  ck_assert_ptr_eq (loop->tracks_head, t1);
  ck_assert_ptr_eq (loop->tracks_tail, t1);
}
END_TEST

static Suite *
track_suite (void)
{
  Suite *s = suite_create ("track");
  const struct {
    const char *name;
    const TTest *test;
    bool fixture;
  } cases[] = {
    { "ranges_merge", test_ranges_merge, false },
    { "ranges_gaps", test_ranges_gaps, false },
    { "ranges_random", test_ranges_random, false },
    { "track_by_generation", test_track_by_generation, true },
    { "track_generations_kept", test_track_generations_kept, true },
    { "track_list", test_track_list, true },
  };
  size_t i;

  for (i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
    TCase *tc = tcase_create (cases[i].name);

    if (cases[i].fixture)
      tcase_add_checked_fixture (tc, setup, teardown);
    tcase_add_test (tc, cases[i].test);
    suite_add_tcase (s, tc);
  }
  return s;
}

/* The seed from TESSERA_TEST_SEED, else from the clock and pid. */
static uint64_t
choose_seed (void)
{
  const char *env = getenv ("TESSERA_TEST_SEED");

  if (env && *env)
    return strtoull (env, NULL, 0);
  return (uint64_t)time (NULL) * 1000003u ^ (uint64_t)getpid ();
}

int
main (void)
{
  SRunner *sr;
  int failed;

  seed = choose_seed ();
  printf ("test-track: seed %" PRIu64 " (set TESSERA_TEST_SEED to replay)\n",
          seed);
  fflush (stdout);
  sr = srunner_create (track_suite ());
  srunner_run_all (sr, CK_ENV);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

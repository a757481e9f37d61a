/* Unit tests for storesrv/record.c: the index record's encoding, byte
 * for byte, records without an index or a generation, and the sizes refused.
 */

#include <config.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "internal.h"

static const struct ss_index_rec rec = {
  .segment = UINT64_C (0x0102030405060708),
  .slot = 0x11223344,
  .volume = UINT64_C (0xa1a2a3a4a5a6a7a8),
  .epoch = UINT64_C (0xb1b2b3b4b5b6b7b8),
  .state = 0x5a,
  .gen = UINT64_C (0xc1c2c3c4c5c6c7c8),
  .index = UINT64_C (0xd1d2d3d4d5d6d7d8),
};

static const uint8_t key[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };

/* REC's value as the index stores it (big-endian). */
static const uint8_t val[SS_INDEX_REC_SIZE] = {
  0x11, 0x22, 0x33, 0x44,                         /* slot */
  0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, /* volume */
  0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, /* epoch */
  0x5a,                                           /* state */
  0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, /* generation */
  0xd1, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, /* index */
};

START_TEST (test_encode)
{
  uint8_t buf[SS_INDEX_REC_SIZE];

  ss_index_rec_encode (&rec, buf);
  ck_assert_mem_eq (buf, val, SS_INDEX_REC_SIZE);
}
END_TEST

START_TEST (test_decode)
{
  struct ss_index_rec got;

  memset (&got, 0xff, sizeof got);
  ck_assert_int_eq (ss_index_rec_decode (key, 8, val, sizeof val, &got), 0);
  ck_assert_uint_eq (got.segment, rec.segment);
  ck_assert_uint_eq (got.slot, rec.slot);
  ck_assert_uint_eq (got.volume, rec.volume);
  ck_assert_uint_eq (got.epoch, rec.epoch);
  ck_assert_uint_eq (got.state, rec.state);
  ck_assert_uint_eq (got.gen, rec.gen);
  ck_assert_uint_eq (got.index, rec.index);
}
END_TEST

/* Records written before indexes existed read as index unknown. */
START_TEST (test_decode_v2)
{
  struct ss_index_rec got;

  memset (&got, 0, sizeof got);
  ck_assert_int_eq (
      ss_index_rec_decode (key, 8, val, SS_INDEX_V2_REC_SIZE, &got), 0);
  ck_assert_uint_eq (got.segment, rec.segment);
  ck_assert_uint_eq (got.slot, rec.slot);
  ck_assert_uint_eq (got.volume, rec.volume);
  ck_assert_uint_eq (got.epoch, rec.epoch);
  ck_assert_uint_eq (got.state, rec.state);
  ck_assert_uint_eq (got.gen, rec.gen);
  ck_assert_uint_eq (got.index, SS_INDEX_NONE);
}
END_TEST

/* An unknown index survives encoding (an old record rewritten by a
 * request without one).
 */
START_TEST (test_index_none)
{
  struct ss_index_rec in = rec, got;
  uint8_t buf[SS_INDEX_REC_SIZE];

  in.index = SS_INDEX_NONE;
  ss_index_rec_encode (&in, buf);
  ck_assert_int_eq (ss_index_rec_decode (key, 8, buf, sizeof buf, &got), 0);
  ck_assert_uint_eq (got.index, SS_INDEX_NONE);
  ck_assert_uint_eq (got.gen, rec.gen);
}
END_TEST

/* Records written before generations existed read as generation 0. */
START_TEST (test_decode_old)
{
  struct ss_index_rec got;

  memset (&got, 0xff, sizeof got);
  ck_assert_int_eq (
      ss_index_rec_decode (key, 8, val, SS_INDEX_OLD_REC_SIZE, &got), 0);
  ck_assert_uint_eq (got.segment, rec.segment);
  ck_assert_uint_eq (got.slot, rec.slot);
  ck_assert_uint_eq (got.volume, rec.volume);
  ck_assert_uint_eq (got.epoch, rec.epoch);
  ck_assert_uint_eq (got.state, rec.state);
  ck_assert_uint_eq (got.gen, 0);
  ck_assert_uint_eq (got.index, SS_INDEX_NONE);
}
END_TEST

START_TEST (test_bad_sizes)
{
  static const size_t vallens[] = { 0,
                                    SS_INDEX_OLD_REC_SIZE - 1,
                                    SS_INDEX_OLD_REC_SIZE + 1,
                                    SS_INDEX_V2_REC_SIZE - 1,
                                    SS_INDEX_V2_REC_SIZE + 1,
                                    SS_INDEX_REC_SIZE - 1 };
  uint8_t big[SS_INDEX_REC_SIZE + 1] = { 0 };
  struct ss_index_rec got, untouched;
  size_t i;

  memset (&got, 0xee, sizeof got);
  untouched = got;
  for (i = 0; i < sizeof vallens / sizeof vallens[0]; i++)
    ck_assert_int_eq (ss_index_rec_decode (key, 8, val, vallens[i], &got),
                      -EINVAL);
  ck_assert_int_eq (ss_index_rec_decode (key, 8, big, sizeof big, &got),
                    -EINVAL);
  ck_assert_int_eq (ss_index_rec_decode (key, 7, val, sizeof val, &got),
                    -EINVAL);
  ck_assert_int_eq (ss_index_rec_decode (big, 9, val, sizeof val, &got),
                    -EINVAL);
  ck_assert_mem_eq (&got, &untouched, sizeof got);
}
END_TEST

static Suite *
record_suite (void)
{
  Suite *s = suite_create ("record");
  const struct {
    const char *name;
    const TTest *test;
  } cases[] = {
    { "encode", test_encode },         { "decode", test_decode },
    { "decode_v2", test_decode_v2 },   { "index_none", test_index_none },
    { "decode_old", test_decode_old }, { "bad_sizes", test_bad_sizes },
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
  SRunner *sr = srunner_create (record_suite ());
  int failed;

  srunner_run_all (sr, CK_ENV);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

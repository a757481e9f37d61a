/* Unit tests for storesrv/superblock.c: the superblock's and the
 * clean-shutdown marker's encodings, and every check ss_sb_decode and
 * ss_clean_decode make (each error code they document).
 */

#include <config.h>

#include <endian.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "crc32c.h"

#include "internal.h"

#define SEG (UINT32_C (4) * 1024 * 1024)

static const uint8_t server_uuid[16] = {
  0x11, 0x22, 0x33, 0x44, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12
};
static const uint8_t cluster_uuid[16] = { 0xca, 0xfe, 0xba, 0xbe, 4, 3, 2, 1,
                                          0,    0,    0,    0,    0, 0, 0, 1 };

/* A formatted version-2 store of NSLOTS slots of SEG bytes. */
static void
formatted (struct ss_store *st, uint32_t nslots)
{
  memset (st, 0, sizeof *st);
  st->dir = (char *)"test";
  st->sb_version = SS_SB_VERSION;
  st->formatted = true;
  memcpy (st->uuid, server_uuid, 16);
  memcpy (st->cluster_uuid, cluster_uuid, 16);
  st->segment_size = SEG;
  st->capacity = (uint64_t)nslots * SEG;
  st->index_id = UINT64_C (0x0123456789abcdef);
}

/* Store a correct checksum at the end of BUF (LEN bytes). */
static void
recrc (uint8_t *buf, size_t len)
{
  uint32_t v = htobe32 (crc32c (0, buf, len - 4));

  memcpy (buf + len - 4, &v, 4);
}

/* Decode BUF into a fresh store and return what ss_sb_decode did. */
static int
decode (const uint8_t *buf, struct ss_store *out)
{
  memset (out, 0, sizeof *out);
  out->dir = (char *)"test";
  return ss_sb_decode (out, buf);
}

START_TEST (test_formatted_round_trip)
{
  struct ss_store st, got;
  uint8_t buf[SS_SB_SIZE], again[SS_SB_SIZE];
  uint64_t v64;
  uint32_t v32;

  formatted (&st, 10);
  ss_sb_encode (&st, buf);
  ck_assert_mem_eq (buf, "TESSSTOR", 8);
  memcpy (&v32, buf + 8, 4);
  ck_assert_uint_eq (be32toh (v32), SS_SB_VERSION);
  memcpy (&v32, buf + 48, 4);
  ck_assert_uint_eq (be32toh (v32), SEG);
  memcpy (&v64, buf + 64, 8);
  ck_assert_uint_eq (be64toh (v64), st.index_id);
  ck_assert_int_eq (decode (buf, &got), 0);
  ck_assert (got.formatted);
  ck_assert_uint_eq (got.sb_version, SS_SB_VERSION);
  ck_assert_mem_eq (got.uuid, server_uuid, 16);
  ck_assert_mem_eq (got.cluster_uuid, cluster_uuid, 16);
  ck_assert_uint_eq (got.segment_size, SEG);
  ck_assert_uint_eq (got.capacity, 10 * (uint64_t)SEG);
  ck_assert_uint_eq (got.index_id, st.index_id);
  ck_assert_uint_eq (got.nslots, 10);
  ss_sb_encode (&got, again);
  ck_assert_mem_eq (buf, again, SS_SB_SIZE);
}
END_TEST

START_TEST (test_unformatted_round_trip)
{
  struct ss_store st, got;
  uint8_t buf[SS_SB_SIZE];

  memset (&st, 0, sizeof st);
  st.sb_version = SS_SB_VERSION;
  memcpy (st.uuid, server_uuid, 16);
  st.capacity = UINT64_C (10) << 30;
  ss_sb_encode (&st, buf);
  ck_assert_int_eq (decode (buf, &got), 0);
  ck_assert (!got.formatted);
  ck_assert_uint_eq (got.capacity, st.capacity);
  ck_assert_uint_eq (got.index_id, 0);
  ck_assert_uint_eq (got.nslots, 0);
}
END_TEST

START_TEST (test_version_1)
{
  struct ss_store st, got;
  uint8_t buf[SS_SB_SIZE];

  formatted (&st, 3);
  st.sb_version = SS_SB_VERSION_NO_INDEX_ID;
  st.index_id = 0;
  ss_sb_encode (&st, buf);
  ck_assert_int_eq (decode (buf, &got), 0);
  ck_assert_uint_eq (got.sb_version, SS_SB_VERSION_NO_INDEX_ID);
  ck_assert_uint_eq (got.nslots, 3);
  /* Version 1 never had an index id. */
  st.index_id = 1;
  ss_sb_encode (&st, buf);
  ck_assert_int_eq (decode (buf, &got), -EINVAL);
}
END_TEST

START_TEST (test_bad_magic_or_checksum)
{
  struct ss_store st, got;
  uint8_t buf[SS_SB_SIZE];

  formatted (&st, 1);
  ss_sb_encode (&st, buf);
  buf[100] ^= 1;
  ck_assert_int_eq (decode (buf, &got), -EINVAL);
  ss_sb_encode (&st, buf);
  buf[0] = 'X';
  recrc (buf, SS_SB_SIZE);
  ck_assert_int_eq (decode (buf, &got), -EINVAL);
}
END_TEST

START_TEST (test_newer_version)
{
  struct ss_store st, got;
  uint8_t buf[SS_SB_SIZE];
  uint32_t v = htobe32 (SS_SB_VERSION + 1);

  formatted (&st, 1);
  ss_sb_encode (&st, buf);
  memcpy (buf + 8, &v, 4);
  recrc (buf, SS_SB_SIZE);
  ck_assert_int_eq (decode (buf, &got), -EPROTONOSUPPORT);
  v = 0;
  memcpy (buf + 8, &v, 4);
  recrc (buf, SS_SB_SIZE);
  ck_assert_int_eq (decode (buf, &got), -EPROTONOSUPPORT);
}
END_TEST

START_TEST (test_reserved_and_flags)
{
  static const size_t offsets[] = { 52, 55, 72, SS_SB_SIZE - 5 };
  struct ss_store st, got;
  uint8_t buf[SS_SB_SIZE];
  uint32_t v;
  size_t i;

  formatted (&st, 1);
  for (i = 0; i < sizeof offsets / sizeof offsets[0]; i++) {
    ss_sb_encode (&st, buf);
    buf[offsets[i]] = 1;
    recrc (buf, SS_SB_SIZE);
    ck_assert_int_eq (decode (buf, &got), -EINVAL);
  }
  ss_sb_encode (&st, buf);
  v = htobe32 (0x3);
  memcpy (buf + 12, &v, 4);
  recrc (buf, SS_SB_SIZE);
  ck_assert_int_eq (decode (buf, &got), -EINVAL);
}
END_TEST

START_TEST (test_inconsistent_fields)
{
  struct ss_store st, got;
  uint8_t buf[SS_SB_SIZE];

  /* A zero server uuid. */
  formatted (&st, 1);
  memset (st.uuid, 0, 16);
  ss_sb_encode (&st, buf);
  ck_assert_int_eq (decode (buf, &got), -EINVAL);
  /* Formatted version 2 without an index id, unformatted with one. */
  formatted (&st, 1);
  st.index_id = 0;
  ss_sb_encode (&st, buf);
  ck_assert_int_eq (decode (buf, &got), -EINVAL);
  formatted (&st, 1);
  st.formatted = false;
  ss_sb_encode (&st, buf);
  ck_assert_int_eq (decode (buf, &got), -EINVAL);
  /* A segment size that is not a power of two in range. */
  formatted (&st, 1);
  st.segment_size = SEG + 4096;
  st.capacity = st.segment_size;
  ss_sb_encode (&st, buf);
  ck_assert_int_eq (decode (buf, &got), -EINVAL);
  /* No cluster uuid. */
  formatted (&st, 1);
  memset (st.cluster_uuid, 0, 16);
  ss_sb_encode (&st, buf);
  ck_assert_int_eq (decode (buf, &got), -EINVAL);
  /* Capacity: less than a slot, not whole slots, UINT32_MAX slots. */
  formatted (&st, 1);
  st.capacity = SEG - 1;
  ss_sb_encode (&st, buf);
  ck_assert_int_eq (decode (buf, &got), -EINVAL);
  st.capacity = 2 * (uint64_t)SEG + 512;
  ss_sb_encode (&st, buf);
  ck_assert_int_eq (decode (buf, &got), -EINVAL);
  st.capacity = (uint64_t)UINT32_MAX * SEG;
  ss_sb_encode (&st, buf);
  ck_assert_int_eq (decode (buf, &got), -EINVAL);
  st.capacity = (uint64_t)(UINT32_MAX - 1) * SEG;
  ss_sb_encode (&st, buf);
  ck_assert_int_eq (decode (buf, &got), 0);
  ck_assert_uint_eq (got.nslots, UINT32_MAX - 1);
}
END_TEST

START_TEST (test_segment_size_valid)
{
  ck_assert (ss_segment_size_valid (SS_MIN_SEGMENT_SIZE));
  ck_assert (ss_segment_size_valid (SS_MAX_SEGMENT_SIZE));
  ck_assert (ss_segment_size_valid (SEG));
  ck_assert (!ss_segment_size_valid (0));
  ck_assert (!ss_segment_size_valid (SS_MIN_SEGMENT_SIZE / 2));
  ck_assert (!ss_segment_size_valid (SS_MAX_SEGMENT_SIZE * 2));
  ck_assert (!ss_segment_size_valid (3 * SS_MIN_SEGMENT_SIZE));
}
END_TEST

START_TEST (test_clean_round_trip)
{
  uint8_t buf[SS_CLEAN_SIZE];
  uint64_t id = 0, seq = 0;

  ss_clean_encode (UINT64_C (0x0123456789abcdef), 42, buf);
  ck_assert_mem_eq (buf, "TESSCLEN", 8);
  ck_assert_int_eq (ss_clean_decode (buf, sizeof buf, &id, &seq), 0);
  ck_assert_uint_eq (id, UINT64_C (0x0123456789abcdef));
  ck_assert_uint_eq (seq, 42);
  ss_clean_encode (0, 0, buf);
  ck_assert_int_eq (ss_clean_decode (buf, sizeof buf, &id, &seq), 0);
  ck_assert_uint_eq (id, 0);
  ck_assert_uint_eq (seq, 0);
}
END_TEST

START_TEST (test_clean_refused)
{
  uint8_t buf[SS_CLEAN_SIZE + 1];
  uint64_t id = 7, seq = 7;

  ss_clean_encode (1, 2, buf);
  buf[SS_CLEAN_SIZE] = 0;
  ck_assert_int_eq (ss_clean_decode (buf, SS_CLEAN_SIZE - 1, &id, &seq),
                    -EINVAL);
  ck_assert_int_eq (ss_clean_decode (buf, SS_CLEAN_SIZE + 1, &id, &seq),
                    -EINVAL);
  buf[10] ^= 1; /* checksum */
  ck_assert_int_eq (ss_clean_decode (buf, SS_CLEAN_SIZE, &id, &seq), -EINVAL);
  ss_clean_encode (1, 2, buf);
  buf[24] = 1; /* reserved */
  recrc (buf, SS_CLEAN_SIZE);
  ck_assert_int_eq (ss_clean_decode (buf, SS_CLEAN_SIZE, &id, &seq), -EINVAL);
  ss_clean_encode (1, 2, buf);
  buf[0] = 'X'; /* magic */
  recrc (buf, SS_CLEAN_SIZE);
  ck_assert_int_eq (ss_clean_decode (buf, SS_CLEAN_SIZE, &id, &seq), -EINVAL);
  /* Nothing is stored on failure. */
  ck_assert_uint_eq (id, 7);
  ck_assert_uint_eq (seq, 7);
}
END_TEST

static Suite *
superblock_suite (void)
{
  Suite *s = suite_create ("superblock");
  const struct {
    const char *name;
    const TTest *test;
  } cases[] = {
    { "formatted_round_trip", test_formatted_round_trip },
    { "unformatted_round_trip", test_unformatted_round_trip },
    { "version_1", test_version_1 },
    { "bad_magic_or_checksum", test_bad_magic_or_checksum },
    { "newer_version", test_newer_version },
    { "reserved_and_flags", test_reserved_and_flags },
    { "inconsistent_fields", test_inconsistent_fields },
    { "segment_size_valid", test_segment_size_valid },
    { "clean_round_trip", test_clean_round_trip },
    { "clean_refused", test_clean_refused },
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
  SRunner *sr = srunner_create (superblock_suite ());
  int failed;

  srunner_run_all (sr, CK_ENV);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* Unit tests for nbdplugin/epoch-slots.c: counting writes in flight per
 * epoch, running out of slots, draining, and the busy test that
 * EPOCH_CLEAN relies on.
 */

#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "epoch-slots.h"

/* Writes of one epoch share a slot; the last one out frees it. */
START_TEST (test_same_epoch)
{
  struct epoch_slot slots[EPOCH_SLOTS] = { { 0 } };

  ck_assert_int_eq (epoch_slots_add (slots, 7), 0);
  ck_assert_int_eq (epoch_slots_add (slots, 7), 0);
  ck_assert_uint_eq (slots[0].epoch, 7);
  ck_assert_uint_eq (slots[0].inflight, 2);
  ck_assert_uint_eq (slots[1].inflight, 0);
  ck_assert_int_eq (epoch_slots_remove (slots, 7), 0);
  ck_assert_int_eq (epoch_slots_remove (slots, 7), 1);
  ck_assert_uint_eq (slots[0].inflight, 0);
  ck_assert_int_eq (epoch_slots_remove (slots, 7), -ENOENT);
}
END_TEST

/* Each epoch takes the first free slot, and a drained slot is reused
 * whatever epoch it named.
 */
START_TEST (test_slot_reuse)
{
  struct epoch_slot slots[EPOCH_SLOTS] = { { 0 } };

  ck_assert_int_eq (epoch_slots_add (slots, 1), 0);
  ck_assert_int_eq (epoch_slots_add (slots, 2), 0);
  ck_assert_uint_eq (slots[1].epoch, 2);
  ck_assert_int_eq (epoch_slots_remove (slots, 1), 1);
  ck_assert_int_eq (epoch_slots_add (slots, 3), 0);
  ck_assert_uint_eq (slots[0].epoch, 3);
  ck_assert_uint_eq (slots[0].inflight, 1);
  /* A drained slot's old epoch is not matched. */
  ck_assert_int_eq (epoch_slots_remove (slots, 1), -ENOENT);
  ck_assert_int_eq (epoch_slots_add (slots, 2), 0);
  ck_assert_uint_eq (slots[1].inflight, 2);
}
END_TEST

/* With every slot held by other epochs, nothing is counted. */
START_TEST (test_full)
{
  struct epoch_slot slots[EPOCH_SLOTS] = { { 0 } }, before[EPOCH_SLOTS];
  uint64_t e;

  for (e = 1; e <= EPOCH_SLOTS; e++)
    ck_assert_int_eq (epoch_slots_add (slots, e), 0);
  memcpy (before, slots, sizeof slots);
  ck_assert_int_eq (epoch_slots_add (slots, EPOCH_SLOTS + 1), -EAGAIN);
  ck_assert_mem_eq (slots, before, sizeof slots);
  /* An epoch in flight still counts. */
  ck_assert_int_eq (epoch_slots_add (slots, 2), 0);
  ck_assert_uint_eq (slots[1].inflight, 2);
  ck_assert_int_eq (epoch_slots_remove (slots, 3), 1);
  ck_assert_int_eq (epoch_slots_add (slots, EPOCH_SLOTS + 1), 0);
  ck_assert_uint_eq (slots[2].epoch, EPOCH_SLOTS + 1);
}
END_TEST

/* Busy: a write of the epoch or an older one is in flight; newer ones
 * do not count.
 */
START_TEST (test_busy)
{
  struct epoch_slot slots[EPOCH_SLOTS] = { { 0 } };

  ck_assert (!epoch_slots_busy (slots, UINT64_MAX));
  ck_assert_int_eq (epoch_slots_add (slots, 5), 0);
  ck_assert_int_eq (epoch_slots_add (slots, 6), 0);
  ck_assert (!epoch_slots_busy (slots, 4));
  ck_assert (epoch_slots_busy (slots, 5));
  ck_assert (epoch_slots_busy (slots, 9));
  ck_assert_int_eq (epoch_slots_remove (slots, 5), 1);
  ck_assert (!epoch_slots_busy (slots, 5));
  ck_assert (epoch_slots_busy (slots, 6));
  ck_assert_int_eq (epoch_slots_remove (slots, 6), 1);
  ck_assert (!epoch_slots_busy (slots, UINT64_MAX));
}
END_TEST

static Suite *
epoch_slots_suite (void)
{
  Suite *s = suite_create ("epoch-slots");
  TCase *tc;

  tc = tcase_create ("count");
  tcase_add_test (tc, test_same_epoch);
  tcase_add_test (tc, test_slot_reuse);
  suite_add_tcase (s, tc);

  tc = tcase_create ("full");
  tcase_add_test (tc, test_full);
  suite_add_tcase (s, tc);

  tc = tcase_create ("busy");
  tcase_add_test (tc, test_busy);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (epoch_slots_suite ());
  int failed;

  srunner_run_all (sr, CK_ENV);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* Unit tests for nbdplugin/map-entry.c: decoding and range-checking a
 * MAP reply, comparing entries, and the rule that decides whether an
 * entry from the MDS replaces the cached one (older generations and
 * entries that may predate a failure report never do).
 */

#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "buf.h"
#include "protocol.h"

#include "map-entry.h"

/* Entry E: index I, segment ID, generation GEN, replicas on servers 1
 * and 2, both ok.
 */
static struct proto_map_entry
entry (uint64_t i, uint64_t id, uint64_t gen)
{
  struct proto_map_entry e = {
    .index = i,
    .segment = id,
    .gen = gen,
    .nreplicas = 2,
    .replicas = { { 1, PROTO_REPLICA_OK }, { 2, PROTO_REPLICA_OK } },
  };

  return e;
}

/* Cached entry S made from E at TICKET, MARKED or not. */
static void
cached (struct seg *s, const struct proto_map_entry *e, uint64_t ticket,
        bool marked)
{
  memset (s, 0, sizeof *s);
  map_entry_fill (s, e, ticket, marked);
}

/* Encode entries E[0..N) as a MAP reply into WB. */
static void
encode (struct proto_map_entry *e, uint32_t n, struct proto_wbuf *wb)
{
  struct proto_map m = { .n = n, .entries = e };

  memset (wb, 0, sizeof *wb);
  proto_encode_map (&m, wb);
  ck_assert_int_eq (wb->err, 0);
}

/* A reply whose entries lie in the range asked for decodes. */
START_TEST (test_decode)
{
  struct proto_map_entry e[2] = { entry (10, 100, 1), entry (13, 101, 2) };
  struct proto_map map;
  struct proto_wbuf wb;

  encode (e, 2, &wb);
  ck_assert_int_eq (map_entry_decode (wb.data, wb.len, 10, 4, 14, &map), 0);
  ck_assert_uint_eq (map.n, 2);
  ck_assert_uint_eq (map.entries[1].index, 13);
  ck_assert_uint_eq (map.entries[1].segment, 101);
  ck_assert_uint_eq (map.entries[1].gen, 2);
  proto_map_free (&map);

  /* No entries: all holes. */
  proto_wbuf_free (&wb);
  encode (e, 0, &wb);
  ck_assert_int_eq (map_entry_decode (wb.data, wb.len, 0, 1, 1, &map), 0);
  ck_assert_uint_eq (map.n, 0);
  proto_map_free (&map);
  proto_wbuf_free (&wb);
}
END_TEST

/* An entry before, after or past the end of the volume is refused,
 * and so is a reply that does not decode; nothing is left to free.
 */
START_TEST (test_decode_out_of_range)
{
  struct proto_map_entry e[2] = { entry (10, 100, 1), entry (13, 101, 2) };
  struct proto_map map;
  struct proto_wbuf wb;

  encode (e, 2, &wb);
  ck_assert_int_eq (map_entry_decode (wb.data, wb.len, 11, 4, 100, &map),
                    -EBADMSG);
  ck_assert_ptr_null (map.entries);
  ck_assert_int_eq (map_entry_decode (wb.data, wb.len, 10, 3, 100, &map),
                    -EBADMSG);
  ck_assert_ptr_null (map.entries);
  ck_assert_int_eq (map_entry_decode (wb.data, wb.len, 10, 4, 13, &map),
                    -EBADMSG);
  ck_assert_ptr_null (map.entries);
  ck_assert_int_eq (map_entry_decode (wb.data, wb.len - 1, 10, 4, 14, &map),
                    -EBADMSG);
  ck_assert_ptr_null (map.entries);
  /* START + COUNT past UINT64_MAX does not wrap around. */
  ck_assert_int_eq (map_entry_decode (wb.data, wb.len, UINT64_MAX - 1,
                                      UINT32_MAX, UINT64_MAX, &map),
                    -EBADMSG);
  proto_wbuf_free (&wb);
}
END_TEST

/* Entries are equal when id, generation and every replica agree. */
START_TEST (test_equal)
{
  struct proto_map_entry e = entry (1, 50, 3), f;
  struct seg s;

  cached (&s, &e, 1, false);
  ck_assert (map_entry_equal (&s, &e));
  f = e;
  f.segment = 51;
  ck_assert (!map_entry_equal (&s, &f));
  f = e;
  f.gen = 4;
  ck_assert (!map_entry_equal (&s, &f));
  f = e;
  f.nreplicas = 1;
  ck_assert (!map_entry_equal (&s, &f));
  f = e;
  f.replicas[1].server = 3;
  ck_assert (!map_entry_equal (&s, &f));
  f = e;
  f.replicas[0].state = PROTO_REPLICA_STALE;
  ck_assert (!map_entry_equal (&s, &f));
}
END_TEST

/* Fill copies the entry and leaves the retired link alone. */
START_TEST (test_fill)
{
  struct proto_map_entry e = entry (7, 70, 9);
  struct seg s, other;

  memset (&s, 0xff, sizeof s);
  s.retired_next = &other;
  map_entry_fill (&s, &e, 42, true);
  ck_assert_uint_eq (s.index, 7);
  ck_assert_uint_eq (s.id, 70);
  ck_assert_uint_eq (s.gen, 9);
  ck_assert_uint_eq (s.nreplicas, 2);
  ck_assert_uint_eq (s.replicas[0].server, 1);
  ck_assert_uint_eq (s.replicas[0].state, PROTO_REPLICA_OK);
  ck_assert_uint_eq (s.replicas[1].server, 2);
  ck_assert_uint_eq (s.replicas[1].state, PROTO_REPLICA_OK);
  ck_assert_uint_eq (s.ticket, 42);
  ck_assert (s.marked);
  ck_assert_ptr_eq (s.retired_next, &other);
}
END_TEST

/* Nothing cached, another segment, or a newer generation: replace. */
START_TEST (test_store_replace)
{
  struct proto_map_entry e = entry (1, 50, 3), f;
  struct seg s;

  ck_assert_int_eq (map_entry_store_action (NULL, &e, 1, false),
                    MAP_STORE_REPLACE);
  cached (&s, &e, 5, false);
  f = entry (1, 51, 1);
  ck_assert_int_eq (map_entry_store_action (&s, &f, 2, false),
                    MAP_STORE_REPLACE);
  f = entry (1, 50, 4);
  ck_assert_int_eq (map_entry_store_action (&s, &f, 2, false),
                    MAP_STORE_REPLACE);
  /* Same generation, another replica state (the MDS marked one). */
  f = e;
  f.replicas[1].state = PROTO_REPLICA_STALE;
  ck_assert_int_eq (map_entry_store_action (&s, &f, 6, false),
                    MAP_STORE_REPLACE);
}
END_TEST

/* An older generation never replaces; the same entry only moves its
 * ticket forward.
 */
START_TEST (test_store_older_and_same)
{
  struct proto_map_entry e = entry (1, 50, 3), f;
  struct seg s;

  cached (&s, &e, 5, false);
  f = entry (1, 50, 2);
  ck_assert_int_eq (map_entry_store_action (&s, &f, 9, false),
                    MAP_STORE_IGNORE);
  ck_assert_int_eq (map_entry_store_action (&s, &e, 6, false),
                    MAP_STORE_TICKET);
  ck_assert_int_eq (map_entry_store_action (&s, &e, 5, false),
                    MAP_STORE_IGNORE);
  ck_assert_int_eq (map_entry_store_action (&s, &e, 4, false),
                    MAP_STORE_IGNORE);
}
END_TEST

/* A replica marked stale by a failure report: an entry asked for
 * before the report was answered may predate it and is ignored, even
 * of a newer generation; a later one replaces the mark.  A new mark
 * always replaces.
 */
START_TEST (test_store_marked)
{
  struct proto_map_entry e = entry (1, 50, 3), f;
  struct seg s;

  e.replicas[1].state = PROTO_REPLICA_STALE;
  cached (&s, &e, 10, true);
  f = entry (1, 50, 4);
  ck_assert_int_eq (map_entry_store_action (&s, &f, 9, false),
                    MAP_STORE_IGNORE);
  ck_assert_int_eq (map_entry_store_action (&s, &e, 9, false),
                    MAP_STORE_IGNORE);
  ck_assert_int_eq (map_entry_store_action (&s, &e, 10, false),
                    MAP_STORE_REPLACE);
  ck_assert_int_eq (map_entry_store_action (&s, &f, 11, false),
                    MAP_STORE_REPLACE);
  f = entry (1, 50, 2);
  ck_assert_int_eq (map_entry_store_action (&s, &f, 11, false),
                    MAP_STORE_IGNORE);
  ck_assert_int_eq (map_entry_store_action (&s, &f, 1, true),
                    MAP_STORE_REPLACE);
}
END_TEST

static Suite *
map_entry_suite (void)
{
  Suite *s = suite_create ("map-entry");
  TCase *tc;

  tc = tcase_create ("decode");
  tcase_add_test (tc, test_decode);
  tcase_add_test (tc, test_decode_out_of_range);
  suite_add_tcase (s, tc);

  tc = tcase_create ("entries");
  tcase_add_test (tc, test_equal);
  tcase_add_test (tc, test_fill);
  suite_add_tcase (s, tc);

  tc = tcase_create ("store");
  tcase_add_test (tc, test_store_replace);
  tcase_add_test (tc, test_store_older_and_same);
  tcase_add_test (tc, test_store_marked);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (map_entry_suite ());
  int failed;

  srunner_run_all (sr, CK_ENV);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

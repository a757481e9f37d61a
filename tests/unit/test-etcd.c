/* Tests of the MDS's etcd client (mds/etcd.c) against real etcd
 * members: tests/test-etcd.sh starts them and runs this program with
 * ETCD_ENDPOINTS set (it is not run alone: without etcd it skips).
 *
 * ETCD_TEST_MODE selects what is checked:
 *   all       (default) every member up: keys, transactions, leases,
 *             status, and failover past an endpoint that is not there;
 *   degraded  the first member is down: every call still answers, from
 *             the others;
 *   noquorum  a majority is down: a write fails with -ETIMEDOUT within
 *             the handle's timeout, never hangs.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "deadline.h"
#include "etcd.h"

static const char *endpoints;
static char prefix[64]; /* keys of this run: /tessera-test/PID/ */

static struct etcd *
open_etcd (const char *eps, long timeout_ms)
{
  struct etcd_config cfg = { .endpoints = eps, .timeout_ms = timeout_ms };
  struct etcd *e;
  char err[256];
  int r = etcd_new (&cfg, &e, err, sizeof err);

  ck_assert_msg (r == 0, "etcd_new: %s", err);
  return e;
}

/* This run's key NAME (in one of four buffers used in turn, so that a
 * call may take several).
 */
static const char *
key (const char *name)
{
  static char bufs[4][128];
  static unsigned next;
  char *buf = bufs[next++ % 4];

  snprintf (buf, 128, "%s%s", prefix, name);
  return buf;
}

START_TEST (test_bad_endpoints)
{
  static const char *bad[] = {
    "",        "127.0.0.1:2379", "ftp://h:1",
    "http://", "http://:2379",   "http://h:1,unix:/x"
  };
  struct etcd_config cfg = { 0 };
  struct etcd *e;
  char err[256];
  size_t i;

  for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cfg.endpoints = bad[i];
    ck_assert_int_eq (etcd_new (&cfg, &e, err, sizeof err), -EINVAL);
    ck_assert_ptr_null (e);
    ck_assert_msg (strlen (err) > 0, "no message for '%s'", bad[i]);
  }
  cfg.endpoints = "http://127.0.0.1:1/,https://[::1]:2379";
  ck_assert_int_eq (etcd_new (&cfg, &e, err, sizeof err), 0);
  ck_assert_uint_eq (etcd_endpoints (e), 2);
  ck_assert_str_eq (etcd_endpoint (e, 0), "http://127.0.0.1:1");
  etcd_free (e);
}
END_TEST

START_TEST (test_create_and_guard)
{
  struct etcd *e = open_etcd (endpoints, 5000);
  struct etcd_kv kv, kv2;
  const char *k = key ("leader");

  ck_assert_int_eq (etcd_get (e, k, &kv), 0);
  ck_assert_ptr_null (kv.value);
  ck_assert_int_eq (etcd_create (e, k, "mds-a", 5, 0, &kv), 1);
  ck_assert (kv.create_rev > 0);
  ck_assert_str_eq (kv.value, "mds-a");
  /* A second campaign loses and learns who won, at which revision. */
  ck_assert_int_eq (etcd_create (e, k, "mds-b", 5, 0, &kv2), 0);
  ck_assert_str_eq (kv2.value, "mds-a");
  ck_assert_int_eq (kv2.create_rev, kv.create_rev);
  etcd_kv_clear (&kv2);
  /* Writes guarded by the leader key's revision. */
  ck_assert_int_eq (
      etcd_put_guarded (e, k, kv.create_rev, key ("sync"), "x\0y", 3, 0), 0);
  ck_assert_int_eq (etcd_get (e, key ("sync"), &kv2), 1);
  ck_assert_uint_eq (kv2.len, 3);
  ck_assert_mem_eq (kv2.value, "x\0y", 3);
  etcd_kv_clear (&kv2);
  ck_assert_int_eq (
      etcd_put_guarded (e, k, kv.create_rev + 1000, key ("sync"), "z", 1, 0),
      -ESTALE);
  /* Resigning: only the holder's revision deletes. */
  ck_assert_int_eq (etcd_delete_if (e, k, kv.create_rev + 1000), -ESTALE);
  ck_assert_int_eq (etcd_delete_if (e, k, kv.create_rev), 0);
  ck_assert_int_eq (etcd_delete_if (e, k, kv.create_rev), 0);
  ck_assert_int_eq (etcd_get (e, k, &kv2), 0);
  etcd_kv_clear (&kv);
  etcd_free (e);
}
END_TEST

START_TEST (test_leases)
{
  struct etcd *e = open_etcd (endpoints, 5000);
  struct etcd_kv kv;
  int64_t id, ttl, left;
  const char *k = key ("leased");

  ck_assert_int_eq (etcd_lease_grant (e, 10, &id, &ttl), 0);
  ck_assert (id != 0 && ttl >= 10);
  ck_assert_int_eq (etcd_create (e, k, "v", 1, id, &kv), 1);
  etcd_kv_clear (&kv);
  ck_assert_int_eq (etcd_lease_keepalive (e, id, &left), 0);
  ck_assert (left > 0 && left <= ttl);
  ck_assert_int_eq (etcd_get (e, k, &kv), 1);
  ck_assert_int_eq (kv.lease, id);
  etcd_kv_clear (&kv);
  /* Revoked: the key goes with it, renewals fail. */
  ck_assert_int_eq (etcd_lease_revoke (e, id), 0);
  ck_assert_int_eq (etcd_get (e, k, &kv), 0);
  ck_assert_int_eq (etcd_lease_keepalive (e, id, &left), -ENOENT);
  ck_assert_msg (strstr (etcd_error (e), "expired") != NULL, "%s",
                 etcd_error (e));
}
END_TEST

START_TEST (test_lease_expiry)
{
  struct etcd *e = open_etcd (endpoints, 5000);
  struct etcd_kv kv;
  int64_t id, ttl, left;
  const char *k = key ("expiring");
  uint64_t start = monotonic_ns ();
  int r = 1;

  ck_assert_int_eq (etcd_lease_grant (e, 2, &id, &ttl), 0);
  ck_assert_int_eq (etcd_create (e, k, "v", 1, id, &kv), 1);
  etcd_kv_clear (&kv);
  /* Not renewed: gone within the TTL plus etcd's own slack. */
  while (monotonic_ns () - start < UINT64_C (8000000000)) {
    r = etcd_get (e, k, &kv);
    etcd_kv_clear (&kv);
    if (r == 0)
      break;
    usleep (100000);
  }
  ck_assert_int_eq (r, 0);
  ck_assert (monotonic_ns () - start >= UINT64_C (1500000000));
  ck_assert_int_eq (etcd_lease_keepalive (e, id, &left), -ENOENT);
  etcd_free (e);
}
END_TEST

START_TEST (test_status)
{
  struct etcd *e = open_etcd (endpoints, 5000);
  struct etcd_status st;
  size_t i;

  for (i = 0; i < etcd_endpoints (e); i++) {
    ck_assert_msg (etcd_status (e, i, &st) == 0, "%s", etcd_error (e));
    ck_assert_str_eq (st.version, "3.4.23");
    ck_assert (st.member != 0 && st.leader != 0 && st.raft_term > 0);
  }
  ck_assert_int_eq (etcd_status (e, i, &st), -EINVAL);
  etcd_free (e);
}
END_TEST

/* An endpoint with nothing behind it, first in the list: calls go on to
 * the real ones.  Then only dead endpoints: a bounded failure.
 */
START_TEST (test_failover)
{
  char eps[1024];
  struct etcd *e;
  struct etcd_kv kv;
  uint64_t start;
  int r;

  snprintf (eps, sizeof eps, "http://127.0.0.1:1,%s", endpoints);
  e = open_etcd (eps, 3000);
  ck_assert_int_eq (etcd_create (e, key ("fo"), "1", 1, 0, &kv), 1);
  etcd_kv_clear (&kv);
  ck_assert_int_eq (etcd_get (e, key ("fo"), &kv), 1);
  etcd_kv_clear (&kv);
  etcd_free (e);

  e = open_etcd ("http://127.0.0.1:1,http://127.0.0.1:2", 1000);
  start = monotonic_ns ();
  r = etcd_get (e, key ("fo"), &kv);
  ck_assert_msg (r == -ECONNREFUSED || r == -ETIMEDOUT, "r = %d", r);
  ck_assert (monotonic_ns () - start < UINT64_C (2000000000));
  ck_assert_msg (strstr (etcd_error (e), "127.0.0.1:2") != NULL, "%s",
                 etcd_error (e));
  etcd_free (e);
}
END_TEST

/* Mode "degraded": the first endpoint's member is down. */
START_TEST (test_degraded)
{
  struct etcd *e = open_etcd (endpoints, 5000);
  struct etcd_kv kv;
  int64_t id, ttl, left;

  ck_assert_msg (etcd_lease_grant (e, 10, &id, &ttl) == 0, "%s",
                 etcd_error (e));
  ck_assert_int_eq (etcd_create (e, key ("deg"), "d", 1, id, &kv), 1);
  etcd_kv_clear (&kv);
  ck_assert_int_eq (etcd_lease_keepalive (e, id, &left), 0);
  ck_assert_int_eq (etcd_lease_revoke (e, id), 0);
  etcd_free (e);
}
END_TEST

/* Mode "noquorum": writes fail in bounded time. */
START_TEST (test_noquorum)
{
  struct etcd *e = open_etcd (endpoints, 3000);
  uint64_t start = monotonic_ns ();
  int64_t id, ttl;
  int r;

  r = etcd_lease_grant (e, 10, &id, &ttl);
  ck_assert_msg (r == -ETIMEDOUT || r == -ECONNREFUSED || r == -EIO,
                 "r = %d (%s)", r, etcd_error (e));
  ck_assert_msg (monotonic_ns () - start < UINT64_C (4500000000),
                 "took %" PRIu64 " ms", (monotonic_ns () - start) / 1000000);
  etcd_free (e);
}
END_TEST

int
main (void)
{
  const char *mode = getenv ("ETCD_TEST_MODE");
  Suite *s = suite_create ("etcd");
  TCase *tc = tcase_create ("etcd");
  SRunner *sr;
  int failed;

  endpoints = getenv ("ETCD_ENDPOINTS");
  if (endpoints == NULL || *endpoints == '\0') {
    printf ("test-etcd: ETCD_ENDPOINTS is not set: run tests/test-etcd.sh\n");
    return 77;
  }
  if (etcd_global_init () < 0)
    return 1;
  snprintf (prefix, sizeof prefix, "/tessera-test/%ld/", (long)getpid ());
  tcase_set_timeout (tc, 30);
  if (mode == NULL || strcmp (mode, "all") == 0) {
    tcase_add_test (tc, test_bad_endpoints);
    tcase_add_test (tc, test_create_and_guard);
    tcase_add_test (tc, test_leases);
    tcase_add_test (tc, test_lease_expiry);
    tcase_add_test (tc, test_status);
    tcase_add_test (tc, test_failover);
  }
  else if (strcmp (mode, "degraded") == 0)
    tcase_add_test (tc, test_degraded);
  else if (strcmp (mode, "noquorum") == 0)
    tcase_add_test (tc, test_noquorum);
  else {
    fprintf (stderr, "test-etcd: unknown ETCD_TEST_MODE %s\n", mode);
    return 1;
  }
  suite_add_tcase (s, tc);
  sr = srunner_create (s);
  srunner_run_all (sr, CK_NORMAL);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed == 0 ? 0 : 1;
}

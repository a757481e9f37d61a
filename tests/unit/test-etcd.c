/* Tests of the MDS's etcd client (mds/etcd.c) against real etcd
 * members: tests/test-etcd.sh starts them and runs this program with
 * ETCD_ENDPOINTS set (it is not run alone: without etcd it skips).
 *
 * ETCD_TEST_MODE selects what is checked:
 *   all       (default) every member up: keys, transactions, leases,
 *             status, and failover past an endpoint that is not there;
 *   degraded  the first member is down: every call still answers, from
 *             the others;
 *   quorumloss
 *             elect a leader, write ETCD_TEST_READY, then (the script
 *             kills a majority and then writes the CLOCK_MONOTONIC time
 *             into ETCD_TEST_KILLED) check that the leader stops
 *             leading before its lease can have run out and is deposed
 *             within the TTL (both counted from etcd's last renewal,
 *             which may come some two etcd election timeouts after the
 *             kill);
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
#include "election.h"
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

/* Elections: what the callbacks saw. */
struct watch {
  uint64_t elected_epoch;
  uint64_t elected_ns;
  bool deposed;
  uint64_t deposed_ns;
};

static void
on_elected (void *arg, uint64_t epoch)
{
  struct watch *w = arg;

  __atomic_store_n (&w->elected_ns, monotonic_ns (), __ATOMIC_SEQ_CST);
  __atomic_store_n (&w->elected_epoch, epoch, __ATOMIC_SEQ_CST);
}

static void
on_deposed (void *arg, const char *why)
{
  struct watch *w = arg;

  (void)why;
  __atomic_store_n (&w->deposed_ns, monotonic_ns (), __ATOMIC_SEQ_CST);
  __atomic_store_n (&w->deposed, true, __ATOMIC_SEQ_CST);
}

static struct election *
start_election (const char *name, struct watch *w, int64_t ttl_s, long renew_ms,
                long request_ms)
{
  struct election_config cfg = {
    .etcd = { .endpoints = endpoints },
    .prefix = key ("cluster"),
    .name = name,
    .advertise = name,
    .ttl_s = ttl_s,
    .renew_ms = renew_ms,
    .request_ms = request_ms,
    .on_elected = on_elected,
    .on_deposed = on_deposed,
    .arg = w,
  };
  struct election *el;
  char err[256];

  memset (w, 0, sizeof *w);
  ck_assert_msg (election_start (&cfg, &el, err, sizeof err) == 0, "%s", err);
  return el;
}

/* Wait (at most MS) until *FLAG is non-zero. */
static bool
wait_for (uint64_t *flag, long ms)
{
  uint64_t end = monotonic_ns () + (uint64_t)ms * 1000000;

  while (__atomic_load_n (flag, __ATOMIC_SEQ_CST) == 0) {
    if (monotonic_ns () >= end)
      return false;
    usleep (10000);
  }
  return true;
}

START_TEST (test_election_bad_config)
{
  struct election_config cfg = {
    .etcd = { .endpoints = endpoints },
    .prefix = "/p",
    .name = "n",
    .advertise = "a",
    .ttl_s = 2,
    .renew_ms = 1000,
    .request_ms = 600,
  };
  struct election *el;
  char err[256];

  ck_assert_int_eq (election_start (&cfg, &el, err, sizeof err), -EINVAL);
  ck_assert_msg (strstr (err, "exceeds the lease TTL") != NULL, "%s", err);
  cfg.ttl_s = 3;
  cfg.name = NULL;
  ck_assert_int_eq (election_start (&cfg, &el, err, sizeof err), -EINVAL);
}
END_TEST

/* A leads; B stands by and knows A; A resigns; B leads, at a higher
 * epoch, without waiting out A's TTL.
 */
START_TEST (test_election)
{
  struct watch wa, wb;
  struct election *a, *b;
  struct election_leader l;
  uint64_t ea, eb, t;

  a = start_election ("mds-a", &wa, 5, 500, 500);
  ck_assert (wait_for (&wa.elected_epoch, 5000));
  ck_assert (election_leading (a, &ea));
  ck_assert_int_eq (ea, wa.elected_epoch);
  b = start_election ("mds-b", &wb, 5, 500, 500);
  usleep (1500000);
  ck_assert (!election_leading (b, NULL));
  ck_assert_int_eq (wb.elected_epoch, 0);
  election_get_leader (b, &l);
  ck_assert_str_eq (l.name, "mds-a");
  ck_assert_str_eq (l.advertise, "mds-a");
  ck_assert_int_eq (l.epoch, ea);
  /* Still leading after several renewals. */
  ck_assert (election_leading (a, NULL));
  t = monotonic_ns ();
  election_stop (a);
  ck_assert (wait_for (&wb.elected_epoch, 3000));
  ck_assert ((monotonic_ns () - t) < UINT64_C (2000000000));
  ck_assert (election_leading (b, &eb));
  ck_assert_msg (eb > ea, "epoch %" PRIu64 " after %" PRIu64, eb, ea);
  ck_assert (!wb.deposed && !wa.deposed);
  election_stop (b);
}
END_TEST

/* Mode "quorumloss". */
START_TEST (test_quorum_loss)
{
  const char *ready = getenv ("ETCD_TEST_READY");
  const char *killed = getenv ("ETCD_TEST_KILLED");
  struct watch w;
  struct election *a;
  uint64_t last_true = 0, t_kill = 0, end;
  unsigned long long v;
  FILE *fp;

  ck_assert (ready && killed);
  a = start_election ("mds-q", &w, 4, 1000, 500);
  ck_assert (wait_for (&w.elected_epoch, 5000));
  fp = fopen (ready, "w");
  ck_assert_ptr_nonnull (fp);
  fclose (fp);
  end = monotonic_ns () + UINT64_C (30000000000);
  while (!__atomic_load_n (&w.deposed, __ATOMIC_SEQ_CST) &&
         monotonic_ns () < end) {
    if (election_leading (a, NULL))
      last_true = monotonic_ns ();
    usleep (5000);
  }
  ck_assert_msg (w.deposed, "not deposed within 30 s of losing quorum");
  ck_assert (!election_leading (a, NULL));
  fp = fopen (killed, "r");
  ck_assert_ptr_nonnull (fp);
  ck_assert_int_eq (fscanf (fp, "%llu", &v), 1);
  fclose (fp);
  t_kill = v;
  printf ("test-etcd: quorum lost at %llu; last leading %+.3f s, deposed "
          "%+.3f s after\n",
          v, ((double)last_true - (double)t_kill) / 1e9,
          ((double)w.deposed_ns - (double)t_kill) / 1e9);
  fflush (stdout);
  /* An etcd leader that lost its quorum goes on answering renewals
   * until its check-quorum notices, two election timeouts (1 s each
   * by default) later, give or take a heartbeat; on a loaded machine
   * later still (CI once saw a renewal answered 2.3 s after the kill):
   * allow 4 s for the last renewal after the kill.  From it, leading
   * must end within the TTL less the request timeout (3 s, plus 0.5 s
   * of polling and scheduling), and the deposition come within the TTL.
   */
  ck_assert_msg (last_true <
                     t_kill + UINT64_C (4000000000) + UINT64_C (3500000000),
                 "still leading %.3f s after quorum was lost",
                 ((double)last_true - (double)t_kill) / 1e9);
  ck_assert_msg (w.deposed_ns <
                     t_kill + UINT64_C (4000000000) + UINT64_C (4000000000),
                 "deposed %.3f s after quorum was lost",
                 ((double)w.deposed_ns - (double)t_kill) / 1e9);
  election_stop (a);
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
  tcase_set_timeout (tc, 60);
  if (mode == NULL || strcmp (mode, "all") == 0) {
    tcase_add_test (tc, test_bad_endpoints);
    tcase_add_test (tc, test_create_and_guard);
    tcase_add_test (tc, test_leases);
    tcase_add_test (tc, test_lease_expiry);
    tcase_add_test (tc, test_status);
    tcase_add_test (tc, test_failover);
    tcase_add_test (tc, test_election_bad_config);
    tcase_add_test (tc, test_election);
  }
  else if (strcmp (mode, "quorumloss") == 0)
    tcase_add_test (tc, test_quorum_loss);
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

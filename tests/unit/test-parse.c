/* Unit tests of size, number, address, address-list and debug-flag
 * parsing (common/utils).
 */

#include <config.h>

#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "addrlist.h"
#include "log.h"
#include "parse.h"
#include "protocol.h"
#include "sock.h"

START_TEST (test_parse_size_ok)
{
  static const struct {
    const char *s;
    uint64_t v;
  } cases[] = {
    { "0", 0 },
    { "4096", 4096 },
    { "1b", 512 },
    { "1k", 1024 },
    { "64K", 65536 },
    { "64KiB", 65536 },
    { "512M", 512ull << 20 },
    { "4G", 4ull << 30 },
    { "4GB", 4ull << 30 },
    { "1T", 1ull << 40 },
    { "2P", 2ull << 50 },
    { "7E", 7ull << 60 },
  };
  size_t i;
  uint64_t v;

  for (i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
    ck_assert_int_eq (parse_size (cases[i].s, &v), 0);
    ck_assert_uint_eq (v, cases[i].v);
  }
}
END_TEST

START_TEST (test_parse_size_bad)
{
  static const char *invalid[] = {
    "", "G", "-1", "+1", " 1", "1 ", "1X", "1GG", "1Gi", "1.5G", "0x10",
  };
  size_t i;
  uint64_t v = 99;

  for (i = 0; i < sizeof invalid / sizeof invalid[0]; ++i)
    ck_assert_int_eq (parse_size (invalid[i], &v), -EINVAL);
  ck_assert_int_eq (parse_size ("8E", &v), -ERANGE);
  ck_assert_int_eq (parse_size ("99999999999999999999", &v), -ERANGE);
  ck_assert_int_eq (parse_size ("18014398509481984K", &v), -ERANGE);
  ck_assert_uint_eq (v, 99);
}
END_TEST

START_TEST (test_parse_uint)
{
  uint64_t v;
  uint32_t w;

  ck_assert_int_eq (parse_uint64 ("18446744073709551615", 0, UINT64_MAX, &v),
                    0);
  ck_assert_uint_eq (v, UINT64_MAX);
  ck_assert_int_eq (parse_uint64 ("18446744073709551616", 0, UINT64_MAX, &v),
                    -ERANGE);
  ck_assert_int_eq (parse_uint32 ("3", 1, 8, &w), 0);
  ck_assert_uint_eq (w, 3);
  ck_assert_int_eq (parse_uint32 ("9", 1, 8, &w), -ERANGE);
  ck_assert_int_eq (parse_uint32 ("0", 1, 8, &w), -ERANGE);
  ck_assert_int_eq (parse_uint32 ("", 1, 8, &w), -EINVAL);
  ck_assert_int_eq (parse_uint32 ("2x", 1, 8, &w), -EINVAL);
  ck_assert_int_eq (parse_uint32 ("-2", 1, 8, &w), -EINVAL);
}
END_TEST

START_TEST (test_format_size)
{
  char buf[32];

  format_size (100, buf, sizeof buf);
  ck_assert_str_eq (buf, "100");
  format_size (4ull << 30, buf, sizeof buf);
  ck_assert_str_eq (buf, "4G");
  format_size (1536, buf, sizeof buf);
  ck_assert_str_eq (buf, "1.5K");
}
END_TEST

START_TEST (test_uuid)
{
  uint8_t a[16], b[16] = { 0 };
  char s[37];

  ck_assert_int_eq (uuid_is_zero (b), 1);
  ck_assert_int_eq (uuid_generate_random (a), 0);
  ck_assert_int_eq (uuid_is_zero (a), 0);
  uuid_format (a, s);
  ck_assert_uint_eq (strlen (s), 36);
  ck_assert_int_eq (s[14], '4');
  ck_assert_int_eq (s[8], '-');
}
END_TEST

START_TEST (test_address_check)
{
  ck_assert_int_eq (sock_address_check ("127.0.0.1:7420"), 0);
  ck_assert_int_eq (sock_address_check ("localhost:0"), 0);
  ck_assert_int_eq (sock_address_check ("[::1]:7420"), 0);
  ck_assert_int_eq (sock_address_check ("unix:/tmp/x.sock"), 0);
  ck_assert_int_eq (sock_address_check ("127.0.0.1"), -EINVAL);
  ck_assert_int_eq (sock_address_check ("127.0.0.1:"), -EINVAL);
  ck_assert_int_eq (sock_address_check (":7420"), -EINVAL);
  ck_assert_int_eq (sock_address_check ("127.0.0.1:70000"), -EINVAL);
  ck_assert_int_eq (sock_address_check ("127.0.0.1:12a"), -EINVAL);
  ck_assert_int_eq (sock_address_check ("::1:7420"), -EINVAL);
  ck_assert_int_eq (sock_address_check ("[::1]7420"), -EINVAL);
  ck_assert_int_eq (sock_address_check ("unix:"), -EINVAL);
}
END_TEST

START_TEST (test_listen_connect)
{
  char addr[128];
  int l, c;

  l = sock_listen ("127.0.0.1:0");
  ck_assert_int_ge (l, 0);
  ck_assert_int_eq (sock_local_address (l, addr, sizeof addr), 0);
  ck_assert_int_eq (strncmp (addr, "127.0.0.1:", 10), 0);
  ck_assert_int_ne (strcmp (addr, "127.0.0.1:0"), 0);
  c = sock_connect (addr, 2000);
  ck_assert_int_ge (c, 0);
  close (c);
  close (l);
  /* Nothing listens there any more. */
  ck_assert_int_eq (sock_connect (addr, 2000), -ECONNREFUSED);
  ck_assert_int_eq (sock_connect ("unix:/nonexistent/x.sock", 2000), -ENOENT);
  ck_assert_int_eq (sock_listen ("bad"), -EINVAL);
}
END_TEST

START_TEST (test_addrlist_parse_ok)
{
  struct addrlist l;
  char err[256] = "";

  /* One address is a list of one. */
  ck_assert_int_eq (addrlist_parse ("unix:/tmp/a.sock", &l, err, sizeof err),
                    0);
  ck_assert_uint_eq (l.n, 1);
  ck_assert_uint_eq (l.current, 0);
  ck_assert_str_eq (addrlist_current (&l), "unix:/tmp/a.sock");
  ck_assert_str_eq (l.text, "unix:/tmp/a.sock");
  ck_assert_uint_eq (addrlist_next (&l, NULL), 0);
  addrlist_free (&l);
  ck_assert_uint_eq (l.n, 0);
  addrlist_free (&l);

  ck_assert_int_eq (
      addrlist_parse ("127.0.0.1:7420,[::1]:7421,unix:/x", &l, NULL, 0), 0);
  ck_assert_uint_eq (l.n, 3);
  ck_assert_str_eq (l.addrs[0], "127.0.0.1:7420");
  ck_assert_str_eq (l.addrs[1], "[::1]:7421");
  ck_assert_str_eq (l.addrs[2], "unix:/x");
  ck_assert_str_eq (l.text, "127.0.0.1:7420,[::1]:7421,unix:/x");
  ck_assert_int_eq (addrlist_find (&l, "[::1]:7421"), 1);
  ck_assert_int_eq (addrlist_find (&l, "[::1]:7422"), -1);
  addrlist_free (&l);

  ck_assert_int_eq (
      addrlist_parse ("a:1,a:2,a:3,a:4,a:5,a:6,a:7,a:8", &l, err, sizeof err),
      0);
  ck_assert_uint_eq (l.n, ADDRLIST_MAX);
  ck_assert_str_eq (l.addrs[7], "a:8");
  addrlist_free (&l);
}
END_TEST

START_TEST (test_addrlist_parse_bad)
{
  struct addrlist l;
  char err[256];

  ck_assert_int_eq (addrlist_parse ("", &l, err, sizeof err), -EINVAL);
  ck_assert_str_eq (err, "empty address list");
  ck_assert_uint_eq (l.n, 0);
  ck_assert_int_eq (addrlist_parse ("a:1,,b:2", &l, err, sizeof err), -EINVAL);
  ck_assert_str_eq (err, "a:1,,b:2: entry 2 is empty");
  ck_assert_uint_eq (l.n, 0);
  ck_assert_int_eq (addrlist_parse ("a:1,", &l, err, sizeof err), -EINVAL);
  ck_assert_str_eq (err, "a:1,: entry 2 is empty");
  ck_assert_int_eq (addrlist_parse (",a:1", &l, err, sizeof err), -EINVAL);
  ck_assert_str_eq (err, ",a:1: entry 1 is empty");
  ck_assert_int_eq (addrlist_parse ("a:1,nope,b:2", &l, err, sizeof err),
                    -EINVAL);
  ck_assert_str_eq (err, "nope: invalid address "
                         "(HOST:PORT, [V6]:PORT or unix:PATH)");
  ck_assert_int_eq (addrlist_parse ("a:1,unix:", &l, NULL, 0), -EINVAL);
  ck_assert_int_eq (addrlist_parse ("a:1,a:2,a:3,a:4,a:5,a:6,a:7,a:8,a:9", &l,
                                    err, sizeof err),
                    -EINVAL);
  ck_assert_str_eq (err, "a:1,a:2,a:3,a:4,a:5,a:6,a:7,a:8,a:9: more than 8 "
                         "addresses");
  ck_assert_uint_eq (l.n, 0);
}
END_TEST

START_TEST (test_addrlist_next)
{
  struct addrlist l;
  char buf[64];

  ck_assert_int_eq (addrlist_parse ("a:1,b:2,c:3", &l, NULL, 0), 0);
  /* Failures move on in order, wrapping around. */
  ck_assert_uint_eq (addrlist_next (&l, NULL), 1);
  ck_assert_str_eq (addrlist_current (&l), "b:2");
  ck_assert_uint_eq (addrlist_next (&l, NULL), 2);
  ck_assert_uint_eq (addrlist_next (&l, NULL), 0);
  /* A standby that names a leader in the list sends us there. */
  ck_assert_uint_eq (addrlist_next (&l, PROTO_NOT_LEADER_AT "c:3"), 2);
  ck_assert_uint_eq (addrlist_next (&l, PROTO_NOT_LEADER_AT "b:2"), 1);
  /* Not in the list, no leader known, naming itself: the next one. */
  ck_assert_uint_eq (addrlist_next (&l, PROTO_NOT_LEADER_AT "d:4"), 2);
  ck_assert_uint_eq (addrlist_next (&l, PROTO_NOT_LEADER_UNKNOWN), 0);
  ck_assert_uint_eq (addrlist_next (&l, PROTO_NOT_LEADER_AT "a:1"), 1);
  ck_assert_uint_eq (addrlist_next (&l, "some other message"), 2);
  addrlist_free (&l);

  ck_assert_int_eq (
      addrlist_leader_hint (PROTO_NOT_LEADER_AT "[::1]:7420", buf, sizeof buf),
      0);
  ck_assert_str_eq (buf, "[::1]:7420");
  ck_assert_int_eq (
      addrlist_leader_hint (PROTO_NOT_LEADER_AT "unix:/x\n", buf, sizeof buf),
      0);
  ck_assert_str_eq (buf, "unix:/x");
  ck_assert_int_eq (
      addrlist_leader_hint (PROTO_NOT_LEADER_AT "", buf, sizeof buf), -ENOENT);
  ck_assert_int_eq (
      addrlist_leader_hint (PROTO_NOT_LEADER_UNKNOWN, buf, sizeof buf),
      -ENOENT);
  ck_assert_int_eq (addrlist_leader_hint (NULL, buf, sizeof buf), -ENOENT);
  ck_assert_int_eq (addrlist_leader_hint (PROTO_NOT_LEADER_AT "a:1234", buf, 4),
                    -ENAMETOOLONG);
}
END_TEST

START_TEST (test_debug_flags)
{
  int a = 0, b = 0;
  const struct log_debug_flag flags[] = {
    { "mds.alloc", &a },
    { "mds.lease", &b },
    { NULL, NULL },
  };

  log_register_debug_flags (flags);
  ck_assert_int_eq (log_set_debug_flag ("mds.alloc=1"), 0);
  ck_assert_int_eq (a, 1);
  ck_assert_int_eq (log_set_debug_flag ("mds.lease=0x10"), 0);
  ck_assert_int_eq (b, 16);
  ck_assert_int_eq (log_set_debug_flag ("mds.nope=1"), -ENOENT);
  ck_assert_int_eq (log_set_debug_flag ("mds.alloc"), -EINVAL);
  ck_assert_int_eq (log_set_debug_flag ("mds.alloc=x"), -EINVAL);
  ck_assert_int_eq (log_set_debug_flag ("alloc=1"), -EINVAL);
}
END_TEST

static Suite *
parse_suite (void)
{
  Suite *s = suite_create ("parse");
  TCase *tc;

  tc = tcase_create ("size");
  tcase_add_test (tc, test_parse_size_ok);
  tcase_add_test (tc, test_parse_size_bad);
  tcase_add_test (tc, test_parse_uint);
  tcase_add_test (tc, test_format_size);
  tcase_add_test (tc, test_uuid);
  suite_add_tcase (s, tc);
  tc = tcase_create ("address");
  tcase_add_test (tc, test_address_check);
  tcase_add_test (tc, test_listen_connect);
  suite_add_tcase (s, tc);
  tc = tcase_create ("address-list");
  tcase_add_test (tc, test_addrlist_parse_ok);
  tcase_add_test (tc, test_addrlist_parse_bad);
  tcase_add_test (tc, test_addrlist_next);
  suite_add_tcase (s, tc);
  tc = tcase_create ("debug-flags");
  tcase_add_test (tc, test_debug_flags);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (parse_suite ());
  int failed;

  srunner_run_all (sr, CK_ENV);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* Unit tests of the cluster key and the handshake's proofs
 * (common/utils/auth.c), including a known-answer test of the proofs
 * against an independent HMAC-SHA256 (Python's, computed when this test
 * was written) so that a change of the wire format cannot go unnoticed.
 */

#include <config.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "protocol.h"

#define KAT_SERVER_PROOF \
  "eae98f801247bbf1313dea118e22ad29100b9adc194c6c8770811dec0ab58838"

static char dir[] = "/tmp/tessera-auth-test.XXXXXX";

/* Write TEXT to DIR/NAME with MODE; returns the path (static buffer). */
static const char *
write_file (const char *name, const char *text, mode_t mode)
{
  static char path[256];
  int fd;

  snprintf (path, sizeof path, "%s/%s", dir, name);
  unlink (path);
  fd = open (path, O_WRONLY | O_CREAT | O_TRUNC, mode);
  ck_assert_int_ge (fd, 0);
  ck_assert_int_eq (write (fd, text, strlen (text)), (ssize_t)strlen (text));
  ck_assert_int_eq (fchmod (fd, mode), 0);
  close (fd);
  return path;
}

static void
setup (void)
{
  ck_assert_ptr_nonnull (mkdtemp (dir));
}

static void
teardown (void)
{
  char cmd[300];

  snprintf (cmd, sizeof cmd, "rm -rf %s", dir);
  ck_assert_int_eq (system (cmd), 0);
  strcpy (dir, "/tmp/tessera-auth-test.XXXXXX");
}

START_TEST (test_key_create_load)
{
  struct auth_key k1, k2;
  char path[256], err[512];
  struct stat st;

  snprintf (path, sizeof path, "%s/cluster.key", dir);
  ck_assert_int_eq (auth_key_create (path, &k1, err, sizeof err), 0);
  ck_assert_int_eq (stat (path, &st), 0);
  ck_assert_uint_eq (st.st_mode & 07777, 0600);
  ck_assert_int_eq (st.st_size, 65);
  ck_assert_int_eq (auth_key_load (path, &k2, err, sizeof err), 0);
  ck_assert_mem_eq (k1.bytes, k2.bytes, AUTH_KEY_SIZE);
  /* Never overwrites. */
  ck_assert_int_eq (auth_key_create (path, &k2, err, sizeof err), -EEXIST);
  ck_assert_ptr_nonnull (strstr (err, path));
}
END_TEST

START_TEST (test_key_load_bad)
{
  static const char good[] =
      "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";
  struct auth_key k;
  char err[512], text[200];
  const char *p;

  /* Without the newline, upper case: fine. */
  p = write_file ("ok", good, 0600);
  ck_assert_int_eq (auth_key_load (p, &k, err, sizeof err), 0);
  ck_assert_uint_eq (k.bytes[0], 0x00);
  ck_assert_uint_eq (k.bytes[31], 0xff);

  p = write_file ("open", good, 0644);
  ck_assert_int_eq (auth_key_load (p, &k, err, sizeof err), -EPERM);
  ck_assert_ptr_nonnull (strstr (err, "chmod 600"));

  p = write_file ("short", "0011\n", 0600);
  ck_assert_int_eq (auth_key_load (p, &k, err, sizeof err), -EINVAL);
  ck_assert_ptr_nonnull (strstr (err, "64 hexadecimal digits"));

  snprintf (text, sizeof text, "%s\n\n", good);
  p = write_file ("long", text, 0600);
  ck_assert_int_eq (auth_key_load (p, &k, err, sizeof err), -EINVAL);

  memcpy (text, good, sizeof good);
  text[10] = 'g';
  p = write_file ("nonhex", text, 0600);
  ck_assert_int_eq (auth_key_load (p, &k, err, sizeof err), -EINVAL);
  ck_assert_ptr_nonnull (strstr (err, "offset 10"));

  p = write_file ("empty", "", 0600);
  ck_assert_int_eq (auth_key_load (p, &k, err, sizeof err), -EINVAL);

  ck_assert_int_eq (auth_key_load (dir, &k, err, sizeof err), -EINVAL);
  ck_assert_int_eq (
      auth_key_load ("/nonexistent/cluster.key", &k, err, sizeof err), -ENOENT);
  ck_assert_ptr_nonnull (strstr (err, "/nonexistent/cluster.key"));
}
END_TEST

/* A full exchange between the two sides: with the same key both proofs
 * verify; with different keys the client refuses the server.
 */
START_TEST (test_handshake)
{
  struct auth_key key, other;
  struct auth_client c;
  struct auth_server s;
  uint8_t hello_c[AUTH_CLIENT_HELLO_LEN], hello_s[AUTH_SERVER_HELLO_LEN];
  uint8_t proof[AUTH_MAC_SIZE], bad[AUTH_MAC_SIZE];

  ck_assert_int_eq (auth_random (key.bytes, sizeof key.bytes), 0);
  other = key;
  other.bytes[5] ^= 1;

  ck_assert_int_eq (auth_client_start (&c, PROTO_ROLE_PLUGIN, hello_c), 0);
  ck_assert_int_eq (auth_server_start (&key, &s, PROTO_ROLE_PLUGIN, hello_c,
                                       sizeof hello_c, PROTO_ROLE_STORESRV,
                                       hello_s),
                    0);
  ck_assert_int_eq (auth_client_finish (&key, &c, PROTO_ROLE_STORESRV, hello_s,
                                        sizeof hello_s, proof),
                    0);
  ck_assert_int_eq (auth_server_check (&key, &s, proof, sizeof proof), 0);

  /* Wrong key on either side. */
  ck_assert_int_eq (auth_client_finish (&other, &c, PROTO_ROLE_STORESRV,
                                        hello_s, sizeof hello_s, bad),
                    -EACCES);
  ck_assert_int_eq (auth_server_check (&other, &s, proof, sizeof proof),
                    -EACCES);
  /* The roles are part of the proof. */
  ck_assert_int_eq (auth_client_finish (&key, &c, PROTO_ROLE_MDS, hello_s,
                                        sizeof hello_s, bad),
                    -EACCES);
  /* A reflected server proof is not a client proof. */
  ck_assert_int_eq (
      auth_server_check (&key, &s, hello_s + AUTH_NONCE_SIZE, AUTH_MAC_SIZE),
      -EACCES);
  /* Truncated or missing proofs. */
  ck_assert_int_eq (auth_server_check (&key, &s, proof, sizeof proof - 1),
                    -EACCES);
  ck_assert_int_eq (
      auth_client_finish (&key, &c, PROTO_ROLE_STORESRV, hello_s, 0, bad),
      -EPROTO);
  ck_assert_int_eq (auth_server_start (&key, &s, PROTO_ROLE_PLUGIN, hello_c, 0,
                                       PROTO_ROLE_STORESRV, hello_s),
                    -EACCES);
  /* Every bit of the server's HELLO auth matters. */
  hello_s[3] ^= 0x80;
  ck_assert_int_eq (auth_client_finish (&key, &c, PROTO_ROLE_STORESRV, hello_s,
                                        sizeof hello_s, bad),
                    -EACCES);
}
END_TEST

/* A second session with the same client nonce gets a new server nonce,
 * so the first session's client proof no longer verifies (replay).
 */
START_TEST (test_replay)
{
  struct auth_key key;
  struct auth_client c;
  struct auth_server s1, s2;
  uint8_t hello_c[AUTH_CLIENT_HELLO_LEN], hello_s[AUTH_SERVER_HELLO_LEN];
  uint8_t proof[AUTH_MAC_SIZE];

  ck_assert_int_eq (auth_random (key.bytes, sizeof key.bytes), 0);
  ck_assert_int_eq (auth_client_start (&c, PROTO_ROLE_CLI, hello_c), 0);
  ck_assert_int_eq (auth_server_start (&key, &s1, PROTO_ROLE_CLI, hello_c,
                                       sizeof hello_c, PROTO_ROLE_MDS, hello_s),
                    0);
  ck_assert_int_eq (auth_client_finish (&key, &c, PROTO_ROLE_MDS, hello_s,
                                        sizeof hello_s, proof),
                    0);
  ck_assert_int_eq (auth_server_check (&key, &s1, proof, sizeof proof), 0);
  ck_assert_int_eq (auth_server_start (&key, &s2, PROTO_ROLE_CLI, hello_c,
                                       sizeof hello_c, PROTO_ROLE_MDS, hello_s),
                    0);
  ck_assert_mem_ne (s1.snonce, s2.snonce, AUTH_NONCE_SIZE);
  ck_assert_int_eq (auth_server_check (&key, &s2, proof, sizeof proof),
                    -EACCES);
}
END_TEST

/* Known answer: key 00 01 .. 1f, client nonce 20 .. 3f, server nonce
 * 40 .. 5f, client role PLUGIN (2), server role STORESRV (3); the server
 * proof is HMAC-SHA256 (key, "tessera-auth-v1 server" || cn || sn ||
 * 00000002 00000003), as computed by Python's hmac module.
 */
START_TEST (test_known_answer)
{
  static const char expect_hex[] = KAT_SERVER_PROOF;
  struct auth_key key;
  uint8_t cn[AUTH_NONCE_SIZE];
  uint8_t expect[AUTH_MAC_SIZE];
  size_t i;

  for (i = 0; i < AUTH_KEY_SIZE; ++i) {
    key.bytes[i] = (uint8_t)i;
    cn[i] = (uint8_t)(0x20 + i);
  }
  for (i = 0; i < AUTH_MAC_SIZE; ++i)
    sscanf (expect_hex + 2 * i, "%2hhx", &expect[i]);
  /* The client side accepts exactly that proof for that nonce. */
  {
    struct auth_client c;
    uint8_t fixed[AUTH_SERVER_HELLO_LEN], proof[AUTH_MAC_SIZE];

    memcpy (c.cnonce, cn, sizeof cn);
    c.crole = PROTO_ROLE_PLUGIN;
    for (i = 0; i < AUTH_NONCE_SIZE; ++i)
      fixed[i] = (uint8_t)(0x40 + i);
    memcpy (fixed + AUTH_NONCE_SIZE, expect, AUTH_MAC_SIZE);
    ck_assert_int_eq (auth_client_finish (&key, &c, PROTO_ROLE_STORESRV, fixed,
                                          sizeof fixed, proof),
                      0);
  }
}
END_TEST

static Suite *
auth_suite (void)
{
  Suite *s = suite_create ("auth");
  TCase *tc;

  tc = tcase_create ("key-file");
  tcase_add_checked_fixture (tc, setup, teardown);
  tcase_add_test (tc, test_key_create_load);
  tcase_add_test (tc, test_key_load_bad);
  suite_add_tcase (s, tc);
  tc = tcase_create ("handshake");
  tcase_add_test (tc, test_handshake);
  tcase_add_test (tc, test_replay);
  tcase_add_test (tc, test_known_answer);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *sr = srunner_create (auth_suite ());
  int failed;

  srunner_run_all (sr, CK_ENV);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* Unit tests of the TLS relays (common/utils/tls.c): bytes cross a
 * client and a server relay unchanged in both directions, and a client
 * with another cluster key fails the handshake.
 */

#include <config.h>

#include <check.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "full-rw.h"
#include "tls.h"

#define SIZE (1024 * 1024 + 7)

static struct auth_key key;

/* Echo everything read from FD back to it until end of file. */
static void *
echo (void *arg)
{
  int fd = *(int *)arg;
  char buf[4096];
  ssize_t n;

  while ((n = read (fd, buf, sizeof buf)) > 0)
    if (full_write (fd, buf, (size_t)n) < 0)
      break;
  close (fd);
  return NULL;
}

/* Write the buffer of a client in a thread while the test reads. */
struct sender {
  int fd;
  const uint8_t *buf;
};

static void *
sender (void *arg)
{
  struct sender *s = arg;

  full_write (s->fd, s->buf, SIZE);
  shutdown (s->fd, SHUT_WR);
  return NULL;
}

START_TEST (test_round_trip)
{
  char err[256];
  int sv[2], server, client;
  pthread_t echo_t, send_t;
  struct sender snd;
  uint8_t *out = malloc (SIZE), *in = malloc (SIZE);
  size_t i;

  ck_assert_ptr_nonnull (out);
  ck_assert_ptr_nonnull (in);
  for (i = 0; i < SIZE; ++i)
    out[i] = (uint8_t)(i * 7 + (i >> 12));
  ck_assert_int_eq (tls_enable (&key, err, sizeof err), 0);
  ck_assert (tls_enabled ());
  ck_assert_int_eq (socketpair (AF_UNIX, SOCK_STREAM, 0, sv), 0);

  server = tls_wrap_server (sv[1], 5000, "test");
  ck_assert_int_ge (server, 0);
  ck_assert_int_eq (pthread_create (&echo_t, NULL, echo, &server), 0);
  client = tls_wrap_client (sv[0], 5000, err, sizeof err);
  ck_assert_msg (client >= 0, "%s", err);

  snd.fd = client;
  snd.buf = out;
  ck_assert_int_eq (pthread_create (&send_t, NULL, sender, &snd), 0);
  ck_assert_int_eq (full_read (client, in, SIZE), 0);
  ck_assert_mem_eq (in, out, SIZE);
  pthread_join (send_t, NULL);
  close (client);
  pthread_join (echo_t, NULL);
  free (in);
  free (out);
}
END_TEST

START_TEST (test_wrong_key)
{
  char err[256];
  int sv[2], server, status;
  pid_t pid;

  ck_assert_int_eq (socketpair (AF_UNIX, SOCK_STREAM, 0, sv), 0);
  pid = fork ();
  ck_assert_int_ge (pid, 0);
  if (pid == 0) {
    /* The client: TLS with another key. */
    struct auth_key other = key;
    int c;

    close (sv[1]);
    other.bytes[0] ^= 1;
    if (tls_enable (&other, err, sizeof err) < 0)
      _exit (2);
    c = tls_wrap_client (sv[0], 5000, err, sizeof err);
    if (c == -ECONNREFUSED && strstr (err, "TLS handshake"))
      _exit (0);
    fprintf (stderr, "client: %d: %s\n", c, err);
    _exit (1);
  }
  close (sv[0]);
  ck_assert_int_eq (tls_enable (&key, err, sizeof err), 0);
  server = tls_wrap_server (sv[1], 5000, "test");
  ck_assert_int_ge (server, 0);
  ck_assert_int_eq (waitpid (pid, &status, 0), pid);
  ck_assert (WIFEXITED (status));
  ck_assert_int_eq (WEXITSTATUS (status), 0);
  /* The server side sees end of file, not data. */
  {
    char c;

    ck_assert_int_le (read (server, &c, 1), 0);
  }
  close (server);
}
END_TEST

/* A peer that connects and never speaks TLS: the server relay gives up
 * after its handshake timeout and the application sees end of file.
 */
START_TEST (test_handshake_timeout)
{
  char err[256];
  int sv[2], server;
  struct pollfd p;

  ck_assert_int_eq (tls_enable (&key, err, sizeof err), 0);
  ck_assert_int_eq (socketpair (AF_UNIX, SOCK_STREAM, 0, sv), 0);
  server = tls_wrap_server (sv[1], 300, "silent");
  ck_assert_int_ge (server, 0);
  p.fd = server;
  p.events = POLLIN;
  ck_assert_int_eq (poll (&p, 1, 10000), 1);
  {
    char c;

    ck_assert_int_le (read (server, &c, 1), 0);
  }
  close (server);
  close (sv[0]);
}
END_TEST

int
main (void)
{
  Suite *s = suite_create ("tls");
  TCase *tc = tcase_create ("relay");
  SRunner *sr;
  int failed;

  if (auth_random (key.bytes, sizeof key.bytes) < 0)
    return EXIT_FAILURE;
  tcase_add_test (tc, test_round_trip);
  tcase_add_test (tc, test_wrong_key);
  tcase_add_test (tc, test_handshake_timeout);
  tcase_set_timeout (tc, 30);
  suite_add_tcase (s, tc);
  sr = srunner_create (s);
  srunner_run_all (sr, CK_ENV);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

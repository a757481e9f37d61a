/* TLS relays (see tls.h). */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <nettle/hmac.h>

#include "log.h"
#include "tls.h"

#define PSK_USER "tessera"
#define PSK_LABEL "tessera-tls-psk-v1"
/* AES-GCM first: with AES-NI it is several times cheaper than
 * ChaCha20-Poly1305, which GnuTLS would otherwise pick for PSK. */
#define PRIORITY \
  "NORMAL:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305:" \
  "+ECDHE-PSK:+DHE-PSK:+PSK"
#define RELAY_BUF (64 * 1024)
#define RELAY_STACK (256 * 1024)

static uint8_t psk_bytes[32];
static gnutls_datum_t psk = { psk_bytes, sizeof psk_bytes };
static gnutls_psk_client_credentials_t client_cred;
static gnutls_psk_server_credentials_t server_cred;
static gnutls_priority_t priority;
static atomic_bool enabled;

/* One relayed connection: TCP is the network socket, PLAIN our end of the
 * socketpair.  Two threads hold references; the last one frees it.
 */
struct relay {
  int tcp, plain;
  gnutls_session_t session;
  atomic_int refs;
  int timeout_ms;
  char peer[64];
};

/* The server's PSK for USERNAME. */
static int
server_psk (gnutls_session_t session, const char *username, gnutls_datum_t *key)
{
  (void)session;
  if (strcmp (username, PSK_USER) != 0)
    return -1;
  key->data = gnutls_malloc (psk.size);
  if (key->data == NULL)
    return -1;
  memcpy (key->data, psk.data, psk.size);
  key->size = psk.size;
  return 0;
}

int
tls_enable (const struct auth_key *key, char *errmsg, size_t errlen)
{
  struct hmac_sha256_ctx ctx;
  int r;

  if (atomic_load (&enabled))
    return 0;
  hmac_sha256_set_key (&ctx, AUTH_KEY_SIZE, key->bytes);
  hmac_sha256_update (&ctx, strlen (PSK_LABEL), (const uint8_t *)PSK_LABEL);
  hmac_sha256_digest (&ctx, sizeof psk_bytes, psk_bytes);
  memset (&ctx, 0, sizeof ctx);

  if ((r = gnutls_psk_allocate_client_credentials (&client_cred)) < 0 ||
      (r = gnutls_psk_set_client_credentials (client_cred, PSK_USER, &psk,
                                              GNUTLS_PSK_KEY_RAW)) < 0 ||
      (r = gnutls_psk_allocate_server_credentials (&server_cred)) < 0 ||
      (r = gnutls_psk_set_server_known_dh_params (
           server_cred, GNUTLS_SEC_PARAM_MEDIUM)) < 0 ||
      (r = gnutls_priority_init (&priority, PRIORITY, NULL)) < 0) {
    snprintf (errmsg, errlen, "TLS: %s", gnutls_strerror (r));
    return -EIO;
  }
  gnutls_psk_set_server_credentials_function (server_cred, server_psk);
  atomic_store (&enabled, true);
  return 0;
}

bool
tls_enabled (void)
{
  return atomic_load (&enabled);
}

/* Drop one reference to R; the last frees it.  ABORT: a failure, so
 * wake the other direction too.
 */
static void
relay_unref (struct relay *r, bool abort)
{
  if (abort) {
    shutdown (r->tcp, SHUT_RDWR);
    shutdown (r->plain, SHUT_RDWR);
  }
  if (atomic_fetch_sub (&r->refs, 1) != 1)
    return;
  gnutls_deinit (r->session);
  close (r->tcp);
  close (r->plain);
  free (r);
}

/* Plaintext from the application to the network.  The application's
 * end of file becomes a TLS close_notify; after a shutdown for writing
 * the other direction goes on (as with a TCP half-close), after a close
 * both end at once.
 */
static void *
relay_up (void *arg)
{
  struct relay *r = arg;
  char *buf = malloc (RELAY_BUF);
  ssize_t n, off, s;
  bool failed = true;

  while (buf != NULL) {
    n = read (r->plain, buf, RELAY_BUF);
    if (n < 0 && errno == EINTR)
      continue;
    if (n == 0) {
      struct pollfd p = { .fd = r->plain, .events = POLLIN };

      failed = gnutls_bye (r->session, GNUTLS_SHUT_WR) < 0;
      /* Closed, not just shut down for writing: end both directions
       * now rather than wait for the peer (it may be stopped).
       */
      if (poll (&p, 1, 0) == 1 && (p.revents & POLLHUP))
        failed = true;
      break;
    }
    if (n < 0)
      break;
    for (off = 0; off < n; off += s) {
      do
        s = gnutls_record_send (r->session, buf + off, n - off);
      while (s == GNUTLS_E_AGAIN || s == GNUTLS_E_INTERRUPTED);
      if (s < 0)
        goto out;
    }
  }
out:
  free (buf);
  relay_unref (r, failed);
  return NULL;
}

/* Write all LEN bytes of BUF to the socket FD without SIGPIPE.  Returns
 * 0 or -errno.
 */
static int
send_all (int fd, const char *buf, size_t len)
{
  while (len > 0) {
    ssize_t n = send (fd, buf, len, MSG_NOSIGNAL);

    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -errno;
    buf += n;
    len -= (size_t)n;
  }
  return 0;
}

/* Plaintext from the network to the application.  The peer's
 * close_notify becomes end of file for the application.
 */
static void *
relay_down (void *arg)
{
  struct relay *r = arg;
  char *buf = malloc (RELAY_BUF);
  bool failed = true;
  ssize_t n;

  while (buf != NULL) {
    n = gnutls_record_recv (r->session, buf, RELAY_BUF);
    if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
      continue;
    if (n < 0 && !gnutls_error_is_fatal ((int)n))
      continue;
    if (n == 0) {
      failed = shutdown (r->plain, SHUT_WR) == -1;
      break;
    }
    if (n < 0 || send_all (r->plain, buf, (size_t)n) < 0)
      break;
  }
  free (buf);
  relay_unref (r, failed);
  return NULL;
}

/* Start a detached thread running FN (R). */
static int
start_thread (void *(*fn) (void *), struct relay *r)
{
  pthread_attr_t attr;
  pthread_t t;
  int e;

  pthread_attr_init (&attr);
  pthread_attr_setdetachstate (&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize (&attr, RELAY_STACK);
  e = pthread_create (&t, &attr, fn, r);
  pthread_attr_destroy (&attr);
  return -e;
}

/* Set or clear (MS = 0) both timeouts of FD. */
static void
set_timeouts (int fd, int ms)
{
  struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

  setsockopt (fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt (fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/* Make a relay for FD as SERVER or client: the session and the
 * socketpair, whose application end goes to *APP.  Returns it, or NULL
 * with -errno in *ERR (FD not closed).
 */
static struct relay *
relay_new (int fd, bool server, int timeout_ms, int *app, int *err)
{
  struct relay *r = calloc (1, sizeof *r);
  int sv[2], g, fl;

  if (r == NULL) {
    *err = -ENOMEM;
    return NULL;
  }
  if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1) {
    *err = -errno;
    free (r);
    return NULL;
  }
  g = gnutls_init (&r->session,
                   (server ? GNUTLS_SERVER : GNUTLS_CLIENT) | GNUTLS_NO_SIGNAL);
  if (g < 0) {
    close (sv[0]);
    close (sv[1]);
    free (r);
    *err = -ENOMEM;
    return NULL;
  }
  gnutls_priority_set (r->session, priority);
  gnutls_credentials_set (r->session, GNUTLS_CRD_PSK,
                          server ? (void *)server_cred : (void *)client_cred);
  /* The relay's threads block: the socket may come non-blocking from
   * accept4.
   */
  fl = fcntl (fd, F_GETFL);
  if (fl != -1 && (fl & O_NONBLOCK))
    fcntl (fd, F_SETFL, fl & ~O_NONBLOCK);
  gnutls_transport_set_int (r->session, fd);
  r->tcp = fd;
  r->plain = sv[1];
  r->timeout_ms = timeout_ms;
  atomic_init (&r->refs, 2);
  *app = sv[0];
  return r;
}

/* Free R, whose threads never started, with the application's end APP
 * and the network socket.
 */
static void
relay_discard (struct relay *r, int app)
{
  gnutls_deinit (r->session);
  close (r->plain);
  close (app);
  close (r->tcp);
  free (r);
}

/* The handshake on R, bounded by its timeout.  Returns 0 or a GnuTLS
 * error code.
 */
static int
handshake (struct relay *r)
{
  int g;

  /* A socket timeout makes a silent peer's recv fail with EAGAIN, which
   * GnuTLS reports as the non-fatal GNUTLS_E_AGAIN: only retry
   * interruptions, so the timeout bounds the whole handshake.
   */
  if (r->timeout_ms > 0) {
    set_timeouts (r->tcp, r->timeout_ms);
    gnutls_handshake_set_timeout (r->session, (unsigned)r->timeout_ms);
  }
  do
    g = gnutls_handshake (r->session);
  while (g == GNUTLS_E_INTERRUPTED ||
         (g < 0 && g != GNUTLS_E_AGAIN && !gnutls_error_is_fatal (g)));
  /* Idle connections are the application's business from now on. */
  set_timeouts (r->tcp, 0);
  return g;
}

int
tls_wrap_client (int fd, int timeout_ms, char *errmsg, size_t errlen)
{
  struct relay *r;
  int app, g, e;

  r = relay_new (fd, false, timeout_ms, &app, &e);
  if (r == NULL) {
    snprintf (errmsg, errlen, "TLS: %s", strerror (-e));
    close (fd);
    return e;
  }
  g = handshake (r);
  if (g < 0) {
    snprintf (errmsg, errlen,
              "TLS handshake: %s (does the server run with TLS, and with "
              "the same cluster key?)",
              gnutls_strerror (g));
    relay_discard (r, app);
    return -ECONNREFUSED;
  }
  e = start_thread (relay_down, r);
  if (e < 0) {
    snprintf (errmsg, errlen, "TLS: %s", strerror (-e));
    relay_discard (r, app);
    return e;
  }
  e = start_thread (relay_up, r);
  if (e < 0) {
    relay_unref (r, true); /* the down thread drops the other one */
    snprintf (errmsg, errlen, "TLS: %s", strerror (-e));
    close (app);
    return e;
  }
  return app;
}

/* A server relay's first thread: handshake, then start the other
 * direction and relay down.
 */
static void *
server_start (void *arg)
{
  struct relay *r = arg;
  int g = handshake (r);

  if (g < 0) {
    log_warn ("%s: TLS handshake failed: %s", r->peer, gnutls_strerror (g));
    relay_unref (r, true);
    relay_unref (r, true);
    return NULL;
  }
  if (start_thread (relay_up, r) < 0) {
    relay_unref (r, true);
    relay_unref (r, true);
    return NULL;
  }
  return relay_down (r);
}

int
tls_wrap_server (int fd, int timeout_ms, const char *peer)
{
  struct relay *r;
  int app, e;

  r = relay_new (fd, true, timeout_ms, &app, &e);
  if (r == NULL) {
    close (fd);
    return e;
  }
  snprintf (r->peer, sizeof r->peer, "%s", peer ? peer : "peer");
  e = start_thread (server_start, r);
  if (e < 0) {
    relay_discard (r, app);
    return e;
  }
  return app;
}

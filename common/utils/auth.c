/* The cluster key and the handshake's proofs (see auth.h). */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nettle/hmac.h>
#include <nettle/memops.h>

#include "auth.h"
#include "byteorder.h"
#include "cleanup.h"
#include "full-rw.h"

#define KEY_HEX_LEN (2 * AUTH_KEY_SIZE)

static struct auth_key current_key;
static atomic_bool have_key;

/* Value of the hexadecimal digit C, or -1. */
static int
hexval (char c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

int
auth_key_load (const char *path, struct auth_key *key, char *errmsg,
               size_t errlen)
{
  char buf[KEY_HEX_LEN + 3];
  struct stat st;
  ssize_t n;
  size_t i, len;
  int fd, e;

  fd = open (path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd == -1) {
    e = -errno;
    snprintf (errmsg, errlen, "key file %s: %s%s", path, strerror (-e),
              e == -ENOENT ? " (copy the cluster.key that tessera-mds --init "
                             "created, or give --key-file)"
                           : "");
    return e;
  }
  if (fstat (fd, &st) == -1) {
    e = -errno;
    close (fd);
    snprintf (errmsg, errlen, "key file %s: %s", path, strerror (-e));
    return e;
  }
  if (!S_ISREG (st.st_mode)) {
    close (fd);
    snprintf (errmsg, errlen, "key file %s: not a regular file", path);
    return -EINVAL;
  }
  if (st.st_mode & (S_IRWXG | S_IRWXO)) {
    close (fd);
    snprintf (errmsg, errlen,
              "key file %s: group or others may access it (mode %04o): "
              "run chmod 600 on it",
              path, (unsigned)(st.st_mode & 07777));
    return -EPERM;
  }
  n = read (fd, buf, sizeof buf);
  e = errno;
  close (fd);
  if (n < 0) {
    snprintf (errmsg, errlen, "key file %s: %s", path, strerror (e));
    return -e;
  }
  len = (size_t)n;
  if (len > 0 && buf[len - 1] == '\n')
    --len;
  if (len != KEY_HEX_LEN) {
    snprintf (errmsg, errlen,
              "key file %s: expected %d hexadecimal digits and a newline", path,
              KEY_HEX_LEN);
    return -EINVAL;
  }
  for (i = 0; i < AUTH_KEY_SIZE; ++i) {
    int hi = hexval (buf[2 * i]), lo = hexval (buf[2 * i + 1]);

    if (hi < 0 || lo < 0) {
      snprintf (errmsg, errlen,
                "key file %s: not a hexadecimal digit at offset %zu", path,
                hi < 0 ? 2 * i : 2 * i + 1);
      return -EINVAL;
    }
    key->bytes[i] = (uint8_t)(hi << 4 | lo);
  }
  return 0;
}

int
auth_random (void *buf, size_t len)
{
  uint8_t *p = buf;

  while (len > 0) {
    ssize_t n = getrandom (p, len, 0);

    if (n == -1) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

int
auth_key_create (const char *path, struct auth_key *key, char *errmsg,
                 size_t errlen)
{
  static const char hex[] = "0123456789abcdef";
  char buf[KEY_HEX_LEN + 1];
  CLEANUP_FREE char *dir = NULL;
  size_t i;
  int fd, dfd, e;

  e = auth_random (key->bytes, sizeof key->bytes);
  if (e < 0) {
    snprintf (errmsg, errlen, "getrandom: %s", strerror (-e));
    return e;
  }
  for (i = 0; i < AUTH_KEY_SIZE; ++i) {
    buf[2 * i] = hex[key->bytes[i] >> 4];
    buf[2 * i + 1] = hex[key->bytes[i] & 15];
  }
  buf[KEY_HEX_LEN] = '\n';

  fd = open (path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0600);
  if (fd == -1) {
    e = -errno;
    snprintf (errmsg, errlen, "key file %s: %s", path, strerror (-e));
    return e;
  }
  /* The umask could only have removed bits; make sure of 0600. */
  if (fchmod (fd, 0600) == -1 || (e = full_write (fd, buf, sizeof buf)) < 0 ||
      fsync (fd) == -1) {
    e = e < 0 ? e : -errno;
    close (fd);
    unlink (path);
    snprintf (errmsg, errlen, "key file %s: %s", path, strerror (-e));
    return e;
  }
  if (close (fd) == -1) {
    e = -errno;
    unlink (path);
    snprintf (errmsg, errlen, "key file %s: %s", path, strerror (-e));
    return e;
  }
  dir = strdup (path);
  if (dir != NULL) {
    dfd = open (dirname (dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      fsync (dfd);
      close (dfd);
    }
  }
  return 0;
}

void
auth_key_use (const struct auth_key *key)
{
  current_key = *key;
  atomic_store (&have_key, true);
}

const struct auth_key *
auth_key_current (void)
{
  return atomic_load (&have_key) ? &current_key : NULL;
}

/* The proof of SIDE ("server" or "client") over both nonces and roles. */
static void
proof (const struct auth_key *key, const char *side, const uint8_t *cnonce,
       const uint8_t *snonce, uint32_t crole, uint32_t srole,
       uint8_t mac[AUTH_MAC_SIZE])
{
  static const char label[] = "tessera-auth-v1 ";
  struct hmac_sha256_ctx ctx;
  uint8_t roles[8];

  put_be32 (roles, crole);
  put_be32 (roles + 4, srole);
  hmac_sha256_set_key (&ctx, AUTH_KEY_SIZE, key->bytes);
  hmac_sha256_update (&ctx, sizeof label - 1, (const uint8_t *)label);
  hmac_sha256_update (&ctx, strlen (side), (const uint8_t *)side);
  hmac_sha256_update (&ctx, AUTH_NONCE_SIZE, cnonce);
  hmac_sha256_update (&ctx, AUTH_NONCE_SIZE, snonce);
  hmac_sha256_update (&ctx, sizeof roles, roles);
  hmac_sha256_digest (&ctx, AUTH_MAC_SIZE, mac);
  memset (&ctx, 0, sizeof ctx);
}

int
auth_client_start (struct auth_client *st, uint32_t crole,
                   uint8_t hello_auth[AUTH_CLIENT_HELLO_LEN])
{
  int e = auth_random (st->cnonce, sizeof st->cnonce);

  if (e < 0)
    return e;
  st->crole = crole;
  memcpy (hello_auth, st->cnonce, AUTH_NONCE_SIZE);
  return 0;
}

int
auth_client_finish (const struct auth_key *key, const struct auth_client *st,
                    uint32_t srole, const uint8_t *server_auth, size_t len,
                    uint8_t out[AUTH_MAC_SIZE])
{
  uint8_t expect[AUTH_MAC_SIZE];
  const uint8_t *snonce = server_auth;
  int ok;

  if (len == 0)
    return -EPROTO;
  if (len != AUTH_SERVER_HELLO_LEN)
    return -EACCES;
  proof (key, "server", st->cnonce, snonce, st->crole, srole, expect);
  ok = memeql_sec (expect, server_auth + AUTH_NONCE_SIZE, AUTH_MAC_SIZE);
  if (!ok)
    return -EACCES;
  proof (key, "client", st->cnonce, snonce, st->crole, srole, out);
  return 0;
}

int
auth_server_start (const struct auth_key *key, struct auth_server *st,
                   uint32_t crole, const uint8_t *client_auth, size_t len,
                   uint32_t srole, uint8_t reply_auth[AUTH_SERVER_HELLO_LEN])
{
  int e;

  if (len != AUTH_CLIENT_HELLO_LEN)
    return -EACCES;
  e = auth_random (st->snonce, sizeof st->snonce);
  if (e < 0)
    return e;
  memcpy (st->cnonce, client_auth, AUTH_NONCE_SIZE);
  st->crole = crole;
  st->srole = srole;
  memcpy (reply_auth, st->snonce, AUTH_NONCE_SIZE);
  proof (key, "server", st->cnonce, st->snonce, crole, srole,
         reply_auth + AUTH_NONCE_SIZE);
  return 0;
}

int
auth_server_check (const struct auth_key *key, const struct auth_server *st,
                   const void *payload, size_t len)
{
  uint8_t expect[AUTH_MAC_SIZE];

  if (len != AUTH_MAC_SIZE)
    return -EACCES;
  proof (key, "client", st->cnonce, st->snonce, st->crole, st->srole, expect);
  return memeql_sec (expect, payload, AUTH_MAC_SIZE) ? 0 : -EACCES;
}

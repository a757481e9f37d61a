/* Frames on blocking sockets and the synchronous client (see frame.h). */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "auth.h"
#include "buf.h"
#include "cleanup.h"
#include "frame.h"
#include "full-rw.h"
#include "sock.h"
#include "tls.h"

int
proto_send_frame (int fd, uint8_t opcode, uint16_t flags, uint32_t status,
                  uint64_t tag, const void *payload, uint32_t len)
{
  struct proto_header hdr = {
    .magic = PROTO_MAGIC,
    .version = PROTO_VERSION,
    .opcode = opcode,
    .flags = flags,
    .status = status,
    .length = len,
    .tag = tag,
  };
  uint8_t buf[PROTO_HEADER_SIZE];
  struct iovec iov[2];
  int iovcnt = 1;
  size_t total = PROTO_HEADER_SIZE + (size_t)len;
  ssize_t r;

  proto_header_encode (&hdr, buf);
  iov[0].iov_base = buf;
  iov[0].iov_len = PROTO_HEADER_SIZE;
  if (len > 0) {
    iov[1].iov_base = (void *)payload;
    iov[1].iov_len = len;
    iovcnt = 2;
  }
  /* One writev usually moves everything; finish a short one by hand. */
  do
    r = writev (fd, iov, iovcnt);
  while (r == -1 && errno == EINTR);
  if (r == -1)
    return -errno;
  if ((size_t)r == total)
    return 0;
  if ((size_t)r < PROTO_HEADER_SIZE) {
    int e = full_write (fd, buf + r, PROTO_HEADER_SIZE - r);

    if (e < 0)
      return e;
    r = PROTO_HEADER_SIZE;
  }
  return full_write (fd, (const uint8_t *)payload + (r - PROTO_HEADER_SIZE),
                     total - r);
}

int
proto_send_error (int fd, uint8_t opcode, uint64_t tag, uint32_t status,
                  const char *fmt, ...)
{
  char msg[PROTO_ERRMSG_MAX + 1];
  va_list ap;
  int n;

  va_start (ap, fmt);
  n = vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  if (n < 0)
    n = 0;
  if (n > PROTO_ERRMSG_MAX)
    n = PROTO_ERRMSG_MAX;
  return proto_send_frame (fd, opcode, PROTO_FLAG_REPLY, status, tag, msg, n);
}

int
proto_recv_frame (int fd, uint32_t max_payload, struct proto_header *hdr,
                  void **payload)
{
  uint8_t buf[PROTO_HEADER_SIZE];
  uint32_t limit;
  void *p;
  int r;

  *payload = NULL;
  r = full_read (fd, buf, sizeof buf);
  if (r < 0)
    return r;
  r = proto_header_decode (buf, hdr, UINT32_MAX);
  if (r < 0)
    return r;
  limit = proto_max_payload (hdr->opcode);
  if (limit > max_payload)
    limit = max_payload;
  if (hdr->length > limit)
    return -EMSGSIZE;
  if (hdr->length == 0)
    return 0;
  p = malloc (hdr->length);
  if (p == NULL)
    return -ENOMEM;
  r = full_read (fd, p, hdr->length);
  if (r < 0) {
    free (p);
    return r;
  }
  *payload = p;
  return 0;
}

struct proto_client {
  pthread_mutex_t lock; /* serializes calls */
  int fd;
  int broken;
  uint64_t next_tag;
  char *address;
};

/* One request/reply of the handshake on blocking FD.  Returns 0 and the
 * reply's payload (*REPLY, caller frees) or -errno, with a message.
 */
static int
handshake_call (int fd, uint8_t opcode, const void *payload, uint32_t len,
                void **reply, uint32_t *reply_len, char *errmsg, size_t errlen)
{
  struct proto_header hdr;
  void *p = NULL;
  int r;

  *reply = NULL;
  *reply_len = 0;
  r = proto_send_frame (fd, opcode, 0, PROTO_OK, 0, payload, len);
  if (r < 0) {
    snprintf (errmsg, errlen, "send %s: %s", proto_opcode_name (opcode),
              strerror (-r));
    return r;
  }
  r = proto_recv_frame (fd, PROTO_MAX_META_PAYLOAD, &hdr, &p);
  if (r == -EAGAIN || r == -EWOULDBLOCK)
    r = -ETIMEDOUT;
  if (r < 0) {
    snprintf (errmsg, errlen, "%s: %s%s", proto_opcode_name (opcode),
              r == -EPIPE ? "connection closed by the server" : strerror (-r),
              opcode == PROTO_OP_HELLO && (r == -EPIPE || r == -ECONNRESET)
                  ? " (does the server run with --tls?)"
                  : "");
    return r;
  }
  if (!(hdr.flags & PROTO_FLAG_REPLY) || hdr.opcode != opcode || hdr.tag != 0) {
    free (p);
    snprintf (errmsg, errlen, "%s: unexpected reply %s",
              proto_opcode_name (opcode), proto_opcode_name (hdr.opcode));
    return -EPROTO;
  }
  if (hdr.status != PROTO_OK) {
    int n = hdr.length < 200 ? (int)hdr.length : 200;

    snprintf (errmsg, errlen, "%s refused: %.*s", proto_opcode_name (opcode), n,
              p ? (const char *)p : proto_status_name (hdr.status));
    free (p);
    return -proto_status_to_errno (hdr.status);
  }
  *reply = p;
  *reply_len = hdr.length;
  return 0;
}

/* proto_handshake, sending MDS_EPOCH in HELLO (role MDS only). */
static int
handshake (int fd, uint32_t role, const uint8_t *uuid, uint64_t mds_epoch,
           struct proto_hello *peer, char *errmsg, size_t errlen)
{
  const struct auth_key *key = auth_key_current ();
  struct proto_hello hello = { .version = PROTO_VERSION,
                               .role = role,
                               .mds_epoch = mds_epoch };
  struct proto_hello reply;
  struct auth_client ac;
  uint8_t proof[AUTH_MAC_SIZE];
  struct proto_wbuf wb = { 0 };
  CLEANUP_FREE void *payload = NULL;
  CLEANUP_FREE void *ack = NULL;
  uint32_t len = 0, ack_len = 0;
  char dummy[1];
  int r;

  if (errmsg == NULL || errlen == 0) {
    errmsg = dummy;
    errlen = sizeof dummy;
  }
  errmsg[0] = '\0';
  if (key == NULL) {
    snprintf (errmsg, errlen, "no cluster key loaded");
    return -ENOKEY;
  }
  if (uuid)
    memcpy (hello.uuid, uuid, 16);
  r = auth_client_start (&ac, role, hello.auth);
  if (r < 0) {
    snprintf (errmsg, errlen, "getrandom: %s", strerror (-r));
    return r;
  }
  hello.auth_len = AUTH_CLIENT_HELLO_LEN;
  proto_encode_hello (&hello, &wb);
  if (wb.err) {
    r = wb.err;
    proto_wbuf_free (&wb);
    snprintf (errmsg, errlen, "HELLO: %s", strerror (-r));
    return r;
  }
  r = handshake_call (fd, PROTO_OP_HELLO, wb.data, wb.len, &payload, &len,
                      errmsg, errlen);
  proto_wbuf_free (&wb);
  if (r < 0)
    return r;
  r = proto_decode_hello (payload, len, &reply);
  if (r < 0) {
    snprintf (errmsg, errlen, "HELLO: malformed reply");
    return r;
  }
  if (reply.version != PROTO_VERSION) {
    snprintf (errmsg, errlen,
              "the server speaks protocol version %" PRIu32 ", not %d",
              reply.version, PROTO_VERSION);
    return -EPROTO;
  }
  r = auth_client_finish (key, &ac, reply.role, reply.auth, reply.auth_len,
                          proof);
  if (r == -EPROTO) {
    snprintf (errmsg, errlen, "the server did not authenticate itself");
    return -EACCES;
  }
  if (r < 0) {
    snprintf (errmsg, errlen,
              "the server failed to prove the cluster key "
              "(a different cluster key?)");
    return r;
  }
  r = handshake_call (fd, PROTO_OP_AUTH, proof, sizeof proof, &ack, &ack_len,
                      errmsg, errlen);
  if (r == -EACCES)
    snprintf (errmsg, errlen,
              "the server refused our proof of the cluster key "
              "(a different cluster key?)");
  if (r < 0)
    return r;
  if (peer)
    *peer = reply;
  return 0;
}

int
proto_handshake (int fd, uint32_t role, const uint8_t *uuid,
                 struct proto_hello *peer, char *errmsg, size_t errlen)
{
  return handshake (fd, role, uuid, 0, peer, errmsg, errlen);
}

int
proto_connect (const char *addr, int timeout_ms, char *errmsg, size_t errlen)
{
  int fd = sock_connect (addr, timeout_ms);

  if (fd < 0) {
    snprintf (errmsg, errlen, "connect: %s", strerror (-fd));
    return fd;
  }
  if (tls_enabled ())
    fd = tls_wrap_client (fd, timeout_ms, errmsg, errlen);
  return fd;
}

int
proto_accepted (int fd, int timeout_ms, const char *peer)
{
  if (tls_enabled ())
    return tls_wrap_server (fd, timeout_ms, peer);
  return fd;
}

/* proto_client_connect, sending MDS_EPOCH in HELLO (role MDS only). */
static int
client_connect (const char *addr, uint32_t role, const uint8_t *uuid,
                uint64_t mds_epoch, int timeout_ms, struct proto_client **out,
                struct proto_hello *peer, char *errmsg, size_t errlen)
{
  struct proto_client *c;
  char dummy[1];
  int fd, r;

  if (errmsg == NULL || errlen == 0) {
    errmsg = dummy;
    errlen = sizeof dummy;
  }
  errmsg[0] = '\0';
  *out = NULL;
  fd = proto_connect (addr, timeout_ms, errmsg, errlen);
  if (fd < 0)
    return fd;
  if (timeout_ms > 0 && (r = sock_set_timeout (fd, timeout_ms)) < 0) {
    snprintf (errmsg, errlen, "set timeout: %s", strerror (-r));
    close (fd);
    return r;
  }
  c = calloc (1, sizeof *c);
  if (c == NULL || (c->address = strdup (addr)) == NULL) {
    free (c);
    close (fd);
    snprintf (errmsg, errlen, "%s", strerror (ENOMEM));
    return -ENOMEM;
  }
  pthread_mutex_init (&c->lock, NULL);
  c->fd = fd;
  c->next_tag = 1;

  r = handshake (fd, role, uuid, mds_epoch, peer, errmsg, errlen);
  if (r < 0) {
    proto_client_close (c);
    return r;
  }
  *out = c;
  return 0;
}

int
proto_client_connect (const char *addr, uint32_t role, const uint8_t *uuid,
                      int timeout_ms, struct proto_client **out,
                      struct proto_hello *peer, char *errmsg, size_t errlen)
{
  return client_connect (addr, role, uuid, 0, timeout_ms, out, peer, errmsg,
                         errlen);
}

int
proto_client_connect_mds (const char *addr, const uint8_t *uuid,
                          uint64_t mds_epoch, int timeout_ms,
                          struct proto_client **out, struct proto_hello *peer,
                          char *errmsg, size_t errlen)
{
  return client_connect (addr, PROTO_ROLE_MDS, uuid, mds_epoch, timeout_ms, out,
                         peer, errmsg, errlen);
}

void
proto_client_close (struct proto_client *c)
{
  if (c == NULL)
    return;
  if (c->fd >= 0)
    close (c->fd);
  pthread_mutex_destroy (&c->lock);
  free (c->address);
  free (c);
}

const char *
proto_client_address (const struct proto_client *c)
{
  return c->address;
}

int
proto_client_set_timeout (struct proto_client *c, int timeout_ms)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&c->lock);
  if (c->fd < 0)
    return -ENOTCONN;
  return sock_set_timeout (c->fd, timeout_ms);
}

int
proto_client_broken (struct proto_client *c)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&c->lock);
  return c->broken;
}

/* Copy a failed reply's message into ERRMSG as a C string. */
static void
copy_errmsg (char *errmsg, size_t errlen, const void *payload, uint32_t len)
{
  size_t n;

  if (errmsg == NULL || errlen == 0)
    return;
  n = len < errlen - 1 ? len : errlen - 1;
  if (n > 0)
    memcpy (errmsg, payload, n);
  errmsg[n] = '\0';
}

int
proto_client_call (struct proto_client *c, uint8_t opcode, uint16_t flags,
                   const void *payload, uint32_t len, void **reply,
                   uint32_t *reply_len, char *errmsg, size_t errlen)
{
  struct proto_header hdr;
  void *p = NULL;
  uint64_t tag;
  int r;

  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&c->lock);
  *reply = NULL;
  *reply_len = 0;
  if (errmsg && errlen)
    errmsg[0] = '\0';
  if (c->broken)
    return -ENOTCONN;

  tag = c->next_tag++;
  r = proto_send_frame (c->fd, opcode, flags, PROTO_OK, tag, payload, len);
  if (r < 0)
    goto broken;
  r = proto_recv_frame (c->fd, UINT32_MAX, &hdr, &p);
  if (r < 0) {
    if (r == -EAGAIN || r == -EWOULDBLOCK)
      r = -ETIMEDOUT;
    goto broken;
  }
  if (!(hdr.flags & PROTO_FLAG_REPLY) || hdr.tag != tag ||
      hdr.opcode != opcode) {
    free (p);
    r = -EBADMSG;
    goto broken;
  }
  if (hdr.status != PROTO_OK) {
    copy_errmsg (errmsg, errlen, p, hdr.length);
    free (p);
    return -proto_status_to_errno (hdr.status);
  }
  *reply = p;
  *reply_len = hdr.length;
  return 0;

broken:
  c->broken = 1;
  return r;
}

/* test-ss-malformed ADDR SEGMENT_SIZE [ADDR2]
 *
 * Send malformed frames to a running storage server, each on a fresh
 * connection, and check that each gets the right error status (then a
 * close), or just a close for truncated frames: before authentication
 * (the handshake of auth.h, with the cluster key in $TESSERA_KEY_FILE:
 * wrong order, oversized frames refused from their header, no nonce, a
 * wrong proof) and after it; then check that a normal handshake +
 * SEG_WRITE + SEG_READ round trip still returns exact bytes, that
 * fences (ESTALE) and generations (ESTALEMAP) refuse old writers and
 * readers (a read with generation 0 is not checked), that a read of a
 * segment the server does not hold fails with ENOENT, and that SEG_HASH
 * and SEG_LIST answer as they should.  With a second server ADDR2, also
 * check SEG_PULL in FULL and DIFF mode from ADDR2 to ADDR, with a client
 * write during the copy, and a pull of a segment the source does not
 * hold (zeros).
 * Prints one line per case; exits 1 if any case failed.
 */

#include <config.h>

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth.h"
#include "buf.h"
#include "crc32c.h"
#include "frame.h"
#include "full-rw.h"
#include "parse.h"
#include "protocol.h"
#include "sock.h"

#define TIMEOUT_MS 10000

static const char *addr;
static const char *addr2; /* a second server, or NULL */
static uint32_t segment_size;
static int failures;

static uint64_t random_id (void);

/* How far a case takes a connection before sending its bytes. */
enum stage {
  NO_HELLO = 0, /* nothing sent */
  AUTHED = 1,   /* HELLO and AUTH done */
  HELLO_ONLY,   /* HELLO done, AUTH expected */
};

static void report (const char *name, bool ok, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

/* Print a case's outcome. */
static void
report (const char *name, bool ok, const char *fmt, ...)
{
  va_list ap;

  printf ("%s: %s: ", ok ? "PASS" : "FAIL", name);
  va_start (ap, fmt);
  vprintf (fmt, ap);
  va_end (ap);
  putchar ('\n');
  fflush (stdout);
  if (!ok)
    failures++;
}

/* Connect to the server at A, exiting on failure (nothing can be
 * tested).
 */
static int
connect_to_or_die (const char *a)
{
  int fd = sock_connect (a, TIMEOUT_MS);

  if (fd < 0 || sock_set_timeout (fd, TIMEOUT_MS) < 0) {
    fprintf (stderr, "test-ss-malformed: connect: %s: %s\n", a,
             strerror (fd < 0 ? -fd : errno));
    exit (EXIT_FAILURE);
  }
  return fd;
}

/* Connect to the server under test. */
static int
connect_or_die (void)
{
  return connect_to_or_die (addr);
}

/* Encode a header into BUF (fields given raw, so that they can be bad). */
static void
put_header (uint8_t *buf, uint32_t magic, uint8_t version, uint8_t opcode,
            uint16_t flags, uint32_t length, uint64_t tag)
{
  uint32_t v32;
  uint16_t v16;
  uint64_t v64;

  v32 = htobe32 (magic);
  memcpy (buf, &v32, 4);
  buf[4] = version;
  buf[5] = opcode;
  v16 = htobe16 (flags);
  memcpy (buf + 6, &v16, 2);
  v32 = 0;
  memcpy (buf + 8, &v32, 4);
  v32 = htobe32 (length);
  memcpy (buf + 12, &v32, 4);
  v64 = htobe64 (tag);
  memcpy (buf + 16, &v64, 8);
}

/* Send one well-formed frame. */
static int
send_frame (int fd, uint8_t opcode, uint16_t flags, uint64_t tag,
            const void *payload, uint32_t len)
{
  uint8_t hdr[PROTO_HEADER_SIZE];
  int r;

  put_header (hdr, PROTO_MAGIC, PROTO_VERSION, opcode, flags, len, tag);
  r = full_write (fd, hdr, sizeof hdr);
  if (r == 0 && len > 0)
    r = full_write (fd, payload, len);
  return r;
}

/* A reply as received: raw header fields and the message or data. */
struct reply {
  uint8_t opcode;
  uint16_t flags;
  uint32_t status;
  uint32_t length;
  uint64_t tag;
  char msg[PROTO_ERRMSG_MAX + 1];
  uint8_t *data; /* malloc'd for PROTO_OK replies with a payload */
};

/* Read one reply.  Returns 0, -EPIPE on a clean close, or -errno. */
static int
recv_reply (int fd, struct reply *rep)
{
  uint8_t hdr[PROTO_HEADER_SIZE];
  uint32_t v32, magic;
  uint16_t v16;
  uint64_t v64;
  int r;

  memset (rep, 0, sizeof *rep);
  r = full_read (fd, hdr, sizeof hdr);
  if (r < 0)
    return r;
  memcpy (&v32, hdr, 4);
  magic = be32toh (v32);
  rep->opcode = hdr[5];
  memcpy (&v16, hdr + 6, 2);
  rep->flags = be16toh (v16);
  memcpy (&v32, hdr + 8, 4);
  rep->status = be32toh (v32);
  memcpy (&v32, hdr + 12, 4);
  rep->length = be32toh (v32);
  memcpy (&v64, hdr + 16, 8);
  rep->tag = be64toh (v64);
  if (magic != PROTO_MAGIC || hdr[4] != PROTO_VERSION)
    return -EBADMSG;
  if (rep->status != PROTO_OK) {
    if (rep->length > PROTO_ERRMSG_MAX)
      return -EBADMSG;
    r = full_read (fd, rep->msg, rep->length);
    rep->msg[rep->length] = '\0';
    return r;
  }
  if (rep->length > PROTO_MAX_IO_PAYLOAD)
    return -EBADMSG;
  if (rep->length > 0) {
    rep->data = malloc (rep->length);
    if (rep->data == NULL)
      return -ENOMEM;
    r = full_read (fd, rep->data, rep->length);
  }
  return r;
}

/* True if the server closes FD without sending anything more. */
static bool
closed_by_server (int fd)
{
  char c;
  ssize_t n = recv (fd, &c, 1, 0);

  return n == 0 || (n == -1 && errno == ECONNRESET);
}

/* Authenticate on FD (proto_handshake as a plugin) and check that the
 * peer is a storage server.  Returns true if it worked.
 */
static bool
hello (int fd)
{
  struct proto_hello peer;
  char errmsg[256];
  int r;

  r = proto_handshake (fd, PROTO_ROLE_PLUGIN, NULL, &peer, errmsg,
                       sizeof errmsg);
  if (r < 0) {
    fprintf (stderr, "handshake: %s\n", errmsg);
    return false;
  }
  return peer.role == PROTO_ROLE_STORESRV;
}

/* Send a HELLO as a plugin with the authentication bytes AUTH (LEN) on
 * FD and read the reply into REP (REP->data: the caller frees).  Returns
 * 0 or -errno.
 */
static int
raw_hello (int fd, const uint8_t *auth, uint16_t len, struct reply *rep)
{
  struct proto_hello h = { .version = PROTO_VERSION,
                           .role = PROTO_ROLE_PLUGIN,
                           .auth_len = len };
  struct proto_wbuf wb = { 0 };
  int r;

  memset (rep, 0, sizeof *rep);
  if (len > 0)
    memcpy (h.auth, auth, len);
  proto_encode_hello (&h, &wb);
  r = wb.err;
  if (r == 0)
    r = send_frame (fd, PROTO_OP_HELLO, 0, 1, wb.data, wb.len);
  if (r == 0)
    r = recv_reply (fd, rep);
  proto_wbuf_free (&wb);
  return r;
}

/* The first half of the handshake on FD: HELLO with a fresh nonce, and
 * a check of the server's proof.  Returns true with the proof this
 * client should send in AUTH in PROOF.
 */
static bool
hello_only (int fd, uint8_t proof[AUTH_MAC_SIZE])
{
  uint8_t nonce[AUTH_CLIENT_HELLO_LEN];
  struct auth_client ac;
  struct proto_hello peer;
  struct reply rep = { 0 };
  bool ok;

  ok = auth_client_start (&ac, PROTO_ROLE_PLUGIN, nonce) == 0 &&
       raw_hello (fd, nonce, sizeof nonce, &rep) == 0 &&
       rep.status == PROTO_OK &&
       proto_decode_hello (rep.data, rep.length, &peer) == 0 &&
       auth_client_finish (auth_key_current (), &ac, peer.role, peer.auth,
                           peer.auth_len, proof) == 0;
  free (rep.data);
  return ok;
}

/* Take the fresh connection FD to STAGE.  Returns true if it worked. */
static bool
reach_stage (int fd, int stage)
{
  uint8_t proof[AUTH_MAC_SIZE];

  switch (stage) {
  case AUTHED:
    return hello (fd);
  case HELLO_ONLY:
    return hello_only (fd, proof);
  default:
    return true;
  }
}

/* Send the raw bytes BUF (LEN) on a fresh connection (taken to STAGE
 * first: one of enum stage; true means AUTHED) and expect an error reply
 * with STATUS and tag TAG, then a close if CLOSES.
 */
static void
expect_error (const char *name, int stage, const void *buf, size_t len,
              uint64_t tag, uint32_t status, bool closes)
{
  struct reply rep;
  int fd = connect_or_die ();
  int r;

  if (!reach_stage (fd, stage)) {
    report (name, false, "handshake failed");
    goto out;
  }
  if (full_write (fd, buf, len) < 0) {
    report (name, false, "send: %s", strerror (errno));
    goto out;
  }
  r = recv_reply (fd, &rep);
  if (r < 0) {
    report (name, false, "no reply: %s", strerror (-r));
    goto out;
  }
  free (rep.data);
  if (rep.status != status || rep.tag != tag ||
      !(rep.flags & PROTO_FLAG_REPLY)) {
    report (name, false,
            "got status %s (%" PRIu32 ") tag %" PRIu64
            ", expected %s tag %" PRIu64 ": %s",
            proto_status_name (rep.status), rep.status, rep.tag,
            proto_status_name (status), tag, rep.msg);
    goto out;
  }
  if (closes && !closed_by_server (fd)) {
    report (name, false, "%s, but the connection stayed open",
            proto_status_name (status));
    goto out;
  }
  report (name, true, "%s%s: %s", proto_status_name (status),
          closes ? ", then closed" : "", rep.msg);
out:
  close (fd);
}

/* Send a truncated frame (BUF, LEN bytes), half-close, and expect the
 * server to close without replying.
 */
static void
expect_close (const char *name, int stage, const void *buf, size_t len)
{
  int fd = connect_or_die ();

  if (!reach_stage (fd, stage))
    report (name, false, "handshake failed");
  else if (full_write (fd, buf, len) < 0)
    report (name, false, "send: %s", strerror (errno));
  else {
    shutdown (fd, SHUT_WR);
    if (closed_by_server (fd))
      report (name, true, "closed without a reply");
    else
      report (name, false, "the server sent something");
  }
  close (fd);
}

/* A frame with a 40-byte segment I/O head into BUF; returns its size. */
static size_t
io_frame (uint8_t *buf, uint8_t opcode, uint32_t frame_len, uint64_t tag,
          uint64_t segment, uint32_t offset, uint32_t length)
{
  struct proto_seg_io io = { .segment = segment,
                             .volume = 1,
                             .epoch = 1,
                             .offset = offset,
                             .length = length };

  put_header (buf, PROTO_MAGIC, PROTO_VERSION, opcode, 0, frame_len, tag);
  proto_encode_seg_io (&io, buf + PROTO_HEADER_SIZE);
  return PROTO_HEADER_SIZE + PROTO_SEG_IO_SIZE;
}

/* A frame for OPCODE with the payload in WB (freed) into BUF (BUFLEN
 * bytes); returns its size, or 0 if it does not fit.
 */
static size_t
wb_frame (uint8_t *buf, size_t buflen, uint8_t opcode, uint64_t tag,
          struct proto_wbuf *wb)
{
  size_t n = 0;

  if (wb->err == 0 && PROTO_HEADER_SIZE + wb->len <= buflen) {
    put_header (buf, PROTO_MAGIC, PROTO_VERSION, opcode, 0, wb->len, tag);
    memcpy (buf + PROTO_HEADER_SIZE, wb->data, wb->len);
    n = PROTO_HEADER_SIZE + wb->len;
  }
  else
    report (proto_opcode_name (opcode), false, "cannot encode the frame");
  proto_wbuf_free (wb);
  return n;
}

/* Malformed requests of the repair opcodes. */
static void
malformed_repair_cases (void)
{
  uint8_t buf[512];
  struct proto_wbuf wb = { 0 };
  struct proto_pull pull = {
    .segment = 1, .volume = 1, .epoch = 1, .gen = 1, .mode = PROTO_PULL_FULL
  };
  struct proto_hash_request hr = {
    .segment = 1, .offset = 0, .length = 65536, .block = 5000
  };
  struct proto_seg_list_request lr = { .volume = 1, .max = 0 };
  struct proto_set_gen sg = { .segment = 1, .volume = 1, .gen = 1 };
  size_t n;

  /* The mode is the u32 after segment, volume, epoch and gen. */
  snprintf (pull.source, sizeof pull.source, "%s", addr);
  proto_encode_pull (&pull, &wb);
  if (wb.err == 0 && wb.len > 36)
    wb.data[35] = 7;
  n = wb_frame (buf, sizeof buf, PROTO_OP_SEG_PULL, 40, &wb);
  if (n)
    expect_error ("SEG_PULL bad mode", true, buf, n, 40, PROTO_EBADMSG, true);

  snprintf (pull.source, sizeof pull.source, "no port here");
  proto_encode_pull (&pull, &wb);
  n = wb_frame (buf, sizeof buf, PROTO_OP_SEG_PULL, 41, &wb);
  if (n)
    expect_error ("SEG_PULL bad source address", true, buf, n, 41, PROTO_EINVAL,
                  false);

  proto_encode_hash_request (&hr, &wb);
  n = wb_frame (buf, sizeof buf, PROTO_OP_SEG_HASH, 42, &wb);
  if (n)
    expect_error ("SEG_HASH block not a power of two", true, buf, n, 42,
                  PROTO_EBADMSG, true);

  hr.block = 4096;
  hr.offset = segment_size - 4096;
  hr.length = 8192;
  proto_encode_hash_request (&hr, &wb);
  n = wb_frame (buf, sizeof buf, PROTO_OP_SEG_HASH, 43, &wb);
  if (n)
    expect_error ("SEG_HASH past the segment", true, buf, n, 43, PROTO_ERANGE,
                  false);

  proto_encode_seg_list_request (&lr, &wb);
  n = wb_frame (buf, sizeof buf, PROTO_OP_SEG_LIST, 44, &wb);
  if (n)
    expect_error ("SEG_LIST max 0", true, buf, n, 44, PROTO_EBADMSG, true);

  put_header (buf, PROTO_MAGIC, PROTO_VERSION, PROTO_OP_SEG_FENCE, 0, 8, 45);
  memset (buf + PROTO_HEADER_SIZE, 0, 8);
  expect_error ("SEG_FENCE short payload", true, buf, PROTO_HEADER_SIZE + 8, 45,
                PROTO_EBADMSG, true);

  proto_encode_set_gen (&sg, &wb);
  proto_put_u32 (&wb, 0);
  n = wb_frame (buf, sizeof buf, PROTO_OP_SEG_SET_GEN, 46, &wb);
  if (n)
    expect_error ("SEG_SET_GEN trailing bytes", true, buf, n, 46, PROTO_EBADMSG,
                  true);
}

/* Each malformed frame, on its own connection. */
static void
malformed_cases (void)
{
  uint8_t buf[PROTO_HEADER_SIZE + PROTO_SEG_IO_SIZE + 256];
  struct proto_hello h = { .version = PROTO_VERSION,
                           .role = PROTO_ROLE_PLUGIN };
  struct proto_wbuf wb = { 0 };
  size_t n;

  put_header (buf, 0xdeadbeef, PROTO_VERSION, PROTO_OP_HELLO, 0, 0, 11);
  expect_error ("bad magic", false, buf, PROTO_HEADER_SIZE, 11, PROTO_EBADMSG,
                true);

  put_header (buf, PROTO_MAGIC, PROTO_VERSION + 1, PROTO_OP_HELLO, 0, 0, 12);
  expect_error ("wrong version", false, buf, PROTO_HEADER_SIZE, 12,
                PROTO_EPROTO, true);

  put_header (buf, PROTO_MAGIC, PROTO_VERSION, 99, 0, 0, 13);
  expect_error ("unknown opcode", true, buf, PROTO_HEADER_SIZE, 13,
                PROTO_EBADMSG, true);

  n = io_frame (buf, PROTO_OP_SEG_READ, PROTO_SEG_IO_SIZE, 14, 1, 0, 512);
  expect_error ("request before HELLO", false, buf, n, 14, PROTO_EPROTO, true);

  put_header (buf, PROTO_MAGIC, PROTO_VERSION, PROTO_OP_SEG_WRITE, 0,
              0xffffffff, 15);
  expect_error ("length over the limit", true, buf, PROTO_HEADER_SIZE, 15,
                proto_status_from_errno (EMSGSIZE), true);

  put_header (buf, PROTO_MAGIC, PROTO_VERSION, PROTO_OP_HELLO, 0x4000, 0, 16);
  expect_error ("unknown flag", false, buf, PROTO_HEADER_SIZE, 16,
                PROTO_EBADMSG, true);

  put_header (buf, PROTO_MAGIC, PROTO_VERSION, PROTO_OP_SEG_FLUSH,
              PROTO_FLAG_REPLY, 0, 17);
  expect_error ("reply frame as a request", true, buf, PROTO_HEADER_SIZE, 17,
                PROTO_EPROTO, true);

  proto_encode_hello (&h, &wb);
  if (wb.err == 0 && wb.len <= sizeof buf - PROTO_HEADER_SIZE) {
    put_header (buf, PROTO_MAGIC, PROTO_VERSION, PROTO_OP_HELLO, 0, wb.len, 18);
    memcpy (buf + PROTO_HEADER_SIZE, wb.data, wb.len);
    expect_error ("second HELLO", true, buf, PROTO_HEADER_SIZE + wb.len, 18,
                  PROTO_EPROTO, true);
  }
  proto_wbuf_free (&wb);

  put_header (buf, PROTO_MAGIC, PROTO_VERSION, PROTO_OP_HELLO, 0, 3, 19);
  memset (buf + PROTO_HEADER_SIZE, 0, 3);
  expect_error ("short HELLO payload", false, buf, PROTO_HEADER_SIZE + 3, 19,
                PROTO_EBADMSG, true);

  expect_close ("truncated header", false, buf, 10);
  expect_close ("truncated header after HELLO", true, buf, 23);

  n = io_frame (buf, PROTO_OP_SEG_WRITE, PROTO_SEG_IO_SIZE + 4096, 20, 1, 0,
                4096);
  expect_close ("truncated payload", true, buf, n + 100);

  n = io_frame (buf, PROTO_OP_SEG_WRITE, PROTO_SEG_IO_SIZE + 100, 21, 1, 0,
                200);
  memset (buf + n, 0xab, 100);
  expect_error ("SEG_WRITE payload != 40 + length", true, buf, n + 100, 21,
                PROTO_EBADMSG, true);

  put_header (buf, PROTO_MAGIC, PROTO_VERSION, PROTO_OP_SEG_READ, 0, 16, 22);
  memset (buf + PROTO_HEADER_SIZE, 0, 16);
  expect_error ("SEG_READ head too short", true, buf, PROTO_HEADER_SIZE + 16,
                22, PROTO_EBADMSG, true);

  n = io_frame (buf, PROTO_OP_SEG_READ, PROTO_SEG_IO_SIZE, 23, 1,
                segment_size - 10, 100);
  expect_error ("SEG_READ past the segment", true, buf, n, 23, PROTO_ERANGE,
                false);

  n = io_frame (buf, PROTO_OP_SEG_READ, PROTO_SEG_IO_SIZE, 24, 1, 0,
                PROTO_MAX_DATA + 1);
  expect_error ("SEG_READ length > PROTO_MAX_DATA", true, buf, n, 24,
                PROTO_ERANGE, false);

  n = io_frame (buf, PROTO_OP_SEG_READ, PROTO_SEG_IO_SIZE, 25, 1,
                UINT32_MAX - 10, 100);
  expect_error ("SEG_READ offset + length overflows", true, buf, n, 25,
                PROTO_ERANGE, false);

  put_header (buf, PROTO_MAGIC, PROTO_VERSION, PROTO_OP_SEG_DELETE, 0, 4, 26);
  memset (buf + PROTO_HEADER_SIZE, 0xff, 4);
  expect_error ("SEG_DELETE count past the payload", true, buf,
                PROTO_HEADER_SIZE + 4, 26, PROTO_EBADMSG, true);

  put_header (buf, PROTO_MAGIC, PROTO_VERSION, PROTO_OP_SEG_FLUSH, 0, 8, 27);
  memset (buf + PROTO_HEADER_SIZE, 0, 8);
  expect_error ("SEG_FLUSH with a payload", true, buf, PROTO_HEADER_SIZE + 8,
                27, PROTO_EBADMSG, true);

  malformed_repair_cases ();
}

/* Check the server's answer on FD (R: 0 or the -errno of sending the
 * request; REP: the reply if already read, else NULL) is an error reply
 * with STATUS followed by a close; report NAME and close FD.
 */
static void
refused (const char *name, int fd, int r, struct reply *rep, uint32_t status)
{
  struct reply own = { 0 };

  if (rep == NULL) {
    rep = &own;
    if (r == 0)
      r = recv_reply (fd, rep);
  }
  if (r < 0)
    report (name, false, "%s", strerror (-r));
  else if (rep->status != status)
    report (name, false, "got %s, expected %s: %s",
            proto_status_name (rep->status), proto_status_name (status),
            rep->msg);
  else if (!closed_by_server (fd))
    report (name, false, "%s, but the connection stayed open",
            proto_status_name (status));
  else
    report (name, true, "%s, then closed: %s", proto_status_name (status),
            rep->msg);
  free (rep->data);
  close (fd);
}

/* A client whose key differs from the server's: the server's proof
 * fails the client's check, so proto_handshake gives up before AUTH.
 */
static void
wrong_key_case (void)
{
  struct auth_key good = *auth_key_current (), bad;
  char errmsg[256];
  int fd = connect_or_die ();
  int r;

  if (auth_random (bad.bytes, sizeof bad.bytes) < 0) {
    report ("client with another key", false, "getrandom failed");
    close (fd);
    return;
  }
  auth_key_use (&bad);
  r = proto_handshake (fd, PROTO_ROLE_PLUGIN, NULL, NULL, errmsg,
                       sizeof errmsg);
  auth_key_use (&good);
  report ("client with another key", r == -EACCES, "%s: %s",
          r < 0 ? strerror (-r) : "succeeded", errmsg);
  close (fd);
}

/* Frames before authentication, each on its own connection: only HELLO
 * then AUTH, each at most PROTO_MAX_PREAUTH_PAYLOAD bytes, get through;
 * oversized frames are refused from their header alone (no payload is
 * sent: a server that waited for it would never answer).
 */
static void
preauth_cases (void)
{
  uint8_t buf[PROTO_HEADER_SIZE + PROTO_SEG_IO_SIZE + 256];
  uint8_t nonce[AUTH_CLIENT_HELLO_LEN] = { 0 };
  uint8_t proof[AUTH_MAC_SIZE];
  struct reply rep = { 0 };
  size_t n;
  int fd;

  put_header (buf, PROTO_MAGIC, PROTO_VERSION, PROTO_OP_AUTH, 0, AUTH_MAC_SIZE,
              60);
  memset (buf + PROTO_HEADER_SIZE, 0x5a, AUTH_MAC_SIZE);
  expect_error ("AUTH before HELLO", NO_HELLO, buf,
                PROTO_HEADER_SIZE + AUTH_MAC_SIZE, 60, PROTO_EPROTO, true);

  put_header (buf, PROTO_MAGIC, PROTO_VERSION, PROTO_OP_SEG_WRITE, 0,
              32 * 1024 * 1024, 61);
  expect_error ("32 MiB SEG_WRITE header before HELLO", NO_HELLO, buf,
                PROTO_HEADER_SIZE, 61, PROTO_EPROTO, true);
  put_header (buf, PROTO_MAGIC, PROTO_VERSION, PROTO_OP_SEG_WRITE, 0,
              32 * 1024 * 1024, 62);
  expect_error ("32 MiB SEG_WRITE header before AUTH", HELLO_ONLY, buf,
                PROTO_HEADER_SIZE, 62, PROTO_EPROTO, true);

  put_header (buf, PROTO_MAGIC, PROTO_VERSION, PROTO_OP_HELLO, 0,
              PROTO_MAX_PREAUTH_PAYLOAD + 1, 63);
  expect_error ("oversized HELLO header", NO_HELLO, buf, PROTO_HEADER_SIZE, 63,
                proto_status_from_errno (EMSGSIZE), true);
  put_header (buf, PROTO_MAGIC, PROTO_VERSION, PROTO_OP_AUTH, 0,
              PROTO_MAX_PREAUTH_PAYLOAD + 1, 64);
  expect_error ("oversized AUTH header", HELLO_ONLY, buf, PROTO_HEADER_SIZE, 64,
                proto_status_from_errno (EMSGSIZE), true);
  put_header (buf, PROTO_MAGIC, PROTO_VERSION, PROTO_OP_HELLO, 0, UINT32_MAX,
              65);
  expect_error ("4 GiB HELLO header", NO_HELLO, buf, PROTO_HEADER_SIZE, 65,
                proto_status_from_errno (EMSGSIZE), true);

  n = io_frame (buf, PROTO_OP_SEG_READ, PROTO_SEG_IO_SIZE, 66, 1, 0, 512);
  expect_error ("request between HELLO and AUTH", HELLO_ONLY, buf, n, 66,
                PROTO_EPROTO, true);

  put_header (buf, PROTO_MAGIC, PROTO_VERSION, PROTO_OP_AUTH, 0, AUTH_MAC_SIZE,
              67);
  memset (buf + PROTO_HEADER_SIZE, 0, AUTH_MAC_SIZE);
  expect_error ("AUTH after AUTH", AUTHED, buf,
                PROTO_HEADER_SIZE + AUTH_MAC_SIZE, 67, PROTO_EPROTO, true);

  /* HELLO without a nonce (a client without authentication), and with
   * a nonce of the wrong size.
   */
  fd = connect_or_die ();
  refused ("HELLO without a nonce", fd, raw_hello (fd, NULL, 0, &rep), &rep,
           PROTO_EACCES);
  fd = connect_or_die ();
  refused ("HELLO with a 16-byte nonce", fd, raw_hello (fd, nonce, 16, &rep),
           &rep, PROTO_EACCES);

  /* AUTH with a wrong proof, and with one of the wrong size. */
  fd = connect_or_die ();
  if (hello_only (fd, proof)) {
    proof[7] ^= 1;
    refused ("wrong proof", fd,
             send_frame (fd, PROTO_OP_AUTH, 0, 2, proof, sizeof proof), NULL,
             PROTO_EACCES);
  }
  else
    refused ("wrong proof", fd, -EPROTO, NULL, PROTO_EACCES);
  fd = connect_or_die ();
  if (hello_only (fd, proof))
    refused ("short proof", fd,
             send_frame (fd, PROTO_OP_AUTH, 0, 2, proof, sizeof proof - 1),
             NULL, PROTO_EACCES);
  else
    refused ("short proof", fd, -EPROTO, NULL, PROTO_EACCES);

  /* The right proof, sent by hand: the server then serves requests. */
  fd = connect_or_die ();
  if (!hello_only (fd, proof))
    report ("handshake by hand", false, "HELLO failed");
  else {
    bool ok = send_frame (fd, PROTO_OP_AUTH, 0, 2, proof, sizeof proof) == 0 &&
              recv_reply (fd, &rep) == 0 && rep.status == PROTO_OK &&
              rep.length == 0 && rep.tag == 2 && (rep.flags & PROTO_FLAG_REPLY);

    free (rep.data);
    rep.data = NULL;
    n = io_frame (buf, PROTO_OP_SEG_READ, PROTO_SEG_IO_SIZE, 3, random_id (), 0,
                  512);
    /* Served: an absent segment's read fails ENOENT (not EACCES). */
    ok = ok && full_write (fd, buf, n) == 0 && recv_reply (fd, &rep) == 0 &&
         rep.status == PROTO_ENOENT && rep.tag == 3;
    free (rep.data);
    report ("handshake by hand", ok, "AUTH answered OK, then SEG_READ");
  }
  close (fd);

  wrong_key_case ();
}

/* Call OPCODE on FD and wait for its reply into REP.  Returns true if the
 * reply is PROTO_OK with tag TAG.
 */
static bool
call (int fd, uint8_t opcode, uint16_t flags, uint64_t tag, const void *payload,
      uint32_t len, struct reply *rep)
{
  int r = send_frame (fd, opcode, flags, tag, payload, len);

  if (r == 0)
    r = recv_reply (fd, rep);
  if (r < 0) {
    fprintf (stderr, "%s: %s\n", proto_opcode_name (opcode), strerror (-r));
    return false;
  }
  if (rep->status != PROTO_OK || rep->tag != tag) {
    fprintf (stderr, "%s: %s: %s\n", proto_opcode_name (opcode),
             proto_status_name (rep->status), rep->msg);
    return false;
  }
  return true;
}

/* After all that, the server still writes and reads exact bytes. */
static void
round_trip (void)
{
  const uint32_t off = 512, len = 4096;
  uint8_t *wbuf = malloc (PROTO_SEG_IO_SIZE + len);
  uint8_t head[PROTO_SEG_IO_SIZE];
  struct proto_seg_io io = {
    .volume = 1, .epoch = 1, .offset = off, .length = len
  };
  struct reply rep = { 0 };
  uint8_t del[12];
  uint32_t i, v32;
  uint64_t v64;
  bool ok = false;
  int fd = connect_or_die ();

  /* A segment id no MDS hands out soon; deleted at the end. */
  if (wbuf == NULL || getrandom (&io.segment, sizeof io.segment, 0) == -1)
    goto out;
  io.segment |= UINT64_C (1) << 62;
  proto_encode_seg_io (&io, wbuf);
  for (i = 0; i < len; i++)
    wbuf[PROTO_SEG_IO_SIZE + i] = (uint8_t)(i * 7 + 3);
  if (!hello (fd) || !call (fd, PROTO_OP_SEG_WRITE, PROTO_FLAG_FUA, 100, wbuf,
                            PROTO_SEG_IO_SIZE + len, &rep))
    goto out;
  free (rep.data);

  /* Read the written range and the zeros before it. */
  io.offset = 0;
  io.length = off + len;
  proto_encode_seg_io (&io, head);
  if (!call (fd, PROTO_OP_SEG_READ, 0, 101, head, sizeof head, &rep))
    goto out;
  ok = rep.length == off + len;
  for (i = 0; ok && i < off; i++)
    ok = rep.data[i] == 0;
  ok = ok && memcmp (rep.data + off, wbuf + PROTO_SEG_IO_SIZE, len) == 0;
  free (rep.data);
  if (!ok)
    goto out;

  v32 = htobe32 (1);
  memcpy (del, &v32, 4);
  v64 = htobe64 (io.segment);
  memcpy (del + 4, &v64, 8);
  ok = call (fd, PROTO_OP_SEG_DELETE, 0, 102, del, sizeof del, &rep);
  free (rep.data);
out:
  report ("round trip after malformed input", ok,
          ok ? "HELLO, SEG_WRITE, SEG_READ, SEG_DELETE: exact bytes"
             : "failed");
  free (wbuf);
  close (fd);
}

/* ---- Fences, generations, hashes, lists and pulls ---- */

static const uint8_t zeros4k[4096];

/* A random id with bit 62 set: no MDS hands it out soon. */
static uint64_t
random_id (void)
{
  uint64_t id = 0;

  if (getrandom (&id, sizeof id, 0) != sizeof id) {
    perror ("getrandom");
    exit (EXIT_FAILURE);
  }
  return (id & ~(UINT64_C (3) << 62)) | (UINT64_C (1) << 62);
}

/* Many more pipelined requests than --max-inflight (64 by default):
 * the server stops reading at the bound and goes on as replies drain,
 * so every request is answered (backpressure, not an error).
 */
static void
pipelined (void)
{
  enum { N = 500, LEN = 4096 };
  const size_t frame = PROTO_HEADER_SIZE + PROTO_SEG_IO_SIZE;
  uint8_t *buf = malloc (N * frame);
  static bool seen[N];
  uint64_t seg = random_id ();
  struct reply rep;
  int i, answered = 0, r = 0;
  bool ok = buf != NULL;
  int fd = connect_or_die ();

  if (!ok || !hello (fd)) {
    report ("pipelined past --max-inflight", false, "handshake failed");
    goto out;
  }
  for (i = 0; i < N; i++)
    io_frame (buf + i * frame, PROTO_OP_SEG_READ, PROTO_SEG_IO_SIZE, 1000 + i,
              seg, 0, LEN);
  r = full_write (fd, buf, N * frame);
  for (i = 0; r == 0 && i < N; i++) {
    r = recv_reply (fd, &rep);
    if (r < 0)
      break;
    /* The segment is not on the server: every read fails ENOENT. */
    if (rep.status == PROTO_ENOENT && rep.tag >= 1000 && rep.tag < 1000 + N &&
        !seen[rep.tag - 1000]) {
      seen[rep.tag - 1000] = true;
      answered++;
    }
    free (rep.data);
  }
  report ("pipelined past --max-inflight", r == 0 && answered == N,
          "%d of %d SEG_READs answered%s%s", answered, N, r < 0 ? ": " : "",
          r < 0 ? strerror (-r) : "");
out:
  free (buf);
  close (fd);
}

/* Send a request and wait for its reply into REP (REP->data freed by
 * the caller).  Returns the reply's status, or UINT32_MAX on a transport
 * error or a reply with another tag.
 */
static uint32_t
request (int fd, uint8_t opcode, uint16_t flags, uint64_t tag,
         const void *payload, uint32_t len, struct reply *rep)
{
  int r = send_frame (fd, opcode, flags, tag, payload, len);

  memset (rep, 0, sizeof *rep);
  if (r == 0)
    r = recv_reply (fd, rep);
  if (r < 0 || rep->tag != tag) {
    fprintf (stderr, "%s: %s\n", proto_opcode_name (opcode),
             r < 0 ? strerror (-r) : "wrong tag");
    return UINT32_MAX;
  }
  return rep->status;
}

/* request() with the payload in WB (freed), dropping the reply data
 * unless REP is given.
 */
static uint32_t
request_wb (int fd, uint8_t opcode, uint64_t tag, struct proto_wbuf *wb,
            struct reply *rep)
{
  struct reply tmp;
  uint32_t st = UINT32_MAX;

  if (wb->err == 0)
    st = request (fd, opcode, 0, tag, wb->data, wb->len, rep ? rep : &tmp);
  proto_wbuf_free (wb);
  if (rep == NULL && st != UINT32_MAX)
    free (tmp.data);
  return st;
}

/* A SEG_WRITE (DATA, LEN bytes; NULL: a SEG_TRIM of LEN) with the given
 * head fields, the segment's index INDEX.  Returns the status; the
 * error message goes to MSG if it is not NULL.
 */
static uint32_t
seg_io_index (int fd, uint64_t tag, uint64_t segment, uint64_t volume,
              uint64_t epoch, uint64_t gen, uint64_t index, uint32_t offset,
              uint32_t len, const uint8_t *data, char *msg)
{
  struct proto_seg_io io = { .segment = segment,
                             .volume = volume,
                             .epoch = epoch,
                             .gen = gen,
                             .offset = offset,
                             .length = len,
                             .index = index };
  uint8_t *buf = malloc (PROTO_SEG_IO_SIZE + (data ? len : 0));
  struct reply rep;
  uint32_t st;

  if (buf == NULL)
    return UINT32_MAX;
  proto_encode_seg_io (&io, buf);
  if (data)
    memcpy (buf + PROTO_SEG_IO_SIZE, data, len);
  st = request (fd, data ? PROTO_OP_SEG_WRITE : PROTO_OP_SEG_TRIM, 0, tag, buf,
                PROTO_SEG_IO_SIZE + (data ? len : 0), &rep);
  if (st != UINT32_MAX) {
    if (msg)
      strcpy (msg, rep.msg);
    free (rep.data);
  }
  free (buf);
  return st;
}

/* seg_io_index without an index (PROTO_INDEX_NONE). */
static uint32_t
seg_io (int fd, uint64_t tag, uint64_t segment, uint64_t volume, uint64_t epoch,
        uint64_t gen, uint32_t offset, uint32_t len, const uint8_t *data)
{
  return seg_io_index (fd, tag, segment, volume, epoch, gen, PROTO_INDEX_NONE,
                       offset, len, data, NULL);
}

/* Read LEN bytes at OFFSET of SEGMENT into a malloc'd buffer (NULL on
 * failure).
 */
static uint8_t *
seg_read (int fd, uint64_t tag, uint64_t segment, uint32_t offset, uint32_t len)
{
  struct proto_seg_io io = { .segment = segment,
                             .offset = offset,
                             .length = len };
  uint8_t head[PROTO_SEG_IO_SIZE];
  struct reply rep;

  proto_encode_seg_io (&io, head);
  if (request (fd, PROTO_OP_SEG_READ, 0, tag, head, sizeof head, &rep) !=
          PROTO_OK ||
      rep.length != len) {
    free (rep.data);
    return NULL;
  }
  return rep.data;
}

/* SEG_READ of LEN bytes at offset 0 of SEGMENT with generation GEN.
 * Returns the status (the data is dropped).
 */
static uint32_t
read_status (int fd, uint64_t tag, uint64_t segment, uint64_t gen, uint32_t len)
{
  struct proto_seg_io io = { .segment = segment, .gen = gen, .length = len };
  uint8_t head[PROTO_SEG_IO_SIZE];
  struct reply rep;
  uint32_t st;

  proto_encode_seg_io (&io, head);
  st = request (fd, PROTO_OP_SEG_READ, 0, tag, head, sizeof head, &rep);
  if (st != UINT32_MAX)
    free (rep.data);
  return st;
}

/* SEG_FENCE (VOLUME, EPOCH).  Returns the status. */
static uint32_t
fence (int fd, uint64_t tag, uint64_t volume, uint64_t epoch)
{
  struct proto_fence f = { .volume = volume, .epoch = epoch };
  struct proto_wbuf wb = { 0 };

  proto_encode_fence (&f, &wb);
  return request_wb (fd, PROTO_OP_SEG_FENCE, tag, &wb, NULL);
}

/* SEG_SET_GEN (SEGMENT, VOLUME, GEN, INDEX).  Returns the status. */
static uint32_t
set_gen_index (int fd, uint64_t tag, uint64_t segment, uint64_t volume,
               uint64_t gen, uint64_t index)
{
  struct proto_set_gen sg = {
    .segment = segment, .volume = volume, .gen = gen, .index = index
  };
  struct proto_wbuf wb = { 0 };

  proto_encode_set_gen (&sg, &wb);
  return request_wb (fd, PROTO_OP_SEG_SET_GEN, tag, &wb, NULL);
}

/* SEG_SET_GEN (SEGMENT, VOLUME, GEN) without an index. */
static uint32_t
set_gen (int fd, uint64_t tag, uint64_t segment, uint64_t volume, uint64_t gen)
{
  struct proto_set_gen sg = {
    .segment = segment, .volume = volume, .gen = gen, .index = PROTO_INDEX_NONE
  };
  struct proto_wbuf wb = { 0 };

  proto_encode_set_gen (&sg, &wb);
  return request_wb (fd, PROTO_OP_SEG_SET_GEN, tag, &wb, NULL);
}

/* SEG_HASH of the whole SEGMENT in BLOCK-byte blocks into *H (caller
 * frees with proto_hash_free).  Returns true on success.
 */
static bool
hash (int fd, uint64_t tag, uint64_t segment, uint32_t block,
      struct proto_hash *h)
{
  struct proto_hash_request hr = { .segment = segment,
                                   .length = segment_size,
                                   .block = block };
  struct proto_wbuf wb = { 0 };
  struct reply rep;
  bool ok;

  memset (h, 0, sizeof *h);
  proto_encode_hash_request (&hr, &wb);
  ok = request_wb (fd, PROTO_OP_SEG_HASH, tag, &wb, &rep) == PROTO_OK &&
       proto_decode_hash (rep.data, rep.length, h) == 0 &&
       h->n == segment_size / block;
  free (rep.data);
  return ok;
}

/* SEG_LIST into *L (caller frees).  Returns true on success. */
static bool
seg_list (int fd, uint64_t tag, uint64_t volume, uint64_t min_epoch,
          uint64_t start_after, uint32_t max, struct proto_segment_list *l)
{
  struct proto_seg_list_request q = { .volume = volume,
                                      .min_epoch = min_epoch,
                                      .start_after = start_after,
                                      .max = max };
  struct proto_wbuf wb = { 0 };
  struct reply rep;
  bool ok;

  memset (l, 0, sizeof *l);
  proto_encode_seg_list_request (&q, &wb);
  ok = request_wb (fd, PROTO_OP_SEG_LIST, tag, &wb, &rep) == PROTO_OK &&
       proto_decode_segment_list (rep.data, rep.length, l) == 0;
  free (rep.data);
  return ok;
}

/* SEG_DELETE of the N segments IDS on FD (best effort). */
static void
delete_segments (int fd, uint64_t tag, const uint64_t *ids, uint32_t n)
{
  struct proto_segment_list l = { .n = n, .segments = (uint64_t *)ids };
  struct proto_wbuf wb = { 0 };

  proto_encode_segment_list (&l, &wb);
  if (request_wb (fd, PROTO_OP_SEG_DELETE, tag, &wb, NULL) != PROTO_OK)
    report ("SEG_DELETE of the test's segments", false, "failed");
}

/* Report a status check: STATUS must be EXPECT. */
static void
expect_status (const char *name, uint32_t status, uint32_t expect)
{
  report (name, status == expect, "got %s, expected %s",
          status == UINT32_MAX ? "no reply" : proto_status_name (status),
          proto_status_name (expect));
}

/* Fenced writers get ESTALE; writers with an old generation ESTALEMAP. */
static void
fences_and_generations (void)
{
  uint64_t vol = random_id (), seg = random_id (), seg2 = random_id ();
  static uint8_t data[4096];
  uint64_t ids[2] = { seg, seg2 };
  uint8_t *back;
  int fd = connect_or_die ();

  memset (data, 0x5a, sizeof data);
  if (!hello (fd)) {
    report ("fences", false, "HELLO failed");
    goto out;
  }
  expect_status ("SEG_FENCE at epoch 5", fence (fd, 200, vol, 5), PROTO_OK);
  expect_status ("write at epoch 4 after the fence",
                 seg_io (fd, 201, seg, vol, 4, 0, 0, 4096, data), PROTO_ESTALE);
  expect_status ("trim at epoch 4 after the fence",
                 seg_io (fd, 202, seg, vol, 4, 0, 0, 4096, NULL), PROTO_ESTALE);
  expect_status ("write at epoch 5 after the fence",
                 seg_io (fd, 203, seg, vol, 5, 0, 0, 4096, data), PROTO_OK);
  expect_status ("SEG_FENCE lower (no effect)", fence (fd, 204, vol, 3),
                 PROTO_OK);
  expect_status ("write at epoch 4 after a lower fence",
                 seg_io (fd, 205, seg, vol, 4, 0, 0, 4096, data), PROTO_ESTALE);
  expect_status ("write to another volume at epoch 1",
                 seg_io (fd, 206, seg2, vol + 1, 1, 0, 0, 4096, data),
                 PROTO_OK);

  expect_status ("SEG_SET_GEN 7", set_gen (fd, 210, seg, vol, 7), PROTO_OK);
  expect_status ("write with gen 6 after SEG_SET_GEN 7",
                 seg_io (fd, 211, seg, vol, 5, 6, 0, 4096, data),
                 PROTO_ESTALEMAP);
  expect_status ("trim with gen 6 after SEG_SET_GEN 7",
                 seg_io (fd, 212, seg, vol, 5, 6, 0, 4096, NULL),
                 PROTO_ESTALEMAP);
  expect_status ("SEG_SET_GEN 4 (never lowers)", set_gen (fd, 213, seg, vol, 4),
                 PROTO_OK);
  expect_status ("write with gen 6 after SEG_SET_GEN 4",
                 seg_io (fd, 214, seg, vol, 5, 6, 0, 4096, data),
                 PROTO_ESTALEMAP);
  expect_status ("write with gen 7",
                 seg_io (fd, 215, seg, vol, 5, 7, 4096, 4096, data), PROTO_OK);
  expect_status ("write with gen 8",
                 seg_io (fd, 216, seg, vol, 5, 8, 8192, 4096, data), PROTO_OK);
  back = seg_read (fd, 217, seg, 0, 3 * 4096);
  report ("read with gen 0 ignores epoch and gen",
          back != NULL && memcmp (back, data, 4096) == 0 &&
              memcmp (back + 4096, data, 4096) == 0 &&
              memcmp (back + 8192, data, 4096) == 0,
          "exact bytes");
  free (back);
  expect_status ("read with gen 6 after SEG_SET_GEN 7",
                 read_status (fd, 218, seg, 6, 4096), PROTO_ESTALEMAP);
  expect_status ("read with gen 7", read_status (fd, 219, seg, 7, 4096),
                 PROTO_OK);
  expect_status ("read with gen 8 (newer than the server's)",
                 read_status (fd, 225, seg, 8, 4096), PROTO_OK);

  expect_status ("SEG_SET_GEN 3 of an absent segment",
                 set_gen (fd, 220, seg2 + 1, vol, 3), PROTO_OK);
  expect_status ("write with gen 2 to the segment SEG_SET_GEN made",
                 seg_io (fd, 221, seg2 + 1, vol, 5, 2, 0, 4096, data),
                 PROTO_ESTALEMAP);
  back = seg_read (fd, 222, seg2 + 1, 0, 4096);
  report ("the segment SEG_SET_GEN made is empty",
          back != NULL && memcmp (back, zeros4k, 4096) == 0, "zeros");
  free (back);
  delete_segments (fd, 223, ids, 2);
  ids[0] = seg2 + 1;
  delete_segments (fd, 224, ids, 1);
out:
  close (fd);
}

/* A deleted segment is refused (ESTALEMAP) until SEG_SET_GEN makes this
 * server its replica again.
 */
static void
tombstones (void)
{
  uint64_t vol = random_id (), seg = random_id (), never = random_id ();
  static uint8_t data[4096];
  struct proto_seg_io io = { .segment = seg, .length = 4096 };
  uint8_t head[PROTO_SEG_IO_SIZE], *back;
  struct reply rep;
  uint32_t st;
  int fd = connect_or_die ();

  memset (data, 0x77, sizeof data);
  if (!hello (fd)) {
    report ("tombstones", false, "HELLO failed");
    goto out;
  }
  expect_status ("write before the delete",
                 seg_io (fd, 600, seg, vol, 1, 1, 0, 4096, data), PROTO_OK);
  delete_segments (fd, 601, &seg, 1);
  proto_encode_seg_io (&io, head);
  st = request (fd, PROTO_OP_SEG_READ, 0, 602, head, sizeof head, &rep);
  if (st != UINT32_MAX)
    free (rep.data);
  expect_status ("read of a deleted segment", st, PROTO_ESTALEMAP);
  expect_status ("write to a deleted segment",
                 seg_io (fd, 603, seg, vol, 1, 1, 0, 4096, data),
                 PROTO_ESTALEMAP);
  expect_status ("trim of a deleted segment",
                 seg_io (fd, 604, seg, vol, 1, 1, 0, 4096, NULL),
                 PROTO_ESTALEMAP);
  expect_status ("SEG_SET_GEN of a deleted segment",
                 set_gen (fd, 605, seg, vol, 2), PROTO_OK);
  back = seg_read (fd, 606, seg, 0, 4096);
  report ("SEG_SET_GEN made it an empty segment again",
          back != NULL && memcmp (back, zeros4k, 4096) == 0, "zeros");
  free (back);
  expect_status ("write after SEG_SET_GEN",
                 seg_io (fd, 607, seg, vol, 1, 2, 0, 4096, data), PROTO_OK);

  expect_status ("read of a segment never written here",
                 read_status (fd, 611, never, 0, 4096), PROTO_ENOENT);
  expect_status ("read with a gen of a segment never written here",
                 read_status (fd, 612, never, 3, 4096), PROTO_ENOENT);
  delete_segments (fd, 608, &never, 1);
  expect_status ("read of a segment deleted before it was written",
                 read_status (fd, 613, never, 0, 4096), PROTO_ESTALEMAP);
  expect_status ("write to a segment deleted before it was written",
                 seg_io (fd, 609, never, vol, 1, 1, 0, 4096, data),
                 PROTO_ESTALEMAP);
  delete_segments (fd, 610, &seg, 1);
out:
  close (fd);
}

/* SEG_HASH of identical data matches; SEG_LIST filters and pages. */
static void
hashes_and_lists (void)
{
  uint64_t vol = random_id (), a = random_id (), b = random_id ();
  uint64_t lvol = random_id (), base = random_id (),
           ids[5] = { a, b, base + 1, base + 2, base + 3 };
  struct proto_hash ha, hb, hz;
  struct proto_segment_list l;
  static uint8_t data[8192];
  uint32_t i, zcrc = crc32c (0, zeros4k, sizeof zeros4k);
  bool ok;
  int fd = connect_or_die ();

  for (i = 0; i < sizeof data; i++)
    data[i] = (uint8_t)(i * 13 + 1);
  if (!hello (fd)) {
    report ("hashes", false, "HELLO failed");
    goto out;
  }
  ok = seg_io (fd, 300, a, vol, 9, 0, 4096, sizeof data, data) == PROTO_OK &&
       seg_io (fd, 301, b, vol, 9, 0, 4096, sizeof data, data) == PROTO_OK &&
       hash (fd, 302, a, 4096, &ha) && hash (fd, 303, b, 4096, &hb) &&
       hash (fd, 304, random_id (), 4096, &hz);
  report ("SEG_HASH of two segments and an absent one", ok, "answered");
  if (ok) {
    ok = memcmp (ha.crcs, hb.crcs, ha.n * 4) == 0 && ha.epoch == 9 &&
         hb.epoch == 9;
    report ("SEG_HASH of identical data matches", ok,
            "%" PRIu32 " blocks, epoch %" PRIu64, ha.n, ha.epoch);
    ok = ha.crcs[0] == zcrc && ha.crcs[1] == crc32c (0, data, 4096) &&
         ha.crcs[2] == crc32c (0, data + 4096, 4096) && ha.crcs[3] == zcrc;
    report ("SEG_HASH is the CRC-32C of each block", ok, "blocks 0-3");
    ok = hz.epoch == 0;
    for (i = 0; ok && i < hz.n; i++)
      ok = hz.crcs[i] == zcrc;
    report ("SEG_HASH of an absent segment is zeros, epoch 0", ok,
            "%" PRIu32 " blocks", hz.n);
  }
  proto_hash_free (&ha);
  proto_hash_free (&hb);
  proto_hash_free (&hz);

  ok = seg_io (fd, 310, base + 3, lvol, 7, 0, 0, 4096, data) == PROTO_OK &&
       seg_io (fd, 311, base + 1, lvol, 2, 0, 0, 4096, data) == PROTO_OK &&
       seg_io (fd, 312, base + 2, lvol, 5, 0, 0, 4096, data) == PROTO_OK &&
       seg_list (fd, 313, lvol, 5, base, 100, &l);
  ok = ok && l.n == 2 && l.segments[0] == base + 2 && l.segments[1] == base + 3;
  report ("SEG_LIST min_epoch 5 after BASE", ok, "%" PRIu32 " segments", l.n);
  proto_segment_list_free (&l);
  ok = seg_list (fd, 314, lvol, 0, base + 1, 1, &l) && l.n == 1 &&
       l.segments[0] == base + 2;
  report ("SEG_LIST start_after and max", ok, "%" PRIu32 " segments", l.n);
  proto_segment_list_free (&l);
  ok = seg_list (fd, 315, lvol, 10, 0, 100, &l) && l.n == 0;
  report ("SEG_LIST min_epoch above every segment", ok, "%" PRIu32 " segments",
          l.n);
  proto_segment_list_free (&l);
  delete_segments (fd, 316, ids, 5);
out:
  close (fd);
}

/* SEG_DESCRIBE after START_AFTER, at most MAX, into *D (caller frees
 * with proto_describe_free).  Returns true on success.
 */
static bool
describe (int fd, uint64_t tag, uint64_t start_after, uint32_t max,
          struct proto_describe *d)
{
  struct proto_describe_request q = { start_after, max };
  struct proto_wbuf wb = { 0 };
  struct reply rep = { .data = NULL };
  bool ok;

  memset (d, 0, sizeof *d);
  proto_encode_describe_request (&q, &wb);
  ok = request_wb (fd, PROTO_OP_SEG_DESCRIBE, tag, &wb, &rep) == PROTO_OK &&
       proto_decode_describe (rep.data, rep.length, d) == 0;
  free (rep.data);
  return ok;
}

/* TABLES_PUT (VERSION, BLOB of LEN bytes) or, BLOB NULL and LEN 0 with
 * GET true, TABLES_GET; the reply into *T, the first 64 bytes of its
 * blob copied into OUT (64 bytes).  Returns true on success.
 */
static bool
tables (int fd, uint64_t tag, bool get, uint64_t version, const void *blob,
        uint32_t len, struct proto_tables *t, uint8_t *out)
{
  struct proto_tables in = { version, blob, len };
  struct proto_wbuf wb = { 0 };
  struct reply rep = { .data = NULL };
  bool ok;

  if (!get)
    proto_encode_tables (&in, &wb);
  ok = request_wb (fd, get ? PROTO_OP_TABLES_GET : PROTO_OP_TABLES_PUT, tag,
                   &wb, &rep) == PROTO_OK &&
       proto_decode_tables (rep.data, rep.length, t) == 0;
  if (ok && t->len > 0)
    memcpy (out, t->blob, t->len < 64 ? t->len : 64);
  free (rep.data);
  return ok;
}

/* Segment indexes: recorded by the first request that carries one,
 * contradictions refused; SEG_DESCRIBE shows them; TABLES_PUT keeps the
 * newest version.
 */
static void
indexes_and_tables (void)
{
  uint64_t vol = random_id (), s = random_id (), t = random_id ();
  static uint8_t data[4096];
  struct proto_describe d;
  struct proto_tables tb;
  uint8_t blob[64];
  char msg[PROTO_ERRMSG_MAX + 1] = "";
  uint64_t v0;
  bool ok;
  int fd = connect_or_die ();

  memset (data, 0x3c, sizeof data);
  if (!hello (fd)) {
    report ("indexes", false, "HELLO failed");
    goto out;
  }
  ok = seg_io_index (fd, 500, s, vol, 1, 0, 3, 0, 4096, data, NULL) ==
           PROTO_OK &&
       seg_io_index (fd, 501, s, vol, 1, 0, 4, 0, 4096, data, msg) ==
           PROTO_EINVAL &&
       strstr (msg, "index 4") != NULL && strstr (msg, "(3)") != NULL;
  report ("a write with another index is refused", ok, "%s", msg);
  ok = seg_io (fd, 502, s, vol, 1, 0, 0, 4096, data) == PROTO_OK &&
       seg_io_index (fd, 503, s, vol, 1, 0, 3, 0, 4096, NULL, NULL) ==
           PROTO_OK &&
       set_gen_index (fd, 504, s, vol, 2, 4) == PROTO_EINVAL &&
       set_gen_index (fd, 505, s, vol, 2, 3) == PROTO_OK;
  report ("no index or the same index is fine; SEG_SET_GEN checks it", ok,
          "answered");
  ok = seg_io (fd, 506, t, vol, 2, 0, 0, 4096, data) == PROTO_OK &&
       describe (fd, 507, t - 1, 1, &d) && d.n == 1 && d.segs[0].segment == t &&
       d.segs[0].index == PROTO_INDEX_NONE && d.nfences == 0;
  report ("SEG_DESCRIBE: a segment written without an index", ok,
          "%" PRIu32 " entries", d.n);
  proto_describe_free (&d);
  ok = seg_io_index (fd, 508, t, vol, 2, 0, 9, 0, 4096, data, NULL) ==
           PROTO_OK &&
       describe (fd, 509, t - 1, 1, &d) && d.n == 1 && d.segs[0].index == 9 &&
       d.segs[0].epoch == 2 && d.segs[0].volume == vol;
  report ("SEG_DESCRIBE: the index learned from a later write", ok,
          "%" PRIu32 " entries", d.n);
  proto_describe_free (&d);
  ok = describe (fd, 510, s - 1, 1, &d) && d.n == 1 && d.segs[0].index == 3 &&
       d.segs[0].gen == 2 && d.segs[0].epoch == 1 && d.segs[0].state == 0;
  report ("SEG_DESCRIBE: index, generation, epoch", ok, "%" PRIu32 " entries",
          d.n);
  proto_describe_free (&d);
  ok = describe (fd, 511, 0, 100000, &d) && d.n >= 2 && d.n <= PROTO_LIST_MAX;
  report ("SEG_DESCRIBE: a first page, max above the limit", ok,
          "%" PRIu32 " entries, %" PRIu32 " fences", d.n, d.nfences);
  proto_describe_free (&d);

  ok = tables (fd, 520, true, 0, NULL, 0, &tb, blob);
  v0 = tb.version;
  ok = ok && tables (fd, 521, false, v0 + 100, "abc", 3, &tb, blob) &&
       tb.version == v0 + 100 && tb.len == 0;
  ok = ok && tables (fd, 522, true, 0, NULL, 0, &tb, blob) &&
       tb.version == v0 + 100 && tb.len == 3 && memcmp (blob, "abc", 3) == 0;
  report ("TABLES_PUT of a newer version, TABLES_GET", ok, "version %" PRIu64,
          tb.version);
  ok = tables (fd, 523, false, v0 + 50, "old", 3, &tb, blob) &&
       tb.version == v0 + 100 &&
       tables (fd, 524, false, v0 + 100, "xyz", 3, &tb, blob) &&
       tb.version == v0 + 100 &&
       tables (fd, 525, true, 0, NULL, 0, &tb, blob) &&
       tb.version == v0 + 100 && memcmp (blob, "abc", 3) == 0;
  report ("TABLES_PUT of an older or the same version keeps the newer", ok,
          "version %" PRIu64, tb.version);
  delete_segments (fd, 530, (uint64_t[]){ s, t }, 2);
out:
  close (fd);
}

/* Compare SEGMENT on both servers (SEG_HASH, 4 KiB blocks). */
static bool
same_on_both (int fd, int fd2, uint64_t segment)
{
  struct proto_hash h1, h2;
  bool ok = hash (fd, 400, segment, 4096, &h1) &&
            hash (fd2, 401, segment, 4096, &h2) &&
            memcmp (h1.crcs, h2.crcs, h1.n * 4) == 0;

  proto_hash_free (&h1);
  proto_hash_free (&h2);
  return ok;
}

/* SEG_PULL from SOURCE to ADDR; MODE, BANDWIDTH as given.  With WRITE
 * (4 KiB at 8192), a client writes to the target while the copy waits
 * for its bandwidth.  Returns the pull's status.
 */
static uint32_t
pull (uint64_t tag, uint64_t segment, uint64_t volume, uint64_t epoch,
      uint64_t gen, uint32_t mode, uint64_t bandwidth, const uint8_t *write,
      const char *source)
{
  struct proto_pull p = { .segment = segment,
                          .volume = volume,
                          .epoch = epoch,
                          .gen = gen,
                          .mode = mode,
                          .bandwidth = bandwidth };
  struct proto_wbuf wb = { 0 };
  struct reply rep;
  uint32_t st = UINT32_MAX;
  int fd = connect_or_die (), fd2 = -1;

  snprintf (p.source, sizeof p.source, "%s", source);
  proto_encode_pull (&p, &wb);
  if (!hello (fd) || wb.err ||
      send_frame (fd, PROTO_OP_SEG_PULL, 0, tag, wb.data, wb.len) < 0)
    goto out;
  if (write) {
    fd2 = connect_or_die ();
    usleep (200000);
    expect_status ("client write during the pull",
                   hello (fd2) ? seg_io (fd2, tag + 1, segment, volume, epoch,
                                         gen, 8192, 4096, write)
                               : UINT32_MAX,
                   PROTO_OK);
  }
  if (recv_reply (fd, &rep) == 0 && rep.tag == tag) {
    st = rep.status;
    if (st != PROTO_OK)
      fprintf (stderr, "SEG_PULL: %s: %s\n", proto_status_name (st), rep.msg);
    free (rep.data);
  }
out:
  proto_wbuf_free (&wb);
  if (fd2 >= 0)
    close (fd2);
  close (fd);
  return st;
}

/* A write that reaches the target after SEG_SET_GEN but before the
 * SEG_PULL survives the copy if it carries the pull's generation, and is
 * overwritten if it is older (written before the target's copy began).
 * X is a segment of data (overwritten), W 4 KiB.
 */
static void
pulls_early_writes (int fd, int fd2, uint8_t *x, const uint8_t *w)
{
  uint64_t vol = random_id (), seg = random_id (), seg2 = random_id ();
  uint64_t ids[2] = { seg, seg2 };
  uint32_t i, len = segment_size;
  uint8_t *back;

  for (i = 0; i < len; i++)
    x[i] = (uint8_t)(i * 11 + 3);
  expect_status ("source write (early writes)",
                 seg_io (fd2, 540, seg, vol, 1, 7, 0, len, x), PROTO_OK);
  expect_status ("source write (older writes)",
                 seg_io (fd2, 541, seg2, vol, 1, 6, 0, len, x), PROTO_OK);
  expect_status ("SEG_SET_GEN 7 on the target", set_gen (fd, 542, seg, vol, 7),
                 PROTO_OK);
  expect_status ("target write with gen 7 before the pull",
                 seg_io (fd, 543, seg, vol, 1, 7, 0, 4096, w), PROTO_OK);
  expect_status ("SEG_SET_GEN 5 on the target", set_gen (fd, 544, seg2, vol, 5),
                 PROTO_OK);
  expect_status ("target write with gen 5 before the pull",
                 seg_io (fd, 545, seg2, vol, 1, 5, 0, 4096, w), PROTO_OK);
  expect_status ("SEG_PULL gen 7 full",
                 pull (546, seg, vol, 1, 7, PROTO_PULL_FULL, 0, NULL, addr2),
                 PROTO_OK);
  expect_status ("SEG_PULL gen 6 diff",
                 pull (547, seg2, vol, 1, 6, PROTO_PULL_DIFF, 0, NULL, addr2),
                 PROTO_OK);
  back = seg_read (fd, 548, seg, 0, len);
  report ("a write with the pull's generation before the pull survives",
          back != NULL && memcmp (back, w, 4096) == 0 &&
              memcmp (back + 4096, x + 4096, len - 4096) == 0,
          "exact bytes");
  free (back);
  back = seg_read (fd, 549, seg2, 0, len);
  report ("an older write before the pull is copied over",
          back != NULL && memcmp (back, x, len) == 0, "exact bytes");
  free (back);
  delete_segments (fd, 550, ids, 2);
  delete_segments (fd2, 551, ids, 2);
}

/* SEG_PULL from ADDR2 to ADDR: FULL, then DIFF with a client write
 * during the copy.
 */
static void
pulls (void)
{
  uint64_t vol = random_id (), seg = random_id ();
  uint32_t i, len = segment_size;
  uint8_t *x = malloc (len), *back = NULL;
  static uint8_t w[4096];
  struct proto_segment_list l = { 0 };
  int fd = connect_or_die (), fd2 = connect_to_or_die (addr2);
  uint32_t st;
  bool ok;

  if (x == NULL || !hello (fd) || !hello (fd2)) {
    report ("pulls", false, "HELLO failed");
    goto out;
  }
  for (i = 0; i < len; i++)
    x[i] = (uint8_t)(i * 31 + 7);
  memset (w, 0xee, sizeof w);

  /* FULL: the source has X, the target nothing. */
  expect_status ("source write", seg_io (fd2, 500, seg, vol, 3, 0, 0, len, x),
                 PROTO_OK);
  expect_status ("SEG_PULL full",
                 pull (501, seg, vol, 3, 2, PROTO_PULL_FULL, 0, NULL, addr2),
                 PROTO_OK);
  back = seg_read (fd, 502, seg, 0, len);
  report ("after SEG_PULL full the target has the source's bytes",
          back != NULL && memcmp (back, x, len) == 0, "%" PRIu32 " bytes", len);
  free (back);
  ok =
      seg_list (fd, 503, vol, 3, 0, 10, &l) && l.n == 1 && l.segments[0] == seg;
  report ("the pull recorded its epoch", ok, "SEG_LIST min_epoch 3");
  proto_segment_list_free (&l);
  expect_status ("the pull recorded its generation",
                 seg_io (fd, 504, seg, vol, 3, 1, 0, 4096, x), PROTO_ESTALEMAP);

  /* DIFF: the target differs everywhere; a client writes W at 8192
   * while the copy waits for its bandwidth (one segment a second).
   */
  for (i = 0; i < len; i++)
    x[i] = (uint8_t)(i * 17 + 5);
  expect_status ("source write 2", seg_io (fd2, 510, seg, vol, 4, 2, 0, len, x),
                 PROTO_OK);
  expect_status ("SEG_PULL diff with a client write",
                 pull (511, seg, vol, 4, 3, PROTO_PULL_DIFF, len, w, addr2),
                 PROTO_OK);
  back = seg_read (fd, 513, seg, 0, len);
  ok = back != NULL && memcmp (back, x, 8192) == 0 &&
       memcmp (back + 8192, w, 4096) == 0 &&
       memcmp (back + 12288, x + 12288, len - 12288) == 0;
  report ("the client write survived the copy, the rest was copied", ok,
          "exact bytes");
  free (back);
  expect_status ("source write 3",
                 seg_io (fd2, 514, seg, vol, 4, 3, 8192, 4096, w), PROTO_OK);
  report ("both replicas equal", same_on_both (fd, fd2, seg), "SEG_HASH");
  st = pull (530, seg, vol, 4, 3, PROTO_PULL_FULL, 0, NULL,
             "unix:/nonexistent/tessera.sock");
  report ("SEG_PULL from a server that is not there fails",
          st != PROTO_OK && st != UINT32_MAX, "%s",
          st == UINT32_MAX ? "no reply" : proto_status_name (st));
  delete_segments (fd, 520, &seg, 1);
  delete_segments (fd2, 521, &seg, 1);

  /* The source does not hold the segment (allocated, never written):
   * its SEG_READs fail ENOENT and the copy is zeros.
   */
  seg = random_id ();
  expect_status ("SEG_PULL full of a segment the source does not hold",
                 pull (532, seg, vol, 4, 3, PROTO_PULL_FULL, 0, NULL, addr2),
                 PROTO_OK);
  back = seg_read (fd, 533, seg, 0, 4096);
  report ("the pulled segment is zeros",
          back != NULL && memcmp (back, zeros4k, 4096) == 0, "zeros");
  free (back);
  delete_segments (fd, 534, &seg, 1);
  pulls_early_writes (fd, fd2, x, w);
out:
  free (x);
  close (fd);
  close (fd2);
}

/* Parse ADDR and SEGMENT_SIZE, run every case, report. */
int
main (int argc, char **argv)
{
  const char *key_file;
  struct auth_key key;
  char errmsg[512];
  uint64_t size;

  if ((argc != 3 && argc != 4) || parse_size (argv[2], &size) < 0 ||
      size < 65536 || size > UINT32_MAX) {
    fprintf (stderr, "usage: test-ss-malformed ADDR SEGMENT_SIZE [ADDR2]\n");
    exit (EXIT_FAILURE);
  }
  addr = argv[1];
  segment_size = size;
  if (argc == 4)
    addr2 = argv[3];
  key_file = getenv ("TESSERA_KEY_FILE");
  if (key_file == NULL ||
      auth_key_load (key_file, &key, errmsg, sizeof errmsg) < 0) {
    fprintf (stderr, "test-ss-malformed: %s\n",
             key_file ? errmsg : "TESSERA_KEY_FILE is not set");
    exit (EXIT_FAILURE);
  }
  auth_key_use (&key);
  preauth_cases ();
  malformed_cases ();
  round_trip ();
  pipelined ();
  fences_and_generations ();
  tombstones ();
  hashes_and_lists ();
  indexes_and_tables ();
  if (addr2)
    pulls ();
  printf ("%d failed\n", failures);
  return failures ? EXIT_FAILURE : EXIT_SUCCESS;
}

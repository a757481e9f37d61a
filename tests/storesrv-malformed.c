/* storesrv-malformed ADDR SEGMENT_SIZE
 *
 * Send malformed frames to a running storage server, each on a fresh
 * connection, and check that each gets the right error status (then a
 * close), or just a close for truncated frames; then check that a normal
 * HELLO + SEG_WRITE + SEG_READ round trip still returns exact bytes.
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

#include "buf.h"
#include "full-rw.h"
#include "parse.h"
#include "protocol.h"
#include "sock.h"

#define TIMEOUT_MS 10000

static const char *addr;
static uint32_t segment_size;
static int failures;

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

/* Connect to the server, exiting on failure (nothing can be tested). */
static int
connect_or_die (void)
{
  int fd = sock_connect (addr, TIMEOUT_MS);

  if (fd < 0 || sock_set_timeout (fd, TIMEOUT_MS) < 0) {
    fprintf (stderr, "storesrv-malformed: connect: %s: %s\n", addr,
             strerror (fd < 0 ? -fd : errno));
    exit (EXIT_FAILURE);
  }
  return fd;
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

/* Send a HELLO on FD and check the reply.  Returns true if it worked. */
static bool
hello (int fd)
{
  struct proto_hello h = { .version = PROTO_VERSION,
                           .role = PROTO_ROLE_PLUGIN };
  struct proto_wbuf wb = { 0 };
  struct proto_hello peer;
  struct reply rep;
  bool ok;

  proto_encode_hello (&h, &wb);
  ok = wb.err == 0 &&
       send_frame (fd, PROTO_OP_HELLO, 0, 1, wb.data, wb.len) == 0 &&
       recv_reply (fd, &rep) == 0 && rep.status == PROTO_OK &&
       (rep.flags & PROTO_FLAG_REPLY) && rep.tag == 1 &&
       proto_decode_hello (rep.data, rep.length, &peer) == 0 &&
       peer.role == PROTO_ROLE_STORESRV;
  if (ok)
    free (rep.data);
  proto_wbuf_free (&wb);
  return ok;
}

/* Send the raw bytes BUF (LEN) on a fresh connection (after a HELLO if
 * WITH_HELLO) and expect an error reply with STATUS and tag TAG, then a
 * close if CLOSES.
 */
static void
expect_error (const char *name, bool with_hello, const void *buf, size_t len,
              uint64_t tag, uint32_t status, bool closes)
{
  struct reply rep;
  int fd = connect_or_die ();
  int r;

  if (with_hello && !hello (fd)) {
    report (name, false, "HELLO failed");
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
expect_close (const char *name, bool with_hello, const void *buf, size_t len)
{
  int fd = connect_or_die ();

  if (with_hello && !hello (fd))
    report (name, false, "HELLO failed");
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

/* A frame with a 32-byte segment I/O head into BUF; returns its size. */
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
  expect_error ("SEG_WRITE payload != 32 + length", true, buf, n + 100, 21,
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

/* Parse ADDR and SEGMENT_SIZE, run every case, report. */
int
main (int argc, char **argv)
{
  uint64_t size;

  if (argc != 3 || parse_size (argv[2], &size) < 0 || size == 0 ||
      size > UINT32_MAX) {
    fprintf (stderr, "usage: storesrv-malformed ADDR SEGMENT_SIZE\n");
    exit (EXIT_FAILURE);
  }
  addr = argv[1];
  segment_size = size;
  malformed_cases ();
  round_trip ();
  printf ("%d failed\n", failures);
  return failures ? EXIT_FAILURE : EXIT_SUCCESS;
}

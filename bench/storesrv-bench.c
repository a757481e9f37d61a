/* storesrv-bench: drive one tessera-storesrv directly over its protocol.
 *
 *   storesrv-bench ADDR [-o read|write] [-b BYTES] [-q DEPTH] [-t SECONDS]
 *                  [-n SEGMENTS] [-s SEGMENT_SIZE] [-p PID] [-F]
 *                  [-k KEYFILE]
 *
 * Connects to the storage server at ADDR (HOST:PORT or unix:PATH) as a
 * plugin (proving the cluster key of KEYFILE, default $TESSERA_KEY_FILE
 * or /etc/tessera/cluster.key), fills SEGMENTS (default 16) segments of
 * SEGMENT_SIZE (default 4 MiB: the cluster's) with 1 MiB writes (the
 * server writes them in 64 KiB pieces, so a 4 KiB write lands in a
 * 64 KiB page cache folio), then keeps DEPTH (default 32)
 * SEG_READ or SEG_WRITE requests of BYTES (default 4096) at random
 * aligned offsets in flight on one connection for SECONDS (default 10),
 * and prints one line: ops/s, MiB/s, p50/p99/mean latency (send to reply,
 * microseconds), the client's CPU seconds and, with -p PID, the server's
 * (from /proc/PID/stat) and its context switches per request (all its
 * threads, from /proc/PID/task/TID/status: a wakeup of a thread that
 * slept is one).  -F sets FUA on writes.  The segments (ids with
 * bit 62 set, volume 1, epoch 1, generation 0: nothing an MDS hands out)
 * are deleted at the end.  Use it on a cluster of its own: see
 * bench/micro.
 *
 * Build (see bench/Makefile): against a configured, built tree.
 */

#include <config.h>

#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "buf.h"
#include "frame.h"
#include "full-rw.h"
#include "parse.h"
#include "protocol.h"
#include "sock.h"

#define MAX_DEPTH 256

static double
now (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
die (const char *what, int err)
{
  fprintf (stderr, "storesrv-bench: %s: %s\n", what, strerror (err));
  exit (EXIT_FAILURE);
}

/* Send one frame, header and payload with one writev as the plugin
 * does (a short write is finished by more).
 */
static void
send_frame (int fd, uint8_t opcode, uint16_t flags, uint64_t tag,
            const void *payload, uint32_t len)
{
  uint8_t hdr[PROTO_HEADER_SIZE];
  struct proto_header h = { .magic = PROTO_MAGIC,
                            .version = PROTO_VERSION,
                            .opcode = opcode,
                            .flags = flags,
                            .length = len,
                            .tag = tag };
  struct iovec iov[2] = { { hdr, sizeof hdr }, { (void *)payload, len } };
  struct iovec *v = iov;
  int n = len > 0 ? 2 : 1;

  proto_header_encode (&h, hdr);
  while (n > 0) {
    ssize_t r = writev (fd, v, n);

    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      die ("send", errno);
    while (n > 0 && (size_t)r >= v->iov_len) {
      r -= v->iov_len;
      v++, n--;
    }
    if (n > 0) {
      v->iov_base = (char *)v->iov_base + r;
      v->iov_len -= r;
    }
  }
}

/* Receive one reply into BUF (at least PROTO_MAX_IO_PAYLOAD bytes);
 * exits on a failed status.  Returns the tag.
 */
static uint64_t
recv_reply (int fd, uint8_t *buf, uint32_t *len)
{
  uint8_t hdr[PROTO_HEADER_SIZE];
  struct proto_header h;
  int r;

  r = full_read (fd, hdr, sizeof hdr);
  if (r < 0)
    die ("recv", -r);
  r = proto_header_decode (hdr, &h, PROTO_MAX_IO_PAYLOAD);
  if (r < 0)
    die ("bad reply header", -r);
  if (h.length > 0 && (r = full_read (fd, buf, h.length)) < 0)
    die ("recv payload", -r);
  if (h.status != PROTO_OK) {
    buf[h.length < PROTO_ERRMSG_MAX ? h.length : PROTO_ERRMSG_MAX] = 0;
    fprintf (stderr, "storesrv-bench: %s failed: %s: %s\n",
             proto_opcode_name (h.opcode), proto_status_name (h.status),
             (char *)buf);
    exit (EXIT_FAILURE);
  }
  *len = h.length;
  return h.tag;
}

static double
proc_cpu (int pid)
{
  char path[64], line[4096], *p;
  unsigned long ut, st;
  FILE *f;

  if (pid <= 0)
    return 0;
  snprintf (path, sizeof path, "/proc/%d/stat", pid);
  f = fopen (path, "r");
  if (f == NULL || fgets (line, sizeof line, f) == NULL)
    die (path, errno);
  fclose (f);
  p = strrchr (line, ')');
  /* Fields after ')': state(3) ... utime(14) stime(15). */
  if (p == NULL ||
      sscanf (p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut,
              &st) != 2)
    die ("parse /proc/PID/stat", EINVAL);
  return (double)(ut + st) / sysconf (_SC_CLK_TCK);
}

/* Context switches of every thread of process PID (io_uring's io-wq
 * workers included), voluntary and not.
 */
static unsigned long
proc_ctxsw (int pid)
{
  char path[64], line[256];
  unsigned long total = 0, n;
  struct dirent *d;
  DIR *dir;
  FILE *f;

  if (pid <= 0)
    return 0;
  snprintf (path, sizeof path, "/proc/%d/task", pid);
  dir = opendir (path);
  if (dir == NULL)
    die (path, errno);
  while ((d = readdir (dir)) != NULL) {
    if (d->d_name[0] == '.')
      continue;
    snprintf (path, sizeof path, "/proc/%d/task/%.16s/status", pid, d->d_name);
    f = fopen (path, "r");
    if (f == NULL)
      continue; /* the thread exited */
    while (fgets (line, sizeof line, f))
      if (sscanf (line, "voluntary_ctxt_switches: %lu", &n) == 1 ||
          sscanf (line, "nonvoluntary_ctxt_switches: %lu", &n) == 1)
        total += n;
    fclose (f);
  }
  closedir (dir);
  return total;
}

static double
self_cpu (void)
{
  struct rusage ru;

  getrusage (RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
         ru.ru_stime.tv_usec / 1e6;
}

static int
cmp_double (const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;

  return x < y ? -1 : x > y;
}

/* Send request TAG: a SEG_READ or SEG_WRITE at a random aligned offset. */
static void
submit (int fd, uint64_t tag, uint64_t base, uint32_t nseg, uint32_t segsize,
        uint32_t bs, bool write_op, bool fua, uint8_t *wbuf, uint8_t *head,
        double *sent)
{
  struct proto_seg_io io = { .volume = 1, .epoch = 1, .length = bs };
  uint64_t rnd;

  if (getrandom (&rnd, sizeof rnd, 0) != sizeof rnd)
    die ("getrandom", errno);
  io.segment = base + rnd % nseg;
  io.offset = (uint32_t)((rnd >> 20) % (segsize / bs)) * bs;
  sent[tag] = now ();
  if (write_op) {
    proto_encode_seg_io (&io, wbuf);
    send_frame (fd, PROTO_OP_SEG_WRITE, fua ? PROTO_FLAG_FUA : 0, tag, wbuf,
                PROTO_SEG_IO_SIZE + bs);
  }
  else {
    proto_encode_seg_io (&io, head);
    send_frame (fd, PROTO_OP_SEG_READ, 0, tag, head, PROTO_SEG_IO_SIZE);
  }
}

int
main (int argc, char *argv[])
{
  const char *addr, *op = "write", *keyfile = NULL;
  uint32_t bs = 4096, depth = 32, nseg = 16, segsize = 4u << 20;
  double seconds = 10;
  int pid = 0, c, fd, r;
  bool fua = false, write_op;
  uint64_t base, i, tag, done = 0, nlat = 0, maxlat;
  uint8_t *wbuf, *rbuf, head[PROTO_SEG_IO_SIZE];
  double *lat, sent[MAX_DEPTH], t0, t1, cpu0, scpu0, sum = 0;
  unsigned long sw0;
  uint32_t len;

  while ((c = getopt (argc, argv, "o:b:q:t:n:s:p:Fk:")) != -1) {
    switch (c) {
    case 'o':
      op = optarg;
      break;
    case 'b':
      bs = strtoul (optarg, NULL, 0);
      break;
    case 'q':
      depth = strtoul (optarg, NULL, 0);
      break;
    case 't':
      seconds = strtod (optarg, NULL);
      break;
    case 'n':
      nseg = strtoul (optarg, NULL, 0);
      break;
    case 's':
      segsize = strtoul (optarg, NULL, 0);
      break;
    case 'p':
      pid = atoi (optarg);
      break;
    case 'F':
      fua = true;
      break;
    case 'k':
      keyfile = optarg;
      break;
    default:
      goto usage;
    }
  }
  if (optind != argc - 1 || depth < 1 || depth > MAX_DEPTH || bs == 0 ||
      bs > segsize || segsize % bs || nseg == 0 ||
      (strcmp (op, "read") && strcmp (op, "write"))) {
  usage:
    fprintf (stderr, "usage: storesrv-bench ADDR [-o read|write] [-b BYTES] "
                     "[-q DEPTH] [-t SECONDS] [-n SEGMENTS] [-s SEGMENT_SIZE] "
                     "[-p PID] [-F] [-k KEYFILE]\n");
    exit (2);
  }
  addr = argv[optind];
  write_op = strcmp (op, "write") == 0;

  wbuf = malloc (PROTO_SEG_IO_SIZE + (1u << 20) + bs);
  rbuf = malloc (PROTO_MAX_IO_PAYLOAD + 1);
  maxlat = (uint64_t)(seconds * 2e6) + 1000; /* enough for 2M ops/s */
  lat = malloc (maxlat * sizeof *lat);
  if (wbuf == NULL || rbuf == NULL || lat == NULL)
    die ("malloc", ENOMEM);
  for (i = 0; i < (1u << 20) + bs; i++)
    wbuf[PROTO_SEG_IO_SIZE + i] = (uint8_t)(i * 131 + 7);
  if (getrandom (&base, sizeof base, 0) != sizeof base)
    die ("getrandom", errno);
  base = (base & ((UINT64_C (1) << 40) - 1)) | (UINT64_C (1) << 62);

  fd = sock_connect (addr, 10000);
  if (fd < 0)
    die (addr, -fd);
  if ((r = sock_set_timeout (fd, 30000)) < 0)
    die ("timeout", -r);
  {
    struct auth_key key;
    char msg[256];

    if (keyfile == NULL)
      keyfile = getenv ("TESSERA_KEY_FILE");
    if (keyfile == NULL)
      keyfile = AUTH_DEFAULT_KEY_FILE;
    if ((r = auth_key_load (keyfile, &key, msg, sizeof msg)) < 0) {
      fprintf (stderr, "storesrv-bench: %s\n", msg);
      exit (EXIT_FAILURE);
    }
    auth_key_use (&key);
    if ((r = proto_handshake (fd, PROTO_ROLE_PLUGIN, NULL, NULL, msg,
                              sizeof msg)) < 0) {
      fprintf (stderr, "storesrv-bench: %s: %s\n", addr, msg);
      exit (EXIT_FAILURE);
    }
  }

  /* Fill the segments, 1 MiB at a time, 8 in flight. */
  {
    uint64_t n =
        (uint64_t)nseg * (segsize / (1u << 20 < segsize ? 1u << 20 : segsize));
    uint32_t chunk = segsize < (1u << 20) ? segsize : 1u << 20;
    uint64_t s, inflight = 0;

    for (s = 0; s < n || inflight;) {
      if (s < n && inflight < 8) {
        struct proto_seg_io io = { .segment = base + s / (segsize / chunk),
                                   .volume = 1,
                                   .epoch = 1,
                                   .offset = (uint32_t)(s % (segsize / chunk)) *
                                             chunk,
                                   .length = chunk };
        proto_encode_seg_io (&io, wbuf);
        send_frame (fd, PROTO_OP_SEG_WRITE, 0, 2, wbuf,
                    PROTO_SEG_IO_SIZE + chunk);
        s++, inflight++;
      }
      else {
        recv_reply (fd, rbuf, &len);
        inflight--;
      }
    }
    send_frame (fd, PROTO_OP_SEG_FLUSH, 0, 3, NULL, 0);
    recv_reply (fd, rbuf, &len);
  }

  /* The timed run: DEPTH requests in flight, tag = slot. */
  cpu0 = self_cpu ();
  scpu0 = proc_cpu (pid);
  sw0 = proc_ctxsw (pid);
  t0 = now ();
  t1 = t0 + seconds;
  for (tag = 0; tag < depth; tag++)
    submit (fd, tag, base, nseg, segsize, bs, write_op, fua, wbuf, head, sent);
  for (uint32_t active = depth; active > 0;) {
    double d;

    tag = recv_reply (fd, rbuf, &len);
    d = now () - sent[tag];
    if (nlat < maxlat)
      lat[nlat++] = d;
    sum += d;
    done++;
    if (sent[tag] + d >= t1)
      active--;
    else
      submit (fd, tag, base, nseg, segsize, bs, write_op, fua, wbuf, head,
              sent);
  }
  {
    double el = now () - t0, ccpu = self_cpu () - cpu0,
           scpu = proc_cpu (pid) - scpu0;
    unsigned long sw = proc_ctxsw (pid) - sw0;

    qsort (lat, nlat, sizeof *lat, cmp_double);
    printf ("storesrv-bench %s bs=%" PRIu32 " qd=%" PRIu32 " segments=%" PRIu32
            "%s: %.0f ops/s %.1f MiB/s p50 %.1f us p99 %.1f us mean %.1f us "
            "client-cpu %.2f s server-cpu %.2f s (%.1f us/op) in %.1f s "
            "server-ctxsw %.2f/op\n",
            op, bs, depth, nseg, fua ? " fua" : "", done / el,
            done * (double)bs / el / 1048576, lat[nlat / 2] * 1e6,
            lat[(size_t)(nlat * 0.99)] * 1e6, sum / done * 1e6, ccpu, scpu,
            pid > 0 ? scpu / done * 1e6 : 0.0, el, (double)sw / done);
  }

  /* Delete the segments. */
  {
    struct proto_wbuf wb = { 0 };

    proto_put_u32 (&wb, nseg);
    for (i = 0; i < nseg; i++)
      proto_put_u64 (&wb, base + i);
    send_frame (fd, PROTO_OP_SEG_DELETE, 0, 4, wb.data, wb.len);
    proto_wbuf_free (&wb);
    recv_reply (fd, rbuf, &len);
  }
  close (fd);
  return 0;
}

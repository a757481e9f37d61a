/* mds-alloc-bench: MAP_ALLOC through a real MDS, from concurrent writers.
 *
 *   mds-alloc-bench ADDR VOLUME [-w WRITERS] [-b BATCH[,BATCH...]]
 *                   [-t SECONDS] [-f PREFILL] [-l LABEL] [-k KEYFILE]
 *                   [-P NAME:PID]...
 *
 * Opens VOLUME (which must exist, with room for every segment asked
 * for) read-write at the MDS at ADDR as a plugin (proving the cluster
 * key of KEYFILE, default $TESSERA_KEY_FILE or /etc/tessera/cluster.key),
 * keeps the writer lease renewed on that connection, then:
 *   prefill      allocates indexes [0, PREFILL) (default 0) in MAP_ALLOC
 *                batches of 4096 from 4 connections, so that the cases
 *                run on a catalog of that size;
 *   alloc-BxW    for each BATCH of the list (default 1,16), WRITERS
 *                (default 64) threads, each with its own authenticated
 *                connection, send MAP_ALLOC of BATCH fresh indexes of
 *                their own part of the volume, one at a time, for
 *                SECONDS (default 5) or until their part is allocated
 *                (a warning says so: the volume was too small); the
 *                cases share what the prefill leaves in proportion to
 *                BATCH + 1;
 * and prints one line per case: calls/s, segments/s, p50 and p99 of the
 * call's latency (send to reply, microseconds), the number of segments
 * in the volume when the case started ("at N") and how many it added
 * ("+K"), and with -P the CPU time of process PID (from /proc/PID/stat,
 * all its threads) per call, named NAME (up to 4 of them).  Finally the
 * volume is closed cleanly.  LABEL (default "mds") starts every line.
 * Every MAP_ALLOC must allocate the whole range it asks for: the bench
 * stops at the first error.  bench/run-catalog-ha sets up the clusters.
 *
 * Build (see bench/Makefile): against a configured, built tree.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "buf.h"
#include "frame.h"
#include "protocol.h"

#define MAX_WRITERS 1024
#define MAX_CASES 8
#define MAX_PIDS 4
#define PREFILL_WRITERS 4
#define CALL_TIMEOUT_MS 60000

static double
now (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
die (const char *what, const char *msg)
{
  fprintf (stderr, "mds-alloc-bench: %s: %s\n", what, msg);
  exit (EXIT_FAILURE);
}

static void *
xmalloc (size_t n)
{
  void *p = malloc (n);

  if (p == NULL)
    die ("malloc", strerror (ENOMEM));
  return p;
}

/* What the command line and the open say. */
static const char *addr;
static struct proto_open_reply opened;

/* Connect to ADDR as a plugin and authenticate; exits on failure. */
static struct proto_client *
connect_mds (void)
{
  struct proto_client *c;
  char msg[256];
  int r;

  r = proto_client_connect (addr, PROTO_ROLE_PLUGIN, NULL, CALL_TIMEOUT_MS, &c,
                            NULL, msg, sizeof msg);
  if (r < 0)
    die (addr, msg[0] ? msg : strerror (-r));
  return c;
}

/* Send request OPCODE with the payload in WB on C and return its reply
 * (caller frees); exits with the MDS's message on any failure.
 */
static void *
call (struct proto_client *c, uint8_t opcode, struct proto_wbuf *wb,
      uint32_t *len)
{
  char msg[PROTO_ERRMSG_MAX + 1];
  void *reply = NULL;
  int r;

  if (wb->err < 0)
    die (proto_opcode_name (opcode), strerror (-wb->err));
  r = proto_client_call (c, opcode, 0, wb->data, wb->len, &reply, len, msg,
                         sizeof msg);
  if (r < 0)
    die (proto_opcode_name (opcode), msg[0] ? msg : strerror (-r));
  return reply;
}

/* The lease renewer: LEASE_RENEW on the opening connection every third
 * of the lease until STOP is set.
 */
struct renewer {
  struct proto_client *c;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int stop; /* lock: LOCK */
};

static void *
renew_thread (void *arg)
{
  struct renewer *rn = arg;
  struct proto_lease l = { .volume = opened.volume.id,
                           .epoch = opened.volume.epoch };
  struct timespec ts;
  uint32_t len;

  pthread_mutex_lock (&rn->lock);
  while (!rn->stop) {
    struct proto_wbuf wb = { 0 };

    clock_gettime (CLOCK_REALTIME, &ts);
    ts.tv_nsec += (long)(opened.lease_ms / 3) * 1000000;
    ts.tv_sec += ts.tv_nsec / 1000000000;
    ts.tv_nsec %= 1000000000;
    pthread_cond_timedwait (&rn->cond, &rn->lock, &ts);
    if (rn->stop)
      break;
    pthread_mutex_unlock (&rn->lock);
    proto_encode_lease (&l, &wb);
    free (call (rn->c, PROTO_OP_LEASE_RENEW, &wb, &len));
    proto_wbuf_free (&wb);
    pthread_mutex_lock (&rn->lock);
  }
  pthread_mutex_unlock (&rn->lock);
  return NULL;
}

/* One writer of a case: its connection, its part of the volume
 * [NEXT, END), and the latencies of its calls (microseconds).
 */
struct writer {
  pthread_t thread;
  struct proto_client *c;
  uint32_t batch;
  uint64_t next, end;
  double deadline; /* 0: until END */
  double *lat;
  size_t nlat, cap;
  uint64_t segs;
};

static void *
writer_thread (void *arg)
{
  struct writer *w = arg;
  struct proto_map_request req = { .volume = opened.volume.id,
                                   .epoch = opened.volume.epoch };
  struct proto_map map;
  double t0;
  void *reply;
  uint32_t len;

  while (w->next + w->batch <= w->end &&
         (w->deadline == 0 || now () < w->deadline)) {
    struct proto_wbuf wb = { 0 };

    req.start = w->next;
    req.count = w->batch;
    proto_encode_map_request (&req, &wb);
    t0 = now ();
    reply = call (w->c, PROTO_OP_MAP_ALLOC, &wb, &len);
    if (w->nlat == w->cap) {
      w->cap = w->cap ? w->cap * 2 : 4096;
      w->lat = realloc (w->lat, w->cap * sizeof *w->lat);
      if (w->lat == NULL)
        die ("malloc", strerror (ENOMEM));
    }
    w->lat[w->nlat++] = (now () - t0) * 1e6;
    proto_wbuf_free (&wb);
    if (proto_decode_map (reply, len, &map) < 0)
      die ("MAP_ALLOC", "malformed reply");
    if (map.n != w->batch)
      die ("MAP_ALLOC", "the reply does not map the whole range");
    proto_map_free (&map);
    free (reply);
    w->next += w->batch;
    w->segs += w->batch;
  }
  return NULL;
}

/* CPU seconds of process PID so far (all threads), or -1. */
static double
proc_cpu (int pid)
{
  char path[64], line[4096], *p;
  unsigned long ut, st;
  FILE *f;

  snprintf (path, sizeof path, "/proc/%d/stat", pid);
  f = fopen (path, "r");
  if (f == NULL)
    return -1;
  p = fgets (line, sizeof line, f);
  fclose (f);
  if (p == NULL || (p = strrchr (line, ')')) == NULL)
    return -1;
  /* After "(comm)": state is field 3; utime and stime are 14 and 15. */
  if (sscanf (p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut,
              &st) != 2)
    return -1;
  return (double)(ut + st) / sysconf (_SC_CLK_TCK);
}

static int
cmp_double (const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;

  return x < y ? -1 : x > y;
}

static const char *pid_names[MAX_PIDS];
static int pids[MAX_PIDS];
static size_t npids;
static const char *label = "mds";

/* Run one case: NW writers of BATCH segments per call, writer I in
 * [BASE + I * SPAN, BASE + (I + 1) * SPAN), for SECS seconds (0: until
 * every writer's part is allocated).  AT is the volume's allocated
 * segments before; prints the result line unless NAME is NULL.
 * Returns the segments allocated.
 */
static uint64_t
run_case (struct writer *ws, size_t nw, uint32_t batch, uint64_t base,
          uint64_t span, double secs, uint64_t at, const char *name)
{
  double t0, t, cpu0[MAX_PIDS], *all;
  uint64_t segs = 0, calls = 0;
  size_t i, j, k;
  int r;

  for (k = 0; k < npids; k++)
    cpu0[k] = proc_cpu (pids[k]);
  t0 = now ();
  for (i = 0; i < nw; i++) {
    ws[i].batch = batch;
    ws[i].next = base + i * span;
    ws[i].end = ws[i].next + span;
    ws[i].deadline = secs > 0 ? t0 + secs : 0;
    ws[i].nlat = 0;
    ws[i].segs = 0;
    r = pthread_create (&ws[i].thread, NULL, writer_thread, &ws[i]);
    if (r != 0)
      die ("pthread_create", strerror (r));
  }
  for (i = 0; i < nw; i++) {
    pthread_join (ws[i].thread, NULL);
    segs += ws[i].segs;
    calls += ws[i].nlat;
    if (secs > 0 && ws[i].next + batch > ws[i].end)
      fprintf (stderr,
               "mds-alloc-bench: warning: writer %zu ran out of room"
               " (a larger volume would let it run the whole time)\n",
               i);
  }
  t = now () - t0;
  if (name == NULL || calls == 0)
    return segs;

  all = xmalloc (calls * sizeof *all);
  for (i = 0, j = 0; i < nw; i++) {
    memcpy (all + j, ws[i].lat, ws[i].nlat * sizeof *all);
    j += ws[i].nlat;
  }
  qsort (all, calls, sizeof *all, cmp_double);
  printf ("mds-alloc-bench %s %s at %" PRIu64 " +%" PRIu64
          ": %.0f calls/s %.0f segments/s p50 %.0f us p99 %.0f us"
          " (%" PRIu64 " calls in %.2f s",
          label, name, at, segs, calls / t, segs / t, all[calls / 2],
          all[(size_t)(calls * 0.99)], calls, t);
  for (k = 0; k < npids; k++)
    printf ("; %s %.1f us CPU/call", pid_names[k],
            (proc_cpu (pids[k]) - cpu0[k]) * 1e6 / calls);
  printf (")\n");
  fflush (stdout);
  free (all);
  return segs;
}

static void
usage (void)
{
  fprintf (stderr,
           "usage: mds-alloc-bench ADDR VOLUME [-w WRITERS] "
           "[-b BATCH[,BATCH...]]\n"
           "                       [-t SECONDS] [-f PREFILL] [-l LABEL] "
           "[-k KEYFILE]\n"
           "                       [-P NAME:PID]...\n");
  exit (2);
}

int
main (int argc, char *argv[])
{
  const char *keyfile = NULL, *volname;
  uint32_t batches[MAX_CASES] = { 1, 16 };
  size_t nbatches = 2, nw = 64, i;
  uint64_t prefill = 0, nsegs, at, span, base;
  double secs = 5;
  struct proto_vol_request vreq = { .flags = PROTO_OPEN_RW };
  struct proto_wbuf wb = { 0 };
  struct renewer rn = { .lock = PTHREAD_MUTEX_INITIALIZER,
                        .cond = PTHREAD_COND_INITIALIZER };
  pthread_t renewer;
  struct writer *ws;
  void *reply;
  uint32_t len;
  char *p, *end, name[64];
  int opt, r;

  while ((opt = getopt (argc, argv, "w:b:t:f:l:k:P:")) != -1) {
    switch (opt) {
    case 'w':
      nw = strtoul (optarg, NULL, 0);
      if (nw < 1 || nw > MAX_WRITERS)
        usage ();
      break;
    case 'b':
      nbatches = 0;
      for (p = optarg; *p; p = *end ? end + 1 : end) {
        unsigned long b = strtoul (p, &end, 0);

        if (end == p || b < 1 || b > PROTO_MAP_MAX || nbatches == MAX_CASES ||
            (*end != ',' && *end != 0))
          usage ();
        batches[nbatches++] = b;
      }
      break;
    case 't':
      secs = strtod (optarg, NULL);
      if (secs <= 0)
        usage ();
      break;
    case 'f':
      prefill = strtoull (optarg, NULL, 0);
      break;
    case 'l':
      label = optarg;
      break;
    case 'k':
      keyfile = optarg;
      break;
    case 'P':
      p = strchr (optarg, ':');
      if (p == NULL || npids == MAX_PIDS)
        usage ();
      *p = 0;
      pid_names[npids] = optarg;
      pids[npids++] = atoi (p + 1);
      break;
    default:
      usage ();
    }
  }
  if (argc - optind != 2 || nbatches == 0)
    usage ();
  addr = argv[optind];
  volname = argv[optind + 1];

  {
    struct auth_key key;
    char msg[256];

    if (keyfile == NULL)
      keyfile = getenv ("TESSERA_KEY_FILE");
    if (keyfile == NULL)
      keyfile = AUTH_DEFAULT_KEY_FILE;
    if (auth_key_load (keyfile, &key, msg, sizeof msg) < 0)
      die (keyfile, msg);
    auth_key_use (&key);
  }

  /* Take the writer lease; every writer uses its epoch. */
  rn.c = connect_mds ();
  snprintf (vreq.name, sizeof vreq.name, "%s", volname);
  if (getrandom (vreq.token, sizeof vreq.token, 0) != sizeof vreq.token)
    die ("getrandom", strerror (errno));
  proto_encode_vol_request (&vreq, &wb);
  reply = call (rn.c, PROTO_OP_VOL_OPEN, &wb, &len);
  proto_wbuf_free (&wb);
  if (proto_decode_open_reply (reply, len, &opened) < 0)
    die ("VOL_OPEN", "malformed reply");
  free (reply);
  if (opened.lease_ms < 300)
    die ("VOL_OPEN", "lease too short");
  r = pthread_create (&renewer, NULL, renew_thread, &rn);
  if (r != 0)
    die ("pthread_create", strerror (r));
  nsegs = opened.volume.size / opened.segment_size;
  if (opened.volume.segments != 0)
    die (volname, "not empty: the bench needs a fresh volume");
  if (prefill + nw * nbatches * batches[0] > nsegs)
    die (volname, "too small for the prefill and the cases");

  ws = calloc (nw > PREFILL_WRITERS ? nw : PREFILL_WRITERS, sizeof *ws);
  if (ws == NULL)
    die ("malloc", strerror (ENOMEM));
  for (i = 0; i < nw || i < PREFILL_WRITERS; i++)
    ws[i].c = connect_mds ();

  /* Prefill: PREFILL_WRITERS connections, whole batches of 4096. */
  at = 0;
  if (prefill > 0) {
    span = (prefill + PREFILL_WRITERS * PROTO_MAP_MAX - 1) /
           (PREFILL_WRITERS * PROTO_MAP_MAX) * PROTO_MAP_MAX;
    if (span * PREFILL_WRITERS > nsegs)
      die (volname, "too small for the prefill");
    at = run_case (ws, PREFILL_WRITERS, PROTO_MAP_MAX, 0, span, 0, 0, NULL);
    printf ("mds-alloc-bench %s prefill: %" PRIu64 " segments\n", label, at);
  }

  /* The cases, each in its own part of what is left, in proportion to
   * its batch size plus one (a batch case allocates faster): writer W of
   * a case gets SPAN indexes, a multiple of the batch size.
   */
  base = at;
  {
    uint64_t weights = 0, part;

    for (i = 0; i < nbatches; i++)
      weights += batches[i] + 1;
    for (i = 0; i < nbatches; i++) {
      uint32_t b = batches[i];

      part = (nsegs - base) / weights * (b + 1);
      weights -= b + 1;
      span = part / nw / b * b;
      snprintf (name, sizeof name, "alloc-%" PRIu32 "x%zu", b, nw);
      at += run_case (ws, nw, b, base, span, secs, at, name);
      base += part;
    }
  }

  /* Close cleanly: the next run's open must not wait for a resync. */
  pthread_mutex_lock (&rn.lock);
  rn.stop = 1;
  pthread_cond_signal (&rn.cond);
  pthread_mutex_unlock (&rn.lock);
  pthread_join (renewer, NULL);
  {
    struct proto_lease l = { .volume = opened.volume.id,
                             .epoch = opened.volume.epoch };

    proto_encode_lease (&l, &wb);
    free (call (rn.c, PROTO_OP_VOL_CLOSE, &wb, &len));
    proto_wbuf_free (&wb);
  }
  for (i = 0; i < nw || i < PREFILL_WRITERS; i++) {
    proto_client_close (ws[i].c);
    free (ws[i].lat);
  }
  free (ws);
  proto_client_close (rn.c);
  return 0;
}

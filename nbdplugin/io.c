/* nbdkit-tessera-plugin: the data path.
 *
 * A request is split at segment boundaries (and at PROTO_MAX_DATA) into
 * pieces, handled in windows of at most MAX_PIECES.  Writes, trims and
 * zeroes hold the range lock for the whole request and go to every
 * replica in state ok or syncing, all in parallel, carrying the writer's
 * epoch and the generation of the cached map entry; a piece is done when
 * every replica has answered.  A replica that failed while another
 * succeeded is reported to the MDS (REPLICA_FAILED) before the request
 * is acknowledged.  A replica that refuses the generation (ESTALEMAP:
 * the replica set changed, for instance repair added a replica) makes
 * the piece be written again, on every writable replica of the re-read
 * map entry.  A fenced write (ESTALE) means another writer holds the
 * volume: the lease is lost and every later write fails.  Reads go to
 * one ok replica per piece, spread round-robin, failing over to the
 * next ok replica on error.  They carry the entry's generation too: a
 * server that knows a newer one refuses (ESTALEMAP), and the entry is
 * re-read and the piece read again.  A replica that does not hold the
 * segment (ENOENT) is no fault: the others are tried, and if none
 * holds it the entry is re-read once; unchanged, it reads as zeros.
 * Holes read as zeros without network traffic, and writes to holes
 * allocate them first (MAP_ALLOC, with read-ahead).
 *
 * Every non-FUA write or trim records its segment in the dirty set of
 * each server that acknowledged it, for the next flush (flush.c).
 */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "minmax.h"
#include "protocol.h"

#include "internal.h"

/* Pieces handled at once: bounds the requests in flight per call. */
#define MAX_PIECES 64

/* Segments allocated beyond a write to a hole (sequential writers). */
#define ALLOC_READAHEAD 16

/* Times a piece is sent again after its replica set changed (ESTALEMAP)
 * before the request fails.
 */
#define MAX_REMAP 5

/* Storage-server requests of a scratch area kept on the free list; a
 * larger array grown for one big request is freed after it.
 */
#define KEEP_REQS 16

/* One part of a request that lies in one segment. */
struct piece {
  uint64_t index;        /* segment index in the volume */
  uint32_t offset;       /* offset in the segment */
  uint32_t length;       /* bytes */
  uint64_t boff;         /* offset in the caller's buffer */
  const struct seg *seg; /* NULL: hole */
  size_t req0, nreq;     /* its requests in the window's array */
  uint16_t tried;        /* reads: replicas tried, by position */
  uint16_t faulty;       /* reads: replicas that failed, by position */
  uint16_t enoent;       /* reads: replicas that do not hold it (ENOENT) */
  bool restarted;        /* reads: a replica's server was found restarted */
  bool reloaded;         /* reads: entry re-read after ENOENT everywhere */
  bool todo;             /* writes: still to send */
  unsigned remaps;       /* times sent again after ESTALEMAP, a restart */
  int pos;               /* reads: replica being read, or -1: done */
};

/* Scratch space of one request: its pieces and the storage-server
 * requests of one window.  Kept on a free list so that the data path
 * does not allocate.
 */
struct scratch {
  struct scratch *next; /* on the free list */
  struct piece p[MAX_PIECES];
  struct ss_request *reqs;
  size_t reqs_cap;
};

static pthread_mutex_t scratch_lock = PTHREAD_MUTEX_INITIALIZER;
static struct scratch *scratch_free; /* under scratch_lock */

/* Take a scratch area from the free list, or allocate one.  Returns
 * NULL (reported) if out of memory.
 */
static struct scratch *
scratch_get (void)
{
  struct scratch *x;

  pthread_mutex_lock (&scratch_lock);
  x = scratch_free;
  if (x)
    scratch_free = x->next;
  pthread_mutex_unlock (&scratch_lock);
  if (x == NULL) {
    x = calloc (1, sizeof *x);
    if (x == NULL)
      nbdkit_error ("calloc: %m");
  }
  return x;
}

/* Give X back to the free list. */
static void
scratch_put (struct scratch *x)
{
  if (x->reqs_cap > KEEP_REQS) {
    free (x->reqs);
    x->reqs = NULL;
    x->reqs_cap = 0;
  }
  pthread_mutex_lock (&scratch_lock);
  x->next = scratch_free;
  scratch_free = x;
  pthread_mutex_unlock (&scratch_lock);
}

static void scratch_free_all (void) __attribute__ ((destructor));

/* Free the free list when the plugin is unloaded. */
static void
scratch_free_all (void)
{
  struct scratch *x;

  while ((x = scratch_free) != NULL) {
    scratch_free = x->next;
    free (x->reqs);
    free (x);
  }
}

/* Make room for N requests in X.  Returns X->reqs, or NULL (reported)
 * if out of memory.
 */
static struct ss_request *
scratch_reqs (struct scratch *x, size_t n)
{
  struct ss_request *q;
  size_t cap = n > KEEP_REQS ? n : KEEP_REQS;

  if (n > x->reqs_cap) {
    q = realloc (x->reqs, cap * sizeof *q);
    if (q == NULL) {
      nbdkit_error ("realloc: %m");
      return NULL;
    }
    x->reqs = q;
    x->reqs_cap = cap;
  }
  return x->reqs;
}

/* Whether ERR from a storage server means the replica is bad and must
 * be reported to the MDS, rather than a condition of the whole request
 * (storage full, this writer was fenced by a newer epoch, or the
 * replica set changed).
 */
bool
io_is_replica_fault (int err)
{
  return err != 0 && err != -ENOSPC && err != -ESTALE && err != -EREMCHG &&
         err != -SS_ERESTARTED && err != -SS_EOUTOFTIME;
}

/* Split [OFFSET, OFFSET+COUNT) into at most MAX pieces at P, whose
 * buffer offsets start at BOFF.  Returns the number of pieces and sets
 * *CONSUMED to the bytes they cover.
 */
static size_t
split (struct volume *v, uint64_t offset, uint64_t count, uint64_t boff,
       struct piece *p, size_t max, uint64_t *consumed)
{
  uint64_t done = 0;
  size_t n = 0;

  while (done < count && n < max) {
    uint64_t o = offset + done;
    uint64_t in = o & (v->segment_size - 1);
    uint64_t len = v->segment_size - in;

    len = MIN (len, count - done);
    len = MIN (len, (uint64_t)PROTO_MAX_DATA);
    memset (&p[n], 0, sizeof p[n]);
    p[n].index = o >> v->seg_shift;
    p[n].offset = in;
    p[n].length = len;
    p[n].boff = boff + done;
    n++;
    done += len;
  }
  *consumed = done;
  return n;
}

/* Fill in the map entry of every piece.  Returns 0 or -errno. */
static int
lookup_pieces (struct volume *v, struct piece *p, size_t n)
{
  size_t i;
  int r;

  for (i = 0; i < n; i++) {
    r = map_lookup (v, p[i].index, &p[i].seg);
    if (r < 0)
      return r;
  }
  return 0;
}

/* A read-only open never trusts a cached hole: a writer may have
 * allocated and written it since the chunk was fetched.  Ask the MDS
 * again about the holes among the N pieces at P (one MAP_GET covering
 * them) and look them up again.  A writer is the only allocator, so its
 * own holes are authoritative and it never calls this.  Returns 0 or
 * -errno (reported).
 */
static int
recheck_holes (struct volume *v, struct piece *p, size_t n)
{
  uint64_t first = UINT64_MAX, last = 0;
  size_t i;
  int r;

  for (i = 0; i < n; i++) {
    if (p[i].seg == NULL) {
      first = MIN (first, p[i].index);
      last = MAX (last, p[i].index);
    }
  }
  if (first == UINT64_MAX)
    return 0;
  r = map_recheck (v, first, last - first + 1);
  for (i = 0; r == 0 && i < n; i++)
    if (p[i].seg == NULL)
      r = map_lookup (v, p[i].index, &p[i].seg);
  return r;
}

/* The first error of a request, kept for its return value. */
static void
set_err (int *err, int e)
{
  if (*err == 0)
    *err = e;
}

/* Whether S has an ok replica on SERVER. */
static bool
ok_on (const struct seg *s, uint32_t server)
{
  unsigned j;

  for (j = 0; j < s->nreplicas; j++)
    if (s->replicas[j].server == server)
      return s->replicas[j].state == PROTO_REPLICA_OK;
  return false;
}

/* Judge the answers of piece P's replicas (write or trim) and report the
 * replicas that failed while another succeeded.  A replica that is full
 * (ENOSPC) is reported too, since it now differs from the others, but
 * an ok one fails the request with ENOSPC: the client must learn that
 * storage is full.  Fewer than the volume's min-copies ok replicas
 * having taken it fails the request with EIO.  Returns 0 or -errno
 * (reported).
 */
static int
finish_modify (struct volume *v, const char *what, struct piece *p,
               struct ss_request *reqs, bool fua)
{
  unsigned nok = 0, ncopies = 0, nnospc = 0, nstale = 0, nlate = 0;
  const char *msg = "", *nospc_msg = "";
  uint32_t nospc_server = 0;
  int err = 0, first = 0, r;
  size_t k;

  for (k = p->req0; k < p->req0 + p->nreq; k++) {
    struct ss_request *q = &reqs[k];

    if (q->err == 0) {
      nok++;
      if (ok_on (p->seg, q->server->id))
        ncopies++;
    }
    else {
      nbdkit_debug ("volume %s: %s: segment %" PRIu64 " on server %" PRIu32
                    ": %s%s%s",
                    v->name, what, p->seg->id, q->server->id,
                    strerror (-q->err), q->errmsg[0] ? ": " : "", q->errmsg);
      if (first == 0) {
        first = q->err;
        msg = q->errmsg;
      }
      if (q->err == -ENOSPC && ok_on (p->seg, q->server->id)) {
        if (nnospc++ == 0) {
          nospc_server = q->server->id;
          nospc_msg = q->errmsg;
        }
      }
      else if (q->err == -ESTALE)
        nstale++;
      else if (q->err == -SS_EOUTOFTIME)
        nlate++;
    }
  }

  if (nstale) {
    lease_mark_lost (v, "fenced by a storage server: another writer "
                        "holds the volume");
    if (tessera_debug_io)
      nbdkit_debug ("volume %s: %s: segment %" PRIu64 ": fenced", v->name, what,
                    p->seg->id);
    return -EIO;
  }
  else if (nnospc) {
    nbdkit_error ("volume %s: %s: segment %" PRIu64 ": storage full on server "
                  "%" PRIu32 "%s%s",
                  v->name, what, p->seg->id, nospc_server,
                  nospc_msg[0] ? ": " : "", nospc_msg);
    set_err (&err, -ENOSPC);
  }
  else if (nok == 0) {
    nbdkit_error (
        "volume %s: %s: segment %" PRIu64 " failed on every replica: %s%s%s",
        v->name, what, p->seg->id, strerror (-first), msg[0] ? ": " : "", msg);
    set_err (&err, -EIO);
  }
  else if (ncopies < v->min_copies) {
    nbdkit_error ("volume %s: %s: segment %" PRIu64 ": %u ok replicas took "
                  "it, fewer than min-copies %" PRIu32 "%s%s%s%s",
                  v->name, what, p->seg->id, ncopies, v->min_copies,
                  first ? ": " : "", first ? strerror (-first) : "",
                  msg[0] ? ": " : "", msg);
    set_err (&err, -EIO);
  }
  else if (nlate) {
    /* A replica whose answer did not come in time may or may not have
     * taken it, and nobody is to blame: the write cannot be
     * acknowledged, nor the replica reported.
     */
    nbdkit_error ("volume %s: %s: segment %" PRIu64 ": out of time waiting "
                  "for %u of its replicas (timeout=%d s)",
                  v->name, what, p->seg->id, nlate, v->cfg->timeout_ms / 1000);
    set_err (&err, -EIO);
  }

  for (k = p->req0; k < p->req0 + p->nreq; k++) {
    struct ss_request *q = &reqs[k];

    if (q->err == 0) {
      if (!fua && dirty_mark (q->server, p->index, q->incarnation) < 0) {
        nbdkit_error ("volume %s: %s: out of memory", v->name, what);
        set_err (&err, -ENOMEM);
      }
    }
    else if (nok > 0 && (io_is_replica_fault (q->err) || q->err == -ENOSPC)) {
      r = map_replica_failed (v, p->seg, q->server->id);
      if (r < 0)
        set_err (&err, -EIO);
    }
  }
  return err;
}

/* Whether piece P must be sent again, and none of its replicas refused
 * it because this writer was fenced: a replica refused it because the
 * replica set changed (ESTALEMAP), or it was not sent to a server found
 * restarted (SS_ERESTARTED, then *RESTARTED is set).
 */
static bool
remap_needed (const struct piece *p, const struct ss_request *reqs,
              bool *restarted)
{
  bool remap = false;
  size_t k;

  *restarted = false;
  for (k = p->req0; k < p->req0 + p->nreq; k++) {
    if (reqs[k].err == -ESTALE)
      return false;
    if (reqs[k].err == -EREMCHG)
      remap = true;
    if (reqs[k].err == -SS_ERESTARTED)
      remap = *restarted = true;
  }
  return remap;
}

/* The number of writable (ok or syncing) replicas of S. */
static unsigned
writable_replicas (const struct seg *s)
{
  unsigned j, w = 0;

  for (j = 0; j < s->nreplicas; j++)
    if (s->replicas[j].state != PROTO_REPLICA_STALE)
      w++;
  return w;
}

/* Count the requests for the pieces of P (N) still to send, re-reading
 * the map entry of a piece with no writable replica once (repair may
 * have brought one back).  Returns 0 and *NREQ, or -errno (reported).
 */
static int
count_requests (struct volume *v, const char *what, struct piece *p, size_t n,
                size_t *nreq)
{
  size_t i;
  unsigned w;
  int r;

  *nreq = 0;
  for (i = 0; i < n; i++) {
    if (!p[i].todo)
      continue;
    w = writable_replicas (p[i].seg);
    if (w == 0) {
      r = map_reload (v, p[i].index, &p[i].seg);
      if (r < 0)
        return -EIO;
      w = p[i].seg ? writable_replicas (p[i].seg) : 0;
    }
    if (w == 0) {
      nbdkit_error ("volume %s: %s: segment index %" PRIu64
                    " has no writable replica",
                    v->name, what, p[i].index);
      return -EIO;
    }
    *nreq += w;
  }
  return 0;
}

/* Fill in REQS (from 0) with one request per writable replica of every
 * piece of P (N) still to send.  Returns 0 or -EIO (reported).
 */
static int
build_requests (struct volume *v, uint64_t epoch, uint8_t opcode,
                const char *buf, struct piece *p, size_t n, bool fua,
                struct ss_request *reqs)
{
  size_t i, k;
  unsigned j;
  int r;

  for (i = 0, k = 0; i < n; i++) {
    const struct seg *s = p[i].seg;

    p[i].req0 = k;
    p[i].nreq = 0;
    if (!p[i].todo)
      continue;
    for (j = 0; j < s->nreplicas; j++) {
      struct ss_request *q;

      if (s->replicas[j].state == PROTO_REPLICA_STALE)
        continue;
      q = &reqs[k++];
      memset (q, 0, sizeof *q);
      r = servers_get (v, s->replicas[j].server, &q->server);
      if (r < 0)
        return -EIO;
      q->opcode = opcode;
      q->hurry = true;
      q->flags = fua ? PROTO_FLAG_FUA : 0;
      q->io.segment = s->id;
      q->io.volume = v->id;
      q->io.epoch = epoch;
      q->io.gen = s->gen;
      /* The server records it: the segment describes itself. */
      q->io.index = p[i].index;
      q->io.offset = p[i].offset;
      q->io.length = p[i].length;
      if (opcode == PROTO_OP_SEG_WRITE)
        q->data = (char *)buf + p[i].boff;
    }
    p[i].nreq = k - p[i].req0;
  }
  return 0;
}

/* Piece P was refused by a replica whose replica set changed, or not
 * sent to a server found RESTARTED (whose lost writes must be reported
 * first): re-read its map entry and mark it to be sent again, or fail
 * after MAX_REMAP tries.  Returns 0 or -errno (reported).
 */
static int
remap_piece (struct volume *v, const char *what, struct piece *p,
             bool restarted)
{
  uint64_t gen = p->seg->gen;
  int r;

  if (++p->remaps > MAX_REMAP) {
    nbdkit_error ("volume %s: %s: segment %" PRIu64
                  ": its replica set kept changing (generation %" PRIu64 ")",
                  v->name, what, p->seg->id, gen);
    return -EIO;
  }
  if (restarted && flush_settle_lost (v) < 0)
    return -EIO;
  r = map_reload (v, p->index, &p->seg);
  if (r < 0)
    return -EIO;
  if (p->seg == NULL) {
    nbdkit_error ("volume %s: %s: segment index %" PRIu64
                  ": no longer allocated",
                  v->name, what, p->index);
    return -EIO;
  }
  if (tessera_debug_io || tessera_debug_map)
    nbdkit_debug ("volume %s: %s: segment %" PRIu64 ": generation %" PRIu64
                  " -> %" PRIu64 ", sending again",
                  v->name, what, p->seg->id, gen, p->seg->gen);
  /* The MDS raises a generation in its catalog before any server hears
   * of it, so the entry is normally newer already; if not, give it a
   * moment.  Likewise a restarted server whose lost segments are still
   * pending after settling them: a flush in progress holds some of them
   * (taken_lost in dirty.c) until its SEG_FLUSH there fails, and until
   * then the server takes nothing.  Sending again at once would spend
   * every try in a few milliseconds and fail the write with EIO.
   */
  if (p->seg->gen <= gen && (!restarted || atomic_load (&v->lost_pending) > 0))
    nbdkit_nanosleep (0, 50000000 * p->remaps);
  p->todo = true;
  return 0;
}

/* Allocate the holes among the N pieces at P (writes only), and look
 * up every piece's map entry.  Returns 0 or -errno (reported).
 */
static int
prepare_window (struct volume *v, uint8_t opcode, struct piece *p, size_t n)
{
  uint64_t first = UINT64_MAX, last = 0;
  size_t i;
  int r;

  r = lookup_pieces (v, p, n);
  if (r < 0)
    return r;
  if (opcode == PROTO_OP_SEG_WRITE) {
    for (i = 0; i < n; i++) {
      if (p[i].seg == NULL) {
        first = MIN (first, p[i].index);
        last = MAX (last, p[i].index);
      }
    }
    if (first != UINT64_MAX) {
      const struct seg *prev = NULL;
      uint64_t want = last - first + 1;

      /* Allocate ahead only for a write that continues an allocated run
       * (or starts the volume): sequential writers then ask the MDS once
       * per ALLOC_READAHEAD segments, while a random write allocates only
       * what it touches and leaves the rest of the volume holes.
       */
      if (first == 0 || (map_lookup (v, first - 1, &prev) == 0 && prev))
        want += ALLOC_READAHEAD;
      r = map_alloc (v, first, last - first + 1, want);
      /* Near full, the read-ahead may not fit where the write does. */
      if (r == -ENOSPC && want > last - first + 1)
        r = map_alloc (v, first, last - first + 1, last - first + 1);
      if (r == 0)
        r = lookup_pieces (v, p, n);
      if (r < 0)
        return r;
    }
  }
  for (i = 0; i < n; i++)
    p[i].todo = p[i].seg != NULL; /* a trimmed hole: nothing to do */
  return 0;
}

/* Whether request Q may have reached its server, which never answered:
 * it timed out, or its connection broke after it was sent.  A request
 * not sent to a server found restarted is no doubt.
 */
static bool
outcome_unknown (const struct ss_request *q)
{
  return q->err != 0 && !q->answered && q->err != -SS_ERESTARTED;
}

/* Note the requests of piece P whose outcome is unknown and whose
 * replica stays writable (doubt.c).  Returns 0 or -ENOMEM (reported).
 */
static int
note_doubts (struct volume *v, const struct piece *p,
             const struct ss_request *reqs)
{
  size_t k;
  int r;

  for (k = p->req0; k < p->req0 + p->nreq; k++) {
    const struct ss_request *q = &reqs[k];

    if (!outcome_unknown (q))
      continue;
    r = doubt_note (v, p->index, q->io.segment, q->io.gen, q->server->id);
    if (r < 0)
      return r;
  }
  return 0;
}

/* Write (SEG_WRITE, from BUF) or trim (SEG_TRIM) the N pieces at P on
 * every writable replica, carrying EPOCH.  Pieces refused because their
 * replica set changed are sent again.  *SENT is set once anything has
 * been sent.  Returns 0 or -errno (reported).
 */
static int
modify_window (struct volume *v, uint64_t epoch, uint8_t opcode,
               const char *buf, struct scratch *x, size_t n, bool fua,
               bool *sent)
{
  const char *what = opcode == PROTO_OP_SEG_WRITE ? "write" : "trim";
  struct piece *p = x->p;
  struct ss_request *reqs;
  struct ss_batch b;
  size_t i, nreq;
  bool again, restarted;
  int r, err = 0;

  r = prepare_window (v, opcode, p, n);
  if (r < 0)
    return r;
  /* An earlier request in doubt must not land over this one. */
  for (i = 0; i < n; i++) {
    if (!p[i].todo)
      continue;
    r = doubt_settle (v, p[i].index, &p[i].seg);
    if (r < 0)
      return r;
    if (p[i].seg == NULL) {
      nbdkit_error ("volume %s: %s: segment index %" PRIu64
                    ": no longer allocated",
                    v->name, what, p[i].index);
      return -EIO;
    }
  }

  do {
    r = count_requests (v, what, p, n, &nreq);
    if (r < 0) {
      set_err (&err, r);
      break;
    }
    if (nreq == 0)
      break;
    reqs = scratch_reqs (x, nreq);
    if (reqs == NULL) {
      set_err (&err, -ENOMEM);
      break;
    }
    /* Resolve every server before sending anything. */
    r = build_requests (v, epoch, opcode, buf, p, n, fua, reqs);
    if (r < 0) {
      set_err (&err, r);
      break;
    }

    if (!request_can_start (v->cfg->timeout_ms)) {
      nbdkit_error ("volume %s: %s: out of time (timeout=%d s)", v->name, what,
                    v->cfg->timeout_ms / 1000);
      set_err (&err, -ETIMEDOUT);
      break;
    }
    *sent = true;
    ss_batch_init (&b, v->cfg->timeout_ms);
    ss_submit (&b, reqs, nreq);
    ss_batch_wait (&b, reqs, nreq);
    ss_batch_destroy (&b);

    again = false;
    for (i = 0; i < n; i++) {
      if (!p[i].todo)
        continue;
      p[i].todo = false;
      if (remap_needed (&p[i], reqs, &restarted)) {
        r = remap_piece (v, what, &p[i], restarted);
        if (r < 0)
          set_err (&err, r);
        else
          again = true;
      }
      else
        set_err (&err, finish_modify (v, what, &p[i], reqs, fua));
      /* After the reports: a replica marked stale is no doubt. */
      set_err (&err, note_doubts (v, &p[i], reqs));
    }
  } while (again && err == 0);
  return err;
}

/* Write or trim (OPCODE) [OFFSET, OFFSET+COUNT) under the range lock, in
 * the current epoch.  A request that fails after reaching some replicas
 * may leave them different: the volume is then never marked clean by
 * this writer, so that the MDS resyncs it.  Returns 0 or -errno
 * (reported).
 */
static int
modify (struct volume *v, uint8_t opcode, const void *buf, uint32_t count,
        uint64_t offset, bool fua)
{
  struct scratch *x;
  struct range rg;
  uint64_t done = 0, consumed, epoch;
  size_t n;
  bool sent = false;
  int err = 0;

  if (!v->rw) {
    nbdkit_error ("volume %s: opened read-only", v->name);
    return -EROFS;
  }
  if (atomic_load (&v->lease_lost)) {
    nbdkit_debug ("volume %s: writer lease lost: failing the request", v->name);
    return -EIO;
  }
  x = scratch_get ();
  if (x == NULL)
    return -ENOMEM;
  if (tessera_debug_io)
    nbdkit_debug ("%s %" PRIu64 "+%" PRIu32 "%s",
                  opcode == PROTO_OP_SEG_WRITE ? "write" : "trim", offset,
                  count, fua ? " fua" : "");

  if (rangelock_acquire (&v->rl, &rg, offset, count) < 0) {
    nbdkit_error ("volume %s: %s: out of time waiting for an overlapping "
                  "request (timeout=%d s)",
                  v->name, opcode == PROTO_OP_SEG_WRITE ? "write" : "trim",
                  v->cfg->timeout_ms / 1000);
    scratch_put (x);
    return -ETIMEDOUT;
  }
  if (epoch_begin (v, &epoch) < 0) {
    nbdkit_error ("volume %s: %s: out of time waiting for older epochs' "
                  "writes (timeout=%d s)",
                  v->name, opcode == PROTO_OP_SEG_WRITE ? "write" : "trim",
                  v->cfg->timeout_ms / 1000);
    rangelock_release (&v->rl, &rg);
    scratch_put (x);
    return -ETIMEDOUT;
  }
  while (err == 0 && done < count) {
    n = split (v, offset + done, count - done, done, x->p, MAX_PIECES,
               &consumed);
    err = modify_window (v, epoch, opcode, buf, x, n, fua, &sent);
    done += consumed;
  }
  /* A server found restarted meanwhile may have lost this write. */
  if (err == 0)
    err = flush_settle_lost (v);
  if (err && sent)
    atomic_store (&v->unclean, true);
  epoch_end (v, epoch);
  rangelock_release (&v->rl, &rg);
  scratch_put (x);
  return err;
}

/* Write COUNT bytes from BUF at OFFSET on every replica.  FUA: durable
 * on every replica before returning.  Returns 0 or -errno (reported).
 */
int
io_pwrite (struct volume *v, const void *buf, uint32_t count, uint64_t offset,
           bool fua)
{
  return modify (v, PROTO_OP_SEG_WRITE, buf, count, offset, fua);
}

/* Trim (and zero: a trimmed range reads back as zeros) COUNT bytes at
 * OFFSET in the allocated segments; holes are left alone.  Returns 0 or
 * -errno (reported).
 */
int
io_trim (struct volume *v, uint32_t count, uint64_t offset, bool fua)
{
  return modify (v, PROTO_OP_SEG_TRIM, NULL, count, offset, fua);
}

/* Zeros written by io_write_zeroes, a chunk at a time.  Never written
 * to; in .bss, so it costs no file space.
 */
#define ZERO_CHUNK (1024 * 1024)
static char zero_chunk[ZERO_CHUNK];

/* Write zeros over COUNT bytes at OFFSET, allocating holes, in chunks
 * of at most ZERO_CHUNK (each under the range lock as a write), all
 * within the running request's deadline.  For zeroing that must not
 * leave holes or punched ranges behind.  Returns 0 or -errno
 * (reported).
 */
int
io_write_zeroes (struct volume *v, uint32_t count, uint64_t offset, bool fua)
{
  uint32_t n;
  int r;

  while (count > 0) {
    n = MIN (count, (uint32_t)ZERO_CHUNK);
    r = modify (v, PROTO_OP_SEG_WRITE, zero_chunk, n, offset, fua);
    if (r < 0)
      return r;
    count -= n;
    offset += n;
  }
  return 0;
}

/* Choose the next ok replica of piece P to read from, starting at
 * position START and skipping those tried: the first whose server is
 * not suspect (failed recently, see ss_server_suspect), else the first
 * suspect one, so that suspicion only orders replicas and the last ok
 * replica is always tried.  Returns its position, or -1.
 */
static int
pick_replica (struct volume *v, const struct piece *p, unsigned start)
{
  const struct seg *s = p->seg;
  struct ss_server *srv;
  unsigned j, pos;
  int suspect = -1;

  for (j = 0; j < s->nreplicas; j++) {
    pos = (start + j) % s->nreplicas;
    if (s->replicas[pos].state != PROTO_REPLICA_OK || (p->tried & (1u << pos)))
      continue;
    srv = servers_cached (v, s->replicas[pos].server);
    if (srv == NULL || !ss_server_suspect (srv))
      return pos;
    if (suspect < 0)
      suspect = pos;
  }
  return suspect;
}

/* Read piece P again from the start: every ok replica of its entry
 * (now P->seg) may be tried, once more.  Fails (-EIO, reported) after
 * MAX_REMAP such rounds.
 */
static int
read_again (struct volume *v, struct piece *p, unsigned start)
{
  if (++p->remaps > MAX_REMAP) {
    nbdkit_error ("volume %s: read: segment %" PRIu64
                  ": its replica set kept changing (generation %" PRIu64 ")",
                  v->name, p->seg->id, p->seg->gen);
    return -EIO;
  }
  p->tried = p->faulty = p->enoent = 0;
  p->restarted = false;
  p->pos = pick_replica (v, p, start);
  if (p->pos < 0) {
    nbdkit_error ("volume %s: read: segment %" PRIu64
                  " has no readable replica",
                  v->name, p->seg->id);
    return -EIO;
  }
  return 0;
}

/* The read of piece P from its replica at P->pos failed as Q says.
 * Decide what comes next, in P->pos: another ok replica, a new round
 * (the entry re-read from the MDS, or the lost writes of a restarted
 * server reported first), or the end (-1; a segment that no replica
 * holds reads as zeros, into BUF).  Returns 0 or -EIO (reported).
 */
static int
read_failed (struct volume *v, char *buf, struct piece *p,
             const struct ss_request *q)
{
  unsigned failed = p->pos;
  const struct seg *old = p->seg;
  int r;

  nbdkit_debug ("volume %s: read: segment %" PRIu64 " on server %" PRIu32
                ": %s%s%s",
                v->name, p->seg->id, q->server->id, strerror (-q->err),
                q->errmsg[0] ? ": " : "", q->errmsg);
  if (q->err == -EREMCHG) {
    /* The server knows a newer replica set than the cached entry: this
     * replica may have been marked stale.  Re-read the entry.
     */
    if (map_reload (v, p->index, &p->seg) < 0)
      return -EIO;
    if (p->seg == NULL) {
      memset (buf + p->boff, 0, p->length);
      p->pos = -1;
      return 0;
    }
    if (p->seg != old)
      return read_again (v, p, failed);
    /* The MDS raises a generation before any server hears of it, so
     * this is rare: try the other replicas, then give it a moment.
     */
  }
  else if (q->err == -ENOENT && q->answered)
    p->enoent |= 1u << failed; /* not a fault: try the others */
  else if (q->err == -SS_ERESTARTED)
    p->restarted = true;
  else if (io_is_replica_fault (q->err))
    p->faulty |= 1u << failed;

  p->pos = pick_replica (v, p, failed + 1);
  if (p->pos >= 0)
    return 0;

  if (p->restarted) {
    /* Report what the restarted server lost, then try it again. */
    if (flush_settle_lost (v) < 0 || map_lookup (v, p->index, &p->seg) < 0)
      return -EIO;
    if (p->seg == NULL)
      p->seg = old;
    return read_again (v, p, failed);
  }
  if (q->err == -EREMCHG) {
    nbdkit_nanosleep (0, 50000000 * (p->remaps + 1));
    return read_again (v, p, failed);
  }
  if (p->enoent != 0 && p->enoent == p->tried) {
    /* No replica holds the segment.  If the entry has not changed it
     * was never written (or trimmed whole): zeros.
     */
    if (!p->reloaded) {
      p->reloaded = true;
      r = map_reload (v, p->index, &p->seg);
      if (r < 0)
        return -EIO;
      if (p->seg != NULL && p->seg != old)
        return read_again (v, p, failed);
    }
    if (tessera_debug_io)
      nbdkit_debug ("volume %s: read: segment %" PRIu64
                    ": no replica holds it: zeros",
                    v->name, old->id);
    memset (buf + p->boff, 0, p->length);
    p->pos = -1;
    return 0;
  }
  nbdkit_error ("volume %s: read: segment %" PRIu64
                " failed on every replica: %s%s%s",
                v->name, p->seg->id, strerror (-q->err),
                q->errmsg[0] ? ": " : "", q->errmsg);
  return -EIO;
}

/* Read the N pieces of X into BUF: holes as zeros, the others from one
 * ok replica each, failing over to the next ok replica on error (see
 * read_failed).  Returns 0 or -errno (reported).
 */
static int
read_window (struct volume *v, char *buf, struct scratch *x, size_t n)
{
  struct piece *p = x->p;
  struct ss_request *reqs;
  struct ss_batch b;
  unsigned rr = atomic_fetch_add (&v->read_rr, 1);
  uint64_t epoch = epoch_current (v); /* ignored by the servers */
  size_t i, nreq;
  int r, err = 0;

  r = lookup_pieces (v, p, n);
  if (r == 0 && !v->rw)
    r = recheck_holes (v, p, n);
  if (r < 0)
    return r;
  reqs = scratch_reqs (x, n);
  if (reqs == NULL)
    return -ENOMEM;
  for (i = 0; i < n; i++) {
    if (p[i].seg == NULL) {
      memset (buf + p[i].boff, 0, p[i].length);
      p[i].pos = -1;
    }
    else {
      p[i].pos = pick_replica (v, &p[i], rr + i);
      if (p[i].pos < 0) {
        nbdkit_error ("volume %s: read: segment %" PRIu64
                      " has no readable replica",
                      v->name, p[i].seg->id);
        return -EIO;
      }
    }
  }

  /* Each round sends one request per piece still to read. */
  for (;;) {
    for (i = 0, nreq = 0; i < n; i++) {
      struct ss_request *q;

      if (p[i].pos < 0)
        continue;
      q = &reqs[nreq++];
      memset (q, 0, sizeof *q);
      p[i].req0 = nreq - 1;
      p[i].tried |= 1u << p[i].pos;
      r = servers_get (v, p[i].seg->replicas[p[i].pos].server, &q->server);
      if (r < 0)
        return -EIO;
      q->opcode = PROTO_OP_SEG_READ;
      q->io.segment = p[i].seg->id;
      q->io.volume = v->id;
      q->io.epoch = epoch;
      /* A server that knows a newer replica set refuses (ESTALEMAP). */
      q->io.gen = p[i].seg->gen;
      q->io.index = p[i].index;
      q->io.offset = p[i].offset;
      q->io.length = p[i].length;
      q->data = buf + p[i].boff;
    }
    if (nreq == 0)
      break;
    if (!request_can_start (v->cfg->timeout_ms)) {
      nbdkit_error ("volume %s: read: out of time (timeout=%d s)", v->name,
                    v->cfg->timeout_ms / 1000);
      return -ETIMEDOUT;
    }

    ss_batch_init (&b, v->cfg->timeout_ms);
    ss_submit (&b, reqs, nreq);
    ss_batch_wait (&b, reqs, nreq);
    ss_batch_destroy (&b);

    for (i = 0; i < n; i++) {
      struct ss_request *q;

      if (p[i].pos < 0)
        continue;
      q = &reqs[p[i].req0];
      if (q->err == 0)
        p[i].pos = -1;
      else if ((r = read_failed (v, buf, &p[i], q)) < 0) {
        p[i].pos = -1;
        set_err (&err, r);
      }
    }
  }
  if (err)
    return err;

  /* Report the replicas that failed where another one served. */
  if (v->rw && !atomic_load (&v->lease_lost)) {
    for (i = 0; i < n; i++) {
      unsigned j;

      for (j = 0; p[i].seg && j < p[i].seg->nreplicas; j++)
        if (p[i].faulty & (1u << j))
          map_replica_failed (v, p[i].seg, p[i].seg->replicas[j].server);
    }
  }
  return 0;
}

/* Read COUNT bytes at OFFSET into BUF.  Returns 0 or -errno (reported).
 */
int
io_pread (struct volume *v, void *buf, uint32_t count, uint64_t offset)
{
  struct scratch *x;
  uint64_t done = 0, consumed;
  size_t n;
  int err = 0;

  x = scratch_get ();
  if (x == NULL)
    return -ENOMEM;
  if (tessera_debug_io)
    nbdkit_debug ("read %" PRIu64 "+%" PRIu32, offset, count);
  while (err == 0 && done < count) {
    n = split (v, offset + done, count - done, done, x->p, MAX_PIECES,
               &consumed);
    err = read_window (v, buf, x, n);
    done += consumed;
  }
  scratch_put (x);
  return err;
}

/* Describe [OFFSET, OFFSET+COUNT) to nbdkit: unallocated segments as
 * holes that read as zeros, allocated ones as data.  A read-only open
 * asks the MDS again about cached holes first (see recheck_holes), one
 * MAP_GET per PROTO_MAP_MAX segments.  With REQ_ONE, stop after the
 * first extent.  Returns 0 or -errno (reported).
 */
int
io_extents (struct volume *v, uint32_t count, uint64_t offset, bool req_one,
            struct nbdkit_extents *extents)
{
  uint64_t end = offset + count, o = offset, idx, segend;
  uint64_t last = (end - 1) >> v->seg_shift, checked = 0;
  const struct seg *seg;
  uint32_t type;
  int prev = -1, r;

  if (count == 0)
    return 0;
  while (o < end) {
    idx = o >> v->seg_shift;
    segend = (idx + 1) << v->seg_shift;
    if (segend > end)
      segend = end;
    r = map_lookup (v, idx, &seg);
    if (r == 0 && seg == NULL && !v->rw && idx >= checked) {
      checked = MIN (last + 1, idx + PROTO_MAP_MAX);
      r = map_recheck (v, idx, checked - idx);
      if (r == 0)
        r = map_lookup (v, idx, &seg);
    }
    if (r < 0)
      return r;
    type = seg ? 0 : NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO;
    if (req_one && prev >= 0 && (uint32_t)prev != type)
      break;
    if (nbdkit_add_extent (extents, o, segend - o, type) == -1)
      return -errno;
    prev = type;
    o = segend;
  }
  return 0;
}

/* nbdkit-tessera-plugin: the data path.
 *
 * A request is split at segment boundaries (and at PROTO_MAX_DATA) into
 * pieces, handled in windows of at most MAX_PIECES.  Writes, trims and
 * zeroes hold the range lock for the whole request and go to every
 * replica in state ok or syncing, all in parallel; a piece is done when
 * every replica has answered.  A replica that failed while another
 * succeeded is reported to the MDS (REPLICA_FAILED) before the request
 * is acknowledged.  Reads go to one ok replica per piece, spread
 * round-robin, failing over to the next ok replica on error.  Holes read
 * as zeros without network traffic, and writes to holes allocate them
 * first (MAP_ALLOC, with read-ahead).
 *
 * Flush: every non-FUA write or trim records its segment in the dirty
 * set of each server that acknowledged it; FLUSH takes those sets and
 * sends SEG_FLUSH to each server named, waiting for all.
 */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "cleanup.h"
#include "minmax.h"
#include "protocol.h"

#include "internal.h"

/* Pieces handled at once: bounds the requests in flight per call. */
#define MAX_PIECES 64

/* Segments allocated beyond a write to a hole (sequential writers). */
#define ALLOC_READAHEAD 16

/* Dirty sets are compacted (sorted, duplicates dropped) past this. */
#define DIRTY_COMPACT 1024

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
};

/* Whether ERR from a storage server means the replica is bad and must
 * be reported to the MDS, rather than a condition of the whole request
 * (storage full, or this writer was fenced by a newer epoch).
 */
bool
io_is_replica_fault (int err)
{
  return err != 0 && err != -ENOSPC && err != -ESTALE;
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

/* qsort comparison of two uint64_t. */
static int
compare_u64 (const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

  return x < y ? -1 : x > y;
}

/* Record that segment INDEX on server S has data that may not be
 * durable.  Returns 0 or -ENOMEM.
 */
static int
dirty_add (struct ss_server *s, uint64_t index)
{
  size_t i, j;
  uint64_t *p;

  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&s->lock);
  if (s->ndirty > 0 && s->dirty[s->ndirty - 1] == index)
    return 0;
  if (s->ndirty == s->dirty_cap) {
    /* Full: drop duplicates first, grow only if that frees too little. */
    if (s->ndirty >= DIRTY_COMPACT) {
      qsort (s->dirty, s->ndirty, sizeof s->dirty[0], compare_u64);
      for (i = 1, j = 1; i < s->ndirty; i++)
        if (s->dirty[i] != s->dirty[j - 1])
          s->dirty[j++] = s->dirty[i];
      s->ndirty = j;
    }
    if (s->dirty_cap == 0 || s->ndirty * 2 > s->dirty_cap) {
      size_t cap = s->dirty_cap ? s->dirty_cap * 2 : 64;

      p = realloc (s->dirty, cap * sizeof *p);
      if (p == NULL)
        return -ENOMEM;
      s->dirty = p;
      s->dirty_cap = cap;
    }
  }
  s->dirty[s->ndirty++] = index;
  return 0;
}

/* The first error of a request, kept for its return value. */
static void
set_err (int *err, int e)
{
  if (*err == 0)
    *err = e;
}

/* Judge the answers of piece P's replicas (write or trim) and report the
 * replicas that failed while another succeeded.  Returns 0 or -errno
 * (reported).
 */
static int
finish_modify (struct volume *v, const char *what, struct piece *p,
               struct ss_request *reqs, bool fua)
{
  unsigned nok = 0, nnospc = 0, nstale = 0;
  const char *msg = "";
  int err = 0, first = 0, r;
  size_t k;

  for (k = p->req0; k < p->req0 + p->nreq; k++) {
    struct ss_request *q = &reqs[k];

    if (q->err == 0)
      nok++;
    else {
      nbdkit_debug ("volume %s: %s: segment %" PRIu64 " on server %" PRIu32
                    ": %s%s%s",
                    v->name, what, p->seg->id, q->server->id,
                    strerror (-q->err), q->errmsg[0] ? ": " : "", q->errmsg);
      if (first == 0) {
        first = q->err;
        msg = q->errmsg;
      }
      if (q->err == -ENOSPC)
        nnospc++;
      else if (q->err == -ESTALE)
        nstale++;
    }
  }

  if (nstale) {
    atomic_store (&v->lease_lost, true);
    nbdkit_error ("volume %s: %s: segment %" PRIu64
                  ": fenced, another writer holds the volume",
                  v->name, what, p->seg->id);
    set_err (&err, -EIO);
  }
  else if (nnospc) {
    nbdkit_error ("volume %s: %s: segment %" PRIu64 ": storage full", v->name,
                  what, p->seg->id);
    set_err (&err, -ENOSPC);
  }
  else if (nok == 0) {
    nbdkit_error (
        "volume %s: %s: segment %" PRIu64 " failed on every replica: %s%s%s",
        v->name, what, p->seg->id, strerror (-first), msg[0] ? ": " : "", msg);
    set_err (&err, -EIO);
  }

  for (k = p->req0; k < p->req0 + p->nreq; k++) {
    struct ss_request *q = &reqs[k];

    if (q->err == 0) {
      if (!fua && dirty_add (q->server, p->index) < 0) {
        nbdkit_error ("volume %s: %s: out of memory", v->name, what);
        set_err (&err, -ENOMEM);
      }
    }
    else if (nok > 0 && io_is_replica_fault (q->err)) {
      r = map_replica_failed (v, p->seg, q->server->id);
      if (r < 0)
        set_err (&err, -EIO);
    }
  }
  return err;
}

/* Write (SEG_WRITE, from BUF) or trim (SEG_TRIM) the N pieces at P on
 * every writable replica.  Returns 0 or -errno (reported).
 */
static int
modify_window (struct volume *v, uint8_t opcode, const char *buf,
               struct piece *p, size_t n, bool fua)
{
  const char *what = opcode == PROTO_OP_SEG_WRITE ? "write" : "trim";
  CLEANUP_FREE struct ss_request *reqs = NULL;
  struct ss_batch b;
  uint64_t first = UINT64_MAX, last = 0;
  size_t i, k, nreq = 0;
  unsigned j;
  int r, err = 0;

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
      if (r == 0)
        r = lookup_pieces (v, p, n);
      if (r < 0)
        return r;
    }
  }

  for (i = 0; i < n; i++) {
    unsigned w = 0;

    if (p[i].seg == NULL)
      continue; /* a trimmed hole: nothing to do */
    for (j = 0; j < p[i].seg->nreplicas; j++)
      if (p[i].seg->replicas[j].state != PROTO_REPLICA_STALE)
        w++;
    if (w == 0) {
      nbdkit_error ("volume %s: %s: segment %" PRIu64
                    " has no writable replica",
                    v->name, what, p[i].seg->id);
      return -EIO;
    }
    nreq += w;
  }
  if (nreq == 0)
    return 0;
  reqs = calloc (nreq, sizeof *reqs);
  if (reqs == NULL) {
    nbdkit_error ("calloc: %m");
    return -ENOMEM;
  }

  /* Resolve every server before sending anything. */
  for (i = 0, k = 0; i < n; i++) {
    const struct seg *s = p[i].seg;

    p[i].req0 = k;
    if (s == NULL)
      continue;
    for (j = 0; j < s->nreplicas; j++) {
      struct ss_request *q;

      if (s->replicas[j].state == PROTO_REPLICA_STALE)
        continue;
      q = &reqs[k++];
      r = volume_server (v, s->replicas[j].server, &q->server);
      if (r < 0)
        return -EIO;
      q->opcode = opcode;
      q->flags = fua ? PROTO_FLAG_FUA : 0;
      q->io.segment = s->id;
      q->io.volume = v->id;
      q->io.epoch = v->epoch;
      q->io.offset = p[i].offset;
      q->io.length = p[i].length;
      if (opcode == PROTO_OP_SEG_WRITE)
        q->data = (char *)buf + p[i].boff;
    }
    p[i].nreq = k - p[i].req0;
  }
  assert (k == nreq);

  ss_batch_init (&b, v->cfg->timeout_ms);
  for (k = 0; k < nreq; k++)
    ss_submit (&b, &reqs[k]);
  ss_batch_wait (&b, reqs, nreq);
  ss_batch_destroy (&b);

  for (i = 0; i < n; i++)
    if (p[i].seg)
      set_err (&err, finish_modify (v, what, &p[i], reqs, fua));
  return err;
}

/* Write or trim (OPCODE) [OFFSET, OFFSET+COUNT) under the range lock.
 * Returns 0 or -errno (reported).
 */
static int
modify (struct volume *v, uint8_t opcode, const void *buf, uint32_t count,
        uint64_t offset, bool fua)
{
  CLEANUP_FREE struct piece *p = NULL;
  struct range rg;
  uint64_t done = 0, consumed;
  size_t n;
  int err = 0;

  if (!v->rw) {
    nbdkit_error ("volume %s: opened read-only", v->name);
    return -EROFS;
  }
  if (atomic_load (&v->lease_lost)) {
    nbdkit_error ("volume %s: writer lease lost", v->name);
    return -EIO;
  }
  p = malloc (MAX_PIECES * sizeof *p);
  if (p == NULL) {
    nbdkit_error ("malloc: %m");
    return -ENOMEM;
  }
  if (tessera_debug_io)
    nbdkit_debug ("%s %" PRIu64 "+%" PRIu32 "%s",
                  opcode == PROTO_OP_SEG_WRITE ? "write" : "trim", offset,
                  count, fua ? " fua" : "");

  rangelock_acquire (&v->rl, &rg, offset, count);
  while (err == 0 && done < count) {
    n = split (v, offset + done, count - done, done, p, MAX_PIECES, &consumed);
    err = modify_window (v, opcode, buf, p, n, fua);
    done += consumed;
  }
  rangelock_release (&v->rl, &rg);
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

/* Choose the next ok replica of piece P to read from, starting at
 * position START and skipping those tried.  Returns its position, or -1.
 */
static int
pick_replica (const struct piece *p, unsigned start)
{
  const struct seg *s = p->seg;
  unsigned j, pos;

  for (j = 0; j < s->nreplicas; j++) {
    pos = (start + j) % s->nreplicas;
    if (s->replicas[pos].state == PROTO_REPLICA_OK && !(p->tried & (1u << pos)))
      return pos;
  }
  return -1;
}

/* Read the N pieces at P into BUF: holes as zeros, the others from one
 * ok replica each, failing over to the next ok replica on error.
 * Returns 0 or -errno (reported).
 */
static int
read_window (struct volume *v, char *buf, struct piece *p, size_t n)
{
  CLEANUP_FREE struct ss_request *reqs = NULL;
  CLEANUP_FREE int *pos = NULL;
  struct ss_batch b;
  unsigned rr = atomic_fetch_add (&v->read_rr, 1);
  size_t i, k, nreq;
  int r, err = 0;

  r = lookup_pieces (v, p, n);
  if (r < 0)
    return r;
  reqs = calloc (n, sizeof *reqs);
  pos = calloc (n, sizeof *pos);
  if (reqs == NULL || pos == NULL) {
    nbdkit_error ("calloc: %m");
    return -ENOMEM;
  }
  for (i = 0; i < n; i++) {
    if (p[i].seg == NULL) {
      memset (buf + p[i].boff, 0, p[i].length);
      pos[i] = -1;
    }
    else {
      pos[i] = pick_replica (&p[i], rr + i);
      if (pos[i] < 0) {
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

      if (pos[i] < 0)
        continue;
      q = &reqs[nreq++];
      memset (q, 0, sizeof *q);
      p[i].req0 = nreq - 1;
      p[i].tried |= 1u << pos[i];
      r = volume_server (v, p[i].seg->replicas[pos[i]].server, &q->server);
      if (r < 0)
        return -EIO;
      q->opcode = PROTO_OP_SEG_READ;
      q->io.segment = p[i].seg->id;
      q->io.volume = v->id;
      q->io.epoch = v->epoch;
      q->io.offset = p[i].offset;
      q->io.length = p[i].length;
      q->data = buf + p[i].boff;
    }
    if (nreq == 0)
      break;

    ss_batch_init (&b, v->cfg->timeout_ms);
    for (k = 0; k < nreq; k++)
      ss_submit (&b, &reqs[k]);
    ss_batch_wait (&b, reqs, nreq);
    ss_batch_destroy (&b);

    for (i = 0; i < n; i++) {
      struct ss_request *q;
      unsigned failed;

      if (pos[i] < 0)
        continue;
      q = &reqs[p[i].req0];
      if (q->err == 0) {
        pos[i] = -1;
        continue;
      }
      failed = pos[i];
      nbdkit_debug ("volume %s: read: segment %" PRIu64 " on server %" PRIu32
                    ": %s%s%s",
                    v->name, p[i].seg->id, q->server->id, strerror (-q->err),
                    q->errmsg[0] ? ": " : "", q->errmsg);
      if (io_is_replica_fault (q->err))
        p[i].faulty |= 1u << failed;
      pos[i] = pick_replica (&p[i], failed + 1);
      if (pos[i] < 0) {
        nbdkit_error ("volume %s: read: segment %" PRIu64
                      " failed on every replica: %s%s%s",
                      v->name, p[i].seg->id, strerror (-q->err),
                      q->errmsg[0] ? ": " : "", q->errmsg);
        set_err (&err, -EIO);
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
  CLEANUP_FREE struct piece *p = NULL;
  uint64_t done = 0, consumed;
  size_t n;
  int err = 0;

  p = malloc (MAX_PIECES * sizeof *p);
  if (p == NULL) {
    nbdkit_error ("malloc: %m");
    return -ENOMEM;
  }
  if (tessera_debug_io)
    nbdkit_debug ("read %" PRIu64 "+%" PRIu32, offset, count);
  while (err == 0 && done < count) {
    n = split (v, offset + done, count - done, done, p, MAX_PIECES, &consumed);
    err = read_window (v, buf, p, n);
    done += consumed;
  }
  return err;
}

/* Describe [OFFSET, OFFSET+COUNT) to nbdkit: unallocated segments as
 * holes that read as zeros, allocated ones as data.  With REQ_ONE, stop
 * after the first extent.  Returns 0 or -errno (reported).
 */
int
io_extents (struct volume *v, uint32_t count, uint64_t offset, bool req_one,
            struct nbdkit_extents *extents)
{
  uint64_t end = offset + count, o = offset, idx, segend;
  const struct seg *seg;
  uint32_t type;
  int prev = -1, r;

  while (o < end) {
    idx = o >> v->seg_shift;
    segend = (idx + 1) << v->seg_shift;
    if (segend > end)
      segend = end;
    r = map_lookup (v, idx, &seg);
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

/* One server's dirty set, taken by a flush. */
struct flush_item {
  struct ss_server *server;
  uint64_t *dirty;
  size_t n;
};

struct flush_set {
  struct flush_item *items;
  size_t n, cap;
  int err;
};

/* Take server S's dirty set into the flush set OPAQUE
 * (volume_for_each_server callback).
 */
static void
take_dirty (struct ss_server *s, void *opaque)
{
  struct flush_set *f = opaque;

  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&s->lock);
  if (s->ndirty == 0 || f->err)
    return;
  if (f->n == f->cap) {
    size_t cap = f->cap ? f->cap * 2 : 16;
    struct flush_item *p = realloc (f->items, cap * sizeof *p);

    if (p == NULL) {
      f->err = -ENOMEM;
      return;
    }
    f->items = p;
    f->cap = cap;
  }
  f->items[f->n].server = s;
  f->items[f->n].dirty = s->dirty;
  f->items[f->n].n = s->ndirty;
  f->n++;
  s->dirty = NULL;
  s->ndirty = s->dirty_cap = 0;
}

/* Whether server ID is in FAILED (the N servers whose flush failed). */
static bool
flush_failed_on (const struct flush_item *items, const struct ss_request *reqs,
                 size_t n, uint32_t id)
{
  size_t i;

  for (i = 0; i < n; i++)
    if (reqs[i].err != 0 && items[i].server->id == id)
      return true;
  return false;
}

/* Server IT's flush failed: its replicas of the dirty segments may have
 * lost writes.  Report each as failed to the MDS where another ok
 * replica was flushed, so that it is repaired from there.  Returns 0 if
 * every segment is accounted for, else -EIO (reported).
 */
static int
flush_failed (struct volume *v, const struct flush_item *it,
              const struct flush_item *items, const struct ss_request *reqs,
              size_t n)
{
  const struct seg *seg;
  uint32_t id = it->server->id;
  size_t i;
  unsigned j;
  bool mine, other;
  int r;

  if (atomic_load (&v->lease_lost))
    return -EIO;
  qsort (it->dirty, it->n, sizeof it->dirty[0], compare_u64);
  for (i = 0; i < it->n; i++) {
    if (i > 0 && it->dirty[i] == it->dirty[i - 1])
      continue;
    r = map_lookup (v, it->dirty[i], &seg);
    if (r < 0)
      return -EIO;
    if (seg == NULL)
      continue;
    mine = other = false;
    for (j = 0; j < seg->nreplicas; j++) {
      if (seg->replicas[j].server == id)
        mine = seg->replicas[j].state != PROTO_REPLICA_STALE;
      else if (seg->replicas[j].state == PROTO_REPLICA_OK &&
               !flush_failed_on (items, reqs, n, seg->replicas[j].server))
        other = true;
    }
    if (!mine)
      continue; /* already reported */
    if (!other) {
      nbdkit_error ("volume %s: flush: segment %" PRIu64
                    ": no replica could be made durable",
                    v->name, seg->id);
      return -EIO;
    }
    if (map_replica_failed (v, seg, id) < 0)
      return -EIO;
  }
  return 0;
}

/* Make every write and trim acknowledged so far durable: SEG_FLUSH to
 * every server written since the last flush, in parallel.  One flush
 * runs at a time, so a flush never returns before the writes that an
 * earlier, still running, flush took from the dirty sets are durable.
 * Returns 0 or -errno (reported).
 */
int
io_flush (struct volume *v)
{
  struct flush_set f = { 0 };
  CLEANUP_FREE struct ss_request *reqs = NULL;
  struct ss_batch b;
  size_t i, k;
  int err = 0;

  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&v->flush_lock);
  volume_for_each_server (v, take_dirty, &f);
  if (tessera_debug_io)
    nbdkit_debug ("flush: %zu servers", f.n);
  if (f.err == 0 && f.n > 0) {
    reqs = calloc (f.n, sizeof *reqs);
    if (reqs == NULL)
      f.err = -ENOMEM;
  }
  if (f.err) {
    nbdkit_error ("volume %s: flush: out of memory", v->name);
    err = f.err;
    goto out;
  }
  if (f.n == 0)
    return 0;

  ss_batch_init (&b, v->cfg->timeout_ms);
  for (i = 0; i < f.n; i++) {
    reqs[i].opcode = PROTO_OP_SEG_FLUSH;
    reqs[i].server = f.items[i].server;
    ss_submit (&b, &reqs[i]);
  }
  ss_batch_wait (&b, reqs, f.n);
  ss_batch_destroy (&b);

  for (i = 0; i < f.n; i++) {
    if (reqs[i].err == 0)
      continue;
    nbdkit_debug ("volume %s: flush: server %" PRIu32 ": %s%s%s", v->name,
                  f.items[i].server->id, strerror (-reqs[i].err),
                  reqs[i].errmsg[0] ? ": " : "", reqs[i].errmsg);
    if (flush_failed (v, &f.items[i], f.items, reqs, f.n) < 0) {
      if (err == 0)
        nbdkit_error ("volume %s: flush: server %" PRIu32 ": %s%s%s", v->name,
                      f.items[i].server->id, strerror (-reqs[i].err),
                      reqs[i].errmsg[0] ? ": " : "", reqs[i].errmsg);
      set_err (&err, -EIO);
      /* Keep the segments dirty so that the next flush retries. */
      for (k = 0; k < f.items[i].n; k++)
        dirty_add (f.items[i].server, f.items[i].dirty[k]);
    }
  }

out:
  /* A set taken but not flushed goes back. */
  for (i = 0; i < f.n; i++) {
    if (reqs == NULL)
      for (k = 0; k < f.items[i].n; k++)
        dirty_add (f.items[i].server, f.items[i].dirty[k]);
    free (f.items[i].dirty);
  }
  free (f.items);
  return err;
}

/* Segment entries: the ring thread's in-memory mirror of the index, and
 * the rules that order index updates before the data they cover.
 *
 * A segment is idle or busy (SS_SEG_NEW, SS_SEG_RECORD, SS_SEG_DELETING).
 * A request that needs a busy segment waits on its list and is resumed
 * when the segment is idle again, then re-checks from the start.  So:
 *  - a write to a new segment allocates a slot, punches it (stale data of
 *    an earlier occupant must read as zeros), syncs the punched range (so
 *    the punch is durable before the record that makes the slot readable:
 *    after a power loss, the old bytes, maybe another volume's, must not
 *    come back under the new segment), records the segment in the index,
 *    and only then is its data issued;
 *  - a write in an epoch newer than the recorded one records the epoch
 *    first; a write or trim with a generation older than the recorded
 *    one is refused (EREMCHG, PROTO_ESTALEMAP);
 *  - SEG_SET_GEN and a finished SEG_PULL raise the recorded generation
 *    and epoch (ss_seg_raise), creating an empty segment if needed;
 *  - the first write, trim, SEG_SET_GEN or SEG_PULL that carries the
 *    segment's index in its volume records it (a record from before
 *    indexes existed is rewritten); one whose index differs from the
 *    recorded one is refused (SS_EINDEX, PROTO_EINVAL);
 *  - while a SEG_PULL copies into the segment, a write or trim marks its
 *    range in the pull (so copy data never lands over it) and waits while
 *    a copy write overlaps it (so it lands after that copy data); for a
 *    while after the segment is created or SEG_SET_GEN raises its
 *    generation, writes are marked in its tracker (track.c) too, which a
 *    pull takes over;
 *  - a delete cancels a pull, drops the record durably (leaving a
 *    tombstone, gone.c), waits for I/O in flight on the slot, punches it
 *    and only then frees it; writes and trims of a tombstoned segment are
 *    refused (EREMCHG), and only ss_seg_raise creates it again.
 */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "cleanup.h"
#include "log.h"

#include "internal.h"

#define INITIAL_BUCKETS 1024
/* Bytes kept preallocated past the end of the index's LMDB file, so
 * that deletes (which free space) can be recorded on a full filesystem.
 */
#define INDEX_RESERVE (512 * 1024)
/* Below this much room on the filesystem, an index update failing with
 * EIO means ENOSPC: LMDB reports a short write ("filesystem full?") as
 * EIO.
 */
#define INDEX_FULL_ROOM (1024 * 1024)

/* Bucket of segment ID (NBUCKETS a power of two). */
static size_t
seg_hash (uint64_t id, size_t nbuckets)
{
  id ^= id >> 33;
  id *= UINT64_C (0xff51afd7ed558ccd);
  id ^= id >> 33;
  return id & (nbuckets - 1);
}

/* Set up the empty segment table. */
int
ss_segs_init (struct ss_loop *loop)
{
  struct ss_seg_table *t = &loop->segs;

  t->buckets = calloc (INITIAL_BUCKETS, sizeof *t->buckets);
  if (t->buckets == NULL)
    return -ENOMEM;
  t->nbuckets = INITIAL_BUCKETS;
  t->count = 0;
  return 0;
}

/* Free every entry and the table (at exit, when none is busy). */
void
ss_segs_free (struct ss_loop *loop)
{
  struct ss_seg_table *t = &loop->segs;
  size_t i;

  for (i = 0; i < t->nbuckets && t->buckets; i++) {
    struct ss_seg *s = t->buckets[i], *next;

    for (; s; s = next) {
      next = s->hnext;
      assert (s->busy == 0 && s->io_inflight == 0);
      ss_track_drop (loop, s);
      free (s);
    }
  }
  free (t->buckets);
  t->buckets = NULL;
  t->nbuckets = t->count = 0;
}

/* Double the buckets when the chains get long; on ENOMEM keep going
 * with longer chains.
 */
static void
table_grow (struct ss_seg_table *t)
{
  size_t n = t->nbuckets * 2, i;
  struct ss_seg **b = calloc (n, sizeof *b);

  if (b == NULL)
    return;
  for (i = 0; i < t->nbuckets; i++) {
    struct ss_seg *s = t->buckets[i], *next;

    for (; s; s = next) {
      size_t h = seg_hash (s->id, n);

      next = s->hnext;
      s->hnext = b[h];
      b[h] = s;
    }
  }
  free (t->buckets);
  t->buckets = b;
  t->nbuckets = n;
}

/* Add SEG (not present) to T. */
static void
table_insert (struct ss_seg_table *t, struct ss_seg *seg)
{
  size_t h;

  if (t->count >= t->nbuckets * 2)
    table_grow (t);
  h = seg_hash (seg->id, t->nbuckets);
  seg->hnext = t->buckets[h];
  t->buckets[h] = seg;
  t->count++;
}

/* Remove SEG (present) from T. */
static void
table_remove (struct ss_seg_table *t, struct ss_seg *seg)
{
  struct ss_seg **pp = &t->buckets[seg_hash (seg->id, t->nbuckets)];

  while (*pp != seg)
    pp = &(*pp)->hnext;
  *pp = seg->hnext;
  t->count--;
}

/* The entry of segment ID, or NULL.  Ring thread. */
struct ss_seg *
ss_seg_lookup (struct ss_loop *loop, uint64_t id)
{
  struct ss_seg *s;

  SS_ASSERT_RING (loop);
  s = loop->segs.buckets[seg_hash (id, loop->segs.nbuckets)];
  while (s && s->id != id)
    s = s->hnext;
  return s;
}

struct load_state {
  struct ss_loop *loop;
  uint8_t *used_map;
};

/* ss_index_load callback: add one record as an idle entry. */
static int
load_one (void *arg, const struct ss_index_rec *rec)
{
  struct load_state *ls = arg;
  struct ss_loop *loop = ls->loop;
  struct ss_seg *seg;

  if (rec->slot >= loop->store->nslots ||
      (ls->used_map[rec->slot / 8] & (1u << (rec->slot % 8)))) {
    log_error ("index: segment %" PRIu64 ": slot %" PRIu32
               " is out of range or used twice",
               rec->segment, rec->slot);
    return -EIO;
  }
  seg = calloc (1, sizeof *seg);
  if (seg == NULL)
    return -ENOMEM;
  seg->id = rec->segment;
  seg->slot = rec->slot;
  seg->volume = rec->volume;
  seg->epoch = rec->epoch;
  seg->gen = rec->gen;
  seg->index = rec->index;
  seg->state = rec->state;
  table_insert (&loop->segs, seg);
  ls->used_map[rec->slot / 8] |= 1u << (rec->slot % 8);
  return 0;
}

/* Preallocate INDEX_RESERVE bytes past the end of the index's LMDB data
 * file, keeping its size (LMDB does not notice): the file's next growth
 * takes them without needing room on the filesystem.  A failure only
 * loses the reserve.  Start-up.
 */
static void
index_reserve (struct ss_loop *loop)
{
  CLEANUP_FREE char *dir = ss_store_index_path (loop->store);
  CLEANUP_FREE char *path = NULL;
  CLEANUP_CLOSE int fd = -1;
  struct stat sb;

  if (dir == NULL || asprintf (&path, "%s/data.mdb", dir) == -1) {
    path = NULL;
    return;
  }
  fd = open (path, O_WRONLY | O_CLOEXEC);
  if (fd == -1 || fstat (fd, &sb) == -1 ||
      fallocate (fd, FALLOC_FL_KEEP_SIZE, sb.st_size, INDEX_RESERVE) == -1)
    log_warn ("index: %s: reserving %d bytes: %s", path, INDEX_RESERVE,
              strerror (errno));
}

/* The error ERR of an index update as the client should see it: -EIO
 * becomes -ENOSPC when the store's filesystem is (almost) full.
 */
int
ss_index_errno (struct ss_loop *loop, int err)
{
  struct statvfs sv;

  if (err == -EIO && fstatvfs (loop->store->dir_fd, &sv) == 0 &&
      (uint64_t)sv.f_bavail * sv.f_frsize < INDEX_FULL_ROOM)
    return -ENOSPC;
  return err;
}

/* Load every index record and rebuild the free-slot list.  Start-up. */
int
ss_segs_load (struct ss_loop *loop, struct ss_index *idx)
{
  struct load_state ls = { .loop = loop };
  int r;

  ls.used_map = calloc ((loop->store->nslots + 7) / 8, 1);
  if (ls.used_map == NULL)
    return -ENOMEM;
  r = ss_index_load (idx, load_one, &ls);
  if (r == 0)
    r = ss_store_slots_init (loop->store, ls.used_map);
  free (ls.used_map);
  if (r == 0) {
    log_info ("store: %zu segments, %" PRIu32 " of %" PRIu32 " slots free",
              loop->segs.count, loop->store->nfree, loop->store->nslots);
    index_reserve (loop);
  }
  return r;
}

/* True unless INDEX (given) differs from SEG's recorded index: a
 * segment fills one place of its volume, and a request that says
 * otherwise is refused rather than allowed to move it.
 */
static bool
index_agrees (const struct ss_seg *seg, uint64_t index)
{
  return index == SS_INDEX_NONE || seg->index == SS_INDEX_NONE ||
         seg->index == index;
}

/* True if INDEX (given) is news for SEG, which has none recorded. */
static bool
index_learned (const struct ss_seg *seg, uint64_t index)
{
  return index != SS_INDEX_NONE && seg->index == SS_INDEX_NONE;
}

/* The index to record for SEG: its own, or else INDEX. */
static uint64_t
seg_index (const struct ss_seg *seg, uint64_t index)
{
  return seg->index != SS_INDEX_NONE ? seg->index : index;
}

/* Append W to SEG's wait list. */
static void
seg_wait (struct ss_seg *seg, struct ss_waiter *w)
{
  w->next = NULL;
  if (seg->wait_tail)
    seg->wait_tail->next = w;
  else
    seg->wait_head = w;
  seg->wait_tail = w;
}

/* Resume every waiter of the list W with ERR.  The list was detached
 * first, so waiters may queue again (or the entry may be gone).
 */
static void
resume_all (struct ss_loop *loop, struct ss_waiter *w, int err)
{
  while (w) {
    struct ss_waiter *next = w->next;

    w->resume (loop, w, err);
    w = next;
  }
}

/* Detach SEG's wait list and resume it with ERR. */
static void
seg_wake (struct ss_loop *loop, struct ss_seg *seg, int err)
{
  struct ss_waiter *w = seg->wait_head;

  seg->wait_head = seg->wait_tail = NULL;
  resume_all (loop, w, err);
}

/* Resume SEG's waiters so they check again (a pull's copy write that
 * held them off is done).  Ring thread.
 */
void
ss_seg_wake (struct ss_loop *loop, struct ss_seg *seg)
{
  SS_ASSERT_RING (loop);
  seg_wake (loop, seg, 0);
}

/* Drop SEG: out of the table, its slot freed, its waiters (and delete
 * waiter) resumed with ERR after it is gone.
 */
static void
seg_destroy (struct ss_loop *loop, struct ss_seg *seg, int err)
{
  struct ss_waiter *w = seg->wait_head, *dw = seg->del_waiter;

  assert (seg->io_inflight == 0 && seg->pull == NULL);
  ss_track_drop (loop, seg);
  table_remove (&loop->segs, seg);
  ss_store_slot_free (loop->store, seg->slot);
  free (seg);
  if (dw)
    dw->resume (loop, dw, 0);
  resume_all (loop, w, err);
}

/* Punch SEG's whole slot; DONE gets the result. */
static void
seg_punch (struct ss_loop *loop, struct ss_seg *seg,
           void (*done) (struct ss_loop *, struct ss_op *, int))
{
  struct io_uring_sqe *sqe = ss_get_sqe (loop);

  io_uring_prep_fallocate (
      sqe, loop->store->data_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
      ss_store_slot_offset (loop->store, seg->slot), loop->store->segment_size);
  seg->op.done = done;
  io_uring_sqe_set_data (sqe, &seg->op);
}

/* Queue SEG's record (with NEW_EPOCH and NEW_GEN) in the index; DONE
 * gets it back.
 */
static void
seg_record (struct ss_loop *loop, struct ss_seg *seg,
            void (*done) (struct ss_loop *, struct ss_index_op *))
{
  seg->iop.type = SS_INDEX_PUT;
  seg->iop.rec.segment = seg->id;
  seg->iop.rec.slot = seg->slot;
  seg->iop.rec.volume = seg->volume;
  seg->iop.rec.epoch = seg->new_epoch;
  seg->iop.rec.gen = seg->new_gen;
  seg->iop.rec.index = seg->new_index;
  seg->iop.rec.state = seg->state;
  seg->iop.gone = ss_gone_has (loop, seg->id);
  seg->iop.done = done;
  ss_index_submit_op (loop, &seg->iop);
}

/* A new segment is recorded: it is ready for data. */
static void
new_recorded (struct ss_loop *loop, struct ss_index_op *iop)
{
  struct ss_seg *seg = SS_CONTAINER_OF (iop, struct ss_seg, iop);

  if (iop->err < 0) {
    seg_destroy (loop, seg, ss_index_errno (loop, iop->err));
    return;
  }
  if (iop->gone)
    ss_gone_remove (loop, seg->id);
  seg->epoch = seg->new_epoch;
  seg->gen = seg->new_gen;
  seg->index = seg->new_index;
  seg->busy &= ~SS_SEG_NEW;
  seg_wake (loop, seg, 0);
}

/* Sync SEG's whole slot (an fdatasync of its range, as a FUA write
 * does); DONE gets the result.
 */
static void
seg_sync (struct ss_loop *loop, struct ss_seg *seg,
          void (*done) (struct ss_loop *, struct ss_op *, int))
{
  struct io_uring_sqe *sqe = ss_get_sqe (loop);

  io_uring_prep_fsync (sqe, loop->store->data_fd, IORING_FSYNC_DATASYNC);
  sqe->off = ss_store_slot_offset (loop->store, seg->slot);
  sqe->len = loop->store->segment_size;
  seg->op.done = done;
  io_uring_sqe_set_data (sqe, &seg->op);
}

/* A new segment's punched slot is synced: record the segment. */
static void
new_synced (struct ss_loop *loop, struct ss_op *op, int res)
{
  struct ss_seg *seg = SS_CONTAINER_OF (op, struct ss_seg, op);

  if (res == -EAGAIN || res == -EINTR) {
    seg_sync (loop, seg, new_synced);
    return;
  }
  if (res < 0) {
    ss_store_fail (loop, "data: fdatasync", res);
    seg_destroy (loop, seg, -EIO);
    return;
  }
  seg_record (loop, seg, new_recorded);
}

/* A new segment's slot is punched: make that durable. */
static void
new_punched (struct ss_loop *loop, struct ss_op *op, int res)
{
  struct ss_seg *seg = SS_CONTAINER_OF (op, struct ss_seg, op);

  if (res == -EAGAIN || res == -EINTR) {
    seg_punch (loop, seg, new_punched);
    return;
  }
  if (res < 0) {
    log_error ("punch: slot %" PRIu32 ": %s", seg->slot, strerror (-res));
    if (ss_store_punch_failed (res)) {
      ss_store_fail (loop, "data: punch", res);
      res = -EIO;
    }
    seg_destroy (loop, seg, res);
    return;
  }
  seg_sync (loop, seg, new_synced);
}

/* A newer epoch or generation is recorded (or failed to be). */
static void
raise_recorded (struct ss_loop *loop, struct ss_index_op *iop)
{
  struct ss_seg *seg = SS_CONTAINER_OF (iop, struct ss_seg, iop);

  seg->busy &= ~SS_SEG_RECORD;
  if (iop->err == 0) {
    seg->epoch = seg->new_epoch;
    seg->gen = seg->new_gen;
    seg->index = seg->new_index;
    if (iop->gone)
      ss_gone_remove (loop, seg->id);
  }
  seg_wake (loop, seg, ss_index_errno (loop, iop->err));
}

/* Create the entry of segment ID (absent) with EPOCH, GEN and INDEX:
 * allocate and punch a slot, then record it; W waits until it is
 * recorded.  Returns 0 or -errno (-ENOSPC: no free slot).
 */
static int
seg_create (struct ss_loop *loop, uint64_t id, uint64_t volume, uint64_t epoch,
            uint64_t gen, uint64_t index, struct ss_waiter *w)
{
  struct ss_seg *seg;
  uint32_t slot;
  int r;

  r = ss_store_slot_alloc (loop->store, &slot);
  if (r < 0)
    return r;
  seg = calloc (1, sizeof *seg);
  if (seg == NULL) {
    ss_store_slot_free (loop->store, slot);
    return -ENOMEM;
  }
  seg->id = id;
  seg->slot = slot;
  seg->volume = volume;
  seg->state = SS_SEG_STATE_OK;
  seg->new_epoch = epoch;
  seg->new_gen = gen;
  seg->index = SS_INDEX_NONE;
  seg->new_index = index;
  seg->busy = SS_SEG_NEW;
  table_insert (&loop->segs, seg);
  /* A pull may follow: keep the writes that could come before it. */
  ss_track_start (loop, seg);
  seg_wait (seg, w);
  seg_punch (loop, seg, new_punched);
  return 0;
}

/* Start recording EPOCH and GEN (each at least the recorded one) and
 * INDEX (the recorded one, or the first one known) for the idle SEG; W
 * waits until it is done.
 */
static void
seg_start_record (struct ss_loop *loop, struct ss_seg *seg, uint64_t epoch,
                  uint64_t gen, uint64_t index, struct ss_waiter *w)
{
  seg->busy |= SS_SEG_RECORD;
  seg->new_epoch = epoch;
  seg->new_gen = gen;
  seg->new_index = index;
  seg_wait (seg, w);
  seg_record (loop, seg, raise_recorded);
}

/* Get the segment of IO ready for a data-changing I/O (write, trim) by
 * W's owner.  Returns 1 with *SEGP set and an io_inflight reference taken
 * (the caller ends it with ss_seg_io_end) when the I/O may be issued now;
 * 1 with *SEGP NULL when the segment is absent and CREATE is false; 0
 * when W was queued and will be resumed (it then calls this again); or
 * -errno: -EREMCHG if IO's generation is older than the segment's or the
 * segment was deleted here (a tombstone), -ENOSPC if there is no free
 * slot, -SS_EINDEX if IO's index contradicts the segment's recorded
 * one.  A new segment takes IO's epoch, generation and index; one
 * without an index records IO's first.  If a pull copies into the segment, IO's range is marked
 * in it.  Ring thread.
 */
int
ss_seg_prepare_write (struct ss_loop *loop, const struct proto_seg_io *io,
                      bool create, struct ss_waiter *w, struct ss_seg **segp)
{
  struct ss_seg *seg = ss_seg_lookup (loop, io->segment);

  *segp = NULL;
  if (seg == NULL) {
    if (ss_gone_has (loop, io->segment))
      return -EREMCHG;
    if (!create)
      return 1;
    return seg_create (loop, io->segment, io->volume, io->epoch, io->gen,
                       io->index, w);
  }
  if (seg->busy) {
    seg_wait (seg, w);
    return 0;
  }
  if (io->gen < seg->gen)
    return -EREMCHG;
  if (!index_agrees (seg, io->index))
    return -SS_EINDEX;
  /* Copy data in flight over this range must land first. */
  if (seg->pull && ss_pull_copy_overlaps (seg->pull, io->offset, io->length)) {
    seg_wait (seg, w);
    return 0;
  }
  /* Epochs only move forward in the index; fences (fences.c) refuse
   * writers older than the fence before they get here.
   */
  if (io->epoch > seg->epoch || index_learned (seg, io->index)) {
    seg_start_record (loop, seg,
                      io->epoch > seg->epoch ? io->epoch : seg->epoch, seg->gen,
                      seg_index (seg, io->index), w);
    return 0;
  }
  if (seg->pull)
    ss_pull_mark (seg->pull, io->offset, io->length);
  /* A writer that knows a newer replica set: this may be a copy's
   * target before its SEG_SET_GEN or SEG_PULL arrives.
   */
  if (io->gen > seg->gen && seg->track == NULL && seg->pull == NULL)
    ss_track_start (loop, seg);
  ss_track_mark (loop, seg, io->gen, io->offset, io->length);
  seg->io_inflight++;
  *segp = seg;
  return 1;
}

/* Make segment ID's recorded epoch and generation at least EPOCH and GEN
 * (never lowering either) and record INDEX if the segment has no index
 * yet (SS_INDEX_NONE: none given), creating the segment, empty, if it
 * is absent and CREATE is true.  Returns 1 with *SEGP set (no reference
 * taken) when that is durable; 1 with *SEGP NULL if the segment is
 * absent and CREATE is false; 0 when W was queued and will be resumed
 * (it then calls this again); or -errno (-ENOSPC: no free slot,
 * -SS_EINDEX: INDEX contradicts the recorded index).  A segment
 * created here loses its tombstone.  Ring thread.
 */
int
ss_seg_raise (struct ss_loop *loop, uint64_t id, uint64_t volume,
              uint64_t epoch, uint64_t gen, uint64_t index, bool create,
              struct ss_waiter *w, struct ss_seg **segp)
{
  struct ss_seg *seg = ss_seg_lookup (loop, id);

  *segp = NULL;
  if (seg == NULL) {
    if (!create)
      return 1;
    return seg_create (loop, id, volume, epoch, gen, index, w);
  }
  if (seg->busy) {
    seg_wait (seg, w);
    return 0;
  }
  if (!index_agrees (seg, index))
    return -SS_EINDEX;
  if (epoch > seg->epoch || gen > seg->gen || index_learned (seg, index)) {
    seg_start_record (loop, seg, epoch > seg->epoch ? epoch : seg->epoch,
                      gen > seg->gen ? gen : seg->gen, seg_index (seg, index),
                      w);
    return 0;
  }
  *segp = seg;
  return 1;
}

/* The entry of segment ID if its slot holds its data, with an
 * io_inflight reference taken; NULL if reads must return zeros (absent,
 * not yet recorded, or being deleted: then *GONE is set if it is, or
 * will be, tombstoned).  Ring thread.
 */
struct ss_seg *
ss_seg_get_readable (struct ss_loop *loop, uint64_t id, bool *gone)
{
  struct ss_seg *seg = ss_seg_lookup (loop, id);

  *gone = seg ? (seg->busy & SS_SEG_DELETING) != 0 : ss_gone_has (loop, id);
  if (seg == NULL || (seg->busy & (SS_SEG_NEW | SS_SEG_DELETING)))
    return NULL;
  seg->io_inflight++;
  return seg;
}

/* A deleted segment's slot is punched (or failed to be): free it. */
static void
deleted_punched (struct ss_loop *loop, struct ss_op *op, int res)
{
  struct ss_seg *seg = SS_CONTAINER_OF (op, struct ss_seg, op);

  if (res == -EAGAIN || res == -EINTR) {
    seg_punch (loop, seg, deleted_punched);
    return;
  }
  /* The slot is punched again when it is handed out. */
  if (res < 0)
    log_warn ("punch: slot %" PRIu32 ": %s", seg->slot, strerror (-res));
  if (ss_store_punch_failed (res))
    ss_store_fail (loop, "data: punch", res);
  seg_destroy (loop, seg, 0);
}

/* End an io_inflight reference; a delete waiting for it goes on. */
void
ss_seg_io_end (struct ss_loop *loop, struct ss_seg *seg)
{
  assert (seg->io_inflight > 0);
  if (--seg->io_inflight == 0 && (seg->busy & SS_SEG_DELETING) &&
      seg->del_committed)
    seg_punch (loop, seg, deleted_punched);
}

/* The index no longer holds a deleted segment (or the update failed). */
static void
delete_recorded (struct ss_loop *loop, struct ss_index_op *iop)
{
  struct ss_seg *seg = SS_CONTAINER_OF (iop, struct ss_seg, iop);
  struct ss_waiter *dw = seg->del_waiter;

  if (iop->err < 0) {
    seg->busy &= ~SS_SEG_DELETING;
    seg->del_waiter = NULL;
    dw->resume (loop, dw, iop->err);
    seg_wake (loop, seg, 0);
    return;
  }
  ss_gone_add (loop, seg->id);
  seg->del_committed = true;
  if (seg->io_inflight == 0)
    seg_punch (loop, seg, deleted_punched);
}

/* The tombstone of an absent segment is recorded (or failed to be). */
static void
tombstone_recorded (struct ss_loop *loop, struct ss_index_op *iop)
{
  struct ss_waiter *w = iop->arg;

  if (iop->err == 0)
    ss_gone_add (loop, iop->rec.segment);
  w->resume (loop, w, iop->err);
}

/* Delete segment ID on behalf of W's owner, leaving a tombstone (an
 * absent segment gets one too, through the caller's IOP).  A pull
 * copying into it is cancelled.  Returns 1 if it is absent and
 * tombstoned (nothing to do), or 0: W will be resumed with 0 once the
 * segment is gone or the segment was busy (call again then), or with
 * -errno if the index update failed.  Ring thread.
 */
int
ss_seg_delete (struct ss_loop *loop, uint64_t id, struct ss_waiter *w,
               struct ss_index_op *iop)
{
  struct ss_seg *seg = ss_seg_lookup (loop, id);

  if (seg == NULL) {
    if (ss_gone_has (loop, id))
      return 1;
    memset (iop, 0, sizeof *iop);
    iop->type = SS_INDEX_DEL;
    iop->rec.segment = id;
    iop->gone = true;
    iop->done = tombstone_recorded;
    iop->arg = w;
    ss_index_submit_op (loop, iop);
    return 0;
  }
  if (seg->pull)
    ss_pull_cancel (seg->pull, "the segment is being deleted");
  if (seg->busy) {
    seg_wait (seg, w);
    return 0;
  }
  seg->busy = SS_SEG_DELETING;
  seg->del_committed = false;
  seg->del_waiter = w;
  seg->iop.type = SS_INDEX_DEL;
  seg->iop.rec.segment = id;
  seg->iop.gone = true;
  seg->iop.done = delete_recorded;
  ss_index_submit_op (loop, &seg->iop);
  return 0;
}

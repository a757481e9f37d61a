/* Replication, the leader's side (docs/high-availability.md).
 *
 * The catalog hands every committed batch of changes to mds_repl_commit
 * (its commit hook), which keeps it in a window of recent batches, in
 * sequence order (concurrent writers may commit out of order: a batch
 * that comes early waits in EARLY until the ones before it are in).
 * PUBLISHED is the newest sequence such that it and every one before it
 * are in.  Standbys read the window with REPL_PULL (mds_op_repl_pull,
 * on their connection's thread, never with mds->lock), and each pull
 * says how far the standby has durably applied: its acknowledgement.
 *
 * One standby may be synchronous.  While one is (SYNC_ON),
 * mds_repl_barrier waits until it has acknowledged every change the
 * catalog has committed so far; dispatch calls it before every reply, and the MDS before
 * every command to a storage server, so nothing the leader says or does
 * rests on a change that the synchronous standby lacks.  If the
 * synchronous standby stays silent for SYNC_TIMEOUT_MS, the barrier
 * first records in etcd that the leader goes on without one
 * (SET_SYNC with an empty name: from then on no standby may take over)
 * and only then stops waiting.  The first standby that catches up while
 * there is none is named synchronous: locally first (so barriers wait
 * for it from then on), then in etcd.  One change of the synchronous
 * standby runs at a time (CHANGING_SYNC), with LOCK released.
 * Naming takes two steps (see mds_op_repl_pull): barriers wait for the
 * standby first, etcd names it once it has everything a reply may
 * already have rested on.
 *
 * Lock: LOCK, a leaf; COND (CLOCK_MONOTONIC) is signalled when a batch
 * is published, an acknowledgement comes or the module stops.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "deadline.h"
#include "log.h"

#include "internal.h"

/* The window: at most this many bytes and batches of changes. */
#define REPL_WINDOW_BYTES (UINT64_C (64) << 20)
#define REPL_WINDOW_BATCHES 65536
#define REPL_STANDBYS_MAX 8
/* Batches committed before an earlier one reached the hook: one per
 * writer thread at most, in practice one or two.
 */
#define REPL_EARLY_MAX 256

struct repl_batch {
  uint64_t seq;
  uint32_t len;
  uint8_t *data; /* NULL if it could not be kept (out of memory) */
};

struct repl_standby {
  char name[PROTO_NAME_MAX + 1];
  uint64_t acked;
  uint64_t seen_ns;
};

struct mds_repl {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  struct repl_batch *ring; /* REPL_WINDOW_BATCHES slots, oldest at HEAD */
  size_t head, count;
  uint64_t bytes;
  uint64_t published;
  struct repl_batch early[REPL_EARLY_MAX]; /* before their turn, unordered */
  size_t nearly;
  struct repl_standby standbys[REPL_STANDBYS_MAX];
  size_t nstandbys;
  char sync[PROTO_NAME_MAX + 1]; /* the synchronous standby, "" none */
  bool sync_on;
  uint64_t sync_acked;
  bool sync_named;      /* etcd names SYNC (else it is being named) */
  uint64_t name_target; /* SYNC is named in etcd once it has this */
  bool changing_sync;
  uint32_t sync_timeout_ms;
  mds_repl_set_sync_fn *set_sync;
  void *set_sync_arg;
  bool stopping;
};

int
mds_repl_new (uint64_t published, uint32_t sync_timeout_ms,
              mds_repl_set_sync_fn *set_sync, void *arg, struct mds_repl **out)
{
  struct mds_repl *r = calloc (1, sizeof *r);
  pthread_condattr_t attr;

  *out = NULL;
  if (r == NULL)
    return -ENOMEM;
  r->ring = calloc (REPL_WINDOW_BATCHES, sizeof *r->ring);
  if (r->ring == NULL) {
    free (r);
    return -ENOMEM;
  }
  pthread_mutex_init (&r->lock, NULL);
  pthread_condattr_init (&attr);
  pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
  pthread_cond_init (&r->cond, &attr);
  pthread_condattr_destroy (&attr);
  r->published = published;
  r->sync_timeout_ms = sync_timeout_ms;
  r->set_sync = set_sync;
  r->set_sync_arg = arg;
  *out = r;
  return 0;
}

void
mds_repl_free (struct mds_repl *r)
{
  size_t i;

  if (r == NULL)
    return;
  for (i = 0; i < r->count; i++)
    free (r->ring[(r->head + i) % REPL_WINDOW_BATCHES].data);
  for (i = 0; i < r->nearly; i++)
    free (r->early[i].data);
  free (r->ring);
  pthread_cond_destroy (&r->cond);
  pthread_mutex_destroy (&r->lock);
  free (r);
}

/* Wake every waiter for good (shutdown): barriers and pulls return. */
void
mds_repl_stop (struct mds_repl *r)
{
  if (r == NULL)
    return;
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&r->lock);
  r->stopping = true;
  pthread_cond_broadcast (&r->cond);
}

/* The batch of sequence SEQ in the window, or NULL.  Caller holds LOCK. */
static struct repl_batch *
window_find (struct mds_repl *r, uint64_t seq)
{
  uint64_t first;

  if (r->count == 0)
    return NULL;
  first = r->ring[r->head].seq;
  if (seq < first || seq - first >= r->count)
    return NULL;
  return &r->ring[(r->head + (seq - first)) % REPL_WINDOW_BATCHES];
}

/* Append B (the next sequence) to the window, dropping the oldest
 * batches past its bounds.  Caller holds LOCK.
 */
static void
window_push (struct mds_repl *r, struct repl_batch b)
{
  while (r->count > 0 && (r->count == REPL_WINDOW_BATCHES ||
                          r->bytes + b.len > REPL_WINDOW_BYTES)) {
    struct repl_batch *old = &r->ring[r->head];

    r->bytes -= old->len;
    free (old->data);
    old->data = NULL;
    r->head = (r->head + 1) % REPL_WINDOW_BATCHES;
    r->count--;
  }
  r->ring[(r->head + r->count) % REPL_WINDOW_BATCHES] = b;
  r->count++;
  r->bytes += b.len;
  r->published = b.seq;
}

/* Empty the window and the early batches; PUBLISHED becomes the newest
 * sequence seen, at least SEQ.  Caller holds LOCK.
 */
static void
window_reset (struct mds_repl *r, uint64_t seq)
{
  size_t i;

  for (i = 0; i < r->count; i++) {
    free (r->ring[(r->head + i) % REPL_WINDOW_BATCHES].data);
    r->ring[(r->head + i) % REPL_WINDOW_BATCHES].data = NULL;
  }
  r->count = 0;
  r->bytes = 0;
  for (i = 0; i < r->nearly; i++) {
    if (r->early[i].seq > seq)
      seq = r->early[i].seq;
    free (r->early[i].data);
  }
  r->nearly = 0;
  r->published = seq;
  pthread_cond_broadcast (&r->cond);
}

void
mds_repl_commit (void *arg, uint64_t seq, const void *changes, size_t len)
{
  struct mds_repl *r = arg;
  struct repl_batch b = { .seq = seq, .len = (uint32_t)len };
  size_t i;

  if (len <= UINT32_MAX)
    b.data = malloc (len);
  if (b.data)
    memcpy (b.data, changes, len);
  else
    log_error ("replication: change %" PRIu64 " (%zu bytes) cannot be kept "
               "for the standbys: they will start again from a snapshot",
               seq, len);

  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&r->lock);
  if (seq <= r->published) {
    free (b.data);
    return;
  }
  if (seq != r->published + 1) {
    if (r->nearly == REPL_EARLY_MAX) {
      /* Cannot happen with fewer writer threads: start the window
       * again past everything seen; standbys take a snapshot.
       */
      log_error ("replication: %d changes committed out of order: the "
                 "standbys will start again from a snapshot",
                 REPL_EARLY_MAX);
      window_reset (r, seq);
      free (b.data);
      return;
    }
    r->early[r->nearly++] = b;
    return;
  }
  window_push (r, b);
  /* Batches that came early follow now, in order. */
  for (i = 0; i < r->nearly;) {
    if (r->early[i].seq == r->published + 1) {
      window_push (r, r->early[i]);
      r->early[i] = r->early[--r->nearly];
      i = 0;
    }
    else
      i++;
  }
  pthread_cond_broadcast (&r->cond);
}

/* Record through SET_SYNC that the synchronous standby is NAME ("":
 * none), with LOCK released meanwhile; one at a time.  Caller holds
 * LOCK and has set CHANGING_SYNC.  Returns SET_SYNC's result.
 */
static int
record_sync (struct mds_repl *r, const char *name, uint64_t seq)
{
  char copy[PROTO_NAME_MAX + 1];
  int rc;

  snprintf (copy, sizeof copy, "%s", name);
  pthread_mutex_unlock (&r->lock);
  rc = r->set_sync ? r->set_sync (r->set_sync_arg, copy, seq) : 0;
  pthread_mutex_lock (&r->lock);
  r->changing_sync = false;
  pthread_cond_broadcast (&r->cond);
  return rc;
}

/* The synchronous standby has been silent too long: record in etcd that
 * there is none, then stop waiting for it.  Caller holds LOCK.
 */
static void
go_alone (struct mds_repl *r)
{
  char was[PROTO_NAME_MAX + 1];
  uint64_t seq = r->published;
  int rc;

  snprintf (was, sizeof was, "%s", r->sync);
  if (!r->sync_named) {
    /* etcd does not name it yet: nothing to take back there. */
    r->sync_on = false;
    r->sync[0] = '\0';
    log_warn ("replication: %s fell silent before it could be named the "
              "synchronous standby",
              was);
    pthread_cond_broadcast (&r->cond);
    return;
  }
  r->changing_sync = true;
  rc = record_sync (r, "", seq);
  if (rc < 0) {
    log_warn ("replication: the synchronous standby %s is silent, and etcd "
              "cannot record going on without it (%s): still waiting",
              was, strerror (-rc));
    return;
  }
  if (strcmp (r->sync, was) == 0) {
    r->sync_on = false;
    r->sync_named = false;
    r->sync[0] = '\0';
  }
  log_warn ("replication: the synchronous standby %s was silent for %" PRIu32
            " ms: going on without one from change %" PRIu64
            " (no standby may take over until one has caught up)",
            was, r->sync_timeout_ms, seq);
}

void
mds_repl_barrier (struct mds *mds)
{
  struct mds_repl *r = mds->repl;
  uint64_t target, deadline;
  struct timespec ts;
  bool on;

  if (r == NULL)
    return;
  pthread_mutex_lock (&r->lock);
  on = r->sync_on;
  pthread_mutex_unlock (&r->lock);
  if (!on)
    return;
  /* Everything a reader may have seen: the catalog's own sequence (a
   * batch can be committed a moment before its hook runs).
   */
  if (catalog_change_seq (mds->cat, &target) < 0)
    target = UINT64_MAX; /* wait as long as the standby is there */
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&r->lock);
  deadline = monotonic_ns () + (uint64_t)r->sync_timeout_ms * 1000000;
  while (r->sync_on && r->sync_acked < target && !r->stopping) {
    ts = timespec_from_ns (deadline);
    if (pthread_cond_timedwait (&r->cond, &r->lock, &ts) != ETIMEDOUT)
      continue;
    if (!r->changing_sync)
      go_alone (r);
    deadline = monotonic_ns () + (uint64_t)r->sync_timeout_ms * 1000000;
  }
}

/* The standby NAME's entry (added, or replacing the longest silent one
 * if the table is full).  Caller holds LOCK.
 */
static struct repl_standby *
standby_entry (struct mds_repl *r, const char *name)
{
  struct repl_standby *s, *oldest = NULL;
  size_t i;

  for (i = 0; i < r->nstandbys; i++) {
    s = &r->standbys[i];
    if (strcmp (s->name, name) == 0)
      return s;
    if (oldest == NULL || s->seen_ns < oldest->seen_ns)
      oldest = s;
  }
  s = r->nstandbys < REPL_STANDBYS_MAX ? &r->standbys[r->nstandbys++] : oldest;
  memset (s, 0, sizeof *s);
  snprintf (s->name, sizeof s->name, "%s", name);
  return s;
}

/* Encode into REP the chunks from batch AFTER + 1 at offset HAVE on, at
 * most MAX data bytes.  Caller holds LOCK.  Returns 0, or -ESTALE if a
 * batch needed is not in the window.
 */
static int
encode_chunks (struct mds_repl *r, uint64_t after, uint32_t have, uint32_t max,
               struct mds_reply *rep)
{
  struct proto_repl_chunk c[64];
  uint32_t n = 0, budget = max;
  uint64_t seq;

  for (seq = after + 1; seq <= r->published && budget > 0 && n < 64; seq++) {
    struct repl_batch *b = window_find (r, seq);
    uint32_t off = seq == after + 1 ? have : 0, take;

    if (b == NULL || b->data == NULL || off > b->len)
      return -ESTALE;
    take = b->len - off < budget ? b->len - off : budget;
    c[n++] = (struct proto_repl_chunk){
      .seq = seq,
      .total = b->len,
      .offset = off,
      .len = take,
      .data = b->data + off,
    };
    budget -= take;
    if (off + take < b->len)
      break;
  }
  proto_encode_repl_reply_head (r->published, n, &rep->wb);
  for (uint32_t i = 0; i < n; i++)
    proto_encode_repl_chunk (&c[i], &rep->wb);
  return 0;
}

int
mds_op_repl_pull (struct mds *mds, struct mds_conn *conn, const void *payload,
                  uint32_t len, struct mds_reply *rep)
{
  struct mds_repl *r = mds->repl;
  struct proto_repl_pull req;
  struct repl_standby *s;
  uint64_t deadline;
  struct timespec ts;
  int rc;

  (void)conn;
  rc = proto_decode_repl_pull (payload, len, &req);
  if (rc < 0)
    return mds_reply_bad (rep, rc, "REPL_PULL");
  if (r == NULL)
    return mds_reply_error (rep, PROTO_ENOTSUP,
                            "REPL_PULL: this MDS runs without standbys "
                            "(no --etcd)");

  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&r->lock);
  s = standby_entry (r, req.name);
  s->acked = req.after;
  s->seen_ns = monotonic_ns ();
  if (r->sync_on && strcmp (r->sync, req.name) == 0 &&
      req.after > r->sync_acked && req.after <= r->published) {
    r->sync_acked = req.after;
    pthread_cond_broadcast (&r->cond);
  }
  if (req.after > r->published)
    return mds_reply_error (rep, PROTO_ESTALE,
                            "REPL_PULL: %s is at change %" PRIu64
                            ", past the leader's %" PRIu64
                            ": start again from a snapshot",
                            req.name, req.after, r->published);
  if (req.after < r->published && window_find (r, req.after + 1) == NULL)
    return mds_reply_error (rep, PROTO_ESTALE,
                            "REPL_PULL: change %" PRIu64
                            " is no longer kept: start again from a snapshot",
                            req.after + 1);
  /* A standby that has caught up while there is no synchronous one
   * becomes it in two steps.  Locally first: barriers wait for it from
   * now on.  Then, once it has every change the catalog had committed at
   * that moment (a reply sent before may rest on one of those), in etcd:
   * only from then on may it take over.
   */
  if (!r->sync_on && !r->changing_sync && req.after == r->published &&
      req.have == 0 && r->set_sync) {
    uint64_t seq;

    r->sync_on = true;
    r->sync_named = false;
    snprintf (r->sync, sizeof r->sync, "%s", req.name);
    r->sync_acked = req.after;
    r->name_target =
        catalog_change_seq (mds->cat, &seq) == 0 ? seq : UINT64_MAX;
  }
  if (r->sync_on && !r->sync_named && !r->changing_sync &&
      strcmp (r->sync, req.name) == 0 && req.after >= r->name_target) {
    r->changing_sync = true;
    rc = record_sync (r, req.name, req.after);
    if (rc < 0)
      log_warn ("replication: cannot record %s as the synchronous standby "
                "in etcd: %s",
                req.name, strerror (-rc));
    else if (r->sync_on && strcmp (r->sync, req.name) == 0) {
      r->sync_named = true;
      log_info ("replication: %s is the synchronous standby from change "
                "%" PRIu64,
                req.name, req.after);
    }
  }
  deadline = monotonic_ns () + (uint64_t)req.wait_ms * 1000000;
  while (r->published == req.after && !r->stopping &&
         monotonic_ns () < deadline) {
    ts = timespec_from_ns (deadline);
    pthread_cond_timedwait (&r->cond, &r->lock, &ts);
  }
  rc = encode_chunks (r, req.after, req.have, req.max, rep);
  if (rc < 0) {
    proto_wbuf_free (&rep->wb);
    memset (&rep->wb, 0, sizeof rep->wb);
    return mds_reply_error (rep, PROTO_ESTALE,
                            "REPL_PULL: the changes after %" PRIu64
                            " are no longer kept: start again from a snapshot",
                            req.after);
  }
  return 0;
}

void
mds_repl_info (struct mds_repl *r, struct mds_repl_info *out)
{
  size_t i;

  memset (out, 0, sizeof *out);
  if (r == NULL)
    return;
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&r->lock);
  out->published = r->published;
  out->sync_on = r->sync_on && r->sync_named;
  snprintf (out->sync, sizeof out->sync, "%s", r->sync);
  out->nstandbys = r->nstandbys;
  for (i = 0; i < r->nstandbys; i++) {
    snprintf (out->standbys[i].name, sizeof out->standbys[i].name, "%s",
              r->standbys[i].name);
    out->standbys[i].acked = r->standbys[i].acked;
    out->standbys[i].seen_ns = r->standbys[i].seen_ns;
  }
}

/* The MDS with standbys (--etcd; docs/high-availability.md): who may
 * lead, taking over, and stepping down.
 *
 * Every MDS started with --etcd listens from the start, campaigns
 * through mds/election.c when it may, and follows the leader otherwise
 * (mds/standby.c).  Until it leads, loop.c answers every request after
 * the handshake with PROTO_ENOTLEADER, naming the leader.
 *
 * Who may campaign is kept in etcd, in PREFIX/record: "leader=NAME",
 * "sync=NAME" (the synchronous standby, empty if none) and "seq=N", one
 * per line, written only by the leader under its leader key.  An MDS may
 * campaign if it holds a catalog and the record names it as the
 * synchronous standby, or names no synchronous standby and it as the
 * leader, or does not exist yet (the first start of a cluster: start
 * only the MDS made with --init with a catalog).  So a takeover never
 * loses an acknowledged change: only the synchronous standby, which has
 * every change the leader acted on (repl.c), or the leader itself after
 * it went on alone, may lead next.
 *
 * --rebuild and --restore (mds->ha_reconcile) override the record: the
 * operator asserts every other catalog is lost.  Such an MDS never
 * follows; it campaigns whenever no leader key exists, and once elected
 * reconciles its catalog with the storage servers with its epoch in
 * HELLO (they refuse epoch 0 once a leader has spoken to them), then
 * takes over as any leader does.  A failed reconcile, or another MDS's
 * leader key still held past its TTL, makes it exit without serving.
 *
 * Taking over runs on its own thread (TAKEOVER), not the election's,
 * whose lease renewals must not wait: it stops following, sets up the
 * replication window and the catalog's commit hook, does what a single
 * MDS does at start (leases, placement index, repair), records itself as
 * leader with no synchronous standby, and only then serves.  A deposed
 * leader exits at once (EXIT_DEPOSED): it must never serve again
 * without starting over, and a restarted MDS that is not named by the
 * record takes a snapshot of the new leader's catalog.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "deadline.h"
#include "log.h"

#include "election.h"
#include "internal.h"

#define RECORD_KEY "record"
/* The exit status of a deposed MDS (EX_TEMPFAIL: start it again). */
#define EXIT_DEPOSED 75
/* STATUS asks each etcd member for its health with this bound (etcd.c
 * gives one member half its handle's timeout).
 */
#define STATUS_ETCD_MS 500
/* A rebuild or restore waits this long past its TTL for another MDS's
 * leader key to go before it gives up.
 */
#define OVERRIDE_MARGIN_MS 2000

/* The value of line FIELD ("leader", "sync", "seq") of record KV into
 * OUT (LEN bytes); "" if absent.
 */
static void
record_field (const struct etcd_kv *kv, const char *field, char *out,
              size_t len)
{
  size_t flen = strlen (field);
  const char *p = kv->value, *end = kv->value + kv->len;

  out[0] = '\0';
  while (p < end) {
    const char *nl = memchr (p, '\n', end - p);
    size_t llen = nl ? (size_t)(nl - p) : (size_t)(end - p);

    if (llen > flen && strncmp (p, field, flen) == 0 && p[flen] == '=') {
      snprintf (out, len, "%.*s", (int)(llen - flen - 1), p + flen + 1);
      return;
    }
    p += llen + 1;
  }
}

/* election.c's question: may this MDS campaign, given the record? */
static bool
may_campaign (void *arg, const struct etcd_kv *rec)
{
  struct mds *mds = arg;
  char leader[PROTO_NAME_MAX + 1], sync[PROTO_NAME_MAX + 1];
  bool cat;

  pthread_mutex_lock (&mds->lock);
  cat = mds->cat != NULL;
  pthread_mutex_unlock (&mds->lock);
  if (!cat)
    return false;
  /* --rebuild, --restore: the operator's override. */
  if (rec == NULL || mds->ha_reconcile)
    return true;
  record_field (rec, "leader", leader, sizeof leader);
  record_field (rec, "sync", sync, sizeof sync);
  if (sync[0])
    return strcmp (sync, mds->ha_name) == 0;
  return strcmp (leader, mds->ha_name) == 0;
}

/* Write the record: this MDS leads at EPOCH, SYNC is its synchronous
 * standby ("": none) from change SEQ.
 */
static int
put_record (struct mds *mds, uint64_t epoch, const char *sync, uint64_t seq)
{
  char buf[3 * (PROTO_NAME_MAX + 32)];
  int n;

  n = snprintf (buf, sizeof buf, "leader=%s\nsync=%s\nseq=%" PRIu64 "\n",
                mds->ha_name, sync, seq);
  return election_put (mds->ha_election, epoch, RECORD_KEY, buf, (size_t)n);
}

/* repl.c's hook for naming the synchronous standby. */
static int
set_sync (void *arg, const char *name, uint64_t seq)
{
  struct mds *mds = arg;

  return put_record (mds, __atomic_load_n (&mds->ha_epoch, __ATOMIC_SEQ_CST),
                     name, seq);
}

static void
on_elected (void *arg, uint64_t epoch)
{
  struct mds *mds = arg;

  pthread_mutex_lock (&mds->lock);
  mds->ha_elected = epoch;
  pthread_cond_broadcast (&mds->ha_wake);
  pthread_mutex_unlock (&mds->lock);
}

static void
on_deposed (void *arg, const char *why)
{
  (void)arg;
  log_error ("no longer the leader (%s): exiting; start this MDS again to "
             "follow the new leader",
             why);
  _exit (EXIT_DEPOSED);
}

/* Become the leader at EPOCH.  Returns 0 or -errno (then this MDS
 * exits: it cannot serve half set up).
 */
static int
take_over (struct mds *mds, uint64_t epoch)
{
  uint64_t seq;
  int r;

  mds_standby_stop (mds->ha_standby);
  mds->ha_standby = NULL;
  r = catalog_change_seq (mds->cat, &seq);
  if (r < 0)
    return r;
  r = mds_repl_new (seq, mds->ha_sync_timeout_ms, set_sync, mds, &mds->repl);
  if (r < 0)
    return r;
  __atomic_store_n (&mds->ha_epoch, epoch, __ATOMIC_SEQ_CST);
  catalog_set_commit_hook (mds->cat, mds_repl_commit, mds->repl);
  /* Servers not heard from since the MDS started count as heard then
   * (cluster.c): a new leader starts now, so that the servers the old
   * one had up stay up until they have had the time to find it.
   */
  pthread_mutex_lock (&mds->lock);
  mds->start_ns = monotonic_ns ();
  pthread_mutex_unlock (&mds->lock);
  r = mds_leases_recover (mds);
  if (r == 0)
    r = mds_index_build (mds);
  if (r == 0)
    r = put_record (mds, epoch, "", seq);
  if (r == 0)
    r = mds_repair_start (mds);
  if (r < 0)
    return r;
  __atomic_store_n (&mds->ha_leading, true, __ATOMIC_SEQ_CST);
  log_info ("leading at epoch %" PRIu64 " from change %" PRIu64, epoch, seq);
  return 0;
}

/* --rebuild, --restore: wait to be elected.  Another MDS's leader key
 * may be a dead leader's, which etcd drops within its TTL; one still
 * held after this MDS's TTL and a margin is a live leader's: exit.
 * Returns the epoch, 0 if stopping.
 */
static uint64_t
wait_elected_override (struct mds *mds)
{
  uint64_t deadline = 0, epoch;

  pthread_mutex_lock (&mds->lock);
  while (mds->ha_elected == 0 && !mds->ha_stopping) {
    struct election_leader l;
    struct timespec ts;
    uint64_t now = monotonic_ns ();

    election_get_leader (mds->ha_election, &l);
    if (l.epoch != 0 && strcmp (l.name, mds->ha_name) != 0) {
      if (deadline == 0)
        deadline = now + ((uint64_t)mds->ha_ttl_s * 1000 + OVERRIDE_MARGIN_MS) *
                             UINT64_C (1000000);
      else if (now >= deadline) {
        log_error ("%s leads at epoch %" PRIu64 " (%s): a rebuild or restore "
                   "needs every other MDS stopped: exiting",
                   l.name, l.epoch, l.advertise);
        _exit (EXIT_FAILURE);
      }
    }
    clock_gettime (CLOCK_MONOTONIC, &ts);
    ts.tv_nsec += 200 * 1000000;
    if (ts.tv_nsec >= 1000000000) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait (&mds->ha_wake, &mds->lock, &ts);
  }
  epoch = mds->ha_elected;
  pthread_mutex_unlock (&mds->lock);
  return epoch;
}

static void *
takeover_thread (void *arg)
{
  struct mds *mds = arg;
  uint64_t epoch = 0;
  int r;

  log_set_thread_name ("takeover");
  if (mds->ha_reconcile)
    epoch = wait_elected_override (mds);
  else {
    pthread_mutex_lock (&mds->lock);
    while (mds->ha_elected == 0 && !mds->ha_stopping)
      pthread_cond_wait (&mds->ha_wake, &mds->lock);
    epoch = mds->ha_elected;
    pthread_mutex_unlock (&mds->lock);
  }
  if (epoch == 0)
    return NULL;
  if (mds->ha_reconcile) {
    /* Storage servers refuse epoch 0 once a leader has spoken to them:
     * the reconcile runs as the leader of this epoch, before serving.
     */
    __atomic_store_n (&mds->ha_epoch, epoch, __ATOMIC_SEQ_CST);
    log_info ("elected at epoch %" PRIu64 ": reconciling the catalog with "
              "the storage servers",
              epoch);
    if (mds->ha_reconcile (mds, mds->ha_reconcile_arg) < 0) {
      log_error ("the catalog could not be rebuilt or reconciled at epoch "
                 "%" PRIu64 ": exiting without serving",
                 epoch);
      _exit (EXIT_FAILURE);
    }
  }
  r = take_over (mds, epoch);
  if (r < 0) {
    log_error ("taking over as leader: %s: exiting", catalog_strerror (r));
    _exit (EXIT_FAILURE);
  }
  return NULL;
}

int
mds_ha_start (struct mds *mds, char *err, size_t errlen)
{
  struct election_config cfg = {
    .etcd = { .endpoints = mds->ha_etcd,
              .cacert = mds->ha_etcd_cacert,
              .cert = mds->ha_etcd_cert,
              .key = mds->ha_etcd_key },
    .prefix = mds->ha_prefix,
    .name = mds->ha_name,
    .advertise = mds->ha_advertise,
    .ttl_s = mds->ha_ttl_s,
    .on_elected = on_elected,
    .on_deposed = on_deposed,
    .may_campaign = may_campaign,
    .record_key = RECORD_KEY,
    .arg = mds,
  };
  pthread_condattr_t attr;
  struct etcd_kv rec;
  bool own;
  int r;

  pthread_condattr_init (&attr);
  pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
  pthread_cond_init (&mds->ha_wake, &attr);
  pthread_condattr_destroy (&attr);
  r = election_start (&cfg, &mds->ha_election, err, errlen);
  if (r < 0)
    return r;
  /* Is this MDS's catalog a prefix of the history?  Only if it may
   * campaign; any other takes a snapshot of the leader's.  A rebuild or
   * restore never follows: its catalog is the one to lead with.
   */
  r = 0;
  if (mds->ha_reconcile == NULL) {
    r = election_get (mds->ha_election, RECORD_KEY, &rec);
    own = r >= 0 && may_campaign (mds, r > 0 ? &rec : NULL);
    etcd_kv_clear (&rec);
    r = mds_standby_start (mds, own, &mds->ha_standby);
  }
  if (r == 0)
    r = -pthread_create (&mds->ha_takeover, NULL, takeover_thread, mds);
  if (r < 0) {
    snprintf (err, errlen, "cannot start a thread: %s", strerror (-r));
    return r;
  }
  mds->ha_takeover_started = true;
  return 0;
}

bool
mds_ha_serving (struct mds *mds)
{
  if (mds->ha_etcd == NULL)
    return true;
  if (mds->ha_election == NULL)
    return false;
  return __atomic_load_n (&mds->ha_leading, __ATOMIC_SEQ_CST) &&
         election_leading (mds->ha_election, NULL);
}

void
mds_ha_leader (struct mds *mds, char *out, size_t len)
{
  struct election_leader l;

  out[0] = '\0';
  if (mds->ha_election == NULL)
    return;
  election_get_leader (mds->ha_election, &l);
  if (l.epoch != 0 && strcmp (l.name, mds->ha_name) != 0)
    snprintf (out, len, "%s", l.advertise);
}

void
mds_ha_status (struct mds *mds, struct proto_status_info *info)
{
  struct mds_repl_info ri;
  uint64_t now = monotonic_ns ();
  size_t i;

  if (mds->ha_etcd == NULL)
    return;
  info->ha_flags |= PROTO_STATUS_HA;
  snprintf (info->mds_name, sizeof info->mds_name, "%s", mds->ha_name);
  info->epoch = __atomic_load_n (&mds->ha_epoch, __ATOMIC_SEQ_CST);
  mds_repl_info (mds->repl, &ri);
  info->published = ri.published;
  if (ri.sync_on)
    snprintf (info->sync, sizeof info->sync, "%s", ri.sync);
  for (i = 0; i < ri.nstandbys && i < PROTO_STATUS_STANDBYS_MAX; i++) {
    struct proto_standby_info *sb = &info->standbys[i];
    uint64_t ms = now > ri.standbys[i].seen_ns
                      ? (now - ri.standbys[i].seen_ns) / 1000000
                      : 0;

    snprintf (sb->name, sizeof sb->name, "%s", ri.standbys[i].name);
    if (ri.sync_on && strcmp (ri.sync, ri.standbys[i].name) == 0)
      sb->flags |= PROTO_STANDBY_SYNC;
    sb->acked = ri.standbys[i].acked;
    sb->lag = ri.published > sb->acked ? ri.published - sb->acked : 0;
    sb->seen_ms = ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
  }
  info->nstandbys = (uint32_t)i;
}

/* Asked when STATUS is, not cached by a background refresh: STATUS is
 * rare (an operator, a script), the answer is then as fresh as it can
 * be (a member killed a moment ago shows as unhealthy), and no thread
 * polls etcd for nobody.  The handle is this call's own, so the
 * election's renewals and puts never wait behind it, and STATUS runs
 * without mds->lock (MDS_OP_UNLOCKED in loop.c): a silent member costs
 * this request STATUS_ETCD_MS, never another request.
 */
uint32_t
mds_ha_etcd_health (struct mds *mds, struct proto_etcd_info *out, uint32_t max)
{
  struct etcd_config cfg = { .endpoints = mds->ha_etcd,
                             .cacert = mds->ha_etcd_cacert,
                             .cert = mds->ha_etcd_cert,
                             .key = mds->ha_etcd_key,
                             .timeout_ms = 2 * STATUS_ETCD_MS };
  struct etcd *e = NULL;
  char err[256];
  size_t n, i;
  int r;

  if (mds->ha_etcd == NULL)
    return 0;
  r = etcd_new (&cfg, &e, err, sizeof err);
  if (r < 0) {
    log_warn ("status: etcd: %s", r == -EINVAL ? err : strerror (-r));
    return 0;
  }
  n = etcd_endpoints (e);
  for (i = 0; i < n && i < max; i++) {
    struct etcd_status st;

    memset (&out[i], 0, sizeof out[i]);
    snprintf (out[i].url, sizeof out[i].url, "%s", etcd_endpoint (e, i));
    r = etcd_status (e, i, &st);
    if (r < 0) {
      log_debug ("status: %s", etcd_error (e));
      continue;
    }
    out[i].flags = PROTO_ETCD_HEALTHY;
    if (st.leader != 0 && st.leader == st.member)
      out[i].flags |= PROTO_ETCD_LEADER;
    snprintf (out[i].version, sizeof out[i].version, "%s", st.version);
  }
  etcd_free (e);
  return (uint32_t)i;
}

void
mds_ha_stop (struct mds *mds)
{
  if (mds->ha_election == NULL)
    return;
  pthread_mutex_lock (&mds->lock);
  mds->ha_stopping = true;
  pthread_cond_broadcast (&mds->ha_wake);
  pthread_mutex_unlock (&mds->lock);
  if (mds->ha_takeover_started)
    pthread_join (mds->ha_takeover, NULL);
  mds_standby_stop (mds->ha_standby);
  mds->ha_standby = NULL;
  mds_repl_stop (mds->repl);
  /* Resign: the synchronous standby takes over without waiting out the
   * lease.
   */
  election_stop (mds->ha_election);
  mds->ha_election = NULL;
}

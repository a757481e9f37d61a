/* Leader election through etcd (election.h).
 *
 * One thread per election, with one etcd handle that nothing else uses:
 * the renewal never waits behind other traffic.  Every MDS, leader or
 * not, holds a lease of its own, kept alive each round; a standby
 * campaigns with it each round (one transaction: create PREFIX/leader on
 * the lease if nobody holds it, else read who does).
 *
 * Times are CLOCK_MONOTONIC.  A renewal sent at T0 whose answer says
 * the lease has L seconds left makes the lease good until T0 + L: etcd
 * counted from when it received the renewal, after T0, so this errs on
 * the safe side.  GOOD_UNTIL and EPOCH are read by any thread
 * (election_leading) with atomics; the rest belongs to the thread, or
 * to LOCK where named.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "deadline.h"
#include "election.h"
#include "log.h"

#define ELECTION_DEFAULT_TTL 10
#define ELECTION_DEFAULT_REQUEST_MS 1000
#define NS_PER_MS UINT64_C (1000000)

struct election {
  struct election_config cfg; /* strings below are copies */
  char *prefix, *name, *advertise, *endpoints, *cacert, *cert, *key;
  char *leader_key;
  char *record_key; /* PREFIX/RECORD_KEY, or NULL */
  char *value;      /* NAME "\n" ADVERTISE */
  struct etcd *etcd;
  struct etcd *etcd_put; /* election_put and election_get's, under PUT_LOCK */
  pthread_mutex_t put_lock;

  pthread_t thread;
  bool started;
  pthread_mutex_t lock;
  pthread_cond_t cond;           /* signalled when STOP is set */
  bool stop;                     /* under LOCK */
  struct election_leader leader; /* under LOCK */

  int64_t lease;          /* 0: none */
  uint64_t lease_good_ns; /* the lease is good until then */
  uint64_t good_until_ns; /* atomic: as leader */
  uint64_t epoch;         /* atomic: 0 while not leading */
  bool deposed;           /* atomic */
};

static char *
dup_opt (const char *s, bool *fail)
{
  char *d;

  if (s == NULL)
    return NULL;
  d = strdup (s);
  if (d == NULL)
    *fail = true;
  return d;
}

static void
election_free (struct election *el)
{
  etcd_free (el->etcd);
  etcd_free (el->etcd_put);
  pthread_mutex_destroy (&el->put_lock);
  free (el->record_key);
  free (el->prefix);
  free (el->name);
  free (el->advertise);
  free (el->endpoints);
  free (el->cacert);
  free (el->cert);
  free (el->key);
  free (el->leader_key);
  free (el->value);
  pthread_mutex_destroy (&el->lock);
  pthread_cond_destroy (&el->cond);
  free (el);
}

/* Wait until DEADLINE_NS or until stopped.  Returns true if stopped. */
static bool
wait_until (struct election *el, uint64_t deadline_ns)
{
  struct timespec ts = timespec_from_ns (deadline_ns);
  bool stop;

  pthread_mutex_lock (&el->lock);
  while (!el->stop && monotonic_ns () < deadline_ns)
    pthread_cond_timedwait (&el->cond, &el->lock, &ts);
  stop = el->stop;
  pthread_mutex_unlock (&el->lock);
  return stop;
}

/* Note the leader KV (a value NAME "\n" ADVERTISE) as last seen. */
static void
set_leader (struct election *el, const struct etcd_kv *kv)
{
  struct election_leader l = { .epoch = 0 };

  if (kv && kv->value) {
    const char *nl = memchr (kv->value, '\n', kv->len);
    size_t nlen = nl ? (size_t)(nl - kv->value) : kv->len;

    snprintf (l.name, sizeof l.name, "%.*s", (int)nlen, kv->value);
    if (nl)
      snprintf (l.advertise, sizeof l.advertise, "%s", nl + 1);
    l.epoch = (uint64_t)kv->create_rev;
  }
  pthread_mutex_lock (&el->lock);
  el->leader = l;
  pthread_mutex_unlock (&el->lock);
}

/* Depose this MDS (once): it leads no more, and the thread ends. */
static void
depose (struct election *el, const char *why)
{
  __atomic_store_n (&el->epoch, 0, __ATOMIC_SEQ_CST);
  __atomic_store_n (&el->deposed, true, __ATOMIC_SEQ_CST);
  log_warn ("election: deposed: %s", why);
  if (el->cfg.on_deposed)
    el->cfg.on_deposed (el->cfg.arg, why);
}

/* Keep this MDS's lease alive, or get a new one if it has none or it
 * expired.  Returns 0 or -errno.
 */
static int
keep_lease (struct election *el)
{
  uint64_t t0 = monotonic_ns ();
  int64_t left, granted;
  int r;

  if (el->lease != 0) {
    r = etcd_lease_keepalive (el->etcd, el->lease, &left);
    if (r == 0) {
      el->lease_good_ns = t0 + (uint64_t)left * 1000 * NS_PER_MS;
      return 0;
    }
    if (r != -ENOENT)
      return r;
    el->lease = 0;
  }
  r = etcd_lease_grant (el->etcd, el->cfg.ttl_s, &el->lease, &granted);
  if (r < 0) {
    el->lease = 0;
    return r;
  }
  el->lease_good_ns = t0 + (uint64_t)granted * 1000 * NS_PER_MS;
  return 0;
}

/* One standby round: keep the lease, campaign if allowed, else read
 * who leads.
 */
static void
standby_round (struct election *el)
{
  struct etcd_kv kv = { 0 };
  int r;

  if (keep_lease (el) < 0) {
    log_debug ("election: %s", etcd_error (el->etcd));
    return;
  }
  if (el->cfg.may_campaign) {
    bool may;

    r = el->record_key ? etcd_get (el->etcd, el->record_key, &kv) : 0;
    if (r < 0) {
      log_debug ("election: %s", etcd_error (el->etcd));
      return;
    }
    may = el->cfg.may_campaign (el->cfg.arg, r > 0 ? &kv : NULL);
    etcd_kv_clear (&kv);
    if (!may) {
      r = etcd_get (el->etcd, el->leader_key, &kv);
      if (r >= 0)
        set_leader (el, r > 0 ? &kv : NULL);
      etcd_kv_clear (&kv);
      return;
    }
  }
  r = etcd_create (el->etcd, el->leader_key, el->value, strlen (el->value),
                   el->lease, &kv);
  if (r < 0) {
    log_debug ("election: campaign: %s", etcd_error (el->etcd));
    return;
  }
  /* A create whose first answer was lost, sent again, finds the key on
   * this MDS's own lease: it won.
   */
  if (r == 1 || (kv.lease == el->lease && kv.lease != 0)) {
    __atomic_store_n (&el->good_until_ns, el->lease_good_ns, __ATOMIC_SEQ_CST);
    __atomic_store_n (&el->epoch, (uint64_t)kv.create_rev, __ATOMIC_SEQ_CST);
    set_leader (el, &kv);
    log_info ("election: %s leads, epoch %" PRId64, el->name, kv.create_rev);
    if (el->cfg.on_elected)
      el->cfg.on_elected (el->cfg.arg, (uint64_t)kv.create_rev);
  }
  else
    set_leader (el, &kv);
  etcd_kv_clear (&kv);
}

/* One leader round: renew, and check the leader key is still ours.
 * Returns false once deposed.
 */
static bool
leader_round (struct election *el)
{
  uint64_t epoch = __atomic_load_n (&el->epoch, __ATOMIC_SEQ_CST);
  uint64_t req_ns = (uint64_t)el->cfg.request_ms * NS_PER_MS;
  struct etcd_kv kv;
  char why[320];
  uint64_t t0;
  int64_t left;
  int r;

  /* Not keep_lease: a leader whose lease expired is deposed, it does
   * not take a new one.
   */
  t0 = monotonic_ns ();
  r = etcd_lease_keepalive (el->etcd, el->lease, &left);
  if (r == -ENOENT) {
    depose (el, "the lease expired in etcd");
    return false;
  }
  if (r == 0) {
    el->lease_good_ns = t0 + (uint64_t)left * 1000 * NS_PER_MS;
    __atomic_store_n (&el->good_until_ns, el->lease_good_ns, __ATOMIC_SEQ_CST);
    r = etcd_get (el->etcd, el->leader_key, &kv);
    if (r == 0 || (r > 0 && (uint64_t)kv.create_rev != epoch)) {
      snprintf (why, sizeof why, "the leader key %s is %s", el->leader_key,
                r == 0 ? "gone" : "someone else's");
      etcd_kv_clear (&kv);
      depose (el, why);
      return false;
    }
    etcd_kv_clear (&kv);
  }
  if (monotonic_ns () + req_ns >=
      __atomic_load_n (&el->good_until_ns, __ATOMIC_SEQ_CST)) {
    snprintf (why, sizeof why, "the lease could not be renewed in time (%s)",
              etcd_error (el->etcd));
    depose (el, why);
    return false;
  }
  return true;
}

static void *
election_thread (void *arg)
{
  struct election *el = arg;
  uint64_t renew_ns = (uint64_t)el->cfg.renew_ms * NS_PER_MS;
  uint64_t req_ns = (uint64_t)el->cfg.request_ms * NS_PER_MS;

  for (;;) {
    uint64_t t0 = monotonic_ns (), next = t0 + renew_ns;

    if (__atomic_load_n (&el->epoch, __ATOMIC_SEQ_CST) == 0)
      standby_round (el);
    else if (!leader_round (el))
      break;
    /* A leader renews early enough to have a second try before its
     * lease is down to REQUEST_MS.
     */
    if (__atomic_load_n (&el->epoch, __ATOMIC_SEQ_CST) != 0) {
      uint64_t good = __atomic_load_n (&el->good_until_ns, __ATOMIC_SEQ_CST);

      if (good > 3 * req_ns && next > good - 3 * req_ns)
        next = good - 3 * req_ns;
    }
    if (wait_until (el, next))
      break;
  }
  return NULL;
}

int
election_start (const struct election_config *cfg, struct election **out,
                char *err, size_t errlen)
{
  struct election *el;
  bool fail = false;
  int r;

  *out = NULL;
  el = calloc (1, sizeof *el);
  if (el == NULL)
    return -ENOMEM;
  {
    pthread_condattr_t attr;

    pthread_condattr_init (&attr);
    pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
    pthread_cond_init (&el->cond, &attr);
    pthread_condattr_destroy (&attr);
  }
  pthread_mutex_init (&el->lock, NULL);
  pthread_mutex_init (&el->put_lock, NULL);
  el->cfg = *cfg;
  if (el->cfg.ttl_s <= 0)
    el->cfg.ttl_s = ELECTION_DEFAULT_TTL;
  /* A fifth of the TTL (at least a second): etcd on a loaded machine
   * can take a second to answer, and a renewal that times out too early
   * deposes a healthy leader.
   */
  if (el->cfg.request_ms <= 0) {
    el->cfg.request_ms = (long)(el->cfg.ttl_s * 1000 / 5);
    if (el->cfg.request_ms < ELECTION_DEFAULT_REQUEST_MS)
      el->cfg.request_ms = ELECTION_DEFAULT_REQUEST_MS;
  }
  if (el->cfg.renew_ms <= 0)
    el->cfg.renew_ms = el->cfg.ttl_s * 1000 / 4;
  if (el->cfg.renew_ms + 2 * el->cfg.request_ms > el->cfg.ttl_s * 1000) {
    snprintf (err, errlen,
              "the renewal interval (%ld ms) plus twice the etcd request "
              "timeout (%ld ms) exceeds the lease TTL (%" PRId64 " s)",
              el->cfg.renew_ms, el->cfg.request_ms, el->cfg.ttl_s);
    election_free (el);
    return -EINVAL;
  }
  el->prefix = dup_opt (cfg->prefix, &fail);
  el->name = dup_opt (cfg->name, &fail);
  el->advertise = dup_opt (cfg->advertise, &fail);
  el->endpoints = dup_opt (cfg->etcd.endpoints, &fail);
  el->cacert = dup_opt (cfg->etcd.cacert, &fail);
  el->cert = dup_opt (cfg->etcd.cert, &fail);
  el->key = dup_opt (cfg->etcd.key, &fail);
  if (!fail &&
      (el->prefix == NULL || el->name == NULL || el->advertise == NULL)) {
    snprintf (err, errlen,
              "an election needs a prefix, a name and an "
              "address to advertise");
    election_free (el);
    return -EINVAL;
  }
  if (!fail && (asprintf (&el->leader_key, "%s/leader", el->prefix) < 0 ||
                asprintf (&el->value, "%s\n%s", el->name, el->advertise) < 0)) {
    el->leader_key = el->value = NULL;
    fail = true;
  }
  if (!fail && cfg->record_key &&
      asprintf (&el->record_key, "%s/%s", el->prefix, cfg->record_key) < 0) {
    el->record_key = NULL;
    fail = true;
  }
  if (fail) {
    election_free (el);
    return -ENOMEM;
  }
  el->cfg.prefix = el->prefix;
  el->cfg.name = el->name;
  el->cfg.advertise = el->advertise;
  el->cfg.etcd.endpoints = el->endpoints;
  el->cfg.etcd.cacert = el->cacert;
  el->cfg.etcd.cert = el->cert;
  el->cfg.etcd.key = el->key;
  el->cfg.etcd.timeout_ms = el->cfg.request_ms;
  r = etcd_new (&el->cfg.etcd, &el->etcd, err, errlen);
  if (r == 0)
    r = etcd_new (&el->cfg.etcd, &el->etcd_put, err, errlen);
  if (r < 0) {
    election_free (el);
    return r;
  }
  r = -pthread_create (&el->thread, NULL, election_thread, el);
  if (r < 0) {
    snprintf (err, errlen, "pthread_create: %s", strerror (-r));
    election_free (el);
    return r;
  }
  el->started = true;
  *out = el;
  return 0;
}

bool
election_leading (struct election *el, uint64_t *epoch)
{
  uint64_t e = __atomic_load_n (&el->epoch, __ATOMIC_SEQ_CST);
  uint64_t good = __atomic_load_n (&el->good_until_ns, __ATOMIC_SEQ_CST);

  if (epoch)
    *epoch = e;
  if (e == 0 || __atomic_load_n (&el->deposed, __ATOMIC_SEQ_CST))
    return false;
  return monotonic_ns () + (uint64_t)el->cfg.request_ms * NS_PER_MS < good;
}

bool
election_deposed (struct election *el)
{
  return __atomic_load_n (&el->deposed, __ATOMIC_SEQ_CST);
}

void
election_get_leader (struct election *el, struct election_leader *out)
{
  pthread_mutex_lock (&el->lock);
  *out = el->leader;
  pthread_mutex_unlock (&el->lock);
}

int
election_put (struct election *el, uint64_t epoch, const char *key,
              const void *value, size_t len)
{
  char *full;
  int r;

  if (asprintf (&full, "%s/%s", el->prefix, key) < 0)
    return -ENOMEM;
  pthread_mutex_lock (&el->put_lock);
  r = etcd_put_guarded (el->etcd_put, el->leader_key, (int64_t)epoch, full,
                        value, len, 0);
  if (r < 0)
    log_warn ("election: %s", etcd_error (el->etcd_put));
  pthread_mutex_unlock (&el->put_lock);
  free (full);
  return r;
}

int
election_get (struct election *el, const char *key, struct etcd_kv *kv)
{
  char *full;
  int r;

  memset (kv, 0, sizeof *kv);
  if (asprintf (&full, "%s/%s", el->prefix, key) < 0)
    return -ENOMEM;
  pthread_mutex_lock (&el->put_lock);
  r = etcd_get (el->etcd_put, full, kv);
  if (r < 0)
    log_debug ("election: %s", etcd_error (el->etcd_put));
  pthread_mutex_unlock (&el->put_lock);
  free (full);
  return r;
}

void
election_stop (struct election *el)
{
  uint64_t epoch;

  if (el == NULL)
    return;
  pthread_mutex_lock (&el->lock);
  el->stop = true;
  pthread_cond_broadcast (&el->cond);
  pthread_mutex_unlock (&el->lock);
  if (el->started)
    pthread_join (el->thread, NULL);
  epoch = __atomic_load_n (&el->epoch, __ATOMIC_SEQ_CST);
  if (epoch != 0 && !el->deposed) {
    __atomic_store_n (&el->epoch, 0, __ATOMIC_SEQ_CST);
    if (etcd_delete_if (el->etcd, el->leader_key, (int64_t)epoch) < 0)
      log_warn ("election: resigning: %s", etcd_error (el->etcd));
  }
  if (el->lease != 0 && etcd_lease_revoke (el->etcd, el->lease) < 0)
    log_debug ("election: revoking the lease: %s", etcd_error (el->etcd));
  election_free (el);
}

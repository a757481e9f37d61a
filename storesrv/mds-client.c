/* The MDS client thread: registers the store with the MDS (retrying every
 * RETRY_MS until it answers) with this start's incarnation, then
 * heartbeats every heartbeat_ms with the capacity, bytes used and the
 * index's commit count.  A heartbeat reply lists segments to delete
 * and fences to apply: they go to the ring thread through locked queues
 * and an eventfd, and the ring thread hands back the segments it deleted,
 * which the next heartbeat reports.  A broken connection is re-made at
 * once and the store registered again, so that a restarted MDS sees its
 * servers up soon.  State changes are logged, retries are not.
 *
 * --mds may list several MDS processes, one the leader (addrlist.h):
 * connecting tries them in turn from the one that last worked, and a
 * standby's PROTO_ENOTLEADER answer sends the thread on to the next
 * address (the leader it names first) at once; a whole pass that met
 * only standbys or failures waits RETRY_MS, as one failure does.
 *
 * A heartbeat reply is a command (delete these segments, raise these
 * fences): it is applied only if the MDS's epoch, from its HELLO reply,
 * is as high as the highest this server has seen (handshake.c).  An
 * older MDS's reply is dropped, and the thread goes on to the next
 * address as it does after a standby's answer.  The queued deletes and
 * fences carry the lowest epoch they came from, and the ring thread
 * checks it again when it takes them, in case a newer leader spoke in
 * between.  This thread never raises the highest epoch itself: only a
 * connection that an MDS opened to this server does.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "addrlist.h"
#include "buf.h"
#include "cleanup.h"
#include "deadline.h"
#include "frame.h"
#include "log.h"
#include "parse.h"

#include "internal.h"

#define MDS_TIMEOUT_MS 3000
#define RETRY_MS 250
#define MIN_HEARTBEAT_MS 100
#define MAX_HEARTBEAT_MS 60000

/* Lock order: LOCK is a leaf. */
struct ss_mds {
  struct ss_ctx *ctx;
  int efd;
  pthread_t thread;
  bool started;

  pthread_mutex_t lock;
  pthread_cond_t cond; /* CLOCK_MONOTONIC; STOP, STORE_READY, REG_STATUS */
  bool stop;           /* under LOCK */
  bool store_ready;    /* under LOCK: formatted and serving */
  int reg_status;      /* under LOCK: 0 not yet, 1 registered, -errno */
  struct proto_register_reply first; /* under LOCK */
  uint64_t *todo; /* under LOCK: to delete (ring thread takes) */
  size_t ntodo, todo_cap;
  uint64_t *deleted; /* under LOCK: deleted, not yet reported */
  size_t ndeleted, deleted_cap;
  struct proto_fence *fences; /* under LOCK: to apply (ring thread takes) */
  size_t nfences, fences_cap;
  /* under LOCK: the lowest MDS epoch that queued the deletes, the fences */
  uint64_t todo_epoch, fences_epoch;

  /* MDS thread only. */
  struct addrlist addrs; /* ctx->mds_addr; current: the one to use */
  int used;              /* index of the address last connected, or -1 */
  size_t standbys;       /* standbys met since the last registration */
  bool retry_now;        /* a standby answered: try the next at once */
  struct proto_client *client;
  uint64_t peer_epoch; /* the connected MDS's epoch (its HELLO reply) */
  uint32_t server_id;
  uint32_t heartbeat_ms;
  bool logged_up;
  int logged_err;
};

/* Append N ids to the array *V (*LEN used, *CAP allocated).  Caller
 * holds the lock.  Returns 0 or -ENOMEM.
 */
static int
ids_append (uint64_t **v, size_t *len, size_t *cap, const uint64_t *ids,
            size_t n)
{
  if (*len + n > *cap) {
    size_t c = *cap ? *cap : 64;
    uint64_t *p;

    while (c < *len + n)
      c *= 2;
    p = realloc (*v, c * sizeof *p);
    if (p == NULL)
      return -ENOMEM;
    *v = p;
    *cap = c;
  }
  memcpy (*v + *len, ids, n * sizeof *ids);
  *len += n;
  return 0;
}

/* Append the N fences F to the queue.  Caller holds the lock.  Returns 0
 * or -ENOMEM.
 */
static int
fences_append (struct ss_mds *m, const struct proto_fence *f, size_t n)
{
  if (m->nfences + n > m->fences_cap) {
    size_t c = m->fences_cap ? m->fences_cap : 16;
    struct proto_fence *p;

    while (c < m->nfences + n)
      c *= 2;
    p = realloc (m->fences, c * sizeof *p);
    if (p == NULL)
      return -ENOMEM;
    m->fences = p;
    m->fences_cap = c;
  }
  memcpy (m->fences + m->nfences, f, n * sizeof *f);
  m->nfences += n;
  return 0;
}

/* Create the client (not started).  Returns 0 and *OUT or -errno. */
int
ss_mds_new (struct ss_ctx *ctx, struct ss_mds **out)
{
  struct ss_mds *m = calloc (1, sizeof *m);
  pthread_condattr_t attr;
  char errmsg[256];
  int r;

  *out = NULL;
  if (m == NULL)
    return -ENOMEM;
  m->ctx = ctx;
  m->used = -1;
  /* main.c checked the list: only memory can run out here. */
  r = addrlist_parse (ctx->mds_addr, &m->addrs, errmsg, sizeof errmsg);
  if (r < 0) {
    log_error ("mds: %s", errmsg);
    free (m);
    return r;
  }
  m->efd = eventfd (0, EFD_CLOEXEC);
  if (m->efd == -1) {
    r = -errno;
    addrlist_free (&m->addrs);
    free (m);
    return r;
  }
  pthread_mutex_init (&m->lock, NULL);
  pthread_condattr_init (&attr);
  pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
  pthread_cond_init (&m->cond, &attr);
  pthread_condattr_destroy (&attr);
  *out = m;
  return 0;
}

/* Sleep MS milliseconds or until asked to stop.  Returns true if asked
 * to stop.
 */
static bool
mds_sleep (struct ss_mds *m, uint32_t ms)
{
  struct timespec t = deadline_after_ms (ms);

  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&m->lock);
  while (!m->stop)
    if (pthread_cond_timedwait (&m->cond, &m->lock, &t) == ETIMEDOUT)
      break;
  return m->stop;
}

/* Log a failure to reach or use the MDS at ADDR, once per state
 * change.
 */
static void
note_down (struct ss_mds *m, const char *what, const char *addr, int err,
           const char *msg)
{
  if (m->logged_up || m->logged_err != err)
    log_warn ("mds: %s: %s: %s%s%s (retrying)", what, addr, strerror (-err),
              msg && *msg ? ": " : "", msg ? msg : "");
  m->logged_up = false;
  m->logged_err = err;
}

/* The current address is the connected MDS's, or the one to try next. */
static const char *
current_addr (const struct ss_mds *m)
{
  return addrlist_current (&m->addrs);
}

/* The MDS answered WHAT with PROTO_ENOTLEADER and MSG: it is a standby.
 * Drop the connection and make current the next address (the leader MSG
 * names first).  Sets m->retry_now if that address should be tried at
 * once; else a whole pass has met standbys, which is logged as a
 * failure, and the caller backs off.
 */
static void
not_leader (struct ss_mds *m, const char *what, const char *msg)
{
  char addr[PROTO_ADDR_MAX + 1];

  snprintf (addr, sizeof addr, "%s", current_addr (m));
  proto_client_close (m->client);
  m->client = NULL;
  addrlist_next (&m->addrs, msg);
  m->retry_now = ++m->standbys % m->addrs.n != 0;
  if (!m->retry_now)
    note_down (m, what, addr, -EREMOTE, msg);
  else if (m->ctx->debug_mds)
    log_debug ("mds: %s: %s: %s: trying %s", what, addr, msg, current_addr (m));
}

/* Drop the connection (if broken) so the next round reconnects. */
static void
drop_if_broken (struct ss_mds *m)
{
  if (m->client && proto_client_broken (m->client)) {
    proto_client_close (m->client);
    m->client = NULL;
  }
}

/* True if a failed status from the MDS is worth retrying. */
static bool
transient (int err)
{
  return err == -EAGAIN || err == -EBUSY || err == -EIO || err == -ENOMEM ||
         err == -ETIMEDOUT;
}

/* A fatal answer from the MDS: tell main (waiting, or serving: then stop
 * the daemon with a failure status).
 */
static void
mds_fatal (struct ss_mds *m, int err)
{
  bool serving;

  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&m->lock);
    serving = m->reg_status > 0;
    m->reg_status = err;
    pthread_cond_broadcast (&m->cond);
  }
  if (serving) {
    __atomic_store_n (&m->ctx->exit_status, EXIT_FAILURE, __ATOMIC_SEQ_CST);
    kill (getpid (), SIGTERM);
  }
}

/* The index's commit count, or 0 while the store has no index yet (it
 * is opened before the thread starts, or by format_store while the
 * thread waits for STORE_READY after the first registration).
 */
static uint64_t
index_seq (const struct ss_mds *m)
{
  return m->ctx->index ? ss_index_seq (m->ctx->index) : 0;
}

/* Register the store.  Returns 0, a transient -errno (retry), or 1 after
 * a fatal rejection (logged).
 */
static int
mds_register (struct ss_mds *m)
{
  const struct ss_store *st = m->ctx->store;
  struct proto_register reg = { 0 };
  struct proto_register_reply reply;
  struct proto_wbuf wb = { 0 };
  CLEANUP_FREE void *payload = NULL;
  char errmsg[PROTO_ERRMSG_MAX + 1];
  uint32_t len;
  int r;

  memcpy (reg.uuid, st->uuid, 16);
  if (st->formatted) {
    memcpy (reg.cluster_uuid, st->cluster_uuid, 16);
    reg.segment_size = st->segment_size;
  }
  reg.capacity = st->capacity;
  reg.used = ss_store_used (st);
  reg.incarnation = m->ctx->incarnation;
  reg.flags = m->ctx->reg_flags;
  reg.index_seq = index_seq (m);
  snprintf (reg.address, sizeof reg.address, "%s", m->ctx->advertise);
  snprintf (reg.zone, sizeof reg.zone, "%s", m->ctx->zone);
  proto_encode_register (&reg, &wb);
  if (wb.err) {
    proto_wbuf_free (&wb);
    return wb.err;
  }
  r = proto_client_call (m->client, PROTO_OP_SERVER_REGISTER, 0, wb.data,
                         wb.len, &payload, &len, errmsg, sizeof errmsg);
  proto_wbuf_free (&wb);
  if (r < 0) {
    if (r == -EREMOTE && !proto_client_broken (m->client)) {
      not_leader (m, "register", errmsg);
      return r;
    }
    if (proto_client_broken (m->client) || transient (r)) {
      note_down (m, "register", current_addr (m), r, errmsg);
      return r;
    }
    log_error ("mds: register: %s: the MDS rejected this store: %s%s%s",
               current_addr (m), strerror (-r), *errmsg ? ": " : "", errmsg);
    mds_fatal (m, r);
    return 1;
  }
  r = proto_decode_register_reply (payload, len, &reply);
  if (r < 0 || !ss_segment_size_valid (reply.segment_size) ||
      uuid_is_zero (reply.cluster_uuid)) {
    log_error ("mds: register: %s: malformed reply", current_addr (m));
    mds_fatal (m, -EBADMSG);
    return 1;
  }
  if (st->formatted &&
      (reply.segment_size != st->segment_size ||
       memcmp (reply.cluster_uuid, st->cluster_uuid, 16) != 0)) {
    log_error ("mds: register: %s: this store belongs to another cluster "
               "or segment size",
               current_addr (m));
    mds_fatal (m, -EINVAL);
    return 1;
  }
  m->server_id = reply.server_id;
  m->heartbeat_ms = reply.heartbeat_ms ? reply.heartbeat_ms : 1000;
  if (m->heartbeat_ms < MIN_HEARTBEAT_MS)
    m->heartbeat_ms = MIN_HEARTBEAT_MS;
  if (m->heartbeat_ms > MAX_HEARTBEAT_MS)
    m->heartbeat_ms = MAX_HEARTBEAT_MS;
  if (!m->logged_up)
    log_info ("mds: registered with %s as server %" PRIu32, current_addr (m),
              m->server_id);
  m->logged_up = true;
  m->logged_err = 0;
  m->standbys = 0;

  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&m->lock);
  if (m->reg_status == 0) {
    m->first = reply;
    m->reg_status = 1;
    pthread_cond_broadcast (&m->cond);
  }
  /* The first registration waits until the store is formatted. */
  while (!m->store_ready && !m->stop)
    pthread_cond_wait (&m->cond, &m->lock);
  return 0;
}

/* Send one heartbeat with the segments deleted since the last one, and
 * queue the deletes and fences its reply asks for.  Returns 0 or -errno.
 */
static int
mds_heartbeat (struct ss_mds *m)
{
  const struct ss_store *st = m->ctx->store;
  struct proto_heartbeat hb = { .server_id = m->server_id };
  struct proto_heartbeat_reply list = { 0 };
  struct proto_wbuf wb = { 0 };
  CLEANUP_FREE uint64_t *sent = NULL;
  bool queued = false;
  CLEANUP_FREE void *payload = NULL;
  char errmsg[PROTO_ERRMSG_MAX + 1];
  uint64_t one = 1;
  uint32_t len;
  int r;

  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&m->lock);
    hb.n = m->ndeleted < PROTO_LIST_MAX ? m->ndeleted : PROTO_LIST_MAX;
    if (hb.n > 0) {
      sent = malloc (hb.n * sizeof *sent);
      if (sent == NULL)
        hb.n = 0;
      else
        memcpy (sent, m->deleted, hb.n * sizeof *sent);
    }
  }
  hb.segments = sent;
  hb.capacity = st->capacity;
  hb.used = ss_store_used (st);
  hb.index_seq = index_seq (m);
  proto_encode_heartbeat (&hb, &wb);
  if (wb.err) {
    proto_wbuf_free (&wb);
    return wb.err;
  }
  r = proto_client_call (m->client, PROTO_OP_SERVER_HEARTBEAT, 0, wb.data,
                         wb.len, &payload, &len, errmsg, sizeof errmsg);
  proto_wbuf_free (&wb);
  if (r < 0) {
    if (r == -EREMOTE && !proto_client_broken (m->client))
      not_leader (m, "heartbeat", errmsg);
    else
      note_down (m, "heartbeat", current_addr (m), r, errmsg);
    return r;
  }
  r = proto_decode_heartbeat_reply (payload, len, &list);
  if (r < 0) {
    note_down (m, "heartbeat", current_addr (m), r, "malformed reply");
    return r;
  }
  if ((list.n > 0 || list.nfences > 0) &&
      ss_mds_epoch_stale (m->ctx, m->peer_epoch, "mds: heartbeat reply")) {
    /* A deposed leader: try the others. */
    proto_heartbeat_reply_free (&list);
    proto_client_close (m->client);
    m->client = NULL;
    addrlist_next (&m->addrs, NULL);
    return -ESTALE;
  }
  if (m->ctx->debug_mds)
    log_debug ("mds: heartbeat: used %" PRIu64 ", reported %" PRIu32
               " deleted, %" PRIu32 " to delete, %" PRIu32 " fences",
               hb.used, hb.n, list.n, list.nfences);
  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&m->lock);
    /* The ids sent are the oldest; newer ones were appended after. */
    if (hb.n > 0) {
      memmove (m->deleted, m->deleted + hb.n,
               (m->ndeleted - hb.n) * sizeof *m->deleted);
      m->ndeleted -= hb.n;
    }
    if (list.n > 0 && ids_append (&m->todo, &m->ntodo, &m->todo_cap,
                                  list.segments, list.n) == 0) {
      queued = true; /* else the MDS asks again */
      if (m->ntodo == list.n || m->peer_epoch < m->todo_epoch)
        m->todo_epoch = m->peer_epoch;
    }
    if (list.nfences > 0) {
      if (fences_append (m, list.fences, list.nfences) == 0) {
        queued = true;
        if (m->nfences == list.nfences || m->peer_epoch < m->fences_epoch)
          m->fences_epoch = m->peer_epoch;
      }
      else
        log_warn ("mds: %s: %" PRIu32 " fences dropped", strerror (ENOMEM),
                  list.nfences);
    }
  }
  if (queued && write (m->efd, &one, sizeof one) != sizeof one)
    log_error ("mds: eventfd write: %s", strerror (errno));
  proto_heartbeat_reply_free (&list);
  if (!m->logged_up)
    log_info ("mds: heartbeats to %s resumed", current_addr (m));
  m->logged_up = true;
  m->logged_err = 0;
  return 0;
}

/* Connect to ADDR and check that it is an MDS.  Returns 0 (m->client
 * set) or -errno with a message in ERRMSG.
 */
static int
connect_one (struct ss_mds *m, const char *addr, char *errmsg, size_t errlen)
{
  struct proto_hello peer;
  int r;

  r = proto_client_connect (addr, PROTO_ROLE_STORESRV, m->ctx->store->uuid,
                            MDS_TIMEOUT_MS, &m->client, &peer, errmsg, errlen);
  if (r < 0)
    return r;
  if (peer.role != PROTO_ROLE_MDS) {
    snprintf (errmsg, errlen, "the peer is not an MDS");
    proto_client_close (m->client);
    m->client = NULL;
    return -EPROTO;
  }
  m->peer_epoch = peer.mds_epoch;
  /* An MDS that proved the cluster key and leads at a newer epoch: from
   * now on older ones are refused here too, before the new leader's
   * first command reaches this server (which makes it durable,
   * handshake.c).  A deposed leader's heartbeat replies are then
   * refused at once (ss_mds_epoch_stale).
   */
  {
    uint64_t h = __atomic_load_n (&m->ctx->mds_epoch, __ATOMIC_SEQ_CST);

    while (peer.mds_epoch > h && !__atomic_compare_exchange_n (
                                     &m->ctx->mds_epoch, &h, peer.mds_epoch,
                                     false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
      ;
    if (peer.mds_epoch > h)
      log_info ("mds: MDS epoch %" PRIu64 " (was %" PRIu64
                "): older ones are refused from now on",
                peer.mds_epoch, h);
  }
  return 0;
}

/* Connect to the MDS: the current address, else the next ones, one pass
 * at most (each attempt bounded by MDS_TIMEOUT_MS; none starts once
 * asked to stop).  The one that answers becomes current.  Returns 0 or
 * -errno (logged once per state change, naming the list).
 */
static int
mds_connect (struct ss_mds *m)
{
  char errmsg[256] = "";
  const char *addr = current_addr (m);
  size_t i;
  int r = -ECONNREFUSED;

  for (i = 0; i < m->addrs.n; ++i) {
    if (i > 0) {
      {
        ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&m->lock);
        if (m->stop)
          return -ECANCELED;
      }
      addr = m->addrs.addrs[addrlist_next (&m->addrs, NULL)];
    }
    r = connect_one (m, addr, errmsg, sizeof errmsg);
    if (r == 0) {
      if (m->addrs.n > 1 && m->used != (int)m->addrs.current)
        log_info ("mds: connected to %s (address %zu of %zu)", addr,
                  m->addrs.current + 1, m->addrs.n);
      m->used = (int)m->addrs.current;
      return 0;
    }
    if (m->ctx->debug_mds)
      log_debug ("mds: connect: %s: %s", addr, errmsg);
  }
  /* One address is named as it always was; a list names them all and
   * the last failure.
   */
  if (m->addrs.n == 1)
    note_down (m, "connect", addr, r, errmsg);
  else {
    char msg[512];

    snprintf (msg, sizeof msg, "last: %s: %s", addr, errmsg);
    note_down (m, "connect", m->addrs.text, r, msg);
  }
  return r;
}

/* The thread: connect, register, heartbeat; on failures start over. */
static void *
mds_thread (void *arg)
{
  struct ss_mds *m = arg;
  bool registered = false;
  int r;

  log_set_thread_name ("mds");
  for (;;) {
    {
      ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&m->lock);
      if (m->stop)
        break;
    }
    if (m->client == NULL) {
      registered = false;
      if (mds_connect (m) < 0) {
        if (mds_sleep (m, RETRY_MS))
          break;
        continue;
      }
    }
    if (!registered) {
      r = mds_register (m);
      if (r == 1)
        break;
      if (r < 0) {
        drop_if_broken (m);
        if (r == -EREMOTE && m->retry_now)
          continue; /* a standby: the next address at once */
        if (mds_sleep (m, RETRY_MS))
          break;
        continue;
      }
      registered = true;
    }
    if (mds_sleep (m, m->heartbeat_ms))
      break;
    r = mds_heartbeat (m);
    if (r == -ENOENT)
      registered = false; /* the MDS forgot us: register again */
    else if (r == -EREMOTE && !m->retry_now) {
      /* Only standbys: back off before the next pass. */
      if (mds_sleep (m, RETRY_MS))
        break;
    }
    else if (r < 0)
      drop_if_broken (m);
  }
  proto_client_close (m->client);
  m->client = NULL;
  return NULL;
}

/* Start the thread.  Returns 0 or -errno. */
int
ss_mds_start (struct ss_mds *m)
{
  int r = pthread_create (&m->thread, NULL, mds_thread, m);

  if (r != 0) {
    log_error ("mds: pthread_create: %s", strerror (r));
    return -r;
  }
  m->started = true;
  return 0;
}

/* Wait until the first registration succeeds (0, *REPLY set), is
 * rejected (-errno, logged), or one of the blocked signals SIGS arrives
 * (-EINTR).  Main thread.
 */
int
ss_mds_wait_registered (struct ss_mds *m, const sigset_t *sigs,
                        struct proto_register_reply *reply)
{
  const struct timespec tick = { .tv_nsec = 200000000 };

  for (;;) {
    {
      ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&m->lock);
      if (m->reg_status < 0)
        return m->reg_status;
      if (m->reg_status > 0) {
        *reply = m->first;
        return 0;
      }
    }
    if (sigtimedwait (sigs, NULL, &tick) > 0)
      return -EINTR;
  }
}

/* The store is formatted and the ring is about to serve: heartbeats may
 * begin.
 */
void
ss_mds_store_ready (struct ss_mds *m)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&m->lock);
  m->store_ready = true;
  pthread_cond_broadcast (&m->cond);
}

/* The eventfd written when deletes or fences are queued. */
int
ss_mds_eventfd (const struct ss_mds *m)
{
  return m->efd;
}

/* Take the queued deletes (ring thread): *IDS (caller frees), *N and
 * the lowest MDS epoch they came from, *EPOCH.
 */
int
ss_mds_take_deletes (struct ss_mds *m, uint64_t **ids, size_t *n,
                     uint64_t *epoch)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&m->lock);
  *ids = m->todo;
  *n = m->ntodo;
  *epoch = m->todo_epoch;
  m->todo = NULL;
  m->ntodo = m->todo_cap = 0;
  return 0;
}

/* Take the queued fences (ring thread): *FENCES (caller frees), *N and
 * the lowest MDS epoch they came from, *EPOCH.
 */
void
ss_mds_take_fences (struct ss_mds *m, struct proto_fence **fences, size_t *n,
                    uint64_t *epoch)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&m->lock);
  *fences = m->fences;
  *n = m->nfences;
  *epoch = m->fences_epoch;
  m->fences = NULL;
  m->nfences = m->fences_cap = 0;
}

/* Record N deleted segments for the next heartbeat (ring thread). */
void
ss_mds_deleted (struct ss_mds *m, const uint64_t *ids, size_t n)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&m->lock);
  if (n > 0 &&
      ids_append (&m->deleted, &m->ndeleted, &m->deleted_cap, ids, n) < 0)
    log_warn ("mds: %s: %zu deletes go unreported", strerror (ENOMEM), n);
}

/* Stop the thread (within one MDS call's timeout) and free M.  Accepts
 * NULL.
 */
void
ss_mds_free (struct ss_mds *m)
{
  if (m == NULL)
    return;
  if (m->started) {
    {
      ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&m->lock);
      m->stop = true;
      pthread_cond_broadcast (&m->cond);
    }
    pthread_join (m->thread, NULL);
  }
  close (m->efd);
  addrlist_free (&m->addrs);
  pthread_cond_destroy (&m->cond);
  pthread_mutex_destroy (&m->lock);
  free (m->todo);
  free (m->deleted);
  free (m->fences);
  free (m);
}

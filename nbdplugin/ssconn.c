/* nbdkit-tessera-plugin: pipelined connections to storage servers.
 *
 * Each storage server gets up to CONNECTIONS sockets, opened on first use
 * (proto_connect, then the handshake as PROTO_ROLE_PLUGIN).  A socket
 * carries many requests at once: senders write whole frames under the
 * socket's send lock, the frames of one caller to one server together in
 * one sendmsg, and the replies, which may come back in any order, are
 * handed to the requests with the same tags.  Callers group requests in
 * a batch (struct ss_batch): submit all, then wait for all, bounded by
 * the request timeout.
 *
 * Replies are read by whichever thread holds a socket's reader role
 * (leader/follower).  A thread waiting for its batch takes the role of
 * every socket that carries one of its requests and has no reader, reads
 * its own replies and dispatches the others' to their waiters, and gives
 * the role back once its own requests there are done.  A role given back
 * while requests are still in flight on the socket is handed to one of
 * their waiters asleep in ss_batch_wait, else to the socket's helper
 * thread, which reads until nothing is in flight; a sender that finds
 * the socket full wakes the helper too.  So every request in flight has a
 * reader or a sender about to become one, and at queue depth one the
 * thread that sent a request reads the reply itself: no thread hand-off.
 *
 * A transport failure fails every request in flight on that socket with
 * EIO and closes it; the next request on it reconnects.  A request that
 * times out fails with ETIMEDOUT; if its reply is being read right then,
 * or nothing has arrived on the socket for half the timeout (the peer or
 * the path is stuck, perhaps mid-frame), the socket is shut down too, so
 * that the reader gives it back promptly and later requests do not wait
 * on it for a timeout each.
 *
 * Within an NBD request, the steps of one batch (the wait for another
 * sender, the connect, the send, the wait for the replies) share the
 * batch's end, the request's deadline (see request.c), so that their
 * sum stays within it.  A step cut below a quarter of the timeout that
 * times out blames nobody: its requests fail with SS_EOUTOFTIME and the
 * server is not suspected.
 */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "buf.h"
#include "cleanup.h"
#include "deadline.h"
#include "frame.h"
#include "full-rw.h"
#include "minmax.h"
#include "protocol.h"
#include "parse.h"
#include "sock.h"

#include "internal.h"

/* How long a server that failed at the transport level is suspect. */
#define SUSPECT_MIN_MS 1000
#define SUSPECT_MAX_MS 10000

/* Receive buffer of a socket: one recv takes several small replies. */
#define RBUF_SIZE (64 * 1024)

/* Frames sent by one sendmsg. */
#define SEND_FRAMES 16

/* Sockets one waiter reads at once; more go to their helper threads. */
#define POLL_MAX 16

/* How often an idle helper thread looks whether it is still needed. */
#define HELPER_POLL_MS 100

/* Request states, under the connection's lock. */
enum {
  REQ_NEW,       /* not on a connection */
  REQ_INFLIGHT,  /* sent (or being sent), on conn->inflight */
  REQ_RECEIVING, /* taken by a reader, which will complete it */
  REQ_CANCELLED, /* taken off by a timed-out waiter */
};

/* Connection states, under the connection's lock. */
enum {
  CONN_CLOSED, /* no socket */
  CONN_UP,     /* socket open, helper thread running */
  CONN_BROKEN, /* failed: close and reconnect */
};

/* One socket to a storage server. */
struct ss_conn {
  struct ss_server *server;
  unsigned index;

  /* Serializes connecting and sending on this socket.  Also protects
   * thread and thread_started.  Taken before lock.
   */
  pthread_mutex_t send_lock;
  bool thread_started;
  pthread_t thread; /* the helper */

  pthread_mutex_t lock;       /* protects the fields below up to rbuf */
  pthread_cond_t helper_cond; /* the helper waits for helper_turn, stop */
  pthread_cond_t idle_cond;   /* broadcast when the reader role is free */
  int fd;
  int state;
  uint64_t gen;         /* incremented by every connect */
  uint64_t incarnation; /* the server process its handshake found */
  uint64_t next_tag;    /* tags below it have been used */
  struct ss_request *inflight;
  bool reading;           /* someone holds the reader role */
  struct ss_batch *owner; /* held by this batch's waiter; NULL: helper */
  bool helper_turn;       /* the role was handed to the helper */
  bool stop;              /* the helper must exit */
  /* CLOCK_MONOTONIC ns when bytes last arrived (set by the reader). */
  _Atomic uint64_t last_recv_ns;

  /* Private to the holder of the reader role. */
  struct ss_conn *owned_next; /* in its holder's list (or b->handed) */
  bool needed;                /* its holder still waits for a reply */
  char *rbuf;                 /* RBUF_SIZE bytes */
  size_t rlen;                /* received, not dispatched: less than a header */
};

/* Set FD's send and receive timeouts separately (sock_set_timeout sets
 * both).  Returns 0 or -errno.
 */
static int
set_timeouts (int fd, int send_ms, int recv_ms)
{
  struct timeval s = { .tv_sec = send_ms / 1000,
                       .tv_usec = (send_ms % 1000) * 1000 };
  struct timeval r = { .tv_sec = recv_ms / 1000,
                       .tv_usec = (recv_ms % 1000) * 1000 };

  if (setsockopt (fd, SOL_SOCKET, SO_SNDTIMEO, &s, sizeof s) == -1 ||
      setsockopt (fd, SOL_SOCKET, SO_RCVTIMEO, &r, sizeof r) == -1)
    return -errno;
  return 0;
}

/* Server S just failed at the transport level (connect, send, timeout):
 * for a while it is suspect, and readers try its replicas last
 * (ss_server_suspect).  Suspicion never fails a request by itself: a
 * suspect server is still tried when it holds the last ok replica of a
 * read, and by every write, within the request deadline.  The replicas
 * it fails are reported, so later writes avoid it anyway.
 */
static void
mark_suspect (struct ss_server *s)
{
  uint64_t ms = s->timeout_ms;

  if (ms < SUSPECT_MIN_MS)
    ms = SUSPECT_MIN_MS;
  if (ms > SUSPECT_MAX_MS)
    ms = SUSPECT_MAX_MS;
  atomic_store (&s->suspect_until, monotonic_ns () + ms * 1000000);
}

/* Whether S failed at the transport level recently (mark_suspect). */
bool
ss_server_suspect (struct ss_server *s)
{
  return monotonic_ns () < atomic_load (&s->suspect_until);
}

/* The end of the round (struct ss_batch) whose requests this thread is
 * sending (ss_submit), or 0.
 */
static __thread uint64_t round_deadline;

/* The time S's step started now (a connect, a send waiting for room,
 * the wait for another sender) may wait: its timeout, cut to what is
 * left of the round being sent (every step of a round shares its end,
 * so that the round, and the request, end in time), or outside rounds
 * to what is left of the running request but not below a quarter of
 * the timeout.
 */
static int
step_ms (const struct ss_server *s)
{
  uint64_t now, left;
  int ms;

  if (round_deadline == 0) {
    ms = request_step_ms (s->timeout_ms);
    return ms < s->timeout_ms / 4 ? s->timeout_ms / 4 : ms;
  }
  now = monotonic_ns ();
  if (round_deadline <= now + 1000000)
    return 1;
  left = (round_deadline - now) / 1000000;
  return left < (uint64_t)s->timeout_ms ? (int)left : s->timeout_ms;
}

/* Whether a step of S that may wait MS is cut short by the round: less
 * than a quarter of the timeout.  Its timing out then says nothing of
 * the server (SS_EOUTOFTIME).
 */
static bool
step_cut_short (const struct ss_server *s, int ms)
{
  return round_deadline != 0 && ms < s->timeout_ms / 4;
}

/* The time a connect (and its handshake) to S, or the wait for another
 * sender to S, may take: step_ms, but a quarter of the timeout for a
 * suspect server, the shortest silence that counts a server failed.  A
 * healthy server answers in far less; a hung one must not take a
 * request's whole time before the other replicas are even sent to.
 */
static int
connect_ms (struct ss_server *s)
{
  int ms = step_ms (s);

  if (ss_server_suspect (s) && ms > s->timeout_ms / 4)
    ms = s->timeout_ms / 4;
  return ms;
}

/* Give server S (being created, servers.c) NCONNS sockets, all
 * closed: each opens on first use.  Returns 0 or -ENOMEM.
 */
int
ss_conns_new (struct ss_server *s, unsigned nconns)
{
  unsigned i;

  assert (nconns > 0);
  s->conns = calloc (nconns, sizeof *s->conns);
  if (s->conns == NULL)
    return -ENOMEM;
  s->nconns = nconns;
  for (i = 0; i < nconns; i++) {
    struct ss_conn *c = &s->conns[i];

    c->server = s;
    c->index = i;
    pthread_mutex_init (&c->send_lock, NULL);
    pthread_mutex_init (&c->lock, NULL);
    pthread_cond_init (&c->helper_cond, NULL);
    pthread_cond_init (&c->idle_cond, NULL);
    c->fd = -1;
    c->state = CONN_CLOSED;
    c->next_tag = 1;
  }
  return 0;
}

/* Free the sockets of server S (being freed, servers.c).  They must be
 * closed already (ss_server_disconnect).
 */
void
ss_conns_free (struct ss_server *s)
{
  unsigned i;

  for (i = 0; i < s->nconns; i++) {
    struct ss_conn *c = &s->conns[i];

    assert (c->fd == -1);
    assert (!c->thread_started);
    assert (c->inflight == NULL);
    assert (!c->reading);
    pthread_mutex_destroy (&c->send_lock);
    pthread_mutex_destroy (&c->lock);
    pthread_cond_destroy (&c->helper_cond);
    pthread_cond_destroy (&c->idle_cond);
    free (c->rbuf);
  }
  free (s->conns);
  s->conns = NULL;
  s->nconns = 0;
}

/* Complete request R with ERR (0 or -errno) and message MSG (NULL: none;
 * truncated to fit).  R must no longer be reachable from a connection.
 * R may be freed by its waiter as soon as this returns.
 */
static void
complete (struct ss_request *r, int err, const char *msg)
{
  struct ss_batch *b = r->batch;

  pthread_mutex_lock (&b->lock);
  assert (!r->done);
  r->done = true;
  r->err = err;
  if (msg)
    snprintf (r->errmsg, sizeof r->errmsg, "%s", msg);
  assert (b->pending > 0);
  if (--b->pending == 0)
    pthread_cond_broadcast (&b->cond);
  pthread_mutex_unlock (&b->lock);
}

/* Complete every request of the list LIST (linked by next) with ERR and
 * MSG.
 */
static void
complete_list (struct ss_request *list, int err, const char *msg)
{
  struct ss_request *r, *next;

  for (r = list; r != NULL; r = next) {
    next = r->next;
    r->next = NULL;
    complete (r, err, msg);
  }
}

/* Unlink R from C's in-flight list.  Caller holds C->lock. */
static void
unlink_request (struct ss_conn *c, struct ss_request *r)
{
  struct ss_request **pp;

  for (pp = &c->inflight; *pp != NULL; pp = &(*pp)->next) {
    if (*pp == r) {
      *pp = r->next;
      r->next = NULL;
      return;
    }
  }
  assert (!"unlink_request: request not in flight");
}

/* Mark C broken and shut its socket down (its reader then gives up at
 * once); take every request in flight on it off and return them, for
 * the caller to fail once it has released C->lock, which it holds.
 */
static struct ss_request *
conn_fail_locked (struct ss_conn *c)
{
  struct ss_request *list, *r;

  if (c->state == CONN_UP) {
    c->state = CONN_BROKEN;
    shutdown (c->fd, SHUT_RDWR);
  }
  list = c->inflight;
  c->inflight = NULL;
  for (r = list; r != NULL; r = r->next)
    r->state = REQ_RECEIVING;
  return list;
}

/* Mark C broken, shut its socket down (its reader then gives up at
 * once) and fail every request in flight on it with EIO.
 */
static void
conn_fail (struct ss_conn *c)
{
  struct ss_request *list;

  pthread_mutex_lock (&c->lock);
  list = conn_fail_locked (c);
  pthread_mutex_unlock (&c->lock);
  complete_list (list, -EIO, "connection lost");
}

/* The holder of C's reader role gives it back.  If requests are still
 * in flight on C, the role goes to the waiter of one of them that is
 * asleep in ss_batch_wait, else to C's helper thread; otherwise C has no
 * reader until the next waiter takes the role.  Caller holds C->lock.
 */
static void
pass_role (struct ss_conn *c)
{
  struct ss_request *r;
  bool handed;

  assert (c->reading);
  if (c->inflight == NULL || c->state != CONN_UP) {
    c->reading = false;
    c->owner = NULL;
    pthread_cond_broadcast (&c->idle_cond);
    return;
  }
  for (r = c->inflight; r != NULL; r = r->next) {
    struct ss_batch *b = r->batch;

    /* B is alive: R is in flight, so its waiter cannot have returned. */
    pthread_mutex_lock (&b->lock);
    handed = b->sleeping;
    if (handed) {
      c->owner = b;
      c->owned_next = b->handed;
      b->handed = c;
      pthread_cond_signal (&b->cond);
    }
    pthread_mutex_unlock (&b->lock);
    if (handed)
      return;
  }
  c->owner = NULL;
  c->helper_turn = true;
  pthread_cond_signal (&c->helper_cond);
}

/* Make sure that C, whose socket is full, has a reader: a server stops
 * reading requests when nobody reads its replies.  Caller holds
 * C->send_lock, not C->lock.
 */
static void
ensure_reader (struct ss_conn *c)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&c->lock);
  if (!c->reading && c->inflight != NULL && c->state == CONN_UP) {
    c->reading = true;
    c->owner = NULL;
    c->helper_turn = true;
    pthread_cond_signal (&c->helper_cond);
  }
}

/* Wait until FD has one of EVENTS (POLLIN, POLLOUT), an error or a
 * hang-up, for at most TIMEOUT_MS.  Returns 0, -ETIMEDOUT or -errno.
 */
static int
wait_fd (int fd, short events, int timeout_ms)
{
  struct pollfd p = { .fd = fd, .events = events };
  int r;

  do
    r = poll (&p, 1, timeout_ms);
  while (r == -1 && errno == EINTR);
  if (r == -1)
    return -errno;
  return r == 0 ? -ETIMEDOUT : 0;
}

/* Read the last N bytes of a frame from C's socket FD into BUF (NULL:
 * drop them, using the receive buffer, which holds nothing else then).
 * The server sends frames whole, so each part must come within the
 * timeout.  Returns 0 or -errno.
 */
static int
read_rest (struct ss_conn *c, int fd, char *buf, size_t n)
{
  ssize_t r;
  int e;

  while (n > 0) {
    if (buf)
      r = recv (fd, buf, n, MSG_DONTWAIT);
    else
      r = recv (fd, c->rbuf, MIN (n, (size_t)RBUF_SIZE), MSG_DONTWAIT);
    if (r > 0) {
      atomic_store (&c->last_recv_ns, monotonic_ns ());
      if (buf)
        buf += r;
      n -= r;
      continue;
    }
    if (r == 0)
      return -EPIPE;
    if (errno == EINTR)
      continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      return -errno;
    e = wait_fd (fd, POLLIN, c->server->timeout_ms);
    if (e < 0)
      return e;
  }
  return 0;
}

/* Take the LEN bytes of payload of the reply being dispatched, the first
 * AVAIL of which are at P in C's receive buffer and the rest still in
 * the socket, into DST (NULL: drop them).  Returns 0 or -errno.
 */
static int
take_payload (struct ss_conn *c, int fd, const char *p, size_t avail, char *dst,
              uint32_t len)
{
  size_t k = MIN (avail, (size_t)len);

  if (dst && k > 0)
    memcpy (dst, p, k);
  if (k == len)
    return 0;
  return read_rest (c, fd, dst ? dst + k : NULL, len - k);
}

/* Dispatch the reply HDR, just decoded from C's receive buffer, to its
 * request: its payload starts at P, AVAIL bytes of the buffer, and may
 * go on in the socket.  Returns the bytes of the buffer consumed, or
 * -errno if the connection must be closed (the request, if any, has
 * been completed either way).
 */
static ssize_t
dispatch (struct ss_conn *c, int fd, const struct proto_header *hdr,
          const char *p, size_t avail)
{
  char msg[PROTO_ERRMSG_MAX + 1];
  ssize_t used = MIN (avail, (size_t)hdr->length);
  struct ss_request *r;
  bool late = false;
  int e;

  pthread_mutex_lock (&c->lock);
  for (r = c->inflight; r != NULL; r = r->next)
    if (r->tag == hdr->tag)
      break;
  if (r) {
    unlink_request (c, r);
    r->state = REQ_RECEIVING;
  }
  else
    late = hdr->tag > 0 && hdr->tag < c->next_tag;
  pthread_mutex_unlock (&c->lock);

  if (r == NULL) {
    /* The reply to a request that timed out: drop it. */
    if (!late)
      return -EBADMSG;
    if (tessera_debug_conn)
      nbdkit_debug ("server %" PRIu32 ": late reply, tag %" PRIu64,
                    c->server->id, hdr->tag);
    e = take_payload (c, fd, p, avail, NULL, hdr->length);
    return e < 0 ? e : used;
  }
  if (hdr->opcode != r->opcode) {
    complete (r, -EIO, "reply to a different opcode");
    return -EBADMSG;
  }
  if (hdr->status != PROTO_OK) {
    if (hdr->length > PROTO_ERRMSG_MAX) {
      complete (r, -EIO, "error message too long");
      return -EBADMSG;
    }
    e = take_payload (c, fd, p, avail, msg, hdr->length);
    if (e < 0) {
      complete (r, -EIO, "connection lost");
      return e;
    }
    msg[hdr->length] = '\0';
    r->answered = true;
    complete (r, -proto_status_to_errno (hdr->status), msg);
    return used;
  }
  if (r->opcode == PROTO_OP_SEG_READ) {
    if (hdr->length != r->io.length) {
      complete (r, -EIO, "read reply of the wrong length");
      return -EBADMSG;
    }
    e = take_payload (c, fd, p, avail, r->data, hdr->length);
    if (e < 0) {
      complete (r, -EIO, "connection lost");
      return e;
    }
  }
  else if (hdr->length != 0) {
    complete (r, -EIO, "unexpected reply payload");
    return -EBADMSG;
  }
  complete (r, 0, NULL);
  return used;
}

/* Read what has arrived on C's socket FD (the caller holds the reader
 * role) and dispatch every whole reply.  Returns 0, or -errno when the
 * connection is finished.
 */
static int
conn_receive (struct ss_conn *c, int fd)
{
  size_t off = 0;
  ssize_t n;
  int e;

  n = recv (fd, c->rbuf + c->rlen, RBUF_SIZE - c->rlen, MSG_DONTWAIT);
  if (n == 0)
    return -EPIPE;
  if (n < 0)
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0
                                                                     : -errno;
  atomic_store (&c->last_recv_ns, monotonic_ns ());
  c->rlen += n;
  while (c->rlen - off >= PROTO_HEADER_SIZE) {
    struct proto_header hdr;
    ssize_t used;

    e = proto_header_decode (c->rbuf + off, &hdr, PROTO_MAX_IO_PAYLOAD);
    if (e < 0)
      return e;
    if (!(hdr.flags & PROTO_FLAG_REPLY) ||
        hdr.length > proto_max_payload (hdr.opcode))
      return -EBADMSG;
    off += PROTO_HEADER_SIZE;
    used = dispatch (c, fd, &hdr, c->rbuf + off, c->rlen - off);
    if (used < 0)
      return used;
    off += used;
  }
  memmove (c->rbuf, c->rbuf + off, c->rlen - off);
  c->rlen -= off;
  return 0;
}

/* Log why C is being closed. */
static void
debug_closed (struct ss_conn *c, int e)
{
  if (tessera_debug_conn)
    nbdkit_debug ("server %" PRIu32 " conn %u: closed: %s", c->server->id,
                  c->index, e == -EPIPE ? "end of stream" : strerror (-e));
}

/* Helper thread of one connection: when the reader role is handed to it
 * (no waiter could take it), read replies until nothing is in flight,
 * then give the role back.  Exits when told to stop.
 */
static void *
helper (void *arg)
{
  struct ss_conn *c = arg;
  int fd, e;

  pthread_mutex_lock (&c->lock);
  for (;;) {
    while (!c->stop && !c->helper_turn)
      pthread_cond_wait (&c->helper_cond, &c->lock);
    if (c->stop)
      break;
    c->helper_turn = false;
    while (c->inflight != NULL && c->state == CONN_UP) {
      fd = c->fd;
      pthread_mutex_unlock (&c->lock);
      e = wait_fd (fd, POLLIN, HELPER_POLL_MS);
      if (e == 0)
        e = conn_receive (c, fd);
      if (e < 0 && e != -ETIMEDOUT) {
        debug_closed (c, e);
        conn_fail (c);
      }
      pthread_mutex_lock (&c->lock);
    }
    pass_role (c);
  }
  pthread_mutex_unlock (&c->lock);
  return NULL;
}

/* Run the handshake (HELLO and AUTH, frame.h) on the new socket FD of
 * server S and check that the peer is that storage server.  Returns 0
 * and the server's *INCARNATION, or -errno, with a message for the user
 * in ERRMSG.
 */
static int
hello (struct ss_server *s, int fd, uint64_t *incarnation, char *errmsg,
       size_t errlen)
{
  struct proto_hello peer;
  int e;

  e = proto_handshake (fd, PROTO_ROLE_PLUGIN, NULL, &peer, errmsg, errlen);
  if (e < 0)
    return e;
  if (peer.role != PROTO_ROLE_STORESRV) {
    snprintf (errmsg, errlen, "hello: peer is %s, not a storage server",
              proto_role_name (peer.role));
    return -EPROTO;
  }
  if (!uuid_is_zero (s->uuid) && memcmp (peer.uuid, s->uuid, 16)) {
    snprintf (errmsg, errlen, "hello: server uuid does not match");
    return -ESTALE;
  }
  *incarnation = peer.incarnation;
  return 0;
}

/* Stop C's helper and close its socket, once its reader (if any) has
 * given the role back.  Caller holds C->send_lock and C is not up.
 */
static void
conn_reset (struct ss_conn *c)
{
  int fd;

  pthread_mutex_lock (&c->lock);
  assert (c->state != CONN_UP);
  while (c->reading)
    pthread_cond_wait (&c->idle_cond, &c->lock);
  c->stop = true;
  pthread_cond_signal (&c->helper_cond);
  pthread_mutex_unlock (&c->lock);
  if (c->thread_started) {
    pthread_join (c->thread, NULL);
    c->thread_started = false;
  }
  pthread_mutex_lock (&c->lock);
  assert (c->inflight == NULL);
  fd = c->fd;
  c->fd = -1;
  c->state = CONN_CLOSED;
  c->gen++;
  c->stop = false;
  c->helper_turn = false;
  c->rlen = 0;
  pthread_mutex_unlock (&c->lock);
  if (fd >= 0)
    close (fd);
}

/* Open C's socket, run the handshake and start its helper.  Caller holds
 * C->send_lock and C is closed.  Returns 0 or -errno with a message in
 * ERRMSG.
 */
static int
conn_open (struct ss_conn *c, char *errmsg, size_t errlen)
{
  struct ss_server *s = c->server;
  char addr[PROTO_ADDR_MAX + 1];
  uint64_t incarnation = 0;
  int fd, e;

  if (c->rbuf == NULL) {
    c->rbuf = malloc (RBUF_SIZE);
    if (c->rbuf == NULL) {
      snprintf (errmsg, errlen, "malloc: %s", strerror (ENOMEM));
      return -ENOMEM;
    }
  }
  pthread_mutex_lock (&s->lock);
  memcpy (addr, s->addr, sizeof addr);
  pthread_mutex_unlock (&s->lock);

  fd = proto_connect (addr, connect_ms (s), errmsg, errlen);
  if (fd < 0)
    return fd;
  /* The handshake reads with a timeout; the data path polls. */
  e = set_timeouts (fd, connect_ms (s), connect_ms (s));
  if (e == 0)
    e = hello (s, fd, &incarnation, errmsg, errlen);
  if (e == 0) {
    /* A server that restarted with writes not yet durable is used again
     * only once they are reported (flush.c).
     */
    e = dirty_check_incarnation (s, incarnation);
    if (e == -SS_ERESTARTED)
      snprintf (errmsg, errlen,
                "restarted: its lost writes are not reported yet");
  }
  if (e == 0)
    e = set_timeouts (fd, s->timeout_ms, 0);
  if (e < 0) {
    if (errmsg[0] == '\0')
      snprintf (errmsg, errlen, "%s: %s", addr, strerror (-e));
    close (fd);
    return e;
  }

  pthread_mutex_lock (&c->lock);
  c->fd = fd;
  c->state = CONN_UP;
  c->gen++;
  c->incarnation = incarnation;
  /* The handshake's answer has just arrived. */
  atomic_store (&c->last_recv_ns, monotonic_ns ());
  pthread_mutex_unlock (&c->lock);
  e = pthread_create (&c->thread, NULL, helper, c);
  if (e != 0) {
    snprintf (errmsg, errlen, "pthread_create: %s", strerror (e));
    pthread_mutex_lock (&c->lock);
    c->fd = -1;
    c->state = CONN_CLOSED;
    pthread_mutex_unlock (&c->lock);
    close (fd);
    return -e;
  }
  c->thread_started = true;
  if (tessera_debug_conn)
    nbdkit_debug ("server %" PRIu32 " conn %u: connected to %s", s->id,
                  c->index, addr);
  return 0;
}

/* Send the whole of IOV (IOVCNT entries, modified) on C's socket FD
 * without raising SIGPIPE.  A full socket waits at most the timeout for
 * room.  Caller holds C->send_lock.  Returns 0 or -errno.
 */
static int
send_all (struct ss_conn *c, int fd, struct iovec *iov, int iovcnt)
{
  ssize_t r;
  int e, ms;

  for (;;) {
    while (iovcnt > 0 && iov->iov_len == 0) {
      iov++;
      iovcnt--;
    }
    if (iovcnt == 0)
      return 0;

    struct msghdr msg = { .msg_iov = iov, .msg_iovlen = iovcnt };

    r = sendmsg (fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (r == -1) {
      if (errno == EINTR)
        continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        return -errno;
      ensure_reader (c);
      ms = step_ms (c->server);
      e = wait_fd (fd, POLLOUT, ms);
      if (e == -ETIMEDOUT && step_cut_short (c->server, ms))
        e = -SS_EOUTOFTIME;
      if (e < 0)
        return e;
      continue;
    }
    while (r > 0) {
      if ((size_t)r >= iov->iov_len) {
        r -= iov->iov_len;
        iov->iov_len = 0;
        iov++;
        iovcnt--;
      }
      else {
        iov->iov_base = (char *)iov->iov_base + r;
        iov->iov_len -= r;
        r = 0;
      }
    }
  }
}

/* Set up BATCH for requests that must each complete within TIMEOUT_MS
 * of the caller starting to wait for them.
 */
void
ss_batch_init (struct ss_batch *b, int timeout_ms)
{
  pthread_condattr_t attr;

  pthread_mutex_init (&b->lock, NULL);
  pthread_condattr_init (&attr);
  pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
  pthread_cond_init (&b->cond, &attr);
  pthread_condattr_destroy (&attr);
  b->pending = 0;
  b->timeout_ms = timeout_ms;
  b->sleeping = false;
  b->handed = NULL;
  b->round_deadline = 0;
  if (request_deadline != 0) {
    uint64_t quarter = monotonic_ns () + (uint64_t)timeout_ms * 250000;

    b->round_deadline = request_deadline > quarter ? request_deadline : quarter;
  }
}

/* Destroy BATCH after ss_batch_wait has returned. */
void
ss_batch_destroy (struct ss_batch *b)
{
  assert (b->pending == 0);
  assert (b->handed == NULL);
  pthread_cond_destroy (&b->cond);
  pthread_mutex_destroy (&b->lock);
}

/* Put up to SEND_FRAMES requests from the front of the list *QUEUE
 * (linked by next, all for C's server) on C's in-flight list and send
 * their frames in one sendmsg.  Caller holds C->send_lock.  Returns 0
 * with them taken off *QUEUE.  On failure, closes C and returns -errno,
 * with the requests that are still the caller's put back on *QUEUE (a
 * reader may have completed the others).
 */
static int
send_lot (struct ss_conn *c, struct ss_request **queue)
{
  uint8_t wire[SEND_FRAMES][PROTO_HEADER_SIZE + PROTO_SEG_IO_SIZE];
  struct ss_request *lot[SEND_FRAMES], *r;
  struct iovec iov[SEND_FRAMES * 2];
  size_t i, k = 0;
  int niov = 0, fd, e;

  pthread_mutex_lock (&c->lock);
  if (c->state != CONN_UP) {
    /* A reader failed it since the caller looked. */
    pthread_mutex_unlock (&c->lock);
    return -ENOTCONN;
  }
  while (*queue != NULL && k < SEND_FRAMES) {
    r = *queue;
    *queue = r->next;
    r->tag = c->next_tag++;
    r->gen = c->gen;
    r->incarnation = c->incarnation;
    r->conn = c;
    r->state = REQ_INFLIGHT;
    r->next = c->inflight;
    c->inflight = r;
    lot[k++] = r;
  }
  fd = c->fd;
  pthread_mutex_unlock (&c->lock);

  for (i = 0; i < k; i++) {
    struct proto_header hdr = {
      .magic = PROTO_MAGIC,
      .version = PROTO_VERSION,
      .opcode = lot[i]->opcode,
      .flags = lot[i]->flags,
      .status = PROTO_OK,
      .tag = lot[i]->tag,
    };

    iov[niov].iov_base = wire[i];
    iov[niov].iov_len = PROTO_HEADER_SIZE;
    if (lot[i]->opcode != PROTO_OP_SEG_FLUSH) {
      proto_encode_seg_io (&lot[i]->io, wire[i] + PROTO_HEADER_SIZE);
      iov[niov].iov_len += PROTO_SEG_IO_SIZE;
      hdr.length = PROTO_SEG_IO_SIZE;
    }
    niov++;
    if (lot[i]->opcode == PROTO_OP_SEG_WRITE) {
      iov[niov].iov_base = lot[i]->data;
      iov[niov].iov_len = lot[i]->io.length;
      hdr.length += lot[i]->io.length;
      niov++;
    }
    proto_header_encode (&hdr, wire[i]);
  }

  e = send_all (c, fd, iov, niov);
  if (e == 0)
    return 0;

  /* A partial frame leaves the stream unusable: close it, failing the
   * other requests in flight on it.
   */
  pthread_mutex_lock (&c->lock);
  for (i = k; i-- > 0;) {
    r = lot[i];
    if (r->state == REQ_INFLIGHT) {
      unlink_request (c, r);
      r->state = REQ_NEW;
      r->conn = NULL;
      r->next = *queue;
      *queue = r;
    }
  }
  pthread_mutex_unlock (&c->lock);
  if (tessera_debug_conn)
    nbdkit_debug ("server %" PRIu32 " conn %u: send: %s", c->server->id,
                  c->index, strerror (-e));
  conn_fail (c);
  return e;
}

/* Send the requests of the list QUEUE (linked by next), all for server S,
 * on one of its sockets.  A request that cannot be sent is completed at
 * once with its error.
 *
 * A socket that has been idle may have been closed by the server (a
 * restart) without anyone having noticed yet: requests that cannot be
 * sent on a socket opened earlier are sent once more on a new one.
 * Every segment request is idempotent, so this is safe.
 */
static void
submit_server (struct ss_server *s, struct ss_request *queue)
{
  struct ss_conn *c;
  char errmsg[SS_ERRMSG_SIZE] = "";
  struct timespec ts;
  bool fresh, cut_short;
  int attempt, state, e, ms;

  c = &s->conns[atomic_fetch_add (&s->rr, 1) % s->nconns];

  /* Another sender may be stuck connecting or sending to S: wait no
   * longer than a step may take.
   */
  ms = connect_ms (s);
  ts = timespec_from_ns (monotonic_ns () + (uint64_t)ms * 1000000);
  if (pthread_mutex_clocklock (&c->send_lock, CLOCK_MONOTONIC, &ts) != 0) {
    if (step_cut_short (s, ms))
      complete_list (queue, -SS_EOUTOFTIME, "out of time waiting to send");
    else
      complete_list (queue, -ETIMEDOUT, "timed out waiting to send");
    return;
  }
  CLEANUP_UNLOCK pthread_mutex_t *locked __attribute__ ((unused)) =
      &c->send_lock;

  for (attempt = 0;; attempt++) {
    pthread_mutex_lock (&c->lock);
    state = c->state;
    pthread_mutex_unlock (&c->lock);
    fresh = state != CONN_UP;
    if (fresh) {
      conn_reset (c);
      cut_short = step_cut_short (s, connect_ms (s));
      e = conn_open (c, errmsg, sizeof errmsg);
      if (cut_short && (e == -ETIMEDOUT || e == -EAGAIN)) {
        snprintf (errmsg, sizeof errmsg, "out of time connecting");
        e = -SS_EOUTOFTIME;
      }
      if (e < 0) {
        /* A restart found, or the request's own deadline, is not a
         * failure of the server.
         */
        if (e != -SS_ERESTARTED && e != -SS_EOUTOFTIME)
          mark_suspect (s);
        complete_list (queue, e, errmsg);
        return;
      }
    }

    while (queue != NULL && (e = send_lot (c, &queue)) == 0)
      ;
    if (queue == NULL)
      return;
    if (e == -SS_EOUTOFTIME) {
      complete_list (queue, e, "out of time sending");
      return;
    }
    if (!fresh && attempt == 0)
      continue;
    mark_suspect (s);
    snprintf (errmsg, sizeof errmsg, "send: %s", strerror (-e));
    complete_list (queue, -EIO, errmsg);
    return;
  }
}

/* Send the N requests at REQS (their "in" fields filled) as part of
 * batch B: the frames for one server go on one of its sockets, together.
 * Never fails itself: a request that cannot be sent is completed at once
 * with its error.  The requests must stay valid until ss_batch_wait
 * returns.
 */
void
ss_submit (struct ss_batch *b, struct ss_request *reqs, size_t n)
{
  struct ss_request *queue, **tail;
  size_t i, j;

  for (i = 0; i < n; i++) {
    reqs[i].batch = b;
    reqs[i].conn = NULL;
    reqs[i].err = 0;
    reqs[i].answered = false;
    reqs[i].hurried = false;
    reqs[i].errmsg[0] = '\0';
    reqs[i].state = REQ_NEW;
    reqs[i].done = false;
    reqs[i].next = NULL;
  }
  pthread_mutex_lock (&b->lock);
  b->pending += n;
  pthread_mutex_unlock (&b->lock);

  for (i = 0; i < n; i++) {
    for (j = 0; j < i; j++)
      if (reqs[j].server == reqs[i].server)
        break;
    if (j < i)
      continue; /* sent with the first request for its server */
    queue = NULL;
    tail = &queue;
    for (j = i; j < n; j++) {
      if (reqs[j].server == reqs[i].server) {
        *tail = &reqs[j];
        tail = &reqs[j].next;
      }
    }
    round_deadline = b->round_deadline;
    submit_server (reqs[i].server, queue);
    round_deadline = 0;
  }
}

/* Take the timed-out request R back from its connection: fail it with
 * ETIMEDOUT if it is still waiting for its reply, or shut the socket
 * down if a reader is reading its reply right now (it then completes R
 * with an error promptly).  A socket that looks stuck, silent for the
 * last half of the timeout that R waited (perhaps mid-frame: a server
 * sends whole frames), is shut down as well: its other requests then
 * fail with EIO now rather than one timeout each, and the next request
 * reconnects.  Unless BLAME (R waited less than a quarter of the
 * timeout: its request ran out of time), R fails with SS_EOUTOFTIME
 * instead and its server is not suspected.
 */
static void
cancel (struct ss_batch *b, struct ss_request *r, bool blame)
{
  struct ss_conn *c = r->conn;
  struct ss_request *failed = NULL;
  bool mine = false, done;
  uint64_t last;

  pthread_mutex_lock (&c->lock);
  if (r->state == REQ_INFLIGHT) {
    unlink_request (c, r);
    r->state = REQ_CANCELLED;
    mine = true;
    last = atomic_load (&c->last_recv_ns);
    if (c->gen == r->gen && c->state == CONN_UP &&
        monotonic_ns () - last >= (uint64_t)c->server->timeout_ms * 500000) {
      if (tessera_debug_conn)
        nbdkit_debug ("server %" PRIu32 " conn %u: stuck, closing it",
                      c->server->id, c->index);
      failed = conn_fail_locked (c);
    }
  }
  else if (r->state == REQ_RECEIVING) {
    pthread_mutex_lock (&b->lock);
    done = r->done;
    pthread_mutex_unlock (&b->lock);
    if (!done && c->gen == r->gen && c->fd >= 0)
      shutdown (c->fd, SHUT_RDWR);
  }
  pthread_mutex_unlock (&c->lock);
  complete_list (failed, -EIO, "connection lost");
  if (blame || failed != NULL)
    mark_suspect (c->server);
  if (mine) {
    if (tessera_debug_conn)
      nbdkit_debug ("server %" PRIu32 " conn %u: tag %" PRIu64 " timed out%s",
                    c->server->id, c->index, r->tag,
                    blame ? "" : " (out of time)");
    if (blame)
      complete (r, -ETIMEDOUT, "timed out");
    else
      complete (r, -SS_EOUTOFTIME, "out of time");
  }
}

/* Whether request R of batch B has completed. */
static bool
is_done (struct ss_batch *b, const struct ss_request *r)
{
  bool done;

  pthread_mutex_lock (&b->lock);
  done = r->done;
  pthread_mutex_unlock (&b->lock);
  return done;
}

/* Bring the set of sockets whose reader role the waiter of B holds
 * (*OWNED, linked by owned_next) up to date with its requests (the N at
 * REQS): take the role of every socket where one of them waits for its
 * reply and nobody reads, give back the role of the sockets where none
 * waits any more.  Past POLL_MAX sockets, roles go to the helpers.
 */
static void
update_roles (struct ss_batch *b, struct ss_request *reqs, size_t n,
              struct ss_conn **owned)
{
  struct ss_conn *c, **pp;
  unsigned nowned = 0;
  size_t i;

  for (c = *owned; c != NULL; c = c->owned_next) {
    c->needed = false;
    nowned++;
  }
  for (i = 0; i < n; i++) {
    struct ss_request *r = &reqs[i];

    c = r->conn;
    if (c == NULL || is_done (b, r))
      continue;
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&c->lock);
    if (r->state != REQ_INFLIGHT)
      continue;
    if (c->reading && c->owner == b)
      c->needed = true;
    else if (!c->reading) {
      c->reading = true;
      if (nowned == POLL_MAX) {
        c->owner = NULL;
        c->helper_turn = true;
        pthread_cond_signal (&c->helper_cond);
        continue;
      }
      c->owner = b;
      c->needed = true;
      c->owned_next = *owned;
      *owned = c;
      nowned++;
    }
  }
  nowned = 0;
  for (pp = owned; (c = *pp) != NULL;) {
    if (c->needed && nowned < POLL_MAX) {
      nowned++;
      pp = &c->owned_next;
      continue;
    }
    *pp = c->owned_next;
    c->owned_next = NULL;
    pthread_mutex_lock (&c->lock);
    if (c->needed) {
      /* Handed over while asleep, one too many to poll. */
      c->owner = NULL;
      c->helper_turn = true;
      pthread_cond_signal (&c->helper_cond);
    }
    else
      pass_role (c);
    pthread_mutex_unlock (&c->lock);
  }
}

/* Wait until one of the sockets at OWNED (whose reader role the caller
 * holds) has something to read, until DEADLINE at most, and dispatch
 * what has arrived.  A socket that fails is closed, failing what was in
 * flight on it.  Returns 0 or -ETIMEDOUT.
 */
static int
read_owned (struct ss_conn *owned, uint64_t deadline)
{
  struct pollfd pfd[POLL_MAX];
  struct ss_conn *cs[POLL_MAX], *c;
  uint64_t now = monotonic_ns (), ms;
  int i, nfds = 0, r, e;

  if (now >= deadline)
    return -ETIMEDOUT;
  ms = (deadline - now + 999999) / 1000000;
  for (c = owned; c != NULL; c = c->owned_next) {
    assert (nfds < POLL_MAX);
    /* FD cannot change while the role is held (conn_reset waits). */
    pfd[nfds].fd = c->fd;
    pfd[nfds].events = POLLIN;
    pfd[nfds].revents = 0;
    cs[nfds++] = c;
  }
  r = poll (pfd, nfds, ms > INT_MAX ? INT_MAX : (int)ms);
  if (r == 0)
    return monotonic_ns () >= deadline ? -ETIMEDOUT : 0;
  if (r < 0)
    return 0; /* EINTR: the caller looks again */
  for (i = 0; i < nfds; i++) {
    if (pfd[i].revents == 0)
      continue;
    e = conn_receive (cs[i], pfd[i].fd);
    if (e < 0) {
      debug_closed (cs[i], e);
      conn_fail (cs[i]);
    }
  }
  return 0;
}

/* Wait, asleep, until B has no request pending, a socket's reader role
 * is handed to its waiter, or DEADLINE (as a timespec in TS).  Returns
 * false if the deadline passed.
 */
static bool
sleep_batch (struct ss_batch *b, const struct timespec *ts)
{
  int e = 0;

  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&b->lock);
  b->sleeping = true;
  while (b->pending > 0 && b->handed == NULL && e != ETIMEDOUT)
    e = pthread_cond_timedwait (&b->cond, &b->lock, ts);
  b->sleeping = false;
  return b->pending == 0 || b->handed != NULL || e != ETIMEDOUT;
}

/* Wait until every request of B (the N requests at REQS) has completed,
 * or B's deadline has passed; then fail the requests still outstanding
 * with ETIMEDOUT.  Requests marked hurry whose server is suspect get a
 * quarter of the timeout only, then fail with ETIMEDOUT while the others
 * are still waited for.  Meanwhile read the replies on every socket carrying
 * one of them that has no other reader.  On return every request's err
 * is final.
 */
void
ss_batch_wait (struct ss_batch *b, struct ss_request *reqs, size_t n)
{
  struct ss_conn *owned = NULL, *c;
  struct timespec ts;
  uint64_t deadline, now, quarter, hurry = 0, until;
  unsigned pending;
  bool timed_out = false, blame;
  size_t i;

  /* The deadline counts from here (sending may have taken a while), cut
   * to the end of the round (within a request) or else not below a
   * quarter of the timeout.  A wait cut below a quarter blames nobody:
   * its requests run out of time (SS_EOUTOFTIME).
   */
  now = monotonic_ns ();
  quarter = now + (uint64_t)b->timeout_ms * 250000;
  deadline = now + (uint64_t)b->timeout_ms * 1000000;
  if (b->round_deadline != 0 && b->round_deadline < deadline)
    deadline = b->round_deadline;
  else if (b->round_deadline == 0) {
    deadline = request_clamp (deadline);
    if (deadline < quarter)
      deadline = quarter;
  }
  blame = deadline >= quarter;
  /* A suspect server gets a quarter of the timeout where the caller
   * allows it: the shortest silence that counts a server failed.
   */
  for (i = 0; i < n; i++) {
    if (reqs[i].hurry && quarter < deadline &&
        ss_server_suspect (reqs[i].server) && !is_done (b, &reqs[i])) {
      reqs[i].hurried = true;
      hurry = quarter;
    }
  }

  for (;;) {
    pthread_mutex_lock (&b->lock);
    while ((c = b->handed) != NULL) {
      b->handed = c->owned_next;
      c->owned_next = owned;
      owned = c;
    }
    pending = b->pending;
    pthread_mutex_unlock (&b->lock);
    if (pending == 0)
      break;
    if (hurry && monotonic_ns () >= hurry) {
      /* Awake, so no socket can be handed over meanwhile. */
      for (i = 0; i < n; i++)
        if (reqs[i].hurried && reqs[i].conn != NULL && !is_done (b, &reqs[i]))
          cancel (b, &reqs[i], true);
      hurry = 0;
      continue;
    }
    until = hurry ? hurry : deadline;
    update_roles (b, reqs, n, &owned);
    if (owned == NULL) {
      ts = timespec_from_ns (until);
      if (!sleep_batch (b, &ts) && until == deadline) {
        timed_out = true;
        break;
      }
    }
    else if (read_owned (owned, until) == -ETIMEDOUT && until == deadline) {
      timed_out = true;
      break;
    }
  }

  if (timed_out) {
    /* No socket can be handed over now: the waiter is awake. */
    pthread_mutex_lock (&b->lock);
    while ((c = b->handed) != NULL) {
      b->handed = c->owned_next;
      c->owned_next = owned;
      owned = c;
    }
    pthread_mutex_unlock (&b->lock);
    for (i = 0; i < n; i++)
      if (reqs[i].conn != NULL && !is_done (b, &reqs[i]))
        cancel (b, &reqs[i], blame);
  }
  while ((c = owned) != NULL) {
    owned = c->owned_next;
    c->owned_next = NULL;
    pthread_mutex_lock (&c->lock);
    pass_role (c);
    pthread_mutex_unlock (&c->lock);
  }
  if (timed_out) {
    /* Requests whose replies another reader is reading. */
    pthread_mutex_lock (&b->lock);
    while (b->pending > 0)
      pthread_cond_wait (&b->cond, &b->lock);
    pthread_mutex_unlock (&b->lock);
  }
}

/* Close every socket of S: fail whatever is in flight, wait for its
 * reader to give the role back, stop its helper, close the fd.
 */
void
ss_server_disconnect (struct ss_server *s)
{
  unsigned i;

  for (i = 0; i < s->nconns; i++) {
    struct ss_conn *c = &s->conns[i];

    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&c->send_lock);
    conn_fail (c);
    conn_reset (c);
  }
}

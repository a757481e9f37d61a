/* nbdkit-tessera-plugin: pipelined connections to storage servers.
 *
 * Each storage server gets up to CONNECTIONS sockets, opened on first use
 * (sock_connect, then HELLO as PROTO_ROLE_PLUGIN).  A socket carries many
 * requests at once: senders write whole frames under the socket's send
 * lock, and one receiver thread per socket reads the replies, which may
 * come back in any order, and hands each to the request with the same
 * tag.  Callers group requests in a batch (struct ss_batch): submit all,
 * then wait for all, bounded by the request timeout.
 *
 * A transport failure fails every request in flight on that socket with
 * EIO and closes it; the next request on it reconnects.  A request that
 * times out fails with ETIMEDOUT; if its reply is being read right then,
 * the socket is shut down so that the receiver gives it back promptly.
 */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
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
#include "frame.h"
#include "full-rw.h"
#include "protocol.h"
#include "parse.h"
#include "sock.h"

#include "internal.h"

/* How long a server that failed at the transport level is skipped. */
#define SUSPECT_MIN_MS 1000
#define SUSPECT_MAX_MS 10000

/* Request states, under the connection's lock. */
enum {
  REQ_NEW,       /* not on a connection */
  REQ_INFLIGHT,  /* sent (or being sent), on conn->inflight */
  REQ_RECEIVING, /* taken by the receiver, which will complete it */
  REQ_CANCELLED, /* taken off by a timed-out waiter */
};

/* Connection states, under the connection's lock. */
enum {
  CONN_CLOSED, /* no socket */
  CONN_UP,     /* socket open, receiver running */
  CONN_BROKEN, /* receiver gave up; join it and reconnect */
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
  pthread_t thread;

  pthread_mutex_t lock; /* protects everything below */
  int fd;
  int state;
  uint64_t gen;      /* incremented by every connect */
  uint64_t next_tag; /* tags below it have been used */
  struct ss_request *inflight;
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

/* Nanoseconds on the monotonic clock. */
static uint64_t
now_ns (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Server S just failed at the transport level (connect, send, timeout):
 * for a while, fail its requests at once instead of making every caller
 * wait for the timeout again.  The replicas it fails are reported, so
 * later requests avoid it anyway.
 */
static void
mark_suspect (struct ss_server *s)
{
  uint64_t ms = s->timeout_ms;

  if (ms < SUSPECT_MIN_MS)
    ms = SUSPECT_MIN_MS;
  if (ms > SUSPECT_MAX_MS)
    ms = SUSPECT_MAX_MS;
  atomic_store (&s->suspect_until, now_ns () + ms * 1000000);
}

/* Create the connection table of a storage server.  ADDR is copied.
 * Returns 0 and *OUT (free with ss_server_free), or -ENOMEM.
 */
int
ss_server_new (uint32_t id, const uint8_t uuid[16], const char *addr,
               unsigned nconns, int timeout_ms, struct ss_server **out)
{
  struct ss_server *s;
  unsigned i;

  assert (nconns > 0);
  *out = NULL;
  s = calloc (1, sizeof *s);
  if (s == NULL)
    return -ENOMEM;
  s->conns = calloc (nconns, sizeof *s->conns);
  if (s->conns == NULL) {
    free (s);
    return -ENOMEM;
  }
  s->id = id;
  memcpy (s->uuid, uuid, 16);
  snprintf (s->addr, sizeof s->addr, "%s", addr);
  pthread_mutex_init (&s->lock, NULL);
  atomic_init (&s->rr, 0);
  atomic_init (&s->suspect_until, 0);
  s->nconns = nconns;
  s->timeout_ms = timeout_ms;
  for (i = 0; i < nconns; i++) {
    struct ss_conn *c = &s->conns[i];

    c->server = s;
    c->index = i;
    pthread_mutex_init (&c->send_lock, NULL);
    pthread_mutex_init (&c->lock, NULL);
    c->fd = -1;
    c->state = CONN_CLOSED;
    c->next_tag = 1;
  }
  *out = s;
  return 0;
}

/* Free S (accepts NULL).  Its connections must be closed already
 * (ss_server_disconnect).
 */
void
ss_server_free (struct ss_server *s)
{
  unsigned i;

  if (s == NULL)
    return;
  for (i = 0; i < s->nconns; i++) {
    assert (s->conns[i].fd == -1);
    assert (!s->conns[i].thread_started);
    assert (s->conns[i].inflight == NULL);
    pthread_mutex_destroy (&s->conns[i].send_lock);
    pthread_mutex_destroy (&s->conns[i].lock);
  }
  pthread_mutex_destroy (&s->lock);
  free (s->conns);
  free (s->dirty);
  free (s);
}

/* Change where S is reached (a newer SERVER_LIST).  Open sockets stay;
 * the next reconnect uses the new address.
 */
void
ss_server_set_address (struct ss_server *s, const char *addr)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&s->lock);
  if (strcmp (s->addr, addr) != 0) {
    if (tessera_debug_conn)
      nbdkit_debug ("server %" PRIu32 ": address %s -> %s", s->id, s->addr,
                    addr);
    snprintf (s->addr, sizeof s->addr, "%s", addr);
  }
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

/* Read and drop N bytes from FD.  Returns 0 or -errno. */
static int
discard (int fd, uint32_t n)
{
  char buf[4096];
  int r;

  while (n > 0) {
    uint32_t k = n < sizeof buf ? n : sizeof buf;

    r = full_read (fd, buf, k);
    if (r < 0)
      return r;
    n -= k;
  }
  return 0;
}

/* Read the payload of the reply HDR into its request R (taken off the
 * in-flight list by the caller) and complete R.  Returns 0, or -errno if
 * the connection must be closed (R has been completed either way).
 */
static int
receive_reply (struct ss_conn *c, int fd, const struct proto_header *hdr,
               struct ss_request *r)
{
  char msg[PROTO_ERRMSG_MAX + 1];
  int e;

  if (hdr->opcode != r->opcode) {
    complete (r, -EIO, "reply to a different opcode");
    return -EBADMSG;
  }
  if (hdr->status != PROTO_OK) {
    if (hdr->length > PROTO_ERRMSG_MAX) {
      complete (r, -EIO, "error message too long");
      return -EBADMSG;
    }
    e = full_read (fd, msg, hdr->length);
    if (e < 0) {
      complete (r, -EIO, "connection lost");
      return e;
    }
    msg[hdr->length] = '\0';
    complete (r, -proto_status_to_errno (hdr->status), msg);
    return 0;
  }
  if (r->opcode == PROTO_OP_SEG_READ) {
    if (hdr->length != r->io.length) {
      complete (r, -EIO, "read reply of the wrong length");
      return -EBADMSG;
    }
    e = full_read (fd, r->data, hdr->length);
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
  return 0;
}

/* Receive and dispatch one reply frame on C.  Returns 0, or -errno when
 * the connection is finished.
 */
static int
receive_one (struct ss_conn *c, int fd)
{
  uint8_t buf[PROTO_HEADER_SIZE];
  struct proto_header hdr;
  struct ss_request *r;
  bool late = false;
  int e;

  e = full_read (fd, buf, sizeof buf);
  if (e < 0)
    return e;
  e = proto_header_decode (buf, &hdr, PROTO_MAX_IO_PAYLOAD);
  if (e < 0)
    return e;
  if (!(hdr.flags & PROTO_FLAG_REPLY) ||
      hdr.length > proto_max_payload (hdr.opcode))
    return -EBADMSG;

  pthread_mutex_lock (&c->lock);
  for (r = c->inflight; r != NULL; r = r->next)
    if (r->tag == hdr.tag)
      break;
  if (r) {
    unlink_request (c, r);
    r->state = REQ_RECEIVING;
  }
  else
    late = hdr.tag > 0 && hdr.tag < c->next_tag;
  pthread_mutex_unlock (&c->lock);

  if (r == NULL) {
    /* The reply to a request that timed out: drop it. */
    if (!late)
      return -EBADMSG;
    if (tessera_debug_conn)
      nbdkit_debug ("server %" PRIu32 ": late reply, tag %" PRIu64,
                    c->server->id, hdr.tag);
    return discard (fd, hdr.length);
  }
  return receive_reply (c, fd, &hdr, r);
}

/* Mark C broken and fail every request in flight on it with EIO. */
static void
fail_inflight (struct ss_conn *c)
{
  struct ss_request *list, *r, *next;

  pthread_mutex_lock (&c->lock);
  c->state = CONN_BROKEN;
  list = c->inflight;
  c->inflight = NULL;
  for (r = list; r != NULL; r = r->next)
    r->state = REQ_RECEIVING;
  pthread_mutex_unlock (&c->lock);

  for (r = list; r != NULL; r = next) {
    next = r->next;
    r->next = NULL;
    complete (r, -EIO, "connection lost");
  }
}

/* Receiver thread of one connection: dispatch replies until the socket
 * fails or is shut down, then fail what is left in flight.
 */
static void *
receiver (void *arg)
{
  struct ss_conn *c = arg;
  int fd, e;

  pthread_mutex_lock (&c->lock);
  fd = c->fd;
  pthread_mutex_unlock (&c->lock);

  while ((e = receive_one (c, fd)) == 0)
    ;
  if (tessera_debug_conn)
    nbdkit_debug ("server %" PRIu32 " conn %u: closed: %s", c->server->id,
                  c->index, e == -EPIPE ? "end of stream" : strerror (-e));
  fail_inflight (c);
  return NULL;
}

/* Run the handshake (HELLO and AUTH, frame.h) on the new socket FD of
 * server S and check that the peer is that storage server.  Returns 0 or
 * -errno, with a message for the user in ERRMSG.
 */
static int
hello (struct ss_server *s, int fd, char *errmsg, size_t errlen)
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
  return 0;
}

/* Join C's finished receiver and close its socket.  Caller holds
 * C->send_lock.
 */
static void
conn_reset (struct ss_conn *c)
{
  int fd;

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
  pthread_mutex_unlock (&c->lock);
  if (fd >= 0)
    close (fd);
}

/* Open C's socket, say HELLO and start its receiver.  Caller holds
 * C->send_lock and C is closed.  Returns 0 or -errno with a message in
 * ERRMSG.
 */
static int
conn_open (struct ss_conn *c, char *errmsg, size_t errlen)
{
  struct ss_server *s = c->server;
  char addr[PROTO_ADDR_MAX + 1];
  int fd, e;

  pthread_mutex_lock (&s->lock);
  memcpy (addr, s->addr, sizeof addr);
  pthread_mutex_unlock (&s->lock);

  fd = proto_connect (addr, s->timeout_ms, errmsg, errlen);
  if (fd < 0)
    return fd;
  /* Replies may be far apart: only the handshake has a receive timeout. */
  e = set_timeouts (fd, s->timeout_ms, s->timeout_ms);
  if (e == 0)
    e = hello (s, fd, errmsg, errlen);
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
  pthread_mutex_unlock (&c->lock);
  e = pthread_create (&c->thread, NULL, receiver, c);
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

/* Send the whole of IOV (IOVCNT entries, modified) on FD without raising
 * SIGPIPE.  Returns 0 or -errno.
 */
static int
send_all (int fd, struct iovec *iov, int iovcnt)
{
  ssize_t r;

  for (;;) {
    while (iovcnt > 0 && iov->iov_len == 0) {
      iov++;
      iovcnt--;
    }
    if (iovcnt == 0)
      return 0;

    struct msghdr msg = { .msg_iov = iov, .msg_iovlen = iovcnt };

    r = sendmsg (fd, &msg, MSG_NOSIGNAL);
    if (r == -1) {
      if (errno == EINTR)
        continue;
      return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
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
}

/* Destroy BATCH after ss_batch_wait has returned. */
void
ss_batch_destroy (struct ss_batch *b)
{
  assert (b->pending == 0);
  pthread_cond_destroy (&b->cond);
  pthread_mutex_destroy (&b->lock);
}

/* Put R on C's in-flight list and send it.  Caller holds C->send_lock
 * and C is up (or was, a moment ago).  Returns 0 once sent.  On failure
 * returns -errno, and *MINE tells whether R is still the caller's to
 * complete (otherwise the receiver has completed it).
 */
static int
send_request (struct ss_conn *c, struct ss_request *r, bool *mine)
{
  uint8_t hbuf[PROTO_HEADER_SIZE], head[PROTO_SEG_IO_SIZE];
  struct iovec iov[3];
  int iovcnt = 1, fd, e;
  uint32_t len = 0;

  *mine = true;
  if (r->opcode != PROTO_OP_SEG_FLUSH) {
    proto_encode_seg_io (&r->io, head);
    iov[1].iov_base = head;
    iov[1].iov_len = PROTO_SEG_IO_SIZE;
    len = PROTO_SEG_IO_SIZE;
    iovcnt = 2;
    if (r->opcode == PROTO_OP_SEG_WRITE) {
      iov[2].iov_base = r->data;
      iov[2].iov_len = r->io.length;
      len += r->io.length;
      iovcnt = 3;
    }
  }

  pthread_mutex_lock (&c->lock);
  if (c->state != CONN_UP) {
    /* The receiver failed since the caller looked. */
    pthread_mutex_unlock (&c->lock);
    return -ENOTCONN;
  }
  r->tag = c->next_tag++;
  r->gen = c->gen;
  r->conn = c;
  r->state = REQ_INFLIGHT;
  r->next = c->inflight;
  c->inflight = r;
  fd = c->fd;
  pthread_mutex_unlock (&c->lock);

  struct proto_header hdr = {
    .magic = PROTO_MAGIC,
    .version = PROTO_VERSION,
    .opcode = r->opcode,
    .flags = r->flags,
    .status = PROTO_OK,
    .length = len,
    .tag = r->tag,
  };
  proto_header_encode (&hdr, hbuf);
  iov[0].iov_base = hbuf;
  iov[0].iov_len = PROTO_HEADER_SIZE;

  e = send_all (fd, iov, iovcnt);
  if (e == 0)
    return 0;

  /* A partial frame leaves the stream unusable: close it.  The receiver
   * then fails everything else in flight.
   */
  pthread_mutex_lock (&c->lock);
  *mine = r->state == REQ_INFLIGHT;
  if (*mine) {
    unlink_request (c, r);
    r->state = REQ_NEW;
    r->conn = NULL;
  }
  shutdown (fd, SHUT_RDWR);
  pthread_mutex_unlock (&c->lock);
  if (tessera_debug_conn)
    nbdkit_debug ("server %" PRIu32 " conn %u: send: %s", c->server->id,
                  c->index, strerror (-e));
  return e;
}

/* Send R (its "in" fields filled) to R->server as part of batch B.  Never
 * fails itself: a request that cannot be sent is completed at once with
 * its error.  R must stay valid until ss_batch_wait returns.
 *
 * A socket that has been idle may have been closed by the server (a
 * restart) without the receiver having noticed yet: a request that
 * cannot be sent on a socket opened earlier is sent once more on a new
 * one.  Every segment request is idempotent, so this is safe.
 */
void
ss_submit (struct ss_batch *b, struct ss_request *r)
{
  struct ss_server *s = r->server;
  struct ss_conn *c;
  char errmsg[sizeof r->errmsg] = "";
  bool fresh, mine;
  int attempt, state, e;

  r->batch = b;
  r->conn = NULL;
  r->err = 0;
  r->errmsg[0] = '\0';
  r->state = REQ_NEW;
  r->done = false;
  r->next = NULL;
  pthread_mutex_lock (&b->lock);
  b->pending++;
  pthread_mutex_unlock (&b->lock);

  if (now_ns () < atomic_load (&s->suspect_until)) {
    complete (r, -EIO, "unreachable (failed recently)");
    return;
  }
  c = &s->conns[atomic_fetch_add (&s->rr, 1) % s->nconns];

  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&c->send_lock);
  for (attempt = 0;; attempt++) {
    pthread_mutex_lock (&c->lock);
    state = c->state;
    pthread_mutex_unlock (&c->lock);
    fresh = state != CONN_UP;
    if (fresh) {
      conn_reset (c);
      e = conn_open (c, errmsg, sizeof errmsg);
      if (e < 0) {
        mark_suspect (s);
        complete (r, e, errmsg);
        return;
      }
    }

    e = send_request (c, r, &mine);
    if (e == 0 || !mine)
      return;
    if (!fresh && attempt == 0)
      continue;
    mark_suspect (s);
    snprintf (errmsg, sizeof errmsg, "send: %s", strerror (-e));
    complete (r, -EIO, errmsg);
    return;
  }
}

/* Take the timed-out request R back from its connection: fail it with
 * ETIMEDOUT if it is still waiting for its reply, or shut the socket
 * down if the receiver is reading its reply right now (it then completes
 * R with an error promptly).
 */
static void
cancel (struct ss_batch *b, struct ss_request *r)
{
  struct ss_conn *c = r->conn;
  bool mine = false, done;

  pthread_mutex_lock (&c->lock);
  if (r->state == REQ_INFLIGHT) {
    unlink_request (c, r);
    r->state = REQ_CANCELLED;
    mine = true;
  }
  else if (r->state == REQ_RECEIVING) {
    pthread_mutex_lock (&b->lock);
    done = r->done;
    pthread_mutex_unlock (&b->lock);
    if (!done && c->gen == r->gen && c->fd >= 0)
      shutdown (c->fd, SHUT_RDWR);
  }
  pthread_mutex_unlock (&c->lock);
  mark_suspect (c->server);
  if (mine) {
    if (tessera_debug_conn)
      nbdkit_debug ("server %" PRIu32 " conn %u: tag %" PRIu64 " timed out",
                    c->server->id, c->index, r->tag);
    complete (r, -ETIMEDOUT, "timed out");
  }
}

/* Wait until every request of B (the N requests at REQS) has completed,
 * or B's deadline has passed; then fail the requests still outstanding
 * with ETIMEDOUT.  On return every request's err is final.
 */
void
ss_batch_wait (struct ss_batch *b, struct ss_request *reqs, size_t n)
{
  struct timespec deadline;
  size_t i;
  int e = 0;

  /* The deadline counts from here: sending may have taken a while. */
  clock_gettime (CLOCK_MONOTONIC, &deadline);
  deadline.tv_sec += b->timeout_ms / 1000;
  deadline.tv_nsec += (long)(b->timeout_ms % 1000) * 1000000;
  if (deadline.tv_nsec >= 1000000000) {
    deadline.tv_sec++;
    deadline.tv_nsec -= 1000000000;
  }

  pthread_mutex_lock (&b->lock);
  while (b->pending > 0 && e != ETIMEDOUT)
    e = pthread_cond_timedwait (&b->cond, &b->lock, &deadline);
  pthread_mutex_unlock (&b->lock);
  if (e != ETIMEDOUT)
    return;

  for (i = 0; i < n; i++) {
    bool done;

    pthread_mutex_lock (&b->lock);
    done = reqs[i].done;
    pthread_mutex_unlock (&b->lock);
    if (!done && reqs[i].conn != NULL)
      cancel (b, &reqs[i]);
  }

  pthread_mutex_lock (&b->lock);
  while (b->pending > 0)
    pthread_cond_wait (&b->cond, &b->lock);
  pthread_mutex_unlock (&b->lock);
}

/* Close every socket of S: shut each down so that its receiver fails
 * whatever is in flight and exits, join it, close the fd.
 */
void
ss_server_disconnect (struct ss_server *s)
{
  unsigned i;

  for (i = 0; i < s->nconns; i++) {
    struct ss_conn *c = &s->conns[i];

    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&c->send_lock);
    pthread_mutex_lock (&c->lock);
    if (c->fd >= 0)
      shutdown (c->fd, SHUT_RDWR);
    pthread_mutex_unlock (&c->lock);
    conn_reset (c);
  }
}

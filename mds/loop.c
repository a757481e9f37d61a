/* The accept thread and one thread per connection.
 *
 * Sockets are blocking.  A connection thread reads one frame, runs its
 * handler with mds->lock held (but SEG_RESYNC's, which waits for copies
 * and takes the lock itself), releases the lock and sends the reply.  A
 * malformed frame or payload gets an error reply, then the connection is
 * closed; other connections are not affected.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "cleanup.h"
#include "frame.h"
#include "log.h"
#include "sock.h"

#include "internal.h"

/* A peer that does not read its replies for this long is dropped. */
#define SEND_TIMEOUT_SECONDS 30
/* Once a frame has started, each further read of it must complete
 * within this time, else the connection is dropped (a truncated frame).
 * Idle time between frames is not limited.
 */
#define FRAME_TIMEOUT_SECONDS 5

/* Fill REP with error STATUS and a message.  Returns 0 so that handlers
 * can "return mds_reply_error (...)" and keep the connection.
 */
int
mds_reply_error (struct mds_reply *rep, uint32_t status, const char *fmt, ...)
{
  va_list ap;

  rep->status = status;
  va_start (ap, fmt);
  vsnprintf (rep->msg, sizeof rep->msg, fmt, ap);
  va_end (ap);
  return 0;
}

/* Like mds_reply_error, with the status mapped from ERR (a negative
 * errno).  Returns 0.
 */
int
mds_reply_errno (struct mds_reply *rep, int err, const char *fmt, ...)
{
  va_list ap;

  rep->status = proto_status_from_errno (-err);
  va_start (ap, fmt);
  vsnprintf (rep->msg, sizeof rep->msg, fmt, ap);
  va_end (ap);
  return 0;
}

/* A decoder of request WHAT failed with ERR.  Malformed payloads close
 * the connection (returns -EBADMSG); running out of memory does not
 * (returns 0).
 */
int
mds_reply_bad (struct mds_reply *rep, int err, const char *what)
{
  if (err == -ENOMEM) {
    log_error ("%s: out of memory", what);
    return mds_reply_error (rep, PROTO_ENOMEM, "%s: out of memory", what);
  }
  mds_reply_error (rep, PROTO_EBADMSG, "%s: malformed request", what);
  return -EBADMSG;
}

/* The handler of OPCODE, or NULL if the MDS does not serve it (HELLO is
 * handled by the connection itself).
 */
static mds_handler
handler_for (uint8_t opcode)
{
  switch (opcode) {
  case PROTO_OP_STATUS:
    return mds_op_status;
  case PROTO_OP_SERVER_REGISTER:
    return mds_op_server_register;
  case PROTO_OP_SERVER_HEARTBEAT:
    return mds_op_server_heartbeat;
  case PROTO_OP_SERVER_LIST:
    return mds_op_server_list;
  case PROTO_OP_SERVER_DRAIN:
    return mds_op_server_drain;
  case PROTO_OP_SERVER_REMOVE:
    return mds_op_server_remove;
  case PROTO_OP_REPAIR:
    return mds_op_repair;
  case PROTO_OP_VOL_CREATE:
    return mds_op_vol_create;
  case PROTO_OP_VOL_LIST:
    return mds_op_vol_list;
  case PROTO_OP_VOL_INFO:
    return mds_op_vol_info;
  case PROTO_OP_VOL_RESIZE:
    return mds_op_vol_resize;
  case PROTO_OP_VOL_DELETE:
    return mds_op_vol_delete;
  case PROTO_OP_VOL_OPEN:
    return mds_op_vol_open;
  case PROTO_OP_VOL_CLOSE:
    return mds_op_vol_close;
  case PROTO_OP_LEASE_RENEW:
    return mds_op_lease_renew;
  case PROTO_OP_EPOCH_NEXT:
    return mds_op_epoch_next;
  case PROTO_OP_EPOCH_CLEAN:
    return mds_op_epoch_clean;
  case PROTO_OP_MAP_GET:
    return mds_op_map_get;
  case PROTO_OP_MAP_ALLOC:
    return mds_op_map_alloc;
  case PROTO_OP_REPLICA_FAILED:
    return mds_op_replica_failed;
  case PROTO_OP_SEG_RESYNC:
    return mds_op_seg_resync;
  default:
    return NULL;
  }
}

/* HELLO: check the version, remember the peer's role, answer with the
 * MDS role and the cluster uuid.  Runs without the lock (the cluster
 * record is read-only while serving).
 */
static int
do_hello (struct mds *mds, struct mds_conn *conn, const void *payload,
          uint32_t len, struct mds_reply *rep)
{
  struct proto_hello hello, reply;
  int r;

  r = proto_decode_hello (payload, len, &hello);
  if (r < 0)
    return mds_reply_bad (rep, r, "HELLO");
  if (conn->hello_done) {
    mds_reply_error (rep, PROTO_EPROTO, "HELLO: sent twice");
    return -EPROTO;
  }
  if (hello.version != PROTO_VERSION) {
    mds_reply_error (rep, PROTO_EPROTO,
                     "HELLO: protocol version %" PRIu32
                     " not supported (the MDS speaks %d)",
                     hello.version, PROTO_VERSION);
    return -EPROTO;
  }
  /* Authentication (auth_len > 0) is not implemented yet: ignored. */
  conn->hello_done = true;
  conn->role = hello.role;
  log_debug ("%s: hello from a %s", conn->peer, proto_role_name (hello.role));

  memset (&reply, 0, sizeof reply);
  reply.version = PROTO_VERSION;
  reply.role = PROTO_ROLE_MDS;
  memcpy (reply.uuid, mds->cluster.uuid, sizeof reply.uuid);
  proto_encode_hello (&reply, &rep->wb);
  return 0;
}

/* Send REP as the reply to the request HDR.  Returns 0 or -errno. */
static int
send_reply (struct mds_conn *conn, const struct proto_header *hdr,
            struct mds_reply *rep)
{
  if (rep->status == PROTO_OK && rep->wb.err) {
    log_error ("%s: %s: cannot encode the reply: %s", conn->peer,
               proto_opcode_name (hdr->opcode), strerror (-rep->wb.err));
    mds_reply_errno (rep, rep->wb.err == -EMSGSIZE ? -EFBIG : rep->wb.err,
                     "%s: reply too large", proto_opcode_name (hdr->opcode));
  }
  if (rep->status == PROTO_OK)
    return proto_send_frame (conn->fd, hdr->opcode, PROTO_FLAG_REPLY, PROTO_OK,
                             hdr->tag, rep->wb.data, rep->wb.len);
  return proto_send_error (conn->fd, hdr->opcode, hdr->tag, rep->status, "%s",
                           rep->msg);
}

/* Why a frame header was refused, for the error message. */
static const char *
header_error (int err)
{
  switch (err) {
  case -EBADMSG:
    return "bad magic, opcode, flags or status";
  case -EPROTO:
    return "unsupported protocol version";
  case -EMSGSIZE:
    return "payload too large";
  default:
    return strerror (-err);
  }
}

/* Check and run one request.  Fills REP; returns 0 to go on, or a
 * negative errno to close the connection once REP is sent.
 */
static int
dispatch (struct mds *mds, struct mds_conn *conn,
          const struct proto_header *hdr, const void *payload,
          struct mds_reply *rep)
{
  mds_handler fn;
  int r;

  if (hdr->flags & PROTO_FLAG_REPLY) {
    mds_reply_error (rep, PROTO_EPROTO, "%s: unexpected reply frame",
                     proto_opcode_name (hdr->opcode));
    return -EPROTO;
  }
  if (hdr->opcode == PROTO_OP_HELLO)
    return do_hello (mds, conn, payload, hdr->length, rep);
  if (!conn->hello_done) {
    mds_reply_error (rep, PROTO_EPROTO, "%s: HELLO expected first",
                     proto_opcode_name (hdr->opcode));
    return -EPROTO;
  }
  fn = handler_for (hdr->opcode);
  if (fn == NULL)
    return mds_reply_error (rep, PROTO_ENOTSUP, "%s: not served by the MDS",
                            proto_opcode_name (hdr->opcode));
  if (hdr->flags != 0)
    return mds_reply_error (rep, PROTO_EINVAL,
                            "%s: flags 0x%" PRIx16 " not valid here",
                            proto_opcode_name (hdr->opcode), hdr->flags);

  /* SEG_RESYNC waits for copies: it takes the lock itself in between. */
  if (hdr->opcode == PROTO_OP_SEG_RESYNC)
    return fn (mds, conn, payload, hdr->length, rep);
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
  r = fn (mds, conn, payload, hdr->length, rep);
  return r;
}

/* Serve one frame of CONN.  Returns 0 to go on, -1 to close. */
static int
serve_one (struct mds *mds, struct mds_conn *conn)
{
  struct proto_header hdr;
  CLEANUP_FREE void *payload = NULL;
  struct mds_reply rep;
  struct pollfd pfd = { .fd = conn->fd, .events = POLLIN };
  int r, s;

  /* Wait without limit for a frame to start; SO_RCVTIMEO then bounds
   * the reads of the frame itself.
   */
  while ((r = poll (&pfd, 1, -1)) == -1 && errno == EINTR)
    ;
  if (r == -1) {
    log_error ("%s: poll: %m", conn->peer);
    return -1;
  }
  r = proto_recv_frame (conn->fd, PROTO_MAX_META_PAYLOAD, &hdr, &payload);
  if (r == -EBADMSG || r == -EPROTO || r == -EMSGSIZE) {
    log_warn ("%s: bad frame (opcode %u, length %" PRIu32 "): %s", conn->peer,
              hdr.opcode, hdr.length, header_error (r));
    /* An oversized frame is malformed too (EMSGSIZE maps to EINVAL). */
    proto_send_error (conn->fd, hdr.opcode, hdr.tag,
                      proto_status_from_errno (r == -EMSGSIZE ? EBADMSG : -r),
                      "bad frame: %s", header_error (r));
    return -1;
  }
  if (r == -EAGAIN || r == -EWOULDBLOCK) {
    log_warn ("%s: truncated frame: nothing more for %d seconds", conn->peer,
              FRAME_TIMEOUT_SECONDS);
    return -1;
  }
  if (r < 0) {
    if (r != -EPIPE)
      log_debug ("%s: receive: %s", conn->peer, strerror (-r));
    return -1;
  }

  memset (&rep, 0, sizeof rep);
  rep.status = PROTO_OK;
  r = dispatch (mds, conn, &hdr, payload, &rep);
  if (mds->debug_requests)
    log_msg (LOG_LEVEL_DEBUG, "%s: %s tag %" PRIu64 ": %s%s%s", conn->peer,
             proto_opcode_name (hdr.opcode), hdr.tag,
             proto_status_name (rep.status), rep.status ? ": " : "",
             rep.status ? rep.msg : "");
  s = send_reply (conn, &hdr, &rep);
  proto_wbuf_free (&rep.wb);
  if (r < 0) {
    log_warn ("%s: closing: %s", conn->peer, rep.msg);
    return -1;
  }
  if (s < 0) {
    log_debug ("%s: send: %s", conn->peer, strerror (-s));
    return -1;
  }
  return 0;
}

/* Unlink CONN, close it and free it. */
static void
conn_free (struct mds *mds, struct mds_conn *conn)
{
  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
    if (conn->prev)
      conn->prev->next = conn->next;
    else
      mds->conns = conn->next;
    if (conn->next)
      conn->next->prev = conn->prev;
    if (--mds->nconns == 0)
      pthread_cond_broadcast (&mds->conns_done);
  }
  close (conn->fd);
  free (conn);
}

/* A connection thread: serve frames until the peer goes away. */
static void *
conn_thread (void *arg)
{
  struct mds_conn *conn = arg;
  struct mds *mds = conn->mds;

  log_set_thread_name ("conn");
  log_debug ("%s: connected", conn->peer);
  while (serve_one (mds, conn) == 0)
    ;
  log_debug ("%s: disconnected", conn->peer);
  conn_free (mds, conn);
  return NULL;
}

/* Take accepted socket FD: start its thread, or refuse it when stopping
 * or when too many connections are open.  FD is always consumed.
 */
static void
conn_start (struct mds *mds, int fd)
{
  struct timeval snd = { .tv_sec = SEND_TIMEOUT_SECONDS };
  struct timeval rcv = { .tv_sec = FRAME_TIMEOUT_SECONDS };
  struct mds_conn *conn;
  pthread_attr_t attr;
  int r;

  /* A peer that stops reading or sends half a frame must not hold a
   * thread forever.
   */
  setsockopt (fd, SOL_SOCKET, SO_SNDTIMEO, &snd, sizeof snd);
  setsockopt (fd, SOL_SOCKET, SO_RCVTIMEO, &rcv, sizeof rcv);
  conn = calloc (1, sizeof *conn);
  if (conn == NULL) {
    log_error ("accept: out of memory");
    close (fd);
    return;
  }
  conn->mds = mds;
  conn->fd = fd;
  sock_peer_address (fd, conn->peer, sizeof conn->peer);
  /* Unix peers have no address: number them to tell them apart. */
  if (strcmp (conn->peer, "unix") == 0)
    snprintf (conn->peer, sizeof conn->peer, "unix#%" PRIu64,
              ++mds->conn_count);

  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
    if (mds->stopping || mds->nconns >= MDS_MAX_CONNS) {
      r = -EAGAIN;
    }
    else {
      conn->next = mds->conns;
      if (mds->conns)
        mds->conns->prev = conn;
      mds->conns = conn;
      mds->nconns++;
      r = 0;
    }
  }
  if (r < 0) {
    log_warn ("%s: refused: too many connections", conn->peer);
    proto_send_error (fd, PROTO_OP_HELLO, 0, PROTO_EAGAIN,
                      "too many connections");
    close (fd);
    free (conn);
    return;
  }

  pthread_attr_init (&attr);
  pthread_attr_setdetachstate (&attr, PTHREAD_CREATE_DETACHED);
  r = pthread_create (&(pthread_t){ 0 }, &attr, conn_thread, conn);
  pthread_attr_destroy (&attr);
  if (r != 0) {
    log_error ("%s: cannot start a thread: %s", conn->peer, strerror (r));
    conn_free (mds, conn);
  }
}

/* The accept thread: runs until mds_serve_stop shuts the socket down. */
static void *
accept_loop (void *arg)
{
  struct mds *mds = arg;

  log_set_thread_name ("accept");
  for (;;) {
    int fd = accept4 (mds->listen_fd, NULL, NULL, SOCK_CLOEXEC);

    if (fd >= 0) {
      conn_start (mds, fd);
      continue;
    }
    {
      ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
      if (mds->stopping)
        break;
    }
    switch (errno) {
    case EINTR:
    case EAGAIN:
    case ECONNABORTED:
    case EPROTO:
      continue;
    default:
      /* Out of fds or memory: wait for some to be released. */
      log_error ("accept: %m");
      nanosleep (&(struct timespec){ .tv_nsec = 100000000 }, NULL);
    }
  }
  return NULL;
}

/* Start serving mds->listen_fd.  Returns 0 or -errno. */
int
mds_serve_start (struct mds *mds)
{
  int r = pthread_create (&mds->accept_thread, NULL, accept_loop, mds);

  return -r;
}

/* Stop accepting, disconnect every client and wait up to TIMEOUT_MS for
 * their threads to finish.  Returns 0, or -ETIMEDOUT if some are still
 * running (the catalog must then stay open).
 */
int
mds_serve_stop (struct mds *mds, int timeout_ms)
{
  struct mds_conn *c;
  struct timespec deadline;

  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
    mds->stopping = true;
    for (c = mds->conns; c; c = c->next)
      shutdown (c->fd, SHUT_RDWR);
  }
  shutdown (mds->listen_fd, SHUT_RDWR);
  pthread_join (mds->accept_thread, NULL);

  clock_gettime (CLOCK_MONOTONIC, &deadline);
  deadline.tv_sec += timeout_ms / 1000;
  deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
  if (deadline.tv_nsec >= 1000000000) {
    deadline.tv_sec++;
    deadline.tv_nsec -= 1000000000;
  }
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
  while (mds->nconns > 0)
    if (pthread_cond_timedwait (&mds->conns_done, &mds->lock, &deadline) ==
        ETIMEDOUT)
      break;
  if (mds->nconns > 0) {
    log_warn ("shutdown: %zu connections still busy", mds->nconns);
    return -ETIMEDOUT;
  }
  return 0;
}

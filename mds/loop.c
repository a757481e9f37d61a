/* The accept thread, which also holds connections until they
 * authenticate, and one thread per authenticated connection.
 *
 * Before authentication a connection costs a constant small amount of
 * memory and no thread: the accept thread keeps it in a fixed table
 * (mds->max_unauth slots, allocated at start) and reads its HELLO and
 * AUTH frames with poll(2) on non-blocking sockets, at most
 * PROTO_MAX_PREAUTH_PAYLOAD bytes each.  A connection that has not
 * authenticated within mds->handshake_timeout_ms is closed; when the
 * table is full the oldest one is dropped to admit the newest, so idle
 * sockets can delay a real client but not lock it out.
 *
 * Once AUTH succeeds the connection gets its own thread (a small stack)
 * and a blocking socket.  That thread reads one frame, runs its handler
 * with mds->lock held (but SEG_RESYNC's, which waits for copies, and
 * CATALOG_BACKUP's, which copies the catalog: they take the lock
 * themselves), releases the lock and sends the reply: one request
 * in flight per connection.  A malformed frame or payload gets an error
 * reply, then the connection is closed; other connections are not
 * affected.
 */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
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

#include "auth.h"
#include "buf.h"
#include "cleanup.h"
#include "deadline.h"
#include "frame.h"
#include "log.h"
#include "sock.h"
#include "static-assert.h"
#include "tls.h"

#include "internal.h"

/* A peer that does not read its replies for this long is dropped. */
#define SEND_TIMEOUT_SECONDS 30
/* Once a frame has started, each further read of it must complete
 * within this time, else the connection is dropped (a truncated frame).
 * Idle time between frames is not limited.
 */
#define FRAME_TIMEOUT_SECONDS 5
/* Stack of a connection thread: handlers keep their frames well under
 * -Wstack-usage's 10000 bytes, and LMDB and libc add little.
 * AddressSanitizer's red zones make frames larger.
 */
#ifdef __SANITIZE_ADDRESS__
#define CONN_STACK_SIZE (1024 * 1024)
#else
#define CONN_STACK_SIZE (256 * 1024)
#endif
/* Connections accepted in a row before the waiting handshakes are
 * served again.
 */
#define ACCEPT_BATCH 64
/* After accept fails for want of fds or memory, wait this long. */
#define ACCEPT_PAUSE_NS UINT64_C (100000000)
/* Drops of unauthenticated connections are warned about at most this
 * often (each is logged at debug level).
 */
#define DROP_WARN_INTERVAL_NS UINT64_C (10000000000)

/* How dispatch runs an opcode's handler. */
enum mds_op_kind {
  MDS_OP_LOCKED,    /* with mds->lock held */
  MDS_OP_UNLOCKED,  /* takes the lock itself (SEG_RESYNC waits for copies,
                       CATALOG_BACKUP copies the catalog, STATUS asks
                       etcd's members) */
  MDS_OP_HANDSHAKE, /* HELLO, AUTH: answered before the connection got its
                       thread; sent again, a protocol violation */
};

/* An opcode's entry in the MDS's dispatch table. */
struct mds_op {
  mds_handler fn;
  enum mds_op_kind kind;
};

/* The opcodes the MDS serves: OP (NAME, handler, kind).  Checked below
 * against opcodes.def at build time.
 */
/* clang-format off */
#define MDS_OPS(OP)                                                  \
  OP (HELLO,            NULL,                    MDS_OP_HANDSHAKE)  \
  OP (AUTH,             NULL,                    MDS_OP_HANDSHAKE)  \
  OP (STATUS,           mds_op_status,           MDS_OP_UNLOCKED)   \
  OP (SERVER_REGISTER,  mds_op_server_register,  MDS_OP_LOCKED)     \
  OP (SERVER_HEARTBEAT, mds_op_server_heartbeat, MDS_OP_LOCKED)     \
  OP (SERVER_LIST,      mds_op_server_list,      MDS_OP_LOCKED)     \
  OP (SERVER_DRAIN,     mds_op_server_drain,     MDS_OP_LOCKED)     \
  OP (SERVER_REMOVE,    mds_op_server_remove,    MDS_OP_LOCKED)     \
  OP (CATALOG_BACKUP,   mds_op_catalog_backup,   MDS_OP_UNLOCKED)   \
  OP (REPL_PULL,        mds_op_repl_pull,        MDS_OP_UNLOCKED)   \
  OP (REPAIR,           mds_op_repair,           MDS_OP_LOCKED)     \
  OP (VOL_CREATE,       mds_op_vol_create,       MDS_OP_LOCKED)     \
  OP (VOL_LIST,         mds_op_vol_list,         MDS_OP_LOCKED)     \
  OP (VOL_INFO,         mds_op_vol_info,         MDS_OP_LOCKED)     \
  OP (VOL_RESIZE,       mds_op_vol_resize,       MDS_OP_LOCKED)     \
  OP (VOL_DELETE,       mds_op_vol_delete,       MDS_OP_LOCKED)     \
  OP (VOL_OPEN,         mds_op_vol_open,         MDS_OP_LOCKED)     \
  OP (VOL_CLOSE,        mds_op_vol_close,        MDS_OP_LOCKED)     \
  OP (LEASE_RENEW,      mds_op_lease_renew,      MDS_OP_LOCKED)     \
  OP (EPOCH_NEXT,       mds_op_epoch_next,       MDS_OP_LOCKED)     \
  OP (EPOCH_CLEAN,      mds_op_epoch_clean,      MDS_OP_LOCKED)     \
  OP (MAP_GET,          mds_op_map_get,          MDS_OP_LOCKED)     \
  OP (MAP_ALLOC,        mds_op_map_alloc,        MDS_OP_LOCKED)     \
  OP (REPLICA_FAILED,   mds_op_replica_failed,   MDS_OP_LOCKED)     \
  OP (MAP_RAISE_GEN,    mds_op_map_raise_gen,    MDS_OP_UNLOCKED)   \
  OP (SEG_RESYNC,       mds_op_seg_resync,       MDS_OP_UNLOCKED)

/* Indexed by opcode; an opcode the MDS does not serve has no FN. */
static const struct mds_op mds_ops[256] = {
#define OP(name, fn, kind) [PROTO_OP_##name] = { fn, kind },
  MDS_OPS (OP)
#undef OP
};

/* MDS_OPS matches opcodes.def: each opcode in it is one opcodes.def says
 * the MDS serves, none is there twice (MDS_HANDLES_NAME would be defined
 * twice), and it has as many as opcodes.def gives the MDS, so none is
 * missing.
 */
#define OP(name, fn, kind)                                               \
  STATIC_ASSERT (PROTO_SERVED_BY_##name & PROTO_BY_MDS,                 \
                 name##_is_not_served_by_the_mds_in_opcodes_def);
MDS_OPS (OP)
#undef OP
enum {
#define OP(name, fn, kind) MDS_HANDLES_##name,
  MDS_OPS (OP)
#undef OP
  MDS_NR_OPS
};
STATIC_ASSERT ((int)MDS_NR_OPS == (int)PROTO_NR_OPS_MDS,
               an_opcode_opcodes_def_gives_the_mds_has_no_handler);
/* clang-format on */

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
  const struct mds_op *op = &mds_ops[hdr->opcode];
  int r;

  if (hdr->flags & PROTO_FLAG_REPLY) {
    mds_reply_error (rep, PROTO_EPROTO, "%s: unexpected reply frame",
                     proto_opcode_name (hdr->opcode));
    return -EPROTO;
  }
  if (op->kind == MDS_OP_HANDSHAKE) {
    mds_reply_error (rep, PROTO_EPROTO, "%s: sent twice",
                     proto_opcode_name (hdr->opcode));
    return -EPROTO;
  }
  if (op->fn == NULL)
    return mds_reply_error (rep, PROTO_ENOTSUP, "%s: not served by the MDS",
                            proto_opcode_name (hdr->opcode));
  if (hdr->flags != 0)
    return mds_reply_error (rep, PROTO_EINVAL,
                            "%s: flags 0x%" PRIx16 " not valid here",
                            proto_opcode_name (hdr->opcode), hdr->flags);

  if (!mds_ha_serving (mds)) {
    char leader[PROTO_ADDR_MAX + 1];

    mds_ha_leader (mds, leader, sizeof leader);
    if (leader[0])
      return mds_reply_error (rep, PROTO_ENOTLEADER, PROTO_NOT_LEADER_AT "%s",
                              leader);
    return mds_reply_error (rep, PROTO_ENOTLEADER, "%s",
                            PROTO_NOT_LEADER_UNKNOWN);
  }
  if (op->kind == MDS_OP_UNLOCKED)
    return op->fn (mds, conn, payload, hdr->length, rep);
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
  r = op->fn (mds, conn, payload, hdr->length, rep);
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
  /* Nothing is said that rests on a change the synchronous standby
   * lacks (repl.c).  But for what standbys read: a REPL_PULL reply
   * carries the very changes the standby acknowledges with its next
   * pull (waiting for that would wait for itself until --sync-timeout),
   * and a snapshot (CATALOG_BACKUP) is a copy no one acts on as the
   * leader's word: a standby that takes one is bootstrapped anew by
   * every new leader.
   */
  if (hdr.opcode != PROTO_OP_REPL_PULL && hdr.opcode != PROTO_OP_CATALOG_BACKUP)
    mds_repl_barrier (mds);
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
  mds_backup_conn_closed (mds, conn);
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
  while (serve_one (mds, conn) == 0)
    ;
  log_debug ("%s: disconnected", conn->peer);
  conn_free (mds, conn);
  return NULL;
}

/* A connection that has not authenticated yet: a slot of the accept
 * thread's table, touched by that thread only.  Its size is constant:
 * one frame of at most PROTO_MAX_PREAUTH_PAYLOAD bytes, the handshake's
 * state and the peer's address.
 */
struct pending {
  int fd;                  /* non-blocking; -1: a free slot */
  bool hello_done;         /* HELLO answered: AUTH expected */
  uint32_t role;           /* the peer's HELLO role */
  uint64_t seq;            /* accept order: the smallest is the oldest */
  uint64_t deadline_ns;    /* CLOCK_MONOTONIC: closed unless authenticated */
  uint32_t have;           /* bytes of the current frame in BUF */
  struct proto_header hdr; /* decoded once HAVE reaches the header size */
  struct auth_server auth;
  char peer[PROTO_ADDR_MAX + 1];
  uint8_t buf[PROTO_HEADER_SIZE + PROTO_MAX_PREAUTH_PAYLOAD];
};

/* The accept thread's state, allocated by mds_serve_start and freed by
 * the thread when it ends.
 */
struct acceptor {
  struct mds *mds;
  struct pending *slots; /* mds->max_unauth */
  struct pollfd *pfds;   /* the listening socket, then one per slot */
  size_t npending;
  uint64_t next_seq;
  uint64_t accept_resume_ns; /* accepting paused until then, or 0 */
  uint64_t dropped;          /* dropped for newer ones, not warned yet */
  uint64_t drop_warn_ns;     /* no warning before then */
};

/* Close pending connection P and free its slot. */
static void
pending_close (struct acceptor *ac, struct pending *p)
{
  close (p->fd);
  p->fd = -1;
  ac->npending--;
}

/* Refuse the frame being read on P: log why (once, at warning level),
 * send an error reply with STATUS and the message FMT, and return -1
 * (the caller closes P).
 */
static int __attribute__ ((format (printf, 3, 4)))
pending_refuse (struct pending *p, uint32_t status, const char *fmt, ...)
{
  char msg[PROTO_ERRMSG_MAX + 1];
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (msg, sizeof msg, fmt, ap);
  va_end (ap);
  log_warn ("%s: before authentication: %s", p->peer, msg);
  proto_send_error (p->fd, p->hdr.opcode, p->hdr.tag, status, "%s", msg);
  return -1;
}

/* Refuse P's handshake: the key is not proven.  Logs WHAT (the reply,
 * "authentication required" or "failed") with the details in FMT, replies
 * EACCES with WHAT only, and returns -1 (the caller closes P).
 */
static int __attribute__ ((format (printf, 3, 4)))
pending_deny (struct pending *p, const char *what, const char *fmt, ...)
{
  char why[256];
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (why, sizeof why, fmt, ap);
  va_end (ap);
  log_warn ("%s: %s: %s: %s", p->peer, proto_opcode_name (p->hdr.opcode), what,
            why);
  proto_send_error (p->fd, p->hdr.opcode, p->hdr.tag, PROTO_EACCES, "%s", what);
  return -1;
}

/* Check the header now complete in P->buf before reading a payload.
 * Returns 0, or -1 after an error reply.
 */
static int
pending_header (struct pending *p)
{
  int r = proto_header_decode (p->buf, &p->hdr, UINT32_MAX);

  if (r < 0)
    return pending_refuse (p, proto_status_from_errno (-r), "bad frame: %s",
                           header_error (r));
  if (p->hdr.flags & PROTO_FLAG_REPLY)
    return pending_refuse (p, PROTO_EPROTO, "%s: unexpected reply frame",
                           proto_opcode_name (p->hdr.opcode));
  if (p->hdr.opcode != PROTO_OP_HELLO && p->hdr.opcode != PROTO_OP_AUTH)
    return pending_refuse (p, PROTO_EPROTO, "%s: HELLO and AUTH expected first",
                           proto_opcode_name (p->hdr.opcode));
  if (p->hdr.flags != 0)
    return pending_refuse (p, PROTO_EINVAL,
                           "%s: flags 0x%" PRIx16 " not valid here",
                           proto_opcode_name (p->hdr.opcode), p->hdr.flags);
  /* An oversized frame is malformed (as in serve_one). */
  if (p->hdr.length > PROTO_MAX_PREAUTH_PAYLOAD)
    return pending_refuse (p, PROTO_EBADMSG,
                           "bad frame: %s: payload of %" PRIu32
                           " bytes, at most %d before authentication",
                           proto_opcode_name (p->hdr.opcode), p->hdr.length,
                           PROTO_MAX_PREAUTH_PAYLOAD);
  return 0;
}

/* HELLO on P: check the version, start the handshake and answer with
 * the MDS's role, the cluster uuid, its epoch and the server's proof.  Returns 0,
 * or -1 after an error reply.
 */
static int
pending_hello (struct mds *mds, struct pending *p, const void *payload,
               uint32_t len)
{
  struct proto_hello hello, reply;
  struct proto_wbuf wb = { 0 };
  int r;

  if (p->hello_done)
    return pending_refuse (p, PROTO_EPROTO, "HELLO: sent twice");
  r = proto_decode_hello (payload, len, &hello);
  if (r < 0)
    return pending_refuse (p, proto_status_from_errno (-r),
                           "HELLO: malformed request");
  if (hello.version != PROTO_VERSION)
    return pending_refuse (p, PROTO_EPROTO,
                           "HELLO: protocol version %" PRIu32
                           " not supported (the MDS speaks %d)",
                           hello.version, PROTO_VERSION);
  memset (&reply, 0, sizeof reply);
  r = auth_server_start (&mds->key, &p->auth, hello.role, hello.auth,
                         hello.auth_len, PROTO_ROLE_MDS, reply.auth);
  if (r == -EACCES)
    return pending_deny (p, "authentication required",
                         "a %s sent a nonce of %u bytes, not %d (a client "
                         "without a cluster key?)",
                         proto_role_name (hello.role), (unsigned)hello.auth_len,
                         AUTH_NONCE_SIZE);
  if (r < 0) {
    log_error ("%s: HELLO: %s", p->peer, strerror (-r));
    proto_send_error (p->fd, p->hdr.opcode, p->hdr.tag,
                      proto_status_from_errno (-r), "HELLO: %s", strerror (-r));
    return -1;
  }
  reply.version = PROTO_VERSION;
  reply.role = PROTO_ROLE_MDS;
  memcpy (reply.uuid, mds->cluster.uuid, sizeof reply.uuid);
  /* Storage servers apply heartbeat replies only from the newest. */
  reply.mds_epoch = __atomic_load_n (&mds->ha_epoch, __ATOMIC_SEQ_CST);
  reply.auth_len = AUTH_SERVER_HELLO_LEN;
  proto_encode_hello (&reply, &wb);
  /* The reply fits in any socket buffer: a non-blocking send of it
   * only fails if the peer has gone.
   */
  r = wb.err ? wb.err
             : proto_send_frame (p->fd, PROTO_OP_HELLO, PROTO_FLAG_REPLY,
                                 PROTO_OK, p->hdr.tag, wb.data, wb.len);
  proto_wbuf_free (&wb);
  if (r < 0) {
    log_debug ("%s: HELLO: send: %s", p->peer, strerror (-r));
    return -1;
  }
  p->hello_done = true;
  p->role = hello.role;
  return 0;
}

/* P has authenticated: answer its AUTH and hand its socket to a new
 * connection thread, or refuse it (too many connections).  The slot's
 * fd is taken in every case (closed, or owned by the thread).
 */
static void
pending_promote (struct mds *mds, struct pending *p)
{
  struct timeval snd = { .tv_sec = SEND_TIMEOUT_SECONDS };
  struct timeval rcv = { .tv_sec = FRAME_TIMEOUT_SECONDS };
  struct mds_conn *conn;
  pthread_attr_t attr;
  int r, flags;

  conn = calloc (1, sizeof *conn);
  if (conn == NULL) {
    log_error ("%s: AUTH: out of memory", p->peer);
    proto_send_error (p->fd, PROTO_OP_AUTH, p->hdr.tag, PROTO_ENOMEM,
                      "out of memory");
    close (p->fd);
    return;
  }
  conn->mds = mds;
  conn->fd = p->fd;
  conn->role = p->role;
  memcpy (conn->peer, p->peer, sizeof conn->peer);
  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
    r = mds->stopping || mds->nconns >= mds->max_conns ? -EAGAIN : 0;
    if (r == 0) {
      conn->next = mds->conns;
      if (mds->conns)
        mds->conns->prev = conn;
      mds->conns = conn;
      mds->nconns++;
    }
  }
  if (r < 0) {
    log_warn ("%s: refused: too many connections", p->peer);
    proto_send_error (p->fd, PROTO_OP_AUTH, p->hdr.tag, PROTO_EAGAIN,
                      "too many connections");
    close (p->fd);
    free (conn);
    return;
  }

  /* Blocking from now on; a peer that stops reading or sends half a
   * frame must not hold its thread forever.
   */
  setsockopt (conn->fd, SOL_SOCKET, SO_SNDTIMEO, &snd, sizeof snd);
  setsockopt (conn->fd, SOL_SOCKET, SO_RCVTIMEO, &rcv, sizeof rcv);
  flags = fcntl (conn->fd, F_GETFL);
  if (flags == -1 || fcntl (conn->fd, F_SETFL, flags & ~O_NONBLOCK) == -1)
    r = -errno;
  else
    r = proto_send_frame (conn->fd, PROTO_OP_AUTH, PROTO_FLAG_REPLY, PROTO_OK,
                          p->hdr.tag, NULL, 0);
  if (r < 0) {
    log_debug ("%s: AUTH: cannot answer: %s", conn->peer, strerror (-r));
    conn_free (mds, conn);
    return;
  }
  log_debug ("%s: authenticated a %s", conn->peer,
             proto_role_name (conn->role));

  pthread_attr_init (&attr);
  pthread_attr_setdetachstate (&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize (&attr, CONN_STACK_SIZE);
  r = pthread_create (&(pthread_t){ 0 }, &attr, conn_thread, conn);
  pthread_attr_destroy (&attr);
  if (r != 0) {
    log_error ("%s: cannot start a thread: %s", conn->peer, strerror (r));
    conn_free (mds, conn);
  }
}

/* Act on the frame now complete in P->buf.  Returns 0 to keep P
 * pending, 1 if its fd was handed on or closed (authenticated or
 * refused), -1 to close it (after an error reply).
 */
static int
pending_frame (struct mds *mds, struct pending *p)
{
  const uint8_t *payload = p->buf + PROTO_HEADER_SIZE;

  if (p->hdr.opcode == PROTO_OP_HELLO)
    return pending_hello (mds, p, payload, p->hdr.length);
  assert (p->hdr.opcode == PROTO_OP_AUTH);
  if (!p->hello_done)
    return pending_refuse (p, PROTO_EPROTO, "AUTH: HELLO expected first");
  if (auth_server_check (&mds->key, &p->auth, payload, p->hdr.length) < 0)
    return pending_deny (p, "authentication failed",
                         "wrong proof of the cluster key from a %s "
                         "(another cluster's key?)",
                         proto_role_name (p->role));
  pending_promote (mds, p);
  return 1;
}

/* Read what P has sent, acting on each frame once it is whole.  Reads
 * never go past the current frame, so what follows AUTH is left for the
 * connection thread.  Returns as pending_frame; 0 also when nothing more
 * is there yet.
 */
static int
pending_read (struct mds *mds, struct pending *p)
{
  for (;;) {
    uint32_t want = PROTO_HEADER_SIZE;
    ssize_t n;
    int r;

    if (p->have >= PROTO_HEADER_SIZE)
      want += p->hdr.length;
    if (p->have < want) {
      n = read (p->fd, p->buf + p->have, want - p->have);
      if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 0;
      if (n == -1 && errno == EINTR)
        continue;
      if (n <= 0) {
        log_debug ("%s: closed before authenticating%s%s", p->peer,
                   n == 0 ? "" : ": ", n == 0 ? "" : strerror (errno));
        return -1;
      }
      p->have += (uint32_t)n;
      /* The header just completed: check it before its payload. */
      if (p->have == PROTO_HEADER_SIZE && pending_header (p) < 0)
        return -1;
      continue;
    }
    r = pending_frame (mds, p);
    p->have = 0;
    if (r != 0)
      return r;
  }
}

/* Refuse accepted socket FD at once (too many connections). */
static void
refuse_busy (const char *peer, int fd)
{
  log_warn ("%s: refused: too many connections", peer);
  proto_send_error (fd, PROTO_OP_HELLO, 0, PROTO_EAGAIN,
                    "too many connections");
  close (fd);
}

/* Take accepted socket FD (non-blocking) into a free slot, dropping the
 * oldest pending connection if there is none; or refuse it at once when
 * stopping or when the authenticated connections are at their maximum.
 * FD is always consumed.
 */
static void
pending_add (struct acceptor *ac, int fd, uint64_t now)
{
  struct mds *mds = ac->mds;
  struct pending *p = NULL;
  char peer[PROTO_ADDR_MAX + 1];
  bool full;
  size_t i;

  sock_peer_address (fd, peer, sizeof peer);
  /* Unix peers have no address: number them to tell them apart. */
  if (strcmp (peer, "unix") == 0)
    snprintf (peer, sizeof peer, "unix#%" PRIu64, ++mds->conn_count);
  {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
    full = mds->stopping || mds->nconns >= mds->max_conns;
  }
  if (full) {
    refuse_busy (peer, fd);
    return;
  }
  /* With --tls, speak through a relay (tls.h); the descriptor it gives
   * must be non-blocking like the socket.
   */
  if (tls_enabled ()) {
    fd = proto_accepted (fd, (int)mds->handshake_timeout_ms, peer);
    if (fd < 0 || fcntl (fd, F_SETFL, O_NONBLOCK) == -1) {
      log_warn ("%s: TLS: %s", peer, strerror (fd < 0 ? -fd : errno));
      if (fd >= 0)
        close (fd);
      return;
    }
  }

  for (i = 0; i < mds->max_unauth; ++i) {
    struct pending *q = &ac->slots[i];

    if (q->fd == -1) {
      p = q;
      break;
    }
    if (p == NULL || q->seq < p->seq)
      p = q;
  }
  assert (p != NULL);
  if (p->fd != -1) {
    /* Full: the oldest makes way, so idle sockets cannot lock out a
     * real client, only delay it.
     */
    log_debug ("%s: dropped unauthenticated for a newer connection", p->peer);
    pending_close (ac, p);
    ac->dropped++;
    if (now >= ac->drop_warn_ns) {
      log_warn ("more than %" PRIu32 " connections waiting to "
                "authenticate (--max-unauthenticated): %" PRIu64
                " of the oldest dropped for newer ones",
                mds->max_unauth, ac->dropped);
      ac->drop_warn_ns = now + DROP_WARN_INTERVAL_NS;
      ac->dropped = 0;
    }
  }
  p->fd = fd;
  p->hello_done = false;
  p->role = 0;
  p->seq = ac->next_seq++;
  p->deadline_ns = now + (uint64_t)mds->handshake_timeout_ms * 1000000;
  p->have = 0;
  memcpy (p->peer, peer, sizeof p->peer);
  ac->npending++;
}

/* Accept what the listening socket has (up to ACCEPT_BATCH).  Returns
 * -1 once mds_serve_stop has shut it down, else 0.
 */
static int
accept_some (struct acceptor *ac, uint64_t now)
{
  struct mds *mds = ac->mds;
  int i, fd, e;

  for (i = 0; i < ACCEPT_BATCH; ++i) {
    fd = accept4 (mds->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd >= 0) {
      pending_add (ac, fd, now);
      continue;
    }
    e = errno;
    if (e == EAGAIN || e == EWOULDBLOCK)
      return 0;
    if (e == EINTR || e == ECONNABORTED || e == EPROTO)
      continue;
    {
      ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
      if (mds->stopping)
        return -1;
    }
    /* Out of fds or memory: wait for some to be released, serving the
     * pending connections meanwhile.
     */
    log_error ("accept: %s", strerror (e));
    ac->accept_resume_ns = now + ACCEPT_PAUSE_NS;
    return 0;
  }
  return 0;
}

/* Close the pending connections whose time is up.  Returns the poll(2)
 * timeout until the next deadline (-1: none).
 */
static int
pending_expire (struct acceptor *ac, uint64_t now)
{
  struct mds *mds = ac->mds;
  uint64_t next = UINT64_MAX;
  size_t i;

  for (i = 0; i < mds->max_unauth; ++i) {
    struct pending *p = &ac->slots[i];

    if (p->fd == -1)
      continue;
    if (p->deadline_ns <= now) {
      log_debug ("%s: not authenticated within %" PRIu32 " ms: closing",
                 p->peer, mds->handshake_timeout_ms);
      pending_close (ac, p);
    }
    else if (p->deadline_ns < next)
      next = p->deadline_ns;
  }
  if (ac->accept_resume_ns > now && ac->accept_resume_ns < next)
    next = ac->accept_resume_ns;
  if (next == UINT64_MAX)
    return -1;
  /* Round up, so that the deadline has passed when poll returns. */
  return (int)((next - now + 999999) / 1000000);
}

/* Free the acceptor and close its pending connections. */
static void
acceptor_free (struct acceptor *ac)
{
  size_t i;

  if (ac == NULL)
    return;
  for (i = 0; ac->slots && i < ac->mds->max_unauth; ++i)
    if (ac->slots[i].fd != -1)
      close (ac->slots[i].fd);
  free (ac->slots);
  free (ac->pfds);
  free (ac);
}

/* The accept thread: accepts connections and holds them until they
 * authenticate.  Runs until mds_serve_stop shuts the socket down.
 */
static void *
accept_loop (void *arg)
{
  struct acceptor *ac = arg;
  struct mds *mds = ac->mds;
  size_t i;

  log_set_thread_name ("accept");
  for (;;) {
    uint64_t now = monotonic_ns ();
    int timeout = pending_expire (ac, now), r;
    bool accepting = now >= ac->accept_resume_ns;

    ac->pfds[0].fd = accepting ? mds->listen_fd : -1;
    ac->pfds[0].events = POLLIN;
    ac->pfds[0].revents = 0;
    for (i = 0; i < mds->max_unauth; ++i) {
      ac->pfds[i + 1].fd = ac->slots[i].fd;
      ac->pfds[i + 1].events = POLLIN;
      ac->pfds[i + 1].revents = 0;
    }
    r = poll (ac->pfds, mds->max_unauth + 1, timeout);
    if (r == -1) {
      if (errno != EINTR)
        log_error ("accept: poll: %m");
      continue;
    }
    now = monotonic_ns ();
    for (i = 0; i < mds->max_unauth; ++i) {
      struct pending *p = &ac->slots[i];

      if (ac->pfds[i + 1].revents == 0 || p->fd == -1)
        continue;
      r = pending_read (mds, p);
      if (r < 0)
        pending_close (ac, p);
      else if (r > 0) {
        p->fd = -1; /* handed on, or closed */
        ac->npending--;
      }
    }
    /* mds_serve_stop shuts the listening socket down: then accept may
     * fail with EAGAIN (unix sockets) rather than EINVAL.
     */
    if (ac->pfds[0].revents & (POLLHUP | POLLERR | POLLNVAL)) {
      ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&mds->lock);
      if (mds->stopping)
        break;
    }
    if (ac->pfds[0].revents != 0 && accept_some (ac, now) < 0)
      break;
  }
  acceptor_free (ac);
  return NULL;
}

/* Start serving mds->listen_fd.  Returns 0 or -errno. */
int
mds_serve_start (struct mds *mds)
{
  struct acceptor *ac;
  size_t i;
  int flags, r;

  assert (mds->max_unauth > 0 && mds->max_conns > 0);
  flags = fcntl (mds->listen_fd, F_GETFL);
  if (flags == -1 || fcntl (mds->listen_fd, F_SETFL, flags | O_NONBLOCK) == -1)
    return -errno;
  ac = calloc (1, sizeof *ac);
  if (ac == NULL)
    return -ENOMEM;
  ac->mds = mds;
  ac->slots = calloc (mds->max_unauth, sizeof *ac->slots);
  ac->pfds = calloc (mds->max_unauth + 1, sizeof *ac->pfds);
  if (ac->slots == NULL || ac->pfds == NULL) {
    free (ac->slots);
    free (ac->pfds);
    free (ac);
    return -ENOMEM;
  }
  for (i = 0; i < mds->max_unauth; ++i)
    ac->slots[i].fd = -1;
  r = pthread_create (&mds->accept_thread, NULL, accept_loop, ac);
  if (r != 0) {
    acceptor_free (ac);
    return -r;
  }
  return 0;
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

  deadline = deadline_after_ms (timeout_ms);
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

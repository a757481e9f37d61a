/* tessera-storesrv internals, sectioned by the file that defines them.
 *
 * Threads: the ring thread (main.c runs loop.c's event loop) owns every
 * connection, request and segment entry, the fences and the store's
 * free-slot list; the index worker (index.c) owns the LMDB write
 * transactions; the MDS client (mds-client.c) owns its connection to the
 * MDS; worker threads (work.c) compute SEG_HASH checksums and run
 * SEG_PULL copies.  They exchange work only through the locked queues of
 * index.c, mds-client.c and ring.c (ss_loop_post), each paired with an
 * eventfd that the ring reads.
 *
 * A request's path on the ring thread: loop.c reaps the recv, conn.c
 * (the socket engine) cuts the frames and makes requests (req.c),
 * dispatch.c looks the opcode up in its table and calls the handler
 * (handshake.c, req-io.c, req-repair.c, req-fence.c, delete.c, pull.c),
 * the handler answers through req.c's reply API, and conn.c sends the
 * reply.  admit.c bounds what connections may cost and for how long.
 * Handlers work on the segments (segments.c), the store (store.c), the
 * fences and write barriers (fences.c) and the index (through
 * ss_index_submit_op); nothing calls a handler but dispatch.c, nothing
 * else in a handler's file but loop.c (the MDS's deletes and fences),
 * and no handler calls conn.c or another handler's file.
 * superblock.c, record.c and track.c call nothing else of the daemon:
 * they form libstoresrv.la, which the unit tests and fuzzers link.
 */

#ifndef TESSERA_STORESRV_INTERNAL_H
#define TESSERA_STORESRV_INTERNAL_H

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <liburing.h>

#include "auth.h"
#include "protocol.h"

#define SS_PROGRAM "tessera-storesrv"

/* The struct of TYPE whose MEMBER is at PTR. */
#define SS_CONTAINER_OF(ptr, type, member) \
  ((type *)(void *)((char *)(ptr)-offsetof (type, member)))

/* Requests one authenticated connection may have in flight (received,
 * not yet fully answered: --max-inflight, default SS_CONN_MAX_REQS) and
 * the payload and reply bytes they may hold; reading stops while a
 * connection is at either bound.  Before authentication the bound is one
 * request of at most PROTO_MAX_PREAUTH_PAYLOAD bytes.
 */
#define SS_CONN_MAX_REQS 64
#define SS_MAX_MAX_INFLIGHT 4096
#define SS_CONN_MAX_BYTES (64u * 1024 * 1024)

/* Iovecs one sendmsg may carry (two per reply with data), and the
 * receive buffer of an authenticated connection, which takes as many
 * frames as one recv brings (conn.c).
 */
#define SS_SEND_IOV 128
#define SS_RECV_BUF (16u * 1024)

/* Defaults of --handshake-timeout and --frame-timeout (admit.c); those
 * of --max-connections and --max-unauthenticated are daemon.h's.
 */
#define SS_DEFAULT_HANDSHAKE_TIMEOUT 10 /* seconds */
#define SS_DEFAULT_FRAME_TIMEOUT 30     /* seconds */

/* Segment sizes a cluster may use: a power of two between these
 * (ss_segment_size_valid).  A cluster's is fixed when its MDS catalog is
 * created (tessera-mds --init --segment-size); a storage server learns
 * it at registration, keeps it in its superblock and stores one segment
 * per slot of that size.
 */
#define SS_MIN_SEGMENT_SIZE (64u * 1024)
#define SS_MAX_SEGMENT_SIZE (64u * 1024 * 1024)

/* SEG_PULL copies at most this many at once by default (--max-pulls). */
#define SS_DEFAULT_MAX_PULLS 2
#define SS_MAX_MAX_PULLS 64

struct ss_loop;
struct ss_store;
struct ss_index;
struct ss_mds;
struct ss_workq;
struct ss_pull;

/* ---- main.c ---- */

/* The daemon: options and the parts built from them.  Options are set
 * before any thread starts and are read-only afterwards.
 */
struct ss_ctx {
  char *data_dir;      /* --data, absolute */
  char *mds_addr;      /* --mds: a list of addresses (addrlist.h) */
  char *advertise_opt; /* --advertise or NULL */
  char *zone;          /* --zone, "" if unset */
  uint64_t size;       /* --size: capacity when formatting */
  bool size_set;
  uint32_t max_pulls; /* --max-pulls */
  char *key_file;     /* --key-file (the key itself: auth_key_current) */
  bool tls;           /* --tls */
  uint32_t handshake_timeout; /* --handshake-timeout, seconds */
  uint32_t frame_timeout;     /* --frame-timeout, seconds */
  uint32_t max_conns;         /* --max-connections (authenticated) */
  uint32_t max_unauth;        /* --max-unauthenticated */
  uint32_t max_inflight;      /* --max-inflight, per connection */

  /* -D storesrv.FLAG=N */
  int debug_requests; /* log every request */
  int debug_index;    /* log every index commit */
  int debug_mds;      /* log every heartbeat */
  int debug_pull;     /* log every copy step of SEG_PULL */

  char advertise[PROTO_ADDR_MAX + 1]; /* what the MDS tells plugins */
  uint64_t incarnation; /* random, non-zero: this start of the process */
  uint32_t reg_flags;   /* PROTO_REG_*: UNCLEAN if no marker was found */
  int listen_fd;
  int exit_status;   /* set with __atomic: EXIT_FAILURE after a fatal
                         * error found by another thread */
  bool store_failed; /* set with __atomic by ss_store_fail: no marker */
  /* The highest MDS epoch a connection has claimed after proving the
   * cluster key (handshake.c): written by the ring thread, read with
   * __atomic by the MDS client.  Only ever grows.
   */
  uint64_t mds_epoch;

  struct ss_store *store;
  struct ss_index *index;
  struct ss_mds *mds;
  struct ss_loop *loop;
};

/* ---- store.c ---- */

/* The on-disk store: superblock, data file and free slots.  Fields other
 * than FREE_SLOTS, NFREE and USED are fixed once ss_store_format (or
 * ss_store_open of a formatted store) returns.  FREE_SLOTS and NFREE
 * belong to the ring thread; USED is read by the MDS client with
 * __atomic loads.
 */
struct ss_store {
  char *dir;
  int dir_fd;  /* holds the flock that keeps others out */
  int data_fd; /* -1 until formatted */
  bool formatted;
  uint8_t uuid[16];         /* this server */
  uint8_t cluster_uuid[16]; /* zero until formatted */
  uint32_t segment_size;    /* zero until formatted */
  uint32_t sb_version;      /* the superblock's format version */
  uint64_t index_id;        /* random, non-zero once formatted (version 2);
                             * zero in a version-1 store until upgraded */
  uint64_t capacity;        /* bytes: whole slots once formatted */
  uint32_t nslots;
  uint32_t *free_slots; /* stack, lowest slot on top */
  uint32_t nfree;
  uint64_t used; /* bytes in allocated slots */
  /* The clean-shutdown marker found at start (ss_store_clean_read). */
  bool clean;
  uint64_t clean_index_id;
  uint64_t clean_seq;
};

extern int ss_store_open (const char *dir, uint64_t size,
                          struct ss_store **out);
extern int ss_store_format (struct ss_store *st, const uint8_t cluster_uuid[16],
                            uint32_t segment_size);
extern int ss_store_index_id_new (uint64_t *id);
extern int ss_store_format_commit (struct ss_store *st);
extern int ss_store_set_index_id (struct ss_store *st, uint64_t index_id);
extern void ss_store_close (struct ss_store *st);
extern char *ss_store_index_path (const struct ss_store *st);
extern int ss_store_clean_read (struct ss_store *st);
extern int ss_store_clean_remove (struct ss_store *st);
extern int ss_store_clean_write (struct ss_store *st, uint64_t index_id,
                                 uint64_t seq);
extern int ss_store_slots_init (struct ss_store *st, const uint8_t *used_map);
extern int ss_store_slot_alloc (struct ss_store *st, uint32_t *slot);
extern void ss_store_slot_free (struct ss_store *st, uint32_t slot);
extern uint64_t ss_store_slot_offset (const struct ss_store *st, uint32_t slot);
extern uint64_t ss_store_used (const struct ss_store *st);
extern int ss_crc_file (int fd, uint64_t pos, uint32_t len, uint8_t *buf,
                        size_t buflen, uint32_t *crc);

/* ---- superblock.c ---- */

#define SS_SB_NAME "superblock" /* in the data directory */
#define SS_SB_SIZE 512
#define SS_SB_VERSION 2             /* written */
#define SS_SB_VERSION_NO_INDEX_ID 1 /* still read: no index id */
#define SS_CLEAN_SIZE 32

extern int ss_segment_size_valid (uint32_t segment_size);
extern void ss_sb_encode (const struct ss_store *st, uint8_t *buf);
extern int ss_sb_decode (struct ss_store *st, const uint8_t *buf);
extern void ss_clean_encode (uint64_t index_id, uint64_t seq, uint8_t *buf);
extern int ss_clean_decode (const uint8_t *buf, size_t len, uint64_t *index_id,
                            uint64_t *seq);

/* ---- index.c ---- */

/* One index record: segment id -> where and when it was written. */
struct ss_index_rec {
  uint64_t segment;
  uint32_t slot;
  uint64_t volume;
  uint64_t epoch; /* last epoch that wrote the segment */
  uint8_t state;  /* SS_SEG_STATE_* */
  uint64_t gen;   /* replica-set generation (SEG_SET_GEN) */
  uint64_t index; /* in the volume; SS_INDEX_NONE: not known */
};

#define SS_SEG_STATE_OK 0
#define SS_INDEX_NONE PROTO_INDEX_NONE

/* The record's encoding (record.c). */
#define SS_INDEX_REC_SIZE 37
#define SS_INDEX_V2_REC_SIZE 29  /* without the index */
#define SS_INDEX_OLD_REC_SIZE 21 /* without the generation and index */

extern void ss_index_rec_encode (const struct ss_index_rec *rec, uint8_t *buf);
extern int ss_index_rec_decode (const void *key, size_t keylen, const void *val,
                                size_t vallen, struct ss_index_rec *rec);

enum ss_index_op_type {
  SS_INDEX_PUT,       /* insert or replace REC */
  SS_INDEX_DEL,       /* remove REC.segment (absent: success) */
  SS_INDEX_SYNC,      /* completes once every earlier op has committed */
  SS_INDEX_FENCE,     /* raise REC.volume's fence to REC.epoch (never lowers) */
  SS_INDEX_UNGONE,    /* forget REC.segment's tombstone */
  SS_INDEX_TABLES,    /* store TABLES_* unless the stored version is as high */
  SS_INDEX_MDS_EPOCH, /* raise the highest MDS epoch to REC.epoch */
};

/* An index update, embedded in its owner.  The ring thread fills TYPE,
 * REC and DONE and calls ss_index_submit; the worker owns the op until it
 * hands it back, then the ring thread calls DONE with ERR set (0 or
 * -errno).
 */
struct ss_index_op {
  enum ss_index_op_type type;
  struct ss_index_rec rec;
  bool gone; /* PUT: also forget the tombstone; DEL: also record one */
  /* SS_INDEX_TABLES: the version and blob (the submitter's memory) */
  uint64_t tables_version;
  const uint8_t *tables_blob;
  uint32_t tables_len;
  int err;
  void (*done) (struct ss_loop *loop, struct ss_index_op *op);
  void *arg; /* for DONE */
  struct ss_index_op *next;
};

extern int ss_index_wipe (const char *path);
extern int ss_index_open (const char *path, uint32_t nslots, int *debug,
                          struct ss_index **out);
extern int ss_index_load (struct ss_index *idx,
                          int (*fn) (void *arg, const struct ss_index_rec *rec),
                          void *arg);
extern int ss_index_load_gone (struct ss_index *idx,
                               int (*fn) (void *arg, uint64_t segment),
                               void *arg);
extern int ss_index_load_fences (struct ss_index *idx,
                                 int (*fn) (void *arg, uint64_t volume,
                                            uint64_t epoch),
                                 void *arg);
extern int ss_index_get_ident (struct ss_index *idx, uint8_t uuid[16],
                               uint64_t *id);
extern int ss_index_set_ident (struct ss_index *idx, const uint8_t uuid[16],
                               uint64_t id);
extern int ss_index_get_tables (struct ss_index *idx, uint64_t *version,
                                uint8_t **blob, uint32_t *len);
extern int ss_index_get_mds_epoch (struct ss_index *idx, uint64_t *epoch);
extern uint64_t ss_index_seq (const struct ss_index *idx);
extern int ss_index_start (struct ss_index *idx);
extern int ss_index_eventfd (const struct ss_index *idx);
extern void ss_index_submit (struct ss_index *idx, struct ss_index_op *op);
extern struct ss_index_op *ss_index_take_done (struct ss_index *idx);
extern void ss_index_close (struct ss_index *idx);

/* ---- guard.c ---- */

extern int ss_guard_open_index (struct ss_ctx *ctx);
extern int ss_guard_format (struct ss_ctx *ctx,
                            const struct proto_register_reply *reply);

/* ---- mds-client.c ---- */

extern int ss_mds_new (struct ss_ctx *ctx, struct ss_mds **out);
extern int ss_mds_start (struct ss_mds *m);
extern int ss_mds_wait_registered (struct ss_mds *m, const sigset_t *sigs,
                                   struct proto_register_reply *reply);
extern void ss_mds_store_ready (struct ss_mds *m);
extern int ss_mds_eventfd (const struct ss_mds *m);
extern int ss_mds_take_deletes (struct ss_mds *m, uint64_t **ids, size_t *n,
                                uint64_t *epoch);
extern void ss_mds_take_fences (struct ss_mds *m, struct proto_fence **fences,
                                size_t *n, uint64_t *epoch);
extern void ss_mds_deleted (struct ss_mds *m, const uint64_t *ids, size_t n);
extern void ss_mds_free (struct ss_mds *m);

/* ---- loop.c ---- */

/* An operation on the ring.  user_data points at one of these, embedded
 * in the object whose buffers the operation uses (a request, a
 * connection, a segment); DONE runs on the ring thread with cqe->res.
 */
struct ss_op {
  void (*done) (struct ss_loop *loop, struct ss_op *op, int res);
};

/* A message from another thread to the ring thread (ss_loop_post): FN
 * runs on the ring thread.  The poster keeps the message alive until
 * then.
 */
struct ss_msg {
  void (*fn) (struct ss_loop *loop, struct ss_msg *msg);
  struct ss_msg *next;
};

/* Messages posted to the ring thread.  Lock order: LOCK is a leaf. */
struct ss_post {
  pthread_mutex_t lock;
  struct ss_msg *head, *tail; /* under LOCK, FIFO */
  int efd;                    /* written after each post */
};

/* A fence: writes to VOLUME with an epoch older than EPOCH are refused. */
struct ss_fence {
  uint64_t volume;
  uint64_t epoch;
};

/* Something waiting until every write or trim issued before it has
 * completed (fences.c): DONE runs on the ring thread.
 */
struct ss_barrier {
  uint64_t seq; /* waits for writes numbered SEQ and below */
  void (*done) (struct ss_loop *loop, struct ss_barrier *b);
  struct ss_barrier *next;
};

struct ss_conn;

/* A segment entry (segments.c) and a wait list entry (req.c) are
 * declared below.
 */
struct ss_seg;

struct ss_seg_table {
  struct ss_seg **buckets;
  size_t nbuckets; /* power of two */
  size_t count;
};

/* A set of byte ranges of a segment, sorted and merged (track.c). */
struct ss_range {
  uint32_t start, end; /* [start, end) */
};
struct ss_ranges {
  struct ss_range *v;
  size_t n, cap;
  bool failed; /* out of memory: some range is missing */
};

/* Recent client writes of a segment, by the generation they carried,
 * kept for a pull that may come (track.c).  In the loop's list in order
 * of DEADLINE.
 */
#define SS_TRACK_GENS 4
struct ss_track {
  struct ss_track *prev, *next;
  struct ss_seg *seg;
  uint64_t deadline; /* CLOCK_MONOTONIC seconds */
  unsigned nsets;    /* SETS[0 .. NSETS-1], ascending generations */
  struct {
    uint64_t gen;
    struct ss_ranges ranges;
  } sets[SS_TRACK_GENS];
};

/* Tombstones (gone.c): ids of segments this server deleted, in a hash
 * set (open addressing, 0 = empty) and in the order they were added.
 */
struct ss_gone_set {
  uint64_t *slots;
  size_t nslots; /* power of two, or 0 */
  size_t count;
  bool has_zero;  /* segment id 0 */
  uint64_t *ring; /* ids in the order added (for eviction) */
  size_t ring_cap, ring_head, ring_len;
};

/* The ring thread's state.  Everything here is touched only on the ring
 * thread (checked by SS_ASSERT_RING).
 */
struct ss_loop {
  struct ss_ctx *ctx;
  struct ss_store *store; /* ctx->store */
  struct io_uring ring;
  pthread_t thread;

  int listen_fd;
  struct ss_op accept_op;
  bool accept_armed;
  struct ss_op timer_op; /* delays re-arming accept after EMFILE */
  struct __kernel_timespec timer_ts;
  bool timer_armed;
  bool accept_error_logged;

  int signal_fd;
  struct signalfd_siginfo siginfo;
  struct ss_op signal_op;
  bool signal_armed;

  int index_efd;
  uint64_t index_val;
  struct ss_op index_op;
  bool index_armed;
  unsigned index_pending; /* ops submitted, not yet handed back */

  int mds_efd;
  uint64_t mds_val;
  struct ss_op mds_op;
  bool mds_armed;
  unsigned deletes_pending; /* delete batches in progress */

  struct ss_post post; /* the only part other threads touch */
  uint64_t post_val;
  struct ss_op post_op;
  bool post_armed;

  struct ss_workq *hashq; /* SEG_HASH checksums */
  struct ss_workq *pullq; /* SEG_PULL copies, ctx->max_pulls threads */
  unsigned jobs;          /* hashes, pulls and fence records in progress */
  struct ss_pull *pulls;  /* doubly linked: every pull not yet answered */

  struct ss_fence *fences; /* sorted by volume */
  size_t nfences, fences_cap;

  /* The cluster tables the MDS stored here (req-rebuild.c): the same as
   * the index holds once the update of a TABLES_PUT committed.
   */
  uint64_t tables_version;
  uint8_t *tables_blob; /* owned; NULL when empty */
  uint32_t tables_len;

  /* The highest MDS epoch the index holds (handshake.c): ctx->mds_epoch
   * once the update that raised it committed.
   */
  uint64_t mds_epoch_durable;

  /* Writes and trims with data I/O issued, oldest first (fences.c). */
  struct ss_req *writes_head, *writes_tail;
  uint64_t write_seq; /* number given to the last write issued */
  struct ss_barrier *barriers_head, *barriers_tail;

  struct ss_op cancel_op;

  struct ss_conn *conns; /* doubly linked */
  unsigned nconns;
  /* Connections not yet authenticated, oldest first (admit.c), and the
   * timeout that closes them after --handshake-timeout.
   */
  struct ss_conn *unauth_head, *unauth_tail;
  unsigned nunauth, nauth;
  uint64_t conn_serial; /* numbers unix peers ("unix#N") */
  struct ss_op hs_timer_op;
  struct __kernel_timespec hs_timer_ts;
  bool hs_timer_armed;
  uint64_t evicted; /* unauthenticated connections dropped when full */
  /* Authenticated connections in the middle of a frame, least recent
   * progress first (admit.c), and the timeout that closes those idle for
   * --frame-timeout.  NOW_MS is CLOCK_MONOTONIC in milliseconds, read
   * once per loop turn.
   */
  struct ss_conn *frames_head, *frames_tail;
  struct ss_op frame_timer_op;
  struct __kernel_timespec frame_timer_ts;
  bool frame_timer_armed;
  uint64_t now_ms;
  /* Connections for the connection engine's pass once this loop turn's
   * completions are processed (ss_conns_flush): replies to send, one
   * sendmsg each, or a request freed, after which a paused connection
   * may read again.  Listed by req.c and conn.c, each entry holding a
   * reference.
   */
  struct ss_conn *flush_head;
  struct ss_seg_table segs;
  struct ss_gone_set gone;
  struct ss_track *tracks_head, *tracks_tail;
  const void *zeros; /* PROTO_MAX_DATA read-only zero bytes */
  /* The store failed (ss_store_fail): every request after the
   * handshake gets PROTO_EIO until the loop stops, SS_FAIL_GRACE_MS
   * later (time for the replies to go out).  Never cleared.
   */
  bool failed;
  char fail_why[128];
  struct ss_op fail_timer_op;
  struct __kernel_timespec fail_timer_ts;
  bool fail_timer_armed;
  bool stopping;
  bool cancelled; /* the loop's own reads are being cancelled */
};

#define SS_ASSERT_RING(loop) \
  assert (pthread_equal (pthread_self (), (loop)->thread))

extern int ss_loop_new (struct ss_ctx *ctx, struct ss_loop **out);
extern int ss_loop_run (struct ss_loop *loop);
extern void ss_loop_free (struct ss_loop *loop);

/* Mark a buffer the kernel filled as defined for valgrind. */
#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define SS_MARK_DEFINED(p, n) VALGRIND_MAKE_MEM_DEFINED ((p), (n))
#endif
#endif
#ifndef SS_MARK_DEFINED
#define SS_MARK_DEFINED(p, n) ((void)(p), (void)(n))
#endif

/* ---- ring.c ---- */

extern struct io_uring_sqe *ss_get_sqe (struct ss_loop *loop);
extern void ss_index_submit_op (struct ss_loop *loop, struct ss_index_op *op);
extern void ss_loop_post (struct ss_loop *loop, struct ss_msg *msg);
extern void ss_store_fail (struct ss_loop *loop, const char *what, int err);
extern bool ss_store_write_failed (int err);
extern bool ss_store_punch_failed (int err);

/* ---- req.c ---- */

/* Something waiting for a busy segment: RESUME runs once the segment is
 * idle again (ERR 0) or its pending update failed (ERR < 0).
 */
struct ss_waiter {
  struct ss_waiter *next;
  void (*resume) (struct ss_loop *loop, struct ss_waiter *w, int err);
};

/* A request: one received frame and its reply.  Owned by its connection
 * from the header's arrival until the reply is sent (or the connection
 * closes and the request's last ring operation has completed).
 */
struct ss_req {
  struct ss_conn *conn;
  struct proto_header hdr;
  uint8_t *payload; /* HDR.length bytes, owned */
  uint64_t bytes;   /* counted in the connection's byte bound */

  /* Segment I/O (req-io.c). */
  struct proto_seg_io io;
  struct ss_seg *seg; /* holds an io_inflight reference while set */
  struct ss_op op;
  struct ss_waiter wait;
  uint8_t *buf;  /* data: in PAYLOAD (write) or owned (read) */
  uint64_t pos;  /* offset in the data file */
  uint32_t done; /* bytes transferred so far */
  int stage;     /* req-io.c step */

  /* In the loop's list of writes in flight (fences.c). */
  bool in_writes;
  uint64_t write_seq;
  struct ss_req *wprev, *wnext;
  struct ss_barrier barrier; /* SEG_FENCE, SEG_SET_GEN */

  /* Flush (req-io.c). */
  struct ss_index_op iop;
  unsigned pending;
  int err;

  /* Reply. */
  uint8_t rhdr[PROTO_HEADER_SIZE];
  const void *rdata;
  uint32_t rlen;
  void *rdata_owned;
  struct iovec iov[2];
  struct msghdr msg;
  struct ss_req *next; /* send queue */
};

extern struct ss_req *ss_req_new (struct ss_conn *c);
extern void ss_req_free (struct ss_loop *loop, struct ss_req *r);
extern void ss_req_reply (struct ss_loop *loop, struct ss_req *r,
                          const void *data, uint32_t len, void *owned);
extern void ss_req_error (struct ss_loop *loop, struct ss_req *r,
                          uint32_t status, const char *fmt, ...)
    __attribute__ ((format (printf, 4, 5)));
extern void ss_req_fatal (struct ss_loop *loop, struct ss_req *r,
                          uint32_t status, const char *fmt, ...)
    __attribute__ ((format (printf, 4, 5)));
extern void ss_req_add_bytes (struct ss_req *r, uint64_t bytes);
extern void ss_req_failed (struct ss_loop *loop, struct ss_req *r);


/* ---- dispatch.c ---- */

extern void ss_req_dispatch (struct ss_loop *loop, struct ss_req *r);

/* ---- conn.c ---- */

/* Handshake states of a connection (auth.h): HELLO expected, AUTH
 * expected, authenticated.
 */
enum ss_conn_state {
  SS_CONN_HELLO,
  SS_CONN_AUTH,
  SS_CONN_READY,
};

/* A client connection.  REFS counts the open state, each ring operation
 * on the socket, each request and its place on the loop's flush list;
 * the last conn_put (conn.c) frees it.
 *
 * Until STATE is SS_CONN_READY a connection holds only this struct, one
 * request and at most PROTO_MAX_PREAUTH_PAYLOAD bytes of payload:
 * anything larger (receive buffers and the like) must wait for
 * authentication, so that unauthenticated peers cost constant memory.
 */
struct ss_conn {
  struct ss_loop *loop;
  struct ss_conn *prev, *next;
  struct ss_conn *uprev, *unext; /* loop->unauth_* while not READY */
  struct ss_conn *fprev, *fnext; /* loop->frames_* while IN_FRAMES */
  int fd;
  char peer[PROTO_ADDR_MAX + 1];
  unsigned refs;
  enum ss_conn_state state;
  bool in_unauth;       /* on the loop's unauthenticated list */
  uint64_t deadline_ms; /* CLOCK_MONOTONIC: end of the handshake */
  bool in_frames;       /* READY, part of a frame received */
  uint64_t progress_ms; /* loop->now_ms when its last bytes came */
  /* The handshake's state (SS_CONN_AUTH). */
  struct auth_server auth;
  /* An MDS's (AUTH.crole): the epoch its HELLO claimed (handshake.c). */
  uint64_t mds_epoch;
  bool closing;          /* shut down: no more reads or replies */
  bool close_after_send; /* a fatal error reply is queued */
  bool paused;           /* at a bound: reading waits for replies */
  bool recv_inflight;
  bool send_inflight;
  struct ss_op recv_op;
  struct ss_op send_op;
  uint8_t hdrbuf[PROTO_HEADER_SIZE];
  uint32_t got;        /* bytes of the current header or payload */
  struct ss_req *rreq; /* request whose payload is being received */
  unsigned nreqs;
  uint64_t req_bytes;
  struct ss_req *sendq_head, *sendq_tail;
  /* Sending: the first SEND_NREQS replies of the queue are in the
   * kernel's hands, through SEND_MSG and SIOV (SS_SEND_IOV entries,
   * allocated at the first send of more than one reply).
   */
  unsigned send_nreqs;
  struct msghdr send_msg;
  struct iovec *siov;
  bool in_flush; /* on loop->flush_head (holding a reference) */
  struct ss_conn *flush_next;
  /* Receiving, once READY: RBUF (SS_RECV_BUF bytes, allocated at the
   * first recv after authentication) holds received bytes not yet taken
   * in [ROFF, RLEN).  RECV_RBUF: the recv in flight fills RBUF (else
   * HDRBUF or RREQ's payload).  PARSING: conn_parse is taking frames
   * from RBUF, so conn_recv waits for it to finish.
   */
  uint8_t *rbuf;
  uint32_t rlen, roff;
  bool recv_rbuf;
  bool parsing;
};

extern void ss_conns_init (struct ss_loop *loop);
extern int ss_conn_new (struct ss_loop *loop, int fd);
extern void ss_conns_stop (struct ss_loop *loop);
extern void ss_conns_flush (struct ss_loop *loop);
extern void ss_conn_close (struct ss_loop *loop, struct ss_conn *c);

/* ---- admit.c ---- */

extern struct ss_conn *ss_admit_to_drop (struct ss_loop *loop);
extern struct ss_conn *ss_admit_hs_overdue (struct ss_loop *loop);
extern struct ss_conn *ss_admit_frame_overdue (struct ss_loop *loop);
extern void ss_admit_unauth_add (struct ss_loop *loop, struct ss_conn *c);
extern void ss_admit_unauth_remove (struct ss_loop *loop, struct ss_conn *c);
extern int ss_admit_authenticated (struct ss_loop *loop, struct ss_conn *c);
extern bool ss_admit_at_bounds (const struct ss_conn *c);
extern void ss_admit_frame_progress (struct ss_loop *loop, struct ss_conn *c);
extern void ss_admit_frame_untrack (struct ss_loop *loop, struct ss_conn *c);
extern void ss_admit_stop (struct ss_loop *loop);

/* ---- handshake.c ---- */

extern bool ss_handshake_order (struct ss_loop *loop, struct ss_conn *c,
                                struct ss_req *r);
extern void ss_req_hello (struct ss_loop *loop, struct ss_req *r);
extern void ss_req_auth (struct ss_loop *loop, struct ss_req *r);
extern int ss_mds_epoch_load (struct ss_loop *loop, struct ss_index *idx);
extern bool ss_mds_epoch_current (struct ss_loop *loop, struct ss_req *r);
extern bool ss_mds_epoch_stale (struct ss_ctx *ctx, uint64_t epoch,
                                const char *what);

/* ---- segments.c ---- */

enum {
  SS_SEG_NEW = 1,      /* slot being punched and recorded */
  SS_SEG_RECORD = 2,   /* newer epoch or generation being recorded */
  SS_SEG_DELETING = 4, /* being dropped from the index and punched */
};

/* The error (negated) ss_seg_prepare_write and ss_seg_raise return when
 * a request's segment index contradicts the recorded one: answered as
 * PROTO_EINVAL with both indexes named.
 */
#define SS_EINDEX EDOM

/* A segment present in the store, mirrored from the index. */
struct ss_seg {
  struct ss_seg *hnext;
  uint64_t id;
  uint64_t volume;
  uint64_t epoch; /* durable in the index */
  uint64_t gen;   /* durable in the index */
  uint64_t index; /* durable in the index; SS_INDEX_NONE: not known */
  uint32_t slot;
  uint8_t state;
  unsigned busy;          /* SS_SEG_* */
  uint64_t new_epoch;     /* being recorded */
  uint64_t new_gen;       /* being recorded */
  uint64_t new_index;     /* being recorded */
  struct ss_pull *pull;   /* a SEG_PULL copying into it, or NULL */
  struct ss_track *track; /* recent writes, for a pull, or NULL */
  unsigned io_inflight;
  bool del_committed;
  struct ss_waiter *wait_head, *wait_tail;
  struct ss_waiter *del_waiter; /* resumed when the delete completes */
  struct ss_op op;
  struct ss_index_op iop;
};

extern int ss_segs_init (struct ss_loop *loop);
extern void ss_segs_free (struct ss_loop *loop);
extern int ss_segs_load (struct ss_loop *loop, struct ss_index *idx);
extern struct ss_seg *ss_seg_lookup (struct ss_loop *loop, uint64_t id);
extern int ss_index_errno (struct ss_loop *loop, int err);
extern int ss_seg_prepare_write (struct ss_loop *loop,
                                 const struct proto_seg_io *io, bool create,
                                 struct ss_waiter *w, struct ss_seg **segp);
extern int ss_seg_raise (struct ss_loop *loop, uint64_t id, uint64_t volume,
                         uint64_t epoch, uint64_t gen, uint64_t index,
                         bool create, struct ss_waiter *w,
                         struct ss_seg **segp);
extern void ss_seg_wake (struct ss_loop *loop, struct ss_seg *seg);
extern struct ss_seg *ss_seg_get_readable (struct ss_loop *loop, uint64_t id,
                                           bool *gone);
extern void ss_seg_io_end (struct ss_loop *loop, struct ss_seg *seg);
extern int ss_seg_delete (struct ss_loop *loop, uint64_t id,
                          struct ss_waiter *w, struct ss_index_op *iop);

/* ---- req-io.c ---- */

extern void ss_req_read (struct ss_loop *loop, struct ss_req *r);
extern void ss_req_write (struct ss_loop *loop, struct ss_req *r);
extern void ss_req_trim (struct ss_loop *loop, struct ss_req *r);
extern void ss_req_flush (struct ss_loop *loop, struct ss_req *r);

/* ---- req-repair.c ---- */

extern void ss_req_set_gen (struct ss_loop *loop, struct ss_req *r);
extern void ss_req_hash (struct ss_loop *loop, struct ss_req *r);
extern void ss_req_seg_list (struct ss_loop *loop, struct ss_req *r);

/* ---- req-rebuild.c ---- */

extern int ss_tables_load (struct ss_loop *loop, struct ss_index *idx);
extern void ss_tables_free (struct ss_loop *loop);
extern void ss_req_tables_put (struct ss_loop *loop, struct ss_req *r);
extern void ss_req_tables_get (struct ss_loop *loop, struct ss_req *r);
extern void ss_req_describe (struct ss_loop *loop, struct ss_req *r);

/* ---- fences.c ---- */

extern int ss_fences_load (struct ss_loop *loop, struct ss_index *idx);
extern void ss_fences_free (struct ss_loop *loop);
extern uint64_t ss_fence_get (struct ss_loop *loop, uint64_t volume);
extern void ss_writes_begin (struct ss_loop *loop, struct ss_req *r);
extern void ss_writes_end (struct ss_loop *loop, struct ss_req *r);
extern int ss_fence_raise (struct ss_loop *loop, uint64_t volume,
                           uint64_t epoch);
extern void ss_barrier_wait (struct ss_loop *loop, struct ss_barrier *b);

/* ---- req-fence.c ---- */

extern void ss_req_fence (struct ss_loop *loop, struct ss_req *r);
extern void ss_mds_fences_apply (struct ss_loop *loop);

/* ---- track.c ---- */

extern void ss_ranges_add (struct ss_ranges *r, uint32_t offset,
                           uint32_t length);
extern bool ss_ranges_next_gap (const struct ss_ranges *r, uint32_t pos,
                                uint32_t end, uint32_t *s, uint32_t *e);
extern void ss_ranges_free (struct ss_ranges *r);
extern void ss_track_start (struct ss_loop *loop, struct ss_seg *seg);
extern void ss_track_mark (struct ss_loop *loop, struct ss_seg *seg,
                           uint64_t gen, uint32_t offset, uint32_t length);
extern void ss_track_take (struct ss_loop *loop, struct ss_seg *seg,
                           uint64_t gen, struct ss_ranges *out);
extern void ss_track_drop (struct ss_loop *loop, struct ss_seg *seg);

/* ---- gone.c ---- */

extern int ss_gone_load (struct ss_loop *loop, struct ss_index *idx);
extern void ss_gone_free (struct ss_loop *loop);
extern bool ss_gone_has (const struct ss_loop *loop, uint64_t id);
extern void ss_gone_add (struct ss_loop *loop, uint64_t id);
extern void ss_gone_remove (struct ss_loop *loop, uint64_t id);

/* ---- delete.c ---- */

extern void ss_req_delete (struct ss_loop *loop, struct ss_req *r);
extern void ss_mds_deletes_start (struct ss_loop *loop);

/* ---- work.c ---- */

/* A job for a worker thread: RUN runs on a worker, then DONE is posted
 * to the ring thread.  The submitter owns the job throughout.
 */
struct ss_work {
  void (*run) (struct ss_work *w);
  struct ss_msg done;
  struct ss_work *next;
};

extern int ss_workq_new (struct ss_loop *loop, const char *name,
                         unsigned nthreads, struct ss_workq **out);
extern void ss_workq_submit (struct ss_workq *q, struct ss_work *w);
extern void ss_workq_free (struct ss_workq *q);

/* ---- pull.c ---- */

/* A pull, from the SEG_PULL's arrival to its reply.
 *
 * Lock order: LOCK is a leaf.  Fields marked "ring" belong to the ring
 * thread, "worker" to the worker running the copy; the COPY_* request
 * fields are written by the worker before it posts COPY_MSG and read by
 * the ring thread after (the post orders them).
 */
struct ss_pull {
  struct ss_pull *prev, *next; /* ring: loop->pulls */
  struct ss_loop *loop;
  struct ss_req *req; /* ring: answered at the end */
  struct proto_pull p;
  struct ss_waiter wait; /* ring */
  struct ss_seg *seg;    /* ring: attached, io_inflight held; or NULL */
  bool finishing;        /* ring: recording the epoch and generation */

  /* Fixed once the pull is queued. */
  int data_fd;
  uint64_t slot_pos; /* the slot's offset in the data file */
  uint32_t segment_size;
  const uint8_t *uuid; /* this server's */
  const void *zeros;   /* PROTO_MAX_DATA zero bytes */
  int debug;

  /* Ring: client writes since the pull began (and those its segment's
   * tracker saw before, track.c).
   */
  struct ss_ranges dirty;

  /* Ring: the chunk being written. */
  bool copying;
  uint32_t copy_off, copy_len;
  const uint8_t *copy_buf; /* worker's */
  bool copy_zero;
  uint32_t cpos;       /* next byte to consider */
  uint32_t wpos, wend; /* the write or punch in flight */
  struct ss_op op;
  struct ss_msg copy_msg;

  /* Shared, under LOCK. */
  pthread_mutex_t lock;
  pthread_cond_t cond; /* CLOCK_MONOTONIC; COPY_DONE set, or CANCEL */
  bool cancel;
  const char *why; /* why it was cancelled (static) */
  int fd;          /* the worker's connection to the source, or -1 */
  bool copy_done;
  int copy_err;

  /* Worker: its result, read by the ring thread after the job. */
  struct ss_work work;
  int err;
  int sync_err; /* the data file's fdatasync failed: the store fails */
  char errmsg[PROTO_ERRMSG_MAX + 1];
  uint64_t read_bytes; /* asked of the source */
  uint64_t start_ns;   /* monotonic_ns () when the copy started */

  uint64_t written_bytes; /* ring: copy data written or punched */
};

extern void ss_req_pull (struct ss_loop *loop, struct ss_req *r);

/* ---- pull-ctl.c ---- */

extern bool ss_pull_copy_overlaps (const struct ss_pull *p, uint32_t offset,
                                   uint32_t length);
extern void ss_pull_mark (struct ss_pull *p, uint32_t offset, uint32_t length);
extern void ss_pull_cancel (struct ss_pull *p, const char *why);
extern void ss_pulls_cancel_all (struct ss_loop *loop);

#endif /* TESSERA_STORESRV_INTERNAL_H */

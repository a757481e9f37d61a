/* tessera-storesrv internals, sectioned by the file that defines them.
 *
 * Threads: the ring thread (main.c runs loop.c's event loop) owns every
 * connection, request and segment entry and the store's free-slot list;
 * the index worker (index.c) owns the LMDB write transactions; the MDS
 * client (mds-client.c) owns its connection to the MDS.  They exchange
 * work only through the locked queues of index.c and mds-client.c, each
 * paired with an eventfd that the ring reads.
 */

#ifndef TESSERA_STORESRV_INTERNAL_H
#define TESSERA_STORESRV_INTERNAL_H

#include <assert.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <liburing.h>

#include "protocol.h"

#define SS_PROGRAM "tessera-storesrv"

/* The struct of TYPE whose MEMBER is at PTR. */
#define SS_CONTAINER_OF(ptr, type, member) \
  ((type *)(void *)((char *)(ptr)-offsetof (type, member)))

/* Requests one connection may have in flight (received, not yet fully
 * answered) and the payload and reply bytes they may hold; reading stops
 * while a connection is at either bound.
 */
#define SS_CONN_MAX_REQS 64
#define SS_CONN_MAX_BYTES (64u * 1024 * 1024)

/* Segment sizes a cluster may use (DESIGN.md "Data model"). */
#define SS_MIN_SEGMENT_SIZE (64u * 1024)
#define SS_MAX_SEGMENT_SIZE (64u * 1024 * 1024)

struct ss_loop;
struct ss_store;
struct ss_index;
struct ss_mds;

/* ---- main.c ---- */

/* The daemon: options and the parts built from them.  Options are set
 * before any thread starts and are read-only afterwards.
 */
struct ss_ctx {
  char *data_dir;      /* --data, absolute */
  char *mds_addr;      /* --mds */
  char *listen_addr;   /* --listen (unix: paths made absolute) */
  char *advertise_opt; /* --advertise or NULL */
  char *zone;          /* --zone, "" if unset */
  uint64_t size;       /* --size: capacity when formatting */
  bool size_set;
  bool foreground;
  char *pidfile; /* absolute, or NULL */
  bool exit_with_parent;

  /* -D storesrv.FLAG=N */
  int debug_requests; /* log every request */
  int debug_index;    /* log every index commit */
  int debug_mds;      /* log every heartbeat */

  char advertise[PROTO_ADDR_MAX + 1]; /* what the MDS tells plugins */
  int listen_fd;
  int exit_status; /* set with __atomic: EXIT_FAILURE after a fatal
                         * error found by another thread */

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
  uint64_t capacity;        /* bytes: whole slots once formatted */
  uint32_t nslots;
  uint32_t *free_slots; /* stack, lowest slot on top */
  uint32_t nfree;
  uint64_t used; /* bytes in allocated slots */
};

extern int ss_store_open (const char *dir, uint64_t size,
                          struct ss_store **out);
extern int ss_store_format (struct ss_store *st, const uint8_t cluster_uuid[16],
                            uint32_t segment_size);
extern void ss_store_close (struct ss_store *st);
extern char *ss_store_index_path (const struct ss_store *st);
extern int ss_store_slots_init (struct ss_store *st, const uint8_t *used_map);
extern int ss_store_slot_alloc (struct ss_store *st, uint32_t *slot);
extern void ss_store_slot_free (struct ss_store *st, uint32_t slot);
extern uint64_t ss_store_slot_offset (const struct ss_store *st, uint32_t slot);
extern uint64_t ss_store_used (const struct ss_store *st);
extern int ss_segment_size_valid (uint32_t segment_size);

/* ---- index.c ---- */

/* One index record: segment id -> where and when it was written. */
struct ss_index_rec {
  uint64_t segment;
  uint32_t slot;
  uint64_t volume;
  uint64_t epoch; /* last epoch that wrote the segment */
  uint8_t state;  /* SS_SEG_STATE_* */
};

#define SS_SEG_STATE_OK 0

enum ss_index_op_type {
  SS_INDEX_PUT,  /* insert or replace REC */
  SS_INDEX_DEL,  /* remove REC.segment (absent: success) */
  SS_INDEX_SYNC, /* completes once every earlier op has committed */
};

/* An index update, embedded in its owner.  The ring thread fills TYPE,
 * REC and DONE and calls ss_index_submit; the worker owns the op until it
 * hands it back, then the ring thread calls DONE with ERR set (0 or
 * -errno).
 */
struct ss_index_op {
  enum ss_index_op_type type;
  struct ss_index_rec rec;
  int err;
  void (*done) (struct ss_loop *loop, struct ss_index_op *op);
  struct ss_index_op *next;
};

extern int ss_index_wipe (const char *path);
extern int ss_index_open (const char *path, uint32_t nslots, int *debug,
                          struct ss_index **out);
extern int ss_index_load (struct ss_index *idx,
                          int (*fn) (void *arg, const struct ss_index_rec *rec),
                          void *arg);
extern int ss_index_start (struct ss_index *idx);
extern int ss_index_eventfd (const struct ss_index *idx);
extern void ss_index_submit (struct ss_index *idx, struct ss_index_op *op);
extern struct ss_index_op *ss_index_take_done (struct ss_index *idx);
extern void ss_index_close (struct ss_index *idx);

/* ---- mds-client.c ---- */

extern int ss_mds_new (struct ss_ctx *ctx, struct ss_mds **out);
extern int ss_mds_start (struct ss_mds *m);
extern int ss_mds_wait_registered (struct ss_mds *m, const sigset_t *sigs,
                                   struct proto_register_reply *reply);
extern void ss_mds_store_ready (struct ss_mds *m);
extern int ss_mds_eventfd (const struct ss_mds *m);
extern int ss_mds_take_deletes (struct ss_mds *m, uint64_t **ids, size_t *n);
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

struct ss_conn;

/* A segment entry (segments.c), a wait list entry and a delete batch
 * (req-misc.c) are declared below.
 */
struct ss_seg;

struct ss_seg_table {
  struct ss_seg **buckets;
  size_t nbuckets; /* power of two */
  size_t count;
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

  struct ss_op cancel_op;

  struct ss_conn *conns; /* doubly linked */
  unsigned nconns;
  struct ss_seg_table segs;
  const void *zeros; /* PROTO_MAX_DATA read-only zero bytes */
  bool stopping;
  bool cancelled; /* the loop's own reads are being cancelled */
};

#define SS_ASSERT_RING(loop) \
  assert (pthread_equal (pthread_self (), (loop)->thread))

extern int ss_loop_new (struct ss_ctx *ctx, struct ss_loop **out);
extern int ss_loop_run (struct ss_loop *loop);
extern void ss_loop_free (struct ss_loop *loop);
extern struct io_uring_sqe *ss_get_sqe (struct ss_loop *loop);
extern void ss_index_submit_op (struct ss_loop *loop, struct ss_index_op *op);

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

/* ---- conn.c ---- */

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
  int stage;     /* req-io.c / req-misc.c step */

  /* Flush (req-misc.c). */
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

/* A client connection.  REFS counts the open state, each ring operation
 * on the socket and each request; the last ss_conn_put frees it.
 */
struct ss_conn {
  struct ss_loop *loop;
  struct ss_conn *prev, *next;
  int fd;
  char peer[PROTO_ADDR_MAX + 1];
  unsigned refs;
  bool hello_done;
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
};

extern int ss_conn_new (struct ss_loop *loop, int fd);
extern void ss_conn_close (struct ss_loop *loop, struct ss_conn *c);
extern void ss_req_reply (struct ss_loop *loop, struct ss_req *r,
                          const void *data, uint32_t len, void *owned);
extern void ss_req_error (struct ss_loop *loop, struct ss_req *r,
                          uint32_t status, const char *fmt, ...)
    __attribute__ ((format (printf, 4, 5)));
extern void ss_req_fatal (struct ss_loop *loop, struct ss_req *r,
                          uint32_t status, const char *fmt, ...)
    __attribute__ ((format (printf, 4, 5)));
extern void ss_req_add_bytes (struct ss_req *r, uint64_t bytes);

/* ---- segments.c ---- */

enum {
  SS_SEG_NEW = 1,      /* slot being punched and recorded */
  SS_SEG_EPOCH = 2,    /* newer epoch being recorded */
  SS_SEG_DELETING = 4, /* being dropped from the index and punched */
};

/* A segment present in the store, mirrored from the index. */
struct ss_seg {
  struct ss_seg *hnext;
  uint64_t id;
  uint64_t volume;
  uint64_t epoch; /* durable in the index */
  uint32_t slot;
  uint8_t state;
  unsigned busy;      /* SS_SEG_* */
  uint64_t new_epoch; /* being recorded */
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
extern int ss_seg_prepare_write (struct ss_loop *loop, uint64_t id,
                                 uint64_t volume, uint64_t epoch, bool create,
                                 struct ss_waiter *w, struct ss_seg **segp);
extern struct ss_seg *ss_seg_get_readable (struct ss_loop *loop, uint64_t id);
extern void ss_seg_io_end (struct ss_loop *loop, struct ss_seg *seg);
extern int ss_seg_delete (struct ss_loop *loop, uint64_t id,
                          struct ss_waiter *w);

/* ---- req-io.c ---- */

extern void ss_req_read (struct ss_loop *loop, struct ss_req *r);
extern void ss_req_write (struct ss_loop *loop, struct ss_req *r);
extern void ss_req_trim (struct ss_loop *loop, struct ss_req *r);

/* ---- req-misc.c ---- */

extern void ss_req_hello (struct ss_loop *loop, struct ss_req *r);
extern void ss_req_flush (struct ss_loop *loop, struct ss_req *r);
extern void ss_req_delete (struct ss_loop *loop, struct ss_req *r);
extern void ss_mds_deletes_start (struct ss_loop *loop);

#endif /* TESSERA_STORESRV_INTERNAL_H */

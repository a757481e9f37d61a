/* nbdkit-tessera-plugin: shared declarations.
 *
 * One nbdkit process serves one volume.  Every NBD connection shares the
 * single struct volume opened in .get_ready (plugin.c): one writer lease,
 * one map cache, one range lock and one set of storage-server
 * connections, so that multi-conn is coherent.  Sections follow the .c
 * file that defines them; the modules of libtesseraplugin.la, which need
 * neither nbdkit nor a volume, have a header each instead.
 *
 * A file calls only files below it in this list, never one above:
 *   plugin.c, volume.c (opens and closes the rooms below), io.c,
 *   flush.c, map.c, lease.c, epoch.c, servers.c, ssconn.c, dirty.c,
 *   mds-session.c, then libtesseraplugin.la: rangelock.c,
 *   epoch-slots.c, map-entry.c, request.c.
 *
 * Lock order (outer first):
 *   volume.lease_lock (held across MDS requests, volume.c)
 *   volume.flush_lock
 *   rangelock.lock (never held across other calls)
 *   volume.lost_lock (held across MDS requests, flush.c)
 *   volume.map_lock (never held across an MDS request)
 *   volume.epoch_rw
 *   volume.servers_lock
 *   volume.mds_lock
 *   volume.epoch_lock (never held across other calls)
 *   ss_conn.send_lock, then ss_server.lock (never held across other
 *   calls), ss_conn.lock, then ss_batch.lock
 * Readers of the map cache and of the server table take no lock: both
 * publish immutable objects through atomic pointers, and replaced
 * objects are kept on a retired list until the volume is freed.
 */

#ifndef TESSERA_NBDPLUGIN_INTERNAL_H
#define TESSERA_NBDPLUGIN_INTERNAL_H

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "addrlist.h"
#include "buf.h"
#include "protocol.h"

/* The modules of libtesseraplugin.la, each with its own header: */
#include "epoch-slots.h" /* epoch-slots.c */
#include "map-entry.h"   /* map-entry.c: struct seg */
#include "rangelock.h"   /* rangelock.c */
#include "request.h"     /* request.c: request deadlines */

/* ---- plugin.c ---- */

#define TESSERA_DEFAULT_MDS "127.0.0.1:7420"
#define TESSERA_DEFAULT_CONNECTIONS 2
#define TESSERA_MAX_CONNECTIONS 64
#define TESSERA_DEFAULT_TIMEOUT 30       /* seconds */
#define TESSERA_MAX_TIMEOUT 86400        /* seconds */
#define TESSERA_DEFAULT_EPOCH_INTERVAL 2 /* seconds */
#define TESSERA_DEFAULT_OPEN_TIMEOUT 120 /* seconds */

/* Configuration, set by .config and checked by .config_complete. */
struct tessera_config {
  const char *mds;         /* mds=ADDR[,ADDR...], checked */
  char *key_file;          /* key-file=FILE (absolute), or NULL */
  bool tls;                /* tls=true */
  const char *volume;      /* volume=NAME */
  bool readonly;           /* readonly=true */
  unsigned connections;    /* connections=N, per storage server */
  int timeout_ms;          /* timeout=SECONDS, in milliseconds */
  unsigned epoch_interval; /* epoch-interval=SECONDS */
  unsigned open_timeout;   /* open-timeout=SECONDS */
  bool map_prefetch;       /* map-prefetch=false turns it off */
};

/* Debug flags (-D tessera.FLAG=1).  Defined NBDKIT_DLL_PUBLIC in plugin.c
 * so that nbdkit can find and set them.
 */
extern int tessera_debug_map;   /* map cache: fetch, alloc, refresh */
extern int tessera_debug_io;    /* every request and its pieces */
extern int tessera_debug_conn;  /* storage-server connections */
extern int tessera_debug_lease; /* lease renewals, MDS reconnects */

/* ---- ssconn.c ---- */

struct ss_server;
struct ss_conn;
struct volume;

/* A set of requests that one caller sends together and waits for
 * together.  Lives on the caller's stack.
 */
struct ss_batch {
  pthread_mutex_t lock; /* protects the fields below, requests' err */
  pthread_cond_t cond;  /* signalled when the last request completes or
                         * a socket is handed over */
  unsigned pending;     /* submitted, not completed */
  int timeout_ms;       /* per request, from ss_batch_wait */
  /* Within a request: the end of this round of it (sending, connecting,
   * waiting), the request's deadline but at least a quarter of the
   * timeout from ss_batch_init; 0 outside requests.
   */
  uint64_t round_deadline;
  bool sleeping; /* its waiter sleeps on cond */
  /* Sockets whose reader role was handed to the sleeping waiter. */
  struct ss_conn *handed;
};

/* Size of a request's error message, its NUL included. */
#define SS_ERRMSG_SIZE 128

/* One request to one storage server.  The caller fills the fields marked
 * "in", the completion fills "out".
 */
struct ss_request {
  uint8_t opcode;           /* in: PROTO_OP_SEG_{READ,WRITE,TRIM,FLUSH} */
  uint16_t flags;           /* in: PROTO_FLAG_FUA */
  struct proto_seg_io io;   /* in: unused for SEG_FLUSH */
  void *data;               /* in: SEG_WRITE source, SEG_READ destination */
  struct ss_server *server; /* in */
  /* in: if SERVER is suspect (ss_server_suspect), wait for it a quarter
   * of the timeout only, so that reporting it leaves time to spare.
   */
  bool hurry;
  int err;                     /* out: 0 or -errno */
  bool answered;               /* out: ERR is the server's answer */
  char errmsg[SS_ERRMSG_SIZE]; /* out: the server's message, or "" */

  /* Private to ssconn.c. */
  struct ss_batch *batch;
  struct ss_conn *conn;
  uint64_t tag;
  uint64_t gen;            /* the connection's generation when sent */
  uint64_t incarnation;    /* out: of the server process that took it */
  int state;               /* REQ_* in ssconn.c, under conn->lock */
  bool hurried;            /* waited for a quarter of the timeout */
  bool done;               /* completed, under batch->lock */
  struct ss_request *next; /* in conn->inflight, or a send list */
};

/* Create and free the sockets of a server (servers.c creates it). */
extern int ss_conns_new (struct ss_server *s, unsigned nconns);
extern void ss_conns_free (struct ss_server *s);
extern bool ss_server_suspect (struct ss_server *s);
/* Close every connection of S and join its helper threads. */
extern void ss_server_disconnect (struct ss_server *s);

/* A connection attempt found that the server restarted and lost writes
 * that are not reported yet: the request was not sent.  Not a fault of
 * the replica; settle the lost sets (flush_settle_lost) and try again.
 * No storage server sends it (it is no PROTO_E* status).
 */
#define SS_ERESTARTED ERESTART

/* The running request ran out of time before the server could answer
 * within a quarter of the timeout: its fate is unknown, but the server
 * is not to blame (a quarter of the timeout is the shortest silence
 * that counts a server failed).  Not a fault of the replica: the
 * request fails, nothing is reported.  No storage server sends it.
 */
#define SS_EOUTOFTIME ETIME

extern void ss_batch_init (struct ss_batch *b, int timeout_ms);
extern void ss_batch_destroy (struct ss_batch *b);
extern void ss_submit (struct ss_batch *b, struct ss_request *reqs, size_t n);
extern void ss_batch_wait (struct ss_batch *b, struct ss_request *reqs,
                           size_t n);

/* ---- servers.c ---- */

/* One storage server: its sockets (ssconn.c) and its dirty and lost
 * sets (dirty.c, flush.c).  Created and owned by the volume's server
 * table (servers.c); never freed while the volume is open.
 */
struct ss_server {
  uint32_t id;
  uint8_t uuid[16]; /* from SERVER_LIST; checked against its HELLO */

  pthread_mutex_t lock; /* protects addr, incarnation and the sets */
  char addr[PROTO_ADDR_MAX + 1];
  /* The incarnation (HELLO) of the server process that took the writes
   * of the dirty set; 0 until the first handshake, and always 0 with
   * servers that send none.
   */
  uint64_t incarnation;
  /* Segment indexes written or trimmed on this server since the last
   * flush took them (see flush.c).
   */
  uint64_t *dirty;
  size_t ndirty, dirty_cap;
  /* Segment indexes whose writes an earlier incarnation took and never
   * made durable: their replicas here must be reported failed before
   * anything else is read from or acknowledged for this server
   * (flush_settle_lost).  NPENDING counts them until they are settled,
   * including those a settler has taken out of LOST.
   */
  uint64_t *lost;
  size_t nlost, lost_cap, npending;
  /* Segments a flush in progress took from the dirty set (flush.c),
   * and whether a restart since has lost them.
   */
  size_t ntaken;
  bool taken_lost;
  /* The volume's count of lost segments not yet settled, over every
   * server (its cheap check).
   */
  atomic_uint *lost_pending;

  atomic_uint rr; /* round-robin over conns */
  /* CLOCK_MONOTONIC ns until which the server is suspect: readers try
   * it last (ssconn.c).
   */
  _Atomic uint64_t suspect_until;
  unsigned nconns;
  struct ss_conn *conns;
  int timeout_ms;
};

/* The server table, replaced whole when SERVER_LIST is fetched again. */
struct server_table {
  struct server_table *retired_next;
  size_t n;
  struct ss_server *s[];
};

extern void servers_init (struct volume *v);
extern int servers_load (struct volume *v);
extern void servers_disconnect (struct volume *v);
extern void servers_free (struct volume *v);
extern int servers_get (struct volume *v, uint32_t id, struct ss_server **out);
extern struct ss_server *servers_cached (struct volume *v, uint32_t id);
extern void servers_for_each (struct volume *v,
                              void (*f) (struct ss_server *, void *),
                              void *opaque);

/* ---- dirty.c ---- */

extern void dirty_set_sort (uint64_t *set, size_t n);
extern size_t dirty_set_unique (uint64_t *set, size_t n);
extern int dirty_set_add (uint64_t **set, size_t *n, size_t *cap,
                          uint64_t index);
extern bool dirty_lost_pending_locked (const struct ss_server *s);
extern void dirty_lost_account_locked (struct ss_server *s, bool was);
extern int dirty_mark (struct ss_server *s, uint64_t index,
                       uint64_t incarnation);
extern int dirty_check_incarnation (struct ss_server *s, uint64_t incarnation);

/* ---- mds-session.c ---- */

extern void mds_session_init (struct volume *v);
extern int mds_session_connect (struct volume *v);
extern void mds_session_destroy (struct volume *v);

/* How a request to the MDS ended (mds_session_request). */
enum {
  MDS_ANSWERED, /* the MDS answered: the result is its status */
  MDS_NOT_SENT, /* no connection: the MDS never saw the request */
  MDS_UNKNOWN,  /* sent, but the connection failed before the answer */
};
extern int mds_session_request (struct volume *v, uint8_t opcode,
                                const struct proto_wbuf *req, bool once,
                                int *outcome, void **reply, uint32_t *reply_len,
                                char *errmsg, size_t errlen);
extern int mds_session_call (struct volume *v, uint8_t opcode,
                             const struct proto_wbuf *req, void **reply,
                             uint32_t *reply_len, char *errmsg, size_t errlen);

/* ---- volume.c ---- */

/* Map entries are cached in chunks of PROTO_MAP_MAX segments, each
 * fetched with one MAP_GET.  A NULL entry in a loaded chunk is a hole.
 */
struct map_chunk {
  _Atomic (struct seg *) e[PROTO_MAP_MAX];
};

/* An MDS request about the map in flight (map.c). */
struct map_op;


struct volume {
  /* Fixed once volume_open has returned. */
  const struct tessera_config *cfg;
  char name[PROTO_NAME_MAX + 1];
  uint64_t id;
  uint64_t size;
  uint32_t segment_size;
  unsigned seg_shift;
  uint64_t nsegments;
  uint64_t nchunks;
  uint64_t prefetch_next; /* the next chunk map_prefetch looks at */

  /* The writer lease (volume_take_lease), taken by the first
   * connection opened read-write; lease_lock serializes taking it.
   * LEASED: VOL_OPEN read-write succeeded, so the lease must be renewed
   * and released; set once.  RW: moreover the map cache was re-read
   * since, so its holes are the truth: writes are allowed and reads
   * trust cached holes; set once, after LEASED.  Until RW, the volume
   * is served as a read-only open is.  lease_ms (under stop_lock) and
   * min_copies are set before LEASED, the epoch (below) too.
   */
  pthread_mutex_t lease_lock;
  atomic_bool leased;
  atomic_bool rw;
  uint32_t lease_ms; /* 0 until leased */
  /* A write, trim or zero must reach this many ok replicas of every
   * segment, or it fails (1 from an MDS that does not say).
   */
  uint32_t min_copies;

  /* MDS session (mds-session.c), reconnected after a transport error,
   * to the next address of the list when one fails or is a standby.
   */
  pthread_mutex_t mds_lock; /* protects mds, mds_addrs, mds_used */
  struct proto_client *mds;
  struct addrlist mds_addrs; /* cfg->mds; current: the one to use */
  int mds_used;              /* index of the address last connected, or -1 */

  /* Map cache.  map_lock protects entry replacement, the retired list
   * and the MDS requests in flight, but is never held across one: a
   * request that needs the answer of one in flight (the same chunk
   * fetch, an allocation covering its segments, the same failed
   * replica) waits on map_cond for it instead of asking again.
   * Readers do not take it.
   */
  pthread_mutex_t map_lock;
  pthread_cond_t map_cond;              /* broadcast when an op ends */
  struct map_op *map_ops;               /* in flight, under map_lock */
  _Atomic (struct map_chunk *) *chunks; /* nchunks pointers */
  struct seg *retired;                  /* under map_lock */
  /* Orders MAP requests and answered failure reports: each takes the
   * next ticket, a MAP request before it is sent, a report once it is
   * answered.  An entry asked for before a report was answered may
   * predate it.
   */
  _Atomic uint64_t map_seq;

  /* Storage servers by id (servers.c). */
  pthread_mutex_t servers_lock; /* serializes refreshes */
  _Atomic (struct server_table *) servers;
  struct server_table *retired_tables; /* under servers_lock */

  struct rangelock rl;
  /* Segments with a write in doubt (doubt.c): DOUBTS holds NDOUBTS of
   * DOUBTS_CAP under doubt_lock; NDOUBTS is read without it to see
   * whether there are any.
   */
  pthread_mutex_t doubt_lock;
  struct doubt *doubts;
  size_t doubts_cap;
  _Atomic size_t ndoubts;
  pthread_mutex_t flush_lock; /* one flush at a time */
  /* Lost segments of restarted servers (flush.c): LOST_PENDING counts
   * those not settled yet; lost_lock serializes settling them.
   */
  atomic_uint lost_pending;
  pthread_mutex_t lost_lock;
  atomic_uint read_rr;    /* spreads reads over replicas */
  atomic_bool lease_lost; /* lease.c: fenced or expired, writes fail */

  /* Epochs (epoch.c).  EPOCH is the epoch that writes starting now
   * carry, and the lease's.  It changes only with epoch_rw held for
   * writing and epoch_lock held, so either lock is enough to read it.
   * epoch_rw is held for reading around every MDS request that names
   * the epoch (lease_writer_call), so that the MDS never sees an epoch
   * that a rotation has just replaced.
   */
  pthread_rwlock_t epoch_rw;
  pthread_mutex_t epoch_lock; /* protects epoch, slots, maybe_next,
                               * drained */
  pthread_cond_t epoch_cond;  /* broadcast when a slot drains */
  uint64_t epoch;
  struct epoch_slot slots[EPOCH_SLOTS];
  /* An EPOCH_NEXT went unanswered: the MDS may have moved the lease to
   * this epoch (0: none).
   */
  uint64_t maybe_next;
  /* The last epoch that epoch_drain saw drained: EPOCH_CLEAN may name
   * it once the flush that followed is done.
   */
  uint64_t drained;
  uint64_t last_rotation_ns; /* under flush_lock */
  atomic_bool epoch_written; /* a write began since the last rotation */
  atomic_bool unclean;       /* a write failed part way: never clean */

  /* Lease thread. */
  pthread_mutex_t stop_lock; /* protects stopping, wake, lease_ms */
  pthread_cond_t stop_cond;
  bool stopping;
  bool wake; /* the lease was taken: the thread starts renewing it */
  bool lease_thread_started;
  pthread_t lease_thread;
  bool opened; /* VOL_OPEN succeeded */
  bool closed; /* volume_close has run */
};

extern int volume_open (const struct tessera_config *cfg, struct volume **out);
extern int volume_start (struct volume *v);
extern int volume_take_lease (struct volume *v);
extern void volume_close (struct volume *v);
extern void volume_free (struct volume *v);


/* ---- epoch.c ---- */

extern void epoch_init (struct volume *v);
extern void epoch_destroy (struct volume *v);
extern uint64_t epoch_current (struct volume *v);
extern int epoch_begin (struct volume *v, uint64_t *epoch);
extern void epoch_end (struct volume *v, uint64_t epoch);
extern int epoch_rotate (struct volume *v, uint64_t *old, char *why,
                         size_t whylen);
extern void epoch_drain (struct volume *v, uint64_t epoch);
extern int epoch_clean (struct volume *v, uint64_t epoch);
extern int epoch_resolve (struct volume *v, uint64_t stale);

/* ---- lease.c ---- */

extern void lease_mark_lost (struct volume *v, const char *why);
extern int lease_writer_call (struct volume *v, uint8_t opcode,
                              void (*encode) (uint64_t epoch, void *opaque,
                                              struct proto_wbuf *wb),
                              void *opaque, void **reply, uint32_t *reply_len,
                              char *errmsg, size_t errlen);
extern void lease_renew (struct volume *v);

/* ---- map.c ---- */

extern int map_lookup (struct volume *v, uint64_t index,
                       const struct seg **out);
extern int map_reload (struct volume *v, uint64_t index,
                       const struct seg **out);
extern int map_recheck (struct volume *v, uint64_t start, uint64_t count);
extern int map_alloc (struct volume *v, uint64_t start, uint64_t needed,
                      uint64_t want);
extern int map_replica_failed (struct volume *v, const struct seg *seg,
                               uint32_t server);
extern void map_refresh (struct volume *v);
extern int map_revalidate (struct volume *v);
extern bool map_prefetch (struct volume *v, int budget_ms);
extern void map_init (struct volume *v);
extern void map_free (struct volume *v);

/* ---- doubt.c ---- */

extern void doubt_init (struct volume *v);
extern void doubt_free (struct volume *v);
extern int doubt_note (struct volume *v, uint64_t index, uint64_t segment,
                       uint64_t gen, uint32_t server);
extern int doubt_settle (struct volume *v, uint64_t index,
                         const struct seg **segp);

/* ---- io.c ---- */

extern int io_pread (struct volume *v, void *buf, uint32_t count,
                     uint64_t offset);
extern int io_pwrite (struct volume *v, const void *buf, uint32_t count,
                      uint64_t offset, bool fua);
extern int io_trim (struct volume *v, uint32_t count, uint64_t offset,
                    bool fua);
extern int io_write_zeroes (struct volume *v, uint32_t count, uint64_t offset,
                            bool fua);

/* Whether an error from a storage server means that replica is bad
 * (report it to the MDS) rather than a condition of the request.
 */
extern bool io_is_replica_fault (int err);

/* ---- flush.c ---- */

extern int flush_settle_lost (struct volume *v);
extern int flush_volume (struct volume *v, bool rotate);
struct nbdkit_extents;
extern int io_extents (struct volume *v, uint32_t count, uint64_t offset,
                       bool req_one, struct nbdkit_extents *extents);

#endif /* TESSERA_NBDPLUGIN_INTERNAL_H */

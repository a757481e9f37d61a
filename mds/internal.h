/* tessera-mds internals, sectioned by the file that defines them. */

#ifndef TESSERA_MDS_INTERNAL_H
#define TESSERA_MDS_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "catalog.h"
#include "protocol.h"

#define MDS_PROGRAM "tessera-mds"

/* Most connections served at once; more are refused with EAGAIN. */
#define MDS_MAX_CONNS 1024
/* Most garbage segments returned in one heartbeat reply. */
#define MDS_GARBAGE_BATCH 1024

/* What the MDS knows of a storage server beyond the catalog: memory only,
 * rebuilt from heartbeats after a restart.
 */
struct mds_server_state {
  uint32_t id;
  uint64_t last_heard_ns; /* CLOCK_MONOTONIC of the last register/heartbeat */
  uint64_t capacity;      /* as last reported */
  uint64_t used;          /* as last reported */
};

/* A writer's lease on a volume: memory only.  A lease record stays after
 * it expires, so the same writer may renew it until another writer takes
 * the volume (which bumps the epoch); VOL_CLOSE and VOL_DELETE drop it.
 */
struct mds_lease {
  uint64_t volume;
  uint64_t epoch;
  uint64_t expiry_ns; /* CLOCK_MONOTONIC */
};

/* One client connection, served by its own thread. */
struct mds_conn {
  struct mds *mds;
  int fd;                        /* owned; closed when the thread ends */
  bool hello_done;               /* connection thread only */
  uint32_t role;                 /* peer's HELLO role; connection thread only */
  char peer[PROTO_ADDR_MAX + 1]; /* for log messages */
  struct mds_conn *prev, *next;  /* in mds->conns; lock: mds->lock */
};

/* The daemon context, passed everywhere.
 *
 * Lock: LOCK protects every field below it.  Request handlers run with
 * it held (loop.c takes it around each call), so catalog-modifying
 * operations are serialized.  It is the only lock in the MDS; nothing
 * that may block on the network is done while holding it.
 */
struct mds {
  /* Configuration: set by main before any thread starts, then read-only. */
  const char *db_dir;
  const char *listen_addr;
  uint32_t lease_ms;
  uint32_t down_ms;
  uint32_t heartbeat_ms;
  int debug_requests; /* -D mds.requests=1: log every request */

  /* Set at start-up, read-only while serving. */
  catalog *cat;
  struct catalog_cluster cluster;
  int listen_fd;
  pthread_t accept_thread;
  uint64_t conn_count; /* connections accepted; accept thread only */

  pthread_mutex_t lock;
  pthread_cond_t conns_done; /* signalled when NCONNS drops to 0 */
  bool stopping;
  struct mds_conn *conns;
  size_t nconns;
  struct mds_server_state *servers; /* unordered */
  size_t nservers;
  struct mds_lease *leases; /* unordered */
  size_t nleases;
  uint64_t rng; /* placement's random state */
};

/* A reply being built by a request handler, sent by loop.c after the
 * handler returns and the lock is released.  STATUS PROTO_OK sends WB's
 * bytes; any other status sends MSG.
 */
struct mds_reply {
  uint32_t status;
  char msg[PROTO_ERRMSG_MAX + 1];
  struct proto_wbuf wb;
};

/* A request handler: decode PAYLOAD (LEN bytes), act, fill REP.  Called
 * with mds->lock held.  Returns 0 to keep the connection, or a negative
 * errno to close it after REP is sent (malformed payload).
 */
typedef int (*mds_handler) (struct mds *mds, struct mds_conn *conn,
                            const void *payload, uint32_t len,
                            struct mds_reply *rep);

/* daemon.c */
extern int mds_daemonize (int *ready_fd);
extern void mds_daemon_ready (int ready_fd);
extern int mds_write_pidfile (const char *path);
extern int mds_lock_db (const char *dir);
extern char *mds_absolute_path (const char *path);

/* loop.c */
extern int mds_serve_start (struct mds *mds);
extern int mds_serve_stop (struct mds *mds, int timeout_ms);
extern int mds_reply_error (struct mds_reply *rep, uint32_t status,
                            const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));
extern int mds_reply_errno (struct mds_reply *rep, int err, const char *fmt,
                            ...) __attribute__ ((format (printf, 3, 4)));
extern int mds_reply_bad (struct mds_reply *rep, int err, const char *what);

/* state.c */
extern uint64_t mds_now_ns (void);
extern int mds_server_heard (struct mds *mds, uint32_t id, uint64_t capacity,
                             uint64_t used);
extern const struct mds_server_state *mds_server_find (struct mds *mds,
                                                       uint32_t id);
extern bool mds_server_is_up (struct mds *mds, uint32_t id);
extern uint64_t mds_server_capacity (struct mds *mds,
                                     const struct catalog_server *s);
extern struct mds_lease *mds_lease_find (struct mds *mds, uint64_t volume);
extern int mds_lease_set (struct mds *mds, uint64_t volume, uint64_t epoch);
extern void mds_lease_drop (struct mds *mds, uint64_t volume);
extern bool mds_lease_active (struct mds *mds, uint64_t volume);
extern int mds_lease_check (struct mds *mds, uint64_t volume, uint64_t epoch,
                            struct mds_reply *rep);
extern int mds_leases_recover (struct mds *mds);
extern void mds_volume_info (struct mds *mds, const struct catalog_volume *v,
                             struct proto_volume_info *out);
extern int mds_reply_catalog (struct mds_reply *rep, int err, const char *fmt,
                              ...) __attribute__ ((format (printf, 3, 4)));
extern void mds_state_free (struct mds *mds);

/* req-server.c */
extern int mds_op_status (struct mds *, struct mds_conn *, const void *,
                          uint32_t, struct mds_reply *);
extern int mds_op_server_register (struct mds *, struct mds_conn *,
                                   const void *, uint32_t, struct mds_reply *);
extern int mds_op_server_heartbeat (struct mds *, struct mds_conn *,
                                    const void *, uint32_t, struct mds_reply *);
extern int mds_op_server_list (struct mds *, struct mds_conn *, const void *,
                               uint32_t, struct mds_reply *);

/* req-volume.c */
extern int mds_op_vol_create (struct mds *, struct mds_conn *, const void *,
                              uint32_t, struct mds_reply *);
extern int mds_op_vol_list (struct mds *, struct mds_conn *, const void *,
                            uint32_t, struct mds_reply *);
extern int mds_op_vol_info (struct mds *, struct mds_conn *, const void *,
                            uint32_t, struct mds_reply *);
extern int mds_op_vol_resize (struct mds *, struct mds_conn *, const void *,
                              uint32_t, struct mds_reply *);
extern int mds_op_vol_delete (struct mds *, struct mds_conn *, const void *,
                              uint32_t, struct mds_reply *);

/* req-open.c */
extern int mds_op_vol_open (struct mds *, struct mds_conn *, const void *,
                            uint32_t, struct mds_reply *);
extern int mds_op_vol_close (struct mds *, struct mds_conn *, const void *,
                             uint32_t, struct mds_reply *);
extern int mds_op_lease_renew (struct mds *, struct mds_conn *, const void *,
                               uint32_t, struct mds_reply *);

/* req-map.c */
extern int mds_op_map_get (struct mds *, struct mds_conn *, const void *,
                           uint32_t, struct mds_reply *);
extern int mds_op_map_alloc (struct mds *, struct mds_conn *, const void *,
                             uint32_t, struct mds_reply *);
extern int mds_op_replica_failed (struct mds *, struct mds_conn *, const void *,
                                  uint32_t, struct mds_reply *);

#endif /* TESSERA_MDS_INTERNAL_H */

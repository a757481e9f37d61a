/* tessera-mds internals, sectioned by the file that defines them. */

#ifndef TESSERA_MDS_INTERNAL_H
#define TESSERA_MDS_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "buf.h"
#include "catalog.h"
#include "protocol.h"

#define MDS_PROGRAM "tessera-mds"

/* Most garbage segments returned in one heartbeat reply. */
#define MDS_GARBAGE_BATCH 1024
/* Most fences in one heartbeat reply (a server that needs more gets the
 * rest in the next ones).
 */
#define MDS_FENCE_BATCH 1024
/* Bound of every call to a storage server but SEG_PULL (connect too). */
#define MDS_SERVER_TIMEOUT_MS 5000
/* Bound of each SEG_SET_GEN of MAP_RAISE_GEN (connect, and the reply;
 * all servers at once): the writer waits for it within its request's
 * deadline, and its other MDS requests wait behind it.
 */
#define RAISE_GEN_TIMEOUT_MS 500
/* Most copies running at once, all target servers together. */
#define MDS_COPIES_MAX 64
/* Segments read from the catalog in one step of a repair pass. */
#define MDS_REPAIR_PAGE 256
/* A segment whose repair failed is not tried again for this long, unless
 * the repair thread is kicked by REPAIR or a server coming back.
 */
#define MDS_REPAIR_RETRY_MS 5000

/* What the MDS knows of a storage server beyond the catalog (cluster.c):
 * memory only, rebuilt from heartbeats after a restart.
 */
struct mds_server_state {
  uint32_t id;
  uint64_t last_heard_ns; /* CLOCK_MONOTONIC of the last register/heartbeat */
  uint64_t capacity;      /* as last reported */
  uint64_t used;          /* as last reported */
  bool needs_fences;      /* send every volume's fence in heartbeat replies */
  bool above_mark;        /* reported use reached the high-water mark */
  uint64_t fence_cursor;  /* with NEEDS_FENCES: volumes up to this id sent */
  uint64_t incarnation;   /* of its last registration (0: none seen) */
  /* The highest index_seq seen (registrations, heartbeats, the catalog
   * record), and the value saved in the catalog record, when.
   */
  uint64_t index_seq;
  uint64_t index_seq_saved;
  uint64_t index_seq_saved_ns; /* CLOCK_MONOTONIC */
  /* unclean.c: checks of its replicas after an unclean registration or
   * a rollback, pending or running; UNCHECKED: the last one could not be
   * finished.  Either way its replicas are no source for copies and
   * resyncs (mds_server_suspect).  CHECKED_INCARNATION: the incarnation
   * whose unclean start was checked (or is being checked).
   */
  uint32_t checks;
  bool unchecked;
  uint64_t checked_incarnation;
  /* tables-push.c: the cluster tables version it took since it last
   * registered (0: none yet).
   */
  uint64_t tables_pushed;
};

/* A storage server registered uncleanly while VOLUME was not clean, at
 * the volume's epoch EPOCH (unclean.c finds it, suspects.c keeps it):
 * until the volume's clean epoch reaches EPOCH, the server's replicas
 * of it are the last choice as a resync source.
 */
struct mds_suspect {
  uint32_t server;
  uint64_t volume;
  uint64_t epoch;
};

/* Bytes placed on a server by MAP_ALLOCs whose allocation is being
 * committed without mds->lock (req-map.c): placement counts them as used
 * until the commit is over and the catalog counts them.
 */
struct mds_inflight {
  uint32_t server;
  uint64_t bytes;
};

/* A zone whose low room was warned about (place.c). */
struct mds_zone_warn {
  char zone[PROTO_ZONE_MAX + 1];
  bool low;
};

/* A writer's lease on a volume (leases.c): memory only.  A lease record stays after
 * it expires, so the same writer may renew it until another writer wants
 * the volume: that starts a resync (resync.c), which drops the record and
 * fences the writer's epochs.  VOL_CLOSE and VOL_DELETE drop it too.  The
 * writer may use any epoch from BASE_EPOCH to EPOCH.
 */
struct mds_lease {
  uint64_t volume;
  uint64_t base_epoch; /* the writer's first epoch (its open) */
  uint64_t epoch;      /* its current epoch (EPOCH_NEXT raises it) */
  uint64_t expiry_ns;  /* CLOCK_MONOTONIC */
  /* The token of the VOL_OPEN that took the lease (all zero: none), so
   * that the same open sent again gets the same lease (req-open.c).
   */
  uint8_t open_token[PROTO_OPEN_TOKEN_SIZE];
};

/* The candidate sources of a copy or resync of one segment (source.c):
 * its ok replicas on servers that are up, but the target.
 */
struct mds_source {
  uint32_t id;
  char addr[PROTO_ADDR_MAX + 1];
  bool doubtful;  /* its server registered uncleanly while the volume was
                     not clean, or its check is not over (unclean.c) */
  uint64_t epoch; /* the segment's last epoch there (mds_sources_choose) */
};
struct mds_sources {
  uint64_t segment;
  size_t n;
  struct mds_source c[CATALOG_REPLICAS_MAX];
};

/* A copy to one replica of a segment (copy.c), running on a worker
 * thread or in a SEG_RESYNC request.  Registered in mds->copies from
 * mds_copy_prepare to mds_copy_finish, so nothing else touches the
 * segment's replica set meanwhile.
 */
struct mds_copy {
  uint64_t segment;
  uint64_t volume;
  uint64_t index; /* in the volume (CATALOG_INDEX_NONE: not known) */
  uint64_t epoch; /* the volume's epoch, recorded by the target */
  uint64_t gen;   /* the segment's generation, target syncing */
  uint32_t mode;  /* PROTO_PULL_* */
  uint32_t target;
  uint32_t source;
  uint32_t lost;              /* replica removed once the target is ok, or 0 */
  struct mds_sources sources; /* SOURCE 0 at prepare: to choose from */
  bool added;         /* TARGET is added for this copy (else resynced) */
  bool was_ok;        /* a resynced TARGET was ok before the copy */
  bool pulled;        /* SEG_PULL was sent: the target may have changed */
  uint64_t bandwidth; /* bytes/s cap of the copy, 0: none */
  char source_addr[PROTO_ADDR_MAX + 1];
  /* The servers to tell the generation: the target first, then every ok
   * replica on a server that is up.
   */
  size_t npeers;
  uint32_t peer_ids[CATALOG_REPLICAS_MAX + 1];
  char peer_addrs[CATALOG_REPLICAS_MAX + 1][PROTO_ADDR_MAX + 1];
  struct mds *mds;
};

/* A segment whose repair failed recently (jobs.c). */
struct mds_retry {
  uint64_t segment;
  uint64_t not_before_ns; /* CLOCK_MONOTONIC */
};

/* A segment's generation to tell storage servers (announce.c). */
#define MDS_ANNOUNCE_TARGETS CATALOG_REPLICAS_MAX
struct mds_announce {
  uint64_t segment;
  uint64_t volume;
  uint64_t index;         /* in the volume (CATALOG_INDEX_NONE: not known) */
  uint64_t gen;           /* as queued; raised to the catalog's when sent */
  uint64_t marked_ns;     /* CLOCK_MONOTONIC of the change (for logs) */
  uint64_t give_up_ns;    /* a server that has not answered by then is not
                             called again */
  uint64_t not_before_ns; /* next try */
  unsigned tries;
  size_t n;
  uint32_t ids[MDS_ANNOUNCE_TARGETS]; /* the servers to tell */
  uint8_t flags[MDS_ANNOUNCE_TARGETS];
};

/* A registered server whose stale and syncing replicas are told their
 * generations (announce.c), a catalog page at a time.
 */
struct mds_announce_scan {
  uint32_t server;
  uint64_t after;    /* segments up to this id are done */
  uint64_t start_ns; /* CLOCK_MONOTONIC of the registration */
  uint64_t give_up_ns;
  uint64_t not_before_ns;
  unsigned tries;
  size_t told;
};

/* A catalog backup being read (req-backup.c): a slot of mds->backups,
 * free while ID is 0.  Lock: mds->lock, but while BUSY the request
 * that set it uses FD, SIZE and SHA256 without the lock.
 */
struct mds_backup {
  uint64_t id;           /* >= 1 */
  struct mds_conn *conn; /* the connection that started it */
  int fd;                /* the copy (unlinked), -1 until made */
  uint64_t size;
  uint8_t sha256[PROTO_BACKUP_SHA256_SIZE];
  uint64_t sent;    /* bytes up to the furthest chunk sent */
  uint64_t used_ns; /* CLOCK_MONOTONIC of its last request */
  bool busy;        /* a request is making or reading it */
};

/* One authenticated client connection, served by its own thread
 * (loop.c holds connections that have not authenticated yet).
 */
struct mds_conn {
  struct mds *mds;
  int fd;                        /* owned; closed when the thread ends */
  uint32_t role;                 /* peer's HELLO role; read-only */
  char peer[PROTO_ADDR_MAX + 1]; /* for log messages */
  struct mds_conn *prev, *next;  /* in mds->conns; lock: mds->lock */
};

/* The daemon context, passed everywhere.
 *
 * Lock: LOCK protects every field below it.  Request handlers run with
 * it held (loop.c takes it around each call; SEG_RESYNC takes it itself
 * between its calls to servers; MAP_GET and MAP_ALLOC let it go around
 * their catalog calls, see req-map.c), and the repair, copy and resync
 * threads hold it around each of their catalog changes, so
 * catalog-modifying operations but allocations are serialized.  It is
 * the only lock in the MDS (the catalog has its own); nothing that may
 * block on the network is done while holding it.
 */
struct mds {
  /* Configuration: set by main before any thread starts, then read-only. */
  const char *db_dir;
  uint32_t lease_ms;
  uint32_t down_ms;
  uint32_t heartbeat_ms;
  uint32_t out_ms;             /* a silent server is out after this */
  uint32_t repair_concurrency; /* copies at a time per target server */
  uint64_t repair_bandwidth;   /* bytes/s per copy, 0: no cap */
  uint32_t high_water;         /* percent: no new segments on fuller servers */
  int debug_requests;          /* -D mds.requests=1: log every request */
  int debug_repair;            /* -D mds.repair=1: log repair decisions */
  const char *key_file;        /* --key-file, or NULL: DB/cluster.key */
  bool tls;                    /* --tls */
  uint32_t handshake_timeout_ms; /* to authenticate after connecting */
  uint32_t max_conns;            /* authenticated connections at once */
  uint32_t max_unauth;           /* connections authenticating at once */

  /* Set at start-up, read-only while serving. */
  catalog *cat;
  struct catalog_cluster cluster;
  struct auth_key key; /* the cluster key */
  int listen_fd;
  pthread_t accept_thread;
  uint64_t conn_count; /* connections accepted; accept thread only */
  uint64_t start_ns;   /* CLOCK_MONOTONIC when the MDS started */
  pthread_t repair_thread;
  bool repair_started;

  pthread_mutex_t lock;
  pthread_cond_t conns_done; /* signalled when NCONNS drops to 0 */
  bool stopping;
  struct mds_conn *conns;
  size_t nconns;
  struct mds_server_state *servers; /* id order (binary search) */
  size_t nservers;
  struct mds_lease *leases; /* leases.c; unordered */
  size_t nleases;
  uint64_t rng; /* placement's random state */
  /* place.c: placement's view of every server, kept up to date as
   * servers register, heartbeat, drain and go (see place.c for how its
   * used space is kept right); MAP_ALLOC and repair choose from it.
   */
  struct placement_index *index;
  /* repair.c: segments whose replicas span fewer failure domains than
   * they must, as the last complete repair pass counted them.
   */
  uint64_t misplaced;
  bool misplaced_known; /* a pass has completed */
  /* place.c: the zone warnings given (so that each is logged once per
   * change), and what the last pass found.
   */
  struct mds_zone_warn *zone_warns;
  size_t nzone_warns;
  uint32_t domains_needed; /* of the volume with the most replicas */
  uint32_t domains_room;   /* failure domains with room for a segment */
  bool domains_warned;
  /* req-map.c: placed by MAP_ALLOCs being committed; unordered. */
  struct mds_inflight *inflight;
  size_t ninflight;
  /* srv-client.c: no failed handshake is warned about before this. */
  uint64_t srv_auth_warn_ns;

  /* jobs.c: the repair thread's kick, the worker threads, and the
   * copies, retries and resyncs running or put off.
   */
  pthread_cond_t repair_wake; /* signalled to kick the repair thread */
  bool repair_kicked;
  size_t workers;              /* copy and resync threads running */
  pthread_cond_t workers_done; /* signalled when WORKERS drops to 0 */
  struct mds_copy **copies;    /* running copies, unordered */
  size_t ncopies;
  struct mds_retry *retries; /* unordered */
  size_t nretries;
  uint64_t *resyncs; /* volumes being resynced, unordered */
  size_t nresyncs;
  /* unclean.c: check threads running (counted in WORKERS too);
   * suspects.c: unclean registrations, and the segments whose last ok
   * replica may have lost writes (memory only; unordered).
   */
  size_t nchecks;
  struct mds_suspect *suspects;
  size_t nsuspects;
  uint64_t *unproven;
  size_t nunproven;
  /* announce.c: the generations to tell, oldest first, and the servers
   * whose stale replicas to tell theirs (unordered).
   */
  pthread_cond_t announce_wake; /* signalled when work is queued */
  pthread_t announce_thread;
  bool announce_started;
  struct mds_announce *announces;
  size_t nannounces;
  struct mds_announce_scan *scans;
  size_t nscans;
  uint64_t announce_dropped;     /* entries dropped, the queue being full */
  uint64_t announce_drop_log_ns; /* no warning about it before this */
  /* req-backup.c: catalog backups being read, the last id given, and
   * the catalog directory the copies are made in (opened at start).
   */
  struct mds_backup backups[PROTO_BACKUPS_MAX];
  uint64_t backup_last_id;
  int backup_dir_fd;
  /* tables-push.c: the pusher of the cluster tables and its kick. */
  pthread_cond_t tables_wake;
  pthread_t tables_thread;
  bool tables_started;
  bool tables_kicked;

  /* ha.c, standby.c, repl.c: with --etcd, standbys and the election
   * (docs/high-availability.md).  Without it HA_ELECTION and REPL are
   * NULL and the MDS serves as it always did.  Options first (set by
   * main), then the state: HA_ELECTED, HA_STOPPING under LOCK (HA_WAKE
   * signals them); HA_EPOCH and HA_LEADING atomic.
   */
  const char *ha_etcd; /* --etcd URL[,URL...] */
  const char *ha_etcd_cacert, *ha_etcd_cert, *ha_etcd_key;
  const char *ha_name;         /* --name */
  const char *ha_advertise;    /* --advertise */
  const char *ha_prefix;       /* --etcd-prefix */
  int64_t ha_ttl_s;            /* --etcd-ttl */
  uint32_t ha_sync_timeout_ms; /* --sync-timeout */
  /* --rebuild or --restore with --etcd: campaign whatever etcd's record
   * says (the operator asserts the other catalogs are lost), never
   * follow, and once elected run HA_RECONCILE (its epoch in HELLO)
   * before taking over; NULL otherwise.  Returns 0 or -1 (logged).
   */
  int (*ha_reconcile) (struct mds *mds, void *arg);
  void *ha_reconcile_arg;
  struct election *ha_election;
  struct mds_standby *ha_standby;
  struct mds_repl *repl; /* the window for standbys, once leading */
  pthread_t ha_takeover;
  bool ha_takeover_started;
  pthread_cond_t ha_wake;
  uint64_t ha_elected; /* the epoch elected at, 0: not yet */
  bool ha_stopping;
  uint64_t ha_epoch; /* leading at this epoch (atomic) */
  bool ha_leading;   /* serving as the leader (atomic) */
};

/* What repl.c says of the standbys (STATUS). */
struct mds_repl_info {
  uint64_t published;
  bool sync_on; /* SYNC is the synchronous standby, named in etcd */
  char sync[PROTO_NAME_MAX + 1];
  size_t nstandbys;
  struct {
    char name[PROTO_NAME_MAX + 1];
    uint64_t acked;
    uint64_t seen_ns;
  } standbys[8];
};

/* repl.c's way to record the synchronous standby (ha.c). */
typedef int mds_repl_set_sync_fn (void *arg, const char *name, uint64_t seq);

/* A reply being built by a request handler (through reply.c), sent by
 * loop.c after the handler returns and the lock is released.  STATUS
 * PROTO_OK sends WB's bytes; any other status sends MSG.
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

/* daemon.c (forking, pidfile and paths: common/utils/daemon.h) */
extern int mds_lock_db (const char *dir);

/* restore.c */
extern int mds_restore (const char *dir, const char *file, bool force);

/* srv-client.c */
extern int mds_srv_call (struct mds *mds, const char *addr, int timeout_ms,
                         uint8_t opcode, struct proto_wbuf *req, void **reply,
                         uint32_t *reply_len, char *errmsg, size_t errlen);
extern bool mds_srv_alive (struct mds *mds, const char *addr);
extern int mds_srv_fence (struct mds *mds, const char *addr, uint64_t volume,
                          uint64_t epoch, char *errmsg, size_t errlen);
extern int mds_srv_set_gen (struct mds *mds, const char *addr, int timeout_ms,
                            uint64_t segment, uint64_t volume, uint64_t index,
                            uint64_t gen, char *errmsg, size_t errlen);
extern int mds_srv_pull (struct mds *mds, const char *addr,
                         const struct proto_pull *pull, char *errmsg,
                         size_t errlen);
extern int mds_srv_list (struct mds *mds, const char *addr, uint64_t volume,
                         uint64_t min_epoch, uint64_t start_after,
                         struct proto_segment_list *out, char *errmsg,
                         size_t errlen);
extern int mds_srv_seg_epoch (struct mds *mds, const char *addr,
                              uint64_t segment, uint64_t *epoch, char *errmsg,
                              size_t errlen);
extern int mds_srv_tables_put (struct mds *mds, const char *addr,
                               uint64_t version, const uint8_t *blob,
                               size_t len, uint64_t *stored, char *errmsg,
                               size_t errlen);
extern int mds_srv_tables_get (struct mds *mds, const char *addr,
                               struct proto_tables *out, void **payload,
                               char *errmsg, size_t errlen);
extern int mds_srv_describe (struct mds *mds, const char *addr,
                             uint64_t start_after, struct proto_describe *out,
                             char *errmsg, size_t errlen);

/* rebuild.c: what mds_reconcile did. */
struct mds_rebuild_report {
  size_t answered;         /* storage servers that answered */
  size_t described;        /* of those, that described their segments */
  uint64_t tables_version; /* of the tables installed (0: none) */
  size_t servers, volumes; /* in the catalog afterwards */
  uint64_t segments;       /* segment ids seen */
  uint64_t placed;         /* adopted into the catalog */
  uint64_t known;          /* in the catalog already */
  uint64_t not_placed;     /* left out (each logged, with the reason) */
  uint64_t stale;          /* replicas recorded stale */
};
extern int mds_reconcile (struct mds *mds, char *const *addrs, size_t naddrs,
                          struct mds_rebuild_report *rep);

/* tables-push.c */
extern void mds_tables_kick (struct mds *mds);
extern int mds_tables_start (struct mds *mds);
extern void mds_tables_stop (struct mds *mds);

/* source.c */
extern int mds_sources_collect (struct mds *mds,
                                const struct catalog_segment *s,
                                uint32_t except, bool skip_suspect,
                                struct mds_sources *out);
extern int mds_sources_choose (struct mds *mds, struct mds_sources *ss,
                               bool random, size_t *chosen, char *errmsg,
                               size_t errlen);

/* copy.c */
extern int mds_copy_prepare (struct mds *mds, struct mds_copy *c, char *errmsg,
                             size_t errlen);
extern int mds_copy_run (struct mds *mds, struct mds_copy *c, char *errmsg,
                         size_t errlen);
extern void mds_copy_finish (struct mds *mds, struct mds_copy *c, int result);
extern void mds_copy_announce (struct mds *mds, struct mds_copy *c);

/* jobs.c */
extern bool mds_copy_busy (struct mds *mds, uint64_t segment);
extern bool mds_copy_busy_volume (struct mds *mds, uint64_t volume);
extern size_t mds_copies_to (struct mds *mds, uint32_t target);
extern int mds_copy_register (struct mds *mds, struct mds_copy *c);
extern void mds_copy_unregister (struct mds *mds, struct mds_copy *c);
extern bool mds_repair_retry_due (struct mds *mds, uint64_t segment);
extern void mds_repair_retry_later (struct mds *mds, uint64_t segment);
extern void mds_repair_kick (struct mds *mds, bool retry_now);
extern bool mds_resyncing (struct mds *mds, uint64_t volume);
extern int mds_resync_register (struct mds *mds, uint64_t volume);
extern void mds_resync_unregister (struct mds *mds, uint64_t volume);
extern void mds_worker_done (struct mds *mds);

/* announce.c */
extern void mds_announce_stale (struct mds *mds,
                                const struct catalog_segment *s,
                                uint32_t stale);
extern void mds_announce_server (struct mds *mds, uint32_t server);
extern int mds_announce_start (struct mds *mds);
extern void mds_announce_stop (struct mds *mds);

/* repair.c */
extern int mds_repair_start (struct mds *mds);
extern int mds_repair_stop (struct mds *mds, int timeout_ms);

/* resync.c */
extern int mds_resync_start (struct mds *mds, const struct catalog_volume *v,
                             struct mds_reply *rep);
extern int mds_resync_segment (struct mds *mds, uint64_t volume,
                               uint64_t segment, uint32_t source, char *errmsg,
                               size_t errlen);

/* suspects.c */
extern bool mds_server_suspect (struct mds *mds, uint32_t id);
extern bool mds_unclean_since (struct mds *mds, uint32_t server,
                               uint64_t volume, uint64_t clean_epoch);
extern bool mds_unproven (struct mds *mds, uint64_t segment);
extern uint64_t mds_unproven_count (struct mds *mds);
extern void mds_unproven_add (struct mds *mds, uint64_t segment);
extern void mds_suspect_add (struct mds *mds, uint32_t server, uint64_t volume,
                             uint64_t epoch);

/* unclean.c */
extern int mds_check_server (struct mds *mds, uint32_t server, const char *addr,
                             bool rollback);

/* loop.c */
extern int mds_serve_start (struct mds *mds);
extern int mds_serve_stop (struct mds *mds, int timeout_ms);

/* reply.c */
extern int mds_reply_error (struct mds_reply *rep, uint32_t status,
                            const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));
extern int mds_reply_errno (struct mds_reply *rep, int err, const char *fmt,
                            ...) __attribute__ ((format (printf, 3, 4)));
extern int mds_reply_bad (struct mds_reply *rep, int err, const char *what);
extern int mds_reply_catalog (struct mds_reply *rep, int err, const char *fmt,
                              ...) __attribute__ ((format (printf, 3, 4)));

/* cluster.c */
extern int mds_server_heard (struct mds *mds, uint32_t id, uint64_t capacity,
                             uint64_t used);
extern struct mds_server_state *mds_server_find (struct mds *mds, uint32_t id);
extern uint32_t mds_server_health (struct mds *mds, uint32_t id);
extern uint32_t mds_server_health_at (struct mds *mds, uint32_t id,
                                      uint64_t now);
extern bool mds_server_is_up (struct mds *mds, uint32_t id);
extern uint32_t mds_server_state (struct mds *mds,
                                  const struct catalog_server *s);
extern uint32_t mds_server_state_at (struct mds *mds,
                                     const struct catalog_server *s,
                                     uint64_t now);
extern void mds_server_forget (struct mds *mds, uint32_t id);
extern void mds_servers_need_fences (struct mds *mds, const uint32_t *except,
                                     size_t nexcept);
extern uint64_t mds_server_capacity (struct mds *mds,
                                     const struct catalog_server *s);
extern int mds_server_used (struct mds *mds, uint32_t id, uint64_t *used,
                            uint64_t *segments);
extern int mds_server_address (struct mds *mds, uint32_t id, char *addr);
extern int mds_inflight_change (struct mds *mds, uint32_t server,
                                int64_t delta);
extern uint64_t mds_inflight_bytes (struct mds *mds, uint32_t server);
extern void mds_state_free (struct mds *mds);

/* leases.c */
extern struct mds_lease *mds_lease_find (struct mds *mds, uint64_t volume);
extern int mds_lease_set (struct mds *mds, uint64_t volume, uint64_t base_epoch,
                          uint64_t epoch);
extern void mds_lease_drop (struct mds *mds, uint64_t volume);
extern bool mds_lease_active (struct mds *mds, uint64_t volume);
extern int mds_lease_check (struct mds *mds, uint64_t volume, uint64_t epoch,
                            struct mds_reply *rep);
extern int mds_leases_recover (struct mds *mds);
extern void mds_volume_info (struct mds *mds, const struct catalog_volume *v,
                             struct proto_volume_info *out);

/* req-server.c */
extern int mds_op_status (struct mds *, struct mds_conn *, const void *,
                          uint32_t, struct mds_reply *);
extern int mds_op_server_register (struct mds *, struct mds_conn *,
                                   const void *, uint32_t, struct mds_reply *);
extern int mds_op_server_heartbeat (struct mds *, struct mds_conn *,
                                    const void *, uint32_t, struct mds_reply *);
extern int mds_op_server_list (struct mds *, struct mds_conn *, const void *,
                               uint32_t, struct mds_reply *);
extern int mds_op_server_drain (struct mds *, struct mds_conn *, const void *,
                                uint32_t, struct mds_reply *);
extern int mds_op_server_remove (struct mds *, struct mds_conn *, const void *,
                                 uint32_t, struct mds_reply *);
extern int mds_op_repair (struct mds *, struct mds_conn *, const void *,
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
extern int mds_op_epoch_next (struct mds *, struct mds_conn *, const void *,
                              uint32_t, struct mds_reply *);
extern int mds_op_epoch_clean (struct mds *, struct mds_conn *, const void *,
                               uint32_t, struct mds_reply *);

/* ha.c */
extern int mds_ha_start (struct mds *mds, char *err, size_t errlen);
extern bool mds_ha_serving (struct mds *mds);
extern void mds_ha_leader (struct mds *mds, char *out, size_t len);
extern void mds_ha_stop (struct mds *mds);
/* Fill INFO's HA part but the etcd endpoints: this MDS, its epoch, its
 * standbys (nothing without --etcd).  Any thread, any locks (takes
 * repl.c's leaf lock).
 */
extern void mds_ha_status (struct mds *mds, struct proto_status_info *info);
/* Ask each etcd member (at most MAX) for its health into OUT; returns
 * how many were filled (0 without --etcd).  Blocks up to half a second
 * per silent member: never call it with mds->lock held.
 */
extern uint32_t mds_ha_etcd_health (struct mds *mds,
                                    struct proto_etcd_info *out, uint32_t max);

/* repl.c */
struct mds_repl;
extern int mds_repl_new (uint64_t published, uint32_t sync_timeout_ms,
                         mds_repl_set_sync_fn *set_sync, void *arg,
                         struct mds_repl **out);
extern void mds_repl_free (struct mds_repl *r);
extern void mds_repl_stop (struct mds_repl *r);
extern void mds_repl_commit (void *arg, uint64_t seq, const void *changes,
                             size_t len);
extern void mds_repl_barrier (struct mds *mds);
extern void mds_repl_info (struct mds_repl *r, struct mds_repl_info *out);
extern int mds_op_repl_pull (struct mds *, struct mds_conn *, const void *,
                             uint32_t, struct mds_reply *);

/* standby.c */
struct mds_standby;
extern int mds_standby_start (struct mds *mds, bool own_catalog,
                              struct mds_standby **out);
extern void mds_standby_stop (struct mds_standby *sb);

/* req-backup.c */
extern int mds_backup_init (struct mds *mds);
extern void mds_backup_conn_closed (struct mds *mds, struct mds_conn *conn);
extern void mds_backup_free (struct mds *mds);
extern int mds_op_catalog_backup (struct mds *, struct mds_conn *, const void *,
                                  uint32_t, struct mds_reply *);

/* place.c */
struct placement_index;
extern int mds_index_build (struct mds *mds);
extern void mds_index_server (struct mds *mds, const struct catalog_server *s);
extern void mds_index_pass (struct mds *mds,
                            const struct catalog_server *servers, size_t n);
extern size_t mds_index_check_up (struct mds *mds, const uint32_t *ids,
                                  size_t n);
extern void mds_index_uncharge (struct mds *mds, const uint32_t *ids, size_t n);
extern void mds_index_zones_check (struct mds *mds,
                                   const struct catalog_server *servers,
                                   size_t n, uint32_t replicas_max);
extern void mds_index_status (struct mds *mds, struct proto_status_info *info);
extern void mds_index_free (struct mds *mds);

/* req-map.c */
extern int mds_op_map_get (struct mds *, struct mds_conn *, const void *,
                           uint32_t, struct mds_reply *);
extern int mds_op_map_alloc (struct mds *, struct mds_conn *, const void *,
                             uint32_t, struct mds_reply *);
extern int mds_op_replica_failed (struct mds *, struct mds_conn *, const void *,
                                  uint32_t, struct mds_reply *);
extern int mds_op_map_raise_gen (struct mds *, struct mds_conn *, const void *,
                                 uint32_t, struct mds_reply *);
extern int mds_op_seg_resync (struct mds *, struct mds_conn *, const void *,
                              uint32_t, struct mds_reply *);

#endif /* TESSERA_MDS_INTERNAL_H */

/* The Tessera catalog: the MDS's durable state in one LMDB environment.
 *
 * Named databases (all keys fixed-width big-endian, so range scans are
 * ordered):
 *   meta            "cluster" -> cluster record; counters (next ids)
 *   servers         server id u32 -> server record
 *   server_uuids    uuid[16] -> server id u32
 *   volumes         volume id u64 -> volume record
 *   names           volume name -> volume id u64
 *   segmap          (volume id u64, index u64) -> segment id u64
 *   segments        segment id u64 -> segment record (replicas, refcount)
 *   server_segments (server id u32, segment id u64) -> empty
 *   server_counts   server id u32 -> u64: its entries in server_segments
 *                   (rebuilt from server_segments when missing)
 *   garbage         (server id u32, segment id u64) -> empty: replicas of
 *                   deleted segments the server has yet to delete
 *
 * Every function below is one logical operation in one transaction: it
 * either happens entirely and durably (the commit is synced) or not at all.
 * (Concurrent catalog_map_alloc calls share a transaction, and each of
 * them still happens entirely or not at all.)
 *
 * Threads: a catalog handle may be used from several threads; LMDB
 * serializes writers.  Read functions use read-only transactions, taken
 * from a pool of reset ones and reset again before they return: a read
 * sees every commit that returned before it started, and holds no
 * snapshot once it has returned.
 *
 * Errors: every function returns 0 (or a count where stated) on success,
 * or a negative errno:
 *   -ENOENT  no such cluster/server/volume/segment;
 *   -EEXIST  a name or record that must be new exists;
 *   -EINVAL  an argument out of range (stated per function);
 *   -ENOSPC  the LMDB map is full;
 *   -ENOMEM  out of memory;
 *   -EIO     any other LMDB failure (logged at debug level).
 * No LMDB type or code crosses this header.
 */

#ifndef TESSERA_CATALOG_CATALOG_H
#define TESSERA_CATALOG_CATALOG_H

#include <stddef.h>
#include <stdint.h>

#define CATALOG_NAME_MAX 128   /* volume name bytes (= PROTO_NAME_MAX) */
#define CATALOG_ADDR_MAX 256   /* = PROTO_ADDR_MAX */
#define CATALOG_ZONE_MAX 64    /* = PROTO_ZONE_MAX */
#define CATALOG_REPLICAS_MAX 8 /* = PROTO_REPLICAS_MAX */

/* Server and replica states use the same numbers as the protocol
 * (PROTO_SERVER_*, PROTO_REPLICA_*).
 */
enum {
  CATALOG_SERVER_UP = 0,
  CATALOG_SERVER_DOWN = 1,
  CATALOG_SERVER_DRAINING = 2,
  CATALOG_SERVER_OUT = 3,
};
enum {
  CATALOG_REPLICA_OK = 0,
  CATALOG_REPLICA_STALE = 1,
  CATALOG_REPLICA_SYNCING = 2,
};

/* Volume flags (= PROTO_VOL_CLEAN). */
#define CATALOG_VOL_CLEAN 0x1

/* Opaque handle (LMDB style). */
typedef struct catalog catalog;

struct catalog_cluster {
  uint8_t uuid[16];
  uint32_t segment_size; /* power of two, 64 KiB .. 64 MiB */
  uint32_t format_version;
};

struct catalog_server {
  uint32_t id; /* >= 1, never reused */
  uint8_t uuid[16];
  uint32_t state; /* CATALOG_SERVER_* */
  uint64_t capacity;
  uint64_t index_seq; /* highest index_seq the MDS saved for it (0: none) */
  char address[CATALOG_ADDR_MAX + 1];
  char zone[CATALOG_ZONE_MAX + 1];
};

struct catalog_volume {
  uint64_t id; /* >= 1, never reused */
  char name[CATALOG_NAME_MAX + 1];
  uint64_t size; /* bytes, multiple of 512 */
  uint32_t replicas;
  uint32_t flags;       /* CATALOG_VOL_* */
  uint64_t epoch;       /* current writer epoch (0: never opened) */
  uint64_t clean_epoch; /* every epoch <= this one is clean on all replicas */
  uint64_t segments;    /* allocated segments (map entries) */
  uint32_t min_copies;  /* a write needs this many ok replicas, 1..replicas */
};

/* The min_copies of a volume of REPLICAS replicas created without one
 * (and of records written before the field existed): 1 for fewer than
 * 3 replicas, else 2.
 */
#define CATALOG_MIN_COPIES_DEFAULT(replicas) ((replicas) < 3 ? 1u : 2u)

struct catalog_replica {
  uint32_t server;
  uint8_t state; /* CATALOG_REPLICA_* */
};

/* A segment index not known (catalog_segment.index): only in records
 * of a catalog not yet upgraded, or of a segment no map entry names.
 */
#define CATALOG_INDEX_NONE UINT64_MAX

struct catalog_segment {
  uint64_t id;     /* >= 1, never reused */
  uint64_t volume; /* the volume that allocated it */
  uint64_t index;  /* its index in VOLUME's map (CATALOG_INDEX_NONE: not
                      known); storage servers record it with the segment */
  uint64_t gen;    /* replica-set generation: 1 at allocation, +1 on every
                      change of the replica list or of a replica's state */
  uint32_t refcount;
  uint32_t nreplicas;
  struct catalog_replica replicas[CATALOG_REPLICAS_MAX];
};

/* One map entry: what volume index INDEX maps to. */
struct catalog_map_entry {
  uint64_t index;
  struct catalog_segment segment;
};

/* Open (creating if needed) the catalog in directory DIR, which must
 * exist.  MAP_SIZE is the LMDB map size in bytes (0: 1 GiB).  *OUT
 * receives the handle; close it with catalog_close.  Open after any
 * fork.  Returns 0, -ENOENT (no DIR), -EACCES, -EIO.
 */
extern int catalog_open (const char *dir, uint64_t map_size, catalog **out);
/* Close (accepts NULL). */
extern void catalog_close (catalog *cat);

/* Create the cluster record: SEGMENT_SIZE must be a power of two from
 * 64 KiB to 64 MiB (-EINVAL otherwise); UUID identifies the cluster.
 * -EEXIST if the cluster exists already.
 */
extern int catalog_cluster_init (catalog *cat, uint32_t segment_size,
                                 const uint8_t uuid[16]);
/* Read the cluster record.  -ENOENT if never initialized. */
extern int catalog_cluster_get (catalog *cat, struct catalog_cluster *out);

/* Register a server by UUID: if known, update its address, zone and
 * capacity and return it (same id); if new, assign the next id, state UP.
 * ADDRESS and ZONE must fit their maxima (-EINVAL).  *OUT receives the
 * record.
 */
extern int catalog_server_register (catalog *cat, const uint8_t uuid[16],
                                    const char *address, const char *zone,
                                    uint64_t capacity,
                                    struct catalog_server *out);
extern int catalog_server_get (catalog *cat, uint32_t id,
                               struct catalog_server *out);
/* All servers in id order: *OUT is malloc'd (caller frees), *N set. */
extern int catalog_server_list (catalog *cat, struct catalog_server **out,
                                size_t *n);
/* -EINVAL for an unknown state. */
extern int catalog_server_set_state (catalog *cat, uint32_t id, uint32_t state);
/* Save INDEX_SEQ as server ID's index_seq (the count of its index
 * commits the MDS saw last; the MDS may lower it after a rollback).
 * -ENOENT for an unknown server.
 */
extern int catalog_server_set_index_seq (catalog *cat, uint32_t id,
                                         uint64_t index_seq);
/* Number of replicas placed on server ID (kept in server_counts: one
 * read, whatever the number).
 */
extern int catalog_server_count_segments (catalog *cat, uint32_t id,
                                          uint64_t *count);
/* Ids of the segments with a replica on server ID, > START_AFTER, in
 * order, at most MAX: *OUT malloc'd (caller frees; NULL when *N is 0).
 */
extern int catalog_server_segments (catalog *cat, uint32_t id,
                                    uint64_t start_after, size_t max,
                                    uint64_t **out, size_t *n);
/* Forget server ID (its record, its uuid, its garbage): -EBUSY while it
 * still holds replicas (server_segments).  Its id is never reused; the
 * same store registering again gets a new id.
 */
extern int catalog_server_remove (catalog *cat, uint32_t id);

/* Create a volume.  NAME: 1..CATALOG_NAME_MAX bytes of [A-Za-z0-9._-],
 * not starting with '.' or '-' (-EINVAL); SIZE > 0 and a multiple of 512
 * (-EINVAL); REPLICAS 1..CATALOG_REPLICAS_MAX (-EINVAL).  -EEXIST if the
 * name is taken.  New volumes are clean with epoch 0, and min_copies
 * CATALOG_MIN_COPIES_DEFAULT (REPLICAS).
 */
extern int catalog_volume_create (catalog *cat, const char *name, uint64_t size,
                                  uint32_t replicas,
                                  struct catalog_volume *out);
/* catalog_volume_create with MIN_COPIES: 0 for the default, else
 * 1..REPLICAS (-EINVAL otherwise).
 */
extern int catalog_volume_create_min_copies (catalog *cat, const char *name,
                                             uint64_t size, uint32_t replicas,
                                             uint32_t min_copies,
                                             struct catalog_volume *out);
extern int catalog_volume_get (catalog *cat, uint64_t id,
                               struct catalog_volume *out);
extern int catalog_volume_lookup (catalog *cat, const char *name,
                                  struct catalog_volume *out);
/* All volumes in id order: *OUT malloc'd (caller frees), *N set. */
extern int catalog_volume_list (catalog *cat, struct catalog_volume **out,
                                size_t *n);
/* Grow volume ID to NEW_SIZE (multiple of 512, >= current size, else
 * -EINVAL).  *OUT (may be NULL) receives the updated record.
 */
extern int catalog_volume_resize (catalog *cat, uint64_t id, uint64_t new_size,
                                  struct catalog_volume *out);
/* Delete volume ID: its name, its map entries; segments whose refcount
 * drops to zero are deleted and each of their replicas is queued in
 * `garbage` for its server.
 */
extern int catalog_volume_delete (catalog *cat, uint64_t id);
/* Start a writer: epoch = epoch + 1, flag CLEAN cleared.  *OUT (may be
 * NULL) receives the updated record.
 */
extern int catalog_volume_begin_epoch (catalog *cat, uint64_t id,
                                       struct catalog_volume *out);
/* The writer rotates epochs: if CURRENT is the current epoch, epoch =
 * epoch + 1 (CLEAN stays cleared), else -ESTALE.  *OUT (may be NULL)
 * receives the updated record.
 */
extern int catalog_volume_next_epoch (catalog *cat, uint64_t id,
                                      uint64_t current,
                                      struct catalog_volume *out);
/* Every epoch up to EPOCH is clean: clean_epoch = max (clean_epoch,
 * EPOCH).  -EINVAL if EPOCH is above the current epoch.
 */
extern int catalog_volume_set_clean_epoch (catalog *cat, uint64_t id,
                                           uint64_t epoch);
/* A writer closed cleanly, or a resync made the volume consistent: if
 * EPOCH is the current epoch set CLEAN and clean_epoch = EPOCH, else
 * -ESTALE.
 */
extern int catalog_volume_mark_clean (catalog *cat, uint64_t id,
                                      uint64_t epoch);

/* Map entries of volume VOLUME with index in [START, START + COUNT), in
 * index order; holes are absent.  *OUT malloc'd (caller frees; NULL when
 * *N is 0).
 */
extern int catalog_map_get (catalog *cat, uint64_t volume, uint64_t start,
                            uint64_t count, struct catalog_map_entry **out,
                            size_t *n);

/* Allocate segments for holes of volume VOLUME.  ENTRIES[0..N) give the
 * index and the chosen replicas (segment.nreplicas, segment.replicas; the
 * id and refcount are ignored).  In one transaction, for each entry whose
 * index is still a hole, a new segment id is assigned (refcount 1,
 * replicas as given, all state ok), mapped, and listed in server_segments;
 * the new segment is written back into ENTRIES[i].segment (its id in
 * .id).  An entry whose index is already mapped is left as it is and its
 * current segment is written back instead.  -EINVAL if an index is past
 * the volume's end, nreplicas is 0 or above the maximum, or a replica
 * names the same server twice; -ENOENT if the volume or a server does not
 * exist.  On error ENTRIES may have been partly overwritten.
 *
 * Group commit: calls from several threads at once are gathered while a
 * commit is in progress and carried out together in the next transaction
 * (one synced commit for all, up to 128 calls): this call returns only
 * once the transaction holding its allocation is durable, and a call that
 * fails changes nothing whatever the others do.  The caller must not hold
 * a lock another caller needs to reach this function, or the calls cannot
 * meet.  ENTRIES must stay valid and untouched until it returns.
 */
extern int catalog_map_alloc (catalog *cat, uint64_t volume,
                              struct catalog_map_entry *entries, size_t n);

/* One request of catalog_map_alloc_many: the arguments of a
 * catalog_map_alloc call, and its result.
 */
struct catalog_alloc_request {
  uint64_t volume;                   /* in */
  struct catalog_map_entry *entries; /* in; out as for catalog_map_alloc */
  size_t n;                          /* in */
  int result; /* out: 0 or what catalog_map_alloc would return */
};

/* Carry out REQS[0..N) as N catalog_map_alloc calls would, in order, but
 * in one transaction with one synced commit.  Each request is checked on
 * its own: one that fails gets its error in .result and changes nothing,
 * the others go on (later requests see what earlier ones allocated: two
 * requests for the same hole map it once).  Returns 0 when every request
 * has its result, or an error of the transaction as a whole (-ENOMEM,
 * -ENOSPC, -EIO), which every request not failed already gets too.  Does
 * not wait for concurrent catalog_map_alloc calls.
 */
extern int catalog_map_alloc_many (catalog *cat,
                                   struct catalog_alloc_request *reqs,
                                   size_t n);

/* Read one segment. */
extern int catalog_segment_get (catalog *cat, uint64_t id,
                                struct catalog_segment *out);
/* Segments with id > START_AFTER in id order, at most MAX: *OUT malloc'd
 * (caller frees; NULL when *N is 0).  Pages through every segment for the
 * repair scheduler.
 */
extern int catalog_segment_list (catalog *cat, uint64_t start_after, size_t max,
                                 struct catalog_segment **out, size_t *n);
/* Add a replica on SERVER to segment ID in STATE (usually SYNCING),
 * listing it in server_segments; gen + 1.  -EEXIST if SERVER already holds
 * a replica, -EINVAL if the segment has CATALOG_REPLICAS_MAX replicas or
 * STATE is unknown, -ENOENT if the segment or the server does not exist.
 * *OUT (may be NULL) receives the updated segment.
 */
extern int catalog_segment_add_replica (catalog *cat, uint64_t id,
                                        uint32_t server, uint8_t state,
                                        struct catalog_segment *out);
/* Remove SERVER's replica of segment ID: it leaves server_segments and is
 * queued in garbage for SERVER; gen + 1.  -ENOENT if there is no such
 * replica, -EBUSY if it is the segment's last one.  *OUT (may be NULL)
 * receives the updated segment.
 */
extern int catalog_segment_remove_replica (catalog *cat, uint64_t id,
                                           uint32_t server,
                                           struct catalog_segment *out);
/* Set the state of SERVER's replica of segment ID; gen + 1 if the state
 * changes.  -ENOENT if the segment has no replica on SERVER; -EINVAL for
 * an unknown state.  *OUT (may be NULL) receives the updated segment.
 */
extern int catalog_replica_set_state (catalog *cat, uint64_t id,
                                      uint32_t server, uint8_t state,
                                      struct catalog_segment *out);

/* Raise segment ID's generation above ABOVE (to ABOVE + 1) unless it is
 * there already; the replicas stay as they are.  Used when writes sent
 * with generation ABOVE or older are in doubt: once every writable
 * replica's server holds the new one, none of them can land any more.
 * *OUT (may be NULL) receives the segment.  -ENOENT if there is none.
 */
extern int catalog_segment_raise_gen (catalog *cat, uint64_t id, uint64_t above,
                                      struct catalog_segment *out);

/* Garbage: replicas SERVER must delete.  catalog_garbage_get returns up
 * to MAX segment ids in *OUT (malloc'd) and *N; catalog_garbage_done
 * forgets the listed ones (unknown ids are ignored).
 */
extern int catalog_garbage_get (catalog *cat, uint32_t server, size_t max,
                                uint64_t **out, size_t *n);
extern int catalog_garbage_done (catalog *cat, uint32_t server,
                                 const uint64_t *segments, size_t n);

/* The cluster tables (tables.c): what of the catalog the MDS keeps on
 * every storage server so that a lost catalog can be rebuilt from them
 * (tessera-mds --rebuild): the cluster record, the id counters (next
 * ids), every volume and every server.  Their version, 1 in a new
 * catalog, is raised by every transaction that changes a volume or
 * server record (create, resize, delete, register with a new address,
 * zone or capacity, state change, remove), not by epoch changes or
 * allocations.
 */
struct catalog_tables {
  uint64_t version;
  struct catalog_cluster cluster;
  uint64_t next_volume, next_server, next_segment; /* next ids to give */
  size_t nvolumes;
  struct catalog_volume *volumes; /* .segments not meaningful */
  size_t nservers;
  struct catalog_server *servers; /* .index_seq 0 */
};

/* The tables version now. */
extern int catalog_tables_version (catalog *cat, uint64_t *version);
/* Encode the tables as they are now, in one read transaction, into
 * *BLOB (malloc'd, the caller frees it; *LEN bytes; the format is in
 * tables.c) with their version in *VERSION.  -ENOENT before the
 * cluster record exists.
 */
extern int catalog_tables_encode (catalog *cat, uint8_t **blob, size_t *len,
                                  uint64_t *version);
/* Decode LEN bytes of tables at BLOB into *T; free its arrays with
 * catalog_tables_free (which accepts a zeroed struct).  -EINVAL if they
 * are not tables of this format or are damaged; -ENOMEM.  On error
 * nothing is left allocated.
 */
extern int catalog_tables_decode (const void *blob, size_t len,
                                  struct catalog_tables *t);
extern void catalog_tables_free (struct catalog_tables *t);
/* Install T into the catalog, in one transaction: the cluster record
 * if there is none (-EINVAL if there is one of another uuid or segment
 * size); each server and volume whose id is not known (and whose uuid,
 * respectively name, is not taken; volumes get 0 segments); the id
 * counters and the tables version raised to T's if lower.  Never lowers
 * or overwrites anything.
 */
extern int catalog_tables_install (catalog *cat,
                                   const struct catalog_tables *t);
/* Raise the id counters to at least NEXT_VOLUME, NEXT_SERVER and
 * NEXT_SEGMENT (the next ids to give); lower values change nothing.
 */
extern int catalog_counters_raise (catalog *cat, uint64_t next_volume,
                                   uint64_t next_server, uint64_t next_segment);

/* One segment for catalog_segments_adopt, and its result. */
struct catalog_adopt {
  struct catalog_segment segment; /* id, volume, index, gen, replicas */
  int result;                     /* out: 0 or -errno */
};

/* Adopt segments found on storage servers: for each A[i], in one
 * transaction, record the segment with its id, generation and replicas
 * (refcount 1), map (volume, index) to it, list its replicas in
 * server_segments, count it in its volume and raise the segment
 * counter past its id.  Each one either happens entirely or not at
 * all; its result: 0, -EEXIST (the segment exists), -EBUSY (its index
 * is mapped to another segment), -ENOENT (no such volume or server),
 * -ERANGE (index past the volume's end), -EINVAL (no index, generation
 * 0, no or too many replicas, one server twice).  Returns 0 once every
 * one has its result, or an error of the transaction as a whole.
 */
extern int catalog_segments_adopt (catalog *cat, struct catalog_adopt *a,
                                   size_t n);
/* Raise volume ID's epoch to at least EPOCH (never lowered) and mark it
 * not clean, so that its next writer's open resyncs it.  -ENOENT.
 */
extern int catalog_volume_raise_epoch (catalog *cat, uint64_t id,
                                       uint64_t epoch);

/* Totals for STATUS. */
struct catalog_stats {
  uint64_t volumes;
  uint64_t segments;
  uint64_t servers;
};
extern int catalog_stats (catalog *cat, struct catalog_stats *out);

/* Write a consistent, compacted copy of the whole catalog (an LMDB data
 * file, free pages left out) to FD, a regular file open for writing and
 * empty, from its current position on.  The copy is made under one
 * read-only transaction: it is the catalog as of one commit, and writers
 * go on meanwhile (they cannot reuse the pages the copy still reads, so
 * the catalog file may grow while a long copy runs).  Before writing,
 * the free space of FD's file system is checked against the pages the
 * catalog uses.  FD is not synced and stays the caller's.  Any thread;
 * a copy blocks only its caller.  *SIZE receives the bytes written.
 * Returns 0, -ENOSPC (not enough room on FD's file system, checked
 * first or met while writing), -EINVAL (FD not a regular file), -ENOMEM,
 * -EIO (or another -errno from writing FD).
 */
extern int catalog_backup (catalog *cat, int fd, uint64_t *size);

/* Text for a catalog error code (a static string). */
extern const char *catalog_strerror (int err);

/* Replication (docs/high-availability.md).  Every write transaction
 * that changes the catalog raises its change sequence (stored in the
 * catalog, so a copy knows where it stands).  With a hook set, each
 * commit's changes are encoded (catalog/changelog.c) and handed to it
 * after the commit, from the committing thread: HOOK (ARG, SEQ, CHANGES,
 * LEN).  Commits of concurrent writers may reach the hook out of SEQ
 * order; CHANGES is valid only during the call.  Set the hook before
 * any writer runs.
 */
typedef void catalog_commit_hook (void *arg, uint64_t seq, const void *changes,
                                  size_t len);
extern void catalog_set_commit_hook (catalog *cat, catalog_commit_hook *hook,
                                     void *arg);

/* The catalog's change sequence (0: never changed since it existed). */
extern int catalog_change_seq (catalog *cat, uint64_t *seq);

/* Apply the changes of sequence SEQ (as a hook got them) in one durable
 * transaction.  Returns 0, -ESTALE if the catalog is not at SEQ - 1,
 * -EBADMSG if CHANGES is malformed (nothing is applied), or -errno.
 */
extern int catalog_apply_changes (catalog *cat, uint64_t seq,
                                  const void *changes, size_t len);

/* One batch of changes for catalog_apply_changes_many. */
struct catalog_change_batch {
  uint64_t seq;        /* its change sequence */
  const void *changes; /* as a hook got them */
  size_t len;
};

/* Apply the N batches B, of sequences SEQ + 1 to SEQ + N in order, in
 * one durable transaction (one sync) that leaves the catalog at SEQ + N:
 * all of them or, on any error, none.  Returns 0, -ESTALE if the
 * catalog is not at B[0].seq - 1 or the sequences do not follow each
 * other, -EBADMSG if a batch is malformed (N == 0 included), or -errno.
 */
extern int catalog_apply_changes_many (catalog *cat,
                                       const struct catalog_change_batch *b,
                                       size_t n);

#endif /* TESSERA_CATALOG_CATALOG_H */

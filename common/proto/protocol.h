/* Tessera wire protocol.
 *
 * Every connection (CLI, plugin or storage server to the MDS; plugin to a
 * storage server) carries frames: a fixed 24-byte header followed by
 * LENGTH bytes of payload.  All integers are big-endian on the wire.  The
 * first frames on a connection are HELLO and AUTH, the mutual proof of the
 * cluster key (common/utils/auth.h); nothing else is accepted before them.
 *
 * Requests carry a TAG chosen by the sender; the reply to a request has
 * the same tag and opcode with PROTO_FLAG_REPLY set.  Requests on one
 * connection may be pipelined and their replies may come back in any
 * order.  A reply whose STATUS is not PROTO_OK carries as its payload an
 * optional human-readable message (at most PROTO_ERRMSG_MAX bytes, no NUL).
 *
 * This header defines the frame, the opcodes and the host-order structs of
 * every message; proto_encode_* and proto_decode_* (messages.c) convert
 * between those structs and wire bytes.  Every decoder checks the exact
 * payload length, every count and string length, and returns -EBADMSG on
 * any mismatch; none allocates memory sized by a field it has not checked.
 * The format is documented in tessera-protocol(5).
 */

#ifndef TESSERA_PROTO_PROTOCOL_H
#define TESSERA_PROTO_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROTO_MAGIC 0x54455353u /* "TESS" */
#define PROTO_VERSION 3

/* Largest data transfer in one SEG_READ or SEG_WRITE. */
#define PROTO_MAX_DATA (32u * 1024 * 1024)
/* Largest payload of a segment I/O frame (header struct + data). */
#define PROTO_MAX_IO_PAYLOAD (PROTO_MAX_DATA + 4096u)
/* Largest payload of any other frame (metadata messages). */
#define PROTO_MAX_META_PAYLOAD (4u * 1024 * 1024)

#define PROTO_ERRMSG_MAX 512 /* error message in a failed reply */
#define PROTO_AUTH_MAX 256   /* authentication bytes in HELLO */
/* Largest payload a server accepts before the peer has authenticated
 * (HELLO and AUTH only): what an unauthenticated connection can make a
 * daemon buffer.
 */
#define PROTO_MAX_PREAUTH_PAYLOAD 512
#define PROTO_NAME_MAX 128   /* volume name */
#define PROTO_ADDR_MAX 256   /* "host:port" or "unix:/path" */
#define PROTO_ZONE_MAX 64    /* zone label */
#define PROTO_REPLICAS_MAX 8 /* replicas of one segment */
#define PROTO_MAP_MAX 4096   /* segments in one MAP_GET / MAP_ALLOC */
#define PROTO_LIST_MAX 4096  /* entries in any other list */

/* The frame header, exactly as it is on the wire (big-endian fields). */
struct proto_header {
  uint32_t magic;  /* PROTO_MAGIC */
  uint8_t version; /* PROTO_VERSION */
  uint8_t opcode;  /* PROTO_OP_* */
  uint16_t flags;  /* PROTO_FLAG_* */
  uint32_t status; /* PROTO_OK or PROTO_E* (replies); 0 in requests */
  uint32_t length; /* payload bytes that follow */
  uint64_t tag;    /* chosen by the requester, echoed in the reply */
} __attribute__ ((packed));
#define PROTO_HEADER_SIZE 24

/* Which daemons serve an opcode (opcodes.def's SERVED_BY). */
#define PROTO_BY_MDS 0x1
#define PROTO_BY_STORESRV 0x2

/* Opcodes: PROTO_OP_NAME, from opcodes.def. */
enum {
#define X(name, value, payload_max, served_by) PROTO_OP_##name = (value),
#include "opcodes.def"
#undef X
};

/* PROTO_SERVED_BY_NAME: opcode NAME's SERVED_BY bits, for the daemons'
 * build-time checks of their dispatch tables.
 */
enum {
#define X(name, value, payload_max, served_by) \
  PROTO_SERVED_BY_##name = (served_by),
#include "opcodes.def"
#undef X
};

/* How many opcodes each daemon serves. */
/* clang-format off */
enum {
  PROTO_NR_OPS_MDS = 0
#define X(name, value, payload_max, served_by) \
  + (((served_by) & PROTO_BY_MDS) != 0)
#include "opcodes.def"
#undef X
  ,
  PROTO_NR_OPS_STORESRV = 0
#define X(name, value, payload_max, served_by) \
  + (((served_by) & PROTO_BY_STORESRV) != 0)
#include "opcodes.def"
#undef X
};
/* clang-format on */

/* Header flags. */
#define PROTO_FLAG_REPLY 0x8000 /* this frame is a reply */
#define PROTO_FLAG_FUA 0x0001   /* SEG_WRITE, SEG_TRIM: durable before reply */
#define PROTO_FLAGS_KNOWN (PROTO_FLAG_REPLY | PROTO_FLAG_FUA)

/* Status codes (protocol constants, not host errno values).  Map with
 * proto_status_from_errno and proto_status_to_errno.
 */
enum {
  PROTO_OK = 0,
  PROTO_EPERM = 1,      /* not allowed (lease held by another writer) */
  PROTO_ENOENT = 2,     /* no such volume, server or segment */
  PROTO_EIO = 3,        /* I/O error */
  PROTO_ENOMEM = 4,     /* out of memory */
  PROTO_EBUSY = 5,      /* volume in use */
  PROTO_EEXIST = 6,     /* name already exists */
  PROTO_EINVAL = 7,     /* invalid argument */
  PROTO_ENOSPC = 8,     /* no space (store full, not enough servers) */
  PROTO_EROFS = 9,      /* volume opened read-only */
  PROTO_ERANGE = 10,    /* offset or length out of range */
  PROTO_ENOTSUP = 11,   /* operation not supported */
  PROTO_EBADMSG = 12,   /* malformed message */
  PROTO_ESTALE = 13,    /* epoch fenced or lease lost */
  PROTO_EPROTO = 14,    /* protocol violation (wrong order, version) */
  PROTO_ETIMEDOUT = 15, /* timed out */
  PROTO_EAGAIN = 16,    /* try again later */
  PROTO_EFBIG = 17,     /* size too large */
  PROTO_EACCES = 18,    /* authentication failed */
  PROTO_ESTALEMAP = 19, /* the segment's replica set changed: re-read the
                           map entry and retry (host errno EREMCHG) */
  /* A standby MDS: ask the leader (host errno EREMOTE); the message
   * names it (PROTO_NOT_LEADER_AT).
   */
  PROTO_ENOTLEADER = 20,
  PROTO_STATUS_MAX = 20,
};

/* The messages of a PROTO_ENOTLEADER reply: PROTO_NOT_LEADER_AT followed
 * by the leader's address as its clients know it (the MDS's --listen or
 * advertised address), or PROTO_NOT_LEADER_UNKNOWN while no leader is
 * known.  Clients go to that address next if it is in their list
 * (addrlist_next).
 */
#define PROTO_NOT_LEADER_AT "not the leader; the leader is at "
#define PROTO_NOT_LEADER_UNKNOWN "not the leader; no leader is known"

/* Roles named in HELLO. */
enum {
  PROTO_ROLE_CLI = 1,
  PROTO_ROLE_PLUGIN = 2,
  PROTO_ROLE_STORESRV = 3,
  PROTO_ROLE_MDS = 4,
};

/* Server states (catalog and SERVER_LIST). */
enum {
  PROTO_SERVER_UP = 0,
  PROTO_SERVER_DOWN = 1,
  PROTO_SERVER_DRAINING = 2,
  PROTO_SERVER_OUT = 3,
};

/* Replica states (catalog and map entries). */
enum {
  PROTO_REPLICA_OK = 0,
  PROTO_REPLICA_STALE = 1,
  PROTO_REPLICA_SYNCING = 2,
};

/* Volume flags (proto_volume_info.flags). */
#define PROTO_VOL_CLEAN 0x1   /* last writer closed cleanly */
#define PROTO_VOL_OPEN_RW 0x2 /* a writer holds the lease now */

/* VOL_OPEN flags. */
#define PROTO_OPEN_RW 0x1

/* ---- Message payloads (host order) ---- */

/* HELLO, both directions.  Wire: version u32, role u32, uuid[16],
 * stamp u64, auth_len u16, reserved u16 (zero), auth[auth_len].
 * AUTH: a request whose payload is the client's proof, an empty reply
 * (auth.h).  STAMP is INCARNATION when the sender's role is a storage
 * server, MDS_EPOCH when it is an MDS, and zero from everyone else: the
 * codec picks the field by ROLE.  A storage server's HELLO reply carries
 * its INCARNATION: a random non-zero number drawn at every start of the
 * process, so that a client can tell that the server restarted (and may
 * have lost writes it had not yet made durable) even when it reconnects
 * at once.  An MDS sends its MDS_EPOCH, as a client of storage servers
 * and in its replies: the create revision of the etcd leader key it
 * leads under (docs/high-availability.md), 0 without --etcd or while
 * not leading.  Storage servers refuse commands from an MDS whose epoch
 * is below the highest they have seen.
 */
struct proto_hello {
  uint32_t version;
  uint32_t role;
  uint8_t uuid[16];     /* sender: storage server or cluster uuid; else zero */
  uint64_t incarnation; /* storage server: this start of it; else zero */
  uint64_t mds_epoch;   /* MDS: the epoch it leads at, or 0; else zero */
  uint16_t auth_len;
  uint8_t auth[PROTO_AUTH_MAX];
};

/* One zone (failure domain) in a STATUS reply.  Wire: zone (string),
 * servers u32, flags u32, room u64, usable u64.  Servers without a zone
 * are summed into one entry whose zone is "".
 */
#define PROTO_ZONE_LOW 0x1 /* ROOM is below 10 % of USABLE */
#define PROTO_ZONE_FLAGS_KNOWN PROTO_ZONE_LOW
struct proto_zone_room {
  char zone[PROTO_ZONE_MAX + 1];
  uint32_t servers; /* up servers in it */
  uint32_t flags;   /* PROTO_ZONE_* */
  uint64_t room;    /* bytes below the servers' high-water marks */
  uint64_t usable;  /* bytes their high-water marks allow in all */
};
/* Most zones listed in a STATUS reply (ZONES_TOTAL counts them all). */
#define PROTO_STATUS_ZONES_MAX 16

/* One standby MDS in a STATUS reply (docs/high-availability.md).
 * Wire: name (string), flags u32, acked u64, lag u64, seen_ms u32.
 */
#define PROTO_STANDBY_SYNC 0x1 /* the synchronous standby */
#define PROTO_STANDBY_FLAGS_KNOWN PROTO_STANDBY_SYNC
struct proto_standby_info {
  char name[PROTO_NAME_MAX + 1];
  uint32_t flags;   /* PROTO_STANDBY_* */
  uint64_t acked;   /* the change sequence it has durably applied */
  uint64_t lag;     /* the leader's published sequence minus ACKED */
  uint32_t seen_ms; /* since its last pull (saturated) */
};
/* Most standbys listed in a STATUS reply. */
#define PROTO_STATUS_STANDBYS_MAX 8

/* One etcd endpoint in a STATUS reply, as the MDS found it when it
 * answered.  Wire: url (string, at most PROTO_ETCD_URL_MAX), flags u32,
 * version (string, at most PROTO_ETCD_VERSION_MAX, "" if unhealthy).
 */
#define PROTO_ETCD_URL_MAX 128
#define PROTO_ETCD_VERSION_MAX 31
#define PROTO_ETCD_HEALTHY 0x1 /* it answered its status in time */
#define PROTO_ETCD_LEADER 0x2  /* it is etcd's raft leader */
#define PROTO_ETCD_FLAGS_KNOWN (PROTO_ETCD_HEALTHY | PROTO_ETCD_LEADER)
struct proto_etcd_info {
  char url[PROTO_ETCD_URL_MAX + 1];
  uint32_t flags; /* PROTO_ETCD_* */
  char version[PROTO_ETCD_VERSION_MAX + 1];
};
/* Most etcd endpoints listed in a STATUS reply. */
#define PROTO_STATUS_ETCD_MAX 8

/* STATUS's HA flags. */
#define PROTO_STATUS_HA 0x1 /* the MDS runs with --etcd */
#define PROTO_STATUS_HA_FLAGS_KNOWN PROTO_STATUS_HA

/* STATUS and REPAIR reply (both requests are empty).  Wire: uuid[16],
 * segment_size u32, servers u32, servers_up u32, volumes u32, segments
 * u64, capacity u64, used u64, degraded u64, syncing u64, resyncing u32,
 * unproven u64, misplaced u64, domains_needed u32, domains_room u32,
 * zones_total u32, nzones u32 (at most PROTO_STATUS_ZONES_MAX), then
 * NZONES zones (struct proto_zone_room), in zone name order; then
 * ha_flags u32, mds_name (string), epoch u64, published u64, sync
 * (string), nstandbys u32 (at most PROTO_STATUS_STANDBYS_MAX), NSTANDBYS
 * standbys (struct proto_standby_info), netcd u32 (at most
 * PROTO_STATUS_ETCD_MAX), NETCD endpoints (struct proto_etcd_info), in
 * --etcd order.  Without PROTO_STATUS_HA all of these are zero or
 * empty.  REPAIR's reply lists no etcd endpoint.
 */
struct proto_status_info {
  uint8_t cluster_uuid[16];
  uint32_t segment_size;
  uint32_t servers;
  uint32_t servers_up;
  uint32_t volumes;
  uint64_t segments;  /* allocated segments, all volumes */
  uint64_t capacity;  /* bytes, all servers */
  uint64_t used;      /* bytes allocated to segments, all servers */
  uint64_t degraded;  /* segments with fewer ok replicas than wanted */
  uint64_t syncing;   /* replicas being copied now */
  uint32_t resyncing; /* volumes being resynced after a writer crash */
  uint64_t unproven;  /* segments whose last ok replica may have lost
                         writes (an unclean restart or a rollback) */
  uint64_t misplaced; /* segments spanning fewer failure domains than
                         they must (the last complete repair pass) */
  /* Failure domains a segment of the volume with the most replicas must
   * span, and how many have room for a new segment now: fewer means
   * allocations fail.
   */
  uint32_t domains_needed;
  uint32_t domains_room;
  uint32_t zones_total;
  uint32_t nzones;
  struct proto_zone_room zones[PROTO_STATUS_ZONES_MAX];
  /* The MDS that answered (the leader, with --etcd) and its standbys. */
  uint32_t ha_flags;                 /* PROTO_STATUS_HA* */
  char mds_name[PROTO_NAME_MAX + 1]; /* its --name, "" without --etcd */
  uint64_t epoch;                    /* its MDS epoch */
  uint64_t published;                /* the last change it published */
  char sync[PROTO_NAME_MAX + 1];     /* synchronous standby, "" none */
  uint32_t nstandbys;
  struct proto_standby_info standbys[PROTO_STATUS_STANDBYS_MAX];
  uint32_t netcd;
  struct proto_etcd_info etcd[PROTO_STATUS_ETCD_MAX];
};

/* SERVER_REGISTER request.  Wire: uuid[16], cluster_uuid[16],
 * segment_size u32, capacity u64, used u64, incarnation u64, flags u32,
 * index_seq u64, address (string), zone (string).  A string on the wire
 * is u16 length + bytes, no NUL.  INCARNATION is the one the server's
 * HELLO replies carry.  PROTO_REG_UNCLEAN: the server did not find its
 * clean-shutdown marker at this start (it crashed, was killed or lost
 * power, or stopped after a disk error), so writes it acknowledged but
 * had not made durable may be gone.  INDEX_SEQ counts the commits of the
 * server's index; it only ever grows, so a lower one than the MDS saw
 * before means the store was rolled back (also in heartbeats).
 */
#define PROTO_REG_UNCLEAN 0x1
#define PROTO_REG_FLAGS_KNOWN PROTO_REG_UNCLEAN
struct proto_register {
  uint8_t uuid[16];                 /* the store's own uuid (its superblock) */
  uint8_t cluster_uuid[16];         /* zero if the store is not formatted yet */
  uint32_t segment_size;            /* zero if the store is not formatted yet */
  uint64_t capacity;                /* bytes the store can hold */
  uint64_t used;                    /* bytes in use */
  uint64_t incarnation;             /* this start of the server */
  uint32_t flags;                   /* PROTO_REG_* */
  uint64_t index_seq;               /* index commits, ever */
  char address[PROTO_ADDR_MAX + 1]; /* where plugins reach it */
  char zone[PROTO_ZONE_MAX + 1];    /* failure domain, may be "" */
};

/* SERVER_REGISTER reply.  Wire: server_id u32, segment_size u32,
 * cluster_uuid[16], heartbeat_ms u32.
 */
struct proto_register_reply {
  uint32_t server_id;
  uint32_t segment_size;
  uint8_t cluster_uuid[16];
  uint32_t heartbeat_ms; /* how often the server must heartbeat */
};

/* SERVER_HEARTBEAT request.  Wire: server_id u32, capacity u64, used u64,
 * index_seq u64, n u32, segments[n] u64.  SEGMENTS lists segments deleted since the last
 * heartbeat (acknowledging earlier PROTO_OP_SERVER_HEARTBEAT replies).
 */
struct proto_heartbeat {
  uint32_t server_id;
  uint64_t capacity;
  uint64_t used;
  uint64_t index_seq; /* as in SERVER_REGISTER */
  uint32_t n;
  uint64_t *segments; /* decode: points into the payload's copy, see below */
};

/* A list of segment ids.  Wire: n u32, segments[n] u64 (n at most
 * PROTO_LIST_MAX).  Used by SEG_DELETE and SEG_LIST.
 */
struct proto_segment_list {
  uint32_t n;
  uint64_t *segments;
};

/* A fence: writes to VOLUME carrying an epoch older than EPOCH must be
 * refused (PROTO_ESTALE).  Wire: volume u64, epoch u64.  Also the payload
 * of SEG_FENCE.
 */
struct proto_fence {
  uint64_t volume;
  uint64_t epoch;
};

/* SERVER_HEARTBEAT reply.  Wire: a segment list (segments the server must
 * delete: their volumes were deleted; deleting an unknown segment
 * succeeds), then nfences u32 and nfences fences.  The MDS sends every
 * volume's fence in the first heartbeat reply after a registration, and
 * later ones as they are made.
 */
struct proto_heartbeat_reply {
  uint32_t n;
  uint64_t *segments;
  uint32_t nfences;
  struct proto_fence *fences;
};

/* SERVER_DRAIN, SERVER_REMOVE.  Wire: server u32.  Empty reply.
 * SERVER_REMOVE fails with PROTO_EBUSY while the server still holds
 * replicas (drain it, or wait until it is out and repaired).
 */
struct proto_server_request {
  uint32_t server;
};

/* One server in SERVER_LIST.  Wire: id u32, state u32, uuid[16],
 * capacity u64, used u64, segments u64, address (string), zone (string).
 */
struct proto_server_info {
  uint32_t id;
  uint32_t state; /* PROTO_SERVER_* */
  uint8_t uuid[16];
  uint64_t capacity;
  uint64_t used;
  uint64_t segments; /* replicas placed on it */
  char address[PROTO_ADDR_MAX + 1];
  char zone[PROTO_ZONE_MAX + 1];
};

/* SERVER_LIST reply.  Wire: n u32, then n server infos. */
struct proto_server_list {
  uint32_t n;
  struct proto_server_info *servers;
};

/* A volume.  Wire: id u64, size u64, replicas u32, flags u32, epoch u64,
 * segments u64, min_copies u32, name (string).  MIN_COPIES: a write must
 * reach at least this many ok replicas of each segment, or it fails.
 */
struct proto_volume_info {
  uint64_t id;
  uint64_t size;
  uint32_t replicas;
  uint32_t flags; /* PROTO_VOL_* */
  uint64_t epoch;
  uint64_t segments;   /* allocated segments */
  uint32_t min_copies; /* 1..replicas */
  char name[PROTO_NAME_MAX + 1];
};

/* VOL_LIST reply.  Wire: n u32, then n volume infos. */
struct proto_volume_list {
  uint32_t n;
  struct proto_volume_info *volumes;
};

/* VOL_CREATE (size, replicas, min_copies, name), VOL_RESIZE (size, name;
 * replicas 0), VOL_INFO and VOL_DELETE (name only), VOL_OPEN (flags,
 * name, token).  Wire: size u64, replicas u32, flags u32, min_copies
 * u32, name (string), then only if TOKEN is not all zero, token u8[16].
 * VOL_CREATE's MIN_COPIES 0 asks for the default (1 for fewer than 3
 * replicas, else 2).  A read-write VOL_OPEN that
 * carries the token of the open that took the lease, sent again because
 * its answer was lost, gets the same lease and epoch instead of EBUSY.
 * Replies: VOL_CREATE, VOL_INFO, VOL_RESIZE: a volume info; VOL_DELETE:
 * empty; VOL_OPEN: an open reply.
 */
#define PROTO_OPEN_TOKEN_SIZE 16
struct proto_vol_request {
  uint64_t size;
  uint32_t replicas;
  uint32_t flags;      /* VOL_OPEN: PROTO_OPEN_* */
  uint32_t min_copies; /* VOL_CREATE; 0: the default */
  char name[PROTO_NAME_MAX + 1];
  uint8_t token[PROTO_OPEN_TOKEN_SIZE]; /* VOL_OPEN; all zero: none */
};

/* VOL_OPEN reply.  Wire: volume info, segment_size u32, lease_ms u32. */
struct proto_open_reply {
  struct proto_volume_info volume; /* epoch: the writer's new epoch */
  uint32_t segment_size;
  uint32_t lease_ms; /* renew well within this */
};

/* VOL_CLOSE, LEASE_RENEW, EPOCH_NEXT, EPOCH_CLEAN.  Wire: volume u64,
 * epoch u64.  LEASE_RENEW fails with PROTO_ESTALE if the lease was lost.
 * EPOCH_NEXT (the writer rotates epochs): EPOCH is the writer's current
 * epoch; the reply is a proto_lease with the new epoch, which the lease
 * now carries (the old epoch stays dirty).  EPOCH_CLEAN: every write of
 * every epoch up to EPOCH is durable on every ok replica; the MDS records
 * it, so a resync after a crash covers only later epochs.  Other replies
 * are empty.
 */
struct proto_lease {
  uint64_t volume;
  uint64_t epoch;
};

/* MAP_GET (epoch ignored) and MAP_ALLOC.  Wire: volume u64, epoch u64,
 * start u64, count u32.  COUNT is 1..PROTO_MAP_MAX.  Reply: a map.
 * MAP_ALLOC allocates every hole in [start, start+count) (clipped to the
 * volume size) and returns the whole range; it needs the writer's epoch.
 */
struct proto_map_request {
  uint64_t volume;
  uint64_t epoch;
  uint64_t start;
  uint32_t count;
};

struct proto_replica {
  uint32_t server;
  uint8_t state; /* PROTO_REPLICA_* */
};

/* One map entry.  Wire: index u64, segment u64, gen u64, nreplicas u8, reserved
 * u8[3] (zero), then nreplicas times (server u32, state u8, reserved u8[3]).
 */
struct proto_map_entry {
  uint64_t index;
  uint64_t segment;
  uint64_t gen;      /* replica-set generation, see SEG_SET_GEN */
  uint8_t nreplicas; /* 1..PROTO_REPLICAS_MAX */
  struct proto_replica replicas[PROTO_REPLICAS_MAX];
};

/* MAP_GET / MAP_ALLOC reply.  Wire: n u32, then n entries in ascending
 * index order.  Indexes not listed are holes.
 */
struct proto_map {
  uint32_t n;
  struct proto_map_entry *entries;
};

/* REPLICA_FAILED.  Wire: volume u64, epoch u64, segment u64, server u32.
 * The MDS marks that replica stale durably before it replies.
 */
struct proto_replica_failed {
  uint64_t volume;
  uint64_t epoch;
  uint64_t segment;
  uint32_t server;
};

/* MAP_RAISE_GEN.  Wire: volume u64, epoch u64, segment u64, gen u64.
 * A write or trim sent with generation GEN may still land on a replica
 * (its outcome is unknown there): the MDS raises the segment's
 * generation above GEN unless it is already, and replies (empty) once
 * the server of every ok and syncing replica holds the new one, or has
 * had its replica marked stale.  Such a write can land nowhere after
 * that: every writable replica refuses it (PROTO_ESTALEMAP).
 */
struct proto_raise_gen {
  uint64_t volume;
  uint64_t epoch;
  uint64_t segment;
  uint64_t gen;
};

/* A segment's index in its volume, where a message carries one: the
 * map entry (volume, index) the segment fills.  PROTO_INDEX_NONE: not
 * known (a read of a repair copy; SEG_DESCRIBE of a segment recorded
 * before indexes were).
 */
#define PROTO_INDEX_NONE UINT64_MAX

/* SEG_READ, SEG_WRITE, SEG_TRIM request head.  Wire (48 bytes): segment
 * u64, volume u64, epoch u64, gen u64, offset u32, length u32, index
 * u64.  A write or
 * trim whose EPOCH is older than the volume's fence fails with
 * PROTO_ESTALE; a request whose GEN is older than the segment's
 * generation on that server fails with PROTO_ESTALEMAP (reads ignore the
 * epoch; a read with GEN 0, as repair copies send, skips the check).  A
 * read of a segment the server does not hold fails with PROTO_ENOENT:
 * the segment was never written there (the reader tries the other
 * replicas; if none holds it, it reads as zeros) or the server lost it.
 * INDEX is the segment's index in VOLUME (PROTO_INDEX_NONE: not given;
 * reads ignore it): a write or trim records it with the segment, and
 * one whose INDEX differs from the index the server recorded for the
 * segment fails with PROTO_EINVAL.
 * SEG_WRITE's payload is this head followed by exactly LENGTH data bytes;
 * SEG_READ's reply
 * payload is exactly LENGTH data bytes.  OFFSET + LENGTH must not exceed
 * the segment size, LENGTH must not exceed PROTO_MAX_DATA.
 */
struct proto_seg_io {
  uint64_t segment;
  uint64_t volume;
  uint64_t epoch;
  uint64_t gen;
  uint32_t offset;
  uint32_t length;
  uint64_t index; /* PROTO_INDEX_NONE: not given */
};
#define PROTO_SEG_IO_SIZE 48

/* SEG_DELETE request: a segment list (n u32, segments[n] u64).  SEG_FLUSH:
 * empty both ways.  SEG_FENCE: a proto_fence (kept durably, only ever
 * raised); empty reply.
 */

/* SEG_SET_GEN.  Wire: segment u64, volume u64, gen u64, index u64.
 * The server
 * records durably that the segment's replica set is at generation GEN
 * (only ever raised; creating the segment, empty, if it has none) and
 * from then on refuses writes and trims with an older gen (ESTALEMAP).
 * The MDS sets it on every ok replica before it starts copying a segment
 * to a new replica, so that no writer can miss the new replica.  INDEX
 * is recorded as in SEG_WRITE (PROTO_EINVAL if it contradicts the
 * recorded one).
 */
struct proto_set_gen {
  uint64_t segment;
  uint64_t volume;
  uint64_t gen;
  uint64_t index; /* PROTO_INDEX_NONE: not given */
};

/* SEG_PULL (MDS to the target server).  Wire: segment u64, volume u64,
 * epoch u64, gen u64, mode u32, reserved u32 (zero), bandwidth u64,
 * index u64, source (string).  The target copies the segment from the
 * storage
 * server at SOURCE: PROTO_PULL_FULL copies everything, PROTO_PULL_DIFF
 * compares SEG_HASH blocks and copies only those that differ.  Client
 * writes that reach the target during the copy are never overwritten by
 * copy data (a dirty range set per segment).  BANDWIDTH caps the copy in
 * bytes/s (0: no cap).  INDEX is recorded as in SEG_WRITE.  The reply
 * (empty) comes when the copy is durable; its status is the copy's
 * result.
 */
#define PROTO_PULL_FULL 0
#define PROTO_PULL_DIFF 1
struct proto_pull {
  uint64_t segment;
  uint64_t volume;
  uint64_t epoch; /* recorded as the segment's last epoch on the target */
  uint64_t gen;   /* the segment's generation on the target */
  uint32_t mode;
  uint64_t bandwidth;
  uint64_t index; /* PROTO_INDEX_NONE: not given */
  char source[PROTO_ADDR_MAX + 1];
};

/* SEG_HASH.  Wire: segment u64, offset u32, length u32, block u32.
 * BLOCK is 4 KiB .. 4 MiB, a power of two; OFFSET a multiple of BLOCK;
 * OFFSET + LENGTH within the segment.  Reply: a proto_hash: epoch u64
 * (the segment's last epoch, 0 if the server has no such segment), n u32,
 * crc[n] u32: the CRC-32C of each BLOCK of the range (the last one may be
 * short); a segment the server does not have hashes as zeros.
 */
struct proto_hash_request {
  uint64_t segment;
  uint32_t offset;
  uint32_t length;
  uint32_t block;
};
struct proto_hash {
  uint64_t epoch;
  uint32_t n;
  uint32_t *crcs;
};

/* SEG_LIST.  Wire: volume u64, min_epoch u64, start_after u64, max u32.
 * Reply: a segment list, in ascending id order, of VOLUME's segments on
 * this server with id > START_AFTER whose last epoch >= MIN_EPOCH, at
 * most MAX (<= PROTO_LIST_MAX) of them.  Used to resync after a writer
 * crash.
 */
struct proto_seg_list_request {
  uint64_t volume;
  uint64_t min_epoch;
  uint64_t start_after;
  uint32_t max;
};

/* SEG_DESCRIBE (to a storage server, for tessera-mds --rebuild).
 * Wire: start_after u64, max u32 (at least 1).  Reply: n u32, then n
 * segment descriptions (struct proto_seg_desc, 48 bytes each: segment
 * u64, volume u64, index u64, gen u64, epoch u64, state u8, reserved
 * u8[7] (zero)) of the segments this server holds with id >
 * START_AFTER, in ascending id order, at most min (MAX,
 * PROTO_LIST_MAX) of them: fewer means there are no more.  Then
 * nfences u32 and nfences fences (volume u64, epoch u64, in volume
 * order): every fence the server keeps when START_AFTER is 0, none on
 * the later pages.  Segments being created or deleted are left out.
 */
struct proto_describe_request {
  uint64_t start_after;
  uint32_t max;
};
struct proto_seg_desc {
  uint64_t segment;
  uint64_t volume;
  uint64_t index; /* PROTO_INDEX_NONE: not recorded */
  uint64_t gen;
  uint64_t epoch; /* the last epoch that wrote it */
  uint8_t state;  /* 0: ok; anything else: not to be trusted */
};
#define PROTO_SEG_DESC_SIZE 48
/* Most fences in one SEG_DESCRIBE reply: what fits beside a full page. */
#define PROTO_DESCRIBE_FENCES_MAX \
  ((PROTO_MAX_META_PAYLOAD - 8 - PROTO_LIST_MAX * PROTO_SEG_DESC_SIZE) / 16)
struct proto_describe {
  uint32_t n;
  struct proto_seg_desc *segs;
  uint32_t nfences;
  struct proto_fence *fences;
};

/* TABLES_PUT request and TABLES_GET reply (TABLES_GET's request is
 * empty).  Wire: version u64, then the rest of the payload, at most
 * PROTO_TABLES_MAX bytes, is the blob: the cluster tables the MDS keeps
 * on every storage server (mds/tables.c encodes them; the storage server
 * does not look inside).  TABLES_PUT: the server stores VERSION and the
 * blob durably, before it replies, if VERSION is above the version it
 * holds, and else keeps what it holds (not an error).  Its reply is a
 * proto_tables with an empty blob: the version the server holds now.
 * TABLES_GET's reply: the version and blob held, version 0 and an
 * empty blob if none.  On decode BLOB points into the payload.
 */
#define PROTO_TABLES_MAX (PROTO_MAX_META_PAYLOAD - 8)
struct proto_tables {
  uint64_t version;
  const uint8_t *blob;
  uint32_t len;
};

/* SEG_RESYNC (to the MDS).  Wire: volume u64, segment u64, source u32.
 * The MDS makes every other replica of SEGMENT equal to SOURCE's copy
 * (SEG_PULL in PROTO_PULL_DIFF mode) and replies (empty) when done.
 */
struct proto_resync {
  uint64_t volume;
  uint64_t segment;
  uint32_t source;
};

/* CATALOG_BACKUP: a consistent, compacted copy of the MDS's catalog
 * (an LMDB file), read in chunks because no frame may exceed
 * PROTO_MAX_META_PAYLOAD.  Request.  Wire: backup_id u64, offset u64,
 * max u32.  BACKUP_ID 0 starts a backup: the MDS copies its catalog
 * under one read transaction (writers go on meanwhile) and replies with
 * the new backup's id and the chunk at OFFSET, which must be 0.  Later
 * requests name that id and read at any OFFSET up to the size.  MAX is
 * the most data bytes wanted, 1..PROTO_BACKUP_CHUNK_MAX.  A backup
 * belongs to the connection that started it; the MDS drops it once its
 * last byte was sent, when that connection closes, or after
 * PROTO_BACKUP_IDLE_MS without a request, and keeps at most
 * PROTO_BACKUPS_MAX at once (else PROTO_EAGAIN).  An unknown id fails
 * with PROTO_ENOENT, an offset past the size with PROTO_ERANGE, no room
 * for the copy in the catalog's file system with PROTO_ENOSPC.
 *
 * Reply.  Wire: backup_id u64, size u64, sha256 u8[32], offset u64,
 * len u32, data[len].  SIZE and SHA256 are those of the whole copy (the
 * same in every reply of one backup); DATA is LEN bytes of it from
 * OFFSET, LEN at most MAX, and less only at the end of the copy.
 */
#define PROTO_BACKUP_CHUNK_MAX (1024u * 1024)
#define PROTO_BACKUP_SHA256_SIZE 32
#define PROTO_BACKUPS_MAX 4
#define PROTO_BACKUP_IDLE_MS 120000
struct proto_backup_request {
  uint64_t backup_id; /* 0: start a backup */
  uint64_t offset;
  uint32_t max; /* 1..PROTO_BACKUP_CHUNK_MAX */
};
struct proto_backup_chunk {
  uint64_t backup_id;
  uint64_t size;
  uint8_t sha256[PROTO_BACKUP_SHA256_SIZE];
  uint64_t offset;
  uint32_t len;
  const uint8_t *data; /* decode: points into the payload, not owned */
};

/* REPL_PULL (a standby MDS to the leader; docs/high-availability.md).
 * Request.  Wire: after u64, have u32, max u32, wait_ms u32, name
 * (string).  AFTER is the change sequence the standby has applied
 * durably (which the leader takes as its acknowledgement); HAVE the
 * bytes of batch AFTER + 1 it holds already (a batch larger than one
 * reply comes in several); MAX the most data bytes wanted,
 * 1..PROTO_REPL_CHUNK_MAX; WAIT_MS how long the leader may wait for a
 * change, at most PROTO_REPL_WAIT_MAX_MS; NAME the standby's name, not
 * empty.  Reply.  Wire: published u64, n u32, then N chunks: seq u64,
 * total u32, offset u32, len u32, data[len].  A chunk is bytes
 * [OFFSET, OFFSET + LEN) of the encoded changes of sequence SEQ (TOTAL
 * bytes in all, catalog/changelog.c); chunks come in order, from
 * sequence AFTER + 1 at offset HAVE on.  A standby out of the leader's
 * window gets PROTO_ESTALE.
 */
#define PROTO_REPL_CHUNK_MAX (1024u * 1024)
#define PROTO_REPL_WAIT_MAX_MS 10000
#define PROTO_REPL_CHUNK_HEAD 20
struct proto_repl_pull {
  uint64_t after;
  uint32_t have;
  uint32_t max;
  uint32_t wait_ms;
  char name[PROTO_NAME_MAX + 1];
};
struct proto_repl_chunk {
  uint64_t seq;
  uint32_t total;
  uint32_t offset;
  uint32_t len;
  const uint8_t *data; /* decode: points into the payload */
};
struct proto_repl_reply {
  uint64_t published;
  uint32_t n;
  struct proto_repl_chunk *chunks; /* decode: allocated; free with
                                      proto_repl_reply_free */
};

/* ---- Functions (common/proto/ in libcommon.la) ---- */

/* Encode HDR (host order) into BUF, which must hold PROTO_HEADER_SIZE
 * bytes.
 */
extern void proto_header_encode (const struct proto_header *hdr, void *buf);

/* Decode and validate the PROTO_HEADER_SIZE bytes at BUF into HDR (host
 * order).  MAX_PAYLOAD is the largest LENGTH the caller accepts.
 * Returns 0, or:
 *   -EBADMSG  bad magic, unknown opcode, unknown flags, status out of
 *             range, or a request with a non-zero status;
 *   -EPROTO   wrong protocol version;
 *   -EMSGSIZE LENGTH exceeds MAX_PAYLOAD.
 * HDR is filled even on error so the caller can log it.
 */
extern int proto_header_decode (const void *buf, struct proto_header *hdr,
                                uint32_t max_payload);

/* Largest payload a frame with OPCODE may carry (requests and replies):
 * opcodes.def's PAYLOAD_MAX, PROTO_MAX_META_PAYLOAD for unknown opcodes.
 */
extern uint32_t proto_max_payload (uint8_t opcode);

/* True if OPCODE is one this protocol version defines (opcodes.def). */
extern bool proto_opcode_known (uint8_t opcode);

/* Names for debug output; never NULL ("unknown" for others). */
extern const char *proto_opcode_name (uint8_t opcode);
extern const char *proto_status_name (uint32_t status);
extern const char *proto_role_name (uint32_t role);
extern const char *proto_server_state_name (uint32_t state);
extern const char *proto_replica_state_name (uint32_t state);

/* Map a host errno (positive) to a PROTO_E* status; unknown errors
 * become PROTO_EIO.  proto_status_to_errno maps back (PROTO_OK -> 0,
 * unknown -> EIO).
 */
extern uint32_t proto_status_from_errno (int err);
extern int proto_status_to_errno (uint32_t status);

/* Message codecs.
 *
 * proto_encode_X (const struct X *msg, struct proto_wbuf *wb) appends the
 * wire form of MSG to WB; errors are sticky in WB (see buf.h).
 *
 * proto_decode_X (const void *payload, size_t len, struct X *out) parses
 * exactly LEN bytes.  Returns 0 or -EBADMSG (short, trailing bytes, a
 * count or string length out of range, reserved bytes not zero, a string
 * with a NUL).  Decoders of lists allocate the array (*_free releases it;
 * it accepts a zeroed struct) and return -ENOMEM if that fails; the
 * allocation is bounded by LEN, never by an unchecked count.
 */
struct proto_wbuf;
extern void proto_encode_hello (const struct proto_hello *,
                                struct proto_wbuf *);
extern int proto_decode_hello (const void *, size_t, struct proto_hello *);
extern void proto_encode_status_info (const struct proto_status_info *,
                                      struct proto_wbuf *);
extern int proto_decode_status_info (const void *, size_t,
                                     struct proto_status_info *);
extern void proto_encode_register (const struct proto_register *,
                                   struct proto_wbuf *);
extern int proto_decode_register (const void *, size_t,
                                  struct proto_register *);
extern void proto_encode_register_reply (const struct proto_register_reply *,
                                         struct proto_wbuf *);
extern int proto_decode_register_reply (const void *, size_t,
                                        struct proto_register_reply *);
extern void proto_encode_heartbeat (const struct proto_heartbeat *,
                                    struct proto_wbuf *);
extern int proto_decode_heartbeat (const void *, size_t,
                                   struct proto_heartbeat *);
extern void proto_heartbeat_free (struct proto_heartbeat *);
extern void proto_encode_heartbeat_reply (const struct proto_heartbeat_reply *,
                                          struct proto_wbuf *);
extern int proto_decode_heartbeat_reply (const void *, size_t,
                                         struct proto_heartbeat_reply *);
extern void proto_heartbeat_reply_free (struct proto_heartbeat_reply *);
extern void proto_encode_fence (const struct proto_fence *,
                                struct proto_wbuf *);
extern int proto_decode_fence (const void *, size_t, struct proto_fence *);
extern void proto_encode_server_request (const struct proto_server_request *,
                                         struct proto_wbuf *);
extern int proto_decode_server_request (const void *, size_t,
                                        struct proto_server_request *);
extern void proto_encode_set_gen (const struct proto_set_gen *,
                                  struct proto_wbuf *);
extern int proto_decode_set_gen (const void *, size_t, struct proto_set_gen *);
extern void proto_encode_pull (const struct proto_pull *, struct proto_wbuf *);
extern int proto_decode_pull (const void *, size_t, struct proto_pull *);
extern void proto_encode_hash_request (const struct proto_hash_request *,
                                       struct proto_wbuf *);
extern int proto_decode_hash_request (const void *, size_t,
                                      struct proto_hash_request *);
extern void proto_encode_hash (const struct proto_hash *, struct proto_wbuf *);
extern int proto_decode_hash (const void *, size_t, struct proto_hash *);
extern void proto_hash_free (struct proto_hash *);
extern void
proto_encode_seg_list_request (const struct proto_seg_list_request *,
                               struct proto_wbuf *);
extern int proto_decode_seg_list_request (const void *, size_t,
                                          struct proto_seg_list_request *);
extern void
proto_encode_describe_request (const struct proto_describe_request *,
                               struct proto_wbuf *);
extern int proto_decode_describe_request (const void *, size_t,
                                          struct proto_describe_request *);
extern void proto_encode_describe (const struct proto_describe *,
                                   struct proto_wbuf *);
extern int proto_decode_describe (const void *, size_t,
                                  struct proto_describe *);
extern void proto_describe_free (struct proto_describe *);
extern void proto_encode_tables (const struct proto_tables *,
                                 struct proto_wbuf *);
extern int proto_decode_tables (const void *, size_t, struct proto_tables *);
extern void proto_encode_resync (const struct proto_resync *,
                                 struct proto_wbuf *);
extern int proto_decode_resync (const void *, size_t, struct proto_resync *);
extern void proto_encode_segment_list (const struct proto_segment_list *,
                                       struct proto_wbuf *);
extern int proto_decode_segment_list (const void *, size_t,
                                      struct proto_segment_list *);
extern void proto_segment_list_free (struct proto_segment_list *);
extern void proto_encode_server_list (const struct proto_server_list *,
                                      struct proto_wbuf *);
extern int proto_decode_server_list (const void *, size_t,
                                     struct proto_server_list *);
extern void proto_server_list_free (struct proto_server_list *);
extern void proto_encode_volume_info (const struct proto_volume_info *,
                                      struct proto_wbuf *);
extern int proto_decode_volume_info (const void *, size_t,
                                     struct proto_volume_info *);
extern void proto_encode_volume_list (const struct proto_volume_list *,
                                      struct proto_wbuf *);
extern int proto_decode_volume_list (const void *, size_t,
                                     struct proto_volume_list *);
extern void proto_volume_list_free (struct proto_volume_list *);
extern void proto_encode_vol_request (const struct proto_vol_request *,
                                      struct proto_wbuf *);
extern int proto_decode_vol_request (const void *, size_t,
                                     struct proto_vol_request *);
extern void proto_encode_open_reply (const struct proto_open_reply *,
                                     struct proto_wbuf *);
extern int proto_decode_open_reply (const void *, size_t,
                                    struct proto_open_reply *);
extern void proto_encode_lease (const struct proto_lease *,
                                struct proto_wbuf *);
extern int proto_decode_lease (const void *, size_t, struct proto_lease *);
extern void proto_encode_map_request (const struct proto_map_request *,
                                      struct proto_wbuf *);
extern int proto_decode_map_request (const void *, size_t,
                                     struct proto_map_request *);
extern void proto_encode_backup_request (const struct proto_backup_request *,
                                         struct proto_wbuf *);
extern int proto_decode_backup_request (const void *, size_t,
                                        struct proto_backup_request *);
extern void proto_encode_backup_chunk (const struct proto_backup_chunk *,
                                       struct proto_wbuf *);
extern int proto_decode_backup_chunk (const void *, size_t,
                                      struct proto_backup_chunk *);
extern void proto_encode_repl_pull (const struct proto_repl_pull *,
                                    struct proto_wbuf *);
extern int proto_decode_repl_pull (const void *, size_t,
                                   struct proto_repl_pull *);
/* The reply is encoded piecewise: the head, then each chunk. */
extern void proto_encode_repl_reply_head (uint64_t published, uint32_t n,
                                          struct proto_wbuf *);
extern void proto_encode_repl_chunk (const struct proto_repl_chunk *,
                                     struct proto_wbuf *);
extern int proto_decode_repl_reply (const void *, size_t,
                                    struct proto_repl_reply *);
extern void proto_repl_reply_free (struct proto_repl_reply *);
extern void proto_encode_map (const struct proto_map *, struct proto_wbuf *);
extern int proto_decode_map (const void *, size_t, struct proto_map *);
extern void proto_map_free (struct proto_map *);
extern void proto_encode_replica_failed (const struct proto_replica_failed *,
                                         struct proto_wbuf *);
extern int proto_decode_replica_failed (const void *, size_t,
                                        struct proto_replica_failed *);
extern void proto_encode_raise_gen (const struct proto_raise_gen *,
                                    struct proto_wbuf *);
extern int proto_decode_raise_gen (const void *, size_t,
                                   struct proto_raise_gen *);

/* Segment I/O heads: fixed PROTO_SEG_IO_SIZE (48) bytes, encoded straight
 * into BUF.  The decoder reads the first PROTO_SEG_IO_SIZE bytes of a
 * payload of LEN bytes; it returns -EBADMSG if LEN is shorter, and otherwise leaves
 * checking LEN against the opcode (SEG_WRITE: head + length) and the
 * range against the segment size to the caller.
 */
extern void proto_encode_seg_io (const struct proto_seg_io *, void *buf);
extern int proto_decode_seg_io (const void *, size_t, struct proto_seg_io *);

#endif /* TESSERA_PROTO_PROTOCOL_H */

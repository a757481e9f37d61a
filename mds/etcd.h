/* An etcd v3 client over etcd's gRPC-JSON gateway (etcd 3.4: POST
 * /v3/kv/range, /v3/kv/txn, /v3/kv/deleterange, /v3/lease/grant,
 * /v3/lease/keepalive, /v3/lease/revoke, /v3/maintenance/status), with
 * libcurl for HTTP(S) and jansson for JSON.  Keys and values travel
 * base64-encoded, 64-bit integers as JSON strings.
 *
 * A handle is one libcurl easy handle (one kept-alive connection) and
 * the list of endpoints: use it from one thread at a time.  The MDS
 * keeps one for its lease renewal, on its own thread, and others for
 * everything else, so that bulk traffic never delays a renewal.  Every
 * call is bounded by the handle's timeout: endpoints are tried in turn,
 * starting from the last one that answered, until one answers or the
 * time is up.  curl_global_init must have run before the first handle
 * is made (etcd_global_init, from main before any thread starts).
 *
 * Errors are -errno: -ETIMEDOUT (no endpoint answered in time, or etcd
 * could not commit in time, e.g. without quorum), -ECONNREFUSED (no
 * endpoint reachable), -EPROTO (an answer that is not what etcd
 * sends), -EIO (etcd refused the request), -ENOMEM.  etcd_error
 * describes the last one.
 */

#ifndef TESSERA_MDS_ETCD_H
#define TESSERA_MDS_ETCD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Endpoints and options of etcd_new. */
struct etcd_config {
  const char *endpoints; /* "http://HOST:PORT[,https://HOST:PORT...]" */
  const char *cacert;    /* PEM CA bundle for https endpoints, or NULL */
  const char *cert;      /* client certificate (PEM), or NULL */
  const char *key;       /* its private key (PEM), or NULL */
  long timeout_ms;       /* bound of every call; 0: 2000 */
};

/* A key's value and revisions (etcd_get, etcd_create). */
struct etcd_kv {
  char *value; /* malloc'd, NUL-terminated (LEN bytes before the NUL) */
  size_t len;
  int64_t create_rev; /* revision that created the key */
  int64_t mod_rev;    /* revision of its last change */
  int64_t lease;      /* lease it is attached to, 0: none */
};

/* One endpoint's health (etcd_status). */
struct etcd_status {
  char version[32];
  uint64_t member; /* this member's id */
  uint64_t leader; /* the member it believes leads, 0: none */
  int64_t raft_term;
  int64_t db_size;
};

struct etcd;

extern int etcd_global_init (void);

/* Make a handle for CFG into *OUT.  Returns 0, -EINVAL with a message
 * in ERR (ERRLEN bytes) naming the bad endpoint, or -ENOMEM.  Nothing
 * is sent until the first call.
 */
extern int etcd_new (const struct etcd_config *cfg, struct etcd **out,
                     char *err, size_t errlen);
extern void etcd_free (struct etcd *e);

/* The last error, or "" (never NULL). */
extern const char *etcd_error (const struct etcd *e);

/* How many endpoints E has, and the Nth one's URL. */
extern size_t etcd_endpoints (const struct etcd *e);
extern const char *etcd_endpoint (const struct etcd *e, size_t n);

/* Read KEY into *KV (free it with etcd_kv_clear).  Returns 1 if it
 * exists, 0 if not (*KV zeroed), or -errno.
 */
extern int etcd_get (struct etcd *e, const char *key, struct etcd_kv *kv);
extern void etcd_kv_clear (struct etcd_kv *kv);

/* Create KEY with VALUE (LEN bytes) attached to LEASE (0: none) if it
 * does not exist (one transaction: compare CREATE(KEY) = 0, then put,
 * else range).  Returns 1 if this call created it (KV->create_rev is
 * its revision), 0 if it existed (*KV holds it), or -errno.  KV may be
 * NULL.
 */
extern int etcd_create (struct etcd *e, const char *key, const void *value,
                        size_t len, int64_t lease, struct etcd_kv *kv);

/* Put KEY = VALUE (attached to LEASE, 0: none) only while GUARD exists
 * with create revision GUARD_REV (a leader writing under its own leader
 * key).  Returns 0, -ESTALE if GUARD is gone or recreated, or -errno.
 */
extern int etcd_put_guarded (struct etcd *e, const char *guard,
                             int64_t guard_rev, const char *key,
                             const void *value, size_t len, int64_t lease);

/* Delete KEY only if its create revision is REV (a leader resigning).
 * Returns 0 (deleted, or already gone), -ESTALE if KEY exists with
 * another revision, or -errno.
 */
extern int etcd_delete_if (struct etcd *e, const char *key, int64_t rev);

/* Leases.  Grant one of TTL seconds: *ID and the TTL etcd granted.
 * Keep it alive: *TTL the seconds it has left; -ENOENT if it expired or
 * was revoked.  Revoke it (its keys are deleted with it).
 */
extern int etcd_lease_grant (struct etcd *e, int64_t ttl, int64_t *id,
                             int64_t *granted);
extern int etcd_lease_keepalive (struct etcd *e, int64_t id, int64_t *ttl);
extern int etcd_lease_revoke (struct etcd *e, int64_t id);

/* Ask endpoint N (not the others) for its status. */
extern int etcd_status (struct etcd *e, size_t n, struct etcd_status *st);

#endif /* TESSERA_MDS_ETCD_H */

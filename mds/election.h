/* Leader election through etcd (docs/high-availability.md, "Election").
 *
 * Each MDS runs one election: a thread with etcd handles of its own
 * that holds an etcd lease and campaigns for the key PREFIX/leader with
 * one transaction (create it on the lease if nobody holds it).  The
 * key's create revision is the MDS epoch of that term.  The leader
 * renews its lease every RENEW_MS; each answer makes the lease good
 * until the renewal's send time plus the TTL etcd says is left.  A
 * leader whose lease is not good for REQUEST_MS more, or whose lease
 * etcd says is gone, is deposed: ON_DEPOSED runs once and the election
 * ends (a deposed MDS never leads again without starting over).
 * election_leading is the check before acting as leader: it reads the
 * clock, so a leader paused past its lease finds itself deposed the
 * moment it runs again, before the renewal thread has noticed.
 *
 * The thread calls ON_ELECTED and ON_DEPOSED; they must not call back
 * into the election.
 */

#ifndef TESSERA_MDS_ELECTION_H
#define TESSERA_MDS_ELECTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "etcd.h"

struct election_config {
  struct etcd_config etcd; /* endpoints, TLS; timeout: see REQUEST_MS */
  const char *prefix;      /* keys live under it, e.g. /tessera/UUID */
  const char *name;        /* this MDS, unique in the cluster */
  const char *advertise;   /* HOST:PORT clients reach this MDS at */
  int64_t ttl_s;           /* lease TTL; 0: 10 */
  long renew_ms;           /* renewal interval; 0: TTL / 4 */
  long request_ms;         /* bound of each etcd call; 0: TTL / 5, at
                              least 1000 */
  /* Called by the election's thread (ARG as given). */
  void (*on_elected) (void *arg, uint64_t epoch);
  void (*on_deposed) (void *arg, const char *why);
  /* May this MDS campaign now, given the key PREFIX/RECORD_KEY as last
   * read (NULL if it does not exist)?  NULL: always.
   */
  bool (*may_campaign) (void *arg, const struct etcd_kv *record);
  const char *record_key; /* e.g. "sync"; needed with MAY_CAMPAIGN */
  void *arg;
};

/* The leader as the election last read it. */
struct election_leader {
  char name[128];
  char advertise[256];
  uint64_t epoch; /* 0: nobody leads */
};

struct election;

/* Check CFG (RENEW_MS + 2 * REQUEST_MS must not exceed the TTL), then
 * start campaigning.  Returns 0, or -EINVAL with a message in ERR.
 */
extern int election_start (const struct election_config *cfg,
                           struct election **out, char *err, size_t errlen);

/* True if this MDS leads and its lease is good for REQUEST_MS more;
 * *EPOCH (may be NULL) its epoch.
 */
extern bool election_leading (struct election *el, uint64_t *epoch);

/* True once deposed (ON_DEPOSED has run or is running). */
extern bool election_deposed (struct election *el);

/* Who leads, as last read (nobody: epoch 0). */
extern void election_get_leader (struct election *el,
                                 struct election_leader *out);

/* As the leader of EPOCH, put PREFIX/KEY = VALUE (LEN bytes) in etcd,
 * guarded by the leader key's revision: refused (-ESTALE) once this MDS
 * no longer leads at EPOCH.  Any thread; one at a time (its own etcd
 * handle, not the renewal's).  Returns 0 or -errno.
 */
extern int election_put (struct election *el, uint64_t epoch, const char *key,
                         const void *value, size_t len);

/* Read PREFIX/KEY (any thread, as election_put).  Returns 1 with *KV
 * (free with etcd_kv_clear), 0 if absent, or -errno.
 */
extern int election_get (struct election *el, const char *key,
                         struct etcd_kv *kv);

/* Stop: a leader resigns (deletes its key if it still holds it and
 * revokes its lease), so a standby need not wait out the TTL.
 */
extern void election_stop (struct election *el);

#endif /* TESSERA_MDS_ELECTION_H */

/* nbdkit-tessera-plugin: map cache entries (map-entry.c).
 *
 * What the map cache (map.c) keeps of each segment, how a MAP_GET or
 * MAP_ALLOC reply is decoded and checked, and the rule that decides
 * whether an entry from the MDS replaces the cached one.  The rule
 * carries the cache's hardest invariant: a cached entry is never
 * replaced by one that may predate it, so that a replica once known
 * stale is never read or written as ok again.  Part of
 * libtesseraplugin.la: no locks, no nbdkit calls.
 */

#ifndef TESSERA_NBDPLUGIN_MAP_ENTRY_H
#define TESSERA_NBDPLUGIN_MAP_ENTRY_H

#include <stdbool.h>
#include <stdint.h>

#include "protocol.h"

/* One segment's map entry.  Immutable once published in the map cache;
 * a change publishes a new struct and retires the old one.
 */
struct seg {
  uint64_t index;
  uint64_t id;
  uint64_t gen; /* replica-set generation, sent with writes and trims */
  uint8_t nreplicas;
  struct proto_replica replicas[PROTO_REPLICAS_MAX];
  /* The map ticket (volume.map_seq) of the MAP request this entry came
   * from or, if MARKED, of the answered failure report that marked a
   * replica stale here ahead of the MDS's own entry.
   */
  uint64_t ticket;
  bool marked;
  struct seg *retired_next;
};

/* Decode the MAP_GET or MAP_ALLOC reply REPLY (LEN bytes) to the
 * request for [START, START+COUNT) of a volume of NSEGMENTS segments
 * into *MAP, and check that every entry lies in that range and in the
 * volume.  Returns 0 and *MAP (free with proto_map_free), or -errno
 * (-EBADMSG: malformed or out of range; -ENOMEM) with nothing to free.
 */
extern int map_entry_decode (const void *reply, uint32_t len, uint64_t start,
                             uint32_t count, uint64_t nsegments,
                             struct proto_map *map);

/* Whether cached entry S says the same as map entry E: segment id,
 * generation, and every replica's server and state.
 */
extern bool map_entry_equal (const struct seg *s,
                             const struct proto_map_entry *e);

/* What to do with entry E from the MAP request of map ticket TICKET
 * (or, if MARKED, a replica marked stale by the failure report of that
 * ticket) given the cached entry OLD of its index (NULL: none).
 */
enum map_store {
  MAP_STORE_IGNORE,  /* keep OLD as it is */
  MAP_STORE_TICKET,  /* keep OLD, which says the same, at ticket TICKET */
  MAP_STORE_REPLACE, /* publish E (map_entry_fill), retiring OLD */
};

/* Decide what E does to OLD (see enum map_store).  Of the same segment,
 * an entry of an older generation than OLD is ignored (a reply that
 * crossed a newer one), and so is one asked for before the failure
 * report that marked a replica stale in OLD was answered: whatever its
 * generation, it may predate the report and list that replica ok.  A
 * MARKED entry always replaces OLD.
 */
extern enum map_store map_entry_store_action (const struct seg *old,
                                              const struct proto_map_entry *e,
                                              uint64_t ticket, bool marked);

/* Fill S from E, of ticket TICKET, marked or not (see struct seg);
 * leaves S->retired_next alone.
 */
extern void map_entry_fill (struct seg *s, const struct proto_map_entry *e,
                            uint64_t ticket, bool marked);

#endif /* TESSERA_NBDPLUGIN_MAP_ENTRY_H */

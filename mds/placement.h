/* Replica placement: which storage servers receive a new segment.
 *
 * No catalog, no globals, no locks.  The MDS keeps a placement index
 * (struct placement_index, below) over its servers, updates it as
 * servers change and lets it charge every segment it places.  The older
 * snapshot functions (placement_choose and the others) build a
 * temporary index over a snapshot, so both follow the same rules:
 *
 *   1. Eligible servers are those with UP set and free space
 *      (CAPACITY > USED) and, for a new segment, USED below their
 *      high-water mark (HIGH_WATER percent of CAPACITY).  The room above
 *      the mark is kept for repair, which re-creates lost replicas and
 *      may fill a server to its capacity.  Fewer eligible servers than
 *      replicas: -ENOSPC.
 *   2. Failure domains: a server's zone is its domain; a server with no
 *      zone (NULL or "") is a domain of its own.  A new segment of R
 *      replicas spans D = min (R, domains with an up server) distinct
 *      domains, and no domain holds more than ceil (R / D) of them.
 *      This is never broken: if fewer than D domains have an eligible
 *      server (or they cannot take R replicas at ceil (R / D) each), the
 *      answer is -ENOSPC, and the explain functions name the zones and
 *      their room.  Replicas are chosen one at a time from the domains
 *      holding the fewest replicas so far.  Repair (choose_extra) prefers
 *      those domains too but never fails for want of them; a segment left
 *      in too few domains is "misplaced" and respread moves a replica.
 *   3. Spread: among the candidates the rules above leave, only those
 *      listed the fewest times in AVOID remain (a server may be listed
 *      more than once).  The MDS passes the servers of the segments
 *      before and after the new one, so consecutive segments land on
 *      different servers whenever the domain rule allows it.
 *   4. Weights and balance: a domain's weight is the room of its servers
 *      below their high-water marks, a server's its own room (not
 *      CAPACITY - USED, which counts the space kept for repair).  Three
 *      domains are drawn by weight and the one with the largest free
 *      fraction of its usable space (room / sum of marks) is kept; then
 *      two of its servers are drawn and the emptier (USED / mark) is
 *      kept.  So servers and zones fill at the same rate whatever their
 *      size, a new or empty server takes more until it catches up, and
 *      the spread between servers is a few segments instead of that of
 *      random placement (+-6 % at 3,000 replicas per server).
 *   5. Repair targets (choose_extra, respread): of eight candidates
 *      drawn by free space (CAPACITY - USED; for respread, room below
 *      the mark), the one with the lowest LOAD (copies already headed
 *      there), then the emptier.  A sample, not every candidate: it
 *      keeps the cost logarithmic, and the busiest of 1,000 targets
 *      gets 1.33 times the mean when one server's 3,000 replicas are
 *      re-placed (bench/placement-sim, Q4).
 *
 * Randomness comes from a caller-held splitmix64 state, so a run is
 * reproducible from its seed.
 */

#ifndef TESSERA_MDS_PLACEMENT_H
#define TESSERA_MDS_PLACEMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Most replicas of one segment (= PROTO_REPLICAS_MAX). */
#define PLACEMENT_REPLICAS_MAX 8

/* One server as placement sees it.  ZONE is borrowed (not copied). */
struct placement_server {
  uint32_t id;
  const char *zone;  /* failure domain; NULL or "" for none */
  uint64_t capacity; /* bytes (callers round down to whole segments) */
  uint64_t used;     /* bytes allocated to segments */
  bool up;           /* may receive new replicas (heard from, not drained) */
  /* Percent of CAPACITY that new segments may fill: a server whose USED
   * has reached it gets no new segment.  0 (or 100 and above): all.
   */
  uint32_t high_water;
  /* Copies (repair) already headed to this server: choose_extra and
   * respread prefer servers with fewer.  0 for new segments.
   */
  uint32_t load;
};

/* Choose REPLICAS distinct servers among SERVERS[0..N) for one new
 * segment, following the rule above.  AVOID[0..NAVOID) (AVOID may be NULL
 * when NAVOID is 0) lists server ids to avoid when others remain; ids
 * listed more often are avoided more.  RNG is
 * the random state (any value, including 0, is a valid seed); it is
 * advanced.  On success OUT[0..REPLICAS) receives the chosen ids (OUT
 * must hold REPLICAS entries) and 0 is returned; SERVERS is not modified.
 * Errors:
 *   -EINVAL  REPLICAS is 0 or above PLACEMENT_REPLICAS_MAX;
 *   -ENOSPC  fewer than REPLICAS servers are up with free space below
 *            their high-water mark (OUT is then unspecified;
 *            placement_explain says why).
 * Thread-safe as long as callers do not share RNG.
 */
extern int placement_choose (const struct placement_server *servers, size_t n,
                             uint32_t replicas, const uint32_t *avoid,
                             size_t navoid, uint64_t *rng, uint32_t *out);

/* Choose COUNT more servers for a segment that keeps replicas on
 * HOLDERS[0..NHOLDERS) (server ids; HOLDERS may be NULL when NHOLDERS is
 * 0), to replace lost replicas or add missing ones.  The holders are
 * never chosen, whatever their state, and rule 3 counts their replicas as
 * chosen already, so the new ones go to the zones holding the fewest
 * replicas of the segment.  Ids of HOLDERS not in SERVERS are ignored.
 * Rule 4 does not apply (no AVOID), nor do high-water marks (repair may
 * fill a server up to its capacity); otherwise as placement_choose:
 * OUT[0..COUNT) receives the ids, RNG is advanced.  Errors:
 *   -EINVAL  COUNT is 0, or COUNT + NHOLDERS is above
 *            PLACEMENT_REPLICAS_MAX;
 *   -ENOSPC  fewer than COUNT servers besides the holders are up with
 *            free space.
 */
extern int placement_choose_extra (const struct placement_server *servers,
                                   size_t n, const uint32_t *holders,
                                   size_t nholders, uint32_t count,
                                   uint64_t *rng, uint32_t *out);

/* Number of servers in SERVERS[0..N) that placement_choose may use (up
 * and with free space below their high-water mark), for error messages
 * and admission checks.
 */
extern size_t placement_eligible (const struct placement_server *servers,
                                  size_t n);

/* Write into BUF (LEN bytes, NUL-terminated, truncated if need be) why
 * placement_choose may not have REPLICAS servers among SERVERS[0..N)
 * for a new segment, for an error message: how many it may use and how
 * many are not up, full, or at their high-water mark, as in "1 of 3
 * servers can take a new segment, 2 needed (1 not up, 1 at its 90%
 * high-water mark)".
 */
extern void placement_explain (const struct placement_server *servers, size_t n,
                               uint32_t replicas, char *buf, size_t len);

/* ---- The placement index (issue 13: placement at scale) ----
 *
 * The MDS keeps one index over its servers instead of a snapshot per
 * allocation: built once (linear in servers), updated one server at a
 * time as usage and states change, and charged as segments are placed,
 * so that one placement costs far less than a sweep of every server.
 * Not thread-safe: the caller serialises every call on one index.
 *
 * Failure domains.  A server's zone is its failure domain; a server
 * without a zone (NULL or "") is a domain of its own.  A segment of R
 * replicas must span D = min (R, domains with an up server) distinct
 * domains, where "up" is the UP flag below (heard from, not draining,
 * not out).  placement_index_choose never breaks that rule: if fewer
 * than D domains have room, it fails with -ENOSPC and
 * placement_index_explain names the zones and their room.  With fewer
 * domains than replicas, the replicas are spread over them as evenly as
 * possible (no domain holds more than ceil (R / D)).
 *
 * Weights.  A new segment may use the room below a server's high-water
 * mark only; servers are weighted by that room (not by capacity - used,
 * which counts the space kept for repair), and between two candidates
 * drawn the one with the lower fill (used / mark) is kept, so servers
 * and zones of unequal size fill evenly.
 */
struct placement_index;

/* Per failure domain, for warnings and status: ZONE is the zone name
 * (borrowed from the index; "" for a server without one), SERVERS the
 * up servers in it, ROOM the bytes below their high-water marks,
 * USABLE the bytes their high-water marks allow in all.
 */
struct placement_zone_room {
  const char *zone;
  uint32_t servers;
  uint64_t room;
  uint64_t usable;
};

/* A new index over SERVERS[0..N), segments of SEGMENT_SIZE bytes.  The
 * servers are copied; their ZONE strings are copied too.  Returns NULL
 * if out of memory.
 */
extern struct placement_index *
placement_index_new (const struct placement_server *servers, size_t n,
                     uint64_t segment_size);
extern void placement_index_free (struct placement_index *idx);

/* Set what the index knows of server S->id (add it if new): zone,
 * capacity, used, up, high water, load.  Every field is replaced, USED
 * too (the charges made since are then forgotten): to change one field,
 * say LOAD, copy placement_index_server's entry, change it and pass the
 * copy.  Returns 0 or -ENOMEM (the index is then unchanged).
 */
extern int placement_index_update (struct placement_index *idx,
                                   const struct placement_server *s);

/* Forget server ID (removed from the cluster).  No-op if unknown.
 * Zone strings of the index (placement_index_server's ZONE,
 * placement_zone_room's ZONE) stay valid until the index is freed.
 */
extern void placement_index_remove (struct placement_index *idx, uint32_t id);

/* The index's copy of server ID, or NULL. */
extern const struct placement_server *
placement_index_server (const struct placement_index *idx, uint32_t id);

/* Add BYTES (may be negative) to server ID's used space; no-op if
 * unknown.
 */
extern void placement_index_charge (struct placement_index *idx, uint32_t id,
                                    int64_t bytes);

/* Choose REPLICAS servers for a new segment: distinct servers, the
 * domain rule above, below their high-water marks, avoiding the ids in
 * AVOID[0..NAVOID) (listed more often: avoided more; the first 32 ids
 * known to the index are honoured) when the other rules allow it.  On success OUT[0..REPLICAS) gets the ids, each chosen
 * server is charged one segment, and 0 is returned.  Errors: -EINVAL
 * (REPLICAS 0 or above PLACEMENT_REPLICAS_MAX), -ENOSPC (not enough
 * servers, or not enough domains with room: see
 * placement_index_explain).
 */
extern int placement_index_choose (struct placement_index *idx,
                                   uint32_t replicas, const uint32_t *avoid,
                                   size_t navoid, uint64_t *rng, uint32_t *out);

/* Choose COUNT more servers for a segment held on HOLDERS[0..NHOLDERS)
 * (repair): never a holder, in the domains holding the fewest replicas
 * of the segment, up to capacity (high-water marks do not apply), and
 * among candidates the one with the lower LOAD (copies already headed
 * there) first, then the emptier, so that re-replication spreads over
 * many targets.  Each chosen server is charged one segment and its load
 * raised by one.  Errors as placement_choose_extra.
 */
extern int placement_index_choose_extra (struct placement_index *idx,
                                         const uint32_t *holders,
                                         size_t nholders, uint32_t count,
                                         uint64_t *rng, uint32_t *out);

/* Distinct failure domains a segment of REPLICAS replicas must span:
 * min (REPLICAS, domains with an up server).
 */
extern uint32_t placement_index_domains_needed (const struct placement_index *,
                                                uint32_t replicas);

/* Whether a segment of REPLICAS replicas held on HOLDERS[0..N) spans
 * fewer domains than it must (misplaced): fewer than min (N,
 * placement_index_domains_needed), so that a segment short of replicas
 * is repair's business first, not respread's.  Unknown ids count as
 * domains of their own.
 */
extern bool placement_index_misplaced (const struct placement_index *idx,
                                       const uint32_t *holders, size_t n,
                                       uint32_t replicas);

/* For a misplaced segment held on HOLDERS[0..N) (REPLICAS wanted):
 * *TARGET, an up server with room below its high-water mark in a domain
 * holding none of its replicas (the lower load, then the emptier), and
 * *VICTIM, a holder in the domain holding the most replicas, whose
 * replica is removed once the target's is complete.  The target is
 * charged one segment and its load raised.  Returns 0, -ENOSPC if no
 * such target exists now, or -EINVAL if N is 0.
 */
extern int placement_index_respread (struct placement_index *idx,
                                     const uint32_t *holders, size_t n,
                                     uint32_t replicas, uint64_t *rng,
                                     uint32_t *target, uint32_t *victim);

/* Why placement_index_choose may fail for REPLICAS replicas, into BUF
 * (LEN bytes, NUL-terminated): as placement_explain, and when domains
 * are short, which zones have room for how many segments, as in "only 1
 * of 3 zones has room for a new segment, 3 needed (zone a: 0 segments,
 * zone b: 0, zone c: 4811)".
 */
extern void placement_index_explain (const struct placement_index *idx,
                                     uint32_t replicas, char *buf, size_t len);

/* The failure domains with a zone name, into OUT[0..MAX) (sorted by
 * zone name); returns how many there are (may exceed MAX).  Servers
 * without a zone are summed into one entry with ZONE "".
 */
extern size_t placement_index_zones (const struct placement_index *idx,
                                     struct placement_zone_room *out,
                                     size_t max);

/* Next value of the splitmix64 generator with state *RNG. */
extern uint64_t placement_random (uint64_t *rng);

#endif /* TESSERA_MDS_PLACEMENT_H */

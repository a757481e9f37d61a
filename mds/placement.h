/* Replica placement: which storage servers receive a new segment.
 *
 * A pure function over a snapshot of the servers: no catalog, no globals,
 * no locks.  The MDS builds the snapshot under its lock, calls
 * placement_choose once per new segment and adds one segment size to the
 * USED of every server chosen before the next call.
 *
 * The rule, applied one replica at a time:
 *   1. Eligible servers are those with UP set and free space
 *      (CAPACITY > USED) and, for a new segment (placement_choose but
 *      not placement_choose_extra), USED below their high-water mark
 *      (HIGH_WATER percent of CAPACITY).  The room above the mark is
 *      kept for repair, which re-creates lost replicas.  Fewer eligible
 *      servers than REPLICAS: -ENOSPC.
 *   2. Candidates are the eligible servers not chosen yet.
 *   3. Zones: only the candidates in the zones that hold the fewest of
 *      the replicas chosen so far remain.  So a segment spans as many
 *      distinct zones as exist, and when there are fewer zones than
 *      replicas its replicas are spread over the zones as evenly as
 *      possible.  A server with no zone (NULL or "") is a failure domain
 *      of its own.
 *   4. Spread: then only the candidates listed the fewest times in
 *      AVOID remain (a server may be listed more than once).  The MDS
 *      passes the servers of the segments before and after the new one,
 *      so consecutive segments land on different servers whenever the
 *      zone rule allows it, and a segment placed between two others
 *      differs from both when it can.
 *   5. One of the remaining candidates is drawn at random, weighted by its
 *      free space (CAPACITY - USED), so fuller servers fill more slowly.
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

/* Next value of the splitmix64 generator with state *RNG. */
extern uint64_t placement_random (uint64_t *rng);

#endif /* TESSERA_MDS_PLACEMENT_H */

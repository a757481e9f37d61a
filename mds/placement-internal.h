/* What the placement files share and placement.h does not publish: the
 * rules of eligibility and the index's structures.
 */

#ifndef TESSERA_MDS_PLACEMENT_INTERNAL_H
#define TESSERA_MDS_PLACEMENT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "placement.h"

/* The bytes of S that new segments may fill: HIGH_WATER percent of its
 * capacity (computed without overflow), or all of it.
 */
static inline uint64_t
placement_mark (const struct placement_server *s)
{
  uint64_t pct = s->high_water;

  if (pct == 0 || pct >= 100)
    return s->capacity;
  return s->capacity / 100 * pct + s->capacity % 100 * pct / 100;
}

/* True if S may receive a replica of a new segment (NEW_SEGMENT: up and
 * below its high-water mark) or of a segment being repaired (up, below
 * its capacity).
 */
static inline bool
placement_can_take (const struct placement_server *s, bool new_segment)
{
  if (!s->up || s->capacity <= s->used)
    return false;
  return !new_segment || placement_mark (s) > s->used;
}

/* ---- The index (placement-index.c has the design) ---- */

#define UNIT_SHIFT 12                   /* weights in 4 KiB units */
#define WEIGHT_MAX (UINT64_C (1) << 40) /* per server: 4 PiB of room */
#define NONE UINT32_MAX

enum { NEW = 0, REPAIR = 1, KINDS = 2 };

struct slot {
  struct placement_server s; /* s.zone: the domain's name, or NULL */
  uint32_t dom;              /* domain index */
  uint32_t pos;              /* index in the domain's members */
  uint64_t w[KINDS];         /* weight in the trees now (0 if masked) */
  uint64_t room_u, mark_u;   /* added to the domain's sums */
  bool elig[KINDS];          /* counted in the eligible counts */
  bool counted_up;           /* counted in the domain's NUP */
  bool masked;               /* held at weight 0 for this call */
  bool live;                 /* in use (else on the free list) */
};

struct domain {
  char *zone;            /* owned; NULL for a server without a zone */
  uint32_t *mem;         /* slots, [0..n) */
  uint64_t *fw[KINDS];   /* Fenwick trees over the members' weights */
  uint32_t n, cap;       /* members; CAP a power of 2 (or 0) */
  uint64_t total[KINDS]; /* sum of the members' weights */
  uint64_t room_u;       /* NEW room of up servers, unmasked, units */
  uint64_t mark_u;       /* marks of up servers, units */
  uint32_t nup;          /* up servers */
  uint32_t nelig[KINDS];
  bool masked; /* held at weight 0 in the domain trees */
};

struct placement_index {
  uint64_t segment_size;
  struct slot *slots;
  uint32_t nslots, slots_cap;
  uint32_t *free_slots; /* stack of unused slots, [0..nfree_slots) */
  uint32_t nfree_slots;
  uint32_t *idmap; /* open addressing: slot + 1, 0 = empty */
  uint32_t idmap_cap;
  struct domain *doms;
  uint32_t ndoms, doms_cap;
  uint32_t *free_doms; /* empty zoneless domains, for reuse */
  uint32_t nfree_doms;
  uint32_t *zonemap; /* open addressing: domain + 1 */
  uint32_t zonemap_cap;
  uint64_t *dfw[KINDS]; /* Fenwick trees over the domains' totals */
  uint32_t dfw_cap;
  uint64_t dtotal[KINDS]; /* sum of unmasked domain totals */
  uint32_t nservers;
  bool bulk;                /* being built: the trees hold plain values */
  uint32_t dom_up;          /* domains with an up server */
  uint32_t dom_elig[KINDS]; /* domains with an eligible server */
  uint32_t srv_elig[KINDS]; /* eligible servers */
};

/* Shared by placement-index.c, placement-choose.c and
 * placement-report.c (defined in placement-index.c).
 */

/* The slot of server ID, or NONE. */
extern uint32_t placement_slot_of (const struct placement_index *idx,
                                   uint32_t id);
/* Bring slot I's weights, counts and sums in line with its server. */
extern void placement_slot_refresh (struct placement_index *idx, uint32_t i);
/* Mask or unmask domain DOM in the domain trees. */
extern void placement_dom_mask (struct placement_index *idx, uint32_t dom,
                                bool masked);
/* Add BYTES (two's complement) to slot I's used space, not below 0. */
extern void placement_slot_charge (struct placement_index *idx, uint32_t i,
                                   int64_t bytes);

#endif /* TESSERA_MDS_PLACEMENT_INTERNAL_H */

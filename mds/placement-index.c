/* The placement index (see placement.h for the rules and the contract).
 *
 * Servers live in slots (an id -> slot hash finds them); every slot
 * belongs to one failure domain: the domain of its zone, or a domain of
 * its own when it has none.  Each domain keeps its members in an array
 * with two Fenwick trees over their weights: NEW (room below the
 * high-water mark, for new segments) and REPAIR (room below capacity,
 * for re-created replicas).  A Fenwick tree over the domains' totals
 * sits on top, one per kind.  A weighted draw descends the domain tree
 * and then the chosen domain's tree: O(log domains + log members).
 * Every change of a server (update, charge, remove) costs the same.
 *
 * Rules that exclude servers for one call (already chosen, a holder, on
 * the avoid list) and domains (already holding a replica) are applied
 * by masking: the weight is held at 0 in the trees for the call and put
 * back at the end, so draws never need rejection.  Weights are in 4 KiB
 * units (at least 1 for a server with any room), which keeps the sums of
 * thousands of petabyte servers far below 2^64.
 *
 * A new segment's replica is drawn in two steps, each "best of
 * several": DRAWS_DOMAIN domains drawn by room, keeping the one with the
 * largest fraction of its usable space still free, then DRAWS_SERVER
 * servers of that domain, keeping the emptiest (used / mark).  The
 * domain step lets a large zone get its share even though one segment
 * takes at most one replica there; the server step brings the spread of
 * random placement (about 3.5 standard deviations of a Poisson count)
 * down to a few segments.  Repair draws DRAWS_REPAIR servers by free
 * space and keeps the one with the fewest copies headed to it.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "placement.h"
#include "placement-internal.h"

#define UNIT_SHIFT 12                         /* weights in 4 KiB units */
#define WEIGHT_MAX (UINT64_C (1) << 44)       /* per server, in units */
#define DRAWS_DOMAIN 3                        /* domains compared per pick */
#define DRAWS_SERVER 2                        /* servers compared per pick */
#define DRAWS_REPAIR 8                        /* repair targets compared */
#define MASK_MAX (4 * PLACEMENT_REPLICAS_MAX) /* avoid ids honoured */
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
  uint32_t dom_up;          /* domains with an up server */
  uint32_t dom_elig[KINDS]; /* domains with an eligible server */
  uint32_t srv_elig[KINDS]; /* eligible servers */
};

/* ---- Fenwick trees (1-based inside, 0-based positions outside) ---- */

static void
fw_add (uint64_t *t, uint32_t cap, uint32_t pos, uint64_t delta)
{
  uint32_t i;

  for (i = pos + 1; i <= cap; i += i & -i)
    t[i - 1] += delta; /* unsigned wrap-around makes negative deltas work */
}

/* The position whose prefix range holds R (R < the tree's total). */
static uint32_t
fw_find (const uint64_t *t, uint32_t cap, uint64_t r)
{
  uint32_t pos = 0, step;

  for (step = cap; step > 0; step >>= 1)
    if (pos + step <= cap && t[pos + step - 1] <= r) {
      pos += step;
      r -= t[pos - 1];
    }
  return pos;
}

/* Turn T[0..CAP), holding plain values, into a Fenwick tree. */
static void
fw_build (uint64_t *t, uint32_t cap)
{
  uint32_t i, j;

  for (i = 1; i <= cap; ++i) {
    j = i + (i & -i);
    if (j <= cap)
      t[j - 1] += t[i - 1];
  }
}

/* ---- Hashing ---- */

static uint32_t
hash_id (uint32_t id)
{
  uint64_t h = (uint64_t)id * UINT64_C (0x9e3779b97f4a7c15);

  return (uint32_t)(h >> 32);
}

static uint32_t
hash_str (const char *s)
{
  uint32_t h = 2166136261u;

  for (; *s; ++s)
    h = (h ^ (unsigned char)*s) * 16777619u;
  return h;
}

/* The slot of server ID, or NONE. */
static uint32_t
slot_of (const struct placement_index *idx, uint32_t id)
{
  uint32_t mask = idx->idmap_cap - 1, i;

  if (idx->idmap_cap == 0)
    return NONE;
  for (i = hash_id (id) & mask; idx->idmap[i] != 0; i = (i + 1) & mask)
    if (idx->slots[idx->idmap[i] - 1].s.id == id)
      return idx->idmap[i] - 1;
  return NONE;
}

static void
idmap_put (struct placement_index *idx, uint32_t slot)
{
  uint32_t mask = idx->idmap_cap - 1, i;

  i = hash_id (idx->slots[slot].s.id) & mask;
  while (idx->idmap[i] != 0)
    i = (i + 1) & mask;
  idx->idmap[i] = slot + 1;
}

/* Make room for one more id in the map (load at most 1/2). */
static int
idmap_reserve (struct placement_index *idx)
{
  uint32_t *old = idx->idmap, oldcap = idx->idmap_cap, cap, i;

  if ((uint64_t)(idx->nservers + 1) * 2 <= oldcap)
    return 0;
  cap = oldcap ? oldcap * 2 : 64;
  idx->idmap = calloc (cap, sizeof *idx->idmap);
  if (idx->idmap == NULL) {
    idx->idmap = old;
    return -ENOMEM;
  }
  idx->idmap_cap = cap;
  for (i = 0; i < oldcap; ++i)
    if (old[i] != 0)
      idmap_put (idx, old[i] - 1);
  free (old);
  return 0;
}

/* Remove SLOT from the id map (backward-shift deletion). */
static void
idmap_del (struct placement_index *idx, uint32_t slot)
{
  uint32_t mask = idx->idmap_cap - 1, i, j, home;

  i = hash_id (idx->slots[slot].s.id) & mask;
  while (idx->idmap[i] != slot + 1)
    i = (i + 1) & mask;
  j = i;
  for (;;) {
    j = (j + 1) & mask;
    if (idx->idmap[j] == 0)
      break;
    home = hash_id (idx->slots[idx->idmap[j] - 1].s.id) & mask;
    /* Move J back to I unless its home lies cyclically in (I, J]. */
    if ((i <= j) ? (home <= i || home > j) : (home <= i && home > j)) {
      idx->idmap[i] = idx->idmap[j];
      i = j;
    }
  }
  idx->idmap[i] = 0;
}

/* The domain of zone ZONE, or NONE. */
static uint32_t
zone_lookup (const struct placement_index *idx, const char *zone)
{
  uint32_t mask = idx->zonemap_cap - 1, i;

  if (idx->zonemap_cap == 0)
    return NONE;
  for (i = hash_str (zone) & mask; idx->zonemap[i] != 0; i = (i + 1) & mask)
    if (strcmp (idx->doms[idx->zonemap[i] - 1].zone, zone) == 0)
      return idx->zonemap[i] - 1;
  return NONE;
}

static void
zonemap_put (struct placement_index *idx, uint32_t dom)
{
  uint32_t mask = idx->zonemap_cap - 1, i;

  i = hash_str (idx->doms[dom].zone) & mask;
  while (idx->zonemap[i] != 0)
    i = (i + 1) & mask;
  idx->zonemap[i] = dom + 1;
}

/* Make room for one more zone in the zone map (load at most 1/2). */
static int
zonemap_reserve (struct placement_index *idx)
{
  uint32_t *old = idx->zonemap, oldcap = idx->zonemap_cap, cap, i;

  if ((uint64_t)(idx->ndoms + 1) * 2 <= oldcap)
    return 0;
  cap = oldcap ? oldcap * 2 : 32;
  idx->zonemap = calloc (cap, sizeof *idx->zonemap);
  if (idx->zonemap == NULL) {
    idx->zonemap = old;
    return -ENOMEM;
  }
  idx->zonemap_cap = cap;
  for (i = 0; i < oldcap; ++i)
    if (old[i] != 0)
      zonemap_put (idx, old[i] - 1);
  free (old);
  return 0;
}

/* ---- Weights and counts ---- */

static bool
has_zone (const char *zone)
{
  return zone != NULL && zone[0] != '\0';
}

/* BYTES of room as a weight: 4 KiB units, at least 1, at most
 * WEIGHT_MAX.
 */
static uint64_t
units (uint64_t bytes)
{
  uint64_t u = bytes >> UNIT_SHIFT;

  if (u == 0)
    return 1;
  return u < WEIGHT_MAX ? u : WEIGHT_MAX;
}

/* Domain D's weight in the domain trees. */
static uint64_t
dom_weight (const struct domain *d, int k)
{
  return d->masked ? 0 : d->total[k];
}

/* Add DELTA (two's complement) to member POS of domain DOM, kind K. */
static void
dom_add (struct placement_index *idx, uint32_t dom, uint32_t pos, int k,
         uint64_t delta)
{
  struct domain *d = &idx->doms[dom];

  fw_add (d->fw[k], d->cap, pos, delta);
  d->total[k] += delta;
  if (!d->masked) {
    fw_add (idx->dfw[k], idx->dfw_cap, dom, delta);
    idx->dtotal[k] += delta;
  }
}

/* Mask or unmask domain DOM in the domain trees. */
static void
dom_set_masked (struct placement_index *idx, uint32_t dom, bool masked)
{
  struct domain *d = &idx->doms[dom];
  int k;

  if (d->masked == masked)
    return;
  for (k = 0; k < KINDS; ++k) {
    uint64_t delta = masked ? -d->total[k] : d->total[k];

    fw_add (idx->dfw[k], idx->dfw_cap, dom, delta);
    idx->dtotal[k] += delta;
  }
  d->masked = masked;
}

/* Bring slot I's weights, counts and sums in line with its server. */
static void
slot_refresh (struct placement_index *idx, uint32_t i)
{
  struct slot *sl = &idx->slots[i];
  struct domain *d = &idx->doms[sl->dom];
  const struct placement_server *s = &sl->s;
  bool up = sl->live && s->up;
  uint64_t mark = placement_mark (s);
  bool elig[KINDS];
  uint64_t w[KINDS], room_u, mark_u;
  int k;

  elig[NEW] = up && placement_can_take (s, true);
  elig[REPAIR] = up && placement_can_take (s, false);
  room_u = elig[NEW] ? units (mark - s->used) : 0;
  mark_u = up ? mark >> UNIT_SHIFT : 0;
  w[NEW] = room_u;
  w[REPAIR] = elig[REPAIR] ? units (s->capacity - s->used) : 0;

  for (k = 0; k < KINDS; ++k) {
    uint64_t want = sl->masked ? 0 : w[k];

    if (want != sl->w[k]) {
      dom_add (idx, sl->dom, sl->pos, k, want - sl->w[k]);
      sl->w[k] = want;
    }
    if (elig[k] != sl->elig[k]) {
      if (elig[k]) {
        idx->srv_elig[k]++;
        if (d->nelig[k]++ == 0)
          idx->dom_elig[k]++;
      }
      else {
        idx->srv_elig[k]--;
        if (--d->nelig[k] == 0)
          idx->dom_elig[k]--;
      }
      sl->elig[k] = elig[k];
    }
  }
  if (up != sl->counted_up) {
    if (up) {
      if (d->nup++ == 0)
        idx->dom_up++;
    }
    else if (--d->nup == 0)
      idx->dom_up--;
    sl->counted_up = up;
  }
  d->room_u += room_u - sl->room_u;
  d->mark_u += mark_u - sl->mark_u;
  sl->room_u = room_u;
  sl->mark_u = mark_u;
}

/* ---- Domains ---- */

/* Grow the domain trees to hold at least N domains. */
static int
dfw_reserve (struct placement_index *idx, uint32_t n)
{
  uint32_t cap = idx->dfw_cap ? idx->dfw_cap : 16, d;
  uint64_t *t[KINDS];
  int k;

  if (n <= idx->dfw_cap)
    return 0;
  while (cap < n)
    cap *= 2;
  for (k = 0; k < KINDS; ++k) {
    t[k] = calloc (cap, sizeof (uint64_t));
    if (t[k] == NULL) {
      while (k-- > 0)
        free (t[k]);
      return -ENOMEM;
    }
  }
  for (k = 0; k < KINDS; ++k) {
    for (d = 0; d < idx->ndoms; ++d)
      t[k][d] = dom_weight (&idx->doms[d], k);
    fw_build (t[k], cap);
    free (idx->dfw[k]);
    idx->dfw[k] = t[k];
  }
  idx->dfw_cap = cap;
  return 0;
}

/* A new, empty domain for ZONE (copied; NULL for none): its index in
 * *OUT.
 */
static int
dom_create (struct placement_index *idx, const char *zone, uint32_t *out)
{
  struct domain *d;
  char *copy = NULL;
  int r;

  if (idx->ndoms == NONE - 1)
    return -ENOMEM;
  if (idx->ndoms == idx->doms_cap) {
    uint32_t cap = idx->doms_cap ? idx->doms_cap * 2 : 16;
    struct domain *doms = realloc (idx->doms, cap * sizeof *doms);
    uint32_t *fr = realloc (idx->free_doms, cap * sizeof *fr);

    if (doms)
      idx->doms = doms;
    if (fr)
      idx->free_doms = fr;
    if (doms == NULL || fr == NULL)
      return -ENOMEM;
    idx->doms_cap = cap;
  }
  r = dfw_reserve (idx, idx->ndoms + 1);
  if (r < 0)
    return r;
  if (zone) {
    r = zonemap_reserve (idx);
    if (r < 0)
      return r;
    copy = strdup (zone);
    if (copy == NULL)
      return -ENOMEM;
  }
  d = &idx->doms[idx->ndoms];
  memset (d, 0, sizeof *d);
  d->zone = copy;
  *out = idx->ndoms++;
  if (zone)
    zonemap_put (idx, *out);
  return 0;
}

/* The domain a server of ZONE belongs to, created if need be. */
static int
dom_for (struct placement_index *idx, const char *zone, uint32_t *out)
{
  if (has_zone (zone)) {
    *out = zone_lookup (idx, zone);
    if (*out != NONE)
      return 0;
    return dom_create (idx, zone, out);
  }
  if (idx->nfree_doms > 0) {
    *out = idx->free_doms[--idx->nfree_doms];
    return 0;
  }
  return dom_create (idx, NULL, out);
}

/* Make room for one more member in domain DOM. */
static int
dom_reserve (struct placement_index *idx, uint32_t dom)
{
  struct domain *d = &idx->doms[dom];
  uint32_t cap = d->cap ? d->cap * 2 : 1, *mem, j;
  uint64_t *t[KINDS];
  int k;

  if (d->n < d->cap)
    return 0;
  mem = realloc (d->mem, cap * sizeof *mem);
  if (mem == NULL)
    return -ENOMEM;
  d->mem = mem;
  for (k = 0; k < KINDS; ++k) {
    t[k] = calloc (cap, sizeof (uint64_t));
    if (t[k] == NULL) {
      while (k-- > 0)
        free (t[k]);
      return -ENOMEM;
    }
  }
  for (k = 0; k < KINDS; ++k) {
    for (j = 0; j < d->n; ++j)
      t[k][j] = idx->slots[d->mem[j]].w[k];
    fw_build (t[k], cap);
    free (d->fw[k]);
    d->fw[k] = t[k];
  }
  d->cap = cap;
  return 0;
}

/* Put slot I (weights 0, nothing counted) into domain DOM, which has
 * room for it (dom_reserve).
 */
static void
dom_attach (struct placement_index *idx, uint32_t i, uint32_t dom)
{
  struct domain *d = &idx->doms[dom];
  struct slot *sl = &idx->slots[i];

  sl->dom = dom;
  sl->pos = d->n;
  d->mem[d->n++] = i;
  sl->s.zone = d->zone;
  slot_refresh (idx, i);
}

/* Take slot I out of its domain: its weights and counts go first. */
static void
dom_detach (struct placement_index *idx, uint32_t i)
{
  struct slot *sl = &idx->slots[i];
  struct domain *d = &idx->doms[sl->dom];
  bool live = sl->live;
  uint32_t last;
  int k;

  sl->live = false;
  slot_refresh (idx, i);
  sl->live = live;
  last = d->mem[d->n - 1];
  if (last != i) {
    struct slot *ls = &idx->slots[last];

    for (k = 0; k < KINDS; ++k) {
      fw_add (d->fw[k], d->cap, ls->pos, -ls->w[k]);
      fw_add (d->fw[k], d->cap, sl->pos, ls->w[k]);
    }
    d->mem[sl->pos] = last;
    ls->pos = sl->pos;
  }
  d->n--;
  if (d->n == 0 && d->zone == NULL)
    idx->free_doms[idx->nfree_doms++] = sl->dom;
}

/* ---- Creating and updating ---- */

struct placement_index *
placement_index_new (const struct placement_server *servers, size_t n,
                     uint64_t segment_size)
{
  struct placement_index *idx = calloc (1, sizeof *idx);
  size_t i;

  if (idx == NULL)
    return NULL;
  idx->segment_size = segment_size;
  for (i = 0; i < n; ++i)
    if (placement_index_update (idx, &servers[i]) < 0) {
      placement_index_free (idx);
      return NULL;
    }
  return idx;
}

void
placement_index_free (struct placement_index *idx)
{
  uint32_t d;
  int k;

  if (idx == NULL)
    return;
  for (d = 0; d < idx->ndoms; ++d) {
    free (idx->doms[d].zone);
    free (idx->doms[d].mem);
    for (k = 0; k < KINDS; ++k)
      free (idx->doms[d].fw[k]);
  }
  for (k = 0; k < KINDS; ++k)
    free (idx->dfw[k]);
  free (idx->doms);
  free (idx->free_doms);
  free (idx->zonemap);
  free (idx->slots);
  free (idx->free_slots);
  free (idx->idmap);
  free (idx);
}

/* A free slot for a new server: its index in *OUT. */
static int
slot_alloc (struct placement_index *idx, uint32_t *out)
{
  if (idx->nfree_slots > 0) {
    *out = idx->free_slots[--idx->nfree_slots];
    return 0;
  }
  if (idx->nslots == idx->slots_cap) {
    uint32_t cap = idx->slots_cap ? idx->slots_cap * 2 : 16;
    struct slot *slots = realloc (idx->slots, cap * sizeof *slots);
    uint32_t *fr = realloc (idx->free_slots, cap * sizeof *fr);

    if (slots)
      idx->slots = slots;
    if (fr)
      idx->free_slots = fr;
    if (slots == NULL || fr == NULL || cap == 0)
      return -ENOMEM;
    idx->slots_cap = cap;
  }
  *out = idx->nslots++;
  return 0;
}

/* Put back what dom_for took for a server without a zone when the
 * update that needed it fails.
 */
static void
dom_unfor (struct placement_index *idx, uint32_t dom)
{
  if (idx->doms[dom].zone == NULL && idx->doms[dom].n == 0)
    idx->free_doms[idx->nfree_doms++] = dom;
}

int
placement_index_update (struct placement_index *idx,
                        const struct placement_server *s)
{
  uint32_t i = slot_of (idx, s->id), dom;
  struct slot *sl;
  int r;

  if (i != NONE) {
    sl = &idx->slots[i];
    if (has_zone (s->zone) == has_zone (sl->s.zone) &&
        (!has_zone (s->zone) || strcmp (s->zone, sl->s.zone) == 0)) {
      sl->s = *s;
      sl->s.zone = idx->doms[sl->dom].zone;
      slot_refresh (idx, i);
      return 0;
    }
    /* A new zone: move the server to its domain. */
    r = dom_for (idx, s->zone, &dom);
    if (r < 0)
      return r;
    r = dom_reserve (idx, dom);
    if (r < 0) {
      dom_unfor (idx, dom);
      return r;
    }
    dom_detach (idx, i);
    sl->s = *s;
    dom_attach (idx, i, dom);
    return 0;
  }

  r = idmap_reserve (idx);
  if (r == 0)
    r = slot_alloc (idx, &i);
  if (r < 0)
    return r;
  r = dom_for (idx, s->zone, &dom);
  if (r == 0) {
    r = dom_reserve (idx, dom);
    if (r < 0)
      dom_unfor (idx, dom);
  }
  if (r < 0) {
    idx->free_slots[idx->nfree_slots++] = i;
    return r;
  }
  sl = &idx->slots[i];
  memset (sl, 0, sizeof *sl);
  sl->s = *s;
  sl->live = true;
  idmap_put (idx, i);
  idx->nservers++;
  dom_attach (idx, i, dom);
  return 0;
}

void
placement_index_remove (struct placement_index *idx, uint32_t id)
{
  uint32_t i = slot_of (idx, id);

  if (i == NONE)
    return;
  dom_detach (idx, i);
  idmap_del (idx, i);
  idx->slots[i].live = false;
  idx->free_slots[idx->nfree_slots++] = i;
  idx->nservers--;
}

const struct placement_server *
placement_index_server (const struct placement_index *idx, uint32_t id)
{
  uint32_t i = slot_of (idx, id);

  return i == NONE ? NULL : &idx->slots[i].s;
}

/* Add BYTES (two's complement) to slot I's used space, not below 0. */
static void
slot_charge (struct placement_index *idx, uint32_t i, int64_t bytes)
{
  struct placement_server *s = &idx->slots[i].s;

  if (bytes < 0 && (uint64_t) - (bytes + 1) + 1 > s->used)
    s->used = 0;
  else
    s->used += (uint64_t)bytes;
  slot_refresh (idx, i);
}

void
placement_index_charge (struct placement_index *idx, uint32_t id, int64_t bytes)
{
  uint32_t i = slot_of (idx, id);

  if (i != NONE)
    slot_charge (idx, i, bytes);
}

uint32_t
placement_index_domains_needed (const struct placement_index *idx,
                                uint32_t replicas)
{
  return replicas < idx->dom_up ? replicas : idx->dom_up;
}

/* ---- One call's state: masks and the domains used so far ---- */

struct pick {
  uint32_t masked[MASK_MAX + PLACEMENT_REPLICAS_MAX]; /* slots */
  size_t nmasked;
  /* Domains holding replicas of the segment (chosen or held), with how
   * many, and how many of those servers are eligible for the kind.
   */
  struct {
    uint32_t dom;
    uint32_t cnt;
    uint32_t held_elig;
  } dt[2 * PLACEMENT_REPLICAS_MAX];
  size_t ndt;
};

/* Hold slot I at weight 0 until pick_end; false if the pick cannot
 * hold more.
 */
static bool
pick_mask (struct placement_index *idx, struct pick *p, uint32_t i)
{
  if (idx->slots[i].masked)
    return true;
  if (p->nmasked == sizeof p->masked / sizeof p->masked[0])
    return false;
  idx->slots[i].masked = true;
  slot_refresh (idx, i);
  p->masked[p->nmasked++] = i;
  return true;
}

/* Count one replica of the segment on slot I in its domain, counting it
 * among the domain's eligible servers held if ELIG; the domain is
 * masked in the domain trees.
 */
static void
pick_hold (struct placement_index *idx, struct pick *p, uint32_t i, bool elig)
{
  uint32_t dom = idx->slots[i].dom;
  size_t j;

  for (j = 0; j < p->ndt; ++j)
    if (p->dt[j].dom == dom)
      break;
  if (j == p->ndt) {
    p->dt[j].dom = dom;
    p->dt[j].cnt = 0;
    p->dt[j].held_elig = 0;
    p->ndt++;
    dom_set_masked (idx, dom, true);
  }
  p->dt[j].cnt++;
  if (elig)
    p->dt[j].held_elig++;
}

/* Undo every mask of the pick. */
static void
pick_end (struct placement_index *idx, struct pick *p)
{
  size_t j;

  for (j = 0; j < p->ndt; ++j)
    dom_set_masked (idx, p->dt[j].dom, false);
  for (j = 0; j < p->nmasked; ++j) {
    idx->slots[p->masked[j]].masked = false;
    slot_refresh (idx, p->masked[j]);
  }
}

/* The domains a replica of kind K may go to next (the rule "the domains
 * holding the fewest replicas"): *ALL when it is every domain with a
 * candidate outside the pick's domains (those are masked in the domain
 * trees), else LIST[0..*N) of the pick's domains.  False if no
 * candidate is left.
 */
static bool
pick_domains (const struct placement_index *idx, const struct pick *p, int k,
              bool *all, uint32_t *list, size_t *n)
{
  uint32_t m = UINT32_MAX, cand;
  size_t j, eligdoms = 0;

  for (j = 0; j < p->ndt; ++j)
    if (idx->doms[p->dt[j].dom].nelig[k] > 0)
      eligdoms++;
  *n = 0;
  *all = idx->dom_elig[k] > eligdoms;
  if (*all)
    return true;
  for (j = 0; j < p->ndt; ++j) {
    cand = idx->doms[p->dt[j].dom].nelig[k] - p->dt[j].held_elig;
    if (cand > 0 && p->dt[j].cnt < m)
      m = p->dt[j].cnt;
  }
  for (j = 0; j < p->ndt; ++j) {
    cand = idx->doms[p->dt[j].dom].nelig[k] - p->dt[j].held_elig;
    if (cand > 0 && p->dt[j].cnt == m)
      list[(*n)++] = p->dt[j].dom;
  }
  return *n > 0;
}

/* ---- Draws ---- */

/* A domain drawn by weight of kind K: from the domain trees (LIST
 * NULL) or from LIST[0..N); NONE if the weights are all 0.
 */
static uint32_t
draw_domain (const struct placement_index *idx, int k, const uint32_t *list,
             size_t n, uint64_t *rng)
{
  uint64_t total = 0, r;
  size_t j;

  if (list == NULL) {
    if (idx->dtotal[k] == 0)
      return NONE;
    r = placement_random (rng) % idx->dtotal[k];
    return fw_find (idx->dfw[k], idx->dfw_cap, r);
  }
  for (j = 0; j < n; ++j)
    total += idx->doms[list[j]].total[k];
  if (total == 0)
    return NONE;
  r = placement_random (rng) % total;
  for (j = 0; j < n; ++j) {
    if (r < idx->doms[list[j]].total[k])
      return list[j];
    r -= idx->doms[list[j]].total[k];
  }
  return NONE; /* not reached */
}

/* A member of domain DOM drawn by weight of kind K (its total > 0). */
static uint32_t
draw_member (const struct placement_index *idx, uint32_t dom, int k,
             uint64_t *rng)
{
  const struct domain *d = &idx->doms[dom];
  uint64_t r = placement_random (rng) % d->total[k];

  return d->mem[fw_find (d->fw[k], d->cap, r)];
}

/* True if A/B < C/D (fractions of 64-bit numbers, B and D not both 0). */
static bool
frac_lt (uint64_t a, uint64_t b, uint64_t c, uint64_t d)
{
  return (unsigned __int128)a * d < (unsigned __int128)c * b;
}

/* True if new segments have filled slot A less than slot B. */
static bool
emptier_new (const struct placement_index *idx, uint32_t a, uint32_t b)
{
  const struct placement_server *x = &idx->slots[a].s, *y = &idx->slots[b].s;

  return frac_lt (x->used, placement_mark (x), y->used, placement_mark (y));
}

/* True if slot A is emptier than slot B (used / capacity). */
static bool
emptier_repair (const struct placement_index *idx, uint32_t a, uint32_t b)
{
  const struct placement_server *x = &idx->slots[a].s, *y = &idx->slots[b].s;

  return frac_lt (x->used, x->capacity, y->used, y->capacity);
}

/* The next replica of a new segment among the unmasked servers of the
 * allowed domains (ALL, or LIST[0..N)); NONE if their weights are all 0
 * (every candidate is on the avoid list).
 */
static uint32_t
draw_new (const struct placement_index *idx, bool all, const uint32_t *list,
          size_t n, uint64_t *rng)
{
  uint32_t dom = NONE, c, best = NONE;
  int t;

  for (t = 0; t < DRAWS_DOMAIN; ++t) {
    c = draw_domain (idx, NEW, all ? NULL : list, n, rng);
    if (c == NONE)
      return NONE;
    /* Keep the domain with the larger free fraction of its marks. */
    if (dom == NONE || frac_lt (idx->doms[dom].room_u, idx->doms[dom].mark_u,
                                idx->doms[c].room_u, idx->doms[c].mark_u))
      dom = c;
  }
  for (t = 0; t < DRAWS_SERVER; ++t) {
    c = draw_member (idx, dom, NEW, rng);
    if (best == NONE || emptier_new (idx, c, best))
      best = c;
  }
  return best;
}

/* True if domain DOM is allowed (ALL: not one of the pick's, else in
 * LIST[0..N)).
 */
static bool
dom_allowed (const struct pick *p, bool all, const uint32_t *list, size_t n,
             uint32_t dom)
{
  size_t j;

  if (all) {
    for (j = 0; j < p->ndt; ++j)
      if (p->dt[j].dom == dom)
        return false;
    return true;
  }
  for (j = 0; j < n; ++j)
    if (list[j] == dom)
      return true;
  return false;
}

/* How many times ID is listed in AVOID[0..NAVOID). */
static size_t
avoid_count (const uint32_t *avoid, size_t navoid, uint32_t id)
{
  size_t j, count = 0;

  for (j = 0; j < navoid; ++j)
    if (avoid[j] == id)
      count++;
  return count;
}

/* When every candidate of the allowed domains is on the avoid list: the
 * ones listed the fewest times, one drawn by room.  CHOSEN[0..NCHOSEN)
 * are the slots chosen already.
 */
static uint32_t
draw_avoided (const struct placement_index *idx, const struct pick *p, bool all,
              const uint32_t *list, size_t n, const uint32_t *avoid,
              size_t navoid, const uint32_t *chosen, size_t nchosen,
              uint64_t *rng)
{
  size_t j, c, min = SIZE_MAX;
  uint64_t total = 0, r = 0;
  int pass;

  for (pass = 0; pass < 3; ++pass) {
    if (pass == 2) {
      if (total == 0)
        return NONE;
      r = placement_random (rng) % total;
    }
    for (j = 0; j < navoid; ++j) {
      uint32_t i = slot_of (idx, avoid[j]);
      size_t x;
      bool dup = false;

      if (i == NONE || !idx->slots[i].elig[NEW] ||
          !dom_allowed (p, all, list, n, idx->slots[i].dom))
        continue;
      for (x = 0; x < nchosen; ++x)
        dup |= chosen[x] == i;
      for (x = 0; x < j; ++x)
        dup |= avoid[x] == avoid[j];
      if (dup)
        continue;
      c = avoid_count (avoid, navoid, avoid[j]);
      if (pass == 0 && c < min)
        min = c;
      else if (pass == 1 && c == min)
        total += idx->slots[i].room_u;
      else if (pass == 2 && c == min) {
        if (r < idx->slots[i].room_u)
          return i;
        r -= idx->slots[i].room_u;
      }
    }
  }
  return NONE;
}

/* ---- Choosing ---- */

int
placement_index_choose (struct placement_index *idx, uint32_t replicas,
                        const uint32_t *avoid, size_t navoid, uint64_t *rng,
                        uint32_t *out)
{
  struct pick p = { .nmasked = 0, .ndt = 0 };
  uint32_t chosen[PLACEMENT_REPLICAS_MAX], list[2 * PLACEMENT_REPLICAS_MAX];
  uint32_t need, cap, k, i;
  size_t j, n;
  bool all;
  int r = 0;

  if (replicas == 0 || replicas > PLACEMENT_REPLICAS_MAX)
    return -EINVAL;
  need = placement_index_domains_needed (idx, replicas);
  if (idx->srv_elig[NEW] < replicas || idx->dom_elig[NEW] < need)
    return -ENOSPC;
  cap = (replicas + need - 1) / need;

  /* Rule: avoided servers are masked; when only they remain,
   * draw_avoided chooses among them.
   */
  for (j = 0; j < navoid && p.nmasked < MASK_MAX; ++j) {
    i = slot_of (idx, avoid[j]);
    if (i != NONE)
      pick_mask (idx, &p, i);
  }
  for (k = 0; k < replicas; ++k) {
    if (!pick_domains (idx, &p, NEW, &all, list, &n)) {
      r = -ENOSPC;
      break;
    }
    i = draw_new (idx, all, list, n, rng);
    if (i == NONE)
      i = draw_avoided (idx, &p, all, list, n, avoid, navoid, chosen, k, rng);
    if (i == NONE) {
      r = -ENOSPC;
      break;
    }
    chosen[k] = i;
    /* Always room: the avoid masks stop at MASK_MAX. */
    pick_mask (idx, &p, i);
    pick_hold (idx, &p, i, true);
  }
  /* With fewer domains than replicas, no domain above its share. */
  for (j = 0; r == 0 && j < p.ndt; ++j)
    if (p.dt[j].cnt > cap)
      r = -ENOSPC;
  pick_end (idx, &p);
  if (r < 0)
    return r;
  for (k = 0; k < replicas; ++k) {
    out[k] = idx->slots[chosen[k]].s.id;
    slot_charge (idx, chosen[k], (int64_t)idx->segment_size);
  }
  return 0;
}

/* Of a draw of DRAWS_REPAIR servers of kind K from the allowed domains,
 * the one with the fewest copies headed to it, then the emptiest;
 * NONE if there is no candidate.
 */
static uint32_t
draw_least_loaded (const struct placement_index *idx, int k, bool all,
                   const uint32_t *list, size_t n, uint64_t *rng)
{
  uint32_t best = NONE, dom, c;
  int t;

  for (t = 0; t < DRAWS_REPAIR; ++t) {
    dom = draw_domain (idx, k, all ? NULL : list, n, rng);
    if (dom == NONE)
      return NONE;
    c = draw_member (idx, dom, k, rng);
    if (best == NONE || idx->slots[c].s.load < idx->slots[best].s.load ||
        (idx->slots[c].s.load == idx->slots[best].s.load &&
         (k == NEW ? emptier_new (idx, c, best)
                   : emptier_repair (idx, c, best))))
      best = c;
  }
  return best;
}

/* Charge slot I one segment and one more copy headed to it. */
static void
charge_copy (struct placement_index *idx, uint32_t i)
{
  idx->slots[i].s.load++;
  slot_charge (idx, i, (int64_t)idx->segment_size);
}

int
placement_index_choose_extra (struct placement_index *idx,
                              const uint32_t *holders, size_t nholders,
                              uint32_t count, uint64_t *rng, uint32_t *out)
{
  struct pick p = { .nmasked = 0, .ndt = 0 };
  uint32_t chosen[PLACEMENT_REPLICAS_MAX], list[2 * PLACEMENT_REPLICAS_MAX];
  uint32_t c, i, held = 0;
  size_t j, n;
  bool all;
  int r = 0;

  if (count == 0 || nholders > PLACEMENT_REPLICAS_MAX ||
      count > PLACEMENT_REPLICAS_MAX - nholders)
    return -EINVAL;
  for (j = 0; j < nholders; ++j) {
    i = slot_of (idx, holders[j]);
    if (i == NONE || idx->slots[i].masked)
      continue; /* unknown, or listed twice */
    pick_mask (idx, &p, i);
    pick_hold (idx, &p, i, idx->slots[i].elig[REPAIR]);
    held += idx->slots[i].elig[REPAIR];
  }
  if (idx->srv_elig[REPAIR] - held < count)
    r = -ENOSPC;
  for (c = 0; r == 0 && c < count; ++c) {
    i = NONE;
    if (pick_domains (idx, &p, REPAIR, &all, list, &n))
      i = draw_least_loaded (idx, REPAIR, all, list, n, rng);
    if (i == NONE) {
      r = -ENOSPC;
      break;
    }
    chosen[c] = i;
    pick_mask (idx, &p, i);
    pick_hold (idx, &p, i, true);
  }
  pick_end (idx, &p);
  if (r < 0)
    return r;
  for (c = 0; c < count; ++c) {
    out[c] = idx->slots[chosen[c]].s.id;
    charge_copy (idx, chosen[c]);
  }
  return 0;
}

/* The distinct domains of HOLDERS[0..N) into DOMS (NONE for an unknown
 * id, which is a domain of its own) and their counts into CNT; returns
 * how many.  DOMS and CNT hold N entries.
 */
static size_t
holder_domains (const struct placement_index *idx, const uint32_t *holders,
                size_t n, uint32_t *doms, uint32_t *cnt)
{
  size_t j, x, nd = 0;

  for (j = 0; j < n; ++j) {
    uint32_t i = slot_of (idx, holders[j]);
    uint32_t dom = i == NONE ? NONE : idx->slots[i].dom;

    for (x = 0; dom != NONE && x < nd; ++x)
      if (doms[x] == dom)
        break;
    if (dom != NONE && x < nd)
      cnt[x]++;
    else {
      doms[nd] = dom;
      cnt[nd++] = 1;
    }
  }
  return nd;
}

bool
placement_index_misplaced (const struct placement_index *idx,
                           const uint32_t *holders, size_t n, uint32_t replicas)
{
  uint32_t doms[PLACEMENT_REPLICAS_MAX], cnt[PLACEMENT_REPLICAS_MAX];
  uint32_t need = placement_index_domains_needed (idx, replicas);

  if (n > PLACEMENT_REPLICAS_MAX)
    n = PLACEMENT_REPLICAS_MAX;
  if (need > n)
    need = n; /* missing replicas are repair's business */
  return holder_domains (idx, holders, n, doms, cnt) < need;
}

int
placement_index_respread (struct placement_index *idx, const uint32_t *holders,
                          size_t n, uint32_t replicas, uint64_t *rng,
                          uint32_t *target, uint32_t *victim)
{
  struct pick p = { .nmasked = 0, .ndt = 0 };
  uint32_t doms[PLACEMENT_REPLICAS_MAX], cnt[PLACEMENT_REPLICAS_MAX];
  uint32_t i, t, v = NONE, most = 0;
  size_t j, x, nd;

  if (n == 0)
    return -EINVAL;
  if (n > PLACEMENT_REPLICAS_MAX)
    n = PLACEMENT_REPLICAS_MAX;
  nd = holder_domains (idx, holders, n, doms, cnt);
  for (x = 0; x < nd; ++x)
    if (cnt[x] > most && doms[x] != NONE)
      most = cnt[x];
  /* The victim: the fullest holder of the most crowded domain. */
  for (j = 0; j < n; ++j) {
    i = slot_of (idx, holders[j]);
    if (i == NONE)
      continue;
    for (x = 0; doms[x] != idx->slots[i].dom; ++x)
      ;
    if (cnt[x] == most &&
        (v == NONE || emptier_repair (idx, slot_of (idx, v), i)))
      v = holders[j];
  }
  if (v == NONE)
    v = holders[0]; /* only unknown holders */
  for (j = 0; j < n; ++j) {
    i = slot_of (idx, holders[j]);
    if (i != NONE && !idx->slots[i].masked) {
      pick_mask (idx, &p, i);
      pick_hold (idx, &p, i, idx->slots[i].elig[NEW]);
    }
  }
  /* The target: in a domain holding none of the replicas. */
  t = draw_least_loaded (idx, NEW, true, NULL, 0, rng);
  pick_end (idx, &p);
  if (t == NONE)
    return -ENOSPC;
  (void)replicas;
  *target = idx->slots[t].s.id;
  *victim = v;
  charge_copy (idx, t);
  return 0;
}

/* ---- Reports ---- */

/* Append the printf-style FMT to the message in BUF (LEN bytes, LEN >
 * 0), whose first *USED bytes are taken; a part that does not fit is
 * cut, and BUF stays terminated.
 */
static void __attribute__ ((format (printf, 4, 5)))
append (char *buf, size_t len, size_t *used, const char *fmt, ...)
{
  va_list ap;
  int k;

  if (*used >= len - 1)
    return;
  va_start (ap, fmt);
  k = vsnprintf (buf + *used, len - *used, fmt, ap);
  va_end (ap);
  if (k < 0)
    buf[*used] = '\0';
  else
    *used = (size_t)k < len - *used ? *used + k : len - 1;
}

/* A domain for sorting by zone name (servers without one last, by
 * id).
 */
struct dom_key {
  const char *zone; /* NULL: none */
  uint32_t id;      /* its first server */
  uint32_t dom;
};

static int
cmp_dom (const void *a, const void *b)
{
  const struct dom_key *x = a, *y = b;

  if (x->zone && y->zone)
    return strcmp (x->zone, y->zone);
  if (x->zone || y->zone)
    return x->zone ? -1 : 1;
  return x->id < y->id ? -1 : x->id > y->id;
}

/* Room of the up servers of domain DOM below their marks, in segments
 * (a server below its mark can take at least one more), or in MiB if
 * the index has no segment size; servers with room into *NROOM.
 */
static uint64_t
dom_room (const struct placement_index *idx, uint32_t dom, uint32_t *nroom)
{
  const struct domain *d = &idx->doms[dom];
  uint64_t sum = 0, seg = idx->segment_size ? idx->segment_size : 1 << 20;
  uint32_t j;

  *nroom = 0;
  for (j = 0; j < d->n; ++j) {
    const struct slot *sl = &idx->slots[d->mem[j]];
    uint64_t room;

    if (!sl->elig[NEW])
      continue;
    room = placement_mark (&sl->s) - sl->s.used;
    sum += idx->segment_size ? (room - 1) / seg + 1 : room / seg;
    (*nroom)++;
  }
  return sum;
}

/* The domains with an up server, sorted, into a new array (*N of
 * them); NULL if out of memory.
 */
static uint32_t *
up_domains (const struct placement_index *idx, size_t *n)
{
  struct dom_key *keys = malloc ((idx->ndoms + 1) * sizeof *keys);
  uint32_t *v = malloc ((idx->ndoms + 1) * sizeof *v), d;
  size_t j;

  *n = 0;
  if (v == NULL || keys == NULL) {
    free (keys);
    free (v);
    return NULL;
  }
  for (d = 0; d < idx->ndoms; ++d)
    if (idx->doms[d].nup > 0) {
      keys[*n].zone = idx->doms[d].zone;
      keys[*n].id = idx->slots[idx->doms[d].mem[0]].s.id;
      keys[(*n)++].dom = d;
    }
  qsort (keys, *n, sizeof *keys, cmp_dom);
  for (j = 0; j < *n; ++j)
    v[j] = keys[j].dom;
  free (keys);
  return v;
}

/* "zone a" or "server 7" (a server without a zone). */
static void
append_dom (const struct placement_index *idx, char *buf, size_t len,
            size_t *used, uint32_t dom)
{
  const struct domain *d = &idx->doms[dom];

  if (d->zone)
    append (buf, len, used, "zone %s", d->zone);
  else
    append (buf, len, used, "server %" PRIu32, idx->slots[d->mem[0]].s.id);
}

/* The old text: how many servers can take a new segment, and why the
 * others cannot.
 */
static void
explain_servers (const struct placement_index *idx, uint32_t replicas,
                 char *buf, size_t len, size_t *used)
{
  size_t down = 0, full = 0, marked = 0;
  uint32_t i, pct = 0;
  const char *sep = " (";

  for (i = 0; i < idx->nslots; ++i) {
    const struct placement_server *s = &idx->slots[i].s;

    if (!idx->slots[i].live)
      continue;
    if (!s->up)
      down++;
    else if (s->capacity <= s->used)
      full++;
    else if (placement_mark (s) <= s->used) {
      marked++;
      pct = s->high_water;
    }
  }
  append (buf, len, used,
          "%" PRIu32 " of %" PRIu32 " servers can take a new segment, %" PRIu32
          " needed",
          idx->srv_elig[NEW], idx->nservers, replicas);
  if (down) {
    append (buf, len, used, "%s%zu not up", sep, down);
    sep = ", ";
  }
  if (full) {
    append (buf, len, used, "%s%zu full", sep, full);
    sep = ", ";
  }
  if (marked)
    append (buf, len, used, "%s%zu at %s %" PRIu32 "%% high-water mark", sep,
            marked, marked == 1 ? "its" : "their", pct);
  if (down + full + marked > 0)
    append (buf, len, used, ")");
}

void
placement_index_explain (const struct placement_index *idx, uint32_t replicas,
                         char *buf, size_t len)
{
  uint32_t need = placement_index_domains_needed (idx, replicas ? replicas : 1);
  uint32_t cap = need ? (replicas + need - 1) / need : 1, nroom;
  uint64_t fit = 0;
  size_t used = 0, n, j;
  uint32_t *v;
  bool zoned = false;

  if (len == 0)
    return;
  buf[0] = '\0';
  if (need == 0) {
    explain_servers (idx, replicas, buf, len, &used);
    return;
  }
  v = up_domains (idx, &n);
  if (v == NULL) {
    explain_servers (idx, replicas, buf, len, &used);
    return;
  }
  for (j = 0; j < n; ++j) {
    uint32_t e = idx->doms[v[j]].nelig[NEW];

    fit += e < cap ? e : cap;
    zoned |= idx->doms[v[j]].zone != NULL;
  }
  /* Without zones, domains are servers: the server text says it all. */
  if (idx->dom_elig[NEW] < need && zoned) {
    append (buf, len, &used,
            "only %" PRIu32 " of %zu zones %s room for a new segment, %" PRIu32
            " needed (",
            idx->dom_elig[NEW], n, idx->dom_elig[NEW] == 1 ? "has" : "have",
            need);
    for (j = 0; j < n; ++j) {
      uint64_t room = dom_room (idx, v[j], &nroom);

      if (j > 0)
        append (buf, len, &used, ", ");
      append_dom (idx, buf, len, &used, v[j]);
      append (buf, len, &used, ": %" PRIu64 "%s", room,
              j > 0               ? ""
              : idx->segment_size ? " segments"
                                  : " MiB");
    }
    append (buf, len, &used, ")");
    if (idx->srv_elig[NEW] < replicas) {
      append (buf, len, &used, "; ");
      explain_servers (idx, replicas, buf, len, &used);
    }
  }
  else if (idx->srv_elig[NEW] < replicas)
    explain_servers (idx, replicas, buf, len, &used);
  else if (fit < replicas) {
    append (buf, len, &used,
            "only %" PRIu64 " of %" PRIu32 " replicas fit with at most %" PRIu32
            " per zone (",
            fit, replicas, cap);
    for (j = 0; j < n; ++j) {
      dom_room (idx, v[j], &nroom);
      if (j > 0)
        append (buf, len, &used, ", ");
      append_dom (idx, buf, len, &used, v[j]);
      append (buf, len, &used, ": %" PRIu32 "%s", nroom,
              j > 0 ? "" : " servers with room");
    }
    append (buf, len, &used, ")");
  }
  else
    explain_servers (idx, replicas, buf, len, &used);
  free (v);
}

static int
cmp_zone_room (const void *a, const void *b)
{
  const struct placement_zone_room *x = a, *y = b;

  return strcmp (x->zone, y->zone);
}

size_t
placement_index_zones (const struct placement_index *idx,
                       struct placement_zone_room *out, size_t max)
{
  struct placement_zone_room *v, none = { "", 0, 0, 0 };
  size_t n = 0, total, j;
  uint32_t d, m;
  bool any_none = false;

  v = malloc ((idx->ndoms + 1) * sizeof *v);
  for (d = 0; d < idx->ndoms; ++d) {
    const struct domain *dm = &idx->doms[d];
    struct placement_zone_room z = { dm->zone ? dm->zone : "", 0, 0, 0 };

    if (dm->n == 0)
      continue;
    for (m = 0; m < dm->n; ++m) {
      const struct slot *sl = &idx->slots[dm->mem[m]];
      uint64_t mark = placement_mark (&sl->s);

      if (!sl->s.up)
        continue;
      z.servers++;
      z.usable += mark;
      z.room += mark > sl->s.used ? mark - sl->s.used : 0;
    }
    if (dm->zone == NULL) {
      any_none = true;
      none.servers += z.servers;
      none.usable += z.usable;
      none.room += z.room;
    }
    else if (v)
      v[n++] = z;
    else
      n++;
  }
  total = n + any_none;
  if (v == NULL)
    return total; /* out of memory: the count only */
  if (any_none)
    v[n++] = none;
  qsort (v, n, sizeof *v, cmp_zone_room);
  for (j = 0; j < n && j < max; ++j)
    out[j] = v[j];
  free (v);
  return total;
}

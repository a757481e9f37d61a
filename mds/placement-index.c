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
 * a million servers of up to 4 PiB of room each below 2^64.
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

/* ---- Fenwick trees (1-based inside, 0-based positions outside) ---- */

static void
fw_add (uint64_t *t, uint32_t cap, uint32_t pos, uint64_t delta)
{
  uint32_t i;

  for (i = pos + 1; i <= cap; i += i & -i)
    t[i - 1] += delta; /* unsigned wrap-around makes negative deltas work */
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

/* Add DELTA to position POS of tree T (CAP entries): a Fenwick tree,
 * or while the index is being built, plain values that
 * build_trees turns into one.
 */
static void
tree_add (const struct placement_index *idx, uint64_t *t, uint32_t cap,
          uint32_t pos, uint64_t delta)
{
  if (idx->bulk)
    t[pos] += delta;
  else
    fw_add (t, cap, pos, delta);
}

/* At the end of a bulk build: every tree from its plain values, in
 * time linear in its size.
 */
static void
build_trees (struct placement_index *idx)
{
  uint32_t d;
  int k;

  for (k = 0; k < KINDS; ++k) {
    for (d = 0; d < idx->ndoms; ++d)
      fw_build (idx->doms[d].fw[k], idx->doms[d].cap);
    fw_build (idx->dfw[k], idx->dfw_cap);
  }
  idx->bulk = false;
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
uint32_t
placement_slot_of (const struct placement_index *idx, uint32_t id)
{
  uint32_t mask = idx->idmap_cap - 1, i;

  if (idx->idmap_cap == 0)
    return NONE;
  for (i = hash_id (id) & mask; idx->idmap[i] != 0; i = (i + 1) & mask)
    if (idx->slots[idx->idmap[i] - 1].s.id == id)
      return idx->idmap[i] - 1;
  return NONE;
}

/* The two maps (server id -> slot, zone -> domain) are open-addressing
 * tables of entry + 1 (0: empty), with a power-of-two capacity and a
 * load of at most 1/2; an entry's home bucket comes from its key.
 */
typedef uint32_t (*entry_hash) (const struct placement_index *idx,
                                uint32_t entry);

/* Home of slot SLOT in the id map: its server's id. */
static uint32_t
slot_hash (const struct placement_index *idx, uint32_t slot)
{
  return hash_id (idx->slots[slot].s.id);
}

/* Home of domain DOM in the zone map: its zone. */
static uint32_t
dom_hash (const struct placement_index *idx, uint32_t dom)
{
  return hash_str (idx->doms[dom].zone);
}

/* Put ENTRY into table TAB of CAP buckets (there is room). */
static void
table_put (const struct placement_index *idx, uint32_t *tab, uint32_t cap,
           entry_hash hash, uint32_t entry)
{
  uint32_t mask = cap - 1, i;

  i = hash (idx, entry) & mask;
  while (tab[i] != 0)
    i = (i + 1) & mask;
  tab[i] = entry + 1;
}

/* Make room in table *TAB (*CAP buckets, COUNT entries) for one more
 * entry, growing it from FIRST buckets.  Returns 0 or -ENOMEM.
 */
static int
table_reserve (const struct placement_index *idx, uint32_t **tab, uint32_t *cap,
               uint32_t count, uint32_t first, entry_hash hash)
{
  uint32_t *old = *tab, oldcap = *cap, ncap, i;

  if ((uint64_t)(count + 1) * 2 <= oldcap)
    return 0;
  ncap = oldcap ? oldcap * 2 : first;
  *tab = calloc (ncap, sizeof **tab);
  if (*tab == NULL) {
    *tab = old;
    return -ENOMEM;
  }
  *cap = ncap;
  for (i = 0; i < oldcap; ++i)
    if (old[i] != 0)
      table_put (idx, *tab, ncap, hash, old[i] - 1);
  free (old);
  return 0;
}

/* Remove SLOT from the id map (backward-shift deletion). */
static void
idmap_del (struct placement_index *idx, uint32_t slot)
{
  uint32_t mask = idx->idmap_cap - 1, i, j, home;

  i = slot_hash (idx, slot) & mask;
  while (idx->idmap[i] != slot + 1)
    i = (i + 1) & mask;
  j = i;
  for (;;) {
    j = (j + 1) & mask;
    if (idx->idmap[j] == 0)
      break;
    home = slot_hash (idx, idx->idmap[j] - 1) & mask;
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

  tree_add (idx, d->fw[k], d->cap, pos, delta);
  d->total[k] += delta;
  if (!d->masked) {
    tree_add (idx, idx->dfw[k], idx->dfw_cap, dom, delta);
    idx->dtotal[k] += delta;
  }
}

/* Mask or unmask domain DOM in the domain trees. */
void
placement_dom_mask (struct placement_index *idx, uint32_t dom, bool masked)
{
  struct domain *d = &idx->doms[dom];
  int k;

  if (d->masked == masked)
    return;
  for (k = 0; k < KINDS; ++k) {
    uint64_t delta = masked ? -d->total[k] : d->total[k];

    tree_add (idx, idx->dfw[k], idx->dfw_cap, dom, delta);
    idx->dtotal[k] += delta;
  }
  d->masked = masked;
}

/* Bring slot I's weights, counts and sums in line with its server. */
void
placement_slot_refresh (struct placement_index *idx, uint32_t i)
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
    if (!idx->bulk)
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
    r = table_reserve (idx, &idx->zonemap, &idx->zonemap_cap, idx->ndoms, 32,
                       dom_hash);
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
    table_put (idx, idx->zonemap, idx->zonemap_cap, dom_hash, *out);
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
    if (!idx->bulk)
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
  placement_slot_refresh (idx, i);
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
  placement_slot_refresh (idx, i);
  sl->live = live;
  last = d->mem[d->n - 1];
  if (last != i) {
    struct slot *ls = &idx->slots[last];

    for (k = 0; k < KINDS; ++k) {
      tree_add (idx, d->fw[k], d->cap, ls->pos, -ls->w[k]);
      tree_add (idx, d->fw[k], d->cap, sl->pos, ls->w[k]);
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
  /* Plain values first, trees at the end: linear in servers. */
  idx->bulk = true;
  for (i = 0; i < n; ++i)
    if (placement_index_update (idx, &servers[i]) < 0) {
      placement_index_free (idx);
      return NULL;
    }
  build_trees (idx);
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
  uint32_t i = placement_slot_of (idx, s->id), dom;
  struct slot *sl;
  int r;

  if (i != NONE) {
    sl = &idx->slots[i];
    if (has_zone (s->zone) == has_zone (sl->s.zone) &&
        (!has_zone (s->zone) || strcmp (s->zone, sl->s.zone) == 0)) {
      sl->s = *s;
      sl->s.zone = idx->doms[sl->dom].zone;
      placement_slot_refresh (idx, i);
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

  r = table_reserve (idx, &idx->idmap, &idx->idmap_cap, idx->nservers, 64,
                     slot_hash);
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
  table_put (idx, idx->idmap, idx->idmap_cap, slot_hash, i);
  idx->nservers++;
  dom_attach (idx, i, dom);
  return 0;
}

void
placement_index_remove (struct placement_index *idx, uint32_t id)
{
  uint32_t i = placement_slot_of (idx, id);

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
  uint32_t i = placement_slot_of (idx, id);

  return i == NONE ? NULL : &idx->slots[i].s;
}

/* Add BYTES (two's complement) to slot I's used space, not below 0. */
void
placement_slot_charge (struct placement_index *idx, uint32_t i, int64_t bytes)
{
  struct placement_server *s = &idx->slots[i].s;

  if (bytes < 0 && (uint64_t) - (bytes + 1) + 1 > s->used)
    s->used = 0;
  else
    s->used += (uint64_t)bytes;
  placement_slot_refresh (idx, i);
}

void
placement_index_charge (struct placement_index *idx, uint32_t id, int64_t bytes)
{
  uint32_t i = placement_slot_of (idx, id);

  if (i != NONE)
    placement_slot_charge (idx, i, bytes);
}

uint32_t
placement_index_domains_needed (const struct placement_index *idx,
                                uint32_t replicas)
{
  return replicas < idx->dom_up ? replicas : idx->dom_up;
}

/* The placement index's choices: new segments, repair targets, and
 * respreading a misplaced segment (the design is at the top of
 * placement-index.c, the rules in placement.h).
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

#define DRAWS_DOMAIN 3                        /* domains compared per pick */
#define DRAWS_SERVER 2                        /* servers compared per pick */
#define DRAWS_REPAIR 8                        /* repair targets compared */
#define MASK_MAX (4 * PLACEMENT_REPLICAS_MAX) /* avoid ids honoured */

/* ---- Fenwick search ---- */

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
  placement_slot_refresh (idx, i);
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
    placement_dom_mask (idx, dom, true);
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
    placement_dom_mask (idx, p->dt[j].dom, false);
  for (j = 0; j < p->nmasked; ++j) {
    idx->slots[p->masked[j]].masked = false;
    placement_slot_refresh (idx, p->masked[j]);
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
      uint32_t i = placement_slot_of (idx, avoid[j]);
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
    i = placement_slot_of (idx, avoid[j]);
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
    placement_slot_charge (idx, chosen[k], (int64_t)idx->segment_size);
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
  placement_slot_charge (idx, i, (int64_t)idx->segment_size);
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
    i = placement_slot_of (idx, holders[j]);
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
    uint32_t i = placement_slot_of (idx, holders[j]);
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
    i = placement_slot_of (idx, holders[j]);
    if (i == NONE)
      continue;
    for (x = 0; doms[x] != idx->slots[i].dom; ++x)
      ;
    if (cnt[x] == most &&
        (v == NONE || emptier_repair (idx, placement_slot_of (idx, v), i)))
      v = holders[j];
  }
  if (v == NONE)
    v = holders[0]; /* only unknown holders */
  for (j = 0; j < n; ++j) {
    i = placement_slot_of (idx, holders[j]);
    if (i != NONE && !idx->slots[i].masked) {
      pick_mask (idx, &p, i);
      pick_hold (idx, &p, i, idx->slots[i].elig[NEW]);
    }
  }
  /* The target: in a domain holding none of the replicas (whatever
   * REPLICAS is, such a domain adds one to the domains spanned).
   */
  t = draw_least_loaded (idx, NEW, true, NULL, 0, rng);
  pick_end (idx, &p);
  if (t == NONE)
    return -ENOSPC;
  *target = idx->slots[t].s.id;
  *victim = v;
  charge_copy (idx, t);
  return 0;
}

/* The placement index's reports: why placement fails, and the room of
 * each zone.
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

/* nbdkit-tessera-plugin: map cache entries (see map-entry.h).
 *
 * The decisions of the map cache that need no volume: decoding and
 * checking a MAP reply, and whether an entry from the MDS replaces the
 * cached one.  map.c publishes, retires and locks; tests/unit/test-map-
 * entry.c pins the rules.
 */

#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "protocol.h"

#include "map-entry.h"

/* See map-entry.h. */
int
map_entry_decode (const void *reply, uint32_t len, uint64_t start,
                  uint32_t count, uint64_t nsegments, struct proto_map *map)
{
  uint32_t i;
  int r;

  r = proto_decode_map (reply, len, map);
  for (i = 0; r == 0 && i < map->n; i++)
    if (map->entries[i].index < start ||
        map->entries[i].index - start >= count ||
        map->entries[i].index >= nsegments)
      r = -EBADMSG;
  if (r < 0)
    proto_map_free (map);
  return r;
}

/* See map-entry.h. */
bool
map_entry_equal (const struct seg *s, const struct proto_map_entry *e)
{
  unsigned i;

  if (s->id != e->segment || s->gen != e->gen || s->nreplicas != e->nreplicas)
    return false;
  for (i = 0; i < e->nreplicas; i++)
    if (s->replicas[i].server != e->replicas[i].server ||
        s->replicas[i].state != e->replicas[i].state)
      return false;
  return true;
}

/* See map-entry.h. */
enum map_store
map_entry_store_action (const struct seg *old, const struct proto_map_entry *e,
                        uint64_t ticket, bool marked)
{
  if (!marked && old && old->id == e->segment) {
    if (e->gen < old->gen || (old->marked && ticket < old->ticket))
      return MAP_STORE_IGNORE;
    if (!old->marked && map_entry_equal (old, e))
      return ticket > old->ticket ? MAP_STORE_TICKET : MAP_STORE_IGNORE;
  }
  return MAP_STORE_REPLACE;
}

/* See map-entry.h. */
void
map_entry_fill (struct seg *s, const struct proto_map_entry *e, uint64_t ticket,
                bool marked)
{
  s->index = e->index;
  s->id = e->segment;
  s->gen = e->gen;
  s->nreplicas = e->nreplicas;
  memcpy (s->replicas, e->replicas, sizeof s->replicas);
  s->ticket = ticket;
  s->marked = marked;
}

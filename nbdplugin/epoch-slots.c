/* nbdkit-tessera-plugin: writes in flight per epoch (see epoch-slots.h).
 *
 * Plain counting on the caller's array under the caller's lock: no
 * allocation, no lock, no nbdkit call, so that tests/unit/test-epoch-
 * slots.c pins the arithmetic that EPOCH_CLEAN's correctness rests on
 * (an epoch is only marked clean once no write of it or an older one
 * is in flight).
 */

#include <config.h>

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include "epoch-slots.h"

/* See epoch-slots.h. */
int
epoch_slots_add (struct epoch_slot slots[EPOCH_SLOTS], uint64_t epoch)
{
  unsigned i, free_slot = EPOCH_SLOTS;

  for (i = 0; i < EPOCH_SLOTS; i++) {
    if (slots[i].inflight > 0 && slots[i].epoch == epoch) {
      slots[i].inflight++;
      return 0;
    }
    if (slots[i].inflight == 0 && free_slot == EPOCH_SLOTS)
      free_slot = i;
  }
  if (free_slot == EPOCH_SLOTS)
    return -EAGAIN;
  slots[free_slot].epoch = epoch;
  slots[free_slot].inflight = 1;
  return 0;
}

/* See epoch-slots.h. */
int
epoch_slots_remove (struct epoch_slot slots[EPOCH_SLOTS], uint64_t epoch)
{
  unsigned i;

  for (i = 0; i < EPOCH_SLOTS; i++)
    if (slots[i].inflight > 0 && slots[i].epoch == epoch)
      return --slots[i].inflight == 0;
  return -ENOENT;
}

/* See epoch-slots.h. */
bool
epoch_slots_busy (const struct epoch_slot slots[EPOCH_SLOTS], uint64_t epoch)
{
  unsigned i;

  for (i = 0; i < EPOCH_SLOTS; i++)
    if (slots[i].inflight > 0 && slots[i].epoch <= epoch)
      return true;
  return false;
}

/* nbdkit-tessera-plugin: writes in flight per epoch (epoch-slots.c).
 *
 * A writer counts its writes in flight per epoch in a few slots (see
 * epoch.c): at most the current epoch and the one a flush is draining
 * have writes in flight, so EPOCH_SLOTS leaves room to spare.  A slot
 * with no write in flight is free, whatever epoch it names.  These
 * functions only count: the caller holds the lock that protects the
 * slots (volume.epoch_lock) and does the waiting.  Part of
 * libtesseraplugin.la.
 */

#ifndef TESSERA_NBDPLUGIN_EPOCH_SLOTS_H
#define TESSERA_NBDPLUGIN_EPOCH_SLOTS_H

#include <stdbool.h>
#include <stdint.h>

/* Writes in flight in one epoch. */
struct epoch_slot {
  uint64_t epoch;
  uint64_t inflight; /* 0: the slot is free */
};
#define EPOCH_SLOTS 4

/* Count one more write in flight in EPOCH: in the slot of EPOCH if it
 * has writes in flight, else in the first free slot.  Returns 0, or
 * -EAGAIN (nothing counted) if every slot holds writes of other epochs.
 */
extern int epoch_slots_add (struct epoch_slot slots[EPOCH_SLOTS],
                            uint64_t epoch);

/* A write of EPOCH counted by epoch_slots_add is over.  Returns 1 if it
 * was the last of EPOCH in flight (the slot is free again: wake who
 * waits for one, or for EPOCH to drain), 0 if others remain, or -ENOENT
 * (nothing changed) if no write of EPOCH is in flight.
 */
extern int epoch_slots_remove (struct epoch_slot slots[EPOCH_SLOTS],
                               uint64_t epoch);

/* Whether a write of EPOCH or of an older epoch is in flight. */
extern bool epoch_slots_busy (const struct epoch_slot slots[EPOCH_SLOTS],
                              uint64_t epoch);

#endif /* TESSERA_NBDPLUGIN_EPOCH_SLOTS_H */

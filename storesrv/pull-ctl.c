/* A running pull as the rest of the ring thread sees it: segments.c
 * asks whether a client write overlaps the chunk being copied and marks
 * the ranges clients write in the pull's dirty set; segments.c (a
 * delete) and loop.c (shutdown) cancel pulls.  pull.c runs the pull and
 * calls segments.c; this file calls nothing above track.c, so a segment
 * can consult its pull without calling back into pull.c.  Ring thread,
 * except that cancelling takes the pull's LOCK (struct ss_pull, in
 * internal.h).
 */

#include <config.h>

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "cleanup.h"

#include "internal.h"

/* True if a chunk of P is being written over part of [OFFSET,
 * OFFSET+LENGTH): a client write of that range must wait.
 */
bool
ss_pull_copy_overlaps (const struct ss_pull *p, uint32_t offset,
                       uint32_t length)
{
  uint64_t end = (uint64_t)offset + length;

  return p->copying && length > 0 && offset < p->copy_off + p->copy_len &&
         end > p->copy_off;
}

/* Mark [OFFSET, OFFSET+LENGTH) as written by a client: copy data never
 * goes there.  Ring thread, just before the client's I/O is issued.
 */
void
ss_pull_mark (struct ss_pull *p, uint32_t offset, uint32_t length)
{
  ss_ranges_add (&p->dirty, offset, length);
}

/* Cancel P (ring thread): its worker stops at the next step, and it
 * fails with WHY (a static string).
 */
void
ss_pull_cancel (struct ss_pull *p, const char *why)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&p->lock);
  if (!p->cancel) {
    p->cancel = true;
    p->why = why;
  }
  if (p->fd >= 0)
    shutdown (p->fd, SHUT_RDWR);
  pthread_cond_broadcast (&p->cond);
}

/* Cancel every pull (shutting down). */
void
ss_pulls_cancel_all (struct ss_loop *loop)
{
  struct ss_pull *p;

  for (p = loop->pulls; p; p = p->next)
    ss_pull_cancel (p, "the server is shutting down");
}

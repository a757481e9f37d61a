/* tessera repair [--wait [--max-wait SECONDS]]: start repair now, and
 * optionally wait until the cluster is healthy again.
 *
 * REPAIR asks the MDS to schedule repair at once (rather than at its
 * repair thread's next pass) and answers with the cluster status.  With
 * --wait the tool polls STATUS every TOOL_POLL_MS until nothing is
 * degraded, syncing or resyncing.  Progress lines go to stderr as they
 * happen (stdout is spooled until the command ends); the final result
 * goes to stdout.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "deadline.h"
#include "internal.h"
#include "cleanup.h"

#define TOOL_POLL_MS 500

/* True when repair has nothing left to do. */
static bool
is_healthy (const struct proto_status_info *st)
{
  return st->degraded == 0 && st->syncing == 0 && st->resyncing == 0;
}

/* True if the repair counts of A and B differ. */
static bool
counts_differ (const struct proto_status_info *a,
               const struct proto_status_info *b)
{
  return a->degraded != b->degraded || a->syncing != b->syncing ||
         a->resyncing != b->resyncing;
}

/* Print "repair: N segments degraded, ..." (and the time waited so far,
 * if ELAPSED is not negative) on FP.
 */
static void
print_counts (FILE *fp, const struct proto_status_info *st, double elapsed)
{
  fprintf (fp,
           "repair: %" PRIu64 " segments degraded, %" PRIu64
           " replicas syncing, %" PRIu32 " volumes resyncing",
           st->degraded, st->syncing, st->resyncing);
  if (elapsed >= 0)
    fprintf (fp, " (%.0f s)", elapsed);
  fputc ('\n', fp);
}

/* Seconds on the monotonic clock. */
static double
now (void)
{
  return monotonic_ns () / 1e9;
}

/* Sleep for MS milliseconds (restarted after signals). */
static void
sleep_ms (long ms)
{
  struct timespec ts = { .tv_sec = ms / 1000,
                         .tv_nsec = (ms % 1000) * 1000000 };

  while (nanosleep (&ts, &ts) == -1 && errno == EINTR)
    ;
}

/* Poll STATUS until the cluster is healthy or ctx->max_wait seconds have
 * passed since START.  ST holds the REPAIR reply on entry and the last
 * status on return.  Returns 0 (healthy), TOOL_FAILED_WITH_OUTPUT (timed
 * out, printed) or -errno (printed).
 */
static int
wait_healthy (struct tool_ctx *ctx, double start, struct proto_status_info *st)
{
  double elapsed;
  int r;

  for (;;) {
    elapsed = now () - start;
    if (is_healthy (st))
      break;
    if (elapsed >= ctx->max_wait) {
      tool_error ("repair: %" PRIu64 " segments still degraded after %.0f s "
                  "(%" PRIu64 " replicas syncing, %" PRIu32
                  " volumes resyncing)",
                  st->degraded, elapsed, st->syncing, st->resyncing);
      return TOOL_FAILED_WITH_OUTPUT;
    }
    /* Never sleep past the deadline. */
    if ((ctx->max_wait - elapsed) * 1000 < TOOL_POLL_MS)
      sleep_ms ((long)((ctx->max_wait - elapsed) * 1000) + 1);
    else
      sleep_ms (TOOL_POLL_MS);

    {
      CLEANUP_FREE struct proto_status_info *next = NULL;

      r = tool_get_status (ctx, "repair", &next);
      if (r < 0)
        return r;
      if (counts_differ (st, next) && !ctx->json)
        print_counts (stderr, next, now () - start);
      *st = *next;
    }
  }

  if (!ctx->json)
    fprintf (ctx->out, "repair: complete after %.0f s\n", elapsed);
  return 0;
}

/* tessera repair */
int
tool_cmd_repair (struct tool_ctx *ctx, char **args)
{
  const char *what = "repair";
  CLEANUP_FREE struct proto_status_info *st = NULL;
  CLEANUP_FREE void *reply = NULL;
  double start = now ();
  uint32_t len;
  int r;

  r = tool_call (ctx, what, PROTO_OP_REPAIR, NULL, &reply, &len);
  if (r < 0)
    return r;
  r = tool_decode_status (ctx, what, reply, len, &st);
  if (r < 0)
    return r;

  if (!ctx->wait) {
    if (ctx->json)
      tool_print_status_json (ctx, st);
    else
      print_counts (ctx->out, st, -1);
    return 0;
  }

  if (!ctx->json)
    print_counts (stderr, st, now () - start);
  r = wait_healthy (ctx, start, st);
  if (r >= 0 && ctx->json)
    tool_print_status_json (ctx, st);
  return r;
}

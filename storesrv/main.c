/* tessera-storesrv: options, start-up and shutdown.
 *
 * Start-up order: check options; load the cluster key; raise the open
 * files limit for the connections; open (or create) the store and lock it;
 * listen; daemonize; start the MDS client and wait for the first
 * registration; format the store if it is new; open the index (LMDB,
 * after the fork); load it; start the index worker; set up the ring;
 * write the pidfile; serve until SIGTERM or SIGINT.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "tls.h"
#include "cleanup.h"
#include "daemon.h"
#include "log.h"
#include "parse.h"

#include "internal.h"

#define DEFAULT_MDS "127.0.0.1:7420"
#define DEFAULT_LISTEN "127.0.0.1:7421"
#define DEFAULT_SIZE (UINT64_C (8) * 1024 * 1024 * 1024)

/* The storage server's own options; the shared ones are daemon.h's. */
enum {
  DATA_OPTION = DAEMON_OPTION_END,
  MDS_OPTION,
  SIZE_OPTION,
  ADVERTISE_OPTION,
  ZONE_OPTION,
  MAX_PULLS_OPTION,
  KEY_FILE_OPTION,
  HANDSHAKE_TIMEOUT_OPTION,
  FRAME_TIMEOUT_OPTION,
  MAX_INFLIGHT_OPTION,
};

/* Bounds of the timeout options. */
#define MAX_HANDSHAKE_TIMEOUT 86400
#define MAX_FRAME_TIMEOUT 86400

static const struct option long_options[] = {
  { "advertise", required_argument, NULL, ADVERTISE_OPTION },
  { "data", required_argument, NULL, DATA_OPTION },
  { "frame-timeout", required_argument, NULL, FRAME_TIMEOUT_OPTION },
  { "handshake-timeout", required_argument, NULL, HANDSHAKE_TIMEOUT_OPTION },
  { "key-file", required_argument, NULL, KEY_FILE_OPTION },
  { "max-inflight", required_argument, NULL, MAX_INFLIGHT_OPTION },
  { "max-pulls", required_argument, NULL, MAX_PULLS_OPTION },
  { "mds", required_argument, NULL, MDS_OPTION },
  { "size", required_argument, NULL, SIZE_OPTION },
  { "zone", required_argument, NULL, ZONE_OPTION },
  DAEMON_LONG_OPTIONS,
  { NULL },
};

/* Print the synopsis and the server's own options on FP (--help; the
 * shared options follow).
 */
static void
usage (FILE *fp)
{
  static const char options[] =
      "Serve the segments of a Tessera cluster from a local store.\n"
      "\n"
      "Options:\n"
      "  --data DIR                store directory (created if missing)\n"
      "  --mds ADDR[,ADDR...]      metadata server (default " DEFAULT_MDS ")\n"
      "                            or up to 8, tried in turn to find the\n"
      "                            leader\n"
      "  --size SIZE               capacity when formatting (default 8G)\n"
      "  --advertise ADDR          address given to clients (default: "
      "bound)\n"
      "  --zone NAME               failure domain label\n"
      "  --max-pulls N             segment copies (SEG_PULL) at once\n"
      "                            (default 2)\n"
      "  --key-file FILE           cluster key (default\n"
      "                            " AUTH_DEFAULT_KEY_FILE ")\n"
      "  --handshake-timeout S     close connections not authenticated\n"
      "                            within S seconds (default 10)\n"
      "  --frame-timeout S         close authenticated connections that\n"
      "                            send part of a frame, then nothing for\n"
      "                            S seconds (default 30; idle ones stay)\n"
      "  --max-inflight N          requests read ahead per connection\n"
      "                            (default 64)\n";

  fprintf (fp,
           "Usage: %s --data DIR [--mds ADDR[,ADDR...]] [--size SIZE]\n"
           "         [--listen ADDR] [--advertise ADDR] [--zone NAME]\n"
           "         [--max-pulls N]\n"
           "         [--key-file FILE] [--handshake-timeout SECONDS]\n"
           "         [--frame-timeout SECONDS]\n"
           "         [--max-connections N] [--max-unauthenticated N]\n"
           "         [--max-inflight N]\n"
           "         [-f] [-P PIDFILE] [-v] [-D storesrv.FLAG=N]\n"
           "         [--exit-with-parent]\n\n",
           SS_PROGRAM);
  fputs (options, fp);
}

/* Take the server's own option C with its argument ARG into OPAQUE, the
 * struct ss_ctx (daemon_spec.option).
 */
static void
ss_option (const struct daemon_common *dc, void *opaque, int c, const char *arg)
{
  struct ss_ctx *ctx = opaque;
  int r;

  switch (c) {
  case DATA_OPTION:
    free (ctx->data_dir);
    ctx->data_dir = daemon_absolute_path (arg);
    if (ctx->data_dir == NULL || arg[0] == '\0')
      daemon_bad_option (dc, "data", arg, "not a directory name");
    break;
  case MDS_OPTION:
    free (ctx->mds_addr);
    ctx->mds_addr = daemon_address_list_option (dc, "mds", arg);
    break;
  case SIZE_OPTION:
    r = parse_size (arg, &ctx->size);
    if (r < 0 || ctx->size == 0)
      daemon_bad_option (dc, "size", arg, "not a size");
    ctx->size_set = true;
    break;
  case ADVERTISE_OPTION:
    free (ctx->advertise_opt);
    ctx->advertise_opt = daemon_address_option (dc, "advertise", arg);
    if (strlen (ctx->advertise_opt) > PROTO_ADDR_MAX)
      daemon_bad_option (dc, "advertise", arg, "longer than %d bytes",
                         PROTO_ADDR_MAX);
    break;
  case ZONE_OPTION:
    if (strlen (arg) > PROTO_ZONE_MAX)
      daemon_bad_option (dc, "zone", arg, "longer than %d bytes",
                         PROTO_ZONE_MAX);
    free (ctx->zone);
    ctx->zone = strdup (arg);
    break;
  case MAX_PULLS_OPTION:
    ctx->max_pulls =
        daemon_number_option (dc, "max-pulls", arg, SS_MAX_MAX_PULLS);
    break;
  case KEY_FILE_OPTION:
    free (ctx->key_file);
    ctx->key_file = strdup (arg);
    if (ctx->key_file == NULL || arg[0] == '\0')
      daemon_bad_option (dc, "key-file", arg, "not a file name");
    break;
  case HANDSHAKE_TIMEOUT_OPTION:
    if (parse_uint32 (arg, 1, MAX_HANDSHAKE_TIMEOUT, &ctx->handshake_timeout) <
        0)
      daemon_bad_option (dc, "handshake-timeout", arg,
                         "must be from 1 to %d seconds", MAX_HANDSHAKE_TIMEOUT);
    break;
  case FRAME_TIMEOUT_OPTION:
    if (parse_uint32 (arg, 1, MAX_FRAME_TIMEOUT, &ctx->frame_timeout) < 0)
      daemon_bad_option (dc, "frame-timeout", arg,
                         "must be from 1 to %d seconds", MAX_FRAME_TIMEOUT);
    break;
  case MAX_INFLIGHT_OPTION:
    ctx->max_inflight =
        daemon_number_option (dc, "max-inflight", arg, SS_MAX_MAX_INFLIGHT);
    break;
  }
}

/* Parse the command line into CTX and DC (the shared options); exit on
 * --help, --version and errors.
 */
static void
parse_options (struct ss_ctx *ctx, struct daemon_common *dc, int argc,
               char **argv)
{
  daemon_parse_options (dc, argc, argv, ctx);
  if (ctx->data_dir == NULL) {
    fprintf (stderr, "%s: --data: a store directory is required\n", SS_PROGRAM);
    exit (EXIT_FAILURE);
  }
  if (ctx->zone == NULL || ctx->mds_addr == NULL || ctx->key_file == NULL) {
    fprintf (stderr, "%s: %s\n", SS_PROGRAM, strerror (ENOMEM));
    exit (EXIT_FAILURE);
  }
  ctx->tls = dc->tls;
  ctx->max_conns = dc->max_conns;
  ctx->max_unauth = dc->max_unauth;
}

/* What the shared daemon code needs of the storage server. */
static const struct daemon_spec spec = {
  .program = SS_PROGRAM,
  .default_listen = DEFAULT_LISTEN,
  .long_options = long_options,
  .usage = usage,
  .option = ss_option,
};

/* Load the cluster key (--key-file) for every handshake of the process.
 * Returns 0 or -errno (logged).
 */
static int
load_key (struct ss_ctx *ctx)
{
  struct auth_key key;
  char errmsg[512];
  int r;

  r = auth_key_load (ctx->key_file, &key, errmsg, sizeof errmsg);
  if (r < 0) {
    log_error ("%s", errmsg);
    return r;
  }
  auth_key_use (&key);
  if (ctx->tls && (r = tls_enable (&key, errmsg, sizeof errmsg)) < 0) {
    log_error ("%s", errmsg);
    return r;
  }
  memset (&key, 0, sizeof key);
  return 0;
}

/* Draw this start's incarnation: a random non-zero u64 that HELLO
 * replies and registrations carry, so that clients and the MDS can tell
 * that the process restarted.  Returns 0 or -errno (logged).
 */
static int
draw_incarnation (struct ss_ctx *ctx)
{
  int r;

  do {
    r = auth_random (&ctx->incarnation, sizeof ctx->incarnation);
    if (r < 0) {
      log_error ("getrandom: %s", strerror (-r));
      return r;
    }
  } while (ctx->incarnation == 0);
  return 0;
}

/* Listen, and work out the address to advertise: --advertise, else the
 * address bound.
 */
static int
start_listening (struct ss_ctx *ctx, struct daemon_common *dc)
{
  ctx->listen_fd = daemon_listen (dc, ctx->advertise, sizeof ctx->advertise);
  if (ctx->listen_fd < 0)
    return ctx->listen_fd;
  if (ctx->advertise_opt)
    snprintf (ctx->advertise, sizeof ctx->advertise, "%s", ctx->advertise_opt);
  return 0;
}

/* Set up the ring and load the store's open index into it.  Must run
 * after the fork (LMDB) on the ring thread.
 */
static int
load_store (struct ss_ctx *ctx)
{
  int r;

  r = ss_loop_new (ctx, &ctx->loop);
  if (r < 0)
    return r;
  r = ss_segs_load (ctx->loop, ctx->index);
  if (r < 0)
    return r;
  r = ss_gone_load (ctx->loop, ctx->index);
  if (r < 0)
    return r;
  r = ss_tables_load (ctx->loop, ctx->index);
  if (r < 0)
    return r;
  r = ss_mds_epoch_load (ctx->loop, ctx->index);
  if (r < 0)
    return r;
  return ss_fences_load (ctx->loop, ctx->index);
}

/* Read the clean-shutdown marker of a formatted store.  Without one the
 * server registers as unclean: writes it acknowledged before it stopped
 * may not be durable.  Returns 0 or -errno (logged).
 */
static int
read_marker (struct ss_ctx *ctx)
{
  struct ss_store *st = ctx->store;
  int r;

  if (!st->formatted)
    return 0; /* a first start: nothing was ever acknowledged */
  r = ss_store_clean_read (st);
  if (r < 0)
    return r;
  if (!st->clean) {
    ctx->reg_flags |= PROTO_REG_UNCLEAN;
    log_warn ("store: %s: no clean-shutdown marker: the last run did not "
              "stop cleanly (crash, kill, power loss or disk error); "
              "registering as unclean so that the MDS checks the segments "
              "written since",
              st->dir);
  }
  return 0;
}

/* Stop after the loop returned: stop the MDS client (it reads the
 * index), sync the data file, close the index, and write the
 * clean-shutdown marker if all of that succeeded.  Returns 0 or -errno
 * (logged).
 */
static int
stop_cleanly (struct ss_ctx *ctx)
{
  struct ss_store *st = ctx->store;
  uint64_t seq;
  int r;

  /* A failed store (ss_store_fail) never gets the marker. */
  if (__atomic_load_n (&ctx->store_failed, __ATOMIC_SEQ_CST))
    return 0;
  ss_loop_free (ctx->loop);
  ctx->loop = NULL;
  ss_mds_free (ctx->mds);
  ctx->mds = NULL;
  if (fdatasync (st->data_fd) == -1) {
    r = -errno;
    log_error ("data: %s: fdatasync: %s: not marking the store clean", st->dir,
               strerror (-r));
    return r;
  }
  seq = ss_index_seq (ctx->index);
  ss_index_close (ctx->index);
  ctx->index = NULL;
  return ss_store_clean_write (st, st->index_id, seq);
}

/* Format a new store for the cluster named in REPLY and load it. */
static int
format_store (struct ss_ctx *ctx, const struct proto_register_reply *reply)
{
  struct ss_store *st = ctx->store;
  char uuid[37];
  int r;

  r = ss_guard_format (ctx, reply);
  if (r < 0)
    return r;
  uuid_format (st->cluster_uuid, uuid);
  log_info ("format: %s: %" PRIu32 " slots of %" PRIu32 " bytes for "
            "cluster %s",
            st->dir, st->nslots, st->segment_size, uuid);
  return load_store (ctx);
}

/* Free everything CTX holds (in reverse order of creation). */
static void
ctx_cleanup (struct ss_ctx *ctx)
{
  ss_loop_free (ctx->loop);
  ss_mds_free (ctx->mds);
  ss_index_close (ctx->index);
  ss_store_close (ctx->store);
  if (ctx->listen_fd >= 0)
    close (ctx->listen_fd);
  free (ctx->data_dir);
  free (ctx->mds_addr);
  free (ctx->advertise_opt);
  free (ctx->zone);
  free (ctx->key_file);
}

/* Start up (see the top of this file), serve, shut down. */
int
main (int argc, char **argv)
{
  struct ss_ctx ctx = { .size = DEFAULT_SIZE,
                        .listen_fd = -1,
                        .max_pulls = SS_DEFAULT_MAX_PULLS,
                        .handshake_timeout = SS_DEFAULT_HANDSHAKE_TIMEOUT,
                        .frame_timeout = SS_DEFAULT_FRAME_TIMEOUT,
                        .max_inflight = SS_CONN_MAX_REQS,
                        .exit_status = EXIT_SUCCESS };
  const struct log_debug_flag flags[] = {
    { "storesrv.requests", &ctx.debug_requests },
    { "storesrv.index", &ctx.debug_index },
    { "storesrv.mds", &ctx.debug_mds },
    { "storesrv.pull", &ctx.debug_pull },
    { NULL },
  };
  struct daemon_common dc;
  struct proto_register_reply reply;
  sigset_t sigs;
  int r;

  log_init (SS_PROGRAM);
  daemon_common_init (&dc, &spec, flags);
  ctx.mds_addr = strdup (DEFAULT_MDS);
  ctx.zone = strdup ("");
  ctx.key_file = strdup (AUTH_DEFAULT_KEY_FILE);
  parse_options (&ctx, &dc, argc, argv);
  if (load_key (&ctx) < 0 || draw_incarnation (&ctx) < 0)
    goto out;
  daemon_raise_nofile ((unsigned long long)ctx.max_conns + ctx.max_unauth + 64,
                       "--max-connections and --max-unauthenticated");

  /* Signals are read through the ring (signalfd); no thread takes them. */
  if (daemon_signals (&dc, &sigs) < 0)
    goto out;
  if (ss_store_open (ctx.data_dir, ctx.size, &ctx.store) < 0 ||
      read_marker (&ctx) < 0 || start_listening (&ctx, &dc) < 0 ||
      daemon_detach (&dc) < 0)
    goto out;
  /* A formatted store registers with its real usage. */
  if (ss_mds_new (&ctx, &ctx.mds) < 0 ||
      (ctx.store->formatted &&
       (ss_guard_open_index (&ctx) < 0 || load_store (&ctx) < 0 ||
        ss_store_clean_remove (ctx.store) < 0)) ||
      ss_mds_start (ctx.mds) < 0)
    goto out;
  if (ctx.store->formatted && ctx.size_set &&
      ctx.size / ctx.store->segment_size != ctx.store->nslots)
    log_warn ("--size is ignored: %s is already formatted", ctx.data_dir);
  log_info ("registering with the MDS at %s as %s", ctx.mds_addr,
            ctx.advertise);
  r = ss_mds_wait_registered (ctx.mds, &sigs, &reply);
  if (r < 0) {
    /* Stopped (-EINTR) or rejected before serving: a store found clean
     * is still clean; one found unclean stays so until the MDS hears
     * it.
     */
    if (ctx.index && ctx.store->clean && stop_cleanly (&ctx) < 0)
      goto out;
    if (r == -EINTR)
      goto cleanup;
    goto out;
  }
  if ((!ctx.store->formatted && format_store (&ctx, &reply) < 0) ||
      ss_index_start (ctx.index) < 0)
    goto out;
  ss_mds_store_ready (ctx.mds);
  if (daemon_pidfile (&dc) < 0)
    goto out;
  log_info ("serving %s on %s (incarnation %016" PRIx64 ")", ctx.data_dir,
            ctx.advertise, ctx.incarnation);
  daemon_serving (&dc);
  if (ss_loop_run (ctx.loop) < 0 || stop_cleanly (&ctx) < 0)
    goto out;
  goto cleanup;

out:
  ctx.exit_status = EXIT_FAILURE;
cleanup:
  r = __atomic_load_n (&ctx.exit_status, __ATOMIC_SEQ_CST);
  ctx_cleanup (&ctx);
  daemon_common_free (&dc); /* a waiting parent exits with R */
  return r;
}

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
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"
#include "tls.h"
#include "cleanup.h"
#include "daemon.h"
#include "log.h"
#include "parse.h"
#include "sock.h"

#include "internal.h"

#define DEFAULT_MDS "127.0.0.1:7420"
#define DEFAULT_LISTEN "127.0.0.1:7421"
#define DEFAULT_SIZE (UINT64_C (8) * 1024 * 1024 * 1024)

enum {
  HELP_OPTION = CHAR_MAX + 1,
  LONG_OPTIONS,
  SHORT_OPTIONS,
  DATA_OPTION,
  MDS_OPTION,
  SIZE_OPTION,
  LISTEN_OPTION,
  ADVERTISE_OPTION,
  ZONE_OPTION,
  EXIT_WITH_PARENT_OPTION,
  MAX_PULLS_OPTION,
  KEY_FILE_OPTION,
  TLS_OPTION,
  HANDSHAKE_TIMEOUT_OPTION,
  FRAME_TIMEOUT_OPTION,
  MAX_CONNECTIONS_OPTION,
  MAX_UNAUTH_OPTION,
  MAX_INFLIGHT_OPTION,
};

/* Bounds of the connection options (as the MDS's). */
#define MAX_HANDSHAKE_TIMEOUT 86400
#define MAX_FRAME_TIMEOUT 86400
#define MAX_MAX_CONNS 65536
#define MAX_MAX_UNAUTH 16384

static const char short_options[] = "fP:vD:V";
static const struct option long_options[] = {
  { "advertise", required_argument, NULL, ADVERTISE_OPTION },
  { "data", required_argument, NULL, DATA_OPTION },
  { "debug", required_argument, NULL, 'D' },
  { "exit-with-parent", no_argument, NULL, EXIT_WITH_PARENT_OPTION },
  { "foreground", no_argument, NULL, 'f' },
  { "frame-timeout", required_argument, NULL, FRAME_TIMEOUT_OPTION },
  { "handshake-timeout", required_argument, NULL, HANDSHAKE_TIMEOUT_OPTION },
  { "help", no_argument, NULL, HELP_OPTION },
  { "key-file", required_argument, NULL, KEY_FILE_OPTION },
  { "listen", required_argument, NULL, LISTEN_OPTION },
  { "long-options", no_argument, NULL, LONG_OPTIONS },
  { "max-connections", required_argument, NULL, MAX_CONNECTIONS_OPTION },
  { "max-inflight", required_argument, NULL, MAX_INFLIGHT_OPTION },
  { "max-pulls", required_argument, NULL, MAX_PULLS_OPTION },
  { "max-unauthenticated", required_argument, NULL, MAX_UNAUTH_OPTION },
  { "mds", required_argument, NULL, MDS_OPTION },
  { "tls", no_argument, NULL, TLS_OPTION },
  { "pidfile", required_argument, NULL, 'P' },
  { "short-options", no_argument, NULL, SHORT_OPTIONS },
  { "size", required_argument, NULL, SIZE_OPTION },
  { "verbose", no_argument, NULL, 'v' },
  { "version", no_argument, NULL, 'V' },
  { "zone", required_argument, NULL, ZONE_OPTION },
  { NULL },
};

static void usage (FILE *fp, int status) __attribute__ ((noreturn));
static void bad_option (const char *opt, const char *fmt, ...)
    __attribute__ ((noreturn, format (printf, 2, 3)));

/* Print the usage on FP and exit with STATUS. */
static void
usage (FILE *fp, int status)
{
  static const char options[] =
      "Serve the segments of a Tessera cluster from a local store.\n"
      "\n"
      "Options:\n"
      "  --data DIR             store directory (created if missing)\n"
      "  --mds ADDR             metadata server (default " DEFAULT_MDS ")\n"
      "  --size SIZE            capacity when formatting (default 8G)\n"
      "  --listen ADDR          listen on HOST:PORT, [V6]:PORT or unix:PATH\n"
      "                         (default " DEFAULT_LISTEN ")\n"
      "  --advertise ADDR       address given to clients (default: bound)\n"
      "  --zone NAME            failure domain label\n"
      "  --max-pulls N          segment copies (SEG_PULL) at once\n"
      "                         (default 2)\n"
      "  --key-file FILE        cluster key (default\n"
      "                         " AUTH_DEFAULT_KEY_FILE ")\n"
      "  --tls                  TLS on every connection, to and from\n"
      "                         this server (every component must use it)\n"
      "  --handshake-timeout S  close connections not authenticated\n"
      "                         within S seconds (default 10)\n"
      "  --frame-timeout S      close authenticated connections that\n"
      "                         send part of a frame, then nothing for\n"
      "                         S seconds (default 30; idle ones stay)\n"
      "  --max-connections N    authenticated connections (default 1024)\n"
      "  --max-unauthenticated N  connections in the handshake; the\n"
      "                         oldest is dropped beyond (default 256)\n"
      "  --max-inflight N       requests read ahead per connection\n"
      "                         (default 64)\n"
      "  -f, --foreground       do not daemonize\n"
      "  -P, --pidfile FILE     write the pid once serving\n"
      "  -v, --verbose          debug messages\n"
      "  -D, --debug FLAG=N     storesrv.requests, storesrv.index,\n"
      "                         storesrv.mds or storesrv.pull\n"
      "  --exit-with-parent     exit when the parent process exits\n"
      "  --help                 this help\n"
      "  -V, --version          print the version\n";

  fprintf (fp,
           "Usage: %s --data DIR [--mds ADDR] [--size SIZE] [--listen ADDR]\n"
           "         [--advertise ADDR] [--zone NAME] [--max-pulls N]\n"
           "         [--key-file FILE] [--handshake-timeout SECONDS]\n"
           "         [--frame-timeout SECONDS]\n"
           "         [--max-connections N] [--max-unauthenticated N]\n"
           "         [--max-inflight N]\n"
           "         [-f] [-P PIDFILE] [-v] [-D storesrv.FLAG=N]\n"
           "         [--exit-with-parent]\n\n",
           SS_PROGRAM);
  fputs (options, fp);
  exit (status);
}

/* Report a bad option value and exit 1. */
static void
bad_option (const char *opt, const char *fmt, ...)
{
  va_list ap;

  fprintf (stderr, "%s: %s: ", SS_PROGRAM, opt);
  va_start (ap, fmt);
  vfprintf (stderr, fmt, ap);
  va_end (ap);
  fputc ('\n', stderr);
  exit (EXIT_FAILURE);
}

/* Check an address option; unix: paths become absolute (the daemon
 * changes to / and advertises the path).
 */
static char *
address_option (const char *opt, const char *addr)
{
  char *abs, *p;

  if (sock_address_check (addr) < 0)
    bad_option (opt, "invalid address: %s", addr);
  if (strncmp (addr, "unix:", 5) != 0 || addr[5] == '/')
    p = strdup (addr);
  else {
    abs = daemon_absolute_path (addr + 5);
    if (abs == NULL || asprintf (&p, "unix:%s", abs) == -1)
      p = NULL;
    free (abs);
  }
  if (p == NULL)
    bad_option (opt, "%s", strerror (errno));
  return p;
}

/* Parse the command line into CTX; exit on --help, --version and
 * errors.
 */
static void
parse_options (struct ss_ctx *ctx, int argc, char **argv)
{
  int c, r;
  size_t i;

  for (;;) {
    c = getopt_long (argc, argv, short_options, long_options, NULL);
    if (c == -1)
      break;
    switch (c) {
    case DATA_OPTION:
      free (ctx->data_dir);
      ctx->data_dir = daemon_absolute_path (optarg);
      if (ctx->data_dir == NULL || optarg[0] == '\0')
        bad_option ("--data", "invalid directory: %s", optarg);
      break;
    case MDS_OPTION:
      free (ctx->mds_addr);
      ctx->mds_addr = address_option ("--mds", optarg);
      break;
    case SIZE_OPTION:
      r = parse_size (optarg, &ctx->size);
      if (r < 0 || ctx->size == 0)
        bad_option ("--size", "invalid size: %s", optarg);
      ctx->size_set = true;
      break;
    case LISTEN_OPTION:
      free (ctx->listen_addr);
      ctx->listen_addr = address_option ("--listen", optarg);
      break;
    case ADVERTISE_OPTION:
      free (ctx->advertise_opt);
      ctx->advertise_opt = address_option ("--advertise", optarg);
      if (strlen (ctx->advertise_opt) > PROTO_ADDR_MAX)
        bad_option ("--advertise", "longer than %d bytes", PROTO_ADDR_MAX);
      break;
    case ZONE_OPTION:
      if (strlen (optarg) > PROTO_ZONE_MAX)
        bad_option ("--zone", "longer than %d bytes", PROTO_ZONE_MAX);
      free (ctx->zone);
      ctx->zone = strdup (optarg);
      break;
    case MAX_PULLS_OPTION:
      if (parse_uint32 (optarg, 1, SS_MAX_MAX_PULLS, &ctx->max_pulls) < 0)
        bad_option ("--max-pulls", "expected a number from 1 to %d: %s",
                    SS_MAX_MAX_PULLS, optarg);
      break;
    case TLS_OPTION:
      ctx->tls = true;
      break;
    case KEY_FILE_OPTION:
      free (ctx->key_file);
      ctx->key_file = strdup (optarg);
      if (ctx->key_file == NULL || optarg[0] == '\0')
        bad_option ("--key-file", "invalid file name: %s", optarg);
      break;
    case HANDSHAKE_TIMEOUT_OPTION:
      if (parse_uint32 (optarg, 1, MAX_HANDSHAKE_TIMEOUT,
                        &ctx->handshake_timeout) < 0)
        bad_option ("--handshake-timeout", "expected seconds from 1 to %d: %s",
                    MAX_HANDSHAKE_TIMEOUT, optarg);
      break;
    case FRAME_TIMEOUT_OPTION:
      if (parse_uint32 (optarg, 1, MAX_FRAME_TIMEOUT, &ctx->frame_timeout) < 0)
        bad_option ("--frame-timeout", "expected seconds from 1 to %d: %s",
                    MAX_FRAME_TIMEOUT, optarg);
      break;
    case MAX_CONNECTIONS_OPTION:
      if (parse_uint32 (optarg, 1, MAX_MAX_CONNS, &ctx->max_conns) < 0)
        bad_option ("--max-connections", "expected a number from 1 to %d: %s",
                    MAX_MAX_CONNS, optarg);
      break;
    case MAX_UNAUTH_OPTION:
      if (parse_uint32 (optarg, 1, MAX_MAX_UNAUTH, &ctx->max_unauth) < 0)
        bad_option ("--max-unauthenticated",
                    "expected a number from 1 to %d: %s", MAX_MAX_UNAUTH,
                    optarg);
      break;
    case MAX_INFLIGHT_OPTION:
      if (parse_uint32 (optarg, 1, SS_MAX_MAX_INFLIGHT, &ctx->max_inflight) < 0)
        bad_option ("--max-inflight", "expected a number from 1 to %d: %s",
                    SS_MAX_MAX_INFLIGHT, optarg);
      break;
    case 'f':
      ctx->foreground = true;
      break;
    case 'P':
      free (ctx->pidfile);
      ctx->pidfile = daemon_absolute_path (optarg);
      if (ctx->pidfile == NULL || optarg[0] == '\0')
        bad_option ("--pidfile", "invalid file name: %s", optarg);
      break;
    case 'v':
      log_verbose = 1;
      break;
    case 'D':
      r = log_set_debug_flag (optarg);
      if (r < 0)
        bad_option ("--debug", "%s: %s", optarg,
                    r == -ENOENT ? "no such debug flag"
                                 : "expected AREA.FLAG=N");
      break;
    case EXIT_WITH_PARENT_OPTION:
      ctx->exit_with_parent = true;
      break;
    case HELP_OPTION:
      usage (stdout, EXIT_SUCCESS);
    case 'V':
      printf ("%s %s\n", SS_PROGRAM, PACKAGE_VERSION);
      exit (EXIT_SUCCESS);
    case LONG_OPTIONS:
      for (i = 0; long_options[i].name; i++)
        if (strcmp (long_options[i].name, "long-options") != 0 &&
            strcmp (long_options[i].name, "short-options") != 0)
          printf ("--%s\n", long_options[i].name);
      exit (EXIT_SUCCESS);
    case SHORT_OPTIONS:
      for (i = 0; short_options[i]; i++)
        if (short_options[i] != ':')
          printf ("-%c\n", short_options[i]);
      exit (EXIT_SUCCESS);
    default:
      usage (stderr, EXIT_FAILURE);
    }
  }
  if (optind < argc)
    bad_option (argv[optind], "unexpected argument");
  if (ctx->data_dir == NULL)
    bad_option ("--data", "this option is required");
  if (ctx->zone == NULL || ctx->mds_addr == NULL || ctx->listen_addr == NULL ||
      ctx->key_file == NULL) {
    fprintf (stderr, "%s: %s\n", SS_PROGRAM, strerror (ENOMEM));
    exit (EXIT_FAILURE);
  }
  /* As with nbdkit: the parent watches us, so stay in its session. */
  if (ctx->exit_with_parent)
    ctx->foreground = true;
}

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

/* Listen, and work out the address to advertise. */
static int
start_listening (struct ss_ctx *ctx)
{
  int r;

  ctx->listen_fd = sock_listen (ctx->listen_addr);
  if (ctx->listen_fd < 0) {
    log_error ("listen: %s: %s", ctx->listen_addr, strerror (-ctx->listen_fd));
    return ctx->listen_fd;
  }
  if (ctx->advertise_opt) {
    snprintf (ctx->advertise, sizeof ctx->advertise, "%s", ctx->advertise_opt);
    return 0;
  }
  r = sock_local_address (ctx->listen_fd, ctx->advertise,
                          sizeof ctx->advertise);
  if (r < 0)
    log_error ("listen: %s: local address: %s", ctx->listen_addr,
               strerror (-r));
  return r;
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
  if (strncmp (ctx->listen_addr, "unix:", 5) == 0)
    unlink (ctx->listen_addr + 5);
  free (ctx->data_dir);
  free (ctx->mds_addr);
  free (ctx->listen_addr);
  free (ctx->advertise_opt);
  free (ctx->zone);
  free (ctx->pidfile);
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
                        .max_conns = SS_DEFAULT_MAX_CONNS,
                        .max_unauth = SS_DEFAULT_MAX_UNAUTH,
                        .max_inflight = SS_CONN_MAX_REQS,
                        .exit_status = EXIT_SUCCESS };
  const struct log_debug_flag flags[] = {
    { "storesrv.requests", &ctx.debug_requests },
    { "storesrv.index", &ctx.debug_index },
    { "storesrv.mds", &ctx.debug_mds },
    { "storesrv.pull", &ctx.debug_pull },
    { NULL },
  };
  struct proto_register_reply reply;
  bool pidfile_written = false;
  int ready_fd = -1;
  sigset_t sigs;
  int r;

  log_init (SS_PROGRAM);
  log_register_debug_flags (flags);
  ctx.mds_addr = strdup (DEFAULT_MDS);
  ctx.listen_addr = strdup (DEFAULT_LISTEN);
  ctx.zone = strdup ("");
  ctx.key_file = strdup (AUTH_DEFAULT_KEY_FILE);
  parse_options (&ctx, argc, argv);
  if (load_key (&ctx) < 0 || draw_incarnation (&ctx) < 0)
    goto out;
  daemon_raise_nofile ((unsigned long long)ctx.max_conns + ctx.max_unauth + 64,
                       "--max-connections and --max-unauthenticated");

  if (ctx.exit_with_parent && prctl (PR_SET_PDEATHSIG, SIGTERM) == -1) {
    log_error ("prctl: PR_SET_PDEATHSIG: %s", strerror (errno));
    goto out;
  }
  /* Signals are read through the ring (signalfd); no thread takes them. */
  signal (SIGPIPE, SIG_IGN);
  sigemptyset (&sigs);
  sigaddset (&sigs, SIGTERM);
  sigaddset (&sigs, SIGINT);
  pthread_sigmask (SIG_BLOCK, &sigs, NULL);

  if (ss_store_open (ctx.data_dir, ctx.size, &ctx.store) < 0 ||
      read_marker (&ctx) < 0 || start_listening (&ctx) < 0)
    goto out;
  if (!ctx.foreground && (ready_fd = daemon_fork ()) < 0) {
    log_error ("daemonize: %s", strerror (-ready_fd));
    goto out;
  }
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
  if (ctx.pidfile) {
    r = daemon_write_pidfile (ctx.pidfile);
    if (r < 0) {
      log_error ("pidfile: %s: %s", ctx.pidfile, strerror (-r));
      goto out;
    }
    pidfile_written = true;
  }
  log_info ("serving %s on %s (incarnation %016" PRIx64 ")", ctx.data_dir,
            ctx.advertise, ctx.incarnation);
  daemon_ready (ready_fd);
  ready_fd = -1;
  if (ss_loop_run (ctx.loop) < 0 || stop_cleanly (&ctx) < 0)
    goto out;
  goto cleanup;

out:
  ctx.exit_status = EXIT_FAILURE;
cleanup:
  if (pidfile_written)
    unlink (ctx.pidfile);
  r = __atomic_load_n (&ctx.exit_status, __ATOMIC_SEQ_CST);
  ctx_cleanup (&ctx);
  if (ready_fd >= 0)
    close (ready_fd); /* the waiting parent exits 1 */
  return r;
}

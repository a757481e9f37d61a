/* tessera-mds: the metadata server.  Options, start-up, shutdown. */

#include <config.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "deadline.h"
#include "auth.h"
#include "tls.h"
#include "catalog.h"
#include "cleanup.h"
#include "daemon.h"
#include "log.h"
#include "parse.h"
#include "sock.h"

#include "internal.h"

#define DEFAULT_LISTEN "127.0.0.1:7420"
#define DEFAULT_SEGMENT_SIZE (UINT32_C (4) * 1024 * 1024)
#define DEFAULT_LEASE_MS 15000
#define DEFAULT_DOWN_MS 10000
#define DEFAULT_HEARTBEAT_MS 1000
#define DEFAULT_OUT_MS 600000
#define DEFAULT_REPAIR_CONCURRENCY 2
#define DEFAULT_HIGH_WATER 90
/* Most copies at a time per target server. */
#define REPAIR_CONCURRENCY_MAX 64
/* Bounds of the time options, in milliseconds. */
#define TIME_MIN_MS 100
#define TIME_MAX_MS (86400 * 1000)
/* Connection limits: defaults and bounds. */
#define DEFAULT_HANDSHAKE_TIMEOUT_MS 10000
#define DEFAULT_MAX_CONNS 1024
#define DEFAULT_MAX_UNAUTH 256
#define MAX_CONNS_MAX 65536
#define MAX_UNAUTH_MAX 16384
/* Open files needed besides the connections (catalog, outgoing calls). */
#define FD_MARGIN 128
/* How long shutdown waits for busy connections. */
#define SHUTDOWN_WAIT_MS 5000

/* Options that only main needs; the rest go into struct mds. */
struct options {
  bool init;
  char *rebuild; /* --rebuild ADDR[,ADDR...], split in place */
  char **rebuild_addrs;
  size_t nrebuild;
  bool segment_size_set;
  uint32_t segment_size;
  bool foreground;
  const char *pidfile;
  bool exit_with_parent;
};

enum {
  HELP_OPTION = CHAR_MAX + 1,
  LONG_OPTIONS,
  SHORT_OPTIONS,
  DB_OPTION,
  INIT_OPTION,
  SEGMENT_SIZE_OPTION,
  LISTEN_OPTION,
  LEASE_TIMEOUT_OPTION,
  DOWN_TIMEOUT_OPTION,
  HEARTBEAT_INTERVAL_OPTION,
  OUT_TIMEOUT_OPTION,
  REPAIR_CONCURRENCY_OPTION,
  REPAIR_BANDWIDTH_OPTION,
  HIGH_WATER_OPTION,
  EXIT_WITH_PARENT_OPTION,
  KEY_FILE_OPTION,
  TLS_OPTION,
  HANDSHAKE_TIMEOUT_OPTION,
  MAX_CONNECTIONS_OPTION,
  MAX_UNAUTH_OPTION,
  REBUILD_OPTION,
};

static const char short_options[] = "D:fP:vV";
static const struct option long_options[] = {
  { "db", required_argument, NULL, DB_OPTION },
  { "debug", required_argument, NULL, 'D' },
  { "down-timeout", required_argument, NULL, DOWN_TIMEOUT_OPTION },
  { "exit-with-parent", no_argument, NULL, EXIT_WITH_PARENT_OPTION },
  { "foreground", no_argument, NULL, 'f' },
  { "handshake-timeout", required_argument, NULL, HANDSHAKE_TIMEOUT_OPTION },
  { "heartbeat-interval", required_argument, NULL, HEARTBEAT_INTERVAL_OPTION },
  { "help", no_argument, NULL, HELP_OPTION },
  { "high-water", required_argument, NULL, HIGH_WATER_OPTION },
  { "init", no_argument, NULL, INIT_OPTION },
  { "key-file", required_argument, NULL, KEY_FILE_OPTION },
  { "lease-timeout", required_argument, NULL, LEASE_TIMEOUT_OPTION },
  { "listen", required_argument, NULL, LISTEN_OPTION },
  { "long-options", no_argument, NULL, LONG_OPTIONS },
  { "max-connections", required_argument, NULL, MAX_CONNECTIONS_OPTION },
  { "max-unauthenticated", required_argument, NULL, MAX_UNAUTH_OPTION },
  { "out-timeout", required_argument, NULL, OUT_TIMEOUT_OPTION },
  { "pidfile", required_argument, NULL, 'P' },
  { "rebuild", required_argument, NULL, REBUILD_OPTION },
  { "repair-bandwidth", required_argument, NULL, REPAIR_BANDWIDTH_OPTION },
  { "repair-concurrency", required_argument, NULL, REPAIR_CONCURRENCY_OPTION },
  { "segment-size", required_argument, NULL, SEGMENT_SIZE_OPTION },
  { "short-options", no_argument, NULL, SHORT_OPTIONS },
  { "tls", no_argument, NULL, TLS_OPTION },
  { "verbose", no_argument, NULL, 'v' },
  { "version", no_argument, NULL, 'V' },
  { NULL, 0, NULL, 0 },
};

/* Print the usage to FP and exit with STATUS. */
static void __attribute__ ((noreturn)) usage (FILE *fp, int status)
{
  fprintf (fp,
           "Usage: %s --db DIR [--init [--segment-size SIZE] |\n"
           "                   --rebuild ADDR[,ADDR...]] [OPTIONS]\n"
           "The metadata server of a Tessera cluster.\n"
           "\n"
           "  --db DIR                  catalog directory (required)\n"
           "  --init                    create a new cluster in DIR, "
           "then serve\n"
           "  --segment-size SIZE       with --init: segment size, a power "
           "of two\n"
           "                            from 64K to 64M (default 4M)\n"
           "  --rebuild ADDR[,ADDR...]  recreate a lost catalog in DIR "
           "(empty or\n"
           "                            new) from these storage servers, "
           "then serve\n"
           "  --key-file FILE           the cluster key (default "
           "DIR/cluster.key;\n"
           "                            --init creates it)\n"
           "  --listen ADDR             HOST:PORT, [V6]:PORT or unix:PATH\n"
           "                            (default %s)\n"
           "  --max-connections N       authenticated connections at once "
           "(default 1024)\n"
           "  --max-unauthenticated N   connections authenticating at once "
           "(default 256)\n"
           "  --handshake-timeout SECONDS\n"
           "                            time to authenticate (default 10)\n"
           "  --lease-timeout SECONDS   writer lease time (default 15)\n"
           "  --down-timeout SECONDS    a silent server is down after this "
           "(default 10)\n"
           "  --heartbeat-interval SECONDS\n"
           "                            how often servers heartbeat "
           "(default 1)\n"
           "  --out-timeout SECONDS     a silent server is out (its "
           "replicas are\n"
           "                            re-created elsewhere) after this "
           "(default 600)\n"
           "  --repair-concurrency N    copies at a time per target server "
           "(default 2)\n"
           "  --repair-bandwidth SIZE   bytes/s per copy (default 0: no "
           "cap)\n"
           "  --tls                     TLS on every connection, to and from "
           "the MDS\n"
           "                            (every component must use it)\n"
           "  --high-water PCT          no new segments on a server once "
           "PCT%% of it\n"
           "                            is used (1-100, default 90)\n"
           "  -f, --foreground          do not daemonize, log to stderr\n"
           "  -P, --pidfile FILE        write the pid to FILE once serving\n"
           "  -v, --verbose             debug messages\n"
           "  -D, --debug AREA.FLAG=N   set a debug flag "
           "(mds.requests=1, mds.repair=1)\n"
           "  --exit-with-parent        exit when the parent exits "
           "(implies -f)\n"
           "  --help                    print this help\n"
           "  -V, --version             print the version\n",
           MDS_PROGRAM, DEFAULT_LISTEN);
  exit (status);
}

/* Parse SECONDS ("15", "0.5", "2.25": at most millisecond precision) into
 * milliseconds within the time options' bounds.  Returns 0, -EINVAL or
 * -ERANGE.
 */
static int
parse_seconds (const char *s, uint32_t *ms)
{
  uint64_t whole = 0, frac = 0;
  int digits = 0, fdigits = 0;

  for (; *s >= '0' && *s <= '9'; ++s, ++digits) {
    whole = whole * 10 + (*s - '0');
    if (whole > TIME_MAX_MS)
      return -ERANGE;
  }
  if (*s == '.') {
    for (++s; *s >= '0' && *s <= '9'; ++s, ++fdigits)
      if (fdigits < 3)
        frac = frac * 10 + (*s - '0');
      else if (*s != '0')
        return -EINVAL; /* finer than a millisecond */
    if (fdigits == 0)
      return -EINVAL;
  }
  if (digits == 0 || *s != '\0')
    return -EINVAL;
  for (; fdigits < 3; ++fdigits)
    frac *= 10;
  whole = whole * 1000 + frac;
  if (whole < TIME_MIN_MS || whole > TIME_MAX_MS)
    return -ERANGE;
  *ms = whole;
  return 0;
}

/* Exit after a bad value ARG of option OPT. */
static void __attribute__ ((noreturn))
bad_option (const char *opt, const char *arg, const char *reason)
{
  fprintf (stderr, "%s: --%s: %s: %s\n", MDS_PROGRAM, opt, arg, reason);
  exit (EXIT_FAILURE);
}

/* Parse a time option OPT into *MS, or exit. */
static void
time_option (const char *opt, const char *arg, uint32_t *ms)
{
  int r = parse_seconds (arg, ms);

  if (r == -ERANGE)
    bad_option (opt, arg, "must be from 0.1 to 86400 seconds");
  if (r < 0)
    bad_option (opt, arg, "not a number of seconds");
}

/* Print the options for --long-options / --short-options, then exit. */
static void __attribute__ ((noreturn)) list_options (bool long_ones)
{
  size_t i;

  if (long_ones) {
    for (i = 0; long_options[i].name; ++i)
      if (strcmp (long_options[i].name, "long-options") != 0 &&
          strcmp (long_options[i].name, "short-options") != 0)
        printf ("--%s\n", long_options[i].name);
  }
  else {
    for (i = 0; short_options[i]; ++i)
      if (short_options[i] != ':')
        printf ("-%c\n", short_options[i]);
  }
  exit (EXIT_SUCCESS);
}

/* Split --rebuild's list of storage-server addresses (in place) into
 * OPTS->rebuild_addrs; exits on error.
 */
static void
split_addresses (struct options *opts)
{
  char *p, *save = NULL;
  size_t n = 1;

  for (p = opts->rebuild; *p; p++)
    n += *p == ',';
  opts->rebuild_addrs = calloc (n, sizeof *opts->rebuild_addrs);
  if (opts->rebuild_addrs == NULL) {
    fprintf (stderr, "%s: out of memory\n", MDS_PROGRAM);
    exit (EXIT_FAILURE);
  }
  for (p = strtok_r (opts->rebuild, ",", &save); p;
       p = strtok_r (NULL, ",", &save)) {
    if (sock_address_check (p) < 0)
      bad_option ("rebuild", p, "not HOST:PORT, [V6]:PORT or unix:PATH");
    opts->rebuild_addrs[opts->nrebuild++] = p;
  }
  if (opts->nrebuild == 0)
    bad_option ("rebuild", "", "no storage server address");
}

/* Parse and check the command line into MDS and OPTS; exits on error. */
static void
parse_options (int argc, char *argv[], struct mds *mds, struct options *opts)
{
  uint64_t size;
  int c, r;

  for (;;) {
    c = getopt_long (argc, argv, short_options, long_options, NULL);
    if (c == -1)
      break;
    switch (c) {
    case DB_OPTION:
      mds->db_dir = optarg;
      break;
    case INIT_OPTION:
      opts->init = true;
      break;
    case REBUILD_OPTION:
      opts->rebuild = optarg;
      break;
    case SEGMENT_SIZE_OPTION:
      r = parse_size (optarg, &size);
      if (r < 0)
        bad_option ("segment-size", optarg, "not a size");
      if (size < 65536 || size > 64 * 1024 * 1024 || (size & (size - 1)))
        bad_option ("segment-size", optarg,
                    "must be a power of two from 64K to 64M");
      opts->segment_size = size;
      opts->segment_size_set = true;
      break;
    case LISTEN_OPTION:
      if (sock_address_check (optarg) < 0)
        bad_option ("listen", optarg, "not HOST:PORT, [V6]:PORT or unix:PATH");
      mds->listen_addr = optarg;
      break;
    case LEASE_TIMEOUT_OPTION:
      time_option ("lease-timeout", optarg, &mds->lease_ms);
      break;
    case DOWN_TIMEOUT_OPTION:
      time_option ("down-timeout", optarg, &mds->down_ms);
      break;
    case HEARTBEAT_INTERVAL_OPTION:
      time_option ("heartbeat-interval", optarg, &mds->heartbeat_ms);
      break;
    case OUT_TIMEOUT_OPTION:
      time_option ("out-timeout", optarg, &mds->out_ms);
      break;
    case REPAIR_CONCURRENCY_OPTION:
      r = parse_uint32 (optarg, 1, REPAIR_CONCURRENCY_MAX,
                        &mds->repair_concurrency);
      if (r < 0)
        bad_option ("repair-concurrency", optarg,
                    "must be a number from 1 to 64");
      break;
    case REPAIR_BANDWIDTH_OPTION:
      r = parse_size (optarg, &mds->repair_bandwidth);
      if (r < 0)
        bad_option ("repair-bandwidth", optarg, "not a size");
      break;
    case HIGH_WATER_OPTION:
      r = parse_uint32 (optarg, 1, 100, &mds->high_water);
      if (r < 0)
        bad_option ("high-water", optarg, "must be a percentage from 1 to 100");
      break;
    case KEY_FILE_OPTION:
      mds->key_file = optarg;
      break;
    case TLS_OPTION:
      mds->tls = true;
      break;
    case HANDSHAKE_TIMEOUT_OPTION:
      time_option ("handshake-timeout", optarg, &mds->handshake_timeout_ms);
      break;
    case MAX_CONNECTIONS_OPTION:
      if (parse_uint32 (optarg, 1, MAX_CONNS_MAX, &mds->max_conns) < 0)
        bad_option ("max-connections", optarg,
                    "must be a number from 1 to 65536");
      break;
    case MAX_UNAUTH_OPTION:
      if (parse_uint32 (optarg, 1, MAX_UNAUTH_MAX, &mds->max_unauth) < 0)
        bad_option ("max-unauthenticated", optarg,
                    "must be a number from 1 to 16384");
      break;
    case 'f':
      opts->foreground = true;
      break;
    case 'P':
      opts->pidfile = optarg;
      break;
    case 'v':
      log_verbose = 1;
      break;
    case 'D':
      r = log_set_debug_flag (optarg);
      if (r == -ENOENT)
        bad_option ("debug", optarg, "no such debug flag");
      if (r < 0)
        bad_option ("debug", optarg, "expected AREA.FLAG=N");
      break;
    case EXIT_WITH_PARENT_OPTION:
      opts->exit_with_parent = true;
      break;
    case HELP_OPTION:
      usage (stdout, EXIT_SUCCESS);
    case 'V':
      printf ("%s %s\n", MDS_PROGRAM, PACKAGE_VERSION);
      exit (EXIT_SUCCESS);
    case LONG_OPTIONS:
      list_options (true);
    case SHORT_OPTIONS:
      list_options (false);
    default:
      fprintf (stderr, "Try '%s --help' for more information.\n", MDS_PROGRAM);
      exit (EXIT_FAILURE);
    }
  }

  if (optind < argc) {
    fprintf (stderr, "%s: unexpected argument: %s\n", MDS_PROGRAM,
             argv[optind]);
    exit (EXIT_FAILURE);
  }
  if (mds->db_dir == NULL) {
    fprintf (stderr, "%s: --db: a catalog directory is required\n",
             MDS_PROGRAM);
    exit (EXIT_FAILURE);
  }
  if (opts->rebuild && opts->init) {
    fprintf (stderr, "%s: --rebuild: not with --init\n", MDS_PROGRAM);
    exit (EXIT_FAILURE);
  }
  if (opts->rebuild)
    split_addresses (opts);
  if (opts->segment_size_set && !opts->init) {
    fprintf (stderr, "%s: --segment-size: only valid with --init\n",
             MDS_PROGRAM);
    exit (EXIT_FAILURE);
  }
  if (mds->heartbeat_ms >= mds->down_ms) {
    fprintf (stderr,
             "%s: --heartbeat-interval: must be shorter than "
             "--down-timeout\n",
             MDS_PROGRAM);
    exit (EXIT_FAILURE);
  }
  if (mds->out_ms < mds->down_ms) {
    fprintf (stderr,
             "%s: --out-timeout: must not be shorter than --down-timeout\n",
             MDS_PROGRAM);
    exit (EXIT_FAILURE);
  }
  /* The parent of a daemon is the process that just exited. */
  if (opts->exit_with_parent)
    opts->foreground = true;
}

/* The key file's path: --key-file, else DIR/cluster.key (malloc'd, or
 * NULL if out of memory).
 */
static char *
key_path (const struct mds *mds)
{
  char *path = NULL;

  if (mds->key_file)
    return strdup (mds->key_file);
  if (asprintf (&path, "%s/%s", mds->db_dir, AUTH_KEY_FILE_NAME) == -1)
    return NULL;
  return path;
}

/* Load the cluster key into mds->key (--init: create it first) and make
 * it the process's key, for the MDS's own calls to storage servers.  The
 * key file of a new cluster must not exist yet.  *CREATED receives the
 * path of a key file created here (malloc'd: the caller removes it if
 * the cluster cannot be created), else NULL.  Prints the reason and
 * returns -1 on failure.
 */
static int
setup_key (struct mds *mds, bool init, char **created)
{
  char errmsg[PATH_MAX + 256];
  CLEANUP_FREE char *path = key_path (mds);
  int r;

  *created = NULL;
  if (path == NULL) {
    fprintf (stderr, "%s: out of memory\n", MDS_PROGRAM);
    return -1;
  }
  if (init) {
    r = auth_key_create (path, &mds->key, errmsg, sizeof errmsg);
    if (r == -EEXIST) {
      fprintf (stderr,
               "%s: key file %s: already exists, but the cluster is new: "
               "remove it (the key of another cluster?)\n",
               MDS_PROGRAM, path);
      return -1;
    }
    if (r == 0) {
      log_info ("created the cluster key %s: copy it to every host of "
                "the cluster",
                path);
      *created = path;
      path = NULL;
    }
  }
  else
    r = auth_key_load (path, &mds->key, errmsg, sizeof errmsg);
  if (r < 0) {
    fprintf (stderr, "%s: %s\n", MDS_PROGRAM, errmsg);
    return -1;
  }
  auth_key_use (&mds->key);
  if (mds->tls && tls_enable (&mds->key, errmsg, sizeof errmsg) < 0) {
    fprintf (stderr, "%s: %s\n", MDS_PROGRAM, errmsg);
    return -1;
  }
  return 0;
}

/* --rebuild: recreate the catalog, which must be empty, from the
 * storage servers (rebuild.c).  Prints the reason and returns -1 on
 * failure.
 */
static int
rebuild_catalog (struct mds *mds, const struct options *opts)
{
  struct catalog_cluster c;
  struct catalog_stats st;
  struct mds_rebuild_report rep;
  int r;

  /* A cluster record alone (an --init never used) counts as empty. */
  r = catalog_cluster_get (mds->cat, &c);
  if (r == 0)
    r = catalog_stats (mds->cat, &st);
  if (r == 0 && (st.volumes > 0 || st.servers > 0 || st.segments > 0))
    r = -EEXIST;
  if (r == -EEXIST) {
    fprintf (stderr,
             "%s: --rebuild: %s already holds a catalog: give an empty or "
             "new directory\n",
             MDS_PROGRAM, mds->db_dir);
    return -1;
  }
  if (r < 0 && r != -ENOENT) {
    fprintf (stderr, "%s: %s: cannot read the catalog: %s\n", MDS_PROGRAM,
             mds->db_dir, catalog_strerror (r));
    return -1;
  }
  if (mds_reconcile (mds, opts->rebuild_addrs, opts->nrebuild, &rep) < 0) {
    fprintf (stderr, "%s: --rebuild: failed (see the messages above)\n",
             MDS_PROGRAM);
    return -1;
  }
  printf ("rebuild: %zu of %zu storage servers answered; %zu volumes, "
          "%zu servers; %" PRIu64 " segments placed, %" PRIu64
          " stale replicas, %" PRIu64 " segments not placed\n",
          rep.answered, opts->nrebuild, rep.volumes, rep.servers, rep.placed,
          rep.stale, rep.not_placed);
  fflush (stdout);
  return 0;
}

/* Open the catalog and create (--init, with the cluster key) or read the
 * cluster record.  Prints the reason and returns -1 on failure.
 */
static int
open_catalog (struct mds *mds, const struct options *opts)
{
  char uuid[37];
  CLEANUP_FREE char *new_key = NULL;
  int r;

  if ((opts->init || opts->rebuild) && mkdir (mds->db_dir, 0700) == -1 &&
      errno != EEXIST) {
    fprintf (stderr, "%s: %s: %m\n", MDS_PROGRAM, mds->db_dir);
    return -1;
  }
  r = mds_lock_db (mds->db_dir);
  if (r == -ENOENT && !opts->init && !opts->rebuild) {
    fprintf (stderr, "%s: %s: not initialized: run %s --init\n", MDS_PROGRAM,
             mds->db_dir, MDS_PROGRAM);
    return -1;
  }
  if (r == -EBUSY) {
    fprintf (stderr, "%s: %s: in use by another %s\n", MDS_PROGRAM, mds->db_dir,
             MDS_PROGRAM);
    return -1;
  }
  if (r < 0) {
    fprintf (stderr, "%s: %s: %s\n", MDS_PROGRAM, mds->db_dir, strerror (-r));
    return -1;
  }
  r = catalog_open (mds->db_dir, 0, &mds->cat);
  if (r < 0) {
    fprintf (stderr, "%s: %s: cannot open the catalog: %s\n", MDS_PROGRAM,
             mds->db_dir, catalog_strerror (r));
    return -1;
  }

  if (opts->init) {
    uint8_t id[16];

    /* The key is created before the cluster record, and removed if that
     * fails, so that a failed --init can simply be run again.
     */
    r = catalog_cluster_get (mds->cat, &mds->cluster);
    if (r == 0)
      r = -EEXIST;
    else if (r == -ENOENT) {
      if (setup_key (mds, true, &new_key) < 0)
        return -1;
      r = uuid_generate_random (id);
      if (r == 0)
        r = catalog_cluster_init (mds->cat, opts->segment_size, id);
      if (r < 0)
        unlink (new_key);
    }
    if (r == -EEXIST) {
      fprintf (stderr, "%s: %s: already initialized\n", MDS_PROGRAM,
               mds->db_dir);
      return -1;
    }
    if (r < 0) {
      fprintf (stderr, "%s: %s: cannot create the cluster: %s\n", MDS_PROGRAM,
               mds->db_dir, catalog_strerror (r));
      return -1;
    }
  }
  else if (setup_key (mds, false, &new_key) < 0)
    return -1;
  if (opts->rebuild && rebuild_catalog (mds, opts) < 0)
    return -1;
  r = catalog_cluster_get (mds->cat, &mds->cluster);
  if (r == -ENOENT) {
    fprintf (stderr, "%s: %s: not initialized: run %s --init\n", MDS_PROGRAM,
             mds->db_dir, MDS_PROGRAM);
    return -1;
  }
  if (r < 0) {
    fprintf (stderr, "%s: %s: cannot read the cluster: %s\n", MDS_PROGRAM,
             mds->db_dir, catalog_strerror (r));
    return -1;
  }
  uuid_format (mds->cluster.uuid, uuid);
  if (opts->init)
    log_info ("created cluster %s, segment size %" PRIu32, uuid,
              mds->cluster.segment_size);
  else
    log_info ("cluster %s, segment size %" PRIu32, uuid,
              mds->cluster.segment_size);
  return 0;
}

/* Listen on mds->listen_addr (made absolute for a unix socket, so that it
 * can be removed after the daemon's chdir).  *ABS_PATH receives the unix
 * socket's path (malloc'd) or NULL.  Prints the reason and returns -1 on
 * failure.
 */
static int
start_listening (struct mds *mds, char **abs_path)
{
  char where[PROTO_ADDR_MAX + 64];
  int fd;

  *abs_path = NULL;
  if (strncmp (mds->listen_addr, "unix:", 5) == 0) {
    *abs_path = daemon_absolute_path (mds->listen_addr + 5);
    if (*abs_path == NULL) {
      fprintf (stderr, "%s: out of memory\n", MDS_PROGRAM);
      return -1;
    }
  }
  fd = sock_listen (mds->listen_addr);
  if (fd < 0) {
    fprintf (stderr, "%s: --listen: %s: %s\n", MDS_PROGRAM, mds->listen_addr,
             strerror (-fd));
    free (*abs_path);
    *abs_path = NULL;
    return -1;
  }
  mds->listen_fd = fd;
  if (sock_local_address (fd, where, sizeof where) < 0)
    snprintf (where, sizeof where, "%s", mds->listen_addr);
  log_info ("listening on %s", where);
  return 0;
}

/* Set up the lock, the conditions (on the monotonic clock), the start
 * time and the placement seed.
 */
static void
init_state (struct mds *mds)
{
  pthread_condattr_t attr;

  pthread_mutex_init (&mds->lock, NULL);
  pthread_condattr_init (&attr);
  pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
  pthread_cond_init (&mds->conns_done, &attr);
  pthread_cond_init (&mds->repair_wake, &attr);
  pthread_cond_init (&mds->workers_done, &attr);
  pthread_cond_init (&mds->announce_wake, &attr);
  pthread_cond_init (&mds->tables_wake, &attr);
  pthread_condattr_destroy (&attr);
  mds->start_ns = monotonic_ns ();
  if (getrandom (&mds->rng, sizeof mds->rng, 0) != sizeof mds->rng)
    mds->rng = (uint64_t)time (NULL) ^ (uint64_t)getpid () << 32;
}

/* Wait for SIGTERM or SIGINT (blocked in every thread). */
static void
wait_for_signal (const sigset_t *set)
{
  int sig;

  while (sigwait (set, &sig) != 0 || (sig != SIGTERM && sig != SIGINT))
    ;
  log_info ("%s: shutting down", strsignal (sig));
}

int
main (int argc, char *argv[])
{
  struct mds mds = {
    .listen_addr = DEFAULT_LISTEN,
    .lease_ms = DEFAULT_LEASE_MS,
    .down_ms = DEFAULT_DOWN_MS,
    .heartbeat_ms = DEFAULT_HEARTBEAT_MS,
    .out_ms = DEFAULT_OUT_MS,
    .repair_concurrency = DEFAULT_REPAIR_CONCURRENCY,
    .handshake_timeout_ms = DEFAULT_HANDSHAKE_TIMEOUT_MS,
    .max_conns = DEFAULT_MAX_CONNS,
    .max_unauth = DEFAULT_MAX_UNAUTH,
    .high_water = DEFAULT_HIGH_WATER,
    .listen_fd = -1,
  };
  struct options opts = { .segment_size = DEFAULT_SEGMENT_SIZE };
  const struct log_debug_flag debug_flags[] = {
    { "mds.requests", &mds.debug_requests },
    { "mds.repair", &mds.debug_repair },
    { NULL, NULL },
  };
  CLEANUP_FREE char *pidfile = NULL;
  CLEANUP_FREE char *socket_path = NULL;
  int ready_fd = -1, r, status = EXIT_FAILURE;
  bool busy = false;
  sigset_t set;

  log_init (MDS_PROGRAM);
  log_register_debug_flags (debug_flags);
  parse_options (argc, argv, &mds, &opts);
  if (opts.pidfile && (pidfile = daemon_absolute_path (opts.pidfile)) == NULL) {
    fprintf (stderr, "%s: out of memory\n", MDS_PROGRAM);
    exit (EXIT_FAILURE);
  }

  if (!opts.foreground && (ready_fd = daemon_fork ()) < 0) {
    fprintf (stderr, "%s: fork: %s\n", MDS_PROGRAM, strerror (-ready_fd));
    exit (EXIT_FAILURE);
  }
  if (opts.exit_with_parent && prctl (PR_SET_PDEATHSIG, SIGTERM) == -1) {
    fprintf (stderr, "%s: --exit-with-parent: prctl: %m\n", MDS_PROGRAM);
    exit (EXIT_FAILURE);
  }
  /* Every thread inherits this mask; main takes the signals in sigwait. */
  signal (SIGPIPE, SIG_IGN);
  sigemptyset (&set);
  sigaddset (&set, SIGTERM);
  sigaddset (&set, SIGINT);
  pthread_sigmask (SIG_BLOCK, &set, NULL);

  init_state (&mds);
  if (open_catalog (&mds, &opts) < 0)
    goto out;
  daemon_raise_nofile ((unsigned long long)mds.max_conns + mds.max_unauth +
                           FD_MARGIN,
                       "--max-connections and --max-unauthenticated");
  r = mds_leases_recover (&mds);
  if (r < 0) {
    fprintf (stderr, "%s: %s: reading volumes: %s\n", MDS_PROGRAM, mds.db_dir,
             catalog_strerror (r));
    goto out;
  }
  r = mds_index_build (&mds);
  if (r < 0) {
    fprintf (stderr, "%s: %s: reading servers: %s\n", MDS_PROGRAM, mds.db_dir,
             catalog_strerror (r));
    goto out;
  }
  if (start_listening (&mds, &socket_path) < 0)
    goto out;
  r = mds_serve_start (&mds);
  if (r == 0) {
    r = mds_repair_start (&mds);
    if (r < 0)
      busy = mds_serve_stop (&mds, SHUTDOWN_WAIT_MS) < 0;
  }
  if (r < 0) {
    fprintf (stderr, "%s: cannot start a thread: %s\n", MDS_PROGRAM,
             strerror (-r));
    goto out_socket;
  }
  if (pidfile && (r = daemon_write_pidfile (pidfile)) < 0) {
    fprintf (stderr, "%s: --pidfile: %s: %s\n", MDS_PROGRAM, pidfile,
             strerror (-r));
    busy = mds_serve_stop (&mds, SHUTDOWN_WAIT_MS) < 0;
    busy |= mds_repair_stop (&mds, SHUTDOWN_WAIT_MS) < 0;
    goto out_socket;
  }
  daemon_ready (ready_fd);
  ready_fd = -1;

  wait_for_signal (&set);
  status = EXIT_SUCCESS;
  /* If threads still use the catalog and the state, leave them to exit. */
  busy = mds_serve_stop (&mds, SHUTDOWN_WAIT_MS) < 0;
  busy |= mds_repair_stop (&mds, SHUTDOWN_WAIT_MS) < 0;
  if (pidfile)
    unlink (pidfile);
out_socket:
  close (mds.listen_fd);
  if (socket_path)
    unlink (socket_path);
out:
  free (opts.rebuild_addrs);
  if (!busy) {
    catalog_close (mds.cat);
    mds_index_free (&mds);
    mds_state_free (&mds);
  }
  return status;
}

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
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "deadline.h"
#include "auth.h"
#include "tls.h"
#include "catalog.h"
#include "cleanup.h"
#include "daemon.h"
#include "etcd.h"
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
#define DEFAULT_ETCD_TTL 10
#define DEFAULT_SYNC_TIMEOUT_MS 5000
/* Most copies at a time per target server. */
#define REPAIR_CONCURRENCY_MAX 64
/* Bounds of the time options, in milliseconds. */
#define TIME_MIN_MS 100
#define TIME_MAX_MS (86400 * 1000)
#define DEFAULT_HANDSHAKE_TIMEOUT_MS 10000
/* Open files needed besides the connections (catalog, outgoing calls). */
#define FD_MARGIN 128
/* How long shutdown waits for busy connections. */
#define SHUTDOWN_WAIT_MS 5000

/* Options that only main needs; the rest go into struct mds. */
struct options {
  struct mds *mds; /* where the other options go */
  bool init;
  bool segment_size_set;
  uint32_t segment_size;
  const char *restore; /* --restore FILE */
  bool force;          /* --force */
  char *rebuild;       /* --rebuild ADDR[,ADDR...], split in place */
  char **rebuild_addrs;
  size_t nrebuild;
};

/* The MDS's own options; the shared ones are daemon.h's. */
enum {
  DB_OPTION = DAEMON_OPTION_END,
  FORCE_OPTION,
  INIT_OPTION,
  REBUILD_OPTION,
  RESTORE_OPTION,
  SEGMENT_SIZE_OPTION,
  LEASE_TIMEOUT_OPTION,
  DOWN_TIMEOUT_OPTION,
  HEARTBEAT_INTERVAL_OPTION,
  OUT_TIMEOUT_OPTION,
  REPAIR_CONCURRENCY_OPTION,
  REPAIR_BANDWIDTH_OPTION,
  HIGH_WATER_OPTION,
  KEY_FILE_OPTION,
  HANDSHAKE_TIMEOUT_OPTION,
  ETCD_OPTION,
  ETCD_PREFIX_OPTION,
  ETCD_TTL_OPTION,
  ETCD_CACERT_OPTION,
  ETCD_CERT_OPTION,
  ETCD_KEY_OPTION,
  ADVERTISE_OPTION,
  NAME_OPTION,
  SYNC_TIMEOUT_OPTION,
};

static const struct option long_options[] = {
  { "advertise", required_argument, NULL, ADVERTISE_OPTION },
  { "db", required_argument, NULL, DB_OPTION },
  { "down-timeout", required_argument, NULL, DOWN_TIMEOUT_OPTION },
  { "etcd", required_argument, NULL, ETCD_OPTION },
  { "etcd-cacert", required_argument, NULL, ETCD_CACERT_OPTION },
  { "etcd-cert", required_argument, NULL, ETCD_CERT_OPTION },
  { "etcd-key", required_argument, NULL, ETCD_KEY_OPTION },
  { "etcd-prefix", required_argument, NULL, ETCD_PREFIX_OPTION },
  { "etcd-ttl", required_argument, NULL, ETCD_TTL_OPTION },
  { "force", no_argument, NULL, FORCE_OPTION },
  { "handshake-timeout", required_argument, NULL, HANDSHAKE_TIMEOUT_OPTION },
  { "heartbeat-interval", required_argument, NULL, HEARTBEAT_INTERVAL_OPTION },
  { "high-water", required_argument, NULL, HIGH_WATER_OPTION },
  { "init", no_argument, NULL, INIT_OPTION },
  { "key-file", required_argument, NULL, KEY_FILE_OPTION },
  { "lease-timeout", required_argument, NULL, LEASE_TIMEOUT_OPTION },
  { "name", required_argument, NULL, NAME_OPTION },
  { "out-timeout", required_argument, NULL, OUT_TIMEOUT_OPTION },
  { "repair-bandwidth", required_argument, NULL, REPAIR_BANDWIDTH_OPTION },
  { "repair-concurrency", required_argument, NULL, REPAIR_CONCURRENCY_OPTION },
  { "rebuild", required_argument, NULL, REBUILD_OPTION },
  { "restore", required_argument, NULL, RESTORE_OPTION },
  { "segment-size", required_argument, NULL, SEGMENT_SIZE_OPTION },
  { "sync-timeout", required_argument, NULL, SYNC_TIMEOUT_OPTION },
  DAEMON_LONG_OPTIONS,
  { NULL, 0, NULL, 0 },
};

/* Print the synopsis and the MDS's own options on FP (--help; the shared
 * options follow).
 */
static void
usage (FILE *fp)
{
  fprintf (fp,
           "Usage: %s --db DIR [--init [--segment-size SIZE]] [OPTIONS]\n"
           "       %s --db DIR --restore FILE [--force] [OPTIONS]\n"
           "       %s --db DIR --rebuild ADDR[,ADDR...] [OPTIONS]\n"
           "The metadata server of a Tessera cluster.\n"
           "\n"
           "  --db DIR                  catalog directory (required)\n"
           "  --init                    create a new cluster in DIR, "
           "then serve\n"
           "  --segment-size SIZE       with --init: segment size, a power "
           "of two\n"
           "                            from 64K to 64M (default 4M)\n"
           "  --restore FILE            install the catalog backup FILE in "
           "DIR, then\n"
           "                            serve (see tessera catalog backup)\n"
           "  --force                   with --restore: replace the catalog "
           "DIR holds\n"
           "  --rebuild ADDR[,ADDR...]  recreate a lost catalog in DIR "
           "(empty or\n"
           "                            new) from these storage servers, "
           "then serve\n"
           "                            (--restore, --rebuild with --etcd: "
           "once\n"
           "                            elected, whatever etcd's record "
           "says)\n"
           "  --key-file FILE           the cluster key (default "
           "DIR/cluster.key;\n"
           "                            --init creates it)\n"
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
           "  --high-water PCT          no new segments on a server once "
           "PCT%% of it\n"
           "                            is used (1-100, default 90)\n"
           "\n"
           "Standby MDSes (docs/high-availability.md):\n"
           "  --etcd URL[,URL...]       elect the leader through these etcd "
           "members\n"
           "  --advertise HOST:PORT     where clients and standbys reach "
           "this MDS\n"
           "                            (required with --etcd)\n"
           "  --name NAME               this MDS in etcd (default: the "
           "--advertise\n"
           "                            address)\n"
           "  --etcd-prefix PREFIX      the cluster's keys in etcd "
           "(default /tessera)\n"
           "  --etcd-ttl SECONDS        the leader's lease in etcd (3-600, "
           "default 10)\n"
           "  --sync-timeout SECONDS    wait this long for the synchronous "
           "standby,\n"
           "                            then go on without one (default "
           "5)\n"
           "  --etcd-cacert FILE, --etcd-cert FILE, --etcd-key FILE\n"
           "                            TLS to etcd (https:// endpoints)\n",
           MDS_PROGRAM, MDS_PROGRAM, MDS_PROGRAM);
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

/* Parse a time option OPT into *MS, or exit. */
static void
time_option (const struct daemon_common *dc, const char *opt, const char *arg,
             uint32_t *ms)
{
  int r = parse_seconds (arg, ms);

  if (r == -ERANGE)
    daemon_bad_option (dc, opt, arg, "must be from 0.1 to 86400 seconds");
  if (r < 0)
    daemon_bad_option (dc, opt, arg, "not a number of seconds");
}

/* Take the MDS's own option C with its argument ARG into OPAQUE, the
 * struct options (daemon_spec.option).
 */
static void
mds_option (const struct daemon_common *dc, void *opaque, int c,
            const char *arg)
{
  struct options *opts = opaque;
  struct mds *mds = opts->mds;
  uint64_t size;
  int r;

  switch (c) {
  case DB_OPTION:
    mds->db_dir = arg;
    break;
  case INIT_OPTION:
    opts->init = true;
    break;
  case RESTORE_OPTION:
    opts->restore = arg;
    break;
  case REBUILD_OPTION:
    free (opts->rebuild);
    opts->rebuild = strdup (arg); /* split in place later */
    if (opts->rebuild == NULL) {
      fprintf (stderr, "%s: out of memory\n", MDS_PROGRAM);
      exit (EXIT_FAILURE);
    }
    break;
  case FORCE_OPTION:
    opts->force = true;
    break;
  case SEGMENT_SIZE_OPTION:
    r = parse_size (arg, &size);
    if (r < 0)
      daemon_bad_option (dc, "segment-size", arg, "not a size");
    if (size < 65536 || size > 64 * 1024 * 1024 || (size & (size - 1)))
      daemon_bad_option (dc, "segment-size", arg,
                         "must be a power of two from 64K to 64M");
    opts->segment_size = size;
    opts->segment_size_set = true;
    break;
  case LEASE_TIMEOUT_OPTION:
    time_option (dc, "lease-timeout", arg, &mds->lease_ms);
    break;
  case DOWN_TIMEOUT_OPTION:
    time_option (dc, "down-timeout", arg, &mds->down_ms);
    break;
  case HEARTBEAT_INTERVAL_OPTION:
    time_option (dc, "heartbeat-interval", arg, &mds->heartbeat_ms);
    break;
  case OUT_TIMEOUT_OPTION:
    time_option (dc, "out-timeout", arg, &mds->out_ms);
    break;
  case REPAIR_CONCURRENCY_OPTION:
    mds->repair_concurrency = daemon_number_option (
        dc, "repair-concurrency", arg, REPAIR_CONCURRENCY_MAX);
    break;
  case REPAIR_BANDWIDTH_OPTION:
    r = parse_size (arg, &mds->repair_bandwidth);
    if (r < 0)
      daemon_bad_option (dc, "repair-bandwidth", arg, "not a size");
    break;
  case HIGH_WATER_OPTION:
    r = parse_uint32 (arg, 1, 100, &mds->high_water);
    if (r < 0)
      daemon_bad_option (dc, "high-water", arg,
                         "must be a percentage from 1 to 100");
    break;
  case KEY_FILE_OPTION:
    mds->key_file = arg;
    break;
  case HANDSHAKE_TIMEOUT_OPTION:
    time_option (dc, "handshake-timeout", arg, &mds->handshake_timeout_ms);
    break;
  case ETCD_OPTION:
    mds->ha_etcd = arg;
    break;
  case ETCD_PREFIX_OPTION:
    if (arg[0] != '/' || strlen (arg) > 200 || arg[strlen (arg) - 1] == '/')
      daemon_bad_option (dc, "etcd-prefix", arg,
                         "must start with '/', not end with one, and have "
                         "at most 200 bytes");
    mds->ha_prefix = arg;
    break;
  case ETCD_TTL_OPTION: {
    uint32_t ttl;

    if (parse_uint32 (arg, 3, 600, &ttl) < 0)
      daemon_bad_option (dc, "etcd-ttl", arg,
                         "must be a number of seconds from 3 to 600");
    mds->ha_ttl_s = ttl;
    break;
  }
  case ETCD_CACERT_OPTION:
    mds->ha_etcd_cacert = arg;
    break;
  case ETCD_CERT_OPTION:
    mds->ha_etcd_cert = arg;
    break;
  case ETCD_KEY_OPTION:
    mds->ha_etcd_key = arg;
    break;
  case ADVERTISE_OPTION:
    if (sock_address_check (arg) < 0)
      daemon_bad_option (dc, "advertise", arg,
                         "not HOST:PORT, [V6]:PORT or unix:PATH");
    mds->ha_advertise = arg;
    break;
  case NAME_OPTION:
    if (arg[0] == '\0' || strlen (arg) > 64 || strpbrk (arg, "\n=") != NULL)
      daemon_bad_option (dc, "name", arg,
                         "must be 1 to 64 bytes without '=' or newlines");
    mds->ha_name = arg;
    break;
  case SYNC_TIMEOUT_OPTION:
    time_option (dc, "sync-timeout", arg, &mds->ha_sync_timeout_ms);
    break;
  }
}

/* Split --rebuild's list of storage-server addresses (in place) into
 * OPTS->rebuild_addrs; exits on error.
 */
static void
split_addresses (struct daemon_common *dc, struct options *opts)
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
      daemon_bad_option (dc, "rebuild", p,
                         "not HOST:PORT, [V6]:PORT or unix:PATH");
    opts->rebuild_addrs[opts->nrebuild++] = p;
  }
  if (opts->nrebuild == 0)
    daemon_bad_option (dc, "rebuild", "", "no storage server address");
}

/* Parse and check the command line into MDS, OPTS and DC (the shared
 * options); exits on error.
 */
static void
parse_options (int argc, char *argv[], struct mds *mds, struct options *opts,
               struct daemon_common *dc)
{
  opts->mds = mds;
  daemon_parse_options (dc, argc, argv, opts);
  mds->tls = dc->tls;
  mds->max_conns = dc->max_conns;
  mds->max_unauth = dc->max_unauth;
  if (mds->db_dir == NULL) {
    fprintf (stderr, "%s: --db: a catalog directory is required\n",
             MDS_PROGRAM);
    exit (EXIT_FAILURE);
  }
  if (opts->restore && opts->init) {
    fprintf (stderr, "%s: --restore: not valid with --init\n", MDS_PROGRAM);
    exit (EXIT_FAILURE);
  }
  if (opts->rebuild && (opts->init || opts->restore)) {
    fprintf (stderr, "%s: --rebuild: not with --init or --restore\n",
             MDS_PROGRAM);
    exit (EXIT_FAILURE);
  }
  if (opts->rebuild)
    split_addresses (dc, opts);
  if (opts->force && !opts->restore) {
    fprintf (stderr, "%s: --force: only valid with --restore\n", MDS_PROGRAM);
    exit (EXIT_FAILURE);
  }
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
  if (mds->ha_etcd == NULL &&
      (mds->ha_advertise || mds->ha_name || mds->ha_prefix ||
       mds->ha_etcd_cacert || mds->ha_etcd_cert || mds->ha_etcd_key)) {
    fprintf (stderr,
             "%s: --advertise, --name and --etcd-*: only valid with --etcd\n",
             MDS_PROGRAM);
    exit (EXIT_FAILURE);
  }
  if (mds->ha_etcd) {
    if (mds->ha_advertise == NULL) {
      fprintf (stderr,
               "%s: --etcd: --advertise HOST:PORT is required (where "
               "clients and standbys reach this MDS)\n",
               MDS_PROGRAM);
      exit (EXIT_FAILURE);
    }
    if (mds->ha_name == NULL)
      mds->ha_name = mds->ha_advertise;
    if (mds->ha_prefix == NULL)
      mds->ha_prefix = "/tessera";
  }
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

/* --rebuild: check the catalog is empty.  Prints the reason and
 * returns -1 if not.
 */
static int
rebuild_check_empty (struct mds *mds)
{
  struct catalog_cluster c;
  struct catalog_stats st;
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
  return 0;
}

/* --rebuild: recreate the empty catalog from the storage servers
 * (rebuild.c).  Prints the reason and returns -1 on failure.
 */
static int
rebuild_catalog (struct mds *mds, const struct options *opts)
{
  struct mds_rebuild_report rep;

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

  if ((opts->init || opts->restore || opts->rebuild) &&
      mkdir (mds->db_dir, 0700) == -1 && errno != EEXIST) {
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
  if (opts->restore &&
      mds_restore (mds->db_dir, opts->restore, opts->force) < 0)
    return -1;
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
  if (opts->rebuild && rebuild_check_empty (mds) < 0)
    return -1;
  /* With --etcd the servers are asked once elected (ha.c). */
  if (opts->rebuild && mds->ha_etcd) {
    log_info ("%s: empty: it will be rebuilt from the storage servers once "
              "elected",
              mds->db_dir);
    return 0;
  }
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

/* With --etcd and without --init: open the catalog DIR holds, if any
 * (a new standby has none: it takes a snapshot of the leader's), with
 * the cluster key, which must exist (copied from the first MDS).
 * Prints the reason and returns -1 on failure.
 */
static int
open_catalog_ha (struct mds *mds, const struct options *opts)
{
  CLEANUP_FREE char *new_key = NULL;
  char uuid[37];
  int r;

  if (opts->init || opts->rebuild || opts->restore)
    return open_catalog (mds, opts);
  if (mkdir (mds->db_dir, 0700) == -1 && errno != EEXIST) {
    fprintf (stderr, "%s: %s: %m\n", MDS_PROGRAM, mds->db_dir);
    return -1;
  }
  r = mds_lock_db (mds->db_dir);
  if (r == -EBUSY) {
    fprintf (stderr, "%s: %s: in use by another %s\n", MDS_PROGRAM, mds->db_dir,
             MDS_PROGRAM);
    return -1;
  }
  if (r < 0) {
    fprintf (stderr, "%s: %s: %s\n", MDS_PROGRAM, mds->db_dir, strerror (-r));
    return -1;
  }
  if (setup_key (mds, false, &new_key) < 0)
    return -1;
  r = catalog_open (mds->db_dir, 0, &mds->cat);
  if (r == 0) {
    r = catalog_cluster_get (mds->cat, &mds->cluster);
    if (r == -ENOENT) {
      catalog_close (mds->cat);
      mds->cat = NULL;
      log_info ("%s: no catalog yet: it will be a snapshot of the leader's",
                mds->db_dir);
      return 0;
    }
  }
  if (r < 0) {
    fprintf (stderr, "%s: %s: cannot open the catalog: %s\n", MDS_PROGRAM,
             mds->db_dir, catalog_strerror (r));
    return -1;
  }
  uuid_format (mds->cluster.uuid, uuid);
  log_info ("cluster %s, segment size %" PRIu32, uuid,
            mds->cluster.segment_size);
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

/* What the shared daemon code needs of the MDS. */
static const struct daemon_spec spec = {
  .program = MDS_PROGRAM,
  .default_listen = DEFAULT_LISTEN,
  .long_options = long_options,
  .usage = usage,
  .option = mds_option,
};

/* Wait for SIGTERM or SIGINT (blocked in every thread). */
static void
wait_for_signal (const sigset_t *set)
{
  int sig;

  while (sigwait (set, &sig) != 0 || (sig != SIGTERM && sig != SIGINT))
    ;
  log_info ("%s: shutting down", strsignal (sig));
}

/* --restore: reconcile the restored catalog with the storage servers
 * it names, as --rebuild does (rebuild.c): segments allocated after the
 * backup are adopted, counters, epochs and generations raised, never
 * lowered.  Prints the reason and returns -1 on failure.
 */
static int
reconcile_restored (struct mds *mds)
{
  struct catalog_server *servers = NULL;
  struct mds_rebuild_report rep;
  char **addrs = NULL;
  size_t n = 0, i;
  int r;

  r = catalog_server_list (mds->cat, &servers, &n);
  if (r == 0 && n > 0) {
    addrs = calloc (n, sizeof *addrs);
    if (addrs == NULL)
      r = -ENOMEM;
  }
  for (i = 0; r == 0 && i < n; i++)
    addrs[i] = servers[i].address;
  if (r == 0 && n > 0)
    r = mds_reconcile (mds, addrs, n, &rep) < 0 ? -EIO : 0;
  if (r < 0)
    fprintf (stderr,
             "%s: --restore: reconciling with the storage servers failed: "
             "%s\n",
             MDS_PROGRAM, catalog_strerror (r));
  else if (n > 0)
    log_info ("restore: reconciled with %zu of %zu storage servers: %" PRIu64
              " segments adopted, %" PRIu64 " already known, %" PRIu64
              " stale replicas, %" PRIu64 " not placed",
              rep.answered, n, rep.placed, rep.known, rep.stale,
              rep.not_placed);
  free (addrs);
  free (servers);
  return r < 0 ? -1 : 0;
}

/* ha.c's reconcile, once elected, for --rebuild (ARG: the options). */
static int
ha_rebuild (struct mds *mds, void *arg)
{
  const struct options *opts = arg;
  char uuid[37];

  if (rebuild_catalog (mds, opts) < 0)
    return -1;
  uuid_format (mds->cluster.uuid, uuid);
  log_info ("cluster %s, segment size %" PRIu32, uuid,
            mds->cluster.segment_size);
  return 0;
}

/* ha.c's reconcile, once elected, for --restore. */
static int
ha_restore (struct mds *mds, void *arg)
{
  (void)arg;
  return reconcile_restored (mds);
}

/* Serve with --etcd (ha.c): listen at once (a standby answers
 * ENOTLEADER), then campaign or follow until SIGTERM.  Returns the exit
 * status; *BUSY if threads still use the catalog.
 */
static int
serve_ha (struct mds *mds, struct daemon_common *dc, const sigset_t *set,
          bool *busy)
{
  char err[512];

  if (etcd_global_init () < 0) {
    fprintf (stderr, "%s: cannot set up libcurl\n", MDS_PROGRAM);
    return EXIT_FAILURE;
  }
  mds->listen_fd = daemon_listen (dc, NULL, 0);
  if (mds->listen_fd < 0)
    return EXIT_FAILURE;
  if (mds_serve_start (mds) < 0) {
    close (mds->listen_fd);
    return EXIT_FAILURE;
  }
  if (mds_ha_start (mds, err, sizeof err) < 0) {
    fprintf (stderr, "%s: --etcd: %s\n", MDS_PROGRAM, err);
    *busy = mds_serve_stop (mds, SHUTDOWN_WAIT_MS) < 0;
    close (mds->listen_fd);
    return EXIT_FAILURE;
  }
  if (daemon_pidfile (dc) < 0) {
    mds_ha_stop (mds);
    *busy = mds_serve_stop (mds, SHUTDOWN_WAIT_MS) < 0;
    *busy |= mds_repair_stop (mds, SHUTDOWN_WAIT_MS) < 0;
    close (mds->listen_fd);
    return EXIT_FAILURE;
  }
  daemon_serving (dc);
  log_info ("%s: campaigning or following through etcd %s (prefix %s)",
            mds->ha_name, mds->ha_etcd, mds->ha_prefix);
  wait_for_signal (set);
  /* Resign first, so that the synchronous standby takes over at once. */
  mds_ha_stop (mds);
  *busy = mds_serve_stop (mds, SHUTDOWN_WAIT_MS) < 0;
  *busy |= mds_repair_stop (mds, SHUTDOWN_WAIT_MS) < 0;
  close (mds->listen_fd);
  return EXIT_SUCCESS;
}

int
main (int argc, char *argv[])
{
  struct mds mds = {
    .lease_ms = DEFAULT_LEASE_MS,
    .down_ms = DEFAULT_DOWN_MS,
    .heartbeat_ms = DEFAULT_HEARTBEAT_MS,
    .out_ms = DEFAULT_OUT_MS,
    .repair_concurrency = DEFAULT_REPAIR_CONCURRENCY,
    .handshake_timeout_ms = DEFAULT_HANDSHAKE_TIMEOUT_MS,
    .high_water = DEFAULT_HIGH_WATER,
    .ha_ttl_s = DEFAULT_ETCD_TTL,
    .ha_sync_timeout_ms = DEFAULT_SYNC_TIMEOUT_MS,
    .listen_fd = -1,
    .backup_dir_fd = -1,
  };
  struct options opts = { .segment_size = DEFAULT_SEGMENT_SIZE };
  const struct log_debug_flag debug_flags[] = {
    { "mds.requests", &mds.debug_requests },
    { "mds.repair", &mds.debug_repair },
    { NULL, NULL },
  };
  struct daemon_common dc;
  int r, status = EXIT_FAILURE;
  bool busy = false;
  sigset_t set;

  log_init (MDS_PROGRAM);
  daemon_common_init (&dc, &spec, debug_flags);
  parse_options (argc, argv, &mds, &opts, &dc);

  /* Every thread inherits the signal mask; main takes the signals in
   * sigwait.
   */
  if (daemon_detach (&dc) < 0 || daemon_signals (&dc, &set) < 0)
    goto out;
  /* Before the catalog: --rebuild runs the MDS's calls to storage
   * servers, which take the lock.
   */
  init_state (&mds);
  if ((mds.ha_etcd ? open_catalog_ha : open_catalog) (&mds, &opts) < 0)
    goto out;
  r = mds_backup_init (&mds);
  if (r < 0) {
    fprintf (stderr, "%s: %s: %s\n", MDS_PROGRAM, mds.db_dir, strerror (-r));
    goto out;
  }
  daemon_raise_nofile ((unsigned long long)mds.max_conns + mds.max_unauth +
                           FD_MARGIN,
                       "--max-connections and --max-unauthenticated");
  if (mds.ha_etcd) {
    /* The operator's override: lead with this catalog, reconciled with
     * the storage servers as the leader (they refuse epoch 0).
     */
    if (opts.rebuild) {
      mds.ha_reconcile = ha_rebuild;
      mds.ha_reconcile_arg = &opts;
    }
    else if (opts.restore)
      mds.ha_reconcile = ha_restore;
    status = serve_ha (&mds, &dc, &set, &busy);
    goto out;
  }
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
  if (opts.restore && reconcile_restored (&mds) < 0)
    goto out;
  mds.listen_fd = daemon_listen (&dc, NULL, 0);
  if (mds.listen_fd < 0)
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
  if (daemon_pidfile (&dc) < 0) {
    busy = mds_serve_stop (&mds, SHUTDOWN_WAIT_MS) < 0;
    busy |= mds_repair_stop (&mds, SHUTDOWN_WAIT_MS) < 0;
    goto out_socket;
  }
  daemon_serving (&dc);

  wait_for_signal (&set);
  status = EXIT_SUCCESS;
  /* If threads still use the catalog and the state, leave them to exit. */
  busy = mds_serve_stop (&mds, SHUTDOWN_WAIT_MS) < 0;
  busy |= mds_repair_stop (&mds, SHUTDOWN_WAIT_MS) < 0;
out_socket:
  close (mds.listen_fd);
out:
  daemon_common_free (&dc);
  free (opts.rebuild_addrs);
  free (opts.rebuild);
  if (!busy) {
    mds_backup_free (&mds);
    mds_repl_free (mds.repl);
    catalog_close (mds.cat);
    mds_index_free (&mds);
    mds_state_free (&mds);
  }
  return status;
}

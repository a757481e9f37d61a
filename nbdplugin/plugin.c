/* nbdkit-tessera-plugin: configuration and nbdkit callbacks.
 *
 *   nbdkit tessera [mds=ADDR[,ADDR...]] volume=NAME [key-file=FILE]
 *                  [tls=true] [readonly=true]
 *                  [connections=N] [timeout=SECONDS]
 *                  [epoch-interval=SECONDS] [open-timeout=SECONDS]
 *
 * The volume is opened once, read-only, in .get_ready, and shared by
 * every NBD connection (the handle of each connection is the volume
 * itself), so the export supports multi-conn.  The first connection
 * that nbdkit opens read-write takes the writer lease (.open), so
 * nbdkit -r never does.  See internal.h for the structure.
 */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "auth.h"
#include "tls.h"
#include "protocol.h"

#include "internal.h"

#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

/* Debug flags: -D tessera.map=1 and so on. */
NBDKIT_DLL_PUBLIC int tessera_debug_map = 0;
NBDKIT_DLL_PUBLIC int tessera_debug_io = 0;
NBDKIT_DLL_PUBLIC int tessera_debug_conn = 0;
NBDKIT_DLL_PUBLIC int tessera_debug_lease = 0;

static struct tessera_config cfg = {
  .mds = TESSERA_DEFAULT_MDS,
  .connections = TESSERA_DEFAULT_CONNECTIONS,
  .timeout_ms = TESSERA_DEFAULT_TIMEOUT * 1000,
  .epoch_interval = TESSERA_DEFAULT_EPOCH_INTERVAL,
  .open_timeout = TESSERA_DEFAULT_OPEN_TIMEOUT,
  .map_prefetch = true,
};

/* The open volume, from .get_ready to .unload. */
static struct volume *vol;

/* Turn -ERR into nbdkit's error convention: set errno to a value the
 * NBD protocol can carry (others become EIO, which nbdkit would
 * otherwise send as EINVAL) and return -1.
 */
static int
fail (int err)
{
  int e = -err;

  switch (e) {
  case EPERM:
  case EIO:
  case ENOMEM:
  case EINVAL:
  case ENOSPC:
  case EFBIG:
  case EDQUOT:
  case EROFS:
  case ENOTSUP:
  case ESHUTDOWN:
    break;
  default:
    e = EIO;
  }
  errno = e;
  return -1;
}

/* Close and free the volume (.unload; also after a failed start). */
static void
tessera_unload (void)
{
  volume_close (vol);
  volume_free (vol);
  vol = NULL;
  free (cfg.key_file);
  cfg.key_file = NULL;
}

/* Parse one key=value parameter. */
static int
tessera_config (const char *key, const char *value)
{
  int r;

  if (strcmp (key, "mds") == 0) {
    struct addrlist l;
    char errmsg[256];

    /* Checked here; the volume's MDS session keeps its own copy. */
    if (addrlist_parse (value, &l, errmsg, sizeof errmsg) < 0) {
      nbdkit_error ("mds: %s", errmsg);
      return -1;
    }
    addrlist_free (&l);
    cfg.mds = value;
  }
  else if (strcmp (key, "tls") == 0) {
    r = nbdkit_parse_bool (value);
    if (r == -1)
      return -1;
    cfg.tls = r;
  }
  else if (strcmp (key, "key-file") == 0) {
    free (cfg.key_file);
    cfg.key_file = nbdkit_absolute_path (value);
    if (cfg.key_file == NULL)
      return -1;
  }
  else if (strcmp (key, "volume") == 0) {
    if (value[0] == '\0' || strlen (value) > PROTO_NAME_MAX) {
      nbdkit_error ("volume: name must be 1 to %d bytes", PROTO_NAME_MAX);
      return -1;
    }
    cfg.volume = value;
  }
  else if (strcmp (key, "readonly") == 0) {
    r = nbdkit_parse_bool (value);
    if (r == -1)
      return -1;
    cfg.readonly = r;
  }
  else if (strcmp (key, "map-prefetch") == 0) {
    r = nbdkit_parse_bool (value);
    if (r == -1)
      return -1;
    cfg.map_prefetch = r;
  }
  else if (strcmp (key, "connections") == 0) {
    unsigned n;

    if (nbdkit_parse_unsigned ("connections", value, &n) == -1)
      return -1;
    if (n < 1 || n > TESSERA_MAX_CONNECTIONS) {
      nbdkit_error ("connections: must be between 1 and %d",
                    TESSERA_MAX_CONNECTIONS);
      return -1;
    }
    cfg.connections = n;
  }
  else if (strcmp (key, "timeout") == 0) {
    unsigned n;

    if (nbdkit_parse_unsigned ("timeout", value, &n) == -1)
      return -1;
    if (n < 1 || n > TESSERA_MAX_TIMEOUT) {
      nbdkit_error ("timeout: must be between 1 and %d seconds",
                    TESSERA_MAX_TIMEOUT);
      return -1;
    }
    cfg.timeout_ms = n * 1000;
  }
  else if (strcmp (key, "epoch-interval") == 0 ||
           strcmp (key, "open-timeout") == 0) {
    unsigned n;

    if (nbdkit_parse_unsigned (key, value, &n) == -1)
      return -1;
    if (n > TESSERA_MAX_TIMEOUT) {
      nbdkit_error ("%s: must be at most %d seconds", key, TESSERA_MAX_TIMEOUT);
      return -1;
    }
    if (strcmp (key, "epoch-interval") == 0)
      cfg.epoch_interval = n;
    else
      cfg.open_timeout = n;
  }
  else {
    nbdkit_error ("unknown parameter '%s'", key);
    return -1;
  }
  return 0;
}

/* Check that the required parameters were given and load the cluster
 * key (key-file=, else $TESSERA_KEY_FILE, else the default): every
 * connection to the MDS and the storage servers proves it (auth.h).
 */
static int
tessera_config_complete (void)
{
  const char *env = getenv ("TESSERA_KEY_FILE");
  const char *path = cfg.key_file;
  struct auth_key key;
  char errmsg[512];

  if (cfg.volume == NULL) {
    nbdkit_error ("you must supply the volume=NAME parameter "
                  "after the plugin name on the command line");
    return -1;
  }
  if (path == NULL)
    path = env && env[0] ? env : AUTH_DEFAULT_KEY_FILE;
  if (auth_key_load (path, &key, errmsg, sizeof errmsg) < 0) {
    nbdkit_error ("%s", errmsg);
    return -1;
  }
  auth_key_use (&key);
  if (cfg.tls && tls_enable (&key, errmsg, sizeof errmsg) < 0) {
    nbdkit_error ("%s", errmsg);
    return -1;
  }
  memset (&key, 0, sizeof key);
  return 0;
}

#define tessera_config_help \
  "[volume=]NAME              (required) The volume to serve.\n" \
  "mds=ADDR[,ADDR...]         MDS address, or up to 8 tried in turn to\n" \
  "                           find the leader: each HOST:PORT, [V6]:PORT\n" \
  "                           or unix:PATH (default " TESSERA_DEFAULT_MDS \
  ").\n" \
  "key-file=FILE              The cluster key (default $TESSERA_KEY_FILE,\n" \
  "                           else " AUTH_DEFAULT_KEY_FILE ").\n" \
  "tls=true                   TLS to the MDS and storage servers.\n" \
  "readonly=true              Serve read-only and never take the writer\n" \
  "                           lease, as nbdkit -r does.\n" \
  "connections=N              Sockets per storage server (default 2).\n" \
  "timeout=SECONDS            Replica failure timeout; every request ends\n" \
  "                           within 1.5 times it (default 30).\n" \
  "epoch-interval=SECONDS     Rotate the epoch at most this often (default " \
  "2).\n" \
  "open-timeout=SECONDS       Wait this long for a resync (default 120).\n" \
  "map-prefetch=false         Do not read the whole map in the background."

/* Print facts about the plugin (nbdkit --dump-plugin). */
static void
tessera_dump_plugin (void)
{
  printf ("tessera_protocol_version=%d\n", PROTO_VERSION);
  printf ("tessera_max_request=%u\n", PROTO_MAX_DATA);
}

/* Open the volume read-only before serving, so that a missing volume,
 * an MDS away or a bad key stop nbdkit at start-up with the reason.
 * The writer lease waits for the first connection opened read-write
 * (tessera_open): nbdkit tells plugins about -r only there.
 */
static int
tessera_get_ready (void)
{
  int r;

  /* Memory reclaim may wait on our own writes when the volume is attached
   * on this host (nbd-client): do not recurse into I/O while allocating.
   */
#ifdef PR_SET_IO_FLUSHER
  if (prctl (PR_SET_IO_FLUSHER, 1, 0, 0, 0) == -1)
    nbdkit_debug ("prctl PR_SET_IO_FLUSHER: %m (ignored)");
#endif

  r = volume_open (&cfg, &vol);
  if (r < 0)
    return -1;
  return 0;
}

/* Start background threads in the (possibly forked) server process. */
static int
tessera_after_fork (void)
{
  if (volume_start (vol) < 0)
    return -1;
  return 0;
}

/* Close the volume once every connection is gone. */
static void
tessera_cleanup (void)
{
  volume_close (vol);
}

/* Every connection shares the one open volume.  The first one that
 * nbdkit opens read-write (no -r) takes the writer lease, unless
 * readonly=true; if another writer holds it, the connection fails with
 * the MDS's message and the next one tries again.
 */
static void *
tessera_open (int readonly)
{
  if (vol == NULL) {
    nbdkit_error ("volume is not open");
    return NULL;
  }
  if (!readonly && !cfg.readonly && volume_take_lease (vol) < 0)
    return NULL;
  return vol;
}

/* Size of the volume. */
static int64_t
tessera_get_size (void *handle)
{
  struct volume *v = handle;

  return v->size;
}

/* Any alignment works; 4096 avoids partial-block work on the storage
 * servers; PROTO_MAX_DATA is the largest segment I/O.
 */
static int
tessera_block_size (void *handle, uint32_t *minimum, uint32_t *preferred,
                    uint32_t *maximum)
{
  *minimum = 1;
  *preferred = 4096;
  *maximum = PROTO_MAX_DATA;
  return 0;
}

/* Writable once the writer lease is taken (tessera_open), so never
 * with readonly=true.  nbdkit -r does not ask.
 */
static int
tessera_can_write (void *handle)
{
  struct volume *v = handle;

  return atomic_load (&v->rw);
}

/* Flush, trim, zero, fast zero and extents are always available. */
static int
tessera_can_true (void *handle)
{
  return 1;
}

/* FUA is passed to the storage servers. */
static int
tessera_can_fua (void *handle)
{
  return NBDKIT_FUA_NATIVE;
}

/* All connections share one volume and flush reaches every server
 * written by any of them: multi-conn is safe.
 */
static int
tessera_can_multi_conn (void *handle)
{
  return 1;
}

/* Read. */
static int
tessera_pread (void *handle, void *buf, uint32_t count, uint64_t offset,
               uint32_t flags)
{
  int r;

  assert (flags == 0);
  request_start (cfg.timeout_ms);
  r = flush_settle_lost (handle);
  if (r == 0)
    r = io_pread (handle, buf, count, offset);
  request_end ();
  return r < 0 ? fail (r) : 0;
}

/* Write, on every replica. */
static int
tessera_pwrite (void *handle, const void *buf, uint32_t count, uint64_t offset,
                uint32_t flags)
{
  int r;

  assert (!(flags & ~NBDKIT_FLAG_FUA));
  request_start (cfg.timeout_ms);
  r = flush_settle_lost (handle);
  if (r == 0)
    r = io_pwrite (handle, buf, count, offset, flags & NBDKIT_FLAG_FUA);
  request_end ();
  return r < 0 ? fail (r) : 0;
}

/* Flush every server written since the last flush. */
static int
tessera_flush (void *handle, uint32_t flags)
{
  int r;

  assert (flags == 0);
  request_start (cfg.timeout_ms);
  r = flush_volume (handle, true);
  request_end ();
  return r < 0 ? fail (r) : 0;
}

/* Trim: punch the range in allocated segments. */
static int
tessera_trim (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  int r;

  assert (!(flags & ~NBDKIT_FLAG_FUA));
  request_start (cfg.timeout_ms);
  r = flush_settle_lost (handle);
  if (r == 0)
    r = io_trim (handle, count, offset, flags & NBDKIT_FLAG_FUA);
  request_end ();
  return r < 0 ? fail (r) : 0;
}

/* Zero.  With MAY_TRIM, a punched range reads back as zeros and holes
 * already do, so this is a trim, and fast.  Without it the client asked
 * for the range to stay allocated (NBD's NO_HOLE): write zeros, which
 * is not fast (FAST_ZERO then fails with ENOTSUP at once, as nbdkit
 * asks).
 */
static int
tessera_zero (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  bool fua = flags & NBDKIT_FLAG_FUA;
  int r;

  assert (!(flags &
            ~(NBDKIT_FLAG_MAY_TRIM | NBDKIT_FLAG_FUA | NBDKIT_FLAG_FAST_ZERO)));
  if (!(flags & NBDKIT_FLAG_MAY_TRIM) && (flags & NBDKIT_FLAG_FAST_ZERO)) {
    errno = ENOTSUP;
    return -1;
  }
  request_start (cfg.timeout_ms);
  r = flush_settle_lost (handle);
  if (r == 0 && (flags & NBDKIT_FLAG_MAY_TRIM))
    r = io_trim (handle, count, offset, fua);
  else if (r == 0)
    r = io_write_zeroes (handle, count, offset, fua);
  request_end ();
  return r < 0 ? fail (r) : 0;
}

/* Extents: unallocated segments are holes that read as zeros. */
static int
tessera_extents (void *handle, uint32_t count, uint64_t offset, uint32_t flags,
                 struct nbdkit_extents *extents)
{
  int r;

  assert (!(flags & ~NBDKIT_FLAG_REQ_ONE));
  request_start (cfg.timeout_ms);
  r = flush_settle_lost (handle);
  if (r == 0)
    r = io_extents (handle, count, offset, flags & NBDKIT_FLAG_REQ_ONE,
                    extents);
  request_end ();
  return r < 0 ? fail (r) : 0;
}

/* clang-format off */
static struct nbdkit_plugin plugin = {
  .name               = "tessera",
  .longname           = "nbdkit tessera plugin",
  .version            = PACKAGE_VERSION,
  .description        = "Serve a Tessera replicated volume.",
  .unload             = tessera_unload,
  .config             = tessera_config,
  .config_complete    = tessera_config_complete,
  .config_help        = tessera_config_help,
  .magic_config_key   = "volume",
  .dump_plugin        = tessera_dump_plugin,
  .get_ready          = tessera_get_ready,
  .after_fork         = tessera_after_fork,
  .cleanup            = tessera_cleanup,
  .open               = tessera_open,
  .get_size           = tessera_get_size,
  .block_size         = tessera_block_size,
  .can_write          = tessera_can_write,
  .can_flush          = tessera_can_true,
  .can_trim           = tessera_can_true,
  .can_zero           = tessera_can_true,
  .can_fast_zero      = tessera_can_true,
  .can_extents        = tessera_can_true,
  .can_fua            = tessera_can_fua,
  .can_multi_conn     = tessera_can_multi_conn,
  .pread              = tessera_pread,
  .pwrite             = tessera_pwrite,
  .flush              = tessera_flush,
  .trim               = tessera_trim,
  .zero               = tessera_zero,
  .extents            = tessera_extents,
  .errno_is_preserved = 1,
};
/* clang-format on */

NBDKIT_REGISTER_PLUGIN (plugin)

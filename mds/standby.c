/* Replication, a standby's side (docs/high-availability.md).
 *
 * One thread follows the leader the election names: it connects as
 * PROTO_ROLE_MDS, and either continues from its own catalog's change
 * sequence or, if it has none, if the leader says it is out of the
 * window (PROTO_ESTALE), or when it follows a new leader, starts again
 * from a snapshot: the leader's CATALOG_BACKUP copy, checked against its
 * SHA-256, installed as the catalog (mds_restore) and opened.  Then it
 * asks for changes (REPL_PULL) and applies the batches each reply
 * completes in one transaction (catalog_apply_changes_many); each
 * request tells the leader how far it has applied, durably.
 *
 * Only an MDS that may campaign continues from its own catalog with a
 * new leader: its catalog is a prefix of the history (the record in
 * etcd names it).  Any other standby takes a snapshot from each new
 * leader, since it may hold changes the new leader never had.
 *
 * While a standby follows, it serves no request (loop.c answers
 * PROTO_ENOTLEADER), so the catalog may be closed and replaced under
 * mds->lock while nothing else uses it.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nettle/sha2.h>

#include "buf.h"
#include "cleanup.h"
#include "deadline.h"
#include "frame.h"
#include "full-rw.h"
#include "log.h"

#include "internal.h"
#include "election.h"

#define STANDBY_TIMEOUT_MS 5000
#define STANDBY_RETRY_MS 200
#define STANDBY_PULL_WAIT_MS 1000
#define SNAPSHOT_FILE "snapshot.tmp"

struct mds_standby {
  struct mds *mds;
  pthread_t thread;
  bool started;
  bool stop; /* atomic */
  struct proto_client *c;
  uint64_t epoch;   /* of the leader followed, 0: none yet */
  bool own_catalog; /* may go on from its own catalog */
  uint64_t after;   /* the catalog's change sequence */
  uint8_t *partial; /* batch AFTER + 1 as far as received */
  size_t plen, pcap;
};

static bool
stopping (struct mds_standby *sb)
{
  return __atomic_load_n (&sb->stop, __ATOMIC_SEQ_CST);
}

static void
drop_connection (struct mds_standby *sb)
{
  proto_client_close (sb->c);
  sb->c = NULL;
}

/* Read the leader's snapshot into DIR/SNAPSHOT_FILE.  Returns 0 or
 * -errno (logged).
 */
static int
fetch_snapshot (struct mds_standby *sb, const char *path)
{
  struct proto_backup_request req = { .max = PROTO_BACKUP_CHUNK_MAX };
  struct proto_backup_chunk chunk;
  struct sha256_ctx sha;
  uint8_t digest[SHA256_DIGEST_SIZE], want[PROTO_BACKUP_SHA256_SIZE];
  char errmsg[PROTO_ERRMSG_MAX + 1];
  uint64_t size = 0;
  int fd, r;

  fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd == -1) {
    r = -errno;
    log_error ("standby: %s: %s", path, strerror (-r));
    return r;
  }
  sha256_init (&sha);
  for (;;) {
    struct proto_wbuf wb = { 0 };
    void *reply = NULL;
    uint32_t len;

    proto_encode_backup_request (&req, &wb);
    r = wb.err
            ? wb.err
            : proto_client_call (sb->c, PROTO_OP_CATALOG_BACKUP, 0, wb.data,
                                 wb.len, &reply, &len, errmsg, sizeof errmsg);
    proto_wbuf_free (&wb);
    if (r < 0) {
      log_warn ("standby: snapshot from %s: %s", proto_client_address (sb->c),
                errmsg[0] ? errmsg : strerror (-r));
      goto out;
    }
    r = proto_decode_backup_chunk (reply, len, &chunk);
    if (r == 0 && (chunk.offset != req.offset ||
                   (req.backup_id != 0 && chunk.backup_id != req.backup_id)))
      r = -EBADMSG;
    if (r == 0 && chunk.len > 0 && full_write (fd, chunk.data, chunk.len) < 0)
      r = -errno;
    if (r == 0) {
      sha256_update (&sha, chunk.len, chunk.data);
      req.backup_id = chunk.backup_id;
      req.offset += chunk.len;
      size = chunk.size;
      memcpy (want, chunk.sha256, sizeof want);
    }
    free (reply);
    if (r < 0) {
      log_warn ("standby: snapshot from %s: %s", proto_client_address (sb->c),
                strerror (-r));
      goto out;
    }
    if (req.offset == size)
      break;
    if (chunk.len == 0) {
      r = -EBADMSG;
      goto out;
    }
  }
  sha256_digest (&sha, sizeof digest, digest);
  if (memcmp (digest, want, sizeof digest) != 0) {
    log_warn ("standby: the snapshot's SHA-256 does not match");
    r = -EIO;
    goto out;
  }
  if (fsync (fd) == -1) {
    r = -errno;
    goto out;
  }
  log_info ("standby: snapshot of %" PRIu64 " bytes from %s", size,
            proto_client_address (sb->c));
out:
  close (fd);
  return r;
}

/* Replace the catalog with the leader's snapshot.  Returns 0 or
 * -errno.
 */
static int
bootstrap (struct mds_standby *sb)
{
  struct mds *mds = sb->mds;
  CLEANUP_FREE char *path = NULL;
  struct catalog_cluster cluster;
  catalog *cat = NULL;
  uint64_t seq;
  int r;

  if (asprintf (&path, "%s/%s", mds->db_dir, SNAPSHOT_FILE) < 0)
    return -ENOMEM;
  r = fetch_snapshot (sb, path);
  if (r < 0) {
    unlink (path);
    return r;
  }
  pthread_mutex_lock (&mds->lock);
  catalog_close (mds->cat);
  mds->cat = NULL;
  r = mds_restore (mds->db_dir, path, true) < 0 ? -EIO : 0;
  if (r == 0)
    r = catalog_open (mds->db_dir, 0, &cat);
  if (r == 0)
    r = catalog_cluster_get (cat, &cluster);
  if (r == 0)
    r = catalog_change_seq (cat, &seq);
  if (r == 0) {
    mds->cat = cat;
    mds->cluster = cluster;
  }
  else
    catalog_close (cat);
  pthread_mutex_unlock (&mds->lock);
  unlink (path);
  if (r < 0) {
    log_error ("standby: cannot install the snapshot: %s",
               catalog_strerror (r));
    return r;
  }
  sb->after = seq;
  sb->plen = 0;
  sb->own_catalog = true;
  log_info ("standby: catalog from the leader's snapshot, at change %" PRIu64,
            seq);
  return 0;
}

/* Apply the NB complete batches at the start of sb->partial, whose
 * lengths B[].len give, in one transaction, and keep what follows them
 * (part of the next batch).  Returns 0 or -ESTALE.
 */
static int
apply_batches (struct mds_standby *sb, struct catalog_change_batch *b,
               size_t nb)
{
  size_t i, done = 0;
  int r;

  if (nb == 0)
    return 0;
  for (i = 0; i < nb; i++) {
    b[i].changes = sb->partial + done;
    done += b[i].len;
  }
  r = catalog_apply_changes_many (sb->mds->cat, b, nb);
  if (r < 0) {
    log_warn ("standby: changes %" PRIu64 " to %" PRIu64 ": %s", b[0].seq,
              b[nb - 1].seq, catalog_strerror (r));
    return -ESTALE;
  }
  sb->after = b[nb - 1].seq;
  memmove (sb->partial, sb->partial + done, sb->plen - done);
  sb->plen -= done;
  return 0;
}

/* Take the chunks of REP: the batches they complete are applied in one
 * transaction, so that the standby syncs once per pull however many
 * leader commits it carries; what the next pull acknowledges is durable
 * either way.  Returns 0, -ESTALE (start again from a snapshot) or
 * -errno.
 */
static int
take_chunks (struct mds_standby *sb, const struct proto_repl_reply *rep)
{
  CLEANUP_FREE struct catalog_change_batch *b = NULL;
  uint64_t next = sb->after + 1;
  size_t nb = 0, start = 0; /* of batch NEXT in sb->partial */
  uint32_t i;
  int r = 0, r2;

  if (rep->n > 0) {
    b = calloc (rep->n, sizeof *b);
    if (b == NULL)
      return -ENOMEM;
  }
  for (i = 0; i < rep->n; i++) {
    const struct proto_repl_chunk *c = &rep->chunks[i];

    if (c->seq != next || c->offset != sb->plen - start) {
      r = -EPROTO;
      break;
    }
    if (sb->plen + c->len > sb->pcap) {
      size_t cap = sb->pcap ? sb->pcap : 65536;
      uint8_t *p;

      while (cap < sb->plen + c->len)
        cap *= 2;
      p = realloc (sb->partial, cap);
      if (p == NULL) {
        r = -ENOMEM;
        break;
      }
      sb->partial = p;
      sb->pcap = cap;
    }
    memcpy (sb->partial + sb->plen, c->data, c->len);
    sb->plen += c->len;
    if (sb->plen - start < c->total)
      continue;
    b[nb].seq = c->seq;
    b[nb].len = sb->plen - start;
    nb++;
    start = sb->plen;
    next++;
  }
  /* The batches completed before a bad chunk are good. */
  r2 = apply_batches (sb, b, nb);
  return r2 < 0 ? r2 : r;
}

/* One REPL_PULL.  Returns 0, -ESTALE or -errno. */
static int
pull (struct mds_standby *sb)
{
  struct proto_repl_pull req = {
    .after = sb->after,
    .have = (uint32_t)sb->plen,
    .max = PROTO_REPL_CHUNK_MAX,
    .wait_ms = STANDBY_PULL_WAIT_MS,
  };
  struct proto_repl_reply rep;
  struct proto_wbuf wb = { 0 };
  char errmsg[PROTO_ERRMSG_MAX + 1];
  void *reply = NULL;
  uint32_t len;
  int r;

  snprintf (req.name, sizeof req.name, "%s", sb->mds->ha_name);
  proto_encode_repl_pull (&req, &wb);
  r = wb.err ? wb.err
             : proto_client_call (sb->c, PROTO_OP_REPL_PULL, 0, wb.data, wb.len,
                                  &reply, &len, errmsg, sizeof errmsg);
  proto_wbuf_free (&wb);
  if (r < 0) {
    log_debug ("standby: REPL_PULL: %s", errmsg[0] ? errmsg : strerror (-r));
    return r;
  }
  r = proto_decode_repl_reply (reply, len, &rep);
  if (r == 0) {
    r = take_chunks (sb, &rep);
    proto_repl_reply_free (&rep);
  }
  free (reply);
  return r;
}

/* Connect to the leader the election names, if any.  Returns 0 or
 * -errno.
 */
static int
connect_leader (struct mds_standby *sb)
{
  struct mds *mds = sb->mds;
  struct election_leader l;
  char errmsg[PROTO_ERRMSG_MAX + 64];
  int r;

  election_get_leader (mds->ha_election, &l);
  if (l.epoch == 0 || strcmp (l.name, mds->ha_name) == 0 ||
      l.advertise[0] == '\0')
    return -EAGAIN;
  r = proto_client_connect (l.advertise, PROTO_ROLE_MDS, NULL,
                            STANDBY_TIMEOUT_MS + STANDBY_PULL_WAIT_MS, &sb->c,
                            NULL, errmsg, sizeof errmsg);
  if (r < 0) {
    log_debug ("standby: %s: %s", l.advertise, errmsg);
    return r;
  }
  if (l.epoch != sb->epoch) {
    if (sb->epoch != 0 || !sb->own_catalog) {
      log_info ("standby: following %s (%s), epoch %" PRIu64
                ": from a snapshot",
                l.name, l.advertise, l.epoch);
      sb->own_catalog = false;
    }
    else
      log_info ("standby: following %s (%s), epoch %" PRIu64
                " from change %" PRIu64,
                l.name, l.advertise, l.epoch, sb->after);
    sb->epoch = l.epoch;
  }
  return 0;
}

static void *
standby_thread (void *arg)
{
  struct mds_standby *sb = arg;
  int r;

  log_set_thread_name ("standby");
  while (!stopping (sb)) {
    if (sb->c == NULL && connect_leader (sb) < 0) {
      usleep (STANDBY_RETRY_MS * 1000);
      continue;
    }
    if (!sb->own_catalog || sb->mds->cat == NULL) {
      r = bootstrap (sb);
      if (r < 0) {
        drop_connection (sb);
        usleep (STANDBY_RETRY_MS * 1000);
      }
      continue;
    }
    r = pull (sb);
    if (r == -ESTALE) {
      sb->own_catalog = false;
      continue;
    }
    if (r < 0) {
      drop_connection (sb);
      usleep (STANDBY_RETRY_MS * 1000);
    }
  }
  drop_connection (sb);
  return NULL;
}

int
mds_standby_start (struct mds *mds, bool own_catalog, struct mds_standby **out)
{
  struct mds_standby *sb = calloc (1, sizeof *sb);
  int r;

  *out = NULL;
  if (sb == NULL)
    return -ENOMEM;
  sb->mds = mds;
  sb->own_catalog = own_catalog && mds->cat != NULL;
  if (sb->own_catalog && catalog_change_seq (mds->cat, &sb->after) < 0)
    sb->own_catalog = false;
  r = -pthread_create (&sb->thread, NULL, standby_thread, sb);
  if (r < 0) {
    free (sb);
    return r;
  }
  sb->started = true;
  *out = sb;
  return 0;
}

void
mds_standby_stop (struct mds_standby *sb)
{
  if (sb == NULL)
    return;
  __atomic_store_n (&sb->stop, true, __ATOMIC_SEQ_CST);
  if (sb->started)
    pthread_join (sb->thread, NULL);
  free (sb->partial);
  free (sb);
}

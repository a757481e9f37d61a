/* The on-disk store: DIR/superblock, DIR/data and the free-slot list.
 *
 * The superblock and the clean-shutdown marker DIR/clean are encoded
 * and checked by superblock.c, which describes their layout.  Here they
 * are read and written: the superblock is always replaced atomically
 * (temp file, fsync, rename, fsync of the directory); an unformatted
 * superblock keeps the server uuid stable between the first
 * registration and formatting.  A clean stop writes the marker
 * (atomically, synced) once the data file is synced and the index
 * closed; a start reads it and removes it durably before serving, so it
 * exists only while no server runs on the store and everything
 * acknowledged before the last stop is durable.
 *
 * ss_crc_file checksums a range of the data file, for the handlers of
 * SEG_HASH (req-repair.c) and SEG_PULL (pull.c).
 */

#include <config.h>

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "cleanup.h"
#include "crc32c.h"
#include "full-rw.h"
#include "log.h"
#include "parse.h"

#include "internal.h"

#define SB_TMP "superblock.tmp"
#define CLEAN_NAME "clean"
#define CLEAN_TMP "clean.tmp"
#define DATA_NAME "data"
#define INDEX_NAME "index"

/* Draw a new index id: random and non-zero.  Returns 0 or -errno. */
int
ss_store_index_id_new (uint64_t *id)
{
  uint8_t b[8];
  size_t got;
  ssize_t n;

  do {
    for (got = 0; got < sizeof b; got += n) {
      n = getrandom (b + got, sizeof b - got, 0);
      if (n == -1 && errno == EINTR)
        n = 0;
      else if (n == -1)
        return -errno;
    }
    memcpy (id, b, sizeof b);
  } while (*id == 0);
  return 0;
}

/* Create DIR and its missing parents (mode 0755). */
static int
mkdir_p (const char *dir)
{
  CLEANUP_FREE char *copy = strdup (dir);
  char *p;

  if (copy == NULL)
    return -ENOMEM;
  for (p = copy + 1; *p; p++) {
    if (*p != '/')
      continue;
    *p = '\0';
    if (mkdir (copy, 0755) == -1 && errno != EEXIST)
      return -errno;
    *p = '/';
  }
  if (mkdir (copy, 0755) == -1 && errno != EEXIST)
    return -errno;
  return 0;
}

/* Write BUF (LEN bytes) as DIR/NAME atomically: DIR/TMP, fsync, rename,
 * fsync of the directory.  Returns 0 or -errno (not logged).
 */
static int
replace_file (struct ss_store *st, const char *tmp, const char *name,
              const void *buf, size_t len)
{
  CLEANUP_CLOSE int fd = -1;
  int r;

  fd = openat (st->dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd == -1)
    return -errno;
  r = full_write (fd, buf, len);
  if (r < 0)
    return r;
  if (fsync (fd) == -1 || renameat (st->dir_fd, tmp, st->dir_fd, name) == -1 ||
      fsync (st->dir_fd) == -1)
    return -errno;
  return 0;
}

/* Replace the superblock atomically with ST's fields. */
static int
sb_write (struct ss_store *st)
{
  uint8_t buf[SS_SB_SIZE];
  int r;

  ss_sb_encode (st, buf);
  r = replace_file (st, SB_TMP, SS_SB_NAME, buf, sizeof buf);
  if (r < 0)
    log_error ("superblock: %s/%s: %s", st->dir, SS_SB_NAME, strerror (-r));
  return r;
}

/* Read the superblock, or write an unformatted one with a new uuid when
 * there is none.
 */
static int
sb_read_or_create (struct ss_store *st, uint64_t size)
{
  uint8_t buf[SS_SB_SIZE];
  CLEANUP_CLOSE int fd = -1;
  ssize_t n;
  int r;

  fd = openat (st->dir_fd, SS_SB_NAME, O_RDONLY | O_CLOEXEC);
  if (fd == -1 && errno == ENOENT) {
    r = uuid_generate_random (st->uuid);
    if (r < 0) {
      log_error ("superblock: generating a uuid: %s", strerror (-r));
      return r;
    }
    st->capacity = size;
    st->formatted = false;
    st->sb_version = SS_SB_VERSION;
    return sb_write (st);
  }
  if (fd == -1) {
    r = -errno;
    log_error ("superblock: %s/%s: %s", st->dir, SS_SB_NAME, strerror (-r));
    return r;
  }
  n = pread (fd, buf, sizeof buf, 0);
  if (n != SS_SB_SIZE) {
    log_error ("superblock: %s/%s: %s", st->dir, SS_SB_NAME,
               n == -1 ? strerror (errno) : "short file");
    return n == -1 ? -errno : -EINVAL;
  }
  return ss_sb_decode (st, buf);
}

/* Open the data file of a formatted store and check its size. */
static int
data_open (struct ss_store *st)
{
  struct stat sb;
  int fd;

  fd = openat (st->dir_fd, DATA_NAME, O_RDWR | O_CLOEXEC);
  if (fd == -1) {
    int r = -errno;

    log_error ("data: %s/%s: %s", st->dir, DATA_NAME, strerror (-r));
    return r;
  }
  if (fstat (fd, &sb) == -1 || (uint64_t)sb.st_size < st->capacity) {
    log_error ("data: %s/%s: smaller than the capacity %" PRIu64, st->dir,
               DATA_NAME, st->capacity);
    close (fd);
    return -EINVAL;
  }
  st->data_fd = fd;
  return 0;
}

/* Open (creating if needed) the store in DIR and lock it.  SIZE is the
 * capacity to use when the store is created.  A formatted store has its
 * data file opened; an unformatted one waits for ss_store_format.
 * Returns 0 and *OUT, or -errno after logging why.
 */
int
ss_store_open (const char *dir, uint64_t size, struct ss_store **out)
{
  struct ss_store *st;
  int r;

  *out = NULL;
  st = calloc (1, sizeof *st);
  if (st == NULL || (st->dir = strdup (dir)) == NULL) {
    free (st);
    log_error ("store: %s: %s", dir, strerror (ENOMEM));
    return -ENOMEM;
  }
  st->dir_fd = st->data_fd = -1;

  r = mkdir_p (dir);
  if (r < 0) {
    log_error ("store: mkdir: %s: %s", dir, strerror (-r));
    goto err;
  }
  st->dir_fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (st->dir_fd == -1) {
    r = -errno;
    log_error ("store: %s: %s", dir, strerror (-r));
    goto err;
  }
  if (flock (st->dir_fd, LOCK_EX | LOCK_NB) == -1) {
    r = -errno;
    log_error ("store: %s: %s", dir,
               r == -EWOULDBLOCK ? "in use by another tessera-storesrv"
                                 : strerror (-r));
    goto err;
  }
  if (mkdirat (st->dir_fd, INDEX_NAME, 0755) == -1 && errno != EEXIST) {
    r = -errno;
    log_error ("store: mkdir: %s/%s: %s", dir, INDEX_NAME, strerror (-r));
    goto err;
  }
  r = sb_read_or_create (st, size);
  if (r < 0)
    goto err;
  if (st->formatted) {
    r = data_open (st);
    if (r < 0)
      goto err;
  }
  *out = st;
  return 0;

err:
  ss_store_close (st);
  return r;
}

/* Begin formatting an unformatted store for a cluster: wipe any index
 * and data left by an interrupted format, create the sparse data file of
 * whole slots, and draw the index id.  The caller then creates the index
 * with that id (guard.c) and commits with ss_store_format_commit; until
 * then the superblock still says unformatted, so an interrupted format
 * starts over.  Returns 0 or -errno after logging why.
 */
int
ss_store_format (struct ss_store *st, const uint8_t cluster_uuid[16],
                 uint32_t segment_size)
{
  CLEANUP_FREE char *index_path = NULL;
  uint64_t nslots, capacity, index_id = 0;
  int fd, r;

  assert (!st->formatted);
  if (!ss_segment_size_valid (segment_size) || uuid_is_zero (cluster_uuid)) {
    log_error ("format: %s: the MDS sent segment size %" PRIu32
               " or a zero cluster uuid",
               st->dir, segment_size);
    return -EINVAL;
  }
  nslots = st->capacity / segment_size;
  if (nslots >= UINT32_MAX)
    nslots = UINT32_MAX - 1;
  if (nslots == 0) {
    log_error ("format: %s: capacity %" PRIu64 " is less than one segment"
               " (%" PRIu32 " bytes)",
               st->dir, st->capacity, segment_size);
    return -ENOSPC;
  }
  capacity = nslots * segment_size;
  r = ss_store_index_id_new (&index_id);
  if (r < 0) {
    log_error ("format: generating the index id: %s", strerror (-r));
    return r;
  }

  index_path = ss_store_index_path (st);
  if (index_path == NULL)
    return -ENOMEM;
  r = ss_index_wipe (index_path);
  if (r < 0) {
    log_error ("format: %s: %s", index_path, strerror (-r));
    return r;
  }
  fd = openat (st->dir_fd, DATA_NAME, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC,
               0644);
  if (fd == -1 || ftruncate (fd, capacity) == -1 || fsync (fd) == -1) {
    r = -errno;
    log_error ("format: %s/%s: %s", st->dir, DATA_NAME, strerror (-r));
    if (fd >= 0)
      close (fd);
    return r;
  }

  memcpy (st->cluster_uuid, cluster_uuid, 16);
  st->segment_size = segment_size;
  st->capacity = capacity;
  st->nslots = nslots;
  st->index_id = index_id;
  if (st->data_fd >= 0)
    close (st->data_fd);
  st->data_fd = fd;
  return 0;
}

/* Finish formatting (after ss_store_format, once the index exists with
 * ST's index id): write the formatted superblock.  Returns 0 or -errno
 * after logging why.
 */
int
ss_store_format_commit (struct ss_store *st)
{
  int r;

  assert (!st->formatted && st->index_id != 0 && st->data_fd >= 0);
  st->formatted = true;
  st->sb_version = SS_SB_VERSION;
  r = sb_write (st);
  if (r < 0)
    st->formatted = false;
  return r;
}

/* Give a version-1 store (formatted, no index id) the index id INDEX_ID,
 * already written into its index: rewrite the superblock as version 2.
 * Returns 0 or -errno after logging why.
 */
int
ss_store_set_index_id (struct ss_store *st, uint64_t index_id)
{
  assert (st->formatted && index_id != 0);
  st->index_id = index_id;
  st->sb_version = SS_SB_VERSION;
  return sb_write (st);
}

/* Close the store (releasing its lock) and free it.  Accepts NULL. */
void
ss_store_close (struct ss_store *st)
{
  if (st == NULL)
    return;
  if (st->data_fd >= 0)
    close (st->data_fd);
  if (st->dir_fd >= 0)
    close (st->dir_fd);
  free (st->free_slots);
  free (st->dir);
  free (st);
}

/* The index directory's path (malloc'd, caller frees), or NULL. */
char *
ss_store_index_path (const struct ss_store *st)
{
  char *p;

  if (asprintf (&p, "%s/%s", st->dir, INDEX_NAME) == -1)
    return NULL;
  return p;
}

/* Build the free-slot list from USED_MAP (a bitmap of nslots bits, set
 * for slots the index holds) and set USED.  Ring thread, at start-up.
 */
int
ss_store_slots_init (struct ss_store *st, const uint8_t *used_map)
{
  uint32_t slot, nused = 0;

  free (st->free_slots);
  st->free_slots = malloc ((size_t)st->nslots * sizeof (uint32_t));
  if (st->free_slots == NULL)
    return -ENOMEM;
  st->nfree = 0;
  /* Push the highest slot first so the lowest are handed out first. */
  for (slot = st->nslots; slot-- > 0;) {
    if (used_map[slot / 8] & (1u << (slot % 8)))
      nused++;
    else
      st->free_slots[st->nfree++] = slot;
  }
  __atomic_store_n (&st->used, (uint64_t)nused * st->segment_size,
                    __ATOMIC_RELAXED);
  return 0;
}

/* Take a free slot.  Returns 0 or -ENOSPC.  Ring thread. */
int
ss_store_slot_alloc (struct ss_store *st, uint32_t *slot)
{
  if (st->nfree == 0)
    return -ENOSPC;
  *slot = st->free_slots[--st->nfree];
  __atomic_add_fetch (&st->used, st->segment_size, __ATOMIC_RELAXED);
  return 0;
}

/* Return SLOT to the free list.  Ring thread. */
void
ss_store_slot_free (struct ss_store *st, uint32_t slot)
{
  assert (slot < st->nslots);
  assert (st->nfree < st->nslots);
  st->free_slots[st->nfree++] = slot;
  __atomic_sub_fetch (&st->used, st->segment_size, __ATOMIC_RELAXED);
}

/* Byte offset of SLOT in the data file. */
uint64_t
ss_store_slot_offset (const struct ss_store *st, uint32_t slot)
{
  return (uint64_t)slot * st->segment_size;
}

/* Bytes of the capacity that cannot take new segments, as reported to
 * the MDS: those in allocated slots, or more when the filesystem under
 * the (sparse) data file has less room left than the free slots: then
 * the capacity minus that room, so that the MDS stops placing segments
 * here at its high-water mark.  Any thread.
 */
uint64_t
ss_store_used (const struct ss_store *st)
{
  uint64_t used = __atomic_load_n (&st->used, __ATOMIC_RELAXED);
  struct statvfs sv;
  uint64_t room;

  if (st->data_fd >= 0 && used < st->capacity &&
      fstatvfs (st->data_fd, &sv) == 0 && sv.f_frsize > 0) {
    room = (uint64_t)sv.f_bavail > UINT64_MAX / sv.f_frsize
               ? UINT64_MAX
               : (uint64_t)sv.f_bavail * sv.f_frsize;
    if (room < st->capacity - used)
      used = st->capacity - room;
  }
  return used;
}

/* Read the clean-shutdown marker of a formatted store into ST->CLEAN,
 * CLEAN_INDEX_ID and CLEAN_SEQ.  A missing marker leaves CLEAN false; a
 * corrupt one too, with a warning.  Returns 0 or -errno (logged).
 */
int
ss_store_clean_read (struct ss_store *st)
{
  uint8_t buf[SS_CLEAN_SIZE + 1];
  CLEANUP_CLOSE int fd = -1;
  ssize_t n;

  st->clean = false;
  fd = openat (st->dir_fd, CLEAN_NAME, O_RDONLY | O_CLOEXEC);
  if (fd == -1 && errno == ENOENT)
    return 0;
  if (fd == -1) {
    int r = -errno;

    log_error ("store: %s/%s: %s", st->dir, CLEAN_NAME, strerror (-r));
    return r;
  }
  do
    n = pread (fd, buf, sizeof buf, 0);
  while (n == -1 && errno == EINTR);
  if (n == -1) {
    int r = -errno;

    log_error ("store: %s/%s: %s", st->dir, CLEAN_NAME, strerror (-r));
    return r;
  }
  if (ss_clean_decode (buf, n, &st->clean_index_id, &st->clean_seq) < 0) {
    log_warn ("store: %s/%s: not a clean-shutdown marker: ignored", st->dir,
              CLEAN_NAME);
    return 0;
  }
  st->clean = true;
  return 0;
}

/* Remove the clean-shutdown marker durably (unlink, fsync of the
 * directory), before the server serves: from now on the store may hold
 * acknowledged writes that are not durable.  Returns 0 or -errno
 * (logged).
 */
int
ss_store_clean_remove (struct ss_store *st)
{
  if (unlinkat (st->dir_fd, CLEAN_NAME, 0) == -1 && errno != ENOENT) {
    int r = -errno;

    log_error ("store: %s/%s: %s", st->dir, CLEAN_NAME, strerror (-r));
    return r;
  }
  if (fsync (st->dir_fd) == -1) {
    int r = -errno;

    log_error ("store: %s: fsync: %s", st->dir, strerror (-r));
    return r;
  }
  return 0;
}

/* Write the clean-shutdown marker, naming the index INDEX_ID at commit
 * count SEQ, atomically and synced.  Only after a clean stop: the data
 * file synced and the index closed.  Returns 0 or -errno (logged).
 */
int
ss_store_clean_write (struct ss_store *st, uint64_t index_id, uint64_t seq)
{
  uint8_t buf[SS_CLEAN_SIZE];
  int r;

  ss_clean_encode (index_id, seq, buf);
  r = replace_file (st, CLEAN_TMP, CLEAN_NAME, buf, sizeof buf);
  if (r < 0)
    log_error ("store: %s/%s: %s", st->dir, CLEAN_NAME, strerror (-r));
  return r;
}

/* CRC-32C of LEN bytes of FD at POS (zeros past the end of the file),
 * read through BUF (BUFLEN bytes).  Returns 0 and *CRC or -errno.  Any
 * thread (the caller keeps the slot from being freed).
 */
int
ss_crc_file (int fd, uint64_t pos, uint32_t len, uint8_t *buf, size_t buflen,
             uint32_t *crc)
{
  uint32_t c = 0;

  while (len > 0) {
    size_t want = len < buflen ? len : buflen;
    ssize_t n = pread (fd, buf, want, pos);

    if (n == -1 && errno == EINTR)
      continue;
    if (n == -1)
      return -errno;
    if (n == 0) {
      memset (buf, 0, want);
      n = want;
    }
    c = crc32c (c, buf, n);
    pos += n;
    len -= n;
  }
  *crc = c;
  return 0;
}

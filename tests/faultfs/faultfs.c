/* faultfs: a fault-injecting FUSE passthrough filesystem for the tests,
 * in the spirit of Jepsen's LazyFS.
 *
 *   faultfs [-v] [-d] [-f] [-o OPT] BACKING_DIR MOUNTPOINT
 *
 * Every file and directory is passed through to BACKING_DIR, except file
 * data: a write is kept in faultfs's own memory (per file, in 4 KiB
 * pages filled from the backing file), served to reads over the backing
 * file's content, and written to the backing file only by an fsync or
 * fdatasync of that file (of any range: FUSE passes no range, so the
 * whole file is written back) or by a write with O_SYNC/O_DSYNC.  What
 * no sync has covered can be lost on command, as a power cut loses a
 * page cache.  Opened files use direct_io, so the kernel's page cache
 * above FUSE never keeps data faultfs has dropped.  Metadata operations
 * (create, truncate, fallocate, rename, unlink, mkdir) go straight to the
 * backing directory, as if a journal committed each at once; a
 * truncate or a punched hole also drops pending data in its range.
 *
 * Control: write commands (one a line) to MOUNTPOINT/.faultfs:
 *
 *   drop          discard every pending write of every file (a power cut)
 *   fail-fsync N  the next N fsyncs fail with EIO and, like Linux after
 *                 a writeback error, the pending data of the file they
 *                 covered is dropped (marked clean: reads see the
 *                 backing file's older content)
 *   fail-write N  the next N writes fail with EIO, storing nothing
 *   clear         cancel pending fail-fsync and fail-write
 *   stat          print the counters to stderr
 *
 * Reading MOUNTPOINT/.faultfs prints counters, "name value" a line.
 * -v logs commands and injected faults to stderr; -d also turns on
 * libfuse's debug output (and implies -f).
 */

#include <config.h>

#define FUSE_USE_VERSION 31

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <unistd.h>

#define PAGE 4096u
#define CTL_NAME ".faultfs"
#define CTL_PATH "/" CTL_NAME

/* One pending page: the file's content at [idx * PAGE, + PAGE), made of
 * the backing file's content and the writes since the last sync.
 */
struct page {
  uint64_t idx;
  unsigned char data[PAGE];
};

/* The pending data of one backing inode: pages sorted by idx. */
struct ffile {
  struct ffile *next;
  dev_t dev;
  ino_t ino;
  struct page **pages;
  size_t npages, cap;
  uint64_t end; /* highest byte written + 1 since the last sync */
};

/* An open file: the backing fd and its pending data, or the control
 * file (fd -1).
 */
struct handle {
  int fd;
  struct ffile *f;
};

/* Everything below is under LOCK: faultfs serializes its operations. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int backing_fd = -1;
static const char *backing_dir;
static bool verbose;
static struct ffile *files;
static uint64_t fail_fsync, fail_write;
static struct {
  uint64_t writes, bytes_written, reads, fsyncs, drops, dropped_bytes;
  uint64_t injected_fsync_errors, injected_write_errors;
  uint64_t synced_bytes;
} st;

/* Log (with -v) a printf-style message to stderr. */
static void __attribute__ ((format (printf, 1, 2))) logv (const char *fmt, ...)
{
  va_list ap;

  if (!verbose)
    return;
  va_start (ap, fmt);
  fprintf (stderr, "faultfs: ");
  vfprintf (stderr, fmt, ap);
  fputc ('\n', stderr);
  va_end (ap);
}

/* The backing path of PATH (relative to backing_fd): "." for "/". */
static const char *
rel (const char *path)
{
  while (*path == '/')
    path++;
  return *path ? path : ".";
}

/* The pending data of SB's inode, created if CREATE. */
static struct ffile *
file_find (const struct stat *sb, bool create)
{
  struct ffile *f;

  for (f = files; f; f = f->next)
    if (f->dev == sb->st_dev && f->ino == sb->st_ino)
      return f;
  if (!create)
    return NULL;
  f = calloc (1, sizeof *f);
  if (f == NULL)
    return NULL;
  f->dev = sb->st_dev;
  f->ino = sb->st_ino;
  f->next = files;
  files = f;
  return f;
}

/* The index of the first page of F with idx >= IDX. */
static size_t
page_lower (const struct ffile *f, uint64_t idx)
{
  size_t lo = 0, hi = f->npages;

  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;

    if (f->pages[mid]->idx < idx)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/* The pending page IDX of F, created from the backing file FD if
 * needed.  Returns NULL and sets *ERR on failure.
 */
static struct page *
page_get (struct ffile *f, int fd, uint64_t idx, int *err)
{
  size_t i = page_lower (f, idx), done = 0;
  struct page *p;

  if (i < f->npages && f->pages[i]->idx == idx)
    return f->pages[i];
  if (f->npages == f->cap) {
    size_t cap = f->cap ? 2 * f->cap : 64;
    struct page **n = realloc (f->pages, cap * sizeof *n);

    if (n == NULL) {
      *err = -ENOMEM;
      return NULL;
    }
    f->pages = n;
    f->cap = cap;
  }
  p = malloc (sizeof *p);
  if (p == NULL) {
    *err = -ENOMEM;
    return NULL;
  }
  p->idx = idx;
  while (done < PAGE) {
    ssize_t n = pread (fd, p->data + done, PAGE - done, idx * PAGE + done);

    if (n == -1 && errno == EINTR)
      continue;
    if (n == -1) {
      *err = -errno;
      free (p);
      return NULL;
    }
    if (n == 0)
      break;
    done += n;
  }
  memset (p->data + done, 0, PAGE - done);
  memmove (&f->pages[i + 1], &f->pages[i], (f->npages - i) * sizeof *f->pages);
  f->pages[i] = p;
  f->npages++;
  return p;
}

/* Remove the pending pages [I, J) of F. */
static void
pages_remove (struct ffile *f, size_t i, size_t j)
{
  size_t k;

  for (k = i; k < j; k++)
    free (f->pages[k]);
  memmove (&f->pages[i], &f->pages[j], (f->npages - j) * sizeof *f->pages);
  f->npages -= j - i;
}

/* Drop every pending page of F (counted as dropped). */
static void
file_drop (struct ffile *f)
{
  st.dropped_bytes += (uint64_t)f->npages * PAGE;
  pages_remove (f, 0, f->npages);
  f->end = 0;
}

/* Forget pending data of F in [OFF, OFF + LEN) (a punched hole or a
 * truncate; LEN UINT64_MAX: to the end): whole pages go, partial pages
 * get zeros.
 */
static void
file_forget_range (struct ffile *f, uint64_t off, uint64_t len)
{
  uint64_t end = len > UINT64_MAX - off ? UINT64_MAX : off + len;
  size_t i = page_lower (f, off / PAGE), j = i;

  while (j < f->npages && f->pages[j]->idx * PAGE < end) {
    struct page *p = f->pages[j];
    uint64_t ps = p->idx * PAGE, pe = ps + PAGE;
    uint64_t a = off > ps ? off : ps, b = end < pe ? end : pe;

    if (a == ps && b == pe) {
      pages_remove (f, j, j + 1);
      continue;
    }
    memset (p->data + (a - ps), 0, b - a);
    j++;
  }
}

/* The size of F's file: the backing size BACKING or the pending end. */
static uint64_t
file_size (const struct ffile *f, uint64_t backing)
{
  return f && f->npages && f->end > backing ? f->end : backing;
}

/* Write F's pending pages back to FD (not synced) and forget them.
 * Returns 0 or -errno (the pages stay pending).
 */
static int
file_writeback (struct ffile *f, int fd)
{
  struct stat sb;
  uint64_t size;

  if (f == NULL || f->npages == 0)
    return 0;
  if (fstat (fd, &sb) == -1)
    return -errno;
  size = file_size (f, sb.st_size);
  while (f->npages > 0) {
    struct page *p = f->pages[0];
    uint64_t ps = p->idx * PAGE;
    size_t len = ps >= size ? 0 : size - ps < PAGE ? size - ps : PAGE;
    size_t done = 0;

    while (done < len) {
      ssize_t n = pwrite (fd, p->data + done, len - done, ps + done);

      if (n == -1 && errno == EINTR)
        continue;
      if (n == -1)
        return -errno;
      done += n;
    }
    st.synced_bytes += len;
    pages_remove (f, 0, 1);
  }
  f->end = 0;
  return 0;
}

/* The pending data of backing path PATH's inode, if any. */
static struct ffile *
file_of_path (const char *path, struct stat *sb)
{
  if (fstatat (backing_fd, rel (path), sb, AT_SYMLINK_NOFOLLOW) == -1)
    return NULL;
  return S_ISREG (sb->st_mode) ? file_find (sb, false) : NULL;
}

/* The control file's text (counters), malloc'd. */
static char *
ctl_text (void)
{
  uint64_t pending = 0, nfiles = 0;
  struct ffile *f;
  char *s = NULL;

  for (f = files; f; f = f->next) {
    pending += (uint64_t)f->npages * PAGE;
    nfiles += f->npages > 0;
  }
  if (asprintf (&s,
                "pending_bytes %" PRIu64 "\n"
                "pending_files %" PRIu64 "\n"
                "writes %" PRIu64 "\n"
                "bytes_written %" PRIu64 "\n"
                "reads %" PRIu64 "\n"
                "fsyncs %" PRIu64 "\n"
                "synced_bytes %" PRIu64 "\n"
                "drops %" PRIu64 "\n"
                "dropped_bytes %" PRIu64 "\n"
                "injected_fsync_errors %" PRIu64 "\n"
                "injected_write_errors %" PRIu64 "\n"
                "fail_fsync %" PRIu64 "\n"
                "fail_write %" PRIu64 "\n",
                pending, nfiles, st.writes, st.bytes_written, st.reads,
                st.fsyncs, st.synced_bytes, st.drops, st.dropped_bytes,
                st.injected_fsync_errors, st.injected_write_errors, fail_fsync,
                fail_write) == -1)
    return NULL;
  return s;
}

/* Run one control command LINE.  Returns 0 or -EINVAL. */
static int
ctl_command (const char *line)
{
  unsigned long long n;
  struct ffile *f;
  char word[32];
  int k;

  k = sscanf (line, "%31s %llu", word, &n);
  if (k < 1)
    return 0;
  if (k == 1 && strcmp (word, "drop") == 0) {
    uint64_t before = st.dropped_bytes;

    for (f = files; f; f = f->next)
      file_drop (f);
    st.drops++;
    logv ("drop: %" PRIu64 " pending bytes dropped", st.dropped_bytes - before);
    return 0;
  }
  if (k == 1 && strcmp (word, "stat") == 0) {
    char *s = ctl_text ();

    if (s == NULL)
      return -ENOMEM;
    fprintf (stderr, "faultfs: stat:\n%s", s);
    free (s);
    return 0;
  }
  if (k == 1 && strcmp (word, "clear") == 0) {
    fail_fsync = fail_write = 0;
    logv ("clear");
    return 0;
  }
  if (k == 2 && strcmp (word, "fail-fsync") == 0) {
    fail_fsync = n;
    logv ("the next %llu fsyncs fail", n);
    return 0;
  }
  if (k == 2 && strcmp (word, "fail-write") == 0) {
    fail_write = n;
    logv ("the next %llu writes fail", n);
    return 0;
  }
  logv ("unknown command: %s", line);
  return -EINVAL;
}

/* ---- FUSE operations ---- */

/* Set up: no attribute or entry caching, direct I/O everywhere. */
static void *
ff_init (struct fuse_conn_info *conn, struct fuse_config *cfg)
{
  cfg->use_ino = 1;
  cfg->nullpath_ok = 1;
  cfg->hard_remove = 1;
  cfg->direct_io = 1;
  cfg->kernel_cache = 0;
  cfg->entry_timeout = 0;
  cfg->attr_timeout = 0;
  cfg->negative_timeout = 0;
  return NULL;
}

/* stat: the backing file's, with the size pending writes give it. */
static int
ff_getattr (const char *path, struct stat *sb, struct fuse_file_info *fi)
{
  struct handle *h = fi ? (struct handle *)(uintptr_t)fi->fh : NULL;
  struct ffile *f;
  int r = 0;

  if ((h && h->fd == -1) || (path && strcmp (path, CTL_PATH) == 0)) {
    memset (sb, 0, sizeof *sb);
    sb->st_mode = S_IFREG | 0600;
    sb->st_nlink = 1;
    sb->st_ino = 1;
    return 0;
  }
  pthread_mutex_lock (&lock);
  if (h ? fstat (h->fd, sb) == -1
        : fstatat (backing_fd, rel (path), sb, AT_SYMLINK_NOFOLLOW) == -1)
    r = -errno;
  else if (S_ISREG (sb->st_mode)) {
    f = h ? h->f : file_find (sb, false);
    sb->st_size = file_size (f, sb->st_size);
  }
  pthread_mutex_unlock (&lock);
  return r;
}

/* access(2) on the backing path. */
static int
ff_access (const char *path, int mask)
{
  if (strcmp (path, CTL_PATH) == 0)
    return 0;
  return faccessat (backing_fd, rel (path), mask, 0) == -1 ? -errno : 0;
}

/* readlink(2) on the backing path. */
static int
ff_readlink (const char *path, char *buf, size_t size)
{
  ssize_t n = readlinkat (backing_fd, rel (path), buf, size - 1);

  if (n == -1)
    return -errno;
  buf[n] = '\0';
  return 0;
}

/* opendir: remember the path (readdir may get none). */
static int
ff_opendir (const char *path, struct fuse_file_info *fi)
{
  char *p = strdup (path);

  if (p == NULL)
    return -ENOMEM;
  fi->fh = (uintptr_t)p;
  return 0;
}

/* closedir: forget the path. */
static int
ff_releasedir (const char *path, struct fuse_file_info *fi)
{
  free ((char *)(uintptr_t)fi->fh);
  return 0;
}

/* List a backing directory (and the control file at the root). */
static int
ff_readdir (const char *path, void *buf, fuse_fill_dir_t filler, off_t off,
            struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
  struct dirent *de;
  DIR *d;
  int fd;

  if (fi && fi->fh)
    path = (const char *)(uintptr_t)fi->fh;
  if (path == NULL)
    return -EBADF;
  fd = openat (backing_fd, rel (path), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd == -1)
    return -errno;
  d = fdopendir (fd);
  if (d == NULL) {
    int r = -errno;

    close (fd);
    return r;
  }
  while ((de = readdir (d)) != NULL)
    filler (buf, de->d_name, NULL, 0, 0);
  if (strcmp (path, "/") == 0)
    filler (buf, CTL_NAME, NULL, 0, 0);
  closedir (d);
  return 0;
}

/* mkdir(2) on the backing path. */
static int
ff_mkdir (const char *path, mode_t mode)
{
  return mkdirat (backing_fd, rel (path), mode) == -1 ? -errno : 0;
}

/* rmdir(2) on the backing path. */
static int
ff_rmdir (const char *path)
{
  return unlinkat (backing_fd, rel (path), AT_REMOVEDIR) == -1 ? -errno : 0;
}

/* symlink(2) in the backing directory. */
static int
ff_symlink (const char *target, const char *path)
{
  return symlinkat (target, backing_fd, rel (path)) == -1 ? -errno : 0;
}

/* unlink(2): the last name of a file takes its pending data along. */
static int
ff_unlink (const char *path)
{
  struct ffile *f;
  struct stat sb;
  int r = 0;

  if (strcmp (path, CTL_PATH) == 0)
    return -EPERM;
  pthread_mutex_lock (&lock);
  f = file_of_path (path, &sb);
  if (unlinkat (backing_fd, rel (path), 0) == -1)
    r = -errno;
  else if (f && sb.st_nlink == 1)
    file_drop (f);
  pthread_mutex_unlock (&lock);
  return r;
}

/* rename(2): a replaced file's pending data goes with it. */
static int
ff_rename (const char *from, const char *to, unsigned int flags)
{
  struct ffile *f;
  struct stat sb;
  int r = 0;

  if (flags)
    return -EINVAL;
  if (strcmp (from, CTL_PATH) == 0 || strcmp (to, CTL_PATH) == 0)
    return -EPERM;
  pthread_mutex_lock (&lock);
  f = file_of_path (to, &sb);
  if (renameat (backing_fd, rel (from), backing_fd, rel (to)) == -1)
    r = -errno;
  else if (f && sb.st_nlink == 1) {
    struct stat sf;

    if (fstatat (backing_fd, rel (to), &sf, AT_SYMLINK_NOFOLLOW) == 0 &&
        (sf.st_ino != sb.st_ino || sf.st_dev != sb.st_dev))
      file_drop (f);
  }
  pthread_mutex_unlock (&lock);
  return r;
}

/* chmod(2) on the backing path. */
static int
ff_chmod (const char *path, mode_t mode, struct fuse_file_info *fi)
{
  struct handle *h = fi ? (struct handle *)(uintptr_t)fi->fh : NULL;

  if (h && h->fd >= 0)
    return fchmod (h->fd, mode) == -1 ? -errno : 0;
  return fchmodat (backing_fd, rel (path), mode, 0) == -1 ? -errno : 0;
}

/* utimensat(2) on the backing path. */
static int
ff_utimens (const char *path, const struct timespec tv[2],
            struct fuse_file_info *fi)
{
  struct handle *h = fi ? (struct handle *)(uintptr_t)fi->fh : NULL;

  if (h && h->fd == -1)
    return 0;
  if (h)
    return futimens (h->fd, tv) == -1 ? -errno : 0;
  return utimensat (backing_fd, rel (path), tv, AT_SYMLINK_NOFOLLOW) == -1
             ? -errno
             : 0;
}

/* truncate(2) at once on the backing file; pending data past SIZE goes. */
static int
ff_truncate (const char *path, off_t size, struct fuse_file_info *fi)
{
  struct handle *h = fi ? (struct handle *)(uintptr_t)fi->fh : NULL;
  struct ffile *f = NULL;
  struct stat sb;
  int r = 0, fd = -1;

  if ((h && h->fd == -1) || (path && strcmp (path, CTL_PATH) == 0))
    return 0;
  pthread_mutex_lock (&lock);
  if (h) {
    f = h->f;
    if (ftruncate (h->fd, size) == -1)
      r = -errno;
  }
  else {
    fd = openat (backing_fd, rel (path), O_WRONLY | O_CLOEXEC);
    if (fd == -1 || ftruncate (fd, size) == -1)
      r = -errno;
    else if (fstat (fd, &sb) == 0)
      f = file_find (&sb, false);
    if (fd >= 0)
      close (fd);
  }
  if (r == 0 && f) {
    file_forget_range (f, size, UINT64_MAX);
    if (f->end > (uint64_t)size)
      f->end = size;
  }
  pthread_mutex_unlock (&lock);
  return r;
}

/* Open (or create, with O_CREAT in FLAGS and MODE) the backing file of
 * PATH into FI; write-only opens read too (to fill pages).
 */
static int
open_common (const char *path, struct fuse_file_info *fi, int flags,
             mode_t mode)
{
  struct handle *h;
  struct stat sb;
  int fd, r;

  h = calloc (1, sizeof *h);
  if (h == NULL)
    return -ENOMEM;
  if (strcmp (path, CTL_PATH) == 0) {
    h->fd = -1;
    fi->fh = (uintptr_t)h;
    fi->direct_io = 1;
    return 0;
  }
  flags &= ~(O_APPEND | O_DIRECT);
  if ((flags & O_ACCMODE) == O_WRONLY)
    flags = (flags & ~O_ACCMODE) | O_RDWR;
  fd = openat (backing_fd, rel (path), flags | O_CLOEXEC, mode);
  if (fd == -1) {
    r = -errno;
    free (h);
    return r;
  }
  pthread_mutex_lock (&lock);
  if (fstat (fd, &sb) == -1 || (h->f = file_find (&sb, true)) == NULL) {
    r = errno ? -errno : -ENOMEM;
    pthread_mutex_unlock (&lock);
    close (fd);
    free (h);
    return r;
  }
  if (flags & O_TRUNC)
    file_drop (h->f);
  pthread_mutex_unlock (&lock);
  h->fd = fd;
  fi->fh = (uintptr_t)h;
  fi->direct_io = 1;
  return 0;
}

/* open(2). */
static int
ff_open (const char *path, struct fuse_file_info *fi)
{
  return open_common (path, fi, fi->flags, 0);
}

/* creat(2). */
static int
ff_create (const char *path, mode_t mode, struct fuse_file_info *fi)
{
  return open_common (path, fi, fi->flags | O_CREAT, mode);
}

/* Read: the backing file's content with the pending pages over it. */
static int
ff_read (const char *path, char *buf, size_t size, off_t off,
         struct fuse_file_info *fi)
{
  struct handle *h = (struct handle *)(uintptr_t)fi->fh;
  struct stat sb;
  uint64_t fsize, len;
  size_t done = 0, i;
  int r;

  pthread_mutex_lock (&lock);
  if (h->fd == -1) {
    char *s = ctl_text ();
    size_t n = s ? strlen (s) : 0;

    r = s == NULL ? -ENOMEM : (uint64_t)off >= n ? 0 : (int)(n - off);
    if (r > (int)size)
      r = size;
    if (r > 0)
      memcpy (buf, s + off, r);
    free (s);
    pthread_mutex_unlock (&lock);
    return r;
  }
  st.reads++;
  if (fstat (h->fd, &sb) == -1) {
    r = -errno;
    goto out;
  }
  fsize = file_size (h->f, sb.st_size);
  if ((uint64_t)off >= fsize) {
    r = 0;
    goto out;
  }
  len = fsize - off < size ? fsize - off : size;
  while (done < len) {
    ssize_t n = pread (h->fd, buf + done, len - done, off + done);

    if (n == -1 && errno == EINTR)
      continue;
    if (n == -1) {
      r = -errno;
      goto out;
    }
    if (n == 0)
      break;
    done += n;
  }
  memset (buf + done, 0, len - done);
  for (i = page_lower (h->f, off / PAGE);
       i < h->f->npages && h->f->pages[i]->idx * PAGE < off + len; i++) {
    struct page *p = h->f->pages[i];
    uint64_t ps = p->idx * PAGE, pe = ps + PAGE;
    uint64_t a = (uint64_t)off > ps ? (uint64_t)off : ps;
    uint64_t b = off + len < pe ? off + len : pe;

    memcpy (buf + (a - off), p->data + (a - ps), b - a);
  }
  r = len;
out:
  pthread_mutex_unlock (&lock);
  return r;
}

/* fsync of H's file (or the injected failure): write its pending pages
 * back and sync the backing file.  Under LOCK.
 */
static int
sync_file (struct handle *h, int datasync)
{
  int r;

  st.fsyncs++;
  if (fail_fsync > 0) {
    fail_fsync--;
    st.injected_fsync_errors++;
    logv ("fsync: injected EIO, %zu pending pages dropped", h->f->npages);
    file_drop (h->f);
    return -EIO;
  }
  r = file_writeback (h->f, h->fd);
  if (r == 0 && (datasync ? fdatasync (h->fd) : fsync (h->fd)) == -1)
    r = -errno;
  return r;
}

/* Write: into pending pages (or EIO when a failure is armed). */
static int
ff_write (const char *path, const char *buf, size_t size, off_t off,
          struct fuse_file_info *fi)
{
  struct handle *h = (struct handle *)(uintptr_t)fi->fh;
  size_t done = 0;
  int r = 0;

  pthread_mutex_lock (&lock);
  if (h->fd == -1) {
    char *s = strndup (buf, size), *line, *save = NULL;

    if (s == NULL)
      r = -ENOMEM;
    for (line = s ? strtok_r (s, "\n", &save) : NULL; line && r == 0;
         line = strtok_r (NULL, "\n", &save)) {
      r = ctl_command (line);
    }
    free (s);
    pthread_mutex_unlock (&lock);
    return r == 0 ? (int)size : r;
  }
  if (fail_write > 0) {
    fail_write--;
    st.injected_write_errors++;
    logv ("write: injected EIO at %jd, %zu bytes", (intmax_t)off, size);
    r = -EIO;
    goto out;
  }
  while (done < size) {
    uint64_t pos = off + done, idx = pos / PAGE, in = pos % PAGE;
    size_t n = PAGE - in < size - done ? PAGE - in : size - done;
    struct page *p = page_get (h->f, h->fd, idx, &r);

    if (p == NULL)
      goto out;
    memcpy (p->data + in, buf + done, n);
    done += n;
  }
  if ((uint64_t)off + size > h->f->end)
    h->f->end = off + size;
  st.writes++;
  st.bytes_written += size;
  if (fi->flags & (O_SYNC | O_DSYNC))
    r = sync_file (h, (fi->flags & O_SYNC) != O_SYNC);
out:
  pthread_mutex_unlock (&lock);
  return r < 0 ? r : (int)size;
}

/* fsync(2), fdatasync(2), io_uring fsync of any range. */
static int
ff_fsync (const char *path, int datasync, struct fuse_file_info *fi)
{
  struct handle *h = (struct handle *)(uintptr_t)fi->fh;
  int r;

  if (h->fd == -1)
    return 0;
  pthread_mutex_lock (&lock);
  r = sync_file (h, datasync);
  pthread_mutex_unlock (&lock);
  return r;
}

/* fallocate(2) at once on the backing file; a punched hole also drops
 * the pending data in its range.
 */
static int
ff_fallocate (const char *path, int mode, off_t off, off_t len,
              struct fuse_file_info *fi)
{
  struct handle *h = (struct handle *)(uintptr_t)fi->fh;
  int r = 0;

  if (h->fd == -1)
    return -EOPNOTSUPP;
  pthread_mutex_lock (&lock);
  if (fallocate (h->fd, mode, off, len) == -1)
    r = -errno;
  else if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))
    file_forget_range (h->f, off, len);
  pthread_mutex_unlock (&lock);
  return r;
}

/* statvfs(2) of the backing directory. */
static int
ff_statfs (const char *path, struct statvfs *sv)
{
  return fstatvfs (backing_fd, sv) == -1 ? -errno : 0;
}

/* close(2) of the last descriptor: pending data stays (a page cache). */
static int
ff_release (const char *path, struct fuse_file_info *fi)
{
  struct handle *h = (struct handle *)(uintptr_t)fi->fh;

  if (h->fd >= 0)
    close (h->fd);
  free (h);
  return 0;
}

static const struct fuse_operations ops = {
  .init = ff_init,
  .getattr = ff_getattr,
  .access = ff_access,
  .readlink = ff_readlink,
  .opendir = ff_opendir,
  .readdir = ff_readdir,
  .releasedir = ff_releasedir,
  .mkdir = ff_mkdir,
  .rmdir = ff_rmdir,
  .symlink = ff_symlink,
  .unlink = ff_unlink,
  .rename = ff_rename,
  .chmod = ff_chmod,
  .utimens = ff_utimens,
  .truncate = ff_truncate,
  .open = ff_open,
  .create = ff_create,
  .read = ff_read,
  .write = ff_write,
  .fsync = ff_fsync,
  .fallocate = ff_fallocate,
  .statfs = ff_statfs,
  .release = ff_release,
};

/* Print the usage to FP. */
static void
usage (FILE *fp)
{
  fprintf (fp, "usage: faultfs [-v] [-d] [-f] [-o OPT] BACKING_DIR "
               "MOUNTPOINT\n"
               "A FUSE passthrough that keeps unsynced writes in memory;\n"
               "write drop, fail-fsync N, fail-write N or clear to\n"
               "MOUNTPOINT/" CTL_NAME ", read it for counters.\n");
}

int
main (int argc, char *argv[])
{
  char **fargv;
  int fargc = 0, i;

  fargv = calloc (argc + 4, sizeof *fargv);
  if (fargv == NULL) {
    perror ("faultfs");
    return 1;
  }
  fargv[fargc++] = argv[0];
  for (i = 1; i < argc; i++) {
    if (strcmp (argv[i], "--help") == 0 || strcmp (argv[i], "-h") == 0) {
      usage (stdout);
      return 0;
    }
    if (strcmp (argv[i], "-v") == 0 || strcmp (argv[i], "--verbose") == 0) {
      verbose = true;
      continue;
    }
    if (strcmp (argv[i], "-d") == 0)
      verbose = true;
    if (strcmp (argv[i], "-o") == 0 && i + 1 < argc) {
      fargv[fargc++] = argv[i++];
      fargv[fargc++] = argv[i];
      continue;
    }
    if (argv[i][0] != '-' && backing_dir == NULL) {
      backing_dir = argv[i];
      continue;
    }
    fargv[fargc++] = argv[i];
  }
  if (backing_dir == NULL) {
    usage (stderr);
    return 1;
  }
  backing_fd = open (backing_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (backing_fd == -1) {
    fprintf (stderr, "faultfs: %s: %s\n", backing_dir, strerror (errno));
    return 1;
  }
  umask (0);
  return fuse_main (fargc, fargv, &ops, NULL);
}

/* Whole-buffer read and write on blocking fds (see full-rw.h). */

#include <config.h>

#include <errno.h>
#include <stdint.h>
#include <unistd.h>

#include "full-rw.h"

int
full_read (int fd, void *buf, size_t n)
{
  uint8_t *p = buf;
  ssize_t r;

  while (n > 0) {
    r = read (fd, p, n);
    if (r == -1) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    if (r == 0)
      return -EPIPE;
    p += r;
    n -= r;
  }
  return 0;
}

int
full_write (int fd, const void *buf, size_t n)
{
  const uint8_t *p = buf;
  ssize_t r;

  while (n > 0) {
    r = write (fd, p, n);
    if (r == -1) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    p += r;
    n -= r;
  }
  return 0;
}

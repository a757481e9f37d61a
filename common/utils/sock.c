/* Addresses and sockets (see sock.h). */

#include <config.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "sock.h"

#define UNIX_PREFIX "unix:"

/* Split "HOST:PORT" or "[V6]:PORT" into HOST and PORT buffers.  Returns 0
 * or -EINVAL.
 */
static int
split_host_port (const char *addr, char *host, size_t hostlen, char *port,
                 size_t portlen)
{
  const char *colon, *h = addr;
  size_t n;

  if (addr[0] == '[') {
    const char *close = strchr (addr, ']');

    if (close == NULL || close[1] != ':')
      return -EINVAL;
    h = addr + 1;
    n = close - h;
    colon = close + 1;
  }
  else {
    colon = strrchr (addr, ':');
    if (colon == NULL || strchr (addr, ':') != colon)
      return -EINVAL;
    n = colon - addr;
  }
  if (n == 0 || n >= hostlen)
    return -EINVAL;
  memcpy (host, h, n);
  host[n] = '\0';
  if (colon[1] == '\0' || strlen (colon + 1) >= portlen ||
      strspn (colon + 1, "0123456789") != strlen (colon + 1) ||
      atol (colon + 1) > 65535)
    return -EINVAL;
  strcpy (port, colon + 1);
  return 0;
}

/* Fill a unix socket address from "unix:PATH".  Returns 0 or -EINVAL. */
static int
unix_address (const char *addr, struct sockaddr_un *sun)
{
  const char *path = addr + strlen (UNIX_PREFIX);

  if (path[0] == '\0' || strlen (path) >= sizeof sun->sun_path)
    return -EINVAL;
  memset (sun, 0, sizeof *sun);
  sun->sun_family = AF_UNIX;
  strcpy (sun->sun_path, path);
  return 0;
}

static int
is_unix (const char *addr)
{
  return strncmp (addr, UNIX_PREFIX, strlen (UNIX_PREFIX)) == 0;
}

int
sock_address_check (const char *addr)
{
  char host[256], port[8];
  struct sockaddr_un sun;

  if (is_unix (addr))
    return unix_address (addr, &sun);
  return split_host_port (addr, host, sizeof host, port, sizeof port);
}

/* Resolve a TCP address.  *RES is freed with freeaddrinfo. */
static int
resolve (const char *addr, int passive, struct addrinfo **res)
{
  char host[256], port[8];
  struct addrinfo hints = { .ai_socktype = SOCK_STREAM };
  int r;

  if (split_host_port (addr, host, sizeof host, port, sizeof port) < 0)
    return -EINVAL;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  r = getaddrinfo (host, port, &hints, res);
  if (r != 0)
    return r == EAI_SYSTEM ? -errno : -EHOSTUNREACH;
  return 0;
}

int
sock_listen (const char *addr)
{
  struct addrinfo *res, *ai;
  int fd, r = -EADDRNOTAVAIL, one = 1;

  if (is_unix (addr)) {
    struct sockaddr_un sun;

    if (unix_address (addr, &sun) < 0)
      return -EINVAL;
    fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1)
      return -errno;
    unlink (sun.sun_path);
    if (bind (fd, (struct sockaddr *)&sun, sizeof sun) == -1 ||
        listen (fd, 128) == -1) {
      r = -errno;
      close (fd);
      return r;
    }
    return fd;
  }

  r = resolve (addr, 1, &res);
  if (r < 0)
    return r;
  for (ai = res; ai; ai = ai->ai_next) {
    fd =
        socket (ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd == -1) {
      r = -errno;
      continue;
    }
    setsockopt (fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind (fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen (fd, 128) == 0) {
      freeaddrinfo (res);
      return fd;
    }
    r = -errno;
    close (fd);
  }
  freeaddrinfo (res);
  return r;
}

/* Connect FD to SA, waiting at most TIMEOUT_MS (0: blocking connect). */
static int
connect_timeout (int fd, const struct sockaddr *sa, socklen_t len,
                 int timeout_ms)
{
  struct pollfd pfd = { .fd = fd, .events = POLLOUT };
  int flags, r, err = 0;
  socklen_t errlen = sizeof err;

  if (timeout_ms <= 0)
    return connect (fd, sa, len) == -1 ? -errno : 0;
  flags = fcntl (fd, F_GETFL);
  if (flags == -1 || fcntl (fd, F_SETFL, flags | O_NONBLOCK) == -1)
    return -errno;
  r = connect (fd, sa, len);
  if (r == -1 && errno != EINPROGRESS && errno != EAGAIN)
    return -errno;
  if (r == -1) {
    do
      r = poll (&pfd, 1, timeout_ms);
    while (r == -1 && errno == EINTR);
    if (r == -1)
      return -errno;
    if (r == 0)
      return -ETIMEDOUT;
    if (getsockopt (fd, SOL_SOCKET, SO_ERROR, &err, &errlen) == -1)
      return -errno;
    if (err)
      return -err;
  }
  if (fcntl (fd, F_SETFL, flags) == -1)
    return -errno;
  return 0;
}

int
sock_connect (const char *addr, int timeout_ms)
{
  struct addrinfo *res, *ai;
  int fd, r, one = 1;

  if (is_unix (addr)) {
    struct sockaddr_un sun;

    if (unix_address (addr, &sun) < 0)
      return -EINVAL;
    fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd == -1)
      return -errno;
    r = connect_timeout (fd, (struct sockaddr *)&sun, sizeof sun, timeout_ms);
    if (r < 0) {
      close (fd);
      return r;
    }
    return fd;
  }

  r = resolve (addr, 0, &res);
  if (r < 0)
    return r;
  r = -EHOSTUNREACH;
  for (ai = res; ai; ai = ai->ai_next) {
    fd =
        socket (ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd == -1) {
      r = -errno;
      continue;
    }
    r = connect_timeout (fd, ai->ai_addr, ai->ai_addrlen, timeout_ms);
    if (r == 0) {
      setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      freeaddrinfo (res);
      return fd;
    }
    close (fd);
  }
  freeaddrinfo (res);
  return r;
}

/* Format SA as an address string. */
static int
format_address (const struct sockaddr_storage *ss, socklen_t len, char *buf,
                size_t buflen)
{
  char host[INET6_ADDRSTRLEN];

  switch (ss->ss_family) {
  case AF_UNIX: {
    const struct sockaddr_un *sun = (const struct sockaddr_un *)ss;

    if (len <= offsetof (struct sockaddr_un, sun_path) || !sun->sun_path[0])
      return -ENOENT;
    snprintf (buf, buflen, UNIX_PREFIX "%s", sun->sun_path);
    return 0;
  }
  case AF_INET: {
    const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;

    inet_ntop (AF_INET, &sin->sin_addr, host, sizeof host);
    snprintf (buf, buflen, "%s:%u", host, ntohs (sin->sin_port));
    return 0;
  }
  case AF_INET6: {
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;

    inet_ntop (AF_INET6, &sin6->sin6_addr, host, sizeof host);
    snprintf (buf, buflen, "[%s]:%u", host, ntohs (sin6->sin6_port));
    return 0;
  }
  default:
    return -EAFNOSUPPORT;
  }
}

int
sock_local_address (int fd, char *buf, size_t len)
{
  struct sockaddr_storage ss;
  socklen_t sslen = sizeof ss;

  if (getsockname (fd, (struct sockaddr *)&ss, &sslen) == -1)
    return -errno;
  return format_address (&ss, sslen, buf, len);
}

void
sock_peer_address (int fd, char *buf, size_t len)
{
  struct sockaddr_storage ss;
  socklen_t sslen = sizeof ss;

  if (getpeername (fd, (struct sockaddr *)&ss, &sslen) == -1 ||
      format_address (&ss, sslen, buf, len) < 0)
    snprintf (buf, len, "%s", ss.ss_family == AF_UNIX ? "unix" : "?");
}

int
sock_set_timeout (int fd, int timeout_ms)
{
  struct timeval tv = { .tv_sec = timeout_ms / 1000,
                        .tv_usec = (timeout_ms % 1000) * 1000 };

  if (setsockopt (fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == -1 ||
      setsockopt (fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) == -1)
    return -errno;
  return 0;
}

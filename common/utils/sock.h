/* Addresses and sockets.
 *
 * An address is "HOST:PORT", "[V6]:PORT" or "unix:PATH".  HOST may be a
 * name or a numeric address; PORT may be 0 when listening (an ephemeral
 * port, see sock_local_address).
 */

#ifndef TESSERA_UTILS_SOCK_H
#define TESSERA_UTILS_SOCK_H

#include <stddef.h>
#include <sys/socket.h>

/* Check the syntax of ADDR (no name lookup).  Returns 0 or -EINVAL. */
extern int sock_address_check (const char *addr);

/* Listen on ADDR (SO_REUSEADDR, backlog 128, close-on-exec).  A unix
 * socket path that exists is removed first.  Returns the fd, or -errno
 * (-EINVAL for a bad address).
 */
extern int sock_listen (const char *addr);

/* Connect to ADDR, waiting at most TIMEOUT_MS (0: the system's default).
 * TCP sockets get TCP_NODELAY.  Returns the fd (close-on-exec, blocking)
 * or -errno (-EINVAL bad address, -ETIMEDOUT, -ECONNREFUSED, ...).
 */
extern int sock_connect (const char *addr, int timeout_ms);

/* The address FD is bound to, in the form sock_listen takes ("127.0.0.1:
 * 41234", "unix:/path"), into BUF.  Returns 0 or -errno.
 */
extern int sock_local_address (int fd, char *buf, size_t len);

/* The peer's address of FD for log messages, never failing ("?" then). */
extern void sock_peer_address (int fd, char *buf, size_t len);

/* Set SO_RCVTIMEO and SO_SNDTIMEO on FD.  Returns 0 or -errno. */
extern int sock_set_timeout (int fd, int timeout_ms);

#endif /* TESSERA_UTILS_SOCK_H */

/* Optional TLS between components (GnuTLS, PSK from the cluster key).
 *
 * TLS is a cluster-wide setting: every daemon runs with --tls, the
 * plugin with tls=true and the CLI with --tls, or none does.  The
 * pre-shared key is HMAC-SHA256 (cluster key, "tessera-tls-psk-v1") with
 * the user name "tessera"; the priority string is GnuTLS's NORMAL with
 * the (EC)DHE-PSK key exchanges, so TLS 1.3 with forward secrecy is
 * negotiated.
 *
 * The code that speaks the protocol is unchanged: tls_wrap_client and
 * tls_wrap_server take a connected TCP or Unix socket and return one end
 * of a socketpair that carries the plaintext; two relay threads per
 * connection (one per direction: GnuTLS allows one sender and one
 * receiver on a session) move the bytes between that socketpair and the
 * TLS session.  Blocking clients, the MDS's connection threads and the
 * storage server's io_uring loop all keep working on a plain descriptor.
 * The cluster-key handshake (auth.h) still runs inside the TLS channel.
 */

#ifndef TESSERA_UTILS_TLS_H
#define TESSERA_UTILS_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "auth.h"

/* Turn TLS on for this process with the PSK derived from KEY.  Returns 0
 * or -errno with a message in ERRMSG.
 */
extern int tls_enable (const struct auth_key *key, char *errmsg, size_t errlen);

/* True once tls_enable has succeeded. */
extern bool tls_enabled (void);

/* Client side: run the TLS handshake on the connected socket FD (at most
 * TIMEOUT_MS, 0: no bound), then relay.  Returns the plaintext descriptor
 * (FD now belongs to the relay), or -errno with a message in ERRMSG; FD
 * is closed on failure.
 */
extern int tls_wrap_client (int fd, int timeout_ms, char *errmsg,
                            size_t errlen);

/* Server side: return the plaintext descriptor at once; the handshake
 * (bounded by TIMEOUT_MS) runs in the relay thread, and if it fails the
 * plaintext descriptor sees end of file.  PEER names the peer in the log.
 * FD belongs to the relay from now on, even on failure (closed).
 * Returns the descriptor or -errno.
 */
extern int tls_wrap_server (int fd, int timeout_ms, const char *peer);

#endif /* TESSERA_UTILS_TLS_H */

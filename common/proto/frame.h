/* Frames on blocking sockets, and a synchronous request/reply client.
 *
 * Used by the MDS (one thread per connection), the CLI, the storage
 * server's MDS client and the plugin.  The storage server's io_uring loop
 * does not use these: it parses with proto_header_decode itself.
 */

#ifndef TESSERA_PROTO_FRAME_H
#define TESSERA_PROTO_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "protocol.h"

/* Send one frame: header then PAYLOAD (LEN bytes, may be NULL if 0), as
 * one writev.  Returns 0 or -errno.  Not thread-safe on one fd: callers
 * that share an fd hold a lock around it.
 */
extern int proto_send_frame (int fd, uint8_t opcode, uint16_t flags,
                             uint32_t status, uint64_t tag, const void *payload,
                             uint32_t len);

/* Send a failed reply with status STATUS and message FMT (truncated to
 * PROTO_ERRMSG_MAX).  Returns 0 or -errno.
 */
extern int proto_send_error (int fd, uint8_t opcode, uint64_t tag,
                             uint32_t status, const char *fmt, ...)
    __attribute__ ((format (printf, 5, 6)));

/* Receive one frame: validates the header (proto_header_decode with
 * proto_max_payload of its opcode, and at most MAX_PAYLOAD), then reads
 * the payload into a malloc'd buffer (*PAYLOAD, caller frees; NULL when
 * the length is 0).  Returns 0, -EPIPE (peer closed before a header),
 * -EBADMSG/-EPROTO/-EMSGSIZE (bad header: the caller should answer with
 * an error and close), or -errno.
 */
extern int proto_recv_frame (int fd, uint32_t max_payload,
                             struct proto_header *hdr, void **payload);

/* Synchronous client: one request at a time, replies matched by tag.
 * Thread-safe: calls on one client are serialized by its mutex.
 */
struct proto_client;

/* Connect to ADDR (sock_connect, TIMEOUT_MS) and, when TLS is enabled
 * (tls.h), wrap the socket in TLS.  Returns the descriptor to speak the
 * protocol on, or -errno with a message in ERRMSG (ERRLEN bytes).
 */
extern int proto_connect (const char *addr, int timeout_ms, char *errmsg,
                          size_t errlen);

/* A server's accepted socket FD: when TLS is enabled, wrap it (the TLS
 * handshake, bounded by TIMEOUT_MS, runs in the relay; PEER names the
 * peer in its log).  Returns the descriptor to speak the protocol on (FD
 * itself without TLS) or -errno (FD is then closed).
 */
extern int proto_accepted (int fd, int timeout_ms, const char *peer);

/* The client's side of the handshake on the connected, blocking socket
 * FD: HELLO as ROLE with identity UUID (may be NULL: zero), then AUTH,
 * the mutual proof of the process's cluster key (auth.h; see
 * auth_key_use).  On success *PEER (if not NULL) receives the server's
 * HELLO.  Returns 0 or -errno with a message for the user in ERRMSG
 * (ERRLEN bytes; may be NULL): -EACCES if either side failed to prove
 * the key, -EPROTO for another protocol version, -ENOKEY if no key is
 * loaded, -ETIMEDOUT if the socket's timeout expired.
 */
extern int proto_handshake (int fd, uint32_t role, const uint8_t *uuid,
                            struct proto_hello *peer, char *errmsg,
                            size_t errlen);

/* Connect to ADDR and run proto_handshake as ROLE with identity UUID.
 * TIMEOUT_MS bounds the connect and every later call (0: no bound).  On
 * success *OUT owns the connection and, if PEER is not NULL, it receives
 * the server's HELLO.  Returns 0 or -errno, with a message in ERRMSG
 * (may be NULL) as proto_handshake.
 */
extern int proto_client_connect (const char *addr, uint32_t role,
                                 const uint8_t *uuid, int timeout_ms,
                                 struct proto_client **out,
                                 struct proto_hello *peer, char *errmsg,
                                 size_t errlen);
/* proto_client_connect as an MDS (PROTO_ROLE_MDS) whose HELLO carries
 * MDS_EPOCH: the epoch it leads at, 0 for an MDS without --etcd.  A
 * storage server refuses it with -ESTALE (PROTO_ESTALE, a message naming
 * both epochs) if it has seen a higher epoch.
 */
extern int proto_client_connect_mds (const char *addr, const uint8_t *uuid,
                                     uint64_t mds_epoch, int timeout_ms,
                                     struct proto_client **out,
                                     struct proto_hello *peer, char *errmsg,
                                     size_t errlen);
/* Close and free (accepts NULL). */
extern void proto_client_close (struct proto_client *c);
/* The address it was connected to. */
extern const char *proto_client_address (const struct proto_client *c);

/* Send request OPCODE with PAYLOAD and wait for its reply.  On PROTO_OK
 * returns 0 and *REPLY (malloc'd, caller frees, NULL if empty) and
 * *REPLY_LEN.  On a failed status returns -errno of that status
 * (proto_status_to_errno) and copies the server's message into ERRMSG
 * (ERRLEN bytes, NUL-terminated; "" if none); ERRMSG may be NULL.  On a
 * transport error returns -errno (-EPIPE, -ETIMEDOUT, -EBADMSG ...) and
 * the connection is broken: every later call fails with -ENOTCONN.
 */
extern int proto_client_call (struct proto_client *c, uint8_t opcode,
                              uint16_t flags, const void *payload, uint32_t len,
                              void **reply, uint32_t *reply_len, char *errmsg,
                              size_t errlen);

/* Bound every later send and receive of C by TIMEOUT_MS (0: no bound),
 * as proto_client_connect's TIMEOUT_MS does.  Returns 0 or -errno.
 */
extern int proto_client_set_timeout (struct proto_client *c, int timeout_ms);

/* True once a transport error has broken the connection. */
extern int proto_client_broken (struct proto_client *c);

#endif /* TESSERA_PROTO_FRAME_H */

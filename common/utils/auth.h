/* The cluster key and the mutual challenge-response of every connection.
 *
 * Every process of a cluster holds the same 32-byte random key, kept in a
 * key file (64 hexadecimal digits and a newline, mode 0600) that
 * tessera-mds --init creates.  Every connection starts with a mutual
 * proof of that key, before any other message is accepted:
 *
 *   client -> server  HELLO   auth = CN (32 fresh random bytes)
 *   server -> client  HELLO   auth = SN (32 fresh random bytes) || SP
 *   client -> server  AUTH    payload = CP
 *   server -> client  AUTH    reply: PROTO_OK, or PROTO_EACCES and close
 *
 *   SP = HMAC-SHA256 (key, "tessera-auth-v1 server" || CN || SN || CR || SR)
 *   CP = HMAC-SHA256 (key, "tessera-auth-v1 client" || CN || SN || CR || SR)
 *
 * where CR and SR are the client's and server's roles (u32 big-endian).
 * The client checks SP before it sends CP, so a server without the key
 * learns nothing it could use; both sides contribute a fresh nonce, so a
 * recorded handshake cannot be replayed to either; the labels keep a
 * server's proof from being reflected as a client's.  The primitives are
 * nettle's (HMAC-SHA256, constant-time comparison); nonces come from
 * getrandom(2).
 *
 * This authenticates the peer at the start of the connection; it does
 * not protect the frames after it from an active man in the middle (use
 * TLS for that, see tessera-protocol(5)).
 */

#ifndef TESSERA_UTILS_AUTH_H
#define TESSERA_UTILS_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AUTH_KEY_SIZE 32
#define AUTH_NONCE_SIZE 32
#define AUTH_MAC_SIZE 32
/* Bytes of auth in the client's and in the server's HELLO. */
#define AUTH_CLIENT_HELLO_LEN AUTH_NONCE_SIZE
#define AUTH_SERVER_HELLO_LEN (AUTH_NONCE_SIZE + AUTH_MAC_SIZE)

/* Default key file of the CLI, the plugin and storage servers. */
#define AUTH_DEFAULT_KEY_FILE "/etc/tessera/cluster.key"
/* The key file's name in the MDS's --db directory. */
#define AUTH_KEY_FILE_NAME "cluster.key"

struct auth_key {
  uint8_t bytes[AUTH_KEY_SIZE];
};

/* Read the key file PATH into *KEY.  Refuses a file that is not a
 * regular file, that group or others may read or write (like ssh's
 * private keys), or that is not exactly 64 hexadecimal digits (and an
 * optional newline).  Returns 0, or -errno with a message naming the
 * file and what is wrong in ERRMSG (ERRLEN bytes).
 */
extern int auth_key_load (const char *path, struct auth_key *key, char *errmsg,
                          size_t errlen);

/* Create the key file PATH (it must not exist) with a new random key,
 * mode 0600, written and synced (file and directory).  Returns 0 and the
 * key in *KEY, or -errno with a message in ERRMSG.
 */
extern int auth_key_create (const char *path, struct auth_key *key,
                            char *errmsg, size_t errlen);

/* The process's cluster key: set once at start-up (auth_key_use) and
 * used by every handshake of the process (frame.c's clients, the
 * servers).  auth_key_current returns NULL until one is set.
 */
extern void auth_key_use (const struct auth_key *key);
extern const struct auth_key *auth_key_current (void);

/* Fill BUF with LEN random bytes from getrandom(2).  Returns 0 or -errno. */
extern int auth_random (void *buf, size_t len);

/* Client side.  auth_client_start makes the nonce CN (into *ST) and
 * returns it in HELLO_AUTH (AUTH_CLIENT_HELLO_LEN bytes).
 * auth_client_finish checks the server's HELLO auth (SERVER_AUTH, LEN
 * bytes, the server's role SROLE) and on success writes CP into PROOF.
 * Returns 0, -EACCES (the server did not prove the key) or -EPROTO (it
 * sent no proof at all: a server without authentication).
 */
struct auth_client {
  uint8_t cnonce[AUTH_NONCE_SIZE];
  uint32_t crole;
};
extern int auth_client_start (struct auth_client *st, uint32_t crole,
                              uint8_t hello_auth[AUTH_CLIENT_HELLO_LEN]);
extern int auth_client_finish (const struct auth_key *key,
                               const struct auth_client *st, uint32_t srole,
                               const uint8_t *server_auth, size_t len,
                               uint8_t proof[AUTH_MAC_SIZE]);

/* Server side.  auth_server_start takes the client's HELLO auth
 * (CLIENT_AUTH, LEN bytes, the client's role CROLE), keeps what the
 * check needs in *ST (a constant 72 bytes) and writes the server's HELLO
 * auth (SN || SP) into REPLY_AUTH.  Returns 0, -EACCES if the client sent
 * no nonce (a client without authentication) or -errno.
 * auth_server_check checks the client's AUTH payload and returns 0 or
 * -EACCES.
 */
struct auth_server {
  uint8_t cnonce[AUTH_NONCE_SIZE];
  uint8_t snonce[AUTH_NONCE_SIZE];
  uint32_t crole, srole;
};
extern int auth_server_start (const struct auth_key *key,
                              struct auth_server *st, uint32_t crole,
                              const uint8_t *client_auth, size_t len,
                              uint32_t srole,
                              uint8_t reply_auth[AUTH_SERVER_HELLO_LEN]);
extern int auth_server_check (const struct auth_key *key,
                              const struct auth_server *st, const void *payload,
                              size_t len);

#endif /* TESSERA_UTILS_AUTH_H */

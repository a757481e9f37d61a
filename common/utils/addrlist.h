/* Lists of MDS addresses, and which of them is current.
 *
 * A highly available MDS runs as several processes, one of them the
 * leader.  Every client of the MDS (the plugin, the CLI, the storage
 * servers) takes the list as "A,B,...": at most ADDRLIST_MAX addresses,
 * each in a form sock_address_check accepts (HOST:PORT, [V6]:PORT,
 * unix:PATH; a unix path cannot contain a comma).  A client keeps the
 * index of the address that last worked (addrlist_current), and moves
 * on (addrlist_next) when that address fails to connect or answers
 * PROTO_ENOTLEADER; a client tries at most l->n addresses in one pass,
 * so that it never loops.  One address is a list of one: it behaves as
 * a single address always has.
 *
 * Not thread-safe: the client that owns a list serializes its use (the
 * plugin under its MDS lock, the storage server on its MDS thread).
 */

#ifndef TESSERA_UTILS_ADDRLIST_H
#define TESSERA_UTILS_ADDRLIST_H

#include <stddef.h>

/* The most addresses a list may hold. */
#define ADDRLIST_MAX 8

struct addrlist {
  char *text;                /* the list as given, "A,B": for messages */
  char *addrs[ADDRLIST_MAX]; /* the addresses, in order (owned) */
  size_t n;                  /* how many: 1 to ADDRLIST_MAX */
  size_t current;            /* index of the address to use next */
};

/* Parse TEXT ("A" or "A,B,...") into *OUT, current address the first.
 * On success *OUT owns copies of the addresses (addrlist_free).
 * Returns 0, -EINVAL with a message naming the bad entry in ERRMSG
 * (ERRLEN bytes; may be NULL) for an empty list or entry, a bad
 * address or more than ADDRLIST_MAX entries, or -ENOMEM.  *OUT is
 * empty (n 0) after a failure.
 */
extern int addrlist_parse (const char *text, struct addrlist *out, char *errmsg,
                           size_t errlen);

/* Free L's addresses (L itself is the caller's; accepts an empty or
 * NULL list).
 */
extern void addrlist_free (struct addrlist *l);

/* The current address.  L must hold at least one. */
extern const char *addrlist_current (const struct addrlist *l);

/* The index of ADDR in L, or -1 if it is not in the list. */
extern int addrlist_find (const struct addrlist *l, const char *addr);

/* The leader's address named by a PROTO_ENOTLEADER message MSG ("not
 * the leader; the leader is at ADDR"), copied into BUF (LEN bytes).
 * Returns 0, or -ENOENT if MSG names none (no leader is known, or
 * another message), -ENAMETOOLONG if it does not fit.
 */
extern int addrlist_leader_hint (const char *msg, char *buf, size_t len);

/* The current address failed (no connection, a failed handshake, or a
 * PROTO_ENOTLEADER answer whose message is NOTLEADER_MSG; NULL for the
 * other failures): make current the leader the message names if it is
 * another address of the list, else the next address (wrapping
 * around).  Returns the new current index.
 */
extern size_t addrlist_next (struct addrlist *l, const char *notleader_msg);

#endif /* TESSERA_UTILS_ADDRLIST_H */

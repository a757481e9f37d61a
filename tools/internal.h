/* The tessera command line tool: shared declarations.
 *
 * Sections follow the .c file that defines them.  Every command function
 * returns 0 on success or a negative errno after it has printed a
 * "tessera: CONTEXT: REASON" line on stderr; main maps that to
 * EXIT_FAILURE and discards the command's output.  A few return
 * TOOL_FAILED_WITH_OUTPUT (below): exit 1, output kept.
 */

#ifndef TESSERA_TOOLS_INTERNAL_H
#define TESSERA_TOOLS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "protocol.h"
#include "addrlist.h"
#include "buf.h"

#define TOOL_PROGRAM "tessera"
#define TOOL_DEFAULT_MDS "127.0.0.1:7420"
#define TOOL_DEFAULT_TIMEOUT 30 /* seconds */
#define TOOL_MAX_TIMEOUT 86400  /* seconds */
#define TOOL_DEFAULT_REPLICAS 2
#define TOOL_DEFAULT_MAX_WAIT 3600 /* seconds, repair --wait */

/* What a command function returns besides 0 and -errno: the command ran
 * to the end and its output stands (it is printed), but the exit status
 * is 1.  volume verify returns it when replicas differ, repair --wait
 * when the cluster is still degraded after --max-wait.
 */
#define TOOL_FAILED_WITH_OUTPUT 1

/* Room for "volume create: " plus a volume name and some slack: the
 * context of error messages.  Longer names are truncated in messages only.
 */
#define TOOL_WHAT_MAX (64 + PROTO_NAME_MAX)

/* One run of the tool: parsed options, the output stream and the
 * connection to the MDS.  Single-threaded, so no lock.
 */
struct tool_ctx {
  struct addrlist mds;         /* --mds, else $TESSERA_MDS, else the default:
                                  the MDS addresses, current the one tried
                                  or connected last */
  const char *key_file;        /* --key-file, else $TESSERA_KEY_FILE, ... */
  bool json;                   /* --json */
  bool tls;                    /* --tls */
  int timeout_ms;              /* --timeout in milliseconds; 0: no bound */
  bool size_set;               /* --size was given */
  uint64_t size;               /* --size in bytes */
  bool replicas_set;           /* --replicas was given */
  uint32_t replicas;           /* --replicas */
  bool min_copies_set;         /* --min-copies was given */
  uint32_t min_copies;         /* --min-copies */
  bool wait;                   /* --wait */
  bool max_wait_set;           /* --max-wait was given */
  uint32_t max_wait;           /* --max-wait in seconds */
  bool repair;                 /* --repair */
  bool force;                  /* --force */
  FILE *out;                   /* spooled stdout: copied out only on success */
  struct proto_client *client; /* NULL until the first request */
};

/* ---- client.c ---- */

/* Print "tessera: " FMT "\n" on stderr. */
extern void tool_error (const char *fmt, ...)
    __attribute__ ((format (printf, 1, 2)));

/* Load the cluster key from ctx->key_file unless loaded already.
 * Returns 0 or -errno (the error has been printed).
 */
extern int tool_load_key (struct tool_ctx *ctx);

/* Connect to the MDS if not connected yet: the addresses of ctx->mds
 * in turn from the current one, one pass at most; the one that answers
 * becomes current.  Returns 0 or -errno (the error has been printed).
 */
extern int tool_connect (struct tool_ctx *ctx);

/* The MDS address connected to, or to be tried next: for messages. */
extern const char *tool_mds_address (const struct tool_ctx *ctx);

/* Send request OPCODE whose payload is REQ (NULL: empty) and wait for the
 * reply.  WHAT names the operation in error messages ("volume info:
 * vol0").  On success returns 0 and the reply in *REPLY (caller frees,
 * NULL if empty) and *REPLY_LEN.  A standby's PROTO_ENOTLEADER answer
 * (the request was not applied) sends the request to the next address
 * of ctx->mds (the leader it names first), each address once at most;
 * a transport error is not retried (the request may have been applied).
 * On failure prints the MDS's message (or the transport error) and
 * returns -errno.
 */
extern int tool_call (struct tool_ctx *ctx, const char *what, uint8_t opcode,
                      const struct proto_wbuf *req, void **reply,
                      uint32_t *reply_len);

/* Report a reply that failed to decode (R is the decoder's -errno) and
 * return R.
 */
extern int tool_bad_reply (struct tool_ctx *ctx, const char *what, int r);

/* The context of error messages about volume NAME in command CMD:
 * "CMD: NAME" into BUF (LEN bytes, truncated), or just CMD if NAME is
 * empty.
 */
extern void tool_what (char *buf, size_t len, const char *cmd,
                       const char *name);

/* Check a volume name given on the command line: not empty, at most
 * PROTO_NAME_MAX bytes.  Returns 0 or -EINVAL (printed).
 */
extern int tool_check_name (const char *what, const char *name);

/* Fetch the cluster status (STATUS) into *OUT, malloc'd (the caller
 * frees it; too large for a stack frame).  Returns 0 or -errno
 * (printed).
 */
extern int tool_get_status (struct tool_ctx *ctx, const char *what,
                            struct proto_status_info **out);

/* Decode a STATUS or REPAIR reply (LEN bytes) into *OUT, malloc'd as
 * tool_get_status.  Returns 0 or -errno (printed).
 */
extern int tool_decode_status (struct tool_ctx *ctx, const char *what,
                               const void *reply, uint32_t len,
                               struct proto_status_info **out);

/* Fetch one volume by NAME (VOL_INFO).  Returns 0 or -errno (printed). */
extern int tool_get_volume (struct tool_ctx *ctx, const char *what,
                            const char *name, struct proto_volume_info *out);

/* Fetch the storage servers (SERVER_LIST) into *OUT (the caller frees it
 * with proto_server_list_free).  Returns 0 or -errno (printed).
 */
extern int tool_get_servers (struct tool_ctx *ctx, const char *what,
                             struct proto_server_list *out);

/* Fetch map entries [START, START+COUNT) of volume VOLUME (MAP_GET;
 * COUNT is 1 to PROTO_MAP_MAX) into *OUT (the caller frees it with
 * proto_map_free).  The entries are checked to lie in that range in
 * ascending order.  Returns 0 or -errno (printed).
 */
extern int tool_get_map (struct tool_ctx *ctx, const char *what,
                         uint64_t volume, uint64_t start, uint32_t count,
                         struct proto_map *out);

/* ---- json.c ---- */

#define TOOL_JSON_MAX_DEPTH 16

/* A streaming JSON writer, pretty-printed with two-space indentation.
 * The caller nests begin/end calls correctly (asserted) and puts a key
 * before every value inside an object.
 */
struct tool_json {
  FILE *fp;
  unsigned depth;
  bool after_key;                  /* a key was written, value pending */
  bool empty[TOOL_JSON_MAX_DEPTH]; /* nothing written yet at this level */
};

extern void tool_json_init (struct tool_json *j, FILE *fp);
extern void tool_json_begin_object (struct tool_json *j);
extern void tool_json_end_object (struct tool_json *j);
extern void tool_json_begin_array (struct tool_json *j);
extern void tool_json_end_array (struct tool_json *j);
extern void tool_json_key (struct tool_json *j, const char *key);
extern void tool_json_string (struct tool_json *j, const char *s);
extern void tool_json_uint (struct tool_json *j, uint64_t v);
extern void tool_json_bool (struct tool_json *j, bool v);
/* KEY then a value, inside an object. */
extern void tool_json_kv_string (struct tool_json *j, const char *key,
                                 const char *s);
extern void tool_json_kv_uint (struct tool_json *j, const char *key,
                               uint64_t v);
extern void tool_json_kv_bool (struct tool_json *j, const char *key, bool v);
/* End the document (a newline); every container must be closed. */
extern void tool_json_finish (struct tool_json *j);
/* Write S as a JSON string literal, quotes included, escaping '"', '\\'
 * and control characters, and replacing bytes that are not valid UTF-8
 * with U+FFFD.
 */
extern void tool_json_put_string (FILE *fp, const char *s);

/* Length of the valid UTF-8 sequence at S (1 to 4 bytes), or 0 if the
 * bytes there are not valid UTF-8.  S is NUL-terminated.
 */
extern size_t tool_utf8_length (const unsigned char *s);

/* ---- table.c ---- */

/* A table of text cells printed with aligned columns, two spaces apart,
 * headers first.  ALIGN has one letter per column: 'l' (left) or 'r'
 * (right).  Cells are copied and sanitized as by tool_sanitize.
 */
struct tool_table {
  size_t ncols;
  const char *const *headers;
  const char *align;
  char **cells; /* nrows * ncols */
  size_t nrows;
  size_t cap; /* rows allocated */
};

extern void tool_table_init (struct tool_table *t, size_t ncols,
                             const char *const *headers, const char *align);
/* Append a row of NCOLS const char * cells.  Returns 0 or -ENOMEM. */
extern int tool_table_add_row (struct tool_table *t, ...);
extern void tool_table_print (const struct tool_table *t, FILE *fp);
extern void tool_table_free (struct tool_table *t);

/* Print "KEY:" padded to a fixed width, then the formatted value and a
 * newline: the key/value blocks of "status" and "volume info".
 */
extern void tool_print_field (FILE *fp, const char *key, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

/* Copy S into BUF (LEN bytes, truncated at a character boundary) with
 * control characters and bytes that are not valid UTF-8 replaced by '?',
 * for human-readable output of names that came over the network.
 */
extern void tool_sanitize (const char *s, char *buf, size_t len);

/* ---- status.c ---- */

/* Print status ST on ctx->out as a JSON document (the output of status,
 * and of repair).
 */
extern void tool_print_status_json (struct tool_ctx *ctx,
                                    const struct proto_status_info *st);

extern int tool_cmd_status (struct tool_ctx *ctx, char **args);

/* ---- server.c ---- */

extern int tool_cmd_server_list (struct tool_ctx *ctx, char **args);
extern int tool_cmd_server_drain (struct tool_ctx *ctx, char **args);
extern int tool_cmd_server_remove (struct tool_ctx *ctx, char **args);

/* ---- repair.c ---- */

extern int tool_cmd_repair (struct tool_ctx *ctx, char **args);

/* ---- volume.c ---- */

extern int tool_cmd_volume_create (struct tool_ctx *ctx, char **args);
extern int tool_cmd_volume_list (struct tool_ctx *ctx, char **args);
extern int tool_cmd_volume_info (struct tool_ctx *ctx, char **args);
extern int tool_cmd_volume_resize (struct tool_ctx *ctx, char **args);
extern int tool_cmd_volume_delete (struct tool_ctx *ctx, char **args);

/* ---- volume-map.c ---- */

extern int tool_cmd_volume_map (struct tool_ctx *ctx, char **args);

/* ---- volume-verify.c ---- */

extern int tool_cmd_volume_verify (struct tool_ctx *ctx, char **args);

/* ---- catalog-backup.c ---- */

extern int tool_cmd_catalog_backup (struct tool_ctx *ctx, char **args);

/* ---- main.c ---- */

/* Parse a volume size argument (OPT names it in messages: "--size").
 * Returns 0 and *OUT, or -EINVAL/-ERANGE (printed): invalid, out of
 * range, or not a multiple of 512.
 */
extern int tool_parse_volume_size (const char *opt, const char *s,
                                   uint64_t *out);

#endif /* TESSERA_TOOLS_INTERNAL_H */

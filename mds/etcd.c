/* The etcd client (etcd.h): JSON requests to etcd's gRPC gateway.
 *
 * Every call builds its request with jansson, posts it with post() and
 * reads the answer with the json_* helpers below.  post() tries the
 * endpoints in turn from the last one that answered, each attempt given
 * what is left of the call's timeout: a member that is down, or that
 * answers that it has no leader or could not commit in time, makes the
 * call go on to the next member; any other refusal ends it.  etcd
 * leaves out fields whose value is zero or false (proto3 JSON), so a
 * missing integer reads as 0 and a missing list as empty.
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <nettle/base64.h>

#include "deadline.h"
#include "etcd.h"

#define ETCD_DEFAULT_TIMEOUT_MS 2000
#define ETCD_MAX_ENDPOINTS 16
#define ETCD_MAX_BODY (16u << 20) /* the largest answer we read */

struct etcd {
  CURL *curl;
  struct curl_slist *headers;
  char *urls[ETCD_MAX_ENDPOINTS];
  size_t nurls;
  size_t cur; /* the endpoint that answered last */
  long timeout_ms;
  char *cacert, *cert, *key;
  char *body; /* the answer being received */
  size_t body_len, body_cap;
  char err[256];
};

static void __attribute__ ((format (printf, 2, 3)))
set_error (struct etcd *e, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  vsnprintf (e->err, sizeof e->err, fmt, ap);
  va_end (ap);
}

int
etcd_global_init (void)
{
  return curl_global_init (CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -ENOMEM;
}

/* Check one endpoint URL: http:// or https://, a host, no path. */
static int
check_url (const char *url, size_t len)
{
  const char *host;

  if (len > 7 && strncmp (url, "http://", 7) == 0)
    host = url + 7;
  else if (len > 8 && strncmp (url, "https://", 8) == 0)
    host = url + 8;
  else
    return -EINVAL;
  if (host >= url + len || *host == ':' || *host == '/')
    return -EINVAL;
  if (memchr (host, '/', url + len - host) != NULL && url[len - 1] != '/')
    return -EINVAL;
  return 0;
}

static char *
dup_or_null (const char *s)
{
  return s ? strdup (s) : NULL;
}

int
etcd_new (const struct etcd_config *cfg, struct etcd **out, char *err,
          size_t errlen)
{
  struct etcd *e;
  const char *p = cfg->endpoints, *comma;

  *out = NULL;
  if (p == NULL || *p == '\0') {
    snprintf (err, errlen, "no etcd endpoint given");
    return -EINVAL;
  }
  e = calloc (1, sizeof *e);
  if (e == NULL)
    return -ENOMEM;
  e->timeout_ms =
      cfg->timeout_ms > 0 ? cfg->timeout_ms : ETCD_DEFAULT_TIMEOUT_MS;
  for (;;) {
    size_t len;

    comma = strchr (p, ',');
    len = comma ? (size_t)(comma - p) : strlen (p);
    if (check_url (p, len) < 0) {
      snprintf (err, errlen,
                "etcd endpoint '%.*s': not http://HOST:PORT or "
                "https://HOST:PORT",
                (int)len, p);
      goto einval;
    }
    if (e->nurls == ETCD_MAX_ENDPOINTS) {
      snprintf (err, errlen, "more than %d etcd endpoints", ETCD_MAX_ENDPOINTS);
      goto einval;
    }
    /* Without the trailing slash: paths start with one. */
    while (len > 0 && p[len - 1] == '/')
      len--;
    e->urls[e->nurls] = strndup (p, len);
    if (e->urls[e->nurls] == NULL)
      goto enomem;
    e->nurls++;
    if (comma == NULL)
      break;
    p = comma + 1;
  }
  e->cacert = dup_or_null (cfg->cacert);
  e->cert = dup_or_null (cfg->cert);
  e->key = dup_or_null (cfg->key);
  if ((cfg->cacert && !e->cacert) || (cfg->cert && !e->cert) ||
      (cfg->key && !e->key))
    goto enomem;
  e->curl = curl_easy_init ();
  e->headers = curl_slist_append (NULL, "Content-Type: application/json");
  if (e->curl == NULL || e->headers == NULL)
    goto enomem;
  *out = e;
  return 0;

einval:
  etcd_free (e);
  return -EINVAL;
enomem:
  etcd_free (e);
  snprintf (err, errlen, "out of memory");
  return -ENOMEM;
}

void
etcd_free (struct etcd *e)
{
  size_t i;

  if (e == NULL)
    return;
  if (e->curl)
    curl_easy_cleanup (e->curl);
  curl_slist_free_all (e->headers);
  for (i = 0; i < e->nurls; i++)
    free (e->urls[i]);
  free (e->cacert);
  free (e->cert);
  free (e->key);
  free (e->body);
  free (e);
}

const char *
etcd_error (const struct etcd *e)
{
  return e->err;
}

size_t
etcd_endpoints (const struct etcd *e)
{
  return e->nurls;
}

const char *
etcd_endpoint (const struct etcd *e, size_t n)
{
  return n < e->nurls ? e->urls[n] : NULL;
}

/* libcurl's write callback: append to E->body, up to ETCD_MAX_BODY. */
static size_t
on_body (char *data, size_t size, size_t n, void *arg)
{
  struct etcd *e = arg;
  size_t len = size * n;

  if (len > ETCD_MAX_BODY - e->body_len)
    return 0; /* libcurl fails the transfer */
  if (e->body_len + len + 1 > e->body_cap) {
    size_t cap = e->body_cap ? e->body_cap : 4096;
    char *b;

    while (cap < e->body_len + len + 1)
      cap *= 2;
    b = realloc (e->body, cap);
    if (b == NULL)
      return 0;
    e->body = b;
    e->body_cap = cap;
  }
  memcpy (e->body + e->body_len, data, len);
  e->body_len += len;
  e->body[e->body_len] = '\0';
  return len;
}

/* The message of an error answer: {"error": "...", "message": "..."}
 * (or the same under "error" as an object, from streaming calls).
 */
static const char *
answer_message (json_t *ans)
{
  json_t *m = json_object_get (ans, "message");
  json_t *er = json_object_get (ans, "error");

  if (json_is_string (m))
    return json_string_value (m);
  if (json_is_string (er))
    return json_string_value (er);
  if (json_is_object (er))
    return answer_message (er);
  return "no message";
}

/* True if etcd's refusal MSG means "this member cannot serve now": ask
 * another.
 */
static bool
retryable (long code, const char *msg)
{
  return code == 503 || strstr (msg, "no leader") != NULL ||
         strstr (msg, "timed out") != NULL ||
         strstr (msg, "leader changed") != NULL ||
         strstr (msg, "not capable") != NULL;
}

/* One attempt on endpoint I with the request BODY to PATH, at most MS
 * milliseconds.  Returns 0 with the answer in *ANS, 1 if the next
 * endpoint should be tried (E->err says why), or -errno.
 */
static int
attempt (struct etcd *e, size_t i, const char *path, const char *body, long ms,
         json_t **ans)
{
  char url[512];
  long code = 0;
  CURLcode rc;
  json_error_t jerr;

  snprintf (url, sizeof url, "%s%s", e->urls[i], path);
  curl_easy_reset (e->curl);
  curl_easy_setopt (e->curl, CURLOPT_URL, url);
  curl_easy_setopt (e->curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt (e->curl, CURLOPT_HTTPHEADER, e->headers);
  curl_easy_setopt (e->curl, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt (e->curl, CURLOPT_TIMEOUT_MS, ms);
  curl_easy_setopt (e->curl, CURLOPT_CONNECTTIMEOUT_MS, ms);
  curl_easy_setopt (e->curl, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt (e->curl, CURLOPT_WRITEDATA, e);
  curl_easy_setopt (e->curl, CURLOPT_PROTOCOLS_STR, "http,https");
  if (e->cacert)
    curl_easy_setopt (e->curl, CURLOPT_CAINFO, e->cacert);
  if (e->cert)
    curl_easy_setopt (e->curl, CURLOPT_SSLCERT, e->cert);
  if (e->key)
    curl_easy_setopt (e->curl, CURLOPT_SSLKEY, e->key);
  e->body_len = 0;
  rc = curl_easy_perform (e->curl);
  if (rc != CURLE_OK) {
    set_error (e, "etcd %s: %s", e->urls[i], curl_easy_strerror (rc));
    if (rc == CURLE_OUT_OF_MEMORY)
      return -ENOMEM;
    return 1;
  }
  curl_easy_getinfo (e->curl, CURLINFO_RESPONSE_CODE, &code);
  *ans = json_loadb (e->body ? e->body : "", e->body_len, 0, &jerr);
  if (*ans == NULL || !json_is_object (*ans)) {
    set_error (e, "etcd %s%s: HTTP %ld, not a JSON object: %s", e->urls[i],
               path, code, *ans ? "" : jerr.text);
    json_decref (*ans);
    *ans = NULL;
    return code == 200 ? -EPROTO : 1;
  }
  if (code != 200 || json_object_get (*ans, "error") != NULL) {
    const char *msg = answer_message (*ans);
    bool again = retryable (code, msg);

    set_error (e, "etcd %s%s: %s", e->urls[i], path, msg);
    json_decref (*ans);
    *ans = NULL;
    return again ? 1 : -EIO;
  }
  return 0;
}

/* Post REQ (consumed) to PATH; the answer in *ANS.  ONLY: the endpoint
 * to ask once, or -1 for any (from E->cur on, in turn, until the
 * call's timeout).  An attempt may take half of the timeout (at least
 * ETCD_MIN_ATTEMPT_MS), so that a member stuck in an election does not
 * eat all of it; a pass over members that all refused at once pauses
 * ETCD_PASS_PAUSE_MS before the next.  Every request here is safe to
 * send twice (a lease granted twice expires unused; a create that
 * committed and is sent again reads back the caller's own value).
 * Returns 0 or -errno.
 */
#define ETCD_MIN_ATTEMPT_MS 500
#define ETCD_PASS_PAUSE_MS 50
static int
post (struct etcd *e, const char *path, json_t *req, json_t **ans, int only)
{
  uint64_t deadline = monotonic_ns () + (uint64_t)e->timeout_ms * 1000000;
  long per = e->timeout_ms / 2;
  char *body;
  size_t k;
  int r = -ECONNREFUSED;
  bool timed_out = false;

  *ans = NULL;
  if (req == NULL)
    return -ENOMEM;
  body = json_dumps (req, JSON_COMPACT);
  json_decref (req);
  if (body == NULL)
    return -ENOMEM;
  if (per < ETCD_MIN_ATTEMPT_MS)
    per = ETCD_MIN_ATTEMPT_MS;
  for (k = 0;; k++) {
    size_t i = only >= 0 ? (size_t)only : (e->cur + k) % e->nurls;
    uint64_t now = monotonic_ns (), t0;
    long ms;

    if (now >= deadline) {
      r = timed_out ? -ETIMEDOUT : -ECONNREFUSED;
      break;
    }
    ms = (long)((deadline - now + 999999) / 1000000);
    if (ms > per)
      ms = per;
    t0 = now;
    r = attempt (e, i, path, body, ms, ans);
    if (r == 0) {
      e->cur = i;
      break;
    }
    if (r < 0)
      break;
    now = monotonic_ns ();
    if (now - t0 >= (uint64_t)ms * 1000000 - 1000000)
      timed_out = true;
    if (only >= 0) {
      /* One member asked (its health): one attempt. */
      r = timed_out ? -ETIMEDOUT : -ECONNREFUSED;
      break;
    }
    if ((k + 1) % e->nurls == 0) {
      if (now + ETCD_PASS_PAUSE_MS * 1000000 >= deadline) {
        r = timed_out ? -ETIMEDOUT : -ECONNREFUSED;
        break;
      }
      usleep (ETCD_PASS_PAUSE_MS * 1000);
    }
  }
  free (body);
  return r;
}

/* Read the integer field K of O (a JSON string or number; missing: 0)
 * into *V, as signed if SIGNED (etcd sends revisions, leases and TTLs
 * as int64, member ids as uint64).
 */
static int
get_num (json_t *o, const char *k, bool is_signed, uint64_t *v)
{
  json_t *j = json_object_get (o, k);
  const char *s;
  char *end;

  *v = 0;
  if (j == NULL)
    return 0;
  if (json_is_integer (j)) {
    *v = (uint64_t)json_integer_value (j);
    return 0;
  }
  if (!json_is_string (j))
    return -EPROTO;
  s = json_string_value (j);
  errno = 0;
  *v = is_signed ? (uint64_t)strtoll (s, &end, 10) : strtoull (s, &end, 10);
  if (errno != 0 || end == s || *end != '\0')
    return -EPROTO;
  return 0;
}

static int
get_i64 (json_t *o, const char *k, int64_t *v)
{
  uint64_t u;
  int r = get_num (o, k, true, &u);

  *v = (int64_t)u;
  return r;
}

static int
get_u64 (json_t *o, const char *k, uint64_t *v)
{
  return get_num (o, k, false, v);
}

/* A JSON string of DATA (LEN bytes) in base64, or NULL. */
static json_t *
b64 (const void *data, size_t len)
{
  char *s = malloc (BASE64_ENCODE_RAW_LENGTH (len) + 1);
  json_t *j;

  if (s == NULL)
    return NULL;
  base64_encode_raw (s, len, data);
  s[BASE64_ENCODE_RAW_LENGTH (len)] = '\0';
  j = json_string (s);
  free (s);
  return j;
}

static json_t *
b64s (const char *s)
{
  return b64 (s, strlen (s));
}

static json_t *
i64 (int64_t v)
{
  char s[24];

  snprintf (s, sizeof s, "%" PRId64, v);
  return json_string (s);
}

/* Decode the base64 string field K of O into a malloc'd, NUL-terminated
 * *OUT of *LEN bytes (missing: empty).
 */
static int
get_b64 (json_t *o, const char *k, char **out, size_t *len)
{
  json_t *j = json_object_get (o, k);
  const char *s = j ? json_string_value (j) : "";
  struct base64_decode_ctx ctx;
  size_t n, dlen;

  *out = NULL;
  *len = 0;
  if (s == NULL)
    return -EPROTO;
  n = strlen (s);
  *out = malloc (BASE64_DECODE_LENGTH (n) + 1);
  if (*out == NULL)
    return -ENOMEM;
  base64_decode_init (&ctx);
  dlen = BASE64_DECODE_LENGTH (n);
  if (!base64_decode_update (&ctx, &dlen, (uint8_t *)*out, n, s) ||
      !base64_decode_final (&ctx)) {
    free (*out);
    *out = NULL;
    return -EPROTO;
  }
  (*out)[dlen] = '\0';
  *len = dlen;
  return 0;
}

void
etcd_kv_clear (struct etcd_kv *kv)
{
  free (kv->value);
  memset (kv, 0, sizeof *kv);
}

/* Fill *KV from a range answer's object O ({"kvs": [...]}).  Returns 1
 * if it held a key, 0 if not, -errno.
 */
static int
read_kvs (struct etcd *e, json_t *o, struct etcd_kv *kv)
{
  json_t *kvs = json_object_get (o, "kvs"), *k;
  int r;

  memset (kv, 0, sizeof *kv);
  if (kvs == NULL || (json_is_array (kvs) && json_array_size (kvs) == 0))
    return 0;
  if (!json_is_array (kvs) || !json_is_object (k = json_array_get (kvs, 0))) {
    set_error (e, "etcd: a range answer without a list of keys");
    return -EPROTO;
  }
  r = get_b64 (k, "value", &kv->value, &kv->len);
  if (r == 0)
    r = get_i64 (k, "create_revision", &kv->create_rev);
  if (r == 0)
    r = get_i64 (k, "mod_revision", &kv->mod_rev);
  if (r == 0)
    r = get_i64 (k, "lease", &kv->lease);
  if (r < 0) {
    if (r == -EPROTO)
      set_error (e, "etcd: a key in a range answer is malformed");
    etcd_kv_clear (kv);
    return r;
  }
  return 1;
}

int
etcd_get (struct etcd *e, const char *key, struct etcd_kv *kv)
{
  json_t *ans;
  int r;

  memset (kv, 0, sizeof *kv);
  r = post (e, "/v3/kv/range", json_pack ("{s:o}", "key", b64s (key)), &ans,
            -1);
  if (r < 0)
    return r;
  r = read_kvs (e, ans, kv);
  json_decref (ans);
  return r;
}

/* A compare of KEY's create revision with REV. */
static json_t *
compare_create (const char *key, int64_t rev)
{
  return json_pack ("{s:s, s:s, s:o, s:o}", "target", "CREATE", "result",
                    "EQUAL", "key", b64s (key), "createRevision", i64 (rev));
}

/* A put of KEY = VALUE (LEN bytes) on LEASE. */
static json_t *
request_put (const char *key, const void *value, size_t len, int64_t lease)
{
  return json_pack ("{s:{s:o, s:o, s:o}}", "requestPut", "key", b64s (key),
                    "value", b64 (value, len), "lease", i64 (lease));
}

/* Post the transaction TXN (consumed).  Returns 1 if it succeeded, 0 if
 * its compare failed, -errno; *ANS the answer (NULL on error).
 */
static int
txn (struct etcd *e, json_t *t, json_t **ans)
{
  int r = post (e, "/v3/kv/txn", t, ans, -1);

  if (r < 0)
    return r;
  return json_is_true (json_object_get (*ans, "succeeded")) ? 1 : 0;
}

int
etcd_create (struct etcd *e, const char *key, const void *value, size_t len,
             int64_t lease, struct etcd_kv *kv)
{
  json_t *ans, *resp, *range;
  struct etcd_kv dummy;
  int r;

  if (kv == NULL)
    kv = &dummy;
  memset (kv, 0, sizeof *kv);
  r = txn (e,
           json_pack ("{s:[o], s:[o], s:[{s:{s:o}}]}", "compare",
                      compare_create (key, 0), "success",
                      request_put (key, value, len, lease), "failure",
                      "requestRange", "key", b64s (key)),
           &ans);
  if (r < 0)
    return r;
  if (r == 1) {
    /* Created at the transaction's revision. */
    json_t *h = json_object_get (ans, "header");

    r = get_i64 (h, "revision", &kv->create_rev);
    kv->mod_rev = kv->create_rev;
    kv->lease = lease;
    kv->value = malloc (len + 1);
    if (r == 0 && kv->value == NULL)
      r = -ENOMEM;
    if (r == 0) {
      memcpy (kv->value, value, len);
      kv->value[len] = '\0';
      kv->len = len;
      r = kv->create_rev > 0 ? 1 : -EPROTO;
    }
    if (r == -EPROTO)
      set_error (e, "etcd: a transaction answer without its revision");
  }
  else {
    resp = json_array_get (json_object_get (ans, "responses"), 0);
    range = json_object_get (resp, "response_range");
    /* It existed: the range in the same transaction says who has it. */
    r = range ? read_kvs (e, range, kv) : 0;
    if (r > 0)
      r = 0;
  }
  json_decref (ans);
  if (kv == &dummy)
    etcd_kv_clear (kv);
  return r;
}

int
etcd_put_guarded (struct etcd *e, const char *guard, int64_t guard_rev,
                  const char *key, const void *value, size_t len, int64_t lease)
{
  json_t *ans;
  int r;

  r = txn (e,
           json_pack ("{s:[o], s:[o]}", "compare",
                      compare_create (guard, guard_rev), "success",
                      request_put (key, value, len, lease)),
           &ans);
  json_decref (ans);
  if (r == 0)
    set_error (e, "etcd: %s is no longer at revision %" PRId64, guard,
               guard_rev);
  return r < 0 ? r : r == 1 ? 0 : -ESTALE;
}

int
etcd_delete_if (struct etcd *e, const char *key, int64_t rev)
{
  struct etcd_kv kv;
  json_t *ans;
  int r;

  r = txn (e,
           json_pack ("{s:[o], s:[{s:{s:o}}]}", "compare",
                      compare_create (key, rev), "success",
                      "requestDeleteRange", "key", b64s (key)),
           &ans);
  json_decref (ans);
  if (r != 0)
    return r < 0 ? r : 0;
  /* The compare failed: gone already, or someone else's. */
  r = etcd_get (e, key, &kv);
  etcd_kv_clear (&kv);
  if (r < 0)
    return r;
  return r == 0 ? 0 : -ESTALE;
}

int
etcd_lease_grant (struct etcd *e, int64_t ttl, int64_t *id, int64_t *granted)
{
  json_t *ans;
  int r;

  r = post (e, "/v3/lease/grant", json_pack ("{s:o}", "TTL", i64 (ttl)), &ans,
            -1);
  if (r < 0)
    return r;
  r = get_i64 (ans, "ID", id);
  if (r == 0)
    r = get_i64 (ans, "TTL", granted);
  if (r == 0 && (*id == 0 || *granted <= 0))
    r = -EPROTO;
  if (r < 0)
    set_error (e, "etcd: a lease grant answer without ID or TTL");
  json_decref (ans);
  return r;
}

int
etcd_lease_keepalive (struct etcd *e, int64_t id, int64_t *ttl)
{
  json_t *ans, *res;
  int r;

  *ttl = 0;
  r = post (e, "/v3/lease/keepalive", json_pack ("{s:o}", "ID", i64 (id)), &ans,
            -1);
  if (r < 0)
    return r;
  res = json_object_get (ans, "result");
  r = res ? get_i64 (res, "TTL", ttl) : -EPROTO;
  if (r < 0)
    set_error (e, "etcd: a keepalive answer without a result");
  else if (*ttl <= 0) {
    set_error (e, "etcd: lease %" PRId64 " has expired", id);
    r = -ENOENT;
  }
  json_decref (ans);
  return r;
}

int
etcd_lease_revoke (struct etcd *e, int64_t id)
{
  json_t *ans;
  int r;

  r = post (e, "/v3/lease/revoke", json_pack ("{s:o}", "ID", i64 (id)), &ans,
            -1);
  json_decref (ans);
  if (r == -EIO && strstr (e->err, "not found") != NULL)
    return 0; /* expired already */
  return r;
}

int
etcd_status (struct etcd *e, size_t n, struct etcd_status *st)
{
  json_t *ans, *h;
  const char *v;
  int r;

  memset (st, 0, sizeof *st);
  if (n >= e->nurls)
    return -EINVAL;
  r = post (e, "/v3/maintenance/status", json_object (), &ans, (int)n);
  if (r < 0)
    return r;
  h = json_object_get (ans, "header");
  v = json_string_value (json_object_get (ans, "version"));
  snprintf (st->version, sizeof st->version, "%s", v ? v : "?");
  r = get_u64 (h, "member_id", &st->member);
  if (r == 0)
    r = get_u64 (ans, "leader", &st->leader);
  if (r == 0)
    r = get_i64 (ans, "raftTerm", &st->raft_term);
  if (r == 0)
    r = get_i64 (ans, "dbSize", &st->db_size);
  if (r < 0)
    set_error (e, "etcd %s: a malformed status answer", e->urls[n]);
  json_decref (ans);
  return r;
}

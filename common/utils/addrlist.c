/* Lists of MDS addresses (see addrlist.h). */

#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addrlist.h"
#include "protocol.h"
#include "sock.h"

/* Print a message into ERRMSG if the caller wants one. */
#define SET_ERRMSG(...) \
  do { \
    if (errmsg && errlen) \
      snprintf (errmsg, errlen, __VA_ARGS__); \
  } while (0)

int
addrlist_parse (const char *text, struct addrlist *out, char *errmsg,
                size_t errlen)
{
  const char *p = text, *comma;
  size_t len;
  char *a;

  memset (out, 0, sizeof *out);
  if (text[0] == '\0') {
    SET_ERRMSG ("empty address list");
    return -EINVAL;
  }
  for (;;) {
    comma = strchr (p, ',');
    len = comma ? (size_t)(comma - p) : strlen (p);
    if (out->n == ADDRLIST_MAX) {
      SET_ERRMSG ("%s: more than %d addresses", text, ADDRLIST_MAX);
      goto einval;
    }
    if (len == 0) {
      SET_ERRMSG ("%s: entry %zu is empty", text, out->n + 1);
      goto einval;
    }
    a = strndup (p, len);
    if (a == NULL) {
      SET_ERRMSG ("%s", strerror (ENOMEM));
      addrlist_free (out);
      return -ENOMEM;
    }
    out->addrs[out->n++] = a;
    if (sock_address_check (a) < 0) {
      SET_ERRMSG ("%s: invalid address (HOST:PORT, [V6]:PORT or unix:PATH)", a);
      goto einval;
    }
    if (comma == NULL)
      break;
    p = comma + 1;
  }
  out->text = strdup (text);
  if (out->text == NULL) {
    SET_ERRMSG ("%s", strerror (ENOMEM));
    addrlist_free (out);
    return -ENOMEM;
  }
  return 0;

einval:
  addrlist_free (out);
  return -EINVAL;
}

void
addrlist_free (struct addrlist *l)
{
  size_t i;

  if (l == NULL)
    return;
  for (i = 0; i < l->n; ++i)
    free (l->addrs[i]);
  free (l->text);
  memset (l, 0, sizeof *l);
}

const char *
addrlist_current (const struct addrlist *l)
{
  return l->addrs[l->current];
}

int
addrlist_find (const struct addrlist *l, const char *addr)
{
  size_t i;

  for (i = 0; i < l->n; ++i)
    if (strcmp (l->addrs[i], addr) == 0)
      return (int)i;
  return -1;
}

int
addrlist_leader_hint (const char *msg, char *buf, size_t len)
{
  size_t n = strlen (PROTO_NOT_LEADER_AT);
  size_t alen;

  if (msg == NULL || strncmp (msg, PROTO_NOT_LEADER_AT, n) != 0)
    return -ENOENT;
  msg += n;
  alen = strcspn (msg, " \t\r\n");
  if (alen == 0)
    return -ENOENT;
  if (alen >= len)
    return -ENAMETOOLONG;
  memcpy (buf, msg, alen);
  buf[alen] = '\0';
  return 0;
}

size_t
addrlist_next (struct addrlist *l, const char *notleader_msg)
{
  char leader[PROTO_ERRMSG_MAX + 1];
  int i;

  if (addrlist_leader_hint (notleader_msg, leader, sizeof leader) == 0 &&
      (i = addrlist_find (l, leader)) >= 0 && (size_t)i != l->current)
    l->current = i;
  else
    l->current = (l->current + 1) % l->n;
  return l->current;
}

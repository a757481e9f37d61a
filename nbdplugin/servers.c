/* nbdkit-tessera-plugin: the storage-server table.
 *
 * Every storage server the MDS has named (SERVER_LIST) gets one struct
 * ss_server, created here the first time it is seen and freed only with
 * the volume, so that pointers to it stay valid while the volume is
 * open: a server that leaves the list keeps its entry.  Its sockets are
 * ssconn.c's, its dirty and lost sets flush.c's.
 *
 * The table is published through an atomic pointer: readers (servers_get,
 * servers_cached, servers_for_each) take no lock.  A server not known yet
 * fetches SERVER_LIST again under volume.servers_lock, which serializes
 * refreshes; the refresh publishes a new table holding every server of
 * the old one plus the new ones, with their addresses updated, and
 * keeps the old one on volume.retired_tables until the volume is freed.
 * servers_lock is held across the MDS request; it comes after
 * volume.epoch_rw and before volume.mds_lock (see internal.h).
 */

#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "buf.h"
#include "cleanup.h"
#include "protocol.h"

#include "internal.h"

/* Create storage server ID (UUID, reached at ADDR, which is copied)
 * with NCONNS sockets, none open yet, for the volume V.  Returns 0 and
 * *OUT (free with server_free), or -ENOMEM.
 */
static int
server_new (struct volume *v, uint32_t id, const uint8_t uuid[16],
            const char *addr, struct ss_server **out)
{
  struct ss_server *s;
  int r;

  *out = NULL;
  s = calloc (1, sizeof *s);
  if (s == NULL)
    return -ENOMEM;
  s->id = id;
  memcpy (s->uuid, uuid, 16);
  snprintf (s->addr, sizeof s->addr, "%s", addr);
  pthread_mutex_init (&s->lock, NULL);
  atomic_init (&s->rr, 0);
  atomic_init (&s->suspect_until, 0);
  s->timeout_ms = v->cfg->timeout_ms;
  s->lost_pending = &v->lost_pending;
  r = ss_conns_new (s, v->cfg->connections);
  if (r < 0) {
    pthread_mutex_destroy (&s->lock);
    free (s);
    return r;
  }
  *out = s;
  return 0;
}

/* Free S (accepts NULL).  Its sockets must be closed already
 * (ss_server_disconnect).
 */
static void
server_free (struct ss_server *s)
{
  if (s == NULL)
    return;
  ss_conns_free (s);
  pthread_mutex_destroy (&s->lock);
  free (s->dirty);
  free (s->lost);
  free (s);
}

/* Change where S is reached (a newer SERVER_LIST).  Open sockets stay;
 * the next reconnect uses the new address.
 */
static void
server_set_address (struct ss_server *s, const char *addr)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&s->lock);
  if (strcmp (s->addr, addr) != 0) {
    if (tessera_debug_conn)
      nbdkit_debug ("server %" PRIu32 ": address %s -> %s", s->id, s->addr,
                    addr);
    snprintf (s->addr, sizeof s->addr, "%s", addr);
  }
}

/* Find server ID in table T, or NULL. */
static struct ss_server *
table_find (const struct server_table *t, uint32_t id)
{
  size_t i;

  if (t == NULL)
    return NULL;
  for (i = 0; i < t->n; i++)
    if (t->s[i]->id == id)
      return t->s[i];
  return NULL;
}

/* Fetch SERVER_LIST and publish a new server table: every server seen so
 * far (so that pointers stay valid) plus the new ones, with addresses
 * updated.  Caller holds v->servers_lock.  Returns 0 or -errno, with an
 * nbdkit_error.
 */
static int
servers_fetch (struct volume *v)
{
  struct server_table *old = atomic_load (&v->servers), *t;
  struct proto_server_list list = { 0 };
  CLEANUP_FREE void *reply = NULL;
  char errmsg[PROTO_ERRMSG_MAX + 1];
  uint32_t len, i;
  size_t n, oldn = old ? old->n : 0;
  int r;

  r = mds_session_call (v, PROTO_OP_SERVER_LIST, NULL, &reply, &len, errmsg,
                        sizeof errmsg);
  if (r < 0) {
    nbdkit_error ("mds %s: server list: %s", v->cfg->mds,
                  errmsg[0] ? errmsg : strerror (-r));
    return r;
  }
  r = proto_decode_server_list (reply, len, &list);
  if (r < 0) {
    nbdkit_error ("mds %s: server list: malformed reply", v->cfg->mds);
    return r;
  }

  t = calloc (1, sizeof *t + (oldn + list.n) * sizeof t->s[0]);
  if (t == NULL) {
    nbdkit_error ("calloc: %m");
    proto_server_list_free (&list);
    return -ENOMEM;
  }
  if (oldn)
    memcpy (t->s, old->s, oldn * sizeof t->s[0]);
  n = oldn;
  for (i = 0; i < list.n; i++) {
    const struct proto_server_info *si = &list.servers[i];
    struct ss_server *s;

    t->n = n;
    s = table_find (t, si->id);
    if (s) {
      server_set_address (s, si->address);
      continue;
    }
    r = server_new (v, si->id, si->uuid, si->address, &s);
    if (r < 0) {
      nbdkit_error ("server %" PRIu32 ": %s", si->id, strerror (-r));
      /* Servers created here and not published are freed. */
      while (n > oldn)
        server_free (t->s[--n]);
      free (t);
      proto_server_list_free (&list);
      return r;
    }
    if (tessera_debug_conn)
      nbdkit_debug ("server %" PRIu32 ": %s (%s)", si->id, si->address,
                    proto_server_state_name (si->state));
    t->s[n++] = s;
  }
  t->n = n;
  proto_server_list_free (&list);

  atomic_store (&v->servers, t);
  if (old) {
    old->retired_next = v->retired_tables;
    v->retired_tables = old;
  }
  return 0;
}

/* Find storage server ID, fetching SERVER_LIST again if it is not known
 * yet.  Returns 0 and *OUT (valid until volume_free), or -errno with an
 * nbdkit_error.
 */
int
servers_get (struct volume *v, uint32_t id, struct ss_server **out)
{
  int r;

  *out = table_find (atomic_load (&v->servers), id);
  if (*out)
    return 0;

  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&v->servers_lock);
  *out = table_find (atomic_load (&v->servers), id);
  if (*out)
    return 0;
  r = servers_fetch (v);
  if (r < 0)
    return r;
  *out = table_find (atomic_load (&v->servers), id);
  if (*out)
    return 0;
  nbdkit_error ("server %" PRIu32 ": not in the MDS's server list", id);
  return -ENOENT;
}

/* Find storage server ID among those known, without asking the MDS.
 * Returns it (valid until volume_free), or NULL.
 */
struct ss_server *
servers_cached (struct volume *v, uint32_t id)
{
  return table_find (atomic_load (&v->servers), id);
}

/* Call F (SERVER, OPAQUE) for every storage server known. */
void
servers_for_each (struct volume *v, void (*f) (struct ss_server *, void *),
                  void *opaque)
{
  struct server_table *t = atomic_load (&v->servers);
  size_t i;

  if (t == NULL)
    return;
  for (i = 0; i < t->n; i++)
    f (t->s[i], opaque);
}

/* Initialize V's server table, empty (volume_open). */
void
servers_init (struct volume *v)
{
  pthread_mutex_init (&v->servers_lock, NULL);
  atomic_init (&v->servers, NULL);
  v->retired_tables = NULL;
}

/* Fetch the first server list (volume_open).  Returns 0 or -errno, with
 * an nbdkit_error.
 */
int
servers_load (struct volume *v)
{
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&v->servers_lock);
  return servers_fetch (v);
}

/* Close the sockets of one server (servers_for_each callback). */
static void
disconnect_server (struct ss_server *s, void *opaque)
{
  ss_server_disconnect (s);
}

/* Close the sockets of every storage server known (volume_close). */
void
servers_disconnect (struct volume *v)
{
  servers_for_each (v, disconnect_server, NULL);
}

/* Free every server and table of V (volume_free), after
 * servers_disconnect.
 */
void
servers_free (struct volume *v)
{
  struct server_table *t, *next_t;
  size_t i;

  /* The current table holds every server ever seen. */
  t = atomic_load (&v->servers);
  if (t) {
    for (i = 0; i < t->n; i++)
      server_free (t->s[i]);
    free (t);
  }
  atomic_store (&v->servers, NULL);
  for (t = v->retired_tables; t != NULL; t = next_t) {
    next_t = t->retired_next;
    free (t);
  }
  v->retired_tables = NULL;
  pthread_mutex_destroy (&v->servers_lock);
}

/* Unit tests for catalog/ (libcatalog.la).
 *
 * Each test runs in its own (forked) process with a fresh catalog in a
 * mkdtemp directory.  The random map test prints its seed; set
 * TEST_SEED=N to repeat a run.
 */

#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <check.h>
#include <lmdb.h>

#include "catalog.h"

#define SEG_SIZE (UINT32_C (4) << 20) /* 4 MiB */
#define MiB (UINT64_C (1) << 20)

static char dir[] = "/tmp/test-catalog-XXXXXX";
static catalog *cat;

/* nftw callback removing one file or directory. */
static int
remove_one (const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  return remove (path);
}

/* Fixture: a new empty catalog in a new directory. */
static void
setup (void)
{
  strcpy (dir, "/tmp/test-catalog-XXXXXX");
  ck_assert_ptr_nonnull (mkdtemp (dir));
  ck_assert_int_eq (catalog_open (dir, 0, &cat), 0);
  ck_assert_ptr_nonnull (cat);
}

/* Fixture: close the catalog and remove its directory. */
static void
teardown (void)
{
  catalog_close (cat);
  cat = NULL;
  ck_assert_int_eq (nftw (dir, remove_one, 8, FTW_DEPTH | FTW_PHYS), 0);
}

/* Close and reopen the catalog: what follows reads only what was
 * committed to disk.
 */
static void
reopen (void)
{
  catalog_close (cat);
  cat = NULL;
  ck_assert_int_eq (catalog_open (dir, 0, &cat), 0);
}

/* A uuid whose bytes are all N. */
static void
make_uuid (uint8_t uuid[16], int n)
{
  memset (uuid, n, 16);
}

/* Initialize the cluster with segment size SEG_SIZE. */
static void
init_cluster (void)
{
  uint8_t uuid[16];

  make_uuid (uuid, 0xcc);
  ck_assert_int_eq (catalog_cluster_init (cat, SEG_SIZE, uuid), 0);
}

/* Register server number N (uuid N, zone "zN"); returns its id. */
static uint32_t
add_server (int n)
{
  struct catalog_server s;
  uint8_t uuid[16];
  char addr[32], zone[8];

  make_uuid (uuid, n);
  snprintf (addr, sizeof addr, "127.0.0.1:%d", 7420 + n);
  snprintf (zone, sizeof zone, "z%d", n);
  ck_assert_int_eq (
      catalog_server_register (cat, uuid, addr, zone, 1000 * MiB, &s), 0);
  return s.id;
}

/* Create volume NAME of SIZE bytes and REPLICAS replicas; returns its id. */
static uint64_t
add_volume (const char *name, uint64_t size, uint32_t replicas)
{
  struct catalog_volume v;

  ck_assert_int_eq (catalog_volume_create (cat, name, size, replicas, &v), 0);
  return v.id;
}

/* Fill entry E for INDEX with the NREP servers of SERVERS. */
static void
set_entry (struct catalog_map_entry *e, uint64_t index, uint32_t nrep,
           const uint32_t *servers)
{
  uint32_t i;

  memset (e, 0, sizeof *e);
  e->index = index;
  e->segment.nreplicas = nrep;
  for (i = 0; i < nrep; ++i) {
    e->segment.replicas[i].server = servers[i];
    e->segment.replicas[i].state = CATALOG_REPLICA_STALE; /* ignored */
  }
}

/* Allocate INDEX of VOLUME on servers 1 and 2; returns the segment id. */
static uint64_t
alloc_index (uint64_t volume, uint64_t index)
{
  const uint32_t servers[2] = { 1, 2 };
  struct catalog_map_entry e;

  set_entry (&e, index, 2, servers);
  ck_assert_int_eq (catalog_map_alloc (cat, volume, &e, 1), 0);
  return e.segment.id;
}

/* Number of garbage entries queued for SERVER. */
static size_t
garbage_count (uint32_t server)
{
  uint64_t *ids;
  size_t n;

  ck_assert_int_eq (catalog_garbage_get (cat, server, SIZE_MAX, &ids, &n), 0);
  free (ids);
  return n;
}

/* catalog_open (PATH) as an unprivileged user: root passes every
 * permission check, so a root test run drops to nobody in a child.
 */
static int
open_as_user (const char *path)
{
  catalog *c2 = NULL;
  pid_t pid;
  int status, r;

  if (geteuid () != 0) {
    r = catalog_open (path, 0, &c2);
    catalog_close (c2);
    return r;
  }
  pid = fork ();
  ck_assert_int_ge (pid, 0);
  if (pid == 0) {
    if (setgid (65534) == -1 || setuid (65534) == -1)
      _exit (255);
    r = catalog_open (path, 0, &c2);
    catalog_close (c2);
    _exit (-r);
  }
  ck_assert_int_eq (waitpid (pid, &status, 0), pid);
  ck_assert (WIFEXITED (status));
  ck_assert_int_ne (WEXITSTATUS (status), 255);
  return -WEXITSTATUS (status);
}

/* open: files created, missing dir, a file, no permission, map size. */
START_TEST (test_open)
{
  char path[64];
  catalog *c2 = (catalog *)1;
  struct stat st;
  FILE *fp;

  snprintf (path, sizeof path, "%s/data.mdb", dir);
  ck_assert_int_eq (stat (path, &st), 0);
  snprintf (path, sizeof path, "%s/lock.mdb", dir);
  ck_assert_int_eq (stat (path, &st), 0);

  snprintf (path, sizeof path, "%s/nosuchdir", dir);
  ck_assert_int_eq (catalog_open (path, 0, &c2), -ENOENT);
  ck_assert_ptr_eq (c2, (catalog *)1);

  snprintf (path, sizeof path, "%s/file", dir);
  fp = fopen (path, "w");
  ck_assert_ptr_nonnull (fp);
  fclose (fp);
  ck_assert_int_eq (catalog_open (path, 0, &c2), -ENOENT);

  /* A directory we may not enter, and one we may not write. */
  ck_assert_int_eq (chmod (dir, 0755), 0);
  snprintf (path, sizeof path, "%s/noaccess", dir);
  ck_assert_int_eq (mkdir (path, 0), 0);
  ck_assert_int_eq (open_as_user (path), -EACCES);
  snprintf (path, sizeof path, "%s/readonly", dir);
  ck_assert_int_eq (mkdir (path, 0555), 0);
  ck_assert_int_eq (open_as_user (path), -EACCES);

  /* An explicit map size; close accepts NULL. */
  catalog_close (cat);
  ck_assert_int_eq (catalog_open (dir, 64 * MiB, &cat), 0);
  catalog_close (NULL);
}
END_TEST

/* cluster_init ranges, -EEXIST, cluster_get before and after reopen. */
START_TEST (test_cluster)
{
  struct catalog_cluster c;
  uint8_t uuid[16];

  make_uuid (uuid, 7);
  ck_assert_int_eq (catalog_cluster_get (cat, &c), -ENOENT);

  ck_assert_int_eq (catalog_cluster_init (cat, 0, uuid), -EINVAL);
  ck_assert_int_eq (catalog_cluster_init (cat, 32768, uuid), -EINVAL);
  ck_assert_int_eq (catalog_cluster_init (cat, 65537, uuid), -EINVAL);
  ck_assert_int_eq (catalog_cluster_init (cat, 3 * 65536, uuid), -EINVAL);
  ck_assert_int_eq (catalog_cluster_init (cat, 128 << 20, uuid), -EINVAL);
  ck_assert_int_eq (catalog_cluster_init (cat, UINT32_C (1) << 31, uuid),
                    -EINVAL);
  ck_assert_int_eq (catalog_cluster_init (cat, SEG_SIZE, NULL), -EINVAL);
  ck_assert_int_eq (catalog_cluster_get (cat, &c), -ENOENT);

  ck_assert_int_eq (catalog_cluster_init (cat, 64 << 20, uuid), 0);
  ck_assert_int_eq (catalog_cluster_init (cat, SEG_SIZE, uuid), -EEXIST);

  reopen ();
  memset (&c, 0xff, sizeof c);
  ck_assert_int_eq (catalog_cluster_get (cat, &c), 0);
  ck_assert_uint_eq (c.segment_size, 64 << 20);
  ck_assert_uint_eq (c.format_version, 3);
  ck_assert_mem_eq (c.uuid, uuid, 16);
}
END_TEST

/* The smallest segment size is accepted. */
START_TEST (test_cluster_min)
{
  struct catalog_cluster c;
  uint8_t uuid[16];

  make_uuid (uuid, 1);
  ck_assert_int_eq (catalog_cluster_init (cat, 65536, uuid), 0);
  ck_assert_int_eq (catalog_cluster_get (cat, &c), 0);
  ck_assert_uint_eq (c.segment_size, 65536);
}
END_TEST

/* register: ids, re-registration keeps id and state, limits. */
START_TEST (test_server_register)
{
  struct catalog_server s, s2;
  uint8_t uuid[16], uuid2[16];
  char longaddr[CATALOG_ADDR_MAX + 2], longzone[CATALOG_ZONE_MAX + 2];

  make_uuid (uuid, 1);
  make_uuid (uuid2, 2);
  ck_assert_int_eq (
      catalog_server_register (cat, uuid, "host1:7421", "rack1", 100, &s), 0);
  ck_assert_uint_eq (s.id, 1);
  ck_assert_uint_eq (s.state, CATALOG_SERVER_UP);
  ck_assert_uint_eq (s.capacity, 100);
  ck_assert_str_eq (s.address, "host1:7421");
  ck_assert_str_eq (s.zone, "rack1");
  ck_assert_mem_eq (s.uuid, uuid, 16);

  ck_assert_int_eq (
      catalog_server_register (cat, uuid2, "host2:7421", "", 200, &s2), 0);
  ck_assert_uint_eq (s2.id, 2);
  ck_assert_str_eq (s2.zone, "");

  /* Re-registration keeps the id and the state, updates the rest. */
  ck_assert_int_eq (catalog_server_set_state (cat, 1, CATALOG_SERVER_DOWN), 0);
  reopen ();
  ck_assert_int_eq (
      catalog_server_register (cat, uuid, "host9:7000", "rack9", 300, &s), 0);
  ck_assert_uint_eq (s.id, 1);
  ck_assert_uint_eq (s.state, CATALOG_SERVER_DOWN);
  ck_assert_uint_eq (s.capacity, 300);
  ck_assert_str_eq (s.address, "host9:7000");
  ck_assert_str_eq (s.zone, "rack9");
  memset (&s, 0, sizeof s);
  ck_assert_int_eq (catalog_server_get (cat, 1, &s), 0);
  ck_assert_str_eq (s.address, "host9:7000");
  ck_assert_uint_eq (s.capacity, 300);

  /* Limits. */
  memset (longaddr, 'a', sizeof longaddr);
  longaddr[CATALOG_ADDR_MAX + 1] = '\0';
  memset (longzone, 'z', sizeof longzone);
  longzone[CATALOG_ZONE_MAX + 1] = '\0';
  ck_assert_int_eq (catalog_server_register (cat, uuid, longaddr, "z", 1, &s),
                    -EINVAL);
  ck_assert_int_eq (catalog_server_register (cat, uuid, "h:1", longzone, 1, &s),
                    -EINVAL);
  ck_assert_int_eq (catalog_server_register (cat, uuid, NULL, "z", 1, &s),
                    -EINVAL);
  ck_assert_int_eq (catalog_server_register (cat, uuid, "", "z", 1, &s),
                    -EINVAL);
  ck_assert_int_eq (catalog_server_register (cat, NULL, "h:1", "z", 1, &s),
                    -EINVAL);
  longaddr[CATALOG_ADDR_MAX] = '\0';
  longzone[CATALOG_ZONE_MAX] = '\0';
  ck_assert_int_eq (
      catalog_server_register (cat, uuid2, longaddr, longzone, 1, &s), 0);
  ck_assert_uint_eq (s.id, 2);
  memset (&s, 0, sizeof s);
  ck_assert_int_eq (catalog_server_get (cat, 2, &s), 0);
  ck_assert_str_eq (s.address, longaddr);
  ck_assert_str_eq (s.zone, longzone);

  /* Failed registrations changed nothing. */
  ck_assert_int_eq (catalog_server_get (cat, 1, &s), 0);
  ck_assert_str_eq (s.address, "host9:7000");
  ck_assert_int_eq (catalog_server_get (cat, 3, &s), -ENOENT);
}
END_TEST

/* server_list order; server_set_state and its errors. */
START_TEST (test_server_list_state)
{
  struct catalog_server *list;
  struct catalog_server s;
  size_t n = 99;

  ck_assert_int_eq (catalog_server_list (cat, &list, &n), 0);
  ck_assert_uint_eq (n, 0);
  ck_assert_ptr_null (list);

  ck_assert_uint_eq (add_server (5), 1);
  ck_assert_uint_eq (add_server (6), 2);
  ck_assert_uint_eq (add_server (7), 3);
  ck_assert_int_eq (catalog_server_list (cat, &list, &n), 0);
  ck_assert_uint_eq (n, 3);
  ck_assert_uint_eq (list[0].id, 1);
  ck_assert_uint_eq (list[1].id, 2);
  ck_assert_uint_eq (list[2].id, 3);
  ck_assert_str_eq (list[1].address, "127.0.0.1:7426");
  ck_assert_str_eq (list[2].zone, "z7");
  free (list);

  ck_assert_int_eq (catalog_server_set_state (cat, 2, CATALOG_SERVER_DRAINING),
                    0);
  ck_assert_int_eq (catalog_server_set_state (cat, 3, CATALOG_SERVER_OUT), 0);
  ck_assert_int_eq (catalog_server_set_state (cat, 3, 4), -EINVAL);
  ck_assert_int_eq (catalog_server_set_state (cat, 3, UINT32_MAX), -EINVAL);
  ck_assert_int_eq (catalog_server_set_state (cat, 4, CATALOG_SERVER_UP),
                    -ENOENT);
  ck_assert_int_eq (catalog_server_set_state (cat, 0, CATALOG_SERVER_UP),
                    -ENOENT);
  reopen ();
  ck_assert_int_eq (catalog_server_get (cat, 1, &s), 0);
  ck_assert_uint_eq (s.state, CATALOG_SERVER_UP);
  ck_assert_int_eq (catalog_server_get (cat, 2, &s), 0);
  ck_assert_uint_eq (s.state, CATALOG_SERVER_DRAINING);
  ck_assert_int_eq (catalog_server_get (cat, 3, &s), 0);
  ck_assert_uint_eq (s.state, CATALOG_SERVER_OUT);
  ck_assert_int_eq (catalog_server_get (cat, 0, &s), -ENOENT);
  ck_assert_int_eq (catalog_server_get (cat, 4, &s), -ENOENT);
}
END_TEST

/* count_segments per server after allocations. */
START_TEST (test_server_count_segments)
{
  const uint32_t s12[2] = { 1, 2 }, s23[2] = { 2, 3 };
  struct catalog_map_entry e[3];
  uint64_t count = 99, vol;

  init_cluster ();
  add_server (1);
  add_server (2);
  add_server (3);
  vol = add_volume ("v", 64 * MiB, 2);

  ck_assert_int_eq (catalog_server_count_segments (cat, 1, &count), 0);
  ck_assert_uint_eq (count, 0);
  ck_assert_int_eq (catalog_server_count_segments (cat, 4, &count), -ENOENT);

  set_entry (&e[0], 0, 2, s12);
  set_entry (&e[1], 1, 2, s23);
  set_entry (&e[2], 5, 2, s23);
  ck_assert_int_eq (catalog_map_alloc (cat, vol, e, 3), 0);
  ck_assert_int_eq (catalog_server_count_segments (cat, 1, &count), 0);
  ck_assert_uint_eq (count, 1);
  ck_assert_int_eq (catalog_server_count_segments (cat, 2, &count), 0);
  ck_assert_uint_eq (count, 3);
  ck_assert_int_eq (catalog_server_count_segments (cat, 3, &count), 0);
  ck_assert_uint_eq (count, 2);
}
END_TEST

/* volume_create: fields, bad names, sizes, replicas, -EEXIST. */
START_TEST (test_volume_create)
{
  struct catalog_volume v;
  char name[CATALOG_NAME_MAX + 2];

  ck_assert_int_eq (catalog_volume_create (cat, "disk-1.a_b", 512, 2, &v), 0);
  ck_assert_uint_eq (v.id, 1);
  ck_assert_str_eq (v.name, "disk-1.a_b");
  ck_assert_uint_eq (v.size, 512);
  ck_assert_uint_eq (v.replicas, 2);
  ck_assert_uint_eq (v.flags, CATALOG_VOL_CLEAN);
  ck_assert_uint_eq (v.epoch, 0);
  ck_assert_uint_eq (v.clean_epoch, 0);
  ck_assert_uint_eq (v.segments, 0);

  /* Bad names. */
  ck_assert_int_eq (catalog_volume_create (cat, NULL, 512, 2, &v), -EINVAL);
  ck_assert_int_eq (catalog_volume_create (cat, "", 512, 2, &v), -EINVAL);
  ck_assert_int_eq (catalog_volume_create (cat, ".a", 512, 2, &v), -EINVAL);
  ck_assert_int_eq (catalog_volume_create (cat, "-a", 512, 2, &v), -EINVAL);
  ck_assert_int_eq (catalog_volume_create (cat, "a/b", 512, 2, &v), -EINVAL);
  ck_assert_int_eq (catalog_volume_create (cat, "a b", 512, 2, &v), -EINVAL);
  ck_assert_int_eq (catalog_volume_create (cat, "a:b", 512, 2, &v), -EINVAL);
  ck_assert_int_eq (catalog_volume_create (cat, "\xc3\xa9", 512, 2, &v),
                    -EINVAL);
  memset (name, 'n', sizeof name);
  name[CATALOG_NAME_MAX + 1] = '\0';
  ck_assert_int_eq (catalog_volume_create (cat, name, 512, 2, &v), -EINVAL);
  name[CATALOG_NAME_MAX] = '\0';
  ck_assert_int_eq (catalog_volume_create (cat, name, 512, 2, &v), 0);
  ck_assert_str_eq (v.name, name);
  ck_assert_int_eq (catalog_volume_create (cat, "0a", 512, 1, &v), 0);
  ck_assert_int_eq (catalog_volume_create (cat, "_a", 512, 1, &v), 0);

  /* Bad sizes and replica counts. */
  ck_assert_int_eq (catalog_volume_create (cat, "s", 0, 2, &v), -EINVAL);
  ck_assert_int_eq (catalog_volume_create (cat, "s", 511, 2, &v), -EINVAL);
  ck_assert_int_eq (catalog_volume_create (cat, "s", 513, 2, &v), -EINVAL);
  ck_assert_int_eq (catalog_volume_create (cat, "s", 1000 * MiB + 1, 2, &v),
                    -EINVAL);
  ck_assert_int_eq (catalog_volume_create (cat, "s", 512, 0, &v), -EINVAL);
  ck_assert_int_eq (catalog_volume_create (cat, "s", 512, 9, &v), -EINVAL);
  ck_assert_int_eq (catalog_volume_create (cat, "s", 512, 8, &v), 0);
  ck_assert_uint_eq (v.replicas, 8);

  /* Names are unique. */
  ck_assert_int_eq (catalog_volume_create (cat, "disk-1.a_b", 1024, 2, &v),
                    -EEXIST);
  ck_assert_int_eq (catalog_volume_lookup (cat, "disk-1.a_b", &v), 0);
  ck_assert_uint_eq (v.id, 1);
  ck_assert_uint_eq (v.size, 512);
}
END_TEST

/* volume_create: min_copies, its default and its range. */
START_TEST (test_volume_min_copies)
{
  struct catalog_volume v;

  ck_assert_int_eq (catalog_volume_create (cat, "r1", 512, 1, &v), 0);
  ck_assert_uint_eq (v.min_copies, 1);
  ck_assert_int_eq (catalog_volume_create (cat, "r2", 512, 2, &v), 0);
  ck_assert_uint_eq (v.min_copies, 1);
  ck_assert_int_eq (catalog_volume_create (cat, "r3", 512, 3, &v), 0);
  ck_assert_uint_eq (v.min_copies, 2);
  ck_assert_int_eq (catalog_volume_create (cat, "r8", 512, 8, &v), 0);
  ck_assert_uint_eq (v.min_copies, 2);

  ck_assert_int_eq (catalog_volume_create_min_copies (cat, "m0", 512, 3, 0, &v),
                    0);
  ck_assert_uint_eq (v.min_copies, 2);
  ck_assert_int_eq (catalog_volume_create_min_copies (cat, "m3", 512, 3, 3, &v),
                    0);
  ck_assert_uint_eq (v.min_copies, 3);
  ck_assert_int_eq (catalog_volume_create_min_copies (cat, "m1", 512, 2, 1, &v),
                    0);
  ck_assert_uint_eq (v.min_copies, 1);
  ck_assert_int_eq (catalog_volume_create_min_copies (cat, "m4", 512, 3, 4, &v),
                    -EINVAL);
  ck_assert_int_eq (catalog_volume_lookup (cat, "m4", &v), -ENOENT);

  /* Kept across updates and reopening. */
  ck_assert_int_eq (catalog_volume_lookup (cat, "m3", &v), 0);
  ck_assert_int_eq (catalog_volume_begin_epoch (cat, v.id, NULL), 0);
  ck_assert_int_eq (catalog_volume_resize (cat, v.id, 1024, NULL), 0);
  catalog_close (cat);
  ck_assert_int_eq (catalog_open (dir, 0, &cat), 0);
  ck_assert_int_eq (catalog_volume_lookup (cat, "m3", &v), 0);
  ck_assert_uint_eq (v.min_copies, 3);
  ck_assert_uint_eq (v.size, 1024);
  ck_assert_uint_eq (v.epoch, 1);
}
END_TEST

/* volume_get, volume_lookup and volume_list. */
START_TEST (test_volume_get_lookup_list)
{
  struct catalog_volume v, *list;
  size_t n = 99;

  ck_assert_int_eq (catalog_volume_list (cat, &list, &n), 0);
  ck_assert_uint_eq (n, 0);
  ck_assert_ptr_null (list);
  ck_assert_int_eq (catalog_volume_get (cat, 1, &v), -ENOENT);
  ck_assert_int_eq (catalog_volume_lookup (cat, "a", &v), -ENOENT);
  ck_assert_int_eq (catalog_volume_lookup (cat, "a/b", &v), -EINVAL);
  ck_assert_int_eq (catalog_volume_lookup (cat, "", &v), -EINVAL);

  ck_assert_uint_eq (add_volume ("b", 1 * MiB, 1), 1);
  ck_assert_uint_eq (add_volume ("a", 2 * MiB, 2), 2);
  ck_assert_uint_eq (add_volume ("c", 3 * MiB, 3), 3);
  reopen ();

  ck_assert_int_eq (catalog_volume_get (cat, 2, &v), 0);
  ck_assert_str_eq (v.name, "a");
  ck_assert_uint_eq (v.size, 2 * MiB);
  ck_assert_uint_eq (v.replicas, 2);
  ck_assert_int_eq (catalog_volume_lookup (cat, "c", &v), 0);
  ck_assert_uint_eq (v.id, 3);
  ck_assert_uint_eq (v.size, 3 * MiB);
  ck_assert_int_eq (catalog_volume_get (cat, 4, &v), -ENOENT);
  ck_assert_int_eq (catalog_volume_get (cat, 0, &v), -ENOENT);

  ck_assert_int_eq (catalog_volume_list (cat, &list, &n), 0);
  ck_assert_uint_eq (n, 3);
  ck_assert_uint_eq (list[0].id, 1);
  ck_assert_str_eq (list[0].name, "b");
  ck_assert_uint_eq (list[1].id, 2);
  ck_assert_str_eq (list[1].name, "a");
  ck_assert_uint_eq (list[2].id, 3);
  ck_assert_uint_eq (list[2].replicas, 3);
  free (list);
}
END_TEST

/* volume_resize: grow, same size, shrink, bad sizes, -ENOENT. */
START_TEST (test_volume_resize)
{
  struct catalog_volume v;
  uint64_t id;

  id = add_volume ("r", 10 * MiB, 2);
  ck_assert_int_eq (catalog_volume_resize (cat, id, 20 * MiB, &v), 0);
  ck_assert_uint_eq (v.size, 20 * MiB);
  ck_assert_str_eq (v.name, "r");
  ck_assert_int_eq (catalog_volume_resize (cat, id, 20 * MiB, NULL), 0);
  ck_assert_int_eq (catalog_volume_resize (cat, id, 20 * MiB + 512, NULL), 0);
  ck_assert_int_eq (catalog_volume_resize (cat, id, 20 * MiB, &v), -EINVAL);
  ck_assert_int_eq (catalog_volume_resize (cat, id, 30 * MiB + 1, &v), -EINVAL);
  ck_assert_int_eq (catalog_volume_resize (cat, id, 0, &v), -EINVAL);
  ck_assert_int_eq (catalog_volume_resize (cat, id + 1, 40 * MiB, &v), -ENOENT);
  reopen ();
  ck_assert_int_eq (catalog_volume_get (cat, id, &v), 0);
  ck_assert_uint_eq (v.size, 20 * MiB + 512);
}
END_TEST

/* begin_epoch and mark_clean, -ESTALE and -ENOENT. */
START_TEST (test_volume_epoch)
{
  struct catalog_volume v;
  uint64_t id;

  id = add_volume ("e", MiB, 2);
  ck_assert_int_eq (catalog_volume_begin_epoch (cat, id, &v), 0);
  ck_assert_uint_eq (v.epoch, 1);
  ck_assert_uint_eq (v.flags & CATALOG_VOL_CLEAN, 0);
  ck_assert_int_eq (catalog_volume_mark_clean (cat, id, 0), -ESTALE);
  ck_assert_int_eq (catalog_volume_mark_clean (cat, id, 2), -ESTALE);
  ck_assert_int_eq (catalog_volume_get (cat, id, &v), 0);
  ck_assert_uint_eq (v.flags & CATALOG_VOL_CLEAN, 0);
  ck_assert_uint_eq (v.clean_epoch, 0);
  ck_assert_int_eq (catalog_volume_mark_clean (cat, id, 1), 0);
  ck_assert_int_eq (catalog_volume_get (cat, id, &v), 0);
  ck_assert_uint_eq (v.flags, CATALOG_VOL_CLEAN);
  ck_assert_uint_eq (v.epoch, 1);
  ck_assert_uint_eq (v.clean_epoch, 1);

  ck_assert_int_eq (catalog_volume_begin_epoch (cat, id, NULL), 0);
  reopen ();
  ck_assert_int_eq (catalog_volume_get (cat, id, &v), 0);
  ck_assert_uint_eq (v.epoch, 2);
  ck_assert_uint_eq (v.flags, 0);
  ck_assert_int_eq (catalog_volume_mark_clean (cat, id, 1), -ESTALE);
  ck_assert_int_eq (catalog_volume_mark_clean (cat, id, 2), 0);
  ck_assert_int_eq (catalog_volume_mark_clean (cat, id, 2), 0);
  reopen ();
  ck_assert_int_eq (catalog_volume_get (cat, id, &v), 0);
  ck_assert_uint_eq (v.flags, CATALOG_VOL_CLEAN);
  ck_assert_uint_eq (v.clean_epoch, 2);

  ck_assert_int_eq (catalog_volume_begin_epoch (cat, id + 1, &v), -ENOENT);
  ck_assert_int_eq (catalog_volume_mark_clean (cat, id + 1, 0), -ENOENT);
}
END_TEST

/* map_alloc: new and mapped indexes, every error, atomicity. */
START_TEST (test_map_alloc)
{
  const uint32_t s12[2] = { 1, 2 }, s23[2] = { 2, 3 };
  const uint32_t s121[3] = { 1, 2, 1 }, s19[2] = { 1, 9 };
  const uint32_t many[9] = { 1, 2, 3, 4, 5, 6, 7, 8, 9 };
  struct catalog_map_entry e[3];
  struct catalog_volume v;
  struct catalog_stats st;
  uint64_t vol;
  uint32_t i;

  init_cluster ();
  add_server (1);
  add_server (2);
  add_server (3);
  vol = add_volume ("m", 4 * SEG_SIZE, 2);

  set_entry (&e[0], 0, 2, s12);
  set_entry (&e[1], 2, 2, s23);
  ck_assert_int_eq (catalog_map_alloc (cat, vol, e, 2), 0);
  ck_assert_uint_eq (e[0].segment.id, 1);
  ck_assert_uint_eq (e[0].segment.volume, vol);
  ck_assert_uint_eq (e[0].segment.gen, 1);
  ck_assert_uint_eq (e[0].segment.refcount, 1);
  ck_assert_uint_eq (e[0].segment.nreplicas, 2);
  ck_assert_uint_eq (e[0].segment.replicas[0].server, 1);
  ck_assert_uint_eq (e[0].segment.replicas[1].server, 2);
  ck_assert_uint_eq (e[0].segment.replicas[0].state, CATALOG_REPLICA_OK);
  ck_assert_uint_eq (e[0].segment.replicas[1].state, CATALOG_REPLICA_OK);
  ck_assert_uint_eq (e[1].segment.id, 2);
  ck_assert_uint_eq (e[1].segment.replicas[0].server, 2);
  ck_assert_uint_eq (e[1].index, 2);
  ck_assert_int_eq (catalog_volume_get (cat, vol, &v), 0);
  ck_assert_uint_eq (v.segments, 2);

  /* Mapped indexes are left alone; a repeated index maps once. */
  set_entry (&e[0], 0, 2, s23);
  set_entry (&e[1], 3, 2, s23);
  set_entry (&e[2], 3, 2, s12);
  ck_assert_int_eq (catalog_map_alloc (cat, vol, e, 3), 0);
  ck_assert_uint_eq (e[0].segment.id, 1);
  ck_assert_uint_eq (e[0].segment.replicas[0].server, 1);
  ck_assert_uint_eq (e[0].segment.replicas[1].server, 2);
  ck_assert_uint_eq (e[1].segment.id, 3);
  ck_assert_uint_eq (e[2].segment.id, 3);
  ck_assert_uint_eq (e[2].segment.replicas[0].server, 2);
  ck_assert_uint_eq (e[2].segment.replicas[1].server, 3);
  ck_assert_int_eq (catalog_volume_get (cat, vol, &v), 0);
  ck_assert_uint_eq (v.segments, 3);
  ck_assert_int_eq (catalog_stats (cat, &st), 0);
  ck_assert_uint_eq (st.segments, 3);

  /* Errors, each leaving the catalog as it was (index 1 stays a hole). */
  set_entry (&e[0], 1, 2, s12);
  set_entry (&e[1], 4, 2, s12); /* past the end */
  ck_assert_int_eq (catalog_map_alloc (cat, vol, e, 2), -EINVAL);
  set_entry (&e[1], UINT64_MAX, 2, s12);
  ck_assert_int_eq (catalog_map_alloc (cat, vol, e, 2), -EINVAL);
  set_entry (&e[1], 1, 0, s12);
  ck_assert_int_eq (catalog_map_alloc (cat, vol, e, 2), -EINVAL);
  set_entry (&e[1], 1, 8, many);
  e[1].segment.nreplicas = 9;
  ck_assert_int_eq (catalog_map_alloc (cat, vol, e, 2), -EINVAL);
  set_entry (&e[1], 1, 3, s121);
  ck_assert_int_eq (catalog_map_alloc (cat, vol, e, 2), -EINVAL);
  set_entry (&e[1], 1, 2, s19); /* no server 9 */
  ck_assert_int_eq (catalog_map_alloc (cat, vol, e, 2), -ENOENT);
  ck_assert_int_eq (catalog_map_alloc (cat, vol + 1, e, 1), -ENOENT);
  ck_assert_int_eq (catalog_volume_get (cat, vol, &v), 0);
  ck_assert_uint_eq (v.segments, 3);
  ck_assert_int_eq (catalog_stats (cat, &st), 0);
  ck_assert_uint_eq (st.segments, 3);

  /* Eight replicas is the maximum, and allowed. */
  for (i = 4; i <= 8; ++i)
    add_server (i);
  set_entry (&e[0], 1, 8, many);
  ck_assert_int_eq (catalog_map_alloc (cat, vol, e, 1), 0);
  ck_assert_uint_eq (e[0].segment.id, 4);
  ck_assert_uint_eq (e[0].segment.nreplicas, 8);
  ck_assert_uint_eq (e[0].segment.replicas[7].server, 8);

  /* An empty batch is fine. */
  ck_assert_int_eq (catalog_map_alloc (cat, vol, e, 0), 0);
}
END_TEST

/* A partial last segment counts; resize adds indexes. */
START_TEST (test_map_alloc_partial_segment)
{
  const uint32_t s1[1] = { 1 };
  struct catalog_map_entry e;
  uint64_t vol;

  init_cluster ();
  add_server (1);
  /* 5 MiB: two segments, the second partial. */
  vol = add_volume ("p", 5 * MiB, 1);
  set_entry (&e, 2, 1, s1);
  ck_assert_int_eq (catalog_map_alloc (cat, vol, &e, 1), -EINVAL);
  set_entry (&e, 1, 1, s1);
  ck_assert_int_eq (catalog_map_alloc (cat, vol, &e, 1), 0);

  /* After a resize the new index exists. */
  ck_assert_int_eq (catalog_volume_resize (cat, vol, 9 * MiB, NULL), 0);
  set_entry (&e, 2, 1, s1);
  ck_assert_int_eq (catalog_map_alloc (cat, vol, &e, 1), 0);
  ck_assert_uint_eq (e.segment.id, 2);
}
END_TEST

/* map_alloc needs the cluster (its segment size). */
START_TEST (test_map_alloc_no_cluster)
{
  const uint32_t s1[1] = { 1 };
  struct catalog_map_entry e;
  uint64_t vol;

  add_server (1);
  vol = add_volume ("p", 5 * MiB, 1);
  set_entry (&e, 0, 1, s1);
  ck_assert_int_eq (catalog_map_alloc (cat, vol, &e, 1), -ENOENT);
}
END_TEST

/* map_get: ranges with holes, empty ranges, other volumes. */
START_TEST (test_map_get)
{
  struct catalog_map_entry *m = (void *)1;
  size_t n = 99;
  uint64_t vol, vol2, s1, s3, s4, s7;

  init_cluster ();
  add_server (1);
  add_server (2);
  vol = add_volume ("g", 10 * SEG_SIZE, 2);
  vol2 = add_volume ("h", 10 * SEG_SIZE, 2);
  alloc_index (vol2, 0);
  s7 = alloc_index (vol, 7);
  s1 = alloc_index (vol, 1);
  s4 = alloc_index (vol, 4);
  s3 = alloc_index (vol, 3);
  alloc_index (vol2, 1);
  reopen ();

  ck_assert_int_eq (catalog_map_get (cat, vol, 0, 10, &m, &n), 0);
  ck_assert_uint_eq (n, 4);
  ck_assert_uint_eq (m[0].index, 1);
  ck_assert_uint_eq (m[0].segment.id, s1);
  ck_assert_uint_eq (m[1].index, 3);
  ck_assert_uint_eq (m[1].segment.id, s3);
  ck_assert_uint_eq (m[2].index, 4);
  ck_assert_uint_eq (m[2].segment.id, s4);
  ck_assert_uint_eq (m[3].index, 7);
  ck_assert_uint_eq (m[3].segment.id, s7);
  ck_assert_uint_eq (m[3].segment.refcount, 1);
  ck_assert_uint_eq (m[3].segment.volume, vol);
  ck_assert_uint_eq (m[3].segment.gen, 1);
  ck_assert_uint_eq (m[3].segment.nreplicas, 2);
  ck_assert_uint_eq (m[3].segment.replicas[0].server, 1);
  ck_assert_uint_eq (m[3].segment.replicas[1].server, 2);
  free (m);

  /* [2, 5): 3 and 4. */
  ck_assert_int_eq (catalog_map_get (cat, vol, 2, 3, &m, &n), 0);
  ck_assert_uint_eq (n, 2);
  ck_assert_uint_eq (m[0].index, 3);
  ck_assert_uint_eq (m[1].index, 4);
  free (m);

  /* [4, 5) and [4, 7): 4 only. */
  ck_assert_int_eq (catalog_map_get (cat, vol, 4, 1, &m, &n), 0);
  ck_assert_uint_eq (n, 1);
  ck_assert_uint_eq (m[0].index, 4);
  free (m);
  ck_assert_int_eq (catalog_map_get (cat, vol, 4, 3, &m, &n), 0);
  ck_assert_uint_eq (n, 1);
  free (m);

  /* Holes only, empty and past the end. */
  ck_assert_int_eq (catalog_map_get (cat, vol, 5, 2, &m, &n), 0);
  ck_assert_uint_eq (n, 0);
  ck_assert_ptr_null (m);
  ck_assert_int_eq (catalog_map_get (cat, vol, 1, 0, &m, &n), 0);
  ck_assert_uint_eq (n, 0);
  ck_assert_ptr_null (m);
  ck_assert_int_eq (catalog_map_get (cat, vol, 8, 1000, &m, &n), 0);
  ck_assert_uint_eq (n, 0);

  /* The whole index space (count overflows). */
  ck_assert_int_eq (catalog_map_get (cat, vol, 0, UINT64_MAX, &m, &n), 0);
  ck_assert_uint_eq (n, 4);
  free (m);
  ck_assert_int_eq (catalog_map_get (cat, vol, 2, UINT64_MAX, &m, &n), 0);
  ck_assert_uint_eq (n, 3);
  ck_assert_uint_eq (m[0].index, 3);
  free (m);

  /* The other volume's entries stay apart. */
  ck_assert_int_eq (catalog_map_get (cat, vol2, 0, UINT64_MAX, &m, &n), 0);
  ck_assert_uint_eq (n, 2);
  ck_assert_uint_eq (m[0].index, 0);
  ck_assert_uint_eq (m[1].index, 1);
  free (m);

  ck_assert_int_eq (catalog_map_get (cat, 99, 0, 10, &m, &n), -ENOENT);
}
END_TEST

/* Random allocations against a model; print the seed (TEST_SEED). */
START_TEST (test_map_get_random)
{
  enum { NSEG = 2000, ROUNDS = 300 };
  const uint32_t s12[2] = { 1, 2 };
  static uint64_t model[NSEG]; /* segment id, 0: hole */
  struct catalog_map_entry batch[16], *m;
  const char *env = getenv ("TEST_SEED");
  unsigned seed =
      env ? (unsigned)strtoul (env, NULL, 0) : (unsigned)time (NULL);
  uint64_t vol, start, count, k;
  size_t n, j, i;
  int round;

  printf ("test_map_get_random: TEST_SEED=%u\n", seed);
  fflush (stdout);
  srandom (seed);
  init_cluster ();
  add_server (1);
  add_server (2);
  vol = add_volume ("rnd", (uint64_t)NSEG * SEG_SIZE, 2);
  memset (model, 0, sizeof model);

  for (round = 0; round < ROUNDS; ++round) {
    n = 1 + random () % 16;
    for (i = 0; i < n; ++i)
      set_entry (&batch[i], random () % NSEG, 2, s12);
    ck_assert_int_eq (catalog_map_alloc (cat, vol, batch, n), 0);
    for (i = 0; i < n; ++i) {
      if (model[batch[i].index] == 0)
        model[batch[i].index] = batch[i].segment.id;
      ck_assert_uint_eq (batch[i].segment.id, model[batch[i].index]);
    }

    start = random () % NSEG;
    count = random () % (NSEG / 4 + 1);
    ck_assert_int_eq (catalog_map_get (cat, vol, start, count, &m, &n), 0);
    j = 0;
    for (k = start; k < start + count && k < NSEG; ++k) {
      if (model[k] == 0)
        continue;
      ck_assert_uint_lt (j, n);
      ck_assert_uint_eq (m[j].index, k);
      ck_assert_uint_eq (m[j].segment.id, model[k]);
      j++;
    }
    ck_assert_uint_eq (j, n);
    free (m);
  }
}
END_TEST

/* segment_get and replica_set_state with their errors. */
START_TEST (test_segment_replica_state)
{
  struct catalog_segment g;
  uint64_t vol, seg;

  init_cluster ();
  add_server (1);
  add_server (2);
  add_server (3);
  vol = add_volume ("s", 4 * SEG_SIZE, 2);
  seg = alloc_index (vol, 0);

  ck_assert_int_eq (catalog_segment_get (cat, seg, &g), 0);
  ck_assert_uint_eq (g.id, seg);
  ck_assert_uint_eq (g.refcount, 1);
  ck_assert_uint_eq (g.nreplicas, 2);
  ck_assert_uint_eq (g.volume, vol);
  ck_assert_uint_eq (g.gen, 1);
  ck_assert_int_eq (catalog_segment_get (cat, seg + 1, &g), -ENOENT);
  ck_assert_int_eq (catalog_segment_get (cat, 0, &g), -ENOENT);

  ck_assert_int_eq (
      catalog_replica_set_state (cat, seg, 2, CATALOG_REPLICA_STALE, &g), 0);
  ck_assert_uint_eq (g.replicas[0].state, CATALOG_REPLICA_OK);
  ck_assert_uint_eq (g.replicas[1].state, CATALOG_REPLICA_STALE);
  ck_assert_uint_eq (g.gen, 2);
  ck_assert_int_eq (
      catalog_replica_set_state (cat, seg, 1, CATALOG_REPLICA_SYNCING, NULL),
      0);
  /* No change, no new generation. */
  ck_assert_int_eq (
      catalog_replica_set_state (cat, seg, 1, CATALOG_REPLICA_SYNCING, &g), 0);
  ck_assert_uint_eq (g.gen, 3);
  ck_assert_int_eq (catalog_replica_set_state (cat, seg, 1, 3, NULL), -EINVAL);
  ck_assert_int_eq (catalog_replica_set_state (cat, seg, 1, 255, NULL),
                    -EINVAL);
  ck_assert_int_eq (
      catalog_replica_set_state (cat, seg, 3, CATALOG_REPLICA_OK, NULL),
      -ENOENT);
  ck_assert_int_eq (
      catalog_replica_set_state (cat, seg + 1, 1, CATALOG_REPLICA_OK, NULL),
      -ENOENT);

  reopen ();
  ck_assert_int_eq (catalog_segment_get (cat, seg, &g), 0);
  ck_assert_uint_eq (g.replicas[0].server, 1);
  ck_assert_uint_eq (g.replicas[0].state, CATALOG_REPLICA_SYNCING);
  ck_assert_uint_eq (g.replicas[1].server, 2);
  ck_assert_uint_eq (g.replicas[1].state, CATALOG_REPLICA_STALE);
  ck_assert_uint_eq (g.gen, 3);
}
END_TEST

/* next_epoch: rotation, -ESTALE for any other epoch, CLEAN cleared. */
START_TEST (test_volume_next_epoch)
{
  struct catalog_volume v;
  uint64_t id;

  id = add_volume ("n", MiB, 2);
  ck_assert_int_eq (catalog_volume_begin_epoch (cat, id, NULL), 0);
  ck_assert_int_eq (catalog_volume_next_epoch (cat, id, 1, &v), 0);
  ck_assert_uint_eq (v.epoch, 2);
  ck_assert_uint_eq (v.flags & CATALOG_VOL_CLEAN, 0);
  ck_assert_str_eq (v.name, "n");
  ck_assert_int_eq (catalog_volume_next_epoch (cat, id, 1, &v), -ESTALE);
  ck_assert_int_eq (catalog_volume_next_epoch (cat, id, 3, &v), -ESTALE);
  ck_assert_int_eq (catalog_volume_next_epoch (cat, id, 2, NULL), 0);
  reopen ();
  ck_assert_int_eq (catalog_volume_get (cat, id, &v), 0);
  ck_assert_uint_eq (v.epoch, 3);
  ck_assert_uint_eq (v.clean_epoch, 0);

  /* A clean volume rotated (a late writer) is no longer clean. */
  ck_assert_int_eq (catalog_volume_mark_clean (cat, id, 3), 0);
  ck_assert_int_eq (catalog_volume_next_epoch (cat, id, 3, &v), 0);
  ck_assert_uint_eq (v.epoch, 4);
  ck_assert_uint_eq (v.flags & CATALOG_VOL_CLEAN, 0);
  ck_assert_uint_eq (v.clean_epoch, 3);

  ck_assert_int_eq (catalog_volume_next_epoch (cat, id + 1, 0, &v), -ENOENT);
}
END_TEST

/* set_clean_epoch: raises only, -EINVAL above the epoch, -ENOENT. */
START_TEST (test_volume_clean_epoch)
{
  struct catalog_volume v;
  uint64_t id;

  id = add_volume ("c", MiB, 2);
  ck_assert_int_eq (catalog_volume_set_clean_epoch (cat, id, 0), 0);
  ck_assert_int_eq (catalog_volume_set_clean_epoch (cat, id, 1), -EINVAL);
  ck_assert_int_eq (catalog_volume_begin_epoch (cat, id, NULL), 0);
  ck_assert_int_eq (catalog_volume_next_epoch (cat, id, 1, NULL), 0);
  ck_assert_int_eq (catalog_volume_next_epoch (cat, id, 2, NULL), 0);
  ck_assert_int_eq (catalog_volume_set_clean_epoch (cat, id, 2), 0);
  reopen ();
  ck_assert_int_eq (catalog_volume_get (cat, id, &v), 0);
  ck_assert_uint_eq (v.clean_epoch, 2);
  ck_assert_uint_eq (v.epoch, 3);
  ck_assert_uint_eq (v.flags & CATALOG_VOL_CLEAN, 0);

  /* Never lowered; the current epoch itself is allowed. */
  ck_assert_int_eq (catalog_volume_set_clean_epoch (cat, id, 1), 0);
  ck_assert_int_eq (catalog_volume_get (cat, id, &v), 0);
  ck_assert_uint_eq (v.clean_epoch, 2);
  ck_assert_int_eq (catalog_volume_set_clean_epoch (cat, id, 4), -EINVAL);
  ck_assert_int_eq (catalog_volume_set_clean_epoch (cat, id, UINT64_MAX),
                    -EINVAL);
  ck_assert_int_eq (catalog_volume_set_clean_epoch (cat, id, 3), 0);
  ck_assert_int_eq (catalog_volume_get (cat, id, &v), 0);
  ck_assert_uint_eq (v.clean_epoch, 3);
  ck_assert_uint_eq (v.flags & CATALOG_VOL_CLEAN, 0);

  /* begin_epoch keeps it; mark_clean sets it to the epoch. */
  ck_assert_int_eq (catalog_volume_begin_epoch (cat, id, &v), 0);
  ck_assert_uint_eq (v.epoch, 4);
  ck_assert_uint_eq (v.clean_epoch, 3);
  ck_assert_int_eq (catalog_volume_mark_clean (cat, id, 4), 0);
  ck_assert_int_eq (catalog_volume_get (cat, id, &v), 0);
  ck_assert_uint_eq (v.clean_epoch, 4);

  ck_assert_int_eq (catalog_volume_set_clean_epoch (cat, id + 1, 0), -ENOENT);
}
END_TEST

/* segment_list: every volume's segments in id order, paged. */
START_TEST (test_segment_list)
{
  struct catalog_segment *list = (void *)1;
  uint64_t v1, v2, seg[5], after;
  size_t n = 99, total;
  int i;

  ck_assert_int_eq (catalog_segment_list (cat, 0, 10, &list, &n), 0);
  ck_assert_uint_eq (n, 0);
  ck_assert_ptr_null (list);

  init_cluster ();
  add_server (1);
  add_server (2);
  v1 = add_volume ("a", 8 * SEG_SIZE, 2);
  v2 = add_volume ("b", 8 * SEG_SIZE, 2);
  seg[0] = alloc_index (v1, 3);
  seg[1] = alloc_index (v2, 0);
  seg[2] = alloc_index (v1, 0);
  seg[3] = alloc_index (v2, 7);
  seg[4] = alloc_index (v1, 1);
  ck_assert_int_eq (
      catalog_replica_set_state (cat, seg[3], 2, CATALOG_REPLICA_STALE, NULL),
      0);

  ck_assert_int_eq (catalog_segment_list (cat, 0, 100, &list, &n), 0);
  ck_assert_uint_eq (n, 5);
  for (i = 0; i < 5; ++i)
    ck_assert_uint_eq (list[i].id, seg[i]);
  ck_assert_uint_eq (list[0].volume, v1);
  ck_assert_uint_eq (list[1].volume, v2);
  ck_assert_uint_eq (list[3].gen, 2);
  ck_assert_uint_eq (list[3].replicas[1].state, CATALOG_REPLICA_STALE);
  ck_assert_uint_eq (list[4].gen, 1);
  ck_assert_uint_eq (list[4].nreplicas, 2);
  free (list);

  /* Pages of two. */
  after = 0;
  total = 0;
  for (;;) {
    ck_assert_int_eq (catalog_segment_list (cat, after, 2, &list, &n), 0);
    if (n == 0)
      break;
    ck_assert_uint_le (n, 2);
    for (i = 0; i < (int)n; ++i)
      ck_assert_uint_eq (list[i].id, seg[total + i]);
    total += n;
    after = list[n - 1].id;
    free (list);
  }
  ck_assert_uint_eq (total, 5);

  ck_assert_int_eq (catalog_segment_list (cat, seg[2], 100, &list, &n), 0);
  ck_assert_uint_eq (n, 2);
  ck_assert_uint_eq (list[0].id, seg[3]);
  free (list);
  ck_assert_int_eq (catalog_segment_list (cat, 0, 0, &list, &n), 0);
  ck_assert_uint_eq (n, 0);
  ck_assert_int_eq (catalog_segment_list (cat, UINT64_MAX, 10, &list, &n), 0);
  ck_assert_uint_eq (n, 0);

  /* Deleted segments are gone from the list. */
  ck_assert_int_eq (catalog_volume_delete (cat, v1), 0);
  ck_assert_int_eq (catalog_segment_list (cat, 0, SIZE_MAX, &list, &n), 0);
  ck_assert_uint_eq (n, 2);
  ck_assert_uint_eq (list[0].id, seg[1]);
  ck_assert_uint_eq (list[1].id, seg[3]);
  free (list);
}
END_TEST

/* Number of replicas that server_segments lists for SERVER. */
static size_t
server_seg_count (uint32_t server)
{
  uint64_t count;

  ck_assert_int_eq (catalog_server_count_segments (cat, server, &count), 0);
  return count;
}

/* True if garbage holds SEG for SERVER. */
static int
in_garbage (uint32_t server, uint64_t seg)
{
  uint64_t *ids;
  size_t n, i;
  int found = 0;

  ck_assert_int_eq (catalog_garbage_get (cat, server, SIZE_MAX, &ids, &n), 0);
  for (i = 0; i < n; ++i)
    if (ids[i] == seg)
      found = 1;
  free (ids);
  return found;
}

/* add_replica: appended, gen + 1, server_segments; every error. */
START_TEST (test_segment_add_replica)
{
  const uint32_t many[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
  struct catalog_map_entry e;
  struct catalog_segment g;
  uint64_t vol, seg, full;
  uint32_t i;

  init_cluster ();
  for (i = 1; i <= 9; ++i)
    add_server (i);
  vol = add_volume ("r", 4 * SEG_SIZE, 2);
  seg = alloc_index (vol, 0);

  ck_assert_int_eq (
      catalog_segment_add_replica (cat, seg, 3, CATALOG_REPLICA_SYNCING, &g),
      0);
  ck_assert_uint_eq (g.id, seg);
  ck_assert_uint_eq (g.volume, vol);
  ck_assert_uint_eq (g.gen, 2);
  ck_assert_uint_eq (g.nreplicas, 3);
  ck_assert_uint_eq (g.replicas[0].server, 1);
  ck_assert_uint_eq (g.replicas[1].server, 2);
  ck_assert_uint_eq (g.replicas[2].server, 3);
  ck_assert_uint_eq (g.replicas[2].state, CATALOG_REPLICA_SYNCING);
  ck_assert_uint_eq (server_seg_count (3), 1);

  /* Errors change nothing. */
  ck_assert_int_eq (
      catalog_segment_add_replica (cat, seg, 3, CATALOG_REPLICA_OK, NULL),
      -EEXIST);
  ck_assert_int_eq (
      catalog_segment_add_replica (cat, seg, 1, CATALOG_REPLICA_OK, NULL),
      -EEXIST);
  ck_assert_int_eq (catalog_segment_add_replica (cat, seg, 4, 3, NULL),
                    -EINVAL);
  ck_assert_int_eq (
      catalog_segment_add_replica (cat, seg, 10, CATALOG_REPLICA_OK, NULL),
      -ENOENT);
  ck_assert_int_eq (
      catalog_segment_add_replica (cat, seg + 1, 4, CATALOG_REPLICA_OK, NULL),
      -ENOENT);
  ck_assert_int_eq (
      catalog_segment_add_replica (cat, 0, 4, CATALOG_REPLICA_OK, NULL),
      -ENOENT);
  reopen ();
  ck_assert_int_eq (catalog_segment_get (cat, seg, &g), 0);
  ck_assert_uint_eq (g.gen, 2);
  ck_assert_uint_eq (g.nreplicas, 3);
  ck_assert_uint_eq (g.replicas[2].server, 3);
  ck_assert_uint_eq (g.replicas[2].state, CATALOG_REPLICA_SYNCING);
  ck_assert_uint_eq (server_seg_count (4), 0);

  /* The replica then behaves like any other. */
  ck_assert_int_eq (
      catalog_replica_set_state (cat, seg, 3, CATALOG_REPLICA_OK, &g), 0);
  ck_assert_uint_eq (g.gen, 3);
  ck_assert_uint_eq (g.replicas[2].state, CATALOG_REPLICA_OK);

  /* A segment with the maximum number of replicas takes no more. */
  memset (&e, 0, sizeof e);
  e.index = 1;
  e.segment.nreplicas = 8;
  for (i = 0; i < 8; ++i)
    e.segment.replicas[i].server = many[i];
  ck_assert_int_eq (catalog_map_alloc (cat, vol, &e, 1), 0);
  full = e.segment.id;
  ck_assert_int_eq (
      catalog_segment_add_replica (cat, full, 9, CATALOG_REPLICA_OK, NULL),
      -EINVAL);
  ck_assert_int_eq (catalog_segment_get (cat, full, &g), 0);
  ck_assert_uint_eq (g.nreplicas, 8);
  ck_assert_uint_eq (g.gen, 1);
  ck_assert_uint_eq (server_seg_count (9), 0);
}
END_TEST

/* remove_replica: order kept, gen + 1, garbage; errors; re-adding. */
START_TEST (test_segment_remove_replica)
{
  const uint32_t s123[3] = { 1, 2, 3 };
  struct catalog_map_entry e;
  struct catalog_segment g;
  uint64_t vol, seg, other;

  init_cluster ();
  add_server (1);
  add_server (2);
  add_server (3);
  vol = add_volume ("x", 4 * SEG_SIZE, 3);
  set_entry (&e, 0, 3, s123);
  ck_assert_int_eq (catalog_map_alloc (cat, vol, &e, 1), 0);
  seg = e.segment.id;
  other = alloc_index (vol, 1);
  ck_assert_int_eq (
      catalog_replica_set_state (cat, seg, 3, CATALOG_REPLICA_STALE, NULL), 0);

  ck_assert_int_eq (catalog_segment_remove_replica (cat, seg, 2, &g), 0);
  ck_assert_uint_eq (g.gen, 3);
  ck_assert_uint_eq (g.nreplicas, 2);
  ck_assert_uint_eq (g.replicas[0].server, 1);
  ck_assert_uint_eq (g.replicas[1].server, 3);
  ck_assert_uint_eq (g.replicas[1].state, CATALOG_REPLICA_STALE);
  ck_assert_uint_eq (g.replicas[2].server, 0);
  reopen ();
  ck_assert_int_eq (catalog_segment_get (cat, seg, &g), 0);
  ck_assert_uint_eq (g.gen, 3);
  ck_assert_uint_eq (g.nreplicas, 2);
  ck_assert_uint_eq (g.replicas[1].server, 3);
  ck_assert_uint_eq (server_seg_count (2), 1); /* OTHER only */
  ck_assert (in_garbage (2, seg));
  ck_assert (!in_garbage (2, other));
  ck_assert (!in_garbage (1, seg));

  /* Errors. */
  ck_assert_int_eq (catalog_segment_remove_replica (cat, seg, 2, NULL),
                    -ENOENT);
  ck_assert_int_eq (catalog_segment_remove_replica (cat, seg, 9, NULL),
                    -ENOENT);
  ck_assert_int_eq (catalog_segment_remove_replica (cat, seg + 99, 1, NULL),
                    -ENOENT);
  ck_assert_int_eq (catalog_segment_remove_replica (cat, seg, 3, NULL), 0);
  ck_assert_int_eq (catalog_segment_remove_replica (cat, seg, 1, &g), -EBUSY);
  ck_assert_int_eq (catalog_segment_get (cat, seg, &g), 0);
  ck_assert_uint_eq (g.nreplicas, 1);
  ck_assert_uint_eq (g.replicas[0].server, 1);
  ck_assert_uint_eq (g.gen, 4);
  ck_assert_uint_eq (server_seg_count (1), 2);
  ck_assert (!in_garbage (1, seg));

  /* The map still leads to the segment, with its new replica list. */
  {
    struct catalog_map_entry *m;
    size_t n;

    ck_assert_int_eq (catalog_map_get (cat, vol, 0, 1, &m, &n), 0);
    ck_assert_uint_eq (n, 1);
    ck_assert_uint_eq (m[0].segment.id, seg);
    ck_assert_uint_eq (m[0].segment.nreplicas, 1);
    ck_assert_uint_eq (m[0].segment.gen, 4);
    free (m);
  }

  /* Adding the replica back takes it out of the server's garbage. */
  ck_assert_int_eq (
      catalog_segment_add_replica (cat, seg, 2, CATALOG_REPLICA_SYNCING, &g),
      0);
  ck_assert_uint_eq (g.gen, 5);
  ck_assert (!in_garbage (2, seg));
  ck_assert (in_garbage (3, seg));

  /* Deleting the volume queues the remaining replicas once each. */
  ck_assert_int_eq (catalog_volume_delete (cat, vol), 0);
  ck_assert (in_garbage (1, seg));
  ck_assert (in_garbage (2, seg));
  ck_assert (in_garbage (3, seg));
  ck_assert_uint_eq (server_seg_count (1), 0);
  ck_assert_uint_eq (server_seg_count (2), 0);
  ck_assert_uint_eq (server_seg_count (3), 0);
}
END_TEST

/* server_segments: one server's segments in id order, paged. */
START_TEST (test_server_segments)
{
  const uint32_t s23[2] = { 2, 3 };
  struct catalog_map_entry e;
  uint64_t *ids = (void *)1, vol, seg[4], after;
  size_t n = 99, total;
  size_t i;

  ck_assert_int_eq (catalog_server_segments (cat, 1, 0, 10, &ids, &n), -ENOENT);
  init_cluster ();
  add_server (1);
  add_server (2);
  add_server (3);
  ck_assert_int_eq (catalog_server_segments (cat, 1, 0, 10, &ids, &n), 0);
  ck_assert_uint_eq (n, 0);
  ck_assert_ptr_null (ids);

  vol = add_volume ("s", 8 * SEG_SIZE, 2);
  seg[0] = alloc_index (vol, 4);
  set_entry (&e, 2, 2, s23);
  ck_assert_int_eq (catalog_map_alloc (cat, vol, &e, 1), 0);
  seg[1] = alloc_index (vol, 0);
  seg[2] = alloc_index (vol, 6);
  seg[3] = alloc_index (vol, 1);

  ck_assert_int_eq (catalog_server_segments (cat, 1, 0, 10, &ids, &n), 0);
  ck_assert_uint_eq (n, 4);
  for (i = 0; i < 4; ++i)
    ck_assert_uint_eq (ids[i], seg[i]);
  free (ids);
  ck_assert_int_eq (catalog_server_segments (cat, 3, 0, 10, &ids, &n), 0);
  ck_assert_uint_eq (n, 1);
  ck_assert_uint_eq (ids[0], e.segment.id);
  free (ids);
  ck_assert_int_eq (catalog_server_segments (cat, 2, 0, SIZE_MAX, &ids, &n), 0);
  ck_assert_uint_eq (n, 5);
  free (ids);

  /* Pages of three. */
  after = 0;
  total = 0;
  for (;;) {
    ck_assert_int_eq (catalog_server_segments (cat, 1, after, 3, &ids, &n), 0);
    if (n == 0)
      break;
    ck_assert_uint_le (n, 3);
    for (i = 0; i < n; ++i)
      ck_assert_uint_eq (ids[i], seg[total + i]);
    total += n;
    after = ids[n - 1];
    free (ids);
  }
  ck_assert_uint_eq (total, 4);
  ck_assert_int_eq (catalog_server_segments (cat, 1, seg[3], 10, &ids, &n), 0);
  ck_assert_uint_eq (n, 0);
  ck_assert_int_eq (catalog_server_segments (cat, 1, 0, 0, &ids, &n), 0);
  ck_assert_uint_eq (n, 0);
  ck_assert_int_eq (catalog_server_segments (cat, 1, UINT64_MAX, 10, &ids, &n),
                    0);
  ck_assert_uint_eq (n, 0);

  /* Replicas moved away leave the list; moved in, join it. */
  ck_assert_int_eq (catalog_segment_remove_replica (cat, seg[1], 1, NULL), 0);
  ck_assert_int_eq (
      catalog_segment_add_replica (cat, seg[1], 3, CATALOG_REPLICA_OK, NULL),
      0);
  ck_assert_int_eq (catalog_server_segments (cat, 1, 0, 10, &ids, &n), 0);
  ck_assert_uint_eq (n, 3);
  ck_assert_uint_eq (ids[0], seg[0]);
  ck_assert_uint_eq (ids[1], seg[2]);
  free (ids);
  ck_assert_int_eq (catalog_server_segments (cat, 3, 0, 10, &ids, &n), 0);
  ck_assert_uint_eq (n, 2);
  ck_assert_uint_eq (ids[1], seg[1]);
  free (ids);
}
END_TEST

/* server_remove: -EBUSY while it holds replicas, then record, uuid and
 * garbage go; ids are not reused.
 */
START_TEST (test_server_remove)
{
  const uint32_t s13[2] = { 1, 3 };
  struct catalog_map_entry e;
  struct catalog_server s, *list;
  struct catalog_stats st;
  uint64_t vol, seg, doomed, *ids;
  uint8_t uuid[16];
  size_t n;

  ck_assert_int_eq (catalog_server_remove (cat, 1), -ENOENT);
  init_cluster ();
  add_server (1);
  add_server (2);
  add_server (3);
  vol = add_volume ("v", 8 * SEG_SIZE, 2);
  doomed = add_volume ("d", 8 * SEG_SIZE, 2);
  seg = alloc_index (vol, 0);
  alloc_index (doomed, 0);
  ck_assert_int_eq (catalog_volume_delete (cat, doomed), 0);
  ck_assert_uint_eq (garbage_count (2), 1);

  ck_assert_int_eq (catalog_server_remove (cat, 2), -EBUSY);
  ck_assert_int_eq (catalog_server_get (cat, 2, &s), 0);

  /* Drain server 2: replace its replica by one on server 3. */
  ck_assert_int_eq (catalog_server_set_state (cat, 2, CATALOG_SERVER_DRAINING),
                    0);
  ck_assert_int_eq (
      catalog_segment_add_replica (cat, seg, 3, CATALOG_REPLICA_SYNCING, NULL),
      0);
  ck_assert_int_eq (
      catalog_replica_set_state (cat, seg, 3, CATALOG_REPLICA_OK, NULL), 0);
  ck_assert_int_eq (catalog_segment_remove_replica (cat, seg, 2, NULL), 0);
  ck_assert_uint_eq (garbage_count (2), 2);

  ck_assert_int_eq (catalog_server_remove (cat, 2), 0);
  ck_assert_int_eq (catalog_server_remove (cat, 2), -ENOENT);
  reopen ();
  ck_assert_int_eq (catalog_server_get (cat, 2, &s), -ENOENT);
  ck_assert_int_eq (catalog_garbage_get (cat, 2, 10, &ids, &n), -ENOENT);
  ck_assert_int_eq (catalog_server_list (cat, &list, &n), 0);
  ck_assert_uint_eq (n, 2);
  ck_assert_uint_eq (list[0].id, 1);
  ck_assert_uint_eq (list[1].id, 3);
  free (list);
  ck_assert_int_eq (catalog_stats (cat, &st), 0);
  ck_assert_uint_eq (st.servers, 2);

  /* Other servers keep their garbage and replicas. */
  ck_assert_uint_eq (garbage_count (1), 1);
  ck_assert_uint_eq (server_seg_count (1), 1);
  ck_assert_uint_eq (server_seg_count (3), 1);

  /* The same store registering again is a new server. */
  make_uuid (uuid, 2);
  ck_assert_int_eq (
      catalog_server_register (cat, uuid, "127.0.0.1:7422", "z2", 1, &s), 0);
  ck_assert_uint_eq (s.id, 4);
  ck_assert_uint_eq (s.state, CATALOG_SERVER_UP);
  ck_assert_uint_eq (garbage_count (4), 0);
  ck_assert_uint_eq (add_server (9), 5);

  /* A server removed without ever holding anything. */
  ck_assert_int_eq (catalog_server_remove (cat, 5), 0);
  ck_assert_int_eq (catalog_server_get (cat, 5, &s), -ENOENT);

  /* The replicas it can no longer be placed on: map_alloc says so. */
  set_entry (&e, 1, 2, s13);
  e.segment.replicas[1].server = 2;
  ck_assert_int_eq (catalog_map_alloc (cat, vol, &e, 1), -ENOENT);
  set_entry (&e, 1, 2, s13);
  ck_assert_int_eq (catalog_map_alloc (cat, vol, &e, 1), 0);
  ck_assert_int_eq (catalog_segment_add_replica (cat, e.segment.id, 2, 0, NULL),
                    -ENOENT);
}
END_TEST

/* volume_delete: map, segments, server_segments, garbage. */
START_TEST (test_volume_delete)
{
  const uint32_t s23[2] = { 2, 3 };
  struct catalog_map_entry e, *m;
  struct catalog_volume v;
  struct catalog_segment g;
  struct catalog_stats st;
  uint64_t vol, keep, seg[3], kseg, count, *ids;
  uint64_t bogus[2];
  size_t n;

  init_cluster ();
  add_server (1);
  add_server (2);
  add_server (3);
  vol = add_volume ("d", 8 * SEG_SIZE, 2);
  keep = add_volume ("k", 8 * SEG_SIZE, 2);
  seg[0] = alloc_index (vol, 0);
  kseg = alloc_index (keep, 0);
  seg[1] = alloc_index (vol, 5);
  set_entry (&e, 7, 2, s23);
  ck_assert_int_eq (catalog_map_alloc (cat, vol, &e, 1), 0);
  seg[2] = e.segment.id;

  ck_assert_int_eq (catalog_volume_delete (cat, vol + 2), -ENOENT);
  ck_assert_int_eq (catalog_volume_delete (cat, vol), 0);
  ck_assert_int_eq (catalog_volume_delete (cat, vol), -ENOENT);
  reopen ();

  ck_assert_int_eq (catalog_volume_get (cat, vol, &v), -ENOENT);
  ck_assert_int_eq (catalog_volume_lookup (cat, "d", &v), -ENOENT);
  ck_assert_int_eq (catalog_map_get (cat, vol, 0, 8, &m, &n), -ENOENT);
  ck_assert_int_eq (catalog_segment_get (cat, seg[0], &g), -ENOENT);
  ck_assert_int_eq (catalog_segment_get (cat, seg[1], &g), -ENOENT);
  ck_assert_int_eq (catalog_segment_get (cat, seg[2], &g), -ENOENT);

  /* The other volume is untouched. */
  ck_assert_int_eq (catalog_segment_get (cat, kseg, &g), 0);
  ck_assert_int_eq (catalog_map_get (cat, keep, 0, 8, &m, &n), 0);
  ck_assert_uint_eq (n, 1);
  ck_assert_uint_eq (m[0].segment.id, kseg);
  free (m);
  ck_assert_int_eq (catalog_stats (cat, &st), 0);
  ck_assert_uint_eq (st.volumes, 1);
  ck_assert_uint_eq (st.segments, 1);
  ck_assert_uint_eq (st.servers, 3);

  /* server_segments lost the deleted replicas. */
  ck_assert_int_eq (catalog_server_count_segments (cat, 1, &count), 0);
  ck_assert_uint_eq (count, 1);
  ck_assert_int_eq (catalog_server_count_segments (cat, 2, &count), 0);
  ck_assert_uint_eq (count, 1);
  ck_assert_int_eq (catalog_server_count_segments (cat, 3, &count), 0);
  ck_assert_uint_eq (count, 0);

  /* Garbage for each replica's server, in segment id order. */
  ck_assert_int_eq (catalog_garbage_get (cat, 1, 10, &ids, &n), 0);
  ck_assert_uint_eq (n, 2);
  ck_assert_uint_eq (ids[0], seg[0]);
  ck_assert_uint_eq (ids[1], seg[1]);
  free (ids);
  ck_assert_int_eq (catalog_garbage_get (cat, 2, 10, &ids, &n), 0);
  ck_assert_uint_eq (n, 3);
  ck_assert_uint_eq (ids[0], seg[0]);
  ck_assert_uint_eq (ids[1], seg[1]);
  ck_assert_uint_eq (ids[2], seg[2]);
  free (ids);
  ck_assert_int_eq (catalog_garbage_get (cat, 2, 2, &ids, &n), 0);
  ck_assert_uint_eq (n, 2);
  ck_assert_uint_eq (ids[1], seg[1]);
  free (ids);
  ck_assert_int_eq (catalog_garbage_get (cat, 3, 10, &ids, &n), 0);
  ck_assert_uint_eq (n, 1);
  ck_assert_uint_eq (ids[0], seg[2]);
  free (ids);

  /* garbage_done forgets exactly the listed ones of that server. */
  bogus[0] = seg[0];
  bogus[1] = 12345;
  ck_assert_int_eq (catalog_garbage_done (cat, 2, bogus, 2), 0);
  ck_assert_int_eq (catalog_garbage_get (cat, 2, 10, &ids, &n), 0);
  ck_assert_uint_eq (n, 2);
  ck_assert_uint_eq (ids[0], seg[1]);
  ck_assert_uint_eq (ids[1], seg[2]);
  free (ids);
  ck_assert_uint_eq (garbage_count (1), 2);
  ck_assert_int_eq (catalog_garbage_done (cat, 1, seg, 3), 0);
  reopen ();
  ck_assert_uint_eq (garbage_count (1), 0);
  ck_assert_uint_eq (garbage_count (2), 2);
  ck_assert_uint_eq (garbage_count (3), 1);

  /* The name is free again; ids are never reused. */
  ck_assert_int_eq (catalog_volume_create (cat, "d", SEG_SIZE, 2, &v), 0);
  ck_assert_uint_eq (v.id, keep + 1);
  ck_assert_uint_gt (alloc_index (v.id, 0), seg[2]);
}
END_TEST

/* Deleting a volume without segments. */
START_TEST (test_volume_delete_empty)
{
  struct catalog_volume v;
  uint64_t vol;

  vol = add_volume ("empty", MiB, 2);
  ck_assert_int_eq (catalog_volume_delete (cat, vol), 0);
  ck_assert_int_eq (catalog_volume_get (cat, vol, &v), -ENOENT);
  ck_assert_int_eq (catalog_volume_lookup (cat, "empty", &v), -ENOENT);
}
END_TEST

/* Deleting a volume of many segments in one call. */
START_TEST (test_volume_delete_many)
{
  enum { NSEG = 20000, BATCH = 1000 };
  const uint32_t s12[2] = { 1, 2 };
  static struct catalog_map_entry e[BATCH];
  struct catalog_volume v;
  struct catalog_stats st;
  uint64_t vol, count, *ids;
  size_t i, b, n;

  init_cluster ();
  add_server (1);
  add_server (2);
  vol = add_volume ("big", (uint64_t)NSEG * SEG_SIZE, 2);
  for (b = 0; b < NSEG / BATCH; ++b) {
    for (i = 0; i < BATCH; ++i)
      set_entry (&e[i], b * BATCH + i, 2, s12);
    ck_assert_int_eq (catalog_map_alloc (cat, vol, e, BATCH), 0);
  }
  ck_assert_int_eq (catalog_volume_get (cat, vol, &v), 0);
  ck_assert_uint_eq (v.segments, NSEG);
  ck_assert_int_eq (catalog_server_count_segments (cat, 2, &count), 0);
  ck_assert_uint_eq (count, NSEG);

  ck_assert_int_eq (catalog_volume_delete (cat, vol), 0);
  ck_assert_int_eq (catalog_stats (cat, &st), 0);
  ck_assert_uint_eq (st.volumes, 0);
  ck_assert_uint_eq (st.segments, 0);
  ck_assert_int_eq (catalog_server_count_segments (cat, 1, &count), 0);
  ck_assert_uint_eq (count, 0);
  ck_assert_uint_eq (garbage_count (1), NSEG);
  ck_assert_uint_eq (garbage_count (2), NSEG);

  ck_assert_int_eq (catalog_garbage_get (cat, 1, SIZE_MAX, &ids, &n), 0);
  ck_assert_uint_eq (n, NSEG);
  for (i = 0; i < n; ++i)
    ck_assert_uint_eq (ids[i], i + 1);
  ck_assert_int_eq (catalog_garbage_done (cat, 1, ids, n), 0);
  free (ids);
  ck_assert_uint_eq (garbage_count (1), 0);
  ck_assert_uint_eq (garbage_count (2), NSEG);
}
END_TEST

/* garbage_get and garbage_done edge cases and errors. */
START_TEST (test_garbage_errors)
{
  uint64_t *ids = (void *)1, one = 1;
  size_t n = 99;

  ck_assert_int_eq (catalog_garbage_get (cat, 1, 10, &ids, &n), -ENOENT);
  ck_assert_int_eq (catalog_garbage_done (cat, 1, &one, 1), -ENOENT);
  add_server (1);
  ck_assert_int_eq (catalog_garbage_get (cat, 1, 10, &ids, &n), 0);
  ck_assert_uint_eq (n, 0);
  ck_assert_ptr_null (ids);
  ck_assert_int_eq (catalog_garbage_get (cat, 1, 0, &ids, &n), 0);
  ck_assert_uint_eq (n, 0);
  ck_assert_int_eq (catalog_garbage_done (cat, 1, &one, 1), 0);
  ck_assert_int_eq (catalog_garbage_done (cat, 1, NULL, 0), 0);
}
END_TEST

/* stats, and counters surviving close and reopen. */
START_TEST (test_stats_persist)
{
  struct catalog_stats st;
  struct catalog_volume v;
  struct catalog_server s;
  uint64_t vol, seg;
  uint8_t uuid[16];

  ck_assert_int_eq (catalog_stats (cat, &st), 0);
  ck_assert_uint_eq (st.volumes, 0);
  ck_assert_uint_eq (st.segments, 0);
  ck_assert_uint_eq (st.servers, 0);

  init_cluster ();
  add_server (1);
  add_server (2);
  vol = add_volume ("p1", 2 * SEG_SIZE, 2);
  add_volume ("p2", 2 * SEG_SIZE, 2);
  seg = alloc_index (vol, 1);
  ck_assert_int_eq (catalog_volume_delete (cat, 2), 0);
  reopen ();

  ck_assert_int_eq (catalog_stats (cat, &st), 0);
  ck_assert_uint_eq (st.volumes, 1);
  ck_assert_uint_eq (st.segments, 1);
  ck_assert_uint_eq (st.servers, 2);
  ck_assert_int_eq (catalog_volume_lookup (cat, "p1", &v), 0);
  ck_assert_uint_eq (v.segments, 1);

  /* Counters survive: no id is handed out twice. */
  ck_assert_uint_eq (add_volume ("p3", SEG_SIZE, 1), 3);
  ck_assert_uint_eq (alloc_index (vol, 0), seg + 1);
  make_uuid (uuid, 3);
  ck_assert_int_eq (catalog_server_register (cat, uuid, "h:1", "", 0, &s), 0);
  ck_assert_uint_eq (s.id, 3);
}
END_TEST

/* Thread body for test_threads: lookups through shared read txns. */
static void *
reader (void *arg)
{
  uint64_t vol = *(uint64_t *)arg;
  struct catalog_map_entry *m;
  struct catalog_volume v;
  size_t n;
  int i;

  for (i = 0; i < 2000; ++i) {
    if (catalog_volume_get (cat, vol, &v) != 0 ||
        catalog_map_get (cat, vol, 0, 64, &m, &n) != 0)
      return (void *)1;
    free (m);
  }
  return NULL;
}

/* Concurrent readers with a writer, more threads than the pool. */
START_TEST (test_threads)
{
  enum { NTHREADS = 24 }; /* more than the pool of read transactions */
  pthread_t t[NTHREADS];
  void *ret;
  uint64_t vol, i;

  init_cluster ();
  add_server (1);
  add_server (2);
  vol = add_volume ("t", 64 * SEG_SIZE, 2);
  for (i = 0; i < 64; i += 2)
    alloc_index (vol, i);

  for (i = 0; i < NTHREADS; ++i)
    ck_assert_int_eq (pthread_create (&t[i], NULL, reader, &vol), 0);
  for (i = 0; i < 4; ++i)
    alloc_index (vol, 2 * i + 1);
  for (i = 0; i < NTHREADS; ++i) {
    ck_assert_int_eq (pthread_join (t[i], &ret), 0);
    ck_assert_ptr_null (ret);
  }
}
END_TEST

/* Overwrite the value of KEY in table DB behind the catalog's back. */
static void
corrupt (const char *db, const void *key, size_t klen, const void *val,
         size_t vlen)
{
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi dbi;
  MDB_val k = { .mv_size = klen, .mv_data = (void *)key };
  MDB_val v = { .mv_size = vlen, .mv_data = (void *)val };

  ck_assert_int_eq (mdb_env_create (&env), 0);
  ck_assert_int_eq (mdb_env_set_maxdbs (env, 16), 0);
  ck_assert_int_eq (mdb_env_open (env, dir, 0, 0600), 0);
  ck_assert_int_eq (mdb_txn_begin (env, NULL, 0, &txn), 0);
  ck_assert_int_eq (mdb_dbi_open (txn, db, 0, &dbi), 0);
  ck_assert_int_eq (mdb_put (txn, dbi, &k, &v, 0), 0);
  ck_assert_int_eq (mdb_txn_commit (txn), 0);
  mdb_env_close (env);
}

/* A volume record of 3 replicas written before min_copies existed (the
 * field was reserved, so zero) decodes with the default, 2; one whose
 * min_copies exceeds its replicas is corrupt.
 */
START_TEST (test_volume_record_min_copies)
{
  const uint8_t vkey[8] = { 0, 0, 0, 0, 0, 0, 0, 1 };
  uint8_t rec[48 + 3] = {
    2, 3, 0, 0, 0, 0, 0, 3, /* version, name length, replicas 3 */
    0, 0, 0, 1, 0, 0, 0, 0, /* flags CLEAN, reserved (min_copies) */
    0, 0, 0, 0, 0, 0, 2, 0, /* size 512 */
  };
  struct catalog_volume v;

  add_volume ("old", 512, 3);
  memcpy (rec + 48, "old", 3);
  catalog_close (cat);
  cat = NULL;
  corrupt ("volumes", vkey, 8, rec, sizeof rec);
  ck_assert_int_eq (catalog_open (dir, 0, &cat), 0);
  ck_assert_int_eq (catalog_volume_lookup (cat, "old", &v), 0);
  ck_assert_uint_eq (v.replicas, 3);
  ck_assert_uint_eq (v.min_copies, 2);
  ck_assert_uint_eq (v.size, 512);
  ck_assert_uint_eq (v.flags, CATALOG_VOL_CLEAN);
  /* Written back with the value it decoded to. */
  ck_assert_int_eq (catalog_volume_begin_epoch (cat, 1, &v), 0);
  ck_assert_uint_eq (v.min_copies, 2);

  catalog_close (cat);
  cat = NULL;
  rec[15] = 4;
  corrupt ("volumes", vkey, 8, rec, sizeof rec);
  ck_assert_int_eq (catalog_open (dir, 0, &cat), 0);
  ck_assert_int_eq (catalog_volume_get (cat, 1, &v), -EIO);
}
END_TEST

/* server_set_index_seq: saved, kept by registrations and reopening,
 * lowered when asked; a record without it reads 0; a trailing 0 is
 * corrupt.
 */
START_TEST (test_server_index_seq)
{
  const uint8_t skey[4] = { 0, 0, 0, 1 };
  uint8_t rec[32 + 14 + 2 + 8] = { 2, 0, 0, 14, 2 };
  struct catalog_server s;
  uint8_t uuid[16];

  ck_assert_uint_eq (add_server (1), 1);
  ck_assert_int_eq (catalog_server_get (cat, 1, &s), 0);
  ck_assert_uint_eq (s.index_seq, 0);
  ck_assert_int_eq (catalog_server_set_index_seq (cat, 1, 77), 0);
  ck_assert_int_eq (catalog_server_set_index_seq (cat, 2, 77), -ENOENT);
  ck_assert_uint_eq (add_server (1), 1);
  reopen ();
  ck_assert_int_eq (catalog_server_get (cat, 1, &s), 0);
  ck_assert_uint_eq (s.index_seq, 77);
  ck_assert_str_eq (s.address, "127.0.0.1:7421");
  ck_assert_str_eq (s.zone, "z1");
  ck_assert_int_eq (catalog_server_set_index_seq (cat, 1, 5), 0);
  ck_assert_int_eq (catalog_server_get (cat, 1, &s), 0);
  ck_assert_uint_eq (s.index_seq, 5);
  ck_assert_int_eq (catalog_server_set_index_seq (cat, 1, 0), 0);
  ck_assert_int_eq (catalog_server_get (cat, 1, &s), 0);
  ck_assert_uint_eq (s.index_seq, 0);

  /* A record as written before index_seq: no trailer. */
  make_uuid (uuid, 1);
  memcpy (rec + 8, uuid, 16);
  memcpy (rec + 32, "127.0.0.1:7421z1", 16);
  catalog_close (cat);
  cat = NULL;
  corrupt ("servers", skey, 4, rec, 32 + 16);
  ck_assert_int_eq (catalog_open (dir, 0, &cat), 0);
  ck_assert_int_eq (catalog_server_get (cat, 1, &s), 0);
  ck_assert_uint_eq (s.index_seq, 0);
  ck_assert_str_eq (s.zone, "z1");
  /* A trailing index_seq of 0 is never written: corrupt. */
  catalog_close (cat);
  cat = NULL;
  corrupt ("servers", skey, 4, rec, sizeof rec);
  ck_assert_int_eq (catalog_open (dir, 0, &cat), 0);
  ck_assert_int_eq (catalog_server_get (cat, 1, &s), -EIO);
}
END_TEST

/* Corrupt records give -EIO, never garbage. */
START_TEST (test_corrupt_records)
{
  const uint8_t vkey[8] = { 0, 0, 0, 0, 0, 0, 0, 1 };
  const uint8_t skey[4] = { 0, 0, 0, 1 };
  const uint8_t short_rec[3] = { 1, 0, 0 };
  uint8_t bad_version[28] = { 1 }; /* version 1: before issue 3 */
  struct catalog_cluster c;
  struct catalog_volume v;
  struct catalog_server s;
  struct catalog_segment g;
  struct catalog_map_entry *m;
  size_t n;

  init_cluster ();
  add_server (1);
  add_server (2);
  add_volume ("c", 4 * SEG_SIZE, 2);
  alloc_index (1, 0);
  catalog_close (cat);
  cat = NULL;

  corrupt ("volumes", vkey, 8, short_rec, sizeof short_rec);
  corrupt ("servers", skey, 4, short_rec, sizeof short_rec);
  corrupt ("segments", vkey, 8, short_rec, sizeof short_rec);
  corrupt ("meta", "cluster", 7, bad_version, sizeof bad_version);
  ck_assert_int_eq (catalog_open (dir, 0, &cat), 0);

  ck_assert_int_eq (catalog_volume_get (cat, 1, &v), -EIO);
  ck_assert_int_eq (catalog_volume_lookup (cat, "c", &v), -EIO);
  ck_assert_int_eq (catalog_server_get (cat, 1, &s), -EIO);
  ck_assert_int_eq (catalog_server_get (cat, 2, &s), 0);
  ck_assert_int_eq (catalog_segment_get (cat, 1, &g), -EIO);
  ck_assert_int_eq (catalog_map_get (cat, 1, 0, 4, &m, &n), -EIO);
  ck_assert_int_eq (catalog_cluster_get (cat, &c), -EIO);
  ck_assert_int_eq (catalog_volume_delete (cat, 1), -EIO);
}
END_TEST

/* Records of the previous format, and new fields out of range, are
 * refused with -EIO.
 */
START_TEST (test_corrupt_records_v2)
{
  const uint8_t vkey1[8] = { 0, 0, 0, 0, 0, 0, 0, 1 };
  const uint8_t vkey2[8] = { 0, 0, 0, 0, 0, 0, 0, 2 };
  uint8_t old_vol[41] = { 1, 1 }, bad_clean[49] = { 2, 1 };
  uint8_t old_seg[16] = { 1, 1 }, zero_gen[32] = { 2, 1 };
  struct catalog_volume v, *vl;
  struct catalog_segment g, *gl;
  size_t n;

  init_cluster ();
  add_server (1);
  add_server (2);
  add_volume ("a", 4 * SEG_SIZE, 1);
  add_volume ("b", 4 * SEG_SIZE, 1);
  add_volume ("c", 4 * SEG_SIZE, 1);
  alloc_index (1, 0);
  alloc_index (1, 1);
  alloc_index (1, 2);
  catalog_close (cat);
  cat = NULL;

  /* A version 1 volume: 40 bytes + name, replicas 1, name "a". */
  old_vol[7] = 1;
  old_vol[40] = 'a';
  corrupt ("volumes", vkey1, 8, old_vol, sizeof old_vol);
  /* Version 2, clean_epoch 1 above epoch 0. */
  bad_clean[7] = 1;
  bad_clean[47] = 1;
  bad_clean[48] = 'b';
  corrupt ("volumes", vkey2, 8, bad_clean, sizeof bad_clean);
  /* A version 1 segment: 8 bytes + one replica (server 1). */
  old_seg[7] = 1;
  old_seg[11] = 1;
  corrupt ("segments", vkey1, 8, old_seg, sizeof old_seg);
  /* Version 2 with generation 0. */
  zero_gen[7] = 1;
  zero_gen[15] = 1;
  zero_gen[27] = 1;
  corrupt ("segments", vkey2, 8, zero_gen, sizeof zero_gen);
  ck_assert_int_eq (catalog_open (dir, 0, &cat), 0);

  ck_assert_int_eq (catalog_volume_get (cat, 1, &v), -EIO);
  ck_assert_int_eq (catalog_volume_get (cat, 2, &v), -EIO);
  ck_assert_int_eq (catalog_volume_get (cat, 3, &v), 0);
  ck_assert_int_eq (catalog_volume_list (cat, &vl, &n), -EIO);
  ck_assert_int_eq (catalog_segment_get (cat, 1, &g), -EIO);
  ck_assert_int_eq (catalog_segment_get (cat, 2, &g), -EIO);
  ck_assert_int_eq (catalog_segment_get (cat, 3, &g), 0);
  ck_assert_int_eq (catalog_segment_list (cat, 0, 10, &gl, &n), -EIO);
  ck_assert_int_eq (catalog_segment_list (cat, 2, 10, &gl, &n), 0);
  ck_assert_uint_eq (n, 1);
  free (gl);
  ck_assert_int_eq (catalog_volume_next_epoch (cat, 1, 0, NULL), -EIO);
  ck_assert_int_eq (catalog_volume_set_clean_epoch (cat, 2, 0), -EIO);
  ck_assert_int_eq (
      catalog_segment_add_replica (cat, 1, 2, CATALOG_REPLICA_OK, NULL), -EIO);
  ck_assert_int_eq (catalog_segment_remove_replica (cat, 2, 1, NULL), -EIO);
}
END_TEST

/* Segment records written before they carried their index decode as
 * CATALOG_INDEX_NONE; opening a format 2 catalog fills them in from the
 * map and marks it format 3.  New allocations record their index.
 */
START_TEST (test_segment_index_upgrade)
{
  const uint8_t skey1[8] = { 0, 0, 0, 0, 0, 0, 0, 1 };
  /* Segment 1 without an index: volume 1, gen 1, replica on server 1. */
  uint8_t old_seg[32] = { 2, 1 };
  uint8_t cluster[28] = { 2 };
  struct catalog_cluster c;
  struct catalog_segment g;

  init_cluster ();
  add_server (1);
  add_server (2);
  add_volume ("u", 8 * SEG_SIZE, 2);
  ck_assert_uint_eq (alloc_index (1, 5), 1);
  ck_assert_int_eq (catalog_segment_get (cat, 1, &g), 0);
  ck_assert_uint_eq (g.index, 5);
  catalog_close (cat);
  cat = NULL;

  old_seg[7] = 1;  /* refcount */
  old_seg[15] = 1; /* volume */
  old_seg[23] = 1; /* gen */
  old_seg[27] = 1; /* server */
  corrupt ("segments", skey1, 8, old_seg, sizeof old_seg);
  cluster[7] = 2; /* format version 2 */
  cluster[9] = SEG_SIZE >> 16;
  corrupt ("meta", "cluster", 7, cluster, sizeof cluster);

  ck_assert_int_eq (catalog_open (dir, 0, &cat), 0);
  ck_assert_int_eq (catalog_cluster_get (cat, &c), 0);
  ck_assert_uint_eq (c.format_version, 3);
  ck_assert_int_eq (catalog_segment_get (cat, 1, &g), 0);
  ck_assert_uint_eq (g.index, 5);
  ck_assert_uint_eq (g.gen, 1);
  ck_assert_uint_eq (g.nreplicas, 1);
  ck_assert_uint_eq (alloc_index (1, 6), 2);
  ck_assert_int_eq (catalog_segment_get (cat, 2, &g), 0);
  ck_assert_uint_eq (g.index, 6);
}
END_TEST

/* The tables version moves with volume and server records only; the
 * tables encode and decode, refuse damage, and install with adopted
 * segments into an empty catalog as they were.
 */
START_TEST (test_tables)
{
  uint64_t v0, v1, v, vid;
  uint8_t *blob;
  size_t len, i;
  struct catalog_tables t, t2;
  struct catalog_adopt a[4];
  struct catalog_segment g;
  struct catalog_volume vol;
  struct catalog_server srv;
  struct catalog_map_entry *m;
  size_t n;
  char sub[sizeof dir + 8];
  catalog *cat2;

  ck_assert_int_eq (catalog_tables_encode (cat, &blob, &len, &v), -ENOENT);
  init_cluster ();
  ck_assert_int_eq (catalog_tables_version (cat, &v0), 0);
  add_server (1);
  add_server (2);
  vid = add_volume ("t", 8 * SEG_SIZE, 2);
  ck_assert_int_eq (catalog_tables_version (cat, &v1), 0);
  ck_assert_uint_eq (v1, v0 + 3);
  /* Epochs, allocations and an unchanged registration: no change, but
   * for the first allocation, which reserves 65536 segment ids.
   */
  ck_assert_int_eq (catalog_volume_begin_epoch (cat, vid, NULL), 0);
  alloc_index (vid, 2);
  ck_assert_int_eq (catalog_tables_version (cat, &v), 0);
  ck_assert_uint_eq (v, v1 + 1);
  v1 = v;
  alloc_index (vid, 3);
  add_server (1);
  ck_assert_int_eq (catalog_tables_version (cat, &v), 0);
  ck_assert_uint_eq (v, v1);
  ck_assert_int_eq (catalog_volume_resize (cat, vid, 16 * SEG_SIZE, NULL), 0);
  ck_assert_int_eq (catalog_server_set_state (cat, 2, CATALOG_SERVER_DRAINING),
                    0);
  ck_assert_int_eq (catalog_tables_version (cat, &v), 0);
  ck_assert_uint_eq (v, v1 + 2);

  ck_assert_int_eq (catalog_tables_encode (cat, &blob, &len, &v1), 0);
  ck_assert_uint_eq (v1, v);
  ck_assert_int_eq (catalog_tables_decode (blob, len, &t), 0);
  ck_assert_uint_eq (t.version, v);
  ck_assert_uint_eq (t.cluster.segment_size, SEG_SIZE);
  ck_assert_uint_eq (t.nvolumes, 1);
  ck_assert_str_eq (t.volumes[0].name, "t");
  ck_assert_uint_eq (t.volumes[0].size, 16 * SEG_SIZE);
  ck_assert_uint_eq (t.volumes[0].epoch, 1);
  ck_assert_uint_eq (t.nservers, 2);
  ck_assert_uint_eq (t.servers[1].state, CATALOG_SERVER_DRAINING);
  ck_assert_str_eq (t.servers[0].zone, "z1");
  /* Past every id that may have been given: the reservation. */
  ck_assert_uint_eq (t.next_segment, 2 + 65536);
  ck_assert_uint_eq (t.next_volume, 2);
  ck_assert_uint_eq (t.next_server, 3);
  /* Truncated, trailing bytes, a bad magic, a count beyond the bytes. */
  for (i = 0; i < len; i++)
    ck_assert_int_eq (catalog_tables_decode (blob, i, &t2), -EINVAL);
  blob = realloc (blob, len + 1);
  ck_assert_ptr_nonnull (blob);
  ck_assert_int_eq (catalog_tables_decode (blob, len + 1, &t2), -EINVAL);
  blob[0] ^= 1;
  ck_assert_int_eq (catalog_tables_decode (blob, len, &t2), -EINVAL);
  blob[0] ^= 1;
  blob[64] = 0x7f;
  ck_assert_int_eq (catalog_tables_decode (blob, len, &t2), -EINVAL);
  ck_assert_ptr_null (t2.volumes);
  free (blob);

  /* Install into a new catalog, adopt the segments. */
  snprintf (sub, sizeof sub, "%s/new", dir);
  ck_assert_int_eq (mkdir (sub, 0700), 0);
  ck_assert_int_eq (catalog_open (sub, 0, &cat2), 0);
  ck_assert_int_eq (catalog_tables_install (cat2, &t), 0);
  ck_assert_int_eq (catalog_tables_install (cat2, &t), 0);
  memset (a, 0, sizeof a);
  for (i = 0; i < 4; i++) {
    a[i].segment.id = 10 + i;
    a[i].segment.volume = vid;
    a[i].segment.index = i;
    a[i].segment.gen = 3;
    a[i].segment.nreplicas = 2;
    a[i].segment.replicas[0].server = 1;
    a[i].segment.replicas[1].server = 2;
    a[i].segment.replicas[1].state = CATALOG_REPLICA_STALE;
  }
  a[2].segment.index = 0;  /* mapped already (by segment 10) */
  a[3].segment.index = 16; /* past the end */
  ck_assert_int_eq (catalog_segments_adopt (cat2, a, 4), 0);
  ck_assert_int_eq (a[0].result, 0);
  ck_assert_int_eq (a[1].result, 0);
  ck_assert_int_eq (a[2].result, -EBUSY);
  ck_assert_int_eq (a[3].result, -ERANGE);
  ck_assert_int_eq (catalog_segments_adopt (cat2, a, 1), 0);
  ck_assert_int_eq (a[0].result, -EEXIST);
  ck_assert_int_eq (catalog_segment_get (cat2, 11, &g), 0);
  ck_assert_uint_eq (g.index, 1);
  ck_assert_uint_eq (g.gen, 3);
  ck_assert_uint_eq (g.replicas[1].state, CATALOG_REPLICA_STALE);
  ck_assert_int_eq (catalog_segment_get (cat2, 12, &g), -ENOENT);
  ck_assert_int_eq (catalog_map_get (cat2, vid, 0, 16, &m, &n), 0);
  ck_assert_uint_eq (n, 2);
  ck_assert_uint_eq (m[1].segment.id, 11);
  free (m);
  ck_assert_int_eq (catalog_volume_raise_epoch (cat2, vid, 7), 0);
  ck_assert_int_eq (catalog_volume_raise_epoch (cat2, vid, 5), 0);
  ck_assert_int_eq (catalog_volume_get (cat2, vid, &vol), 0);
  ck_assert_uint_eq (vol.epoch, 7);
  ck_assert_uint_eq (vol.segments, 2);
  ck_assert_uint_eq (vol.flags & CATALOG_VOL_CLEAN, 0);
  ck_assert_int_eq (catalog_server_get (cat2, 2, &srv), 0);
  ck_assert_str_eq (srv.address, "127.0.0.1:7422");
  ck_assert_int_eq (catalog_server_count_segments (cat2, 1, &v), 0);
  ck_assert_uint_eq (v, 2);
  /* The counters: past the adopted ids, never lowered. */
  ck_assert_int_eq (catalog_counters_raise (cat2, 1, 1, 1), 0);
  ck_assert_int_eq (catalog_counters_raise (cat2, 0, 9, 0), 0);
  memset (&g, 0, sizeof g);
  g.nreplicas = 1;
  g.replicas[0].server = 1;
  {
    struct catalog_map_entry e = { .index = 5, .segment = g };

    ck_assert_int_eq (catalog_map_alloc (cat2, vid, &e, 1), 0);
    /* The tables' reservation (2 + 65536) is past the adopted 11. */
    ck_assert_uint_eq (e.segment.id, 2 + 65536);
  }
  ck_assert_int_eq (catalog_tables_version (cat2, &v), 0);
  ck_assert_uint_gt (v, t.version);
  catalog_tables_free (&t);
  catalog_close (cat2);
}
END_TEST

/* catalog_map_alloc_many: one transaction, a result per request; a
 * failed request changes nothing, the others go on, and a later request
 * sees what an earlier one allocated.
 */
START_TEST (test_map_alloc_many)
{
  const uint32_t s12[2] = { 1, 2 }, s17[2] = { 1, 7 }, s11[2] = { 1, 1 };
  struct catalog_map_entry e[8], *m;
  struct catalog_alloc_request reqs[7];
  struct catalog_volume v;
  uint64_t a, b, count;
  size_t n;

  init_cluster ();
  add_server (1);
  add_server (2);
  a = add_volume ("a", 4 * SEG_SIZE, 2);
  b = add_volume ("b", 4 * SEG_SIZE, 2);

  ck_assert_int_eq (catalog_map_alloc_many (cat, reqs, 0), 0);

  set_entry (&e[0], 0, 2, s12);
  set_entry (&e[1], 1, 2, s12);
  reqs[0] = (struct catalog_alloc_request){ a, &e[0], 2, 1 };
  set_entry (&e[2], 9, 2, s12); /* past the end */
  reqs[1] = (struct catalog_alloc_request){ a, &e[2], 1, 1 };
  set_entry (&e[3], 0, 2, s12);
  reqs[2] = (struct catalog_alloc_request){ b, &e[3], 1, 1 };
  set_entry (&e[4], 1, 2, s12); /* allocated by reqs[0] */
  set_entry (&e[5], 2, 2, s12);
  reqs[3] = (struct catalog_alloc_request){ a, &e[4], 2, 1 };
  set_entry (&e[6], 0, 2, s12);
  reqs[4] = (struct catalog_alloc_request){ 99, &e[6], 1, 1 }; /* no volume */

  ck_assert_int_eq (catalog_map_alloc_many (cat, reqs, 5), 0);
  ck_assert_int_eq (reqs[0].result, 0);
  ck_assert_int_eq (reqs[1].result, -EINVAL);
  ck_assert_int_eq (reqs[2].result, 0);
  ck_assert_int_eq (reqs[3].result, 0);
  ck_assert_int_eq (reqs[4].result, -ENOENT);
  ck_assert_uint_eq (e[4].segment.id, e[1].segment.id);
  ck_assert_uint_ne (e[5].segment.id, 0);
  ck_assert_uint_ne (e[3].segment.id, e[0].segment.id);
  /* Requests that all fail: nothing to commit. */
  set_entry (&e[6], 1, 2, s11); /* the same server twice */
  reqs[5] = (struct catalog_alloc_request){ b, &e[6], 1, 1 };
  set_entry (&e[7], 1, 2, s17); /* no server 7 */
  reqs[6] = (struct catalog_alloc_request){ b, &e[7], 1, 1 };
  ck_assert_int_eq (catalog_map_alloc_many (cat, &reqs[5], 2), 0);
  ck_assert_int_eq (reqs[5].result, -EINVAL);
  ck_assert_int_eq (reqs[6].result, -ENOENT);

  reopen ();
  ck_assert_int_eq (catalog_volume_get (cat, a, &v), 0);
  ck_assert_uint_eq (v.segments, 3);
  ck_assert_int_eq (catalog_volume_get (cat, b, &v), 0);
  ck_assert_uint_eq (v.segments, 1);
  ck_assert_int_eq (catalog_map_get (cat, a, 0, 4, &m, &n), 0);
  ck_assert_uint_eq (n, 3);
  ck_assert_uint_eq (m[0].segment.id, e[0].segment.id);
  ck_assert_uint_eq (m[1].segment.id, e[1].segment.id);
  ck_assert_uint_eq (m[2].segment.id, e[5].segment.id);
  free (m);
  ck_assert_int_eq (catalog_server_count_segments (cat, 2, &count), 0);
  ck_assert_uint_eq (count, 4);
}
END_TEST

/* A request that fails after it changed the transaction (here on a
 * corrupt segment record met after its first allocation) is undone by a
 * redo of the transaction without it; the others are committed.
 */
START_TEST (test_map_alloc_many_redo)
{
  const uint8_t short_rec[3] = { 2, 0, 0 };
  const uint32_t s12[2] = { 1, 2 };
  struct catalog_map_entry e[4], *m;
  struct catalog_alloc_request reqs[3];
  struct catalog_volume v;
  uint8_t key[8];
  uint64_t a, id, count;
  size_t n;
  int i;

  init_cluster ();
  add_server (1);
  add_server (2);
  a = add_volume ("a", 4 * SEG_SIZE, 2);
  id = alloc_index (a, 1);
  catalog_close (cat);
  cat = NULL;
  for (i = 0; i < 8; ++i)
    key[i] = id >> (56 - 8 * i);
  corrupt ("segments", key, 8, short_rec, sizeof short_rec);
  ck_assert_int_eq (catalog_open (dir, 0, &cat), 0);

  set_entry (&e[0], 3, 2, s12);
  reqs[0] = (struct catalog_alloc_request){ a, &e[0], 1, 0 };
  set_entry (&e[1], 0, 2, s12); /* a hole: allocated, then undone */
  set_entry (&e[2], 1, 2, s12); /* mapped to the corrupt record */
  reqs[1] = (struct catalog_alloc_request){ a, &e[1], 2, 0 };
  set_entry (&e[3], 2, 2, s12);
  reqs[2] = (struct catalog_alloc_request){ a, &e[3], 1, 0 };
  ck_assert_int_eq (catalog_map_alloc_many (cat, reqs, 3), 0);
  ck_assert_int_eq (reqs[0].result, 0);
  ck_assert_int_eq (reqs[1].result, -EIO);
  ck_assert_int_eq (reqs[2].result, 0);

  reopen ();
  ck_assert_int_eq (catalog_map_get (cat, a, 0, 1, &m, &n), 0);
  ck_assert_uint_eq (n, 0);
  ck_assert_int_eq (catalog_map_get (cat, a, 2, 2, &m, &n), 0);
  ck_assert_uint_eq (n, 2);
  ck_assert_uint_eq (m[0].segment.id, e[3].segment.id);
  ck_assert_uint_eq (m[1].segment.id, e[0].segment.id);
  free (m);
  ck_assert_int_eq (catalog_volume_get (cat, a, &v), 0);
  ck_assert_uint_eq (v.segments, 3);
  ck_assert_int_eq (catalog_server_count_segments (cat, 1, &count), 0);
  ck_assert_uint_eq (count, 3);
  /* catalog_map_alloc gives the same answers, alone. */
  set_entry (&e[1], 0, 2, s12);
  ck_assert_int_eq (catalog_map_alloc (cat, a, &e[1], 2), -EIO);
  ck_assert_int_eq (catalog_map_get (cat, a, 0, 1, &m, &n), 0);
  ck_assert_uint_eq (n, 0);
}
END_TEST

/* Group commit: threads allocating overlapping indexes one at a time.  */
enum { GC_THREADS = 24, GC_INDEXES = 96, GC_EACH = 48 };

struct gc_thread {
  uint64_t volume;
  unsigned seed;
  int bad;                  /* also make invalid calls */
  uint64_t ids[GC_INDEXES]; /* segment id got for each index, or 0 */
};

/* Allocate GC_EACH random indexes (with repeats), recording the ids. */
static void *
gc_run (void *arg)
{
  struct gc_thread *t = arg;
  const uint32_t servers[2] = { 1, 2 };
  struct catalog_map_entry e;
  uint64_t index;
  int i;

  for (i = 0; i < GC_EACH; ++i) {
    index = rand_r (&t->seed) % GC_INDEXES;
    set_entry (&e, index, 2, servers);
    if (catalog_map_alloc (cat, t->volume, &e, 1) != 0)
      return (void *)1;
    if (t->ids[index] != 0 && t->ids[index] != e.segment.id)
      return (void *)2;
    t->ids[index] = e.segment.id;
    if (t->bad) {
      set_entry (&e, GC_INDEXES + i, 2, servers); /* past the end */
      if (catalog_map_alloc (cat, t->volume, &e, 1) != -EINVAL)
        return (void *)3;
    }
  }
  return NULL;
}

/* Concurrent catalog_map_alloc calls: every call is answered with the
 * one segment its index maps to, failed calls change nothing, and all
 * is durable.
 */
START_TEST (test_map_alloc_group)
{
  static struct gc_thread t[GC_THREADS];
  pthread_t tid[GC_THREADS];
  struct catalog_map_entry *m;
  struct catalog_volume v;
  uint64_t vol, ids[GC_INDEXES] = { 0 }, count;
  void *ret;
  size_t n, mapped = 0;
  int i, j;

  init_cluster ();
  add_server (1);
  add_server (2);
  vol = add_volume ("g", GC_INDEXES * SEG_SIZE, 2);
  memset (t, 0, sizeof t);
  for (i = 0; i < GC_THREADS; ++i) {
    t[i].volume = vol;
    t[i].seed = i + 1;
    t[i].bad = i % 4 == 0;
    ck_assert_int_eq (pthread_create (&tid[i], NULL, gc_run, &t[i]), 0);
  }
  for (i = 0; i < GC_THREADS; ++i) {
    ck_assert_int_eq (pthread_join (tid[i], &ret), 0);
    ck_assert_ptr_null (ret);
  }
  /* One segment per index, whoever allocated it. */
  for (i = 0; i < GC_THREADS; ++i)
    for (j = 0; j < GC_INDEXES; ++j)
      if (t[i].ids[j] != 0) {
        if (ids[j] == 0) {
          ids[j] = t[i].ids[j];
          mapped++;
        }
        ck_assert_uint_eq (t[i].ids[j], ids[j]);
      }

  reopen ();
  ck_assert_int_eq (catalog_map_get (cat, vol, 0, GC_INDEXES, &m, &n), 0);
  ck_assert_uint_eq (n, mapped);
  for (i = 0; i < (int)n; ++i)
    ck_assert_uint_eq (m[i].segment.id, ids[m[i].index]);
  free (m);
  ck_assert_int_eq (catalog_volume_get (cat, vol, &v), 0);
  ck_assert_uint_eq (v.segments, mapped);
  ck_assert_int_eq (catalog_server_count_segments (cat, 1, &count), 0);
  ck_assert_uint_eq (count, mapped);
}
END_TEST

/* Reads see every commit that returned before them, although the pool
 * keeps readers live between reads; and a pooled reader does not pin its
 * snapshot across commits (else each commit's pages could not be reused
 * and the file would grow).
 */
START_TEST (test_read_after_commit)
{
  char path[sizeof dir + 16];
  struct catalog_map_entry *m;
  struct catalog_segment g;
  struct stat st;
  uint64_t vol, id;
  off_t size;
  size_t n;
  int i;

  init_cluster ();
  add_server (1);
  add_server (2);
  vol = add_volume ("r", 4 * SEG_SIZE, 2);
  ck_assert_int_eq (catalog_map_get (cat, vol, 0, 4, &m, &n), 0);
  ck_assert_uint_eq (n, 0);
  id = alloc_index (vol, 2);
  ck_assert_int_eq (catalog_map_get (cat, vol, 0, 4, &m, &n), 0);
  ck_assert_uint_eq (n, 1);
  free (m);
  ck_assert_int_eq (catalog_segment_get (cat, id, &g), 0);
  ck_assert_uint_eq (g.gen, 1);
  ck_assert_int_eq (
      catalog_replica_set_state (cat, id, 2, CATALOG_REPLICA_STALE, NULL), 0);
  ck_assert_int_eq (catalog_segment_get (cat, id, &g), 0);
  ck_assert_uint_eq (g.gen, 2);
  ck_assert_int_eq (catalog_map_get (cat, vol, 2, 1, &m, &n), 0);
  ck_assert_uint_eq (n, 1);
  ck_assert_uint_eq (m[0].segment.gen, 2);
  free (m);

  snprintf (path, sizeof path, "%s/data.mdb", dir);
  ck_assert_int_eq (stat (path, &st), 0);
  size = st.st_size;
  for (i = 0; i < 400; ++i)
    ck_assert_int_eq (catalog_replica_set_state (cat, id, 2, i & 1, NULL), 0);
  ck_assert_int_eq (stat (path, &st), 0);
  /* Pinned, 400 commits would add 400 x 3 pages or more (4.8 MB). */
  ck_assert_int_lt (st.st_size - size, 256 * 1024);
}
END_TEST

/* Keys are ordered by their bytes (big-endian numbers) as LMDB's default
 * order would: values across byte boundaries come back sorted, and a
 * scan with the default comparison finds the tables in order.
 */
START_TEST (test_key_order)
{
  const uint64_t idx[] = {
    0, 1, 255, 256, 65535, 65536, UINT64_C (1) << 32, (UINT64_C (1) << 40) + 1
  };
  const size_t nidx = sizeof idx / sizeof idx[0];
  const char *tables[] = { "segmap", "segments", "server_segments" };
  struct catalog_map_entry *m, *e;
  const uint32_t servers[2] = { 1, 2 };
  uint64_t vol, vol2, *ids;
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi dbi;
  MDB_cursor *cur;
  MDB_val key, val, prev = { 0 };
  size_t n, i, t;
  int rc;

  init_cluster ();
  add_server (1);
  add_server (2);
  vol = add_volume ("o", (UINT64_C (1) << 41) * SEG_SIZE, 2);
  for (i = nidx; i-- > 0;)
    alloc_index (vol, idx[i]);
  vol2 = add_volume ("p", 300 * SEG_SIZE, 2);
  e = calloc (300, sizeof *e);
  ck_assert_ptr_nonnull (e);
  for (i = 0; i < 300; ++i)
    set_entry (&e[i], i, 2, servers);
  ck_assert_int_eq (catalog_map_alloc (cat, vol2, e, 300), 0);
  free (e);

  ck_assert_int_eq (catalog_map_get (cat, vol, 0, UINT64_MAX, &m, &n), 0);
  ck_assert_uint_eq (n, nidx);
  for (i = 0; i < nidx; ++i)
    ck_assert_uint_eq (m[i].index, idx[i]);
  free (m);
  ck_assert_int_eq (catalog_map_get (cat, vol, 256, 65536, &m, &n), 0);
  ck_assert_uint_eq (n, 3);
  ck_assert_uint_eq (m[2].index, 65536);
  free (m);
  ck_assert_int_eq (catalog_server_segments (cat, 1, 200, 1000, &ids, &n), 0);
  ck_assert_uint_eq (n, nidx + 300 - 200);
  for (i = 1; i < n; ++i)
    ck_assert_uint_eq (ids[i], ids[i - 1] + 1);
  free (ids);
  catalog_close (cat);
  cat = NULL;

  ck_assert_int_eq (mdb_env_create (&env), 0);
  ck_assert_int_eq (mdb_env_set_maxdbs (env, 16), 0);
  ck_assert_int_eq (mdb_env_open (env, dir, MDB_RDONLY, 0600), 0);
  ck_assert_int_eq (mdb_txn_begin (env, NULL, MDB_RDONLY, &txn), 0);
  for (t = 0; t < sizeof tables / sizeof tables[0]; ++t) {
    ck_assert_int_eq (mdb_dbi_open (txn, tables[t], 0, &dbi), 0);
    ck_assert_int_eq (mdb_cursor_open (txn, dbi, &cur), 0);
    n = 0;
    for (rc = mdb_cursor_get (cur, &key, &val, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get (cur, &key, &val, MDB_NEXT)) {
      if (n++ > 0) {
        ck_assert_uint_eq (key.mv_size, prev.mv_size);
        ck_assert_int_lt (memcmp (prev.mv_data, key.mv_data, key.mv_size), 0);
      }
      prev = key;
    }
    ck_assert_int_eq (rc, MDB_NOTFOUND);
    ck_assert_uint_ge (n, nidx + 300);
    mdb_cursor_close (cur);
  }
  mdb_txn_abort (txn);
  mdb_env_close (env);
  ck_assert_int_eq (catalog_open (dir, 0, &cat), 0);
}
END_TEST

/* The replica count of each server against a walk of its server
 * segments (the slow way).
 */
static void
check_counts (void)
{
  struct catalog_server *list;
  uint64_t count, *ids;
  size_t i, nservers, n;

  ck_assert_int_eq (catalog_server_list (cat, &list, &nservers), 0);
  for (i = 0; i < nservers; ++i) {
    ck_assert_int_eq (
        catalog_server_segments (cat, list[i].id, 0, SIZE_MAX, &ids, &n), 0);
    free (ids);
    ck_assert_int_eq (catalog_server_count_segments (cat, list[i].id, &count),
                      0);
    ck_assert_uint_eq (count, n);
  }
  free (list);
}

/* Replica counts follow every change of server_segments (allocation,
 * replica added and removed, volume deleted, server removed), and a
 * catalog without server_counts (made before it) gets them rebuilt at
 * open.
 */
START_TEST (test_server_counts)
{
  const uint32_t s12[2] = { 1, 2 }, s23[2] = { 2, 3 };
  struct catalog_map_entry e[4];
  uint64_t a, b, count;
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi dbi;

  init_cluster ();
  add_server (1);
  add_server (2);
  add_server (3);
  add_server (4);
  a = add_volume ("a", 8 * SEG_SIZE, 2);
  b = add_volume ("b", 8 * SEG_SIZE, 2);
  set_entry (&e[0], 0, 2, s12);
  set_entry (&e[1], 1, 2, s23);
  set_entry (&e[2], 2, 2, s23);
  set_entry (&e[3], 3, 2, s12);
  ck_assert_int_eq (catalog_map_alloc (cat, a, e, 4), 0);
  ck_assert_int_eq (catalog_map_alloc (cat, a, e, 4), 0); /* mapped: no-op */
  set_entry (&e[0], 0, 2, s23);
  ck_assert_int_eq (catalog_map_alloc (cat, b, e, 1), 0);
  check_counts ();
  ck_assert_int_eq (catalog_server_count_segments (cat, 2, &count), 0);
  ck_assert_uint_eq (count, 5);

  ck_assert_int_eq (catalog_segment_add_replica (cat, e[0].segment.id, 4,
                                                 CATALOG_REPLICA_SYNCING, NULL),
                    0);
  ck_assert_int_eq (catalog_segment_add_replica (cat, e[0].segment.id, 4,
                                                 CATALOG_REPLICA_SYNCING, NULL),
                    -EEXIST);
  ck_assert_int_eq (
      catalog_segment_remove_replica (cat, e[0].segment.id, 2, NULL), 0);
  ck_assert_int_eq (
      catalog_segment_remove_replica (cat, e[0].segment.id, 2, NULL), -ENOENT);
  check_counts ();
  ck_assert_int_eq (catalog_server_count_segments (cat, 4, &count), 0);
  ck_assert_uint_eq (count, 1);

  ck_assert_int_eq (catalog_volume_delete (cat, a), 0);
  check_counts ();
  ck_assert_int_eq (catalog_server_count_segments (cat, 1, &count), 0);
  ck_assert_uint_eq (count, 0);
  ck_assert_int_eq (catalog_server_remove (cat, 1), 0);
  ck_assert_int_eq (catalog_server_remove (cat, 4), -EBUSY);
  ck_assert_int_eq (catalog_server_count_segments (cat, 1, &count), -ENOENT);

  /* Drop server_counts behind the catalog's back: open rebuilds it. */
  ck_assert_int_eq (catalog_volume_delete (cat, b), 0);
  b = add_volume ("c", 8 * SEG_SIZE, 2);
  set_entry (&e[0], 0, 2, s23);
  set_entry (&e[1], 1, 2, s23);
  set_entry (&e[2], 2, 2, s23);
  ck_assert_int_eq (catalog_map_alloc (cat, b, e, 3), 0);
  catalog_close (cat);
  cat = NULL;
  ck_assert_int_eq (mdb_env_create (&env), 0);
  ck_assert_int_eq (mdb_env_set_maxdbs (env, 16), 0);
  ck_assert_int_eq (mdb_env_open (env, dir, 0, 0600), 0);
  ck_assert_int_eq (mdb_txn_begin (env, NULL, 0, &txn), 0);
  ck_assert_int_eq (mdb_dbi_open (txn, "server_counts", 0, &dbi), 0);
  ck_assert_int_eq (mdb_drop (txn, dbi, 1), 0);
  ck_assert_int_eq (mdb_txn_commit (txn), 0);
  mdb_env_close (env);
  ck_assert_int_eq (catalog_open (dir, 0, &cat), 0);
  check_counts ();
  ck_assert_int_eq (catalog_server_count_segments (cat, 3, &count), 0);
  ck_assert_uint_eq (count, 3);
}
END_TEST

/* Counts stay right when a transaction touches more servers than are
 * added up in memory (CATALOG_COUNTS_MAX).
 */
START_TEST (test_server_counts_many)
{
  enum { NSERVERS = 40, NSEG = 120 };
  struct catalog_map_entry *e;
  uint32_t servers[2];
  uint64_t vol, count;
  int i;

  init_cluster ();
  for (i = 1; i <= NSERVERS; ++i)
    add_server (i);
  vol = add_volume ("m", NSEG * SEG_SIZE, 2);
  e = calloc (NSEG, sizeof *e);
  ck_assert_ptr_nonnull (e);
  for (i = 0; i < NSEG; ++i) {
    servers[0] = 1 + i % NSERVERS;
    servers[1] = 1 + (i + 1) % NSERVERS;
    set_entry (&e[i], i, 2, servers);
  }
  ck_assert_int_eq (catalog_map_alloc (cat, vol, e, NSEG), 0);
  free (e);
  check_counts ();
  ck_assert_int_eq (catalog_server_count_segments (cat, NSERVERS, &count), 0);
  ck_assert_uint_eq (count, 2 * NSEG / NSERVERS);
  ck_assert_int_eq (catalog_volume_delete (cat, vol), 0);
  check_counts ();
  ck_assert_int_eq (catalog_server_count_segments (cat, 7, &count), 0);
  ck_assert_uint_eq (count, 0);
}
END_TEST

/* catalog_strerror texts. */
START_TEST (test_strerror)
{
  ck_assert_str_eq (catalog_strerror (0), "success");
  ck_assert_str_eq (catalog_strerror (-ENOENT), "not found");
  ck_assert_str_eq (catalog_strerror (-EEXIST), "already exists");
  ck_assert_str_eq (catalog_strerror (-EINVAL), "invalid argument");
  ck_assert_str_eq (catalog_strerror (-ENOSPC), "catalog is full");
  ck_assert_str_eq (catalog_strerror (-ENOMEM), "out of memory");
  ck_assert_str_eq (catalog_strerror (-EIO), "catalog database error");
  ck_assert_str_eq (catalog_strerror (-ESTALE), "stale epoch");
  ck_assert_str_eq (catalog_strerror (-EACCES), "permission denied");
  ck_assert_str_eq (catalog_strerror (-EBUSY), "still in use");
  ck_assert_str_eq (catalog_strerror (EIO), "catalog database error");
  /* A system error LMDB passed on (a failed sync, a read-only disk)
   * keeps its own name.
   */
  ck_assert_str_eq (catalog_strerror (-EROFS), "Read-only file system");
  ck_assert_str_eq (catalog_strerror (-12345), "unknown catalog error");
}
END_TEST

/* catalog_backup: a copy of the catalog as of the call, which opens as a
 * catalog of its own; later writes do not reach it.
 */
START_TEST (test_backup)
{
  char path[64], copydir[64], data[80];
  struct catalog_cluster c1, c2;
  struct catalog_stats st;
  struct catalog_volume v;
  struct stat sb;
  catalog *copy;
  uint64_t vol, seg, size = 0;
  int fd;

  init_cluster ();
  add_server (1);
  add_server (2);
  vol = add_volume ("b1", 4 * SEG_SIZE, 2);
  seg = alloc_index (vol, 2);
  add_volume ("b2", SEG_SIZE, 1);

  snprintf (path, sizeof path, "%s/backup", dir);
  fd = open (path, O_RDWR | O_CREAT | O_EXCL, 0600);
  ck_assert_int_ge (fd, 0);
  ck_assert_int_eq (catalog_backup (cat, fd, &size), 0);
  ck_assert_int_eq (fstat (fd, &sb), 0);
  ck_assert_uint_eq (size, (uint64_t)sb.st_size);
  ck_assert_uint_gt (size, 0);
  ck_assert_int_eq (close (fd), 0);

  /* Changes after the backup stay out of it. */
  ck_assert_int_eq (catalog_volume_delete (cat, 2), 0);
  add_volume ("b3", SEG_SIZE, 1);

  snprintf (copydir, sizeof copydir, "%s/copy", dir);
  snprintf (data, sizeof data, "%s/data.mdb", copydir);
  ck_assert_int_eq (mkdir (copydir, 0700), 0);
  ck_assert_int_eq (rename (path, data), 0);
  ck_assert_int_eq (catalog_open (copydir, 0, &copy), 0);
  ck_assert_int_eq (catalog_cluster_get (cat, &c1), 0);
  ck_assert_int_eq (catalog_cluster_get (copy, &c2), 0);
  ck_assert_mem_eq (c1.uuid, c2.uuid, 16);
  ck_assert_uint_eq (c2.segment_size, SEG_SIZE);
  ck_assert_int_eq (catalog_stats (copy, &st), 0);
  ck_assert_uint_eq (st.volumes, 2);
  ck_assert_uint_eq (st.segments, 1);
  ck_assert_uint_eq (st.servers, 2);
  ck_assert_int_eq (catalog_volume_lookup (copy, "b1", &v), 0);
  ck_assert_uint_eq (v.id, vol);
  ck_assert_uint_eq (v.segments, 1);
  ck_assert_int_eq (catalog_volume_lookup (copy, "b2", &v), 0);
  ck_assert_int_eq (catalog_volume_lookup (copy, "b3", &v), -ENOENT);
  {
    struct catalog_segment sg;

    ck_assert_int_eq (catalog_segment_get (copy, seg, &sg), 0);
    ck_assert_uint_eq (sg.volume, vol);
    ck_assert_uint_eq (sg.nreplicas, 2);
  }
  catalog_close (copy);
}
END_TEST

/* catalog_backup's errors: FD not a regular file, FD not writable. */
START_TEST (test_backup_errors)
{
  char path[64];
  uint64_t size = 12345;
  int fd;

  init_cluster ();
  fd = open (dir, O_RDONLY | O_DIRECTORY);
  ck_assert_int_ge (fd, 0);
  ck_assert_int_eq (catalog_backup (cat, fd, &size), -EINVAL);
  close (fd);
  fd = open ("/dev/null", O_WRONLY);
  ck_assert_int_ge (fd, 0);
  ck_assert_int_eq (catalog_backup (cat, fd, &size), -EINVAL);
  close (fd);

  snprintf (path, sizeof path, "%s/ro", dir);
  fd = open (path, O_RDWR | O_CREAT | O_EXCL, 0600);
  ck_assert_int_ge (fd, 0);
  close (fd);
  fd = open (path, O_RDONLY);
  ck_assert_int_ge (fd, 0);
  ck_assert_int_eq (catalog_backup (cat, fd, &size), -EBADF);
  close (fd);
  ck_assert_uint_eq (size, 12345);
}
END_TEST

/* The change log: what a commit hook gets, in order. */
struct batch {
  uint64_t seq;
  size_t len;
  uint8_t *data;
};
static struct batch batches[256];
static size_t nbatches;

static void
keep_batch (void *arg, uint64_t seq, const void *changes, size_t len)
{
  (void)arg;
  ck_assert_uint_lt (nbatches, 256);
  batches[nbatches].seq = seq;
  batches[nbatches].len = len;
  batches[nbatches].data = malloc (len);
  ck_assert_ptr_nonnull (batches[nbatches].data);
  memcpy (batches[nbatches].data, changes, len);
  nbatches++;
}

static void
free_batches (void)
{
  while (nbatches > 0)
    free (batches[--nbatches].data);
}

/* Every key and value of every table of the LMDB environment in DIR2,
 * in order, as one string of hex lines (change_seq included).
 */
static char *
dump_env (const char *d)
{
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi main_dbi, dbi;
  MDB_cursor *cur, *tcur;
  MDB_val k, v, tk, tv;
  char *out = NULL;
  size_t outlen = 0;
  FILE *fp = open_memstream (&out, &outlen);
  size_t i;

  ck_assert_ptr_nonnull (fp);
  ck_assert_int_eq (mdb_env_create (&env), 0);
  ck_assert_int_eq (mdb_env_set_maxdbs (env, 32), 0);
  ck_assert_int_eq (mdb_env_open (env, d, MDB_RDONLY, 0600), 0);
  ck_assert_int_eq (mdb_txn_begin (env, NULL, MDB_RDONLY, &txn), 0);
  ck_assert_int_eq (mdb_dbi_open (txn, NULL, 0, &main_dbi), 0);
  ck_assert_int_eq (mdb_cursor_open (txn, main_dbi, &cur), 0);
  while (mdb_cursor_get (cur, &k, &v, MDB_NEXT) == 0) {
    char name[64];

    snprintf (name, sizeof name, "%.*s", (int)k.mv_size, (char *)k.mv_data);
    fprintf (fp, "table %s\n", name);
    ck_assert_int_eq (mdb_dbi_open (txn, name, 0, &dbi), 0);
    ck_assert_int_eq (mdb_cursor_open (txn, dbi, &tcur), 0);
    while (mdb_cursor_get (tcur, &tk, &tv, MDB_NEXT) == 0) {
      for (i = 0; i < tk.mv_size; i++)
        fprintf (fp, "%02x", ((uint8_t *)tk.mv_data)[i]);
      fputc ('=', fp);
      for (i = 0; i < tv.mv_size; i++)
        fprintf (fp, "%02x", ((uint8_t *)tv.mv_data)[i]);
      fputc ('\n', fp);
    }
    mdb_cursor_close (tcur);
  }
  mdb_cursor_close (cur);
  mdb_txn_abort (txn);
  mdb_env_close (env);
  fclose (fp);
  return out;
}

/* changes: a second catalog that applies every batch of the first, in
 * order, ends up byte for byte equal to it, table by table; the change
 * sequence rises once per write transaction.
 */
START_TEST (test_changes_replay)
{
  char dir2[] = "/tmp/test-catalog-XXXXXX";
  catalog *cat2;
  uint64_t seq0, seq, seq2, vol, seg;
  uint32_t s1, s2, s3;
  struct catalog_segment sg;
  struct catalog_volume v;
  char *a, *b;
  size_t i;

  ck_assert_ptr_nonnull (mkdtemp (dir2));
  ck_assert_int_eq (catalog_open (dir2, 0, &cat2), 0);
  ck_assert_int_eq (catalog_change_seq (cat, &seq0), 0);
  ck_assert_int_eq (catalog_change_seq (cat2, &seq2), 0);
  ck_assert_uint_eq (seq0, seq2);

  catalog_set_commit_hook (cat, keep_batch, NULL);
  init_cluster ();
  s1 = add_server (1);
  s2 = add_server (2);
  s3 = add_server (3);
  ck_assert_int_eq (catalog_server_set_index_seq (cat, s2, 77), 0);
  vol = add_volume ("replayed", 64 * MiB, 2);
  seg = alloc_index (vol, 0);
  alloc_index (vol, 3);
  ck_assert_int_eq (catalog_volume_begin_epoch (cat, vol, &v), 0);
  ck_assert_int_eq (
      catalog_replica_set_state (cat, seg, s1, CATALOG_REPLICA_STALE, &sg), 0);
  ck_assert_int_eq (
      catalog_segment_add_replica (cat, seg, s3, CATALOG_REPLICA_SYNCING, &sg),
      0);
  ck_assert_int_eq (catalog_segment_remove_replica (cat, seg, s1, &sg), 0);
  add_volume ("gone", 16 * MiB, 2);
  ck_assert_int_eq (catalog_volume_lookup (cat, "gone", &v), 0);
  alloc_index (v.id, 1);
  ck_assert_int_eq (catalog_volume_delete (cat, v.id), 0);
  ck_assert_int_eq (catalog_server_set_state (cat, s3, CATALOG_SERVER_DRAINING),
                    0);
  /* A failed write transaction records nothing. */
  ck_assert_int_eq (catalog_volume_create (cat, "replayed", MiB, 2, &v),
                    -EEXIST);

  ck_assert_int_eq (catalog_change_seq (cat, &seq), 0);
  ck_assert_uint_eq (seq, seq0 + nbatches);
  for (i = 0; i < nbatches; i++) {
    ck_assert_uint_eq (batches[i].seq, seq0 + 1 + i);
    ck_assert_int_eq (catalog_apply_changes (cat2, batches[i].seq,
                                             batches[i].data, batches[i].len),
                      0);
  }
  /* Again, or out of order: refused, nothing changes. */
  ck_assert_int_eq (catalog_apply_changes (cat2, batches[0].seq,
                                           batches[0].data, batches[0].len),
                    -ESTALE);
  ck_assert_int_eq (catalog_change_seq (cat2, &seq2), 0);
  ck_assert_uint_eq (seq2, seq);

  catalog_close (cat2);
  catalog_set_commit_hook (cat, NULL, NULL);
  reopen ();
  catalog_close (cat);
  cat = NULL;
  a = dump_env (dir);
  b = dump_env (dir2);
  ck_assert_str_eq (a, b);
  ck_assert_ptr_nonnull (strstr (a, "table volumes"));
  free (a);
  free (b);
  ck_assert_int_eq (catalog_open (dir, 0, &cat), 0);
  free_batches ();
  ck_assert_int_eq (nftw (dir2, remove_one, 8, FTW_DEPTH | FTW_PHYS), 0);
}
END_TEST

/* changes: malformed batches are refused whole. */
START_TEST (test_changes_malformed)
{
  uint8_t good[64], bad[64];
  uint64_t seq, after;
  struct catalog_volume v;
  size_t len;

  catalog_set_commit_hook (cat, keep_batch, NULL);
  init_cluster ();
  ck_assert_uint_eq (nbatches, 1);
  catalog_set_commit_hook (cat, NULL, NULL);
  ck_assert_int_eq (catalog_change_seq (cat, &seq), 0);

  /* A put of meta "x" = "y": op 1, table 0, klen 1, vlen 1. */
  memcpy (good, "\x01\x00\x00\x01\x00\x00\x00\x01xy", 10);
  len = 10;
  /* Followed by each kind of damage. */
  memcpy (bad, good, len);
  memcpy (bad + len, "\x09\x00\x00\x01\x00\x00\x00\x00z", 9); /* op 9 */
  ck_assert_int_eq (catalog_apply_changes (cat, seq + 1, bad, len + 9),
                    -EBADMSG);
  memcpy (bad + len, "\x01\x0b\x00\x01\x00\x00\x00\x00z", 9); /* table 11 */
  ck_assert_int_eq (catalog_apply_changes (cat, seq + 1, bad, len + 9),
                    -EBADMSG);
  memcpy (bad + len, "\x01\x00\x00\x05\x00\x00\x00\x00z", 9); /* klen > */
  ck_assert_int_eq (catalog_apply_changes (cat, seq + 1, bad, len + 9),
                    -EBADMSG);
  memcpy (bad + len, "\x01\x00\x00\x01\xff\xff\xff\xffz", 9); /* vlen > */
  ck_assert_int_eq (catalog_apply_changes (cat, seq + 1, bad, len + 9),
                    -EBADMSG);
  memcpy (bad + len, "\x02\x00\x00\x01\x00\x00\x00\x00q", 9); /* del none */
  ck_assert_int_eq (catalog_apply_changes (cat, seq + 1, bad, len + 9),
                    -EBADMSG);
  ck_assert_int_eq (catalog_apply_changes (cat, seq + 1, bad, 5), -EBADMSG);
  ck_assert_int_eq (catalog_apply_changes (cat, seq + 1, bad, 0), -EBADMSG);
  ck_assert_int_eq (catalog_apply_changes (cat, 0, good, len), -EBADMSG);
  ck_assert_int_eq (catalog_apply_changes (cat, seq + 2, good, len), -ESTALE);
  ck_assert_int_eq (catalog_change_seq (cat, &after), 0);
  ck_assert_uint_eq (after, seq);
  /* The good one applies, and the catalog still works. */
  ck_assert_int_eq (catalog_apply_changes (cat, seq + 1, good, len), 0);
  ck_assert_int_eq (catalog_change_seq (cat, &after), 0);
  ck_assert_uint_eq (after, seq + 1);
  ck_assert_int_eq (catalog_volume_create (cat, "after", MiB, 1, &v), 0);
  ck_assert_int_eq (catalog_change_seq (cat, &after), 0);
  ck_assert_uint_eq (after, seq + 2);
  free_batches ();
}
END_TEST

/* Close CAT2 (in D), dump it, open it again. */
static char *
dump_reopen (catalog **cat2, const char *d)
{
  char *out;

  catalog_close (*cat2);
  out = dump_env (d);
  ck_assert_int_eq (catalog_open (d, 0, cat2), 0);
  return out;
}

/* changes: batches applied in one call (catalog_apply_changes_many)
 * give the catalog and sequence that applying them one by one gives; a
 * bad batch or a gap among them changes nothing.
 */
START_TEST (test_changes_many)
{
  char dir2[] = "/tmp/test-catalog-XXXXXX";
  char dir3[] = "/tmp/test-catalog-XXXXXX";
  /* Static: 6 KiB is past the stack frame limit. */
  static struct catalog_change_batch b[256];
  catalog *cat2, *cat3;
  uint64_t seq0, seq, seq2, seq3, vol;
  uint8_t bad[16];
  char *empty, *a, *c;
  size_t i, n;

  ck_assert_ptr_nonnull (mkdtemp (dir2));
  ck_assert_ptr_nonnull (mkdtemp (dir3));
  ck_assert_int_eq (catalog_open (dir2, 0, &cat2), 0);
  ck_assert_int_eq (catalog_open (dir3, 0, &cat3), 0);
  ck_assert_int_eq (catalog_change_seq (cat, &seq0), 0);

  catalog_set_commit_hook (cat, keep_batch, NULL);
  init_cluster ();
  add_server (1);
  add_server (2);
  vol = add_volume ("many", 64 * MiB, 2);
  for (i = 0; i < 5; i++)
    alloc_index (vol, i);
  catalog_set_commit_hook (cat, NULL, NULL);
  ck_assert_int_eq (catalog_change_seq (cat, &seq), 0);
  n = nbatches;
  ck_assert_uint_ge (n, 4);
  ck_assert_uint_eq (seq, seq0 + n);
  for (i = 0; i < n; i++)
    b[i] = (struct catalog_change_batch){ .seq = batches[i].seq,
                                          .changes = batches[i].data,
                                          .len = batches[i].len };

  /* One by one into cat2. */
  for (i = 0; i < n; i++)
    ck_assert_int_eq (catalog_apply_changes (cat2, batches[i].seq,
                                             batches[i].data, batches[i].len),
                      0);
  ck_assert_int_eq (catalog_change_seq (cat2, &seq2), 0);
  ck_assert_uint_eq (seq2, seq);

  /* Refused whole into cat3: a malformed batch in the middle, a gap, a
   * start that does not follow, none at all.
   */
  empty = dump_reopen (&cat3, dir3);
  memcpy (bad, "\x09\x00\x00\x01\x00\x00\x00\x00z", 9); /* op 9 */
  b[2] = (struct catalog_change_batch){ .seq = batches[2].seq,
                                        .changes = bad,
                                        .len = 9 };
  ck_assert_int_eq (catalog_apply_changes_many (cat3, b, n), -EBADMSG);
  b[2].len = 0;
  ck_assert_int_eq (catalog_apply_changes_many (cat3, b, n), -EBADMSG);
  b[2] = (struct catalog_change_batch){ .seq = batches[2].seq,
                                        .changes = batches[2].data,
                                        .len = batches[2].len };
  b[2].seq++;
  ck_assert_int_eq (catalog_apply_changes_many (cat3, b, n), -ESTALE);
  b[2].seq--;
  ck_assert_int_eq (catalog_apply_changes_many (cat3, b + 1, n - 1), -ESTALE);
  ck_assert_int_eq (catalog_apply_changes_many (cat3, b, 0), -EBADMSG);
  ck_assert_int_eq (catalog_change_seq (cat3, &seq3), 0);
  ck_assert_uint_eq (seq3, seq0);
  a = dump_reopen (&cat3, dir3);
  ck_assert_str_eq (a, empty);
  free (a);

  /* The first two, then the rest, in two calls. */
  ck_assert_int_eq (catalog_apply_changes_many (cat3, b, 2), 0);
  ck_assert_int_eq (catalog_change_seq (cat3, &seq3), 0);
  ck_assert_uint_eq (seq3, seq0 + 2);
  ck_assert_int_eq (catalog_apply_changes_many (cat3, b, n), -ESTALE);
  ck_assert_int_eq (catalog_apply_changes_many (cat3, b + 2, n - 2), 0);
  ck_assert_int_eq (catalog_change_seq (cat3, &seq3), 0);
  ck_assert_uint_eq (seq3, seq);

  catalog_close (cat2);
  catalog_close (cat3);
  a = dump_env (dir2);
  c = dump_env (dir3);
  ck_assert_str_eq (a, c);
  ck_assert_str_ne (a, empty);
  ck_assert_ptr_nonnull (strstr (a, "table volumes"));
  free (a);
  free (c);
  free (empty);
  free_batches ();
  ck_assert_int_eq (nftw (dir2, remove_one, 8, FTW_DEPTH | FTW_PHYS), 0);
  ck_assert_int_eq (nftw (dir3, remove_one, 8, FTW_DEPTH | FTW_PHYS), 0);
}
END_TEST

/* Add a tcase named NAME running FN with the temporary-catalog fixture. */
static void
add_tcase (Suite *s, const char *name, const TTest *fn, double timeout)
{
  TCase *tc = tcase_create (name);

  tcase_add_checked_fixture (tc, setup, teardown);
  if (timeout > 0)
    tcase_set_timeout (tc, timeout);
  tcase_add_test (tc, fn);
  suite_add_tcase (s, tc);
}

/* The suite: one tcase per behaviour. */
static Suite *
catalog_suite (void)
{
  Suite *s = suite_create ("catalog");

  add_tcase (s, "open", test_open, 0);
  add_tcase (s, "changes_replay", test_changes_replay, 0);
  add_tcase (s, "changes_malformed", test_changes_malformed, 0);
  add_tcase (s, "changes_many", test_changes_many, 0);
  add_tcase (s, "cluster", test_cluster, 0);
  add_tcase (s, "cluster_min", test_cluster_min, 0);
  add_tcase (s, "server_register", test_server_register, 0);
  add_tcase (s, "server_list_state", test_server_list_state, 0);
  add_tcase (s, "server_count_segments", test_server_count_segments, 0);
  add_tcase (s, "server_index_seq", test_server_index_seq, 0);
  add_tcase (s, "volume_create", test_volume_create, 0);
  add_tcase (s, "volume_min_copies", test_volume_min_copies, 0);
  add_tcase (s, "volume_record_min_copies", test_volume_record_min_copies, 0);
  add_tcase (s, "volume_get_lookup_list", test_volume_get_lookup_list, 0);
  add_tcase (s, "volume_resize", test_volume_resize, 0);
  add_tcase (s, "volume_epoch", test_volume_epoch, 0);
  add_tcase (s, "volume_next_epoch", test_volume_next_epoch, 0);
  add_tcase (s, "volume_clean_epoch", test_volume_clean_epoch, 0);
  add_tcase (s, "map_alloc", test_map_alloc, 0);
  add_tcase (s, "map_alloc_partial_segment", test_map_alloc_partial_segment, 0);
  add_tcase (s, "map_alloc_no_cluster", test_map_alloc_no_cluster, 0);
  add_tcase (s, "map_get", test_map_get, 0);
  add_tcase (s, "map_get_random", test_map_get_random, 60);
  add_tcase (s, "segment_replica_state", test_segment_replica_state, 0);
  add_tcase (s, "segment_list", test_segment_list, 0);
  add_tcase (s, "segment_add_replica", test_segment_add_replica, 0);
  add_tcase (s, "segment_remove_replica", test_segment_remove_replica, 0);
  add_tcase (s, "server_segments", test_server_segments, 0);
  add_tcase (s, "server_remove", test_server_remove, 0);
  add_tcase (s, "volume_delete", test_volume_delete, 0);
  add_tcase (s, "volume_delete_empty", test_volume_delete_empty, 0);
  add_tcase (s, "volume_delete_many", test_volume_delete_many, 60);
  add_tcase (s, "garbage_errors", test_garbage_errors, 0);
  add_tcase (s, "stats_persist", test_stats_persist, 0);
  add_tcase (s, "threads", test_threads, 60);
  add_tcase (s, "corrupt_records", test_corrupt_records, 0);
  add_tcase (s, "corrupt_records_v2", test_corrupt_records_v2, 0);
  add_tcase (s, "segment_index_upgrade", test_segment_index_upgrade, 0);
  add_tcase (s, "tables", test_tables, 0);
  add_tcase (s, "map_alloc_many", test_map_alloc_many, 0);
  add_tcase (s, "map_alloc_many_redo", test_map_alloc_many_redo, 0);
  add_tcase (s, "map_alloc_group", test_map_alloc_group, 60);
  add_tcase (s, "read_after_commit", test_read_after_commit, 60);
  add_tcase (s, "key_order", test_key_order, 0);
  add_tcase (s, "server_counts", test_server_counts, 0);
  add_tcase (s, "server_counts_many", test_server_counts_many, 0);
  add_tcase (s, "strerror", test_strerror, 0);
  add_tcase (s, "backup", test_backup, 0);
  add_tcase (s, "backup_errors", test_backup_errors, 0);
  return s;
}

/* Run the suite; exit status 0 if no test failed. */
int
main (void)
{
  SRunner *sr = srunner_create (catalog_suite ());
  int failed;

  srunner_run_all (sr, CK_ENV);
  failed = srunner_ntests_failed (sr);
  srunner_free (sr);
  return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

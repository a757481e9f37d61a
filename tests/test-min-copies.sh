#!/usr/bin/env bash
# min-copies: a 3-replica volume with --min-copies 2 refuses a write that
# would be acknowledged on one copy (EIO), keeps every acknowledged
# write, and heals once the servers return; a min-copies above the
# replica count is refused.
source ./functions.sh
set -e
set -x

requires_built
requires nbdsh --version

export LEASE_TIMEOUT=3 DOWN_TIMEOUT=3
make_cluster_dir
start_cluster 3

# open_writer NAME: start nbdkit NAME on vol read-write and take the
# lease.  After a crash the lease is refused as busy until the old one
# expires, then the open waits for the MDS's resync (open-timeout):
# take_lease retries while busy.
open_writer ()
{
    start_nbdkit "$1" vol timeout=2 open-timeout=30
    take_lease "$1"
}

expect_fail "min-copies 4 is more than its 3 replicas" \
    tessera volume create bad --size 1M --replicas 3 --min-copies 4
tessera volume create vol --size 1M --replicas 3 --min-copies 2
test "$(tessera_json "j['min_copies']" volume info vol)" = 2
test "$(tessera_json "[v['min_copies'] for v in j['volumes']]" volume list)" = "[2]"

# Acknowledged and flushed: 'A' over the whole volume (16 segments).
start_nbdkit w vol timeout=2
nbdsh -u "$(nbd_uri w)" -c '
h.pwrite(b"A" * (1 << 20), 0)
h.flush()
'

# Two of the three servers die: a write can reach one copy only.  The
# MDS marks the first failed replica stale (2 ok replicas are left) but
# refuses the second (1 would be left, the volume needs 2), so the
# write fails with EIO and is not acknowledged.
kill_storesrv 2
kill_storesrv 3
t0="$(now)"
nbdsh -u "$(nbd_uri w)" -c '
import errno
try:
    h.pwrite(b"B" * 4096, 0)
except nbd.Error as e:
    print("write failed as it should: %s" % e)
    assert e.errno == "EIO", e.errno
else:
    assert False, "a write on one copy was acknowledged"
# Reads still work, from the replica that is left.
assert h.pread(4096, 65536) == b"A" * 4096
'
echo "min-copies: write refused after $(elapsed "$t0") s"
grep -E "would leave 1 ok replicas, volume vol needs min-copies 2" \
    "$CLUSTER/nbdkit-w.log"

# The writer dies too: the next open resyncs, once the servers are back.
stop_nbdkit w KILL
start_storesrv 2
start_storesrv 3
wait_servers_up 3
tessera volume map vol
repair_wait 60
t0="$(now)"
open_writer w2
echo "min-copies: reopened (with its resync) in $(elapsed "$t0") s"
repair_wait 60
check_map_healthy vol 3
tessera volume verify vol

# Every acknowledged byte reads back, from every replica (reads spread
# over the replicas: read everything several times).  The first block
# was never acknowledged: it may hold either pattern, but the same one
# on every replica.
nbdsh -u "$(nbd_uri w2)" -c '
first = set()
for _ in range(6):
    b = bytes(h.pread(1 << 20, 0))
    first.add(b[:4096])
    assert b[4096:] == b"A" * ((1 << 20) - 4096), "acknowledged data lost"
assert len(first) == 1 and first <= {b"A" * 4096, b"B" * 4096}, first
print("first block: %r" % (next(iter(first))[:1]))
'
stop_nbdkit w2

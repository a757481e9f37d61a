#!/usr/bin/env bash
# Lose the MDS catalog and rebuild it from the storage servers
# (tessera-mds --rebuild): the volume comes back with the same data, the
# same map (segment ids and replica sets), and new segments get ids never
# used before; a rebuild without one of the servers still serves the
# data of every segment with a replica on the others.
source ./functions.sh
set -e
set -x

requires_built
requires nbdsh --version
requires sha256sum --version

export SEGMENT_SIZE=64K
make_cluster_dir
start_cluster 3
# The key lives in the catalog directory, which is about to be lost.
cp "$CLUSTER/mds/cluster.key" "$CLUSTER/cluster.key"
export TESSERA_KEY_FILE="$CLUSTER/cluster.key"

tessera volume create vol --size 16M --replicas 2
tessera volume create other --size 1M --replicas 3

# A known image: 2 MiB of patterns at the start of the volume, the rest
# (past what allocation reads ahead) left unallocated.
start_nbdkit w vol
nbdsh -u "$(nbd_uri w)" -c '
for i in range(32):
    h.pwrite(bytes([(i * 7 + j) % 251 for j in range(256)]) * 256, i * 65536)
h.flush()
'
stop_nbdkit w
start_nbdkit o other
nbdsh -u "$(nbd_uri o)" -c 'h.pwrite(b"o" * 65536, 0); h.flush()'
stop_nbdkit o

# image_sum NAME: the sha256 of volume vol into $CLUSTER/NAME.sum.
image_sum ()
{
    volume_sum vol > "$CLUSTER/$1.sum"
}

# Segment ids and replica sets (sorted), by index, of the segments below
# index $2 (default: all).  Allocation reads ahead: segments allocated
# but never written are on no storage server, and read as zeros
# whether they are mapped or not.
map_of ()
{
    tessera --json volume map "$1" | $PYTHON -c '
import json, sys
m = json.load(sys.stdin)
for s in m["segments"]:
    if s["index"] < int(sys.argv[1]):
        print(s["index"], s["id"], sorted(r["server"] for r in s["replicas"]),
              sorted(r["state"] for r in s["replicas"]))' "${2:-1000000}"
}

image_sum before
map_of vol 32 > "$CLUSTER/map-before"
map_of other 1 > "$CLUSTER/other-before"
test "$(wc -l < "$CLUSTER/map-before")" = 32
map_of vol > "$CLUSTER/map-all"
! awk '$1 == 192' "$CLUSTER/map-all" | grep -q .
max_id="$(awk '{ print $2 }' "$CLUSTER/map-all" "$CLUSTER/other-before" |
          sort -n | tail -n 1)"

# Every server has taken the tables of the last change (the pusher runs
# at least once a second).
wait_tables 3

# Lose the catalog.
stop_pidfile "$CLUSTER/mds.pid"
rm -rf "$CLUSTER/mds"
addrs="unix:$CLUSTER/ss1.sock,unix:$CLUSTER/ss2.sock,unix:$CLUSTER/ss3.sock"

# A catalog directory that holds a catalog is refused.
rebuild_mds ()
{
    rm -f "$CLUSTER/mds.pid"
    "$TESSERA_MDS_BIN" --db "$CLUSTER/mds" --key-file "$TESSERA_KEY_FILE" \
        --rebuild "$1" -f -v ${TESSERA_TEST_TLS:+--tls} \
        --listen "unix:$CLUSTER/mds.sock" -P "$CLUSTER/mds.pid" \
        --lease-timeout 5 --down-timeout 3 \
        >>"$CLUSTER/mds.log" 2>&1 &
    wait_for_pidfile "$CLUSTER/mds.pid" $!
}

rebuild_mds "$addrs"
grep "rebuild:" "$CLUSTER/mds.log"
grep -q "rebuild: 3 of 3 storage servers answered" "$CLUSTER/mds.log"
wait_servers_up 3
tessera volume list
image_sum after
cmp "$CLUSTER/before.sum" "$CLUSTER/after.sum"
map_of vol 32 > "$CLUSTER/map-after"
map_of other 1 > "$CLUSTER/other-after"
diff -u "$CLUSTER/map-before" "$CLUSTER/map-after"
diff -u "$CLUSTER/other-before" "$CLUSTER/other-after"

# A write to an unallocated region gets an id never used before.  The
# volume is not clean (its last writer is unknown): the MDS keeps it for
# that writer for a lease time before a new one may open it (take_lease
# connects until the writer lease is granted).
start_nbdkit w vol
take_lease w
nbdsh -u "$(nbd_uri w)" -c 'h.pwrite(b"n" * 4096, 12 * 1024 * 1024); h.flush()'
stop_nbdkit w
new_id="$(map_of vol | awk '$1 == 192 { print $2 }')"
test -n "$new_id"
test "$new_id" -gt "$max_id"
image_sum after-write

stop_pidfile "$CLUSTER/mds.pid"
expect_fail "already holds a catalog" \
    "$TESSERA_MDS_BIN" --db "$CLUSTER/mds" --key-file "$TESSERA_KEY_FILE" \
    --rebuild "$addrs" -f --listen "unix:$CLUSTER/mds2.sock"

# Rebuild again without server 3: every segment has a replica on server
# 1 or 2 (two replicas each), so the whole image still reads back.
rm -rf "$CLUSTER/mds"
stop_pidfile "$CLUSTER/ss3.pid"
rebuild_mds "unix:$CLUSTER/ss1.sock,unix:$CLUSTER/ss2.sock"
grep -q "rebuild: 2 of 2 storage servers answered" "$CLUSTER/mds.log"
wait_servers_up 2
image_sum partial
cmp "$CLUSTER/after-write.sum" "$CLUSTER/partial.sum"

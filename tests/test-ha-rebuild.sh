#!/usr/bin/env bash
# An HA cluster (three etcd members, MDSes a and b, three storage
# servers) loses every MDS catalog.  tessera-mds --rebuild with --etcd
# campaigns whatever etcd's record says, rebuilds the catalog from the
# storage servers as the elected leader (they have seen a's epoch and
# refuse an epoch-0 MDS), then serves: the volume reads back the same
# (sha256) and a new allocation works.  A rebuild started while another
# MDS leads exits non-zero, saying so, without serving.
source ./functions.sh
set -e
set -x

requires_built
requires nbdsh --version
requires etcd --version
make_cluster_dir
TTL=8
export SYNC_TIMEOUT=5
start_ha_cluster

for (( i = 0; i < 100; ++i )); do
    tessera volume create vol --size 16M --replicas 2 2>/dev/null && break
    sleep 0.2
done
tessera volume info vol

# A known image: 2 MiB of patterns, the rest left unallocated.
start_nbdkit w vol
take_lease w
nbdsh -u "$(nbd_uri w)" -c '
for i in range(32):
    h.pwrite(bytes([(i * 7 + j) % 251 for j in range(256)]) * 256, i * 65536)
h.flush()
'
stop_nbdkit w

# image_sum NAME: the sha256 of volume vol into $CLUSTER/NAME.sum.
image_sum ()
{
    volume_sum vol > "$CLUSTER/$1.sum"
}
image_sum before

# Every server has taken the tables of the last change (the pusher runs
# at least once a second).
wait_tables 3

# Lose both catalogs (the key is kept outside them).
stop_pidfile "$CLUSTER/mdsb.pid"
stop_pidfile "$CLUSTER/mdsa.pid"
rm -rf "$CLUSTER/mdsa"/* "$CLUSTER/mdsb"/*
addrs="unix:$CLUSTER/ss1.sock,unix:$CLUSTER/ss2.sock,unix:$CLUSTER/ss3.sock"

# Rebuild on a's address (the storage servers and clients know it),
# with a log of its own.
mv "$CLUSTER/mdsa.log" "$CLUSTER/mdsa-first.log"
start_ha_mds a --rebuild "$addrs"
wait_log "$CLUSTER/mdsa.log" "leading at epoch" 60
grep "rebuild:" "$CLUSTER/mdsa.log"
grep -q "rebuild: 3 of 3 storage servers answered" "$CLUSTER/mdsa.log"
# Reconciled as the leader: no server refused it.
! grep -q "handshake failed" "$CLUSTER/mdsa.log"
for (( i = 0; i < 100; ++i )); do
    on a volume list 2>/dev/null && break
    sleep 0.2
done
on a volume list | grep -q vol
wait_servers_up 3
image_sum after
cat "$CLUSTER/before.sum" "$CLUSTER/after.sum"
cmp "$CLUSTER/before.sum" "$CLUSTER/after.sum"
# A backup for the restore below, before the new allocation.
tessera catalog backup "$CLUSTER/cat.bak"

# A new allocation: a write to an unallocated region.  The volume is
# not clean (its last writer is unknown): take_lease retries until the
# writer lease is granted.
start_nbdkit w vol
take_lease w
nbdsh -u "$(nbd_uri w)" -c '
h.pwrite(b"n" * 4096, 12 * 1024 * 1024)
h.flush()
assert h.pread(4096, 12 * 1024 * 1024) == b"n" * 4096
'
stop_nbdkit w
tessera --json volume map vol |
    $PYTHON -c 'import json, sys
m = json.load(sys.stdin)
assert any(s["index"] == 192 for s in m["segments"]), "no segment 192"'
image_sum allocated

# A rebuild while a leads: refused after a's lease would have expired,
# never serving.
mkdir -p "$CLUSTER/mdsc"
st=0
timeout 120 "$TESSERA_MDS_BIN" --db "$CLUSTER/mdsc" -f -v \
    --listen "unix:$CLUSTER/mdsc.sock" \
    --advertise "unix:$CLUSTER/mdsc.sock" --name c \
    --etcd "$ETCD_ENDPOINTS" --etcd-prefix "/test-$$" --etcd-ttl "$TTL" \
    --key-file "$CLUSTER/cluster.key" --rebuild "$addrs" \
    >>"$CLUSTER/mdsc.log" 2>&1 || st=$?
test "$st" -ne 0 && test "$st" -ne 124
grep "a leads at epoch" "$CLUSTER/mdsc.log"
! grep -q "leading at epoch" "$CLUSTER/mdsc.log"
on a volume list | grep -q vol

# Lose the catalog again and restore the backup with --etcd: the
# segment allocated after the backup is adopted from the servers.
stop_pidfile "$CLUSTER/mdsa.pid"
rm -rf "$CLUSTER/mdsa"/*
mv "$CLUSTER/mdsa.log" "$CLUSTER/mdsa-rebuilt.log"
start_ha_mds a --restore "$CLUSTER/cat.bak"
wait_log "$CLUSTER/mdsa.log" "leading at epoch" 60
grep "restore: reconciled with 3 of 3 storage servers: 1 segments adopted" \
    "$CLUSTER/mdsa.log"
! grep -q "handshake failed" "$CLUSTER/mdsa.log"
for (( i = 0; i < 100; ++i )); do
    on a volume list 2>/dev/null && break
    sleep 0.2
done
image_sum restored
cmp "$CLUSTER/allocated.sum" "$CLUSTER/restored.sum"

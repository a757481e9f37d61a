#!/usr/bin/env bash
# A storage server that loses its page cache and restarts (the audit's
# exp4) must not become the source of a resync: its unclean registration
# makes the MDS mark its replicas written in dirty epochs stale, and the
# resync after a writer crash then keeps the acknowledged, flushed data
# on every replica.  A store rolled back in time is caught the same way.
source ./functions.sh
set -e
set -x

requires_built
requires nbdsh --version

export LEASE_TIMEOUT=3 DOWN_TIMEOUT=3
make_cluster_dir
start_cluster 2
# 16 segments of 64K, each with a replica on both servers; and a
# volume with a single copy of each segment.
tessera volume create vol --size 1M --replicas 2
tessera volume create one --size 1M --replicas 1

# open_writer NAME: start nbdkit NAME on vol read-write, with no epoch
# rotation during the test, and take the lease.  After a crash the lease
# is refused as busy until the old one expires, then the open waits for
# the MDS's resync (open-timeout): take_lease retries while busy.
open_writer ()
{
    start_nbdkit "$1" vol timeout=2 epoch-interval=300 open-timeout=30
    take_lease "$1"
}

# check_all BYTE: every replica holds BYTE everywhere (verify), and the
# volume reads BYTE everywhere, several times (reads spread over the
# replicas).
check_all ()
{
    tessera volume verify vol
    nbdsh -u "$(nbd_uri "$2")" -c "
for i in range(6):
    b = bytes(h.pread(1 << 20, 0))
    bad = sorted({o // 65536 for o in range(0, 1 << 20, 4096)
                  if b[o:o + 4096] != b'$1' * 4096})
    assert not bad, 'segments reading old data: %s' % bad
"
}

# wait_check WHAT: wait (at most 30 s) for the MDS's check of server 2
# (WHAT: "segments of unclean volumes" or "every replica after the
# rollback"), and print its line.  Repair may resync the replicas it
# marks stale at once, so the map cannot tell.
wait_check ()
{
    local i
    for (( i = 0; i < 150; ++i )); do
        if grep -E "server 2: $1 checked" "$CLUSTER/mds.log"; then
            return 0
        fi
        sleep 0.2
    done
    echo "$0: no check of server 2 ($1) within 30 s"
    return 1
}

# 'O' everywhere, flushed; save server 2's data file.  The volume
# "one" is written too, and stays open: its replicas on server 2 are the
# last ok ones of their segments.
open_writer w
nbdsh -u "$(nbd_uri w)" -c 'h.pwrite(b"O" * (1 << 20), 0); h.flush()'
start_nbdkit o one timeout=2 epoch-interval=300
nbdsh -u "$(nbd_uri o)" -c 'h.pwrite(b"1" * (1 << 20), 0); h.flush()'
ss2="$(server_id 2)"
one_on_2="$(tessera_json "sum(1 for s in j['segments'] if s['replicas'][0]['server'] == $ss2)" volume map one)"
test "$one_on_2" -gt 0
cp "$CLUSTER/ss2/data" "$CLUSTER/ss2-data.O"

# 'N' everywhere, acknowledged and flushed, in the same (dirty) epoch.
nbdsh -u "$(nbd_uri w)" -c 'h.pwrite(b"N" * (1 << 20), 0); h.flush()'

# Server 2 loses its page cache: killed, its data file back to 'O' (its
# index, synced at every commit, keeps saying it wrote every segment in
# the dirty epoch), restarted.  It registers as unclean; the MDS asks it
# for its segments of the dirty epochs and marks all 16 replicas stale
# (server 1 holds an ok replica of each).
kill_storesrv 2
cp "$CLUSTER/ss2-data.O" "$CLUSTER/ss2/data"
t0="$(now)"
start_storesrv 2
wait_check "segments of unclean volumes" | tee "$CLUSTER/check1"
echo "resync-evidence: unclean check done $(elapsed "$t0") s after the restart"
grep -q "16 marked stale, $one_on_2 unproven" "$CLUSTER/check1"
grep -E "server [0-9]+ .*registered after an unclean stop" "$CLUSTER/mds.log"
grep -E "volume one: segment [0-9]+: server $ss2 restarted uncleanly.*unproven" \
    "$CLUSTER/mds.log" | head -n 3
tessera status
test "$(tessera_json "j['unproven']" status)" = "$one_on_2"
stop_nbdkit o

# The writer crashes before doing anything else: the next open resyncs.
# No stale replica is a source, so the resync keeps 'N'; then repair
# resyncs server 2's replicas in place from server 1.
stop_nbdkit w KILL
t0="$(now)"
open_writer w2
echo "resync-evidence: reopened (with its resync) in $(elapsed "$t0") s"
grep "resync done" "$CLUSTER/mds.log" | tail -n 1
repair_wait 60
check_map_healthy vol 2
check_all N w2

# A store that goes back in time: server 2 killed and its whole store
# (data and index) replaced by a copy taken earlier.  Its registration
# reports a lower index_seq than the MDS saw: every replica on it is
# marked stale, and repair makes them whole again.
stop_nbdkit w2
stop_storesrv 2
cp -a "$CLUSTER/ss2" "$CLUSTER/ss2.old"
start_storesrv 2
wait_servers_up 2
open_writer w3
nbdsh -u "$(nbd_uri w3)" -c 'h.pwrite(b"R" * (1 << 20), 0); h.flush()'
# The MDS knows only the index_seq it has been told: let a heartbeat
# (every second) report the commits of these writes.
sleep 2
kill_storesrv 2
rm -rf "$CLUSTER/ss2"
mv "$CLUSTER/ss2.old" "$CLUSTER/ss2"
start_storesrv 2
wait_check "every replica after the rollback" | tee "$CLUSTER/check2"
grep -q "16 marked stale, $one_on_2 unproven" "$CLUSTER/check2"
grep -E "store went back in time" "$CLUSTER/mds.log"
repair_wait 60
check_map_healthy vol 2
check_all R w3
stop_nbdkit w3

# The resync's own evidence, when nothing told the MDS: server 2's
# store goes back to a copy taken after a clean stop, while the MDS is
# down (it had saved the index_seq of server 2's last registration, not
# the higher ones its heartbeats reported since), so server 2 registers
# cleanly with an index_seq the MDS finds fine, and its replicas stay ok
# with 'E' of an older epoch next to 'F' on server 1.  The resync after
# the writer's crash asks both for each segment's last epoch and copies
# from server 1, whatever the order of the replica lists.
open_writer w4
nbdsh -u "$(nbd_uri w4)" -c 'h.pwrite(b"E" * (1 << 20), 0); h.flush()'
stop_nbdkit w4
stop_storesrv 2
cp -a "$CLUSTER/ss2" "$CLUSTER/ss2.clean"
start_storesrv 2
wait_servers_up 2
open_writer w5
nbdsh -u "$(nbd_uri w5)" -c 'h.pwrite(b"F" * (1 << 20), 0); h.flush()'
sleep 2
kill_mds
kill_storesrv 2
rm -rf "$CLUSTER/ss2"
mv "$CLUSTER/ss2.clean" "$CLUSTER/ss2"
lines="$(wc -l < "$CLUSTER/mds.log")"
start_mds
start_storesrv 2
wait_servers_up 2
tail -n +$(( lines + 1 )) "$CLUSTER/mds.log" > "$CLUSTER/mds-after.log"
grep -E "server $ss2 .*registered" "$CLUSTER/mds-after.log"
if grep -E "went back in time|unclean stop" "$CLUSTER/mds-after.log"; then
    false
fi
stop_nbdkit w5 KILL
t0="$(now)"
open_writer w6
echo "resync-evidence: reopened (with its resync) in $(elapsed "$t0") s"
grep "resync done" "$CLUSTER/mds.log" | tail -n 1
chosen="$(grep -cE "segment [0-9]+: source server $(server_id 1) \(last epoch [0-9]+\), not server $ss2 \(last epoch [0-9]+\)" "$CLUSTER/mds.log" || :)"
echo "resync-evidence: $chosen segments resynced from the replica with the newer epoch"
test "$chosen" -ge 16
repair_wait 60
check_map_healthy vol 2
check_all F w6
stop_nbdkit w6

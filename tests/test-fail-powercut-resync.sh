#!/usr/bin/env bash
# Issue 10, test 2: a power cut on one storage server between acknowledged
# writes and the FLUSH (as test-fail-powercut.sh), then the writer is
# killed before its epoch is marked clean and the volume opened again:
# the MDS's resync must take its source from evidence, so every FLUSHed
# block reads back (N) on every replica, and verify agrees.
source ./functions.sh
set -e
set -x

requires_built
requires "$PYTHON" -c 'import nbd'
requires_faultfs

export SEGMENT_SIZE=64K LEASE_TIMEOUT=3 DOWN_TIMEOUT=3 OUT_TIMEOUT=30
export STORE_SIZE=64M
t_start="$(now)"
make_cluster_dir
faultfs_mount ff2
storesrv_on_faultfs 2 ff2
start_cluster 2
tessera volume create vol --size 1M --replicas 2

# open_writer: start nbdkit on the volume read-write and take the lease,
# retrying (take_lease) while the dead writer's lease makes it busy; the
# open waits for the MDS's resync (open-timeout).
open_writer ()
{
    start_nbdkit w vol open-timeout=30 epoch-interval=300
    take_lease w
}

# A long epoch interval: the FLUSH does not rotate the epoch, which
# stays dirty until the writer dies.
open_writer
uri="$(nbd_uri w)"
pattern_write "$uri" O flush
pattern_write "$uri" N
test "$(faultfs_stat ff2 pending_bytes)" -gt 0

# Power cut on server 2, restart, FLUSH.
ss2_id="$(server_id 2)"
mds_lines="$(wc -l < "$CLUSTER/mds.log")"
kill_storesrv 2
faultfs_ctl ff2 drop
start_storesrv 2
wait_servers_up 2
flush_ok=yes
nbd_flush "$uri" || flush_ok=no
stale="$(count_stale vol)"
marks="$(stale_marks "$mds_lines" "$ss2_id")"
echo "powercut-resync: FLUSH after the power cut: $flush_ok; stale" \
     "replicas: $stale in the map, $marks marked stale since the power cut"
tessera --json volume info vol

# The writer dies before its epoch is clean; the next open resyncs.
stop_nbdkit w KILL
t0="$(now)"
open_writer
reopen_secs="$(elapsed "$t0")"
echo "powercut-resync: reopened (resync included) in $reopen_secs s"
tessera volume map vol
verify_ok=yes
tessera volume verify vol || verify_ok=no
check_ok=yes
pattern_check "$uri" N 8 65536 "$CLUSTER/check.json" || check_ok=no
if [ "$check_ok" != yes ]; then
    echo "powercut-resync: FAIL: FLUSHed data lost after the resync" \
         "on every replica (FLUSH: $flush_ok, stale before: $stale," \
         "marked stale: $marks, verify clean: $verify_ok)"
    exit 1
fi
test "$flush_ok" = yes

# Repair makes every replica whole; every replica reads N.
stop_nbdkit w
repair_wait 60
check_map_healthy vol 2
tessera volume verify vol
start_nbdkit r vol readonly=true
pattern_check "$(nbd_uri r)" N 8
stop_nbdkit r
$PYTHON -c '
import json, sys
s = json.load(open(sys.argv[1]))
print("powercut-resync: %d reads (%d blocks) checked, %s stale replicas "
      "(%s marked stale) before the resync, reopen %s s, repair %s s, "
      "test %s s" % (s["reads"], s["blocks"], sys.argv[2], sys.argv[3],
                     sys.argv[4], sys.argv[5], sys.argv[6]))' \
    "$CLUSTER/check.json" "$stale" "$marks" "$reopen_secs" "$REPAIR_SECS" "$(elapsed "$t_start")"

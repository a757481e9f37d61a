#!/usr/bin/env bash
# Issue 10, test 1: a power cut on one storage server between acknowledged
# writes and the FLUSH (faultfs drops its unsynced data, the server
# restarts).  The FLUSH after the restart must fail or mark that server's
# replicas stale first; once it succeeds no read may return the older
# data, and after repair "tessera volume verify" must be clean.
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
# Server 2's data file lives in faultfs; its superblock and index (LMDB,
# synced at every commit) on the real disk.
faultfs_mount ff2
storesrv_on_faultfs 2 ff2
start_cluster 2
# 16 segments of 64K, each with a replica on both servers.
tessera volume create vol --size 1M --replicas 2
start_nbdkit w vol epoch-interval=300
uri="$(nbd_uri w)"

# O everywhere, FLUSHed: durable on both servers.
pattern_write "$uri" O flush
faultfs_stat ff2
test "$(faultfs_stat ff2 pending_bytes)" -eq 0

# N everywhere, acknowledged, not flushed: server 2 holds it in faultfs.
pattern_write "$uri" N
faultfs_stat ff2
test "$(faultfs_stat ff2 pending_bytes)" -gt 0

# Power cut on server 2: the process dies, its unsynced data is lost.
ss2_id="$(server_id 2)"
mds_lines="$(wc -l < "$CLUSTER/mds.log")"
kill_storesrv 2
faultfs_ctl ff2 drop
faultfs_stat ff2
start_storesrv 2
wait_servers_up 2

# The FLUSH that covers N.  A fixed tree fails it, or marks server 2's
# replicas stale before acknowledging it.
flush_ok=yes
nbd_flush "$uri" || flush_ok=no
tessera volume map vol
stale="$(count_stale vol)"
# Repair may have made some ok again already: the MDS's log counts them.
marks="$(stale_marks "$mds_lines" "$ss2_id")"
echo "powercut: FLUSH after the power cut: $flush_ok; stale replicas:" \
     "$stale in the map, $marks marked stale since the power cut"
# Both guards saw the restart: the writer (a new incarnation, its
# unflushed segments reported) and the MDS (an unclean registration).
grep 'storage server [0-9]* restarted (incarnation' "$CLUSTER/nbdkit-w.log"
grep 'registered after an unclean stop' "$CLUSTER/mds.log"

# No read may return O (or anything but N): 8 reads of every segment in
# a row, so that the round robin reads both replicas.
check_ok=yes
pattern_check "$uri" N 8 65536 "$CLUSTER/check.json" || check_ok=no
if [ "$check_ok" != yes ]; then
    echo "powercut: FAIL: reads returned data older than the acknowledged" \
         "writes after the FLUSH ($flush_ok) of server 2's power cut;" \
         "stale replicas: $stale, marked stale: $marks"
    exit 1
fi

# Repair brings server 2's replicas back; then every replica agrees.
stop_nbdkit w
repair_wait 60
tessera volume map vol
check_map_healthy vol 2
tessera volume verify vol
start_nbdkit r vol readonly=true
pattern_check "$(nbd_uri r)" N 8
stop_nbdkit r
$PYTHON -c '
import json, sys
s = json.load(open(sys.argv[1]))
print("powercut: %d reads (%d blocks) checked, FLUSH %s, %s stale replicas "
      "(%s marked stale), repair %s s, test %s s" % (s["reads"], s["blocks"],
      sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]))' \
    "$CLUSTER/check.json" "$flush_ok" "$stale" "$marks" "$REPAIR_SECS" \
    "$(elapsed "$t_start")"

#!/usr/bin/env bash
# SIGKILL a storage server during a verified random-write workload: no
# I/O error, no wrong data; after it restarts, repair makes every segment
# whole again (prints the stall and the resync rate).
source ./functions.sh
set -e
set -x

requires_built
requires "$PYTHON" -c 'import nbd'

export SEGMENT_SIZE=256K LEASE_TIMEOUT=3 DOWN_TIMEOUT=3 OUT_TIMEOUT=30
make_cluster_dir
start_cluster 3
tessera volume create vol --size 32M --replicas 2
victim="$(server_id 2)"

start_nbdkit w vol
timeout 120 "${WORKLOAD[@]}" rw "$(nbd_uri w)" --write-pct 60 \
        --duration 60 --stop-file "$CLUSTER/stop" \
        --started "$CLUSTER/started" --stats "$CLUSTER/stats.json" \
        --save "$CLUSTER/content.json" &
wl=$!
cleanup_fn "kill $wl 2>/dev/null || :"
wait_for_pidfile "$CLUSTER/started" $wl

sleep 2
kill_storesrv 2
# Keep writing for longer than the plugin's timeout and the down-timeout.
sleep 5
touch "$CLUSTER/stop"
wait $wl
cat "$CLUSTER/stats.json"; echo
$PYTHON -c '
import json, sys
s = json.load(open(sys.argv[1]))
print("storesrv-kill: longest stall %.3f s, slowest request %.3f s" %
      (s["max_stall"], s["max_latency"]))
assert s["errors"] == 0 and s["mismatches"] == 0, s
assert s["writes"] > 0 and s["final_blocks"] > 0, s' "$CLUSTER/stats.json"
stop_nbdkit w

# The killed server's replicas missed writes: they were marked stale.
tessera volume map vol
stale="$(count_unhealthy vol)"
test "$stale" -gt 0

# It comes back; repair resyncs its stale replicas in place (DIFF mode:
# the rate counts whole segments, of which only changed blocks move).
t0="$(now)"
start_storesrv 2
test "$(server_id 2)" = "$victim"
wait_servers_up 3
repair_wait 60
print_rate "storesrv-kill: resync of $stale stale segments" \
    $(( stale * 256 * 1024 )) "$(elapsed "$t0")"
tessera status
check_map_healthy vol 2
tessera volume verify vol

# The data is what the workload last read (twice: reads alternate
# between the replicas).
start_nbdkit r vol readonly=true
timeout 60 "${WORKLOAD[@]}" check "$(nbd_uri r)" --load "$CLUSTER/content.json"
timeout 60 "${WORKLOAD[@]}" check "$(nbd_uri r)" --load "$CLUSTER/content.json"

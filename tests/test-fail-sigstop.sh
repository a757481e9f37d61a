#!/usr/bin/env bash
# SIGSTOP a storage server for longer than the timeouts, then SIGCONT:
# the workload goes on with a bounded stall, the paused server is marked
# down, and its replicas resync when it returns.
source ./functions.sh
set -e
set -x

requires_built
requires "$PYTHON" -c 'import nbd'

# The pause (12 s) is longer than the plugin's timeout (2 s) and the
# down-timeout (3 s), shorter than the out-timeout.
export SEGMENT_SIZE=256K LEASE_TIMEOUT=3 DOWN_TIMEOUT=3 OUT_TIMEOUT=60
make_cluster_dir
start_cluster 3
tessera volume create vol --size 32M --replicas 2
victim="$(server_id 3)"

start_nbdkit w vol
timeout 120 "${WORKLOAD[@]}" rw "$(nbd_uri w)" --write-pct 60 --fill \
        --duration 90 --stop-file "$CLUSTER/stop" \
        --started "$CLUSTER/started" --stats "$CLUSTER/stats.json" \
        --save "$CLUSTER/content.json" &
wl=$!
cleanup_fn "kill $wl 2>/dev/null || :"
wait_for_pidfile "$CLUSTER/started" $wl 90

sleep 2
pause_storesrv 3
t0="$(now)"
wait_server_state "$victim" down 15
echo "sigstop: marked down after $(elapsed "$t0") s"
tessera --json server list
sleep_until "$t0" 12
# The writes while it was paused made some of its replicas stale.
tessera volume map vol
stale="$(count_unhealthy vol)"
test "$stale" -gt 0
resume_storesrv 3
t1="$(now)"
sleep 3
touch "$CLUSTER/stop"
wait $wl
cat "$CLUSTER/stats.json"; echo
# The longest stall must stay well below the pause: writes go on
# without the paused server once the plugin's timeout (2 s) expires.
$PYTHON -c '
import json, sys
s = json.load(open(sys.argv[1]))
print("sigstop: longest stall %.3f s, slowest request %.3f s" %
      (s["max_stall"], s["max_latency"]))
assert s["errors"] == 0 and s["mismatches"] == 0, s
assert s["writes"] > 0 and s["final_blocks"] > 0, s
assert s["max_stall"] < 8, "stall of %.3f s" % s["max_stall"]' \
    "$CLUSTER/stats.json"
stop_nbdkit w

wait_server_state "$victim" up 30
repair_wait 60
print_rate "sigstop: resync of $stale segments" \
    $(( stale * 256 * 1024 )) "$(elapsed "$t1")"
check_map_healthy vol 2
tessera volume verify vol

start_nbdkit r vol readonly=true
timeout 60 "${WORKLOAD[@]}" check "$(nbd_uri r)" --load "$CLUSTER/content.json"

#!/usr/bin/env bash
# SIGKILL one storage server and restart it, then a few seconds later
# another one (never both replicas of a segment down at once), under a
# verified random-write workload that flushes: no I/O error reaches the
# client once the first server is back, only delays within the request
# bound, and every acknowledged write reads back (prints the slowest
# request and the time each server took to come back).
source ./functions.sh
set -e
set -x

requires_built
requires "$PYTHON" -c 'import nbd'

export SEGMENT_SIZE=256K LEASE_TIMEOUT=3 DOWN_TIMEOUT=3 OUT_TIMEOUT=60
make_cluster_dir
start_cluster 3
tessera volume create vol --size 32M --replicas 2

# timeout=10: a server that failed stays suspect for 10 s, so the
# second fault comes while the first server is still suspect; every
# request is over within 15 s (see the plugin's page).
start_nbdkit w vol timeout=10
timeout 150 "${WORKLOAD[@]}" rw "$(nbd_uri w)" --write-pct 60 \
        --flush-every 1 --duration 90 --stop-file "$CLUSTER/stop" \
        --started "$CLUSTER/started" --stats "$CLUSTER/stats.json" \
        --save "$CLUSTER/content.json" &
wl=$!
cleanup_fn "kill $wl 2>/dev/null || :"
wait_for_pidfile "$CLUSTER/started" $wl
t_start="$(now)"

# wait_healthy: every replica ok again (repair resyncs the restarted
# server's stale replicas in place), at most 30 s.
wait_healthy ()
{
    local i
    for (( i = 0; i < 150; ++i )); do
        if [ "$(count_unhealthy vol)" = 0 ]; then return 0; fi
        sleep 0.2
    done
    tessera volume map vol
    echo "$0: replicas still unhealthy after 30 s"
    return 1
}

sleep 2
# First fault: a crash and an immediate restart, between two flushes
# (the server's unflushed writes are lost: what the plugin had not
# flushed there must be reported).
t_kill="$(now)"
kill_storesrv 2
start_storesrv 2
wait_servers_up 3
back="$(elapsed "$t_start")"
wait_healthy
echo "two-faults: server 2 whole again $(elapsed "$t_kill") s after its kill"
# Second fault, 3 to 6 s after the first: down for a second.
sleep_until "$t_kill" 4
kill_storesrv 3
sleep 1
start_storesrv 3
wait_servers_up 3
wait_healthy
sleep 3
touch "$CLUSTER/stop"
wait $wl
cat "$CLUSTER/stats.json"; echo

$PYTHON -c '
import json, sys
s = json.load(open(sys.argv[1]))
back = float(sys.argv[2])
late = [t for t in s.get("error_times", []) if t >= back]
print("two-faults: %d I/O errors (%d after the first server was back at "
      "%.1f s), %d flushes, slowest request %.3f s, longest stall %.3f s" %
      (s["errors"], len(late), back, s.get("flushes", 0), s["max_latency"],
       s["max_stall"]))
assert not late and s["mismatches"] == 0, s
# Within the request bound, one and a half times timeout=10.
assert s["max_latency"] < 15, s
assert s["writes"] > 0 and s.get("flushes", 0) > 0 and s["final_blocks"] > 0, s
' "$CLUSTER/stats.json" "$back"
stop_nbdkit w
# Storage servers that send incarnations were found restarted, and what
# they had not flushed was reported.
grep -E 'restarted \(incarnation|reported|lost' "$CLUSTER/nbdkit-w.log" | head -20 || :
tessera volume verify vol

# A new reader reads what the workload read at the end.
start_nbdkit r vol readonly=true
timeout 60 "${WORKLOAD[@]}" check "$(nbd_uri r)" --load "$CLUSTER/content.json"

#!/usr/bin/env bash
# Drain a server under a verified read/write workload: no wrong data, no
# I/O error, the server ends with no segments and can then be removed
# (prints the copy rate).
source ./functions.sh
set -e
set -x

requires_built
requires "$PYTHON" -c 'import nbd'

export SEGMENT_SIZE=256K LEASE_TIMEOUT=3 DOWN_TIMEOUT=3 OUT_TIMEOUT=60
make_cluster_dir
start_cluster 3
tessera volume create vol --size 32M --replicas 2
victim="$(server_id 2)"

start_nbdkit w vol
timeout 180 "${WORKLOAD[@]}" rw "$(nbd_uri w)" --write-pct 30 --fill \
        --duration 150 --stop-file "$CLUSTER/stop" \
        --started "$CLUSTER/started" --stats "$CLUSTER/stats.json" \
        --save "$CLUSTER/content.json" &
wl=$!
cleanup_fn "kill $wl 2>/dev/null || :"
wait_for_pidfile "$CLUSTER/started" $wl 90
sleep 1

# Every segment is allocated (--fill): the victim holds about 2/3 of them.
nseg="$(tessera_json "[s['segments'] for s in j['servers'] if s['id'] == $victim][0]" server list)"
test "$nseg" -gt 0
t0="$(now)"
tessera server drain "$victim"
test "$(server_state "$victim")" = draining
repair_wait 120
wait_server_empty "$victim" 60
drain_secs="$(elapsed "$t0")"
print_rate "drain: copy of $nseg segments" $(( nseg * 256 * 1024 )) "$drain_secs"
tessera server list
tessera --json volume map vol | $PYTHON -c '
import json, sys
m = json.load(sys.stdin)
on = [s["index"] for s in m["segments"]
      if any(r["server"] == int(sys.argv[1]) for r in s["replicas"])]
assert not on, "segments still on the drained server: %s" % on' "$victim"
check_map_healthy vol 2

# The workload goes on a little after the drain, then checks everything.
sleep 1
touch "$CLUSTER/stop"
wait $wl
cat "$CLUSTER/stats.json"; echo
$PYTHON -c '
import json, sys
s = json.load(open(sys.argv[1]))
print("drain: %d writes, %d reads during the drain, longest stall %.3f s" %
      (s["writes"], s["reads"], s["max_stall"]))
assert s["errors"] == 0 and s["mismatches"] == 0, s
assert s["reads"] > 0 and s["final_blocks"] > 0, s' "$CLUSTER/stats.json"
stop_nbdkit w
tessera volume verify vol

# The drained server holds nothing: stop it and remove it; the data does
# not need it.
stop_storesrv 2
tessera server remove "$victim"
test "$(tessera_json "sum(1 for s in j['servers'] if s['id'] == $victim)" server list)" = 0
tessera server list
start_nbdkit r vol readonly=true
timeout 60 "${WORKLOAD[@]}" check "$(nbd_uri r)" --load "$CLUSTER/content.json"

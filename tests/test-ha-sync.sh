#!/usr/bin/env bash
# The synchronous standby dies (issue 12, test 5): MDS a leads, b is its
# synchronous standby, a writer keeps allocating.  kill -9 of b pauses
# allocations at most --sync-timeout (2 s here) plus a margin, then the
# leader records in etcd that it goes on alone and the writer goes on
# without an error.  The leader then dies while alone: b, back with its
# lagging catalog, must not lead.  a restarted leads again with every
# acknowledged write.
source ./functions.sh
set -e
set -x

requires_built
make_cluster_dir
TTL=8
start_ha_cluster

tessera volume create w --size 1G --replicas 2
start_nbdkit w w timeout=20
take_lease w
timeout 150 "${WORKLOAD[@]}" rw "$(nbd_uri w)" --write-pct 70 --grow 40 \
        --flush-every 1 --duration 25 --stop-file "$CLUSTER/stop" \
        --started "$CLUSTER/started" --stats "$CLUSTER/stats.json" \
        --save "$CLUSTER/content.json" &
wl=$!
cleanup_fn "kill $wl 2>/dev/null || :"
wait_for_pidfile "$CLUSTER/started" $wl
sleep 5

# The synchronous standby dies: the leader goes on alone after 2 s.
stop_pidfile "$CLUSTER/mdsb.pid" KILL
wait_log "$CLUSTER/mdsa.log" "going on without one" 15
wait $wl
$PYTHON - "$CLUSTER/stats.json" <<'PYEOF'
import json, sys
s = json.load(open(sys.argv[1]))
print("ha-sync: writer: %d writes, %d errors, %d mismatches, longest "
      "stall %.3f s" % (s["writes"], s["errors"], s["mismatches"],
                        s["max_stall"]))
assert s["errors"] == 0 and s["mismatches"] == 0
# --sync-timeout 2: the pause, plus a margin for a loaded machine.
assert s["max_stall"] < 6, "allocations paused %.3f s" % s["max_stall"]
PYEOF
stop_nbdkit w

# The leader dies while it runs alone; b comes back with its old,
# lagging catalog: b must not lead (etcd's record names a, alone).
stop_pidfile "$CLUSTER/mdsa.pid" KILL
start_ha_mds b
sleep $(( TTL + 4 ))
! grep -q "leading at epoch" "$CLUSTER/mdsb.log"
out="$(TESSERA_MDS="unix:$CLUSTER/mdsb.sock" tessera volume list 2>&1 || :)"
grep -q "not the leader" <<<"$out"

# a comes back: it leads (the record names it, alone), with everything.
mv "$CLUSTER/mdsa.log" "$CLUSTER/mdsa.log.1"
start_ha_mds a
wait_log "$CLUSTER/mdsa.log" "leading at epoch" 30
start_nbdkit r w readonly=true
"${WORKLOAD[@]}" check "$(nbd_uri r)" --load "$CLUSTER/content.json"
stop_nbdkit r
check_segments_distinct

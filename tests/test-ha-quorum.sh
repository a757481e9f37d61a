#!/usr/bin/env bash
# etcd loses members (issue 12, test 6): MDS a leads, b is its
# synchronous standby, a writer keeps writing regions already allocated.
# One etcd member of three killed: no effect.  A second one killed (no
# quorum): the leader steps down on its own within the lease TTL (plus
# etcd's own detection time) and exits, and the writer goes on writing
# without an error while no MDS serves.  a is started again at once (as
# a supervisor would); quorum back, service resumes (b leads if it was
# the synchronous standby, else a), and the writer reads back whole.
source ./functions.sh
set -e
set -x

requires_built
make_cluster_dir
TTL=8
# A loaded machine can hold a standby's pull up for seconds: a standby
# going silent is test-ha-sync's subject, not this one's.
export SYNC_TIMEOUT=5
start_ha_cluster

# A 32 MiB volume, written whole first: every region is allocated.
tessera volume create w --size 32M --replicas 2
start_nbdkit w w timeout=20
take_lease w
nbdsh -u "$(nbd_uri w)" -c '
for i in range(512):
    h.pwrite(bytes([i % 251]) * 65536, i * 65536)
h.flush()
'
timeout 150 "${WORKLOAD[@]}" rw "$(nbd_uri w)" --write-pct 70 --unknown \
        --flush-every 1 --duration 40 --stop-file "$CLUSTER/stop" \
        --started "$CLUSTER/started" --stats "$CLUSTER/stats.json" \
        --save "$CLUSTER/content.json" &
wl=$!
cleanup_fn "kill $wl 2>/dev/null || :"
wait_for_pidfile "$CLUSTER/started" $wl
sleep 3

# One member of three: no effect.
stop_pidfile "$CLUSTER/etcd1.pid" KILL
sleep $(( TTL + 2 ))
! grep -q "no longer the leader" "$CLUSTER/mdsa.log"
tessera volume info w >/dev/null

# Quorum lost: a steps down by itself and exits (75).
wait_sync b a
apid="$(cat "$CLUSTER/mdsa.pid")"
t0="$(now)"
stop_pidfile "$CLUSTER/etcd2.pid" KILL
for (( i = 0; i < (TTL + 6) * 10; ++i )); do
    kill -0 "$apid" 2>/dev/null || break
    sleep 0.1
done
! kill -0 "$apid" 2>/dev/null
echo "ha-quorum: a stepped down $(elapsed "$t0") s after quorum was lost"
grep "no longer the leader" "$CLUSTER/mdsa.log"
# Started again at once, as a supervisor would: whichever of a and b
# etcd's record lets campaign (b if it is the synchronous standby, a if
# it went on alone) leads once quorum is back.
mv "$CLUSTER/mdsa.log" "$CLUSTER/mdsa.log.1"
start_ha_mds a
sleep 3

# Quorum back: service resumes.
t0="$(now)"
restart_etcd 1
restart_etcd 2
for (( i = 0; i < 300; ++i )); do
    tessera volume info w >/dev/null 2>&1 && break
    sleep 0.1
done
tessera volume info w >/dev/null
echo "ha-quorum: service back $(elapsed "$t0") s after quorum returned"
grep -h "leading at epoch" "$CLUSTER/mdsa.log" "$CLUSTER/mdsb.log"

wait $wl
$PYTHON - "$CLUSTER/stats.json" <<'PYEOF'
import json, sys
s = json.load(open(sys.argv[1]))
print("ha-quorum: writer: %d writes, %d errors, %d mismatches, longest "
      "stall %.3f s" % (s["writes"], s["errors"], s["mismatches"],
                        s["max_stall"]))
assert s["errors"] == 0 and s["mismatches"] == 0
PYEOF
stop_nbdkit w
start_nbdkit r w readonly=true
"${WORKLOAD[@]}" check "$(nbd_uri r)" --load "$CLUSTER/content.json"
stop_nbdkit r

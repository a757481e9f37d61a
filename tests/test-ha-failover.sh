#!/usr/bin/env bash
# A standby MDS elected through etcd (docs/high-availability.md): three
# real etcd members, MDS a (the first, made with --init) and MDS b (an
# empty directory: it takes a snapshot of a's catalog, then follows),
# three storage servers and a writer that all have both addresses.
# Catalog changes made on a are on b once b is the synchronous standby;
# a standby answers ENOTLEADER naming the leader.  kill -9 of the leader
# under a content-verified writer that keeps allocating: b leads within
# the lease TTL plus 5 s with every acknowledged change, the writer sees
# no error and reads back every acknowledged write, no segment id is
# given twice (prints the failover time and the writer's longest
# stall).  A restarted a follows b (it takes a snapshot, never leads on
# its own catalog); a clean stop of the leader hands over at once.
source ./functions.sh
set -e
set -x

requires_built
requires etcd --version
make_cluster_dir
start_etcd 3
TTL=8
# A loaded machine can hold a standby's pull up for seconds.
export SYNC_TIMEOUT=5

export TESSERA_KEY_FILE="$CLUSTER/cluster.key"
BOTH="unix:$CLUSTER/mdsa.sock,unix:$CLUSTER/mdsb.sock"
start_ha_mds a --init --segment-size 64K
wait_log "$CLUSTER/mdsa.log" "leading at epoch"
# Storage servers with both addresses: they find the leader.
for i in 1 2 3; do
    start_storesrv $i --mds "$BOTH"
done
for (( i = 0; i < 100; ++i )); do
    on a volume create v1 --size 64M --replicas 2 2>/dev/null && break
    sleep 0.2
done
on a volume info v1

start_ha_mds b
wait_log "$CLUSTER/mdsa.log" "b is the synchronous standby"
# A standby answers ENOTLEADER, naming the leader.
out="$(on b volume list 2>&1 || :)"
grep -q "not the leader; the leader is at unix:$CLUSTER/mdsa.sock" <<<"$out"

# Changes acknowledged by the leader are on the synchronous standby.
for i in 2 3 4 5; do
    on a volume create "v$i" --size $(( i * 16 ))M --replicas 2
done
on a volume resize v2 256M
on a volume delete v3
on a --json volume list > "$CLUSTER/before.json"

# A writer with both addresses that keeps allocating (the blocks it uses
# grow over 30 s), flushing every second.
on a volume create w --size 1G --replicas 2
TESSERA_MDS="$BOTH" start_nbdkit w w timeout=20
take_lease w
timeout 150 "${WORKLOAD[@]}" rw "$(nbd_uri w)" --write-pct 70 --grow 30 \
        --flush-every 1 --duration 30 --stop-file "$CLUSTER/stop" \
        --started "$CLUSTER/started" --stats "$CLUSTER/stats.json" \
        --save "$CLUSTER/content.json" &
wl=$!
cleanup_fn "kill $wl 2>/dev/null || :"
wait_for_pidfile "$CLUSTER/started" $wl
sleep 8

# Under steady writes the leader never went on without its standby.
! grep "going on without one" "$CLUSTER/mdsa.log"
# The leader dies: b takes over within the TTL plus 5 s.
wait_sync b a
t0="$(now)"
stop_pidfile "$CLUSTER/mdsa.pid" KILL
for (( i = 0; i < (TTL + 5) * 10; ++i )); do
    on b volume list >/dev/null 2>&1 && break
    sleep 0.1
done
took="$(elapsed "$t0")"
on b volume list >/dev/null
echo "ha-failover: b serves ${took} s after the leader's kill"
wait $wl
cat "$CLUSTER/stats.json"; echo
$PYTHON - "$CLUSTER/stats.json" <<'PYEOF'
import json, sys
s = json.load(open(sys.argv[1]))
print("ha-failover: writer: %d writes, %d errors, %d mismatches, longest "
      "stall %.3f s" % (s["writes"], s["errors"], s["mismatches"],
                        s["max_stall"]))
assert s["errors"] == 0 and s["mismatches"] == 0
PYEOF
# Every acknowledged write reads back through a new nbdkit on b.
stop_nbdkit w
TESSERA_MDS="$BOTH" start_nbdkit w2 w readonly=true
"${WORKLOAD[@]}" check "$(nbd_uri w2)" --load "$CLUSTER/content.json"
stop_nbdkit w2
TESSERA_MDS="$BOTH" check_segments_distinct

on b --json volume list > "$CLUSTER/after.json"
$PYTHON - "$CLUSTER/before.json" "$CLUSTER/after.json" <<'PYEOF'
import json, sys
def vols(p):
    v = json.load(open(p))
    v = v.get("volumes", v) if isinstance(v, dict) else v
    return sorted((x["name"], x["size"], x["replicas"]) for x in v
                  if x["name"] != "w")
a, b = vols(sys.argv[1]), vols(sys.argv[2])
print("before:", a)
print("after: ", b)
assert a == b, "the catalogs differ"
assert [n for n, _, _ in a] == ["v1", "v2", "v4", "v5"]
PYEOF
# New changes on the new leader.
on b volume resize v4 1G

# The old leader comes back: it follows b (from a snapshot) and answers
# ENOTLEADER; once it is the synchronous standby, b's clean stop hands
# over to it at once, with v4 resized.
start_ha_mds a
wait_log "$CLUSTER/mdsa.log" "from a snapshot"
wait_log "$CLUSTER/mdsb.log" "a is the synchronous standby"
out="$(on a volume list 2>&1 || :)"
grep -q "not the leader; the leader is at unix:$CLUSTER/mdsb.sock" <<<"$out"
wait_sync a b
t0="$(now)"
stop_pidfile "$CLUSTER/mdsb.pid"
for (( i = 0; i < 50; ++i )); do
    on a volume list >/dev/null 2>&1 && break
    sleep 0.1
done
echo "ha-failover: a serves $(elapsed "$t0") s after b's clean stop"
on a --json volume list | grep -q 1073741824

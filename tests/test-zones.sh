#!/usr/bin/env bash
# Failure domains: a 2-replica volume spans zones a and b; with zone b
# drained its replicas are re-created in zone a; a new zone c makes them
# misplaced and repair re-spreads them (data intact); once zone c has no
# room, allocations fail with ENOSPC and a message naming the zones.
source ./functions.sh
set -e
set -x

requires_built
requires "$PYTHON" -c 'import nbd'

export SEGMENT_SIZE=64K DOWN_TIMEOUT=3 OUT_TIMEOUT=60
make_cluster_dir
# Copies slow enough (0.5 s a segment, 2 at a time) for STATUS and the
# map to show segments misplaced for a few seconds.
start_mds --repair-bandwidth 128K
start_storesrv 1 --zone a
start_storesrv 2 --zone a
start_storesrv 3 --zone b
wait_servers_up 3
ss3="$(server_id 3)"

# zone_spans VOLUME MIN MAX: every allocated segment of VOLUME has its
# replicas in at least MIN and at most MAX distinct zones (print the
# counts per number of zones).
zone_spans ()
{
    tessera --json server list > "$CLUSTER/servers.json"
    tessera --json volume map "$1" | $PYTHON -c '
import json, sys
lo, hi = int(sys.argv[1]), int(sys.argv[2])
zone = {s["id"]: s["zone"] for s in json.load(open(sys.argv[3]))["servers"]}
m = json.load(sys.stdin)
spans = {}
bad = []
for s in m["segments"]:
    n = len({zone.get(r["server"], "?") for r in s["replicas"]})
    spans[n] = spans.get(n, 0) + 1
    if not lo <= n <= hi:
        bad.append(s)
print("%s: %d segments, by zones spanned: %s" %
      (m["volume"], len(m["segments"]), spans))
for s in bad[:5]:
    print("segment in the wrong number of zones:", s)
sys.exit(1 if bad or not m["segments"] else 0)' "$2" "$3" "$CLUSTER/servers.json"
}

# wait_misplaced TEST SECONDS: wait until "misplaced TEST" holds for
# the MDS's count (a Python comparison such as "> 0").
wait_misplaced ()
{
    local i m=
    for (( i = 0; i < $2 * 5; ++i )); do
        m="$(tessera_json "j['misplaced']" status 2>/dev/null || :)"
        if [ -n "$m" ] && $PYTHON -c "import sys; sys.exit(0 if $m $1 else 1)"
        then return 0; fi
        sleep 0.2
    done
    echo "$0: misplaced was not $1 within $2 s (last: $m)"
    return 1
}

# 1 MiB: 16 segments, each in zones a and b.
tessera volume create vol --size 1M --replicas 2
start_nbdkit w vol
pattern_write "$(nbd_uri w)" A flush
zone_spans vol 2 2
tessera status
test "$(tessera_json "j['misplaced']" status)" = 0

# Zone b goes: repair re-creates its replicas in zone a, the only zone
# left, which is where the rule wants them (no segment is misplaced).
tessera server drain "$ss3"
repair_wait 60
wait_server_empty "$ss3" 30
check_map_healthy vol 2
zone_spans vol 1 1
wait_misplaced "== 0" 10
test "$(tessera_json "sum(s['misplaced'] for s in j['segments'])" volume map vol)" = 0

# Zone c arrives: every segment should span two zones again, so all are
# misplaced until repair has moved one replica of each to zone c.  Its
# store is small (32 segments) so that it fills up below.
STORE_SIZE=2M start_storesrv 4 --zone c
wait_servers_up 4 # the drained server is up still
wait_misplaced "> 0" 20
tessera status
tessera volume map vol
test "$(tessera_json "sum(s['misplaced'] for s in j['segments'])" volume map vol)" -gt 0
grep -E "repair: [0-9]+ segments misplaced" "$CLUSTER/mds.log"
wait_misplaced "== 0" 40
repair_wait 30
check_map_healthy vol 2
zone_spans vol 2 2
test "$(tessera_json "sum(s['misplaced'] for s in j['segments'])" volume map vol)" = 0
grep -E "segment [0-9]+: misplaced: copying it to server" "$CLUSTER/mds.log"
pattern_check "$(nbd_uri w)" A 2 65536
stop_nbdkit w

# Fill zone c: a second volume needs a replica there for every segment,
# so its writes fail with ENOSPC once zone c is at its high-water mark,
# and the MDS says which zones have room.
tessera volume create fill --size 4M --replicas 2
start_nbdkit f fill
timeout 60 $PYTHON - "$(nbd_uri f)" <<'PYEOF'
import errno, sys, nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
bs = 65536
for i in range(h.get_size() // bs):
    try:
        h.pwrite(b"F" * bs, i * bs)
    except nbd.Error as ex:
        assert ex.errnum == errno.ENOSPC, "not ENOSPC: %s" % ex
        print("fill: ENOSPC after %d segments" % i)
        break
else:
    sys.exit("fill: no ENOSPC")
PYEOF
grep -E "cannot place 2 replicas: .*zone a: [0-9]+.*zone c: 0" \
     "$CLUSTER/nbdkit-f.log"
stop_nbdkit f
for (( i = 0; i < 50; ++i )); do
    tessera status > "$CLUSTER/status.txt"
    if grep -q "warning: only 1 failure domains have room" \
            "$CLUSTER/status.txt"; then break; fi
    sleep 0.2
done
cat "$CLUSTER/status.txt"
grep -E "warning: zone c has room for 0 segments" "$CLUSTER/status.txt"
grep -q "warning: only 1 failure domains have room" "$CLUSTER/status.txt"
grep -E "placement: only 1 failure domains have room" "$CLUSTER/mds.log"
# The MDS warns once, when the zone first falls below 10 % of its room:
# a repair pass may see it at a few segments before it reaches 0.
grep -E "warning: zone c has room for [0-9]+ segments, below" \
     "$CLUSTER/mds.log"

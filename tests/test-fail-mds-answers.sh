#!/usr/bin/env bash
# Lost and slow MDS answers (issue 5 regressions; the plugin reaches the
# MDS through tests/cut-proxy.py):
#   1. A read-write VOL_OPEN whose request reached the MDS but whose
#      reply was lost is sent again and gets the same lease (the MDS
#      recognizes the open token), instead of "already open for
#      writing": the client connects.  A different writer is refused.
#   2. After an EPOCH_NEXT reply is lost, the LEASE_RENEW that settles
#      the epoch is damaged (the MDS answers EBADMSG): the writer must
#      not declare its lease lost; later flushes and writes succeed.
#   3. The MDS is paused (SIGSTOP) while a random writer allocates: no
#      write waits for long behind another's MAP_ALLOC; every request
#      ends within twice the plugin's timeout.
source ./functions.sh
set -e
set -x

requires_built
requires "$PYTHON" -c 'import nbd'

TIMEOUT=2
export SEGMENT_SIZE=64K LEASE_TIMEOUT=30 DOWN_TIMEOUT=30
make_cluster_dir

PROXY=("$PYTHON" "$abs_top_srcdir/tests/cut-proxy.py")
CTL="unix:$CLUSTER/proxy-ctl.sock"
PMDS="unix:$CLUSTER/proxy-mds.sock"

ctl ()
{
    "${PROXY[@]}" ctl "$CTL" "$@"
}

start_mds
"${PROXY[@]}" serve --control "$CTL" --log "$CLUSTER/proxy.log" \
    --ready "$CLUSTER/proxy.ready" \
    --protocol-h "$abs_top_srcdir/common/proto/protocol.h" \
    --route mds "$PMDS" "unix:$CLUSTER/mds.sock" &
proxy=$!
cleanup_fn "kill $proxy 2>/dev/null || :"
wait_for_pidfile "$CLUSTER/proxy.ready" $proxy
start_storesrv 1
start_storesrv 2
wait_servers_up 2

# ---- 1. VOL_OPEN sent again after a lost answer ----
tessera volume create vol1 --size 64M --replicas 2
for f in '"dir": "c2s", "at": "end"' '"dir": "s2c", "at": 0' \
         '"dir": "s2c", "at": 40'; do
    # nbdkit opens the volume read-only at start-up and takes the lease
    # at its first connection: cut that read-write VOL_OPEN.
    start_nbdkit o vol1 mds="$PMDS" timeout=$TIMEOUT open-timeout=5
    ctl "{\"cmd\": \"plan\", \"faults\": [{\"queue\": \"open\",
         \"route\": \"mds\", \"op\": \"VOL_OPEN\", \"action\": \"cut\", $f}]}"
    # Well within the lease time: an open that is refused EBUSY would
    # wait for it to expire and fail.
    nbdsh -u "$(nbd_uri o)" -c 'assert not h.is_read_only()'
    # Another writer is refused while this one holds the lease.
    start_nbdkit o2 vol1 open-timeout=1
    if nbdsh -u "$(nbd_uri o2)" -c 'pass'; then
        echo "$0: a second writer opened vol1"
        exit 1
    fi
    stop_nbdkit o2
    grep -q "already open for writing" "$CLUSTER/nbdkit-o2.log"
    stop_nbdkit o
done
ctl '{"cmd": "results"}' > "$CLUSTER/results1.json"
# Every fault fired, and at least the cuts after the request reached the
# MDS made it see the same open twice.
test "$(grep -o '"action": "cut"' "$CLUSTER/proxy.log" | wc -l)" -ge 3
grep "open for writing by .* repeated" "$CLUSTER/mds.log"

# ---- 2. A damaged LEASE_RENEW settling a lost EPOCH_NEXT ----
tessera volume create vol2 --size 64M --replicas 2
start_nbdkit w vol2 mds="$PMDS" timeout=$TIMEOUT epoch-interval=0
cleanup_fn stop_nbdkit w
ctl '{"cmd": "plan", "faults": [
      {"queue": "q", "op": "EPOCH_NEXT", "dir": "s2c", "action": "cut",
       "at": 0},
      {"queue": "r", "op": "LEASE_RENEW", "dir": "c2s", "action": "short",
       "at": 0}]}'
$PYTHON - "$(nbd_uri w)" <<'PY'
import nbd, sys
h = nbd.NBD()
h.connect_uri(sys.argv[1])
for i in range(4):
    h.pwrite(b"x" * 4096, 4096 * i)
    h.flush()
h.pwrite(b"y" * 4096, 0)
h.flush()
assert h.pread(4096, 0) == b"y" * 4096
assert h.pread(4096, 4096 * 3) == b"x" * 4096
PY
# Both faults fired, and the lease was kept.
grep '"op": "EPOCH_NEXT"' "$CLUSTER/proxy.log" | grep -q '"action": "cut"'
grep '"op": "LEASE_RENEW"' "$CLUSTER/proxy.log" | grep -q '"action": "short"'
if grep "writer lease lost" "$CLUSTER/nbdkit-w.log"; then
    echo "$0: the writer declared its lease lost"
    exit 1
fi
stop_nbdkit w

# ---- 3. MDS paused while a random writer allocates ----
tessera volume create vol3 --size 1G --replicas 2
start_nbdkit w3 vol3 timeout=$TIMEOUT
cleanup_fn stop_nbdkit w3
cleanup_fn "kill -CONT $(cat "$CLUSTER/mds.pid") 2>/dev/null || :"
timeout 120 "${WORKLOAD[@]}" rw "$(nbd_uri w3)" --write-pct 100 --depth 8 \
        --duration 30 --max-errors 100000 --hang 60 \
        --started "$CLUSTER/started" --stats "$CLUSTER/stats.json" \
        --stop-file "$CLUSTER/stop" &
wl=$!
cleanup_fn "kill $wl 2>/dev/null || :"
wait_for_pidfile "$CLUSTER/started" $wl
sleep 1
kill -STOP "$(cat "$CLUSTER/mds.pid")"
sleep 8
kill -CONT "$(cat "$CLUSTER/mds.pid")"
sleep 2
touch "$CLUSTER/stop"
wait $wl
cat "$CLUSTER/stats.json"; echo
$PYTHON - "$CLUSTER/stats.json" "$TIMEOUT" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
timeout = float(sys.argv[2])
print("mds-sigstop: %d writes, %d errors %s, slowest request %.3f s" %
      (s["writes"], s["errors"], s["error_kinds"], s["max_latency"]))
assert s["mismatches"] == 0, s
# The pause made allocations fail (the test exercised the path)...
assert s["errors"] > 0, s
assert set(s["error_kinds"]) <= {"EIO"}, s["error_kinds"]
# ... each within the bound, and writing went on after it.
assert s["max_latency"] < 2 * timeout, s
assert s["ops_after_last_error"] > 0, s
PY
stop_nbdkit w3

#!/usr/bin/env bash
# SIGKILL the MDS during CLI operations and during writes: after each
# restart, every operation the CLI reported done is there, no segment is
# owned twice, and writes go on.
source ./functions.sh
set -e
set -x

requires_built
requires "$PYTHON" -c 'import nbd'

export LEASE_TIMEOUT=3 DOWN_TIMEOUT=3 OUT_TIMEOUT=60
make_cluster_dir
start_cluster 3

# ---- CLI operations ----
# In the background: create v$i, grow it, and delete every third one,
# logging "ok"/"failed" for each command, until $CLUSTER/stop-cli.
ops="$CLUSTER/ops.log"
(
    set +x
    for (( i = 1; i <= 2000; ++i )); do
        [ -f "$CLUSTER/stop-cli" ] && break
        for op in "create v$i --size 1M" "resize v$i 2M" "delete v$((i-1))"; do
            if [[ $op = delete* ]] && (( (i - 1) % 3 != 0 || i == 1 )); then
                continue
            fi
            if "$TESSERA_BIN" --timeout 5 volume $op >/dev/null 2>&1; then
                echo "ok $op" >> "$ops"
            else
                echo "failed $op" >> "$ops"
                sleep 0.05
            fi
        done
    done
) &
cli=$!
cleanup_fn "kill $cli 2>/dev/null || :"

for k in 1 2 3; do
    sleep "$(( RANDOM % 2 )).$(( RANDOM % 10 ))"
    kill_mds
    start_mds
done
sleep 1
touch "$CLUSTER/stop-cli"
wait $cli
echo "cli: $(grep -c '^ok' "$ops") commands done, $(grep -c '^failed' "$ops") failed"
test "$(grep -c '^ok' "$ops")" -gt 10

# Every command reported done is there, unless a later one (done, or
# failed: it may have happened) undid it.
tessera --json volume list > "$CLUSTER/volumes.json"
$PYTHON - "$ops" "$CLUSTER/volumes.json" <<'PY'
import json, sys
vols = {v["name"]: v for v in json.load(open(sys.argv[2]))["volumes"]}
hist = {}
for line in open(sys.argv[1]):
    status, op, name = line.split()[:3]
    hist.setdefault(name, []).append((status, op))
bad = 0
for name, h in hist.items():
    ok = [op for st, op in h if st == "ok"]
    tried = [op for st, op in h]
    v = vols.get(name)
    if "delete" in ok:
        want = v is None
    elif "delete" in tried:
        want = True          # the failed delete may have happened
    elif "resize" in ok:
        want = v is not None and v["size"] == 2 << 20
    elif "create" in ok:
        want = v is not None and v["size"] in (1 << 20, 2 << 20)
    else:
        want = v is None or v["size"] in (1 << 20, 2 << 20)
    if not want:
        bad += 1
        print("lost: %s: %s, now %s" % (name, h, v))
print("cli: %d volumes checked, %d lost operations" % (len(hist), bad))
sys.exit(1 if bad else 0)
PY

# ---- Writes ----
# 1024 segments of 64K, allocated as the workload spreads over the volume
# in 10 s: allocations go on while the MDS is killed.
tessera volume create data --size 64M --replicas 2
start_nbdkit w data
timeout 120 "${WORKLOAD[@]}" rw "$(nbd_uri w)" --write-pct 70 --grow 10 \
        --duration 90 --stop-file "$CLUSTER/stop" --max-errors 1000000 \
        --started "$CLUSTER/started" --stats "$CLUSTER/stats.json" &
wl=$!
cleanup_fn "kill $wl 2>/dev/null || :"
wait_for_pidfile "$CLUSTER/started" $wl
t0="$(now)"
for k in 1 2; do
    sleep "1.$(( RANDOM % 10 ))"
    kill_mds
    start_mds
    wait_servers_up 3
done
nseg="$(tessera_json "j['segments']" volume info data)"
# The writer keeps its lease and goes on writing (and allocating).
sleep_until "$t0" 12
touch "$CLUSTER/stop"
wait $wl
cat "$CLUSTER/stats.json"; echo
$PYTHON - "$CLUSTER/stats.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print("mds-kill: %d I/O errors %s while the MDS was away, last at %s s; "
      "%d requests done after it; longest stall %.3f s" %
      (s["errors"], s["error_kinds"], s["last_error"],
       s["ops_after_last_error"], s["max_stall"]))
assert s["mismatches"] == 0, s
assert s["ops_after_last_error"] > 100, s
# Allocation fails with EIO only if the MDS is away longer than the
# plugin's timeout.
assert set(s["error_kinds"]) <= {"EIO"}, s["error_kinds"]
PY
# Allocation went on after the last restart.
test "$(tessera_json "j['segments']" volume info data)" -gt "$nseg"
# A new connection writes without error, and the writer closes cleanly.
timeout 60 "${WORKLOAD[@]}" rw "$(nbd_uri w)" --unknown --duration 3
stop_nbdkit w
tessera --json volume info data |
    $PYTHON -c 'import json, sys; v = json.load(sys.stdin); assert v["clean"] and not v["open"], v'

check_segments_distinct
tessera volume verify data
tessera status

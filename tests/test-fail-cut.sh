#!/usr/bin/env bash
# Broken connections (issue 5).  The plugin reaches the MDS and every
# storage server through tests/cut-proxy.py, which cuts each message
# type seen there, in both directions, at every byte offset of its
# header and of the first 64 bytes of its payload, plus sampled offsets
# further in; sends truncated (length rewritten short), oversized
# (length over the limit, 0xffffffff) and bad-magic frames; and stalls
# a few frames half way.  Meanwhile four writers run a verified random
# workload and a flush loop.  Then: no daemon, nbdkit or the proxy
# died, no request took twice the plugin's timeout, every acknowledged
# write reads back after repair, no writer lost its lease (nobody else
# opens the volumes), every receiver of a malformed frame closed the
# connection, every header offset of every message type was cut, and a
# writer whose open, server list or close was cut still starts.
#
# "Every byte offset" of a 16 KiB SEG_WRITE or a 64 KiB SEG_READ reply
# would take thousands of cuts each, at least one reconnect apiece: the
# honest bound kept here is every offset of the header and of the first
# 64 payload bytes (the 40-byte segment I/O head, and all of every other
# message in this workload but the tails of HELLO replies and of map
# replies longer than one entry),
# then payload offsets 100, 1000 and 4000, the middle, the last byte
# and the end of the frame.  VOL_OPEN, SERVER_LIST and VOL_CLOSE happen
# once per nbdkit run, so they are cut at a sample of offsets, one
# nbdkit start each.
source ./functions.sh
set -e
set -x

requires_built
requires "$PYTHON" -c 'import nbd'

# The plugin's timeout=: no request may take twice this long.
TIMEOUT=2
# Writers: a storage-server handshake that is cut puts that server off
# limits to that writer for the timeout, so the handshake cuts go at
# about one per writer and server every two seconds.  The last writer
# is spared the storage-server faults: a write that fails part way
# stops a writer's epoch rotations for good (its volume can never be
# clean again), and this one's EPOCH_NEXT and EPOCH_CLEAN get cut.
WRITERS=4
# The longest the fault phase may take; the queues drain well before
# on an idle machine.
PHASE_SECS=150

# A 1 s lease renews three times a second, which gives LEASE_RENEW its
# share of cuts.  Nobody else opens these volumes, so a renewal that a
# cut makes late loses nothing (an expired lease stays the writer's
# until another writer takes the volume).
export SEGMENT_SIZE=64K LEASE_TIMEOUT=1 DOWN_TIMEOUT=5 OUT_TIMEOUT=600
make_cluster_dir

PROXY=("$PYTHON" "$abs_top_srcdir/tests/cut-proxy.py")
CTL="unix:$CLUSTER/proxy-ctl.sock"
PMDS="unix:$CLUSTER/proxy-mds.sock"

ctl ()
{
    "${PROXY[@]}" ctl "$CTL" "$@"
}

start_mds

# One route to the MDS and one per storage server.  The servers
# advertise the proxy's address, so the MDS's map sends the plugin (and
# repair traffic, which the faults leave alone) through it.
routes=(--route mds "$PMDS" "unix:$CLUSTER/mds.sock")
for i in 1 2 3; do
    routes+=(--route "ss$i" "unix:$CLUSTER/proxy-ss$i.sock"
             "unix:$CLUSTER/ss$i.sock")
done
"${PROXY[@]}" serve --control "$CTL" --log "$CLUSTER/proxy.log" \
    --ready "$CLUSTER/proxy.ready" --hold 5 \
    --protocol-h "$abs_top_srcdir/common/proto/protocol.h" \
    "${routes[@]}" &
proxy=$!
cleanup_fn "kill $proxy 2>/dev/null || :"
wait_for_pidfile "$CLUSTER/proxy.ready" $proxy

for i in 1 2 3; do
    start_storesrv "$i" --advertise "unix:$CLUSTER/proxy-ss$i.sock"
done
wait_servers_up 3

# The writers, and the client lists the faults are limited to (the
# proxy knows a client by its pid): every writer for the MDS, all but
# the last for the storage servers.
clients=
ss_clients=
uris=()
for (( n = 1; n <= WRITERS; ++n )); do
    tessera volume create "vol$n" --size 256M --replicas 2
    start_nbdkit "w$n" "vol$n" mds="$PMDS" timeout=$TIMEOUT epoch-interval=0
    # (Hooks run in reverse: nbdkit stops before the proxy goes.)
    cleanup_fn stop_nbdkit "w$n"
    c="\"pid:$(cat "$CLUSTER/nbdkit-w$n.pid")\""
    clients+="${clients:+, }$c"
    [ $n = $WRITERS ] || ss_clients+="${ss_clients:+, }$c"
    uris+=("$(nbd_uri "w$n")")
done
tessera volume create vol0 --size 1M --replicas 2

# The verified workload on each: random 4K..16K writes and reads,
# allocating new segments as it goes (--grow); errors are allowed (a
# cut may fail a request), wrong data never.  --hang is a backstop.
wls=
for (( n = 1; n <= WRITERS; ++n )); do
    timeout 400 "${WORKLOAD[@]}" rw "${uris[n-1]}" --write-pct 60 \
            --depth 2 --grow 100 --duration 300 --stop-file "$CLUSTER/stop" \
            --started "$CLUSTER/started$n" --stats "$CLUSTER/stats$n.json" \
            --max-errors 1000000 --hang 30 > "$CLUSTER/workload$n.out" &
    wl=$!
    wls+=" $wl"
    cleanup_fn "kill $wl 2>/dev/null || :"
    wait_for_pidfile "$CLUSTER/started$n" $wl
done

# Flushes, every 50 ms on each writer in turn (on an NBD connection of
# their own: flushes are multi-conn safe), drive SEG_FLUSH, EPOCH_NEXT
# and EPOCH_CLEAN; each one's latency is measured.
timeout 400 "$PYTHON" - "$CLUSTER/stop" "$CLUSTER/flush.json" "${uris[@]}" \
        <<'EOF' &
import json, os, sys, time
import nbd
stop, out, uris = sys.argv[1], sys.argv[2], sys.argv[3:]
hs = []
for uri in uris:
    h = nbd.NBD()
    h.connect_uri(uri)
    hs.append(h)
n = errors = 0
worst = 0.0
while not os.path.exists(stop):
    for h in hs:
        t = time.monotonic()
        try:
            h.flush()
        except nbd.Error:
            errors += 1
        worst = max(worst, time.monotonic() - t)
        n += 1
    time.sleep(0.05)
for h in hs:
    h.shutdown()
json.dump(dict(flushes=n, errors=errors, max_latency=round(worst, 3)),
          open(out, "w"))
print("flusher: %d flushes, %d errors, slowest %.3f s" % (n, errors, worst))
EOF
fl=$!
cleanup_fn "kill $fl 2>/dev/null || :"

# The fault phase starts now: its queues run while the loop below
# restarts the extra writer.
t0="$(now)"

# Let the steady state's message types go by once, then queue the cuts
# for each (route, direction, opcode) seen.  Later rounds add the types
# that only failures bring (REPLICA_FAILED, MAP_GET ...).
sleep 3
autoplan ()
{
    ctl "{\"cmd\": \"autoplan\", \"route\": \"mds\", \"client\": [$clients],
          \"actions\": [\"cut\", \"modify\"],
          \"exclude\": [\"VOL_OPEN\", \"VOL_CLOSE\", \"SERVER_LIST\"]}" \
        "{\"cmd\": \"autoplan\", \"route\": \"ss*\", \"client\": [$ss_clients],
          \"role\": \"plugin\", \"actions\": [\"cut\", \"modify\"]}"
}
autoplan

# Stalls, one at a time: forward part of a frame, then nothing either
# way, as a peer that hangs mid-frame; the proxy closes after 5 s.
stalls=
for spec in 'ss*/c2s/SEG_WRITE/0' 'ss*/c2s/SEG_WRITE/30' \
            'ss*/c2s/SEG_WRITE/100' 'ss*/s2c/SEG_READ/12' \
            'ss*/s2c/SEG_READ/2000' 'ss*/s2c/SEG_WRITE/10' \
            'ss*/s2c/SEG_FLUSH/0' 'ss*/c2s/HELLO/40' \
            'mds/c2s/MAP_ALLOC/30' 'mds/s2c/EPOCH_NEXT/20' \
            'mds/c2s/LEASE_RENEW/0'; do
    IFS=/ read -r route dir op at <<<"$spec"
    c="$clients"
    [ "$route" = mds ] || c="$ss_clients"
    stalls+="${stalls:+,}{\"queue\": \"stall\", \"route\": \"$route\",
             \"dir\": \"$dir\", \"op\": \"$op\", \"client\": [$c],
             \"action\": \"stall\", \"at\": $at}"
done
ctl "{\"cmd\": \"plan\", \"faults\": [$stalls]}"

# REPLICA_FAILED is sent only when a replica really fails a write, and
# the cuts above make too few of those to cut it at every header offset
# within the phase (writes no longer fail at once on a suspect server,
# which made most reports before).  Writes cut before their head has
# fully arrived make more: each one is reported.
rf=
for (( k = 0; k < 120; ++k )); do
    rf+="${rf:+,}{\"queue\": \"rf\", \"route\": \"ss*\",
         \"dir\": \"c2s\", \"op\": \"SEG_WRITE\", \"client\": [$ss_clients],
         \"action\": \"cut\", \"at\": 30, \"skip\": 5}"
done
ctl "{\"cmd\": \"plan\", \"faults\": [$rf]}"
# Replies to writes held past the timeout make more: the writer reports
# a replica the server had updated, which then goes through repair
# while the writes go on (a path where an acknowledged write was once
# seen missing after repair; the data check below must stay clean).
rf=
for (( k = 0; k < 48; ++k )); do
    rf+="${rf:+,}{\"queue\": \"stall-rf\", \"route\": \"ss*\",
         \"dir\": \"s2c\", \"op\": \"SEG_WRITE\", \"client\": [$ss_clients],
         \"action\": \"stall\", \"at\": 10, \"hold\": 2.5, \"skip\": 20}"
done
ctl "{\"cmd\": \"plan\", \"faults\": [$rf]}"

# Meanwhile another writer, on vol0, is started and stopped in a loop
# with one cut of its VOL_OPEN, SERVER_LIST or VOL_CLOSE each time.
# Every start and the first connection, which takes the lease, must
# succeed (within open-timeout) whatever was cut.  nbdkit's start-up
# opens the volume read-only: VOL_OPEN is cut after it, in the
# read-write open of the first connection.
open_failures=
cleanup_fn stop_nbdkit o
for spec in VOL_OPEN/c2s/0 VOL_OPEN/c2s/23 VOL_OPEN/c2s/30 \
            VOL_OPEN/c2s/end VOL_OPEN/s2c/0 VOL_OPEN/s2c/40 \
            SERVER_LIST/c2s/12 SERVER_LIST/s2c/30 SERVER_LIST/s2c/-1 \
            VOL_CLOSE/c2s/0 VOL_CLOSE/c2s/end VOL_CLOSE/s2c/12; do
    IFS=/ read -r op dir at <<<"$spec"
    [ "$at" = end ] && at='"end"'
    plan="{\"cmd\": \"plan\", \"faults\": [{\"queue\": \"open\",
         \"route\": \"mds\", \"dir\": \"$dir\", \"op\": \"$op\",
         \"action\": \"cut\", \"at\": $at}]}"
    [ "$op" = VOL_OPEN ] || ctl "$plan"
    t0="$(now)"
    if start_nbdkit o vol0 mds="$PMDS" timeout=$TIMEOUT open-timeout=20 &&
       { [ "$op" != VOL_OPEN ] || ctl "$plan"; } &&
       timeout 60 nbdsh -u "$(nbd_uri o)" -c 'assert not h.is_read_only()'
    then
        echo "open with $spec cut: started after $(elapsed "$t0") s"
    else
        echo "open with $spec cut: FAILED after $(elapsed "$t0") s"
        tail -n 3 "$CLUSTER/nbdkit-o.log"
        open_failures+=" $spec"
        # Let the lease that the lost open took expire.
        sleep $(( LEASE_TIMEOUT + 1 ))
    fi
    stop_nbdkit o
done

# Drain the queues, adding the types seen meanwhile, until PHASE_SECS
# have passed.
while :; do
    drained=yes
    "${PROXY[@]}" wait "$CTL" --timeout 5 >/dev/null || drained=no
    if [ "$(autoplan | grep -c '"kinds": 0')" = 2 ] && [ $drained = yes ]
    then
        break
    fi
    secs="$(elapsed "$t0")"
    [ "${secs%.*}" -lt "$PHASE_SECS" ] || break
done
echo "fault phase took $(elapsed "$t0") s"
ctl '{"cmd": "status"}' > "$CLUSTER/status.json"
ctl '{"cmd": "clear"}'
"${PROXY[@]}" wait "$CTL" --timeout 10
ctl '{"cmd": "results"}' > "$CLUSTER/results.json"

# Nothing crashed.
for f in "$CLUSTER"/mds.pid "$CLUSTER"/ss*.pid "$CLUSTER"/nbdkit-w*.pid; do
    kill -0 "$(cat "$f")"
done
kill -0 $proxy
crash='AddressSanitizer|runtime error|Assertion .* failed|core dumped'
crash+='|Segmentation fault|double free|corrupted'
if grep -E "$crash" "$CLUSTER"/*.log; then
    echo "$0: a daemon or nbdkit crashed"
    exit 1
fi

# Repair what the cuts made stale, then stop the workloads: their final
# pass reads back each whole volume.
repair_wait 90
touch "$CLUSTER/stop"
wait $wls
wait $fl
cat "$CLUSTER"/workload*.out

$PYTHON - "$CLUSTER" "$TIMEOUT" "$WRITERS" "$open_failures" <<'EOF'
import collections, json, sys
cluster, timeout, writers, open_failures = sys.argv[1:5]
timeout, writers = float(timeout), int(writers)
fl = json.load(open(cluster + "/flush.json"))
res = json.load(open(cluster + "/results.json"))["results"]
st = json.load(open(cluster + "/status.json"))
bad = []

for n in range(1, writers + 1):
    s = json.load(open("%s/stats%d.json" % (cluster, n)))
    print("writer %d: %d writes, %d reads, %d errors %s, slowest %.3f s, "
          "longest stall %.3f s" %
          (n, s["writes"], s["reads"], s["errors"], s["error_kinds"],
           s["max_latency"], s["max_stall"]))
    if s["mismatches"]:
        bad.append("writer %d: %d reads returned wrong data" %
                   (n, s["mismatches"]))
    if s["writes"] == 0 or s["final_blocks"] == 0:
        bad.append("writer %d did nothing" % n)
    if s["max_latency"] >= 2 * timeout:
        bad.append("writer %d: a request took %.3f s (timeout=%g): %s" %
                   (n, s["max_latency"], timeout, s.get("slowest")))
    # Nobody else opens these volumes: the lease must stay the writer's.
    for line in open("%s/nbdkit-w%d.log" % (cluster, n)):
        if "writer lease lost" in line:
            bad.append("writer %d: %s" % (n, line.strip()))
print("flushes: %d, %d errors, slowest %.3f s" %
      (fl["flushes"], fl["errors"], fl["max_latency"]))
if fl["max_latency"] >= 2 * timeout:
    bad.append("a flush took %.3f s (timeout=%g)" %
               (fl["max_latency"], timeout))

# What was done, and what the frames that never came left undone.
done = collections.defaultdict(set)
count = collections.Counter()
for r in res:
    q = r["queue"].replace("/modify", "")
    count[(q, r["action"])] += 1
    if r["action"] == "cut":
        done[q].add(r["at"])
for (q, a), n in sorted(count.items()):
    print("  %-26s %-8s %4d" % (q, a, n))
print("%d faults carried out; %d were left when the phase ended: %s" %
      (len(res), st["nqueued"], st["queued"]))
for q in sorted(set(done) | set(st["queued"])):
    missing = sorted(set(range(24)) - done[q])
    if q.endswith("/modify") or q in ("open", "stall", "rf",
                                               "stall-rf") or not missing:
        continue
    # REPLICA_FAILED goes out only when a replica really fails a write:
    # on a loaded machine the phase can end before one came for every
    # offset.  Say so; the other messages must all be cut.
    if q.endswith("/REPLICA_FAILED") and len(missing) < 24:
        print("warning: %s: header offsets %s never cut" % (q, missing))
        continue
    bad.append("%s: header offsets %s never cut" % (q, missing))

# A receiver of a malformed frame must close the connection (a daemon
# after an error reply).  The plugin may keep its MDS connection after
# a well-formed but short reply: the stream is still in step.
for r in res:
    if r["action"] == "cut":
        continue
    what = "%s %s %s %s %s" % (r["action"], r["at"], r["conn_route"],
                               r["dir"], r["op"])
    if r["action"] == "stall":
        print("%s: %s after %s s" % (what, r.get("why"), r.get("elapsed")))
        continue
    if (r["action"] == "short" and r["dir"] == "s2c" and
            r["conn_route"] == "mds"):
        continue
    # An error reply's message is optional text: shortened, it is still
    # a well-formed reply, and the stream is still in step.
    if (r["action"] == "short" and r["dir"] == "s2c" and
            r.get("status", "OK") != "OK"):
        continue
    if not r.get("receiver_closed"):
        bad.append("%s: the receiver did not close (%s)" %
                   (what, r.get("why")))
    elif r["dir"] == "c2s" and r.get("reply") in (None, "OK"):
        bad.append("%s: the server closed without an error reply" % what)
if open_failures.strip():
    bad.append("nbdkit did not start after these cuts:%s" % open_failures)
for b in bad:
    print("FAIL:", b)
sys.exit(1 if bad else 0)
EOF

for (( n = 1; n <= WRITERS; ++n )); do
    stop_nbdkit "w$n"
done

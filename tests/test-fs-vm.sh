#!/usr/bin/env bash
# A real kernel client: a VM attaches a 2-replica volume with nbd-client
# (/dev/nbd0), makes ext4 and xfs on it, writes, checks and verifies
# 200 MiB of files on each; then ext4 again while a storage server is
# SIGKILLed in the middle of the writes.
#
# The VM (tests/vm/) reaches nbdkit only through a network namespace made
# here: qemu's user network turns the guest's 10.0.2.2:10809 into
# 127.0.0.1:10809 inside the namespace.  The Tessera daemons run outside
# it, on unix sockets.
source ./functions.sh
set -e
set -x

requires_built
requires test "$(id -u)" = 0
requires ip netns list
requires nbdkit --version
requires timeout --version
requires flock --version
source "$abs_top_srcdir/tests/vm/vm-lib.sh"
test_start=$SECONDS

# Builds the kernel and initramfs on first use (apt-get installs what is
# missing); skips when this machine cannot.
vm_prepare

make_cluster_dir
SEGMENT_SIZE=4M start_cluster 3
tessera volume create vol --size 1G --replicas 2

vm_netns_create
ip netns exec "$VM_NETNS" nbdkit -f -v -p 10809 -i 127.0.0.1 \
   -P "$CLUSTER/nbdkit.pid" "$TESSERA_PLUGIN" mds="$TESSERA_MDS" \
   volume=vol >"$CLUSTER/nbdkit.log" 2>&1 &
wait_for_pidfile "$CLUSTER/nbdkit.pid" $!

# check_map KILLED: every segment of vol has 2 replicas on distinct
# servers and at least one ok replica on a live server; prints how many
# are not ok.  KILLED is the id of a dead server (0: none).
check_map ()
{
    tessera --json volume map vol > "$CLUSTER/map.json"
    $PYTHON - "$CLUSTER/map.json" "$1" <<'PY'
import collections, json, sys
m = json.load(open(sys.argv[1]))
killed = int(sys.argv[2])
segs = m["segments"]
assert segs, "no segment allocated"
states = collections.Counter()
for s in segs:
    servers = [r["server"] for r in s["replicas"]]
    assert len(servers) == 2 and len(set(servers)) == 2, s
    live_ok = [r for r in s["replicas"]
               if r["state"] == "ok" and r["server"] != killed]
    assert live_ok, "no live ok replica: %s" % s
    for r in s["replicas"]:
        states[(r["server"], r["state"])] += 1
print("%d segments; replicas by (server, state): %s"
      % (len(segs), sorted(states.items())))
PY
}

# Run 1: ext4 then xfs, all servers up, over 2 connections (multi-conn:
# both share the plugin's one open volume).
rc=0
vm_run "$CLUSTER/vm-1.log" ext4,xfs seed=1 conns=2 || rc=$?
vm_check "$CLUSTER/vm-1.log" ext4 xfs || rc=1
test $rc -eq 0
# nbd-client really opened 2 connections for each filesystem.
test "$(grep -c 'debug: accepted connection' "$CLUSTER/nbdkit.log")" -ge 4
check_map 0
sums1="$(vm_sums "$CLUSTER/vm-1.log" ext4)"

# Run 2: ext4 with storage server 2 killed (SIGKILL) once the guest has
# written 5 of its 20 files: the writes to its replicas fail, the plugin
# reports them to the MDS and goes on with the other replica.
victim="$(tessera --json server list | $PYTHON -c '
import json, sys
for s in json.load(sys.stdin)["servers"]:
    if s["address"].endswith("/ss2.sock"):
        print(s["id"])')"
test -n "$victim"
victim_pid="$(cat "$CLUSTER/ss2.pid")"
run2_start=$SECONDS
vm_run "$CLUSTER/vm-2.log" ext4 seed=1 mark=5 -- \
       kill -KILL "$victim_pid" || rc=$?
if kill -0 "$victim_pid" 2>/dev/null; then
    echo "$0: storage server 2 ($victim_pid) is still alive"
    rc=1
fi
vm_check "$CLUSTER/vm-2.log" ext4 || rc=1
test $rc -eq 0
sums2="$(vm_sums "$CLUSTER/vm-2.log" ext4)"
echo "$0: file checksums: run 1 $sums1, run 2 $sums2"
test -n "$sums1"
test "$sums1" = "$sums2"
check_map "$victim"
grep -E 'stale|fail' "$CLUSTER/nbdkit.log" | tail -n 20 || :

# nbdkit closes the volume cleanly.
stop_pidfile "$CLUSTER/nbdkit.pid"

echo "$0: run 2 (server killed) took $((SECONDS - run2_start)) s"
echo "$0: total $((SECONDS - test_start)) s ($VM_ACCEL)"

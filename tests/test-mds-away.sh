#!/usr/bin/env bash
# The MDS away for a minute (single-MDS mode): a writer opened before it
# went keeps reading and writing everything already allocated, including
# regions it never touched since its open, because the plugin reads the
# whole map in the background after the open (map-prefetch).  With
# map-prefetch=false such a read needs the MDS and fails: the control
# that shows the test can fail.
source ./functions.sh
set -e
set -x

requires_built
requires "$PYTHON" -c 'import nbd'

export SEGMENT_SIZE=64K LEASE_TIMEOUT=5
AWAY="${MDS_AWAY_SECS:-60}"
make_cluster_dir
start_cluster 3
# 1 GiB of 64K segments: 16384 segments, 4 chunks of the map.
tessera volume create vol --size 1G --replicas 2

# Writer A allocates one block in every 16th segment, all over the
# volume, and leaves.
start_nbdkit a vol
$PYTHON - "$(nbd_uri a)" <<'PYEOF'
import sys, nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
for seg in range(0, 16384, 16):
    h.pwrite((b"A %08d " % seg).ljust(4096, b"."), seg * 65536)
h.flush()
h.shutdown()
PYEOF
stop_nbdkit a

# start_writer NAME [PARAMS]: nbdkit with map debugging, to see when the
# whole map is cached.
start_writer ()
{
    local name="$1"
    shift
    rm -f "$CLUSTER/nbdkit-$name.pid" "$CLUSTER/$name.sock"
    nbdkit -f -v -D tessera.map=1 -U "$CLUSTER/$name.sock" \
           -P "$CLUSTER/nbdkit-$name.pid" "$TESSERA_PLUGIN" \
           mds="$TESSERA_MDS" volume=vol timeout=2 "$@" \
           >>"$CLUSTER/nbdkit-$name.log" 2>&1 &
    wait_for_pidfile "$CLUSTER/nbdkit-$name.pid" $!
}

start_writer b
# The writer lease is taken by the first read-write connection.
take_lease b
for (( i = 0; i < 100; ++i )); do
    grep -q "map: all 4 chunks cached" "$CLUSTER/nbdkit-b.log" && break
    sleep 0.1
done
grep "map: all 4 chunks cached" "$CLUSTER/nbdkit-b.log"
# Writer B holds the lease but has read or written nothing yet.  The
# MDS goes away.
stop_pidfile "$CLUSTER/mds.pid"
t0="$(now)"

# For AWAY seconds, B reads every allocated block (each must hold the
# last value written), rewrites it, flushes, round after round.
$PYTHON - "$(nbd_uri b)" "$AWAY" > "$CLUSTER/away.out" <<'PYEOF'
import sys, time, nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
away = float(sys.argv[2])
start = time.monotonic()
expect = {seg: (b"A %08d " % seg) for seg in range(0, 16384, 16)}
rounds = errors = bad = ios = 0
slowest = 0.0
while time.monotonic() - start < away:
    rounds += 1
    for seg in range(rounds % 16, 16384, 16 * 8):
        seg -= seg % 16
        off = seg * 65536
        for op in ("read", "write"):
            t = time.monotonic()
            try:
                if op == "read":
                    got = h.pread(4096, off)
                    if not got.startswith(expect[seg]):
                        bad += 1
                        print("bad data at segment %d: %r" % (seg, got[:24]))
                else:
                    data = (b"B%d %08d " % (rounds, seg)).ljust(4096, b".")
                    h.pwrite(data, off)
                    expect[seg] = data[:16]
            except nbd.Error as e:
                errors += 1
                print("%s at segment %d failed: %s" % (op, seg, e))
            ios += 1
            slowest = max(slowest, time.monotonic() - t)
    try:
        h.flush()
    except nbd.Error as e:
        errors += 1
        print("flush failed: %s" % e)
# Everything B wrote reads back.
for seg, want in expect.items():
    got = h.pread(4096, seg * 65536)
    if not got.startswith(want):
        bad += 1
        print("final: bad data at segment %d" % seg)
h.shutdown()
print("away: %d rounds, %d I/Os, %d errors, %d bad, slowest %.3f s"
      % (rounds, ios, errors, bad, slowest))
sys.exit(1 if errors or bad else 0)
PYEOF
status=$?
cat "$CLUSTER/away.out"
echo "the MDS was away for $(elapsed "$t0") s"
test "$status" -eq 0

# The MDS comes back; B closes cleanly.
start_mds
wait_servers_up 3
stop_nbdkit b

# Control: without the background read, a region B never touched since
# its open cannot be read while the MDS is away.
start_writer c map-prefetch=false
stop_pidfile "$CLUSTER/mds.pid"
if $PYTHON - "$(nbd_uri c)" <<'PYEOF'
import sys, nbd
h = nbd.NBD()
h.connect_uri(sys.argv[1])
h.pread(4096, 16384 * 65536 - 16 * 65536)
PYEOF
then
    echo "FAIL: the control read a region it never touched with the MDS away"
    exit 1
fi
grep "map: all 4 chunks cached" "$CLUSTER/nbdkit-c.log" && exit 1
start_mds
wait_servers_up 3
stop_nbdkit c
echo "test-mds-away: ok"

#!/usr/bin/env bash
# A read-only open never serves a cached hole: right after a writer
# writes and flushes where a reader had seen a hole, the reader reads
# the data, block status calls it data, and nbdcopy from the read-only
# export copies it (prints how long the reader took to see the data).
source ./functions.sh
set -e
set -x

requires_built
requires "$PYTHON" -c 'import nbd'
requires nbdcopy --version
requires nbdinfo --version

make_cluster_dir
start_cluster 2
# 64 segments of 64K.
tessera volume create vol --size 4M --replicas 2
size=$(( 4 * 1024 * 1024 ))

start_nbdkit w vol
start_nbdkit r vol readonly=true

$PYTHON - "$(nbd_uri w)" "$(nbd_uri r)" <<'PY'
import os, sys, time
import nbd

def connect(uri):
    h = nbd.NBD()
    h.add_meta_context("base:allocation")
    h.connect_uri(uri)
    return h

def extents(h, count, offset):
    """[(length, flags)] of base:allocation over the range."""
    out = []
    def cb(ctx, off, entries, err):
        if ctx == "base:allocation":
            out.extend(zip(entries[0::2], entries[1::2]))
        return 0
    h.block_status(count, offset, cb)
    return out

w, r = connect(sys.argv[1]), connect(sys.argv[2])
seg = 65536
# Segments 1-3 and 40 (a separate map range of the same chunk).
ranges = [(1 * seg, 3 * seg), (40 * seg, seg)]

# The reader sees holes there: zeros, and hole|zero in block status.
for off, length in ranges:
    assert r.pread(length, off) == bytes(length)
    e = extents(r, length, off)
    assert all(flags == 3 for _, flags in e), e

# The writer writes and flushes.
data = {}
for off, length in ranges:
    data[off] = os.urandom(length)
    w.pwrite(data[off], off)
w.flush()

# At once, the reader reads the data.
t0 = time.monotonic()
got = r.pread(3 * seg, 1 * seg)
latency = time.monotonic() - t0
assert got == data[1 * seg], "reader read stale zeros after the flush"
print("readonly-fresh: reader read the data %.3f s after the flush"
      % latency)
assert latency < 1.0, latency

# Block status agrees (the second range was not read since).
for off, length in ranges:
    e = extents(r, length, off)
    assert e and all(flags & 1 == 0 for _, flags in e), (off, e)
assert r.pread(seg, 40 * seg) == data[40 * seg]
# A hole still is one.
e = extents(r, seg, 20 * seg)
assert e and all(flags == 3 for _, flags in e), e
print("readonly-fresh: block status after the flush:",
      extents(r, 4 * seg, 0))
w.shutdown()
r.shutdown()
PY

# nbdinfo --map of the read-only export shows the written ranges as data.
nbdinfo --map "$(nbd_uri r)" | tee "$CLUSTER/map.txt"
grep -E '^ *65536 +196608 +0 ' "$CLUSTER/map.txt"
grep -E '^ *2621440 +65536 +0 ' "$CLUSTER/map.txt"

# nbdcopy from the read-only export copies what the writer has.
nbdcopy "$(nbd_uri w)" "$CLUSTER/w.img"
nbdcopy "$(nbd_uri r)" "$CLUSTER/r.img"
test "$(stat -c %s "$CLUSTER/r.img")" -eq "$size"
cmp "$CLUSTER/w.img" "$CLUSTER/r.img"
if cmp -s "$CLUSTER/w.img" <(head -c "$size" /dev/zero); then
    echo "$0: the writer's image is all zeros"
    exit 1
fi

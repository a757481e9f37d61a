#!/usr/bin/env bash
# Trim and zero read back as zeros; nbdinfo --map shows unwritten
# segments as holes.
source ./functions.sh
set -e
set -x

requires_built
requires nbdsh --version
requires nbdinfo --version

make_cluster_dir
start_cluster 3
# 16 segments of 64K.
tessera volume create vol --size 1M --replicas 2

nbdkit -U - "$TESSERA_PLUGIN" mds="$TESSERA_MDS" volume=vol \
       --run 'nbdsh -u "$uri" -c -' <<'PY'
seg = 65536
# Fill segments 2..5 with 0xff.
h.pwrite(b"\xff" * (4 * seg), 2 * seg)
# Zero a range inside segment 2 and across 3/4; trim the whole of 5.
h.zero(1000, 2 * seg + 100)
h.zero(seg + 10, 3 * seg + 50, nbd.CMD_FLAG_FUA)
h.trim(seg, 5 * seg)
h.flush()
d = h.pread(4 * seg, 2 * seg)
want = bytearray(b"\xff" * (4 * seg))
want[100:1100] = bytes(1000)
want[seg + 50:2 * seg + 60] = bytes(seg + 10)
want[3 * seg:4 * seg] = bytes(seg)
assert d == bytes(want)
# Fast zero is supported and succeeds.
h.zero(4096, 4 * seg, nbd.CMD_FLAG_FAST_ZERO)
assert h.pread(4096, 4 * seg) == bytes(4096)
# Zeroing a hole needs no allocation and reads zeros.
h.zero(seg, 9 * seg)
assert h.pread(seg, 9 * seg) == bytes(seg)
# Write segment 12 so that the map has data there.
h.pwrite(b"z" * 512, 12 * seg)
print("trim and zero: ok")
PY

nbdkit -U - -r "$TESSERA_PLUGIN" mds="$TESSERA_MDS" volume=vol \
       --run 'nbdinfo --map --json "$uri"' > "$CLUSTER/map.json"
cat "$CLUSTER/map.json"
$PYTHON - "$CLUSTER/map.json" <<'PY'
import json, sys
seg = 65536
m = json.load(open(sys.argv[1]))
def state(off):
    for e in m:
        if e["offset"] <= off < e["offset"] + e["length"]:
            return e["type"]
    raise AssertionError(off)
# type bit 0: hole, bit 1: zero.
for i in (0, 1, 6, 7, 8, 10, 11, 13, 14, 15):
    assert state(i * seg) & 1, (i, state(i * seg))
for i in (2, 3, 4, 12):
    assert not state(i * seg) & 1, (i, state(i * seg))
assert sum(e["length"] for e in m) == 16 * seg
PY

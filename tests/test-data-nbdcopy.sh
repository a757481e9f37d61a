#!/usr/bin/env bash
# nbdcopy a 1 GiB random image into a 2-replica volume and back out; the
# map shows every segment on 2 distinct servers, spread over all 3.
source ./functions.sh
set -e
set -x

requires_built
requires nbdcopy --version
requires nbdsh --version

make_cluster_dir
SEGMENT_SIZE=4M start_cluster 3
size=$(( 1024 * 1024 * 1024 ))
tessera volume create big --size $size --replicas 2

head -c $size /dev/urandom > "$CLUSTER/in.img"
sum_in="$(sha256sum < "$CLUSTER/in.img" | cut -d' ' -f1)"

start=$SECONDS
nbdkit -U - "$TESSERA_PLUGIN" mds="$TESSERA_MDS" volume=big \
       --run 'nbdcopy --flush "$CLUSTER/in.img" "$uri"'
echo "nbdcopy in: $(( SECONDS - start )) s"
rm -f "$CLUSTER/in.img"

start=$SECONDS
nbdkit -U - -r "$TESSERA_PLUGIN" mds="$TESSERA_MDS" volume=big \
       --run 'nbdcopy "$uri" "$CLUSTER/out.img"'
echo "nbdcopy out: $(( SECONDS - start )) s"
sum_out="$(sha256sum < "$CLUSTER/out.img" | cut -d' ' -f1)"
rm -f "$CLUSTER/out.img"
echo "sha256 in $sum_in out $sum_out"
test "$sum_in" = "$sum_out"

tessera --json volume map big > "$CLUSTER/map.json"
$PYTHON - "$CLUSTER/map.json" <<'PY'
import collections, json, sys
m = json.load(open(sys.argv[1]))
assert m["volume"] == "big", m["volume"]
assert m["segment_size"] == 4 << 20, m["segment_size"]
segs = m["segments"]
assert len(segs) == 256, len(segs)
assert [s["index"] for s in segs] == list(range(256))
per_server = collections.Counter()
for s in segs:
    servers = [r["server"] for r in s["replicas"]]
    assert len(servers) == 2 and len(set(servers)) == 2, s
    assert all(r["state"] == "ok" for r in s["replicas"]), s
    per_server.update(servers)
print("replicas per server:", dict(per_server))
assert len(per_server) == 3, per_server
# Spread: every server holds a fair share (2/3 of 256 = 171 each if even).
assert min(per_server.values()) >= 100, per_server
# Consecutive segments are not on the same pair of servers.
same = sum(1 for a, b in zip(segs, segs[1:])
           if {r["server"] for r in a["replicas"]} == {r["server"] for r in b["replicas"]})
print("consecutive segments on the same servers:", same)
assert same == 0, same
PY

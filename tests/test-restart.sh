#!/usr/bin/env bash
# Restart every daemon: the data and the map are unchanged.
source ./functions.sh
set -e
set -x

requires_built
requires nbdsh --version

make_cluster_dir
start_cluster 3
tessera volume create vol --size 8M --replicas 2
tessera volume create other --size 1M --replicas 3

head -c $(( 3 * 1024 * 1024 + 4096 )) /dev/urandom > "$CLUSTER/data"
nbdkit -U - "$TESSERA_PLUGIN" mds="$TESSERA_MDS" volume=vol \
       --run 'nbdcopy --flush "$CLUSTER/data" "$uri"'
tessera --json volume map vol > "$CLUSTER/map-before.json"
tessera --json volume list > "$CLUSTER/list-before.json"
tessera --json server list > "$CLUSTER/servers-before.json"

stop_cluster
start_cluster 3

tessera --json volume map vol > "$CLUSTER/map-after.json"
cmp "$CLUSTER/map-before.json" "$CLUSTER/map-after.json"
tessera --json volume list > "$CLUSTER/list-after.json"
$PYTHON - "$CLUSTER"/list-before.json "$CLUSTER"/list-after.json <<'PY'
import json, sys
a, b = (json.load(open(f))["volumes"] for f in sys.argv[1:3])
key = lambda v: (v["id"], v["name"], v["size"], v["replicas"], v["segments"])
assert [key(v) for v in a] == [key(v) for v in b], (a, b)
assert {v["name"] for v in b} == {"vol", "other"}
PY
# The servers kept their ids across the restart.
tessera --json server list > "$CLUSTER/servers-after.json"
$PYTHON - "$CLUSTER"/servers-before.json "$CLUSTER"/servers-after.json <<'PY'
import json, sys
a, b = (json.load(open(f))["servers"] for f in sys.argv[1:3])
ids = lambda l: sorted((s["id"], s["address"]) for s in l)
assert ids(a) == ids(b), (a, b)
assert all(s["state"] == "up" for s in b), b
PY

nbdkit -U - -r "$TESSERA_PLUGIN" mds="$TESSERA_MDS" volume=vol \
       --run 'nbdcopy "$uri" "$CLUSTER/out"'
cmp -n $(( 3 * 1024 * 1024 + 4096 )) "$CLUSTER/data" "$CLUSTER/out"
# The rest of the volume is still zeros.
test "$(tail -c +$(( 3 * 1024 * 1024 + 4097 )) "$CLUSTER/out" | tr -d '\0' | wc -c)" = 0

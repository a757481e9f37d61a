#!/usr/bin/env bash
# Back up the catalog, do more work (a new volume, new allocations and
# overwrites in the old one, data written and flushed), lose the
# catalog, restore the backup (tessera-mds --restore, which reconciles
# with the storage servers): everything written after the backup is
# there (same sha256 of both volumes, the new volume with its size), and
# a new allocation gets an id never used before.
source ./functions.sh
set -e
set -x

requires_built
requires nbdsh --version

export SEGMENT_SIZE=64K
make_cluster_dir
start_cluster 3
cp "$CLUSTER/mds/cluster.key" "$CLUSTER/cluster.key"
export TESSERA_KEY_FILE="$CLUSTER/cluster.key"

# write VOLUME SEED FIRST N: N segments of a pattern from segment FIRST.
write ()
{
    start_nbdkit w "$1"
    take_lease w
    nbdsh -u "$(nbd_uri w)" -c "
for i in range($3, $3 + $4):
    h.pwrite(bytes([(i * $2 + j) % 251 for j in range(256)]) * 256,
             i * 65536)
h.flush()
"
    stop_nbdkit w
}

# The largest segment id of every volume's map.
max_id ()
{
    local v
    for v in "$@"; do
        tessera --json volume map "$v" | $PYTHON -c '
import json, sys
print(max([s["id"] for s in json.load(sys.stdin)["segments"]] or [0]))'
    done | sort -n | tail -n 1
}

tessera volume create a --size 16M --replicas 2
write a 3 0 16
tessera catalog backup "$CLUSTER/cat.bak"

# More work after the backup.
tessera volume create b --size 8M --replicas 2
write a 5 8 24          # overwrites 8..15, allocates 16..31
write b 11 0 20
tessera volume list
sum_a="$(volume_sum a)"
sum_b="$(volume_sum b)"
before_max="$(max_id a b)"

# Every server has taken the tables of the last change (b's creation).
sleep 2

# Lose the catalog; restore the backup.
stop_pidfile "$CLUSTER/mds.pid"
rm -rf "$CLUSTER/mds"
rm -f "$CLUSTER/mds.pid"
"$TESSERA_MDS_BIN" --db "$CLUSTER/mds" --key-file "$TESSERA_KEY_FILE" \
    --restore "$CLUSTER/cat.bak" -f -v ${TESSERA_TEST_TLS:+--tls} \
    --listen "unix:$CLUSTER/mds.sock" -P "$CLUSTER/mds.pid" \
    --lease-timeout 5 --down-timeout 3 >>"$CLUSTER/mds.log" 2>&1 &
wait_for_pidfile "$CLUSTER/mds.pid" $!
grep "restore: reconciled with 3 of 3 storage servers" "$CLUSTER/mds.log"
wait_servers_up 3

# Volume b (created after the backup) is back, with its size.
tessera --json volume list | $PYTHON -c '
import json, sys
v = {x["name"]: x for x in json.load(sys.stdin)["volumes"]}
assert sorted(v) == ["a", "b"], sorted(v)
assert v["b"]["size"] == 8 << 20 and v["b"]["replicas"] == 2, v["b"]
'
test "$(volume_sum a)" = "$sum_a"
test "$(volume_sum b)" = "$sum_b"

# A new allocation takes an id above every id given before.
write a 7 100 1
new_id="$(tessera --json volume map a | $PYTHON -c '
import json, sys
print([s["id"] for s in json.load(sys.stdin)["segments"] if s["index"] == 100][0])')"
echo "restore: ids up to $before_max before, new segment $new_id"
test "$new_id" -gt "$before_max"

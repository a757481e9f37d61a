#!/usr/bin/env bash
# A second read-write open of a volume that is open for writing is
# refused; read-only opens share; after a clean close it can be reopened.
source ./functions.sh
set -e
set -x

requires_built
requires nbdsh --version

make_cluster_dir
start_cluster 3
tessera volume create vol --size 1M --replicas 2

# First writer, kept running.
nbdkit -U "$CLUSTER/nbd1.sock" -P "$CLUSTER/nbdkit1.pid" -f \
       "$TESSERA_PLUGIN" mds="$TESSERA_MDS" volume=vol \
       >"$CLUSTER/nbdkit1.log" 2>&1 &
wait_for_pidfile "$CLUSTER/nbdkit1.pid" $!
nbdsh -u "nbd+unix:///?socket=$CLUSTER/nbd1.sock" -c 'h.pwrite(b"first", 0)'
tessera volume info vol

# A second writer is refused, naming the reason: nbdkit starts, but its
# client's connection, which asks for the writer lease, fails.
if nbdkit -U - "$TESSERA_PLUGIN" mds="$TESSERA_MDS" volume=vol \
          --run 'nbdsh -u "$uri" -c "h.pwrite(b\"second\", 0)"' \
          2>"$CLUSTER/second.err"; then
    echo "second writer was not refused"
    exit 1
fi
cat "$CLUSTER/second.err"
grep -Eqi "already open|busy" "$CLUSTER/second.err"

# A reader shares the volume and sees the first writer's data.
nbdkit -U - "$TESSERA_PLUGIN" mds="$TESSERA_MDS" volume=vol readonly=true \
       --run 'nbdsh -u "$uri" -c "assert h.pread(5, 0) == b\"first\"; assert h.is_read_only()"'

# So does nbdkit -r without readonly=true: nbdkit opens its connections
# read-only, so the plugin never asks for the writer lease, which the
# MDS would refuse to a second writer.
nbdkit -U - -t 2 -r "$TESSERA_PLUGIN" mds="$TESSERA_MDS" volume=vol \
       --run 'nbdsh -u "$uri" -c "assert h.pread(5, 0) == b\"first\"; assert h.is_read_only()"'

# Deleting a volume that is open for writing is refused too.
expect_fail "busy|open" tessera volume delete vol

# After the first writer closes cleanly, a new writer gets the volume with
# a newer epoch.
epoch1="$(tessera --json volume info vol | $PYTHON -c 'import json,sys; print(json.load(sys.stdin)["epoch"])')"
stop_pidfile "$CLUSTER/nbdkit1.pid"
nbdkit -U - "$TESSERA_PLUGIN" mds="$TESSERA_MDS" volume=vol \
       --run 'nbdsh -u "$uri" -c "h.pwrite(b\"second\", 0); h.flush()"'
tessera --json volume info vol > "$CLUSTER/info.json"
$PYTHON - "$CLUSTER/info.json" "$epoch1" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))
assert v["epoch"] > int(sys.argv[2]), (v, sys.argv[2])
assert v["clean"] is True and v["open"] is False, v
PY
nbdkit -U - -r "$TESSERA_PLUGIN" mds="$TESSERA_MDS" volume=vol \
       --run 'nbdsh -u "$uri" -c "assert h.pread(6, 0) == b\"second\""'

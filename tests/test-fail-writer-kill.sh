#!/usr/bin/env bash
# SIGKILL the writer (nbdkit) at random moments during writes, ten
# times: after the MDS's resync every replica is identical, three reads
# of each block agree, and every write acknowledged before the last
# completed flush is there.
source ./functions.sh
set -e
set -x

requires_built
requires "$PYTHON" -c 'import nbd'

export LEASE_TIMEOUT=3 DOWN_TIMEOUT=3 OUT_TIMEOUT=30
make_cluster_dir
start_cluster 3
# 64 segments of 64K; the writer writes tokens to its 1024 4K blocks.
tessera volume create vol --size 4M --replicas 2
log="$CLUSTER/tokens.log"
: > "$log"

# open_writer: start nbdkit on the volume read-write and take the lease.
# After a crash the lease is refused as busy until the old one expires,
# then the open waits for the MDS's resync (open-timeout): take_lease
# retries while it is busy.
open_writer ()
{
    start_nbdkit w vol open-timeout=30
    take_lease w
}

# check_volume: the tokens and the replicas, with the writer open (after
# its resync) but idle.
check_volume ()
{
    timeout 120 "${TOKENS[@]}" check "$(nbd_uri w)" --log "$log"
    tessera volume verify vol
    tessera --json volume info vol
}

for run in 1 2 3 4 5 6 7 8 9 10; do
    t0="$(now)"
    open_writer
    echo "run $run: reopened in $(elapsed "$t0") s"
    check_volume
    rm -f "$CLUSTER/started"
    timeout 120 "${TOKENS[@]}" write "$(nbd_uri w)" --log "$log" \
            --run "$run" --started "$CLUSTER/started" &
    writer=$!
    wait_for_pidfile "$CLUSTER/started" $writer
    # Kill it 0.3 to 2.3 s into the writes.
    ms=$(( 300 + RANDOM % 2000 ))
    sleep "$(( ms / 1000 )).$(printf %03d $(( ms % 1000 )))"
    stop_nbdkit w KILL
    wait $writer
    echo "run $run: $(grep -c '^F' "$log" || :) flushed tokens logged so far"
done

# A last reopen: its resync makes the replicas agree after the last
# crash too; then a clean close.
open_writer
check_volume
stop_nbdkit w
tessera --json volume info vol |
    $PYTHON -c 'import json, sys; v = json.load(sys.stdin); assert v["clean"] and not v["open"], v'
tessera volume verify vol
test "$(grep -c '^F' "$log")" -gt 0

#!/usr/bin/env bash
# The plugin takes the writer lease at the first connection that nbdkit
# opens read-write, not at start-up: nbdkit -r never takes it (a writer
# opens the volume while it runs, and it reads the writer's flushed
# data), a read-write nbdkit takes it when its first client connects,
# and a lease refused to a second writer fails that client's open (the
# next one, once the lease is free, succeeds).  readonly=true serves
# read-only without -r.
source ./functions.sh
set -e
set -x

requires_built
requires "$PYTHON" -c 'import nbd'

make_cluster_dir
start_cluster 2
tessera volume create vol --size 1M --replicas 2

# leased: whether the MDS shows vol open for writing.
leased ()
{
    tessera_json "j['open']" volume info vol
}

# nbdkit -r, started as start_nbdkit does (-r before the plugin).
rm -f "$CLUSTER/nbdkit-r.pid"
nbdkit -f -r -U "$CLUSTER/r.sock" -P "$CLUSTER/nbdkit-r.pid" \
       "$TESSERA_PLUGIN" mds="$TESSERA_MDS" volume=vol timeout=2 \
       ${TESSERA_TEST_TLS:+tls=true} >>"$CLUSTER/nbdkit-r.log" 2>&1 &
wait_for_pidfile "$CLUSTER/nbdkit-r.pid" $!
cleanup_fn stop_nbdkit r

# The reader serves, read-only, and takes no lease; the hole it reads is
# now cached.
nbdsh -u "$(nbd_uri r)" -c '
assert h.is_read_only()
assert h.pread(8, 20000) == bytes(8)
'
test "$(leased)" = False

# A writer starts without the lease and takes it at its first client,
# while the reader runs.
start_nbdkit w vol
cleanup_fn stop_nbdkit w
test "$(leased)" = False
nbdsh -u "$(nbd_uri w)" -c '
assert not h.is_read_only()
h.pwrite(b"written!", 20000)
h.flush()
'
test "$(leased)" = True

# The reader sees the writer's flushed data where it had seen a hole.
nbdsh -u "$(nbd_uri r)" -c 'assert h.pread(8, 20000) == b"written!"'

# A second writer starts, but the lease is refused to its client, with
# the MDS's reason naming the volume; it stays up.
start_nbdkit w2 vol
cleanup_fn stop_nbdkit w2
if nbdsh -u "$(nbd_uri w2)" -c 'pass'; then
    echo "$0: a second writer took the lease"
    exit 1
fi
grep "volume vol: open for writing: .*already open for writing" \
     "$CLUSTER/nbdkit-w2.log"
kill -0 "$(cat "$CLUSTER/nbdkit-w2.pid")"

# readonly=true without -r: read-only, no lease needed while w holds it.
nbdkit -U - "$TESSERA_PLUGIN" mds="$TESSERA_MDS" volume=vol readonly=true \
       ${TESSERA_TEST_TLS:+tls=true} \
       --run 'nbdsh -u "$uri" -c "assert h.is_read_only(); assert h.pread(8, 20000) == b\"written!\""'

# Once the first writer closes cleanly, the second one's next client
# takes the lease and writes; the reader, still up, sees it.
stop_nbdkit w
test "$(leased)" = False
nbdsh -u "$(nbd_uri w2)" -c '
assert h.pread(8, 20000) == b"written!"
h.pwrite(b"second!!", 20000)
h.flush()
'
test "$(leased)" = True
nbdsh -u "$(nbd_uri r)" -c 'assert h.pread(8, 20000) == b"second!!"'
stop_nbdkit w2
stop_nbdkit r
test "$(leased)" = False

#!/usr/bin/env bash
# A storage server refuses to start when its index is lost or rolled
# back, and serves its data again once the right index is back.
source ./functions.sh
set -e
set -x

requires_built
requires nbdsh --version

make_cluster_dir
start_cluster 2
# 16 segments of 64K, each on both servers.
tessera volume create vol --size 1M --replicas 2

# write OFFSET LENGTH BYTE: fill a range with BYTE, then flush.
write ()
{
    nbdkit -U - "$TESSERA_PLUGIN" mds="$TESSERA_MDS" volume=vol \
           --run "nbdsh -u \"\$uri\" \
                  -c 'h.pwrite(b\"\\x$3\" * $2, $1); h.flush()'"
}

# ss1_refuses REGEX: starting server 1 fails (within 30 s, before it
# serves) with an error matching REGEX.
ss1_refuses ()
{
    expect_fail "$1" timeout 30 "$TESSERA_STORESRV_BIN" \
        --data "$CLUSTER/ss1" --key-file "$TESSERA_KEY_FILE" \
        ${TESSERA_TEST_TLS:+--tls} --mds "unix:$CLUSTER/mds.sock" \
        --listen "unix:$CLUSTER/ss1.sock" -f
}

# The first half, then a copy of server 1's index as it is now.
write 0 524288 41
stop_storesrv 1
test -f "$CLUSTER/ss1/clean"
cp "$CLUSTER/ss1/index/data.mdb" "$CLUSTER/index-old.mdb"
start_storesrv 1
wait_servers_up 2

# The second half: new segments, more index commits on server 1.
write 524288 524288 42
stop_storesrv 1
test -f "$CLUSTER/ss1/clean"
mv "$CLUSTER/ss1/index/data.mdb" "$CLUSTER/index-good.mdb"

# (a) The index is gone.
ss1_refuses "index: .*/ss1/index: data.mdb does not exist: \
missing or not this store's index .*restore it"
test ! -e "$CLUSTER/ss1/index/data.mdb"

# (b) The older copy is back: rolled back.
cp "$CLUSTER/index-old.mdb" "$CLUSTER/ss1/index/data.mdb"
ss1_refuses "index: .*/ss1/index: rolled back: it has [0-9]+ commits, \
but it had [0-9]+ when the server last stopped cleanly"
# A refused start keeps the marker.
test -f "$CLUSTER/ss1/clean"

# (c) The right index is back: a clean start, and every byte reads back.
mv "$CLUSTER/index-good.mdb" "$CLUSTER/ss1/index/data.mdb"
start_storesrv 1
wait_servers_up 2
test ! -e "$CLUSTER/ss1/clean"
test "$(grep -c 'no clean-shutdown marker' "$CLUSTER/ss1.log" || :)" = 0
test "$(grep -c 'not this store' "$CLUSTER/ss1.log" || :)" = 0

# Many reads of each segment, so that both replicas serve some.
nbdkit -U - -r "$TESSERA_PLUGIN" mds="$TESSERA_MDS" volume=vol \
       --run 'nbdsh -u "$uri" -c -' <<'PY'
seg = 65536
for rnd in range(8):
    for i in range(16):
        want = (b"\x41" if i < 8 else b"\x42") * 4096
        for off in (0, seg - 4096):
            got = h.pread(4096, i * seg + off)
            assert got == want, (rnd, i, off, got[:4])
assert h.pread(1048576, 0) == b"\x41" * 524288 + b"\x42" * 524288
PY

# (d) Killed: no marker, so the next start registers as unclean.
kill_storesrv 1
test ! -e "$CLUSTER/ss1/clean"
start_storesrv 1
grep -q 'no clean-shutdown marker: .*registering as unclean' "$CLUSTER/ss1.log"

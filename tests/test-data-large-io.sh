#!/usr/bin/env bash
# Exact bytes of large and unaligned writes on 4 MiB segments: a storage
# server writes in 64 KiB pieces, at most 1 MiB per loop turn, so these
# cross pieces, turns and segments; with FUA, and with requests in flight
# together.
source ./functions.sh
set -e
set -x

requires_built
requires nbdsh --version

# shellcheck disable=SC2034 # used by start_cluster
SEGMENT_SIZE=4M
make_cluster_dir
start_cluster 3
tessera volume create vol --size $(( 3 * 4194304 + 12800 )) --replicas 2

nbdkit -U - "$TESSERA_PLUGIN" mds="$TESSERA_MDS" volume=vol \
       --run 'nbdsh -u "$uri" -c -' <<'PY'
import os, random
seg = 4194304
size = h.get_size()
shadow = bytearray(size)
rnd = random.Random(7)

def write(off, n, flags=0):
    data = os.urandom(n)
    h.pwrite(data, off, flags)
    shadow[off:off + n] = data

def check(off, n):
    got = h.pread(n, off)
    assert got == bytes(shadow[off:off + n]), (off, n)

# One piece, the edges of a piece, many pieces, several turns (3 MiB + 777
# bytes in one segment: four turns), unaligned, and across a segment.
write(0, 1)
write(65535, 2)
write(65536 - 4096, 65536 + 8192)
write(12345, 1048576 + 4097)
write(seg + 777, 3 * 1048576 + 777, nbd.CMD_FLAG_FUA)
write(2 * seg - 100000, 200000, nbd.CMD_FLAG_FUA)
write(size - 70000, 70000)
check(0, size)

# Requests in flight together: writes of random sizes to separate
# places, and reads of the rest, then everything checked.
cmds = []
for i in range(24):
    n = rnd.choice([1, 4096, 65536, 65537, 300000, 1048576 + 13])
    off = i * (size // 24) + rnd.randrange(0, 4096)
    n = min(n, size // 24 - 4096)
    data = os.urandom(n)
    shadow[off:off + n] = data
    cmds.append(h.aio_pwrite(data, off,
                             flags=nbd.CMD_FLAG_FUA if i % 5 == 0 else 0))
while h.aio_in_flight() > 0:
    h.poll(-1)
for c in cmds:
    assert h.aio_command_completed(c)
h.flush()
check(0, size)
with open(os.environ["CLUSTER"] + "/expect", "wb") as f:
    f.write(shadow)
print("large writes: ok")
PY

# The bytes are on both replicas of every segment: read again with each
# storage server stopped in turn (reads go to the other replica).
for i in 1 2 3; do
    stop_storesrv "$i"
    nbdkit -U - -r "$TESSERA_PLUGIN" mds="$TESSERA_MDS" volume=vol \
           --run 'nbdsh -u "$uri" -c "
import os
want = open(os.environ[\"CLUSTER\"] + \"/expect\", \"rb\").read()
assert h.pread(h.get_size(), 0) == want
"'
    start_storesrv "$i"
    wait_servers_up 3
done

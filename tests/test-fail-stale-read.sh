#!/usr/bin/env bash
# Stop server A, write, stop server B, start A alone: the blocks written
# while A was away read as the new data or fail with EIO, never as the
# old data.  When B returns, A resyncs from B.
source ./functions.sh
set -e
set -x

requires_built
requires "$PYTHON" -c 'import nbd'

export LEASE_TIMEOUT=3 DOWN_TIMEOUT=3 OUT_TIMEOUT=60
make_cluster_dir
# Two servers, two replicas: every segment is on A (1) and B (2).
start_cluster 2
a="$(server_id 1)"
b="$(server_id 2)"
# 16 segments of 64K.
tessera volume create vol --size 1M --replicas 2

# The old data: "O" everywhere.
start_nbdkit w vol
nbdsh -u "$(nbd_uri w)" -c 'h.pwrite(b"O" * h.get_size(), 0); h.flush()'
stop_nbdkit w
check_map_healthy vol 2

# A goes away; the first 8 segments get the new data "N" (A's replicas
# of them become stale).
stop_storesrv 1
start_nbdkit w vol
nbdsh -u "$(nbd_uri w)" -c 'h.pwrite(b"N" * (8 * 65536), 0); h.flush()'
stop_nbdkit w
tessera volume map vol
test "$(count_unhealthy vol)" = 8

# B goes away, A returns alone.
stop_storesrv 2
start_storesrv 1
wait_server_state "$a" up
wait_server_state "$b" down
tessera server list
tessera volume map vol

# No read returns the old data where the new was written.
start_nbdkit r vol readonly=true
nbdsh -u "$(nbd_uri r)" -c - <<'PY'
import errno
new, other, eio = 0, 0, 0
for i in range(16):
    off = i * 65536
    for sub in (0, 4096, 65536 - 512):
        try:
            d = h.pread(512, off + sub)
        except nbd.Error as ex:
            assert ex.errnum == errno.EIO, (i, ex.errnum, ex.string)
            eio += 1
            continue
        if i < 8:
            assert d == b"N" * 512, (i, sub, d[:16])
            new += 1
        else:
            assert d == b"O" * 512, (i, sub, d[:16])
            other += 1
print("stale-read: new data %d, old data where not rewritten %d, EIO %d"
      % (new, other, eio))
PY
stop_nbdkit r

# B returns: A's stale replicas resync from B.
t0="$(now)"
start_storesrv 2
wait_servers_up 2
repair_wait 60
print_rate "stale-read: resync of 8 stale segments" $(( 8 * 65536 )) \
    "$(elapsed "$t0")"
check_map_healthy vol 2
tessera volume verify vol

# Both replicas now hold the new data: read it with each server alone.
for n in 2 1; do
    stop_storesrv "$n"
    start_nbdkit r vol readonly=true
    nbdsh -u "$(nbd_uri r)" -c '
assert h.pread(8 * 65536, 0) == b"N" * (8 * 65536)
assert h.pread(8 * 65536, 8 * 65536) == b"O" * (8 * 65536)'
    stop_nbdkit r
    start_storesrv "$n"
done

#!/usr/bin/env bash
# Request deadlines (docs/failure-handling.md): every NBD request is over
# within 1.5 x the plugin's timeout= of its start, whatever fails under
# it.  A write whose second replica hangs (SIGSTOP) waits a full timeout
# for it; its failure report then meets a hung MDS: the write must fail
# with EIO at 1.5 timeouts, unacknowledged (before request deadlines the
# report alone could take another timeout or more).  With the MDS back,
# the hung replica is reported and writes succeed; a read sent to it
# waits a timeout and fails over to the other replica in time.  Then
# repair makes both replicas equal and every acknowledged write reads
# back.
source ./functions.sh
set -e
set -x

requires_built
requires "$PYTHON" -c 'import nbd'

TIMEOUT=2
# Long lease and down timeouts: only the requests' own deadlines act.
export SEGMENT_SIZE=64K LEASE_TIMEOUT=30 DOWN_TIMEOUT=30 OUT_TIMEOUT=600
make_cluster_dir
start_cluster 2
tessera volume create vol --size 1M --replicas 2
start_nbdkit w vol timeout=$TIMEOUT
mds_pid="$(cat "$CLUSTER/mds.pid")"
ss2_pid="$(cat "$CLUSTER/ss2.pid")"
# Whatever happens below, nothing stays stopped.
cleanup_fn "kill -s CONT $mds_pid $ss2_pid 2>/dev/null || :"

timeout 120 $PYTHON - "$(nbd_uri w)" "$TIMEOUT" "$mds_pid" "$ss2_pid" \
        "$CLUSTER/expect.bin" <<'PYEOF'
import errno, os, signal, sys, time
import nbd

uri, timeout, mds_pid, ss2_pid, expect = sys.argv[1:6]
timeout, mds_pid, ss2_pid = float(timeout), int(mds_pid), int(ss2_pid)
h = nbd.NBD()
h.connect_uri(uri)
size = h.get_size()

# Allocate every segment on both servers first: later writes need no
# MAP_ALLOC, so the MDS is only asked to record failures.
content = bytearray(os.urandom(size))
h.pwrite(bytes(content), 0)
h.flush()

def timed(what, fn):
    t = time.monotonic()
    try:
        fn()
        err = None
    except nbd.Error as ex:
        err = ex.errnum
    t = time.monotonic() - t
    print("%s: %.3f s, %s" % (what, t, errno.errorcode.get(err, "ok")),
          flush=True)
    return t, err

# 1. Replica on server 2 hangs, then the MDS hangs too.
os.kill(ss2_pid, signal.SIGSTOP)
os.kill(mds_pid, signal.SIGSTOP)
block = os.urandom(4096)
t, err = timed("write, a replica and the MDS stopped",
               lambda: h.pwrite(block, 0))
assert err == errno.EIO, "the write must fail: %s" % err
# 1 s of slack for a loaded machine: without the deadlines this took 6 s.
assert timeout - 0.1 <= t <= 1.5 * timeout + 1.0, \
    "failed after %.3f s, not at 1.5 x %g s" % (t, timeout)
# Not acknowledged: either content may be there.  Put back a known one
# once the MDS answers again.
os.kill(mds_pid, signal.SIGCONT)

# 2. The MDS answers: the hung replica is reported, the writes succeed.
block = os.urandom(4096)
t, err = timed("write, a replica stopped", lambda: h.pwrite(block, 0))
assert err is None, "the write must succeed: %s" % err
assert t <= 1.5 * timeout + 1.0, "took %.3f s" % t
content[0:4096] = block
for i in range(1, 8):
    off = i * 65536 + 512
    block = os.urandom(4096)
    t, err = timed("write %d, a replica stopped" % i,
                   lambda: h.pwrite(block, off))
    assert err is None and t <= 1.5 * timeout + 1.0, (err, t)
    content[off:off + 4096] = block

# 3. Reads: whichever replica a read tries first, it is served in time.
# Segments 8-15 still count server 2 as ok; once the plugin stops
# failing its requests at once (it failed recently), a read sent there
# waits a full timeout and fails over within the rest of its budget.
time.sleep(timeout + 1)
slowest = 0
for i in range(16):
    off = i * 65536
    buf = bytearray(4096)
    def rd():
        buf[:] = h.pread(4096, off)
    t, err = timed("read %d, a replica stopped" % i, rd)
    assert err is None and t <= 1.5 * timeout + 1.0, (err, t)
    assert buf == content[off:off + 4096], "wrong data at %d" % off
    slowest = max(slowest, t)
assert slowest >= timeout - 0.1, "no read failed over after a timeout"
h.flush()
h.shutdown()
os.kill(ss2_pid, signal.SIGCONT)
with open(expect, "wb") as f:
    f.write(content)
PYEOF

stop_nbdkit w
repair_wait 60
check_map_healthy vol 2
tessera volume verify vol
start_nbdkit r vol readonly=true
timeout 60 $PYTHON - "$(nbd_uri r)" "$CLUSTER/expect.bin" <<'PYEOF'
import sys
import nbd

h = nbd.NBD()
h.connect_uri(sys.argv[1])
want = open(sys.argv[2], "rb").read()
got = h.pread(len(want), 0)
assert got == want, "the volume does not hold the acknowledged writes"
print("deadline: %d bytes read back after repair" % len(got))
PYEOF
stop_nbdkit r

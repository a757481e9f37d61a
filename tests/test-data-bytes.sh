#!/usr/bin/env bash
# Exact bytes through the plugin: unaligned, across segments, the last byte,
# holes, zero-length and out-of-range requests, flush and FUA.
source ./functions.sh
set -e
set -x

requires_built
requires nbdsh --version

make_cluster_dir
start_cluster 3
# 10 segments of 64K and a partial eleventh.
tessera volume create vol --size $(( 10 * 65536 + 1024 )) --replicas 2

# nbdkit in the foreground with a pidfile, not -U - --run: nbdkit forks
# for --run, and a forked nbdkit can hang at exit in p11-kit's destructor
# on a glibc locale lock another thread held at the fork (seen under
# AddressSanitizer in test-sanitizers, which runs this test).
start_nbdkit w vol
nbdsh -u "$(nbd_uri w)" -c - <<'PY'
import os
seg = 65536
size = h.get_size()
assert size == 10 * seg + 1024, size
assert h.can_flush() and h.can_fua() and h.can_trim() and h.can_zero()
assert h.can_multi_conn()

# Never-written blocks read as zeros.
assert h.pread(4096, 5 * seg) == bytes(4096)

# Unaligned, crossing one segment boundary.
a = os.urandom(5000)
h.pwrite(a, seg - 1234)
assert h.pread(5000, seg - 1234) == a

# Crossing two boundaries, odd length, with FUA.
b = os.urandom(2 * seg + 777)
h.pwrite(b, 3 * seg - 100, nbd.CMD_FLAG_FUA)
assert h.pread(len(b), 3 * seg - 100) == b
# Partial reads inside it.
assert h.pread(10, 3 * seg - 5) == b[95:105]

# The first and the last byte of the volume (the last segment is partial).
h.pwrite(b"\x5a", 0)
h.pwrite(b"\xa5", size - 1)
assert h.pread(1, 0) == b"\x5a"
assert h.pread(1, size - 1) == b"\xa5"
assert h.pread(1024, size - 1024) == bytes(1023) + b"\xa5"

# Overwrite part of earlier data; the rest is unchanged.
h.pwrite(b"X" * 100, seg - 50)
want = bytearray(a)
want[1234 - 50:1234 + 50] = b"X" * 100
assert h.pread(5000, seg - 1234) == bytes(want)
h.flush()

# Requests past the end and of zero length get NBD errors, not data.
h.set_strict_mode(0)
def fails(fn, errnum):
    try:
        fn()
    except nbd.Error as ex:
        assert ex.errnum == errnum, (ex.errnum, ex.string)
        return
    raise AssertionError("request succeeded")
import errno
fails(lambda: h.pread(2, size - 1), errno.EINVAL)
fails(lambda: h.pwrite(b"ab", size - 1), errno.ENOSPC)
fails(lambda: h.zero(2, size - 1), errno.ENOSPC)
fails(lambda: h.trim(10, size - 5), errno.EINVAL)
fails(lambda: h.pwrite(b"", 0), errno.ENOSPC)
# The connection still works.
assert h.pread(1, size - 1) == b"\xa5"
print("exact bytes: ok")
PY
stop_nbdkit w

# A second connection sees the same data (one shared volume, and after the
# first writer's clean close, a new one).
start_nbdkit r vol readonly=true
nbdsh -u "$(nbd_uri r)" -c - <<'PY'
assert h.pread(1, 0) == b"\x5a"
assert h.pread(1, h.get_size() - 1) == b"\xa5"
PY
stop_nbdkit r

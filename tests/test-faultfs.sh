#!/usr/bin/env bash
# faultfs itself: unsynced writes read back, are lost by "drop", survive
# it once fsynced; "fail-fsync" fails the fsync and loses the data it
# covered; "fail-write" fails a write; punch, truncate and rename work.
source ./functions.sh
set -e
set -x

requires_faultfs
make_cluster_dir
faultfs_mount t
m="$(faultfs_dir t)"
b="$CLUSTER/t.backing"

# py CODE: run Python with os imported, m (the mount) and b (backing).
py ()
{
    $PYTHON -c "import os, errno; m = '$m'; b = '$b'
$1"
}

# Written, not synced: read back through the mount, absent underneath.
py '
fd = os.open(m + "/f", os.O_RDWR | os.O_CREAT, 0o644)
os.pwrite(fd, b"O" * 65536, 0)
os.fsync(fd)
os.pwrite(fd, b"N" * 5000, 1000)
assert os.pread(fd, 65536, 0) == b"O" * 1000 + b"N" * 5000 + b"O" * 59536
os.close(fd)
assert open(b + "/f", "rb").read() == b"O" * 65536
'
test "$(faultfs_stat t pending_bytes)" -eq 8192
faultfs_ctl t drop
test "$(faultfs_stat t pending_bytes)" -eq 0
py 'assert open(m + "/f", "rb").read() == b"O" * 65536'

# An append past the end: the size follows, and goes back on drop.
py '
fd = os.open(m + "/f", os.O_RDWR)
os.pwrite(fd, b"A" * 100, 65536 + 10)
assert os.fstat(fd).st_size == 65646, os.fstat(fd)
assert os.pread(fd, 200, 65536) == bytes(10) + b"A" * 100
'
faultfs_ctl t drop
py 'assert os.stat(m + "/f").st_size == 65536'

# fdatasync writes it through: drop loses nothing.
py '
fd = os.open(m + "/f", os.O_RDWR)
os.pwrite(fd, b"S" * 4096, 8192)
os.fdatasync(fd)
'
faultfs_ctl t drop
py 'assert open(b + "/f", "rb").read()[8192:12288] == b"S" * 4096'

# O_DSYNC opens and RWF_DSYNC writes go through at once.
py '
fd = os.open(m + "/f", os.O_RDWR | os.O_DSYNC)
os.pwrite(fd, b"D" * 4096, 12288)
fd2 = os.open(m + "/f", os.O_RDWR)
os.pwritev(fd2, [b"E" * 4096], 16384, os.RWF_DSYNC)
'
test "$(faultfs_stat t pending_bytes)" -eq 0
faultfs_ctl t drop
py '
d = open(b + "/f", "rb").read()
assert d[12288:20480] == b"D" * 4096 + b"E" * 4096
'

# fail-fsync: EIO, and the data it covered is gone (marked clean).
faultfs_ctl t fail-fsync 1
py '
fd = os.open(m + "/f", os.O_RDWR)
os.pwrite(fd, b"X" * 4096, 0)
try:
    os.fsync(fd)
    raise SystemExit("fsync succeeded")
except OSError as e:
    assert e.errno == errno.EIO, e
assert os.pread(fd, 4096, 0) == b"O" * 4096
os.fsync(fd)
'
test "$(faultfs_stat t injected_fsync_errors)" -eq 1

# fail-write: EIO, nothing stored.
faultfs_ctl t fail-write 1
py '
fd = os.open(m + "/f", os.O_RDWR)
try:
    os.pwrite(fd, b"W" * 4096, 0)
    raise SystemExit("write succeeded")
except OSError as e:
    assert e.errno == errno.EIO, e
assert os.pread(fd, 4096, 0) == b"O" * 4096
os.pwrite(fd, b"W" * 4096, 0)
assert os.pread(fd, 4096, 0) == b"W" * 4096
'
test "$(faultfs_stat t injected_write_errors)" -eq 1

# A punched hole drops pending data in its range; truncate too.
py '
fd = os.open(m + "/f", os.O_RDWR)
os.pwrite(fd, b"P" * 16384, 16384)
'
fallocate -p -o 16384 -l 8192 "$m/f"
py '
fd = os.open(m + "/f", os.O_RDWR)
assert os.pread(fd, 16384, 16384) == bytes(8192) + b"P" * 8192
os.ftruncate(fd, 20000)
assert os.fstat(fd).st_size == 20000
assert os.pread(fd, 8192, 16384) == bytes(3616)
'
faultfs_ctl t drop
py 'assert open(m + "/f", "rb").read()[16384:] == bytes(3616)'

# mkdir, rename, unlink, statvfs, a symlinked file.
py '
os.mkdir(m + "/d")
fd = os.open(m + "/d/g", os.O_RDWR | os.O_CREAT, 0o644)
os.pwrite(fd, b"G" * 10, 0)
os.close(fd)
os.rename(m + "/d/g", m + "/d/h")
assert open(m + "/d/h", "rb").read() == b"G" * 10
os.symlink(m + "/d/h", b + "/../link")
assert open(b + "/../link", "rb").read() == b"G" * 10
os.unlink(m + "/d/h")
assert os.statvfs(m).f_bsize > 0
assert sorted(os.listdir(m)) == [".faultfs", "d", "f"], os.listdir(m)
'
faultfs_stat t
faultfs_ctl t stat
grep -q '^pending_bytes 0$' "$CLUSTER/faultfs-t.log"
# An unknown command fails.
if faultfs_ctl t frobnicate 2>/dev/null; then false; fi

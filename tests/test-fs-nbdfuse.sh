#!/usr/bin/env bash
# The quick path to a real filesystem without the kernel NBD driver:
# nbdfuse shows a 2-replica volume as a file, a loop device turns the
# file into a block device, and ext4 on it keeps files with their sha256
# across unmount, e2fsck and remount.
source ./functions.sh
set -e
set -x

requires_built
requires test "$(id -u)" = 0
requires nbdfuse --version
requires test -c /dev/fuse
requires grep -qw fuse /proc/filesystems
requires grep -qw ext4 /proc/filesystems
requires losetup --version
requires test -e /dev/loop-control
requires losetup -f
requires /sbin/mke2fs -V
requires /sbin/e2fsck -V
requires timeout --version

make_cluster_dir
start_cluster 3
tessera volume create vol --size 512M --replicas 2

nbdkit -f -U "$CLUSTER/nbd.sock" -P "$CLUSTER/nbdkit.pid" \
       "$TESSERA_PLUGIN" mds="$TESSERA_MDS" volume=vol \
       >"$CLUSTER/nbdkit.log" 2>&1 &
wait_for_pidfile "$CLUSTER/nbdkit.pid" $!

# attach: nbdfuse shows the volume as $CLUSTER/fuse/disk (it stays in the
# foreground until the mountpoint is unmounted) and the loop device $loop
# turns it into a block device.
attach ()
{
    rm -f "$CLUSTER/nbdfuse.pid"
    nbdfuse -P "$CLUSTER/nbdfuse.pid" "$CLUSTER/fuse/disk" \
            "nbd+unix:///?socket=$CLUSTER/nbd.sock" \
            >>"$CLUSTER/nbdfuse.log" 2>&1 &
    nbdfuse_pid=$!
    wait_for_pidfile "$CLUSTER/nbdfuse.pid" $nbdfuse_pid
    test "$(stat -c %s "$CLUSTER/fuse/disk")" = $(( 512 * 1024 * 1024 ))
    loop="$(losetup -f --show "$CLUSTER/fuse/disk")"
    echo "loop device: $loop"
}

# detach: undo attach, whatever state it is in; waits (at most 10 s)
# for nbdfuse to exit.
detach ()
{
    local i
    umount "$CLUSTER/mnt" 2>/dev/null || :
    [ -z "$loop" ] || losetup -d "$loop" || :
    loop=
    # fusermount3 (package fuse3) is the documented way; root can umount.
    if command -v fusermount3 >/dev/null; then
        fusermount3 -u "$CLUSTER/fuse" 2>/dev/null || :
    else
        umount "$CLUSTER/fuse" 2>/dev/null || :
    fi
    [ -n "$nbdfuse_pid" ] || return 0
    for (( i = 0; i < 100; ++i )); do
        kill -0 $nbdfuse_pid 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 $nbdfuse_pid 2>/dev/null; then
        echo "$0: nbdfuse $nbdfuse_pid did not exit"
        kill $nbdfuse_pid
        return 1
    fi
    nbdfuse_pid=
}

mkdir "$CLUSTER/fuse" "$CLUSTER/mnt"
loop=
nbdfuse_pid=
cleanup_fn detach
attach

/sbin/mke2fs -t ext4 -F -q "$loop"
mount -t ext4 "$loop" "$CLUSTER/mnt"

# 12 files of 1 to 12 MiB (78 MiB) in 3 directories.
: > "$CLUSTER/sums"
for i in $(seq 12); do
    d="$CLUSTER/mnt/d$(( i % 3 ))"
    mkdir -p "$d"
    head -c $(( i * 1024 * 1024 )) /dev/urandom > "$d/f$i"
    (cd "$CLUSTER/mnt" && sha256sum "d$(( i % 3 ))/f$i") >> "$CLUSTER/sums"
done
sync
umount "$CLUSTER/mnt"

# Detach and attach again, so that nothing below is served from a cache
# on this side of nbdkit.
detach
attach
timeout 300 /sbin/e2fsck -fn "$loop"
mount -t ext4 -o ro "$loop" "$CLUSTER/mnt"
(cd "$CLUSTER/mnt" && sha256sum --quiet -c "$CLUSTER/sums")
test "$(find "$CLUSTER/mnt" -type f | wc -l)" = 12
umount "$CLUSTER/mnt"
detach
stop_pidfile "$CLUSTER/nbdkit.pid"

# Every segment written has its 2 replicas, both ok.
tessera --json volume map vol > "$CLUSTER/map.json"
$PYTHON - "$CLUSTER/map.json" <<'PY'
import json, sys
segs = json.load(open(sys.argv[1]))["segments"]
assert segs, "no segment allocated"
for s in segs:
    assert len({r["server"] for r in s["replicas"]}) == 2, s
    assert all(r["state"] == "ok" for r in s["replicas"]), s
print("%d segments, all with 2 ok replicas" % len(segs))
PY

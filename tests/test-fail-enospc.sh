#!/usr/bin/env bash
# ENOSPC round trip: a client writing past the space of the cluster gets
# ENOSPC (not EIO, not success), the data written before stays intact,
# every daemon keeps running, and writes succeed again once space is
# freed, without a restart.  Twice: (a) the stores' slots run out (the
# MDS stops placing at its high-water mark); (b) the filesystem under
# one store (a small tmpfs) runs out: the MDS stops placing there, a
# replica that could not take a write is marked stale, deleting a volume
# frees space even then, and repair resyncs once space returns.
source ./functions.sh
set -e
set -x

requires_built
requires "$PYTHON" -c 'import nbd'

# blocks MODE URI TAG FIRST COUNT: on the 64K blocks FIRST, FIRST+1, ...
# (COUNT of them) of the export at URI:
#   fill   write TAG's pattern until a write fails, which must be with
#          ENOSPC (no failure at all is an error); print the number of
#          blocks written;
#   write  write TAG's pattern (every write must succeed);
#   touch  write the first 4K of TAG's pattern (allocating the segment);
#   check  read them back: each must hold TAG's pattern.
blocks ()
{
    "$PYTHON" - "$@" <<'PY'
import errno, sys
import nbd
mode, uri, tag, first, count = sys.argv[1:3] + [sys.argv[3].encode()] + \
    [int(a) for a in sys.argv[4:6]]
def pattern(i):
    return ((b"%s-%06d." % (tag, i)) * 8192)[:65536]
h = nbd.NBD()
h.connect_uri(uri)
for i in range(first, first + count):
    if mode == "check":
        d = h.pread(65536, i * 65536)
        assert d == pattern(i), "block %d: %r" % (i, bytes(d[:16]))
        continue
    if mode == "touch":
        h.pwrite(pattern(i)[:4096], i * 65536)
        continue
    try:
        h.pwrite(pattern(i), i * 65536)
    except nbd.Error as ex:
        print("block %d: %s (errno %s)" % (i, ex.string, ex.errnum),
              file=sys.stderr)
        if mode == "write":
            raise
        assert ex.errnum == errno.ENOSPC, "not ENOSPC: %s" % ex.errnum
        h.flush()
        print(i - first)
        sys.exit(0)
if mode == "fill":
    sys.exit("fill: no ENOSPC in %d blocks" % count)
if mode != "check":
    h.flush()
print("%s: %d blocks of %s from %d" % (mode, count, tag.decode(), first),
      file=sys.stderr)
PY
}

# alive: every daemon of the cluster is still running.
alive ()
{
    local f
    for f in "$CLUSTER"/mds.pid "$CLUSTER"/ss*.pid "$CLUSTER"/nbdkit*.pid; do
        [ -f "$f" ] || continue
        kill -0 "$(cat "$f")"
    done
}

# wait_used BYTES: wait (at most 30 s) until the servers' used bytes add
# up to BYTES (deleted segments are freed by the servers, then reported
# in their heartbeats).
wait_used ()
{
    local want="$1" i u=
    for (( i = 0; i < 150; ++i )); do
        u="$(tessera_json "sum(s['used'] for s in j['servers'])" server list)"
        if [ "$u" = "$want" ]; then return 0; fi
        sleep 0.2
    done
    echo "$0: servers use $u bytes, not $want, after 30 s"
    return 1
}

# wait_mark ID above|below: wait (at most 30 s) until the MDS shows
# server ID at or above its 90% high-water mark, or below it.
wait_mark ()
{
    local id="$1" want="$2" i st=
    for (( i = 0; i < 150; ++i )); do
        st="$(tessera_json "[('above' if s['used'] * 100 >= s['capacity'] * 90 else 'below') for s in j['servers'] if s['id'] == $id][0]" server list)"
        if [ "$st" = "$want" ]; then return 0; fi
        sleep 0.2
    done
    echo "$0: server $id is not $want its high-water mark after 30 s"
    return 1
}

export SEGMENT_SIZE=64K LEASE_TIMEOUT=3 DOWN_TIMEOUT=3

#### (a) No free slot: 3 servers of 16 slots each, 2 replicas.  The MDS
#### places new segments only below its 90% high-water mark: at most 15
#### replicas per server, 22 segments in all.
make_cluster_dir
STORE_SIZE=1M start_cluster 3
tessera server list
tessera volume create filler --size 256K --replicas 2
tessera volume create vol --size 4M --replicas 2
start_nbdkit f filler
blocks write "$(nbd_uri f)" F 0 4
stop_nbdkit f

start_nbdkit w vol
n="$(blocks fill "$(nbd_uri w)" A 0 64)"
echo "vol took $n blocks before ENOSPC"
# The two fullest servers hold 15 replicas each when it stops.
test "$n" -ge 11 && test "$n" -le 18
grep -E "cannot place 2 replicas: .*high-water mark" "$CLUSTER/nbdkit-w.log"
tessera server list
blocks check "$(nbd_uri w)" A 0 "$n"
alive

# Free space: delete the other volume.  Once the servers have freed its
# slots, the same writer writes on.
tessera volume delete filler
wait_used $(( n * 2 * 65536 ))
blocks write "$(nbd_uri w)" A "$n" 2
blocks check "$(nbd_uri w)" A 0 $(( n + 2 ))
alive
stop_nbdkit w
tessera volume verify vol
check_map_healthy vol 2
stop_cluster
rm -rf "$CLUSTER"

#### (b) The filesystem under server 3's store runs out: a 12M tmpfs
#### under a store of 16M.  Volume old is written; every segment of vol
#### gets allocated while there is room (4K written at the start of
#### each); then a filler file leaves about 1M free.
make_cluster_dir
mkdir "$CLUSTER/ss3"
if ! mount -t tmpfs -o size=12M tmpfs "$CLUSTER/ss3" 2>"$CLUSTER/mount.err"
then
    echo "$0: cannot mount a tmpfs ($(cat "$CLUSTER/mount.err")):" \
         "skipping the full filesystem part"
    exit 0
fi
cleanup_fn 'stop_cluster; umount "$CLUSTER/ss3"'
STORE_SIZE=16M start_cluster 3
full="$(server_id 3)"
tessera volume create old --size 1M --replicas 2
start_nbdkit o old
blocks write "$(nbd_uri o)" D 0 16
stop_nbdkit o
tessera volume create vol --size 4M --replicas 2
start_nbdkit w vol
blocks touch "$(nbd_uri w)" B 0 64
tessera volume map vol
test "$(tessera_json "sum(1 for s in j['segments'] for r in s['replicas'] if r['server'] == $full)" volume map vol)" -gt 16
avail="$(df --output=avail -k "$CLUSTER/ss3" | tail -n 1)"
dd if=/dev/zero of="$CLUSTER/ss3/filler" bs=1K count=$(( avail - 1024 ))
df -k "$CLUSTER/ss3"
# The server reports its filesystem's shortage as used space: the MDS
# sees it above the high-water mark.
wait_mark "$full" above
grep -E "server $full .*high-water mark: no new segments" "$CLUSTER/mds.log"

# Full 64K blocks need room on every replica: ENOSPC once server 3 has
# none left.
n="$(blocks fill "$(nbd_uri w)" B 0 64)"
echo "vol took $n blocks before ENOSPC"
grep -E "storage full on server $full" "$CLUSTER/nbdkit-w.log"
grep -E "No space left on device" "$CLUSTER/ss3.log"
blocks check "$(nbd_uri w)" B 0 "$n"
alive
# Server 3's replica of the failed block's segment was marked stale (it
# may hold part of the write); the segment reads from the good one.
tessera volume map vol
test "$(count_unhealthy vol)" -ge 1
blocks check "$(nbd_uri w)" B 0 "$n"

# New segments go to the other servers only.
tessera volume create vol2 --size 1M --replicas 2
start_nbdkit w2 vol2
blocks write "$(nbd_uri w2)" C 0 16
test "$(tessera_json "sum(1 for s in j['segments'] for r in s['replicas'] if r['server'] == $full)" volume map vol2)" = 0
blocks check "$(nbd_uri w2)" C 0 16

# Free space on the full filesystem (a second filler takes the last
# bytes) by deleting volume old: the server can still record the
# deletes (its index keeps a reserve), and punches the segments out.
# The same writer writes on.
dd if=/dev/zero of="$CLUSTER/ss3/filler2" bs=4K || :
test "$(df --output=avail -k "$CLUSTER/ss3" | tail -n 1)" -lt 64
test "$(tessera_json "sum(1 for s in j['segments'] for r in s['replicas'] if r['server'] == $full)" volume map old)" -ge 4
before="$(df --output=avail -k "$CLUSTER/ss3" | tail -n 1)"
tessera volume delete old
for (( i = 0; i < 150; ++i )); do
    avail="$(df --output=avail -k "$CLUSTER/ss3" | tail -n 1)"
    if (( avail >= before + 256 )); then break; fi
    sleep 0.2
done
df -k "$CLUSTER/ss3"
(( avail >= before + 256 ))
blocks write "$(nbd_uri w)" B "$n" 3
blocks check "$(nbd_uri w)" B 0 $(( n + 3 ))
alive

# Free more: remove the filler.  The writer writes the rest, and repair
# resyncs the stale replicas.
rm "$CLUSTER/ss3/filler" "$CLUSTER/ss3/filler2"
wait_mark "$full" below
blocks write "$(nbd_uri w)" B $(( n + 3 )) $(( 64 - n - 3 ))
blocks check "$(nbd_uri w)" B 0 64
alive
repair_wait 60
check_map_healthy vol 2
check_map_healthy vol2 2
blocks check "$(nbd_uri w)" B 0 64
stop_nbdkit w
stop_nbdkit w2
tessera volume verify vol
tessera volume verify vol2
alive

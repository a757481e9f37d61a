#!/usr/bin/env bash
# tessera catalog backup takes a consistent copy of the catalog while a
# writer runs; tessera-mds --restore installs it in a new directory and
# serves the same volumes and data; bad uses fail clearly and the
# daemons stay up.
source ./functions.sh
set -e
set -x

requires_built
requires nbdsh --version
requires nbdcopy --version
requires sha256sum --version

make_cluster_dir
start_cluster 2
tessera volume create vol --size 4M --replicas 2
tessera volume create busy --size 1M --replicas 2

# Data written before the backup, and a volume whose every segment is
# allocated (so that the writer below changes data, not the map).
head -c $(( 3 * 1024 * 1024 + 4096 )) /dev/urandom > "$CLUSTER/data"
nbdkit -U - "$TESSERA_PLUGIN" mds="$TESSERA_MDS" volume=vol \
       --run 'nbdcopy --flush "$CLUSTER/data" "$uri"'
head -c $(( 1024 * 1024 )) /dev/urandom > "$CLUSTER/busy-data"
nbdkit -U - "$TESSERA_PLUGIN" mds="$TESSERA_MDS" volume=busy \
       --run 'nbdcopy --flush "$CLUSTER/busy-data" "$uri"'
tessera --json volume list > "$CLUSTER/list-before.json"

# A writer keeps writing to "busy" while the backups are taken; it stops
# when the stop file appears, or after 60 s.
start_nbdkit writer busy
nbdsh -u "$(nbd_uri writer)" -c '
import os, time
stop = os.environ["CLUSTER"] + "/stop-writer"
t0 = time.time()
n = 0
while not os.path.exists(stop) and time.time() - t0 < 60:
    h.pwrite(os.urandom(65536), (n % 16) * 65536)
    n += 1
h.flush()
print("writer: %d writes" % n)
' > "$CLUSTER/writer.out" 2>&1 &
writer=$!
cleanup_fn "touch $CLUSTER/stop-writer; wait $writer || :"
sleep 1

# The backup: exit status 0, size and time on stdout.
tessera catalog backup "$CLUSTER/cat.bak" > "$CLUSTER/backup.out"
cat "$CLUSTER/backup.out"
grep -Eq "^$CLUSTER/cat.bak: [0-9]+ bytes \(.*\) in [0-9.]+ s$" \
     "$CLUSTER/backup.out"
test -s "$CLUSTER/cat.bak"
test ! -e "$CLUSTER/cat.bak.tmp"

# An existing file is kept unless --force; --json reports size and hash.
expect_fail "catalog backup: .*cat.bak: already exists" \
            tessera catalog backup "$CLUSTER/cat.bak"
tessera --json catalog backup --force "$CLUSTER/cat2.bak" \
    > "$CLUSTER/backup2.json"
tessera --json catalog backup --force "$CLUSTER/cat2.bak" \
    > "$CLUSTER/backup2.json"
$PYTHON - "$CLUSTER/backup2.json" "$CLUSTER/cat2.bak" <<'PY'
import hashlib, json, os, sys
j = json.load(open(sys.argv[1]))
data = open(sys.argv[2], "rb").read()
assert j["size"] == len(data) == os.path.getsize(sys.argv[2]), j
assert j["sha256"] == hashlib.sha256(data).hexdigest(), j
PY
expect_fail "is not allowed here" tessera --force volume list

touch "$CLUSTER/stop-writer"
wait $writer
cat "$CLUSTER/writer.out"
stop_nbdkit writer

# Bad requests: an unknown backup id, an offset past the end, a start
# at an offset, a chunk size out of range (malformed: the connection
# closes).  The MDS stays up.
$PYTHON - "$CLUSTER/mds.sock" "$abs_top_srcdir/tests" <<'PY'
import os, struct, sys
sys.path.insert(0, sys.argv[2])
import tessera_wire as tw
OP = tw.OPS and [k for k, v in tw.OPS.items() if v == "CATALOG_BACKUP"][0]
key = tw.load_key(os.environ["TESSERA_KEY_FILE"])

def session():
    s = tw.connect("unix:" + sys.argv[1])
    tw.handshake(s, key, tw.ROLE_CLI)
    return s

def req(backup_id, offset, mx):
    return struct.pack(">QQI", backup_id, offset, mx)

def expect(s, payload, status, text):
    try:
        tw.call(s, OP, payload)
    except tw.ProtoError as e:
        assert e.status == status and text in e.message, (e.status, e.message)
        print("expected:", e.message)
        return
    raise AssertionError("succeeded: %r" % payload)

s = session()
expect(s, req(12345, 0, 4096), 2, "no such backup")
expect(s, req(0, 10, 4096), 7, "offset 0")
# Start one, then read past its end, then read it all.
p = tw.call(s, OP, req(0, 0, 4096))
bid, size = struct.unpack(">QQ", p[:16])
assert bid > 0 and size > 4096 and len(p) == 60 + 4096, (bid, size, len(p))
expect(s, req(bid, size + 1, 4096), 10, "past its end")
# Another connection cannot read it.
s2 = session()
expect(s2, req(bid, 0, 4096), 2, "no such backup")
off = 4096
while off < size:
    p = tw.call(s, OP, req(bid, off, 1 << 20))
    off += struct.unpack(">I", p[56:60])[0]
# Read to the end: dropped.
expect(s, req(bid, 0, 4096), 2, "no such backup")
# max 0 is malformed: the connection is closed after the error.
expect(s2, req(0, 0, 0), 12, "malformed")
assert tw.recv_frame(s2) is None
print("bad requests: ok")
PY
tessera status > /dev/null

# Restore: a file that is not a catalog, an LMDB file without a cluster
# record, a directory that holds a catalog already.
mds_restore ()
{
    "$TESSERA_MDS_BIN" --db "$1" --key-file "$TESSERA_KEY_FILE" -f -v \
        --listen "unix:$CLUSTER/mds2.sock" -P "$CLUSTER/mds2.pid" \
        "${@:2}"
}
head -c 65536 /dev/urandom > "$CLUSTER/junk"
expect_fail "--restore: .*junk: not a Tessera catalog" \
            mds_restore "$CLUSTER/mds2" --restore "$CLUSTER/junk"
: > "$CLUSTER/empty"
expect_fail "--restore: .*empty: not a Tessera catalog" \
            mds_restore "$CLUSTER/mds2" --restore "$CLUSTER/empty"
test ! -e "$CLUSTER/mds2/data.mdb"
expect_fail "--restore: .*nonexistent: No such file" \
            mds_restore "$CLUSTER/mds2" --restore "$CLUSTER/nonexistent"
mkdir -p "$CLUSTER/full"
cp "$CLUSTER/cat2.bak" "$CLUSTER/full/data.mdb"
expect_fail "--restore: .*full: already holds the catalog of cluster" \
            mds_restore "$CLUSTER/full" --restore "$CLUSTER/cat.bak"
expect_fail "--force: only valid with --restore" \
            "$TESSERA_MDS_BIN" --db "$CLUSTER/full" --force
expect_fail "--restore: not valid with --init" \
            "$TESSERA_MDS_BIN" --db "$CLUSTER/full" --init --restore x

# The restored MDS serves the volumes as they were at the backup.
rm -f "$CLUSTER/mds2.pid"
mds_restore "$CLUSTER/mds2" --restore "$CLUSTER/cat.bak" \
    >> "$CLUSTER/mds2.log" 2>&1 &
wait_for_pidfile "$CLUSTER/mds2.pid" $!
cleanup_fn stop_pidfile "$CLUSTER/mds2.pid"
grep -q "restored catalog .*cat.bak into .*mds2: cluster .*, 2 volumes" \
     "$CLUSTER/mds2.log"
grep -q "restore: reconciled with 2 of 2 storage servers" "$CLUSTER/mds2.log"
TESSERA_MDS="unix:$CLUSTER/mds2.sock" tessera --json volume list \
    > "$CLUSTER/list-restored.json"
$PYTHON - "$CLUSTER"/list-before.json "$CLUSTER"/list-restored.json <<'PY'
import json, sys
a, b = (json.load(open(f))["volumes"] for f in sys.argv[1:3])
key = lambda v: (v["id"], v["name"], v["size"], v["replicas"], v["segments"])
assert [key(v) for v in a] == [key(v) for v in b], (a, b)
PY

# --force replaces a catalog (the one in "full": the same cluster).
mds_restore "$CLUSTER/full" --restore "$CLUSTER/cat.bak" --force \
    --listen "unix:$CLUSTER/mds3.sock" -P "$CLUSTER/mds3.pid" \
    >> "$CLUSTER/mds3.log" 2>&1 &
wait_for_pidfile "$CLUSTER/mds3.pid" $!
stop_pidfile "$CLUSTER/mds3.pid"
grep -q "replacing the catalog of cluster" "$CLUSTER/mds3.log"

# The data written before the backup reads back through the restored
# MDS (the storage servers still hold it).
nbdkit -U - -r "$TESSERA_PLUGIN" mds="unix:$CLUSTER/mds2.sock" volume=vol \
       --run 'nbdcopy "$uri" "$CLUSTER/out"'
test "$(head -c $(( 3 * 1024 * 1024 + 4096 )) "$CLUSTER/out" | sha256sum)" = \
     "$(sha256sum < "$CLUSTER/data")"

# Both MDSs are still up.
tessera status > /dev/null
TESSERA_MDS="unix:$CLUSTER/mds2.sock" tessera status > /dev/null

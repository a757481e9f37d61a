#!/usr/bin/env bash
# Fencing a deposed MDS leader at the storage servers
# (docs/high-availability.md): three etcd members, MDS a (--init) and b,
# three storage servers with both addresses.  a is paused (SIGSTOP) past
# its lease TTL; b leads and commands the storage servers, which then
# hold b's epoch.  a, resumed, exits (75, "no longer the leader") and
# never serves; anything it sent would be refused.  An MDS speaking the
# protocol by hand with a's epoch, or with 0, is refused with ESTALE at
# its handshake, also after a storage server restarts (the epoch is
# durable); a request on a connection whose epoch a newer one has since
# overtaken is refused too, and so is a heartbeat reply from an MDS at
# a's epoch (a fake one).  A restarted a follows b.
source ./functions.sh
set -e
set -x

requires_built
requires etcd --version
make_cluster_dir
start_etcd 3
TTL=8

# epoch_of NAME: the epoch MDS NAME last led at (its log).
epoch_of ()
{
    sed -n 's/.*leading at epoch \([0-9]*\).*/\1/p' "$CLUSTER/mds$1.log" |
        tail -n 1
}

# as_mds SS EPOCH: handshake with storage server SS as an MDS at EPOCH
# and ask TABLES_GET; prints "ok" or the refusal's status and message.
as_mds ()
{
    $PYTHON - "$abs_top_srcdir/tests" "$TESSERA_KEY_FILE" \
            "unix:$CLUSTER/ss$1.sock" "$2" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
import tessera_wire as tw

key = tw.load_key(sys.argv[2])
s = tw.connect(sys.argv[3])
try:
    tw.handshake(s, key, tw.ROLE_MDS, mds_epoch=int(sys.argv[4]))
    tw.call(s, 51)                      # TABLES_GET
    print("ok")
except tw.ProtoError as e:
    print("status %d: %s" % (e.status, e.message))
PY
}

# refused SS EPOCH NEWEST: the handshake as an MDS at EPOCH is refused
# with ESTALE, naming both epochs.
refused ()
{
    local out
    out="$(as_mds "$1" "$2")"
    echo "$out"
    grep -q "^status 13: AUTH: MDS epoch $2 is older than $3: a newer leader exists" \
        <<<"$out"
}

export TESSERA_KEY_FILE="$CLUSTER/cluster.key"
BOTH="unix:$CLUSTER/mdsa.sock,unix:$CLUSTER/mdsb.sock"
start_ha_mds a --init --segment-size 64K
wait_log "$CLUSTER/mdsa.log" "leading at epoch"
ea="$(epoch_of a)"
test -n "$ea"
for i in 1 2 3; do
    start_storesrv $i --mds "$BOTH"
done
for (( i = 0; i < 100; ++i )); do
    on a volume create v1 --size 64M --replicas 2 2>/dev/null && break
    sleep 0.2
done
on a volume info v1
start_ha_mds b
wait_log "$CLUSTER/mdsa.log" "b is the synchronous standby"

# a's commands (the tables pushed after each change) gave every storage
# server a's epoch: a single MDS's 0 is refused from now on.
for i in 1 2 3; do
    wait_log "$CLUSTER/ss$i.log" "MDS epoch $ea (was 0)"
done
refused 1 0 "$ea"

# Pause a past its lease: b leads.
apid="$(cat "$CLUSTER/mdsa.pid")"
kill -STOP "$apid"
cleanup_fn "kill -CONT $apid 2>/dev/null || :"
sleep $(( TTL * 2 ))
for (( i = 0; i < 300; ++i )); do
    on b volume list >/dev/null 2>&1 && break
    sleep 0.1
done
on b volume list
eb="$(epoch_of b)"
test -n "$eb" && test "$eb" -gt "$ea"

# b commands the storage servers (TABLES_PUT after a change, then a
# write through nbdkit): they hold b's epoch from then on.
on b volume create v2 --size 64M --replicas 2
for i in 1 2 3; do
    wait_log "$CLUSTER/ss$i.log" "MDS epoch $eb (was $ea)"
done
TESSERA_MDS="$BOTH" start_nbdkit w v2
timeout 120 nbdsh -u "$(nbd_uri w)" \
        -c 'h.pwrite(b"fenced" * 1000, 0); h.flush()'
stop_nbdkit w

# a resumes: it exits as deposed and never serves again.
kill -CONT "$apid"
for (( i = 0; i < 300; ++i )); do
    kill -0 "$apid" 2>/dev/null || break
    sleep 0.1
done
st=0
wait "$apid" || st=$?
test "$st" -eq 75
grep "no longer the leader" "$CLUSTER/mdsa.log"
rm -f "$CLUSTER/mdsa.pid"
if on a volume list; then
    echo "$0: the deposed leader served"
    exit 1
fi
# Whatever a sent after b's epoch reached a server was refused there.
grep -h "MDS epoch $ea is older than $eb" "$CLUSTER"/ss*.log || :
if grep -h "MDS epoch $ea (was" "$CLUSTER"/ss*.log | grep -v "(was 0)"; then
    echo "$0: a storage server took a's epoch after b's"
    exit 1
fi

# By hand: a's epoch, and 0, are refused by every storage server; b's
# is served.
for i in 1 2 3; do
    refused $i "$ea" "$eb"
    refused $i 0 "$eb"
done
test "$(as_mds 1 "$eb")" = ok

# The epoch is durable: a restarted storage server still refuses a's.
stop_pidfile "$CLUSTER/ss1.pid"
start_storesrv 1 --mds "$BOTH"
grep "MDS epoch $eb (older ones are refused)" "$CLUSTER/ss1.log"
refused 1 "$ea" "$eb"

# Heartbeat replies are commands too: a fake MDS at a's epoch that
# answers every heartbeat with a fence; server 2, registered with it,
# refuses the reply and applies no fence.
if [ -z "$TESSERA_TEST_TLS" ]; then
    "$PYTHON" - "$abs_top_srcdir/tests" "$CLUSTER" "$ea" \
              >>"$CLUSTER/fake.log" 2>&1 <<'PY' &
import os, socket, struct, sys, threading
sys.path.insert(0, sys.argv[1])
import tessera_wire as tw
cluster, epoch = sys.argv[2], int(sys.argv[3])
key = tw.load_key(os.environ["TESSERA_KEY_FILE"])

def serve(conn):
    with conn:
        r = tw.recv_frame(conn)
        if r is None:
            return
        hello = tw.decode_hello(r[4])
        snonce = os.urandom(tw.NONCE)
        sp = tw.proof(key, b"server", hello["auth"], snonce, hello["role"],
                      tw.ROLE_MDS)
        conn.sendall(tw.frame(r[0], tw.hello_payload(
            tw.ROLE_MDS, snonce + sp, mds_epoch=epoch),
            flags=tw.FLAG_REPLY, tag=r[3]))
        r = tw.recv_frame(conn)
        if r is None:
            return
        conn.sendall(tw.frame(r[0], flags=tw.FLAG_REPLY, tag=r[3]))
        while True:
            r = tw.recv_frame(conn)
            if r is None:
                return
            op, p = r[0], r[4]
            print("fake: %s" % tw.OPS.get(op, op), flush=True)
            if op == 11:    # SERVER_REGISTER: its own cluster and size
                reply = struct.pack(">II16sI", 2, struct.unpack(
                    ">I", p[32:36])[0], p[16:32], 200)
            elif op == 12:  # SERVER_HEARTBEAT: fence volume 999 at 77
                reply = struct.pack(">IIQQ", 0, 1, 999, 77)
            else:
                reply = b""
            conn.sendall(tw.frame(op, reply, flags=tw.FLAG_REPLY, tag=r[3]))

s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(os.path.join(cluster, "fake.sock"))
s.listen(4)
with open(os.path.join(cluster, "fake.pid.tmp"), "w") as f:
    f.write("%d\n" % os.getpid())
os.rename(os.path.join(cluster, "fake.pid.tmp"),
          os.path.join(cluster, "fake.pid"))
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
    wait_for_pidfile "$CLUSTER/fake.pid" $!
    stop_pidfile "$CLUSTER/ss2.pid"
    start_storesrv 2 --mds "unix:$CLUSTER/fake.sock"
    wait_log "$CLUSTER/ss2.log" "heartbeat reply refused: MDS epoch $ea is older than $eb: a newer leader exists"
    grep -c "fake: SERVER_HEARTBEAT" "$CLUSTER/fake.log"
    if grep "volume 999" "$CLUSTER/ss2.log"; then
        echo "$0: a fence from a deposed MDS's heartbeat was applied"
        exit 1
    fi
    stop_pidfile "$CLUSTER/ss2.pid"
    stop_pidfile "$CLUSTER/fake.pid"
    start_storesrv 2 --mds "$BOTH"
fi

# a, started again, follows b.
start_ha_mds a
wait_log "$CLUSTER/mdsa.log" "from a snapshot"
wait_log "$CLUSTER/mdsb.log" "a is the synchronous standby"
out="$(on a volume list 2>&1 || :)"
grep -q "not the leader; the leader is at unix:$CLUSTER/mdsb.sock" <<<"$out"
on b volume info v2

# An open MDS connection is refused once a newer epoch has spoken (last:
# this fences b at server 3).
$PYTHON - "$abs_top_srcdir/tests" "$TESSERA_KEY_FILE" \
        "unix:$CLUSTER/ss3.sock" "$eb" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
import tessera_wire as tw

key = tw.load_key(sys.argv[2])
eb = int(sys.argv[4])
old = tw.connect(sys.argv[3])
tw.handshake(old, key, tw.ROLE_MDS, mds_epoch=eb)
tw.call(old, 51)                        # TABLES_GET
new = tw.connect(sys.argv[3])
tw.handshake(new, key, tw.ROLE_MDS, mds_epoch=eb + 1)
try:
    tw.call(old, 51)
    raise AssertionError("a request at an overtaken epoch was served")
except tw.ProtoError as e:
    print("status %d: %s" % (e.status, e.message))
    assert e.status == tw.ESTALE, e
    assert ("MDS epoch %d is older than %d: a newer leader exists"
            % (eb, eb + 1)) in e.message, e
tw.call(new, 51)
PY

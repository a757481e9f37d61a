#!/usr/bin/env bash
# A write that is late on a replica must not land over a later
# acknowledged write.  The plugin reaches the storage servers through
# tests/cut-proxy.py, which holds one SEG_WRITE of the writer's for 4 s
# ("delay") and then delivers it, as a network that is slow rather than
# broken would.  The plugin's timeout (1 s) fails that write, W2, with
# EIO: its outcome on the held replica is unknown.  The next write to
# the same block, W3, goes over another socket (the plugin keeps two
# per server, and closes a stuck one) and is acknowledged; then W2
# arrives.  If the replica that W2 reaches still takes it, that replica
# holds data that was never acknowledged over data that was, and one
# failure of the other server loses an acknowledged write.  Unless the
# replica was marked stale, it must refuse W2.  Two ways the replica
# stays ok:
#
#   a. "refused report": --min-copies 2 of 2 replicas: the MDS refuses
#      to mark the late replica stale (one ok copy would be left), so W2
#      fails with EIO and the replica stays ok.  Server 2 is then killed
#      and block B read from server 1, which had W2 late.
#   b. "all late": W2 is late on both replicas: nobody is to blame, no
#      replica is reported.  Block B is read with both servers up, then
#      (on a read-only nbdkit) with server 2 stopped (SIGSTOP), then
#      with server 1 stopped.  Not killed: a server back from SIGKILL
#      has its replicas of the open volume marked stale and copied from
#      the other one, which would hide what it held.
#
# Every read must return W3's data.
source ./functions.sh
set -e
set -x

requires_built
requires "$PYTHON" -c 'import nbd'

# The plugin's shortest timeout (whole seconds, at least 1): W2 fails
# after about this long.  The proxy holds W2 for HOLD seconds: long
# enough that W3 is acknowledged first.
TIMEOUT=1
HOLD=4
# Block B: 4 KiB, in the volume's first segment.
BLOCK=$(( 5 * 4096 ))

export SEGMENT_SIZE=64K LEASE_TIMEOUT=5 DOWN_TIMEOUT=3 OUT_TIMEOUT=600
make_cluster_dir

PROXY=("$PYTHON" "$abs_top_srcdir/tests/cut-proxy.py")
CTL="unix:$CLUSTER/proxy-ctl.sock"

start_mds

# One route per storage server; the servers advertise the proxy's
# address, so the MDS's map sends the plugin through it.  The plugin
# reaches the MDS directly.
routes=()
for i in 1 2; do
    routes+=(--route "ss$i" "unix:$CLUSTER/proxy-ss$i.sock"
             "unix:$CLUSTER/ss$i.sock")
done
"${PROXY[@]}" serve --control "$CTL" --log "$CLUSTER/proxy.log" \
    --ready "$CLUSTER/proxy.ready" --hold $HOLD \
    --protocol-h "$abs_top_srcdir/common/proto/protocol.h" \
    "${routes[@]}" &
proxy=$!
cleanup_fn "kill $proxy 2>/dev/null || :"
wait_for_pidfile "$CLUSTER/proxy.ready" $proxy

# start_ss N: start storage server N behind the proxy.
start_ss ()
{
    start_storesrv "$1" --advertise "unix:$CLUSTER/proxy-ss$1.sock"
}
start_ss 1
start_ss 2
wait_servers_up 2

# The writes and the reads.  Block B holds "LATE Cn" and dots.
#
#   late.py writes CTL URI OFFSET FAULTS HOLD TIMEOUT CASE
#       write C1 at OFFSET and flush; queue FAULTS (a JSON list) at the
#       proxy; write C2 (it must fail with EIO); write C3 (retried at
#       most 5 times) and flush; C3 must be acknowledged before HOLD
#       seconds after C2 was sent, else the scenario did not happen.
#   late.py read URI OFFSET CASE WHAT
#       read block B 4 times on a new connection: every read must
#       return C3.
cat > "$CLUSTER/late.py" <<'EOF'
import json, socket, sys, time
import nbd

BS = 4096


def block(tag):
    return (b"LATE %s " % tag.encode()).ljust(BS, b".")


def what(data):
    for tag, desc in (("C3", "C3 (acknowledged)"),
                      ("C2", "C2 (an unacknowledged write)"),
                      ("C1", "C1 (older acknowledged data)")):
        if data == block(tag):
            return tag, desc
    if data == bytes(BS):
        return "zeros", "zeros"
    return "garbage", "garbage %r" % bytes(data[:16])


def ctl(addr, req):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(addr[len("unix:"):])
    f = s.makefile("rw")
    f.write(json.dumps(req) + "\n")
    f.flush()
    rep = json.loads(f.readline())
    s.close()
    if not rep.get("ok"):
        sys.exit("proxy: %s" % rep)
    return rep


def fail(case, msg):
    print("FAIL: case %s: %s" % (case, msg))
    sys.exit(1)


def writes(addr, uri, off, faults, hold, timeout, case):
    h = nbd.NBD()
    h.connect_uri(uri)
    h.pwrite(block("C1"), off)
    h.flush()
    print("case %s: C1 written and flushed" % case)
    ctl(addr, dict(cmd="plan", faults=json.loads(faults)))

    t0 = time.monotonic()
    try:
        h.pwrite(block("C2"), off)
    except nbd.Error as e:
        t = time.monotonic() - t0
        print("case %s: C2 failed after %.3f s: %s" % (case, t, e))
        if e.errno != "EIO":
            fail(case, "C2 failed with %s, not EIO" % e.errno)
        if t > 2 * timeout + 1:
            fail(case, "C2 took %.3f s to fail (timeout=%d)" % (t, timeout))
    else:
        fail(case, "C2 was acknowledged after %.3f s though a replica "
             "never got it in time" % (time.monotonic() - t0))

    for tries in range(1, 6):
        try:
            h.pwrite(block("C3"), off)
            h.flush()
            break
        except nbd.Error as e:
            print("case %s: C3, try %d: %s" % (case, tries, e))
            time.sleep(0.2)
    else:
        fail(case, "C3 failed 5 times")
    t = time.monotonic() - t0
    print("case %s: C3 acknowledged and flushed after %d tries, %.3f s "
          "after C2 was sent" % (case, tries, t))
    if t >= hold:
        fail(case, "C3 was acknowledged %.3f s after C2 was sent, after "
             "the proxy let C2 through (%g s): the scenario did not "
             "happen" % (t, hold))
    h.shutdown()


def read(uri, off, case, where):
    h = nbd.NBD()
    h.connect_uri(uri)
    found = []
    for _ in range(4):
        try:
            found.append(what(h.pread(BS, off)))
        except nbd.Error as e:
            fail(case, "%s: read failed: %s" % (where, e))
    h.shutdown()
    print("case %s: %s: block B read 4 times: %s" %
          (case, where, ", ".join(t for t, _ in found)))
    for tag, desc in found:
        if tag != "C3":
            fail(case, "%s: read %s over acknowledged C3" % (where, desc))


if sys.argv[1] == "writes":
    addr, uri, off, faults, hold, timeout, case = sys.argv[2:9]
    writes(addr, uri, int(off), faults, float(hold), int(timeout), case)
else:
    uri, off, case, where = sys.argv[2:6]
    read(uri, int(off), case, where)
EOF
LATE=(timeout 120 "$PYTHON" "$CLUSTER/late.py")

# delay_faults QUEUE-PREFIX NBDKIT ROUTE...: the delay fault on the
# first SEG_WRITE of nbdkit NAME's on each ROUTE, as a JSON list.
delay_faults ()
{
    local prefix="$1" pid r out=
    pid="$(cat "$CLUSTER/nbdkit-$2.pid")"
    shift 2
    for r in "$@"; do
        out+="${out:+, }{\"queue\": \"$prefix-$r\", \"route\": \"$r\",
              \"dir\": \"c2s\", \"op\": \"SEG_WRITE\",
              \"client\": \"pid:$pid\", \"action\": \"delay\",
              \"hold\": $HOLD}"
    done
    echo "[$out]"
}

# delivered: wait until the proxy has let every held write through,
# and a moment for the server to apply it.
delivered ()
{
    "${PROXY[@]}" wait "$CTL" --timeout $(( HOLD + 10 ))
    sleep 1
}

failed=

# ---- a. refused report ----
tessera volume create va --size 1M --replicas 2 --min-copies 2
start_nbdkit a va timeout=$TIMEOUT
cleanup_fn stop_nbdkit a
"${LATE[@]}" writes "$CTL" "$(nbd_uri a)" $BLOCK \
    "$(delay_faults a a ss1)" $HOLD $TIMEOUT a
delivered
grep -E "min-copies|out of time|failed on every" "$CLUSTER/nbdkit-a.log" || :
# The MDS raised the generation before C3 (MAP_RAISE_GEN).
grep "in doubt" "$CLUSTER/mds.log" || :
tessera volume map va
tessera volume verify va || :
kill_storesrv 2
"${LATE[@]}" read "$(nbd_uri a)" $BLOCK a "server 1 only" || failed+=" a"
stop_nbdkit a
start_ss 2
wait_servers_up 2

# ---- b. all late ----
tessera volume create vb --size 1M --replicas 2
start_nbdkit b vb timeout=$TIMEOUT
cleanup_fn stop_nbdkit b
"${LATE[@]}" writes "$CTL" "$(nbd_uri b)" $BLOCK \
    "$(delay_faults b b ss1 ss2)" $HOLD $TIMEOUT b
delivered
grep -E "out of time|failed on every" "$CLUSTER/nbdkit-b.log" || :
grep "in doubt" "$CLUSTER/mds.log" || :
tessera volume map vb
tessera volume verify vb || :
"${LATE[@]}" read "$(nbd_uri b)" $BLOCK b "both servers up" || failed+=" b"
stop_nbdkit b
# A read-only open reports no replica that fails a read.
start_nbdkit r vb timeout=$TIMEOUT readonly=true
cleanup_fn stop_nbdkit r
pause_storesrv 2
"${LATE[@]}" read "$(nbd_uri r)" $BLOCK b "server 2 stopped" ||
    failed+=" b/1"
resume_storesrv 2
pause_storesrv 1
"${LATE[@]}" read "$(nbd_uri r)" $BLOCK b "server 1 stopped" ||
    failed+=" b/2"
resume_storesrv 1
stop_nbdkit r

"${PROXY[@]}" ctl "$CTL" '{"cmd": "results"}'
if [ -n "$failed" ]; then
    echo "FAIL: a late write landed over an acknowledged one:$failed"
    exit 1
fi

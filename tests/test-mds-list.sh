#!/usr/bin/env bash
# Every client of the MDS takes a list of addresses (mds=A,B, --mds A,B,
# TESSERA_MDS=A,B) and finds the leader: with a first address where
# nothing listens, or standbys that answer ENOTLEADER (a fake one here),
# the CLI, the storage servers and the plugin go on to the real MDS.
# Malformed lists are refused naming the bad entry, a list that nothing
# answers fails naming it, and a plugin with a list goes on writing
# across an MDS restart on the same address.
source ./functions.sh
set -e
set -x

requires_built
requires nbdsh --version
requires nbdcopy --version
requires "$PYTHON" -c 'import nbd'

export LEASE_TIMEOUT=3 DOWN_TIMEOUT=3
make_cluster_dir
MDS="unix:$CLUSTER/mds.sock"
NOTHING="unix:$CLUSTER/nothing.sock"
LIST="$NOTHING,$MDS"

# ---- Malformed lists, for each client ----
nine="$(printf 'unix:/x%d,' 1 2 3 4 5 6 7 8 9)"
nine="${nine%,}"
for prog in cli env storesrv plugin; do
    for bad in "$NOTHING,,$MDS" "$nine" "$NOTHING,nonsense" ""; do
        case "$bad" in
            *,,*) re="entry 2 is empty" ;;
            *x9) re="more than 8 addresses" ;;
            *nonsense) re="nonsense: invalid address" ;;
            "") re="empty address list" ;;
        esac
        case "$prog" in
            cli) expect_fail "^tessera: --mds: .*$re" \
                             "$TESSERA_BIN" --mds "$bad" status ;;
            env)
                # An empty TESSERA_MDS means the default.
                [ -n "$bad" ] || continue
                expect_fail "^tessera: TESSERA_MDS: .*$re" \
                            env TESSERA_MDS="$bad" "$TESSERA_BIN" status ;;
            storesrv)
                expect_fail "^tessera-storesrv: --mds: .*$re" \
                            "$TESSERA_STORESRV_BIN" --data "$CLUSTER/bad" \
                            --mds "$bad" -f ;;
            plugin)
                expect_fail "mds: .*$re" \
                            nbdkit -U - "$TESSERA_PLUGIN" mds="$bad" volume=v \
                            --run true ;;
        esac
    done
done
test ! -e "$CLUSTER/bad"

# ---- Storage servers and the CLI ----
start_mds
for i in 1 2 3; do
    start_storesrv "$i" --mds "$LIST"
done
wait_servers_up 3
for i in 1 2 3; do
    grep "connected to $MDS (address 2 of 2)" "$CLUSTER/ss$i.log"
done
# They heartbeat: still up after the down timeout.
sleep $(( DOWN_TIMEOUT + 2 ))
test "$(tessera_json "j['servers_up']" status)" = 3

tessera --mds "$LIST" status
TESSERA_MDS="$LIST" tessera volume create vol --size 8M --replicas 2
test "$(TESSERA_MDS="$LIST" tessera_json "j['size']" volume info vol)" = 8388608
# A whole pass that fails names the list and the last failure; one
# address fails as it always has.
expect_fail "^tessera: $NOTHING,unix:$CLUSTER/nothing2.sock: no metadata server answered \(last: unix:$CLUSTER/nothing2.sock: " \
            tessera --mds "$NOTHING,unix:$CLUSTER/nothing2.sock" status
expect_fail "^tessera: $NOTHING: connect: " tessera --mds "$NOTHING" status

# ---- Standbys (a fake MDS that answers ENOTLEADER) ----
if [ -z "$TESSERA_TEST_TLS" ]; then
    # standby-at.sock names the leader, standby-none.sock knows none.
    "$PYTHON" - "$abs_top_srcdir/tests" "$CLUSTER" "$MDS" \
              >>"$CLUSTER/standby.log" 2>&1 <<'PYEOF' &
import os, socket, sys, threading
sys.path.insert(0, sys.argv[1])
import tessera_wire as tw
cluster, leader = sys.argv[2], sys.argv[3]
key = tw.load_key(os.environ["TESSERA_KEY_FILE"])
lock = threading.Lock()

def serve(conn, msg):
    with conn:
        r = tw.recv_frame(conn)
        if r is None:
            return
        op, flags, status, tag, p = r
        hello = tw.decode_hello(p)
        snonce = os.urandom(tw.NONCE)
        sp = tw.proof(key, b"server", hello["auth"], snonce, hello["role"],
                      tw.ROLE_MDS)
        conn.sendall(tw.frame(op, tw.hello_payload(tw.ROLE_MDS, snonce + sp),
                              flags=tw.FLAG_REPLY, tag=tag))
        r = tw.recv_frame(conn)
        if r is None:
            return
        conn.sendall(tw.frame(r[0], flags=tw.FLAG_REPLY, tag=r[3]))
        while True:
            r = tw.recv_frame(conn)
            if r is None:
                return
            with lock:
                print("%s: %s" % (msg, tw.OPS.get(r[0], r[0])), flush=True)
            conn.sendall(tw.frame(r[0], msg.encode(), flags=tw.FLAG_REPLY,
                                  status=tw.ENOTLEADER, tag=r[3]))

def listen(name, msg):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(os.path.join(cluster, name))
    s.listen(16)
    def loop():
        while True:
            c, _ = s.accept()
            threading.Thread(target=serve, args=(c, msg), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()

listen("standby-at.sock", "not the leader; the leader is at " + leader)
listen("standby-none.sock", "not the leader; no leader is known")
with open(os.path.join(cluster, "standby.pid.tmp"), "w") as f:
    f.write("%d\n" % os.getpid())
os.rename(os.path.join(cluster, "standby.pid.tmp"),
          os.path.join(cluster, "standby.pid"))
threading.Event().wait()
PYEOF
    standby=$!
    cleanup_fn "kill $standby 2>/dev/null || :"
    wait_for_pidfile "$CLUSTER/standby.pid" $standby
    AT="unix:$CLUSTER/standby-at.sock"
    NONE="unix:$CLUSTER/standby-none.sock"

    # The CLI: a standby alone fails with its message; a standby that
    # names the leader sends the request there (past NOTHING), one that
    # knows none to the next address.
    expect_fail "^tessera: volume list: $NONE: not the leader; no leader is known" \
                tessera --mds "$NONE" volume list
    tessera --mds "$AT,$NOTHING,$MDS" volume list
    tessera --mds "$NONE,$MDS" volume info vol
    grep "leader is at $MDS: VOL_LIST" "$CLUSTER/standby.log"
    grep "no leader is known: VOL_INFO" "$CLUSTER/standby.log"
    expect_fail "no leader is known" tessera --mds "$NONE,$NONE" volume list

    # A storage server registers past two standbys and a dead address.
    stop_storesrv 3
    start_storesrv 3 --mds "$NONE,$AT,$NOTHING,$MDS"
    sleep $(( DOWN_TIMEOUT + 2 ))
    wait_servers_up 3
    grep "connected to $MDS (address 4 of 4)" "$CLUSTER/ss3.log"
    grep "SERVER_REGISTER" "$CLUSTER/standby.log"

    # The plugin, past a standby and a dead address.
    nbdkit -U - "$TESSERA_PLUGIN" mds="$NONE,$NOTHING,$MDS" volume=vol \
           --run 'nbdsh -u "$uri" -c "
h.pwrite(b\"standby\" * 512, 65536)
h.flush()
assert h.pread(3584, 65536) == b\"standby\" * 512
"'
    grep "no leader is known: VOL_OPEN" "$CLUSTER/standby.log"
fi

# ---- The plugin, with NOTHING first ----
rm -f "$CLUSTER/nbdkit-w.pid" "$CLUSTER/w.sock"
nbdkit -f -v -U "$CLUSTER/w.sock" -P "$CLUSTER/nbdkit-w.pid" \
       "$TESSERA_PLUGIN" mds="$LIST" volume=vol timeout=2 \
       ${TESSERA_TEST_TLS:+tls=true} >>"$CLUSTER/nbdkit-w.log" 2>&1 &
wait_for_pidfile "$CLUSTER/nbdkit-w.pid" $!
take_lease w
grep "mds: connected to $MDS (address 2 of 2)" "$CLUSTER/nbdkit-w.log"
nbdsh -u "$(nbd_uri w)" -c '
buf = b"tessera mds list " * 241
h.pwrite(buf, 0)
h.flush()
assert h.pread(len(buf), 0) == buf
'
head -c $(( 3 * 1024 * 1024 )) /dev/urandom > "$CLUSTER/data"
nbdcopy --flush "$CLUSTER/data" "$(nbd_uri w)"
nbdcopy "$(nbd_uri w)" "$CLUSTER/out"
cmp -n $(( 3 * 1024 * 1024 )) "$CLUSTER/data" "$CLUSTER/out"
stop_nbdkit w

# ---- An MDS restart on the same address while the plugin serves ----
tessera volume create data --size 64M --replicas 2
start_nbdkit r data mds="$LIST"
timeout 120 "${WORKLOAD[@]}" rw "$(nbd_uri r)" --write-pct 70 --grow 10 \
        --duration 60 --stop-file "$CLUSTER/stop" --max-errors 1000000 \
        --started "$CLUSTER/started" --stats "$CLUSTER/stats.json" &
wl=$!
cleanup_fn "kill $wl 2>/dev/null || :"
wait_for_pidfile "$CLUSTER/started" $wl
t0="$(now)"
sleep 1
kill_mds
start_mds
wait_servers_up 3
nseg="$(tessera_json "j['segments']" volume info data)"
sleep_until "$t0" 10
touch "$CLUSTER/stop"
wait $wl
cat "$CLUSTER/stats.json"; echo
$PYTHON - "$CLUSTER/stats.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
assert s["mismatches"] == 0, s
assert s["ops_after_last_error"] > 100, s
assert set(s["error_kinds"]) <= {"EIO"}, s["error_kinds"]
PY
# Allocation went on after the restart, and a new connection writes.
test "$(tessera_json "j['segments']" volume info data)" -gt "$nseg"
timeout 60 "${WORKLOAD[@]}" rw "$(nbd_uri r)" --unknown --duration 3
stop_nbdkit r
tessera --json volume info data |
    $PYTHON -c 'import json, sys; v = json.load(sys.stdin); assert v["clean"] and not v["open"], v'

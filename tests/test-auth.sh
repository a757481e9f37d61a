#!/usr/bin/env bash
# Every kind of connection proves the cluster key both ways: a wrong key
# or no key is refused by the MDS and by storage servers, for every
# client role; the real CLI, plugin and storage server refuse to work
# with a wrong key and refuse a server that cannot prove the key; a
# recorded handshake replayed is refused.
source ./functions.sh
set -e
set -x

requires_built
requires nbdsh --version

make_cluster_dir
start_cluster 2
tessera volume create v --size 8M --replicas 2
start_nbdkit nbd v
nbdsh -u "$(nbd_uri nbd)" -c 'h.pwrite(b"k" * 4096, 0); h.flush()'

# Keys: the right one, another cluster's, and ones that must not load.
wrong="$CLUSTER/wrong.key"
$PYTHON -c 'import os; print(os.urandom(32).hex())' >"$wrong"
chmod 600 "$wrong"
[ "$(stat -c %a "$TESSERA_KEY_FILE")" = 600 ]
open_key="$CLUSTER/open.key"
cp "$TESSERA_KEY_FILE" "$open_key"
chmod 644 "$open_key"
short_key="$CLUSTER/short.key"
echo 0123abcd >"$short_key"
chmod 600 "$short_key"

ss1="unix:$CLUSTER/ss1.sock"
mds="unix:$CLUSTER/mds.sock"

# 1. Every server daemon x every client role, speaking the protocol by
# hand: the right key works; a wrong proof, no nonce and a replay are
# refused with EACCES and the connection closed.
$PYTHON - "$abs_top_srcdir/tests" "$TESSERA_KEY_FILE" "$wrong" \
        "$mds" "$ss1" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
import tessera_wire as tw

key = tw.load_key(sys.argv[2])
wrong = tw.load_key(sys.argv[3])
servers = {"mds": sys.argv[4], "storesrv": sys.argv[5]}
roles = {"cli": tw.ROLE_CLI, "plugin": tw.ROLE_PLUGIN,
         "storesrv": tw.ROLE_STORESRV, "mds": tw.ROLE_MDS}

def closed(s):
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True

def refused(name, fn):
    try:
        fn()
    except tw.ProtoError as e:
        assert e.status == tw.EACCES, (name, e)
        return
    except ValueError as e:   # we caught the server's bad proof
        raise AssertionError("%s: server proof rejected: %s" % (name, e))
    raise AssertionError("%s: accepted" % name)

for sname, addr in servers.items():
    for rname, role in roles.items():
        what = "%s <- %s" % (sname, rname)
        # The right key: authenticated, and a request is then served.
        s = tw.connect(addr)
        peer = tw.handshake(s, key, role)
        s.close()
        print(what, "right key: ok")

        # A wrong key: the server's proof does not verify for us, and
        # our proof is refused.
        s = tw.connect(addr)
        try:
            tw.handshake(s, wrong, role)
            raise AssertionError(what + ": wrong key accepted")
        except ValueError:
            pass                 # the server's proof fails with our key
        s.close()
        s = tw.connect(addr)
        cn = bytes(32)
        p = tw.decode_hello(tw.call(s, tw.OP_HELLO,
                                    tw.hello_payload(role, cn)))
        sn = p["auth"][:32]
        refused(what + " wrong proof", lambda: tw.call(
            s, tw.OP_AUTH,
            tw.proof(wrong, b"client", cn, sn, role, p["role"])))
        assert closed(s), what + ": open after a wrong proof"
        print(what, "wrong key: refused")

        # No key at all: a HELLO without a nonce.
        s = tw.connect(addr)
        refused(what + " no nonce",
                lambda: tw.call(s, tw.OP_HELLO, tw.hello_payload(role)))
        assert closed(s)
        print(what, "no key: refused")

        # A reflected proof: the server's own proof sent back as ours.
        s = tw.connect(addr)
        p = tw.decode_hello(tw.call(s, tw.OP_HELLO,
                                    tw.hello_payload(role, cn)))
        refused(what + " reflected", lambda: tw.call(s, tw.OP_AUTH,
                                                     p["auth"][32:]))
        print(what, "reflected proof: refused")

        # A recorded handshake replayed byte for byte: the server's fresh
        # nonce makes the recorded proof worthless.
        class Recorder:
            def __init__(self, sock):
                self.sock, self.sent = sock, []
            def sendall(self, b):
                self.sent.append(b)
                self.sock.sendall(b)
            def recv(self, n):
                return self.sock.recv(n)
        s = tw.connect(addr)
        rec = Recorder(s)
        tw.handshake(rec, key, role)
        sent = rec.sent
        s.close()
        s = tw.connect(addr)
        s.sendall(sent[0])
        r = tw.recv_frame(s)
        assert r and r[2] == tw.OK, r
        s.sendall(sent[1])
        r = tw.recv_frame(s)
        assert r and r[2] == tw.EACCES, (what, "replay", r)
        assert closed(s)
        print(what, "replay: refused")
PY

# 2. The CLI: right key, wrong key, no key, a key file others can read,
# a malformed key file; each refusal names the reason.
tessera status >/dev/null
TESSERA_KEY_FILE="$wrong" expect_fail "cluster key" tessera status
tessera --key-file "$TESSERA_KEY_FILE" status >/dev/null
expect_fail "cluster key" tessera --key-file "$wrong" status
expect_fail "no-such.key: No such file" \
    tessera --key-file "$CLUSTER/no-such.key" status
expect_fail "chmod 600" tessera --key-file "$open_key" status
expect_fail "hexadecimal" tessera --key-file "$short_key" status

# 3. The plugin: with a wrong key it cannot open the volume (MDS refuses);
# with no key file it does not start.
stop_nbdkit nbd
expect_fail "cluster key" nbdkit -f -U "$CLUSTER/bad.sock" \
    "$TESSERA_PLUGIN" key-file="$wrong" volume=v mds="$TESSERA_MDS" \
    timeout=2 open-timeout=2 --run 'nbdinfo "$uri"'
expect_fail "no-such.key" nbdkit -f -U "$CLUSTER/bad.sock" \
    "$TESSERA_PLUGIN" key-file="$CLUSTER/no-such.key" volume=v \
    mds="$TESSERA_MDS" --run true
# The right key still reads what was written.
start_nbdkit nbd v
nbdsh -u "$(nbd_uri nbd)" -c 'assert h.pread(4096, 0) == b"k" * 4096'
stop_nbdkit nbd

# 4. A storage server with a wrong key is refused by the MDS (it never
# registers, so never writes its pidfile) and the MDS logs the address.
"$TESSERA_STORESRV_BIN" --data "$CLUSTER/ss9" --key-file "$wrong" \
    --mds "$mds" --listen "unix:$CLUSTER/ss9.sock" --size 64M -f -v \
    -P "$CLUSTER/ss9.pid" >"$CLUSTER/ss9.log" 2>&1 &
ss9=$!
cleanup_fn "kill $ss9 2>/dev/null || :"
for (( i = 0; i < 100; ++i )); do
    grep -q "cluster key" "$CLUSTER/ss9.log" && break
    sleep 0.1
done
grep "cluster key" "$CLUSTER/ss9.log"
[ ! -s "$CLUSTER/ss9.pid" ]
kill "$ss9"; wait "$ss9" || :
grep -i "auth" "$CLUSTER/mds.log" | grep -i "fail\|refus"
[ "$(tessera --json server list | $PYTHON -c \
    'import json,sys; print(len(json.load(sys.stdin)["servers"]))')" = 2 ]

# 5. Mutual: a server that cannot prove the key (a fake MDS answering
# HELLO with a wrong proof) is refused by the CLI, the plugin and a
# storage server before they send anything else.
fake="$CLUSTER/fake.sock"
$PYTHON - "$abs_top_srcdir/tests" "$wrong" "$fake" \
        >"$CLUSTER/fake.log" 2>&1 <<'PY' &
import os, socket, sys, threading
sys.path.insert(0, sys.argv[1])
import tessera_wire as tw
wrong = tw.load_key(sys.argv[2])
ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
ls.bind(sys.argv[3]); ls.listen(16)
def serve(c):
    try:
        r = tw.recv_frame(c)
        if r is None:
            return
        h = tw.decode_hello(r[4])
        sn = os.urandom(32)
        mac = tw.proof(wrong, b"server", h["auth"], sn, h["role"],
                       tw.ROLE_MDS)
        c.sendall(tw.frame(tw.OP_HELLO,
                           tw.hello_payload(tw.ROLE_MDS, sn + mac),
                           flags=tw.FLAG_REPLY, tag=r[3]))
        r = tw.recv_frame(c)
        if r is not None:
            print("UNEXPECTED: got opcode", r[0], flush=True)
    except OSError:
        pass
    finally:
        c.close()
while True:
    c, _ = ls.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
fakepid=$!
cleanup_fn "kill $fakepid 2>/dev/null || :"
for (( i = 0; i < 100; ++i )); do [ -S "$fake" ] && break; sleep 0.1; done
expect_fail "failed to prove the cluster key" \
    tessera --mds "unix:$fake" status
expect_fail "failed to prove the cluster key" nbdkit -f -U "$CLUSTER/bad.sock" \
    "$TESSERA_PLUGIN" volume=v mds="unix:$fake" timeout=2 open-timeout=2 \
    --run 'nbdinfo "$uri"'
"$TESSERA_STORESRV_BIN" --data "$CLUSTER/ss8" \
    --key-file "$TESSERA_KEY_FILE" --mds "unix:$fake" \
    --listen "unix:$CLUSTER/ss8.sock" --size 64M -f -v \
    >"$CLUSTER/ss8.log" 2>&1 &
ss8=$!
cleanup_fn "kill $ss8 2>/dev/null || :"
for (( i = 0; i < 100; ++i )); do
    grep -q "failed to prove" "$CLUSTER/ss8.log" && break
    sleep 0.1
done
grep "failed to prove" "$CLUSTER/ss8.log"
kill "$ss8"; wait "$ss8" || :
if grep UNEXPECTED "$CLUSTER/fake.log"; then
    echo "$0: a client went on after a bad server proof"
    exit 1
fi

# The cluster is unharmed.
tessera --json status >/dev/null
tessera volume verify v

#!/usr/bin/env bash
# Malformed frames to the MDS get an error (or a close) and never take it
# down.  Before authentication: requests before HELLO, AUTH before HELLO,
# a HELLO without a nonce, oversized HELLO and AUTH, a wrong proof, a
# second HELLO, half a frame.  After it: truncated, oversized, unknown
# opcode, bad magic and version, HELLO or AUTH again, bad payloads of
# every MDS request.
source ./functions.sh
set -e
set -x

requires_built

make_cluster_dir
start_mds --handshake-timeout 2
start_storesrv 1
wait_servers_up 1

$PYTHON - "$CLUSTER/mds.sock" "$abs_top_srcdir/tests" <<'PY'
import os, socket, struct, sys, time
path = sys.argv[1]
sys.path.insert(0, sys.argv[2])
import tessera_wire as tw

key = tw.load_key(os.environ["TESSERA_KEY_FILE"])
ST = {"EBADMSG": 12, "EPROTO": 14, "EINVAL": 7, "ENOENT": 2, "EACCES": 18}
E = ST["EBADMSG"]

def frame(op, payload=b"", tag=7, **kw):
    return tw.frame(op, payload, tag=tag, **kw)

def conn():
    return tw.connect("unix:" + path)

def reply(s):
    r = tw.recv_frame(s)
    if r is None:
        return None
    op, flags, status, tag, payload = r
    assert flags & tw.FLAG_REPLY, r
    return op, status, payload

def closed(s, name, within=10):
    """The MDS closes S within WITHIN seconds."""
    s.settimeout(within)
    try:
        rest = s.recv(1)
    except ConnectionResetError:
        rest = b""
    except socket.timeout:
        raise AssertionError((name, "connection not closed"))
    assert rest == b"", (name, "unexpected data", rest)

def expect(name, data, statuses, closes=True, auth=True, hello=False,
           message=None):
    """Send DATA on a new connection (after the handshake if AUTH, after
    HELLO only if HELLO) and check the reply's status (None: closed) and
    MESSAGE if given."""
    s = conn()
    if auth:
        tw.handshake(s, key, tw.ROLE_CLI)
    elif hello:
        tw.call(s, tw.OP_HELLO,
                tw.hello_payload(tw.ROLE_CLI, os.urandom(tw.NONCE)))
    s.sendall(data)
    r = reply(s)
    if r is None:
        assert None in statuses, (name, "closed without a reply")
        print(f"{name}: closed")
    else:
        assert r[1] in statuses, (name, r)
        assert message is None or r[2] == message, (name, r)
        print(f"{name}: status {r[1]} message {r[2]!r}")
    if closes:
        closed(s, name)
    s.close()

# ---- Before authentication ----
nonce = os.urandom(tw.NONCE)
expect("request before HELLO", frame(10), {ST["EPROTO"]}, auth=False)
expect("map request before HELLO", frame(30, b"x" * 100), {ST["EPROTO"]},
       auth=False)
expect("AUTH before HELLO", frame(tw.OP_AUTH, bytes(32)), {ST["EPROTO"]},
       auth=False)
expect("HELLO without nonce",
       frame(tw.OP_HELLO, tw.hello_payload(tw.ROLE_CLI)),
       {ST["EACCES"]}, auth=False, message=b"authentication required")
expect("HELLO with a short nonce",
       frame(tw.OP_HELLO, tw.hello_payload(tw.ROLE_CLI, nonce[:16])),
       {ST["EACCES"]}, auth=False)
expect("HELLO of another version",
       frame(tw.OP_HELLO, tw.hello_payload(tw.ROLE_CLI, nonce, version=9)),
       {ST["EPROTO"]}, auth=False)
expect("malformed HELLO", frame(tw.OP_HELLO, b"\x00\x01"), {E}, auth=False)
expect("oversized HELLO",
       frame(tw.OP_HELLO, tw.hello_payload(tw.ROLE_CLI, nonce) + bytes(485)),
       {E}, auth=False)
expect("oversized HELLO header", frame(tw.OP_HELLO, length=1 << 30), {E},
       auth=False)
expect("oversized AUTH", frame(tw.OP_AUTH, bytes(513)), {E}, auth=False,
       hello=True)
expect("wrong proof", frame(tw.OP_AUTH, bytes(32)), {ST["EACCES"]},
       auth=False, hello=True, message=b"authentication failed")
expect("short proof", frame(tw.OP_AUTH, bytes(31)), {ST["EACCES"]},
       auth=False, hello=True)
expect("second HELLO",
       frame(tw.OP_HELLO, tw.hello_payload(tw.ROLE_CLI, nonce)),
       {ST["EPROTO"]}, auth=False, hello=True)
expect("request between HELLO and AUTH", frame(10), {ST["EPROTO"]},
       auth=False, hello=True)
expect("bad magic before HELLO", frame(10, magic=0x12345678), {E},
       auth=False)
expect("reply frame before HELLO", frame(tw.OP_HELLO, flags=tw.FLAG_REPLY),
       {ST["EPROTO"], E}, auth=False)

# The proof of another key is refused the same way.
s = conn()
try:
    tw.handshake(s, os.urandom(32), tw.ROLE_CLI)
    raise AssertionError("handshake with a wrong key succeeded")
except ValueError as e:
    print("wrong key: the client refuses the server's proof:", e)
s.close()

# Half a frame, or nothing at all: closed by the handshake timeout (2 s).
for name, data in (("half a header", frame(tw.OP_HELLO)[:10]),
                   ("half a HELLO",
                    frame(tw.OP_HELLO,
                          tw.hello_payload(tw.ROLE_CLI, nonce))[:40]),
                   ("nothing", b"")):
    s = conn()
    t0 = time.monotonic()
    s.sendall(data)
    closed(s, name, within=10)
    t = time.monotonic() - t0
    print(f"{name}: closed after {t:.1f} s")
    assert 1.5 < t < 6, (name, t)
    s.close()

# ---- After authentication ----
expect("bad magic", frame(10, magic=0x12345678), {E, None})
expect("bad version", frame(10, version=9), {ST["EPROTO"], None})
expect("unknown opcode", frame(99), {E, None})
expect("unknown flags", frame(10, flags=0x0100), {E, None})
expect("request with status", frame(10, status=3), {E, None})
expect("oversized length", frame(21, length=0xffffffff), {E, None})
expect("truncated header", frame(21)[:10], {None})
expect("truncated payload", frame(22, b"abc", length=100), {None})
expect("HELLO again", frame(tw.OP_HELLO, tw.hello_payload(tw.ROLE_CLI, nonce)),
       {ST["EPROTO"]})
expect("AUTH twice", frame(tw.OP_AUTH, bytes(32)), {ST["EPROTO"]})
# Bad payloads of valid requests get EBADMSG (or EINVAL), and the
# connection may stay open, but the daemon must survive either way.
for op in (11, 12, 16, 17, 20, 22, 23, 24, 25, 26, 27, 30, 31, 32):
    expect(f"short payload op {op}", frame(op, b"\x00\x01"),
           {E, ST["EINVAL"], None}, closes=False)
# A string length over its maximum.
expect("long name", frame(22, struct.pack(">QIIH", 0, 0, 0, 60000) + b"a" * 10),
       {E, None}, closes=False)
# A map request for a count of 0 and over the maximum.
for count in (0, 1 << 20):
    expect(f"map count {count}", frame(30, struct.pack(">QQQI", 1, 0, 0, count)),
           {E, ST["EINVAL"], ST["ENOENT"], None}, closes=False)

# An authenticated connection is served after all that.
s = conn()
tw.handshake(s, key, tw.ROLE_CLI)
tw.call(s, 10)
s.close()
print("malformed input: all answered")
PY

# The MDS is still serving, and logged the refusals.
tessera status
tessera volume create after --size 1M --replicas 1
kill -0 "$(cat "$CLUSTER/mds.pid")"
grep -E 'AUTH: authentication failed: wrong proof' "$CLUSTER/mds.log"
grep -E 'HELLO: authentication required: .* nonce of 0 bytes' \
    "$CLUSTER/mds.log"
grep -E 'before authentication: .*HELLO and AUTH expected first' \
    "$CLUSTER/mds.log"

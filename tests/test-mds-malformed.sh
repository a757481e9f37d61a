#!/usr/bin/env bash
# Malformed frames to the MDS get an error (or a close) and never take it
# down: truncated, oversized, unknown opcode, bad magic and version,
# requests before HELLO, bad payloads of every MDS request.
source ./functions.sh
set -e
set -x

requires_built

make_cluster_dir
start_cluster 1

$PYTHON - "$CLUSTER/mds.sock" <<'PY'
import socket, struct, sys
path = sys.argv[1]
MAGIC = 0x54455353
REPLY = 0x8000
ST = {"EBADMSG": 12, "EPROTO": 14, "EINVAL": 7, "ENOENT": 2}

def frame(op, payload=b"", magic=MAGIC, version=1, flags=0, status=0,
          length=None, tag=7):
    if length is None:
        length = len(payload)
    return struct.pack(">IBBHIIQ", magic, version, op, flags, status,
                       length, tag) + payload

def hello():
    return frame(1, struct.pack(">II16sHH", 1, 1, bytes(16), 0, 0))

def conn():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    return s

def recv_exact(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            return None
        b += c
    return b

def reply(s):
    h = recv_exact(s, 24)
    if h is None:
        return None
    magic, ver, op, flags, status, length, tag = struct.unpack(">IBBHIIQ", h)
    assert magic == MAGIC and flags & REPLY, h
    return op, status, recv_exact(s, length)

def expect(name, data, statuses, closes=True, with_hello=True):
    s = conn()
    if with_hello:
        s.sendall(hello())
        r = reply(s)
        assert r and r[1] == 0, r
    s.sendall(data)
    r = reply(s)
    if r is None:
        assert None in statuses, (name, "closed without a reply")
        print(f"{name}: closed")
    else:
        assert r[1] in statuses, (name, r)
        print(f"{name}: status {r[1]} message {r[2]!r}")
    if closes:
        try:
            rest = s.recv(1)
        except (ConnectionResetError, socket.timeout):
            rest = b""
        assert rest == b"", (name, "connection not closed")
    s.close()

E = ST["EBADMSG"]
expect("bad magic", frame(10, magic=0x12345678), {E, None})
expect("bad version", frame(10, version=9), {ST["EPROTO"], None})
expect("unknown opcode", frame(99), {E, None})
expect("unknown flags", frame(10, flags=0x0100), {E, None})
expect("request with status", frame(10, status=3), {E, None})
expect("oversized length", frame(21, length=0xffffffff), {E, None})
expect("before hello", frame(21), {ST["EPROTO"]}, with_hello=False)
expect("truncated header", frame(21)[:10], {None})
expect("truncated payload", frame(22, b"abc", length=100), {None})
# Bad payloads of valid requests get EBADMSG (or EINVAL), and the
# connection may stay open, but the daemon must survive either way.
for op in (11, 12, 20, 22, 23, 24, 25, 26, 27, 30, 31, 32):
    expect(f"short payload op {op}", frame(op, b"\x00\x01"),
           {E, ST["EINVAL"], None}, closes=False)
# A string length over its maximum.
expect("long name", frame(22, struct.pack(">QIIH", 0, 0, 0, 60000) + b"a" * 10),
       {E, None}, closes=False)
# A map request for a count of 0 and over the maximum.
for count in (0, 1 << 20):
    expect(f"map count {count}", frame(30, struct.pack(">QQQI", 1, 0, 0, count)),
           {E, ST["EINVAL"], ST["ENOENT"], None}, closes=False)
print("malformed input: all answered")
PY

# The MDS is still serving.
tessera status
tessera volume create after --size 1M --replicas 1
kill -0 "$(cat "$CLUSTER/mds.pid")"

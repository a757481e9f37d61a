#!/usr/bin/env bash
# --frame-timeout: a storage server closes an authenticated connection
# that stalls in the middle of a frame (a SEG_WRITE header announcing
# 1 MiB and 100 bytes of it; part of a header), logging the peer, while
# idle connections between frames stay open and real clients are
# served.
source ./functions.sh
set -e
set -x

requires_built
requires nbdsh --version

make_cluster_dir
start_mds
start_storesrv 1 --listen 127.0.0.1:0 --frame-timeout 2
wait_servers_up 1
addr="$(grep -o 'serving .* on 127\.0\.0\.1:[0-9]*' "$CLUSTER/ss1.log" |
        tail -n 1 | sed 's/.* on //')"
[ -n "$addr" ]
tessera volume create ftvol --size 4M --replicas 1
start_nbdkit ft ftvol

timeout 120 $PYTHON - "$abs_top_srcdir/tests" "$addr" "$(nbd_uri ft)" \
        "$CLUSTER/ss1.log" <<'PY'
import os, struct, subprocess, sys, time
sys.path.insert(0, sys.argv[1])
import tessera_wire as tw
addr, uri, log = sys.argv[2], sys.argv[3], sys.argv[4]
key = tw.load_key(os.environ["TESSERA_KEY_FILE"])
TIMEOUT = 2
OP_SEG_READ, OP_SEG_WRITE = 40, 41
SEG = 1 << 62 | 12345

def authed():
    s = tw.connect(addr)
    peer = tw.handshake(s, key, tw.ROLE_CLI)
    assert peer["role"] == tw.ROLE_STORESRV, peer
    return s

ENOENT = 2

def read_zeros(s, tag):
    # SEG_READ of 512 bytes of a segment no one wrote: answered ENOENT
    # (the server does not hold it; the plugin then reads zeros).
    head = struct.pack(">QQQQIIQ", SEG, 1, 1, 0, 0, 512, 0)
    try:
        tw.call(s, OP_SEG_READ, head, tag=tag)
        raise AssertionError("SEG_READ of an absent segment succeeded")
    except tw.ProtoError as e:
        assert e.status == ENOENT, e

def name(s):
    host, port = s.getsockname()[:2]
    return f"{host}:{port}"

idle = authed()
read_zeros(idle, 1)
# Frames sent together are all answered.
head = struct.pack(">QQQQIIQ", SEG, 1, 1, 0, 0, 512, 0)
idle.sendall(b"".join(tw.frame(OP_SEG_READ, head, tag=t)
                      for t in range(10, 15)))
tags = set()
for _ in range(5):
    op, flags, status, tag, p = tw.recv_frame(idle)
    assert status == ENOENT, (status, p)
    tags.add(tag)
assert tags == set(range(10, 15)), tags
stall_payload = authed()
stall_header = authed()
stalled = [stall_payload, stall_header]

# A SEG_WRITE header announcing 48 + 1 MiB bytes, then 108 of them; and
# 10 bytes of a header.
io = struct.pack(">QQQQIIQ", SEG, 1, 1, 0, 0, 1 << 20, 0)
frame = tw.frame(OP_SEG_WRITE, io + bytes(60), tag=2,
                 length=len(io) + (1 << 20))
stall_payload.sendall(frame)
stall_header.sendall(tw.frame(OP_SEG_READ, io, tag=3)[:10])
t0 = time.monotonic()

# Meanwhile a real client writes and reads back exact bytes.
script = """
import os
a = os.urandom(300000)
h.pwrite(a, 54321)
h.flush()
assert h.pread(len(a), 54321) == a
assert h.pread(4096, 4 * 1048576 - 4096) == bytes(4096)
"""
nbd = subprocess.Popen(["nbdsh", "-u", uri, "-c", script])

closed_at = {s: t - t0 for s, t in tw.wait_closed(stalled, t0 + 10).items()}
print("stalled connections closed after",
      ", ".join(f"{t:.2f} s" for t in closed_at.values()))
assert len(closed_at) == len(stalled), closed_at
for t in closed_at.values():
    assert 1.5 < t < 6, t

rc = nbd.wait(timeout=60)
print(f"NBD client during the stalls: exit {rc}")
assert rc == 0, rc

# The idle connection outlives the timeout twice over and is served.
time.sleep(max(0, t0 + 4.5 - time.monotonic()))
assert not tw.closed_by_server(idle), "idle connection closed"
read_zeros(idle, 4)
print(f"idle connection still served after {time.monotonic() - t0:.1f} s")

# The log names each stalled peer once, with what had arrived.
with open(log) as f:
    lines = [l for l in f if "frame incomplete after 2 s" in l]
print("".join(lines))
assert len(lines) == 2, lines
assert any(name(stall_payload) + ": SEG_WRITE: frame incomplete" in l and
           "(108 of 1048624 payload bytes)" in l for l in lines), lines
assert any(name(stall_header) + ": frame incomplete" in l and
           "(10 of 24 header bytes)" in l for l in lines), lines
for s in stalled + [idle]:
    s.close()
PY

# The plugin's connection to the server, idle since, still serves.
nbdsh -u "$(nbd_uri ft)" \
      -c 'assert h.pread(4, 4 * 1048576 - 4) == bytes(4)'
[ "$(grep -c 'frame incomplete' "$CLUSTER/ss1.log")" -eq 2 ]
kill -0 "$(cat "$CLUSTER/ss1.pid")"

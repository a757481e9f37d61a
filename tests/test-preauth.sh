#!/usr/bin/env bash
# Before authentication a daemon holds a connection cheaply and for a
# bounded time: 1,000 idle TCP connections cost little memory and no
# thread, do not lock out a real client, and are closed by the handshake
# timeout; --max-connections refusals are EAGAIN.  One section (shell
# function) per daemon.
source ./functions.sh
set -e
set -x

requires_built
# The test holds 1,000 sockets at once.
if ! ulimit -n 4096 2>/dev/null; then
    echo "$0: cannot raise the open files limit to 4096: skipping"
    exit 77
fi

make_cluster_dir

# mds_tcp_address: the TCP address the MDS last said it listens on.
mds_tcp_address ()
{
    grep -o 'listening on 127\.0\.0\.1:[0-9]*' "$CLUSTER/mds.log" |
        tail -n 1 | sed 's/^listening on //'
}

# restart_mds_tcp OPTIONS...: (re)start the MDS on 127.0.0.1, an
# ephemeral port, and point TESSERA_MDS at it.
restart_mds_tcp ()
{
    stop_pidfile "$CLUSTER/mds.pid"
    start_mds --listen 127.0.0.1:0 "$@"
    TESSERA_MDS="$(mds_tcp_address)"
    export TESSERA_MDS
    [ -n "$TESSERA_MDS" ]
}

# ---- The MDS ----
preauth_mds ()
{
    local pid

    # 1. A flood of 1,000 idle connections: a real client still gets in
    # within a few seconds; the MDS stays small and starts no thread
    # for them; beyond --max-unauthenticated (256) the oldest are
    # dropped at once.
    restart_mds_tcp --handshake-timeout 60
    pid="$(cat "$CLUSTER/mds.pid")"
    $PYTHON - "$abs_top_srcdir/tests" "$TESSERA_MDS" "$pid" \
            "$TESSERA_BIN" <<'PY'
import os, socket, subprocess, sys, time
sys.path.insert(0, sys.argv[1])
import tessera_wire as tw
addr, pid, tessera = sys.argv[2], sys.argv[3], sys.argv[4]

def proc_status(field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])

rss0, threads0 = proc_status("VmRSS"), proc_status("Threads")
socks = [tw.connect(addr) for _ in range(1000)]
# Let the MDS accept them all: it closes the oldest beyond 256.
deadline = time.monotonic() + 30
while True:
    time.sleep(0.5)
    ndropped = sum(tw.closed_by_server(s) for s in socks[:744])
    if ndropped == 744 or time.monotonic() > deadline:
        break
nopen = sum(not tw.closed_by_server(s) for s in socks[744:])
rss, threads = proc_status("VmRSS"), proc_status("Threads")
print(f"MDS with 1000 idle connections: RSS {rss} KiB (before {rss0} KiB), "
      f"threads {threads} (before {threads0}); dropped {ndropped} of the "
      f"oldest 744, the newest 256 still open: {nopen}")
assert ndropped == 744, ndropped
assert nopen == 256, nopen
assert rss < 64 * 1024, rss
assert threads <= threads0, (threads0, threads)

t0 = time.monotonic()
r = subprocess.run([tessera, "--mds", addr, "status"], timeout=60,
                   capture_output=True, text=True)
t = time.monotonic() - t0
print(f"tessera status during the flood: exit {r.returncode} in {t:.2f} s")
print(r.stdout, r.stderr)
assert r.returncode == 0 and t < 5, (r.returncode, t)
for s in socks:
    s.close()
PY
    # The MDS logs the drops once, not 744 times.
    grep -c 'oldest dropped for newer ones' "$CLUSTER/mds.log"
    [ "$(grep -c 'oldest dropped for newer ones' "$CLUSTER/mds.log")" -le 2 ]

    # 2. The handshake timeout closes idle connections, and those that
    # sent half a frame or stopped between HELLO and AUTH.
    restart_mds_tcp --handshake-timeout 2
    $PYTHON - "$abs_top_srcdir/tests" "$TESSERA_MDS" <<'PY'
import os, sys, time
sys.path.insert(0, sys.argv[1])
import tessera_wire as tw
addr = sys.argv[2]

t0 = time.monotonic()
socks = [tw.connect(addr) for _ in range(200)]
socks[0].sendall(tw.frame(tw.OP_HELLO)[:10])
tw.call(socks[1], tw.OP_HELLO,
        tw.hello_payload(tw.ROLE_CLI, os.urandom(tw.NONCE)))
closed_at = tw.wait_closed(socks, t0 + 10)
times = sorted(t - t0 for t in closed_at.values())
print(f"{len(times)} of {len(socks)} idle connections closed by the MDS, "
      f"after {times[0]:.2f} to {times[-1]:.2f} s" if times else "none")
assert len(times) == len(socks), len(times)
assert 1.5 < times[0] and times[-1] < 5, (times[0], times[-1])
PY
    tessera status >/dev/null

    # 3. --max-connections: authenticated connections beyond it are
    # refused with EAGAIN, until one goes away.
    restart_mds_tcp --max-connections 3
    $PYTHON - "$abs_top_srcdir/tests" "$TESSERA_MDS" "$TESSERA_BIN" <<'PY'
import os, subprocess, sys, time
sys.path.insert(0, sys.argv[1])
import tessera_wire as tw
addr, tessera = sys.argv[2], sys.argv[3]
key = tw.load_key(os.environ["TESSERA_KEY_FILE"])
EAGAIN = 16

held = []
for _ in range(3):
    s = tw.connect(addr)
    tw.handshake(s, key, tw.ROLE_CLI)
    held.append(s)
s = tw.connect(addr)
try:
    tw.handshake(s, key, tw.ROLE_CLI)
    raise AssertionError("a fourth connection was served")
except tw.ProtoError as e:
    print("fourth connection:", e)
    assert e.status == EAGAIN and "too many connections" in e.message, e
s.close()
r = subprocess.run([tessera, "--mds", addr, "status"], timeout=60,
                   capture_output=True, text=True)
print("tessera status:", r.returncode, r.stderr)
assert r.returncode != 0 and "too many connections" in r.stderr, r
# The held connections are served; once one closes, a new one is.
tw.call(held[0], 10)
held.pop().close()
deadline = time.monotonic() + 10
while True:
    r = subprocess.run([tessera, "--mds", addr, "status"], timeout=60,
                       capture_output=True, text=True)
    if r.returncode == 0 or time.monotonic() > deadline:
        break
    time.sleep(0.1)
assert r.returncode == 0, r
print("served again once a connection closed")
PY
    grep 'refused: too many connections' "$CLUSTER/mds.log"
    stop_pidfile "$CLUSTER/mds.pid"
}

# ---- The storage server ----
preauth_storesrv ()
{
    local pid addr n

    TESSERA_MDS="unix:$CLUSTER/mds.sock"
    export TESSERA_MDS
    start_mds
    # Server 1 on TCP holds up to 2,000 connections in the handshake
    # and closes them after 6 s; server 2 drops the oldest beyond 100.
    start_storesrv 1 --listen 127.0.0.1:0 --handshake-timeout 6 \
        --max-unauthenticated 2000
    start_storesrv 2 --handshake-timeout 60 --max-unauthenticated 100
    wait_servers_up 2
    addr="$(grep -o 'serving .* on 127\.0\.0\.1:[0-9]*' "$CLUSTER/ss1.log" |
            tail -n 1 | sed 's/.* on //')"
    [ -n "$addr" ]
    pid="$(cat "$CLUSTER/ss1.pid")"
    tessera volume create pvol --size 1M --replicas 2
    # The plugin connects to a storage server on first use: during the
    # flood.
    start_nbdkit pa pvol

    # 1. 1,000 idle TCP connections: the server holds them in little
    # memory while an NBD client reads and writes exact bytes, and the
    # handshake timeout closes them.
    $PYTHON - "$abs_top_srcdir/tests" "$addr" "$pid" "$(nbd_uri pa)" <<'PY'
import os, subprocess, sys, time
sys.path.insert(0, sys.argv[1])
import tessera_wire as tw
addr, pid, uri = sys.argv[2], sys.argv[3], sys.argv[4]
TIMEOUT = 6

def rss():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

def nfds():
    return len(os.listdir(f"/proc/{pid}/fd"))

rss0, fds0 = rss(), nfds()
t_first = time.monotonic()
socks = [tw.connect(addr) for _ in range(1000)]
t_last = time.monotonic()
deadline = t_last + 5
while nfds() < fds0 + 1000 and time.monotonic() < deadline:
    time.sleep(0.1)
held, rss1 = nfds() - fds0, rss()
print(f"storage server with {held} idle connections: RSS {rss1} KiB "
      f"(before {rss0} KiB, {(rss1 - rss0) * 1024 // 1000} bytes each)")
assert held >= 1000, held
assert rss1 < 64 * 1024 and rss1 - rss0 < 8 * 1024, (rss0, rss1)

script = """
import os
a = os.urandom(200000)
h.pwrite(a, 12345)
assert h.pread(len(a), 12345) == a
h.flush()
assert h.pread(4096, 1048576 - 4096) == bytes(4096)
"""
t0 = time.monotonic()
r = subprocess.run(["nbdsh", "-u", uri, "-c", script], timeout=60)
t = time.monotonic() - t0
print(f"NBD client during the flood: exit {r.returncode} in {t:.2f} s")
assert r.returncode == 0 and t < 5, (r.returncode, t)
if time.monotonic() < t_first + TIMEOUT - 0.5:
    assert nfds() - fds0 >= 1000, nfds() - fds0

closed_at = tw.wait_closed(socks, t_last + TIMEOUT + 10)
times = sorted(closed_at.values())
print(f"{len(times)} of {len(socks)} closed by the handshake timeout "
      f"({TIMEOUT} s): the first {times[0] - t_first:.2f} s after the first "
      f"connected, the last {times[-1] - t_last:.2f} s after the last"
      if times else "none closed")
assert len(times) == len(socks), len(times)
assert times[0] > t_first + TIMEOUT - 0.5, times[0] - t_first
assert times[-1] < t_last + TIMEOUT + 4, times[-1] - t_last
for s in socks:
    s.close()
PY

    # 2. Beyond --max-unauthenticated the oldest are dropped at once, and
    # a real client still gets in; the drops are logged in a line or two.
    $PYTHON - "$abs_top_srcdir/tests" "unix:$CLUSTER/ss2.sock" \
            "$TESSERA_BIN" <<'PY'
import os, struct, subprocess, sys, time
sys.path.insert(0, sys.argv[1])
import tessera_wire as tw
addr, tessera = sys.argv[2], sys.argv[3]
key = tw.load_key(os.environ["TESSERA_KEY_FILE"])

def connect():
    # A unix socket's backlog may be full for a moment: retry.
    for _ in range(1000):
        try:
            return tw.connect(addr)
        except BlockingIOError:
            time.sleep(0.01)
    return tw.connect(addr)

socks = [connect() for _ in range(300)]
deadline = time.monotonic() + 20
while True:
    time.sleep(0.2)
    ndropped = sum(tw.closed_by_server(s) for s in socks[:200])
    if ndropped == 200 or time.monotonic() > deadline:
        break
nopen = sum(not tw.closed_by_server(s) for s in socks[200:])
print(f"dropped {ndropped} of the oldest 200, newest 100 open: {nopen}")
assert ndropped == 200 and nopen == 100, (ndropped, nopen)

s = tw.connect(addr)
peer = tw.handshake(s, key, tw.ROLE_CLI)
assert peer["role"] == tw.ROLE_STORESRV, peer
# SEG_READ (40) of 512 bytes of a segment no one wrote: served,
# answered ENOENT (2: the server does not hold it).
head = struct.pack(">QQQQIIQ", 1 << 62 | 12345, 1, 1, 0, 0, 512, 0)
try:
    tw.call(s, 40, head, tag=7)
    raise AssertionError("SEG_READ of an absent segment succeeded")
except tw.ProtoError as e:
    assert e.status == 2, e
s.close()
r = subprocess.run([tessera, "volume", "verify", "pvol"], timeout=60,
                   capture_output=True, text=True)
print("tessera volume verify during the flood:", r.returncode, r.stdout,
      r.stderr)
assert r.returncode == 0, r
for s in socks:
    s.close()
PY
    grep 'dropping the oldest\|unauthenticated connections at the' \
        "$CLUSTER/ss2.log"
    n="$(grep -c 'dropping the oldest' "$CLUSTER/ss2.log")"
    [ "$n" -ge 1 ] && [ "$n" -le 2 ]

    # 3. --max-connections: authenticated connections beyond it get
    # EAGAIN, until one goes away.  (The MDS may hold one too.)
    stop_nbdkit pa
    stop_storesrv 2
    start_storesrv 2 --max-connections 2
    $PYTHON - "$abs_top_srcdir/tests" "unix:$CLUSTER/ss2.sock" <<'PY'
import os, sys, time
sys.path.insert(0, sys.argv[1])
import tessera_wire as tw
addr = sys.argv[2]
key = tw.load_key(os.environ["TESSERA_KEY_FILE"])
EAGAIN = 16

held, refused = [], None
for _ in range(3):
    s = tw.connect(addr)
    try:
        tw.handshake(s, key, tw.ROLE_CLI)
        held.append(s)
    except tw.ProtoError as e:
        refused = e
        s.close()
        break
print(f"{len(held)} served, then: {refused}")
assert refused is not None and len(held) <= 2, (len(held), refused)
assert refused.status == EAGAIN, refused
assert "too many connections" in refused.message, refused
held.pop().close()
deadline = time.monotonic() + 10
while True:
    s = tw.connect(addr)
    try:
        tw.handshake(s, key, tw.ROLE_CLI)
        break
    except tw.ProtoError as e:
        s.close()
        assert e.status == EAGAIN and time.monotonic() < deadline, e
        time.sleep(0.1)
print("served again once a connection closed")
PY
    grep 'too many connections' "$CLUSTER/ss2.log"
    kill -0 "$(cat "$CLUSTER/ss1.pid")" "$(cat "$CLUSTER/ss2.pid")"
}

preauth_mds
preauth_storesrv

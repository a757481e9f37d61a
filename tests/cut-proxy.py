#!/usr/bin/python3
# A fault-injecting proxy for Tessera's wire protocol (used by
# tests/test-fail-cut.sh and tests/test-fail-late-write.sh).
#
#   cut-proxy.py serve --control unix:CTL --route NAME LISTEN TARGET ...
#                [--log FILE] [--ready FILE] [--gap N] [--chain N]
#                [--hold S] [--protocol-h PATH] [-v]
#   cut-proxy.py ctl unix:CTL JSON...
#   cut-proxy.py wait unix:CTL --timeout S
#
# "serve" listens on each route's LISTEN address (unix:PATH, HOST:PORT or
# [V6]:PORT) and connects every connection it accepts to the route's
# TARGET.  It reads whole frames in both directions (the 24-byte header:
# magic "TESS", version, opcode, flags, status, length, tag; then LENGTH
# payload bytes: tessera-protocol(5)) and forwards them, unless a queued
# fault matches the frame.  It notes the role a client names in its
# HELLO, and which process the client is (SO_PEERCRED on unix sockets).
#
# Faults wait in named queues.  Only the head of each queue is armed,
# and the next one once the head's connection has been torn down: the
# queues run in parallel, the faults of one queue one after the other.
# A fault matches the frames of ROUTE (a glob of route names), DIR
# ("c2s": client to server, or "s2c"), OP (opcode name or number), ROLE
# (the client's role, "any" by default) and CLIENT (a "pid:N" or a list
# of them, "any" by default).  Actions:
#
#   cut AT      forward the first AT bytes of the frame, then close both
#               sides (AT from 0 to header+payload-1; a negative AT counts
#               from the end of the frame; "end": the whole frame)
#   stall AT    forward the first AT bytes, then nothing either way
#               until a side closes (or HOLD seconds pass)
#   delay       forward nothing more in the frame's direction for HOLD
#               seconds, then the frame and everything after it, in
#               order, and go on as usual (the other direction flows
#               meanwhile): a frame late in the network.  A sender that
#               closed meanwhile does not lose it: the held data reaches
#               the receiver before the end of stream, as TCP data in
#               flight would.  The fault is done once the frame is sent
#               ({"delayed": HOLD, "sent": LENGTH}); later faults may
#               then fire on the connection.
#   short AT    rewrite the length to AT (less than the payload length;
#               negative: from the end) and send that well-formed but
#               truncated frame
#   oversize AT rewrite the length to AT (say 0xffffffff), send the frame
#   magic       corrupt the magic number, send the frame
#
# After short, oversize and magic the proxy goes on forwarding and
# watches the receiver: it records whether the receiver answered that
# tag (and with which status) and whether it closed its end within HOLD
# seconds (if the sender closes first, the receiver is not told), then
# closes both sides.  SKIP lets that many matching frames pass first
# (to fault the K-th frame: SKIP = K-1).
#
# Pacing, so that a fault tests one failure rather than a client that
# fails over and over: after a fault fires for a client, the next GAP
# frames of that queue from that client on that route pass unharmed;
# and once CHAIN faults have fired for a client on a route, no more do
# until a request of that client there has been answered (an OK reply
# other than HELLO's or AUTH's).
#
# The control socket takes one JSON object per line and answers one:
#
#   {"cmd": "plan", "faults": [{"queue": Q, "route": R, "dir": D,
#        "op": OP, "role": ROLE, "client": C, "action": A, "at": N,
#        "skip": K, "hold": S}, ...]}
#   {"cmd": "autoplan", "route": R, "role": ROLE, "client": C,
#        "actions": ["cut", "modify"], "exclude": [OP...],
#        "only": [OP...], "payload_every": 64, "queue_prefix": P}
#        queue faults for every (direction, opcode) seen so far on routes
#        R and not planned before, each in its own queue "R:DIR/OP":
#        "cut" at the offsets of cut_offsets (every header offset, every
#        offset of the first payload_every payload bytes, a sample
#        beyond), "modify" (queue "R:DIR/OP/modify"): short to none and
#        to all but the last payload byte, oversize to the opcode's
#        limit + 1, to PROTO_MAX_IO_PAYLOAD + 1 and to 0xffffffff, and
#        bad magic
#   {"cmd": "status"}    queued and active faults, completed count, and
#                        the frames seen per route, direction and opcode
#   {"cmd": "results", "since": N}   completed faults, from the N-th on
#   {"cmd": "clear"}     drop every queued fault (active ones finish)
#
# Each fault, when done, is also logged as a JSON line to the log file
# (default: stderr).  "ctl" sends its arguments and prints the answers;
# "wait" polls until no fault is queued or active, prints the status and
# exits 0, or exits 1 after the timeout.
#
# Run with /usr/bin/python3 (stdlib only).

import argparse
import collections
import fnmatch
import itertools
import json
import os
import re
import socket
import struct
import sys
import threading
import time

HDR = struct.Struct(">IBBHIIQ")
HEADER_SIZE = 24
LENGTH_AT = struct.calcsize(">IBBHI")  # offset of the length field
MAGIC = 0x54455353
FLAG_REPLY = 0x8000
MAX_DATA = 32 * 1024 * 1024
MAX_IO_PAYLOAD = MAX_DATA + 4096
MAX_META_PAYLOAD = 4 * 1024 * 1024

# Opcode names; --protocol-h reads the current list from protocol.h.
OPS = {
    1: "HELLO", 2: "AUTH", 10: "STATUS", 11: "SERVER_REGISTER",
    12: "SERVER_HEARTBEAT", 13: "SERVER_LIST", 14: "SERVER_DRAIN",
    15: "SERVER_REMOVE", 16: "CATALOG_BACKUP", 17: "REPL_PULL", 20: "VOL_CREATE",
    21: "VOL_LIST", 22: "VOL_INFO",
    23: "VOL_RESIZE", 24: "VOL_DELETE", 25: "VOL_OPEN", 26: "VOL_CLOSE",
    27: "LEASE_RENEW", 28: "EPOCH_NEXT", 29: "EPOCH_CLEAN", 30: "MAP_GET",
    31: "MAP_ALLOC", 32: "REPLICA_FAILED", 33: "MAP_RAISE_GEN",
    35: "REPAIR", 36: "SEG_RESYNC",
    40: "SEG_READ", 41: "SEG_WRITE", 42: "SEG_FLUSH", 43: "SEG_TRIM",
    44: "SEG_DELETE", 45: "SEG_FENCE", 46: "SEG_SET_GEN", 47: "SEG_PULL",
    48: "SEG_HASH", 49: "SEG_LIST", 50: "TABLES_PUT", 51: "TABLES_GET",
    52: "SEG_DESCRIBE",
}
ROLES = {1: "cli", 2: "plugin", 3: "storesrv", 4: "mds"}
STATUS = {
    0: "OK", 1: "EPERM", 2: "ENOENT", 3: "EIO", 4: "ENOMEM", 5: "EBUSY",
    6: "EEXIST", 7: "EINVAL", 8: "ENOSPC", 9: "EROFS", 10: "ERANGE",
    11: "ENOTSUP", 12: "EBADMSG", 13: "ESTALE", 14: "EPROTO",
    15: "ETIMEDOUT", 16: "EAGAIN", 17: "EFBIG", 18: "EACCES",
    19: "ESTALEMAP",
}
ACTIONS = ("cut", "stall", "delay", "short", "oversize", "magic")
HANDSHAKE = (1, 2)  # HELLO, AUTH
OP_HELLO = 1
# The largest payload of HELLO and AUTH, if protocol.h has the limit.
max_preauth_payload = None

log_lock = threading.Lock()
log_file = sys.stderr
verbose = False


def log(obj):
    """Write one log line: a JSON object, or a message."""
    line = json.dumps(obj, sort_keys=True) if isinstance(obj, dict) else obj
    with log_lock:
        log_file.write("%.3f %s\n" % (time.time(), line))
        log_file.flush()


def op_name(op):
    """The name of opcode OP, or its number as a string."""
    return OPS.get(op, str(op))


def op_number(name):
    """The opcode of NAME (a name or a number)."""
    if isinstance(name, int):
        return name
    if str(name).isdigit():
        return int(name)
    for k, v in OPS.items():
        if v == name:
            return k
    raise ValueError("unknown opcode %r" % name)


def op_max_payload(op):
    """The largest payload a receiver accepts for opcode OP."""
    if op_name(op) in ("SEG_READ", "SEG_WRITE"):
        return MAX_IO_PAYLOAD
    if op in HANDSHAKE and max_preauth_payload is not None:
        return max_preauth_payload
    return MAX_META_PAYLOAD


def load_protocol_h(path):
    """Read the opcode names (X (NAME, N, ...) in opcodes.def, beside
    protocol.h) and the pre-auth payload limit from protocol.h."""
    global max_preauth_payload
    with open(path) as f:
        text = f.read()
    for m in re.finditer(r"PROTO_OP_(\w+)\s*=\s*(\d+)", text):
        OPS[int(m.group(2))] = m.group(1)
    def_path = os.path.join(os.path.dirname(path), "opcodes.def")
    if os.path.exists(def_path):
        with open(def_path) as f:
            for m in re.finditer(r"^X \((\w+),\s*(\d+),", f.read(),
                                 re.MULTILINE):
                OPS[int(m.group(2))] = m.group(1)
    m = re.search(r"#define\s+PROTO_MAX_PREAUTH_PAYLOAD\s+(\d+)", text)
    if m:
        max_preauth_payload = int(m.group(1))


def parse_addr(addr):
    """(family, sockaddr) of unix:PATH, HOST:PORT or [V6]:PORT."""
    if addr.startswith("unix:"):
        return socket.AF_UNIX, addr[5:]
    if addr.startswith("["):
        host, sep, port = addr[1:].partition("]:")
        if not sep:
            raise ValueError("bad address %r" % addr)
        return socket.AF_INET6, (host, int(port))
    host, sep, port = addr.rpartition(":")
    if not sep:
        raise ValueError("bad address %r" % addr)
    return socket.AF_INET, (host, int(port))


def listen(addr):
    """A socket listening on ADDR (a unix socket file is replaced)."""
    family, sa = parse_addr(addr)
    s = socket.socket(family, socket.SOCK_STREAM)
    if family == socket.AF_UNIX:
        try:
            os.unlink(sa)
        except FileNotFoundError:
            pass
    else:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(sa)
    s.listen(64)
    return s


def connect(addr, timeout=5):
    """A socket connected to ADDR."""
    family, sa = parse_addr(addr)
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(sa)
    s.settimeout(None)
    if family != socket.AF_UNIX:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def peer_id(s):
    """Which client process this is: its pid on a unix socket."""
    if s.family == socket.AF_UNIX:
        cred = s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                            struct.calcsize("3i"))
        return "pid:%d" % struct.unpack("3i", cred)[0]
    return "tcp:%s" % s.getpeername()[0]


def resolve_at(at, total):
    """The byte count that AT (int, negative from the end, or "end")
    forwards of a frame of TOTAL bytes, or None if it does not fit."""
    if at == "end":
        return total
    n = at if at >= 0 else total + at
    return n if 0 <= n < total else None


class Fault:
    """One queued fault and, once fired, its outcome."""

    def __init__(self, fid, spec, gap, hold):
        self.id = fid
        self.action = spec.get("action", "cut")
        if self.action not in ACTIONS:
            raise ValueError("unknown action %r" % self.action)
        self.route = spec.get("route", "*")
        self.dir = spec.get("dir", "c2s")
        if self.dir not in ("c2s", "s2c"):
            raise ValueError("dir must be c2s or s2c")
        self.op = op_number(spec["op"])
        self.role = spec.get("role", "any")
        client = spec.get("client", "any")
        self.client = client if isinstance(client, list) else [client]
        self.at = spec.get("at", 0)
        if self.action == "magic":
            self.at = 0
        elif self.at != "end" and not isinstance(self.at, int):
            raise ValueError("bad at %r" % self.at)
        self.skip = int(spec.get("skip", 0))
        self.hold = float(spec.get("hold", hold))
        self.queue = spec.get("queue") or "%s:%s/%s" % (
            self.route, self.dir, op_name(self.op))
        self.gap = gap
        self.outcome = None

    def describe(self):
        """The fault as a dict, for logs and results."""
        return dict(id=self.id, queue=self.queue, route=self.route,
                    dir=self.dir, op=op_name(self.op), role=self.role,
                    client=self.client, action=self.action, at=self.at)

    def fits(self, plen, total):
        """Whether the fault can act on a frame of this size."""
        if self.action in ("cut", "stall"):
            return resolve_at(self.at, total) is not None
        if self.action == "short":
            n = self.at if self.at >= 0 else plen + self.at
            return 0 <= n < plen
        return True

    def matches(self, conn, direction, op, plen, total):
        """Whether the fault acts on this frame of CONN."""
        return (direction == self.dir and op == self.op and
                fnmatch.fnmatchcase(conn.route, self.route) and
                (self.role == "any" or conn.role == self.role) and
                ("any" in self.client or conn.client in self.client) and
                self.fits(plen, total))


class Scheduler:
    """The fault queues, the frames seen, the completed faults."""

    def __init__(self, gap, chain, hold):
        self.lock = threading.Lock()
        self.queues = {}      # name -> list of Fault, head first
        self.active = {}      # name -> Fault being carried out
        self.passes = {}      # (queue, client, route) -> frames to pass
        self.chains = {}      # (route, client) -> faults since a reply
        self.completed = []
        # (route, dir, op, role) -> [frames, Counter of OK frame lengths]
        self.seen = {}
        self.planned = set()  # queue names autoplan has filled
        self.gap = gap
        self.chain = chain
        self.hold = hold
        self.next_id = 1

    def add(self, specs):
        """Queue the faults of the list of dicts SPECS."""
        with self.lock:
            faults = []
            for s in specs:
                faults.append(Fault(self.next_id, s, self.gap, self.hold))
                self.next_id += 1
            for f in faults:
                self.queues.setdefault(f.queue, []).append(f)
        return len(faults)

    def clear(self):
        """Drop the queued faults; returns how many there were."""
        with self.lock:
            n = sum(len(q) for q in self.queues.values())
            self.queues = {}
        return n

    def match(self, conn, direction, op, flags, status, plen, total):
        """Note the frame; return the fault that fires on it, or None."""
        with self.lock:
            # Lengths of well-formed frames only: a failed reply (an
            # error message) is no sample of the message's format.
            key = (conn.route, direction, op, conn.role)
            s = self.seen.setdefault(key, [0, collections.Counter()])
            s[0] += 1
            if status == 0 and (total in s[1] or len(s[1]) < 256):
                s[1][total] += 1
            ckey = (conn.route, conn.client)
            if (direction == "s2c" and flags & FLAG_REPLY and
                    status == 0 and op not in HANDSHAKE):
                # A request got its answer: the client is through.
                self.chains[ckey] = 0
            if conn.fault is not None or conn.dead:
                return None
            if self.chains.get(ckey, 0) >= self.chain:
                return None
            for name, q in self.queues.items():
                if not q or name in self.active:
                    continue
                f = q[0]
                if not f.matches(conn, direction, op, plen, total):
                    continue
                pkey = (name, conn.client, conn.route)
                if self.passes.get(pkey, 0) > 0:
                    self.passes[pkey] -= 1
                    continue
                if f.skip > 0:
                    f.skip -= 1
                    continue
                q.pop(0)
                self.active[name] = f
                self.passes[pkey] = f.gap
                self.chains[ckey] = self.chains.get(ckey, 0) + 1
                conn.fault = f
                return f
        return None

    def complete(self, f, outcome):
        """F is done, with OUTCOME (a dict): log it, arm the next."""
        with self.lock:
            f.outcome = outcome
            self.completed.append(f)
            self.active.pop(f.queue, None)
        rec = f.describe()
        rec.update(outcome)
        log(rec)

    def status(self):
        """Queued and active faults, completed count, frames seen."""
        with self.lock:
            queued = {k: len(v) for k, v in self.queues.items() if v}
            return dict(
                queued=queued,
                nqueued=sum(queued.values()),
                active={k: f.describe() for k, f in self.active.items()},
                completed=len(self.completed),
                seen=[dict(route=k[0], dir=k[1], op=op_name(k[2]),
                           role=k[3], frames=v[0], lengths=dict(v[1]))
                      for k, v in sorted(self.seen.items(),
                                         key=lambda kv: str(kv[0]))])

    def results(self, since):
        """The completed faults from the SINCE-th on, as dicts."""
        with self.lock:
            out = []
            for f in self.completed[since:]:
                rec = f.describe()
                rec.update(f.outcome)
                out.append(rec)
            return out

    def autoplan(self, req):
        """Faults for every (dir, opcode) seen on the routes REQ names."""
        route = req.get("route", "*")
        role = req.get("role", "any")
        client = req.get("client", "any")
        actions = req.get("actions", ["cut"])
        every = int(req.get("payload_every", 64))
        only = {op_number(o) for o in req.get("only", [])}
        exclude = {op_number(o) for o in req.get("exclude", [])}
        prefix = req.get("queue_prefix", route + ":")
        merged = {}
        with self.lock:
            for (r, d, op, rl), (n, lengths) in self.seen.items():
                if not fnmatch.fnmatchcase(r, route) or not lengths:
                    continue
                if role != "any" and rl != role:
                    continue
                if op in exclude or (only and op not in only):
                    continue
                merged.setdefault((d, op), collections.Counter()).update(
                    lengths)
        specs = []
        kinds = 0
        for (d, op), lengths in sorted(merged.items()):
            # The most common length: rarer shorter frames (a map reply
            # with no entries, say) would hide most payload offsets.
            typical = lengths.most_common(1)[0][0]
            base = dict(route=route, dir=d, op=op_name(op), role=role,
                        client=client,
                        queue="%s%s/%s" % (prefix, d, op_name(op)))
            with self.lock:
                if base["queue"] in self.planned:
                    continue
                self.planned.add(base["queue"])
            kinds += 1
            if "cut" in actions:
                for at in cut_offsets(typical, every):
                    specs.append(dict(base, action="cut", at=at))
            if "modify" in actions:
                q = dict(base, queue=base["queue"] + "/modify")
                plen = min(lengths) - HEADER_SIZE
                if plen > 0:
                    specs.append(dict(q, action="short", at=0))
                    specs.append(dict(q, action="short", at=-1))
                for length in sorted({op_max_payload(op) + 1,
                                      MAX_IO_PAYLOAD + 1, 0xffffffff}):
                    specs.append(dict(q, action="oversize", at=length))
                specs.append(dict(q, action="magic"))
        return self.add(specs), kinds


def cut_offsets(length, every):
    """Cut offsets for frames of about LENGTH bytes: every header
    offset, every offset of the first EVERY payload bytes, then a
    sample: payload offsets 100, 1000 and 4000 and the middle when they
    fit, the last byte (-1), and after the whole frame ("end")."""
    offs = list(range(0, min(HEADER_SIZE + every, length)))
    for k in (100, 1000, 4000):
        if HEADER_SIZE + k < length:
            offs.append(HEADER_SIZE + k)
    if length // 2 not in offs and length > HEADER_SIZE + every:
        offs.append(length // 2)
    if length - 1 not in offs:
        offs.append(-1)
    offs.append("end")
    return offs


class Conn:
    """One proxied connection: the client's socket and ours to the
    target, and two pump threads."""

    ids = itertools.count(1)

    def __init__(self, proxy, route, csock, ssock):
        self.id = next(Conn.ids)
        self.proxy = proxy
        self.route = route
        self.socks = {"c2s": (csock, ssock), "s2c": (ssock, csock)}
        self.client = peer_id(csock)
        self.role = None
        # Guards the fault's bookkeeping (taken before the scheduler's).
        self.lock = threading.RLock()
        self.fault = None      # the fault fired on this connection
        self.dead = False      # torn down: forward nothing more
        self.stalled = False   # forward nothing, wait for a close
        self.watch = None      # modify faults: (dir, tag, t0)
        self.result = {}
        self.pumps_left = 2
        self.timer = None

    def start(self):
        """Start the two pumps."""
        for d in ("c2s", "s2c"):
            threading.Thread(target=self.pump, args=(d,), daemon=True).start()

    def recv_exact(self, s, n, buf):
        """Read until BUF holds N bytes; False at end of stream."""
        while len(buf) < n:
            try:
                data = s.recv(max(65536, n - len(buf)))
            except OSError:
                return False
            if not data:
                return False
            buf += data
        return True

    def pump(self, d):
        """Forward frames in direction D until the source closes."""
        src, dst = self.socks[d]
        buf = bytearray()
        raw = False
        try:
            while True:
                if raw:
                    if not self.recv_exact(src, 1, buf):
                        break
                    self.forward(dst, bytes(buf))
                    buf.clear()
                    continue
                if not self.recv_exact(src, HEADER_SIZE, buf):
                    break
                magic, _, op, flags, status, length, tag = HDR.unpack_from(buf)
                if magic != MAGIC or length > MAX_IO_PAYLOAD:
                    # Not Tessera framing (or lost sync): pass bytes on.
                    log("conn %d %s: unframed input, forwarding raw" %
                        (self.id, d))
                    raw = True
                    continue
                total = HEADER_SIZE + length
                if not self.recv_exact(src, total, buf):
                    break
                frame = bytes(buf[:total])
                del buf[:total]
                self.frame(d, dst, frame, op, flags, status, length, tag)
        finally:
            if buf and not self.dead and not self.stalled:
                # The sender closed in the middle of a frame: pass it on.
                self.forward(dst, bytes(buf))
            self.eof(d)

    def forward(self, dst, data):
        """Send DATA to DST, unless the connection is dead or stalled."""
        if self.dead or self.stalled:
            return
        try:
            dst.sendall(data)
        except OSError:
            pass

    def frame(self, d, dst, frame, op, flags, status, length, tag):
        """Forward FRAME (direction D, to DST), or fault it."""
        if (d == "c2s" and op == OP_HELLO and self.role is None and
                length >= 8):
            self.role = ROLES.get(struct.unpack_from(">I", frame, 28)[0],
                                  "unknown")
        if verbose:
            log("conn %d %s %s %s len %d tag %d status %d" %
                (self.id, self.route, d, op_name(op), length, tag, status))
        w = self.watch
        if w and d != w[0] and tag == w[1] and flags & FLAG_REPLY:
            self.result.setdefault("reply", STATUS.get(status, status))
        with self.lock:
            f = self.proxy.sched.match(self, d, op, flags, status, length,
                                       len(frame))
            if f is not None:
                self.result = dict(conn=self.id, client=self.client,
                                   conn_route=self.route,
                                   frame_len=len(frame), tag=tag,
                                   status=STATUS.get(status, status),
                                   t0=time.monotonic())
        if f is None:
            self.forward(dst, frame)
            return
        if f.action == "delay":
            self.delay(f, dst, frame)
            return
        if f.action in ("cut", "stall"):
            n = resolve_at(f.at, len(frame))
            self.result["sent"] = n
            self.forward(dst, frame[:n])
            if f.action == "cut":
                self.kill("cut")
            else:
                self.stalled = True
                self.arm_timer(f.hold, "stall held")
            return
        hdr = bytearray(frame[:HEADER_SIZE])
        payload = frame[HEADER_SIZE:]
        if f.action == "short":
            n = f.at if f.at >= 0 else length + f.at
            struct.pack_into(">I", hdr, LENGTH_AT, n)
            payload = payload[:n]
        elif f.action == "oversize":
            struct.pack_into(">I", hdr, LENGTH_AT, f.at)
        elif f.action == "magic":
            struct.pack_into(">I", hdr, 0, MAGIC ^ 0x20202020)
        self.watch = (d, tag, time.monotonic())
        self.result["sent"] = len(hdr) + len(payload)
        self.forward(dst, bytes(hdr) + payload)
        self.arm_timer(f.hold, "receiver kept the connection")

    def delay(self, f, dst, frame):
        """Fault F (delay): hold this pump, and so FRAME and all that
        follows it in its direction, for F's hold; then send FRAME on
        and let the connection take faults again.  Whatever the sender
        sent meanwhile waits in the socket, and its end of stream
        behind it (see eof)."""
        time.sleep(f.hold)
        self.forward(dst, frame)
        with self.lock:
            r = self.result
            r["why"] = "delivered" if not self.dead else "connection dead"
            r["delayed"] = f.hold
            r["sent"] = len(frame)
            r["elapsed"] = round(time.monotonic() - r.pop("t0"), 3)
            self.fault = None
            self.proxy.sched.complete(f, r)

    def arm_timer(self, secs, why):
        """Kill the connection after SECS seconds."""
        self.timer = threading.Timer(secs, self.kill, args=(why,))
        self.timer.daemon = True
        self.timer.start()

    def eof(self, d):
        """Pump D has ended: its source closed (or we shut it down)."""
        with self.lock:
            self.pumps_left -= 1
            last = self.pumps_left == 0
            side = "client" if d == "c2s" else "server"
            f = self.fault
            if self.dead:
                pass
            elif f is None or f.action == "delay":
                # An ordinary close: pass the end of stream on.  (A
                # delay holds the other pump, which passes its own end
                # of stream on after the held data.)
                try:
                    self.socks[d][1].shutdown(socket.SHUT_WR)
                except OSError:
                    pass
            else:
                receiver = "server" if f.dir == "c2s" else "client"
                after = round(time.monotonic() - self.result["t0"], 3)
                if side == receiver or f.action == "stall":
                    self.result["receiver_closed"] = side == receiver
                    self.result["close_after"] = after
                    self.kill("%s closed" % side)
                else:
                    # The sender gave up first (it had the receiver's
                    # error reply, say): keep the receiver's end open,
                    # without passing the end of stream on, to see
                    # whether it closes by itself.
                    self.result["sender_closed_after"] = after
        if last:
            if self.timer:
                self.timer.cancel()
            for s in self.socks["c2s"]:
                try:
                    s.close()
                except OSError:
                    pass

    def kill(self, why):
        """Tear the connection down and complete its fault: end of
        stream to both peers now (what was forwarded stays readable),
        the sockets shut down fully a moment later so that the pumps
        end."""
        with self.lock:
            if self.dead:
                return
            self.dead = True
            for s in self.socks["c2s"]:
                try:
                    s.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
            t = threading.Timer(0.5, self.shut_all)
            t.daemon = True
            t.start()
            f = self.fault
            if f is not None:
                r = self.result
                r["why"] = why
                r["elapsed"] = round(time.monotonic() - r.pop("t0"), 3)
                if f.action != "cut":
                    r.setdefault("receiver_closed", False)
                self.proxy.sched.complete(f, r)

    def shut_all(self):
        """Shut both sockets down fully: the pumps' reads end."""
        for s in self.socks["c2s"]:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Proxy:
    """The listeners, the control socket and the scheduler."""

    def __init__(self, args):
        self.args = args
        self.sched = Scheduler(args.gap, args.chain, args.hold)

    def accept_loop(self, name, lsock, target):
        """Accept on route NAME, connect each to TARGET, start pumps."""
        while True:
            csock, _ = lsock.accept()
            try:
                ssock = connect(target)
            except OSError as e:
                log("route %s: connect %s: %s" % (name, target, e))
                csock.close()
                continue
            c = Conn(self, name, csock, ssock)
            if verbose:
                log("conn %d %s: accepted from %s" % (c.id, name, c.client))
            c.start()

    def control_loop(self, lsock):
        """Accept control connections, a thread each."""
        while True:
            s, _ = lsock.accept()
            threading.Thread(target=self.control_conn, args=(s,),
                             daemon=True).start()

    def control_conn(self, s):
        """Answer the JSON lines of control connection S."""
        with s, s.makefile("rw") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    reply = self.command(json.loads(line))
                except (ValueError, KeyError, TypeError) as e:
                    reply = dict(ok=False, error=str(e))
                f.write(json.dumps(reply) + "\n")
                f.flush()

    def command(self, req):
        """Carry out control request REQ (a dict); returns the answer."""
        cmd = req.get("cmd")
        if cmd == "plan":
            n = self.sched.add(req["faults"])
            log("plan: %d faults queued" % n)
            return dict(ok=True, queued=n)
        if cmd == "autoplan":
            n, kinds = self.sched.autoplan(req)
            log("autoplan %s: %d faults for %d message kinds" %
                (json.dumps(req, sort_keys=True), n, kinds))
            return dict(ok=True, queued=n, kinds=kinds)
        if cmd == "status":
            return dict(ok=True, **self.sched.status())
        if cmd == "results":
            return dict(ok=True,
                        results=self.sched.results(int(req.get("since", 0))))
        if cmd == "clear":
            return dict(ok=True, dropped=self.sched.clear())
        raise ValueError("unknown command %r" % cmd)

    def run(self):
        """Listen, write the ready file, serve until killed."""
        for name, laddr, target in self.args.route:
            lsock = listen(laddr)
            threading.Thread(target=self.accept_loop,
                             args=(name, lsock, target), daemon=True).start()
            log("route %s: %s -> %s" % (name, laddr, target))
        ctl = listen(self.args.control)
        threading.Thread(target=self.control_loop, args=(ctl,),
                         daemon=True).start()
        if self.args.ready:
            with open(self.args.ready + ".tmp", "w") as f:
                f.write("%d\n" % os.getpid())
            os.rename(self.args.ready + ".tmp", self.args.ready)
        while True:
            time.sleep(3600)


def ctl_call(addr, reqs):
    """Send the control requests REQS; returns their answers."""
    family, sa = parse_addr(addr)
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(sa)
        with s.makefile("rw") as f:
            out = []
            for r in reqs:
                f.write(json.dumps(r) + "\n")
                f.flush()
                out.append(json.loads(f.readline()))
            return out


def cmd_ctl(args):
    """cut-proxy.py ctl: print the answers; exit 1 if one failed."""
    reqs = [json.loads(a) for a in args.json]
    bad = False
    for rep in ctl_call(args.control, reqs):
        print(json.dumps(rep, sort_keys=True))
        bad = bad or not rep.get("ok")
    sys.exit(1 if bad else 0)


def cmd_wait(args):
    """cut-proxy.py wait: until nothing is queued or active, or the
    timeout."""
    t0 = time.monotonic()
    while True:
        st = ctl_call(args.control, [dict(cmd="status")])[0]
        if st["nqueued"] == 0 and not st["active"]:
            break
        if time.monotonic() - t0 > args.timeout:
            break
        time.sleep(0.2)
    del st["seen"]
    print(json.dumps(st, sort_keys=True))
    sys.exit(0 if st["nqueued"] == 0 and not st["active"] else 1)


def main():
    global log_file, verbose
    p = argparse.ArgumentParser(prog="cut-proxy")
    sub = p.add_subparsers(dest="cmd", required=True)
    sv = sub.add_parser("serve")
    sv.add_argument("--control", required=True)
    sv.add_argument("--route", nargs=3, action="append", required=True,
                    metavar=("NAME", "LISTEN", "TARGET"))
    sv.add_argument("--log")
    sv.add_argument("--ready")
    sv.add_argument("--gap", type=int, default=1)
    sv.add_argument("--chain", type=int, default=2)
    sv.add_argument("--hold", type=float, default=5.0)
    sv.add_argument("--protocol-h")
    sv.add_argument("-v", "--verbose", action="store_true")
    ct = sub.add_parser("ctl")
    ct.add_argument("control")
    ct.add_argument("json", nargs="+")
    wt = sub.add_parser("wait")
    wt.add_argument("control")
    wt.add_argument("--timeout", type=float, required=True)
    args = p.parse_args()
    if args.cmd == "serve":
        if args.log:
            log_file = open(args.log, "a")
        verbose = args.verbose
        if args.protocol_h:
            load_protocol_h(args.protocol_h)
        Proxy(args).run()
    elif args.cmd == "ctl":
        cmd_ctl(args)
    else:
        cmd_wait(args)


if __name__ == "__main__":
    main()

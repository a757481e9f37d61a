# Tessera's wire protocol for tests that speak it by hand: frames, the
# authenticated handshake (common/utils/auth.h) and raw sockets.
#
#   import sys; sys.path.insert(0, TESTS_SRCDIR)
#   import tessera_wire as tw
#   key = tw.load_key(os.environ["TESSERA_KEY_FILE"])
#   s = tw.connect("unix:/path/mds.sock")
#   peer = tw.handshake(s, key, tw.ROLE_CLI)
#
# Run with /usr/bin/python3 (stdlib only).

import hashlib
import hmac
import os
import select
import socket
import struct
import time

MAGIC = 0x54455353
VERSION = 3
HEADER = struct.Struct(">IBBHIIQ")
FLAG_REPLY = 0x8000
FLAG_FUA = 0x0001

OP_HELLO = 1
OP_AUTH = 2

# Every opcode by value, as common/proto/opcodes.def lists them
# (test-proto-table.sh checks that they agree).
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

ROLE_CLI = 1
ROLE_PLUGIN = 2
ROLE_STORESRV = 3
ROLE_MDS = 4

OK = 0
EACCES = 18
EPROTO = 14
ESTALE = 13
EBADMSG = 12
ENOTLEADER = 20

NONCE = 32
MAC = 32


class ProtoError(Exception):
    """A failed reply: .status and .message."""

    def __init__(self, op, status, message):
        super().__init__("%d: status %d: %s" % (op, status, message))
        self.op = op
        self.status = status
        self.message = message


def load_key(path):
    """The 32-byte cluster key of key file PATH."""
    with open(path) as f:
        return bytes.fromhex(f.read().strip())


def frame(op, payload=b"", flags=0, status=0, tag=0, magic=MAGIC,
          version=VERSION, length=None):
    if length is None:
        length = len(payload)
    return HEADER.pack(magic, version, op, flags, status, length,
                       tag) + payload


def hello_payload(role, auth=b"", uuid=bytes(16), version=VERSION,
                  incarnation=0, mds_epoch=0):
    """HELLO's payload.  One u64 field is a storage server's
    INCARNATION or an MDS's MDS_EPOCH, picked by ROLE."""
    stamp = mds_epoch if role == ROLE_MDS else incarnation
    return struct.pack(">II16sQHH", version, role, uuid, stamp,
                       len(auth), 0) + auth


def decode_hello(p):
    version, role, uuid, stamp, auth_len, _ = struct.unpack(
        ">II16sQHH", p[:36])
    mds = role == ROLE_MDS
    return {"version": version, "role": role, "uuid": uuid,
            "incarnation": 0 if mds else stamp,
            "mds_epoch": stamp if mds else 0,
            "auth": p[36:36 + auth_len]}


def connect(addr, timeout=10):
    """A socket connected to ADDR: unix:PATH or HOST:PORT."""
    if addr.startswith("unix:"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(addr[5:])
    else:
        host, port = addr.rsplit(":", 1)
        s = socket.create_connection((host.strip("[]"), int(port)),
                                     timeout=timeout)
    return s


def closed_by_server(s):
    """Whether the peer has closed S (without waiting; S stays as it was)."""
    blocking = s.getblocking()
    s.setblocking(False)
    try:
        return s.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    finally:
        s.setblocking(blocking)


def wait_closed(socks, deadline):
    """Wait until the peer has closed each of SOCKS (sending nothing
    first), until time.monotonic() DEADLINE at most.  Returns {socket:
    time.monotonic() when its close was seen} for those closed."""
    closed_at = {}
    while len(closed_at) < len(socks) and time.monotonic() < deadline:
        ready, _, _ = select.select([s for s in socks if s not in closed_at],
                                    [], [], 0.5)
        for s in ready:
            try:
                data = s.recv(1)
            except ConnectionResetError:
                data = b""
            assert data == b"", data
            closed_at[s] = time.monotonic()
    return closed_at


def recv_exact(s, n):
    """N bytes, or None if the peer closed first."""
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            return None
        b += c
    return b


def recv_frame(s):
    """(op, flags, status, tag, payload), or None if the peer closed."""
    h = recv_exact(s, HEADER.size)
    if h is None:
        return None
    magic, ver, op, flags, status, length, tag = HEADER.unpack(h)
    assert magic == MAGIC, h
    p = recv_exact(s, length) if length else b""
    if p is None:
        return None
    return op, flags, status, tag, p


def call(s, op, payload=b"", flags=0, tag=0):
    """Send a request and return the reply's payload; ProtoError if it
    failed, EOFError if the peer closed."""
    s.sendall(frame(op, payload, flags=flags, tag=tag))
    r = recv_frame(s)
    if r is None:
        raise EOFError("connection closed")
    rop, rflags, status, rtag, p = r
    if status != OK:
        raise ProtoError(rop, status, p.decode(errors="replace"))
    return p


def proof(key, side, cnonce, snonce, crole, srole):
    msg = (b"tessera-auth-v1 " + side + cnonce + snonce +
           struct.pack(">II", crole, srole))
    return hmac.new(key, msg, hashlib.sha256).digest()


def handshake(s, key, role, uuid=bytes(16), mds_epoch=0):
    """HELLO and AUTH as ROLE (an MDS at MDS_EPOCH); returns the
    server's HELLO (a dict).  Raises ProtoError if refused, ValueError if
    the server's proof is wrong."""
    cnonce = os.urandom(NONCE)
    peer = decode_hello(call(s, OP_HELLO,
                             hello_payload(role, cnonce, uuid,
                                           mds_epoch=mds_epoch)))
    auth = peer["auth"]
    if len(auth) != NONCE + MAC:
        raise ValueError("server sent no proof")
    snonce = auth[:NONCE]
    if not hmac.compare_digest(
            auth[NONCE:],
            proof(key, b"server", cnonce, snonce, role, peer["role"])):
        raise ValueError("server proof is wrong")
    call(s, OP_AUTH,
         proof(key, b"client", cnonce, snonce, role, peer["role"]))
    return peer

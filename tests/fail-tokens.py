#!/usr/bin/python3
# Writes of unique tokens for test-fail-writer-kill.sh, and their check.
#
#   fail-tokens.py write URI --log F --run R [--block B] [--blocks N]
#                  [--flush-every K] [--depth D] [--started F]
#   fail-tokens.py check URI --log F [--block B] [--blocks N]
#
# write fills random blocks (of the first N) with tokens, each written
# once: a block of 32-byte records "TSTOKEN", block, run R, counter.  It
# keeps DEPTH writes in flight (never two on one block) and issues a flush
# after every K acknowledged writes.  It appends to LOG a line "W block
# run counter" before it sends each write, and, when a flush completes,
# "F block run counter" for the latest token of each block acknowledged
# before that flush was sent.  It runs until the NBD server goes away
# (the test kills it), then exits 0; an error on a live connection makes
# it exit 1.
#
# check reads the first N blocks three times: the three reads must agree.
# Each block must hold the token of its last F line or a later token that
# was sent to that block (W), or zeros if it has no F line.

import argparse
import os
import random
import struct
import sys
import time

import nbd

MAGIC = b"TSTOKEN\0"
REC = struct.Struct(">8sQQQ")


def token_block(block, run, counter, size):
    return REC.pack(MAGIC, block, run, counter) * (size // REC.size)


def decode(data, size):
    """The (block, run, counter) of a token block, None for zeros, or
    raise ValueError."""
    if data == bytes(size):
        return None
    rec = data[:REC.size]
    if data != rec * (size // REC.size):
        raise ValueError("torn or foreign block")
    magic, block, run, counter = REC.unpack(rec)
    if magic != MAGIC:
        raise ValueError("bad magic")
    return block, run, counter


def cmd_write(a):
    h = nbd.NBD()
    h.connect_uri(a.uri)
    nblocks = min(a.blocks, h.get_size() // a.block)
    log = open(a.log, "a", buffering=1)
    if a.started:
        with open(a.started, "w") as f:
            f.write("%d\n" % os.getpid())
    acked = {}    # block -> latest acknowledged token
    flushed = {}  # block -> token of its last F line
    inflight = {}  # cookie -> (block, token) or ("flush", snapshot)
    busy = set()
    counter = 0
    since_flush = 0
    flushing = False
    writes = flushes = 0
    deadline = time.monotonic() + a.duration
    try:
        while time.monotonic() < deadline:
            if since_flush >= a.flush_every and not flushing:
                cookie = h.aio_flush()
                inflight[cookie] = ("flush", dict(acked))
                flushing = True
                since_flush = 0
            while len(inflight) < a.depth + 1:
                b = random.randrange(nblocks)
                if b in busy:
                    break
                counter += 1
                log.write("W %d %d %d\n" % (b, a.run, counter))
                buf = token_block(b, a.run, counter, a.block)
                cookie = h.aio_pwrite(buf, b * a.block)
                inflight[cookie] = (b, (a.run, counter), buf)
                busy.add(b)
            h.poll(100)
            for cookie in list(inflight):
                if not h.aio_command_completed(cookie):
                    continue
                op = inflight.pop(cookie)
                if op[0] == "flush":
                    for b, t in op[1].items():
                        if flushed.get(b) != t:
                            log.write("F %d %d %d\n" % (b, t[0], t[1]))
                            flushed[b] = t
                    flushing = False
                    flushes += 1
                else:
                    busy.discard(op[0])
                    acked[op[0]] = op[1]
                    since_flush += 1
                    writes += 1
        print("fail-tokens: still running after %d s" % a.duration)
        sys.exit(1)
    except nbd.Error as ex:
        if h.aio_is_dead() or h.aio_is_closed():
            print("fail-tokens: run %d: server gone after %d acknowledged "
                  "writes and %d flushes" % (a.run, writes, flushes))
            return
        print("fail-tokens: run %d: error on a live connection: %s" %
              (a.run, ex))
        sys.exit(1)
    finally:
        log.close()


def read_log(path):
    written = {}  # block -> set of tokens
    flushed = {}  # block -> token
    with open(path) as f:
        for line in f:
            kind, b, run, counter = line.split()
            b, t = int(b), (int(run), int(counter))
            if kind == "W":
                written.setdefault(b, set()).add(t)
            else:
                flushed[b] = t
    return written, flushed


def cmd_check(a):
    written, flushed = read_log(a.log) if os.path.exists(a.log) else ({}, {})
    h = nbd.NBD()
    h.connect_uri(a.uri)
    nblocks = min(a.blocks, h.get_size() // a.block)
    length = nblocks * a.block
    reads = []
    for _ in range(3):
        data = bytearray()
        for off in range(0, length, 256 * 1024):
            data += h.pread(min(256 * 1024, length - off), off)
        reads.append(bytes(data))
    h.shutdown()
    bad = 0

    def fail(msg):
        nonlocal bad
        bad += 1
        if bad <= 10:
            print("fail-tokens: " + msg)

    newer = 0
    for b in range(nblocks):
        blk = [r[b * a.block:(b + 1) * a.block] for r in reads]
        if not blk[0] == blk[1] == blk[2]:
            fail("block %d: three reads differ" % b)
            continue
        try:
            tok = decode(blk[0], a.block)
        except ValueError as ex:
            fail("block %d: %s" % (b, ex))
            continue
        f = flushed.get(b)
        if tok is None:
            if f is not None:
                fail("block %d: zeros, but token %s was flushed" % (b, f))
            continue
        t = (tok[1], tok[2])
        if tok[0] != b or t not in written.get(b, ()):
            fail("block %d: holds token %s never written there" % (b, tok))
        elif f is not None and t < f:
            fail("block %d: holds %s, older than flushed %s" % (b, t, f))
        elif f is None or t > f:
            newer += 1
    print("fail-tokens: %d blocks read 3 times: %d flushed tokens, %d "
          "blocks hold an unflushed newer token, %d bad" %
          (nblocks, len(flushed), newer, bad))
    if bad:
        sys.exit(1)


def main():
    p = argparse.ArgumentParser(prog="fail-tokens")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("write", "check"):
        s = sub.add_parser(name)
        s.add_argument("uri")
        s.add_argument("--log", required=True)
        s.add_argument("--block", type=int, default=4096)
        s.add_argument("--blocks", type=int, default=1 << 30)
        if name == "write":
            s.add_argument("--run", type=int, required=True)
            s.add_argument("--flush-every", type=int, default=32)
            s.add_argument("--depth", type=int, default=8)
            s.add_argument("--duration", type=int, default=60)
            s.add_argument("--started")
    a = p.parse_args()
    if a.cmd == "write":
        cmd_write(a)
    else:
        cmd_check(a)


if __name__ == "__main__":
    main()

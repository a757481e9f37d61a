#!/usr/bin/python3
# A verified random read/write workload over NBD for the failure tests.
#
#   fail-workload.py rw URI [--duration S] [--stop-file F] [--started F]
#                    [--write-pct P] [--depth D] [--block B] [--fill]
#                    [--max-errors N] [--unknown] [--grow S]
#                    [--flush-every S] [--stats F] [--save F]
#   fail-workload.py check URI --load F
#
# rw keeps DEPTH requests in flight (libnbd aio), each a write or a read
# of 1..4 consecutive blocks, never two at once on the same block.  Every
# write carries new random data; the program remembers the digest of
# every block's acknowledged content (a failed write leaves the block
# either old or new), and every read must return one of the contents the
# block may hold.  It stops after DURATION seconds or when STOP-FILE
# appears, then reads back the whole volume.  It prints (and with --stats
# writes as JSON) the number of requests, I/O errors and mismatches, and
# the longest stall: the longest time without any request completing
# while requests were in flight.  It exits 1 if any read returned wrong
# data or there were more than MAX-ERRORS (default 0) I/O errors.
#
# --flush-every S also sends a FLUSH every S seconds (one at a time); a
# failed flush counts as an I/O error.  The stats list the time (seconds
# from the start) of each of the first 100 errors in error_times.
#
# --save F writes the final content digests, which "check" compares with
# a later read of the whole volume (after a repair, say).

import argparse
import errno
import hashlib
import json
import os
import random
import struct
import sys
import time

import nbd

MAGIC = b"TSWRKLD\0"
CHUNK_BLOCKS = 64  # blocks per request of the fill and the final check


def digest(data):
    return hashlib.blake2b(data, digest_size=16).digest()


def make_block(block, seq, size):
    head = struct.pack(">8sQQQ", MAGIC, block, seq, int(time.time()))
    return head + os.urandom(size - len(head))


def describe(data):
    """What a block holds, for error messages."""
    if data == bytes(len(data)):
        return "zeros"
    magic, block, seq, _ = struct.unpack(">8sQQQ", bytes(data[:32]))
    if magic != MAGIC:
        return "garbage %r" % bytes(data[:16])
    return "block %d write %d" % (block, seq)


class Workload:
    def __init__(self, args):
        self.args = args
        self.h = nbd.NBD()
        self.h.connect_uri(args.uri)
        self.bs = args.block
        self.size = self.h.get_size()
        self.nblocks = self.size // self.bs
        if self.nblocks < 2 * args.depth * 4:
            sys.exit("fail-workload: volume too small")
        zero = digest(bytes(self.bs))
        # possible[b]: digests block B may hold, or None if unknown.
        if args.unknown:
            self.possible = [None] * self.nblocks
        else:
            self.possible = [{zero} for _ in range(self.nblocks)]
        self.seq = 0
        # history[b]: (seq, submitted, completed, error) of the last
        # writes of block B, printed with a mismatch.
        self.history = {}
        self.phase = "run"
        self.flushing = False
        self.last_flush = time.monotonic()
        self.busy = set()
        self.inflight = {}
        self.stats = dict(writes=0, reads=0, errors=0, mismatches=0,
                          bytes_written=0, bytes_read=0, max_stall=0.0,
                          max_latency=0.0, last_error=None,
                          ops_after_last_error=0, final_blocks=0,
                          error_kinds={})
        self.start = time.monotonic()

    def error(self, what, ex):
        self.stats["errors"] += 1
        kind = errno.errorcode.get(getattr(ex, "errnum", None) or 0, "other")
        kinds = self.stats["error_kinds"]
        kinds[kind] = kinds.get(kind, 0) + 1
        self.stats["last_error"] = round(time.monotonic() - self.start, 3)
        times = self.stats.setdefault("error_times", [])
        if len(times) < 100:
            times.append(self.stats["last_error"])
        self.stats["ops_after_last_error"] = 0
        if self.stats["errors"] <= 10:
            print("fail-workload: %.3f s: %s: %s" %
                  (time.monotonic() - self.start, what, ex), flush=True)

    def mismatch(self, block, data, when=None):
        self.stats["mismatches"] += 1
        if self.stats["mismatches"] <= 10:
            print("fail-workload: MISMATCH at block %d (offset %d): "
                  "read %s, expected one of %d contents" %
                  (block, block * self.bs, describe(data),
                   len(self.possible[block])), flush=True)
            # When the read ran and what was written to the block
            # before, to find both in the daemons' logs.
            if when:
                print("fail-workload:   %s read, %s" % (self.phase, when),
                      flush=True)
            for seq, t0, t1, err in self.history.get(block, []):
                print("fail-workload:   write %d: %s .. %s: %s" %
                      (seq, self.wall(t0), self.wall(t1), err or "ok"),
                      flush=True)

    def wall(self, t):
        """Monotonic time T as wall-clock time, as the daemons log it."""
        w = time.time() - (time.monotonic() - t)
        return "%s.%03d (%.3f s)" % (time.strftime(
            "%H:%M:%S", time.localtime(w)), int(w * 1000) % 1000,
            t - self.start)

    def check_block(self, block, data, when=None):
        p = self.possible[block]
        if p is not None and digest(data) not in p:
            self.mismatch(block, data, when)

    def fill(self):
        """Write every block once, synchronously, in big requests."""
        for first in range(0, self.nblocks, CHUNK_BLOCKS):
            n = min(CHUNK_BLOCKS, self.nblocks - first)
            parts = []
            for b in range(first, first + n):
                self.seq += 1
                parts.append(make_block(b, self.seq, self.bs))
            self.h.pwrite(b"".join(parts), first * self.bs)
            for b, data in zip(range(first, first + n), parts):
                self.possible[b] = {digest(data)}
        self.h.flush()
        self.stats["bytes_written"] += self.nblocks * self.bs

    def submit(self):
        """Start one request on blocks that have none in flight."""
        limit = self.nblocks
        if self.args.grow:
            frac = (time.monotonic() - self.start) / self.args.grow
            limit = max(64, min(limit, int(limit * frac)))
        for _ in range(20):
            n = random.randint(1, 4)
            first = random.randrange(0, limit - n + 1)
            blocks = range(first, first + n)
            if not any(b in self.busy for b in blocks):
                break
        else:
            return False
        off = first * self.bs
        if random.randrange(100) < self.args.write_pct:
            datas = []
            for b in blocks:
                self.seq += 1
                datas.append(make_block(b, self.seq, self.bs))
            buf = b"".join(datas)
            cookie = self.h.aio_pwrite(buf, off)
            op = ("write", blocks, [digest(d) for d in datas], buf)
        else:
            buf = nbd.Buffer(n * self.bs)
            cookie = self.h.aio_pread(buf, off)
            op = ("read", blocks, None, buf)
        self.busy.update(blocks)
        self.inflight[cookie] = op + (time.monotonic(),)
        return True

    def complete(self, cookie, ex):
        kind, blocks, digests, buf, t0 = self.inflight.pop(cookie)
        now = time.monotonic()
        if now - t0 > self.stats["max_latency"]:
            # The slowest request, to find it in the daemons' logs.
            self.stats["max_latency"] = now - t0
            self.stats["slowest"] = dict(
                op=kind, offset=blocks[0] * self.bs if blocks else 0,
                length=len(buf),
                started=round(t0 - self.start, 3),
                wall=time.strftime("%H:%M:%S", time.localtime(
                    time.time() - (now - t0))),
                error=None if ex is None else str(ex))
        self.busy.difference_update(blocks)
        if kind == "flush":
            self.flushing = False
            if ex is not None:
                self.error("flush", ex)
                return
            self.stats["flushes"] = self.stats.get("flushes", 0) + 1
        elif kind == "write":
            seq0 = self.seq_of(buf)
            for i, (b, d) in enumerate(zip(blocks, digests)):
                h = self.history.setdefault(b, [])
                h.append((seq0 + i, t0, now, None if ex is None else str(ex)))
                del h[:-8]
                if ex is None:
                    self.possible[b] = {d}
                elif self.possible[b] is not None:
                    self.possible[b].add(d)
            if ex is not None:
                self.error("write at %d" % (blocks[0] * self.bs), ex)
                return
            self.stats["writes"] += 1
            self.stats["bytes_written"] += len(buf)
        else:
            if ex is not None:
                self.error("read at %d" % (blocks[0] * self.bs), ex)
                return
            data = buf.to_bytearray()
            when = "%s .. %s, %d blocks at %d" % (
                self.wall(t0), self.wall(now), len(blocks),
                blocks[0] * self.bs)
            for i, b in enumerate(blocks):
                self.check_block(b, data[i * self.bs:(i + 1) * self.bs],
                                 when)
            self.stats["reads"] += 1
            self.stats["bytes_read"] += len(data)
        self.stats["ops_after_last_error"] += 1

    @staticmethod
    def seq_of(buf):
        """The sequence number in the first block of a write BUF."""
        return struct.unpack(">8sQQQ", bytes(buf[:32]))[2]

    def stopping(self, now):
        a = self.args
        return (now - self.start >= a.duration or
                (a.stop_file and os.path.exists(a.stop_file)))

    def run(self):
        a = self.args
        last = time.monotonic()
        stop = False
        while True:
            now = time.monotonic()
            stop = stop or self.stopping(now)
            if (not stop and a.flush_every and not self.flushing and
                    now - self.last_flush >= a.flush_every):
                cookie = self.h.aio_flush()
                self.inflight[cookie] = ("flush", range(0), None, b"", now)
                self.flushing = True
                self.last_flush = now
            while not stop and len(self.inflight) < a.depth:
                if not self.submit():
                    break
            if not self.inflight:
                break
            if now - last > a.hang:
                print("fail-workload: no request completed for %d s: giving up"
                      % a.hang, flush=True)
                self.report()
                sys.exit(2)
            self.h.poll(100)
            for cookie in list(self.inflight):
                try:
                    if not self.h.aio_command_completed(cookie):
                        continue
                    ex = None
                except nbd.Error as e:
                    ex = e
                now = time.monotonic()
                self.stats["max_stall"] = max(self.stats["max_stall"],
                                              now - last)
                last = now
                self.complete(cookie, ex)
        self.stats["duration"] = round(time.monotonic() - self.start, 3)

    def final_check(self):
        """Read back the whole volume; later reads must see the same."""
        self.phase = "final"
        for first in range(0, self.nblocks, CHUNK_BLOCKS):
            n = min(CHUNK_BLOCKS, self.nblocks - first)
            t0 = time.monotonic()
            try:
                data = self.h.pread(n * self.bs, first * self.bs)
            except nbd.Error as ex:
                self.error("final read at %d" % (first * self.bs), ex)
                continue
            for i in range(n):
                b = first + i
                block = data[i * self.bs:(i + 1) * self.bs]
                self.check_block(b, block, "%s, %d blocks at %d" % (
                    self.wall(t0), n, first * self.bs))
                self.possible[b] = {digest(block)}
                self.stats["final_blocks"] += 1

    def report(self):
        s = self.stats
        s["max_stall"] = round(s["max_stall"], 3)
        s["max_latency"] = round(s["max_latency"], 3)
        print("fail-workload: %d writes, %d reads, %d I/O errors, "
              "%d mismatches, %d blocks checked at the end, longest stall "
              "%.3f s, slowest request %.3f s" %
              (s["writes"], s["reads"], s["errors"], s["mismatches"],
               s["final_blocks"], s["max_stall"], s["max_latency"]),
              flush=True)
        if self.args.stats:
            with open(self.args.stats, "w") as f:
                json.dump(s, f)

    def save(self, path):
        with open(path, "w") as f:
            json.dump(dict(block=self.bs,
                           digests=[sorted(d.hex() for d in p)
                                    if p is not None else None
                                    for p in self.possible]), f)


def cmd_rw(args):
    w = Workload(args)
    if args.fill:
        w.fill()
    if args.started:
        with open(args.started, "w") as f:
            f.write("%d\n" % os.getpid())
    w.run()
    w.final_check()
    w.report()
    if args.save:
        w.save(args.save)
    w.h.shutdown()
    s = w.stats
    if s["mismatches"] > 0 or s["errors"] > args.max_errors:
        sys.exit(1)


def cmd_check(args):
    with open(args.load) as f:
        saved = json.load(f)
    bs = saved["block"]
    want = saved["digests"]
    h = nbd.NBD()
    h.connect_uri(args.uri)
    bad = 0
    for first in range(0, len(want), CHUNK_BLOCKS):
        n = min(CHUNK_BLOCKS, len(want) - first)
        data = h.pread(n * bs, first * bs)
        for i in range(n):
            b = first + i
            block = data[i * bs:(i + 1) * bs]
            if want[b] is not None and digest(block).hex() not in want[b]:
                bad += 1
                if bad <= 10:
                    print("fail-workload: MISMATCH at block %d: read %s" %
                          (b, describe(block)))
    h.shutdown()
    print("fail-workload: checked %d blocks: %d mismatches" % (len(want), bad))
    if bad:
        sys.exit(1)


def main():
    p = argparse.ArgumentParser(prog="fail-workload")
    sub = p.add_subparsers(dest="cmd", required=True)
    rw = sub.add_parser("rw")
    rw.add_argument("uri")
    rw.add_argument("--duration", type=float, default=30)
    rw.add_argument("--stop-file")
    rw.add_argument("--started")
    rw.add_argument("--write-pct", type=int, default=50)
    rw.add_argument("--depth", type=int, default=8)
    rw.add_argument("--block", type=int, default=4096)
    rw.add_argument("--fill", action="store_true")
    rw.add_argument("--grow", type=float,
                    help="use the first blocks only, growing to all in "
                    "this many seconds (allocations go on meanwhile)")
    rw.add_argument("--unknown", action="store_true",
                    help="blocks not written by this run hold anything")
    rw.add_argument("--flush-every", type=float,
                    help="send a FLUSH every this many seconds")
    rw.add_argument("--max-errors", type=int, default=0)
    rw.add_argument("--hang", type=int, default=60)
    rw.add_argument("--stats")
    rw.add_argument("--save")
    rw.add_argument("--seed", type=int)
    ck = sub.add_parser("check")
    ck.add_argument("uri")
    ck.add_argument("--load", required=True)
    args = p.parse_args()
    if args.cmd == "rw":
        seed = args.seed if args.seed is not None else random.randrange(2**32)
        print("fail-workload: seed %d" % seed, flush=True)
        random.seed(seed)
        cmd_rw(args)
    else:
        cmd_check(args)


if __name__ == "__main__":
    main()

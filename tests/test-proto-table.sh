#!/usr/bin/env bash
# The opcode lists outside C agree with common/proto/opcodes.def, the one
# list the code is made from: tests/tessera_wire.py (its OP_* constants
# and OPS), tests/cut-proxy.py (OPS) and tessera-protocol(5) (each
# opcode's =item, under the heading of the daemons that serve it).
source ./functions.sh
set -e
set -x

requires test -x /usr/bin/python3

/usr/bin/python3 - "$abs_top_srcdir" <<'PYEOF'
import importlib.util
import os
import re
import sys

top = sys.argv[1]
bad = []


def fail(msg):
    print("test-proto-table: %s" % msg)
    bad.append(msg)


# opcodes.def: X (NAME, VALUE, PAYLOAD_MAX, SERVED_BY), one per line.
defs = {}
served = {}
path = os.path.join(top, "common/proto/opcodes.def")
with open(path) as f:
    for n, line in enumerate(f, 1):
        if not line.startswith("X"):
            continue
        m = re.match(r"X \((\w+),\s*(\d+),\s*(\w+),\s*([\w |]+)\)\s*$", line)
        if not m:
            fail("%s:%d: cannot parse: %s" % (path, n, line.strip()))
            continue
        name, value = m.group(1), int(m.group(2))
        if name in defs or value in defs.values():
            fail("%s:%d: %s or %d listed twice" % (path, n, name, value))
        if not 0 < value < 256:
            fail("%s:%d: %s: value %d out of range" % (path, n, name, value))
        defs[name] = value
        served[name] = set(re.findall(r"PROTO_BY_(\w+)", m.group(4)))
if len(defs) < 2:
    fail("%s: no opcodes found" % path)
by_value = {v: k for k, v in defs.items()}


def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def check_ops(what, ops):
    for v, k in sorted(ops.items()):
        if by_value.get(v) != k:
            fail("%s: %d is %s, opcodes.def says %s" %
                 (what, v, k, by_value.get(v)))
    for v, k in sorted(by_value.items()):
        if v not in ops:
            fail("%s: %s (%d) missing" % (what, k, v))


tw = load("tessera_wire", os.path.join(top, "tests/tessera_wire.py"))
for attr in dir(tw):
    if attr.startswith("OP_"):
        name = attr[3:]
        if defs.get(name) != getattr(tw, attr):
            fail("tessera_wire.py: %s = %r, opcodes.def says %r" %
                 (attr, getattr(tw, attr), defs.get(name)))
check_ops("tessera_wire.py OPS", tw.OPS)

cp = load("cut_proxy", os.path.join(top, "tests/cut-proxy.py"))
check_ops("cut-proxy.py OPS", cp.OPS)

# The man page: "=item C<NAME> (N), C<NAME> (N)" under "=head2 Common"
# (both daemons), "Served by the MDS" or "Served by storage servers".
headings = {"Common": {"MDS", "STORESRV"}, "Served by the MDS": {"MDS"},
            "Served by storage servers": {"STORESRV"}}
path = os.path.join(top, "man/tessera-protocol.5.pod")
seen = {}
heading = None
with open(path) as f:
    for n, line in enumerate(f, 1):
        if line.startswith("=head"):
            heading = line.split(None, 1)[1].strip()
            continue
        if not line.startswith("=item") or heading not in headings:
            continue
        for name, value in re.findall(r"C<(\w+)> \((\d+)\)", line):
            value = int(value)
            if name in seen:
                fail("%s:%d: %s documented twice" % (path, n, name))
            seen[name] = value
            if defs.get(name) != value:
                fail("%s:%d: %s (%d), opcodes.def says %r" %
                     (path, n, name, value, defs.get(name)))
            elif served[name] != headings[heading]:
                fail("%s:%d: %s under \"%s\", opcodes.def says served by %s"
                     % (path, n, name, heading,
                        " | ".join(sorted(served[name]))))
for name in sorted(set(defs) - set(seen)):
    fail("%s: %s (%d) not documented" % (path, name, defs[name]))

if bad:
    sys.exit(1)
print("test-proto-table: %d opcodes agree" % len(defs))
PYEOF

#!/usr/bin/env bash
# The CLI names what was wrong and exits non-zero: unknown volume,
# duplicate name, bad sizes, too many replicas, a min-copies above the
# replicas, no MDS, bad usage.
source ./functions.sh
set -e
set -x

requires_built

make_cluster_dir

# No MDS listening yet.
expect_fail "mds.sock|connect|No such file" tessera volume list

start_cluster 3
tessera volume create vol --size 1G
tessera volume create vol3 --size 1M --replicas 3

expect_fail "nosuch.*not found" tessera volume info nosuch
expect_fail "nosuch.*not found" tessera volume map nosuch
expect_fail "nosuch.*not found" tessera volume delete nosuch
expect_fail "nosuch.*not found" tessera volume resize nosuch 2G
expect_fail "vol.*already exists" tessera volume create vol --size 1G
expect_fail "12X" tessera volume create v2 --size 12X
expect_fail "size" tessera volume create v2 --size 0
expect_fail "size|512" tessera volume create v2 --size 1000
expect_fail "size" tessera volume create v2 --size 99999999E
expect_fail "size" tessera volume create v2
expect_fail "replicas|4.*3|3.*4" tessera volume create v2 --size 1G --replicas 4
expect_fail "replicas" tessera volume create v2 --size 1G --replicas 0
expect_fail "replicas" tessera volume create v2 --size 1G --replicas x
expect_fail "name|invalid" tessera volume create 'bad/name' --size 1G
expect_fail "min-copies 4 is more than its 3 replicas" \
    tessera volume create v2 --size 1G --replicas 3 --min-copies 4
expect_fail "min-copies 3 is more than its 2 replicas" \
    tessera volume create v2 --size 1G --min-copies 3
expect_fail "min-copies" tessera volume create v2 --size 1G --min-copies 0
expect_fail "min-copies.*not allowed" tessera volume info vol --min-copies 1
expect_fail "shrink" tessera volume resize vol 512M
expect_fail "command|usage|unknown" tessera volume frobnicate
expect_fail "command|usage|unknown" tessera frobnicate
expect_fail "usage|missing|NAME|name" tessera volume info
expect_fail "option|unrecognized" tessera --no-such-option status
# Nothing was created by the failures.
test "$(tessera --json volume list | $PYTHON -c 'import json,sys; print(len(json.load(sys.stdin)["volumes"]))')" = 2

# Successful commands still work, in both output modes.
tessera volume resize vol 2G
tessera --json volume info vol | $PYTHON -c 'import json,sys; v=json.load(sys.stdin); assert v["size"] == 2 << 30, v'
# min-copies defaults to 1 for 2 replicas, 2 for 3 or more.
test "$(tessera_json "j['min_copies']" volume info vol)" = 1
test "$(tessera_json "j['min_copies']" volume info vol3)" = 2
tessera volume info vol3 | grep -E '^ *min-copies: *2$'
tessera volume list
tessera server list
tessera status
tessera volume delete vol3
expect_fail "vol3.*not found" tessera volume info vol3

# With one server stopped, 3 replicas no longer fit.
stop_pidfile "$CLUSTER/ss3.pid"
wait_servers_up 2
expect_fail "replicas|servers" tessera volume create v3 --size 1M --replicas 3

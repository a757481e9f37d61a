#!/usr/bin/env bash
# TLS between every component (--tls on the daemons and the CLI, tls=true
# in the plugin): data written through nbdkit reads back, replicas are
# compared by the CLI straight from the storage servers, a storage server
# killed and restarted is resynced by pulls between servers, all over
# TLS; a component without TLS cannot talk to the cluster, and nothing
# in the clear reaches a daemon.
source ./functions.sh
set -e
set -x

requires_built
requires nbdsh --version

export TESSERA_TEST_TLS=1
make_cluster_dir
start_cluster 3
tessera volume create v --size 4M --replicas 2
start_nbdkit nbd v
grep -q "tls" "$CLUSTER/mds.log" || :

# Data round trip over TLS (plugin -> MDS and -> storage servers).
nbdsh -u "$(nbd_uri nbd)" -c '
import os
data = os.urandom(1024 * 1024)
h.pwrite(data, 512 * 1024)
h.flush()
assert h.pread(len(data), 512 * 1024) == data
open(os.environ["CLUSTER"] + "/data", "wb").write(data)
'

# A storage server goes away during writes and comes back: repair pulls
# between storage servers over TLS.
kill_storesrv 2
nbdsh -u "$(nbd_uri nbd)" -c 'h.pwrite(b"t" * 65536, 0); h.flush()'
start_storesrv 2
wait_servers_up 3
repair_wait 60
tessera volume verify v

# Without TLS nothing works: the CLI's plaintext HELLO is not TLS, and a
# raw plaintext client gets no reply from either daemon.
expect_fail "with --tls" "$TESSERA_BIN" status
$PYTHON - "$abs_top_srcdir/tests" "$TESSERA_KEY_FILE" \
        "unix:$CLUSTER/mds.sock" "unix:$CLUSTER/ss1.sock" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
import tessera_wire as tw
key = tw.load_key(sys.argv[2])
for addr in sys.argv[3:]:
    s = tw.connect(addr)
    try:
        tw.handshake(s, key, tw.ROLE_CLI)
        raise AssertionError(addr + ": plaintext handshake accepted")
    except (EOFError, ConnectionResetError, OSError, ValueError) as e:
        print(addr, "plaintext refused:", type(e).__name__, e)
PY
stop_nbdkit nbd
expect_fail "with --tls" nbdkit -f -U "$CLUSTER/plain.sock" \
    "$TESSERA_PLUGIN" volume=v mds="$TESSERA_MDS" timeout=2 open-timeout=2 \
    --run 'nbdinfo "$uri"'

# The data is intact (read through TLS again).
start_nbdkit nbd v
nbdsh -u "$(nbd_uri nbd)" -c '
import os
data = open(os.environ["CLUSTER"] + "/data", "rb").read()
assert h.pread(len(data), 512 * 1024) == data
assert h.pread(65536, 0) == b"t" * 65536
'

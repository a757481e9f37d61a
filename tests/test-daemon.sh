#!/usr/bin/env bash
# Both daemons in the background (no -f), through common/utils/daemon.c:
# the command returns only once the daemon serves (status 0, pidfile
# written, start-up messages on its stderr until then), or with the
# daemon's exit status and the error on stderr when it cannot start; the
# daemon leaves the terminal's session, works from / and stops on
# SIGTERM.
source ./functions.sh
set -e
set -x

requires_built
make_cluster_dir
t0="$(now)"

# A failed start: no catalog there.  The parent's status is the child's.
if "$TESSERA_MDS_BIN" --db "$CLUSTER/nothing" --listen "unix:$CLUSTER/x.sock" \
        -P "$CLUSTER/x.pid" 2>"$CLUSTER/fail.err"; then
    echo "FAIL: the MDS started without a catalog"
    exit 1
fi
cat "$CLUSTER/fail.err"
grep -q "$CLUSTER/nothing" "$CLUSTER/fail.err"
test ! -e "$CLUSTER/x.pid"

# The MDS in the background, from a relative --db: it opens the catalog
# before changing to /.
(cd "$CLUSTER" && timeout 30 "$TESSERA_MDS_BIN" --db mds --init \
     --segment-size 64K --listen "unix:$CLUSTER/mds.sock" \
     -P "$CLUSTER/mds.pid" 2>"$CLUSTER/mds.err")
echo "MDS returned after $(elapsed "$t0") s"
pid="$(cat "$CLUSTER/mds.pid")"
kill -0 "$pid"
test "$(readlink "/proc/$pid/cwd")" = /
# A new session, stdin from /dev/null.
test "$(ps -o sid= -p "$pid" | tr -d ' ')" = "$pid"
test "$(readlink "/proc/$pid/fd/0")" = /dev/null
tessera status

# A storage server in the background returns once registered.
timeout 60 "$TESSERA_STORESRV_BIN" --data "$CLUSTER/ss1" \
    --key-file "$TESSERA_KEY_FILE" --mds "unix:$CLUSTER/mds.sock" \
    --listen "unix:$CLUSTER/ss1.sock" --size 64M -v -P "$CLUSTER/ss1.pid" \
    2>"$CLUSTER/ss1.err"
cat "$CLUSTER/ss1.err"
# Its start-up messages reached the terminal (stderr) before it served.
grep -q "registering with the MDS" "$CLUSTER/ss1.err"
sspid="$(cat "$CLUSTER/ss1.pid")"
kill -0 "$sspid"
test "$(readlink "/proc/$sspid/cwd")" = /
wait_servers_up 1

# A second storage server on the same store fails: status 1, the reason
# on stderr, no pidfile.
if timeout 60 "$TESSERA_STORESRV_BIN" --data "$CLUSTER/ss1" \
        --key-file "$TESSERA_KEY_FILE" --mds "unix:$CLUSTER/mds.sock" \
        --listen "unix:$CLUSTER/ss9.sock" -P "$CLUSTER/ss9.pid" \
        2>"$CLUSTER/ss9.err"; then
    echo "FAIL: a second server started on one store"
    exit 1
fi
cat "$CLUSTER/ss9.err"
test -s "$CLUSTER/ss9.err"
test ! -e "$CLUSTER/ss9.pid"

# SIGTERM stops both, which remove their own pidfiles.
for p in "$sspid" "$pid"; do
    kill -TERM "$p"
    for (( i = 0; i < 100; ++i )); do
        kill -0 "$p" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$p" 2>/dev/null; then
        echo "FAIL: $p still runs 10 s after SIGTERM"
        exit 1
    fi
done
test ! -e "$CLUSTER/ss1.pid"
test ! -e "$CLUSTER/mds.pid"
echo "test-daemon: ok in $(elapsed "$t0") s"

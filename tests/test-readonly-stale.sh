#!/usr/bin/env bash
# A read-only open with a cached map never reads the old data of a
# replica that a writer reported failed: the MDS tells the replica's
# server the segment's new generation (the server then refuses the
# reader's older one, and the reader re-reads its map), without waiting
# for repair.  Repair is kept out of it (as behind a backlog): server 2
# is draining, and with two servers for two replicas its replicas have
# nowhere to go, so repair neither resyncs nor moves them.
#   1. Server 2 stays alive: it is paused (SIGSTOP) while the writer
#      writes "N", so every write there times out and is reported
#      (REPLICA_FAILED: stale), then resumed; the writer then writes
#      "M" (to server 1 only: server 2 is stale) and flushes.  A reader
#      that cached the map before must read "M", never what server 2
#      holds.
#   2. Server 2 is away: it stops while the writer writes "P" to a
#      second volume, then restarts: its registration tells it the new
#      generations, and a reader that cached the map before reads "P".
# Prints how long the announcements took to land and the reads made.
source ./functions.sh
set -e
set -x

requires_built
requires "$PYTHON" -c 'import nbd'

# The pause outlasts the plugin's timeout (2 s), not the down-timeout.
export DOWN_TIMEOUT=30 OUT_TIMEOUT=600
make_cluster_dir
start_mds
start_storesrv 1
start_storesrv 2
wait_servers_up 2
b="$(server_id 2)"
# 8 segments of 64K each, every segment on both servers.
tessera volume create vol --size 512K --replicas 2
tessera volume create vol2 --size 512K --replicas 2

# reads URI TAG [ROUNDS]: read every segment ROUNDS times (default 20;
# the reader's round robin sends half the reads to server 2): each must
# be TAG's data.
reads ()
{
    "$PYTHON" - "$@" <<'PY'
import sys, time
import nbd
uri, tag = sys.argv[1], sys.argv[2].encode()
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 20
h = nbd.NBD()
h.connect_uri(uri)
n, bad, t0 = 0, [], time.monotonic()
for rnd in range(rounds):
    for i in range(8):
        d = h.pread(65536, i * 65536)
        n += 1
        if d != tag * 65536:
            bad.append((rnd, i, bytes(d[:1])))
print("readonly-stale: %d reads of 64K in %.3f s, %d not %r"
      % (n, time.monotonic() - t0, len(bad), tag))
assert not bad, "read other data than %r: %s" % (tag, bad[:10])
PY
}

# writes URI TAG: write TAG's data to every segment, one write each (each
# has its own deadline for its failure reports), then flush.
writes ()
{
    "$PYTHON" - "$@" <<'PY'
import sys, time
import nbd
uri, tag = sys.argv[1], sys.argv[2].encode()
h = nbd.NBD()
h.connect_uri(uri)
t0 = time.monotonic()
for i in range(8):
    h.pwrite(tag * 65536, i * 65536)
h.flush()
print("readonly-stale: wrote %r in %.3f s" % (tag, time.monotonic() - t0))
PY
}

# wait_log REGEX: wait at most 8 s (a reader's map is re-read every 30
# s: this test must not let it) until the MDS log matches REGEX.
wait_log ()
{
    local i
    for (( i = 0; i < 80; ++i )); do
        if grep -Eq "$1" "$CLUSTER/mds.log"; then return 0; fi
        sleep 0.1
    done
    echo "readonly-stale: no /$1/ in the MDS log within 8 s"
}

start_nbdkit w vol
start_nbdkit r vol readonly=true
start_nbdkit w2 vol2
start_nbdkit r2 vol2 readonly=true
# Allocate every segment (a draining server takes no new ones).
writes "$(nbd_uri w)" O
writes "$(nbd_uri w2)" A
tessera server drain "$b"

# ---- 1. A stale replica on a server that stays alive ----

reads "$(nbd_uri r)" O 1
pause_storesrv 2
writes "$(nbd_uri w)" N
resume_storesrv 2
t0="$(now)"
writes "$(nbd_uri w)" M
tessera volume map vol
# The MDS logs (-v) each generation told: wait (at most 8 s, see
# wait_log) until server 2 has been told all 8.
for (( i = 0; i < 80; ++i )); do
    n="$(grep -c "told to server $b (stale replica)" "$CLUSTER/mds.log" || :)"
    if [ "$n" -ge 8 ]; then break; fi
    sleep 0.1
done
echo "readonly-stale: server 2 told $n generations, $(elapsed "$t0") s" \
     "after it resumed"
reads "$(nbd_uri r)" M
stop_nbdkit r
stop_nbdkit w

# ---- 2. A stale replica on a server that was away ----

reads "$(nbd_uri r2)" A 1
stop_storesrv 2
writes "$(nbd_uri w2)" P
tessera volume map vol2
t0="$(now)"
start_storesrv 2
wait_log "server $b: told the generation of its [0-9]+ stale"
echo "readonly-stale: restart to the end of the announcement:" \
     "$(elapsed "$t0") s"
reads "$(nbd_uri r2)" P
grep "server $b: told the generation of its" "$CLUSTER/mds.log"

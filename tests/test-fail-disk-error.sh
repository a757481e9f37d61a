#!/usr/bin/env bash
# Issue 10, test 4: EIO from one storage server's disk (faultfs): (a) on
# the fsync of a FLUSH, (b) on a write, (c) on a FUA write's sync that
# takes the writeback error of another segment's data (fsyncgate).  The
# FLUSH covering lost data must fail or the replicas be marked stale; no
# acknowledged data may be lost (every read returns it); the server must
# not go on serving (it exits with status 1, saying why); after a
# restart and repair verify is clean.  Each part uses its own volume; the
# test reports every broken rule, then fails.
source ./functions.sh
set -e
set -x

requires_built
requires "$PYTHON" -c 'import nbd'
requires_faultfs

export SEGMENT_SIZE=64K LEASE_TIMEOUT=3 DOWN_TIMEOUT=3 OUT_TIMEOUT=30
export STORE_SIZE=64M
t_start="$(now)"
make_cluster_dir
faultfs_mount ff2
storesrv_on_faultfs 2 ff2
start_cluster 2
ss2_id="$(server_id 2)"
failures=()
figures=()

# broken PART WHAT: record a broken rule (the test fails at the end).
broken ()
{
    echo "disk-error: FAIL: $1: $2"
    failures+=("$1: $2")
}

# flush_rule PART VOL URI [SEGMENT]: FLUSH (twice if the first fails: a
# retry must not hide the error).  A FLUSH that succeeds after the
# injected error requires server 2 gone or server 2's replica (of
# SEGMENT, an index in VOL, or of any segment) marked stale since the
# part began: in the map now, or in the MDS's log (repair may already
# have made it ok again).
flush_rule ()
{
    local part="$1" vol="$2" uri="$3" seg="$4" res stale marks i segid=
    if [ -n "$seg" ]; then
        segid="$(tessera_json "j['segments'][$seg]['id']" volume map "$vol")"
    fi
    for i in 1 2; do
        if nbd_flush "$uri"; then res=ok; else res=failed; fi
        stale="$(tessera_json "sum(1 for s in j['segments'] if '$segid' in ('', str(s['id'])) for r in s['replicas'] if r['server'] == $ss2_id and r['state'] != 'ok')" volume map "$vol")"
        marks="$(stale_marks "$mds_lines" "$ss2_id" "$segid")"
        echo "disk-error: $part: FLUSH $i: $res; server 2's replicas${seg:+ of segment $seg}: $stale stale now, $marks marked stale since the error"
        figures+=("$part: FLUSH $i $res, $stale stale, $marks marked stale")
        [ "$res" = ok ] || continue
        if [ "$stale" -eq 0 ] && [ "$marks" -eq 0 ] &&
               kill -0 "$ss2_pid" 2>/dev/null; then
            broken "$part" "FLUSH $i succeeded after the injected EIO, server 2 still serving, its replica${seg:+ of segment $seg} not marked stale"
        fi
        break
    done
}

# server_failed_rule PART: server 2 must exit (within 10 s) with status
# 1, its log saying why.
server_failed_rule ()
{
    local part="$1" i st
    for (( i = 0; i < 100; ++i )); do
        kill -0 "$ss2_pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$ss2_pid" 2>/dev/null; then
        broken "$part" "server 2 still running 10 s after the injected EIO"
        return 0
    fi
    st=0
    wait "$ss2_pid" || st=$?
    rm -f "$CLUSTER/ss2.pid"
    echo "disk-error: $part: server 2 exited with status $st"
    [ "$st" -eq 1 ] ||
        broken "$part" "server 2 exited with status $st, not 1"
    tail -n +$(( log_lines + 1 )) "$CLUSTER/ss2.log" |
        grep -Ei 'input/output error|EIO|disk|fail' ||
        broken "$part" "server 2's log does not say why it stopped"
}

# reads_rule PART URI SPEC: every read returns what SPEC says
# (pattern_check; 16 reads per segment).
reads_rule ()
{
    pattern_check "$2" "$3" 16 65536 "$CLUSTER/check-$1.json" ||
        broken "$1" "reads returned data other than the acknowledged N"
}

# recover PART VOL: restart server 2 (stopping it cleanly if it still
# runs), repair, verify.
recover ()
{
    local part="$1" vol="$2"
    faultfs_ctl ff2 clear
    if kill -0 "$ss2_pid" 2>/dev/null; then
        stop_storesrv 2
        wait "$ss2_pid" || :
    fi
    start_storesrv 2
    wait_servers_up 2
    repair_wait 60 || broken "$part" "repair did not finish"
    figures+=("$part: repair ${REPAIR_SECS} s")
    tessera volume verify "$vol" ||
        broken "$part" "volume verify is not clean after repair"
}

# start_part PART VOL: volume VOL with O written and FLUSHed everywhere;
# its writer nbdkit is "PART"; remember server 2's pid and log size.
start_part ()
{
    tessera volume create "$2" --size 1M --replicas 2
    start_nbdkit "$1" "$2" epoch-interval=300
    pattern_write "$(nbd_uri "$1")" O flush
    ss2_pid="$(cat "$CLUSTER/ss2.pid")"
    log_lines="$(wc -l < "$CLUSTER/ss2.log")"
    mds_lines="$(wc -l < "$CLUSTER/mds.log")"
}

# (a) EIO on the FLUSH's fsync: N (acknowledged, unsynced) is lost on
# server 2.
start_part a vola
uri="$(nbd_uri a)"
pattern_write "$uri" N
faultfs_ctl ff2 fail-fsync 1
flush_rule a vola "$uri"
faultfs_stat ff2 injected_fsync_errors
reads_rule a "$uri" N
server_failed_rule a
stop_nbdkit a
recover a vola

# (b) EIO on a write: the write is acknowledged from server 1 only if
# server 2's replica is marked stale.
start_part b volb
uri="$(nbd_uri b)"
faultfs_ctl ff2 fail-write 1
if ! pattern_write "$uri" N; then
    broken b "a write failed although server 1 took it"
fi
faultfs_stat ff2 injected_write_errors
flush_rule b volb "$uri"
reads_rule b "$uri" N
server_failed_rule b
stop_nbdkit b
recover b volb

# (c) fsyncgate: N written to segment 0 (unsynced); a FUA write to
# segment 8 takes the fsync error, which drops segment 0's pages too.
# The later FLUSH that covers segment 0 must not succeed with server 2's
# replica of it ok.
start_part c volc
uri="$(nbd_uri c)"
pattern_write "$uri" N "" 0 15
faultfs_ctl ff2 fail-fsync 1
pattern_write "$uri" N fua 128 143 ||
    echo "disk-error: c: the FUA write failed"
tessera volume map volc
flush_rule c volc "$uri" 0
seg0_state="$(tessera_json "','.join(r['state'] for r in j['segments'][0]['replicas'])" volume map volc)"
echo "disk-error: c: segment 0 replica states after the FLUSH: $seg0_state"
reads_rule c "$uri" O,N@0-15,N@128-143
server_failed_rule c
stop_nbdkit c
recover c volc

echo "disk-error: figures: ${figures[*]}; test $(elapsed "$t_start") s"
if [ ${#failures[@]} -gt 0 ]; then
    printf 'disk-error: broken: %s\n' "${failures[@]}"
    exit 1
fi

#!/usr/bin/env bash
# The MDS's etcd client (mds/etcd.c) against three real etcd members
# (Debian's etcd-server): keys, transactions, leases, status and
# failover with all members up (unit/test-etcd), then with the first
# member killed (every call answered by the others), then with a
# majority killed (an elected leader steps down before its lease can
# expire; writes fail within the client's timeout).  The elections of
# mds/election.c: a standby takes over at once when the leader resigns.
source ./functions.sh
set -e
set -x

requires etcdctl version
make_cluster_dir
start_etcd 3

./unit/test-etcd

# The first member killed: its endpoint stays first in the list.
stop_pidfile "$CLUSTER/etcd1.pid" KILL
ETCD_TEST_MODE=degraded ./unit/test-etcd

# A leader elected, then quorum lost under it: it must stop leading
# before its lease can have expired, and be deposed within the TTL.
export ETCD_TEST_READY="$CLUSTER/ready" ETCD_TEST_KILLED="$CLUSTER/killed"
ETCD_TEST_MODE=quorumloss ./unit/test-etcd &
pid=$!
for (( i = 0; i < 100; ++i )); do
    [ -e "$ETCD_TEST_READY" ] && break
    kill -0 $pid
    sleep 0.1
done
[ -e "$ETCD_TEST_READY" ]
stop_pidfile "$CLUSTER/etcd2.pid" KILL
# Taken once the member is gone: every renewal that succeeded was sent
# before this time.
$PYTHON -c 'import time; print(time.monotonic_ns())' >"$ETCD_TEST_KILLED.tmp"
mv "$ETCD_TEST_KILLED.tmp" "$ETCD_TEST_KILLED"
wait $pid

# Two of three gone: no quorum.
ETCD_TEST_MODE=noquorum ./unit/test-etcd

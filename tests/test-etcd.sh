#!/usr/bin/env bash
# The MDS's etcd client (mds/etcd.c) against three real etcd members
# (Debian's etcd-server): keys, transactions, leases, status and
# failover with all members up (unit/test-etcd), then with the first
# member killed (every call answered by the others), then with a
# majority killed (writes fail within the client's timeout).
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

# Two of three gone: no quorum.
stop_pidfile "$CLUSTER/etcd2.pid" KILL
ETCD_TEST_MODE=noquorum ./unit/test-etcd

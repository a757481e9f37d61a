#!/usr/bin/env bash
# Malformed frames to a storage server get an error (or a close) and never
# take it down; afterwards it still reads and writes exact bytes.
source ./functions.sh
set -e
set -x

requires_built

make_cluster_dir
start_cluster 2

./test-ss-malformed "unix:$CLUSTER/ss1.sock" 65536 "unix:$CLUSTER/ss2.sock"
kill -0 "$(cat "$CLUSTER/ss1.pid")"
tessera server list

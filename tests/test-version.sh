#!/usr/bin/env bash
# Every program prints its version and has --help.
source ./functions.sh
set -e
set -x

requires_built

for p in "$TESSERA_MDS_BIN" "$TESSERA_STORESRV_BIN" "$TESSERA_BIN"; do
    "$p" --version | grep -E "^$(basename "$p") [0-9]+\.[0-9]+\.[0-9]+"
    "$p" --help | grep -qi "usage"
done
nbdkit "$TESSERA_PLUGIN" --version | grep -E "^tessera [0-9]"
nbdkit "$TESSERA_PLUGIN" --help | grep -q "volume="

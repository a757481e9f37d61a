#!/usr/bin/env bash
# Every saved fuzz input (tests/fuzz/corpus/NAME: seeds, inputs that
# reached new code, and crash-* inputs of bugs found) replays through its
# harness without breaking a promise.  Fuzzing itself is
# tests/fuzz/run-fuzz.sh (make fuzz).
source ./functions.sh
set -e
set -x

corpus="$abs_top_srcdir/tests/fuzz/corpus"
tmp="$(mktemp -d /tmp/tessera-fuzz.XXXXXX)"
cleanup_fn rm -rf "$tmp"

for name in proto catalog superblock index; do
    [ -x "./fuzz/replay-$name" ]
    [ -d "$corpus/$name" ]
    # The index harness keeps its LMDB environment under TMPDIR.
    TMPDIR="$tmp" timeout 300 "./fuzz/replay-$name" "$corpus/$name" \
        > "$tmp/replay-$name.log" 2>&1 || {
        tail -n 20 "$tmp/replay-$name.log"
        exit 1
    }
    tail -n 1 "$tmp/replay-$name.log"
done

#!/usr/bin/env bash
# Build the fuzz harnesses with clang's libFuzzer and run each one for a
# bounded time.
#
#   tests/fuzz/run-fuzz.sh [--seeds] [--replay] [NAME...]
#
# NAME is proto, catalog, superblock or index (default: all).  Each runs
# FUZZ_SECONDS (default 60) from its corpus tests/fuzz/corpus/NAME; inputs
# that add coverage are merged back into that corpus, and a crash is saved
# under tests/fuzz/crashes/NAME/ (the script then exits 1).  Everything is
# built in FUZZ_BUILD (default /tmp/fuzz-build), never in the source tree;
# its first run configures the tree there with CC=clang to get config.h.
#
#   --seeds   first rewrite the seed files (seed-*) of each corpus from
#             the encoders (make-seeds.c), then fuzz
#   --replay  only replay each corpus with a gcc build (as make check
#             does), no fuzzing
#
# FUZZ_SKIP_KNOWN=1 builds the harnesses with -DFUZZ_SKIP_KNOWN: they
# step over bugs already found (their inputs are saved as crash-* in the
# corpus) so that the fuzzer can look further.  Replay never does.
#
# Needs clang with libFuzzer (Debian 12: apt-get install clang
# libclang-rt-14-dev) and liblmdb-dev, liburing-dev.

set -e
set -o pipefail

fuzzdir="$(cd "$(dirname "$0")" && pwd)"
top_srcdir="$(cd "$fuzzdir/../.." && pwd)"
build="${FUZZ_BUILD:-/tmp/fuzz-build}"
seconds="${FUZZ_SECONDS:-60}"
clang="${CLANG:-clang}"
gcc="${GCC:-gcc}"
all_names="proto catalog superblock index"

seeds=no
replay_only=no
names=()
for a in "$@"; do
    case "$a" in
        --seeds) seeds=yes ;;
        --replay) replay_only=yes ;;
        -h|--help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
        proto|catalog|superblock|index) names+=("$a") ;;
        *) echo "$0: unknown argument: $a" >&2; exit 2 ;;
    esac
done
[ ${#names[@]} -gt 0 ] || read -r -a names <<< "$all_names"

case "$build" in
    "$top_srcdir"|"$top_srcdir"/*)
        echo "$0: FUZZ_BUILD must be outside the source tree" >&2; exit 2 ;;
esac
mkdir -p "$build"

# config.h from a clang configure of the tree, made once.
if [ ! -f "$build/cfg/config.h" ]; then
    mkdir -p "$build/cfg"
    echo "configuring in $build/cfg (log: $build/cfg/configure.log)"
    ( cd "$build/cfg" && "$top_srcdir/configure" CC="$clang" \
          >configure.log 2>&1 ) || {
        echo "$0: configure failed, see $build/cfg/configure.log" >&2
        exit 1
    }
fi

cppflags=(
    -I"$build/cfg"
    -I"$top_srcdir/common/include"
    -I"$top_srcdir/common/proto"
    -I"$top_srcdir/common/utils"
    -I"$top_srcdir/catalog"
    -I"$top_srcdir/storesrv"
    -I"$fuzzdir"
)
common_srcs=("$top_srcdir"/common/proto/*.c "$top_srcdir"/common/utils/*.c)

# Extra sources and libraries of harness $1.
extra_srcs ()
{
    case "$1" in
        catalog) echo "$top_srcdir"/catalog/*.c ;;
        superblock) echo "$top_srcdir"/storesrv/{superblock,record,track}.c ;;
        index) echo "$top_srcdir"/storesrv/{index,record}.c ;;
    esac
}
extra_libs ()
{
    case "$1" in
        catalog|index) echo -llmdb -lnettle -lgnutls -lpthread ;;
        *) echo -lnettle -lgnutls -lpthread ;;
    esac
}

# build_harness COMPILER OUT SANITIZE NAME [SOURCES...] [FLAGS...]
build ()
{
    local cc="$1" out="$2" name="$3"
    shift 3
    # shellcheck disable=SC2046
    "$cc" -std=gnu11 -g -O1 -fno-omit-frame-pointer "${cppflags[@]}" "$@" \
        "$fuzzdir/fuzz-$name.c" "${common_srcs[@]}" $(extra_srcs "$name") \
        -o "$out" $(extra_libs "$name")
}

status=0
for name in "${names[@]}"; do
    corpus="$fuzzdir/corpus/$name"
    mkdir -p "$corpus"

    if [ "$replay_only" = yes ]; then
        build "$gcc" "$build/replay-$name" "$name" "$fuzzdir/replay.c"
        "$build/replay-$name" "$corpus" | tail -n 1 || status=1
        continue
    fi

    if [ "$seeds" = yes ]; then
        build "$clang" "$build/make-seeds-$name" "$name" \
            -DFUZZ_SEEDS -fsanitize=address,undefined \
            -fno-sanitize-recover=all "$fuzzdir/make-seeds.c"
        "$build/make-seeds-$name" "$corpus"
    fi

    known=()
    [ "${FUZZ_SKIP_KNOWN:-0}" = 1 ] && known=(-DFUZZ_SKIP_KNOWN)
    build "$clang" "$build/fuzz-$name" "$name" "${known[@]}" \
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all

    # New inputs go to a scratch directory, then are merged back below.
    work="$build/work-$name"
    rm -rf "$work"
    mkdir -p "$work" "$fuzzdir/crashes/$name"
    opts=(-max_total_time="$seconds" -print_final_stats=1
          -artifact_prefix="$fuzzdir/crashes/$name/")
    # The storage server's decoders log every refusal with log_error.
    quiet=()
    case "$name" in
        superblock|index) quiet=(-close_fd_mask=2) ;;
    esac
    opts+=("${quiet[@]}")
    log="$build/fuzz-$name.log"
    echo "fuzzing $name for $seconds s (log: $log)"
    rc=0
    ( cd "$build" && TMPDIR="$build" "./fuzz-$name" "${opts[@]}" \
          "$work" "$corpus" ) >"$log" 2>&1 || rc=$?
    # The corpus keeps its seed-* and crash-* files, plus those of the
    # other inputs (old and new) that reach code the seeds do not, as
    # few as libFuzzer's merge finds (edges only, not hit counts).
    old="$build/old-$name"
    rm -rf "$old"
    mkdir -p "$old"
    find "$corpus" -type f ! -name 'seed-*' ! -name 'crash-*' \
         -exec mv -t "$old" {} +
    if ! "$build/fuzz-$name" -merge=1 -use_counters=0 "${quiet[@]}" \
           "$corpus" "$old" "$work" >"$build/merge-$name.log" 2>&1; then
        echo "$name: merge failed (see $build/merge-$name.log)," \
             "corpus unchanged"
        find "$old" -type f -exec cp -t "$corpus" {} +
    fi

    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1)
    crashes=$(find "$fuzzdir/crashes/$name" -type f | wc -l)
    echo "$name: ${execs:-?} execs, ${rate:-?} exec/s, ${cov:-cov ?}," \
         "corpus $(find "$corpus" -type f | wc -l) files," \
         "$crashes crash file(s), libFuzzer exit $rc"
    if [ "$rc" -ne 0 ] || [ "$crashes" -gt 0 ]; then
        grep -E '^(fuzz: |==[0-9]+==ERROR|SUMMARY)' "$log" | head -n 5 || :
        status=1
    fi
done
exit $status

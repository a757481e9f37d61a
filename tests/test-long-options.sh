#!/usr/bin/env bash
# Every long option of every program is documented in its man page and in
# its --help; bad options are refused with a message.
source ./functions.sh
set -e
set -x

requires_built

check ()
{
    local prog="$1" pod="$2" opt
    test -n "$("$prog" --long-options)"
    for opt in $("$prog" --long-options); do
        case "$opt" in
            --long-options|--short-options) continue ;;
        esac
        if ! grep -q -- "B<$opt" "$pod"; then
            echo "$prog: $opt is not documented in $pod"
            exit 1
        fi
        if ! "$prog" --help | grep -q -- "$opt"; then
            echo "$prog: $opt is not in --help"
            exit 1
        fi
    done
    for opt in $("$prog" --short-options); do
        grep -q -- "B<$opt" "$pod" || {
            echo "$prog: $opt is not documented in $pod"; exit 1; }
    done
    expect_fail "no-such-option|unrecognized|invalid" "$prog" --no-such-option
}

check "$TESSERA_MDS_BIN" "$abs_top_srcdir/man/tessera-mds.8.pod"
check "$TESSERA_STORESRV_BIN" "$abs_top_srcdir/man/tessera-storesrv.8.pod"
check "$TESSERA_BIN" "$abs_top_srcdir/man/tessera.1.pod"

# Plugin parameters: each key the plugin accepts is in its man page.
for key in mds volume readonly connections timeout epoch-interval \
           open-timeout; do
    grep -q "B<$key=" "$abs_top_srcdir/man/nbdkit-tessera-plugin.1.pod"
    nbdkit "$TESSERA_PLUGIN" --help | grep -q "$key="
done
expect_fail "unknown|invalid|no-such" \
    nbdkit -U - "$TESSERA_PLUGIN" volume=v no-such-key=1 --run true
expect_fail "volume" nbdkit -U - "$TESSERA_PLUGIN" mds=unix:/x --run true

# Daemons refuse bad option values before doing anything.
d="$(mktemp -d)"
cleanup_fn rm -rf "$d"
expect_fail "segment" "$TESSERA_MDS_BIN" --db "$d/m" --init --segment-size 1000 -f
expect_fail "segment" "$TESSERA_MDS_BIN" --db "$d/m" --init --segment-size 128M -f
expect_fail "init" "$TESSERA_MDS_BIN" --db "$d/none" -f
expect_fail "listen|address" "$TESSERA_MDS_BIN" --db "$d/m" --init --listen nonsense -f
expect_fail "size" "$TESSERA_STORESRV_BIN" --data "$d/s" --size 12Q -f
expect_fail "data" "$TESSERA_STORESRV_BIN" -f

# The options both daemons share are refused alike (common/utils/daemon.c).
for prog in "$TESSERA_MDS_BIN --db $d/m" "$TESSERA_STORESRV_BIN --data $d/s"; do
    # shellcheck disable=SC2086
    set -- $prog
    name="$(basename "$1")"
    expect_fail "^$name: --listen: nonsense: not HOST:PORT" "$@" \
        --listen nonsense -f
    expect_fail "^$name: --max-connections: 0: must be a number from 1" \
        "$@" --max-connections 0 -f
    expect_fail "^$name: --pidfile: : not a file name" "$@" -P '' -f
    expect_fail "^$name: --debug: x.y=1: no such debug flag" "$@" -D x.y=1
    expect_fail "^$name: unexpected argument: extra" "$@" -f extra
    expect_fail "Try '$name --help'" "$@" --no-such-option
done

#!/usr/bin/env bash
# Build the tree again with --enable-sanitizers (ASan and UBSan, every
# report fatal) in a scratch directory, then run the unit tests and two
# integration tests there: test-data-bytes.sh (MDS, three storage
# servers, nbdkit with the plugin, NBD reads and writes) and
# test-zones.sh (the MDS's placement index, repair and re-spread, zone
# warnings).  Any report from any process fails the test: the reports go
# to files (ASAN_OPTIONS log_path), which must not exist afterwards.
source ./functions.sh
set -e
set -x

requires_built
# Skip where the compiler has no sanitizers.
requires bash -c 'echo "int main(void){return 0;}" |
    ${CC:-gcc} -fsanitize=address,undefined -x c -o /dev/null -'

work="$(mktemp -d /var/tmp/tessera-asan.XXXXXX)"
cleanup_fn "if [ \$status -ne 0 ] && [ -n \"\$TESSERA_TEST_KEEP\" ]; then
                echo \"$0: kept $work\"
            else
                rm -rf '$work'
            fi"
reports="$work/reports"
mkdir -p "$work/build" "$reports"

start=$(now)
# A source tree configured in place (scripts/build does that) cannot
# also have a VPATH build: configure the sanitizer build from a copy of
# the sources (the files git tracks or would track, as they are now).
src="$abs_top_srcdir"
if [ -f "$abs_top_srcdir/config.status" ]; then
    requires git -C "$abs_top_srcdir" rev-parse --is-inside-work-tree
    src="$work/src"
    mkdir -p "$src"
    git -C "$abs_top_srcdir" ls-files -z --cached --others --exclude-standard |
        tar -C "$abs_top_srcdir" --null -T - --ignore-failed-read -cf - |
        tar -C "$src" -xf -
    (cd "$src" && autoreconf -fi) >"$work/autoreconf.log" 2>&1 ||
        { tail -20 "$work/autoreconf.log"; exit 1; }
fi
cd "$work/build"
"$src/configure" --enable-sanitizers \
    >configure.log 2>&1 || { tail -40 configure.log; exit 1; }
# Not the outer make's jobserver or variables.
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -j2 >make.log 2>&1 ||
    { tail -40 make.log; exit 1; }
echo "sanitizer build: $(elapsed "$start") s"

export ASAN_OPTIONS="log_path=$reports/asan:abort_on_error=0:detect_leaks=1"
export UBSAN_OPTIONS="log_path=$reports/ubsan:print_stacktrace=1"
# nbdkit itself is not built with ASan: its own leaks are not ours.
export LSAN_OPTIONS="suppressions=$abs_top_srcdir/tests/sanitizers.supp:print_suppressions=0"
status=0
# Bounded: a hung test fails this one instead of holding up the suite.
timeout 1200 env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -C tests check \
    TESTS="unit/test-proto unit/test-parse unit/test-auth unit/test-tls
           unit/test-catalog unit/test-placement unit/test-superblock
           unit/test-record unit/test-track unit/test-rangelock
           unit/test-epoch-slots unit/test-map-entry test-data-bytes.sh
           test-zones.sh" \
    >check.log 2>&1 || status=$?
grep -E '^(PASS|FAIL|ERROR|SKIP|XFAIL):' check.log || tail -30 check.log
echo "sanitizer build and tests: $(elapsed "$start") s"

# nbdkit is not built with ASan, so LeakSanitizer reports the memory
# nbdkit itself (/usr/bin/nbdkit) still holds at exit, now and then, as
# a leak whose every frame is in nbdkit.  Such a report is nbdkit's, not
# ours: it is shown and set aside.  Any other report fails the test.
nbdkit_only ()
{
    $PYTHON - "$1" <<'PYEOF'
import re, sys
text = open(sys.argv[1], errors="replace").read()
if "ERROR: LeakSanitizer" not in text or "ERROR: AddressSanitizer" in text:
    sys.exit(1)
blocks = re.findall(r"leak of \d+ byte\(s\) in \d+ object\(s\) allocated "
                    r"from:\n((?:    #.*\n?)+)", text)
if not blocks:
    sys.exit(1)
for b in blocks:
    frames = [l for l in b.splitlines() if "interceptor" not in l
              and "asan_malloc" not in l]
    if not frames or not all(re.search(r"\(/usr/s?bin/nbdkit\+0x", l)
                             for l in frames):
        sys.exit(1)
sys.exit(0)
PYEOF
}
bad=0
for f in "$reports"/*; do
    [ -e "$f" ] || continue
    echo "===== $f"
    head -60 "$f"
    if nbdkit_only "$f"; then
        echo "(nbdkit's own memory at exit, not the plugin's: set aside)"
    else
        bad=1
    fi
done
if [ "$bad" -ne 0 ]; then
    echo "$0: sanitizer reports (above)"
    exit 1
fi
if [ "$status" -ne 0 ]; then
    for f in tests/*.log tests/unit/*.log; do
        grep -q '^FAIL\|^ERROR' "$f" 2>/dev/null && tail -60 "$f"
    done
    exit 1
fi
if grep -q '^SKIP: test-data-bytes.sh' check.log; then
    echo "$0: the integration test was skipped"
    exit 1
fi

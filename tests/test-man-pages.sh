#!/usr/bin/env bash
# Every man page passes podchecker and has no line over 76 columns outside
# verbatim blocks.
source ./functions.sh
set -e
set -x

requires command -v podchecker

pages=(tessera.1 tessera-mds.8 tessera-storesrv.8 nbdkit-tessera-plugin.1
       tessera-protocol.5 tessera-catalog.3)
for p in "${pages[@]}"; do
    f="$abs_top_srcdir/man/$p.pod"
    test -f "$f"
    podchecker "$f"
    # Outside verbatim paragraphs (which start with white space), no line
    # may exceed 76 columns.
    awk -v f="$f" '
        /^[ \t]/ { next }
        length($0) > 76 { printf "%s:%d: line over 76 columns\n", f, NR; bad = 1 }
        END { exit bad }' "$f"
    for h in NAME SYNOPSIS DESCRIPTION "SEE ALSO"; do
        grep -q "^=head1 $h" "$f"
    done
done

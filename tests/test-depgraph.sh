#!/usr/bin/env bash
# No two source files of a component call each other in a loop
# (docs/architecture.md, "Dependencies"): scripts/depgraph --cycles
# reads the built objects and exits 1 if it finds a loop, printing it.
source ./functions.sh
set -e
set -x

requires python3 --version
requires nm --version
requires_built

cd "$abs_top_srcdir"
timeout 120 python3 scripts/depgraph --builddir "$abs_top_builddir" \
        --cycles mds nbdplugin catalog tools common storesrv

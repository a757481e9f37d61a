#!/usr/bin/env bash
# Check the VM harness alone, without Tessera: nbdkit's memory plugin
# (2G) serves the export in a network namespace made here, and the VM
# runs the ext4 and xfs workloads against it.
#
#   tests/vm/run-memory.sh [FSLIST [PARAM=VALUE...]]
#
# e.g. tests/vm/run-memory.sh ext4 files=4 mib=1.  Needs root (ip netns)
# and nbdkit.  Exit status 0 when every guest step passed, 77 when this
# machine cannot run the VM.
set -euo pipefail

_cleanup_hooks=()
cleanup_fn ()
{
    _cleanup_hooks+=("$*")
}
_run_cleanup_hooks ()
{
    local status=$? i
    set +e
    trap '' INT QUIT TERM EXIT
    for (( i = ${#_cleanup_hooks[@]} - 1; i >= 0; --i )); do
        eval "${_cleanup_hooks[$i]}"
    done
    exit "$status"
}
trap _run_cleanup_hooks INT QUIT TERM EXIT

source "$(dirname "$0")/vm-lib.sh"

fslist="${1:-ext4,xfs}"
shift || :
if [ "$(id -u)" -ne 0 ]; then
    echo "$0: needs root for ip netns"
    exit 77
fi
command -v nbdkit >/dev/null || { echo "$0: no nbdkit"; exit 77; }
ip netns list >/dev/null || { echo "$0: ip netns does not work"; exit 77; }

vm_prepare
dir="$(mktemp -d /tmp/tessera-vm.XXXXXX)"
cleanup_fn rm -rf "$dir"
vm_netns_create
ip netns exec "$VM_NETNS" nbdkit -f -p 10809 -i 127.0.0.1 \
   -P "$dir/nbdkit.pid" memory 2G >"$dir/nbdkit.log" 2>&1 &
cleanup_fn 'kill $(cat '"$dir"'/nbdkit.pid 2>/dev/null) 2>/dev/null'
for (( i = 0; i < 100; ++i )); do
    [ -s "$dir/nbdkit.pid" ] && break
    sleep 0.1
done
[ -s "$dir/nbdkit.pid" ]

start=$SECONDS
rc=0
vm_run "$dir/console.log" "$fslist" "$@" || rc=$?
vm_check "$dir/console.log" ${fslist//,/ } || rc=1
echo "$0: status $rc, $((SECONDS - start)) s ($VM_ACCEL)"
exit $rc

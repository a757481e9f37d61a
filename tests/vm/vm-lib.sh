# shellcheck shell=bash
# Shell helpers to run the Tessera test VM: a Debian kernel and a small
# initramfs (vm-image.sh, init) attaching an NBD export with the kernel
# NBD client.  Source it after functions.sh (or after defining
# cleanup_fn):
#
#   source "$abs_top_srcdir/tests/vm/vm-lib.sh"
#   vm_prepare                  # exit 77 when the machine cannot
#   vm_netns_create             # VM_NETNS, with only lo, removed at exit
#   ip netns exec "$VM_NETNS" nbdkit -p 10809 -i 127.0.0.1 ...
#   vm_run LOG ext4,xfs         # boots the VM, returns its status
#   vm_check LOG ext4 xfs       # every step passed?
#
# The VM reaches the NBD server only through qemu's user-mode network
# inside the namespace: the guest's 10.0.2.2:PORT is a connect() to
# 127.0.0.1:PORT in VM_NETNS, so no packet leaves this machine.

vm_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# The guest's steps for one filesystem, in order (see init).
VM_FS_STEPS=(connect mkfs mount write sync umount fsck "drop caches"
             remount verify "umount again" disconnect)

# vm_prepare: build or reuse the kernel and initramfs (VM_KERNEL,
# VM_INITRD), check qemu and choose the accelerator (VM_ACCEL).  Skips
# the test (exit 77) when this machine cannot run the VM.
vm_prepare ()
{
    local out rc=0
    out="$("$vm_dir/vm-image.sh")" || rc=$?
    case $rc in
    0) ;;
    77) echo "$0: cannot build the test VM: skipping this test"; exit 77 ;;
    *) echo "$0: vm-image.sh failed ($rc)"; return 1 ;;
    esac
    VM_KERNEL="$(sed -n 's/^KERNEL=//p' <<<"$out")"
    VM_INITRD="$(sed -n 's/^INITRD=//p' <<<"$out")"
    test -s "$VM_KERNEL"
    test -s "$VM_INITRD"
    vm_choose_accel
    echo "$0: VM kernel $VM_KERNEL, initramfs $VM_INITRD, accel $VM_ACCEL"
}

# vm_qemu_args: the qemu options common to every boot (array VM_QEMU).
vm_qemu_args ()
{
    local accel="$1" cpu=max
    [ "$accel" = kvm ] && cpu=host
    VM_QEMU=(qemu-system-x86_64 -accel "$accel" -cpu "$cpu"
             -m "${VM_MEM:-1024}" -smp "${VM_SMP:-1}"
             -nodefaults -display none -no-reboot
             -kernel "$VM_KERNEL" -initrd "$VM_INITRD")
}

# vm_choose_accel: set VM_ACCEL to kvm only when a KVM guest really boots
# here (quickly), else tcg.  $TESSERA_VM_ACCEL overrides; the probe's
# answer is cached per host kernel and qemu version.
vm_choose_accel ()
{
    local cache="${TESSERA_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tessera-vm}"
    local key file log start
    if [ -n "${TESSERA_VM_ACCEL:-}" ]; then
        VM_ACCEL="$TESSERA_VM_ACCEL"
        return 0
    fi
    VM_ACCEL=tcg
    [ -r /dev/kvm ] && [ -w /dev/kvm ] || return 0
    key="$( (uname -r; qemu-system-x86_64 --version | head -n 1;
             grep -m1 '^flags' /proc/cpuinfo) | sha256sum | cut -c1-16)"
    file="$cache/accel-$key"
    if [ -s "$file" ]; then
        VM_ACCEL="$(cat "$file")"
        return 0
    fi
    log="$(mktemp /tmp/tessera-vm-probe.XXXXXX)"
    vm_qemu_args kvm
    start=$SECONDS
    # A usable KVM boots to init in a few seconds; a failing one aborts
    # at once; a software-emulated one takes longer than TCG.
    if (timeout -k 5 20 "${VM_QEMU[@]}" -serial "file:$log" \
            -append "console=ttyS0 quiet panic=-1 tessera.probe=1" \
            >/dev/null 2>&1) 2>/dev/null &&
            grep -q '^PASS: boot' "$log" && [ $((SECONDS - start)) -lt 15 ]
    then
        VM_ACCEL=kvm
    fi
    rm -f "$log"
    echo "$VM_ACCEL" > "$file"
}

# vm_netns_create: create the network namespace VM_NETNS (only lo, up),
# deleted at exit.
vm_netns_create ()
{
    VM_NETNS="tessera-vm-$$"
    ip netns add "$VM_NETNS"
    cleanup_fn ip netns del "$VM_NETNS"
    ip netns exec "$VM_NETNS" ip link set lo up
}

# vm_run LOG FSLIST [PARAM=VALUE...] [-- MARKCMD...]: boot the VM in
# VM_NETNS with the guest workload on the comma-separated FSLIST; the
# serial console goes to LOG.  PARAMs become tessera.PARAM=VALUE on the
# kernel command line (port, files, mib, seed, conns, timeout, mark:
# see init).  MARKCMD
# runs (once, on the host) when the guest prints its first MARK: line.
# The VM gets at most $VM_TIMEOUT (default 480) seconds.  Returns qemu's
# exit status (124 on timeout).
vm_run ()
{
    local log="$1" fslist="$2" append pid rc=0 marked='' start=$SECONDS xtrace
    local limit="${VM_TIMEOUT:-480}"
    shift 2
    append="console=ttyS0 quiet panic=-1 tessera.fs=$fslist"
    while [ $# -gt 0 ] && [ "$1" != -- ]; do
        append+=" tessera.$1"
        shift
    done
    [ "${1:-}" = -- ] && shift
    [ $# -gt 0 ] || marked=none
    vm_qemu_args "$VM_ACCEL"
    : > "$log"
    ip netns exec "$VM_NETNS" timeout -k 10 "$limit" \
        "${VM_QEMU[@]}" -serial "file:$log" \
        -netdev user,id=n0,restrict=off \
        -device virtio-net-pci,netdev=n0 \
        -append "$append" &
    pid=$!
    cleanup_fn "kill $pid 2>/dev/null"
    # Poll (bounded by the timeout above) for the end or the mark,
    # without tracing every poll.
    case $- in *x*) xtrace=1; set +x ;; *) xtrace= ;; esac
    while kill -0 $pid 2>/dev/null; do
        if [ -z "$marked" ] && grep -q '^MARK: ' "$log"; then
            marked=yes
            echo "$0: $(grep -m1 '^MARK: ' "$log"): running $*"
            # In a subshell: MARKCMD cannot change this function's locals.
            ( "$@" ) || echo "$0: '$*' failed"
        fi
        sleep 0.2
    done
    [ -z "$xtrace" ] || set -x
    wait $pid || rc=$?
    echo "$0: VM ($VM_ACCEL, $fslist) exited with status $rc" \
         "after $((SECONDS - start)) s"
    sed 's/^/guest: /' "$log"
    if [ -z "$marked" ]; then
        echo "$0: the guest never printed a MARK: line"
        [ $rc -ne 0 ] || rc=1
    fi
    return $rc
}

# vm_check LOG FS...: every step of the guest (boot, modules, network and
# each FS's steps) passed, and nothing failed.
vm_check ()
{
    local log="$1" fs s bad=0
    local steps=(boot modules network)
    shift
    for fs in "$@"; do
        for s in "${VM_FS_STEPS[@]}"; do
            steps+=("$fs: $s")
        done
    done
    for s in "${steps[@]}"; do
        if ! grep -qxF "PASS: $s" <(tr -d '\r' < "$log"); then
            echo "$0: guest step '$s' did not pass"
            bad=1
        fi
    done
    if grep -a '^FAIL: ' "$log"; then
        bad=1
    fi
    if ! grep -aq '^DONE: ' "$log"; then
        echo "$0: the guest did not finish"
        bad=1
    fi
    return $bad
}

# vm_sums LOG FS: the guest's digest of FS's file checksums (equal seeds
# give equal digests).
vm_sums ()
{
    tr -d '\r' < "$1" | sed -n "s/^INFO: $2: sums //p" | head -n 1
}

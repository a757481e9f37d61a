#!/usr/bin/env bash
# Build (or reuse) the kernel and initramfs of the test VM.
#
#   tests/vm/vm-image.sh            build if needed, print KERNEL= INITRD=
#   tests/vm/vm-image.sh --force    rebuild the initramfs even if cached
#
# The kernel is Debian's own linux-image-amd64 (fetched with apt-get
# download, unpacked with dpkg -x, never installed); the initramfs holds
# busybox-static, nbd-client, e2fsprogs, xfsprogs, coreutils' sha256sum,
# openssl (the guest's deterministic data generator), the libraries they
# need, the kernel modules nbd, virtio_net, ext4 and xfs with their
# dependencies, and tests/vm/init as /init.
#
# Everything lives in the cache directory, outside the source tree:
# $TESSERA_VM_CACHE, else ${XDG_CACHE_HOME:-$HOME/.cache}/tessera-vm.  The
# initramfs is rebuilt whenever this script, the init script, the kernel
# or one of the packages it copies from changes.
#
# Missing host packages are installed with apt-get (after apt-get update).
# Exit status: 0 built or cached, 77 this machine cannot build the VM
# (the reason is on stderr), 1 anything else.
set -euo pipefail

prog=vm-image.sh
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${TESSERA_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tessera-vm}"
force=
[ "${1:-}" = --force ] && force=1
export PATH="/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

skip ()
{
    echo "$prog: cannot build the test VM: $*" >&2
    exit 77
}

# Host packages and, for each, a file that proves it is installed.
declare -A need=(
    [qemu-system-x86]=/usr/bin/qemu-system-x86_64
    [busybox-static]=/bin/busybox
    [nbd-client]=/usr/sbin/nbd-client
    [e2fsprogs]=/usr/sbin/mke2fs
    [xfsprogs]=/usr/sbin/mkfs.xfs
    [coreutils]=/usr/bin/sha256sum
    [openssl]=/usr/bin/openssl
    [cpio]=/usr/bin/cpio
    [kmod]=/usr/sbin/depmod
)

# install_missing: apt-get install every package whose file is missing.
install_missing ()
{
    local p missing=()
    for p in "${!need[@]}"; do
        [ -e "${need[$p]}" ] || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        skip "missing ${missing[*]} and not root (apt-get install them)"
    fi
    command -v apt-get >/dev/null || skip "missing ${missing[*]}, no apt-get"
    echo "$prog: installing ${missing[*]}" >&2
    apt-get update -q >&2 || skip "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends "${missing[@]}" >&2 ||
        skip "apt-get install ${missing[*]} failed"
    for p in "${missing[@]}"; do
        [ -e "${need[$p]}" ] || skip "$p installed but ${need[$p]} missing"
    done
}

# kernel_package: the versioned package linux-image-amd64 depends on
# (e.g. linux-image-6.1.0-56-amd64), or nothing when apt does not know.
kernel_package ()
{
    apt-cache depends linux-image-amd64 2>/dev/null |
        awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }'
}

# fetch_kernel: make sure $cache/$kpkg.deb holds the kernel package; sets
# kpkg and kdeb.  Reuses a cached package when apt cannot be asked.
fetch_kernel ()
{
    kpkg="$(kernel_package)"
    if [ -z "$kpkg" ]; then
        apt-get update -q >&2 || :
        kpkg="$(kernel_package)"
    fi
    if [ -z "$kpkg" ]; then
        kdeb="$(ls -t "$cache"/linux-image-*.deb 2>/dev/null | head -n 1)"
        [ -n "$kdeb" ] || skip "apt knows no linux-image-amd64 package"
        kpkg="$(basename "$kdeb" .deb)"
        return 0
    fi
    kdeb="$cache/$kpkg.deb"
    [ -s "$kdeb" ] && return 0
    local tmp
    tmp="$(mktemp -d "$cache/dl.XXXXXX")"
    # apt-get download writes into the current directory; _apt cannot
    # write into root's cache, so let it download unsandboxed.  Stale
    # package lists may name a kernel the archive no longer has: update
    # them and try once more.
    if ! (cd "$tmp" && apt-get download -q \
              -o APT::Sandbox::User=root "$kpkg" >&2); then
        apt-get update -q >&2 || :
        kpkg="$(kernel_package)"
        kdeb="$cache/$kpkg.deb"
        if [ -z "$kpkg" ] ||
               ! (cd "$tmp" && apt-get download -q \
                      -o APT::Sandbox::User=root "$kpkg" >&2); then
            rm -rf "$tmp"
            skip "apt-get download ${kpkg:-linux-image-amd64} failed"
        fi
    fi
    mv "$tmp"/"$kpkg"_*.deb "$kdeb"
    rm -rf "$tmp"
    # Keep only the newest kernel package.
    find "$cache" -maxdepth 1 -name 'linux-image-*.deb' ! -path "$kdeb" \
         -delete
}

# copy_with_libs ROOT FILE...: copy each FILE into ROOT at the same path,
# with every shared library ldd lists for it.
copy_with_libs ()
{
    local root="$1" f lib
    shift
    for f in "$@"; do
        mkdir -p "$root/$(dirname "$f")"
        cp -L "$f" "$root/$f"
        for lib in $(ldd "$f" 2>/dev/null |
                     awk '/=> \// { print $3 } /^\t\/.*\(/ { print $1 }'); do
            if [ ! -e "$root/$lib" ]; then
                mkdir -p "$root/$(dirname "$lib")"
                cp -L "$lib" "$root/$lib"
            fi
        done
    done
}

# module_order MODDIR MODULE...: print the paths (relative to MODDIR) of
# MODULE... and their dependencies from modules.dep, each after its
# dependencies, each once.
module_order ()
{
    local moddir="$1"
    shift
    awk -v want="$*" '
        function load(m,    n, i, d) {
            if (m in done) return
            done[m] = 1
            n = split(deps[m], d, " ")
            # modules.dep lists dependencies in reverse load order.
            for (i = n; i >= 1; i--) load(d[i])
            print m
        }
        {
            sub(/:$/, "", $1)
            path = $1
            sub(/:.*/, "", path)
            name = path
            sub(/.*\//, "", name)
            sub(/\.ko(\.[a-z]+)?$/, "", name)
            gsub(/-/, "_", name)
            byname[name] = path
            line = $0
            sub(/^[^:]*:[ ]*/, "", line)
            deps[path] = line
        }
        END {
            n = split(want, w, " ")
            for (i = 1; i <= n; i++) {
                m = w[i]
                gsub(/-/, "_", m)
                if (!(m in byname)) {
                    print "missing module " w[i] > "/dev/stderr"
                    exit 1
                }
                load(byname[m])
            }
        }' "$moddir/modules.dep"
}

# build_initrd OUT: unpack the kernel, build the initramfs into OUT and
# copy the kernel to $cache/vmlinuz-$kpkg.
build_initrd ()
{
    local out="$1" tmp root kver moddir m f
    tmp="$(mktemp -d "$cache/build.XXXXXX")"
    # shellcheck disable=SC2064
    trap "rm -rf '$tmp'" EXIT
    dpkg -x "$kdeb" "$tmp/k"
    kver="$(ls "$tmp/k/lib/modules")"
    [ -n "$kver" ] || { echo "$prog: no modules in $kdeb" >&2; exit 1; }
    cp "$tmp/k/boot/vmlinuz-$kver" "$cache/vmlinuz-$kpkg"
    depmod -b "$tmp/k" "$kver"
    moddir="$tmp/k/lib/modules/$kver"

    root="$tmp/root"
    mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,mnt,lib/modules}
    ln -s lib "$root/lib64"
    cp /bin/busybox "$root/bin/busybox"
    ln -s busybox "$root/bin/sh"
    copy_with_libs "$root" /usr/sbin/nbd-client /usr/sbin/mke2fs \
        /usr/sbin/e2fsck /usr/sbin/mkfs.xfs /usr/sbin/xfs_repair \
        /usr/bin/sha256sum /usr/bin/openssl
    [ -e /etc/mke2fs.conf ] && cp /etc/mke2fs.conf "$root/etc/"
    # The loader must be where the binaries' PT_INTERP says.
    if [ ! -e "$root/lib64/ld-linux-x86-64.so.2" ]; then
        cp -L /lib64/ld-linux-x86-64.so.2 "$root/lib/"
    fi
    : > "$root/etc/mtab"

    # Modules in load order.  crc32c (ext4's and xfs's checksums) is a
    # soft dependency that modules.dep does not list; crc32c-intel is the
    # fast one, crc32c_generic the fallback.
    : > "$root/lib/modules/load.list"
    for m in $(module_order "$moddir" crc32c_generic crc32c-intel \
                   virtio_pci virtio_net nbd crc16 mbcache jbd2 ext4 \
                   libcrc32c xfs); do
        f="$(basename "$m")"
        case "$f" in
        *.ko) cp "$moddir/$m" "$root/lib/modules/$f" ;;
        *.ko.xz) xz -dc "$moddir/$m" > "$root/lib/modules/${f%.xz}" ;;
        *.ko.zst) zstd -qdc "$moddir/$m" > "$root/lib/modules/${f%.zst}" ;;
        *) echo "$prog: unknown module format: $m" >&2; exit 1 ;;
        esac
        echo "${f%.ko*}.ko" >> "$root/lib/modules/load.list"
    done

    install -m 0755 "$here/init" "$root/init"
    (cd "$root" && find . | LC_ALL=C sort |
         cpio --quiet -o -H newc -R 0:0) | gzip -1 > "$out.tmp"
    mv "$out.tmp" "$out"
    rm -rf "$tmp"
    trap - EXIT
}

install_missing
mkdir -p "$cache"
exec 9>"$cache/lock"
flock -w 600 9 || { echo "$prog: $cache/lock is held" >&2; exit 1; }
fetch_kernel

# The initramfs is named by a hash of everything it is made from.
key="$( {
    cat "$0" "$here/init"
    echo "$kpkg"
    sha256sum < "$kdeb"
    dpkg-query -W -f='${Package} ${Version}\n' busybox-static nbd-client \
        e2fsprogs xfsprogs coreutils openssl libc6 2>/dev/null
} | sha256sum | cut -c1-16)"
initrd="$cache/initrd-$key.img"
kernel="$cache/vmlinuz-$kpkg"
if [ -n "$force" ] || [ ! -s "$initrd" ] || [ ! -s "$kernel" ]; then
    echo "$prog: building $initrd" >&2
    build_initrd "$initrd"
    find "$cache" -maxdepth 1 -name 'initrd-*.img' ! -path "$initrd" -delete
    find "$cache" -maxdepth 1 -name 'vmlinuz-*' ! -path "$kernel" -delete
fi
echo "KERNEL=$kernel"
echo "INITRD=$initrd"

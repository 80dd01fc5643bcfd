#!/usr/bin/env bash
# Build the boot assets for the QEMU/iPXE tests: OUTDIR/vmlinuz (Debian's
# cloud kernel) and OUTDIR/initrd.img (busybox + a tiny /init that prints the
# kernel command line and the NoCloud documents it fetches, then powers off).
#
# Usage: build-assets.sh OUTDIR
#
# Idempotent and cached under ${NODEBOOT_BOOT_CACHE:-$HOME/.cache/nodeboot/boot}:
# the kernel package is downloaded once (apt-get download + dpkg -x, nothing is
# installed) and the initrd is rebuilt only when its inputs change.
# Env: NODEBOOT_KERNEL_PKG (default linux-image-cloud-amd64, a metapackage or a
# concrete linux-image-* package), NODEBOOT_BOOT_REFRESH=1 to re-resolve the
# kernel package against the apt lists.
# For another architecture (tests/boot/firmware-assets.sh fetches its packages):
# NODEBOOT_KERNEL_DIR, an unpacked kernel package used instead of downloading one, and
# NODEBOOT_BUSYBOX, a static busybox of that architecture (applets are listed with the
# host's busybox, the same Debian version).
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
OUTDIR=$1
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${NODEBOOT_BOOT_CACHE:-$HOME/.cache/nodeboot/boot}
KPKG_WANT=${NODEBOOT_KERNEL_PKG:-linux-image-cloud-amd64}
# virtio-net is a module in Debian's cloud kernel; load order matters
# (each needs the ones before it). Missing/built-in ones are skipped.
MODULES=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net)

log() { echo "build-assets: $*" >&2; }

"$HERE/install-deps.sh" >/dev/null
mkdir -p "$CACHE" "$OUTDIR"

# ---------------------------------------------------------------- kernel ----
# Resolve a metapackage to the concrete linux-image-<abi> package it depends on.
resolve_kernel_pkg() {
    local want=$1 dep
    if [ -z "$(apt-cache policy "$want" 2>/dev/null | grep -m1 'Candidate:' | grep -v '(none)' || true)" ]; then
        log "apt lists do not know $want; running apt-get update"
        apt-get update -qq
    fi
    dep=$(apt-cache depends "$want" | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
    echo "${dep:-$want}"
}

kstamp="$CACHE/kernel-$KPKG_WANT.pkg"   # remembers which concrete package we use
if [ -n "${NODEBOOT_KERNEL_DIR:-}" ]; then
    KDIR=$NODEBOOT_KERNEL_DIR
    KPKG=${KDIR##*/}
else
    if [ ! -s "$kstamp" ] || [ "${NODEBOOT_BOOT_REFRESH:-0}" = 1 ]; then
        resolve_kernel_pkg "$KPKG_WANT" >"$kstamp.tmp"
        mv "$kstamp.tmp" "$kstamp"
    fi
    KPKG=$(cat "$kstamp")
    KDIR="$CACHE/kernel/$KPKG"
fi
if [ ! -e "$KDIR/.done" ]; then
    log "downloading and extracting $KPKG"
    tmp=$(mktemp -d "$CACHE/dl.XXXXXX")
    # Sandbox user root: the _apt user cannot write into a root-owned mktemp dir.
    sandbox=()
    if [ "$(id -u)" -eq 0 ]; then sandbox=(-o APT::Sandbox::User=root); fi
    (cd "$tmp" && apt-get download -qq "${sandbox[@]}" "$KPKG")
    rm -rf "$KDIR" && mkdir -p "$KDIR"
    dpkg -x "$tmp"/*.deb "$KDIR/root"
    rm -rf "$tmp"
    touch "$KDIR/.done"
fi
VMLINUZ=$(ls "$KDIR"/root/boot/vmlinuz-* | head -n1)
KVER=${VMLINUZ##*/vmlinuz-}
MODROOT="$KDIR/root/lib/modules/$KVER"

# ---------------------------------------------------------------- initrd ----
HOST_BUSYBOX=/bin/busybox
BUSYBOX=${NODEBOOT_BUSYBOX:-$HOST_BUSYBOX}
[ -x "$HOST_BUSYBOX" ] || { log "missing $HOST_BUSYBOX (busybox-static)"; exit 1; }
[ -r "$BUSYBOX" ] || { log "missing $BUSYBOX"; exit 1; }

# Stage the initrd tree in a temp dir, then hash it to find a cached image.
stage=$(mktemp -d "$CACHE/stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT
chmod 755 "$stage"
mkdir -p "$stage"/{bin,sbin,etc,proc,sys,dev,tmp,run,lib/modules,usr/bin,usr/sbin}
cp "$BUSYBOX" "$stage/bin/busybox"
# Applet symlinks at build time so /init can rely on plain command names.
for a in $("$HOST_BUSYBOX" --list); do
    [ "$a" = busybox ] || ln -sf busybox "$stage/bin/$a"
done

# Copy the modules, decompressed: busybox insmod cannot read .ko.zst.
: >"$stage/lib/modules/load-order"
for m in "${MODULES[@]}"; do
    f=$(find "$MODROOT/kernel" \( -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" -o -name "$m.ko.gz" \) | head -n1)
    if [ -z "$f" ]; then
        # Built into the kernel (or absent): nothing to load.
        if grep -q "/$m.ko\$" "$MODROOT/modules.builtin" 2>/dev/null; then
            log "module $m is built in"
        else
            log "warning: module $m not found in $KPKG, skipping"
        fi
        continue
    fi
    case "$f" in
        *.ko.xz) xz -dc "$f" >"$stage/lib/modules/$m.ko" ;;
        *.ko.zst) zstd -qdc "$f" >"$stage/lib/modules/$m.ko" ;;
        *.ko.gz) gzip -dc "$f" >"$stage/lib/modules/$m.ko" ;;
        *) cp "$f" "$stage/lib/modules/$m.ko" ;;
    esac
    echo "$m" >>"$stage/lib/modules/load-order"
done

install -m 0755 "$HERE/initrd/init" "$stage/init"
install -m 0755 "$HERE/initrd/udhcpc.script" "$stage/etc/udhcpc.script"
echo "$KVER" >"$stage/etc/nodeboot-kernel"
# /dev/console must exist before /init runs or the kernel has no stdout for
# it; mknod needs root, /init re-opens the console after mounting devtmpfs.
if [ "$(id -u)" -eq 0 ]; then mknod -m 600 "$stage/dev/console" c 5 1; fi

# Reproducible archive: fixed mtimes, sorted names, --reproducible inode numbers.
find "$stage" -exec touch -h -d @0 {} +
key=$( (cd "$stage" && find . -printf '%M %p %l\n' | LC_ALL=C sort &&
        find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-16)
INITRD="$CACHE/initrd-$key.img"
if [ ! -s "$INITRD" ]; then
    log "building initrd $INITRD (kernel $KVER)"
    (cd "$stage" && find . -print0 | LC_ALL=C sort -z |
        cpio --null --create --format=newc --reproducible --quiet) | gzip -9 -n >"$INITRD.tmp"
    mv "$INITRD.tmp" "$INITRD"
fi

# Copy only when content differs so repeated runs leave OUTDIR untouched.
install_if_changed() {
    if ! cmp -s "$1" "$2"; then cp "$1" "$2.tmp" && mv "$2.tmp" "$2"; fi
}
install_if_changed "$VMLINUZ" "$OUTDIR/vmlinuz"
install_if_changed "$INITRD" "$OUTDIR/initrd.img"
log "ready: $OUTDIR/vmlinuz ($KVER) $OUTDIR/initrd.img"

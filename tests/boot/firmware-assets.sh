#!/usr/bin/env bash
# Fetches the firmware-side assets of the UEFI tests, cached under
# ${NODEBOOT_BOOT_CACHE:-$HOME/.cache/nodeboot/boot}/firmware, and prints their paths as
# shell assignments (NAME=PATH), one a line:
#   GRUBNETX64  Debian 13's signed netboot GRUB (grub-efi-amd64-signed, 2.12): Debian 12's
#               signed GRUB (2.06) has no `http` module in any image, and modules cannot be
#               loaded under Secure Boot. Fetched with apt from a private state directory
#               (sources, lists and cache of its own), unpacked, never installed.
#   SHIMX64     Debian's signed shim (shim-signed, installed by install-test-deps.sh).
#   GRUBAA64    Debian 13's arm64 netboot GRUB (grub-efi-arm64-bin, 2.12, unsigned: the arm64
#               test runs without Secure Boot), built into one image with grub-mkimage from
#               that package's modules (`http`, `linux`, `efinet` included).
#   KERNEL_ARM64_PKG  the unpacked Debian 12 arm64 cloud kernel package directory.
#   BUSYBOX_ARM64     busybox-static for arm64, unpacked.
# Usage: firmware-assets.sh [amd64|arm64]...   (default: amd64)
set -euo pipefail

CACHE=${NODEBOOT_BOOT_CACHE:-$HOME/.cache/nodeboot/boot}/firmware
mkdir -p "$CACHE"
log() { echo "firmware-assets: $*" >&2; }

sandbox=()
if [ "$(id -u)" -eq 0 ]; then sandbox=(-o APT::Sandbox::User=root); fi

# apt with a state of its own for RELEASE/ARCH: the machine's sources, lists and installed
# packages are neither read nor changed.
private_apt() {
    private_apt_tool apt-get "$@"
}
private_apt_cache() {
    private_apt_tool apt-cache "$@"
}
private_apt_tool() {
    local tool=$1 release=$2 arch=$3
    shift 3
    local root="$CACHE/apt-$release-$arch"
    mkdir -p "$root/lists/partial" "$root/archives/partial" "$root/etc"
    : >"$root/status"
    if [ ! -s "$root/etc/sources.list" ]; then
        echo "deb [arch=$arch signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $release main" \
            >"$root/etc/sources.list"
    fi
    "$tool" -qq "${sandbox[@]}" \
        -o Dir::Etc::SourceList="$root/etc/sources.list" -o Dir::Etc::SourceParts=/nonexistent \
        -o Dir::State::Lists="$root/lists" -o Dir::State::Status="$root/status" \
        -o Dir::Cache::Archives="$root/archives" -o Dir::Cache="$root/cache" \
        -o APT::Architecture="$arch" -o APT::Architectures="$arch" \
        -o Debug::NoLocking=1 "$@"
}

# Downloads PKG from RELEASE/ARCH once and unpacks it into $CACHE/PKG-ARCH; prints that dir.
fetch() {
    local release=$1 arch=$2 pkg=$3 dir="$CACHE/$3-$2"
    if [ ! -e "$dir/.done" ]; then
        local root="$CACHE/apt-$release-$arch"
        if [ ! -e "$root/.updated" ]; then
            log "apt-get update for $release/$arch (private state)"
            private_apt "$release" "$arch" update
            mkdir -p "$root" && touch "$root/.updated"
        fi
        log "downloading $pkg ($release/$arch)"
        local tmp
        tmp=$(mktemp -d "$CACHE/dl.XXXXXX")
        if ! (cd "$tmp" && private_apt "$release" "$arch" download "$pkg"); then
            # The lists may name a version the mirror no longer has: refresh them once.
            log "download failed; refreshing the lists for $release/$arch"
            private_apt "$release" "$arch" update
            (cd "$tmp" && private_apt "$release" "$arch" download "$pkg")
        fi
        rm -rf "$dir" && mkdir -p "$dir"
        dpkg -x "$tmp"/*.deb "$dir/root"
        rm -rf "$tmp"
        touch "$dir/.done"
    fi
    echo "$dir"
}

# A metapackage's concrete dependency (linux-image-arm64 -> linux-image-6.1.0-N-arm64).
depends_of() {
    local release=$1 arch=$2 pkg=$3
    private_apt_cache "$release" "$arch" depends "$pkg" 2>/dev/null |
        awk '/Depends: linux-image-[0-9]/ {print $2; exit}'
}

archs=("$@")
[ ${#archs[@]} -gt 0 ] || archs=(amd64)
for arch in "${archs[@]}"; do
    case "$arch" in
    amd64)
        grub=$(fetch trixie amd64 grub-efi-amd64-signed)
        echo "GRUBNETX64=$(ls "$grub"/root/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed)"
        echo "SHIMX64=/usr/lib/shim/shimx64.efi.signed"
        ;;
    arm64)
        grub=$(fetch trixie arm64 grub-efi-arm64-bin)
        img="$CACHE/grubnetaa64.efi"
        if [ ! -s "$img" ]; then
            # A netboot image with the prefix /grub on the boot server, like grubnetx64.
            grub-mkimage -d "$grub/root/usr/lib/grub/arm64-efi" -O arm64-efi -o "$img.tmp" \
                -p /grub efinet tftp http linux normal configfile echo sleep test true \
                net efi_gop part_gpt fat gzio
            mv "$img.tmp" "$img"
        fi
        echo "GRUBAA64=$img"
        kpkg_file="$CACHE/kernel-arm64.pkg"
        if [ ! -s "$kpkg_file" ]; then
            fetch bookworm arm64 busybox-static >/dev/null # also runs the update
            depends_of bookworm arm64 linux-image-cloud-arm64 >"$kpkg_file.tmp"
            [ -s "$kpkg_file.tmp" ] || depends_of bookworm arm64 linux-image-arm64 >"$kpkg_file.tmp"
            mv "$kpkg_file.tmp" "$kpkg_file"
        fi
        echo "KERNEL_ARM64_PKG=$(fetch bookworm arm64 "$(cat "$kpkg_file")")"
        echo "BUSYBOX_ARM64=$(fetch bookworm arm64 busybox-static)/root/bin/busybox"
        ;;
    *) echo "firmware-assets: unknown arch $arch" >&2; exit 2 ;;
    esac
done

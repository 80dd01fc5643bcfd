#!/usr/bin/env bash
# Install the Debian packages the boot tests need (QEMU, Debian's iPXE ROMs,
# a static busybox and cpio for the test initrd). Idempotent: a no-op when
# everything is present; `apt-get update` runs only when something is missing.
set -euo pipefail

PKGS=(qemu-system-x86 ipxe-qemu busybox-static cpio)

missing=()
for p in "${PKGS[@]}"; do
    # dpkg-query prints "install ok installed" only for fully installed packages.
    if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" != "install ok installed" ]; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-deps: all present (${PKGS[*]})"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# --no-install-recommends keeps the QEMU install small (no GUI, no firmware blobs we don't use).
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"

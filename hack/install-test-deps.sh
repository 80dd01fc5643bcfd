#!/usr/bin/env bash
# Installs the Debian packages the tests use, when missing: QEMU, Debian's iPXE ROMs, busybox
# and cpio (real network boots, tests/boot/), cloud-init (its schema check of what nodeboot
# serves) and iproute2 (ss reads the listen backlog). A no-op when everything is there;
# `apt-get update` runs only when something is missing.
set -euo pipefail

PKGS=(qemu-system-x86 ipxe-qemu busybox-static cpio cloud-init iproute2)
# Every firmware path (tests/boot_firmware.rs): OVMF (UEFI, Secure Boot with Microsoft's
# keys), Debian's iPXE EFI builds (snponly.efi for HTTP Boot), the signed shim, arm64 QEMU
# and its UEFI firmware, dnsmasq (DHCP for HTTP Boot), sbsigntool (an unsigned kernel
# copy for the enforcement check) and grub-common (grub-mkimage for arm64's netboot GRUB).
PKGS+=(ovmf ipxe shim-signed qemu-system-arm qemu-efi-aarch64 dnsmasq-base sbsigntool grub-common)
missing=()
for p in "${PKGS[@]}"; do
  if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" != "install ok installed" ]; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-test-deps: all present"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-test-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"

#!/usr/bin/env bash
# Boot one QEMU VM from the network through Debian's iPXE ROM.
#
# Usage: run-vm.sh --mac MAC --boot-url URL --timeout SECS --log FILE
#                  [--memory MB] [--rom PATH] [--stop-on-stdin-eof]
#                  [--firmware bios|ovmf|ovmf-secure|aavmf] [--tftp DIR] [--no-rom]
#                  [-- EXTRA-QEMU-ARGS...]
# --firmware: bios (SeaBIOS, default); ovmf (UEFI, Debian's ovmf); ovmf-secure (OVMF
#   with Secure Boot on and Microsoft's keys enrolled: q35 with SMM); aavmf (arm64 UEFI,
#   qemu-system-aarch64 -M virt). UEFI guests always run under TCG: OVMF fails under this
#   host's KVM.
# --tftp DIR: QEMU's built-in TFTP serves DIR; --boot-url is then the boot file's name in it.
# --no-rom: no iPXE option ROM on the NIC, so the firmware's own PXE stack boots.
# --tap IFACE: the NIC is on tap IFACE (its DHCP server is the caller's) instead of QEMU's
#   user-mode network; --boot-url is then ignored.
# --rom: an iPXE ROM other than QEMU's default (Debian's efi-virtio.rom from
#   ipxe-qemu, found via QEMU's data dirs); see the note at the -device line.
# --stop-on-stdin-eof: stop the VM as soon as stdin reaches end of file. A
#   caller that holds the other end of a pipe takes the VM down with it
#   however it ends, even killed (and even if this script is killed first).
#
# The VM gets a user-mode (slirp) NIC whose DHCP hands iPXE URL as its boot
# file; inside the VM 10.0.2.2 is the host's loopback, so URL is usually
# http://10.0.2.2:PORT/... for a server bound to 127.0.0.1:PORT.
# The serial console (BIOS, iPXE, kernel, initrd) goes to FILE.
# Exit status: 0 if QEMU exited by itself (guest powered off / rebooted /
# firmware gave up), 124 if it was killed after SECS, else QEMU's status.
# Env: NODEBOOT_QEMU_ACCEL (default tcg; "kvm" if you have it and want speed).
set -euo pipefail

usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

MAC="" URL="" TIMEOUT="" LOG="" MEM=256 ROM="" STOP_ON_EOF=0 FIRMWARE=bios TFTP="" NO_ROM=0 TAP=""
EXTRA=()
while [ $# -gt 0 ]; do
    case "$1" in
    --mac) MAC=$2; shift 2 ;;
    --boot-url) URL=$2; shift 2 ;;
    --timeout) TIMEOUT=$2; shift 2 ;;
    --log) LOG=$2; shift 2 ;;
    --memory) MEM=$2; shift 2 ;;
    --rom) ROM=$2; shift 2 ;;
    --stop-on-stdin-eof) STOP_ON_EOF=1; shift ;;
    --firmware) FIRMWARE=$2; shift 2 ;;
    --tftp) TFTP=$2; shift 2 ;;
    --no-rom) NO_ROM=1; shift ;;
    --tap) TAP=$2; shift 2 ;;
    --) shift; EXTRA=("$@"); break ;;
    -h | --help) usage ;;
    *) echo "run-vm: unknown argument $1" >&2; usage ;;
    esac
done
[ -n "$MAC" ] && [ -n "$URL" ] && [ -n "$TIMEOUT" ] && [ -n "$LOG" ] || usage
[[ "$MAC" =~ ^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$ ]] || { echo "run-vm: bad MAC $MAC" >&2; exit 2; }
# QEMU's -netdev option parser splits on ',' so a comma in the URL must be doubled.
URL_ESC=${URL//,/,,}
[ -r /usr/lib/ipxe/qemu/efi-virtio.rom ] || { echo "run-vm: Debian's iPXE ROMs missing (run install-deps.sh)" >&2; exit 2; }
# Debian's virtio ROMs carry PCI id 1af4:1041 (modern virtio-net) while the
# default transitional device is 1af4:1000. QEMU patches the id into its
# *default* ROM only; an explicit romfile= is left as is and SeaBIOS then
# silently skips it ("No bootable device"). So: no romfile= by default, and
# with --rom make the device modern-only so the ids match.
NIC="virtio-net-pci,netdev=n0,mac=$MAC"
if [ "$NO_ROM" = 1 ]; then
    NIC="$NIC,romfile="
elif [ -n "$ROM" ]; then
    [ -r "$ROM" ] || { echo "run-vm: ROM $ROM not readable" >&2; exit 2; }
    NIC="$NIC,romfile=$ROM,disable-legacy=on,disable-modern=off"
fi

mkdir -p "$(dirname "$LOG")"
: >"$LOG"

# -nodefaults: no VGA/monitor/default NIC, so the only NIC (and boot device)
#   is ours and the only console is the serial port.
# graphics=off makes QEMU turn on SeaBIOS' serial console ("sercon"), which
#   mirrors the BIOS/iPXE text screen (with ANSI escapes) to the serial port,
#   so iPXE's messages land in LOG before the kernel's console=ttyS0 ones.
# -boot order=n,reboot-timeout=0 + -no-reboot: if iPXE gives up, SeaBIOS
#   reboots at once and QEMU exits instead of retrying every 60 s.
NETDEV="user,id=n0,bootfile=$URL_ESC"
if [ -n "$TFTP" ]; then NETDEV="$NETDEV,tftp=${TFTP//,/,,}"; fi
if [ -n "$TAP" ]; then NETDEV="tap,id=n0,ifname=$TAP,script=no,downscript=no"; fi

# UEFI variables are written by the firmware: each VM gets its own copy, removed at exit.
VARS=""
trap '[ -z "$VARS" ] || rm -f "$VARS"' EXIT
uefi_flash() {
    VARS=$(mktemp "${TMPDIR:-/tmp}/nodeboot-vars.XXXXXX")
    cp "$2" "$VARS"
    FLASH=(-drive "if=pflash,format=raw,unit=0,readonly=on,file=$1"
        -drive "if=pflash,format=raw,unit=1,file=$VARS")
}
SYSTEM=qemu-system-x86_64
ACCEL=${NODEBOOT_QEMU_ACCEL:-tcg}
FLASH=()
case "$FIRMWARE" in
bios) MACHINE=(-machine "pc,graphics=off" -boot "order=n,reboot-timeout=0") ;;
ovmf)
    ACCEL=tcg
    uefi_flash /usr/share/OVMF/OVMF_CODE_4M.fd /usr/share/OVMF/OVMF_VARS_4M.fd
    MACHINE=(-machine q35)
    NIC="$NIC,bootindex=1"
    ;;
ovmf-secure)
    ACCEL=tcg
    # The Secure Boot build needs SMM, and its variable store must only be writable from SMM.
    uefi_flash /usr/share/OVMF/OVMF_CODE_4M.ms.fd /usr/share/OVMF/OVMF_VARS_4M.ms.fd
    MACHINE=(-machine "q35,smm=on" -global driver=cfi.pflash01,property=secure,value=on)
    NIC="$NIC,bootindex=1"
    ;;
aavmf)
    ACCEL=tcg
    SYSTEM=qemu-system-aarch64
    uefi_flash /usr/share/AAVMF/AAVMF_CODE.fd /usr/share/AAVMF/AAVMF_VARS.fd
    MACHINE=(-machine virt -cpu cortex-a57)
    NIC="$NIC,bootindex=1"
    ;;
*) echo "run-vm: unknown firmware $FIRMWARE" >&2; exit 2 ;;
esac

cmd=("$SYSTEM"
    -accel "$ACCEL"
    "${MACHINE[@]}" "${FLASH[@]}" -m "$MEM" -smp 1
    -nodefaults -display none -no-reboot
    -chardev "file,id=con0,path=$LOG" -serial chardev:con0
    -netdev "$NETDEV"
    -device "$NIC"
    "${EXTRA[@]}")

start=$(date +%s.%N)
rc=0
# timeout: TERM after SECS, KILL 5 s later if QEMU ignores TERM. It runs in a
# process group of its own and passes a TERM it gets on to QEMU.
timeout -k 5 "$TIMEOUT" "${cmd[@]}" </dev/null &
vm=$!
watcher=""
if [ "$STOP_ON_EOF" = 1 ]; then
    # A background job's stdin is /dev/null unless given explicitly: hand it the
    # caller's pipe as fd 3. `read` is a builtin, so killing the job ends it.
    exec 3<&0
    { while read -r -u 3 _; do :; done; kill -TERM "$vm" 2>/dev/null; } &
    watcher=$!
    exec 3<&-
fi
wait "$vm" || rc=$?
if [ -n "$watcher" ]; then kill "$watcher" 2>/dev/null || true; fi
end=$(date +%s.%N)
if [ "$rc" -eq 137 ]; then rc=124; fi
echo "run-vm: mac=$MAC exit=$rc wall=$(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.1f", b-a}')s log=$LOG" >&2
exit "$rc"

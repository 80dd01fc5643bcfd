#!/usr/bin/env bash
# Boot one QEMU VM from the network through Debian's iPXE ROM.
#
# Usage: run-vm.sh --mac MAC --boot-url URL --timeout SECS --log FILE
#                  [--memory MB] [--rom PATH] [--stop-on-stdin-eof]
#                  [-- EXTRA-QEMU-ARGS...]
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

MAC="" URL="" TIMEOUT="" LOG="" MEM=256 ROM="" STOP_ON_EOF=0
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
if [ -n "$ROM" ]; then
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
cmd=(qemu-system-x86_64
    -accel "${NODEBOOT_QEMU_ACCEL:-tcg}"
    -machine "pc,graphics=off" -m "$MEM" -smp 1
    -nodefaults -display none -no-reboot
    -chardev "file,id=con0,path=$LOG" -serial chardev:con0
    -netdev "user,id=n0,bootfile=$URL_ESC"
    -device "$NIC"
    -boot "order=n,reboot-timeout=0"
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

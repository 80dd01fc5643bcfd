#!/usr/bin/env bash
# UEFI HTTP Boot of one VM, on a network of its own: run it under `unshare --net` (it
# refuses to run in a namespace that has any interface but lo). Inside that namespace it
# makes a bridge (10.77.0.1/24) with a tap for QEMU, starts dnsmasq as the DHCP server,
# an image server, and nodeboot, then boots OVMF with no option ROM, so the firmware's own
# HTTP Boot client (vendor class HTTPClient) asks DHCP for a URL:
#   firmware (HTTPClient) -> http://10.77.0.1:8080/firmware/snponly.efi (Debian's iPXE for
#                            UEFI, served by nodeboot from --firmware-dir)
#   iPXE (user class iPXE) -> http://10.77.0.1:8080/boot.ipxe -> nodeboot's bootscript
# Nothing here touches a real network: the namespace ends when this script does.
#
# Usage: unshare --net http-boot.sh --nodeboot BIN --manifests DIR --images DIR
#            --firmware-dir DIR --mac MAC --timeout SECS --log FILE [--stop-on-stdin-eof]
# DIR of --images is served at http://10.77.0.1:8000/ (the site's image server); DIR of
# --firmware-dir is nodeboot's --firmware-dir and must hold snponly.efi.
# Exit status: run-vm.sh's. nodeboot's and dnsmasq's logs are written beside FILE.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

NODEBOOT="" MANIFESTS="" IMAGES="" FIRMWARE_DIR="" MAC="""" TIMEOUT="" LOG="" EOF_FLAG=()
while [ $# -gt 0 ]; do
    case "$1" in
    --nodeboot) NODEBOOT=$2; shift 2 ;;
    --manifests) MANIFESTS=$2; shift 2 ;;
    --images) IMAGES=$2; shift 2 ;;
    --firmware-dir) FIRMWARE_DIR=$2; shift 2 ;;
    --mac) MAC=$2; shift 2 ;;
    --timeout) TIMEOUT=$2; shift 2 ;;
    --log) LOG=$2; shift 2 ;;
    --stop-on-stdin-eof) EOF_FLAG=(--stop-on-stdin-eof); shift ;;
    *) echo "http-boot: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -n "$NODEBOOT" ] && [ -n "$MANIFESTS" ] && [ -n "$IMAGES" ] && [ -n "$FIRMWARE_DIR" ] && [ -n "$MAC" ] &&
    [ -n "$TIMEOUT" ] && [ -n "$LOG" ] || { echo "http-boot: missing arguments" >&2; exit 2; }
if [ "$(ip -o link show | grep -cv ': lo:')" -ne 0 ]; then
    echo "http-boot: run me in a network namespace of my own (unshare --net)" >&2
    exit 2
fi

ip link set lo up
ip link add br0 type bridge
ip tuntap add tap0 mode tap
ip link set tap0 master br0
ip addr add 10.77.0.1/24 dev br0
ip link set tap0 up
ip link set br0 up

pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT

# The firmware's HTTP Boot client sends vendor class HTTPClient and must get it back in
# option 60, with a URL as the boot file; iPXE (user class iPXE) gets nodeboot's bootstrap.
lease=$(mktemp)
dnsmasq --no-daemon --port=0 --interface=br0 --bind-interfaces --dhcp-range=10.77.0.50,10.77.0.99,1h \
    --dhcp-leasefile="$lease" --log-dhcp \
    --dhcp-vendorclass=set:http,HTTPClient --dhcp-userclass=set:ipxe,iPXE \
    --dhcp-option-force=tag:http,60,HTTPClient \
    --dhcp-boot=tag:ipxe,http://10.77.0.1:8080/boot.ipxe \
    --dhcp-boot=tag:http,tag:!ipxe,http://10.77.0.1:8080/firmware/snponly.efi \
    >"$LOG.dnsmasq" 2>&1 &
pids+=($!)
python3 "$HERE/httpd.py" --root "$IMAGES" --port 8000 --bind 10.77.0.1 >/dev/null 2>&1 &
pids+=($!)
"$NODEBOOT" serve --manifests "$MANIFESTS" --listen 10.77.0.1:8080 --admin-listen 127.0.0.1:9090 \
    --advertise-url http://10.77.0.1:8080 --firmware-dir "$FIRMWARE_DIR" >"$LOG.nodeboot" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
    if python3 -c 'import urllib.request as u; u.urlopen("http://10.77.0.1:8080/boot.ipxe", timeout=1)' 2>/dev/null &&
        python3 -c 'import urllib.request as u; u.urlopen("http://10.77.0.1:8000/", timeout=1)' 2>/dev/null; then
        break
    fi
    sleep 0.1
done

rc=0
# OVMF tries PXE over IPv4 and IPv6 before HTTP, each waiting long for an offer; a machine
# set up for HTTP Boot has PXE off (here through OVMF's fw_cfg switches).
"$HERE/run-vm.sh" --firmware ovmf --no-rom --tap tap0 --boot-url unused --mac "$MAC" \
    --timeout "$TIMEOUT" --log "$LOG" --memory 512 "${EOF_FLAG[@]}" -- \
    -fw_cfg name=opt/org.tianocore/IPv4PXESupport,string=n \
    -fw_cfg name=opt/org.tianocore/IPv6PXESupport,string=n || rc=$?
exit "$rc"

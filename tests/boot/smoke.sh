#!/usr/bin/env bash
# Self-contained proof that the QEMU + iPXE + initrd chain works, without
# nodeboot: a tiny Python HTTP server on 127.0.0.1 serves boot.ipxe, the
# kernel/initrd and NoCloud documents; one VM boots from it and the console
# log must show the kernel cmdline and the three documents byte for byte.
#
# Usage: smoke.sh            (env: NODEBOOT_SMOKE_TIMEOUT=secs, default 180;
#                             NODEBOOT_SMOKE_KEEP=1 keeps the work dir)
# Prints "N passed, N failed" last; exit 0 only if everything passed.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
T0=$(date +%s.%N)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/nodeboot-smoke.XXXXXX")
HTTPD_PID=""
cleanup() {
    if [ -n "$HTTPD_PID" ]; then kill "$HTTPD_PID" 2>/dev/null || true; fi
    if [ "${NODEBOOT_SMOKE_KEEP:-0}" = 1 ]; then echo "smoke: kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }

"$HERE/install-deps.sh"
mkdir -p "$WORK/www/ci"
"$HERE/build-assets.sh" "$WORK/www"
echo "smoke: assets ready after $(since "$T0")s"

# Port 0 = let the kernel pick a free port; httpd.py reports it in a file.
python3 "$HERE/httpd.py" --root "$WORK/www" --port-file "$WORK/port" 2>"$WORK/httpd.log" &
HTTPD_PID=$!
for _ in $(seq 100); do [ -s "$WORK/port" ] && break; sleep 0.1; done
[ -s "$WORK/port" ] || { echo "smoke: httpd did not start" >&2; cat "$WORK/httpd.log" >&2; exit 1; }
PORT=$(cat "$WORK/port")
BASE="http://10.0.2.2:$PORT"   # the host's 127.0.0.1 as seen from inside slirp
MAC=52:54:00:12:34:56

cat >"$WORK/www/boot.ipxe" <<EOF
#!ipxe
echo smoke: booting \${net0/mac}
kernel $BASE/vmlinuz console=ttyS0 ds=nocloud-net;s=$BASE/ci/ BOOTIF=01-52-54-00-12-34-56
initrd $BASE/initrd.img
boot
EOF
cat >"$WORK/www/ci/meta-data" <<'EOF'
instance-id: smoke-node-01
local-hostname: smoke-node-01
EOF
cat >"$WORK/www/ci/user-data" <<'EOF'
#cloud-config
hostname: smoke-node-01
runcmd:
  - [ sh, -c, "echo 'quotes & specials: $HOME *'" ]
EOF
# No trailing newline on purpose: the initrd must still close the block.
printf 'vendor: smoke\nlast-line-without-newline' >"$WORK/www/ci/vendor-data"

LOG="$WORK/console.log"
TB=$(date +%s.%N)
rc=0
"$HERE/run-vm.sh" --mac "$MAC" --boot-url "$BASE/boot.ipxe" \
    --timeout "${NODEBOOT_SMOKE_TIMEOUT:-180}" --log "$LOG" || rc=$?
BOOT_WALL=$(since "$TB")

# The serial console ends lines with \r\n.
tr -d '\r' <"$LOG" >"$WORK/console.txt"
block() { awk -v b="NODEBOOT-$1-BEGIN" -v e="NODEBOOT-$1-END" '$0==e{f=0} f{print} $0==b{f=1}' "$WORK/console.txt"; }

pass=0 fail=0
check() { # name, command...
    local name=$1; shift
    if "$@"; then echo "PASS $name"; pass=$((pass + 1)); else echo "FAIL $name"; fail=$((fail + 1)); fi
}
want_doc() { # block compares equal to the file (plus a final newline if it lacked one)
    diff -u <(sed -e '$a\' "$WORK/www/ci/$2") <(block "$1")
}
check "qemu exited by itself (rc=$rc)" test "$rc" -eq 0
check "iPXE fetched boot.ipxe" grep -q "$BASE/boot.ipxe... ok" "$WORK/console.txt"
check "cmdline has ds= and BOOTIF" grep -qx "console=ttyS0 ds=nocloud-net;s=$BASE/ci/ BOOTIF=01-52-54-00-12-34-56" <(block CMDLINE)
check "guest NIC has the MAC" grep -q "NODEBOOT-NET iface=eth0 mac=$MAC" "$WORK/console.txt"
check "meta-data matches" want_doc META-DATA meta-data
check "user-data matches" want_doc USER-DATA user-data
check "vendor-data matches" want_doc VENDOR-DATA vendor-data
check "initrd finished" grep -q '^NODEBOOT-DONE' "$WORK/console.txt"
check "server saw the three documents" test "$(grep -c -E 'GET /ci/(meta|user|vendor)-data' "$WORK/httpd.log")" -eq 3

if [ "$fail" -ne 0 ]; then
    echo "---- console (last 40 lines) ----"; tail -n 40 "$WORK/console.txt"
    echo "---- httpd log ----"; cat "$WORK/httpd.log"
fi
echo "smoke: boot wall time ${BOOT_WALL}s, total $(since "$T0")s"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]

#!/usr/bin/env bash
# Reproduce the "wait and retry" findings for Debian's iPXE build: how many
# rounds each retry-loop form survives before the node finally boots.
#
# Usage: ipxe-limits.sh [--rounds N] [--sleep S] [--jobs J] [MODE...]
#   N rounds of "not ready" (default 60), S seconds of iPXE `sleep` per round
#   (default 1), J VMs at once (default 2). MODEs (default: all):
#   naive            not-ready script does `sleep; chain URL?n=N+1` (nested)
#   imgfree          same, with `imgfree` before the chain       (nested)
#   autofree         same, with `chain --autofree`               (nested)
#   replace          same, with `chain --replace`                (flat)
#   outer            static script loops `chain --autofree URL?retry=${retry}
#                    || goto wait` (inc/sleep/goto); not-ready = script `exit 1`
#   http             same loop; not-ready = HTTP 503 (nothing is downloaded)
#   outer-noautofree outer loop with plain `chain` (images pile up)
# A mode "survives" when the node reaches the initrd (NODEBOOT-DONE) after
# all N rounds. Exit status is non-zero if replace/outer/http did not survive.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROUNDS=60 SLEEP=1 JOBS=2
MODES=()
while [ $# -gt 0 ]; do
    case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --sleep) SLEEP=$2; shift 2 ;;
    --jobs) JOBS=$2; shift 2 ;;
    -h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) MODES+=("$1"); shift ;;
    esac
done
[ ${#MODES[@]} -gt 0 ] || MODES=(naive imgfree autofree replace outer http outer-noautofree)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/nodeboot-ipxe-limits.XXXXXX")
HTTPD_PID=""
trap '[ -z "$HTTPD_PID" ] || kill "$HTTPD_PID" 2>/dev/null || true' EXIT
"$HERE/install-deps.sh" >/dev/null
mkdir -p "$WORK/www/ci"
"$HERE/build-assets.sh" "$WORK/www" 2>/dev/null
python3 "$HERE/httpd.py" --root "$WORK/www" --port-file "$WORK/port" 2>"$WORK/httpd.log" &
HTTPD_PID=$!
for _ in $(seq 100); do [ -s "$WORK/port" ] && break; sleep 0.1; done
PORT=$(cat "$WORK/port")
B="http://10.0.2.2:$PORT"
cat >"$WORK/www/boot.ipxe" <<EOF
#!ipxe
echo nodeboot-loop final boot.ipxe
kernel $B/vmlinuz console=ttyS0 ds=nocloud-net;s=$B/ci/
initrd $B/initrd.img
boot
EOF
echo "instance-id: limits" >"$WORK/www/ci/meta-data"
echo "#cloud-config" >"$WORK/www/ci/user-data"
echo "{}" >"$WORK/www/ci/vendor-data"

# Static outer loop: the counter lives in iPXE (`inc` needs a typed setting).
outer_script() { # file, chain flags, server mode
    cat >"$1" <<EOF
#!ipxe
set retry:int32 0
:retry
chain $2 $B/loop.ipxe?mode=$3&max=$ROUNDS&sid=$4&retry=\${retry} || goto wait
exit 0
:wait
inc retry
sleep $SLEEP
goto retry
EOF
}

run_mode() { # mode index
    local m=$1 i=$2 url tmo
    local mac
    mac=$(printf '52:54:00:00:10:%02x' "$i")
    case "$m" in
    naive | imgfree | autofree | replace)
        url="$B/loop.ipxe?mode=$m&n=0&max=$ROUNDS&sleep=$SLEEP&sid=$m" ;;
    outer) outer_script "$WORK/www/$m.ipxe" --autofree outer "$m"; url="$B/$m.ipxe" ;;
    http) outer_script "$WORK/www/$m.ipxe" --autofree http "$m"; url="$B/$m.ipxe" ;;
    outer-noautofree) outer_script "$WORK/www/$m.ipxe" "" outer "$m"; url="$B/$m.ipxe" ;;
    *) echo "unknown mode $m" >&2; return 2 ;;
    esac
    # Generous: every round plus a slow TCG boot; nested modes hang, not fail.
    tmo=$(awk -v n="$ROUNDS" -v s="$SLEEP" 'BEGIN{printf "%d", n * (s + 0.5) + 90}')
    local t0 rc=0
    t0=$(date +%s)
    "$HERE/run-vm.sh" --mac "$mac" --boot-url "$url" --timeout "$tmo" --log "$WORK/$m.log" 2>/dev/null || rc=$?
    echo "$rc $(($(date +%s) - t0))" >"$WORK/$m.result"
}

i=0
for m in "${MODES[@]}"; do
    i=$((i + 1))
    run_mode "$m" "$i" &
    # Keep at most JOBS VMs running (TCG is one busy core each).
    while [ "$(jobs -rp | wc -l)" -gt "$JOBS" ]; do sleep 1; done
done
while [ "$(jobs -rp | wc -l)" -gt 1 ]; do sleep 1; done   # the httpd is the one left

bad=0
printf '%-17s %-5s %-4s %-6s %-6s %s\n' MODE REQS RC WALL BOOTED "LAST LOOP/KERNEL LINE ON CONSOLE"
for m in "${MODES[@]}"; do
    read -r rc wall <"$WORK/$m.result"
    served=$(grep -c "sid=${m}[& ]" "$WORK/httpd.log" || true)
    clean=$(tr -d '\r' <"$WORK/$m.log" | sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g')
    booted=no; grep -q '^NODEBOOT-DONE' <<<"$clean" && booted=yes
    last=$(grep -a -E 'nodeboot-loop|Initramfs unpacking failed|Kernel panic' <<<"$clean" | tail -n1 || true)
    # REQS = /loop.ipxe requests the server answered (N not-ready + 1 ready).
    printf '%-17s %-5s %-4s %-6s %-6s %s\n' "$m" "$served" "$rc" "${wall}s" "$booted" "$last"
    case "$m" in replace | outer | http) [ "$booted" = yes ] || bad=1 ;; esac
done
echo "logs: $WORK"
exit "$bad"

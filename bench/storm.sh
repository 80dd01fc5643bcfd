#!/usr/bin/env bash
# Boot-storm benchmark (issue 6): nodeboot against nginx serving the very same responses as
# static files, on loopback, with wrk walking a synthetic site so that every request asks for a
# different node.
#
#   bench/storm.sh [--nodes N] [--connections "64 256 1024"] [--duration 20s] [--threads 2]
#                  [--out DIR] [--full-connections 1024] [--no-full-storm]
#                  [--repeat R] [--paced-rps 10000] [--source-check off|on] [--keep-tmp]
#                  [--scenarios "bootscript close storm cloudinit discovery"] [--discovery 10000]
#                  [--no-ceilings] [--open-loop "25 50 75"] [--open-loop-connections 256]
#
# What it does, in order (docs/performance.md explains the method and the numbers):
#  1. installs wrk and nginx from Debian if they are missing;
#  2. writes a site of N nodes and its request list with target/release/nodeboot-bench;
#  3. starts `nodeboot serve` on 127.0.0.1 and records its cold start (process start to the
#     first 200 from /readyz) and its RSS;
#  4. writes, straight from nodeboot-core, the tree of what nodeboot answers (for every node,
#     the bootscript for its MAC and its meta-data, user-data and vendor-data) and serves it
#     with nginx under the same URLs;
#  5. checks a sample of URLs against the tree, byte for byte, on both servers;
#  6. runs wrk (bench/storm.lua) for each scenario x connection count x server, at saturation
#     (closed loop): bootscript (keep-alive), close (a new connection per request), storm (every
#     node's four requests), cloudinit, discovery (--discovery MACs no NodeGroup lists). The
#     bootscript and close points also run against the two ceilings (unless --no-ceilings):
#     nginx answering a constant body of the same size from memory, and
#     `nodeboot-bench constant-server` (nodeboot's HTTP stack, tokio + hyper, with no nodeboot);
#     then bootscript requests paced to about --paced-rps in total (wrk, each connection pauses
#     between requests); 0 skips those;
#  6b. open loop (oha, a fixed request rate whatever the answers' latency, latency counted from
#     when each request was due): bootscript at each --open-loop percentage of nodeboot's
#     saturated bootscript throughput at --open-loop-connections, nodeboot and nginx at the
#     same rates; "" skips it (oha is built with cargo into ~/.cache/nodeboot/oha if missing);
#  7. the full storm: every node's four requests once (wrk, 4N requests, errors counted),
#     then the same 4N requests once more with an exact client that checks every status and
#     body (nodeboot-bench compare --all);
#  8. prints a Markdown table (nodeboot-bench report) and leaves raw results in --out.
# Every server and client runs on 127.0.0.1 and every process it starts is stopped on exit.

set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

nodes=100000
connections="64 256 1024"
duration=20s
threads=2
out=""
full_storm=1
full_connections=1024
source_check=off
keep_tmp=0
repeat=1
paced_rps=10000
scenarios="bootscript close storm cloudinit discovery"
discovery=10000
ceilings=1
open_loop="25 50 75"
open_loop_connections=256

usage() {
    sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

while [ $# -gt 0 ]; do
    case "$1" in
        --nodes) nodes=$2; shift 2 ;;
        --connections) connections=$2; shift 2 ;;
        --duration) duration=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --full-connections) full_connections=$2; shift 2 ;;
        --no-full-storm) full_storm=0; shift ;;
        --source-check) source_check=$2; shift 2 ;;
        --keep-tmp) keep_tmp=1; shift ;;
        --repeat) repeat=$2; shift 2 ;;
        --paced-rps) paced_rps=$2; shift 2 ;;
        --scenarios) scenarios=$2; shift 2 ;;
        --discovery) discovery=$2; shift 2 ;;
        --no-ceilings) ceilings=0; shift ;;
        --open-loop) open_loop=$2; shift 2 ;;
        --open-loop-connections) open_loop_connections=$2; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "storm.sh: unknown argument $1" >&2; usage 2 >&2 ;;
    esac
done

case "$source_check" in on|off) ;; *) echo "storm.sh: --source-check on|off" >&2; exit 2 ;; esac
for c in $connections "$full_connections"; do
    if [ "$c" -lt "$threads" ]; then
        echo "storm.sh: wrk needs at least as many connections as threads ($c < $threads)" >&2
        exit 2
    fi
done

log() { printf '[storm %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# --- binaries --------------------------------------------------------------------------------
nodeboot=$repo/target/release/nodeboot
bench=$repo/target/release/nodeboot-bench
if [ ! -x "$nodeboot" ] || [ ! -x "$bench" ]; then
    # Building takes minutes on 2 cores and others may be compiling: leave it to the caller.
    echo "storm.sh: $nodeboot or $bench is missing; build them first:" \
        "cargo build --release -p nodeboot -p nodeboot-bench" >&2
    exit 1
fi

# --- tools -----------------------------------------------------------------------------------
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]} from Debian"
    sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${need[@]}" >/dev/null
    # Debian's nginx package may start a default server on port 80: we use our own only.
    if command -v systemctl >/dev/null && systemctl is-active --quiet nginx 2>/dev/null; then
        "${sudo[@]}" systemctl stop nginx || true
    fi
fi
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
oha=""
if [ -n "$open_loop" ]; then
    # oha: a well-kept open-loop load generator (fixed rate, latency from each request's due
    # time); not in Debian 12, so built once from crates.io and cached.
    oha=$(command -v oha || echo "$HOME/.cache/nodeboot/oha/bin/oha")
    if [ ! -x "$oha" ]; then
        log "building oha from crates.io into ~/.cache/nodeboot/oha (once; a few minutes)"
        cargo install --quiet --locked oha --root "$HOME/.cache/nodeboot/oha"
    fi
fi
command -v curl >/dev/null || { echo "storm.sh: curl is required" >&2; exit 1; }

# wrk at 1024 connections, the server under test and nginx's workers each need more than the
# usual 1024 file descriptors: take what the hard limit allows, up to 65536.
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -gt 65536 ]; then hard=65536; fi
ulimit -n "$hard"
fds=$(ulimit -n)

cores=$(nproc)

# --- work and output directories, cleanup ----------------------------------------------------
stamp=$(date -u +%Y%m%dT%H%M%SZ)
[ -n "$out" ] || out=$here/results/$stamp-n$nodes
mkdir -p "$out/raw"
out=$(cd "$out" && pwd)
# A reused --out starts empty of a previous run's raw files (the report reads all of raw/).
rm -f "$out"/raw/*.txt "$out"/raw/*.tcp "$out/compare-sample.txt"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/nodeboot-storm.XXXXXX")
# nginx workers drop root privileges (user nobody): they must be able to read the tree.
chmod 755 "$tmp"

nodeboot_pid=""
nginx_pid=""
wrk_pid=""
step_pid=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    # Only the processes this script started, by their pid.
    [ -z "$step_pid" ] || kill "$step_pid" 2>/dev/null || true
    [ -z "$wrk_pid" ] || kill "$wrk_pid" 2>/dev/null || true
    [ -z "$nodeboot_pid" ] || kill "$nodeboot_pid" 2>/dev/null || true
    [ -z "$const_pid" ] || kill "$const_pid" 2>/dev/null || true
    # QUIT: nginx's graceful stop, the master takes its workers with it.
    [ -z "$nginx_pid" ] || kill -QUIT "$nginx_pid" 2>/dev/null || true
    for pid in $step_pid $wrk_pid $nodeboot_pid $const_pid $nginx_pid; do
        # An exited child stays a zombie (and kill -0 succeeds) until it is waited for.
        for _ in $(seq 50); do
            [ "$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null || echo Z)" != Z ] || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "$keep_tmp" -eq 1 ]; then
        log "kept $tmp"
    else
        rm -rf "$tmp"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Free loopback ports: the kernel picks them, nodeboot-bench releases them for the servers.
read -r nb_port admin_port nginx_port nginx_mem_port const_port < <("$bench" free-ports 5)
nb=127.0.0.1:$nb_port
admin=127.0.0.1:$admin_port
ngx=127.0.0.1:$nginx_port
ngx_mem=127.0.0.1:$nginx_mem_port
const=127.0.0.1:$const_port
const_pid=""

now_ns() { date +%s%N; }

# step CMD...: runs a long step in the background and waits for it. bash runs a trap only once
# its foreground command is over, so a TERM during a long compare would wait for the compare;
# `wait` returns at once on a signal, and cleanup then ends the step too.
step() {
    local rc=0
    "$@" &
    step_pid=$!
    wait "$step_pid" || rc=$?
    step_pid=""
    return "$rc"
}
rss_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

# --- environment record ----------------------------------------------------------------------
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "nodes: $nodes; connections: $connections; duration: $duration; threads: $threads; repeat: $repeat"
    echo "full storm: $full_storm (connections $full_connections); source check: $source_check"
    echo "scenarios: $scenarios; discovery MACs: $discovery; ceilings: $ceilings; open loop: ${open_loop:-off} % at $open_loop_connections connections"
    echo "cores: $cores; $(free -g | awk '/^Mem:/ { print "memory GiB: " $2 }')"
    echo "kernel: $(uname -r); open files limit: $fds"
    echo "uptime: $(uptime)"
    # Others rebuild target/release while we measure: say which binary this was.
    echo "nodeboot: $("$nodeboot" --version 2>&1 | head -1); binary sha256 $(sha256sum "$nodeboot" | cut -c1-12), built $(date -u -r "$nodeboot" +%Y-%m-%dT%H:%M:%SZ)"
    echo "git: $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$repo" diff --quiet -- src Cargo.toml 2>/dev/null || echo ' (src modified)')"
    echo "wrk: $(wrk -v 2>&1 | head -1)"
    [ -z "$oha" ] || echo "oha: $("$oha" --version 2>&1 | head -1)"
    echo "nginx: $("$nginx_bin" -v 2>&1)"
    echo "nodeboot-bench: binary sha256 $(sha256sum "$bench" | cut -c1-12), built $(date -u -r "$bench" +%Y-%m-%dT%H:%M:%SZ)"
} > "$out/env.txt"
cat "$out/env.txt" >&2

# --- the site --------------------------------------------------------------------------------
log "writing a site of $nodes nodes and its requests"
step "$bench" site --nodes "$nodes" --out "$tmp/site"
step "$bench" requests --nodes "$nodes" --discovery "$discovery" --out "$tmp/requests.tsv"

# --- nodeboot --------------------------------------------------------------------------------
# What nodeboot renders depends on these two: the tree is written with the same ones.
advertise_url=http://$nb
retry_max_delay=60
nb_args=(serve --manifests "$tmp/site" --listen "$nb" --admin-listen "$admin"
         --advertise-url "$advertise_url" --retry-max-delay "$retry_max_delay"
         --cloud-init-source-check "$source_check")
xff=0
compare_xff=()
if [ "$source_check" = on ]; then
    # Source check on: every node's cloud-init data is served only to its own address, so the
    # load generator names it in X-Forwarded-For and nodeboot trusts loopback as a proxy.
    nb_args+=(--trusted-proxies 127.0.0.1/32)
    xff=1
    compare_xff=(--forwarded-for)
fi
log "starting nodeboot ${nb_args[*]}"
t0=$(now_ns)
"$nodeboot" "${nb_args[@]}" > "$out/nodeboot.log" 2>&1 &
nodeboot_pid=$!
ready=""
# Poll /readyz every 10 ms: the cold start is measured to about that resolution.
for _ in $(seq 6000); do
    if ! kill -0 "$nodeboot_pid" 2>/dev/null; then
        echo "storm.sh: nodeboot exited; see $out/nodeboot.log" >&2
        exit 1
    fi
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://$admin/readyz" || true)
    if [ "$code" = 200 ]; then ready=$(now_ns); break; fi
    sleep 0.01
done
[ -n "$ready" ] || { echo "storm.sh: nodeboot not ready after 60 s" >&2; exit 1; }
cold_start_ms=$(( (ready - t0) / 1000000 ))
rss_ready_kb=$(rss_kb "$nodeboot_pid" VmRSS)
log "nodeboot ready in $cold_start_ms ms, RSS $((rss_ready_kb / 1024)) MiB"

# --- the tree and nginx ----------------------------------------------------------------------
log "writing the tree of what nodeboot answers ($(wc -l < "$tmp/requests.tsv") files)"
step "$bench" tree --nodes "$nodes" --discovery "$discovery" --advertise-url "$advertise_url" \
    --retry-max-delay "$retry_max_delay" --out "$tmp/www" > "$out/tree.txt"
cat "$out/tree.txt" >&2
chmod -R a+rX "$tmp/www"

# The ceilings' constant body: the bootscript of a node of the most common kind (node 1, the
# compute image; node 0 is pinned to the debug image), the size sent most often.
constant_file=$tmp/www/$(awk -F'\t' '$2 ~ /^bootscript\// && ++n == 2 { print $2; exit }' "$tmp/requests.tsv")
constant_body=$(cat "$constant_file"; printf x)
constant_body=${constant_body%x}
# nginx_string TEXT: TEXT inside an nginx single-quoted string. nginx expands $name in strings
# and has no escape for '$', so a '$' becomes ${dollar}, a variable map defines as '$'.
nginx_string() {
    local t=$1
    t=${t//\\/\\\\}
    t=${t//\'/\\\'}
    t=${t//\$/\$\{dollar\}}
    printf '%s' "$t"
}
# With a trailing x, so that $(...) keeps the body's last newline.
constant_nginx=$(nginx_string "$constant_body"; printf x)
constant_nginx=${constant_nginx%x}
mkdir -p "$tmp/nginx/tmp"
# One worker per core, as a tuned static server would be set up; keep-alive requests
# unlimited like nodeboot's (nginx's default of 1000 would add reconnects to its numbers); no
# access log (nodeboot logs no request either); reuseport so both workers get a share of wrk's
# connections. Cache-Control and no ETag/Last-Modified make its headers close to nodeboot's.
# No open_file_cache: it keeps every cached file open, and 4 files per node cannot stay open
# under the descriptor limit (a first version hung nginx at 10k nodes); an LRU small enough
# would never hit, as wrk walks all files in a cycle. So nginx does open/fstat/sendfile/close
# per request, from the page cache: the ordinary way of serving static files.
cat > "$tmp/nginx/nginx.conf" <<EOF
daemon off;
worker_processes $cores;
worker_rlimit_nofile $fds;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events {
    worker_connections $(( fds < 16384 ? fds : 16384 ));
}
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 75s;
    keepalive_requests 1000000000;
    server_tokens off;
    etag off;
    geo \$dollar { default "\$"; }
    default_type text/plain;
    charset utf-8;
    client_body_temp_path $tmp/nginx/tmp/body;
    proxy_temp_path $tmp/nginx/tmp/proxy;
    fastcgi_temp_path $tmp/nginx/tmp/fastcgi;
    uwsgi_temp_path $tmp/nginx/tmp/uwsgi;
    scgi_temp_path $tmp/nginx/tmp/scgi;
    server {
        listen $ngx reuseport backlog=4096;
        root $tmp/www;
        add_header Cache-Control no-store always;
        add_header Last-Modified "";
        # /boot/v1/bootscript?mac=MAC: the file named after the MAC, as wrk sends it (an unknown
        # MAC's, the discovery image's script, is under discovery/).
        location = /boot/v1/bootscript {
            try_files /bootscript/\$arg_mac /discovery/\$arg_mac =404;
        }
        # /cloud-init/NAME/DOC: plain files.
        location /cloud-init/ {
        }
        location / {
            return 404;
        }
    }
    # The ceiling of nginx on this machine: one constant body, a typical bootscript, from memory
    # (no file is opened), for every URL.
    server {
        listen $ngx_mem reuseport backlog=4096;
        add_header Cache-Control no-store always;
        location / {
            return 200 '$constant_nginx';
        }
    }
}
EOF
cp "$tmp/nginx/nginx.conf" "$out/nginx.conf"
"$nginx_bin" -e "$tmp/nginx/error.log" -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" &
nginx_pid=$!
for _ in $(seq 500); do
    curl -s -o /dev/null --max-time 1 "http://$ngx/" && break
    kill -0 "$nginx_pid" 2>/dev/null || { cat "$tmp/nginx/error.log" >&2; exit 1; }
    sleep 0.01
done

if [ "$ceilings" -eq 1 ]; then
    "$bench" constant-server --listen "$const" --body-file "$constant_file" \
        > "$out/constant-server.log" 2>&1 &
    const_pid=$!
    for _ in $(seq 500); do
        curl -s -o /dev/null --max-time 1 "http://$const/" && break
        kill -0 "$const_pid" 2>/dev/null || { cat "$out/constant-server.log" >&2; exit 1; }
        sleep 0.01
    done
    for addr in "$ngx_mem" "$const"; do
        cmp -s <(curl -s "http://$addr/boot/v1/bootscript?mac=x") "$constant_file" \
            || { echo "storm.sh: the ceiling at $addr does not answer the constant body" >&2; exit 1; }
    done
fi

# --- same bytes from both --------------------------------------------------------------------
log "checking a sample of URLs is byte-identical to the tree on nodeboot and nginx"
for server in nodeboot nginx; do
    addr=$nb; [ $server = nodeboot ] || addr=$ngx
    step "$bench" compare --requests "$tmp/requests.tsv" --tree "$tmp/www" --server "$addr" \
        --label "$server" --sample 1000 --connections 4 "${compare_xff[@]}" \
        >> "$out/compare-sample.txt"
done
cat "$out/compare-sample.txt" >&2
# The headers differ a little (nginx adds Server, Accept-Ranges, Connection): keep them on record.
{
    boot_path=$(grep -m1 '^/boot/' "$tmp/requests.tsv" | cut -f1)
    meta_path=$(grep -m1 $'/meta-data\t' "$tmp/requests.tsv" | cut -f1)
    for server in nodeboot nginx; do
        addr=$nb; [ $server = nodeboot ] || addr=$ngx
        for path in "$boot_path" "$meta_path"; do
            echo "== $server GET $path"
            curl -s -D - -o /dev/null "http://$addr$path" | tr -d '\r'
        done
    done
} > "$out/headers.txt"

# --- wrk -------------------------------------------------------------------------------------
results=$out/results.tsv
printf 'scenario\tconnections\tserver\trun\trequests\tduration_us\tbytes\trps\tp50_us\tp90_us\tp99_us\tp999_us\tmax_us\tmean_us\terr_connect\terr_read\terr_write\terr_status\terr_timeout\tload1\n' > "$results"

# The kernel's TCP counters that tell a listen queue overflowed (more connections arrived at once
# than the server's listen backlog holds: the handshake is dropped and resent after about a
# second). wrk starts its latency clock once connected, so only these counters show it. Read
# from /proc rather than with nstat, whose history file is shared by every user of the machine.
tcp_counters() {
    awk '$1 == "TcpExt:" { if (!n) { split($0, k); n = 1 } else { for (i = 2; i <= NF; i++) v[k[i]] = $i } }
         END { printf "ListenOverflows=%s ListenDrops=%s TCPSynRetrans=%s SyncookiesSent=%s TCPTimeouts=%s\n",
               v["ListenOverflows"], v["ListenDrops"], v["TCPSynRetrans"], v["SyncookiesSent"], v["TCPTimeouts"] }' \
        /proc/net/netstat
}

# run_wrk LABEL ADDR SCENARIO MODE CONNECTIONS DURATION [MARKER_DIR] [DELAY_MS] -> raw/LABEL.txt
run_wrk() {
    local label=$1 addr=$2 scenario=$3 mode=$4 conns=$5 dur=$6 markers=${7:-} delay_ms=${8:-0}
    tcp_counters > "$out/raw/$label.tcp"
    wrk -t "$threads" -c "$conns" -d "$dur" --timeout 2s --latency \
        -s "$here/storm.lua" "http://$addr" -- \
        "$tmp/requests.tsv" "$scenario" "$mode" "$threads" "$xff" "$markers" "$delay_ms" \
        > "$out/raw/$label.txt" 2>&1 &
    wrk_pid=$!
    if [ -n "$markers" ]; then
        # Once mode: each thread writes its marker when its slice is answered; wrk's main thread
        # would still sleep out --duration, so end it with SIGINT, on which it reports.
        while kill -0 "$wrk_pid" 2>/dev/null; do
            [ "$(find "$markers" -type f | wc -l)" -ge "$threads" ] && { kill -INT "$wrk_pid"; break; }
            sleep 0.1
        done
    fi
    wait "$wrk_pid" || true
    wrk_pid=""
    tcp_counters >> "$out/raw/$label.tcp"
    grep '^RESULT ' "$out/raw/$label.txt" || { cat "$out/raw/$label.txt" >&2; return 1; }
}

# result_row SCENARIO CONNECTIONS SERVER RUN LABEL: one line of results.tsv from RESULT
result_row() {
    local load1
    load1=$(cut -d' ' -f1 /proc/loadavg)
    grep '^RESULT ' "$out/raw/$5.txt" | sed 's/^RESULT //' | tr ' ' '\n' | cut -d= -f2 | paste -sd'\t' - \
        | sed "s/^/$1\t$2\t$3\t$4\t/; s/\$/\t$load1/" >> "$results"
}

# addr_of SERVER: where it listens.
addr_of() {
    case $1 in
        nodeboot) echo "$nb" ;;
        nginx) echo "$ngx" ;;
        nginx-mem) echo "$ngx_mem" ;;
        hyper-const) echo "$const" ;;
    esac
}
# servers_for SCENARIO: who runs it. The ceilings answer one body to every URL: they stand in
# only where every answer is a bootscript of about that size.
servers_for() {
    case $1 in
        bootscript|close)
            if [ "$ceilings" -eq 1 ]; then echo nodeboot nginx nginx-mem hyper-const
            else echo nodeboot nginx; fi ;;
        *) echo nodeboot nginx ;;
    esac
}

# A short warm-up per server, not recorded: page cache, nginx's open_file_cache, allocators.
for server in $(servers_for bootscript); do
    log "warm-up $server"
    run_wrk "warmup-$server" "$(addr_of "$server")" storm bench 64 3s > /dev/null
done

# open_loop_run RUN: oha at fixed rates, each a share of nodeboot's saturated bootscript req/s
# in this round at --open-loop-connections (the closed-loop point must have run).
open_loop_run() {
    local run=$1 sat pct rate server label
    sat=$(awk -F'\t' -v c="$open_loop_connections" -v r="$run" \
        '$1 == "bootscript" && $2 == c && $3 == "nodeboot" && $4 == r { print int($8) }' "$results")
    if [ -z "$sat" ] || [ "$sat" -le 0 ]; then
        log "skip the open loop: no saturated bootscript run at $open_loop_connections connections"
        return 0
    fi
    # oha picks among the known nodes' bootscript URLs (--urls-from-file).
    awk -F'\t' -v base="http://$nb" '$2 ~ /^bootscript\// { print base $1 }' "$tmp/requests.tsv" \
        > "$tmp/urls-nodeboot.txt"
    sed "s#^http://$nb#http://$ngx#" "$tmp/urls-nodeboot.txt" > "$tmp/urls-nginx.txt"
    for pct in $open_loop; do
        rate=$(( sat * pct / 100 ))
        for server in nodeboot nginx; do
            label=open-loop-$pct-c$open_loop_connections-$server-r$run
            log "oha $label ($rate req/s, $duration, load: $(cut -d' ' -f1-3 /proc/loadavg))"
            tcp_counters > "$out/raw/$label.tcp"
            "$oha" --no-tui --output-format json -z "$duration" -q "$rate" --latency-correction \
                -c "$open_loop_connections" --urls-from-file "$tmp/urls-$server.txt" \
                > "$out/raw/$label.json" 2> "$out/raw/$label.err" || true
            tcp_counters >> "$out/raw/$label.tcp"
            "$bench" oha-result "$out/raw/$label.json" > "$out/raw/$label.txt"
            result_row "open-loop-$pct" "$open_loop_connections" "$server" "$run" "$label"
        done
    done
}

for run in $(seq "$repeat"); do
    for scenario in $scenarios; do
        for c in $connections; do
            # Every server back to back at each point, and whole rounds repeated rather than
            # each point, so that a change of machine load (others compiling, VMs booting)
            # falls on every server rather than on one series. The report takes medians.
            for server in $(servers_for "$scenario"); do
                addr=$(addr_of "$server")
                label=$scenario-c$c-$server-r$run
                log "wrk $label ($duration, load: $(cut -d' ' -f1-3 /proc/loadavg))"
                run_wrk "$label" "$addr" "$scenario" bench "$c" "$duration" > /dev/null
                result_row "$scenario" "$c" "$server" "$run" "$label"
            done
        done
    done
    [ -z "$open_loop" ] || open_loop_run "$run"
    if [ "$paced_rps" -gt 0 ]; then
        for c in $connections; do
            # wrk's delay() is in whole milliseconds: c connections pausing d ms offer at most
            # c * 1000 / d requests/s; the report shows what was really served.
            delay_ms=$(( c * 1000 / paced_rps ))
            [ "$delay_ms" -ge 1 ] || { log "skip paced run at $c connections: $paced_rps req/s needs < 1 ms pauses"; continue; }
            for server in nodeboot nginx; do
                addr=$nb; [ $server = nodeboot ] || addr=$ngx
                label=bootscript-paced-c$c-$server-r$run
                log "wrk $label (${delay_ms} ms pauses, $duration, load: $(cut -d' ' -f1-3 /proc/loadavg))"
                run_wrk "$label" "$addr" bootscript bench "$c" "$duration" "" "$delay_ms" > /dev/null
                result_row bootscript-paced "$c" "$server" "$run" "$label"
            done
        done
    fi
done

rss_load_kb=$(rss_kb "$nodeboot_pid" VmRSS)

# --- the full storm --------------------------------------------------------------------------
metrics() { curl -s "http://$admin/metrics" | grep '^nodeboot_http_requests_total' | grep -v ' 0$' || true; }
if [ "$full_storm" -eq 1 ]; then
    log "full storm (wrk): every node's 4 requests once, $((4 * nodes)) requests, $full_connections connections"
    metrics > "$out/raw/full-storm-metrics-before.txt"
    mkdir -p "$tmp/markers"
    run_wrk full-storm-wrk "$nb" storm once "$full_connections" 600s "$tmp/markers" > /dev/null
    result_row storm-once "$full_connections" nodeboot 1 full-storm-wrk
    metrics > "$out/raw/full-storm-metrics-after.txt"
    cat "$tmp/markers"/* > "$out/raw/full-storm-threads.txt"
    log "full storm (exact): the same $((4 * nodes)) requests once each, shuffled, every body checked"
    step "$bench" compare --all --shuffle --requests "$tmp/requests.tsv" --tree "$tmp/www" \
        --server "$nb" --label nodeboot-full --connections "$full_connections" "${compare_xff[@]}" \
        > "$out/raw/full-storm-exact.txt" 2>&1 || true
    cat "$out/raw/full-storm-exact.txt" >&2
fi

rss_end_kb=$(rss_kb "$nodeboot_pid" VmRSS)
hwm_kb=$(rss_kb "$nodeboot_pid" VmHWM)

cat > "$out/nodeboot.json" <<EOF
{"nodes": $nodes, "cold_start_ms": $cold_start_ms, "rss_ready_kb": $rss_ready_kb,
 "rss_after_wrk_kb": $rss_load_kb, "rss_end_kb": $rss_end_kb, "rss_peak_kb": $hwm_kb}
EOF
echo "uptime at the end: $(uptime)" >> "$out/env.txt"

"$bench" report "$out" | tee "$out/summary.md"
log "raw results in $out"

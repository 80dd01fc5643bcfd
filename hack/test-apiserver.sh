#!/usr/bin/env bash
# Runs a real etcd + kube-apiserver on loopback for the integration tests.
#
#   hack/test-apiserver.sh start   start (or reuse a running) apiserver; prints
#                                  the same export lines as `env` on stdout
#   hack/test-apiserver.sh env     print `export KUBECONFIG=...` and
#                                  `export KUBEBUILDER_ASSETS=...`
#   hack/test-apiserver.sh status  exit 0 if running and ready
#   hack/test-apiserver.sh stop    stop both processes (logs are kept)
#
# State (certs, keys, kubeconfig, logs, etcd data, pids) lives in
# ${NODEBOOT_TEST_STATE:-/tmp/nodeboot-test-apiserver}. No controller-manager
# or scheduler runs: no default ServiceAccounts, namespaces never finish
# deleting, nothing garbage-collects and no Pod ever runs.
# Extra kube-apiserver flags can be passed in NODEBOOT_TEST_APISERVER_ARGS.
set -euo pipefail

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE_DIR="${NODEBOOT_TEST_STATE:-/tmp/nodeboot-test-apiserver}"
# Absolute, so the printed KUBECONFIG works from any directory.
mkdir -p "$STATE_DIR"
STATE_DIR="$(cd "$STATE_DIR" && pwd)"
KUBECONFIG_FILE="$STATE_DIR/kubeconfig"
READY_TIMEOUT="${NODEBOOT_TEST_READY_TIMEOUT:-120}"

log() { echo "test-apiserver: $*" >&2; }
die() { log "$*"; exit 1; }

# Recorded by `start`: ports, token and assets dir of the running instance.
load_state() {
  [[ -f "$STATE_DIR/state.env" ]] || return 1
  # shellcheck disable=SC1091
  source "$STATE_DIR/state.env"
}

# A pid counts only if it is alive and still one of our binaries started for
# this state dir, so a recycled pid after a reboot is never taken for ours.
pid_alive() {
  local name="$1" pid
  pid="$(cat "$STATE_DIR/$name.pid" 2>/dev/null)" || return 1
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$STATE_DIR/" || return 1
  echo "$pid"
}

apiserver_ready() {
  [[ -n "${APISERVER_PORT:-}" ]] || return 1
  [[ "$(curl -s --max-time 5 --cacert "$STATE_DIR/pki/ca.crt" \
    -H "Authorization: Bearer $ADMIN_TOKEN" \
    "https://127.0.0.1:$APISERVER_PORT/readyz" 2>/dev/null)" == "ok" ]]
}

is_running() {
  load_state 2>/dev/null && pid_alive etcd >/dev/null && pid_alive kube-apiserver >/dev/null \
    && apiserver_ready
}

print_env() {
  printf 'export KUBECONFIG=%q\n' "$KUBECONFIG_FILE"
  printf 'export KUBEBUILDER_ASSETS=%q\n' "$ASSETS_DIR"
}

# A loopback port with no listener that we have not handed out yet. Picked
# at random below Linux's ephemeral range (32768+) so neither parallel state
# dirs nor the tests' own outgoing connections are likely to hold it; a lost
# race is retried by cmd_start.
# Sets the variable named $1 (not echoed: USED_PORTS must survive the call).
USED_PORTS=" "
free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((10000 + RANDOM % 22000))
    [[ "$USED_PORTS" == *" $p "* ]] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      USED_PORTS+="$p "
      printf -v "$1" '%s' "$p"
      return 0
    fi
  done
  log "no free loopback port found"
  return 1
}

# Starts a daemon in its own session, detached from our stdout so that
# `eval "$(hack/test-apiserver.sh start)"` does not wait on it, and records
# its pid (exec keeps the pid of the wrapper shell). fd 9 (the state lock)
# is closed so the daemons do not hold the lock for their whole life.
spawn() {
  local name="$1"; shift
  # shellcheck disable=SC2016 # expanded by the inner shell
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$STATE_DIR/$name.pid" "$@" \
    </dev/null >"$STATE_DIR/$name.log" 2>&1 9>&- &
  for _ in $(seq 1 50); do
    [[ -s "$STATE_DIR/$name.pid" ]] && return 0
    sleep 0.1
  done
  log "$name did not start"
  return 1
}

# wait_for NAME CHECK-FUNCTION: polls until the check passes; fails fast,
# showing the log tail, if the process died or the timeout passed.
wait_for() {
  local name="$1" check="$2" deadline=$((SECONDS + READY_TIMEOUT))
  until "$check"; do
    if ! pid_alive "$name" >/dev/null; then
      tail -n 20 "$STATE_DIR/$name.log" >&2 || true
      log "$name exited during startup (log: $STATE_DIR/$name.log)"
      return 1
    fi
    if ((SECONDS >= deadline)); then
      tail -n 20 "$STATE_DIR/$name.log" >&2 || true
      log "$name not ready after ${READY_TIMEOUT}s (log: $STATE_DIR/$name.log)"
      return 1
    fi
    sleep 0.2
  done
}

# Runs a command silently, showing its output only if it fails.
quiet() {
  local out
  out="$("$@" 2>&1)" || { echo "$out" >&2; return 1; }
}

etcd_healthy() {
  curl -s --max-time 2 "http://127.0.0.1:$ETCD_PORT/health" 2>/dev/null | grep -q '"health":"true"'
}

kill_one() {
  local name="$1" pid
  pid="$(pid_alive "$name")" || { rm -f "$STATE_DIR/$name.pid"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$STATE_DIR/$name.pid"
}

cmd_stop() {
  # apiserver first, so it does not log etcd connection errors on the way out
  kill_one kube-apiserver
  kill_one etcd
  log "stopped (logs kept in $STATE_DIR)"
}

# Fresh CA + serving cert for 127.0.0.1/localhost so clients (kube-rs with
# rustls included) verify TLS properly instead of skipping verification,
# plus the RSA key pair that signs ServiceAccount tokens (TokenRequest).
make_pki() {
  local pki="$STATE_DIR/pki"
  mkdir -p "$pki"
  quiet openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$pki/ca.key" -out "$pki/ca.crt" -days 3650 -subj "/CN=nodeboot-test-ca" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign"
  quiet openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$pki/apiserver.key" -out "$pki/apiserver.csr" -subj "/CN=kube-apiserver"
  cat >"$pki/apiserver.ext" <<'EOF'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc
EOF
  quiet openssl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -CAcreateserial -days 3650 -extfile "$pki/apiserver.ext" -out "$pki/apiserver.crt"
  quiet openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$pki/sa.key"
  quiet openssl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub"
  chmod 600 "$pki"/*.key
}

write_kubeconfig() {
  local ca_data
  ca_data="$(base64 -w0 <"$STATE_DIR/pki/ca.crt")"
  cat >"$KUBECONFIG_FILE.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: nodeboot-test
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority-data: $ca_data
users:
- name: nodeboot-test-admin
  user:
    token: $ADMIN_TOKEN
contexts:
- name: nodeboot-test
  context:
    cluster: nodeboot-test
    user: nodeboot-test-admin
    namespace: default
current-context: nodeboot-test
EOF
  chmod 600 "$KUBECONFIG_FILE.tmp"
  mv "$KUBECONFIG_FILE.tmp" "$KUBECONFIG_FILE"
}

cmd_start() {
  if is_running; then
    log "already running on https://127.0.0.1:$APISERVER_PORT, reusing it"
    print_env
    return 0
  fi
  command -v openssl >/dev/null || die "openssl is required"
  command -v curl >/dev/null || die "curl is required"

  ASSETS_DIR="$("$HACK_DIR/envtest-assets.sh" | tail -n 1)"
  [[ -n "$ASSETS_DIR" ]] || die "no test binaries (hack/envtest-assets.sh failed)"

  local t0=$SECONDS attempt rc
  for attempt in 1 2 3; do
    # A subshell outside any `if`, so errexit still applies inside launch.
    set +e
    (set -e; launch)
    rc=$?
    set -e
    if ((rc == 0)); then
      load_state
      log "ready on https://127.0.0.1:$APISERVER_PORT in $((SECONDS - t0))s (kubeconfig: $KUBECONFIG_FILE)"
      print_env
      return 0
    fi
    log "start attempt $attempt failed"
  done
  cmd_stop
  die "could not start etcd + kube-apiserver; logs in $STATE_DIR"
}

# One start from scratch on fresh ports; fails on any error. Run in a
# subshell: its results reach the caller through state.env.
launch() {
  # Whatever is left over is stale (half-started, or killed): start clean,
  # since etcd data bound to old peer ports would not come back anyway.
  cmd_stop 2>/dev/null
  rm -rf "$STATE_DIR/etcd-data" "$STATE_DIR/pki" "$STATE_DIR/cert-dir" "$STATE_DIR/state.env" \
    "$KUBECONFIG_FILE"

  make_pki
  ADMIN_TOKEN="$(openssl rand -hex 32)"
  # token,user,uid,"groups": system:masters bypasses RBAC for the admin.
  echo "$ADMIN_TOKEN,nodeboot-admin,nodeboot-admin,\"system:masters\"" >"$STATE_DIR/pki/tokens.csv"
  chmod 600 "$STATE_DIR/pki/tokens.csv"

  local etcd_peer_port
  free_port ETCD_PORT
  free_port etcd_peer_port
  free_port APISERVER_PORT
  printf 'ETCD_PORT=%q\nAPISERVER_PORT=%q\nADMIN_TOKEN=%q\nASSETS_DIR=%q\n' \
    "$ETCD_PORT" "$APISERVER_PORT" "$ADMIN_TOKEN" "$ASSETS_DIR" >"$STATE_DIR/state.env"
  chmod 600 "$STATE_DIR/state.env"

  # fsync off: the data is thrown away anyway and this is much faster on CI.
  spawn etcd "$ASSETS_DIR/etcd" \
    --name=nodeboot-test \
    --data-dir="$STATE_DIR/etcd-data" \
    --listen-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls="http://127.0.0.1:$etcd_peer_port" \
    --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster="nodeboot-test=http://127.0.0.1:$etcd_peer_port" \
    --unsafe-no-fsync \
    --log-level=warn
  wait_for etcd etcd_healthy || return 1

  # The ServiceAccount admission plugin is off: with no controller-manager
  # there are no default ServiceAccounts, and it would reject every Pod.
  # TokenRequest does not depend on it, only on the issuer and keys below.
  local -a extra=()
  read -r -a extra <<<"${NODEBOOT_TEST_APISERVER_ARGS:-}"
  spawn kube-apiserver "$ASSETS_DIR/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 \
    --advertise-address=127.0.0.1 \
    --secure-port="$APISERVER_PORT" \
    --cert-dir="$STATE_DIR/cert-dir" \
    --tls-cert-file="$STATE_DIR/pki/apiserver.crt" \
    --tls-private-key-file="$STATE_DIR/pki/apiserver.key" \
    --token-auth-file="$STATE_DIR/pki/tokens.csv" \
    --authorization-mode=RBAC \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$STATE_DIR/pki/sa.pub" \
    --service-account-signing-key-file="$STATE_DIR/pki/sa.key" \
    --service-cluster-ip-range=10.0.0.0/24 \
    --allow-privileged=true \
    --disable-admission-plugins=ServiceAccount \
    --profiling=false \
    ${extra[@]+"${extra[@]}"}
  wait_for kube-apiserver apiserver_ready || return 1
  write_kubeconfig
}

# Serialises start/stop for one state dir, e.g. several test binaries that
# each call `start` at the same time: the first starts, the rest reuse.
lock_state() {
  exec 9>"$STATE_DIR/.lock"
  flock 9
}

case "${1:-}" in
  start) lock_state; cmd_start ;;
  stop) lock_state; cmd_stop ;;
  env)
    is_running || die "not running; run: hack/test-apiserver.sh start"
    print_env
    ;;
  status)
    if is_running; then
      log "running on https://127.0.0.1:$APISERVER_PORT"
    else
      log "not running"
      exit 1
    fi
    ;;
  *)
    echo "usage: $0 start|stop|env|status" >&2
    exit 2
    ;;
esac

#!/usr/bin/env bash
# Provides kube-apiserver, etcd and kubectl for the integration tests, laid
# out like setup-envtest's KUBEBUILDER_ASSETS. Everything is built from Go
# modules (hack/envtest) because prebuilt release downloads are unreachable.
#
# Prints the assets directory as the last line of stdout; logs go to stderr.
#   NODEBOOT_ASSETS_CACHE  cache root (default $HOME/.cache/nodeboot)
#   KUBEBUILDER_ASSETS     if it already holds all three binaries, used as is
set -euo pipefail

BINARIES=(kube-apiserver etcd kubectl)
HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODULE_DIR="$HACK_DIR/envtest"

log() { echo "envtest-assets: $*" >&2; }

has_all() {
  local dir="$1" b
  for b in "${BINARIES[@]}"; do
    [[ -x "$dir/$b" ]] || return 1
  done
}

# Honour assets supplied from elsewhere (setup-envtest, a CI cache, ...).
if [[ -n "${KUBEBUILDER_ASSETS:-}" ]] && has_all "$KUBEBUILDER_ASSETS"; then
  log "using KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
  echo "$KUBEBUILDER_ASSETS"
  exit 0
fi

command -v go >/dev/null || { log "go is required to build the test binaries"; exit 1; }

# A go.work further up must not change the resolved versions; go.sum is
# committed and complete, so the default -mod=readonly builds it anywhere
# the Go module proxy is reachable.
export GOWORK=off
export CGO_ENABLED=0

K8S_VERSION="$(cd "$MODULE_DIR" && go list -m -f '{{.Version}}' k8s.io/kubernetes)"
K8S_MINOR="${K8S_VERSION#v1.}"
K8S_MINOR="${K8S_MINOR%%.*}"

# Without these the binaries report v0.0.0-master, which makes kubectl warn
# about version skew and clients see a meaningless server version.
LDFLAGS="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  LDFLAGS+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$K8S_MINOR"
  LDFLAGS+=" -X $pkg.gitTreeState=clean"
done

CACHE_ROOT="${NODEBOOT_ASSETS_CACHE:-${HOME:-/tmp}/.cache/nodeboot}"
ASSETS_DIR="$CACHE_ROOT/k8s-$K8S_VERSION"

# The stamp ties the cached binaries to the exact inputs, so an edit of the
# module (e.g. a new etcd pin) rebuilds even though the directory name stays.
stamp() {
  {
    cat "$MODULE_DIR/go.mod" "$MODULE_DIR/go.sum" "$MODULE_DIR/etcd/main.go"
    echo "$LDFLAGS"
    go env GOVERSION GOOS GOARCH
  } | sha256sum | cut -d' ' -f1
}
WANT_STAMP="$(stamp)"

is_current() {
  has_all "$ASSETS_DIR" && [[ "$(cat "$ASSETS_DIR/.stamp" 2>/dev/null)" == "$WANT_STAMP" ]]
}

if is_current; then
  log "cached in $ASSETS_DIR"
  echo "$ASSETS_DIR"
  exit 0
fi

mkdir -p "$CACHE_ROOT"
# Serialise concurrent callers (parallel test jobs) so only one builds.
exec 9>"$CACHE_ROOT/.k8s-$K8S_VERSION.lock"
flock 9
if is_current; then
  log "built meanwhile by another process: $ASSETS_DIR"
  echo "$ASSETS_DIR"
  exit 0
fi

log "building kube-apiserver, kubectl ($K8S_VERSION) and etcd into $ASSETS_DIR (first build takes a while)"
start=$SECONDS
# Build into a scratch dir and move in afterwards, so an interrupted build
# never leaves a directory that looks complete.
TMP_DIR="$(mktemp -d "$CACHE_ROOT/.build.XXXXXX")"
trap 'rm -rf "$TMP_DIR"' EXIT
(
  cd "$MODULE_DIR"
  # One invocation so the three link steps share the package build graph.
  go build -trimpath -ldflags "$LDFLAGS" -o "$TMP_DIR/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kubectl \
    ./etcd
) >&2
has_all "$TMP_DIR" || { log "build did not produce all of: ${BINARIES[*]}"; exit 1; }

mkdir -p "$ASSETS_DIR"
rm -f "$ASSETS_DIR/.stamp"
for b in "${BINARIES[@]}"; do
  mv -f "$TMP_DIR/$b" "$ASSETS_DIR/$b"
done
echo "$WANT_STAMP" >"$ASSETS_DIR/.stamp"
log "built in $((SECONDS - start))s"
echo "$ASSETS_DIR"

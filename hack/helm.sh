#!/usr/bin/env bash
# Provides the `helm` binary for the chart tests (tests/helm.rs), built from
# its Go module (hack/helm) because release downloads are unreachable.
#
# Prints the path of the binary as the last line of stdout; logs go to stderr.
#   NODEBOOT_ASSETS_CACHE  cache root (default $HOME/.cache/nodeboot)
#   HELM                   if it names an executable, used as is
#
# hack/helm/go.mod pins helm as a `tool` line. To move to another release:
#   cd hack/helm && GOWORK=off go get -tool helm.sh/helm/v4/cmd/helm@vX.Y.Z && go mod tidy
# The cache directory name and the version helm reports follow go.mod.
set -euo pipefail

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODULE_DIR="$HACK_DIR/helm"

log() { echo "helm: $*" >&2; }

# Honour a helm supplied from elsewhere (a CI cache, a developer's own).
if [[ -n "${HELM:-}" && -x "${HELM}" ]]; then
  log "using HELM=$HELM"
  echo "$HELM"
  exit 0
fi

command -v go >/dev/null || { log "go is required to build helm"; exit 1; }

# A go.work further up must not change the resolved versions; go.sum is
# committed and complete, so the default -mod=readonly builds it anywhere the
# Go module proxy is reachable.
export GOWORK=off
export CGO_ENABLED=0

# The module path of the tool line in go.mod (helm.sh/helm/v3 or /v4) and
# its pinned version.
HELM_MODULE="$(sed -n 's|^tool \(helm\.sh/helm/v[0-9]*\)/cmd/helm$|\1|p' "$MODULE_DIR/go.mod")"
[[ -n "$HELM_MODULE" ]] || { log "no 'tool helm.sh/helm/vN/cmd/helm' line in $MODULE_DIR/go.mod"; exit 1; }
HELM_VERSION="$(cd "$MODULE_DIR" && go list -m -f '{{.Version}}' "$HELM_MODULE")"

# Without this the binary calls itself a development build ("v4.3", "v3.x").
LDFLAGS="-s -w -X $HELM_MODULE/internal/version.version=$HELM_VERSION"
LDFLAGS+=" -X $HELM_MODULE/internal/version.gitTreeState=clean"

CACHE_ROOT="${NODEBOOT_ASSETS_CACHE:-${HOME:-/tmp}/.cache/nodeboot}"
HELM_DIR="$CACHE_ROOT/helm-$HELM_VERSION"
HELM_BIN="$HELM_DIR/helm"

# The stamp ties the cached binary to the exact inputs, so an edit of go.sum
# (a bumped dependency) rebuilds even though the directory name stays.
stamp() {
  {
    cat "$MODULE_DIR/go.mod" "$MODULE_DIR/go.sum"
    echo "$LDFLAGS"
    go env GOVERSION GOOS GOARCH
  } | sha256sum | cut -d' ' -f1
}
WANT_STAMP="$(stamp)"

is_current() {
  [[ -x "$HELM_BIN" ]] && [[ "$(cat "$HELM_DIR/.stamp" 2>/dev/null)" == "$WANT_STAMP" ]]
}

if is_current; then
  log "cached in $HELM_DIR"
  echo "$HELM_BIN"
  exit 0
fi

mkdir -p "$CACHE_ROOT"
# Serialise concurrent callers (several test binaries at once): one builds,
# the others wait and reuse its result.
exec 9>"$CACHE_ROOT/.helm-$HELM_VERSION.lock"
flock 9
if is_current; then
  log "built meanwhile by another process: $HELM_DIR"
  echo "$HELM_BIN"
  exit 0
fi

log "building helm $HELM_VERSION into $HELM_DIR (the first build takes a few minutes)"
start=$SECONDS
# Build into a scratch dir and move in afterwards, so an interrupted build
# never leaves a binary that looks complete.
TMP_DIR="$(mktemp -d "$CACHE_ROOT/.build-helm.XXXXXX")"
trap 'rm -rf "$TMP_DIR"' EXIT
(
  cd "$MODULE_DIR"
  go build -trimpath -ldflags "$LDFLAGS" -o "$TMP_DIR/helm" "$HELM_MODULE/cmd/helm"
) >&2
[[ -x "$TMP_DIR/helm" ]] || { log "the build produced no helm binary"; exit 1; }

mkdir -p "$HELM_DIR"
rm -f "$HELM_DIR/.stamp"
mv -f "$TMP_DIR/helm" "$HELM_BIN"
echo "$WANT_STAMP" >"$HELM_DIR/.stamp"
log "built in $((SECONDS - start))s"
echo "$HELM_BIN"

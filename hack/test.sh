#!/usr/bin/env bash
# Runs every test of nodeboot: this is the command README.md gives and .ci/run calls.
# It installs or builds what the tests need first, so it works on a fresh machine:
#   - Debian packages: QEMU, iPXE ROMs, busybox, cpio, cloud-init (hack/install-test-deps.sh),
#   - kube-apiserver, etcd and kubectl, built from Go modules and cached (hack/envtest-assets.sh),
#   - helm, built from its Go module and cached (hack/helm.sh),
#   - a test API server on loopback (hack/test-apiserver.sh), shared by the operator tests;
#   - tests/cluster.rs starts and stops its own single-node cluster (hack/cluster.sh, which
#     installs containerd, podman and the rest) and builds the image (hack/cluster-images.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy (every target of the workspace, the e2e tier's included)"
cargo clippy --workspace --all-targets --locked --features e2e -- -D warnings

echo "== Debian packages for the tests"
hack/install-test-deps.sh

echo "== test API server (kube-apiserver + etcd on loopback)"
t0=$SECONDS
hack/envtest-assets.sh >/dev/null
echo "   binaries ready after $((SECONDS - t0))s"
echo "== helm (built from its Go module and cached)"
t0=$SECONDS
hack/helm.sh >/dev/null
echo "   helm ready after $((SECONDS - t0))s"
export NODEBOOT_TEST_STATE="${NODEBOOT_TEST_STATE:-${TMPDIR:-/tmp}/nodeboot-test-apiserver}"
eval "$(hack/test-apiserver.sh start)"
# Stopped however this script ends: on INT or TERM, exit so that the EXIT trap runs.
trap 'hack/test-apiserver.sh stop >/dev/null 2>&1 || true' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "== cargo test (the default tier and the e2e tier, every crate)"
cargo test --workspace --locked --features e2e --lib --bins --tests

#!/usr/bin/env bash
# The images of the test cluster (hack/cluster.sh), made here since no registry is reachable:
#
#   hack/cluster-images.sh base SOCKET          the pause image, imported into the containerd
#                                               at SOCKET; the local stand-ins of the
#                                               Dockerfile's base images
#   hack/cluster-images.sh nodeboot SOCKET TAG  `podman build` of the project's Dockerfile
#                                               with the stand-ins as build arguments, as
#                                               localhost/nodeboot:TAG, imported likewise
#   hack/cluster-images.sh variant SOCKET FROM TO
#                                               localhost/nodeboot:TO, a new image made from
#                                               localhost/nodeboot:FROM with one label more
#                                               (the upgrade test's "new release", without a
#                                               second release build), imported likewise
#
# `nodeboot` and `variant` print the image's ID (sha256:...), as containerd reports it.
#
# Stand-ins (cached in podman's storage under ~/.cache/nodeboot/podman):
#   localhost/nodeboot-builder:stand-in  for docker.io/library/rust:1.95-bookworm: a Debian 12
#                                        rootfs (debootstrap, with gcc) and this machine's
#                                        stable Rust toolchain, laid out as the Rust image is
#   localhost/nodeboot-runtime:stand-in  for gcr.io/distroless/cc-debian12:nonroot: glibc and
#                                        libgcc of this Debian 12 host, user nonroot (65532)
#   localhost/nodeboot-pause:1           the sandbox image: a static program that waits
set -euo pipefail

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HACK_DIR")"
CACHE_ROOT="${NODEBOOT_ASSETS_CACHE:-${HOME:-/tmp}/.cache/nodeboot}"
PODMAN_DIR="$CACHE_ROOT/podman"

log() { echo "cluster-images: $*" >&2; }

# podman with settings of its own, leaving the machine's alone: runc (crun refuses this
# machine's hybrid cgroups), ulimits within the hard limits (no CAP_SYS_RESOURCE here), and a
# storage directory in the cache.
podman_setup() {
  mkdir -p "$PODMAN_DIR"
  local nofile
  nofile="$(ulimit -Hn)"
  cat >"$PODMAN_DIR/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile"]
[engine]
runtime = "runc"
EOF
  cat >"$PODMAN_DIR/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$PODMAN_DIR/storage"
runroot = "/run/nodeboot-podman"
EOF
  export CONTAINERS_CONF="$PODMAN_DIR/containers.conf"
  export CONTAINERS_STORAGE_CONF="$PODMAN_DIR/storage.conf"
}

has_image() { podman image exists "$1"; }

import_into_containerd() { # socket image
  local archive
  archive="$(mktemp "$PODMAN_DIR/image.XXXXXX.tar")"
  podman save --format oci-archive -o "$archive" "$2" >&2
  ctr --address "$1" -n k8s.io images import --base-name "${2%:*}" "$archive" >&2
  rm -f "$archive"
}

pause_image() {
  has_image localhost/nodeboot-pause:1 && return
  local dir
  dir="$(mktemp -d)"
  # Sleeps until a signal; exits on TERM and INT (what the runtime sends a sandbox).
  cat >"$dir/pause.c" <<'EOF'
#include <signal.h>
#include <unistd.h>
static void stop(int sig) { (void)sig; _exit(0); }
int main(void) {
  signal(SIGTERM, stop);
  signal(SIGINT, stop);
  for (;;) pause();
}
EOF
  gcc -static -Os -o "$dir/pause" "$dir/pause.c"
  printf 'FROM scratch\nCOPY pause /pause\nENTRYPOINT ["/pause"]\n' >"$dir/Containerfile"
  podman build --network=host -t localhost/nodeboot-pause:1 -f "$dir/Containerfile" "$dir" >&2
  rm -rf "$dir"
}

runtime_stand_in() {
  has_image localhost/nodeboot-runtime:stand-in && return
  local dir lib
  dir="$(mktemp -d)"
  mkdir -p "$dir/root/etc" "$dir/root/lib/x86_64-linux-gnu" "$dir/root/lib64" "$dir/root/tmp"
  for lib in libc.so.6 libm.so.6 libgcc_s.so.1; do
    cp -L "/lib/x86_64-linux-gnu/$lib" "$dir/root/lib/x86_64-linux-gnu/"
  done
  cp -L /lib64/ld-linux-x86-64.so.2 "$dir/root/lib64/"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$dir/root/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$dir/root/etc/group"
  chmod 1777 "$dir/root/tmp"
  printf 'FROM scratch\nCOPY root/ /\nUSER 65532:65532\n' >"$dir/Containerfile"
  podman build --network=host -t localhost/nodeboot-runtime:stand-in -f "$dir/Containerfile" "$dir" >&2
  rm -rf "$dir"
}

builder_stand_in() {
  has_image localhost/nodeboot-builder:stand-in && return
  local rootfs="$CACHE_ROOT/cluster-images/builder-rootfs"
  local toolchain
  toolchain="$(rustc --print sysroot)"
  if [[ ! -x "$rootfs/usr/bin/gcc" ]]; then
    log "debootstrap: Debian 12 with gcc into $rootfs"
    rm -rf "$rootfs"
    mkdir -p "$(dirname "$rootfs")"
    debootstrap --variant=minbase --include=gcc,libc6-dev,ca-certificates bookworm "$rootfs" \
      http://deb.debian.org/debian >&2
  fi
  log "builder stand-in: $rootfs with the toolchain of $toolchain"
  local dir
  dir="$(mktemp -d "$PODMAN_DIR/builder.XXXXXX")"
  mkdir -p "$dir/usr/local/rustup" "$dir/usr/local/cargo/bin"
  # The toolchain without its documentation, where the Rust image keeps it.
  cp -a "$toolchain/bin" "$toolchain/lib" "$toolchain/libexec" "$dir/usr/local/rustup/"
  ln -s ../../rustup/bin/cargo "$dir/usr/local/cargo/bin/cargo"
  ln -s ../../rustup/bin/rustc "$dir/usr/local/cargo/bin/rustc"
  tar -C "$rootfs" --exclude=./proc --exclude=./sys --exclude=./dev -c . |
    tar -C "$dir" -x
  # This machine's trusted CAs: cargo fetches crates through whatever this machine trusts.
  cp /etc/ssl/certs/ca-certificates.crt "$dir/etc/ssl/certs/ca-certificates.crt"
  tar -C "$dir" -c . | podman import \
    --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV CARGO_HOME=/usr/local/cargo' \
    --change 'ENV RUSTUP_HOME=/usr/local/rustup' \
    - localhost/nodeboot-builder:stand-in >&2
  rm -rf "$dir"
}

nodeboot_image() { # tag
  local start=$SECONDS
  log "podman build of the Dockerfile as localhost/nodeboot:$1"
  podman build --network=host \
    --build-arg BUILDER_IMAGE=localhost/nodeboot-builder:stand-in \
    --build-arg RUNTIME_IMAGE=localhost/nodeboot-runtime:stand-in \
    -t "localhost/nodeboot:$1" -f "$REPO/Dockerfile" "$REPO" >&2
  log "built in $((SECONDS - start))s"
}

variant_image() { # from to
  local dir
  dir="$(mktemp -d)"
  # A label changes the image's configuration, hence its ID: a distinct image for the
  # runtime, with the same binary.
  printf 'FROM localhost/nodeboot:%s\nLABEL io.nodeboot.test.variant=%s\n' "$1" "$2" \
    >"$dir/Containerfile"
  podman build --network=host -t "localhost/nodeboot:$2" -f "$dir/Containerfile" "$dir" >&2
  rm -rf "$dir"
}

image_id() { podman image inspect --format '{{.Id}}' "$1"; }

podman_setup
case "${1:-}" in
  base)
    pause_image
    import_into_containerd "$2" localhost/nodeboot-pause:1
    runtime_stand_in
    builder_stand_in
    ;;
  nodeboot)
    runtime_stand_in
    builder_stand_in
    nodeboot_image "$3"
    import_into_containerd "$2" "localhost/nodeboot:$3"
    echo "sha256:$(image_id "localhost/nodeboot:$3")"
    ;;
  variant)
    variant_image "$3" "$4"
    import_into_containerd "$2" "localhost/nodeboot:$4"
    echo "sha256:$(image_id "localhost/nodeboot:$4")"
    ;;
  *)
    log "usage: $0 base SOCKET | nodeboot SOCKET TAG | variant SOCKET FROM TO"
    exit 1
    ;;
esac

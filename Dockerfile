# syntax=docker/dockerfile:1
# The nodeboot image: the release binary on a distroless base, run as a non-root user.
#
#   docker build -t REGISTRY/nodeboot:TAG .
#
# tests/image.rs checks this file against the project: the build command, the Rust version
# (Cargo.toml's rust-version), that builder and runtime share a Debian release, and that
# the binary runs as an unprivileged user from a read-only directory.

# The two base images, as build arguments so that a site can use its registry mirror
# (docker build --build-arg BUILDER_IMAGE=mirror.example/library/rust:1.95-bookworm ...) and the
# tests their local stand-ins (hack/cluster-images.sh). The defaults are what a release uses.
# Debian 12 (bookworm) for the builder, to match the glibc of the distroless runtime.
ARG BUILDER_IMAGE=docker.io/library/rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${BUILDER_IMAGE} AS builder
WORKDIR /src
COPY . .
# Cargo.lock decides every dependency version (--locked), as in CI. The cache mounts keep the
# registry and build directory between builds; the binary is copied out of the cached target.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin nodeboot \
    && install -D -m 0555 target/release/nodeboot /out/nodeboot

# glibc and libgcc only: no shell, no package manager. The :nonroot variant runs as
# uid/gid 65532, which the chart's securityContext names too.
FROM ${RUNTIME_IMAGE}
COPY --from=builder /out/nodeboot /usr/local/bin/nodeboot
USER 65532:65532
# The boot listener, the admin listener (health, readiness, metrics) and the admission webhook.
EXPOSE 8080 9090 9443
ENTRYPOINT ["/usr/local/bin/nodeboot"]
CMD ["run"]

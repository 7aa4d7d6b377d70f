# syntax=docker/dockerfile:1
# The operator's image: a static binary on distroless/static, run as nonroot (65532).
# scripts/build-image.sh builds the same image without a container runtime (docs/image.md).
#
#   docker build -t iam-operator:0.1.0 .
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/iam-operator:0.1.0 --push .

# Debian 12's glibc (2.36), like the distroless base: built statically against it, the
# binary needs no shared library at run time. glibc >= 2.34 resolves names through
# /etc/hosts and DNS without the libnss_* modules a static binary could not load.
ARG RUST_VERSION=1.95
FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# Cargo.toml declares the bench target, so its file must be there to load the manifest.
COPY benches ./benches
# --target keeps build scripts and proc-macros dynamic: only the operator is static.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    set -eu; \
    host="$(rustc -vV | sed -n 's/^host: //p')"; \
    RUSTFLAGS='-C target-feature=+crt-static' \
      cargo build --release --locked --bin iam-operator --target "$host"; \
    bin="target/$host/release/iam-operator"; \
    if ldd "$bin" 2>&1 | grep -q '=>'; then echo "iam-operator is not static" >&2; exit 1; fi; \
    strip --strip-debug -o /iam-operator "$bin"

# Holds ca-certificates (the AWS SDK and kube-rs read the system roots), /etc/passwd
# with nonroot, /etc/nsswitch.conf, /tmp; no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="iam-operator" \
      org.opencontainers.image.description="Kubernetes operator that manages AWS IAM policies, groups, users and their credentials" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /iam-operator /iam-operator
# The operator writes no files: run it with readOnlyRootFilesystem: true.
USER 65532:65532
ENTRYPOINT ["/iam-operator"]

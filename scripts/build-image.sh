#!/usr/bin/env bash
# Builds the operator's container image without a container runtime or registry:
# an OCI image layout directory and a `docker load` tarball.
#
# Usage: scripts/build-image.sh [BINARY]
#   BINARY (or IAM_OPERATOR_BINARY): an already-built iam-operator to package. Without it,
#     the operator is built here: `cargo build --release --locked` for the host's glibc
#     target with `-C target-feature=+crt-static` (a static binary, as the Dockerfile builds).
#   IMAGE_OUT   output directory (default: $CARGO_TARGET_DIR or target/, then /image):
#                 oci/               OCI image layout (skopeo copy oci:..., crane push)
#                 iam-operator.tar   `docker load -i` / `podman load -i` tarball
#   IMAGE_TAG   reference recorded in both (default iam-operator:<Cargo version>)
#   SOURCE_DATE_EPOCH  creation time and every file's mtime (default: HEAD's commit time,
#                 else 0), so the same inputs give the same image digest.
#   OCI_IMAGE_TOOL  a prebuilt tools/oci-image (default: built here with `go build`).
#
# What goes in (the whole root filesystem, nothing else: no shell, no package manager):
#   /iam-operator                         the binary (debug info stripped, symbols kept)
#   /etc/passwd, /etc/group               root and nonroot (65532), no login shell
#   /etc/nsswitch.conf                    "hosts: files dns": /etc/hosts before DNS
#   /etc/ssl/certs/ca-certificates.crt    the AWS SDK (rustls-native-certs) and kube's
#                                         platform verifier read the system roots: no
#                                         webpki-roots are compiled in
#   /home/nonroot (65532, 0700), /tmp (1777)
#   a dynamic binary only: the loader and exactly the libraries `ldd` lists, from this host
# The operator writes no files, so the root filesystem can be mounted read-only.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Paths given relative to the caller's directory, before moving to the repository.
binary="${1:-${IAM_OPERATOR_BINARY:-}}"
[[ -z "$binary" || "$binary" == /* ]] || binary="$PWD/$binary"
[[ -z "${IMAGE_OUT:-}" || "$IMAGE_OUT" == /* ]] || IMAGE_OUT="$PWD/$IMAGE_OUT"
[[ -z "${OCI_IMAGE_TOOL:-}" || "$OCI_IMAGE_TOOL" == /* ]] || OCI_IMAGE_TOOL="$PWD/$OCI_IMAGE_TOOL"
cd "$repo_root"
start=$(date +%s)
log() { echo "build-image: $*" >&2; }
die() { log "$*"; exit 1; }

target_dir="${CARGO_TARGET_DIR:-$repo_root/target}"
out="${IMAGE_OUT:-$target_dir/image}"
version="$(awk -F'"' '/^version *=/ {print $2; exit}' Cargo.toml)"
tag="${IMAGE_TAG:-iam-operator:$version}"

if [[ -z "$binary" ]]; then
  host="$(rustc -vV | awk '/^host:/ {print $2}')"
  # Static glibc: glibc >= 2.34 has the `files` and `dns` NSS backends built in, so
  # getaddrinfo works without libnss_*.so (checked: localhost, /etc/hosts names and DNS
  # answers resolve from an otherwise empty root). --target keeps build scripts and
  # proc-macros dynamic; only the operator is linked statically.
  log "cargo build --release --locked (static, $host)"
  RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    cargo build --release --locked --bin iam-operator --target "$host"
  binary="$target_dir/$host/release/iam-operator"
fi
[[ -f "$binary" && -x "$binary" ]] || die "no executable at $binary"

# Architecture from the ELF header (e_machine), for the image config.
machine="$(od -An -t u2 -j 18 -N 2 "$binary" | tr -d ' ')"
case "$machine" in
  62) arch=amd64 ;;
  183) arch=arm64 ;;
  *) die "$binary: unsupported ELF machine $machine" ;;
esac

# The shared objects the binary loads, as `ldd` resolves them on this host: "NAME => PATH"
# lines and the loader's own "PATH (addr)" line. linux-vdso lives in the kernel.
libs=()
loader=""
ldd_out="$(ldd "$binary" 2>&1 || true)"
while read -r line; do
  case "$line" in
    *"=> not found"*) die "ldd: $line" ;;
    *"=> /"*) libs+=("$(echo "$line" | sed -E 's/.*=> (\/[^ ]+).*/\1/')") ;;
    /*) loader="${line%% *}" ;;
  esac
done <<<"$ldd_out"
if [[ -z "$loader" && ${#libs[@]} -eq 0 ]]; then
  log "$binary is static: no libraries in the image"
else
  [[ -n "$loader" ]] || die "ldd lists libraries but no loader: $ldd_out"
  log "$binary is dynamic: adding $loader ${libs[*]}"
fi

rm -rf "$out/layers"
base="$out/layers/base"
app="$out/layers/app"
mkdir -p "$base/etc/ssl/certs" "$base/home/nonroot" "$base/tmp" "$app"

cat >"$base/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
cat >"$base/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
EOF
# Without this file glibc asks DNS before /etc/hosts.
cat >"$base/etc/nsswitch.conf" <<'EOF'
passwd: files
group: files
hosts: files dns
EOF
ca=/etc/ssl/certs/ca-certificates.crt
[[ -s "$ca" ]] || die "$ca is missing: install the ca-certificates package"
cp "$ca" "$base/etc/ssl/certs/ca-certificates.crt"
for so in "$loader" "${libs[@]}"; do
  [[ -n "$so" ]] || continue
  mkdir -p "$base$(dirname "$so")"
  cp -L "$so" "$base$so" # the file itself, at the path the binary or loader asks for
done
find "$base" -type d -exec chmod 0755 {} +
find "$base" -type f -exec chmod 0644 {} +
for so in "$loader" "${libs[@]}"; do [[ -z "$so" ]] || chmod 0755 "$base$so"; done
chmod 0700 "$base/home/nonroot"
chmod 1777 "$base/tmp"

# Debug info off (the test binary carries ~150 MB of it); the symbol table stays, so a
# panic's backtrace still names functions.
if command -v strip >/dev/null; then
  strip --strip-debug -o "$app/iam-operator" "$binary"
else
  cp "$binary" "$app/iam-operator"
fi
chmod 0755 "$app/iam-operator"

tool="${OCI_IMAGE_TOOL:-}"
if [[ -z "$tool" ]]; then
  command -v go >/dev/null || die "go is not installed (or set OCI_IMAGE_TOOL)"
  tool="$target_dir/oci-image/oci-image"
  (cd tools/oci-image && GOTOOLCHAIN=local CGO_ENABLED=0 go build -trimpath -buildvcs=false -o "$tool" .)
fi

if [[ -z "${SOURCE_DATE_EPOCH:-}" ]]; then
  SOURCE_DATE_EPOCH="$(git log -1 --format=%ct 2>/dev/null || echo 0)"
fi
export SOURCE_DATE_EPOCH
created="$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)"
revision="$(git rev-parse HEAD 2>/dev/null || true)"

mkdir -p "$out"
labels=(
  --label "org.opencontainers.image.title=iam-operator"
  --label "org.opencontainers.image.description=Kubernetes operator that manages AWS IAM policies, groups, users and their credentials"
  --label "org.opencontainers.image.version=$version"
  --label "org.opencontainers.image.licenses=Apache-2.0"
  --label "org.opencontainers.image.created=$created"
)
[[ -z "$revision" ]] || labels+=(--label "org.opencontainers.image.revision=$revision")
"$tool" \
  --layer "$base" --layer "$app" \
  --chown home/nonroot=65532:65532 \
  --user 65532:65532 \
  --entrypoint /iam-operator \
  --env PATH=/usr/local/bin:/usr/bin:/bin \
  --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  "${labels[@]}" \
  --arch "$arch" \
  --tag "$tag" \
  --oci-layout "$out/oci" \
  --tarball "$out/iam-operator.tar"

rm -rf "$out/layers"
# go-containerregistry writes some blobs 0600 and index.json 0755: make them plain files.
find "$out/oci" -type d -exec chmod 0755 {} +
find "$out/oci" -type f -exec chmod 0644 {} +
log "wrote $out/oci and $out/iam-operator.tar ($tag, $arch) in $(($(date +%s) - start))s"

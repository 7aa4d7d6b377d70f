#!/usr/bin/env bash
# Installs the pinned cargo-deny into ${IAM_OPERATOR_CACHE:-~/.cache/iam-operator}/cargo-deny
# (nothing to do when that version is already there) and prints the binary's path on stdout;
# progress goes to stderr. Built from crates.io with its own Cargo.lock (--locked): prebuilt
# release binaries are not reachable from every machine the suite runs on.
set -euo pipefail

# Bump deliberately: a new cargo-deny can add lints that fail the suite.
CARGO_DENY_VERSION=0.20.2

cache="${IAM_OPERATOR_CACHE:-$HOME/.cache/iam-operator}"
root="$cache/cargo-deny"
bin="$root/bin/cargo-deny"

if [ -x "$bin" ] && [ "$("$bin" --version 2>/dev/null)" = "cargo-deny $CARGO_DENY_VERSION" ]; then
  echo "$bin"
  exit 0
fi

echo "installing cargo-deny $CARGO_DENY_VERSION into $root (about 2 minutes on 2 cores)" >&2
# A scratch target dir of its own: neither the project's target/ (CARGO_TARGET_DIR would
# otherwise be used by `cargo install`) nor a leftover on disk afterwards.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
# Upstream's release profile is lto="fat", codegen-units=1; on 2 cores that roughly doubles the
# build for a tool whose run time here is a second or two, so build it with thin local LTO.
CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
  cargo install cargo-deny --locked --version "$CARGO_DENY_VERSION" \
  --root "$root" --target-dir "$scratch" --quiet >&2
"$bin" --version >&2
echo "$bin"

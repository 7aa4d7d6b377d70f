#!/usr/bin/env bash
# The whole test suite, as CI runs it. Installs what it needs (the IAM emulator's venv,
# the Go-built control plane, kubectl and helm) into ${IAM_OPERATOR_CACHE:-~/.cache/iam-operator}
# and reuses it on later runs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

step() { printf '\n==> %s\n' "$*"; }
start=$(date +%s)

step "IAM emulator"
bash scripts/emulator.sh install

if [ -f scripts/build-tools.sh ] && [ -d tools/control-plane ]; then
  step "control plane, kubectl, helm"
  bash scripts/build-tools.sh
fi

step "format and lint"
cargo fmt --all -- --check
cargo clippy --all-targets --all-features --locked -- -D warnings

step "dependency policy: advisories, licenses, bans, sources (cargo-deny, deny.toml)"
# Prints, on stdout, why RustSec advisories could not be checked (no network); repeated below.
deny_note="$(bash scripts/deny.sh)"

step "emulator self-test"
"$(bash scripts/emulator.sh python)" -m pytest -q tools/iam-emulator

step "cargo test"
# The crash tests need the failpoints feature; production builds never have it.
cargo test --locked --all-targets --features failpoints -- --test-threads="${TEST_THREADS:-4}"

if [ -n "$deny_note" ]; then echo "NOTE: $deny_note"; fi
echo "test suite finished in $(( $(date +%s) - start ))s"

#!/usr/bin/env bash
# Dependency policy (deny.toml): RustSec advisories, licenses, banned and duplicate crates,
# sources. Installs the pinned cargo-deny first (scripts/install-cargo-deny.sh).
#
# The advisory database is a git repository on GitHub, which some machines running this suite
# cannot reach (see deny.toml). IAM_OPERATOR_ADVISORIES chooses what happens then:
#   auto     (default) check advisories when the database can be fetched; otherwise check
#            the rest and say plainly that advisories were not checked, and why
#   require  a database that cannot be fetched fails the step (CI with network access)
#   skip     do not check advisories (and say so)
# cargo-deny's report goes to stderr. When advisories were not checked, the reason is printed
# on stdout as well (one line) so that scripts/test.sh can repeat it at the end of the suite.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

mode="${IAM_OPERATOR_ADVISORIES:-auto}"
case "$mode" in
  auto | require | skip) ;;
  *)
    echo "IAM_OPERATOR_ADVISORIES must be auto, require or skip (got '$mode')" >&2
    exit 2
    ;;
esac

deny="$(bash scripts/install-cargo-deny.sh)"
# The crates' manifests must be on disk for the --offline check below (a no-op in test.sh,
# where clippy has fetched them already).
cargo fetch --locked --quiet
# --locked like the rest of the suite; the graph (targets, features) is configured in deny.toml.
run_deny() { "$deny" --locked --color "${CARGO_TERM_COLOR:-auto}" "$@" >&2; }

not_checked() {
  local why="$1"
  {
    echo
    echo "!! RustSec advisories were NOT checked: $why"
    echo "!! Licenses, bans and sources were checked. Where github.com is reachable, set"
    echo "!! IAM_OPERATOR_ADVISORIES=require so that advisories are always checked there."
    echo
  } >&2
  echo "RustSec advisories were NOT checked: $why"
}

if [ "$mode" = skip ]; then
  run_deny check bans licenses sources
  not_checked "IAM_OPERATOR_ADVISORIES=skip"
  exit 0
fi

# Fetch separately so that "cannot fetch" is told apart from "an advisory matched". Bounded:
# a network that drops packets instead of refusing would otherwise hang the suite.
fetch_log="$(mktemp)"
trap 'rm -f "$fetch_log"' EXIT
if timeout 120 "$deny" fetch db >"$fetch_log" 2>&1; then
  # Freshly fetched: --offline makes the check use exactly that copy, with no second fetch.
  run_deny --offline check
  exit 0
fi

# git's own message says why ("Could not resolve host: github.com"); else cargo-deny's.
why="$(grep -m1 '^fatal:' "$fetch_log" || grep -m1 -o 'ERROR\].*' "$fetch_log" || tail -n1 "$fetch_log")"
why="${why:-no answer within 120s}"
if [ "$mode" = require ]; then
  cat "$fetch_log" >&2
  echo "IAM_OPERATOR_ADVISORIES=require: the RustSec advisory database could not be fetched" >&2
  exit 1
fi
run_deny check bans licenses sources
not_checked "the advisory database could not be fetched from github.com ($why)"

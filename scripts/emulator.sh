#!/usr/bin/env bash
# The IAM emulator (moto in server mode plus tools/iam-emulator/strict_iam.py).
#
#   scripts/emulator.sh install      create/refresh the venv (no-op when up to date)
#   scripts/emulator.sh start PORT   run the server in the foreground on 127.0.0.1:PORT
#   scripts/emulator.sh python       print the venv's python (installing first if needed)
#
# The venv lives in ${IAM_OPERATOR_CACHE:-$HOME/.cache/iam-operator}/venv and is
# rebuilt whenever tools/iam-emulator/requirements.txt changes (a sha256 stamp of
# that file and of the interpreter version is kept inside the venv). Status goes to
# stderr so that `python` prints only the path on stdout.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EMU_DIR="$ROOT/tools/iam-emulator"
REQS="$EMU_DIR/requirements.txt"
CACHE="${IAM_OPERATOR_CACHE:-$HOME/.cache/iam-operator}"
VENV="$CACHE/venv"
PY="$VENV/bin/python"
STAMP="$VENV/.iam-emulator-requirements.sha256"

log() { echo "iam-emulator: $*" >&2; }

base_python() {
  # moto 5.2.5 needs Python >= 3.9; prefer the 3.11 this project is tested with.
  local candidate
  for candidate in "${IAM_EMULATOR_PYTHON:-}" python3.11 python3.12 python3.13 python3.10 python3.9 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys, venv; sys.exit(0 if sys.version_info >= (3, 9) else 1)' >/dev/null 2>&1; then
      command -v "$candidate"
      return 0
    fi
  done
  log "no Python >= 3.9 with the venv module found (set IAM_EMULATOR_PYTHON)"
  return 1
}

wanted_stamp() {
  local base="$1"
  { sha256sum "$REQS" | cut -d' ' -f1; "$base" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1
}

up_to_date() {
  # Fast path: the venv's own python has the base interpreter's version, so no
  # search for a base interpreter is needed to check the stamp.
  [ -x "$PY" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(wanted_stamp "$PY")" ]
}

do_install() {
  if up_to_date; then
    return 0
  fi
  mkdir -p "$CACHE"
  # Several test processes may start at once: one installs, the others wait.
  exec 9>"$CACHE/.venv.lock"
  if command -v flock >/dev/null 2>&1; then
    flock 9
  fi
  if up_to_date; then
    exec 9>&-
    return 0
  fi
  local base
  base="$(base_python)"
  if [ -x "$PY" ] && ! "$PY" -c 'import sys' >/dev/null 2>&1; then
    rm -rf "$VENV" # broken venv (e.g. its interpreter went away)
  fi
  if [ ! -x "$PY" ]; then
    "$base" -m venv "$VENV"
  fi
  rm -f "$STAMP"
  "$PY" -m pip install --quiet --disable-pip-version-check --no-input -r "$REQS" >&2
  wanted_stamp "$PY" >"$STAMP"
  exec 9>&-
  log "installed $(grep -m1 '^moto' "$REQS") into $VENV"
}

usage() {
  echo "usage: $0 install | start PORT [server.py args...] | python" >&2
  exit 2
}

cmd="${1:-}"
case "$cmd" in
  install)
    [ $# -eq 1 ] || usage
    if up_to_date; then
      log "up to date ($VENV)"
    else
      do_install
    fi
    ;;
  start)
    [ $# -ge 2 ] || usage
    port="$2"
    shift 2
    do_install
    exec "$PY" "$EMU_DIR/server.py" --port "$port" "$@"
    ;;
  python)
    [ $# -eq 1 ] || usage
    do_install
    echo "$PY"
    ;;
  *)
    usage
    ;;
esac

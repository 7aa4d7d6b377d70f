#!/usr/bin/env bash
# Runs iam-operator locally against a real control plane and the IAM emulator, applies
# examples/, and leaves everything running.
#
#   scripts/run-local.sh        start (or show, if already running)
#   scripts/run-local.sh iam    show what the IAM emulator holds (never secret values)
#   scripts/run-local.sh down   stop everything and remove the local state
#
# Builds what is missing first (the operator, the Go-built control plane, kubectl, helm, the
# emulator's virtualenv); caches live in ${IAM_OPERATOR_CACHE:-~/.cache/iam-operator}.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${IAM_OPERATOR_CACHE:-$HOME/.cache/iam-operator}"
STATE="$CACHE/local-run"
BIN="$CACHE/bin"
KUBECONFIG_PATH="$STATE/control-plane/kubeconfig"
kubectl() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_PATH" "$@"; }
step() { printf '==> %s\n' "$*"; }

alive() { [ -f "$STATE/$1.pid" ] && kill -0 "$(cat "$STATE/$1.pid")" 2>/dev/null; }

down() {
  for p in operator emulator control-plane; do
    if alive "$p"; then
      kill -TERM "$(cat "$STATE/$p.pid")" 2>/dev/null || true
      for _ in $(seq 50); do alive "$p" || break; sleep 0.2; done
    fi
  done
  rm -rf "$STATE"
  echo "stopped; local state removed"
}

# Waits for "READY <value>" in a file and prints the value.
wait_ready() {
  local file="$1" what="$2" pid="$3"
  for _ in $(seq 900); do
    if grep -q '^READY ' "$file" 2>/dev/null; then
      sed -n 's/^READY //p' "$file" | head -1
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || { echo "$what exited; see $file and its .log" >&2; return 1; }
    sleep 0.2
  done
  echo "$what did not become ready; see $file" >&2
  return 1
}

iam_state() {
  "$(bash "$ROOT/scripts/emulator.sh" python)" "$ROOT/tools/iam-emulator/iam_state.py" "$(cat "$STATE/emulator.url")"
}

show() {
  echo
  kubectl get iam -A
  echo
  iam_state
  echo
  echo "Published Secrets (keys only, never values):"
  kubectl get secrets -A -l app.kubernetes.io/managed-by=iam-operator \
    -o go-template='{{range .items}}  {{.metadata.namespace}}/{{.metadata.name}}:{{range $k, $v := .data}} {{$k}}{{end}}{{"\n"}}{{end}}'
  echo
  echo "Running. Use the cluster with:"
  echo "  export KUBECONFIG=$KUBECONFIG_PATH"
  echo "  $BIN/kubectl get iam -A"
  echo "IAM emulator: $(cat "$STATE/emulator.url")   operator log: $STATE/operator.log"
  echo "IAM state again: scripts/run-local.sh iam    Stop everything: scripts/run-local.sh down"
}

up() {
  if alive operator && alive emulator && alive control-plane; then
    echo "already running"
    show
    return 0
  fi
  [ -d "$STATE" ] && down >/dev/null
  mkdir -p "$STATE"

  step "building the operator"
  (cd "$ROOT" && cargo build --quiet --bin iam-operator)
  step "building the control plane, kubectl and helm (first run: ~20 min)"
  bash "$ROOT/scripts/build-tools.sh"
  step "installing the IAM emulator"
  bash "$ROOT/scripts/emulator.sh" install
  local py
  py="$(bash "$ROOT/scripts/emulator.sh" python)"

  step "starting the control plane"
  setsid nohup "$BIN/control-plane" --data-dir "$STATE/control-plane" \
    >"$STATE/control-plane.out" 2>"$STATE/control-plane.log" </dev/null &
  echo $! >"$STATE/control-plane.pid"
  wait_ready "$STATE/control-plane.out" "control plane" "$!" >/dev/null

  step "starting the IAM emulator"
  setsid nohup "$py" "$ROOT/tools/iam-emulator/server.py" --port 0 \
    >"$STATE/emulator.out" 2>"$STATE/emulator.log" </dev/null &
  echo $! >"$STATE/emulator.pid"
  wait_ready "$STATE/emulator.out" "IAM emulator" "$!" >"$STATE/emulator.url"

  step "installing the CRDs"
  kubectl apply --server-side -f "$ROOT/crds/"
  kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null

  step "starting the operator"
  KUBECONFIG="$KUBECONFIG_PATH" AWS_ENDPOINT_URL="$(cat "$STATE/emulator.url")" \
    AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 \
    setsid nohup "$ROOT/target/debug/iam-operator" --cluster-name local \
    --oidc-provider-arn "arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE" \
    --metrics-bind-address 127.0.0.1:18080 --health-probe-bind-address 127.0.0.1:18081 \
    >"$STATE/operator.log" 2>&1 </dev/null &
  echo $! >"$STATE/operator.pid"

  step "applying examples/"
  kubectl apply -f "$ROOT/examples/"
  step "waiting for Ready"
  kubectl wait --for=condition=Ready iampolicy,iamgroup,iamuser,iamrole,iamaccountsettings --all -A --timeout=300s
  show
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  iam) iam_state ;;
  *) echo "usage: $0 [up|iam|down]" >&2; exit 2 ;;
esac

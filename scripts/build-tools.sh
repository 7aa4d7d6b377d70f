#!/usr/bin/env bash
# Builds the real Kubernetes components the tests and local runs use, from Go
# modules (see tools/control-plane and tools/helm):
#   control-plane  etcd (embedded) + kube-apiserver + kube-controller-manager
#   kubectl        from the same Kubernetes release
#   helm           helm v3
# into ${IAM_OPERATOR_CACHE:-$HOME/.cache/iam-operator}/bin/.
#
# Does nothing when the binaries are current: per module, a stamp (hash of its
# go.mod/go.sum/*.go, this script and the Go version) is kept next to them.
# The Go module and build caches are Go's defaults (in $HOME), so only the
# first build on a machine is slow (~15-25 min on 2 cores).
#
# Usage: scripts/build-tools.sh [--force]
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$repo_root/tools"
cache="${IAM_OPERATOR_CACHE:-$HOME/.cache/iam-operator}"
bin="$cache/bin"
force=0
[[ "${1:-}" == "--force" ]] && force=1

command -v go >/dev/null || { echo "build-tools: go is not installed" >&2; exit 1; }

stamp_of() { # stamp_of MODULE_DIR: hash of what the binaries built from it depend on
  {
    go version
    cat "${BASH_SOURCE[0]}"
    cd "$1"
    find . -type f \( -name go.mod -o -name go.sum -o -name '*.go' \) | LC_ALL=C sort | while read -r f; do
      echo "== $f"
      cat "$f"
    done
  } | sha256sum | cut -d' ' -f1
}

# current STAMP_NAME STAMP BINARY...: true when all binaries exist and the stamp matches.
current() {
  local name="$1" stamp="$2" b
  shift 2
  [[ $force == 0 && -f "$bin/.stamp-$name" && "$(cat "$bin/.stamp-$name")" == "$stamp" ]] || return 1
  for b in "$@"; do [[ -x "$bin/$b" ]] || return 1; done
}

mkdir -p "$bin"
export CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:-} -trimpath -buildvcs=false"
# Never reach for a toolchain download; the installed Go must do.
export GOTOOLCHAIN=local

modver() { # modver DIR MODULE -> version required in DIR/go.mod
  awk -v m="$2" '$1 == m && $2 ~ /^v/ {print $2; exit}' "$1/go.mod"
}

# --- control-plane and kubectl (one module, one Kubernetes release) ---------
cp_dir="$tools/control-plane"
k8s_ver="$(modver "$cp_dir" k8s.io/kubernetes)"
k8s_major="$(echo "$k8s_ver" | sed -E 's/^v([0-9]+)\..*/\1/')"
k8s_minor="$(echo "$k8s_ver" | sed -E 's/^v[0-9]+\.([0-9]+)\..*/\1/')"
k8s_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $pkg.gitVersion=$k8s_ver -X $pkg.gitMajor=$k8s_major -X $pkg.gitMinor=$k8s_minor -X $pkg.gitTreeState=clean"
done

build() { # build NAME DIR PKG LDFLAGS
  local name="$1" dir="$2" pkg="$3" ldflags="$4" start end
  start=$(date +%s)
  (cd "$dir" && go build -ldflags="$ldflags" -o "$bin/$name.tmp" "$pkg")
  mv -f "$bin/$name.tmp" "$bin/$name"
  end=$(date +%s)
  echo "build-tools: built $name in $((end - start))s ($bin/$name)"
}

cp_stamp="$(stamp_of "$cp_dir")"
if current control-plane "$cp_stamp" control-plane kubectl; then
  echo "build-tools: control-plane up to date ($bin/control-plane)"
  echo "build-tools: kubectl up to date ($bin/kubectl)"
else
  rm -f "$bin/.stamp-control-plane"
  build control-plane "$cp_dir" . "$k8s_ldflags"
  build kubectl "$cp_dir" k8s.io/kubernetes/cmd/kubectl "$k8s_ldflags"
  echo "$cp_stamp" >"$bin/.stamp-control-plane"
fi

# go_tool NAME DIR [PKG [LDFLAGS]]: build the Go module in DIR into $bin/NAME unless current.
go_tool() {
  local name="$1" dir="$2" pkg="${3:-.}" ldflags="${4:--s -w}" stamp
  stamp="$(stamp_of "$dir")"
  if current "$name" "$stamp" "$name"; then
    echo "build-tools: $name up to date ($bin/$name)"
  else
    rm -f "$bin/.stamp-$name"
    build "$name" "$dir" "$pkg" "$ldflags"
    echo "$stamp" >"$bin/.stamp-$name"
  fi
}

# --- helm (own module: helm pins its own k8s.io/* versions) -----------------
helm_dir="$tools/helm"
helm_ver="$(modver "$helm_dir" helm.sh/helm/v3)"
helm_k8s="$(modver "$helm_dir" k8s.io/client-go)" # v0.MINOR.PATCH
helm_k8s_minor="$(echo "$helm_k8s" | sed -E 's/^v0\.([0-9]+)\..*/\1/')"
helm_ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_ver -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
helm_ldflags+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$helm_k8s_minor"
helm_ldflags+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$helm_k8s_minor"
go_tool helm "$helm_dir" helm.sh/helm/v3/cmd/helm "$helm_ldflags"

# --- small Go programs the tests use (each its own module under tools/) ------
# health: Argo CD health.lua checks (Argo CD's Lua VM setup) and kstatus, for tests/health.rs
go_tool health "$tools/health"
# oci-image: assembles the operator's container image without a runtime (scripts/build-image.sh)
go_tool oci-image "$tools/oci-image"
# promcheck: validates the chart's alert rules and dashboard with Prometheus's own parsers.
go_tool promcheck "$tools/promcheck"

#!/usr/bin/env bash
# Builds the control-plane binaries the integration tier runs (kube-apiserver,
# kube-controller-manager, etcd), the node tier's (kubelet, kube-scheduler, kube-proxy), the
# clients tests type (kubectl, helm) and the linter `make lint` runs (kube-score), from Go modules,
# into a cache folder keyed by version, so that only the first run on a machine pays.
#
# Why wrapper modules: `go install k8s.io/kubernetes/cmd/...@vX` is refused
# because k8s.io/kubernetes requires its staging modules at v0.0.0 through
# local replace directives. A module of our own that pins every staging module
# with `replace k8s.io/<name> => k8s.io/<name> v0.X.Y` builds cleanly. etcd's
# server module has local replaces too, so it gets a wrapper of its own.
#
# Usage: build-binaries.sh [DEST]   (prints the folder holding the binaries)
# Honours KUBEBUILDER_ASSETS: when it is set and holds the binaries, nothing is built.
set -euo pipefail

KUBE_VERSION="${SAGE_KUBE_VERSION:-1.35.4}"
ETCD_VERSION="${SAGE_ETCD_VERSION:-3.6.16}"
HELM_VERSION="${SAGE_HELM_VERSION:-3.19.5}"
# kube-score lints the chart's renders and the operator's children in `make lint`.
KUBE_SCORE_VERSION="${SAGE_KUBE_SCORE_VERSION:-1.20.0}"

log() { printf '[build-binaries %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/sage"
dest="${1:-$cache_root/kube-binaries/k8s-v${KUBE_VERSION}-etcd-v${ETCD_VERSION}-helm-v${HELM_VERSION}}"

if [[ -n "${KUBEBUILDER_ASSETS:-}" && -x "$KUBEBUILDER_ASSETS/kube-apiserver" && -x "$KUBEBUILDER_ASSETS/etcd" ]]; then
  log "using KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
  echo "$KUBEBUILDER_ASSETS"
  exit 0
fi

# Built from k8s.io/kubernetes by one wrapper module (one module graph, one shared build cache).
kube_wanted=(kube-apiserver kube-controller-manager kubectl kube-scheduler kubelet kube-proxy)
wanted=("${kube_wanted[@]}" etcd helm kube-score)
missing=()
for b in "${wanted[@]}"; do [[ -x "$dest/$b" ]] || missing+=("$b"); done
# kube-score is versioned apart from the folder's key: a marker says which one is there.
[[ "$(cat "$dest/kube-score.version" 2>/dev/null)" == "$KUBE_SCORE_VERSION" ]] || missing+=(kube-score)
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "$dest"
  exit 0
fi

command -v go >/dev/null || { log "Go is required to build ${missing[*]} (or set KUBEBUILDER_ASSETS)"; exit 1; }
mkdir -p "$dest"
work="$cache_root/kube-binaries/work"
mkdir -p "$work"
# One build at a time per machine: parallel test runs share the cache.
exec 9>"$work/.lock"
flock 9
export GOFLAGS="-mod=mod -buildvcs=false"

build_kube() {
  local minor="${KUBE_VERSION#*.}"
  local staging_version="v0.${minor}"
  local mod="$work/kube-v${KUBE_VERSION}"
  mkdir -p "$mod"
  log "kube: reading the staging module list of k8s.io/kubernetes v${KUBE_VERSION}"
  local gomod
  gomod=$(cd "$mod" && go mod download -json "k8s.io/kubernetes@v${KUBE_VERSION}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  local staging
  staging=$(grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/src/' "$gomod" | awk '{print $1}' | sort -u)
  log "kube: $(wc -w <<<"$staging") staging modules pinned at ${staging_version}"
  {
    echo "module sage.local/kubebinaries"
    echo
    echo "go 1.25"
    echo
    echo "require k8s.io/kubernetes v${KUBE_VERSION}"
    echo
    echo "replace ("
    for m in $staging; do echo "	$m => $m ${staging_version}"; done
    echo ")"
  } >"$mod/go.mod"
  cat >"$mod/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
  log "kube: go mod tidy (first run downloads the module graph)"
  (cd "$mod" && go mod tidy >&2)
  local ldflags="-s -w -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor%%.*} -X k8s.io/component-base/version.gitVersion=v${KUBE_VERSION} -X k8s.io/component-base/version.gitTreeState=clean"
  for b in "${kube_wanted[@]}"; do
    [[ -x "$dest/$b" ]] && continue
    log "kube: building $b"
    (cd "$mod" && go build -trimpath -ldflags "$ldflags" -o "$dest/$b.tmp" "k8s.io/kubernetes/cmd/$b" && mv "$dest/$b.tmp" "$dest/$b")
  done
}

build_etcd() {
  local mod="$work/etcd-v${ETCD_VERSION}"
  mkdir -p "$mod"
  cat >"$mod/go.mod" <<EOF
module sage.local/etcdbinary

go 1.25

require go.etcd.io/etcd/server/v3 v${ETCD_VERSION}
EOF
  cat >"$mod/tools.go" <<'GO'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
GO
  log "etcd: go mod tidy"
  (cd "$mod" && go mod tidy >&2)
  log "etcd: building"
  (cd "$mod" && go build -trimpath -ldflags "-s -w" -o "$dest/etcd.tmp" go.etcd.io/etcd/server/v3 && mv "$dest/etcd.tmp" "$dest/etcd")
}

build_helm() {
  log "helm: building v${HELM_VERSION}"
  local gobin="$work/helm-bin"
  GOBIN="$gobin" go install -trimpath -ldflags "-s -w" "helm.sh/helm/v3/cmd/helm@v${HELM_VERSION}" >&2
  mv "$gobin/helm" "$dest/helm"
}

build_kube_score() {
  log "kube-score: building v${KUBE_SCORE_VERSION}"
  local gobin="$work/kube-score-bin"
  GOBIN="$gobin" go install -trimpath -ldflags "-s -w" "github.com/zegl/kube-score/cmd/kube-score@v${KUBE_SCORE_VERSION}" >&2
  mv "$gobin/kube-score" "$dest/kube-score"
  echo "$KUBE_SCORE_VERSION" >"$dest/kube-score.version"
}

start=$SECONDS
[[ -x "$dest/etcd" ]] || build_etcd
for b in "${kube_wanted[@]}"; do
  if [[ ! -x "$dest/$b" ]]; then build_kube; break; fi
done
[[ -x "$dest/helm" ]] || build_helm
[[ "$(cat "$dest/kube-score.version" 2>/dev/null)" == "$KUBE_SCORE_VERSION" ]] || build_kube_score
log "binaries ready in $dest ($((SECONDS - start))s)"
echo "$dest"

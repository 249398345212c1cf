#!/usr/bin/env bash
# Regenerates the Go tools modules under hack/tools/ from hack/versions.env.
# Run this only when bumping a version; commit the resulting go.mod/go.sum so builds never resolve.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../versions.env
source "$here/../versions.env"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local

# k8s.io/kubernetes requires its ~33 staging modules at v0.0.0 and replaces them with ./staging,
# which Go ignores in a dependency. Read that list from the real go.mod and pin the published
# staging versions instead.
k8s_mod=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
staging=$(grep -E '^\s+k8s.io/[A-Za-z0-9._-]+ => \./staging/' "$k8s_mod" | awk '{print $1}')
{
  echo "module hitl.dev/hack/tools/k8s"
  echo
  echo "go 1.26.0"
  echo
  echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
  echo
  echo "replace ("
  for m in $staging; do echo "	$m => $m $KUBERNETES_STAGING_VERSION"; done
  echo ")"
} > "$here/k8s/go.mod"

gen() { # dir module version tool-package...
  local dir=$1 mod=$2 ver=$3; shift 3
  if [ "$dir" != k8s ]; then
    printf 'module hitl.dev/hack/tools/%s\n\ngo 1.26.0\n' "$dir" > "$here/$dir/go.mod"
  fi
  (cd "$here/$dir" && go get "$mod@$ver" && for p in "$@"; do go get -tool "$p"; done && go mod tidy)
}
gen k8s k8s.io/kubernetes "$KUBERNETES_VERSION" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl \
  k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy
gen etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" go.etcd.io/etcd/server/v3
gen kwok sigs.k8s.io/kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok
gen helm helm.sh/helm/v4 "$HELM_VERSION" helm.sh/helm/v4/cmd/helm

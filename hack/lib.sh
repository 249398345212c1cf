# Shared helpers for hack/ scripts. Source it; do not run it.
# shellcheck shell=bash
HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=versions.env
# shellcheck source-path=SCRIPTDIR source=versions.env
source "$HACK_DIR/versions.env"
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
HITL_CACHE=${HITL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hitl-operator}

# The pinned version of a component, by binary name.
asset_version() {
  case "$1" in
    kube-apiserver|kube-controller-manager|kube-scheduler|kubectl|kubelet|kube-proxy) echo "$KUBERNETES_VERSION" ;;
    etcd) echo "$ETCD_VERSION" ;;
    kwok) echo "$KWOK_VERSION" ;;
    helm) echo "$HELM_VERSION" ;;
    *) echo "unknown asset $1" >&2; return 1 ;;
  esac
}

# Where a binary comes from, in envtest's order: TEST_ASSET_<NAME>, then $KUBEBUILDER_ASSETS/<name>,
# then the project's versioned cache (which may not be built yet).
asset_path() {
  local name=$1 var
  var="TEST_ASSET_$(echo "$name" | tr '[:lower:]-' '[:upper:]_')"
  if [ -n "${!var:-}" ]; then echo "${!var}"; return; fi
  if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/$name" ]; then
    echo "$KUBEBUILDER_ASSETS/$name"; return
  fi
  echo "$HITL_CACHE/bin/$name-$(asset_version "$name")/$name"
}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# N distinct free loopback ports: all bound at once so they differ, then released for the
# components to take. (A small race with other processes is accepted; up fails loudly if hit.)
free_ports() {
  if command -v python3 >/dev/null; then
    python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
    return
  fi
  local ports=() p
  while [ ${#ports[@]} -lt "$1" ]; do
    p=$(( 20000 + RANDOM % 30000 ))
    # Connection refused means nobody listens there.
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && [[ " ${ports[*]} " != *" $p "* ]]; then
      ports+=("$p")
    fi
  done
  echo "${ports[*]}"
}

# The real node beside kwok's: containerd, a kubelet and kube-proxy on this host, so step Pods
# run real containers. Sourced by hack/cluster (it uses its start, wait_until, kubectl_as, sign
# and make_client); not run on its own.
#
# Everything it touches outside the cluster's state directory is host-global and is put back by
# node_down: $NODE_ROOT and $NODE_RUN (containerd, kubelet, CNI and volume state), the bridge
# $NODE_BRIDGE, the CNI network namespaces it created, kube-proxy's iptables rules, one rule that
# keeps the API server to this host and its Pods, and net.ipv4.ip_forward.
# shellcheck shell=bash

NODE_REAL=real-node-0
NODE_ROOT=${HITL_NODE_ROOT:-/var/lib/hitl-node}
NODE_RUN=/run/hitl-node
NODE_BRIDGE=hitl0
# The node's Pods live on the bridge; its gateway is the node's address, where the kubelet and
# (through the kubernetes Service) the API server answer them. Apart from kwok's fake Pod range.
NODE_POD_CIDR=10.89.0.0/24
NODE_IP=10.89.0.1
NODE_SOCK=$NODE_RUN/containerd.sock
NODE_PAUSE_IMAGE=registry.k8s.io/pause:3.10
NODE_BUSYBOX_IMAGE=docker.io/library/busybox:1.36
NODE_VOLUMES=8   # PersistentVolumes of class real-local, recycled when released
NODE_PACKAGES=(containerd runc containernetworking-plugins busybox-static iptables conntrack curl)

# The state directory of the local cluster whose real node this host runs, if that cluster still
# runs: one real node fits on a host, and another cluster's must be left alone.
node_owner() {
  local owner pid started
  [ -s "$NODE_RUN/owner" ] || return 1
  owner=$(cat "$NODE_RUN/owner")
  [ "$owner" != "$STATE_DIR" ] || return 1
  read -r pid started <"$owner/pids/containerd.pid" 2>/dev/null || return 1
  [ -n "$pid" ] && [ "$(start_time "$pid")" = "$started" ] || return 1
  echo "$owner"
}

# Why this host cannot run the real node, in one line; nothing when it can.
node_unavailable() {
  [ "${HITL_REAL_NODE:-1}" != 0 ] || { echo "HITL_REAL_NODE=0"; return; }
  local owner
  if owner=$(node_owner); then echo "the local cluster in $owner runs this host's real node"; return; fi
  [ "$(uname -s)" = Linux ] || { echo "not Linux"; return; }
  [ "$(id -u)" -eq 0 ] || { echo "not root (the kubelet and containerd need root)"; return; }
  [ -d /sys/fs/cgroup/memory ] || [ -f /sys/fs/cgroup/cgroup.controllers ] || { echo "no cgroup hierarchy"; return; }
  if ! node_installed && ! command -v apt-get >/dev/null; then
    echo "no apt-get to install ${NODE_PACKAGES[*]}"
  fi
}

node_installed() {
  command -v containerd >/dev/null && command -v runc >/dev/null && command -v iptables >/dev/null &&
    command -v conntrack >/dev/null && command -v curl >/dev/null && [ -x /usr/lib/cni/bridge ] && [ -x /bin/busybox ]
}

# Debian's packages: the container runtime, the CNI plugins, iptables for kube-proxy, and the
# static busybox the busybox:1.36 image is made of.
node_install() {
  node_installed && return 0
  log "real node: installing ${NODE_PACKAGES[*]} (Debian packages)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "${NODE_PACKAGES[@]}" >/dev/null ||
    { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${NODE_PACKAGES[@]}" >/dev/null; }
}

# ---------------------------------------------------------------------------------------------
# Images: no registry is reachable, so the node's images are OCI archives built here and imported.

node_image_dir() { echo "$HITL_CACHE/images"; }

# The pause (sandbox) image: Kubernetes' own pause.c, from the kubernetes module, linked statically.
node_pause_image() {
  local out dir src
  out="$(node_image_dir)/pause-$KUBERNETES_VERSION.oci.tar"
  [ -s "$out" ] && { echo "$out"; return; }
  src=$(cd "$HACK_DIR/tools/k8s" && go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" |
    sed -n 's/.*"Dir": "\(.*\)".*/\1/p')/build/pause/linux/pause.c
  dir=$(mktemp -d)
  cc -Os -static -DVERSION="$KUBERNETES_VERSION" -o "$dir/pause" "$src" >&2
  "$HACK_DIR/oci-archive" --rootfs "$dir" --entrypoint /pause --user 65535:65535 \
    --ref "$NODE_PAUSE_IMAGE" --output "$out"
  rm -rf "$dir"
  echo "$out"
}

# busybox:1.36 as the samples name it, made of Debian's static busybox (whose own version the
# image's label records): /bin/busybox and a link per applet, an /etc/passwd, a /tmp.
node_busybox_image() {
  local out dir applet version
  version=$(dpkg-query -W -f '${Version}' busybox-static 2>/dev/null || echo unknown)
  out="$(node_image_dir)/busybox-1.36-debian-${version//[^A-Za-z0-9.+-]/_}.oci.tar"
  [ -s "$out" ] && { echo "$out"; return; }
  dir=$(mktemp -d)
  mkdir -p "$dir/bin" "$dir/etc" "$dir/tmp" "$dir/root" "$dir/home"
  chmod 1777 "$dir/tmp"
  cp /bin/busybox "$dir/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -s busybox "$dir/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\nnonroot:x:65532:65532:nonroot:/home:/bin/false\n' >"$dir/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' >"$dir/etc/group"
  "$HACK_DIR/oci-archive" --rootfs "$dir" --cmd sh --user 0:0 --ref "$NODE_BUSYBOX_IMAGE" \
    --label "org.opencontainers.image.description=Debian busybox-static $version" --output "$out"
  rm -rf "$dir"
  echo "$out"
}

# The operator image `make image` (or hack/build-image --profile dev) built last, if any: the
# chart's default image, so `helm install` runs it. hack/build-image loads later builds itself.
node_operator_image() {
  local dir=${CARGO_TARGET_DIR:-$REPO_DIR/target}/image
  # shellcheck disable=SC2012 # names are ours: hitl-operator-<version>[-dev].oci.tar
  ls -t "$dir"/hitl-operator-*.oci.tar 2>/dev/null | head -n 1
}

ctr_node() { ctr --address "$NODE_SOCK" --namespace k8s.io "$@"; }

# node_load_image FILE: imports an OCI archive into the node's containerd (as `kind load` does).
node_load_image() {
  # Unpacked on import (ctr's default) for the CRI's snapshotter, so a Pod starts it at once.
  ctr_node images import --all-platforms "$1" >/dev/null
}

# ---------------------------------------------------------------------------------------------
# Configuration files (in $STATE_DIR/node)

node_write_configs() {
  local dir=$STATE_DIR/node
  mkdir -p "$dir" "$dir/cni"
  cat >"$dir/containerd.toml" <<EOF
version = 2
root = "$NODE_ROOT/containerd"
state = "$NODE_RUN/containerd"
[grpc]
  address = "$NODE_SOCK"
[ttrpc]
  address = "$NODE_RUN/containerd.ttrpc.sock"
[debug]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$NODE_PAUSE_IMAGE"
  # The host lacks CAP_SYS_RESOURCE: without this every sandbox fails ("can't get final child's
  # PID from pipe: EOF"), because runc may not raise a container's oom_score_adj.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni"
EOF
  cat >"$dir/cni/10-hitl.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "hitl",
  "plugins": [
    {"type": "bridge", "bridge": "$NODE_BRIDGE", "isGateway": true, "isDefaultGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$NODE_ROOT/cni",
              "ranges": [[{"subnet": "$NODE_POD_CIDR", "gateway": "$NODE_IP"}]]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  # The kubelet answers the API server only (a client certificate of the cluster's CA, then a
  # SubjectAccessReview): no anonymous access, so a Pod cannot reach exec or logs through it.
  cat >"$dir/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
healthzBindAddress: 127.0.0.1
readOnlyPort: 0
tlsCertFile: $PKI/kubelet.crt
tlsPrivateKeyFile: $PKI/kubelet.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$NODE_SOCK
# The host is cgroup v1.
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
resolvConf: /etc/resolv.conf
maxPods: 110
registerWithTaints: []
# The node shares the host's disk with builds (target/ is tens of GB): the default thresholds
# (nodefs under 10 %, imagefs under 15 % free) would evict the tests' Pods for the host's sake.
# Evict only when the disk is truly about to fill.
evictionHard: {nodefs.available: "1Gi", imagefs.available: "1Gi", nodefs.inodesFree: "1%"}
# No image garbage collection: no registry is reachable, so an image the kubelet deletes (at 85 %
# disk by default; containerd 1.6 does not pin the pause image) never comes back, and every Pod on
# the node then fails to get its sandbox. The images are the few the project builds.
imageGCHighThresholdPercent: 100
EOF
  cat >"$dir/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $STATE_DIR/kubeconfig-kube-proxy-client}
hostnameOverride: $NODE_REAL
mode: iptables
clusterCIDR: $NODE_POD_CIDR
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# Leave the host's conntrack table sizes alone (a microVM may not allow changing them).
conntrack: {maxPerCore: 0, min: 0}
EOF
  # The recycler scrubs a released real-local volume with busybox, on the real node.
  cat >"$dir/recycler.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata: {generateName: pv-recycler-, namespace: default}
spec:
  restartPolicy: Never
  nodeSelector: {hitl.dev/node: real}
  volumes: [{name: vol}]
  containers:
  - name: pv-recycler
    image: $NODE_BUSYBOX_IMAGE
    imagePullPolicy: Never
    command: [sh, -c, 'test -e /scrub && find /scrub -mindepth 1 -delete && test -z "\$(ls -A /scrub)"']
    volumeMounts: [{name: vol, mountPath: /scrub}]
EOF
}

# Certificates: the kubelet's serving certificate, its client identity (a node in
# system:masters, like kwok's, since the Node authorizer is not on here), kube-proxy's
# (system:kube-proxy, bound by the bootstrap policy), and the API server's client for the kubelet.
node_pki() {
  sign kubelet "/CN=$NODE_REAL" "keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:$NODE_IP,DNS:$NODE_REAL"
  make_client kubelet-client "/CN=system:node:$NODE_REAL/O=system:masters"
  make_client kube-proxy-client "/CN=system:kube-proxy"
  sign apiserver-kubelet-client "/CN=kube-apiserver-kubelet-client/O=system:masters" "keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
}

# ---------------------------------------------------------------------------------------------
# Host network

# The bridge exists before the kubelet starts: its address is the node's.
node_network_up() {
  mkdir -p "$NODE_RUN"
  echo "$STATE_DIR" >"$NODE_RUN/owner"
  sysctl -n net.ipv4.ip_forward >"$NODE_RUN/ip_forward.before"
  sysctl -qw net.ipv4.ip_forward=1
  ls /var/run/netns 2>/dev/null >"$NODE_RUN/netns.before" || true
  ip link show "$NODE_BRIDGE" >/dev/null 2>&1 || ip link add "$NODE_BRIDGE" type bridge
  ip addr replace "$NODE_IP/24" dev "$NODE_BRIDGE"
  ip link set "$NODE_BRIDGE" up
}

# The API server listens on every address so the node's Pods reach it; only this host and those
# Pods may connect.
node_guard_apiserver() {
  # shellcheck disable=SC2046 # the rule is words on purpose
  iptables -I INPUT $(node_guard_rule "$1")
  echo "$1" >"$NODE_RUN/guarded.port"
}

# The guard rule for the API server's PORT, as iptables arguments (one word each), for -I and -D.
node_guard_rule() {
  echo "-p tcp --dport $1 -m addrtype ! --src-type LOCAL ! -s $NODE_POD_CIDR -m comment --comment hitl-apiserver-guard -j DROP"
}

node_network_down() {
  local port ns
  if [ -s "$NODE_RUN/guarded.port" ]; then
    port=$(cat "$NODE_RUN/guarded.port")
    # shellcheck disable=SC2046 # the rule is words on purpose
    iptables -D INPUT $(node_guard_rule "$port") 2>/dev/null || true
  fi
  for ns in $(ls /var/run/netns 2>/dev/null); do
    case "$ns" in cni-*) grep -qx "$ns" "$NODE_RUN/netns.before" 2>/dev/null || ip netns delete "$ns" 2>/dev/null || true ;; esac
  done
  node_iptables_down iptables
  node_iptables_down ip6tables
  ip link show "$NODE_BRIDGE" >/dev/null 2>&1 && ip link delete "$NODE_BRIDGE"
  [ -s "$NODE_RUN/ip_forward.before" ] && sysctl -qw "net.ipv4.ip_forward=$(cat "$NODE_RUN/ip_forward.before")"
  return 0
}

# node_iptables_down iptables|ip6tables: the KUBE-* chains the kubelet and kube-proxy made, and
# every rule that jumps to one (kube-proxy --cleanup leaves the kubelet's).
node_iptables_down() {
  local cmd=$1 table rule chain
  command -v "$cmd-save" >/dev/null || return 0
  for table in filter nat mangle; do
    # (grep finding nothing is no failure here: { ...; } || true keeps pipefail quiet.)
    "$cmd-save" -t "$table" 2>/dev/null | { grep -E '^-A [A-Z]+ .*-j KUBE-' || true; } |
      while read -r rule; do
        eval "$cmd -t $table -D ${rule#-A }" 2>/dev/null || true
      done
    for chain in $("$cmd-save" -t "$table" 2>/dev/null | sed -n 's/^:\(KUBE-[^ ]*\) .*/\1/p'); do
      "$cmd" -t "$table" -F "$chain" 2>/dev/null || true
    done
    for chain in $("$cmd-save" -t "$table" 2>/dev/null | sed -n 's/^:\(KUBE-[^ ]*\) .*/\1/p'); do
      "$cmd" -t "$table" -X "$chain" 2>/dev/null || true
    done
  done
}

# ---------------------------------------------------------------------------------------------
# Up and down

node_ready() {
  [ "$(kubectl_as admin get node "$NODE_REAL" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}
proxy_ready() { curl -fsS http://127.0.0.1:10256/healthz >/dev/null 2>&1; }
containerd_ready() { ctr --address "$NODE_SOCK" version >/dev/null 2>&1; }

# Starts the node's processes (node_pki, node_write_configs and node_network_up ran before the
# control plane started); the control plane is up. Records that the node is part of the
# cluster, so status and down know it.
node_up() {
  local image
  node_install
  mkdir -p "$(node_image_dir)" "$NODE_ROOT" "$NODE_RUN"
  start containerd --config "$STATE_DIR/node/containerd.toml"
  echo containerd >>"$STATE_DIR/node.components"
  wait_until containerd "serving $NODE_SOCK" containerd_ready
  for image in "$(node_pause_image)" "$(node_busybox_image)" "$(node_operator_image)"; do
    [ -n "$image" ] || continue
    log "real node: importing $image"
    node_load_image "$image"
  done
  start kubelet --config "$STATE_DIR/node/kubelet.yaml" --kubeconfig "$STATE_DIR/kubeconfig-kubelet-client" \
    --root-dir "$NODE_ROOT/kubelet" --cert-dir "$NODE_ROOT/kubelet/pki" --node-ip "$NODE_IP" \
    --hostname-override "$NODE_REAL" --node-labels "hitl.dev/node=real"
  echo kubelet >>"$STATE_DIR/node.components"
  wait_until kubelet "reporting node $NODE_REAL Ready" node_ready
  start kube-proxy --config "$STATE_DIR/node/kube-proxy.yaml"
  echo kube-proxy >>"$STATE_DIR/node.components"
  wait_until kube-proxy "healthy" proxy_ready
  node_volumes
}

# Volumes of class real-local: directories on the real node, writable by any user (a step runs as
# a user the image or the Workflow picks), recycled (emptied) when their claim is deleted.
node_volumes() {
  local i
  kubectl_as admin apply -f - >/dev/null <<EOF
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: real-local}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
EOF
  # Recycle is deprecated (in favour of provisioners) but kept: it is what frees a volume here.
  for i in $(seq "$NODE_VOLUMES"); do
    mkdir -p "$NODE_ROOT/volumes/pv-$i"
    chmod 1777 "$NODE_ROOT/volumes/pv-$i"
    kubectl_as admin apply -f - >/dev/null 2>"$STATE_DIR/node/pv.err" <<EOF || { cat "$STATE_DIR/node/pv.err" >&2; return 1; }
apiVersion: v1
kind: PersistentVolume
metadata: {name: real-local-$i, labels: {hitl.dev/node: real}}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce, ReadWriteMany]
  persistentVolumeReclaimPolicy: Recycle
  storageClassName: real-local
  hostPath: {path: $NODE_ROOT/volumes/pv-$i, type: Directory}
  nodeAffinity:
    required:
      nodeSelectorTerms: [{matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [$NODE_REAL]}]}]
EOF
  done
}

# Stops the node and puts the host back as it was. Works with the API server gone (a failed up).
node_down() {
  [ -d "$NODE_RUN" ] || [ -d "$NODE_ROOT" ] || [ -s "$STATE_DIR/node.components" ] || return 0
  ! node_owner >/dev/null || return 0   # another running cluster's node
  if apiserver_ready && running_pid kubelet >/dev/null; then
    # Let the kubelet stop its Pods the ordinary way (sandboxes, network, mounts) first.
    kubectl_as admin delete pods -A --field-selector "spec.nodeName=$NODE_REAL" --grace-period=1 \
      --wait=false >/dev/null 2>&1 || true
    local i
    for i in $(seq 100); do
      [ -z "$(ctr_node tasks ls -q 2>/dev/null)" ] && break
      sleep 0.2
    done
  fi
  stop_components kube-proxy kubelet
  node_orphans_down kube-proxy "--config .*/node/kube-proxy.yaml" kubelet "--root-dir $NODE_ROOT/kubelet"
  "$(asset_path kube-proxy)" --cleanup >/dev/null 2>&1 || true
  node_tasks_down
  stop_components containerd
  node_orphans_down containerd "containerd --config .*/node/containerd.toml"
  pkill -KILL -f "containerd-shim.*-address $NODE_SOCK" 2>/dev/null || true
  node_unmount_all
  node_network_down
  node_cgroups_down
  rm -rf "$NODE_ROOT" "$NODE_RUN" "$STATE_DIR/node.components"
}

# node_orphans_down NAME PATTERN...: a node process of a run whose pid files are gone (its state
# directory was removed while it ran) still holds the host's ports and sockets: killed by command line.
node_orphans_down() {
  while [ $# -ge 2 ]; do
    if pkill -KILL -f -- "$2" 2>/dev/null; then log "killed a $1 left running by an earlier cluster"; fi
    shift 2
  done
  sleep 0.2
}

# Whatever the kubelet left running: killed through containerd, then deleted.
node_tasks_down() {
  containerd_ready || return 0
  local task
  for task in $(ctr_node tasks ls -q 2>/dev/null); do
    ctr_node tasks kill -s SIGKILL "$task" >/dev/null 2>&1 || true
  done
  sleep 0.5
  for task in $(ctr_node tasks ls -q 2>/dev/null); do
    ctr_node tasks delete -f "$task" >/dev/null 2>&1 || true
  done
}

# Every mount under the node's directories (volumes, tokens, snapshots, shm), deepest first.
node_unmount_all() {
  local mp
  awk '{print $5}' /proc/self/mountinfo | { grep -E "^($NODE_ROOT|$NODE_RUN)(/|$)" || true; } | sort -r |
    while read -r mp; do umount -l "$mp" 2>/dev/null || true; done
}

# The kubelet's cgroups (cgroup v1: one tree per controller), innermost first.
node_cgroups_down() {
  local c
  for c in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/kubepods.slice; do
    [ -d "$c" ] || continue
    find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
}

#!/usr/bin/env bash
# Builds the test control plane and test tools from the pinned Go module in
# this folder, into a cache outside the work tree keyed by the module's
# go.mod, go.sum and our Go sources. A second run with nothing changed builds
# nothing. Prints the bin directory on its last line of stdout.
#
# Honoured when set: KUBEBUILDER_ASSETS (a folder with kube-apiserver, etcd,
# kubectl), TEST_ASSET_KUBE_APISERVER, TEST_ASSET_ETCD, TEST_ASSET_KUBECTL.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cache_root=${CSI_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cert-manager-csi-driver}

key=$(cd "$here" && cat go.mod go.sum kubelet/go.mod kubelet/go.sum $(find cmd -name '*.go' | sort) | sha256sum | cut -c1-16)
bin="$cache_root/tools-$key/bin"
mkdir -p "$bin"
# Two builds at once (a test run and `cluster up`) would race on the same files.
exec 9>"$cache_root/.build.lock"
flock 9

log() { printf '[tools] %s\n' "$*" >&2; }

# name  go-package  env-override  [module folder, default: this one]
# The kubelet has a module of its own (kubelet/, same k8s.io/kubernetes pin):
# it needs the CSI spec module at v1.12 or older (VolumeCondition, removed in
# v1.13.0), and csi-test v5.6.0 needs v1.13.0; one module cannot hold both.
targets=(
  "kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver TEST_ASSET_KUBE_APISERVER"
  "etcd go.etcd.io/etcd/server/v3 TEST_ASSET_ETCD"
  "kubectl k8s.io/kubernetes/cmd/kubectl TEST_ASSET_KUBECTL"
  "csi-sanity github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity -"
  "cert-manager-controllers ./cmd/cert-manager-controllers -"
  "helm helm.sh/helm/v3/cmd/helm -"
  "kubelet k8s.io/kubernetes/cmd/kubelet TEST_ASSET_KUBELET kubelet"
)

for t in "${targets[@]}"; do
  read -r name pkg override moddir <<<"$t"
  given=""
  if [ "$override" != "-" ] && [ -n "${!override:-}" ]; then given=${!override}
  elif [ "$override" != "-" ] && [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/$name" ]; then given=$KUBEBUILDER_ASSETS/$name
  fi
  if [ -n "$given" ]; then
    [ -x "$given" ] || { log "$override points at $given, which is not an executable"; exit 1; }
    ln -sf "$given" "$bin/$name"
    log "$name: using $given"
    continue
  fi
  if [ -x "$bin/$name" ] && [ ! -L "$bin/$name" ]; then
    log "$name: cached"
    continue
  fi
  log "$name: building $pkg (the first build takes minutes)"
  start=$(date +%s)
  (cd "$here/${moddir:-.}" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$bin/$name.tmp" "$pkg")
  mv "$bin/$name.tmp" "$bin/$name"
  log "$name: built in $(( $(date +%s) - start ))s"
done

# Every change of pins makes a new folder (~400 MB): keep this one and the
# two newest others (a control plane started earlier may still use them).
ls -1dt "$cache_root"/tools-* 2>/dev/null | grep -vxF "$cache_root/tools-$key" | tail -n +3 | xargs -r rm -rf

# cert-manager's CRDs come from the pinned module; they are not committed.
cm_version=$(cd "$here" && go list -m -f '{{.Version}}' github.com/cert-manager/cert-manager)
cm_dir=$(cd "$here" && go list -m -f '{{.Dir}}' github.com/cert-manager/cert-manager)
if [ -z "$cm_dir" ] || [ ! -d "$cm_dir" ]; then
  cm_dir=$(cd "$here" && go mod download -json github.com/cert-manager/cert-manager | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
fi
for f in "$cm_dir"/deploy/crds/cert-manager.io_*.yaml; do
  install -m 0644 "$f" "$root/crds/$(basename "$f")"
done
echo "$cm_version" > "$root/crds/VERSION"
log "CRDs: cert-manager $cm_version copied into crds/"

echo "$bin"

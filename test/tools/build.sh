#!/usr/bin/env bash
# Builds the test control plane and test tools from the pinned Go module in
# this folder, into a cache outside the work tree keyed by the module's
# go.mod, go.sum and our Go sources. A second run with nothing changed builds
# nothing. Prints the bin directory on its last line of stdout.
#
# Honoured when set: KUBEBUILDER_ASSETS (a folder with kube-apiserver, etcd,
# kubectl), TEST_ASSET_KUBE_APISERVER, TEST_ASSET_ETCD, TEST_ASSET_KUBECTL,
# TEST_ASSET_KUBELET; CSI_TOOLS_CACHE (the cache folder), CSI_CRDS_DIR (where
# the CRDs go, default crds/).
#
#   bash test/tools/build.sh                      # every tool
#   bash test/tools/build.sh kube-apiserver etcd  # only these (the demo needs four)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cache_root=${CSI_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cert-manager-csi-driver}

key=$(cd "$here" && cat go.mod go.sum kubelet/go.mod kubelet/go.sum $(find cmd -name '*.go' | sort) | sha256sum | cut -c1-16)
bin="$cache_root/tools-$key/bin"
mkdir -p "$bin"
log() { printf '[tools] %s\n' "$*" >&2; }

# Two builds at once (a test run and `cluster up`) would race on the same files.
exec 9>"$cache_root/.build.lock"
if ! flock -n 9; then
  log "another build holds $cache_root/.build.lock; waiting for it"
  flock 9
fi

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

# Minutes each took on a fresh machine (2 cores, empty Go build cache): what
# a newcomer is told before the first build starts.
declare -A first_build_s=([kube-apiserver]=530 [etcd]=25 [kubectl]=45 [csi-sanity]=20 [cert-manager-controllers]=30 [helm]=30 [kubelet]=370)

known=" "; for t in "${targets[@]}"; do known+="${t%% *} "; done
for w in "$@"; do
  [[ $known == *" $w "* ]] || { log "unknown tool '$w' (known:$known)"; exit 2; }
done
selected=()
for t in "${targets[@]}"; do
  if [ $# -eq 0 ] || [[ " $* " == *" ${t%% *} "* ]]; then selected+=("$t"); fi
done

# Says what a first build costs before it starts.
missing=(); estimate=0
for t in "${selected[@]}"; do
  read -r name _ override _ <<<"$t"
  if [ "$override" != "-" ] && { [ -n "${!override:-}" ] || { [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/$name" ]; }; }; then continue; fi
  if [ -x "$bin/$name" ] && [ ! -L "$bin/$name" ]; then continue; fi
  missing+=("$name"); estimate=$((estimate + ${first_build_s[$name]:-60}))
done
if [ ${#missing[@]} -gt 0 ]; then
  log "to build: ${missing[*]} into $bin"
  log "a first build on an empty Go cache takes about $(( (estimate + 59) / 60 )) min on 2 cores (and ~10 GB of Go caches); with Go's build cache warm, a few minutes"
fi

# go build -v names each package as it compiles it: count them against the
# package's dependency graph, every 20 s, so a long build shows it is moving.
build_one() {
  local name=$1 pkg=$2 dir=$3 out=$4 glog total start rc ticker
  glog=$(mktemp)
  total=$(cd "$dir" && go list -deps "$pkg" 2>/dev/null | wc -l || true)
  start=$(date +%s)
  (
    # The sleep dies with the ticker: an orphan would hold stderr open.
    trap 'kill "$nap" 2>/dev/null; exit 0' TERM
    while :; do
      sleep 20 & nap=$!; wait "$nap"
      log "$name: $(grep -vc '^go: ' "$glog" || true) of ~${total:-?} packages compiled, $(( $(date +%s) - start ))s"
    done
  ) &
  ticker=$!
  rc=0
  (cd "$dir" && CGO_ENABLED=0 go build -v -trimpath -ldflags='-s -w' -o "$out" "$pkg") 2>"$glog" || rc=$?
  kill "$ticker" 2>/dev/null; wait "$ticker" 2>/dev/null || true
  if [ "$rc" -ne 0 ]; then
    log "$name: go build failed (exit $rc); its last lines:"
    grep -v '^go: downloading' "$glog" | tail -n 30 >&2
  fi
  rm -f "$glog"
  return "$rc"
}

for t in "${selected[@]}"; do
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
  log "$name: building $pkg (first build: about $(( (${first_build_s[$name]:-60} + 59) / 60 )) min)"
  start=$(date +%s)
  build_one "$name" "$pkg" "$here/${moddir:-.}" "$bin/$name.tmp"
  mv "$bin/$name.tmp" "$bin/$name"
  log "$name: built in $(( $(date +%s) - start ))s"
done

# Every change of pins makes a new folder (~400 MB): keep this one and the
# two newest others (a control plane started earlier may still use them).
# A loop, not a pipeline: under pipefail, `grep -v` selecting nothing (a
# fresh cache holds only this pin set) would fail the whole build.
others_kept=0
for dir in $(ls -1dt "$cache_root"/tools-* 2>/dev/null); do
  [ "$dir" = "$cache_root/tools-$key" ] && continue
  others_kept=$((others_kept + 1))
  [ "$others_kept" -le 2 ] || rm -rf "$dir"
done

# cert-manager's CRDs come from the pinned module; they are not committed.
cm_version=$(cd "$here" && go list -m -f '{{.Version}}' github.com/cert-manager/cert-manager)
cm_dir=$(cd "$here" && go list -m -f '{{.Dir}}' github.com/cert-manager/cert-manager)
if [ -z "$cm_dir" ] || [ ! -d "$cm_dir" ]; then
  cm_dir=$(cd "$here" && go mod download -json github.com/cert-manager/cert-manager | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
fi
crds_dir=${CSI_CRDS_DIR:-$root/crds}
mkdir -p "$crds_dir"
for f in "$cm_dir"/deploy/crds/cert-manager.io_*.yaml; do
  install -m 0644 "$f" "$crds_dir/$(basename "$f")"
done
echo "$cm_version" > "$crds_dir/VERSION"
log "CRDs: cert-manager $cm_version copied into $crds_dir"

echo "$bin"

#!/usr/bin/env bash
# Installs what the e2e node needs from Debian's packages, once: containerd
# and runc (the container runtime the kubelet drives) and busybox-static (the
# one binary of the test image). Idempotent: a machine that has them is left
# alone and apt is not even asked. Needs root.
set -euo pipefail
need=()
for p in containerd runc busybox-static; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || need+=("$p")
done
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
[ "$(id -u)" -eq 0 ] || { echo "[e2e] need root to install ${need[*]}" >&2; exit 1; }
echo "[e2e] installing ${need[*]} from Debian's packages" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
# No recommends: criu, iptables and the CNI plugins are not used (host-network pods only).
apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
# Debian ships no init here to start it, and the e2e node runs its own
# containerd with its own config: nothing else to do.

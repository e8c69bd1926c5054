#!/usr/bin/env bash
# Installs what the e2e node needs from Debian's packages, once: containerd
# and runc (the container runtime the kubelet drives) and busybox-static (the
# one binary of the test image). Idempotent: a machine that has them is left
# alone and apt is not even asked. Needs root.
set -euo pipefail
pkgs=(containerd runc busybox-static)
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'; }
# The first-run path (CI): start from a machine without them, as a newcomer's is.
if [ "${CSI_FIRST_RUN:-}" = 1 ]; then
  present=()
  for p in "${pkgs[@]}"; do installed "$p" && present+=("$p"); done
  if [ ${#present[@]} -gt 0 ]; then
    echo "[e2e] first-run path: removing ${present[*]} so the install below runs as on a fresh machine" >&2
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq "${present[@]}" >&2
  fi
fi
need=()
for p in "${pkgs[@]}"; do installed "$p" || need+=("$p"); done
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
[ "$(id -u)" -eq 0 ] || { echo "[e2e] need root to install ${need[*]}" >&2; exit 1; }
echo "[e2e] installing ${need[*]} from Debian's packages" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
# No recommends: criu, iptables and the CNI plugins are not used (host-network pods only).
apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
# Debian ships no init here to start it, and the e2e node runs its own
# containerd with its own config: nothing else to do.

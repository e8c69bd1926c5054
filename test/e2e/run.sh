#!/usr/bin/env bash
# The kubelet end-to-end tier: a one-node cluster on this machine (control
# plane, containerd + runc from Debian, a real kubelet, the driver as its node
# plugin), the tests in test/e2e/*.test.ts against it, one after another, then
# a teardown that must leave no process, mount, container or cgroup behind.
#
#   bash test/e2e/run.sh                     # everything; ends with "N passed, N failed"
#   bash test/e2e/run.sh test/e2e/renewal.test.ts   # some test files only
#   CSI_E2E_KEEP_LOGS=/tmp/logs bash test/e2e/run.sh  # keep the node's logs
#
# Needs root (mounts, containers, cgroups). Installs containerd, runc and
# busybox-static from Debian's packages the first time (test/e2e/install-host.sh).
set -uo pipefail
cd "$(dirname "$0")/../.."
out=$(mktemp -d /tmp/cm-csi-e2e-run.XXXXXX)
export CSI_E2E_RESULTS="$out/results.txt"
user_logs=${CSI_E2E_KEEP_LOGS:-}
export CSI_E2E_KEEP_LOGS=${CSI_E2E_KEEP_LOGS:-$out/logs}
: >"$CSI_E2E_RESULTS"
passed=0; failed=0; problems=()
node_cli() { node --import tsx test/e2e/node.ts "$@"; }

if [ "$(id -u)" -ne 0 ]; then echo "e2e: needs root"; echo "0 passed, 1 failed"; exit 1; fi
if ! bash test/e2e/install-host.sh; then echo "e2e: could not install containerd, runc, busybox-static"; echo "0 passed, 1 failed"; exit 1; fi

# Interrupted or not, the node goes.
trap 'node_cli down >/dev/null 2>&1' EXIT

files=("$@")
[ ${#files[@]} -gt 0 ] || files=(test/e2e/*.test.ts)

echo "=== e2e node up"
if node_cli up; then
  echo
  echo "=== e2e tests (one file at a time: they share the node, and one kills the driver)"
  npx tap run --jobs=1 --timeout=600 --reporter=tap "${files[@]}" 2>&1 | tee "$out/e2e.tap"
  rc=${PIPESTATUS[0]}
  line=$(grep -E '^# \{ total: [0-9]+' "$out/e2e.tap" | tail -1)
  if [ -z "$line" ]; then
    problems+=("no tap summary (tap exited $rc)"); failed=$((failed + 1))
  else
    p=$(sed -nE 's/.*pass: ([0-9]+).*/\1/p' <<<"$line"); f=$(sed -nE 's/.*fail: ([0-9]+).*/\1/p' <<<"$line")
    passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
    [ "${p:-0}" -gt 0 ] || { problems+=("ran no test"); failed=$((failed + 1)); }
    [ "$rc" -eq 0 ] || [ "${f:-0}" -gt 0 ] || { problems+=("tap exited $rc"); failed=$((failed + 1)); }
  fi
  echo
  echo "=== e2e node status after the tests"
  node_cli status || { problems+=("a node process died during the tests"); failed=$((failed + 1)); }
else
  problems+=("the e2e node did not start (logs: $CSI_E2E_KEEP_LOGS)"); failed=$((failed + 1))
fi

echo
echo "=== teardown: nothing may be left behind"
if node_cli down; then passed=$((passed + 1)); else problems+=("teardown left things behind"); failed=$((failed + 1)); fi
trap - EXIT

echo
if [ -s "$CSI_E2E_RESULTS" ]; then echo "=== results"; cat "$CSI_E2E_RESULTS"; fi
for pr in "${problems[@]}"; do echo "problem: $pr"; done
# Logs and tap output stay for a failed run, or when asked for.
if [ "$failed" -ne 0 ]; then echo "logs: $CSI_E2E_KEEP_LOGS and $out"
elif [ -z "$user_logs" ]; then rm -rf "$out"; fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

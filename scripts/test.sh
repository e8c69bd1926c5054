#!/usr/bin/env bash
# Runs every test tier: typecheck, lint, unit (Node 20 and 24), integration
# (against a real local control plane started here and stopped at the end),
# CSI conformance (csi-sanity), the fault tier's short form and the kubelet
# end-to-end tier.
# Ends with one line "N passed, N failed"; exits non-zero on any failure or
# when a tier ran nothing.
#
# With CI set (as .ci/run has it) or CSI_FIRST_RUN=1, the run takes a
# newcomer's first-run path: a tools cache of its own that starts empty (so
# every tool, the Node 24 binary and the CRDs are made inside the run), and
# the kubelet tier's host packages removed first so its installer runs. Go's
# build and module caches stay: they only save time.
set -uo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
first_run=false
if [ -n "${CI:-}" ] || [ "${CSI_FIRST_RUN:-}" = 1 ]; then first_run=true; fi
if $first_run && [ -z "${CSI_TOOLS_CACHE:-}" ]; then
  export CSI_TOOLS_CACHE="$out/tools-cache"
fi
$first_run && export CSI_FIRST_RUN=1
# This run's own control plane: never one a developer has running by hand.
export CSI_CLUSTER_DIR="$out/cluster"
trap 'node --import tsx test/cluster/cli.ts down >/dev/null 2>&1; rm -rf "$out"' EXIT
passed=0; failed=0; problems=(); timings=()
run_started=$SECONDS
tier_started=$SECONDS; tier_name=""

# Adds "pass fail" read from a tap run's closing summary, e.g.
# "# { total: 12, pass: 11, fail: 1, skip: 0 }" (fail is left out at 0).
count_tap() {
  local tier=$1 log=$2 rc=$3 line p f
  line=$(grep -E '^# \{ total: [0-9]+' "$log" | tail -1)
  if [ -z "$line" ]; then
    problems+=("$tier: no tap summary (exit $rc)"); failed=$((failed + 1)); return
  fi
  p=$(sed -nE 's/.*pass: ([0-9]+).*/\1/p' <<<"$line"); f=$(sed -nE 's/.*fail: ([0-9]+).*/\1/p' <<<"$line")
  p=${p:-0}; f=${f:-0}
  passed=$((passed + p)); failed=$((failed + f))
  if [ "$p" -eq 0 ]; then problems+=("$tier: ran no test"); failed=$((failed + 1)); fi
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then problems+=("$tier: tap exited $rc"); failed=$((failed + 1)); fi
  echo "== $tier: $p passed, $f failed"
}

# Each step's wall time, for the table at the end (test/README.md keeps it).
step() {
  [ -n "$tier_name" ] && timings+=("$(printf '%-28s %5ds' "$tier_name" $((SECONDS - tier_started)))")
  tier_name=${2:-}; tier_started=$SECONDS
  [ -n "$1" ] && { echo; echo "=== $1"; }
}

if $first_run; then echo "first-run path: tools cache $CSI_TOOLS_CACHE starts empty"; fi
step "test tools (kube-apiserver, etcd, kubectl, helm, cert-manager controllers, csi-sanity, kubelet)" "tools build"
# First: the unit tier renders manifests with the kubectl and helm built here.
tools_ok=true
if bin=$(bash test/tools/build.sh | tail -1); then
  export CSI_TOOLS_BIN=$bin
else
  tools_ok=false; problems+=("building the test tools failed"); failed=$((failed + 1))
fi

step "typecheck" typecheck
if npx tsc -p tsconfig.json --noEmit; then passed=$((passed + 1)); else failed=$((failed + 1)); problems+=("typecheck failed"); fi

step "lint (typescript-eslint, type-aware)" lint
if npx eslint --max-warnings 0 .; then passed=$((passed + 1)); else failed=$((failed + 1)); problems+=("lint failed"); fi

step "unit tier" "unit (node 20)"
npx tap run test/unit 2>&1 | tee "$out/unit.tap"; count_tap unit "$out/unit.tap" "${PIPESTATUS[0]}"

step "unit tier on Node 24 (the production image's Node major)" "unit (node 24, with install)"
# The npm registry's "node" package ships the binary: no download site needed.
node24_dir=${CSI_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cert-manager-csi-driver}/node24
if [ ! -x "$node24_dir/node_modules/.bin/node" ]; then
  mkdir -p "$node24_dir" && (cd "$node24_dir" && npm install --no-save --no-audit --no-fund --loglevel=error node@24 >/dev/null)
fi
if node24=$("$node24_dir/node_modules/.bin/node" --version 2>/dev/null) && [[ $node24 == v24.* ]]; then
  echo "using $node24"
  "$node24_dir/node_modules/.bin/node" node_modules/.bin/tap run test/unit 2>&1 | tee "$out/unit24.tap"; count_tap "unit (node $node24)" "$out/unit24.tap" "${PIPESTATUS[0]}"
else
  problems+=("could not install Node 24 from the npm registry"); failed=$((failed + 1))
fi

if $tools_ok; then
  step "local control plane" "control plane up"
  if node --import tsx test/cluster/cli.ts up; then
    step "integration tier" integration
    npx tap run test/integration 2>&1 | tee "$out/integration.tap"; count_tap integration "$out/integration.tap" "${PIPESTATUS[0]}"
    step "control plane after the integration tier" "control plane down"
    node --import tsx test/cluster/cli.ts status || { problems+=("a control plane process died during the tests"); failed=$((failed + 1)); }
  else
    problems+=("the local control plane did not start"); failed=$((failed + 1))
  fi
  node --import tsx test/cluster/cli.ts down

  if [ -f test/sanity/run.sh ]; then
    step "CSI conformance (csi-sanity)" csi-sanity
    bash test/sanity/run.sh 2>&1 | tee "$out/sanity.log"; rc=${PIPESTATUS[0]}
    line=$(grep -E '^Ran [0-9]+ of [0-9]+ Specs' "$out/sanity.log" | tail -1)
    summary=$(grep -E '[0-9]+ Passed \| [0-9]+ Failed' "$out/sanity.log" | tail -1)
    p=$(sed -nE 's/.* ([0-9]+) Passed.*/\1/p' <<<"$summary"); f=$(sed -nE 's/.*\| ([0-9]+) Failed.*/\1/p' <<<"$summary")
    if [ -z "$p" ]; then problems+=("csi-sanity: no result line (exit $rc)"); failed=$((failed + 1))
    else
      passed=$((passed + p)); failed=$((failed + ${f:-0}))
      [ "$p" -gt 0 ] || { problems+=("csi-sanity ran no spec"); failed=$((failed + 1)); }
      [ "$rc" -eq 0 ] || [ "${f:-0}" -gt 0 ] || { problems+=("csi-sanity exited $rc"); failed=$((failed + 1)); }
      echo "== csi-sanity: $line"
    fi
  fi

  step "fault tier, short form (driver killed, apiserver stopped, watch gaps, cert-manager and etcd down, CRDs re-applied, full tmpfs)" "faults (short form)"
  # Each case brings its own control plane; the seed is printed, and replays a failure.
  bash test/faults/run.sh 2>&1 | tee "$out/faults.log"; count_tap faults "$out/faults.log" "${PIPESTATUS[0]}"

  step "kubelet end-to-end tier (real kubelet, containerd, runc; needs root)" "kubelet tier"
  bash test/e2e/run.sh 2>&1 | tee "$out/e2e.log"; rc=${PIPESTATUS[0]}
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$out/e2e.log" | tail -1)
  if [ -z "$line" ]; then problems+=("e2e: no result line (exit $rc)"); failed=$((failed + 1))
  else
    p=${line%% passed*}; f=${line#*, }; f=${f%% failed*}
    passed=$((passed + p)); failed=$((failed + f))
    [ "$p" -gt 0 ] || { problems+=("e2e ran no test"); failed=$((failed + 1)); }
    [ "$rc" -eq 0 ] || [ "$f" -gt 0 ] || { problems+=("e2e exited $rc"); failed=$((failed + 1)); }
    echo "== e2e: $line"
  fi
fi

step ""
echo
echo "=== time per tier ($($first_run && echo first-run path || echo warm tools cache))"
for l in "${timings[@]}"; do echo "  $l"; done
printf '  %-28s %5ds\n' total $((SECONDS - run_started))
echo
for p in "${problems[@]}"; do echo "problem: $p"; done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

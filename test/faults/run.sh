#!/usr/bin/env bash
# The fault tier: npm run test:faults [-- --long] [--seed N] [--case NAME]...
#
#   --long        the full figures (R1 200 issuances and 20+ kills, 60 s
#                 outages, 50 volumes, the 30-minute soak); default: the
#                 short form (about 5-8 minutes on 2 cores)
#   --seed N      replay a run: the seed it printed (also CSI_FAULT_SEED)
#   --case NAME   run only this case (a file name in test/faults without
#                 .test.ts, e.g. kill-storm); repeatable
#
# Each case starts its own control plane (it stops and kills its
# processes), never the shared one of CSI_CLUSTER_DIR. Output: tap, with
# tap's "# { total: N, pass: N, fail: N }" summary, then one table of
# figures, then the seed again. Logs of drivers and control planes are
# kept in the folder printed at the start.
set -uo pipefail
self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
cd "$(dirname "$0")/../.."

long=0; seed=${CSI_FAULT_SEED:-}; cases=()
while [ $# -gt 0 ]; do
  case $1 in
    --long) long=1 ;;
    --seed) seed=${2:?--seed needs a value}; shift ;;
    --seed=*) seed=${1#*=} ;;
    --case) cases+=("${2:?--case needs a value}"); shift ;;
    --case=*) cases+=("${1#*=}") ;;
    -h|--help) sed -n '2,15p' "$self" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "test:faults: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ -n "$seed" ] && ! { [[ $seed =~ ^[0-9]+$ ]] && [ "$seed" -lt 4294967296 ]; }; then
  echo "test:faults: --seed must be an integer from 0 to 4294967295" >&2; exit 2
fi
if [ -z "$seed" ]; then seed=$(( (RANDOM << 17 ^ RANDOM << 2 ^ RANDOM) & 0xffffffff )); fi
form=$([ "$long" = 1 ] && echo long || echo short)

out=${CSI_FAULT_OUT:-$(mktemp -d /tmp/csi-faults-XXXXXX)}
mkdir -p "$out/figures"
echo "fault tier: seed $seed, $form form; logs and figures in $out"
echo "replay:     npm run test:faults --$([ "$long" = 1 ] && echo ' --long') --seed $seed"

if [ -z "${CSI_TOOLS_BIN:-}" ]; then
  CSI_TOOLS_BIN=$(bash test/tools/build.sh | tail -1) || { echo "test:faults: building the test tools failed" >&2; exit 1; }
fi

files=()
if [ ${#cases[@]} -gt 0 ]; then
  for c in "${cases[@]}"; do
    f=test/faults/${c%.test.ts}.test.ts
    [ -f "$f" ] || { echo "test:faults: no case $c ($f)" >&2; exit 2; }
    files+=("$f")
  done
else
  # Longest first, so two at a time finish together; then any case not named here.
  order=(apiserver-outage watch-gap kill-storm tmpfs-full crds-reapplied cert-manager-down etcd-restart soak)
  for c in "${order[@]}"; do [ -f "test/faults/$c.test.ts" ] && files+=("test/faults/$c.test.ts"); done
  for f in test/faults/*.test.ts; do [[ " ${files[*]} " == *" $f "* ]] || files+=("$f"); done
  # The soak runs for half an hour: long form only (or asked for by name).
  if [ "$long" != 1 ]; then
    kept=(); for f in "${files[@]}"; do [[ $f == */soak.test.ts ]] || kept+=("$f"); done; files=("${kept[@]}")
  fi
fi

# Cases mostly wait (for an outage to last, a certificate to fall due), and
# each has its own control plane and node: the short form runs two at once
# to stay within minutes. The long form runs one at a time, so its figures
# (latencies, calls per minute) are not shared with another case's load.
jobs=${CSI_FAULT_JOBS:-$([ "$long" = 1 ] && echo 1 || echo 2)}
timeout=$([ "$long" = 1 ] && echo 5400 || echo 900)
start=$(date +%s)
CSI_FAULT_SEED=$seed CSI_FAULT_LONG=$long CSI_FAULT_OUT=$out CSI_TOOLS_BIN=$CSI_TOOLS_BIN \
  npx tap run --jobs="$jobs" --timeout="$timeout" "${files[@]}" 2>&1 | tee "$out/faults.tap"
rc=${PIPESTATUS[0]}

node --import tsx test/faults/table.ts "$out/figures" | tee "$out/table.txt"
echo
echo "fault tier: $form form took $(( $(date +%s) - start ))s; seed $seed; logs in $out"
echo "replay:     npm run test:faults --$([ "$long" = 1 ] && echo ' --long') --seed $seed"
exit "$rc"

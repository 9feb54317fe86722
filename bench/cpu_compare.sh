#!/usr/bin/env bash
# The CPU comparison of issue 3: ebm_bench --backend cpu against the same step in PyTorch on the CPU
# (Debian's python3-torch 1.13, 2 threads), alternating, several rounds, medians and ratios.
#   bench/cpu_compare.sh [BUILD_DIR] [ROUNDS] [BASE_BUILD_DIR]
# BUILD_DIR (default: the repository's build/) and BASE_BUILD_DIR are taken from the current directory. With
# BASE_BUILD_DIR (another commit's build, e.g. from `git worktree add`), each round also runs its ebm_bench, and its
# columns show what the change did under the same conditions (a shared host's speed drifts between runs). A round
# takes a minute or more (PyTorch's 5 training steps are most of it).
set -euo pipefail
for a in "$@"; do
  [ -n "$a" ] || { echo "cpu_compare: an empty argument (usage: cpu_compare.sh [BUILD_DIR] [ROUNDS] [BASE_BUILD_DIR])" >&2; exit 2; }
done
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(realpath -m "${1:-$root/build}") rounds=${2:-3} base=${3:+$(realpath -m "$3")}
for b in "$build" ${base:+"$base"}; do
  [ -x "$b/ebm_bench" ] || { echo "cpu_compare: $b/ebm_bench not found (build it: ninja -C $b ebm_bench)" >&2; exit 2; }
done
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "cpu_compare: ROUNDS must be a positive integer, got '$rounds'" >&2; exit 2; }
cd "$root"
py=/usr/bin/python3
if ! $py -c 'import torch' 2>/dev/null; then
  echo "cpu_compare: needs PyTorch for $py (apt-get install python3-torch)" >&2
  exit 1
fi
threads=$(nproc)
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for r in $(seq "$rounds"); do
  OMP_NUM_THREADS=$threads "$build/ebm_bench" --backend cpu --iters 5 --warmup 2 | sed 's/^/ebm /' >> "$out"
  if [ -n "$base" ]; then
    OMP_NUM_THREADS=$threads "$base/ebm_bench" --backend cpu --iters 5 --warmup 2 | sed 's/^/base /' >> "$out"
  fi
  $py bench/torch_step.py --device cpu --threads "$threads" --iters 5 --warmup 1 | sed 's/^/torch /' >> "$out"
done
$py - "$out" <<'PY'
import json, statistics, sys
rows = {"ebm": [], "torch": [], "base": []}
for line in open(sys.argv[1]):
    who, js = line.split(" ", 1)
    rows[who].append(json.loads(js))
keys = ("ms_per_train_step", "ms_per_langevin_step")
def med(rs, k):
    v = [r[k] for r in rs if r[k] is not None]
    return statistics.median(v) if v else float("nan")
med = {w: {k: med(rs, k) for k in keys} for w, rs in rows.items() if rs}
print(f"{'':22s}{'ebm (cpu)':>12s}{'torch (cpu)':>14s}{'ratio':>8s}" + (f"{'base ebm':>12s}{'ratio':>8s}" if "base" in med else ""))
for k in ("ms_per_langevin_step", "ms_per_train_step"):
    line = f"{k:22s}{med['ebm'][k]:12.2f}{med['torch'][k]:14.2f}{med['torch'][k] / med['ebm'][k]:8.2f}x"
    if "base" in med:
        line += f"{med['base'][k]:12.2f}{med['torch'][k] / med['base'][k]:8.2f}x"
    print(line)
summary = {"ebm": med["ebm"], "torch": med["torch"], "backend": rows["ebm"][0]["backend"],
           "torch_backend": rows["torch"][0]["backend"], "rounds": len(rows["ebm"])}
if "base" in med:
    summary["base"] = med["base"]
print(json.dumps(summary))
PY

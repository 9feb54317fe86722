#!/usr/bin/env bash
# The CPU comparison of issue 3: ebm_bench --backend cpu against the same step in PyTorch on the CPU
# (Debian's python3-torch 1.13, 2 threads), alternating, several rounds, medians and ratios.
#   bench/cpu_compare.sh [BUILD_DIR] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build} rounds=${2:-3}
py=/usr/bin/python3
if ! $py -c 'import torch' 2>/dev/null; then
  echo "cpu_compare: needs PyTorch for $py (apt-get install python3-torch)" >&2
  exit 1
fi
threads=$(nproc)
out=$(mktemp)
for r in $(seq "$rounds"); do
  OMP_NUM_THREADS=$threads "$build/ebm_bench" --backend cpu --iters 5 --warmup 1 | sed 's/^/ebm /' >> "$out"
  $py bench/torch_step.py --device cpu --threads "$threads" --iters 5 --warmup 1 | sed 's/^/torch /' >> "$out"
done
$py - "$out" <<'PY'
import json, statistics, sys
rows = {"ebm": [], "torch": []}
for line in open(sys.argv[1]):
    who, js = line.split(" ", 1)
    rows[who].append(json.loads(js))
med = {w: {k: statistics.median(r[k] for r in rs) for k in ("ms_per_train_step", "ms_per_langevin_step")}
       for w, rs in rows.items()}
print(f"{'':22s}{'ebm (cpu)':>12s}{'torch (cpu)':>14s}{'ratio':>8s}")
for k in ("ms_per_langevin_step", "ms_per_train_step"):
    print(f"{k:22s}{med['ebm'][k]:12.2f}{med['torch'][k]:14.2f}{med['torch'][k] / med['ebm'][k]:8.2f}x")
print(json.dumps({"ebm": med["ebm"], "torch": med["torch"], "backend": rows["ebm"][0]["backend"],
                  "torch_backend": rows["torch"][0]["backend"], "rounds": len(rows["ebm"])}))
PY
rm -f "$out"

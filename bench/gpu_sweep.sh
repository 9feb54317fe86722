#!/usr/bin/env bash
# The Langevin chain's kernel sweep on a lent GPU (issue 20 §5): one command of at most 6 minutes that builds
# bench/gpu_sweep.cu with nvcc alone, records every kernel's resources, checks and times every variant beside the
# machine's ceilings, runs compute-sanitizer on the staged (ring) variants and profiles the baseline and the fastest
# FP32 and TF32 variants with ncu. Nothing to carry:
#   run(command="EBM_COMMIT=<git rev-parse --short HEAD, spelled out> bash bench/gpu_sweep.sh", timeout_s=420)
# Run it before bench/device_check.sh in a GPU window: it answers which kernel the engine should default to.
#
#   bench/gpu_sweep.sh [BUILD_DIR]       BUILD_DIR defaults to build-sweep (git-ignored)
#
# Parts (deadline EBM_SWEEP_BUDGET_S, default 360 s; each part is skipped once too little is left, and what ran is kept):
#   build      nvcc -O3 -arch=sm_90 -lineinfo, -Xptxas -v: every kernel's registers, stack and spills, demangled, in
#              ptxas.txt; a spill fails the part (the kernels are built to have none)
#   sass       cuobjdump -sass -res-usage of the binary → sass.txt.gz (the CPU machines have no disassembler)
#   sweep      ./gpu_sweep --out $OUT: ceilings, check, timing (its deadline leaves room for the parts below)
#   sanitizer  compute-sanitizer racecheck and synccheck, 2 images × 2 steps, on the ring variants (resident512,
#              resident512_tf32) → sanitizer.log; a reported hazard or error fails the part
#   ncu        5-step launches over 128 images of the baseline (generic256) and the fastest FP32 and TF32 variants that
#              passed → ncu.tar.gz (details and raw CSV pages: SIMT efficiency, stall reasons, bank conflicts, sectors
#              per request, pipe use)
# $OUT (at most 8 files): summary.txt (each part's status, then the sweep's table), sweep.json, ptxas.txt,
# sass.txt.gz, sanitizer.log, ncu.tar.gz, gpu_sweep.log (every part's output), and on a GPU
# result-<date>-<gpu>-<commit>-sweep.json (sweep.json with the versions and the commit: commit it under bench/results/).
#
# EBM_DRY_RUN=1 (scripts/device_dry_run.sh, CI): no GPU here — build and the ptxas check run, the sweep runs to its
# "no CUDA device" stop (its host reference included), sass/sanitizer/ncu say "stopped: no GPU here".
# Exit status: 0 every part passed; 1 a part failed; 2 the build failed; 3 a dry run without a GPU that passed.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$(realpath -m "${1:-$root/build-sweep}")
out=${OUT:-$build/out}
mkdir -p "$build" "$out"
log=$out/gpu_sweep.log
: > "$log"
budget=${EBM_SWEEP_BUDGET_S:-360}
dry_run=${EBM_DRY_RUN:-0}
deadline=$((SECONDS + budget))
export PATH=/usr/local/cuda/bin:$PATH
parts=()
gpu=0  # set after the build: whether nvidia-smi lists a GPU
failed=0
cd "$root" || exit 2

say() { echo "$*" | tee -a "$log"; }
part() { parts+=("$(printf '%-10s %5s s  %s' "$1" "$2" "$3")"); say "   $1: $3 (${2} s)"; }
left() { echo $((deadline - SECONDS)); }

finish() {
  local status=$1
  if ((gpu)) && [[ -f $out/sweep.json ]]; then  # the run's record for bench/results/
    python3 - "$out" "${EBM_COMMIT:-$(git -C "$root" rev-parse --short HEAD 2> /dev/null || echo unknown)}" \
      "$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2> /dev/null | head -n 1)" \
      "$(nvcc --version 2> /dev/null | grep -o 'release [0-9.]*' | cut -d' ' -f2)" << 'PY' >> "$log" 2>&1
import datetime, json, re, sys
out, commit, driver, nvcc = sys.argv[1:5]
s = json.load(open(f"{out}/sweep.json"))
date = datetime.date.today().isoformat()
slug = re.sub(r"[^a-z0-9]+", "-", s.get("gpu", "gpu").lower().replace("nvidia", "")).strip("-") or "gpu"
r = {"date": date, "commit": commit, "script": "bench/gpu_sweep.sh", "gpu": s.get("gpu"), "driver": driver,
     "cuda_nvcc": nvcc, "sweep": s}
open(f"{out}/result-{date}-{slug}-{commit}-sweep.json", "w").write(json.dumps(r, indent=2) + "\n")
PY
  fi
  {
    echo "gpu_sweep.sh: $(date -u +%FT%TZ), $(git -C "$root" rev-parse --short HEAD 2> /dev/null || echo '?'), budget ${budget} s, ${SECONDS} s used"
    nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader 2> /dev/null | sed 's/^/gpu: /'
    printf '%s\n' "${parts[@]}"
    echo
    [[ -f $out/sweep.txt ]] && cat "$out/sweep.txt"
  } > "$out/summary.txt"
  rm -f "$out/sweep.txt"  # it is in summary.txt
  cat "$out/summary.txt"
  exit "$status"
}

# --- build ---
say "== build (nvcc alone)"
t0=$SECONDS
flags=(-std=c++20 -O3 -arch=sm_90 -lineinfo --expt-relaxed-constexpr -Xcudafe --max_cost_constexpr_call=100000000
       -Xcompiler=-fconstexpr-ops-limit=2000000000 -I"$root")
if ! nvcc "${flags[@]}" -Xptxas -v bench/gpu_sweep.cu -o "$build/gpu_sweep" > "$build/ptxas.raw" 2>&1; then
  cat "$build/ptxas.raw" >> "$log"
  part build $((SECONDS - t0)) "FAILED (nvcc)"
  finish 2
fi
# One line a kernel: name, registers, stack, spills (demangled where c++filt is found).
demangle() { if command -v c++filt > /dev/null; then c++filt; else cat; fi; }
grep -E "Compiling entry function|bytes stack frame|Used [0-9]+ registers" "$build/ptxas.raw" |
  sed -E "s/.*Compiling entry function '([^']+)'.*/\1/" | demangle |
  sed -E 's/\(anonymous namespace\):://g; s/ebm:://g; s/ptxas info *: //g' | paste - - - > "$out/ptxas.txt"
spills=$(grep -cE '[1-9][0-9]* bytes spill (stores|loads)' "$out/ptxas.txt")
cat "$out/ptxas.txt" >> "$log"
if ((spills > 0)); then
  part build $((SECONDS - t0)) "FAILED ($spills kernels spill; ptxas.txt)"
  failed=1
else
  part build $((SECONDS - t0)) "ok, $(wc -l < "$out/ptxas.txt") kernels, no spills"
fi

gpu=1
nvidia-smi -L > /dev/null 2>&1 || gpu=0

# --- sass ---
if ((gpu)) && command -v cuobjdump > /dev/null; then
  t0=$SECONDS
  cuobjdump -sass -res-usage "$build/gpu_sweep" 2>&1 | demangle | gzip > "$out/sass.txt.gz"
  part sass $((SECONDS - t0)) "ok ($(zcat "$out/sass.txt.gz" | wc -l) lines)"
else
  part sass 0 "stopped: no GPU here"
fi

# --- sweep ---
t0=$SECONDS
reserve=$(((gpu) ? 120 : 0))  # the sanitizer's and ncu's share of the budget
sweep_deadline=$(($(left) - reserve))
((sweep_deadline < 30)) && sweep_deadline=30
say "== sweep (deadline ${sweep_deadline} s)"
"$build/gpu_sweep" --out "$out" --deadline-s "$sweep_deadline" 2>&1 | tee -a "$log"
rc=${PIPESTATUS[0]}
if ((rc == 3)); then
  part sweep $((SECONDS - t0)) "stopped: no GPU here (host reference ok)"
elif ((rc == 0)); then
  part sweep $((SECONDS - t0)) "ok"
else
  part sweep $((SECONDS - t0)) "FAILED (exit $rc: a variant disagreed with the host reference)"
  failed=1
fi
if ((!gpu)); then
  part sanitizer 0 "stopped: no GPU here"
  part ncu 0 "stopped: no GPU here"
  if ((dry_run && !failed && rc == 3)); then finish 3; fi
  finish 1
fi

# --- sanitizer ---
t0=$SECONDS
: > "$out/sanitizer.log"
san_ok=1
for v in resident512 resident512_tf32; do
  for tool in racecheck synccheck; do
    if (($(left) < 40)); then
      echo "$tool $v: skipped, out of time" >> "$out/sanitizer.log"
      continue
    fi
    echo "== compute-sanitizer --tool $tool, $v" >> "$out/sanitizer.log"
    timeout 60 compute-sanitizer --tool "$tool" --error-exitcode 9 "$build/gpu_sweep" --only "$v" --profile 2 \
      --images 2 >> "$out/sanitizer.log" 2>&1 || san_ok=0
  done
done
cat "$out/sanitizer.log" >> "$log"
if ((san_ok)); then part sanitizer $((SECONDS - t0)) "ok"; else part sanitizer $((SECONDS - t0)) "FAILED (sanitizer.log)"; failed=1; fi

# --- ncu: the baseline and the fastest FP32 and TF32 variants that passed ---
t0=$SECONDS
picks=$(python3 - "$out/sweep.json" << 'PY'
import json, sys
try:
    v = [r for r in json.load(open(sys.argv[1]))["variants"] if r["check"] == "ok" and r["us_per_langevin_step_median"] > 0]
except Exception:
    v = []
fast = lambda rows: min(rows, key=lambda r: r["us_per_langevin_step_median"])["name"] if rows else ""
names = ["generic256", fast([r for r in v if "tf32" not in r["name"] and r["name"] != "generic256"]),
         fast([r for r in v if "tf32" in r["name"]])]
print(" ".join(n for n in dict.fromkeys(names) if n))
PY
)
mkdir -p "$build/ncu"
rm -f "$build"/ncu/*
for v in $picks; do
  if (($(left) < 30)); then
    say "ncu $v: skipped, out of time"
    continue
  fi
  timeout $(($(left) - 10)) ncu --set full --import-source yes --clock-control none --launch-count 1 \
    -k regex:'tiled_kernel|generic_kernel' -o "$build/ncu/$v" -f "$build/gpu_sweep" --only "$v" --profile 5 \
    >> "$log" 2>&1 || say "ncu $v: exit $?"
  if [[ -f $build/ncu/$v.ncu-rep ]]; then
    ncu -i "$build/ncu/$v.ncu-rep" --page details --csv > "$build/ncu/$v.details.csv" 2>> "$log"
    ncu -i "$build/ncu/$v.ncu-rep" --page raw --csv > "$build/ncu/$v.raw.csv" 2>> "$log"
    ncu -i "$build/ncu/$v.ncu-rep" --page source --csv --print-source sass > "$build/ncu/$v.source.csv" 2>> "$log" || true
  fi
done
if compgen -G "$build/ncu/*.csv" > /dev/null; then
  tar -C "$build/ncu" -czf "$out/ncu.tar.gz" $(cd "$build/ncu" && ls *.csv)
  part ncu $((SECONDS - t0)) "ok: $picks"
else
  part ncu $((SECONDS - t0)) "no profiles (gpu_sweep.log)"
fi
finish $failed

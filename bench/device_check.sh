#!/usr/bin/env bash
# The device check: build, test and time the engine on a lent GPU machine in one run of under 8 minutes.
#
#   bench/device_check.sh [BUILD_DIR]        BUILD_DIR defaults to build-device (git-ignored)
#
# Parts, each with its own timeout; one that fails or times out is reported and the rest still run:
#   env        GPU, driver, nvcc, cmake, torch, where cuDNN comes from
#   configure  Release, -DEBM_CUDA_ARCHITECTURES=90 (CUDA backend required: the run stops without it)
#   build      ebm_tests, ebm_bench, ebm_train with all cores
#   tests      CudaParity.* (GPU vs CPU), then every other test
#   bench      ebm_bench --backend cuda and --backend cpu; bench/torch_step.py eager and torch.compile
#   epoch      one epoch of configs/mnist.json on the GPU, if data/mnist is there
# and prints a table of the timings and the parts. Output goes to $OUT when set (the device tool brings it
# back): device_check.log (every part's output), summary.txt, bench.jsonl, metrics.jsonl.
#
# The GPU machine has no registry and few -dev packages: carry copies of nlohmann/ and googletest/ in
# third_party/ (cmake/Dependencies.cmake falls back to them) and, for the epoch, data/mnist made here by
# scripts/get_data.sh mnist. With the device tool:
#   run(command="bash bench/device_check.sh", carry=["third_party", "data/mnist"], timeout_s=560)
# EBM_CHECK_BUDGET_S (default 470) is the script's own deadline; parts that would start after it are skipped.
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$root/build-device}
out=${OUT:-$build/device_check}
mkdir -p "$build" "$out"
log=$out/device_check.log
bench_jsonl=$out/bench.jsonl
: > "$log"
: > "$bench_jsonl"
deadline=$((SECONDS + ${EBM_CHECK_BUDGET_S:-470}))
parts=()  # "name|status|seconds"
cd "$root" || exit 1

# run_part NAME LIMIT_S CMD...: CMD's output to $build/NAME.out and the log, within LIMIT_S and the deadline.
run_part() {
  local name=$1 limit=$2
  shift 2
  local left=$((deadline - SECONDS))
  if ((left < 20)); then
    parts+=("$name|skipped: out of time|0")
    echo "== $name: skipped, out of time" | tee -a "$log"
    return 1
  fi
  ((limit > left)) && limit=$left
  echo "== $name (limit ${limit}s): $*" | tee -a "$log"
  local t0=$SECONDS rc status
  timeout --kill-after=10 "$limit" "$@" > "$build/$name.out" 2>&1
  rc=$?
  cat "$build/$name.out" >> "$log"
  if ((rc == 0)); then status=ok
  elif ((rc == 124 || rc == 137)); then status="TIMEOUT after ${limit}s"
  else status="FAILED (exit $rc)"; fi
  parts+=("$name|$status|$((SECONDS - t0))")
  echo "   $status in $((SECONDS - t0)) s" | tee -a "$log"
  return $rc
}

# The last JSON line of a part's output, tagged, into bench.jsonl.
keep_json() {
  local line
  line=$(grep '^{' "$build/$1.out" 2>/dev/null | tail -n 1)
  [[ -n $line ]] && echo "{\"part\": \"$1\", \"result\": $line}" >> "$bench_jsonl"
}

# --- env ---
env_report() {
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true
  nvcc --version | tail -n 2
  cmake --version | head -n 1
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())' || true
  echo "nproc $(nproc)"
  echo "cuDNN: ${cudnn_dir:-from the CUDA toolkit}"
  for d in third_party/nlohmann third_party/googletest data/mnist; do
    [[ -e $d ]] && echo "carried: $d" || echo "missing: $d"
  done
}
export PATH=/usr/local/cuda/bin:$PATH
cudnn_dir=$(python3 -c 'import nvidia.cudnn, os; print(os.path.dirname(nvidia.cudnn.__file__))' 2>/dev/null || true)
if [[ -n $cudnn_dir && ! -e /usr/local/cuda/include/cudnn.h ]]; then
  export CUDNN_PATH=$cudnn_dir  # cmake/Dependencies.cmake looks here; the loader needs its lib/ too
  export LD_LIBRARY_PATH=$cudnn_dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
else
  cudnn_dir=""
fi
if ! command -v ninja > /dev/null; then
  ninja_bin=$(python3 -c 'import ninja; print(ninja.BIN_DIR)' 2>/dev/null || true)
  [[ -n $ninja_bin ]] && export PATH=$ninja_bin:$PATH
fi
echo "== env" | tee -a "$log"
env_report 2>&1 | tee -a "$log"
parts+=("env|ok|0")

# --- configure and build ---
generator=()
command -v ninja > /dev/null && generator=(-G Ninja)
cmake_args=(-S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DEBM_CUDA_ARCHITECTURES=90
            -DEBM_ENABLE_CUDA=ON)
# CMake before 3.26 knows no CUDA20 dialect flag for nvcc; name it (newer versions set their own).
cmake_minor=$(cmake --version | head -n 1 | sed -E 's/.* ([0-9]+)\.([0-9]+).*/\1 \2/')
read -r cmv cmm <<< "$cmake_minor"
if ((cmv == 3 && cmm < 26)); then
  cmake_args+=(-DCMAKE_CUDA20_STANDARD_COMPILE_OPTION=-std=c++20 -DCMAKE_CUDA20_EXTENSION_COMPILE_OPTION=-std=c++20)
fi
run_part configure 120 cmake "${cmake_args[@]}"
if ! grep -q '✓ cuda' "$build/configure.out" 2>/dev/null; then
  echo "!! the CUDA backend was not configured (see the configure part above); stopping" | tee -a "$log"
  exit 1
fi
targets=(ebm_tests ebm_bench)
[[ -e host/tools/ebm_train.cpp ]] && targets+=(ebm_train)
run_part build 300 cmake --build "$build" -j "$(nproc)" --target "${targets[@]}" || {
  echo "!! build failed; stopping" | tee -a "$log"
  exit 1
}

# --- tests ---
# One process per test: a device fault poisons the context, and must not hide which test caused it.
run_part tests_cuda 150 ctest --test-dir "$build" -R '^CudaParity\.' --output-on-failure --timeout 60
grep -E 'tests passed|tests failed|Skipped|Failed|Passed' "$build/tests_cuda.out"
if grep -q -E 'Skipped|no CUDA device' "$build/tests_cuda.out"; then  # on the GPU machine a skip is a failure
  echo "!! CudaParity skipped: $(grep -m1 -E 'Skipped|no CUDA device' "$build/tests_cuda.out")" | tee -a "$log"
  parts+=("tests_cuda|SKIPPED: no device seen|0")
fi
run_part tests_rest 150 "$build/ebm_tests" --gtest_filter='-CudaParity*' --gtest_brief=1

# --- timings ---
run_part bench_cuda 90 "$build/ebm_bench" --backend cuda --iters 20 --warmup 3 && keep_json bench_cuda
run_part torch_eager 90 python3 bench/torch_step.py --device cuda --iters 10 --warmup 3 && keep_json torch_eager
run_part torch_compile 200 python3 bench/torch_step.py --device cuda --iters 10 --warmup 3 --compile && keep_json torch_compile
run_part bench_cpu 100 "$build/ebm_bench" --backend cpu --iters 3 --warmup 1 && keep_json bench_cpu

# --- one epoch of the seed's run ---
if [[ -e data/mnist/train-images-idx3-ubyte.gz && -x $build/ebm_train ]]; then
  rm -rf "$build/run_mnist"
  run_part epoch 120 "$build/ebm_train" configs/mnist.json --backend cuda --set train.epochs=1 \
    --set output_dir="$build/run_mnist"
  [[ -e $build/run_mnist/metrics.jsonl ]] && cp "$build/run_mnist/metrics.jsonl" "$out/metrics.jsonl"
else
  why="no data/mnist (run scripts/get_data.sh mnist where there is internet, carry data/mnist)"
  [[ -x $build/ebm_train ]] || why="no ebm_train built"
  parts+=("epoch|skipped: $why|0")
fi

# --- summary ---
python3 - "$bench_jsonl" "$out/summary.txt" "$(printf '%s\n' "${parts[@]}")" "$(head -n 1 data/mnist/SOURCE 2>/dev/null)" \
  "${out}/metrics.jsonl" <<'PY'
import json, sys
bench, summary, parts, data_source, metrics = sys.argv[1:6]
rows = [json.loads(l) for l in open(bench) if l.strip()]
lines = ["timings (median; batch 128, 100 Langevin steps per train step):",
         f"{'part':<14} {'ms/train step':>14} {'ms/Langevin step':>17} {'epoch s (469 steps)':>20}  backend"]
by = {r["part"]: r["result"] for r in rows}
for part, r in by.items():
    lines.append(f"{part:<14} {r['ms_per_train_step']:>14.2f} {r['ms_per_langevin_step']:>17.3f} "
                 f"{r.get('epoch_s_mnist', r['ms_per_train_step'] * 0.469):>20.1f}  {r.get('backend', '')}")
ours = by.get("bench_cuda")
for ref in ("torch_eager", "torch_compile", "bench_cpu"):
    if ours and ref in by:
        lines.append(f"ebm cuda vs {ref}: train step {by[ref]['ms_per_train_step'] / ours['ms_per_train_step']:.1f}x, "
                     f"Langevin step {by[ref]['ms_per_langevin_step'] / ours['ms_per_langevin_step']:.1f}x")
lines += ["", "parts:"]
for p in parts.splitlines():
    name, status, secs = p.split("|")
    lines.append(f"  {name:<14} {status:<40} {secs:>4} s")
try:
    last = [json.loads(l) for l in open(metrics) if l.strip()][-1]
    lines += ["", f"epoch on {data_source or 'data/mnist'}: last metrics line {json.dumps(last)}"]
except (OSError, IndexError, ValueError):
    pass
text = "\n".join(lines)
print(text)
open(summary, "w").write(text + "\n")
PY
echo "logs: $out"

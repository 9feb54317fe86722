#!/usr/bin/env bash
# The device check: build, test and time the engine on a lent GPU machine in one run of at most 7 minutes,
# cold build included (16 cores).
#
# How to run it with the device tool. First, here (where Debian's packages can be installed):
#   scripts/fetch_third_party.sh          # third_party/: nlohmann/json, Eigen, GoogleTest: the GPU machine lacks them
#   scripts/get_data.sh mnist data/mnist  # optional: the epoch part's data (data/ must be a real folder to carry)
# then:
#   run(command="EBM_COMMIT=<git rev-parse --short HEAD, spelled out> bash bench/device_check.sh",
#       carry=["third_party", "data/mnist"], timeout_s=450)     (the device's copy of the tree has no .git)
# The table ends output_tail; $OUT (the tool brings it back) holds summary.json (parts with status, seconds
# and limit, bench figures, graphs, test counts, the main job's metrics, eval, TensorBoard tags, the kernel
# breakdown, versions), summary.txt (the table), device_check.log (every part's output), bench.jsonl, the main
# job's files and result-*.json. Rehearse it here first with scripts/device_dry_run.sh.
#
#   bench/device_check.sh [BUILD_DIR]      BUILD_DIR defaults to build-device (git-ignored)
#
# Parts, in this order (what matters most first: the deadline skips the tail); each has a time limit (below, for
# 16 cores), and none runs past the deadline:
#   env            GPU, driver, nvcc, cmake, torch, where cuDNN/cuRAND/NCCL wheels are, what was carried
#   configure  90  Release, CUDA architecture 90; the CUDA backend is required: without it the check
#                  stops, printing what configure looked for and where (exit 2)
#   build     240  ebm_tests, ebm_bench, ebm_train, ebm_sample, ebm_eval, all cores (a failed build: exit 2)
#   main_job  180  the README's main command on the GPU: ebm_train configs/mnist.json --backend cuda, all 10 epochs on
#                  the carried digits; $OUT gets metrics.jsonl, curves.png and samples_last.png (skipped without data)
#   eval       90  ebm_eval of its last checkpoint on the GPU: $OUT/eval.json (IS, FID, class histogram)
#   tensorboard 30 the run's tb/ files read by the tensorboard package's own EventAccumulator: the tags and how many
#                  events each holds, $OUT/tensorboard.json (skipped where python3 has no tensorboard)
#   tests_cuda 90  every CudaParity* and CurandPhilox* test, one process each, 8 at a time on the one GPU
#                  (each is a context start plus under a second of work); a skip (no device) fails
#   bench_cuda 90  ebm_bench --backend cuda --chain all: the per-layer path, the fused chain (cuda.chain auto: its
#                  figures under "fused") and each chain kernel (under "chains"); FAILED when "graphs": false
#   torch_eager 60 bench/torch_step.py: the same step in PyTorch, eager
#   breakdown  90  ncu --graph-profiling node over one training step (10 Langevin steps), per-layer and fused: every
#                  kernel's name, count and GPU time ($OUT/breakdown.json): where the step's time goes besides
#                  the chain
#   tests_rest 90  every other GoogleTest case (ctest, all cores; the tools' cli_*.sh scripts run in CI)
#   torch_compile 90  the same with torch.compile, capped at 60 s of compiling and warm-up; past the cap,
#                  or failing to compile, it is "skipped: <why>", never a failure
#   bench_cpu  45  ebm_bench --backend cpu, for the CPU ratio
# At the end $OUT/result-<date>-<gpu>-<commit>.json holds the summary with the GPU, driver, CUDA, cuDNN and PyTorch
# versions and the commit measured (EBM_COMMIT, else git's, else "unknown"): commit it under bench/results/.
#
# Environment:
#   EBM_CHECK_BUDGET_S     the deadline in seconds (default 420): a part that would start with under 20 s
#                          left is skipped, and no part's limit runs past it
#   EBM_CHECK_LIMIT_SCALE  multiplies every part's limit (default 1; the dry run on 2 cores uses 8)
#   EBM_CHECK_CMAKE_ARGS   more configure options (the dry run in CI: -DEBM_WERROR=ON)
#   EBM_DRY_RUN=1          a rehearsal on a machine without a GPU (scripts/device_dry_run.sh does this): the
#                          parts that need a GPU say "stopped: no GPU here" — tests_cuda runs and must skip,
#                          bench_cuda must stop with one line and exit 1, the torch parts and the GPU epoch are
#                          not started — and two parts run instead: epoch_cpu (an epoch of 2 batches on the
#                          CPU backend, through the epoch end's pictures) and optional_libs (what a build
#                          without libpng or zlib says). With a GPU present it is an ordinary run.
#
# Exit status (bench/device_summary.py decides it):
#   0  every part passed (skipped parts say why, and are not failures)
#   1  a part FAILED or ran past its limit (TIMEOUT)
#   2  nothing was tested: the CUDA backend was not configured, or the build failed
#   3  EBM_DRY_RUN=1 without a GPU: everything that runs without one passed; the rest "stopped: no GPU here"
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$root/build-device}
out=${OUT:-$build/device_check}
mkdir -p "$build" "$out"
log=$out/device_check.log
: > "$log"
: > "$out/bench.jsonl"
: > "$out/parts.tsv"
rm -f "$out/metrics.jsonl" "$out/summary.json" "$out/summary.txt"
budget=${EBM_CHECK_BUDGET_S:-420}
scale=${EBM_CHECK_LIMIT_SCALE:-1}
dry_run=${EBM_DRY_RUN:-0}
deadline=$((SECONDS + budget))
NO_GPU="stopped: no GPU here"
cd "$root" || exit 2

say() { echo "$*" | tee -a "$log"; }
envfact() { echo "$1=$2" >> "$out/env.txt"; }
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${4:-}" >> "$out/parts.tsv"; }  # name status seconds limit

# run_part NAME LIMIT_S CMD...: CMD's output to $build/NAME.out and the log, within LIMIT_S (scaled) and the
# deadline. Sets part_rc (124 on a timeout) and part_s; records the part unless the caller decides its status
# (RECORD=0), as the timing and dry-run parts do.
part_rc=0 part_s=0 part_limit=0
run_part() {
  local name=$1 limit=$(($2 * scale))
  shift 2
  local left=$((deadline - SECONDS))
  part_rc=0 part_s=0 part_limit=0
  if ((left < 20)); then
    record "$name" "skipped: out of time (the ${budget} s budget)" 0
    say "== $name: skipped, out of time"
    part_rc=125
    return 125
  fi
  ((limit > left)) && limit=$left
  part_limit=$limit
  say "== $name (limit ${limit}s): $*"
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@" > "$build/$name.out" 2>&1
  part_rc=$?
  part_s=$((SECONDS - t0))
  cat "$build/$name.out" >> "$log"
  ((part_rc == 137)) && part_rc=124
  if [[ ${RECORD:-1} == 1 ]]; then
    local status=ok
    ((part_rc == 124)) && status="TIMEOUT after ${limit}s"
    ((part_rc != 0 && part_rc != 124)) && status="FAILED (exit $part_rc)"
    record "$name" "$status" "$part_s" "$limit"
    say "   $status in ${part_s} s"
  fi
  return $part_rc
}

# finish: the table and summary.json, and the check's exit status.
finish() {
  envfact total_s $((SECONDS))
  envfact commit "${EBM_COMMIT:-$(git -C "$root" rev-parse --short HEAD 2> /dev/null || echo unknown)}"
  envfact date "$(date -u +%F)"
  say ""
  python3 "$root/bench/device_summary.py" summarize "$out" "$build" | tee -a "$log"
  local status=${PIPESTATUS[0]}
  say "logs and summary.json: $out"
  exit "$status"
}

# --- env: tools, the GPU, and where the wheel-provided libraries are ---
: > "$out/env.txt"
envfact dry_run "$dry_run"
envfact budget_s "$budget"
export PATH=/usr/local/cuda/bin:$PATH
# The python3 that has torch (the PyTorch comparison needs it), else the first python3 on PATH.
py=""
for cand in $(type -ap python3) /usr/bin/python3; do
  if "$cand" -c 'import torch' 2> /dev/null; then py=$cand; break; fi
done
[[ -n $py ]] || py=$(command -v python3 || true)
# A pip wheel's folder: list(m.__path__)[0]. These nvidia.* packages ship no __init__.py (namespace
# packages), so m.__file__ is None and os.path.dirname(m.__file__) fails (DESIGN §7).
wheel_dir() {
  [[ -n $py ]] || return 0
  "$py" -c 'import importlib, sys
try: m = importlib.import_module(sys.argv[1])
except ImportError: sys.exit(0)
print(list(m.__path__)[0])' "$1" 2> /dev/null
}
cudnn_wheel=$(wheel_dir nvidia.cudnn)
nccl_wheel=$(wheel_dir nvidia.nccl)
cu13_wheel=$(wheel_dir nvidia.cu13)
curand_wheel=$(wheel_dir nvidia.curand)
toolkit_cudnn=""
[[ -e /usr/local/cuda/include/cudnn.h ]] && toolkit_cudnn=/usr/local/cuda/include/cudnn.h
if [[ -n $cudnn_wheel && -z $toolkit_cudnn && -z ${CUDNN_PATH:-} ]]; then
  export CUDNN_PATH=$cudnn_wheel  # cmake/Dependencies.cmake finds the wheel itself too; this says which
fi
# The loader needs the wheels' lib/ folders: libcudnn.so.9 opens its libcudnn_*.so.9 engines at run time.
for d in "$cudnn_wheel" "$nccl_wheel" "$cu13_wheel" "$curand_wheel"; do
  [[ -n $d && -d $d/lib ]] && export LD_LIBRARY_PATH=$d/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
done
if ! command -v ninja > /dev/null; then
  ninja_bin=$([[ -n $py ]] && "$py" -c 'import ninja; print(ninja.BIN_DIR)' 2> /dev/null || true)
  [[ -n $ninja_bin ]] && export PATH=$ninja_bin:$PATH
fi

gpu=0
gpu_line=$(nvidia-smi --query-gpu=name,driver_version,memory.total,compute_mode --format=csv,noheader 2> /dev/null |
           head -n 1)  # compute_mode: Exclusive_Process would make the 8 parallel GPU tests skip
[[ -n $gpu_line ]] && gpu=1
torch_line=$([[ -n $py ]] && timeout 60 "$py" -c 'import torch; print(torch.__version__, torch.version.cuda, torch.backends.cudnn.version(), torch.cuda.is_available())' 2> /dev/null || true)
{
  say "== env ($([[ $dry_run == 1 ]] && echo "dry run" || echo "device"), budget ${budget} s, limits x${scale})"
  say "gpu: ${gpu_line:-none (nvidia-smi lists no GPU)}"
  say "nvcc: $(nvcc --version 2> /dev/null | grep -o 'release [0-9.]*' || echo 'not found')"
  say "cmake: $(cmake --version | head -n 1)   ninja: $(ninja --version 2> /dev/null || echo 'not found')   nproc: $(nproc)"
  say "python3: ${py:-not found}   torch: ${torch_line:-not importable}"
  say "cuDNN: toolkit ${toolkit_cudnn:-has no cudnn.h}; wheel (python module nvidia.cudnn): ${cudnn_wheel:-not importable}; CUDNN_PATH=${CUDNN_PATH:-unset}"
  say "wheels: nvidia.nccl ${nccl_wheel:-absent}; nvidia.cu13 ${cu13_wheel:-absent}; nvidia.curand ${curand_wheel:-absent}"
  for d in third_party/nlohmann third_party/eigen3 third_party/googletest data/mnist; do
    [[ -e $d ]] && say "carried: $d" || say "missing: $d"
  done
}
envfact version.gpu "${gpu_line:-none}"
envfact version.nvcc "$(nvcc --version 2> /dev/null | grep -o 'release [0-9.]*' | cut -d' ' -f2)"
envfact version.cmake "$(cmake --version | head -n 1 | awk '{print $3}')"
envfact version.torch "${torch_line:-none}"
envfact version.nproc "$(nproc)"
envfact version.third_party "$(paste -sd, third_party/VERSIONS 2> /dev/null || echo 'system packages')"
envfact version.cudnn_wheel "${cudnn_wheel:-none}"
record env ok 0
if [[ $gpu == 0 && $dry_run == 0 ]]; then  # minutes of building only to fail at the GPU tests: stop now
  say "!! no GPU here (nvidia-smi lists none): this script is for a lent GPU machine. Rehearse it on this"
  say "!! machine with scripts/device_dry_run.sh (or EBM_DRY_RUN=1 bash bench/device_check.sh)."
  record gpu "FAILED: no GPU (nvidia-smi lists none) and not a dry run" 0
  finish
fi

# --- configure and build ---
generator=()
command -v ninja > /dev/null && generator=(-G Ninja)
cmake_args=(-S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DEBM_CUDA_ARCHITECTURES=90
            -DEBM_ENABLE_CUDA=ON -DEBM_TEST_TIMEOUT=$((60 * scale)))  # a hung test fails alone (ctest's --timeout
                                                                      # does not override the property)
[[ -n $py ]] && cmake_args+=(-DPython3_EXECUTABLE="$py")  # the Python whose wheels were found above
# shellcheck disable=SC2206  # EBM_CHECK_CMAKE_ARGS: more configure options, split on spaces
cmake_args+=(${EBM_CHECK_CMAKE_ARGS:-})
RECORD=0 run_part configure 90 cmake "${cmake_args[@]}"
summary_lines=$(sed -n '/ebm_engine /,/warnings as errors/p' "$build/configure.out" 2> /dev/null | sed 's/^-- //')
for lib in cuda libpng zlib tensorboard; do
  grep -q "✓ $lib" <<< "$summary_lines" && envfact "configure.$lib" true || envfact "configure.$lib" false
done
envfact configure.cudnn "$(grep -m1 '^ *cuDNN ' <<< "$summary_lines" | sed 's/^ *cuDNN //')"
if ((part_rc == 124)); then status="TIMEOUT after ${part_limit}s"
elif ((part_rc != 0)); then status="FAILED (exit $part_rc)"
elif ! grep -q '✓ cuda' <<< "$summary_lines"; then status="FAILED: the CUDA backend was not configured"
else status=ok; fi
((part_rc == 125)) || { record configure "$status" "$part_s" "$part_limit"; say "   $status in ${part_s} s"; }
if [[ $status == "FAILED: the CUDA backend was not configured" ]]; then
  {
    echo "!! the CUDA backend was not configured: nothing here can run on the GPU. What configure found:"
    sed 's/^/     /' <<< "$summary_lines"
    echo "   looked for cuDNN: cudnn.h in /usr/local/cuda/include (${toolkit_cudnn:-absent}); CUDNN_PATH (${CUDNN_PATH:-unset});"
    echo "     the pip wheel nvidia-cudnn-cu13 through ${py:-python3 (not found)}: python module nvidia.cudnn -> ${cudnn_wheel:-not importable}"
    echo "   looked for cuRAND: the toolkit (/usr/local/cuda/lib64), python modules nvidia.cu13 -> ${cu13_wheel:-not importable},"
    echo "     nvidia.curand -> ${curand_wheel:-not importable}; nvcc: $(command -v nvcc || echo 'not on PATH (nor /usr/local/cuda/bin)')"
    echo "   fix: pip install nvidia-cudnn-cu13 for that python, or set CUDNN_PATH to a folder holding include/cudnn.h and lib/libcudnn.so.9"
  } | tee -a "$log" >&2
  finish
fi
((part_rc == 0)) || { say "!! configure failed (see $log)"; finish; }
targets=(ebm_tests ebm_bench ebm_train ebm_sample ebm_eval)
run_part build 240 cmake --build "$build" -j "$(nproc)" --target "${targets[@]}" || {
  say "!! build failed; stopping (the errors are in $log)"
  finish
}
have_png=$(grep -q '✓ libpng' <<< "$summary_lines" && echo 1 || echo 0)
have_zlib=$(grep -q '✓ zlib' <<< "$summary_lines" && echo 1 || echo 0)
have_tb=$(grep -q '✓ tensorboard' <<< "$summary_lines" && echo 1 || echo 0)
no_gpu_here() { [[ $dry_run == 1 && $gpu == 0 ]]; }
# write_synth_idx DIR NTRAIN NTEST [gz]: an MNIST-shaped data set of random 28×28 images in raw IDX (gzip-compressed
# with gz), for the parts that need data but not MNIST's.
write_synth_idx() {
  python3 - "$@" << 'PY'
import gzip, os, random, struct, sys
d, ntrain, ntest = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
gz = len(sys.argv) > 4 and sys.argv[4] == "gz"
os.makedirs(d, exist_ok=True)
r = random.Random(0)
for name, n in (("train-images-idx3-ubyte", ntrain), ("t10k-images-idx3-ubyte", ntest)):
    path = os.path.join(d, name + (".gz" if gz else ""))
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(struct.pack(">BBBBIII", 0, 0, 8, 3, n, 28, 28) + bytes(r.randrange(256) for _ in range(n * 784)))
PY
}

# --- the README's main command on the GPU: all 10 epochs, then ebm_eval and the TensorBoard files ---
# The data as this build reads it: data/mnist, decompressed to raw IDX under the build folder when the
# build has no zlib (the reader then refuses .gz files).
epoch_data() {
  local src=data/mnist
  [[ -e $src/train-images-idx3-ubyte.gz || -e $src/train-images-idx3-ubyte ]] || return 1
  if ((have_zlib)) || [[ -e $src/train-images-idx3-ubyte ]]; then
    echo "$src"
    return 0
  fi
  local raw=$build/data_raw/mnist
  mkdir -p "$raw"
  python3 - "$src" "$raw" << 'PY' || return 1
import gzip, pathlib, shutil, sys
src, dst = map(pathlib.Path, sys.argv[1:3])
for f in src.glob("*-ubyte.gz"):
    with gzip.open(f) as i, open(dst / f.name[:-3], "wb") as o:
        shutil.copyfileobj(i, o)
PY
  echo "$raw"
}
data_dir=$(epoch_data) || data_dir=""
run_dir=$build/run_mnist
if no_gpu_here; then
  for name in main_job eval tensorboard; do record "$name" "$NO_GPU (not started)" 0; done
elif [[ -z $data_dir ]]; then
  for name in main_job eval tensorboard; do
    record "$name" "skipped: no data/mnist (scripts/get_data.sh mnist data/mnist here, and carry data/mnist)" 0
  done
else
  rm -rf "$run_dir"
  run_part main_job 180 "$build/ebm_train" configs/mnist.json --backend cuda --set data.dir="$data_dir" \
    --set output_dir="$run_dir"
  [[ -e $run_dir/metrics.jsonl ]] && cp "$run_dir/metrics.jsonl" "$out/metrics.jsonl" && envfact epoch_part main_job
  [[ -e $run_dir/curves.png ]] && cp "$run_dir/curves.png" "$out/curves.png"
  last_png=$(ls "$run_dir"/samples/epoch_*.png 2> /dev/null | sort -V | tail -n 1)
  [[ -n $last_png ]] && cp "$last_png" "$out/samples_last.png" && envfact samples_png "$(basename "$last_png")"
  if [[ -e $run_dir/last/model.safetensors ]]; then
    RECORD=0 run_part eval 90 "$build/ebm_eval" --checkpoint "$run_dir/last" --backend cuda --data "$data_dir"
    if ((part_rc != 125)); then
      status=$(python3 "$root/bench/device_summary.py" json-part eval "$build/eval.out" "$out/eval.json" "$part_rc")
      ((part_rc == 124)) && status="TIMEOUT after ${part_limit}s"
      record eval "$status" "$part_s" "$part_limit"
      say "   $status in ${part_s} s"
    fi
  else
    record eval "FAILED: the main job left no last/ checkpoint" 0
  fi
  if [[ -z $py ]] || ! "$py" -c 'import tensorboard' 2> /dev/null; then
    record tensorboard "skipped: ${py:-python3} has no tensorboard package" 0
  elif ! compgen -G "$run_dir/tb/events.out.tfevents.*" > /dev/null; then
    record tensorboard "FAILED: the main job wrote no tb/events.out.tfevents.* file" 0
  else
    RECORD=0 run_part tensorboard 30 "$py" - "$run_dir/tb" << 'PY'
import json, sys
from tensorboard.backend.event_processing import event_accumulator as ea
acc = ea.EventAccumulator(sys.argv[1], size_guidance={ea.SCALARS: 0, ea.IMAGES: 0, ea.HISTOGRAMS: 0})
acc.Reload()
tags = acc.Tags()
print(json.dumps({"scalars": {t: len(acc.Scalars(t)) for t in tags.get("scalars", [])},
                  "images": {t: len(acc.Images(t)) for t in tags.get("images", [])},
                  "histograms": {t: len(acc.Histograms(t)) for t in tags.get("histograms", [])}}))
PY
    if ((part_rc != 125)); then
      status=$(python3 "$root/bench/device_summary.py" json-part tensorboard "$build/tensorboard.out" \
               "$out/tensorboard.json" "$part_rc")
      record tensorboard "$status" "$part_s" "$part_limit"
      say "   $status in ${part_s} s"
    fi
  fi
fi

# --- GPU tests: one process per test (a device fault poisons the context, and must not hide which test),
# 8 processes sharing the GPU at a time: 53 context starts in a row would take most of the part's limit ---
RECORD=0 run_part tests_cuda 90 ctest --test-dir "$build" -R '^(CudaParity|CurandPhilox)' -j 8 --output-on-failure \
  --timeout 60
if ((part_rc != 125)); then
  skipped=$(grep -c '\*\*\*Skipped' "$build/tests_cuda.out")
  why=$(grep -h -m1 -o 'no CUDA device: .*' "$build/Testing/Temporary/LastTest.log" 2> /dev/null | head -n 1)
  if grep -q 'No tests were found' "$build/tests_cuda.out"; then
    status="FAILED: no CudaParity* or CurandPhilox* test in this build"
  elif ((part_rc == 124)); then
    status="TIMEOUT after ${part_limit}s"
  elif ((part_rc != 0)); then
    status="FAILED (exit $part_rc)"
  elif ((skipped > 0)) && no_gpu_here; then
    status="$NO_GPU ($skipped tests skipped: ${why:-no CUDA device})"
  elif ((skipped > 0)); then  # on the GPU machine a skip is a failure
    status="FAILED: $skipped tests skipped: ${why:-no CUDA device}"
  else
    status=ok
  fi
  record tests_cuda "$status" "$part_s" "$part_limit"
  say "   $status in ${part_s} s"
fi

# --- timings ---
# timing_part NAME LIMIT CMD...: runs it; its status comes from its JSON (bench/device_summary.py).
timing_part() {
  local name=$1
  RECORD=0 run_part "$@"
  ((part_rc == 125)) && return
  local status
  if ((part_rc == 124)); then
    status="TIMEOUT after ${part_limit}s"
    [[ $name == torch_compile ]] && status="skipped: ran past its ${part_limit} s limit"
  elif ((part_rc != 0)); then
    status="FAILED (exit $part_rc): $(tail -n 1 "$build/$name.out" | cut -c1-120)"
    [[ $name == torch_compile ]] && status="skipped: exited $part_rc: $(tail -n 1 "$build/$name.out" | cut -c1-100)"
  else
    status=$(python3 "$root/bench/device_summary.py" bench-verdict "$name" "$build/$name.out" "$out/bench.jsonl")
  fi
  record "$name" "$status" "$part_s" "$part_limit"
  say "   $status in ${part_s} s"
}
if no_gpu_here; then
  # The engine must stop with one line and exit 1 where a GPU is needed: no crash, no stack trace.
  RECORD=0 run_part bench_cuda 60 "$build/ebm_bench" --backend cuda --iters 20 --warmup 3
  if ((part_rc == 1)) && (($(wc -l < "$build/bench_cuda.out") == 1)); then
    status="$NO_GPU ($(cut -c1-100 "$build/bench_cuda.out"))"
  else
    status="FAILED: ebm_bench --backend cuda without a GPU exited $part_rc with $(wc -l < "$build/bench_cuda.out") lines, not one line and exit 1"
  fi
  record bench_cuda "$status" "$part_s" "$part_limit"
  say "   $status"
  for name in torch_eager torch_compile; do record "$name" "$NO_GPU (not started)" 0; done
else
  timing_part bench_cuda 90 "$build/ebm_bench" --backend cuda --iters 20 --warmup 3 --chain all
  if [[ $torch_line == *" True" ]]; then
    timing_part torch_eager 60 python3 bench/torch_step.py --device cuda --iters 10 --warmup 3
  else
    record torch_eager "skipped: ${py:-python3} has no torch with a CUDA device (${torch_line:-cannot import torch})" 0
  fi
fi

# --- where a training step's time goes: every kernel of one step under ncu, per layer and fused ---
# One step (step 3, after the capture) of a 10-Langevin-step run between cudaProfilerStart/Stop, each graph node
# profiled as a kernel (Nsight Systems cannot make reports on the GPU machine).
if no_gpu_here; then
  record breakdown "$NO_GPU (not started)" 0
elif ! command -v ncu > /dev/null; then
  record breakdown "skipped: no ncu on PATH" 0
else
  breakdown() {
    local synth=$build/data_profile
    write_synth_idx "$synth" 1024 128 || return 1
    for path in layers fused; do
      rm -rf "$build/run_profile_$path"
      ncu --profile-from-start off --graph-profiling node --metrics gpu__time_duration.sum --print-units base --csv \
        --kernel-name-base demangled "$build/ebm_train" configs/mnist.json --backend cuda --set cuda.langevin=$path \
        --set sampler.steps=10 --set train.max_steps=4 --profile-steps 3:4 --set train.validate=false \
        --set train.tensorboard=false --set data.dir="$synth" --set output_dir="$build/run_profile_$path" \
        > "$build/breakdown_$path.csv" || return 1
    done
    python3 "$root/bench/device_summary.py" breakdown "$out/breakdown.json" "$build/breakdown_layers.csv" \
      "$build/breakdown_fused.csv"
  }
  run_part breakdown 90 breakdown
fi

# --- dry run: what proves the build without a GPU ---
if no_gpu_here; then
  # An epoch of 2 batches on the CPU backend, through the epoch end (validation, pictures, checkpoint):
  # a build without libpng must train through it with one warning and no picture, and a build without
  # protobuf with one line saying it writes no TensorBoard files, and no tb/ folder.
  rm -rf "$build/run_cpu"
  synth=""
  if [[ -z $data_dir ]]; then  # no data/mnist: 256 + 64 random raw IDX images
    synth=$build/data_synth
    write_synth_idx "$synth" 256 64
  fi
  RECORD=0 run_part epoch_cpu 60 "$build/ebm_train" configs/mnist.json --backend cpu --set train.epochs=1 \
    --set data.limit=256 --set sampler.steps=5 --set generate.steps=5 --set generate.n=4 \
    --set data.dir="${data_dir:-$synth}" --set output_dir="$build/run_cpu"
  if ((part_rc != 125)); then
    warnings=$(grep -c 'ebm_train: warning: this build has no libpng' "$build/epoch_cpu.out")
    tb_warnings=$(grep -c 'this build writes no TensorBoard files' "$build/epoch_cpu.out")
    if ((part_rc != 0)); then
      status="FAILED (exit $part_rc): $(tail -n 1 "$build/epoch_cpu.out" | cut -c1-100)"
    elif [[ ! -e $build/run_cpu/epoch_1/model.safetensors ]]; then
      status="FAILED: no epoch_1 checkpoint"
    elif ((have_png)) && [[ ! -e $build/run_cpu/samples/epoch_1.png ]]; then
      status="FAILED: built with libpng, but no samples/epoch_1.png"
    elif ((!have_png)) && ((warnings != 1)) ; then
      status="FAILED: built without libpng: $warnings 'no libpng' warnings, not one"
    elif ((!have_png)) && [[ -e $build/run_cpu/samples || -e $build/run_cpu/curves.png ]]; then
      status="FAILED: built without libpng, yet pictures were written"
    elif ((have_tb)) && ! compgen -G "$build/run_cpu/tb/events.out.tfevents.*" > /dev/null; then
      status="FAILED: built with protobuf, but no tb/events.out.tfevents.* file"
    elif ((!have_tb)) && { ((tb_warnings != 1)) || [[ -e $build/run_cpu/tb ]]; }; then
      status="FAILED: built without protobuf: $tb_warnings 'no TensorBoard files' lines (not one), or a tb/ folder"
    else
      status="ok ($( ((have_png)) && echo "pictures written" || echo "no libpng: pictures skipped with 1 warning"); $( ((have_tb)) && echo "TensorBoard file written" || echo "no protobuf: TensorBoard skipped with 1 line"))"
    fi
    record epoch_cpu "$status" "$part_s" "$part_limit"
    [[ -e $build/run_cpu/metrics.jsonl ]] && cp "$build/run_cpu/metrics.jsonl" "$out/metrics.jsonl" && envfact epoch_part epoch_cpu
    say "   $status in ${part_s} s"
  fi

  # What a build without libpng or zlib says when asked for what it lacks: one line, and the exit code of a
  # usage error (2) or a failure (1); never a crash.
  optional_libs() {
    local ckpt=$build/run_cpu/last fails=0 o rc
    expect() {  # expect WANT_RC TEXT CMD...: exit WANT_RC, stderr holding TEXT, at most one stderr line
      local want=$1 text=$2
      shift 2
      o=$("$@" 2>&1 > /dev/null)
      rc=$?
      if ((rc == want)) && [[ $o == *"$text"* ]] && (($(wc -l <<< "$o") == 1)); then
        echo "ok: exit $rc: $o"
      else
        echo "FAILED: $* exited $rc (want $want) saying: $o"
        fails=$((fails + 1))
      fi
    }
    if ((!have_png)); then
      expect 2 "--out $build/x.png: this build has no libpng" "$build/ebm_sample" --checkpoint "$ckpt" --out "$build/x.png"
      expect 0 "this build has no libpng: the sample grid samples.png not written" \
        "$build/ebm_sample" --checkpoint "$ckpt" --n 2 --steps 2 --npy "$build/x.npy" --backend cpu
      [[ -e $build/x.npy ]] || { echo "FAILED: no --npy output"; fails=$((fails + 1)); }
    fi
    if ((!have_zlib)); then  # a gzip data set, as scripts/get_data.sh writes one
      write_synth_idx "$build/data_gz" 8 4 gz
      expect 1 "train-images-idx3-ubyte.gz: is gzip-compressed, and this build has no zlib" \
        "$build/ebm_train" configs/mnist.json --backend cpu --set data.dir="$build/data_gz" --set output_dir="$build/run_gz"
    fi
    echo "$fails failed"
    ((fails == 0))
  }
  if ((have_png && have_zlib)); then
    record optional_libs "skipped: this build has libpng and zlib" 0
  elif [[ -e $build/run_cpu/last ]]; then
    say "== optional_libs"
    t0=$SECONDS
    optional_libs > "$build/optional_libs.out" 2>&1
    rc=$?
    cat "$build/optional_libs.out" >> "$log"
    status=ok
    ((rc == 0)) || status="FAILED: $(grep -m1 '^FAILED' "$build/optional_libs.out" | cut -c1-150)"
    record optional_libs "$status" $((SECONDS - t0))
    say "   $status in $((SECONDS - t0)) s"
  else
    record optional_libs "FAILED: no checkpoint from epoch_cpu to sample from" 0
  fi
fi

# --- the other tests, and the CPU ratio ---
# Two OpenMP threads per test, nproc/2 tests at once (at least 2: most tests use one core), threads that sleep at a
# barrier (as the test presets): with every test taking all cores (OpenMP's default), the first H200 run had 16
# processes of 16 spinning threads each, and six gradient checks that take 2-18 s on 2 cores ran past their 60 s
# limit. (On 2 cores one test at a time took 70 s of the dry run.)
run_part tests_rest 90 env OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive ctest --test-dir "$build" \
  -E '^(CudaParity|CurandPhilox|cli_|py_)' -j "$(( $(nproc) > 3 ? $(nproc) / 2 : 2 ))" --output-on-failure --timeout 120
if ! no_gpu_here; then
  if [[ $torch_line == *" True" ]]; then
    timing_part torch_compile 90 python3 bench/torch_step.py --device cuda --iters 10 --warmup 3 --compile \
      --compile-timeout $((60 * scale))
  else
    record torch_compile "skipped: ${py:-python3} has no torch with a CUDA device (${torch_line:-cannot import torch})" 0
  fi
fi
timing_part bench_cpu 45 "$build/ebm_bench" --backend cpu --iters 3 --warmup 2

finish

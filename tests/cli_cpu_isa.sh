#!/usr/bin/env bash
# The CPU backend's vector kernels' copies per instruction set (engine/cpu/small_gemm.hpp), from the outside: EBM_CPU_ISA
# forces one and the backend line and ebm_bench's JSON say which runs; a name this build lacks or this CPU cannot
# run is one line naming the variable and the copies there are; and the copies' object files define no weak
# symbol — an inline function or template compiled for AVX-512 that the linker kept in place of the baseline one
# would be called by baseline code, and crash a CPU without AVX-512 (skips where the copies are not built).
#   bash tests/cli_cpu_isa.sh BUILD_DIR SOURCE_DIR
set -u
build=$1 src=$2
fail=0
bench() { OMP_NUM_THREADS=1 "$build/ebm_bench" --backend cpu --iters 1 --warmup 1 --langevin-steps 2 --batch 8 "$@"; }
objs=$(find "$build/CMakeFiles" -path '*ebm_small_gemm_*' -name '*.o' 2>/dev/null | sort)
if [ -z "$objs" ]; then
  echo "skipped: this build has no per-instruction-set copies of the vector kernels (not x86-64)"
  exit 77
fi
# 1. no weak or unique-global symbol defined in any copy (nm: W/V weak, u unique)
for o in $objs; do
  weak=$(nm -C --defined-only "$o" | awk '$2 ~ /^[WVu]$/')
  if [ -n "$weak" ]; then echo "FAIL: $o defines weak symbols:"; echo "$weak" | head -5; fail=1; fi
done
# 2. each copy this CPU runs can be forced, and says so
for isa in baseline avx2 avx512; do
  case $isa in
    avx2) grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo || continue ;;
    avx512) grep -qw avx512bw /proc/cpuinfo && grep -qw avx512vl /proc/cpuinfo || continue ;;
  esac
  out=$(EBM_CPU_ISA=$isa bench 2>&1) || { echo "FAIL: EBM_CPU_ISA=$isa: ebm_bench failed: $out"; fail=1; continue; }
  echo "$out" | grep -q "\"cpu_kernels\":\"[^\"]*(vector kernels $isa)\"" ||
    { echo "FAIL: EBM_CPU_ISA=$isa: cpu_kernels does not name it: $out"; fail=1; }
done
out=$(EBM_CPU_ISA=build bench 2>&1) || { echo "FAIL: EBM_CPU_ISA=build failed: $out"; fail=1; }
echo "$out" | grep -q '"cpu_kernels":"[a-z0-9+]*"' || { echo "FAIL: EBM_CPU_ISA=build: $out"; fail=1; }
# 3. an unknown copy: exit 1, one line naming the variable and the copies there are
err=$(EBM_CPU_ISA=sse9 bench 2>&1 >/dev/null); rc=$?
if [ $rc -ne 1 ] || [ "$(printf '%s\n' "$err" | wc -l)" -ne 1 ] || ! echo "$err" | grep -q "EBM_CPU_ISA=sse9.*build, baseline"; then
  echo "FAIL: EBM_CPU_ISA=sse9: rc $rc, stderr: $err"; fail=1
fi
[ $fail -eq 0 ] && echo "ok: $(echo "$objs" | wc -w) kernel copies without weak symbols; each forced copy named; a bad name refused in one line"
exit $fail

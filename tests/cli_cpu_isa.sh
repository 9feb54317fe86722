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
bench() { OMP_NUM_THREADS=1 "$build/ebm_bench" --backend cpu --iters 1 --warmup 2 --langevin-steps 2 --batch 8 "$@"; }
# The copies this build compiles (EBM_CPU_ISA_COPIES in CMakeCache.txt) and each one's object. The list is the cache's,
# not the folders found: a copy's folder outlives a reconfigure that drops it (Makefiles keep it).
copies=$(sed -n 's/^EBM_CPU_ISA_COPIES:STRING=//p' "$build/CMakeCache.txt" 2>/dev/null | tr ';' ' ')
object_of() { find "$build/CMakeFiles/ebm_small_gemm_$1.dir" -name '*.o' 2>/dev/null; }
objs=$(for isa in $copies; do object_of "$isa"; done)
if [ -z "$objs" ]; then
  echo "skipped: this build has no per-instruction-set copies of the vector kernels (not x86-64 with GCC, or EBM_CPU_ISA_COPIES is empty)"
  exit 77
fi
command -v nm > /dev/null || { echo "FAIL: nm not found (binutils)"; exit 1; }
# 1. each copy exports its entry points (ebm::isa_<name>::...) and nothing else: no weak, unique or other global
#    symbol another object could bind to
for isa in $copies; do
  o=$(object_of "$isa")
  [ -n "$o" ] || { echo "FAIL: EBM_CPU_ISA_COPIES names $isa, and $build has no object of it"; fail=1; continue; }
  syms=$(nm -C --defined-only --extern-only "$o") || { echo "FAIL: nm could not read $o"; fail=1; continue; }
  entry=$(printf '%s
' "$syms" | grep -c " T ebm::isa_$isa::")
  other=$(printf '%s
' "$syms" | grep -v "^$" | grep -v " T ebm::isa_$isa::")
  if [ -n "$other" ]; then echo "FAIL: $o exports more than its entry points:"; echo "$other" | head -5; fail=1; fi
  [ "$entry" -ge 9 ] || { echo "FAIL: $o exports $entry entry points in ebm::isa_$isa (expected 9)"; fail=1; }
done
# 2. no copy's micro-kernels keep a vector accumulator (or B vector) on the stack: none of their FMAs (SSE: mulps or
#    addps) takes an operand from %rsp or %rbp. Where the compiler was left to split 16-float vectors over narrower
#    registers, or expanded a 64-byte memcpy in pieces (GCC's Intel tuning), every k step went through memory: the
#    avx2 copy had 3,030 such instructions and ran 12x slower, the native build on an Ice Lake 720 (2026-12-07).
#    The functions checked hold no stack arrays of floats, so such an operand is a spill. Not in a sanitizer build
#    (instrumented code has other register pressure).
if grep -q '^EBM_SANITIZE:STRING=.' "$build/CMakeCache.txt" 2>/dev/null; then
  echo "note: sanitizer build: the kernels' spill check is the release build's"
elif ! command -v objdump > /dev/null; then
  echo "FAIL: objdump not found (binutils)"; fail=1
else
  own=$(find "$build/CMakeFiles" -path '*ebm_engine.dir*' -name 'small_gemm.cpp.o' 2>/dev/null)
  for o in $objs $own; do
    n=$(objdump -d --no-show-raw-insn -C "$o" |
        awk '/^[0-9a-f]+ <.*>:$/ { f = ($0 ~ /small_sgemm_nn|small_conv_nn|small_conv_tapsum_nn|micro/) } f' |
        grep -cE '(vfn?m(add|sub)[0-9]+ps|[[:space:]](mulps|addps)[[:space:]]).*\((%rsp|%rbp)')
    [ "$n" -eq 0 ] || { echo "FAIL: $o: $n FMA/mul/add instructions in the micro-kernels read the stack (spilled accumulators)"; fail=1; }
  done
fi
# 3. each copy built (EBM_CPU_ISA_COPIES) that this CPU runs can be forced, and says so
for isa in $copies; do
  case $isa in
    avx2) grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo || continue ;;
    avx512) for f in avx512f avx512bw avx512cd avx512dq avx512vl; do grep -qw $f /proc/cpuinfo || continue 2; done ;;
  esac
  out=$(EBM_CPU_ISA=$isa bench 2>&1) || { echo "FAIL: EBM_CPU_ISA=$isa: ebm_bench failed: $out"; fail=1; continue; }
  echo "$out" | grep -q "\"cpu_kernels\":\"[^\"]*(vector kernels $isa)\"" ||
    { echo "FAIL: EBM_CPU_ISA=$isa: cpu_kernels does not name it: $out"; fail=1; }
done
out=$(EBM_CPU_ISA=build bench 2>&1) || { echo "FAIL: EBM_CPU_ISA=build failed: $out"; fail=1; }
echo "$out" | grep -q '"cpu_kernels":"[a-z0-9+]*"' || { echo "FAIL: EBM_CPU_ISA=build: $out"; fail=1; }
# 4. an unknown copy: exit 1, one line naming the variable and the copies there are
err=$(EBM_CPU_ISA=sse9 bench 2>&1 >/dev/null); rc=$?
if [ $rc -ne 1 ] || [ "$(printf '%s\n' "$err" | wc -l)" -ne 1 ] || ! echo "$err" | grep -q "EBM_CPU_ISA=sse9: .*(build"; then
  echo "FAIL: EBM_CPU_ISA=sse9: rc $rc, stderr: $err"; fail=1
fi
[ $fail -eq 0 ] && echo "ok: $(echo "$objs" | wc -w) kernel copies exporting only their entry points, no accumulator on the stack; each forced copy named; a bad name refused in one line"
exit $fail

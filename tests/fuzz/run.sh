#!/usr/bin/env bash
# Runs the parsers' fuzz targets (built by `cmake --build --preset fuzz`): first every committed
# reproducer in tests/fuzz/regressions/<target>/, then each target for SECONDS on its seed corpus.
#   tests/fuzz/run.sh [--seconds N] [--jobs J] [--build DIR] [TARGET...]
# (default: 30 s, as many targets at once as there are cores, build-fuzz, every target). Each libFuzzer process is
# single-threaded, so J targets at once give each its full SECONDS in 1/J of the wall time.
# Fails (exit 1) on any crash, leak, timeout, out-of-memory, UB or escaped exception, after running
# them all; prints per target the executions (libFuzzer's stat::number_of_executed_units) and coverage.
# The corpus grows in BUILD/corpus/<target>/ from run to run; a failing input is saved in
# BUILD/artifacts/<target>/ and printed as base64 when small. See tests/fuzz/README.md.
set -uo pipefail
cd "$(dirname "$0")/../.."

seconds=30 build=build-fuzz targets=() jobs=$(nproc 2> /dev/null || echo 1)
while (($#)); do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    --build) build="$2"; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    -*) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
if ((${#targets[@]} == 0)); then
  for src in tests/fuzz/fuzz_*.cpp; do
    t=$(basename "$src" .cpp)
    targets+=("${t#fuzz_}")
  done
fi

# Per target: the longest input (seeds are a few KB; gzip IDX inflates up to ~1000x, so IDX stays
# below 16 KiB) and the libFuzzer options every run shares.
declare -A max_len=([idx]=16384 [npy]=4096 [safetensors]=8192 [config]=8192)
common=(-rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=10 -print_final_stats=1)

python3 scripts/make_fuzz_corpus.py "$build/seeds" > /dev/null || exit 1

# Prints a failing input: its path, and base64 when it is small enough to paste into an issue.
show_input() {
  local f="$1"
  [ -f "$f" ] || return 0
  local n
  n=$(stat -c %s "$f")
  echo "  input: $f ($n bytes)"
  if ((n <= 2048)); then echo "  base64: $(base64 -w0 "$f")"; fi
}

# fuzz_target T: the reproducers, then SECONDS of fuzzing, for one target. Its report goes to stdout; its summary
# line to $build/summary-T, and what failed (if anything) to $build/failed-T, for the caller to print in order.
fuzz_target() {
  local t="$1" failed=() summary=()
  bin="$build/fuzz_$t"
  if [ ! -x "$bin" ]; then
    echo "fuzz: $bin not built (cmake --preset fuzz && cmake --build --preset fuzz)" >&2
    printf '%s\n' "$t: not built" > "$build/failed-$t"
    return
  fi
  scratch="$build/tmp/$t" art="$build/artifacts/$t/" corpus="$build/corpus/$t"
  mkdir -p "$scratch" "$art" "$corpus"
  export TMPDIR="$PWD/$scratch"  # the targets' scratch files (tests/fuzz/fuzz_support.hpp)
  len=${max_len[$t]:-8192}

  # 1. Committed reproducers: each must now end as a UserError or parse.
  regressions=0 bad_regressions=0
  for f in tests/fuzz/regressions/"$t"/*; do
    [ -f "$f" ] || continue
    regressions=$((regressions + 1))
    if ! "$bin" "${common[@]}" -artifact_prefix="$art" "$f" > "$build/regression-$t.log" 2>&1; then
      bad_regressions=$((bad_regressions + 1))
      echo "fuzz: $t: regression input FAILS: $f"
      grep -aE '==ebm-fuzz==|ERROR:|runtime error:|SUMMARY:' "$build/regression-$t.log" | head -5 | cat -v | sed 's/^/  /'
    fi
  done
  ((bad_regressions)) && failed+=("$t: $bad_regressions of $regressions regression inputs")

  # 2. SECONDS of fuzzing from the seeds (and what earlier runs added to the corpus).
  log="$build/fuzz-$t.log"
  echo "fuzz: $t: ${seconds}s, max_len $len, $(ls "$build/seeds/$t" | wc -l) seeds, $(ls "$corpus" | wc -l) corpus inputs"
  "$bin" "${common[@]}" -max_total_time="$seconds" -max_len="$len" -dict="$build/seeds/$t.dict" \
    -artifact_prefix="$art" "$corpus" "$build/seeds/$t" > "$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -aoE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "$log" | tail -1)
  if ((rc != 0)); then
    echo "fuzz: $t: FAILED (exit $rc) after ${execs:-?} executions; the report:"
    # The finding, and the stack frames of the code under test (not libFuzzer's, libc's or the sanitizers').
    grep -aE '==ebm-fuzz==|ERROR:|runtime error:|SUMMARY:|^ +#[0-9]+ ' "$log" |
      grep -avE ' in (fuzzer::|__sanitizer|__asan|__ubsan|__interceptor|__libc|_start|abort|raise|__pthread|main )|ebm::fuzz::|libc\.so' |
      head -25 | cat -v | sed 's/^/  /'
    show_input "$(sed -n 's/.*Test unit written to //p' "$log" | tail -1)"
    echo "  full log: $log"
    failed+=("$t: fuzzing")
    summary+=("$(printf '%-12s %10s executions  %-32s FAILED' "$t" "${execs:-?}" "$cov")")
  else
    summary+=("$(printf '%-12s %10s executions  %-32s ok' "$t" "${execs:-?}" "$cov")")
  fi
  rm -rf "$scratch"
  printf '%s\n' "${summary[@]}" > "$build/summary-$t"
  ((${#failed[@]})) && printf '%s\n' "${failed[@]}" > "$build/failed-$t"
  return 0
}

# JOBS targets at once, each's report printed whole when it ends (in the order they end), then the summary in the
# targets' order.
mkdir -p "$build"
for t in "${targets[@]}"; do rm -f "$build/summary-$t" "$build/failed-$t" "$build/report-$t"; done
running=0
for t in "${targets[@]}"; do
  if ((running >= jobs)); then
    wait -n
    running=$((running - 1))
  fi
  { fuzz_target "$t" > "$build/report-$t" 2>&1; cat "$build/report-$t"; } &
  running=$((running + 1))
done
wait
failed=() summary=()
for t in "${targets[@]}"; do
  [ -f "$build/summary-$t" ] && mapfile -t -O ${#summary[@]} summary < "$build/summary-$t"
  [ -f "$build/failed-$t" ] && mapfile -t -O ${#failed[@]} failed < "$build/failed-$t"
done

echo "fuzz: summary (${seconds}s per target, $jobs at once)"
((${#summary[@]})) && printf '  %s\n' "${summary[@]}"
if ((${#failed[@]})); then
  echo "fuzz: FAILED:"
  printf '  %s\n' "${failed[@]}"
  exit 1
fi
echo "fuzz: all targets clean"

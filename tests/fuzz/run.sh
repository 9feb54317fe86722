#!/usr/bin/env bash
# Runs the parsers' fuzz targets (built by `cmake --build --preset fuzz`): first every committed
# reproducer in tests/fuzz/regressions/<target>/, then each target for SECONDS on its seed corpus.
#   tests/fuzz/run.sh [--seconds N] [--build DIR] [TARGET...]     (default: 30 s, build-fuzz, every target)
# Fails (exit 1) on any crash, leak, timeout, out-of-memory, UB or escaped exception, after running
# them all; prints per target the executions (libFuzzer's stat::number_of_executed_units) and coverage.
# The corpus grows in BUILD/corpus/<target>/ from run to run; a failing input is saved in
# BUILD/artifacts/<target>/ and printed as base64 when small. See tests/fuzz/README.md.
set -uo pipefail
cd "$(dirname "$0")/../.."

seconds=30 build=build-fuzz targets=()
while (($#)); do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --build) build="$2"; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
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

failed=() summary=()
for t in "${targets[@]}"; do
  bin="$build/fuzz_$t"
  if [ ! -x "$bin" ]; then
    echo "fuzz: $bin not built (cmake --preset fuzz && cmake --build --preset fuzz)" >&2
    failed+=("$t: not built")
    continue
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
    if ! "$bin" "${common[@]}" -artifact_prefix="$art" "$f" > "$build/regression.log" 2>&1; then
      bad_regressions=$((bad_regressions + 1))
      echo "fuzz: $t: regression input FAILS: $f"
      grep -aE '==ebm-fuzz==|ERROR:|runtime error:|SUMMARY:' "$build/regression.log" | head -5 | cat -v | sed 's/^/  /'
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
done

echo "fuzz: summary (${seconds}s per target)"
printf '  %s\n' "${summary[@]}"
if ((${#failed[@]})); then
  echo "fuzz: FAILED:"
  printf '  %s\n' "${failed[@]}"
  exit 1
fi
echo "fuzz: all targets clean"

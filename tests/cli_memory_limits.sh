#!/usr/bin/env bash
# Memory limits end in one line, never an abort or a hang: every tool and the Python module under several
# address-space limits (ulimit -v, as batch systems and shared hosts set), and ebm_train in a memory cgroup where
# this machine lets one be made. Each case must end within 60 s with exit 0, or exit 1 and exactly one line on
# stderr naming what did not fit; a refused training run writes nothing; and the limit a refusal proposes runs.
# (Before: 800000 kB aborted on an uncaught std::bad_alloc, rc 134; 600000 and 300000 spun forever in OpenBLAS.)
#   bash tests/cli_memory_limits.sh <build_dir> <source_dir>
set -u
build=$(cd "${1:?usage: cli_memory_limits.sh BUILD_DIR SOURCE_DIR}" && pwd)
src=$(cd "${2:?usage: cli_memory_limits.sh BUILD_DIR SOURCE_DIR}" && pwd)
if grep -q '^EBM_SANITIZE:STRING=.' "$build/CMakeCache.txt" 2>/dev/null; then
  echo "cli_memory_limits: skipped: a sanitizer build maps terabytes of shadow memory, so no address-space limit fits it"
  exit 77
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ebm_cli_memory.XXXXXX")
trap 'rm -rf "$tmp"; [ -n "${cg:-}" ] && rmdir "$cg" 2>/dev/null' EXIT
. "$src/tests/lib/cli_checks.sh"

mkdir -p "$tmp/data"
python3 - "$tmp/data" <<'PY'
import gzip, os, random, struct, sys
random.seed(1)
for split, n in (('train', 256), ('t10k', 64)):
    with gzip.open(os.path.join(sys.argv[1], f'{split}-images-idx3-ubyte.gz'), 'wb') as f:
        f.write(struct.pack('>BBBBIII', 0, 0, 8, 3, n, 28, 28))
        f.write(bytes(random.randrange(256) for _ in range(n * 28 * 28)))
    with gzip.open(os.path.join(sys.argv[1], f'{split}-labels-idx1-ubyte.gz'), 'wb') as f:  # ebm_eval's classifier
        f.write(struct.pack('>BBBBI', 0, 0, 8, 1, n) + bytes(i % 10 for i in range(n)))
PY
train=("$build/ebm_train" "$src/configs/mnist.json" --backend cpu --set data.dir="$tmp/data" --set data.limit=256
       --set sampler.steps=2 --set train.max_steps=2 --set generate.steps=5 --set generate.n=4)
if ! out=$("${train[@]}" --set output_dir="$tmp/ckrun" 2>&1); then echo "cli_memory_limits: no checkpoint:"; echo "$out"; exit 1; fi
ckpt="$tmp/ckrun/last"

# limited NAME KB [ENV...] -- COMMAND...: runs COMMAND under ulimit -v KB (and ENV), killed after 60 s. Passes when it
# ends in time with exit 0, or exit 1 and one stderr line; sets $rc and $err.
limited() {
  local name=$1 kb=$2; shift 2
  local env=()
  while [ "$1" != "--" ]; do env+=("$1"); shift; done
  shift
  local start=$SECONDS
  rc=$( (ulimit -v "$kb"; env "${env[@]}" timeout -s KILL 60 "$@" > "$tmp/out" 2> "$tmp/err"; echo $?) 2>/dev/null)
  err=$(cat "$tmp/err")
  # One line saying why: the only line on stderr that is not progress ("classifier: ...", ebm_eval's training of
  # its classifier) or a warning, and the last.
  local lines
  lines=$(grep -vc -e '^classifier: ' -e ': warning: ' "$tmp/err")
  if [ "$rc" = 0 ] || { [ "$rc" = 1 ] && [ "$lines" = 1 ] && ! tail -1 "$tmp/err" | grep -q -e '^classifier: ' -e ': warning: '; }; then
    ok "$name: exit $rc in $((SECONDS - start)) s${err:+ ($(tail -1 <<<"$err" | cut -c1-140)...)}"
  else
    bad "$name: exit $rc (137: killed after 60 s, a hang; 134: an abort), $lines stderr lines" "$err"
  fi
}

for kb in 300000 600000 800000; do
  rm -rf "$tmp/run"
  limited "ebm_train under ulimit -v $kb" "$kb" -- "${train[@]}" --set output_dir="$tmp/run"
  if [ "$rc" = 1 ]; then
    if [ -e "$tmp/run" ]; then bad "ebm_train under ulimit -v $kb: refused, yet wrote $(ls "$tmp/run")"; else ok "  ... and wrote nothing"; fi
  fi
  limited "ebm_sample under ulimit -v $kb" "$kb" -- "$build/ebm_sample" --checkpoint "$ckpt" --n 16 --out "$tmp/s.png" --backend cpu
  limited "ebm_score under ulimit -v $kb" "$kb" -- "$build/ebm_score" --checkpoint "$ckpt" --backend cpu \
    --data "$tmp/data/t10k-images-idx3-ubyte.gz" --out "$tmp/e.csv"
  limited "ebm_eval under ulimit -v $kb" "$kb" -- "$build/ebm_eval" --checkpoint "$ckpt" --n 8 --steps 2 --backend cpu \
    --data "$tmp/data" --classifier-images 256
done

# What a refusal proposes runs: the limit it names, or one thread.
rm -rf "$tmp/run"
limited "ebm_train under ulimit -v 600000" 600000 -- "${train[@]}" --set output_dir="$tmp/run"
proposed=$(sed -n 's/.*raise the limit (ulimit -v \([0-9]*\) or more.*/\1/p' <<<"$err")
if [ -n "$proposed" ]; then
  rm -rf "$tmp/run"
  limited "ebm_train under the limit it proposed (ulimit -v $proposed)" "$proposed" -- "${train[@]}" --set output_dir="$tmp/run"
  [ "$rc" = 0 ] || bad "ebm_train does not run under the limit its refusal proposed ($proposed kB)" "$err"
else
  bad "ebm_train under ulimit -v 600000 proposed no limit" "$err"
fi
rm -rf "$tmp/run"
limited "ebm_sample on one thread under ulimit -v 600000" 600000 OMP_NUM_THREADS=1 -- \
  "$build/ebm_sample" --checkpoint "$ckpt" --n 16 --out "$tmp/s1.png" --backend cpu
[ "$rc" = 0 ] || bad "ebm_sample on one thread does not run under 600000 kB" "$err"

# The Python module: a refusal is a Python exception, not a hang or an abort.
py=$(sed -n 's/^PYBIND11_PYTHON_EXECUTABLE_LAST:INTERNAL=//p' "$build/CMakeCache.txt")  # the module's interpreter
if ls "$build"/python/ebm_engine*.so > /dev/null 2>&1 && [ -x "${py:-/usr/bin/python3}" ]; then
  cat > "$tmp/sample.py" <<PY
import sys
import numpy  # as a user's script has it loaded: what it maps is mapped before the engine checks
try:
    import ebm_engine  # its libraries (CUDA's, NCCL) may not fit at all: the loader's ImportError, one line here
except ImportError as e:
    print(f"ebm_engine: ImportError: {e}", file=sys.stderr)
    sys.exit(1)
try:
    ebm_engine.load("$ckpt", backend="cpu").sample(4)
except (ebm_engine.UserError, MemoryError) as e:
    print(f"ebm_engine: {type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(1)
PY
  for kb in 300000 600000; do
    limited "the Python module's Model.sample under ulimit -v $kb" "$kb" PYTHONPATH="$build/python" -- "${py:-/usr/bin/python3}" "$tmp/sample.py"
  done
else
  echo "  (no Python module in this build: its case skipped)"
fi

# A memory cgroup (v1, mounted at its root; needs root): the run is refused in one line, or runs.
cgroot=$(awk '{for (i = 7; i < NF; i++) if ($i == "-") break} $(i + 1) == "cgroup" && $(i + 3) ~ /(^|,)memory(,|$)/ && $4 == "/" {print $5; exit}' /proc/self/mountinfo)
mine=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3; exit}' /proc/self/cgroup)
if [ -n "$cgroot" ] && mkdir "$cgroot$mine/ebm_test_$$" 2>/dev/null; then
  cg="$cgroot$mine/ebm_test_$$"
  for bytes in 150000000 400000000; do
    echo "$bytes" > "$cg/memory.limit_in_bytes"
    rm -rf "$tmp/run"
    start=$SECONDS
    rc=$(sh -c 'echo $$ > "$1/cgroup.procs"; shift; exec timeout -s KILL 60 "$@"' sh "$cg" "${train[@]}" \
         --set output_dir="$tmp/run" > "$tmp/out" 2> "$tmp/err"; echo $?)
    if [ "$rc" = 0 ] || { [ "$rc" = 1 ] && [ "$(grep -c '' "$tmp/err")" = 1 ]; }; then
      ok "ebm_train in a memory cgroup of $bytes bytes: exit $rc in $((SECONDS - start)) s $(cut -c1-120 "$tmp/err")"
    else
      bad "ebm_train in a memory cgroup of $bytes bytes: exit $rc (137: killed, by the OOM killer or after 60 s)" "$(cat "$tmp/err")"
    fi
  done
else
  echo "  (no memory cgroup can be made here: its cases skipped)"
fi
finish

#!/usr/bin/env bash
# End-to-end checks of ebm_train as a user runs it: exit codes, one-line errors, SIGTERM checkpointing.
#   bash tests/cli_train.sh BUILD_DIR SOURCE_DIR
set -u
build=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

# Tiny IDX data made here (no data/ needed).
python3 - "$tmp/data" <<'PY'
import gzip, os, random, struct, sys
d = sys.argv[1]; os.makedirs(d, exist_ok=True); random.seed(0)
for name, n in (("train-images-idx3-ubyte.gz", 64), ("t10k-images-idx3-ubyte.gz", 16)):
    with gzip.open(os.path.join(d, name), "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, 28, 28) + bytes(random.randrange(256) for _ in range(n * 784)))
PY
train="$build/ebm_train"
tiny=(--set data.dir="$tmp/data" --set data.batch_size=16 --set model.channels=[4,8] --set sampler.steps=2
      --set buffer.capacity=64 --set buffer.initial=16 --set generate.n=4 --set generate.steps=2 --set backend=cpu)

# expect_error NAME PATTERN -- CMD...: non-zero exit, one stderr line matching PATTERN.
expect_error() {
  local name=$1 pattern=$2; shift 3
  "$@" > "$tmp/out" 2> "$tmp/err"; local rc=$?
  local lines; lines=$(wc -l < "$tmp/err")
  if [ "$rc" -ne 0 ] && [ "$lines" -eq 1 ] && grep -q -- "$pattern" "$tmp/err"; then ok
  else bad "$name: rc=$rc lines=$lines stderr: $(cat "$tmp/err")"; fi
}

expect_error "missing config" "no_such.json" -- "$train" "$tmp/no_such.json"
echo '{"train": {"epochs": "ten"}}' > "$tmp/bad_type.json"
expect_error "wrong type" '"train.epochs"' -- "$train" "$tmp/bad_type.json"
echo '{"train": {"lrr": 1}}' > "$tmp/unknown.json"
expect_error "unknown key" '"train.lrr"' -- "$train" "$tmp/unknown.json"
echo '{"data": {"batch_size": 0}}' > "$tmp/range.json"
expect_error "out of range" '"data.batch_size"' -- "$train" "$tmp/range.json"
echo '{"train": {' > "$tmp/malformed.json"
expect_error "malformed json" "malformed.json" -- "$train" "$tmp/malformed.json"
expect_error "bad --set" '"sampler.steps"' -- "$train" "$src/configs/mnist.json" --set sampler.steps=-1
expect_error "unknown flag" "--frobnicate" -- "$train" "$src/configs/mnist.json" --frobnicate
expect_error "bad profile range" "profile-steps" -- "$train" "$src/configs/mnist.json" --profile-steps 30:20
expect_error "missing data" "scripts/get_data.sh" -- "$train" "$src/configs/mnist.json" --set data.dir="$tmp/none" --set output_dir="$tmp/r0"
mkdir -p "$tmp/corrupt" && head -c 100 "$tmp/data/train-images-idx3-ubyte.gz" > "$tmp/corrupt/train-images-idx3-ubyte.gz"
cp "$tmp/data/t10k-images-idx3-ubyte.gz" "$tmp/corrupt/"
expect_error "corrupt data" "train-images-idx3-ubyte.gz" -- "$train" "$src/configs/mnist.json" "${tiny[@]}" --set data.dir="$tmp/corrupt" --set output_dir="$tmp/r1"
expect_error "missing checkpoint" "$tmp/nope" -- "$train" "$src/configs/mnist.json" "${tiny[@]}" --set output_dir="$tmp/r2" --resume "$tmp/nope"

# A run to max_steps leaves last/ and exits 0; a second fresh run into it is refused.
if "$train" "$src/configs/mnist.json" "${tiny[@]}" --set output_dir="$tmp/r3" --set train.max_steps=2 > "$tmp/log" 2>&1 \
   && [ -f "$tmp/r3/last/model.safetensors" ] && grep -q "stopped (train.max_steps)" "$tmp/log"; then ok; else bad "max_steps run: $(tail -3 "$tmp/log")"; fi
expect_error "existing run" "--resume" -- "$train" "$src/configs/mnist.json" "${tiny[@]}" --set output_dir="$tmp/r3"

# SIGTERM mid-run: the step finishes, a checkpoint is written, exit 0.
"$train" "$src/configs/mnist.json" "${tiny[@]}" --set sampler.steps=200 --set output_dir="$tmp/r4" > "$tmp/log4" 2>&1 &
pid=$!
for _ in $(seq 100); do grep -q "^total params" "$tmp/log4" 2>/dev/null && break; sleep 0.1; done
sleep 0.5
kill -TERM "$pid"; wait "$pid"; rc=$?
if [ "$rc" -eq 0 ] && [ -f "$tmp/r4/last/train_state.safetensors" ] && grep -q "stopped (signal)" "$tmp/log4"; then ok
else bad "SIGTERM: rc=$rc $(tail -2 "$tmp/log4")"; fi

echo "cli_train: $pass passed, $fail failed"
[ "$fail" -eq 0 ]

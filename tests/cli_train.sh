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
  if [ "$rc" -ne 0 ] && [ "$lines" -eq 1 ] && grep -qF -- "$pattern" "$tmp/err"; then ok
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

# --resume with an empty path is an error, not a fresh start; a refused resume (another network) leaves the
# run folder as it was, config.json included.
expect_error "empty --resume" "--resume" -- "$train" "$src/configs/mnist.json" "${tiny[@]}" --set output_dir="$tmp/r5" --resume ""
[ ! -e "$tmp/r5" ] && ok || bad "empty --resume created $tmp/r5"
before=$(cd "$tmp/r3" && find . -type f -exec md5sum {} + | sort)
expect_error "refused resume" "model.channels is [4,8] in the checkpoint but [4,16] now" -- "$train" "$src/configs/mnist.json" \
  "${tiny[@]}" --set output_dir="$tmp/r3" --set model.channels=[4,16] --set train.max_steps=4 --resume "$tmp/r3/last"
[ "$(cd "$tmp/r3" && find . -type f -exec md5sum {} + | sort)" = "$before" ] && ok || bad "a refused resume changed $tmp/r3"

# The recovery recipe: a run that blows up stops with exit 3 and keeps only what passed the guard; resumed
# from there with a lower learning rate it finishes, and the new rate is what it trains with.
"$train" "$src/configs/mnist.json" "${tiny[@]}" --set output_dir="$tmp/r6" --set train.lr=0.1 \
  --set train.checkpoint_every=1 --set train.divergence.max_abs_f=20 > "$tmp/log6" 2>&1; rc=$?
if [ "$rc" -eq 3 ] && grep -q "the last good checkpoint is $tmp/r6/last" "$tmp/log6"; then ok; else bad "divergence: rc=$rc $(tail -3 "$tmp/log6")"; fi
"$train" "$src/configs/mnist.json" "${tiny[@]}" --set output_dir="$tmp/r6" --set train.lr=0.001 \
  --set train.checkpoint_every=1 --set train.divergence.max_abs_f=20 --resume "$tmp/r6/last" > "$tmp/log7" 2>&1; rc=$?
if [ "$rc" -eq 0 ] && grep -q "train.lr 0.1 -> 0.001" "$tmp/log7" && grep -q '"lr": 0.001' "$tmp/r6/config.json" \
   && python3 -c "
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
steps = [r for r in recs if r['event'] == 'step']
resume = [r for r in recs if r['event'] == 'resume'][-1]
assert resume['changed']['train.lr'] == [0.1, 0.001], resume
assert all(r['lr'] == 0.001 for r in steps if r['step'] > resume['step']), steps
assert recs[-1]['event'] == 'stopped' and recs[-1]['step'] == 40, recs[-1]
" "$tmp/r6/metrics.jsonl"; then ok; else bad "resume with a lower lr: rc=$rc $(tail -3 "$tmp/log7")"; fi
grep -q "internal error" "$tmp/log6" "$tmp/log7" && bad "internal error in the recovery logs" || ok

# SIGTERM mid-run: the step finishes, a checkpoint is written, exit 0.
"$train" "$src/configs/mnist.json" "${tiny[@]}" --set sampler.steps=200 --set output_dir="$tmp/r4" > "$tmp/log4" 2>&1 &
pid=$!
for _ in $(seq 100); do grep -q "^total params" "$tmp/log4" 2>/dev/null && break; sleep 0.1; done
sleep 0.5
kill -TERM "$pid"; wait "$pid"; rc=$?
if [ "$rc" -eq 0 ] && [ -f "$tmp/r4/last/train_state.safetensors" ] && grep -q "stopped (signal)" "$tmp/log4"; then ok
else bad "SIGTERM: rc=$rc $(tail -2 "$tmp/log4")"; fi

# A second SIGTERM while the first one's step is still running exits at once, without a checkpoint.
"$train" "$src/configs/mnist.json" "${tiny[@]}" --set sampler.steps=100000000 --set output_dir="$tmp/r8" > "$tmp/log8" 2> "$tmp/err8" &
pid=$!
for _ in $(seq 100); do grep -q "^total params" "$tmp/log8" 2>/dev/null && break; sleep 0.1; done
sleep 0.3
kill -TERM "$pid"; sleep 0.3; kill -TERM "$pid"
for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; bad "second SIGTERM: still running 5 s later"
else wait "$pid"; rc=$?
  if [ "$rc" -eq 143 ] && grep -q "second SIGINT/SIGTERM: exiting now, without a checkpoint" "$tmp/err8"; then ok
  else bad "second SIGTERM: rc=$rc $(cat "$tmp/err8")"; fi
fi

# The config file is the run folder's own config.json: a run that would replace the user's text with its resolved
# config (defaults, --set values) is refused before it writes anything; the run's own config.json, written by
# r3 above, resumes with a --set change.
mkdir -p "$tmp/own"
printf '{"output_dir": "%s", "data": {"dir": "%s", "batch_size": 16}, "model": {"channels": [4, 8]}}\n' \
  "$tmp/own" "$tmp/data" > "$tmp/own/config.json"
cp "$tmp/own/config.json" "$tmp/own.copy"
expect_error "config in its own output_dir" "is this run's own $tmp/own/config.json" -- "$train" "$tmp/own/config.json" \
  --set train.lr=5 --set backend=cpu
cmp -s "$tmp/own/config.json" "$tmp/own.copy" && [ "$(ls "$tmp/own")" = config.json ] && ok \
  || bad "a refused run changed $tmp/own: $(ls "$tmp/own")"
"$train" "$tmp/r3/config.json" --set train.max_steps=3 --resume "$tmp/r3/last" > "$tmp/log_own" 2>&1 \
  && grep -q '"max_steps": 3' "$tmp/r3/config.json" && ok || bad "resume with the run's own config.json: $(tail -2 "$tmp/log_own")"
# ... also one an older build wrote, without the keys added since (cuda.chain here)
sed -i '/^    "chain": "auto",$/d' "$tmp/r3/config.json"
grep -q '"chain"' "$tmp/r3/config.json" && bad "the test could not drop cuda.chain from $tmp/r3/config.json"
"$train" "$tmp/r3/config.json" --set train.max_steps=4 --resume "$tmp/r3/last" > "$tmp/log_own" 2>&1 \
  && grep -q '"max_steps": 4' "$tmp/r3/config.json" && ok || bad "resume with an older config.json: $(tail -2 "$tmp/log_own")"

# Command lines and inputs that are not what ebm_train reads: one line each, no hang, no unbounded read.
expect_error "an empty CONFIG" "CONFIG is empty" -- "$train" ""
expect_error "a second positional" "unexpected argument 'extra.json'" -- "$train" "$src/configs/mnist.json" extra.json
"$train" -h > "$tmp/out" 2>&1 && grep -q "^usage: ebm_train" "$tmp/out" && ok || bad "-h: $(head -2 "$tmp/out")"
expect_error "/dev/zero as the config" "/dev/zero: longer than 16 MiB" -- timeout 60 "$train" /dev/zero
"$train" /dev/stdin "${tiny[@]}" --set output_dir="$tmp/stdin" --set train.max_steps=1 < "$src/configs/mnist.json" \
  > "$tmp/log_stdin" 2>&1 && [ -f "$tmp/stdin/last/model.safetensors" ] && ok || bad "config on stdin: $(tail -2 "$tmp/log_stdin")"
ln -s "$tmp/nowhere/run" "$tmp/dangling"
expect_error "output_dir a dangling link" "is a symbolic link to $tmp/nowhere/run, which does not exist" -- \
  "$train" "$src/configs/mnist.json" "${tiny[@]}" --set output_dir="$tmp/dangling"

# A flag given twice is an error, not the last one silently winning.
expect_error "repeated --resume" "option --resume given twice" -- "$train" "$src/configs/mnist.json" "${tiny[@]}" \
  --set output_dir="$tmp/r9" --resume "$tmp/a" --resume "$tmp/b"

echo "cli_train: $pass passed, $fail failed"
[ "$fail" -eq 0 ]

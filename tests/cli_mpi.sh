#!/usr/bin/env bash
# Data-parallel ebm_train under mpirun (Open MPI), on the CPU: a 2-rank run against the 1-rank run of the same
# global batch, exact resume on 2 ranks, the error for a resume on another number of ranks, SIGTERM on one
# rank, and a rank killed or hung mid-run ending the job with a clear message in bounded time.
#   bash tests/cli_mpi.sh BUILD_DIR SOURCE_DIR
# Without mpirun (apt package openmpi-bin; scripts/setup.sh installs it) or an ebm_train built with MPI, it
# says so and exits 77, which CTest reports as skipped: nothing counts as passed.
set -u
build=$1 src=$2
train="$build/ebm_train"
if ! command -v mpirun > /dev/null; then
  echo "cli_mpi: skipped: no mpirun here (apt package openmpi-bin; scripts/setup.sh installs it)"
  exit 77
fi
if ! ldd "$train" 2> /dev/null | grep -q "libmpi"; then
  echo "cli_mpi: skipped: $train was built without MPI (libopenmpi-dev missing at configure time)"
  exit 77
fi
tmp=$(mktemp -d)
pid="" rank1=""
# Ends what launch() started and is still running: mpirun while it is this shell's job, rank 1 while mpirun is
# its parent (so a pid reused by another process after they exit is never touched).
stop_ours() {
  [ -n "$pid" ] || return 0
  if jobs -p | grep -qx "$pid"; then
    if [ -n "$rank1" ] && [ "$(ps -o ppid= -p "$rank1" 2> /dev/null | tr -d ' ')" = "$pid" ]; then
      kill -CONT "$rank1" 2> /dev/null
      kill -KILL "$rank1" 2> /dev/null
    fi
    kill -KILL "$pid" 2> /dev/null
    wait "$pid" 2> /dev/null
  fi
  pid="" rank1=""
}
trap 'stop_ours; rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

# One core's worth of threads per rank, no binding (mpirun binds each rank to one core by default), and no
# cross-memory-attach, which containers often forbid.
export OMP_NUM_THREADS=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
mpi=(mpirun --allow-run-as-root --oversubscribe --bind-to none)

python3 - "$tmp/data" <<'PY'
import gzip, os, random, struct, sys
d = sys.argv[1]; os.makedirs(d, exist_ok=True); random.seed(0)
for name, n in (("train-images-idx3-ubyte.gz", 40), ("t10k-images-idx3-ubyte.gz", 16)):
    with gzip.open(os.path.join(d, name), "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, 28, 28) + bytes(random.randrange(256) for _ in range(n * 784)))
PY
# Global batch 16 over 40 images: batches of 16, 16 and a partial 8 (4 + 4 on two ranks). reinit_prob 1: every
# fake row fresh noise, so the 2-rank and 1-rank buffer draws coincide and the maths says the runs are equal.
tiny=(--set data.dir="$tmp/data" --set model.channels=[4,8] --set sampler.steps=3 --set buffer.capacity=64
      --set buffer.initial=16 --set buffer.reinit_prob=1 --set generate.n=4 --set generate.steps=2 --set backend=cpu)
cfg="$src/configs/mnist.json"

# --- 1. two ranks of 8 against one rank of 16: 5 steps, across the partial batch and the epoch boundary ---
"$train" "$cfg" "${tiny[@]}" --set data.batch_size=16 --set train.max_steps=5 --set output_dir="$tmp/one" \
  > "$tmp/one.log" 2>&1 || bad "1-rank run: $(tail -3 "$tmp/one.log")"
"${mpi[@]}" -np 2 "$train" "$cfg" "${tiny[@]}" --set data.batch_size=8 --set train.max_steps=5 \
  --set output_dir="$tmp/two" > "$tmp/two.log" 2>&1 || bad "2-rank run: $(tail -3 "$tmp/two.log")"
# Values, not bytes: the two runs add the same float32 terms in another order (rows split over ranks, then
# the all-reduce), so parameters agree to ulps (observed ≤ 2e-8), not bit for bit. Tolerances: parameters
# 1e-6 absolute (Adam's normalised step turns ulp changes of g into ulp changes of θ, save for |g| ≲ ε where
# a step can move by up to lr = 1e-4; none such here), Adam moments 1e-6, epoch sums 1e-6, buffer images 1e-5
# (three Langevin steps of size 10 on gradients ulps apart). Exact: counters, lr, seed, and every rank's RNG
# state equal to the 1-rank run's (each rank advances every stream past the global draw).
if python3 - "$tmp/one/last" "$tmp/two/last" > "$tmp/cmp.out" 2>&1 <<'PY'
import json, struct, sys
def load(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h, data, out = json.loads(b[8:8 + n]), b[8 + n:], {}
    for k, v in h.items():
        if k != "__metadata__":
            f = {"F32": "f", "F64": "d", "I64": "q", "U64": "Q"}[v["dtype"]]
            s, e = v["data_offsets"]
            out[k] = struct.unpack("<%d%s" % ((e - s) // struct.calcsize(f), f), data[s:e])
    return out
one, two = sys.argv[1], sys.argv[2]
bad = []
def close(name, x, y, tol):
    d = max((abs(p - q) for p, q in zip(x, y)), default=0.0)
    if len(x) != len(y) or d > tol:
        bad.append(f"{name}: {len(x)} vs {len(y)} values, max |diff| {d:.3g} > {tol}")
ma, mb = load(one + "/model.safetensors"), load(two + "/model.safetensors")
if sorted(ma) != sorted(mb):
    bad.append(f"model tensors differ: {sorted(ma)} vs {sorted(mb)}")
for k in ma:
    close(k, ma[k], mb.get(k, ()), 1e-6)
a, b = load(one + "/train_state.safetensors"), load(two + "/train_state.safetensors")
for k in ("adam.m", "adam.v"):
    close(k, a[k], b[k], 1e-6)
close("epoch_sums", a["epoch_sums"], b["epoch_sums"], 1e-6)
for k in ("adam.t", "counters", "lr", "seed"):
    if a[k] != b[k]:
        bad.append(f"{k}: {a[k]} vs {b[k]}")
if b.get("world_size") != (2,):
    bad.append(f"world_size: {b.get('world_size')}")
for r in (0, 1):
    if b.get(f"rng.state.rank{r}") != a["rng.state"]:
        bad.append(f"rng.state.rank{r} {b.get(f'rng.state.rank{r}')} != 1-rank {a['rng.state']}")
# The 1-rank buffer is the shards' rows interleaved, 8 (= the per-rank batch and initial share) at a time.
img, rows = 1024, 8 * 1024
s0, s1 = b["buffer.rank0"], b["buffer.rank1"]
rebuilt = []
for g in range(len(s0) // rows):
    rebuilt += s0[g * rows:(g + 1) * rows] + s1[g * rows:(g + 1) * rows]
close("buffer (shards interleaved)", a["buffer"], rebuilt, 1e-5)
print("\n".join(bad) if bad else "ok")
PY
then
  [ "$(tail -n 1 "$tmp/cmp.out")" = ok ] && ok || bad "2 ranks vs 1 rank: $(cat "$tmp/cmp.out")"
else
  bad "comparison script: $(tail -3 "$tmp/cmp.out")"
fi
grep -q "data-parallel: 2 ranks, global batch 16" "$tmp/two.log" && ok || bad "2-rank run does not say its layout"
[ "$(grep -c '"event":"stopped"' "$tmp/two/metrics.jsonl")" -eq 1 ] && ok || bad "metrics.jsonl: not one writer"

# --- 2. exact resume on 2 ranks: stopped at step 2, resumed to 5 = the straight run, bit for bit ---
"${mpi[@]}" -np 2 "$train" "$cfg" "${tiny[@]}" --set data.batch_size=8 --set train.max_steps=2 \
  --set output_dir="$tmp/part" > "$tmp/part.log" 2>&1 || bad "2-rank run to step 2: $(tail -3 "$tmp/part.log")"
"${mpi[@]}" -np 2 "$train" "$cfg" "${tiny[@]}" --set data.batch_size=8 --set train.max_steps=5 \
  --set output_dir="$tmp/part" --resume "$tmp/part/last" > "$tmp/part2.log" 2>&1 \
  || bad "2-rank resume: $(tail -3 "$tmp/part2.log")"
for f in model.safetensors train_state.safetensors; do
  cmp -s "$tmp/two/last/$f" "$tmp/part/last/$f" && ok || bad "2-rank resume: $f differs from the straight run's"
done

# --- 3. resume on another number of ranks: one clear error, checkpoint untouched ---
before=$(md5sum < "$tmp/two/last/train_state.safetensors")
"$train" "$cfg" "${tiny[@]}" --set data.batch_size=16 --set train.max_steps=6 --set output_dir="$tmp/two" \
  --resume "$tmp/two/last" > "$tmp/r1.out" 2> "$tmp/r1.err"; rc=$?
if [ "$rc" -ne 0 ] && [ "$(wc -l < "$tmp/r1.err")" -eq 1 ] && grep -q "written by a run on 2 ranks" "$tmp/r1.err" \
   && grep -q "this run has 1 rank" "$tmp/r1.err" && grep -q "mpirun -np 2" "$tmp/r1.err"; then ok
else bad "resume with 1 rank from 2: rc=$rc $(cat "$tmp/r1.err")"; fi
[ "$(md5sum < "$tmp/two/last/train_state.safetensors")" = "$before" ] && ok || bad "refused resume changed the checkpoint"

# A run in the background, long enough to be interrupted; sets $pid (mpirun) and $rank1 (rank 1's pid).
launch() {
  local name=$1; shift
  "${mpi[@]}" -np 2 "$train" "$cfg" "${tiny[@]}" --set data.batch_size=8 --set sampler.steps=300 \
    --set train.epochs=1000 --set output_dir="$tmp/$name" "$@" > "$tmp/$name.log" 2>&1 &
  pid=$!
  rank1=""
  for _ in $(seq 200); do
    rank1=$(sed -n 's/.*rank 1 of 2 (local rank 1) on .*, pid \([0-9]*\).*/\1/p' "$tmp/$name.log" | head -n 1)
    [ -n "$rank1" ] && grep -q "^total params" "$tmp/$name.log" && break
    sleep 0.1
  done
  sleep 1  # a few steps in
}
# wait_bounded PID SECONDS: its exit status, or 124 after SECONDS.
wait_bounded() {
  local p=$1 limit=$2
  for _ in $(seq $((limit * 10))); do
    kill -0 "$p" 2> /dev/null || { wait "$p"; return $?; }
    sleep 0.1
  done
  return 124
}

# --- 4. SIGTERM to rank 1 alone: every rank stops after the same step, rank 0 checkpoints, exit 0 ---
launch sigterm
if [ -n "$rank1" ]; then
  kill -TERM "$rank1"
  wait_bounded "$pid" 60; rc=$?
  if [ "$rc" -eq 0 ] && grep -q "stopped (signal)" "$tmp/sigterm.log" && [ -f "$tmp/sigterm/last/train_state.safetensors" ] \
     && grep -q "rank 1 of 2\]: SIGINT/SIGTERM: stopping every rank" "$tmp/sigterm.log"; then ok
  else bad "SIGTERM on rank 1: rc=$rc $(tail -3 "$tmp/sigterm.log")"; fi
else
  bad "SIGTERM run: rank 1's pid never showed: $(tail -3 "$tmp/sigterm.log")"
fi
stop_ours

# --- 5. rank 1 killed: the job ends within 60 s, non-zero, saying which rank died ---
launch killed
if [ -n "$rank1" ]; then
  t0=$(date +%s)
  kill -KILL "$rank1"
  wait_bounded "$pid" 60; rc=$?
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && grep -q "rank 1 .*exited on signal 9" "$tmp/killed.log"; then ok
  else bad "kill -9 rank 1: rc=$rc $(tail -5 "$tmp/killed.log")"; fi
  echo "note: kill -9 of rank 1: the job ended after $(($(date +%s) - t0)) s"
else
  bad "kill run: rank 1's pid never showed: $(tail -3 "$tmp/killed.log")"
fi
stop_ours

# --- 6. rank 1 hung (SIGSTOP): rank 0's collective times out (train.comm_timeout_s) and ends the job ---
launch hung --set train.comm_timeout_s=3
if [ -n "$rank1" ]; then
  t0=$(date +%s)
  kill -STOP "$rank1"
  wait_bounded "$pid" 60; rc=$?
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] \
     && grep -q "rank 0 of 2\]: .* did not complete within 3 s (train.comm_timeout_s)" "$tmp/hung.log"; then ok
  else bad "hung rank 1: rc=$rc $(tail -5 "$tmp/hung.log")"; fi
  echo "note: SIGSTOP of rank 1: the job ended after $(($(date +%s) - t0)) s (timeout 3 s)"
else
  bad "hang run: rank 1's pid never showed: $(tail -3 "$tmp/hung.log")"
fi
stop_ours

echo "cli_mpi: $pass passed, $fail failed"
[ "$fail" -eq 0 ]

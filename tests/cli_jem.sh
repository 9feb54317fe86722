#!/usr/bin/env bash
# End to end, a JEM checkpoint (train.objective "jem") through the tools: ebm_train's epoch line, ebm_sample
# --class (one class, all classes, bad values), ebm_eval's "jem" measures and --class-conditional agreement,
# ebm_score's three AUROCs, and one clear line plus a non-zero exit for each misuse — on a labelled data set made
# here (tests/cli_eval.sh's glyphs: a bright block whose place is the class) and, as the unfamiliar set, noise.
#   bash tests/cli_jem.sh <build_dir> <source_dir>
set -u
build=$(cd "${1:?usage: cli_jem.sh BUILD_DIR SOURCE_DIR}" && pwd)
src=$(cd "${2:?usage: cli_jem.sh BUILD_DIR SOURCE_DIR}" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ebm_cli_jem.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
. "$src/tests/lib/cli_checks.sh"

python3 - "$tmp/glyphs" "$tmp/noise" <<'PY'
import gzip, os, random, struct, sys
r = random.Random(7)
def write(d, prefix, n, glyph):
    os.makedirs(d, exist_ok=True)
    imgs, labs = bytearray(), bytearray()
    for i in range(n):
        k = i % 10; px = bytearray(r.randrange(41 if glyph else 256) for _ in range(784))
        if glyph:
            x0, y0 = 2 + 5 * (k % 5) + r.randrange(3) - 1, 4 + 12 * (k // 5) + r.randrange(3) - 1
            for y in range(y0, y0 + 8):
                for x in range(x0, x0 + 4): px[y * 28 + x] = 255
        imgs += px; labs.append(k)
    with gzip.open(f"{d}/{prefix}-images-idx3-ubyte.gz", "wb") as f: f.write(struct.pack(">4I", 0x803, n, 28, 28) + imgs)
    with gzip.open(f"{d}/{prefix}-labels-idx1-ubyte.gz", "wb") as f: f.write(struct.pack(">2I", 0x801, n) + labs)
write(sys.argv[1], "train", 400, True); write(sys.argv[1], "t10k", 100, True); write(sys.argv[2], "t10k", 100, False)
PY

tiny=(--backend cpu --set data.dir="$tmp/glyphs" --set model.channels=[4,8] --set sampler.steps=3 --set data.batch_size=50
      --set buffer.capacity=100 --set buffer.initial=50 --set generate.steps=5)
echo "== a tiny JEM checkpoint"
if "$build/ebm_train" "$src/configs/mnist.json" "${tiny[@]}" --set output_dir="$tmp/jem" --set model.outputs=10 \
     --set train.objective=jem --set train.epochs=2 >"$tmp/train.log" 2>&1 && grep -q " - ce: .* - acc: " "$tmp/train.log"; then
  ok "ebm_train: the epoch line holds ce and acc"
else
  bad "ebm_train jem" "$(tail -5 "$tmp/train.log")"
fi
"$build/ebm_train" "$src/configs/mnist.json" "${tiny[@]}" --set output_dir="$tmp/cd" --set train.epochs=1 >/dev/null 2>&1

echo "== ebm_sample --class"
sample=("$build/ebm_sample" --checkpoint "$tmp/jem/last" --backend cpu --steps 3)
check "one class for every chain" "${sample[@]}" --n 4 --class 3 --npy "$tmp/c3.npy" --out "$tmp/c3.png"
check "each class in turn" "${sample[@]}" --n 20 --class all --npy "$tmp/all.npy" --out "$tmp/all.png"
"${sample[@]}" --n 4 --npy "$tmp/u.npy" --out "$tmp/u.png" >/dev/null 2>&1
[ "$(stat -c %s "$tmp/c3.npy")" = "$(stat -c %s "$tmp/u.npy")" ] && ! cmp -s "$tmp/c3.npy" "$tmp/u.npy" &&
  ok "a class changes the chains (same noise, another energy)" || bad "--class 3 gives the unconditional samples"
expect_fail "--class beyond the classes" "classes 0 to 9" "${sample[@]}" --class 10
expect_fail "--class not a number" "--class expects" "${sample[@]}" --class three
expect_fail "--class of an energy net" "one output per class" "$build/ebm_sample" --checkpoint "$tmp/cd/last" --class 1

echo "== buffer.per_class: a ring per class, and ebm_sample --init buffer"
if "$build/ebm_train" "$src/configs/mnist.json" "${tiny[@]}" --set output_dir="$tmp/rings" --set model.outputs=10 \
     --set train.objective=jem --set buffer.per_class=true --set train.epochs=1 >"$tmp/rings.log" 2>&1; then
  ok "ebm_train jem with buffer.per_class"
else
  bad "ebm_train buffer.per_class" "$(tail -5 "$tmp/rings.log")"
fi
rings=("$build/ebm_sample" --checkpoint "$tmp/rings/last" --backend cpu --steps 0 --noise 0 --init buffer)
if "${rings[@]}" --n 3 --class 4 --npy "$tmp/r4.npy" --out "$tmp/r4.png" >"$tmp/r4.log" 2>&1 &&
   grep -q "from the replay buffer (a ring per class)" "$tmp/r4.log" &&
   python3 - "$tmp/rings/last/train_state.safetensors" "$tmp/r4.npy" <<'PY'
import json, struct, sys
raw = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
head = json.loads(raw[8:8 + n]); body = raw[8 + n:]
def tensor(name, fmt, size):
    e = head[name]; a, b = e["data_offsets"]
    return list(struct.unpack("<%d%s" % ((b - a) // size, fmt), body[a:b])), e["shape"]
images, shape = tensor("buffer", "f", 4)
classes, _ = tensor("buffer.classes", "i", 4)
img = shape[1] * shape[2] * shape[3]
ring4 = [i for i, y in enumerate(classes) if y == 4]
want = [images[i * img:(i + 1) * img] for i in reversed(ring4[-3:])]  # ring 4's newest three, newest first
npy = open(sys.argv[2], "rb").read()
hl = struct.unpack("<H", npy[8:10])[0]
got = list(struct.unpack("<%df" % (3 * img), npy[10 + hl:]))
assert [got[k * img:(k + 1) * img] for k in range(3)] == want, "not class 4's ring, newest first"
PY
then ok "--init buffer --class 4 --steps 0: class 4's ring, newest first"
else bad "--init buffer --class 4" "$(tail -3 "$tmp/r4.log")"; fi
check "--init buffer of a run with one ring" "$build/ebm_sample" --checkpoint "$tmp/jem/last" --backend cpu --steps 2 \
  --init buffer --n 4 --class all --npy "$tmp/b.npy" --out "$tmp/b.png"
expect_fail "--init buffer with more chains than a ring holds" "chains of class 0" "${rings[@]}" --n 400 --class 0
mkdir -p "$tmp/model_only" && cp "$tmp/rings/last/model.safetensors" "$tmp/rings/last/config.json" "$tmp/model_only/"
expect_fail "--init buffer of a checkpoint without train_state" "holds no replay buffer" "$build/ebm_sample" \
  --checkpoint "$tmp/model_only" --init buffer
expect_fail "buffer.per_class with contrastive divergence" "buffer.per_class" "$build/ebm_train" "$src/configs/mnist.json" \
  "${tiny[@]}" --set output_dir="$tmp/bad" --set buffer.per_class=true

echo "== ebm_eval: the model's own measures and --class-conditional"
quick=(--classifier-images 3200 --backend cpu --n 20 --steps 5)
if "$build/ebm_eval" --checkpoint "$tmp/jem/last" "${quick[@]}" --class-conditional --ood "$tmp/noise" >"$tmp/eval.json" 2>"$tmp/eval.err" &&
   python3 - "$tmp/eval.json" <<'PY'
import json, math, sys
d = json.loads(open(sys.argv[1]).read())
j = d["jem"]
assert j["n_test"] == 100 and j["n_ood"] == 100, j
for k in ("accuracy", "ece", "auroc_energy", "auroc_max_prob", "auroc_grad_norm"):
    assert 0 <= j[k] <= 1, (k, j[k])
assert d["class_conditional"] is True and 0 <= d["class_agreement"] <= 1
per = d["class_agreement_per_class"]
assert len(per) == 10 and all(0 <= a <= 1 for a in per), per  # 20 chains: two asked of each class
assert abs(sum(per) / 10 - d["class_agreement"]) < 1e-9
PY
then ok "ebm_eval --class-conditional --ood: jem, class_agreement and its per-class list"
else bad "ebm_eval jem" "$(cat "$tmp/eval.err" "$tmp/eval.json" | tail -5)"; fi
# --compare: against the per-class model, the difference is the two ECEs' and its paired standard error > 0; against
# itself, 0 and 0
if "$build/ebm_eval" --checkpoint "$tmp/jem/last" "${quick[@]}" --compare "$tmp/rings/last" >"$tmp/cmp.json" 2>"$tmp/cmp.err" &&
   "$build/ebm_eval" --checkpoint "$tmp/jem/last" "${quick[@]}" --compare "$tmp/jem/last" >"$tmp/self.json" 2>>"$tmp/cmp.err" &&
   python3 - "$tmp/cmp.json" "$tmp/self.json" <<'PY'
import json, sys
j = json.loads(open(sys.argv[1]).read())["jem"]
c = j["compare"]
assert c["checkpoint"].endswith("rings/last"), c
assert abs(c["ece_difference"] - (j["ece"] - c["ece"])) < 1e-12, (j, c)
for k in ("accuracy", "mean_confidence", "ece", "ece_se", "ece_difference_se"):
    assert 0 <= c[k] <= 1, (k, c)
s = json.loads(open(sys.argv[2]).read())["jem"]
assert s["compare"]["ece_difference"] == 0 and s["compare"]["ece_difference_se"] == 0, s
assert s["compare"]["ece"] == s["ece"] and s["compare"]["ece_se"] == s["ece_se"], s
PY
then ok "ebm_eval --compare: the ECE difference and its paired standard error (0 and 0 against itself)"
else bad "ebm_eval --compare" "$(cat "$tmp/cmp.err" "$tmp/cmp.json" | tail -5)"; fi
expect_fail "--compare with an energy net" "not scored on the same terms" "$build/ebm_eval" --checkpoint "$tmp/jem/last" \
  "${quick[@]}" --compare "$tmp/cd/last"
expect_fail "--compare of an energy net" "comparing calibration needs" "$build/ebm_eval" --checkpoint "$tmp/cd/last" \
  "${quick[@]}" --compare "$tmp/jem/last"
expect_fail "--compare of nothing" "option --compare expects a value, got an empty one" "$build/ebm_eval" --checkpoint "$tmp/jem/last" \
  "${quick[@]}" --compare ""
mkdir -p "$tmp/fashion" && cp "$tmp/rings/last/model.safetensors" "$tmp/fashion/" &&
  python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); c["data"]["dataset"]="fashion-mnist"; json.dump(c,open(sys.argv[2],"w"))' \
    "$tmp/rings/last/config.json" "$tmp/fashion/config.json"
expect_fail "--compare with a model of another data set" "trained on fashion-mnist" "$build/ebm_eval" \
  --checkpoint "$tmp/jem/last" "${quick[@]}" --compare "$tmp/fashion"
expect_fail "--class-conditional of an energy net" "one output per class" "$build/ebm_eval" --checkpoint "$tmp/cd/last" \
  "${quick[@]}" --class-conditional
expect_fail "--ood that is not there" "t10k-images" "$build/ebm_eval" --checkpoint "$tmp/jem/last" "${quick[@]}" --ood "$tmp/nowhere"
expect_fail "--ood with --samples" "--ood measures a checkpoint's model" "$build/ebm_eval" --samples "$tmp/u.npy" --ood "$tmp/noise"

echo "== ebm_score: three AUROCs"
if "$build/ebm_score" --checkpoint "$tmp/jem/last" --data "$tmp/glyphs/t10k-images-idx3-ubyte.gz" \
     --ood "$tmp/noise/t10k-images-idx3-ubyte.gz" --hist "$tmp/h.png" --backend cpu >"$tmp/score.log" 2>&1 &&
   [ "$(grep -c '^AUROC (' "$tmp/score.log")" -eq 3 ]; then
  ok "energy, max softmax probability and input-gradient norm"
else bad "ebm_score jem" "$(cat "$tmp/score.log")"; fi
finish

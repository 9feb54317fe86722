#!/usr/bin/env bash
# End to end: ebm_eval on a tiny checkpoint trained on a labelled data set made here (a bright block whose
# place is the class, tests/test_support.hpp's glyphs): the JSON line's keys and ranges, the classifier
# trained once and then taken from its cache, --grid and --npy, --samples on real images scoring high, and
# one clear line plus a non-zero exit for each bad input.
#   bash tests/cli_eval.sh <build_dir> <source_dir>
set -u
build=$(cd "${1:?usage: cli_eval.sh BUILD_DIR SOURCE_DIR}" && pwd)
src=$(cd "${2:?usage: cli_eval.sh BUILD_DIR SOURCE_DIR}" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ebm_cli_eval.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
. "$src/tests/lib/cli_checks.sh"
eval_=$build/ebm_eval

python3 - "$tmp/glyphs" <<'PY'
import gzip, os, random, struct, sys
d = sys.argv[1]; os.makedirs(d)
r = random.Random(7)
def write(prefix, n):
    imgs, labs = bytearray(), bytearray()
    for i in range(n):
        k = i % 10; px = bytearray(r.randrange(41) for _ in range(784))
        x0, y0 = 2 + 5 * (k % 5) + r.randrange(3) - 1, 4 + 12 * (k // 5) + r.randrange(3) - 1
        for y in range(y0, y0 + 8):
            for x in range(x0, x0 + 4): px[y * 28 + x] = 255
        imgs += px; labs.append(k)
    with gzip.open(f"{d}/{prefix}-images-idx3-ubyte.gz", "wb") as f: f.write(struct.pack(">4I", 0x803, n, 28, 28) + imgs)
    with gzip.open(f"{d}/{prefix}-labels-idx1-ubyte.gz", "wb") as f: f.write(struct.pack(">2I", 0x801, n) + labs)
write("train", 400); write("t10k", 200)
PY

echo "== a tiny checkpoint"
"$build/ebm_train" "$src/configs/mnist.json" --backend cpu --set data.dir="$tmp/glyphs" --set output_dir="$tmp/run" \
  --set model.channels=[4,8] --set sampler.steps=3 --set train.epochs=1 --set data.batch_size=50 \
  --set buffer.capacity=100 --set buffer.initial=50 >"$tmp/train.log" 2>&1 || { cat "$tmp/train.log"; exit 1; }
quick=(--classifier-images 3200 --backend cpu)

echo "== sampling from the checkpoint"
if "$eval_" --checkpoint "$tmp/run/last" --n 40 --steps 5 "${quick[@]}" --grid "$tmp/grid.png" --npy "$tmp/s.npy" \
     >"$tmp/first.json" 2>"$tmp/first.err"; then
  ok "ebm_eval --checkpoint exits 0"
else
  bad "ebm_eval --checkpoint exits 0" "$(cat "$tmp/first.err")"
fi
check "stdout is one JSON line with the promised keys and ranges" python3 - "$tmp/first.json" <<'PY'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) == 1, lines
j = json.loads(lines[0])
for k in ("is", "fid", "class_hist", "mean_max_prob", "n", "classifier_accuracy", "steps", "step_size", "noise", "seed"):
    assert k in j, k
assert j["n"] == 40 and sum(j["class_hist"]) == 40 and len(j["class_hist"]) == 10, j
assert 1 - 1e-9 <= j["is"] <= 10 + 1e-9 and j["fid"] >= 0 and 0.1 <= j["mean_max_prob"] <= 1, j
assert j["steps"] == 5 and j["seed"] == 0, j
assert j["classifier_accuracy"] >= 0.9, j
PY
check "the classifier was trained and cached beside the data" bash -c "ls '$tmp'/glyphs/classifier-32-*/classifier.json"
check "its training was reported on stderr" grep -q "classifier: test accuracy" "$tmp/first.err"
check "--grid wrote a PNG" python3 -c "import sys; assert open(sys.argv[1],'rb').read(8) == b'\x89PNG\r\n\x1a\n'" "$tmp/grid.png"
check "--npy holds [40,1,32,32] float32" python3 - "$tmp/s.npy" <<'PY'
import ast, sys
d = open(sys.argv[1], "rb").read(); h = d[10:10 + int.from_bytes(d[8:10], "little")].decode()
m = ast.literal_eval(h); assert m["shape"] == (40, 1, 32, 32) and m["descr"] == "<f4", m
PY

"$eval_" --checkpoint "$tmp/run/last" --n 40 --steps 5 "${quick[@]}" >"$tmp/second.json" 2>"$tmp/second.err"
check "the second run takes the cached classifier (no training)" bash -c "! grep -q 'classifier: training' '$tmp/second.err'"
check "the same settings give the same figures" python3 - "$tmp/first.json" "$tmp/second.json" <<'PY'
import json, sys
a, b = (json.loads(open(p).read()) for p in sys.argv[1:])
for k in ("is", "fid", "class_hist", "mean_max_prob"): assert a[k] == b[k], (k, a[k], b[k])
PY

echo "== scoring given images"
"$eval_" --samples "$tmp/glyphs/train-images-idx3-ubyte.gz" --data "$tmp/glyphs" "${quick[@]}" >"$tmp/real.json" 2>"$tmp/real.err"
check "real images of every class: IS near 10, balanced histogram" python3 - "$tmp/real.json" <<'PY'
import json, sys
j = json.loads(open(sys.argv[1]).read())
assert j["n"] == 400 and j["is"] > 8.5 and min(j["class_hist"]) >= 30, j
PY

echo "== bad inputs: one line, non-zero exit"
expect_fail "neither --checkpoint nor --samples" "--checkpoint DIR" "$eval_"
expect_fail "both --checkpoint and --samples" "not both" "$eval_" --checkpoint "$tmp/run/last" --samples "$tmp/s.npy"
expect_fail "--n 1" "at least 2" "$eval_" --checkpoint "$tmp/run/last" --n 1
expect_fail "--n beyond generate.n's bound" "generate.n" "$eval_" --checkpoint "$tmp/run/last" --n 5000
expect_fail "--steps with --samples" "--steps" "$eval_" --samples "$tmp/s.npy" --steps 3
expect_fail "a checkpoint that is not there" "$tmp/nope" "$eval_" --checkpoint "$tmp/nope"
expect_fail "--grid that is not a .png" "--grid" "$eval_" --checkpoint "$tmp/run/last" --grid "$tmp/g.txt"
expect_fail "--backend bogus" "--backend" "$eval_" --checkpoint "$tmp/run/last" --backend bogus
mkdir "$tmp/nolabels" && cp "$tmp/glyphs/"*images* "$tmp/nolabels/"
expect_fail "a data set without labels" "label" "$eval_" --samples "$tmp/s.npy" --data "$tmp/nolabels" "${quick[@]}"
expect_fail "--classifier-images 0" "--classifier-images" "$eval_" --checkpoint "$tmp/run/last" --classifier-images 0
finish

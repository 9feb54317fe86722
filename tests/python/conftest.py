"""Shared fixtures of the Python module's tests: where the build is, tiny IDX data, tiny training settings.

ctest runs each tests/python/test_*.py with the module's interpreter, PYTHONPATH=<build>/python and
EBM_BUILD_DIR / EBM_SOURCE_DIR set (CMakeLists.txt); run by hand:
    EBM_BUILD_DIR=build PYTHONPATH=build/python /usr/bin/python3 -m pytest -q tests/python
"""
import gzip
import os
import pathlib
import random
import struct

import pytest

SOURCE_DIR = pathlib.Path(os.environ.get("EBM_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[2]))
BUILD_DIR = pathlib.Path(os.environ.get("EBM_BUILD_DIR", SOURCE_DIR / "build"))
MNIST_CONFIG = str(SOURCE_DIR / "configs" / "mnist.json")


def write_idx_images(path, n, seed, h=28, w=28):
    """n random uint8 images [n,h,w] as a gzip IDX file (magic 0x803), as MNIST's files are."""
    rng = random.Random(seed)
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">IIII", 0x803, n, h, w) + bytes(rng.randrange(256) for _ in range(n * h * w)))


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A tiny data set (64 training, 16 test images of 28x28 noise): enough for the engine's code paths."""
    d = tmp_path_factory.mktemp("data")
    write_idx_images(d / "train-images-idx3-ubyte.gz", 64, seed=0)
    write_idx_images(d / "t10k-images-idx3-ubyte.gz", 16, seed=1)
    return d


def tiny_overrides(data_dir, output_dir, **more):
    """Settings of a run of a few milliseconds a step on the CPU (as tests/cli_train.sh's), as a dict."""
    o = {
        "data.dir": str(data_dir), "data.batch_size": 16, "model.channels": [4, 8], "sampler.steps": 2,
        "buffer.capacity": 64, "buffer.initial": 16, "generate.n": 4, "generate.steps": 2, "backend": "cpu",
        "output_dir": str(output_dir), "train.epochs": 2, "train.log_every": 1,
    }
    o.update(more)
    return o


def as_set_flags(overrides):
    """The same settings as ebm_train's --set flags."""
    import json
    flags = []
    for k, v in overrides.items():
        flags += ["--set", f"{k}={v if isinstance(v, str) else json.dumps(v)}"]
    return flags

"""ebm_train's TensorBoard event files (tb/events.out.tfevents.*), read back as TensorBoard reads them.

Decodes every record with python3-protobuf (the classes protoc generated from host/io/tensorboard_event.proto
into the build folder) and checks both CRCs of every record with python3-crc32c: the file_version record,
that the scalars are metrics.jsonl's records (float32), one sample-grid image per epoch (the PNG of
samples/epoch_N.png) and the energy histograms; that a resume from an earlier checkpoint leaves each step
once per tag; and that train.tensorboard=false writes no tb/ and the same checkpoint bits.

Run by ctest (test py_test_tensorboard_events) as `python3 -m pytest`, with EBM_BUILD_DIR, EBM_SOURCE_DIR and
EBM_HAVE_TENSORBOARD set; it exits 77 (ctest: skipped) saying why where python3-protobuf or python3-crc32c is
missing. Debian: python3-protobuf python3-crc32c (scripts/setup.sh --test-tools).
"""

import importlib.util
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

SOURCE_DIR = Path(os.environ.get("EBM_SOURCE_DIR", Path(__file__).resolve().parents[2]))
BINARY_DIR = Path(os.environ.get("EBM_BUILD_DIR", SOURCE_DIR / "build"))
BUILD_HAS_TENSORBOARD = os.environ.get("EBM_HAVE_TENSORBOARD", "1") not in ("0", "", "FALSE", "OFF")
EBM_TRAIN = BINARY_DIR / "ebm_train"

# A tiny run: 64 training and 16 test images, batch 16 (4 steps an epoch), a 2-layer net, short chains.
TINY = ["--set", "data.batch_size=16", "--set", "model.channels=[4,8]", "--set", "sampler.steps=2",
        "--set", "buffer.capacity=64", "--set", "buffer.initial=16", "--set", "generate.n=4",
        "--set", "generate.steps=2", "--set", "backend=cpu", "--set", "train.log_every=1"]
TEST_IMAGES = 16


def _missing_modules():
    return [m for m in ("google.protobuf", "crc32c") if importlib.util.find_spec(m) is None]


@pytest.fixture(autouse=True, scope="module")
def _decoder_modules():
    """Exit 77 (ctest: skipped), saying why, where the decoding modules are missing (at run time: pytest.exit
    during collection would count as an error)."""
    if BUILD_HAS_TENSORBOARD and _missing_modules():
        pytest.exit(f"skipped: {sys.executable} lacks {', '.join(_missing_modules())} (Debian: python3-protobuf "
                    f"python3-crc32c; scripts/setup.sh --test-tools installs them)", returncode=77)


def _event_module(tmp_dir):
    """tensorboard_event_pb2: CMake's (build/python/host/io/), else protoc's output into tmp_dir."""
    generated = BINARY_DIR / "python" / "host" / "io"
    if not (generated / "tensorboard_event_pb2.py").exists():
        protoc = shutil.which("protoc")
        if protoc is None:
            pytest.skip(f"no {generated}/tensorboard_event_pb2.py and no protoc to make it")
        generated = Path(tmp_dir)
        subprocess.run([protoc, f"-I{SOURCE_DIR / 'host' / 'io'}", f"--python_out={generated}",
                        str(SOURCE_DIR / "host" / "io" / "tensorboard_event.proto")], check=True)
    spec = importlib.util.spec_from_file_location("tensorboard_event_pb2", generated / "tensorboard_event_pb2.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _masked_crc(data):
    import crc32c
    c = crc32c.crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_events(pb, tb_dir):
    """Every Event of every events.out.tfevents.* in tb_dir (files by name, records in order), both CRCs of
    each record checked; and the files."""
    files = sorted(Path(tb_dir).glob("events.out.tfevents.*"))
    events = []
    for path in files:
        data = path.read_bytes()
        at = 0
        first = True
        while at < len(data):
            assert len(data) - at >= 16, f"{path}: a torn record at byte {at}"
            (length,) = struct.unpack_from("<Q", data, at)
            (length_crc,) = struct.unpack_from("<I", data, at + 8)
            assert length_crc == _masked_crc(data[at:at + 8]), f"{path}: length CRC at byte {at}"
            payload = data[at + 12:at + 12 + length]
            assert len(payload) == length, f"{path}: a torn record at byte {at}"
            (data_crc,) = struct.unpack_from("<I", data, at + 12 + length)
            assert data_crc == _masked_crc(payload), f"{path}: data CRC at byte {at}"
            event = pb.Event()
            event.ParseFromString(payload)
            if first:
                assert event.WhichOneof("what") == "file_version", f"{path}: the first record is no file_version"
                assert event.file_version == "brain.Event:2"
                first = False
            else:
                assert event.WhichOneof("what") == "summary", f"{path}: record at byte {at}"
                events.append(event)
            at += 16 + length
    return events, files


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def metrics_records(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def expected_scalars(records):
    """{(tag, step): float32 value} of metrics.jsonl's step/epoch/eval records."""
    prefix = {"step": "train/", "epoch": "epoch/", "eval": "eval/"}
    want = {}
    for r in records:
        if r.get("event") not in prefix:
            continue
        for key, value in r.items():
            if key in ("event", "step", "epoch") or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            tag = prefix[r["event"]] + key
            assert (tag, r["step"]) not in want, f"metrics.jsonl holds {tag} at step {r['step']} twice"
            want[(tag, r["step"])] = f32(float(value))
    return want


def summary_values(events):
    """[(tag, step, Summary.Value)] of every value of every event."""
    return [(v.tag, e.step, v) for e in events for v in e.summary.value]


def png_size(png):
    """(width, height, channels) of a PNG's bytes, after checking that its IDAT inflates to its rows."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    at, idat, header = 8, b"", None
    while at < len(png):
        (n,) = struct.unpack_from(">I", png, at)
        kind = png[at + 4:at + 8]
        body = png[at + 8:at + 8 + n]
        assert struct.unpack_from(">I", png, at + 8 + n)[0] == zlib.crc32(kind + body), f"PNG chunk {kind} CRC"
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        at += 12 + n
    width, height, depth, color = header[0], header[1], header[2], header[3]
    channels = {0: 1, 2: 3}[color]
    assert depth == 8
    assert len(zlib.decompress(idat)) == height * (1 + width * channels)
    return width, height, channels


def train(args, check=True):
    proc = subprocess.run([str(EBM_TRAIN), str(SOURCE_DIR / "configs" / "mnist.json"), *args],
                          capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, f"ebm_train {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """64 training and 16 test random images as raw IDX (readable without zlib)."""
    import random
    d = tmp_path_factory.mktemp("data")
    rng = random.Random(0)
    for name, n in (("train-images-idx3-ubyte", 64), ("t10k-images-idx3-ubyte", TEST_IMAGES)):
        (d / name).write_bytes(struct.pack(">IIII", 0x803, n, 28, 28) + bytes(rng.randrange(256) for _ in range(n * 784)))
    return d


def tiny(data_dir, out, *more):
    return [*TINY, "--set", f"data.dir={data_dir}", "--set", f"output_dir={out}", *more]


needs_tensorboard = pytest.mark.skipif(not BUILD_HAS_TENSORBOARD,
                                       reason="this build writes no TensorBoard files (protobuf not found)")


@pytest.fixture(scope="module")
def pb(tmp_path_factory):
    return _event_module(tmp_path_factory.mktemp("pb2"))


@pytest.fixture(scope="module")
def two_epochs(data_dir, tmp_path_factory):
    """A 2-epoch run with TensorBoard on (the default), and the bytes of its last/ checkpoint."""
    run = tmp_path_factory.mktemp("runs") / "on"
    train(tiny(data_dir, run, "--set", "train.epochs=2"))
    last = {name: (run / "last" / name).read_bytes() for name in ("model.safetensors", "train_state.safetensors")}
    return run, last


def check_against_metrics(pb, run, epochs):
    """The events in run/tb/ are exactly what metrics.jsonl and samples/ hold."""
    events, files = read_events(pb, run / "tb")
    assert len(files) == 1, f"one event file expected, found {[f.name for f in files]}"
    name = files[0].name.split(".")
    assert name[:3] == ["events", "out", "tfevents"] and name[3].isdigit() and len(name[3]) >= 10
    values = summary_values(events)
    records = metrics_records(run)

    scalars = {}
    for tag, step, v in values:
        if v.WhichOneof("value") == "simple_value":
            assert (tag, step) not in scalars, f"{tag} at step {step} twice in tb/"
            scalars[(tag, step)] = v.simple_value
    want = expected_scalars(records)
    assert set(scalars) == set(want), (f"only in tb/: {sorted(set(scalars) - set(want))}; "
                                       f"only in metrics.jsonl: {sorted(set(want) - set(scalars))}")
    for key, value in want.items():
        assert scalars[key] == value, f"{key}: tb/ {scalars[key]} != metrics.jsonl {value}"
    tags = {tag for tag, _ in scalars}
    assert {"train/loss", "train/reg", "train/cdiv", "train/real", "train/fake", "train/lr",
            "train/ms_per_step"} <= tags
    assert {"epoch/loss", "epoch/cdiv", "epoch/val_cdiv", "epoch/val_real", "epoch/val_fake"} <= tags

    epoch_steps = {r["epoch"]: r["step"] for r in records if r["event"] == "epoch"}
    assert sorted(epoch_steps) == list(range(1, epochs + 1))
    images = [(step, v.image) for tag, step, v in values if v.WhichOneof("value") == "image"]
    assert [tag for tag, _, v in values if v.WhichOneof("value") == "image"] == ["samples"] * epochs
    assert sorted(step for step, _ in images) == sorted(epoch_steps.values()), "one sample grid per epoch end"
    step_epoch = {s: e for e, s in epoch_steps.items()}
    for step, image in images:
        png = image.encoded_image_string
        assert png_size(png) == (image.width, image.height, image.colorspace)
        assert png == (run / "samples" / f"epoch_{step_epoch[step]}.png").read_bytes(), \
            f"the image at step {step} is not samples/epoch_{step_epoch[step]}.png"

    for tag in ("energy/real", "energy/samples"):
        histos = [(step, v.histo) for t, step, v in values if t == tag]
        assert sorted(step for step, _ in histos) == sorted(epoch_steps.values()), f"{tag}: one per epoch end"
        for step, h in histos:
            assert h.num == sum(h.bucket) and len(h.bucket) == len(h.bucket_limit) > 0
            assert h.min <= h.max and h.bucket_limit[-1] == h.max
            assert h.min * h.num - 1e-6 <= h.sum <= h.max * h.num + 1e-6
            if tag == "energy/real":
                assert h.num == TEST_IMAGES  # the whole (16-image) test set
            else:
                assert 0 < h.num <= 64  # this run's replay buffer (buffer.capacity 64)
    return events


@needs_tensorboard
def test_events_hold_metrics_samples_and_energy_histograms(pb, two_epochs):
    run, _ = two_epochs
    check_against_metrics(pb, run, epochs=2)


@needs_tensorboard
def test_tensorboard_off_writes_no_tb_and_the_same_checkpoint_bits(data_dir, tmp_path, two_epochs):
    on, on_last = two_epochs
    off = tmp_path / "off"
    train(tiny(data_dir, off, "--set", "train.epochs=2", "--set", "train.tensorboard=false"))
    assert not (off / "tb").exists()
    for name, bits in on_last.items():
        assert (off / "last" / name).read_bytes() == bits, f"last/{name} differs with train.tensorboard on and off"


@needs_tensorboard
def test_resume_from_an_earlier_checkpoint_leaves_each_step_once(pb, data_dir, two_epochs):
    run, _ = two_epochs
    before = check_against_metrics(pb, run, epochs=2)
    epoch1_step = next(r["step"] for r in metrics_records(run) if r["event"] == "epoch" and r["epoch"] == 1)
    kept = [e.SerializeToString() for e in before if e.step <= epoch1_step]
    train(tiny(data_dir, run, "--set", "train.epochs=3") + ["--resume", str(run / "epoch_1")])
    after = check_against_metrics(pb, run, epochs=3)  # each (tag, step) once, equal to metrics.jsonl
    steps = sorted({r["step"] for r in metrics_records(run) if r["event"] == "step"})
    assert steps == list(range(1, steps[-1] + 1)) and steps[-1] == 3 * 4
    # What was written up to the checkpoint's step is still there, byte for byte, first in the file.
    assert [e.SerializeToString() for e in after[:len(kept)]] == kept


@pytest.mark.skipif(BUILD_HAS_TENSORBOARD, reason="this build writes TensorBoard files")
def test_build_without_protobuf_says_so_once_and_trains_on(data_dir, tmp_path):
    run = tmp_path / "run"
    proc = train(tiny(data_dir, run, "--set", "train.epochs=2"))
    lines = [line for line in proc.stderr.splitlines() if "writes no TensorBoard files" in line]
    assert len(lines) == 1, proc.stderr
    assert not (run / "tb").exists()
    assert (run / "last" / "model.safetensors").exists()

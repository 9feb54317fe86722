"""JEM from Python (train.objective "jem"): a Trainer trains one, Model.logits classifies, Model.sample(y=...) draws
a chosen class, and the same checkpoint gives the same bits as ebm_train and ebm_sample --class."""
import gzip
import pathlib
import struct
import subprocess

import numpy as np
import pytest

import ebm_engine
from conftest import BUILD_DIR, MNIST_CONFIG, as_set_flags, tiny_overrides, write_idx_images


@pytest.fixture(scope="module")
def labelled_data(tmp_path_factory):
    """64 training and 16 test images of noise with labels 0..9 in turn (IDX label files, magic 0x801)."""
    d = tmp_path_factory.mktemp("labelled")
    for split, n, seed in (("train", 64, 0), ("t10k", 16, 1)):
        write_idx_images(d / f"{split}-images-idx3-ubyte.gz", n, seed=seed)
        with gzip.open(d / f"{split}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(struct.pack(">II", 0x801, n) + bytes(i % 10 for i in range(n)))
    return d


def jem_overrides(data, out):
    return tiny_overrides(data, out, **{"model.outputs": 10, "train.objective": "jem", "train.epochs": 1})


@pytest.fixture(scope="module")
def jem_run(labelled_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("jem") / "run"
    ebm_engine.Trainer(MNIST_CONFIG, overrides=jem_overrides(labelled_data, out), verbose=False).run()
    return out


def test_the_trainer_equals_ebm_train_bit_for_bit(labelled_data, jem_run, tmp_path):
    cli = tmp_path / "cli"
    r = subprocess.run([str(BUILD_DIR / "ebm_train"), MNIST_CONFIG, *as_set_flags(jem_overrides(labelled_data, cli))],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    for f in ("model.safetensors", "train_state.safetensors"):
        assert (cli / "last" / f).read_bytes() == (jem_run / "last" / f).read_bytes(), f
    steps = [l for l in (jem_run / "metrics.jsonl").read_text().splitlines() if '"event":"step"' in l]
    assert steps and all('"ce":' in l and '"accuracy":' in l for l in steps)


def test_logits_classify_and_energy_is_their_negated_logsumexp(jem_run):
    m = ebm_engine.load(str(jem_run / "last"), backend="cpu")
    assert m.num_classes == 10
    x = m.sample(n=6, steps=2, seed=3)
    f = m.logits(x)
    assert f.shape == (6, 10) and f.dtype == np.float32
    top = f.max(axis=1, keepdims=True)
    lse = (top + np.log(np.exp(f - top).sum(axis=1, keepdims=True)))[:, 0]
    np.testing.assert_allclose(m.energy(x), -lse, rtol=1e-5, atol=1e-5)


def test_sample_y_equals_ebm_sample_class(jem_run, tmp_path):
    m = ebm_engine.load(str(jem_run / "last"), backend="cpu")
    x = m.sample(n=4, steps=3, seed=5, y=7)
    npy = tmp_path / "s.npy"
    r = subprocess.run([str(BUILD_DIR / "ebm_sample"), "--checkpoint", str(jem_run / "last"), "--n", "4", "--steps", "3",
                        "--seed", "5", "--class", "7", "--npy", str(npy), "--out", str(tmp_path / "s.png"),
                        "--backend", "cpu"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert np.array_equal(np.load(npy), x)
    # the class changes the chains; one class per chain in a sequence is the same as the scalar for all
    assert not np.array_equal(m.sample(n=4, steps=3, seed=5, y=2), x)
    assert np.array_equal(m.sample(n=4, steps=3, seed=5, y=[7, 7, 7, 7]), x)
    assert np.array_equal(m.sample(n=4, steps=3, seed=5, y=np.int64(7)), x)   # a numpy scalar is one class
    assert np.array_equal(m.sample(n=4, steps=3, seed=5, y=np.array(7)), x)   # so is a 0-d array
    assert np.array_equal(m.sample(n=4, steps=3, seed=5, y=np.full(4, 7)), x)
    assert np.array_equal(m.sample(n=4, steps=3, seed=5, y=np.full((4, 1), 7)), x)  # a column of labels: one per chain


@pytest.mark.parametrize("y, text", [(10, "classes run from 0 to 9"), (-1, "classes run from 0 to 9"),
                                     ([1, 2], "2 classes for 4 chains"), ("3", "got a string"),
                                     (1.5, "expected an integer"), (True, "got True"),
                                     (np.array([[1, 2], [3, 4]]), "got 2-D values")])
def test_bad_classes_raise_one_line(jem_run, y, text):
    m = ebm_engine.load(str(jem_run / "last"), backend="cpu")
    with pytest.raises(ValueError, match=text):
        m.sample(n=4, steps=1, y=y)


def test_an_energy_net_refuses_y_and_a_mismatched_objective_is_named(tiny_data, labelled_data, tmp_path):
    out = tmp_path / "cd"
    ebm_engine.Trainer(MNIST_CONFIG, overrides=tiny_overrides(tiny_data, out, **{"train.epochs": 1}), verbose=False).run()
    m = ebm_engine.load(str(out / "last"), backend="cpu")
    with pytest.raises(ValueError, match="one output per class"):
        m.sample(n=2, steps=1, y=0)
    with pytest.raises(ValueError, match='train.objective "cd"'):
        ebm_engine.Trainer(MNIST_CONFIG, overrides=tiny_overrides(labelled_data, tmp_path / "x", **{"model.outputs": 10}),
                           verbose=False)


def test_a_per_class_buffer_run_samples_each_class_from_its_ring_as_ebm_sample_does(labelled_data, tmp_path):
    out = tmp_path / "rings"
    overrides = {**jem_overrides(labelled_data, out), "buffer.per_class": True, "buffer.initial": 10}
    ebm_engine.Trainer(MNIST_CONFIG, overrides=overrides, verbose=False).run()
    m = ebm_engine.load(str(out / "last"), backend="cpu")
    x = m.sample(n=3, steps=2, seed=4, init="buffer", y=5)
    npy = tmp_path / "b.npy"
    r = subprocess.run([str(BUILD_DIR / "ebm_sample"), "--checkpoint", str(out / "last"), "--n", "3", "--steps", "2",
                        "--seed", "4", "--class", "5", "--init", "buffer", "--npy", str(npy), "--out",
                        str(tmp_path / "b.png"), "--backend", "cpu"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert np.array_equal(np.load(npy), x)
    # steps 0: the starts themselves, class 5's ring newest first, not class 6's
    s5 = m.sample(n=2, steps=0, noise=0, init="buffer", y=5)
    assert not np.array_equal(s5, m.sample(n=2, steps=0, noise=0, init="buffer", y=6))
    with pytest.raises(ValueError, match='a string must be "buffer"'):
        m.sample(n=2, init="buffers")

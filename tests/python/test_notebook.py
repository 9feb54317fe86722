"""docs/notebooks/mnist_ebm.ipynb runs headless, end to end, in its small setting (EBM_NOTEBOOK_SMALL=1).

CI has no data folder, so the test writes its own tiny MNIST-like (random strokes) and Fashion-like (filled
shapes) sets as gzip IDX files, points the notebook at them with its environment variables, executes a copy with
`python -m nbconvert --execute` (the committed notebook is never written), and reads the summary the notebook
writes (notebook_summary.json in its run folder). Skipped when nbconvert or ipykernel is not installed (Debian:
jupyter-nbconvert python3-ipykernel python3-nbformat python3-matplotlib); the ebm_engine module missing fails.
"""
import gzip
import hashlib
import importlib.util
import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

SOURCE = Path(os.environ.get("EBM_SOURCE_DIR") or Path(__file__).resolve().parents[2])
NOTEBOOK = SOURCE / "docs" / "notebooks" / "mnist_ebm.ipynb"
TIMEOUT_S = 240  # the whole execution; the small setting takes ~10 s on 2 cores

_missing = [m for m in ("nbconvert", "nbformat", "nbclient", "ipykernel", "matplotlib")
            if importlib.util.find_spec(m) is None]
pytestmark = pytest.mark.skipif(
    bool(_missing),
    reason=f"{', '.join(_missing)} not installed for {sys.executable} (Debian: jupyter-nbconvert python3-ipykernel "
           "python3-nbformat python3-matplotlib; scripts/setup.sh --test-tools installs them)")


# --- tiny IDX data sets ---

def _write_idx(path, array):
    array = np.ascontiguousarray(array, np.uint8)
    magic = 0x800 | array.ndim  # 0x803 images [N,28,28], 0x801 labels [N]
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(f">{1 + array.ndim}I", magic, *array.shape) + array.tobytes())


def _strokes(n, rng):
    """Digit-like images: 1-3 thick bright strokes on black, 28x28 uint8."""
    yy, xx = np.mgrid[0:28, 0:28].astype(np.float32)
    out = np.zeros((n, 28, 28), np.float32)
    for img in out:
        for _ in range(rng.integers(1, 4)):
            p0, p1 = rng.uniform(6, 22, 2), rng.uniform(6, 22, 2)
            d = p1 - p0
            t = np.clip(((xx - p0[0]) * d[0] + (yy - p0[1]) * d[1]) / max(float(d @ d), 1e-6), 0, 1)
            dist = np.hypot(xx - p0[0] - t * d[0], yy - p0[1] - t * d[1])
            np.maximum(img, np.clip(2.0 - dist, 0, 1), out=img)
    return (out * 255).astype(np.uint8)


def _shapes(n, rng):
    """Clothing-like images: a large filled, textured ellipse or rectangle, 28x28 uint8."""
    yy, xx = np.mgrid[0:28, 0:28].astype(np.float32)
    out = np.zeros((n, 28, 28), np.uint8)
    for img in out:
        cy, cx, ry, rx = rng.uniform(11, 17), rng.uniform(11, 17), rng.uniform(6, 12), rng.uniform(5, 11)
        inside = (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1) if rng.random() < 0.5 else \
                 ((abs(yy - cy) <= ry) & (abs(xx - cx) <= rx))
        img[inside] = rng.integers(60, 230, int(inside.sum()))
    return out


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    mnist, fashion = root / "mnist", root / "fashion-mnist"
    mnist.mkdir()
    fashion.mkdir()
    for split, n in (("train", 320), ("t10k", 96)):
        _write_idx(mnist / f"{split}-images-idx3-ubyte.gz", _strokes(n, rng))
        _write_idx(mnist / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
        _write_idx(fashion / f"{split}-images-idx3-ubyte.gz", _shapes(n, rng))
    return mnist, fashion


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    # One EBM_NOTEBOOK_OUT for both executions: the second is a re-run into a folder a run already uses.
    return tmp_path_factory.mktemp("runs")


def _module_dir():
    """The folder ebm_engine is imported from, or a failure: the module missing is a broken build, not a skip."""
    spec = importlib.util.find_spec("ebm_engine")
    if spec is not None and spec.origin:
        return str(Path(spec.origin).parent)
    d = Path(os.environ.get("EBM_BUILD_DIR") or SOURCE / "build") / "python"
    if list(d.glob("ebm_engine*.so")):
        return str(d)
    pytest.fail(f"the ebm_engine module is not importable (PYTHONPATH) and not in {d}: build it first")


def _execute(tmp_path, out_dir, mnist, fashion):
    """Runs a copy of the notebook; returns (executed notebook dict, summary dict, seconds)."""
    env = dict(os.environ, EBM_NOTEBOOK_SMALL="1", EBM_NOTEBOOK_MNIST=str(mnist), EBM_NOTEBOOK_FASHION=str(fashion),
               EBM_NOTEBOOK_OUT=str(out_dir), EBM_NOTEBOOK_BACKEND="cpu", PYDEVD_DISABLE_FILE_VALIDATION="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_module_dir(), os.environ.get("PYTHONPATH")) if p)
    before = {p.name for p in out_dir.iterdir()}
    t0 = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "nbconvert", "--to", "notebook", "--execute", str(NOTEBOOK),
         "--output-dir", str(tmp_path), "--output", "executed.ipynb",
         f"--ExecutePreprocessor.timeout={TIMEOUT_S}", "--ExecutePreprocessor.kernel_name=python3"],
        env=env, capture_output=True, text=True, timeout=TIMEOUT_S + 60)
    seconds = time.time() - t0
    assert proc.returncode == 0, f"the notebook failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
    executed = json.loads((tmp_path / "executed.ipynb").read_text())

    errors = [o for c in executed["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
              if o["output_type"] == "error"]
    assert not errors, f"error outputs: {[e['ename'] + ': ' + e['evalue'] for e in errors]}"
    unrun = [i for i, c in enumerate(executed["cells"]) if c["cell_type"] == "code" and c["execution_count"] is None]
    assert not unrun, f"code cells not executed: {unrun}"

    new = [out_dir / p for p in {p.name for p in out_dir.iterdir()} - before]
    assert len(new) == 1, f"expected one new run folder in {out_dir}, found {new}"
    summary = json.loads((new[0] / "notebook_summary.json").read_text())
    return executed, summary, seconds, new[0]


def _check_summary(summary, run_dir):
    assert summary["setting"] == "small"
    assert summary["steps"] == 6  # train.max_steps in the small setting
    assert summary["epochs"] >= 1
    assert summary["samples_shape"] == [8, 1, 32, 32]
    assert summary["trajectory_shape"][1:] == [8, 1, 32, 32] and summary["trajectory_shape"][0] >= 2
    assert summary["auroc"], "no AUROC computed"
    jem = summary["jem"]  # section 8: a short JEM run trained in the small setting, 2 samples of each class
    assert jem["samples_shape"] == [20, 1, 32, 32]
    assert 0 <= jem["test_accuracy"] <= 1 and 0 <= jem["self_agreement"] <= 1
    assert jem["checkpoint"].endswith("jem/last")
    for name, value in summary["auroc"].items():
        assert isinstance(value, float) and 0.0 <= value <= 1.0, f"AUROC {name}: {value}"
    for name, value in summary["mean_energy"].items():
        assert np.isfinite(value), f"mean energy of {name}: {value}"
    assert (run_dir / "last" / "model.safetensors").is_file()
    for png in ("notebook_curves.png", "notebook_trajectory.png", "notebook_energies.png"):
        assert (run_dir / png).stat().st_size > 1000, png


def _text(outputs):
    """The stream text of a cell's outputs (the .ipynb JSON may hold it as a list of lines)."""
    return "".join("".join(o["text"]) if isinstance(o.get("text"), list) else o.get("text", "") for o in outputs)


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_notebook_runs_small(tmp_path, out_dir, data_dirs):
    mnist, fashion = data_dirs
    committed = _digest(NOTEBOOK)
    executed, summary, seconds, run_dir = _execute(tmp_path, out_dir, mnist, fashion)
    assert _digest(NOTEBOOK) == committed, "executing the notebook changed the committed file"
    _check_summary(summary, run_dir)
    assert summary["ood_source"] == "fashion-mnist"
    assert set(summary["auroc"]) == {"uniform noise", "Fashion-MNIST"}
    # The summary cell prints the same numbers.
    last = _text(executed["cells"][-1]["outputs"])
    assert f'"steps": {summary["steps"]}' in last
    print(f"notebook executed in {seconds:.1f} s: {summary['auroc']}")


def test_notebook_without_fashion_mnist(tmp_path, out_dir, data_dirs):
    # No Fashion-MNIST: the notebook says how to get it and compares against sets it makes from the digits.
    mnist, _ = data_dirs
    executed, summary, seconds, run_dir = _execute(tmp_path, out_dir, mnist, tmp_path / "no-fashion")
    _check_summary(summary, run_dir)
    assert summary["ood_source"] == "made from digits"
    assert set(summary["auroc"]) == {"uniform noise", "inverted digits", "shuffled-pixel digits"}
    text = _text([o for c in executed["cells"] if c["cell_type"] == "code" for o in c["outputs"]])
    assert "scripts/get_data.sh fashion-mnist" in text

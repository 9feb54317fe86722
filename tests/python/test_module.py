"""The Python module ebm_engine against the command-line tools it wraps: the same energies as ebm_score, the same
training bits as ebm_train, the same one-line errors, and Ctrl-C ending a run with its checkpoint."""
import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import ebm_engine
from conftest import BUILD_DIR, MNIST_CONFIG, as_set_flags, tiny_overrides


def ebm_train(overrides, *extra):
    """Runs build/ebm_train on configs/mnist.json with `overrides`; returns its completed process."""
    cmd = [str(BUILD_DIR / "ebm_train"), MNIST_CONFIG, *as_set_flags(overrides), *extra]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return r


def records(run_dir, drop=("ms_per_step", "seconds")):
    """metrics.jsonl's records without the timings (which differ between any two runs)."""
    out = []
    for line in (pathlib.Path(run_dir) / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        out.append({k: v for k, v in r.items() if k not in drop})
    return out


def same_bytes(a, b):
    return pathlib.Path(a).read_bytes() == pathlib.Path(b).read_bytes()


@pytest.fixture(scope="module")
def checkpoint(tiny_data, tmp_path_factory):
    """A checkpoint trained by ebm_train (2 epochs of the tiny run)."""
    run = tmp_path_factory.mktemp("cli") / "run"
    ebm_train(tiny_overrides(tiny_data, run))
    return run / "last"


# --- load: energies, samples, weights ---

def test_energies_equal_ebm_score(checkpoint, tiny_data, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(10, 1, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    r = subprocess.run([str(BUILD_DIR / "ebm_score"), "--checkpoint", str(checkpoint), "--data", str(tmp_path / "x.npy"),
                        "--out", str(tmp_path / "e.npy"), "--backend", "cpu"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    want = np.load(tmp_path / "e.npy")
    model = ebm_engine.load(str(checkpoint), backend="cpu")
    got = model.energy(x)
    assert got.dtype == np.float32 and got.shape == (10,)
    np.testing.assert_array_equal(got, want)  # the same code on the same backend: the same bits
    # uint8 pixels of 28x28 are mapped and padded as training does: the IDX test set scored both ways agree
    r = subprocess.run([str(BUILD_DIR / "ebm_score"), "--checkpoint", str(checkpoint), "--data",
                        str(tiny_data / "t10k-images-idx3-ubyte.gz"), "--out", str(tmp_path / "t.npy"), "--backend", "cpu"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    import gzip
    raw = gzip.open(tiny_data / "t10k-images-idx3-ubyte.gz").read()[16:]
    u8 = np.frombuffer(raw, dtype=np.uint8).reshape(16, 28, 28)
    np.testing.assert_array_equal(model.energy(u8), np.load(tmp_path / "t.npy"))
    # and the float form of the same pixels, [N,1,28,28], gives the same energies
    np.testing.assert_array_equal(model.energy(((u8.astype(np.float32) - 127.5) / 127.5)[:, None]), np.load(tmp_path / "t.npy"))


def test_energy_result_is_the_engines_buffer_not_a_copy(checkpoint):
    model = ebm_engine.load(str(checkpoint), backend="cpu")
    e = model.energy(np.full((3, 32, 32), -1, np.float32))
    assert not e.flags.owndata and e.base is not None  # a view over the engine's vector (a capsule owns it)


def test_state_dict_holds_model_safetensors(checkpoint):
    model = ebm_engine.load(str(checkpoint), backend="cpu")
    sd = model.state_dict()
    raw = (checkpoint / "model.safetensors").read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    header.pop("__metadata__", None)
    assert list(sd) == ["convs.0.weight", "convs.0.bias", "convs.1.weight", "convs.1.bias", "dense.weight", "dense.bias"]
    assert set(sd) == set(header)
    for name, v in sd.items():
        h = header[name]
        assert list(v.shape) == h["shape"] and v.dtype == np.float32
        begin, end = h["data_offsets"]
        np.testing.assert_array_equal(v, np.frombuffer(raw[8 + n + begin:8 + n + end], dtype="<f4").reshape(h["shape"]))
        assert not v.flags.writeable
    assert sum(v.size for v in sd.values()) == model.num_params
    assert sd["convs.0.weight"].shape == (4, 1, 3, 3) and sd["dense.weight"].shape == (1, 8 * 8 * 8)


def test_sample_is_deterministic_in_its_seed_and_follows_the_chain(checkpoint):
    model = ebm_engine.load(str(checkpoint), backend="cpu")
    a = model.sample(n=5, steps=20, seed=3)
    b = model.sample(n=5, steps=20, seed=3)
    c = model.sample(n=5, steps=20, seed=4)
    assert a.shape == (5, 1, 32, 32) and a.dtype == np.float32
    assert a.min() >= -1 and a.max() <= 1
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    x, traj, steps = model.sample(n=5, steps=20, seed=3, every=5)
    assert steps == [0, 5, 10, 15, 20] and traj.shape == (5, 5, 1, 32, 32)
    np.testing.assert_array_equal(x, a)          # snapshots do not change the chain
    np.testing.assert_array_equal(traj[-1], a)   # the last snapshot is the result
    # with noise 0 and step 0 nothing moves: the start comes back
    start = np.linspace(-1, 1, 2 * 32 * 32, dtype=np.float32).reshape(2, 1, 32, 32)
    np.testing.assert_array_equal(model.sample(init=start, steps=3, step_size=1e-30, noise=0.0), start)
    assert model.sample().shape[0] == model.config["generate"]["n"]  # defaults: the checkpoint's generate.*


def test_model_properties(checkpoint):
    model = ebm_engine.load(str(checkpoint))
    assert model.input_shape == (1, 32, 32)
    assert model.config["model"]["channels"] == [4, 8]
    assert "total params" in model.summary
    assert "ebm_engine.Model" in repr(model)


# --- bad input: one-line messages, as Python exceptions ---

@pytest.mark.parametrize("call, exc, text", [
    (lambda m: m.energy(np.zeros((2, 1, 40, 40), np.float32)), ValueError, "40x40"),
    (lambda m: m.energy(np.zeros((2, 3, 32, 32), np.float32)), ValueError, "[2,3,32,32]"),
    (lambda m: m.energy(np.full((2, 32, 32), 2.0, np.float32)), ValueError, "expected [-1,1]"),
    (lambda m: m.energy(np.full((2, 32, 32), np.nan, np.float32)), ValueError, "NaN"),
    (lambda m: m.energy(np.zeros((2, 32, 32), np.int64)), ValueError, "dtype int64"),
    (lambda m: m.energy(np.zeros((0, 32, 32), np.float32)), ValueError, "no images"),
    (lambda m: m.energy("digits.npy"), ValueError, "energy(x)"),
    (lambda m: m.sample(steps=-1), ValueError, "generate.steps"),
    (lambda m: m.sample(n=0), ValueError, "generate.n"),
    (lambda m: m.sample(step_size=-1), ValueError, "generate.step_size"),
    (lambda m: m.sample(noise=float("nan")), ValueError, "noise: expected a finite number"),
    (lambda m: m.sample(every=-2), ValueError, "every"),
    (lambda m: m.sample(n=3, init=np.full((2, 32, 32), -1, np.float32)), ValueError, "init holds 2"),
])
def test_bad_model_input_raises_one_line(checkpoint, call, exc, text):
    model = ebm_engine.load(str(checkpoint), backend="cpu")
    with pytest.raises(exc) as e:
        call(model)
    assert text in str(e.value) and "\n" not in str(e.value)
    assert isinstance(e.value, ebm_engine.UserError)


def test_images_in_zero_one_warn(checkpoint):
    model = ebm_engine.load(str(checkpoint), backend="cpu")
    with pytest.warns(UserWarning, match="never go below 0"):
        model.energy(np.full((2, 32, 32), 0.5, np.float32))


def test_bad_load_and_trainer_arguments(tiny_data, tmp_path, checkpoint):
    with pytest.raises(ValueError, match="no_such"):
        ebm_engine.load(str(tmp_path / "no_such"))
    with pytest.raises(ValueError, match='"gpu"'):
        ebm_engine.load(str(checkpoint), backend="gpu")
    with pytest.raises(ValueError, match='"train.epochz"'):
        ebm_engine.Trainer(MNIST_CONFIG, overrides={"train.epochz": 1})
    with pytest.raises(ValueError, match='"train.epochs"'):
        ebm_engine.Trainer(MNIST_CONFIG, overrides={"train.epochs": "ten"})
    with pytest.raises(ValueError, match='"train.lrr"'):
        ebm_engine.Trainer({"train": {"lrr": 1}})  # a dict config is checked as a file is
    with pytest.raises(ValueError, match='"data.batch_size"'):
        ebm_engine.Trainer({"data": {"batch_size": 0}})
    with pytest.raises(ValueError, match="no_such.json"):
        ebm_engine.Trainer(str(tmp_path / "no_such.json"))
    with pytest.raises(ValueError, match="overrides"):
        ebm_engine.Trainer(MNIST_CONFIG, overrides="train.epochs=1")
    with pytest.raises(ValueError, match="config"):
        ebm_engine.Trainer(42)
    with pytest.raises(ValueError, match="scripts/get_data.sh"):  # data missing: said before anything is written
        ebm_engine.Trainer(MNIST_CONFIG, overrides={"data.dir": str(tmp_path / "none"), "output_dir": str(tmp_path / "r0")})
    assert not (tmp_path / "r0").exists()
    # a folder holding a run takes only a resume of its own checkpoints
    with pytest.raises(ValueError, match="already holds a run"):
        ebm_engine.Trainer(MNIST_CONFIG, overrides=tiny_overrides(tiny_data, checkpoint.parent))


# --- Trainer: the same run as ebm_train ---

def test_trainer_run_equals_ebm_train_bit_for_bit(tiny_data, tmp_path):
    cli, py = tmp_path / "cli", tmp_path / "py"
    ebm_train(tiny_overrides(tiny_data, cli, **{"train.checkpoint_every": 3}))
    t = ebm_engine.Trainer(MNIST_CONFIG, overrides=tiny_overrides(tiny_data, py, **{"train.checkpoint_every": 3}),
                           verbose=False)
    logged, epochs = [], []
    final = t.run(on_log=logged.append, on_epoch=epochs.append)
    assert final == {"event": "stopped", "step": 8, "reason": "done"} and t.finished and t.step == 8
    for ckpt in ("last", "epoch_1", "epoch_2"):
        for f in ("model.safetensors", "train_state.safetensors"):
            assert same_bytes(cli / ckpt / f, py / ckpt / f), f"{ckpt}/{f} differs"
    assert records(cli) == records(py)
    assert [r["step"] for r in logged] == list(range(1, 9))
    assert [r["epoch"] for r in epochs] == [1, 2] and all("val_cdiv" in r for r in epochs)
    step_records = [r for r in records(py) if r["event"] == "step"]
    assert step_records == [{k: v for k, v in r.items() if k != "ms_per_step"} for r in logged]


def test_trainer_iterates_the_records_of_metrics_jsonl(tiny_data, tmp_path):
    t = ebm_engine.Trainer(MNIST_CONFIG, overrides=tiny_overrides(tiny_data, tmp_path / "run"), verbose=False)
    got = [r for r in t]
    assert [r["event"] for r in got].count("step") == 8
    assert got[-1] == {"event": "stopped", "step": 8, "reason": "done"}
    strip = lambda r: {k: v for k, v in r.items() if k not in ("ms_per_step", "seconds")}
    assert [strip(r) for r in got] == records(tmp_path / "run")
    with pytest.raises(StopIteration):
        next(t)


def test_trainer_paused_mid_run_then_resumed_through_the_module_equals_one_run(tiny_data, tmp_path):
    # one run straight through, by the tool
    ebm_train(tiny_overrides(tiny_data, tmp_path / "whole"))
    # the same run: 3 records, a pause (break), the rest by run(); then a save() mid-run resumed by ebm_train
    t = ebm_engine.Trainer(MNIST_CONFIG, overrides=tiny_overrides(tiny_data, tmp_path / "py"), verbose=False)
    for i, r in enumerate(t):
        if i == 2:
            break
    assert t.step == 3 and not t.finished
    t.save(str(tmp_path / "at3"))
    t.run()
    assert same_bytes(tmp_path / "whole/last/train_state.safetensors", tmp_path / "py/last/train_state.safetensors")
    # the saved state continues, by ebm_train --resume, to the same end
    ebm_train(tiny_overrides(tiny_data, tmp_path / "resumed"), "--resume", str(tmp_path / "at3"))
    assert same_bytes(tmp_path / "whole/last/train_state.safetensors", tmp_path / "resumed/last/train_state.safetensors")
    # and a Trainer resumes a tool's checkpoint to the same end as well
    t2 = ebm_engine.Trainer(MNIST_CONFIG, overrides=tiny_overrides(tiny_data, tmp_path / "whole"),
                            resume=str(tmp_path / "whole/epoch_1"), verbose=False)
    t2.run()
    assert t2.step == 8


def test_trainer_model_and_samples_follow_the_run(tiny_data, tmp_path):
    t = ebm_engine.Trainer(MNIST_CONFIG, overrides=tiny_overrides(tiny_data, tmp_path / "run"), verbose=False)
    t.run()
    last = ebm_engine.load(str(tmp_path / "run/last"), backend="cpu")
    x = np.random.default_rng(1).uniform(-1, 1, (4, 1, 32, 32)).astype(np.float32)
    np.testing.assert_array_equal(t.model.energy(x), last.energy(x))  # the model of the run = its last checkpoint
    np.testing.assert_array_equal(t.samples(n=3, seed=2), last.sample(n=3, seed=2))


def test_a_diverged_run_raises_diverged_error_naming_the_step(tiny_data, tmp_path):
    t = ebm_engine.Trainer(MNIST_CONFIG, verbose=False, overrides=tiny_overrides(
        tiny_data, tmp_path / "run", **{"train.divergence.max_abs_f": 1e-9, "train.divergence.action": "stop"}))
    with pytest.raises(ebm_engine.DivergedError, match=r"diverged at step 1: .*max_abs_f") as e:
        t.run()
    assert isinstance(e.value, RuntimeError) and "no good checkpoint" in str(e.value)


def test_refusals_say_what_to_do_in_trainer_arguments(tiny_data, tmp_path):
    # The same refusals as ebm_train's, said as a Trainer's arguments rather than --resume / --set flags.
    ebm_train(tiny_overrides(tiny_data, tmp_path / "run", **{"train.max_steps": 2}))
    last = str(tmp_path / "run" / "last")
    with pytest.raises(ebm_engine.UserError) as e:
        ebm_engine.Trainer(MNIST_CONFIG, overrides=tiny_overrides(tiny_data, tmp_path / "run"), verbose=False)
    msg = str(e.value)
    assert f'continue it with resume="{last}"' in msg and 'overrides={"output_dir": "DIR"}' in msg, msg
    assert "--resume" not in msg and "--set" not in msg, msg
    with pytest.raises(ebm_engine.UserError, match=r'^resume=".*/run/last": model.channels is \[4,8\] in the '
                                                   r'checkpoint but \[4,16\] now'):
        ebm_engine.Trainer(MNIST_CONFIG, resume=last, verbose=False,
                           overrides=tiny_overrides(tiny_data, tmp_path / "run", **{"model.channels": [4, 16]}))


def test_a_config_dict_holding_nan_names_its_key(tiny_data, tmp_path):
    config = json.loads(pathlib.Path(MNIST_CONFIG).read_text())
    config["train"]["lr"] = float("nan")
    with pytest.raises(ebm_engine.UserError, match=r'^config: "train.lr" must be a finite number, got nan$'):
        ebm_engine.Trainer(config, overrides=tiny_overrides(tiny_data, tmp_path / "run"), verbose=False)
    config["train"]["lr"] = 1e-4
    config["model"]["channels"] = [16, float("inf")]
    with pytest.raises(ebm_engine.UserError, match=r'"model.channels\[1\]" must be a finite number, got inf'):
        ebm_engine.Trainer(config, overrides=tiny_overrides(tiny_data, tmp_path / "run"), verbose=False)
    with pytest.raises(ebm_engine.UserError, match=r'overrides: "train.lr": must be a finite number, got nan'):
        ebm_engine.Trainer(MNIST_CONFIG, overrides={**tiny_overrides(tiny_data, tmp_path / "run"), "train.lr": float("nan")},
                           verbose=False)
    assert not (tmp_path / "run").exists()


# --- Ctrl-C ---

def test_sigint_in_a_callback_stops_after_the_step_with_a_checkpoint(tiny_data, tmp_path):
    t = ebm_engine.Trainer(MNIST_CONFIG, overrides=tiny_overrides(tiny_data, tmp_path / "run"), verbose=False)

    def on_log(r):
        if r["step"] == 3:
            os.kill(os.getpid(), signal.SIGINT)  # Python raises KeyboardInterrupt here, in the callback

    with pytest.raises(KeyboardInterrupt):
        t.run(on_log=on_log)
    assert t.finished and t.step == 3
    last = records(tmp_path / "run")[-1]
    assert last == {"event": "stopped", "step": 3, "reason": "signal"}
    # the checkpoint is of step 3: ebm_train resumes it there
    r = ebm_train(tiny_overrides(tiny_data, tmp_path / "run", **{"train.max_steps": 4}), "--resume",
                  str(tmp_path / "run/last"))
    assert "at step 3 " in r.stdout


SIGINT_SCRIPT = textwrap.dedent("""
    import sys, ebm_engine
    t = ebm_engine.Trainer(sys.argv[1], overrides=eval(sys.argv[2]))
    try:
        t.run(on_log=lambda r: print("STEP", r["step"], flush=True))
    except KeyboardInterrupt:
        print("INTERRUPTED", t.step, flush=True)
        sys.exit(130)
""")


def _signal_a_training_process(script, sig, o):
    """Runs `script` (a Trainer.run printing "STEP n" per record) on overrides `o` in a new Python process, sends it
    `sig` once step 2 is logged, and returns (returncode, stdout, stderr)."""
    p = subprocess.Popen([sys.executable, "-c", script, MNIST_CONFIG, repr(o)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=os.environ)
    for line in p.stdout:
        if line.startswith("STEP 2"):
            p.send_signal(sig)
            break
    out, err = p.communicate(timeout=120)
    return p.returncode, out, err


def test_ctrl_c_while_the_engine_computes_stops_the_run_with_last(tiny_data, tmp_path):
    # A slower run (more Langevin steps), interrupted from outside while C++ holds no GIL.
    o = tiny_overrides(tiny_data, tmp_path / "run", **{"sampler.steps": 60, "train.epochs": 50})
    returncode, out, err = _signal_a_training_process(SIGINT_SCRIPT, signal.SIGINT, o)
    assert returncode == 130, err
    step = int(out.strip().splitlines()[-1].split()[1])
    assert step >= 2 and "stopping after this step, with a checkpoint" in err
    assert records(tmp_path / "run")[-1] == {"event": "stopped", "step": step, "reason": "signal"}
    # and the checkpoint resumes with the tool
    ebm_train({**o, "train.epochs": 50, "train.max_steps": step + 1}, "--resume", str(tmp_path / "run/last"))


def test_a_relative_run_folder_after_a_chdir_is_refused_not_split(tiny_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    o = tiny_overrides(tiny_data, tmp_path / "run")
    o["output_dir"] = "rel_run"
    t = ebm_engine.Trainer(MNIST_CONFIG, overrides=o, verbose=False)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # a notebook's %cd
    with pytest.raises(ebm_engine.UserError, match=r"the working folder changed from .* relative output_dir \"rel_run\""):
        t.run()
    with pytest.raises(ebm_engine.UserError, match=r"the working folder changed"):
        t.save(tmp_path / "snap")
    assert not (tmp_path / "elsewhere" / "rel_run").exists()
    monkeypatch.chdir(tmp_path)  # back: the run goes on where it started
    t.run()
    assert (tmp_path / "rel_run" / "last" / "model.safetensors").exists()


SIGTERM_SCRIPT = textwrap.dedent("""
    import sys, ebm_engine
    t = ebm_engine.Trainer(sys.argv[1], overrides=eval(sys.argv[2]))
    t.run(on_log=lambda r: print("STEP", r["step"], flush=True))
    print("RETURNED", flush=True)
""")


def test_sigterm_in_trainer_run_checkpoints_then_ends_the_process(tiny_data, tmp_path):
    # What scancel, docker stop and Kubernetes send: ebm_train checkpoints and exits; a Trainer in a Python
    # process stops after the step with last/ as well, then ends by the signal as the process was asked to.
    o = tiny_overrides(tiny_data, tmp_path / "run", **{"sampler.steps": 60, "train.epochs": 50})
    returncode, out, err = _signal_a_training_process(SIGTERM_SCRIPT, signal.SIGTERM, o)
    assert returncode == -signal.SIGTERM, (returncode, err)
    assert "RETURNED" not in out and "SIGTERM: stopped after the step with a checkpoint" in err
    last = records(tmp_path / "run")[-1]
    assert last["event"] == "stopped" and last["reason"] == "signal" and last["step"] >= 2
    ebm_train({**o, "train.epochs": 50, "train.max_steps": last["step"] + 1}, "--resume", str(tmp_path / "run/last"))


def test_a_child_forked_after_the_engine_ran_is_told_to_spawn_not_left_hanging(checkpoint):
    # GNU OpenMP does not survive fork(): the child's first parallel region used to wait forever.
    model = ebm_engine.load(str(checkpoint), backend="cpu")
    model.sample(n=100, steps=2, seed=0)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: answers through the pipe, never returns into pytest
        try:
            signal.alarm(30)
            try:
                model.sample(n=100, steps=2, seed=0)  # 100 noise images: OpenMP's fill runs before the backend
                msg = "it ran"
            except ebm_engine.UserError as e:
                msg = str(e)
            except BaseException as e:  # noqa: BLE001 - anything else is reported, not raised into pytest
                msg = f"{type(e).__name__}: {e}"
            os.write(w, msg.encode())
        finally:
            os._exit(0)
    os.close(w)
    msg = os.read(r, 4096).decode()
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert status == 0, f"the child ended by signal {status & 0x7f} (14: it hung until the alarm)"
    assert "forked" in msg and "\"spawn\"" in msg, msg
    model.sample(n=8, steps=2, seed=0)  # the parent goes on


# --- threads ---

def test_the_gil_is_released_while_the_engine_samples(checkpoint):
    model = ebm_engine.load(str(checkpoint), backend="cpu")
    done = threading.Event()
    worker = threading.Thread(target=lambda: (model.sample(n=64, steps=300, seed=0), done.set()))
    ticks = 0
    start = time.monotonic()
    worker.start()
    while not done.is_set():
        ticks += 1
        time.sleep(0.001)
    worker.join()
    elapsed = time.monotonic() - start
    # this thread ran all along: about one tick a millisecond (a held GIL would allow a handful)
    assert elapsed > 0.05 and ticks > 0.2 * elapsed * 1000, (ticks, elapsed)


def test_help_reads_well():
    assert "energy" in ebm_engine.Model.energy.__doc__ and "[N]" in ebm_engine.Model.energy.__doc__
    assert "Ctrl-C" in ebm_engine.Trainer.__doc__
    assert ebm_engine.__doc__.startswith("ebm_engine")
    d = ebm_engine.config_defaults()
    assert d["train"]["epochs"] == 10 and d["sampler"]["steps"] == 100
    assert "one line" in ebm_engine.UserError.__doc__ and issubclass(ebm_engine.UserError, ValueError)
    assert "StopIteration" in ebm_engine.Trainer.__next__.__doc__ and ebm_engine.Trainer.__iter__.__doc__


# --- what a review found: nothing overwritten, one run per folder, arguments as Python passes them ---

def test_save_writes_only_into_a_new_folder(tiny_data, tmp_path):
    t = ebm_engine.Trainer(MNIST_CONFIG, overrides=tiny_overrides(tiny_data, tmp_path / "run"), verbose=False)
    for r in t:
        if r["step"] == 2:
            break
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "a.txt").write_text("mine too")
    for target, text in [(tmp_path / "notes.txt", "not a folder"), (tmp_path / "full", "already holds files"),
                         (tmp_path / "run", "is the run folder"), (tmp_path, "is the run folder or holds it"),
                         (tmp_path / "run" / "last", "writes its own last/"),
                         (tmp_path / "run" / "epoch_3", "writes its own epoch_3/"), ("", "empty")]:
        with pytest.raises(ValueError, match=text):
            t.save(target)
    assert (tmp_path / "notes.txt").read_text() == "mine" and (tmp_path / "full" / "a.txt").read_text() == "mine too"
    assert (tmp_path / "run" / "metrics.jsonl").stat().st_size > 0
    (tmp_path / "empty").mkdir()
    t.save(tmp_path / "empty")             # an empty folder, given as a pathlib.Path
    t.save(tmp_path / "run" / "snapshots")  # a folder of its own inside the run folder
    assert (tmp_path / "empty" / "model.safetensors").exists()
    assert (tmp_path / "run" / "snapshots" / "train_state.safetensors").exists()
    assert t.stop() == {"event": "stopped", "step": 2, "reason": "stop"}


def test_one_run_at_a_time_in_a_folder(tiny_data, tmp_path):
    run = tmp_path / "run"
    ebm_train(tiny_overrides(tiny_data, run))
    more = tiny_overrides(tiny_data, run, **{"train.epochs": 3})
    a = ebm_engine.Trainer(MNIST_CONFIG, overrides=more, resume=str(run / "last"), verbose=False)
    with pytest.raises(ValueError, match="in use by another training run"):
        ebm_engine.Trainer(MNIST_CONFIG, overrides=more, resume=str(run / "last"), verbose=False)
    r = subprocess.run([str(BUILD_DIR / "ebm_train"), MNIST_CONFIG, *as_set_flags(more), "--resume", str(run / "last")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "in use by another training run" in r.stderr and r.stderr.count("\n") == 1
    next(iter(a))  # after a step its metrics.jsonl holds records: still "in use", not "a run that wrote no checkpoint"
    fresh = tiny_overrides(tiny_data, run)
    with pytest.raises(ValueError, match="in use by another training run"):
        ebm_engine.Trainer(MNIST_CONFIG, overrides=fresh, verbose=False)
    a.run()  # the run ends: the folder is free again
    steps = [x["step"] for x in records(run) if x["event"] == "step"]
    assert steps == list(range(1, 13))  # each step once: no second history interleaved


def test_a_trainer_made_and_dropped_before_its_first_step_leaves_the_folder_reusable(tiny_data, tmp_path):
    t = ebm_engine.Trainer(MNIST_CONFIG, overrides=tiny_overrides(tiny_data, tmp_path / "run"), verbose=False)
    del t
    t = ebm_engine.Trainer(MNIST_CONFIG, overrides=tiny_overrides(tiny_data, tmp_path / "run"), verbose=False)
    assert t.run()["step"] == 8


def test_arguments_as_python_passes_them(checkpoint, tiny_data, tmp_path):
    import pathlib as pl
    model = ebm_engine.load(pl.Path(checkpoint), backend="cpu")  # os.PathLike
    # numpy scalars and arrays in overrides are the numbers and lists they hold
    t = ebm_engine.Trainer(MNIST_CONFIG, verbose=False, overrides={
        **tiny_overrides(tiny_data, tmp_path / "run"), "train.lr": np.float32(2e-4), "train.epochs": np.int64(1),
        "model.channels": np.array([4, 8])})
    assert t.config["train"]["epochs"] == 1 and t.config["model"]["channels"] == [4, 8]
    for bad, text in [({"train.lr": {1, 2}}, '"train.lr": a value of type set'), (3, "got int")]:
        with pytest.raises(ValueError, match=text):
            ebm_engine.Trainer(MNIST_CONFIG, overrides=bad)
    with pytest.raises(ValueError, match="on_log: expected a function"):
        t.run(on_log=5)
    assert t.step == 0  # refused before any step
    for kwargs, text in [({"seed": -1}, r"seed: .*\[0, 2\^64\)"), ({"seed": 2**64}, "seed"), ({"steps": 2**40}, "steps"),
                         ({"n": 10**12}, "n"), ({"n": True}, "n: expected an integer"), ({"step_size": float("nan")}, "finite")]:
        with pytest.raises(ebm_engine.UserError, match=text) as e:
            model.sample(**kwargs)
        assert "\n" not in str(e.value)
    assert model.sample(n=2, steps=1, seed=2**64 - 1).shape == (2, 1, 32, 32)
    with pytest.raises(ValueError, match="trajectory .* available"):  # refused at once, not by the OOM killer
        model.sample(n=4096, steps=100000, every=1)


def test_numpy_integers_paths_and_wrong_types_in_arguments(checkpoint, tiny_data, tmp_path):
    import pathlib as pl
    model = ebm_engine.load(checkpoint, backend=None)  # None: the default, as Trainer's backend=None
    # numpy integers are integers (through __index__); booleans are not
    a = model.sample(n=np.int64(2), steps=np.int32(1), seed=np.uint64(7), every=np.int64(0))
    assert a.shape == (2, 1, 32, 32)
    np.testing.assert_array_equal(a, model.sample(n=2, steps=1, seed=7))
    for kwargs, text in [({"n": np.bool_(True)}, "n: expected an integer"), ({"n": np.float64(2.0)}, "n: expected an integer"),
                         ({"seed": np.int64(-1)}, r"seed: .*\[0, 2\^64\)")]:
        with pytest.raises(ebm_engine.UserError, match=text):
            model.sample(**kwargs)
    over = tiny_overrides(tiny_data, tmp_path / "run")
    # a text setting given as None, a bool or a number would have become the folder "null", "true" or "5"
    for value in (None, True, 5, [1]):
        with pytest.raises(ebm_engine.UserError, match=r'^overrides: "output_dir" must be a string, got '):
            ebm_engine.Trainer(MNIST_CONFIG, overrides={**over, "output_dir": value}, verbose=False)
    assert not any(pl.Path(n).exists() for n in ("null", "true", "5", "[1]"))
    t = ebm_engine.Trainer(MNIST_CONFIG, overrides={**over, "output_dir": tmp_path / "as_path"}, verbose=False)
    assert t.output_dir == str(tmp_path / "as_path")
    assert repr(t) == f"<ebm_engine.Trainer output_dir='{tmp_path / 'as_path'}' step 0>"
    # a config that contains itself: a UserError, not a segfault
    looped = {"output_dir": str(tmp_path / "loop")}
    looped["train"] = looped
    with pytest.raises(ebm_engine.UserError, match="nested more than 32 levels deep"):
        ebm_engine.Trainer(looped, verbose=False)
    chans = [4]
    chans.append(chans)
    with pytest.raises(ebm_engine.UserError, match=r'overrides: "model.channels".*nested more than'):
        ebm_engine.Trainer(MNIST_CONFIG, overrides={**over, "model.channels": chans}, verbose=False)
    assert ebm_engine.load(os.fsencode(str(checkpoint)), backend="cpu").num_classes >= 1  # bytes paths, as os takes them
        # an empty path, or one holding a NUL, is named as such (it said ": not a checkpoint directory")
    with pytest.raises(ebm_engine.UserError, match="^checkpoint_dir: the path is empty$"):
        ebm_engine.load("")
    with pytest.raises(ebm_engine.UserError, match="^checkpoint_dir: the path .* holds a NUL character$"):
        ebm_engine.load(str(checkpoint) + "\0junk")
        # a bad override is said in the Trainer's terms, not ebm_train's --set
    with pytest.raises(ebm_engine.UserError, match=r'^overrides: train.epochs=true: "train.epochs" must be an integer'):
        ebm_engine.Trainer(MNIST_CONFIG, overrides={**over, "train.epochs": True}, verbose=False)
        # resume takes a path object as the other path arguments do
    with pytest.raises(ebm_engine.UserError, match="not a checkpoint directory"):
        ebm_engine.Trainer(MNIST_CONFIG, overrides={**over, "output_dir": str(tmp_path / "r")},
                           resume=pl.Path(tmp_path / "nothing"), verbose=False)


def test_a_checkpoint_with_non_finite_weights_loads_with_a_warning(checkpoint, tmp_path):
    import shutil, struct
    bad = tmp_path / "nan"
    shutil.copytree(checkpoint, bad)
    f = bad / "model.safetensors"
    d = bytearray(f.read_bytes())
    n = int.from_bytes(d[:8], "little")
    start = json.loads(d[8:8 + n])["dense.bias"]["data_offsets"][0]
    d[8 + n + start:8 + n + start + 4] = struct.pack("<f", float("nan"))
    f.write_bytes(bytes(d))
    with pytest.warns(UserWarning, match=r"1 of \d+ weights are not finite .* the checkpoint may have diverged"):
        model = ebm_engine.load(bad, backend="cpu")
    assert np.isnan(model.energy(np.zeros((2, 32, 32), np.float32) - 1)).all()

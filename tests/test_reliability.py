"""Resume after SIGKILL, refusal of mixed runs, divergence, determinism, loading params."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from experiments.regularization import STUDY
from jaxcnn.data import prepare_data
from jaxcnn.data.synthetic import make_synthetic
from jaxcnn.inference import load_model
from jaxcnn.model import ModelConfig
from jaxcnn.optim import OptimizerConfig
from jaxcnn.runner import DeviceData, Progress, RunConfig, TrainSettings, train_config
from jaxcnn.study import main

ROOT = Path(__file__).resolve().parents[1]
KILL_FLAGS = ["--data", "synthetic", "--seeds", "2", "--epochs", "3", "--train-examples", "800",
              "--val-size", "500", "--configs", "baseline", "dropout", "--no-progress"]


def numbers(out: Path) -> dict:
    """results.json without metadata (wall times differ between runs)."""
    results = json.loads((out / "regularization" / "results.json").read_text())
    return {"configs": results["configs"], "statistics": results["statistics"]}


def start(out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "experiments.regularization", *KILL_FLAGS,
                             "--out", str(out)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env={**os.environ, "JAX_PLATFORMS": "cpu"})


def kill_when(proc: subprocess.Popen, path: Path, extra_seconds: float, timeout=300) -> None:
    """SIGKILL ``proc`` ``extra_seconds`` after ``path`` appears (mid-epoch, not at a boundary)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "the run never reached the kill point"
        time.sleep(0.05)
    time.sleep(extra_seconds)
    assert proc.poll() is None, "finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
def test_sigkill_then_rerun_gives_identical_results(tmp_path):
    reference = tmp_path / "uninterrupted"
    assert start(reference).wait() == 0

    out = tmp_path / "killed"
    proc = start(out)  # killed in epoch 2 of the first configuration
    kill_when(proc, out / "regularization" / "checkpoints" / "baseline" / "1", 0.5)
    proc = start(out)  # resumed; killed again in epoch 2 of the second configuration
    kill_when(proc, out / "regularization" / "checkpoints" / "dropout" / "1", 0.5)
    interim = json.loads((out / "regularization" / "results.json").read_text())
    assert list(interim["configs"]) == ["baseline"]  # the finished one was kept
    proc = start(out)
    assert proc.wait() == 0, proc.stderr.read().decode()
    assert "resuming after epoch" in proc.stderr.read().decode()
    assert numbers(out) == numbers(reference)
    assert not (out / "regularization" / "checkpoints" / "dropout").exists()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    flags = ["--data", "synthetic", "--seeds", "2", "--epochs", "1", "--train-examples", "300",
             "--val-size", "200", "--configs", "baseline", "--no-progress", "--out", str(out)]
    assert main(STUDY, flags) == 0
    return out, flags


def test_same_command_twice_gives_identical_numbers(tiny_run, tmp_path):
    out, flags = tiny_run
    again = tmp_path / "again"
    assert main(STUDY, [*flags[:-1], str(again)]) == 0
    assert numbers(again) == numbers(out)


@pytest.mark.parametrize("flag, value", [("--epochs", "2"), ("--lr", "0.002"), ("--seeds", "3"),
                                         ("--train-examples", "400")])
def test_rerun_with_different_flags_is_refused(tiny_run, flag, value, capsys):
    out, flags = tiny_run
    changed = list(flags)
    if flag in changed:
        changed[changed.index(flag) + 1] = value
    else:
        changed += [flag, value]
    assert main(STUDY, changed) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and flag in err and "--fresh" in err


def test_fresh_starts_over(tiny_run, tmp_path):
    out, flags = tiny_run
    copy = tmp_path / "copy"
    assert main(STUDY, [*flags[:-1], str(copy)]) == 0
    assert main(STUDY, [*flags[:-1], str(copy), "--lr", "0.002", "--fresh"]) == 0
    results = json.loads((copy / "regularization" / "results.json").read_text())
    assert results["metadata"]["settings"]["lr"] == 0.002


def test_load_model_reproduces_the_reported_accuracy(tiny_run):
    out, _ = tiny_run
    model = load_model(out, "regularization", "baseline")
    results = json.loads((out / "regularization" / "results.json").read_text())
    ds = make_synthetic()
    for record in results["configs"]["baseline"]["seeds"]:
        loss, accuracy = model.evaluate(ds.test_images, ds.test_labels, seed=record["seed"])
        assert accuracy == pytest.approx(record["test_accuracy"], abs=1e-9)
        assert loss == pytest.approx(record["test_loss"], rel=1e-5)
    assert model.predict(ds.test_images[:7]).shape == (7,)
    assert model.predict_proba(ds.test_images[:7], seed=1).shape == (7, 10)


class NaNInSeed:
    """A checkpointer whose 'saved' state has NaN weights for one seed."""

    def __init__(self, seed_index: int):
        self.seed_index = seed_index
        self.saved: list[int] = []

    def restore(self, template):
        def poison(x):
            x = np.array(x)
            if np.issubdtype(x.dtype, np.floating):
                x[self.seed_index] = np.nan
            return x

        params = jax.tree.map(poison, template.params)
        from jaxcnn.runner import empty_history

        return Progress(0, template._replace(params=params), [empty_history(), empty_history()])

    def save(self, progress):
        self.saved.append(progress.epochs_done)


def test_diverged_seed_is_marked_and_others_carry_on(capsys):
    data = DeviceData(prepare_data(make_synthetic(300, 50), val_size=50, train_examples=200))
    ckpt = NaNInSeed(1)
    result = train_config("nan", RunConfig(ModelConfig(), OptimizerConfig()), data, [0, 1],
                          TrainSettings(epochs=2, batch_size=32, show_progress=False),
                          checkpointer=ckpt)
    ok, bad = result.seeds
    assert bad["diverged_epoch"] == 1 and bad["test_accuracy"] is None
    assert ok["diverged_epoch"] is None and ok["test_accuracy"] > 0
    assert all(v is not None for v in ok["history"]["train_loss"])
    assert all(v is None for v in bad["history"]["val_loss"])  # null, never NaN
    assert ckpt.saved == [1, 2]
    assert "seed 1 diverged in epoch 1" in capsys.readouterr().err


def test_huge_learning_rate_diverges_cleanly(tmp_path, capsys):
    flags = ["--data", "synthetic", "--seeds", "2", "--epochs", "1", "--train-examples", "300",
             "--val-size", "200", "--configs", "baseline", "--no-progress", "--lr", "10",
             "--out", str(tmp_path)]
    assert main(STUDY, flags) == 0
    captured = capsys.readouterr()
    text = (tmp_path / "regularization" / "results.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    seeds = json.loads(text)["configs"]["baseline"]["seeds"]
    assert all(s["diverged_epoch"] == 1 for s in seeds)
    assert "diverged" in captured.err and "nan" not in captured.out.lower()
    assert (tmp_path / "regularization" / "curves.png").exists()

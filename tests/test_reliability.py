"""Resume after a crash or SIGKILL, refusal of mixed runs, divergence, determinism, loading."""

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

from jaxcnn.cli import study_main
from jaxcnn.configs import Configuration, hyperparams
from jaxcnn.data.synthetic import make_synthetic
from jaxcnn.experiment import Experiment, Runtime
from jaxcnn.inference import load_model
from jaxcnn.models.model import Network
from jaxcnn.pipeline import run_studies
from jaxcnn.studies import REGULARIZATION
from jaxcnn.training import checkpoint
from jaxcnn.training.members import Member
from jaxcnn.training.runner import ChunkProgress, RunSettings, train_members
from tests.chunks import PerChunk, finished_members
from tests.conftest import TINY_BATCH, TINY_FLAGS, TINY_TRAIN, count_compiles

ROOT = Path(__file__).resolve().parents[1]
SMALL = [*TINY_FLAGS, "--configs", "baseline"]


def numbers(out: Path, study: str = "regularization") -> dict:
    """results.json without metadata (wall times differ between runs)."""
    results = json.loads((out / study / "results.json").read_text())
    return {"configs": results["configs"], "statistics": results["statistics"]}


class SimulatedCrashError(Exception):
    """Stands for the process dying right after a checkpoint was written."""


@pytest.mark.parametrize("batching", [pytest.param("vmap", marks=pytest.mark.slow), "threads"])
def test_a_run_that_dies_after_a_checkpoint_resumes_to_identical_results(
        tmp_path, monkeypatch, batching):
    """The process dies right after the first checkpoint is written; the rerun gives the
    numbers of a run that was never interrupted. vmap trains all 4 members in one chunk;
    threads trains one member per chunk, two at a time (the other worker finishes its
    chunk, whose result is then picked up from its last checkpoint)."""
    experiment = Experiment(data="synthetic", seeds=2, epochs=2, train_examples=TINY_TRAIN,
                            val_size=50, batch_size=TINY_BATCH)
    configs = ["baseline", "dropout"]

    def runtime(out: str) -> Runtime:
        return Runtime(batching=batching, progress=False, out=tmp_path / out)

    run_studies([REGULARIZATION], experiment, runtime("whole"), configs=configs)
    real_save = checkpoint.ChunkCheckpointer.save

    def save_then_die(self, progress: ChunkProgress) -> None:
        real_save(self, progress)
        raise SimulatedCrashError()

    monkeypatch.setattr(checkpoint.ChunkCheckpointer, "save", save_then_die)
    with pytest.raises(SimulatedCrashError):
        run_studies([REGULARIZATION], experiment, runtime("killed"), configs=configs)
    assert list((tmp_path / "killed" / "checkpoints").glob("*/1"))  # epoch 1 was saved
    monkeypatch.setattr(checkpoint.ChunkCheckpointer, "save", real_save)
    resumed = run_studies([REGULARIZATION], experiment, runtime("killed"), configs=configs)
    assert resumed["regularization"]["metadata"]["resumed_from_epoch"]
    assert numbers(tmp_path / "killed") == numbers(tmp_path / "whole")
    assert not list((tmp_path / "killed" / "checkpoints").glob("*"))


KILL_FLAGS = ["--data", "synthetic", "--seeds", "2", "--epochs", "3", "--train-examples", "400",
              "--val-size", "200", "--configs", "baseline", "dropout", "--no-progress"]


def start(out: Path, xla_cache: Path) -> subprocess.Popen:
    """The CLI in a subprocess. The four runs of one test share JAX's persistent compilation
    cache (a fresh folder per test), so only the first compiles: the same executables, so
    the same numbers, in a fraction of the time."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_COMPILATION_CACHE_DIR": str(xla_cache)}
    return subprocess.Popen([sys.executable, "-m", "experiments.regularization", *KILL_FLAGS,
                             "--out", str(out)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env)


def kill_at_first_checkpoint(proc: subprocess.Popen, out: Path, done: int, timeout=600) -> None:
    """SIGKILL ``proc`` as soon as a checkpoint appears beyond the ``done`` already there."""
    deadline = time.monotonic() + timeout
    while len(list((out / "checkpoints").glob("*/[0-9]*"))) <= done:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "the run never reached a checkpoint"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL  # it was killed mid-run, not finished


@pytest.mark.slow
def test_sigkill_then_rerun_gives_identical_results(tmp_path):
    cache = tmp_path / "xla-cache"
    reference = tmp_path / "uninterrupted"
    assert start(reference, cache).wait() == 0

    out = tmp_path / "killed"
    kill_at_first_checkpoint(start(out, cache), out, done=0)
    kill_at_first_checkpoint(start(out, cache), out,
                             done=len(list((out / "checkpoints").glob("*/*"))))
    proc = start(out, cache)
    assert proc.wait() == 0, proc.stderr.read().decode()
    assert numbers(out) == numbers(reference)
    assert not list((out / "checkpoints").glob("*"))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    flags = [*SMALL, "--out", str(out)]
    assert study_main(REGULARIZATION, flags) == 0
    return out, flags


@pytest.mark.slow
def test_same_command_twice_gives_identical_numbers(tiny_run, tmp_path):
    out, flags = tiny_run
    again = tmp_path / "again"
    assert study_main(REGULARIZATION, [*flags[:-1], str(again)]) == 0
    assert numbers(again) == numbers(out)


@pytest.mark.parametrize("changes, named", [
    ({"--epochs": "2"}, ["--epochs 1", "--epochs 2"]),
    # Fewer seeds than were trained is a difference (more seeds would continue the run).
    ({"--lr": "0.002", "--seeds": "1"}, ["--seeds 2, --lr 0.001", "--seeds 1, --lr 0.002"]),
    ({"--train-examples": "96"}, ["--train-examples 100", "--train-examples 96"]),
])
@pytest.mark.slow
def test_rerun_with_different_flags_is_refused_naming_every_flag(tiny_run, changes, named,
                                                                 capsys):
    out, flags = tiny_run
    changed = list(flags)
    for flag, value in changes.items():
        if flag in changed:
            changed[changed.index(flag) + 1] = value
        else:
            changed += [flag, value]
    assert study_main(REGULARIZATION, changed) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--fresh" in err, err
    for fragment in named:
        assert fragment in err, err
    assert "None" not in err


@pytest.mark.slow
def test_rerun_on_other_data_names_the_path_not_a_fingerprint(tiny_run, capsys, tmp_path):
    from tests import archives

    out, flags = tiny_run
    root = archives.write_folder(archives.folder_files(per_class=60)[0], tmp_path) / "tree"
    changed = list(flags)
    changed[changed.index("--data") + 1] = str(root)
    assert study_main(REGULARIZATION, [*changed, "--cache-dir", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--data synthetic" in err and f"--data {root}" in err
    assert "sha256" not in err and "listing" not in err


@pytest.mark.slow
def test_fresh_starts_over(tiny_run, tmp_path):
    out, flags = tiny_run
    copy = tmp_path / "copy"
    assert study_main(REGULARIZATION, [*flags[:-1], str(copy)]) == 0
    assert study_main(REGULARIZATION, [*flags[:-1], str(copy), "--lr", "0.002", "--fresh"]) == 0
    results = json.loads((copy / "regularization" / "results.json").read_text())
    assert results["metadata"]["settings"]["lr"] == 0.002


@pytest.mark.slow
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


@pytest.mark.slow
def test_load_model_compiles_once_per_model(tiny_run):
    out, _ = tiny_run
    model = load_model(out, "regularization", "baseline")
    images = make_synthetic(10, 1500).test_images
    model.logits(images[:1000], seed=0)  # warm: one compilation for the 1000-image chunk
    with count_compiles() as compiles:
        model.predict_proba(images)  # every seed, 1500 images: two chunks each
        model.evaluate(images[:700], np.zeros(700, int), seed=1)
    assert compiles == []


class NaNInSeed:
    """A checkpointer whose 'saved' state has NaN weights for one member."""

    def __init__(self, member_index: int):
        self.member_index = member_index
        self.saved: list[int] = []

    def restore(self, template):
        def poison(x):
            x = np.array(x)
            if np.issubdtype(x.dtype, np.floating):
                x[self.member_index] = np.nan
            return x

        params = jax.tree.map(poison, template.params)
        from jaxcnn.training.history import empty_history

        members = len(jax.tree.leaves(template)[0])
        return ChunkProgress(0, template._replace(params=params),
                             [empty_history() for _ in range(members)], [None] * members)

    def save(self, progress):
        self.saved.append(progress.epochs_done)


def test_diverged_member_is_marked_and_others_carry_on(tiny_data, programs, capsys):
    ckpt = NaNInSeed(0)  # seed 1's chunk of one member "resumes" with NaN weights
    members = [Member("nan", s, hyperparams(Configuration(), 7)) for s in (0, 1)]
    results = finished_members(train_members(
        Network(), members, tiny_data, RunSettings(2, TINY_BATCH, "threads", "winograd", 1, 1),
        programs=programs, checkpoints=PerChunk(lambda chunk: ckpt if chunk[0].seed == 1
                                                else None)))
    ok, bad = (r.record for r in sorted(results, key=lambda r: r.member.seed))
    assert bad["diverged_epoch"] == 1 and bad["test_accuracy"] is None
    assert ok["diverged_epoch"] is None and ok["test_accuracy"] > 0
    assert all(v is not None for v in ok["history"]["train_loss"])
    assert all(v is None for v in bad["history"]["val_loss"])  # null, never NaN
    assert ckpt.saved == [1, 2]


def test_huge_learning_rate_diverges_cleanly(tmp_path, capsys):
    flags = [*SMALL, "--lr", "10", "--out", str(tmp_path)]
    assert study_main(REGULARIZATION, flags) == 0
    captured = capsys.readouterr()
    text = (tmp_path / "regularization" / "results.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    seeds = json.loads(text)["configs"]["baseline"]["seeds"]
    assert all(s["diverged_epoch"] == 1 for s in seeds)
    assert "diverged" in captured.err and "nan" not in captured.out.lower()
    assert (tmp_path / "regularization" / "curves.png").exists()

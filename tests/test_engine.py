"""The training engine: state per run, compile counts, resume bookkeeping, Ctrl-C, orbax noise."""

from __future__ import annotations

import copy
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from jaxcnn.configs import Configuration, hyperparams
from jaxcnn.experiment import Experiment, Runtime
from jaxcnn.models.model import Network
from jaxcnn.pipeline import run_studies
from jaxcnn.platform.progress import EpochLines, StepBoard
from jaxcnn.studies import REGULARIZATION, StudyContext
from jaxcnn.training import checkpoint
from jaxcnn.training.members import Member
from jaxcnn.training.runner import Programs, RunSettings, train_members
from tests.chunks import PerChunk, finished_members
from tests.conftest import TINY_BATCH, TINY_TRAIN, count_compiles

ROOT = Path(__file__).resolve().parents[1]
STEPS = -(-TINY_TRAIN // TINY_BATCH)
INTERRUPTED = "interrupted; rerun the same command to resume from the last finished epoch"


class MemoryCheckpointer:
    """Keeps a chunk's saves in memory; ``restore`` gives the save of ``epoch`` (or None)."""

    def __init__(self) -> None:
        self.saves: dict[int, checkpoint.ChunkProgress] = {}
        self.restore_epoch: int | None = None

    def save(self, progress: checkpoint.ChunkProgress) -> None:
        self.saves[progress.epochs_done] = copy.deepcopy(progress)

    def restore(self, template):
        if self.restore_epoch is None:
            return None
        return copy.deepcopy(self.saves[self.restore_epoch])


def test_resumed_chunks_report_every_seed_and_fill_the_bar(tiny_data, programs, capsys):
    """Seed 0's chunk resumes after epoch 2 of 2, seed 1's after epoch 1: the epoch-1 line
    (printed by the first run) is not printed again, the epoch-2 line averages both seeds
    as the uninterrupted run's did, the step bar ends at its total, and the results equal
    the uninterrupted run's."""
    members = [Member("c", s, hyperparams(Configuration(), STEPS)) for s in (0, 1)]
    ckpts = {0: MemoryCheckpointer(), 1: MemoryCheckpointer()}
    settings = RunSettings(2, TINY_BATCH, "threads", "winograd", 1, 1)

    def train(board=None) -> dict:
        lines = EpochLines({"c": 2}, 2, "val")
        results = finished_members(train_members(
            Network(), members, tiny_data, settings,
            checkpoints=PerChunk(lambda chunk: ckpts[chunk[0].seed]), lines=lines,
            board=board, programs=programs))
        return {r.member.seed: r.record for r in results}

    whole = train()
    first = capsys.readouterr().err
    epoch2 = [line for line in first.splitlines() if "epoch 2/2" in line]
    ckpts[0].restore_epoch, ckpts[1].restore_epoch = 2, 1
    board = StepBoard()
    board.enabled = True  # drawn on the captured stderr, not a terminal
    board.start(2 * 2 * STEPS, "training")
    bar = board._bar
    resumed = train(board)
    assert bar.n == bar.total == 2 * 2 * STEPS
    board.close()
    err = capsys.readouterr().err
    assert "epoch 1/2" not in err
    (line,) = [line for line in err.splitlines() if "epoch 2/2" in line]
    assert "(2 seeds" in line
    assert line.split("(2 seeds")[0] == epoch2[0].split("(2 seeds")[0]  # the same means
    assert resumed == whole


def test_orbax_saves_log_nothing_and_leave_the_absl_logger_alone(tmp_path, caplog):
    """orbax's INFO lines and its 'Skipping merge of OCDBT checkpoints' warning are
    filtered only while it works; the absl logger keeps its level and filters."""
    absl = logging.getLogger("absl")
    level, filters = absl.level, list(absl.filters)
    params = {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}
    with caplog.at_level(logging.DEBUG, logger="absl"):
        checkpoint.save_params(tmp_path / "p", params, [0, 1], {"model": {}})
        ckpt = checkpoint.ChunkCheckpointer(tmp_path / "ck")
        ckpt.save(checkpoint.ChunkProgress(1, params, [{}], [None]))
        assert ckpt.restore(params).epochs_done == 1
        orbax_records = [r for r in caplog.records if r.name == "absl"]
        absl.warning("[process=0] Skipping merge of OCDBT checkpoints: No per-process ...")
    assert orbax_records == []
    assert [r.getMessage() for r in caplog.records if r.name == "absl"][-1].startswith(
        "[process=0] Skipping merge")  # outside orbax's calls nothing is filtered
    assert absl.level == level and absl.filters == filters
    loaded, meta = checkpoint.load_params_tree(tmp_path / "p")
    np.testing.assert_array_equal(loaded["w"], params["w"])


TINY = Experiment(data="synthetic", seeds=2, epochs=1, train_examples=TINY_TRAIN, val_size=50,
                  batch_size=TINY_BATCH)


@pytest.mark.slow
def test_a_default_regularization_run_compiles_what_the_plan_says(tmp_path, monkeypatch):
    """Each run compiles its own programs (nothing is kept between runs): per network of
    the study, init, the epoch and one evaluation per split size (val 50, test 2000). The
    first run also compiles JAX's small host-side helpers, so the second is counted."""
    monkeypatch.setattr(Programs, "for_run", classmethod(lambda cls: cls()))  # as the package
    ctx = StudyContext(TINY, STEPS, 10)
    networks = {c.network for c in REGULARIZATION.build_configs(ctx).values()}
    runtime = Runtime(progress=False, out=tmp_path / "first")
    run_studies([REGULARIZATION], TINY, runtime)
    with count_compiles() as compiles:
        results = run_studies([REGULARIZATION], TINY, Runtime(progress=False,
                                                              out=tmp_path / "second"))
    assert len(compiles) == len(networks) * (2 + 2)
    assert set(results["regularization"]["configs"]) == set(REGULARIZATION.build_configs(ctx))


TWO_RUNS = """
import json, sys
from jaxcnn.experiment import Experiment, Runtime
from jaxcnn.studies import REGULARIZATION
from jaxcnn.pipeline import run_studies
for data, out in json.loads(sys.argv[1]):
    experiment = Experiment(data=data, seeds=2, epochs=1, train_examples=100, val_size=50,
                            batch_size=16)
    run_studies([REGULARIZATION], experiment,
                Runtime(progress=False, out=out, devices=2, cache_dir=sys.argv[2]),
                configs=["baseline"])
"""


def configs_of(out: Path) -> dict:
    return json.loads((out / "regularization" / "results.json").read_text())["configs"]


@pytest.mark.slow
def test_two_runs_in_one_process_equal_two_processes(tmp_path):
    """Two data sets of the same size, one after the other in one process (split over two
    devices, where evaluation keeps copies of the splits on the first device), give the
    numbers each gives alone: nothing of the first run's data or programs is reused."""
    from tests import archives

    trees = [archives.write_folder(archives.folder_files(per_class=50, seed=s)[0],
                                   tmp_path / f"data{s}") / "tree" for s in (0, 1)]
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}

    def start(runs: list[tuple[Path, Path]]) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", TWO_RUNS, json.dumps([[str(d), str(o)] for d, o in runs]),
             str(tmp_path / "cache")], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)

    together = start([(trees[0], tmp_path / "a"), (trees[1], tmp_path / "b")])
    alone = start([(trees[1], tmp_path / "b_alone")])
    for proc in (together, alone):
        _, err = proc.communicate(timeout=1200)
        assert proc.returncode == 0, err[-3000:]
    assert configs_of(tmp_path / "b") == configs_of(tmp_path / "b_alone")
    assert configs_of(tmp_path / "a") != configs_of(tmp_path / "b")  # the data differ


# 500 steps an epoch: long enough that a Ctrl-C sent as epoch 1's line appears lands
# inside epoch 2 on any machine.
SIGINT_FLAGS = ["--data", "synthetic", "--seeds", "1", "--epochs", "3", "--train-examples",
                "8000", "--val-size", "50", "--batch-size", "16", "--configs", "baseline",
                "--no-progress"]


class Lines:
    """A process's stderr lines as they come, with their arrival time (monotonic)."""

    def __init__(self, proc: subprocess.Popen):
        self.lines: list[tuple[float, str]] = []
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stderr:
            self.lines.append((time.monotonic(), line.rstrip()))

    def wait_for(self, text: str, timeout: float) -> float:
        """When the first line containing ``text`` arrived; fails after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, line in list(self.lines):
                if text in line:
                    return at
            time.sleep(0.01)
        raise AssertionError(f"no {text!r} within {timeout} s:\n" +
                             "\n".join(line for _, line in self.lines))

    def text(self) -> str:
        self._thread.join(timeout=10)
        return "\n".join(line for _, line in self.lines)


def start_study(out: Path, flags: list[str] = SIGINT_FLAGS, **env: str) -> subprocess.Popen:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", **env}
    return subprocess.Popen([sys.executable, "-m", "experiments.regularization", *flags,
                             "--out", str(out)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def numbers(out: Path) -> dict:
    results = json.loads((out / "regularization" / "results.json").read_text())
    return {"configs": results["configs"], "statistics": results["statistics"]}


@pytest.mark.slow
def test_ctrl_c_abandons_the_epoch_at_once_and_the_rerun_resumes(tmp_path):
    """Ctrl-C during epoch 2: the line at once, exit 130 within seconds, no epoch line
    after it; the rerun starts from epoch 1's checkpoint, prints only epochs 2 and 3, and
    gives the numbers of a run never interrupted."""
    reference = start_study(tmp_path / "whole")
    out = tmp_path / "interrupted"
    proc = start_study(out)
    lines = Lines(proc)
    lines.wait_for("epoch 1/3", timeout=900)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    assert lines.wait_for(INTERRUPTED, timeout=30) - sent < 5
    assert proc.wait(timeout=60) == 130
    assert "epoch 2/3" not in lines.text()
    assert time.monotonic() - sent < 60
    assert reference.wait(timeout=1200) == 0
    rerun = start_study(out)
    again = Lines(rerun)
    assert rerun.wait(timeout=1200) == 0, again.text()
    text = again.text()
    assert "epoch 1/3" not in text and "epoch 2/3" in text and "epoch 3/3" in text
    assert numbers(out) == numbers(tmp_path / "whole")
    meta = json.loads((out / "regularization" / "results.json").read_text())["metadata"]
    assert meta["resumed_from_epoch"] == {"baseline": 1}


@pytest.mark.slow
def test_a_second_ctrl_c_exits_at_once(tmp_path):
    """The first Ctrl-C, during compilation (which cannot be abandoned), prints the line at
    once; a second one does not wait for the compilation: exit 130 immediately."""
    proc = start_study(tmp_path / "out")
    lines = Lines(proc)
    lines.wait_for("with one compiled program", timeout=600)
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    assert lines.wait_for(INTERRUPTED, timeout=30) - sent < 5
    proc.send_signal(signal.SIGINT)
    second = time.monotonic()
    # 130 from our handler, which stays installed while the process shuts down; in the
    # last moments of interpreter shutdown Python itself restores the default action, and
    # the signal then ends the process (-2, which a shell also reports as 130). Never an
    # abort (-6) or a wait for the compilation.
    assert proc.wait(timeout=30) in (130, -signal.SIGINT)
    assert time.monotonic() - second < 5


@pytest.mark.slow
def test_ctrl_c_stops_a_run_split_over_devices_at_the_next_step(tmp_path):
    """Two members split over two host devices (shard_map): Ctrl-C during epoch 2 takes
    effect at the next step too (each device's share checks the stop flag), with the one
    line, exit 130, no epoch line after it and no traceback."""
    flags = [f if f != "1" else "2" for f in SIGINT_FLAGS]  # --seeds 2: one per device
    assert flags[flags.index("--seeds") + 1] == "2"
    proc = start_study(tmp_path / "out", flags,
                       XLA_FLAGS="--xla_force_host_platform_device_count=2")
    lines = Lines(proc)
    lines.wait_for("on 2 devices", timeout=600)
    lines.wait_for("epoch 1/3", timeout=900)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    assert lines.wait_for(INTERRUPTED, timeout=30) - sent < 5
    assert proc.wait(timeout=60) == 130
    assert time.monotonic() - sent < 30  # an epoch of 500 steps takes longer than that
    text = lines.text()
    assert "epoch 2/3" not in text and "Traceback" not in text and "Exception" not in text


def test_a_signal_landing_on_a_worker_thread_is_handled_within_a_wake(monkeypatch):
    """Linux may deliver Ctrl-C's SIGINT to any thread (XLA's included); Python runs the
    handler only when the main thread next runs bytecode. The runner's wait for its
    chunks wakes every WAKE_SECONDS, so the handler runs at once, not when the chunk ends."""
    from concurrent.futures import ThreadPoolExecutor

    from jaxcnn.training import runner

    class StoppedError(Exception):
        pass

    def handler(signum, frame):
        raise StoppedError

    worker = {}

    def chunk() -> None:
        worker["ident"] = threading.get_ident()
        time.sleep(6)  # a chunk that would finish long after the signal

    sent = {}

    def send_to_worker() -> None:
        # From a third thread, once the main thread is blocked in the wait: sending
        # from the main thread itself would let it run the handler on its next bytecode,
        # before it ever reached the wait this test is about.
        sent["at"] = time.monotonic()
        signal.pthread_kill(worker["ident"], signal.SIGINT)  # not the main thread

    previous = signal.signal(signal.SIGINT, handler)
    pool = ThreadPoolExecutor(1)
    sender = threading.Timer(0.5, send_to_worker)
    try:
        future = pool.submit(chunk)
        while "ident" not in worker:
            time.sleep(0.01)
        sender.start()
        with pytest.raises(StoppedError):
            list(runner._as_completed_awake([future]))
        assert "at" in sent, "the wait ended before the signal was sent"
        assert time.monotonic() - sent["at"] < 2 * runner.WAKE_SECONDS + 0.5
        assert not future.done()
    finally:
        sender.cancel()
        sender.join()
        signal.signal(signal.SIGINT, previous)
        pool.shutdown(wait=True)

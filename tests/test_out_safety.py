"""Issue 19: nothing lost, nothing hangs. Multi-process start-up failures, one writer per
--out, report --run-missing with the recorded settings, hand-edited files and bad paths:
each is one line on stderr, a non-zero exit within a stated time, and leaves what was
finished in place."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from jaxcnn.cli import study_main
from jaxcnn.commands import report, sweep
from jaxcnn.errors import JaxcnnError
from jaxcnn.experiment import Experiment, setting_differences
from jaxcnn.platform import outlock
from jaxcnn.studies import REGULARIZATION
from tests.conftest import TINY_BATCH, TINY_FLAGS, TINY_TRAIN

ROOT = Path(__file__).resolve().parents[1]
TINY = list(TINY_FLAGS)


def error_lines(text: str) -> list[str]:
    """The lines that say what went wrong (argparse's usage lines aside)."""
    assert "Traceback" not in text and "Check failure" not in text, text
    return [line for line in text.splitlines() if ": error: " in line]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- item 1: multi-process start-up --------------------------------------------------------

INIT_TIMEOUT = 5
# The command's own time, from after its imports (which take tens of seconds when several
# start at once on a busy 2-core machine) to its exit: --init-timeout and a margin for the
# flags and the host name look-up (the bug was 200-309 s of silence, then a native abort).
SLACK = 15
# study_main in a fresh process, the clock started after the heavy imports.
TIMED_RUN = ("import sys, time\n"
             "from jaxcnn.cli import study_main\n"
             "from jaxcnn.studies import REGULARIZATION\n"
             "import jaxcnn.pipeline\n"
             "start = time.monotonic()\n"
             "try:\n"
             "    code = study_main(REGULARIZATION, sys.argv[1:])\n"
             "except SystemExit as exit:\n"
             "    code = exit.code\n"
             "print(f'seconds {time.monotonic() - start:.1f}', file=sys.stderr)\n"
             "sys.exit(code)\n")


def start_timed(flags: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", TIMED_RUN, *flags], cwd=ROOT,
                            env={**os.environ, "JAX_PLATFORMS": "cpu"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def seconds(err: str) -> float:
    """The command's own time, printed last (a native abort would not print it)."""
    return float(err.strip().splitlines()[-1].removeprefix("seconds "))


@pytest.mark.slow
def test_multi_process_start_up_failures_are_one_line_within_the_timeout(tmp_path):
    """The issue's commands, all at once: each exits 2 with one line naming the coordinator
    (or the process id) and what to check, within --init-timeout plus start-up; no native
    abort, no traceback, no output folder left behind."""
    alone0, alone1 = free_port(), free_port()
    cases = {
        "unresolvable": (["--coordinator", "nosuchhost.invalid:34568", "--num-processes", "2",
                          "--process-id", "1"], "cannot resolve the host name"),
        "bad port": (["--coordinator", "127.0.0.1:99999", "--num-processes", "2",
                      "--process-id", "1"], "port 99999 is outside 1-65535"),
        "no port": (["--coordinator", "garbage", "--num-processes", "2", "--process-id", "1"],
                    "--coordinator 'garbage': expected HOST:PORT"),
        "id out of range": (["--coordinator", f"127.0.0.1:{alone0}", "--num-processes", "2",
                             "--process-id", "2"], "--process-id 2 is out of range"),
        "process 0 alone": (["--coordinator", f"127.0.0.1:{alone0}", "--num-processes", "2",
                             "--process-id", "0"],
                            f"127.0.0.1:{alone0}: 1 of the 1 other processes did not connect "
                            f"within {INIT_TIMEOUT} s"),
        "process 1 alone": (["--coordinator", f"127.0.0.1:{alone1}", "--num-processes", "2",
                             "--process-id", "1"],
                            f"127.0.0.1:{alone1}: process 0 did not answer within "
                            f"{INIT_TIMEOUT} s"),
    }
    procs = {}
    for name, (flags, _) in cases.items():
        out = tmp_path / name.replace(" ", "_")
        procs[name] = (out, start_timed([*TINY, *flags, "--init-timeout", str(INIT_TIMEOUT),
                                         "--out", str(out)]))
    for name, (out, proc) in procs.items():
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 2, (name, proc.returncode, err[-2000:])
        lines = error_lines(err)
        assert len(lines) == 1 and cases[name][1] in lines[0], (name, err[-2000:])
        assert seconds(err) < INIT_TIMEOUT + SLACK, (name, err[-300:])
        assert not out.exists(), name  # a refused run leaves nothing behind


@pytest.mark.slow
def test_processes_started_with_different_counts_name_the_mismatch(tmp_path):
    port = free_port()

    def start(num: int, pid: int) -> subprocess.Popen:
        return start_timed([*TINY, "--coordinator", f"127.0.0.1:{port}", "--num-processes",
                            str(num), "--process-id", str(pid), "--init-timeout", "60",
                            "--out", str(tmp_path / "out")])

    procs = [start(3, 1), start(2, 0)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 2, err[-2000:]
        lines = error_lines(err)
        assert len(lines) == 1, err[-2000:]
        assert "process 1 was started with --num-processes 3, process 0 with 2" in lines[0]


# --- item 2: one writer per --out ----------------------------------------------------------

HOLDER = ("import sys, time; from pathlib import Path; from jaxcnn.platform import outlock\n"
          "with outlock.hold(Path(sys.argv[1])):\n"
          "    print('held', flush=True); time.sleep(120)\n")


def start_holder(out: Path) -> subprocess.Popen:
    """Another process holding --out's lock, the way a run does."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_run_on_the_same_out_says_who_holds_it(tmp_path, capsys):
    out = tmp_path / "out"
    (out / "regularization").mkdir(parents=True)
    finished = out / "regularization" / "results.json"
    finished.write_text("{}")  # stands for a finished study: must stay untouched
    holder = start_holder(out)
    try:
        started = time.monotonic()
        code = study_main(REGULARIZATION, [*TINY, "--out", str(out)])
        elapsed = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    assert code == 2 and elapsed < 30
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert f"--out {out} is being written by pid {holder.pid}" in err[0]
    assert "python -c" in err[0] and "add --wait" in err[0]
    assert finished.read_text() == "{}"


def test_the_lock_is_released_when_its_holder_is_killed_and_wait_waits(tmp_path, capsys):
    """--wait blocks until the holder goes (here: SIGKILL, so the kernel drops the lock),
    then the run carries on (and stops at its missing data, one line)."""
    out = tmp_path / "out"
    holder = start_holder(out)
    threading.Timer(3.0, holder.send_signal, (signal.SIGKILL,)).start()
    code = study_main(REGULARIZATION, ["--data", str(tmp_path / "nope.tar.xz"), "--wait",
                                       "--no-progress", "--out", str(out)])
    holder.wait()
    assert code == 2
    err = capsys.readouterr().err
    assert f"is being written by pid {holder.pid}" in err and "waiting for it" in err
    assert "no such file or folder" in err
    with outlock.hold(out):  # free again
        pass


def test_the_lock_file_names_its_holder_while_held_and_is_empty_after(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with outlock.hold(out):
        holder = json.loads((out / outlock.LOCK_NAME).read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        assert holder["started"].endswith("+00:00") and holder["command"]
    assert (out / outlock.LOCK_NAME).read_text() == ""


# --- items 4 and 6: report --run-missing, hand-edited files --------------------------------

TINY_EXPERIMENT = Experiment(data="synthetic", seeds=2, epochs=1, train_examples=TINY_TRAIN,
                             val_size=50, batch_size=TINY_BATCH)


def write_study(out: Path, study: str, configs: list[str], experiment: Experiment) -> Path:
    """A results file as a finished run writes it (numbers made up)."""
    seed = {"seed": 0, "test_accuracy": 11.0, "test_loss": 2.3, "diverged_epoch": None,
            "history": {"train_loss": [2.3]}}
    payload = {"experiment": study,
               "metadata": {"settings": experiment.settings("synthetic-v1"),
                            "data": {"val_is_test": False}, "reference": configs[0]},
               "configs": {name: {"seeds": [seed]} for name in configs}}
    path = out / study / "results.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(payload))
    return path


class StoppedError(JaxcnnError):
    pass


REGULARIZATION_CONFIGS = ["baseline", "l2", "dropout", "augment"]  # the whole study


@pytest.fixture
def trainer(monkeypatch):
    """Records what report --run-missing would train, instead of training it."""
    calls = []

    def run_studies(studies, experiment, runtime, configs=None, decisions=None):
        calls.append(([s.name for s in studies], experiment, runtime))
        raise StoppedError("stopped before training")

    monkeypatch.setattr("jaxcnn.pipeline.run_studies", run_studies)
    return calls


def test_run_missing_trains_with_the_settings_recorded_in_out(tmp_path, trainer, capsys):
    """No --data given: the recorded synthetic data, not a CIFAR-10 download, and the
    recorded sizes, not the flags' defaults."""
    write_study(tmp_path, "regularization", REGULARIZATION_CONFIGS, TINY_EXPERIMENT)
    assert report.main(["--out", str(tmp_path), "--run-missing", "--no-progress"]) == 2
    (studies, experiment, _), = trainer
    assert studies == ["initialization", "schedules"]
    assert experiment == TINY_EXPERIMENT


def test_run_missing_refuses_when_the_studies_in_out_disagree(tmp_path, trainer, capsys):
    write_study(tmp_path, "regularization", REGULARIZATION_CONFIGS, TINY_EXPERIMENT)
    other = dataclasses.replace(TINY_EXPERIMENT, seeds=3)
    write_study(tmp_path, "initialization", ["lecun"], other)
    assert report.main(["--out", str(tmp_path), "--run-missing", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "regularization was run with --seeds 2" in err[0]
    assert "initialization with --seeds 3" in err[0] and trainer == []


def test_run_missing_refuses_a_flag_that_differs_from_the_recorded_one(tmp_path, trainer,
                                                                        capsys):
    write_study(tmp_path, "regularization", ["baseline"], TINY_EXPERIMENT)
    with pytest.raises(SystemExit) as exit_info:
        report.main(["--out", str(tmp_path), "--run-missing", "--epochs", "3"])
    assert exit_info.value.code == 2 and trainer == []
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "--epochs 3 differs from the studies already in" in lines[0]


@pytest.mark.parametrize("damage, named", [
    (lambda p: p.pop("metadata"), "no 'metadata'"),
    (lambda p: p["configs"]["baseline"]["seeds"][0].update(test_accuracy="eleven"),
     "test_accuracy is 'eleven', not a number"),
])
def test_a_hand_edited_results_file_is_one_line_for_the_study_and_the_report(
        tmp_path, damage, named, capsys):
    path = write_study(tmp_path, "regularization", REGULARIZATION_CONFIGS,
                       TINY_EXPERIMENT)
    payload = json.loads(path.read_text())
    damage(payload)
    path.write_text(json.dumps(payload))
    before = path.read_text()
    assert study_main(REGULARIZATION, [*TINY, "--out", str(tmp_path)]) == 2
    assert report.main(["--out", str(tmp_path)]) == 2
    for line in capsys.readouterr().err.strip().splitlines():
        assert named in line and str(path) in line and "--fresh" in line, line
    assert path.read_text() == before  # nothing rewritten, nothing lost


def test_a_corrupt_file_report_advice_works(tmp_path, trainer, capsys):
    """The advice given for a corrupt file is a command that then gets past it."""
    write_study(tmp_path, "initialization", ["lecun", "glorot", "he", "torch"],
                TINY_EXPERIMENT)
    corrupt = tmp_path / "regularization" / "results.json"
    corrupt.parent.mkdir()
    corrupt.write_text('{"experiment": "regu')
    assert report.main(["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot read the existing results" in err[0]
    assert "add --fresh to --run-missing" in err[0]
    assert report.main(["--out", str(tmp_path), "--run-missing", "--fresh",
                        "--no-progress"]) == 2  # reaches training (stopped by the fixture)
    (studies, experiment, _), = trainer
    assert "regularization" in studies and experiment == TINY_EXPERIMENT
    assert corrupt.with_name("results.json.unreadable").exists()  # set aside, not deleted


def test_a_corrupt_file_then_study_fresh_sets_it_aside_and_starts_over(tmp_path):
    from jaxcnn.training.store import check_fresh, start_over

    corrupt = tmp_path / "regularization" / "results.json"
    (corrupt.parent / "params" / "baseline").mkdir(parents=True)
    corrupt.write_text("{not json")
    check_fresh(corrupt, ["baseline"], TINY_EXPERIMENT.settings("synthetic-v1"))
    start_over(corrupt, ["baseline"])
    assert not corrupt.exists()
    assert corrupt.with_name("results.json.unreadable").read_text() == "{not json"
    assert not (corrupt.parent / "params" / "baseline").exists()


# --- items 6, 7, 9: paths and sizes --------------------------------------------------------

@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs Linux /proc")
def test_an_out_that_cannot_be_created_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        study_main(REGULARIZATION, [*TINY, "--out", "/proc/jaxcnn_out"])
    assert exit_info.value.code == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "--out /proc/jaxcnn_out: cannot write there" in lines[0]


def test_an_empty_out_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        study_main(REGULARIZATION, [*TINY, "--out", ""])
    assert exit_info.value.code == 2
    assert "argument --out: an empty path" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing written into the current folder


@pytest.mark.parametrize("name", ["../../evil", "a/b", ".hidden", ""])
def test_a_sweep_name_must_stay_inside_out(tmp_path, name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        sweep.main(["--param", "lr=0.001,0.002", "--name", name, *TINY,
                    "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "is not a plain folder name" in lines[0]
    assert list(tmp_path.iterdir()) == []


def test_a_study_named_as_a_path_is_refused_by_the_library(tmp_path):
    from jaxcnn.errors import ConfigError
    from jaxcnn.experiment import Runtime
    from jaxcnn.pipeline import run_studies

    evil = dataclasses.replace(REGULARIZATION, name="../evil")
    with pytest.raises(ConfigError, match="must be one folder name inside --out"):
        run_studies([evil], TINY_EXPERIMENT, Runtime(out=tmp_path / "out"))
    assert list(tmp_path.iterdir()) == []


def test_fewer_training_examples_than_classes_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    flags = [*TINY, "--train-examples", "5", "--out", str(out)]
    with pytest.raises(SystemExit) as exit_info:
        study_main(REGULARIZATION, flags)
    assert exit_info.value.code == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1
    assert "--train-examples 5 is fewer than the 10 classes" in lines[0]
    assert not out.exists()


def test_run_missing_finds_a_relative_data_path_from_another_folder(tmp_path, trainer,
                                                                      monkeypatch, capsys):
    """The first study ran in ``start/`` with ``--data images.npz`` (relative); report
    --run-missing from elsewhere uses the absolute path that run recorded, or the path
    given on its own command line; with neither it says which file it cannot find."""
    start = tmp_path / "start"
    start.mkdir()
    (start / "images.npz").write_bytes(b"stand-in: the stubbed run never opens it")
    experiment = dataclasses.replace(TINY_EXPERIMENT, data="images.npz")
    path = write_study(tmp_path / "out", "regularization", REGULARIZATION_CONFIGS, experiment)
    results = json.loads(path.read_text())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    out = ["--out", str(tmp_path / "out"), "--run-missing", "--no-progress"]

    with pytest.raises(SystemExit) as exit_info:  # nothing recorded but the relative path
        report.main(out)
    assert exit_info.value.code == 2 and trainer == []
    assert "--data images.npz, recorded in" in capsys.readouterr().err
    assert report.main([*out, "--data", "../start/images.npz"]) == 2
    assert trainer.pop()[1].data == "../start/images.npz"
    results["metadata"]["data"]["path"] = str(start / "images.npz")  # what a run records
    path.write_text(json.dumps(results))
    assert report.main(out) == 2
    assert trainer.pop()[1].data == str(start / "images.npz")


def test_the_same_data_under_another_path_is_no_difference():
    """Settings compare data by content (the fingerprint), not by how its path is spelled."""
    old = dataclasses.replace(TINY_EXPERIMENT, data="images.npz").settings("fp-1")
    moved = dataclasses.replace(TINY_EXPERIMENT, data="../start/images.npz")
    assert setting_differences(old, moved.settings("fp-1")) is None
    assert setting_differences(old, moved.settings("fp-2")) == (
        "--data images.npz", "--data ../start/images.npz")

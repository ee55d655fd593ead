"""``jaxcnn run FILE.py:NAME``: a user's own study, model and data from one file, run and
evaluated from the shell in fresh processes, as a new user would."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from jaxcnn.commands import run

STUDY_FILE = textwrap.dedent('''
    """A study of one's own: a plain linen model with BatchNorm and Dropout."""
    import flax.linen as nn

    from jaxcnn.models import registry
    from jaxcnn.configs import Configuration
    from jaxcnn.models.model import Network
    from jaxcnn.studies import Study


    class Net(nn.Module):
        num_classes: int

        @nn.compact
        def __call__(self, x, train: bool = False):
            x = nn.Conv(8, (3, 3), use_bias=False)(x)
            x = nn.BatchNorm(use_running_average=not train)(x)
            x = nn.Dropout(0.2, deterministic=not train)(nn.relu(x).mean(axis=(1, 2)))
            return nn.Dense(self.num_classes)(x)


    registry.register_model("net", lambda network: Net(network.num_classes))


    def configs(ctx):
        network = Network(num_classes=ctx.num_classes, image_shape=ctx.image_shape,
                          model="net")
        return {"own": Configuration(network), "he": Configuration(network, init="he")}


    study = Study("mine", "My study", configs, reference="own")
    not_a_study = 3
''')
FLAGS = ["--data", "tree", "--seeds", "2", "--epochs", "2", "--train-examples", "96",
         "--val-size", "30", "--batch-size", "16", "--no-progress", "--out", "out"]


def jaxcnn(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``jaxcnn ARGS`` in a new process, its decoded-data cache inside ``cwd``."""
    env = {**os.environ, "JAXCNN_CACHE": str(cwd / "cache")}
    return subprocess.run([sys.executable, "-m", "jaxcnn.console", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def grayscale_tree(root: Path, train: int = 44, test: int = 10) -> None:
    """28x28 grayscale PNGs of 3 classes (a class's pixels around its own mean), ``train``
    and ``test`` images a class."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("test", test)):
        for label, name in enumerate(("a", "b", "c")):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                pixels = np.clip(rng.normal(60 + 70 * label, 40, (28, 28)), 0, 255)
                Image.fromarray(pixels.astype(np.uint8)).save(root / split / name / f"{i}.png")


@pytest.mark.slow
def test_a_study_file_runs_and_evaluates_in_new_processes(tmp_path):
    """Issue 26's new user: their own linen model (BatchNorm, Dropout) on a 28x28 grayscale
    tree of 3 classes, from `jaxcnn run`; `evaluate` and `predict` in new processes."""
    (tmp_path / "mystudy.py").write_text(STUDY_FILE)
    grayscale_tree(tmp_path / "tree")
    proc = jaxcnn(["run", "mystudy.py:study", *FLAGS], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    results = json.loads((tmp_path / "out" / "mine" / "results.json").read_text())
    assert results["metadata"]["command"].startswith("jaxcnn run mystudy.py:study ")
    recorded = {s["seed"]: s["test_accuracy"] for s in results["configs"]["he"]["seeds"]}
    assert len(recorded) == 2 and all(0 <= a <= 100 for a in recorded.values())
    assert results["statistics"]["comparisons"][0]["config"] == "he"
    meta = json.loads((tmp_path / "out/mine/params/he/meta.json").read_text())
    assert meta["model"]["model_source"] == "mystudy"
    # A new process: evaluate imports mystudy (the model and the data source) and gets the
    # recorded numbers back.
    proc = jaxcnn(["evaluate", "out/mine", "he"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = {int(s): float(a) for s, a in re.findall(r"seed (\d+): test accuracy ([\d.]+)%",
                                                    proc.stdout)}
    assert got.keys() == recorded.keys()
    for seed, accuracy in recorded.items():
        assert abs(got[seed] - accuracy) <= 0.01, (seed, got[seed], accuracy)
    assert max(recorded.values()) > 100 / 3  # above chance: the classes are separable
    proc = jaxcnn(["predict", "out/mine", "he", "tree/test/c/0.png"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = proc.stdout.strip().splitlines()[-1]
    assert line.startswith("tree/test/c/0.png: ") and line.count(" 0.") + line.count(" 1.") == 3


PLAIN_STUDY = textwrap.dedent('''
    from jaxcnn.studies import Study

    study = Study("mine", "My study", lambda ctx: {}, reference="own")
    not_a_study = 3
''')


@pytest.mark.parametrize("target, message", [
    ("nowhere.py:study", "nowhere.py: no such file"),
    ("mystudy.py:nothing", "defines no 'nothing'; its studies: study"),
    ("mystudy.py:not_a_study", "not_a_study is a int, not a jaxcnn.studies.Study"),
    ("mystudy.py", "give FILE.py:NAME or module:NAME"),
    ("no_such_module:study", "cannot import 'no_such_module'"),
    ("broken.py:study", "broken.py:1: "),
])
def test_a_bad_target_is_one_line(target, message, tmp_path, monkeypatch, capsys):
    (tmp_path / "mystudy.py").write_text(PLAIN_STUDY)
    (tmp_path / "broken.py").write_text("study = (\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in ("mystudy", "broken"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert run.main([target, "--seeds", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


@pytest.mark.slow  # three runs in new processes: about 30 s on 2 cores
def test_a_second_process_takes_its_programs_from_the_compile_cache(tmp_path):
    """The persistent compilation cache is on by default, in the cache directory: the first
    run compiles and writes, the second finds every program there but the one-scan epoch
    (it calls back to the host every step for the progress bar and Ctrl-C, and JAX does not
    cache a program with host callbacks: its log says "Not writing persistent cache entry
    ... because it uses host callbacks"); results.json and the run's last line say so.
    --no-compile-cache leaves the cache alone."""
    env = {**os.environ, "JAXCNN_CACHE": str(tmp_path / "cache"), "JAXCNN_COMPILE_CACHE": "1"}
    flags = ["--data", "synthetic", "--seeds", "1", "--epochs", "1", "--train-examples", "64",
             "--val-size", "50", "--batch-size", "16", "--configs", "baseline", "--no-progress"]

    def run(out: str, *more: str) -> tuple[dict, str]:
        proc = subprocess.run([sys.executable, "-m", "jaxcnn.console", "regularization", *flags,
                               *more, "--out", out], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        results = json.loads((tmp_path / out / "regularization" / "results.json").read_text())
        return results["metadata"]["compile_cache"], proc.stderr

    (first, _), (second, said) = run("a"), run("b")
    assert first["hits"] == 0 and first["requests"] > 2
    assert first["folder"].startswith(str(tmp_path / "cache" / "xla" / "jax"))
    assert second["folder"] == first["folder"]
    assert second["requests"] == first["requests"]
    assert second["hits"] == second["requests"] - 1  # all but the epoch with host callbacks
    assert f"{second['hits']} of {second['requests']} programs from the compile cache" in said
    files = sorted((tmp_path / "cache" / "xla").rglob("*"))
    assert run("c", "--no-compile-cache")[0]["folder"] is None
    assert sorted((tmp_path / "cache" / "xla").rglob("*")) == files

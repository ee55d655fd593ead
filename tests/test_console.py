"""The ``jaxcnn`` command (jaxcnn/console.py) and ``python -m benchmarks.torch_tuned --help``."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxcnn import console
from tests.conftest import TINY_FLAGS

ROOT = Path(__file__).resolve().parents[1]
SMALL = [*TINY_FLAGS, "--configs", "baseline"]
ENV = {**os.environ, "JAX_PLATFORMS": "cpu"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """OUT/regularization with baseline trained for seeds 0 and 1, through `jaxcnn`."""
    out = tmp_path_factory.mktemp("console") / "out"
    assert console.main(["regularization", *SMALL, "--out", str(out)]) == 0
    return out / "regularization"


@pytest.fixture
def images(tmp_path) -> list[Path]:
    """An RGB 32x32 PNG and a grey 48x64 JPEG (converted and resized by predict)."""
    rng = np.random.default_rng(0)
    rgb, grey = tmp_path / "rgb.png", tmp_path / "grey.jpg"
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(rgb)
    Image.fromarray(rng.integers(0, 256, (64, 48), dtype=np.uint8)).save(grey)
    return [rgb, grey]


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_:
        console.main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for name in ("regularization", "initialization", "schedules", "all", "sweep", "report",
                 "evaluate", "predict"):
        assert re.search(rf"^\s+{name}\b", text, re.MULTILINE), name


def test_no_command_or_an_unknown_one_is_a_usage_error(capsys):
    for argv in ([], ["train"]):
        with pytest.raises(SystemExit) as exit_:
            console.main(argv)
        assert exit_.value.code == 2
        assert "usage: jaxcnn" in capsys.readouterr().err


@pytest.mark.parametrize("command, flag", [("regularization", "--configs"),
                                           ("sweep", "--param"), ("report", "--run-missing"),
                                           ("all", "--seeds"), ("evaluate", "--data"),
                                           ("predict", "--top")])
def test_each_command_has_its_own_flags(command, flag, capsys):
    """The training commands reach the existing mains' parsers (their flags, their help)."""
    with pytest.raises(SystemExit) as exit_:
        console.main([command, "--help"])
    assert exit_.value.code == 0
    assert flag in capsys.readouterr().out


@pytest.mark.slow
def test_evaluate_reproduces_the_recorded_test_accuracy(trained, capsys):
    """Without --data it reads the study's data from results.json (synthetic here)."""
    assert console.main(["evaluate", str(trained), "baseline"]) == 0
    out = capsys.readouterr().out
    recorded = json.loads((trained / "results.json").read_text())["configs"]["baseline"]["seeds"]
    printed = dict(re.findall(r"^seed (\d+): test accuracy ([\d.]+)%", out, re.MULTILINE))
    assert sorted(printed) == ["0", "1"]
    for record in recorded:
        assert float(printed[str(record["seed"])]) == pytest.approx(record["test_accuracy"],
                                                                    abs=0.006)
    assert "mean over 2 seeds" in out
    assert console.main(["evaluate", str(trained), "baseline", "--seed", "1",
                         "--data", "synthetic"]) == 0
    assert re.findall(r"^seed (\d+):", capsys.readouterr().out, re.MULTILINE) == ["1"]


@pytest.mark.slow
def test_predict_prints_every_class_probability_per_image(trained, images, capsys):
    from jaxcnn.inference import load_model

    assert console.main(["predict", str(trained), "baseline", "--seed", "0",
                         *map(str, images)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "regularization/baseline, seed 0: class probabilities"
    assert len(lines) == 1 + len(images)
    model = load_model(trained.parent, "regularization", "baseline")
    pixels = np.stack([console.read_image(p)[0] for p in images])
    expected = model.predict_proba(pixels, seed=0)
    for path, line, row in zip(images, lines[1:], expected):
        assert line.startswith(f"{path}: ")
        pairs = re.findall(r"(pattern\d) ([\d.]+)", line)
        assert sorted(name for name, _ in pairs) == sorted(model.class_names)
        probs = [float(p) for _, p in pairs]
        assert probs == sorted(probs, reverse=True)
        assert sum(probs) == pytest.approx(1.0, abs=1e-3)
        for name, p in pairs:
            assert float(p) == pytest.approx(row[model.class_names.index(name)], abs=6e-5)
    assert "converted from L to RGB, resized from 48x64" in lines[2]


@pytest.mark.slow
def test_predict_without_seed_averages_the_seeds_and_top_limits(trained, images, capsys):
    assert console.main(["predict", str(trained), "baseline", "--top", "3",
                         str(images[0])]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "regularization/baseline, mean of seeds [0, 1]: class probabilities"
    assert len(re.findall(r"pattern\d [\d.]+", lines[1])) == 3


@pytest.mark.parametrize("case, argv, named", [
    ("missing folder", ["evaluate", "{tmp}/nowhere/regularization", "baseline"],
     "no such study folder"),
    ("unknown config", ["predict", "{trained}", "nosuch", "{image}"],
     "no trained configuration 'nosuch'; trained: baseline"),
    ("untrained seed", ["predict", "{trained}", "baseline", "--seed", "2", "{image}"],
     "seed 2 was not trained; trained seeds: [0, 1]"),
    ("untrained seed, evaluate", ["evaluate", "{trained}", "baseline", "--seed", "7"],
     "seed 7 was not trained"),
    ("unreadable image", ["predict", "{trained}", "baseline", "{tmp}/text.png"],
     "text.png: not a readable image"),
    ("missing image", ["predict", "{trained}", "baseline", "{tmp}/absent.png"],
     "absent.png: no such file"),
    ("bad --top", ["predict", "{trained}", "baseline", "--top", "0", "{image}"], "--top 0"),
])
def test_bad_input_is_one_line_and_exit_2(trained, images, tmp_path, capsys, case, argv, named):
    (tmp_path / "text.png").write_text("not an image")
    fill = {"tmp": str(tmp_path), "trained": str(trained), "image": str(images[0])}
    assert console.main([a.format(**fill) for a in argv]) == 2, case
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"jaxcnn {argv[0]}: error: ") and named in err, err
    assert "Traceback" not in err and captured.out == ""


def test_installed_script_runs():
    """`pip install -e .` puts `jaxcnn` on PATH ([project.scripts])."""
    script = shutil.which("jaxcnn", path=os.pathsep.join(
        [str(Path(sys.executable).parent), ENV.get("PATH", "")]))
    if script is None:
        pytest.skip("the jaxcnn script is not installed (pip install -e .)")
    proc = subprocess.run([script, "--help"], capture_output=True, text=True, env=ENV,
                          timeout=120)
    assert proc.returncode == 0 and "evaluate" in proc.stdout and "predict" in proc.stdout
    proc = subprocess.run([script, "evaluate", "nowhere/regularization", "baseline"],
                          capture_output=True, text=True, env=ENV, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "no such study folder" in proc.stderr


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs PyTorch")
def test_torch_tuned_help_prints_its_usage():
    """It used to print nothing (a module without a main); now help like the others."""
    proc = subprocess.run([sys.executable, "-m", "benchmarks.torch_tuned", "--help"], cwd=ROOT,
                          capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: python -m benchmarks.torch_tuned")
    for flag in ("--seeds", "--trainer", "--steps", "--repeats", "--device"):
        assert flag in proc.stdout
    assert "(default: None)" not in proc.stdout


def test_ctrl_c_during_evaluate_is_one_line_and_exit_130(monkeypatch, capsys):
    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(console, "evaluate", interrupted)
    assert console.main(["evaluate", "results/regularization", "baseline"]) == 130
    err = capsys.readouterr().err.strip()
    assert err == "jaxcnn evaluate: interrupted"

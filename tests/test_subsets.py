"""Issue 29: any subset of a study's configurations runs to the end (exit 0, results.json,
figures, table, report), with or without its reference, on tiny synthetic data.

The default tier runs one or two subsets per study; the slow tier runs every proper subset
of every built-in study (``-m slow``)."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxcnn.cli import config_names_for, study_main
from jaxcnn.commands import report
from jaxcnn.studies import STUDIES
from jaxcnn.training.results import read_results
from tests.conftest import TINY_FLAGS

FIGURES = ("curves.png", "test_accuracy.png", "estimation.png")


def run_subset(study: str, subset: tuple[str, ...], out: Path, capsys,
               extra: tuple[str, ...] = ()) -> tuple[dict, str]:
    """Runs ``subset`` of ``study`` into ``out``; returns its results.json and stdout."""
    rc = study_main(STUDIES[study], [*TINY_FLAGS, *extra, "--configs", *subset,
                                     "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "Traceback" not in captured.err
    results = read_results(out / study / "results.json")  # decisions resolved
    assert "git_dirty" in results["metadata"] and "git_commit" in results["metadata"]
    assert results["schema_version"] == 3
    for figure in FIGURES:
        assert (out / study / figure).stat().st_size > 0, figure
    return results, captured.out


def check_subset(study: str, subset: tuple[str, ...], out: Path, capsys) -> None:
    results, table = run_subset(study, subset, out, capsys)
    assert set(results["configs"]) == set(subset)
    reference = results["metadata"]["reference"]
    statistics = results["statistics"]
    if reference in subset:
        assert "no_reference" not in statistics
        assert {c["config"] for c in statistics["comparisons"]
                if c["reference"] == reference} == set(subset) - {reference}
    else:
        assert statistics["no_reference"].startswith("no reference in this run")
        assert all(c["reference"] != reference for c in statistics["comparisons"])
        for name in subset:  # each row of the table says why it has no verdict
            row = next(line for line in table.splitlines() if line.startswith(f"{name} "))
            if not any(name in (c["config"], c["reference"]) for c in statistics["comparisons"]):
                assert row.endswith("no reference in this run"), row


# One or two subsets per study in the default tier: the reference missing, and present.
DEFAULT_SUBSETS = [("regularization", ("l2",)), ("regularization", ("baseline", "dropout")),
                   ("initialization", ("glorot", "he")), ("schedules", ("step", "cyclic"))]


@pytest.mark.parametrize("study,subset", DEFAULT_SUBSETS)
def test_a_subset_runs_to_the_end(study, subset, tmp_path, capsys):
    check_subset(study, subset, tmp_path, capsys)


def proper_subsets(study: str) -> list[tuple[str, ...]]:
    names = config_names_for(STUDIES[study], torch_parity=False)
    return [s for k in range(1, len(names)) for s in itertools.combinations(names, k)]


@pytest.mark.slow
@pytest.mark.parametrize("study,subset", [(study, subset) for study in STUDIES
                                          for subset in proper_subsets(study)])
def test_every_subset_runs_to_the_end(study, subset, tmp_path, capsys):
    check_subset(study, subset, tmp_path, capsys)


def test_the_report_covers_a_partial_out(tmp_path, capsys):
    """A report over an --out holding part of one study is written, names what is missing
    and how to add it, and says which comparisons lack their reference."""
    run_subset("regularization", ("l2",), tmp_path, capsys)
    assert report.main(["--out", str(tmp_path), "--no-progress"]) == 0
    captured = capsys.readouterr()
    text = (tmp_path / "REPORT.md").read_text()
    assert "no reference in this run" in text.lower()
    assert "**Incomplete:**" in text and "python -m experiments.initialization" in text
    assert "missing or incomplete" in captured.err
    for figure in FIGURES:  # redrawn by the report
        assert (tmp_path / "regularization" / figure).exists()


def test_a_report_over_an_empty_out_is_one_line(tmp_path, capsys):
    assert report.main(["--out", str(tmp_path / "nothing"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing in" in err[0] and "--run-missing" in err[0]


def test_a_reference_already_in_out_is_compared_with(tmp_path, capsys):
    """--configs l2 after the reference finished in the same --out: l2 is decided against
    it, without training the reference again."""
    run_subset("regularization", ("baseline",), tmp_path, capsys)
    results, table = run_subset("regularization", ("l2",), tmp_path, capsys)
    assert "no_reference" not in results["statistics"]
    (c,) = [c for c in results["statistics"]["comparisons"] if c["config"] == "l2"]
    assert c["reference"] == "baseline" and c["n_pairs"] == 2
    assert "regularization/l2 vs baseline" in results["decisions"]["comparisons"]
    assert "no reference" not in table


def test_seeds_auto_with_a_subset_trains_the_reference(tmp_path, capsys):
    results, _ = run_subset("regularization", ("l2",), tmp_path, capsys,
                            extra=("--seeds", "auto", "--first-round", "2", "--max-seeds", "2"))
    assert set(results["configs"]) == {"l2", "baseline"}
    assert "regularization/l2 vs baseline" in results["decisions"]["comparisons"]


@pytest.mark.slow
def test_the_issue_command_exits_0_with_its_table_and_figures(tmp_path):
    """The command of issue 29, as a new user types it, in its own process."""
    out = tmp_path / "x"
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.regularization", "--data", "synthetic",
         "--train-examples", "300", "--epochs", "1", "--seeds", "2", "--configs", "l2",
         "--out", str(out), "--no-progress"],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "l2 " in proc.stdout and "no reference in this run" in proc.stdout
    for figure in FIGURES:
        assert (out / "regularization" / figure).exists()


def test_a_64x64_rgb_tree_trains_the_seed_cnn(tmp_path, capsys):
    """Issue 26 item 4: a folder tree of another size trains the seed CNN, which follows the
    data's shape."""
    from tests import archives

    rng = np.random.default_rng(1)
    files = {f"tree/{split}/{c}/{i:02d}.png": archives.png_bytes(
        rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
        for split, n in (("train", 12), ("test", 4)) for c in ("a", "b", "c") for i in range(n)}
    root = archives.write_folder(files, tmp_path / "t") / "tree"
    rc = study_main(STUDIES["regularization"], [
        "--data", str(root), "--seeds", "1", "--epochs", "1", "--val-size", "6",
        "--batch-size", "8", "--configs", "baseline", "--no-progress",
        "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out")])
    assert rc == 0, capsys.readouterr().err
    results = read_results(tmp_path / "out/regularization/results.json")
    assert results["configs"]["baseline"]["model"]["image_shape"] == [64, 64, 3]
    assert results["configs"]["baseline"]["model"]["num_classes"] == 3

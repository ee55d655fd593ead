"""A study end to end through its command line, on small synthetic data."""

from __future__ import annotations

import json

import pytest

from experiments.regularization import STUDY
from jaxcnn.study import main

SMALL = ["--data", "synthetic", "--seeds", "2", "--epochs", "2", "--train-examples", "2000",
         "--val-size", "500", "--no-progress"]


@pytest.fixture(scope="module")
def regularization_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    assert main(STUDY, [*SMALL, "--out", str(out)]) == 0
    return out / "regularization"


def test_results_file_layout(regularization_run):
    results = json.loads((regularization_run / "results.json").read_text())
    assert results["experiment"] == "regularization"
    meta = results["metadata"]
    assert {"versions", "device", "data", "flags", "wall_seconds"} <= set(meta)
    assert meta["data"]["fingerprint"].startswith("synthetic")
    assert set(meta["wall_seconds"]) == {"baseline", "l2", "dropout"}
    assert list(results["configs"]) == ["baseline", "l2", "dropout"]
    for cfg in results["configs"].values():
        assert [s["seed"] for s in cfg["seeds"]] == [0, 1]
        for seed in cfg["seeds"]:
            assert set(seed["history"]) == {"train_loss", "val_loss", "val_accuracy",
                                            "train_step_loss"}
            assert len(seed["history"]["val_accuracy"]) == 2


def test_baseline_learns_well_above_chance(regularization_run):
    results = json.loads((regularization_run / "results.json").read_text())
    accuracies = [s["test_accuracy"] for s in results["configs"]["baseline"]["seeds"]]
    assert min(accuracies) > 40.0  # chance is 10%


def test_figure_and_params_written(regularization_run):
    assert (regularization_run / "curves.png").stat().st_size > 10_000
    assert (regularization_run / "params" / "baseline" / "meta.json").exists()
    assert not (regularization_run / "checkpoints" / "baseline").exists()  # cleared when done


def test_summary_printed(regularization_run, capsys, tmp_path):
    # Rerunning into the same folder resumes: every configuration is already done.
    out = regularization_run.parent
    assert main(STUDY, [*SMALL, "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "baseline" in printed.out and "reference" in printed.out
    assert "already finished" in printed.err


@pytest.mark.parametrize("flags, message", [
    (["--seeds", "0"], "--seeds: '0' is not a positive integer"),
    (["--lr", "-1"], "--lr: '-1' is not a positive number"),
    (["--epochs", "0"], "--epochs: '0' is not a positive integer"),
    (["--configs", "nope"], "unknown configuration 'nope'"),
    (["--val-size", "20000"], "--val-size 20000 must be between 0 and 9999"),
])
def test_invalid_flags_get_argparse_errors(flags, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(STUDY, ["--data", "synthetic", "--out", str(tmp_path / "o"), *flags])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "usage:" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()  # nothing half-written


def test_missing_data_path_is_one_line(capsys, tmp_path):
    code = main(STUDY, ["--data", str(tmp_path / "nope.tar.xz"), "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no such file or folder" in err
    assert not (tmp_path / "o").exists()

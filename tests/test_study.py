"""Studies end to end through their command lines, on small synthetic data and image trees."""

from __future__ import annotations

import json
import os

import pytest

from jaxcnn.cli import study_main
from jaxcnn.commands import all_studies
from jaxcnn.studies import INITIALIZATION, REGULARIZATION, SCHEDULES
from tests import archives
from tests.conftest import TINY_BATCH, TINY_FLAGS, TINY_TRAIN

# The sizes of conftest.tiny_data, so the compiled programs are shared with other tests.
SMALL = list(TINY_FLAGS)


def read(out, study="regularization") -> dict:
    return json.loads((out / study / "results.json").read_text())


@pytest.fixture(scope="module")
def regularization_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    assert study_main(REGULARIZATION, [*SMALL, "--out", str(out)]) == 0
    return out


def test_results_file_layout(regularization_run):
    results = read(regularization_run)
    assert results["experiment"] == "regularization"
    meta = results["metadata"]
    assert {"versions", "device", "data", "settings", "runtime", "command",
            "finished_after_seconds", "compile_seconds", "invoked_as"} <= set(meta)
    assert meta["data"]["fingerprint"].startswith("synthetic")
    assert meta["runtime"] == {"batching": "threads", "conv": "winograd",
                               "workers": meta["runtime"]["workers"], "members_per_chunk": 1,
                               "devices": 1, "processes": 1}
    assert meta["settings"]["seeds"] == 2 and meta["settings"]["torch_parity"] is False
    assert set(meta["finished_after_seconds"]) == {"baseline", "l2", "dropout", "augment"}
    assert list(results["configs"]) == ["baseline", "l2", "dropout", "augment"]
    for cfg in results["configs"].values():
        assert [s["seed"] for s in cfg["seeds"]] == [0, 1]
        assert cfg["schedule"]["step"] == list(range(1, 8))  # a short run: every step
        for seed in cfg["seeds"]:
            assert set(seed["history"]) == {"train_loss", "val_loss", "val_accuracy",
                                            "train_step_loss"}
            assert len(seed["history"]["val_accuracy"]) == 1
    baseline = results["configs"]["baseline"]
    # Linked only to studies of this run or in --out under the same settings: none here.
    assert baseline["same_model_as"] == []
    assert baseline["trained_as"] == "regularization/baseline"
    # The convolution is a run-time choice, not part of the model.
    assert set(baseline["model"]) == {"relu_after", "num_classes", "image_shape", "model",
                                      "init", "spatial_dropout", "dropout"}
    assert baseline["model"]["image_shape"] == [32, 32, 3] and baseline["model"]["model"] == "cnn"


def test_figures_params_and_no_checkpoints_left(regularization_run):
    study = regularization_run / "regularization"
    assert (study / "curves.png").stat().st_size > 10_000
    assert (study / "test_accuracy.png").stat().st_size > 10_000
    meta = json.loads((study / "params" / "baseline" / "meta.json").read_text())
    assert meta["seeds"] == [0, 1] and meta["model"]["num_classes"] == 10
    assert not list((regularization_run / "checkpoints").glob("*"))  # cleared when written


def test_rerun_skips_finished_work_and_prints_the_table(regularization_run, capsys):
    assert study_main(REGULARIZATION, [*SMALL, "--out", str(regularization_run)]) == 0
    printed = capsys.readouterr()
    assert "baseline" in printed.out and "reference" in printed.out
    assert "already finished" in printed.err
    assert read(regularization_run)["metadata"]["members_trained_this_invocation"] == 0


@pytest.mark.slow
def test_fresh_with_configs_starts_only_those_over(regularization_run, capsys):
    """Issue 19 item 3: `--fresh --configs baseline` on a finished study retrains baseline
    and keeps l2 and dropout: their results and parameters, untouched."""
    study = regularization_run / "regularization"
    before = read(regularization_run)
    kept = {name: (study / "params" / name / "meta.json").stat().st_mtime_ns
            for name in ("l2", "dropout")}
    assert study_main(REGULARIZATION, [*SMALL, "--fresh", "--configs", "baseline",
                                       "--out", str(regularization_run)]) == 0
    after = read(regularization_run)
    assert after["metadata"]["members_trained_this_invocation"] == 2  # baseline's 2 seeds
    for name in ("l2", "dropout"):
        assert after["configs"][name] == before["configs"][name], name
        assert (study / "params" / name / "meta.json").stat().st_mtime_ns == kept[name]
    assert after["configs"]["baseline"]["seeds"] == before["configs"]["baseline"]["seeds"]
    assert set(after["metadata"]["finished_after_seconds"]) == {"baseline", "l2", "dropout",
                                                                "augment"}
    assert "keeping l2, dropout" in capsys.readouterr().err


def test_fresh_with_configs_refuses_to_mix_settings(regularization_run, capsys):
    """What --fresh --configs keeps must have been made with the flags given."""
    flags = [*SMALL, "--fresh", "--configs", "baseline", "--lr", "0.002"]
    before = read(regularization_run)
    assert study_main(REGULARIZATION, [*flags, "--out", str(regularization_run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "also holds l2, dropout" in err[0] and "--lr 0.002" in err[0]
    assert read(regularization_run)["configs"] == before["configs"]


@pytest.mark.slow
def test_a_model_finished_in_another_study_is_copied_not_trained(regularization_run, capsys):
    """initialization/lecun is regularization/baseline: the second study reuses it."""
    assert study_main(INITIALIZATION, [*SMALL, "--out", str(regularization_run)]) == 0
    init = read(regularization_run, "initialization")
    assert init["metadata"]["members_trained_this_invocation"] == 3 * 2  # glorot, he, torch
    lecun, baseline = init["configs"]["lecun"], read(regularization_run)["configs"]["baseline"]
    assert lecun["seeds"] == baseline["seeds"]
    assert "copying it" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [
    (["--seeds", "0"], "--seeds: '0' is not a positive integer"),
    (["--lr", "-1"], "--lr: '-1' is not a positive number"),
    (["--epochs", "0"], "--epochs: '0' is not a positive integer"),
    (["--configs", "nope"],
     "invalid choice: 'nope' (choose from 'baseline', 'l2', 'dropout', 'augment')"),
    (["--val-size", "20000"], "--val-size 20000 must be between 0 and 9999"),
])
def test_invalid_flags_get_argparse_errors(flags, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        study_main(REGULARIZATION, ["--data", "synthetic", "--out", str(tmp_path / "o"), *flags])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "usage:" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()  # nothing half-written


def test_missing_data_path_is_one_line(capsys, tmp_path):
    code = study_main(REGULARIZATION, ["--data", str(tmp_path / "nope.tar.xz"),
                                       "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no such file or folder" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("make_out", [lambda p: p / "file", lambda p: p / "file" / "sub"])
def test_out_naming_a_file_is_one_line(make_out, tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(SystemExit) as exit_info:
        study_main(REGULARIZATION, [*SMALL, "--out", str(make_out(tmp_path))])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--out" in err and "file" in err and "Traceback" not in err


def test_help_lists_defaults_and_configurations(capsys):
    with pytest.raises(SystemExit):
        study_main(SCHEDULES, ["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for fragment in ("--epochs EPOCHS training epochs (the notebook: 2) (default: 2)",
                     "--batch-size BATCH_SIZE images per optimizer step",
                     "any of constant, step, exponential, cyclic",
                     "--no-progress"):
        assert fragment in text, fragment
    assert "(default: True)" not in text and "(default: None)" not in text
    assert text.count("(default: 5000") <= 1


def test_batch_size_notice():
    from jaxcnn.training.plan import batch_size_notice

    assert batch_size_notice(64, 64) is None
    assert "--batch-size 65 is larger than the 64 training images" in batch_size_notice(65, 64)


@pytest.mark.slow
def test_batch_larger_than_the_training_set_warns(tmp_path, capsys):
    flags = ["--data", "synthetic", "--seeds", "1", "--epochs", "1", "--train-examples", "40",
             "--val-size", "50", "--batch-size", "64", "--configs", "baseline", "--no-progress"]
    assert study_main(REGULARIZATION, [*flags, "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "--batch-size 64 is larger than the 40 training images" in err
    assert "1 seed x 1 epoch" not in err and "1 seeds" not in err and "1 epochs" not in err


@pytest.mark.parametrize("classes", [3, pytest.param(12, marks=pytest.mark.slow)])
def test_class_count_comes_from_the_data(tmp_path, classes):
    names = tuple(f"k{i:02d}" for i in range(classes))
    files, _ = archives.folder_files(per_class=6, classes=names)
    root = archives.write_folder(files, tmp_path) / "tree"
    out = tmp_path / "out"
    flags = ["--data", str(root), "--seeds", "1", "--epochs", "1", "--val-size", str(classes),
             "--batch-size", "8", "--configs", "baseline", "--no-progress",
             "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]
    assert study_main(REGULARIZATION, flags) == 0
    results = read(out)
    assert results["metadata"]["data"]["class_names"] == list(names)
    seed = results["configs"]["baseline"]["seeds"][0]
    assert seed["diverged_epoch"] is None and seed["test_loss"] is not None
    assert results["configs"]["baseline"]["model"]["num_classes"] == classes
    from jaxcnn.inference import load_model

    model = load_model(out, "regularization", "baseline")
    images = archives.random_images(__import__("numpy").random.default_rng(0), 5)[0]
    assert model.predict_proba(images, seed=0).shape == (5, classes)


@pytest.mark.slow
def test_torch_parity_through_the_cli_records_the_notebooks_protocol(tmp_path, capsys):
    flags = ["--data", "synthetic", "--seeds", "1", "--epochs", "1", "--train-examples",
             str(TINY_TRAIN), "--batch-size", str(TINY_BATCH), "--torch-parity",
             "--no-progress", "--out", str(tmp_path)]
    assert all_studies.main(flags) == 0
    for study, names in (("regularization", ["baseline", "l2", "dropout"]),
                         ("initialization", ["torch", "glorot", "he"]),
                         ("schedules", ["step", "exponential", "cyclic"])):
        results = read(tmp_path, study)
        settings = results["metadata"]["settings"]
        assert settings["torch_parity"] and settings["val_size"] == 0
        assert settings["normalization"] == "half" and results["metadata"]["data"]["val_is_test"]
        assert list(results["configs"]) == names
        assert "--torch-parity" in results["metadata"]["command"]
    reg = read(tmp_path)["configs"]
    assert reg["dropout"]["model"]["relu_after"] == ["conv1"]
    assert {c["init"] for c in reg.values()} == {"torch"}
    init = read(tmp_path, "initialization")["configs"]
    assert init["glorot"]["init"] == "torch_xavier" and init["he"]["init"] == "torch_kaiming"
    schedules = read(tmp_path, "schedules")["configs"]
    for cfg in schedules.values():
        assert cfg["optimizer_config"]["schedule"]["per_epoch"] is True
    assert schedules["step"]["optimizer_config"]["schedule"]["period"] == 5
    assert (tmp_path / "REPORT.md").exists()


@pytest.mark.slow
def test_deterministic_flag_is_accepted_and_changes_nothing_on_the_cpu(tmp_path, monkeypatch):
    # setenv records the variable's state (absent or not) so teardown restores it; delenv
    # alone records nothing when it was absent, and the flag written below would leak.
    monkeypatch.setenv("XLA_FLAGS", "")
    monkeypatch.delenv("XLA_FLAGS")
    flags = [*SMALL, "--seeds", "1", "--configs", "baseline"]
    assert study_main(REGULARIZATION, [*flags, "--out", str(tmp_path / "a")]) == 0
    assert study_main(REGULARIZATION, [*flags, "--deterministic", "--out",
                                       str(tmp_path / "b")]) == 0
    assert "--xla_gpu_deterministic_ops=true" in os.environ["XLA_FLAGS"]
    a, b = read(tmp_path / "a"), read(tmp_path / "b")
    assert a["configs"]["baseline"]["seeds"] == b["configs"]["baseline"]["seeds"]


@pytest.mark.slow
def test_baseline_learns_well_above_chance(tmp_path):
    flags = ["--data", "synthetic", "--seeds", "2", "--epochs", "2", "--train-examples", "2000",
             "--val-size", "500", "--configs", "baseline", "--no-progress", "--out",
             str(tmp_path)]
    assert study_main(REGULARIZATION, flags) == 0
    accuracies = [s["test_accuracy"] for s in read(tmp_path)["configs"]["baseline"]["seeds"]]
    assert min(accuracies) > 40.0  # chance is 10%

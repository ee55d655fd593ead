"""CSV and TensorBoard exports of a study, from a hand-made results dict (no training)."""

from __future__ import annotations

import csv
import time

import pytest

from jaxcnn.reporting import exports


def _seed(seed: int, epochs: int, spe: int, diverged: int | None = None) -> dict:
    """One member's entry as results.json stores it; numbers derived from seed and epoch."""
    every = max(1, spe // 10)
    step_losses = [2.0 - 0.01 * s - seed for s in range(every, spe * epochs + 1, every)]
    return {"seed": seed, "initial_params_checksum": "x",
            "test_accuracy": None if diverged else 50.0 + seed,
            "test_loss": None if diverged else 1.5 - 0.1 * seed, "diverged_epoch": diverged,
            "history": {"train_loss": [2.0 - 0.1 * e - seed for e in range(epochs)],
                        "val_loss": [None if diverged else 1.9 - 0.1 * e for e in range(epochs)],
                        "val_accuracy": [40.0 + e + seed for e in range(epochs)],
                        "train_step_loss": step_losses}}


def _results(epochs: int = 2, spe: int = 7) -> dict:
    return {"experiment": "regularization",
            "metadata": {"data": {"train_examples": 16 * spe - 4},
                         "settings": {"batch_size": 16}, "reference": "baseline"},
            "configs": {"baseline": {"seeds": [_seed(0, epochs, spe), _seed(1, epochs, spe)]},
                        "l2": {"seeds": [_seed(0, epochs, spe, diverged=1)]}}}


def _read(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_csv_files_hold_every_member_epoch_and_step(tmp_path):
    results = _results()
    paths = exports.write_exports(results, tmp_path)
    assert {p.name for p in paths[:3]} == {"epochs.csv", "steps.csv", "summary.csv"}
    epochs = _read(tmp_path / "epochs.csv")
    assert len(epochs) == 3 * 2  # 3 members x 2 epochs
    row = next(r for r in epochs if r["config"] == "baseline" and r["seed"] == "1"
               and r["epoch"] == "2")
    assert row["study"] == "regularization"
    assert float(row["train_loss"]) == pytest.approx(2.0 - 0.1 - 1)
    assert float(row["val_accuracy"]) == pytest.approx(42.0)
    diverged = [r for r in epochs if r["config"] == "l2"]
    assert [r["val_loss"] for r in diverged] == ["", ""]  # null stays empty, not "None"

    steps = _read(tmp_path / "steps.csv")
    baseline0 = [r for r in steps if r["config"] == "baseline" and r["seed"] == "0"]
    assert [int(r["step"]) for r in baseline0] == list(range(1, 15))  # 7 steps x 2 epochs
    assert [int(r["epoch"]) for r in baseline0] == [1] * 7 + [2] * 7
    assert float(baseline0[-1]["train_step_loss"]) == pytest.approx(2.0 - 0.14)

    summary = _read(tmp_path / "summary.csv")
    assert list(summary[0]) == list(exports.SUMMARY_COLUMNS)
    assert [(r["config"], r["seed"], r["test_accuracy"], r["diverged_epoch"])
            for r in summary] == [("baseline", "0", "50.0", ""), ("baseline", "1", "51.0", ""),
                                  ("l2", "0", "", "1")]


def test_without_tensorboardx_the_export_is_skipped_in_one_line(tmp_path, monkeypatch, capsys):
    """The GPU machine has no tensorboardX: the CSV files are written, TensorBoard's are
    skipped with one line naming the package, and nothing fails."""
    import builtins

    real_import = builtins.__import__

    def no_tensorboardx(name, *args, **kwargs):
        if name.startswith("tensorboardX"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboardx)
    paths = exports.write_exports(_results(epochs=2, spe=45), tmp_path)
    assert [p.name for p in paths] == ["epochs.csv", "steps.csv", "summary.csv"]
    assert not (tmp_path / "tb").exists()
    assert "pip install tensorboardX" in capsys.readouterr().err


def test_event_files_round_trip_through_tensorboard(tmp_path):
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator")
    results = _results(epochs=2, spe=45)
    exports.write_exports(results, tmp_path)
    runs = sorted(p.relative_to(tmp_path / "tb").parent.as_posix()
                  for p in (tmp_path / "tb").rglob("events.out.tfevents.*"))
    assert runs == ["baseline/seed_0", "baseline/seed_1", "l2/seed_0"]  # one run per member

    def scalars(run: str) -> dict[str, list[tuple[int, float]]]:
        acc = event_accumulator.EventAccumulator(str(tmp_path / "tb" / run))
        acc.Reload()
        return {tag: [(e.step, e.value) for e in acc.Scalars(tag)]
                for tag in acc.Tags()["scalars"]}

    seed1 = scalars("baseline/seed_1")
    member = results["configs"]["baseline"]["seeds"][1]
    assert seed1["epoch/val_accuracy"] == [(1, 41.0), (2, 42.0)]
    assert [v for _, v in seed1["epoch/train_loss"]] == pytest.approx(
        member["history"]["train_loss"])
    within = list(range(4, 45, 4))  # 45 steps an epoch: every 4th
    assert [s for s, _ in seed1["step/train_loss"]] == within + [45 + s for s in within]
    assert [v for _, v in seed1["step/train_loss"]] == pytest.approx(
        member["history"]["train_step_loss"], rel=1e-6)  # stored as float32
    assert seed1["test/accuracy"] == [(2, 51.0)]
    diverged = scalars("l2/seed_0")
    assert "test/accuracy" not in diverged and "epoch/val_loss" not in diverged  # nulls left out
    assert len(diverged["epoch/train_loss"]) == 2


def test_rewriting_replaces_runs_and_drops_removed_members(tmp_path):
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator")
    results = _results()
    exports.write_exports(results, tmp_path)
    del results["configs"]["l2"]
    exports.write_exports(results, tmp_path)
    assert not list((tmp_path / "tb" / "l2").rglob("events.out.tfevents.*"))
    acc = event_accumulator.EventAccumulator(str(tmp_path / "tb" / "baseline" / "seed_0"))
    acc.Reload()
    assert len(acc.Scalars("epoch/train_loss")) == 2  # not 4: the file was replaced


def test_regenerating_unchanged_curves_leaves_the_event_files_as_they_were(tmp_path):
    """A report rerun over a committed results folder changes no event file (their wall
    times are kept); changed curves are rewritten under the first file's wall time."""
    results = _results()
    files = exports.write_exports(results, tmp_path)
    events = sorted((tmp_path / "tb").rglob("events.out.tfevents.*"))
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in events}
    time.sleep(0.05)
    assert exports.write_exports(results, tmp_path) == files
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in events} == before
    results["configs"]["baseline"]["seeds"][0]["test_accuracy"] = 99.0
    exports.write_exports(results, tmp_path)
    changed = [p for p in events if p.read_bytes() != before[p][0]]
    assert changed == [tmp_path / "tb" / "baseline" / "seed_0" / "events.out.tfevents.0.jaxcnn"]
    assert changed[0].read_bytes()[12:21] == before[changed[0]][0][12:21]  # same wall time


def test_logdir_out_shows_one_run_per_member_of_every_study(tmp_path):
    """What `tensorboard --logdir OUT` loads: every study's members as separate runs."""
    plugin_event_multiplexer = pytest.importorskip(
        "tensorboard.backend.event_processing.plugin_event_multiplexer")
    for study in ("regularization", "schedules"):
        results = _results()
        results["experiment"] = study
        exports.write_exports(results, tmp_path / study)
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(tmp_path))
    multiplexer.Reload()
    runs = multiplexer.Runs()
    assert sorted(runs) == sorted(f"{study}/tb/{member}" for study in ("regularization",
                                                                       "schedules")
                                  for member in ("baseline/seed_0", "baseline/seed_1",
                                                 "l2/seed_0"))
    # What the scalars dashboard lists (simple_value events converted as TensorBoard does)
    dashboard = multiplexer.PluginRunToTagToContent("scalars")
    assert set(dashboard) == set(runs)
    assert {"epoch/val_accuracy", "step/train_loss", "test/accuracy"} <= set(
        dashboard["schedules/tb/baseline/seed_1"])
    values = [e.tensor_proto.float_val[0]
              for e in multiplexer.Tensors("schedules/tb/baseline/seed_1", "epoch/val_accuracy")]
    assert values == [41.0, 42.0]

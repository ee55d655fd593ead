"""A study's numbers in the formats other tools read: CSV files and TensorBoard runs.

Written beside ``results.json`` (``OUT/STUDY/``), from results.json alone, so
they can be regenerated at any time (the report does):

- ``epochs.csv``: one row per member (configuration x seed) and epoch, with every
  per-epoch curve the history records (training loss, validation loss and
  accuracy);
- ``steps.csv``: one row per member and recorded optimizer step (the step losses
  the history keeps);
- ``summary.csv``: one row per member: test accuracy, test loss, diverged epoch;
- ``tb/CONFIG/seed_N/``: one TensorBoard run per member (:mod:`jaxcnn.reporting.tensorboard`),
  so ``tensorboard --logdir OUT`` shows every seed of every study.

Missing numbers (a diverged member's, stored as null) are empty CSV cells and
are left out of the event files.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from jaxcnn.platform.progress import log
from jaxcnn.reporting import tensorboard
from jaxcnn.training.history import HISTORY_KEYS, step_loss_steps, steps_per_epoch_of

# history key -> CSV column / TensorBoard tag, for the per-epoch curves: every list the
# history records except the step losses (their own file), so a new curve is exported too
EPOCH_COLUMNS = {key: key for key in HISTORY_KEYS if key != "train_step_loss"}
SUMMARY_COLUMNS = ("study", "config", "seed", "test_accuracy", "test_loss", "diverged_epoch")


def _cell(value: object) -> object:
    """A CSV cell: None becomes an empty cell (csv would write the text 'None')."""
    return "" if value is None else value


def _members(results: dict) -> Iterator[tuple[str, dict]]:
    """(config name, seed entry) for every member in results.json's order."""
    for name, config in results["configs"].items():
        for seed in config["seeds"]:
            yield name, seed


def epoch_rows(results: dict) -> list[dict]:
    """One dict per member and epoch: study, config, seed, epoch (1-based) and the curves."""
    rows = []
    for name, seed in _members(results):
        curves = {column: seed["history"].get(key, []) for key, column in EPOCH_COLUMNS.items()}
        epochs = max((len(v) for v in curves.values()), default=0)
        for epoch in range(epochs):
            rows.append({"study": results["experiment"], "config": name, "seed": seed["seed"],
                         "epoch": epoch + 1,
                         **{c: v[epoch] if epoch < len(v) else None for c, v in curves.items()}})
    return rows


def step_rows(results: dict) -> list[dict]:
    """One dict per member and recorded step: study, config, seed, epoch, step, loss.

    ``step`` is the 1-based global optimizer step the loss was recorded at.
    """
    spe = steps_per_epoch_of(results["metadata"])
    rows = []
    for name, seed in _members(results):
        losses = seed["history"].get("train_step_loss", [])
        epochs = len(seed["history"].get("train_loss", []))
        steps = step_loss_steps(spe, epochs)
        for step, loss in zip(steps, losses):
            rows.append({"study": results["experiment"], "config": name, "seed": seed["seed"],
                         "epoch": (step - 1) // spe + 1, "step": step, "train_step_loss": loss})
    return rows


def summary_rows(results: dict) -> list[dict]:
    """One dict per member: its final test numbers and the epoch it diverged in (or None)."""
    return [{"study": results["experiment"], "config": name, "seed": seed["seed"],
             "test_accuracy": seed.get("test_accuracy"), "test_loss": seed.get("test_loss"),
             "diverged_epoch": seed.get("diverged_epoch")}
            for name, seed in _members(results)]


def write_csv(rows: list[dict], columns: tuple[str, ...], path: Path) -> Path:
    """Writes ``rows`` with a header of ``columns`` (a header alone when there are none)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows({k: _cell(row.get(k)) for k in columns} for row in rows)
    return path


def write_tensorboard(results: dict, log_dir: Path) -> list[Path]:
    """One event file per member under ``log_dir/CONFIG/seed_N``: the per-epoch curves
    (step = epoch), the recorded step losses (step = optimizer step) and the final test
    numbers (step = the last epoch). Returns the files written."""
    by_member: dict[tuple[str, int], list[tuple[str, int, float]]] = {}
    for row in epoch_rows(results):
        scalars = by_member.setdefault((row["config"], row["seed"]), [])
        scalars += [(f"epoch/{c}", row["epoch"], row[c]) for c in EPOCH_COLUMNS.values()]
    for row in step_rows(results):
        scalars = by_member.setdefault((row["config"], row["seed"]), [])
        scalars.append(("step/train_loss", row["step"], row["train_step_loss"]))
    for row in summary_rows(results):
        scalars = by_member.setdefault((row["config"], row["seed"]), [])
        last = max((s for tag, s, _ in scalars if tag.startswith("epoch/")), default=0)
        scalars += [("test/accuracy", last, row["test_accuracy"]),
                    ("test/loss", last, row["test_loss"])]
    if not tensorboard.available():
        log(tensorboard.MISSING)
        return []
    written = [tensorboard.write_scalars(log_dir / config / f"seed_{seed}",
                                         [(t, s, v) for t, s, v in scalars if v is not None])
               for (config, seed), scalars in by_member.items()]
    # A member no longer in results.json (removed by --fresh --configs) leaves no run behind.
    for stale in set(log_dir.glob(f"*/seed_*/{tensorboard.EVENT_FILE}")) - set(written):
        stale.unlink()
    return written


def write_exports(results: dict, out_dir: Path) -> list[Path]:
    """Every export of one study's results into ``out_dir`` (the folder of its
    results.json): epochs.csv, steps.csv, summary.csv and the TensorBoard runs under
    ``out_dir/tb``. Returns the paths written."""
    epoch_columns = ("study", "config", "seed", "epoch", *EPOCH_COLUMNS.values())
    step_columns = ("study", "config", "seed", "epoch", "step", "train_step_loss")
    paths = [write_csv(epoch_rows(results), epoch_columns, out_dir / "epochs.csv"),
             write_csv(step_rows(results), step_columns, out_dir / "steps.csv"),
             write_csv(summary_rows(results), SUMMARY_COLUMNS, out_dir / "summary.csv")]
    return paths + write_tensorboard(results, out_dir / "tb")

"""Per-member bookkeeping after each epoch, in plain numpy.

A member's history is a dict of lists (the ``history`` of each seed in
results.json) plus the epoch it diverged in, if it did::

    {"train_loss": [...], "val_loss": [...], "val_accuracy": [...],
     "train_step_loss": [...], "diverged_epoch": None}

:func:`record_epoch` appends one epoch's numbers and decides divergence;
:func:`schedule_record` keeps the learning rate and beta1 the optimizer applied
at the steps worth plotting. Non-finite numbers are stored as None (JSON has no
NaN).
"""

from __future__ import annotations

from typing import Any

import numpy as np

STEP_LOSS_EVERY = 100  # the seed notebook recorded the loss of every 100th step
# Epochs shorter than STEP_LOSS_EVERY steps (small runs) would record no step loss at all:
# they keep about this many points per epoch instead.
SHORT_EPOCH_POINTS = 10
# A member has diverged when a loss is NaN or infinite, or when a step's loss exceeds
# this: cross-entropy over C classes starts near ln C (2.3 for 10), and a step above
# 1e4 means the weights have blown up (with --lr 10 losses reach 1e13 while staying
# finite, and the member ends at chance).
DIVERGENCE_LOSS = 1e4
HISTORY_KEYS = ("train_loss", "val_loss", "val_accuracy", "train_step_loss")


def empty_history() -> dict:
    return {**{key: [] for key in HISTORY_KEYS}, "diverged_epoch": None}


def finite_or_none(value: float) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def is_healthy(step_losses: np.ndarray, val_loss: float) -> bool:
    """No NaN or infinity, and no step loss above ``DIVERGENCE_LOSS``."""
    step_losses = np.asarray(step_losses, float)
    return bool(np.isfinite(step_losses).all() and np.isfinite(val_loss)
                and step_losses.max(initial=-np.inf) <= DIVERGENCE_LOSS)


def step_loss_every(steps_per_epoch: int) -> int:
    """Record the loss of every this-many-th step of an epoch.

    Every 100th step, as the notebook printed it, when an epoch has at least 100
    steps; in shorter epochs about ``SHORT_EPOCH_POINTS`` per epoch (every step of an
    epoch of 10 steps or fewer), so small runs have a step curve too.
    """
    if steps_per_epoch >= STEP_LOSS_EVERY:
        return STEP_LOSS_EVERY
    return max(1, steps_per_epoch // SHORT_EPOCH_POINTS)


def record_epoch(history: dict, epoch: int, step_losses: np.ndarray, val_loss: float,
                 val_accuracy: float) -> bool:
    """Appends epoch ``epoch`` (1-based) to ``history``; True if it diverged just now.

    step_losses: (T,) the epoch's per-step training losses. The epoch's training
    loss is their mean (the notebook's mean of batch losses); every
    ``step_loss_every(T)``-th step's loss is kept (every 100th, as the notebook
    printed it, in epochs of 100 steps or more).
    """
    step_losses = np.asarray(step_losses, float)
    every = step_loss_every(step_losses.size)
    history["train_loss"].append(finite_or_none(step_losses.mean()))
    history["val_loss"].append(finite_or_none(val_loss))
    history["val_accuracy"].append(finite_or_none(val_accuracy)
                                   if np.isfinite(val_loss) else None)
    history["train_step_loss"] += [finite_or_none(v) for v in step_losses[every - 1::every]]
    if history["diverged_epoch"] is None and not is_healthy(step_losses, val_loss):
        history["diverged_epoch"] = epoch
        return True
    return False


SCHEDULE_POINTS = 200  # about this many points of the applied schedule are kept per run


def schedule_stride(total_steps: int) -> int:
    """Keep every this-many steps of the schedule, so a run keeps about SCHEDULE_POINTS
    (every step of a short run, enough to see each cycle of a cyclic rate)."""
    return max(1, total_steps // SCHEDULE_POINTS)


def recorded_steps(steps_per_epoch: int, epoch: int, stride: int = 1) -> np.ndarray:
    """Within-epoch indices (0-based) kept in the schedule record of an epoch.

    The first and last step of every epoch, every 100th optimizer step, and every
    ``stride``-th step.
    """
    first = epoch * steps_per_epoch
    global_steps = first + np.arange(steps_per_epoch) + 1  # 1-based step numbers
    keep = np.zeros(steps_per_epoch, bool)
    keep[[0, -1]] = True
    keep |= (global_steps % STEP_LOSS_EVERY == 0) | (global_steps % stride == 0)
    return np.flatnonzero(keep)


def schedule_record(record: dict | None, epoch: int, learning_rate: np.ndarray,
                    beta1: np.ndarray, stride: int = 1) -> dict:
    """Adds one epoch's applied learning rate and beta1 ((T,) each) to ``record``.

    ``record`` is ``{"step": [...], "learning_rate": [...], "beta1": [...]}`` with
    1-based global step numbers (step k is the k-th update); None starts one. A value
    the optimizer's state does not hold (NaN: an optax optimizer without a learning rate
    or beta1 to read) is recorded as None.
    """
    record = record or {"step": [], "learning_rate": [], "beta1": []}
    steps = len(learning_rate)
    kept = recorded_steps(steps, epoch, stride)
    record["step"] += [int(epoch * steps + i + 1) for i in kept]
    record["learning_rate"] += [_known(learning_rate[i]) for i in kept]
    record["beta1"] += [_known(beta1[i]) for i in kept]
    return record


def _known(value: Any) -> float | None:
    return float(value) if np.isfinite(value) else None


def member_record(seed: int, checksum: str, history: dict, test_loss: float,
                  test_accuracy: float, test_metric: float | None = None) -> dict:
    """One seed's entry in ``configs.<name>.seeds`` of results.json (``test_metric``: a
    study's own metric, only where it has one)."""
    finite = np.isfinite(test_loss) and (test_metric is None or np.isfinite(test_metric))
    epoch = history["diverged_epoch"]
    if epoch is None and not finite:  # non-finite at the test: diverged in its last epoch
        epoch = len(history["val_loss"])
    diverged = epoch is not None
    own = {} if test_metric is None else {
        "test_metric": None if diverged else float(test_metric)}
    return {"seed": seed, "initial_params_checksum": checksum,
            "test_accuracy": None if diverged else float(test_accuracy),
            "test_loss": None if diverged else float(test_loss), **own,
            "diverged_epoch": epoch,
            "history": {k: list(history[k]) for k in HISTORY_KEYS}}


def steps_per_epoch_of(metadata: dict) -> int:
    """Optimizer steps per epoch of a results file (its training images / batch size)."""
    return -(-metadata["data"]["train_examples"] // metadata["settings"]["batch_size"])


def step_loss_steps(steps_per_epoch: int, epochs: int) -> list[int]:
    """The global step numbers (1-based) of ``train_step_loss`` entries."""
    every = step_loss_every(steps_per_epoch)
    within = list(range(every, steps_per_epoch + 1, every))
    return [e * steps_per_epoch + s for e in range(epochs) for s in within]

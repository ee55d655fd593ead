"""Progress reporting: a step bar inside each epoch and a line after it.

The step bar is fed from inside the compiled epoch by ``jax.debug.callback``
(see ``train.make_train_epoch``), so one compiled scan can still show
progress. The callback object must stay the same across epochs (a new one
would recompile the epoch), so it is this long-lived :class:`StepBar`, whose
current tqdm bar is swapped per epoch.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from tqdm.auto import tqdm


class StepBar:
    """Callable ``(steps_done) -> None`` that drives the current epoch's bar.

    Disabled when ``enabled`` is False or stderr is not a terminal (logs then
    get one line per epoch instead of bar redraws).
    """

    def __init__(self, enabled: bool = True):
        self.enabled = enabled and sys.stderr.isatty()
        self._bar: tqdm | None = None

    def start(self, total: int, desc: str) -> None:
        self.close()
        if self.enabled:
            self._bar = tqdm(total=total, desc=desc, unit="step", leave=False,
                             file=sys.stderr, dynamic_ncols=True)

    def __call__(self, steps_done) -> None:
        bar = self._bar
        if bar is not None:
            bar.update(int(steps_done) - bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    # The callback is hashed into the compiled program; identity is what counts.
    __hash__ = object.__hash__


def log(message: str) -> None:
    """Prints a status line without breaking an active bar."""
    tqdm.write(message, file=sys.stderr)


def format_epoch_line(config: str, epoch: int, epochs: int, train_loss: np.ndarray,
                      val_loss: np.ndarray, val_acc: np.ndarray, seconds: float,
                      val_name: str, diverged: int = 0) -> str:
    """One line per epoch: means over the seeds that have not diverged (passed in)."""
    def mean(values: np.ndarray, fmt: str, unit: str = "") -> str:
        return format(values.mean(), fmt) + unit if values.size else "n/a"

    note = f", {diverged} diverged" if diverged else ""
    return (f"[{config}] epoch {epoch}/{epochs}  train loss {mean(train_loss, '.4f')}  "
            f"{val_name} loss {mean(val_loss, '.4f')}  {val_name} acc "
            f"{mean(val_acc, '.2f', '%')}  ({len(train_loss)} seeds{note}, {seconds:.1f} s)")


class Stopwatch:
    """Wall seconds since creation."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def seconds(self) -> float:
        return time.perf_counter() - self.start

"""Progress reporting: one step bar for the whole run, and a line per configuration-epoch.

The bar is fed from inside the compiled epochs by ``jax.debug.callback``
(``train.make_train_epoch``): the callback gets the worker's slot and the steps
done in the current epoch, and the board turns that into member-steps done
(a vmapped chunk advances all its members at once; a ``lax.map`` chunk restarts
the count for each member). The callback object must stay the same across
epochs (a new one would recompile), so it is this long-lived board. The bar is
only drawn in a terminal; logs get one line per configuration and epoch.

Several worker threads report at once, so every method takes a lock.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import defaultdict

import numpy as np
from tqdm.auto import tqdm


def log(message: str) -> None:
    """Prints a status line without breaking an active bar."""
    tqdm.write(message, file=sys.stderr)


def plural(count: int, noun: str) -> str:
    """'1 seed', '2 seeds'."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


class StepBoard:
    """Callable ``(slot, steps_done) -> None``: drives one bar of member-steps.

    Disabled when ``enabled`` is False or stderr is not a terminal.
    """

    def __init__(self, enabled: bool = True):
        self.enabled = enabled and sys.stderr.isatty()
        self._lock = threading.Lock()
        self._bar: tqdm | None = None
        self._width: dict[int, int] = {}
        self._last: dict[int, int] = defaultdict(int)

    def start(self, total: int, desc: str) -> None:
        """A new bar of ``total`` member-steps."""
        with self._lock:
            self._close()
            if self.enabled:
                self._bar = tqdm(total=total, desc=desc, unit="step", leave=False,
                                 file=sys.stderr, dynamic_ncols=True, smoothing=0.05)

    def begin_epoch(self, slot: int, width: int) -> None:
        """Worker ``slot`` starts an epoch of a chunk that steps ``width`` members at once."""
        with self._lock:
            self._width[slot] = width
            self._last[slot] = 0

    def __call__(self, slot, steps_done) -> None:
        slot, steps_done = int(slot), int(steps_done)
        with self._lock:
            if self._bar is None:
                return
            last = self._last[slot]
            delta = steps_done - last if steps_done > last else steps_done  # next member
            self._last[slot] = steps_done
            self._bar.update(delta * self._width.get(slot, 1))

    def advance(self, member_steps: int) -> None:
        """Counts member-steps done before this run (a resumed chunk's finished epochs),
        so a resumed run's bar still ends at its total."""
        with self._lock:
            if self._bar is not None and member_steps > 0:
                self._bar.update(member_steps)

    def end_epoch(self, slot: int, member_steps: int, reported: int) -> None:
        """Adds what the callbacks did not report (the steps after the last report)."""
        with self._lock:
            if self._bar is not None and member_steps > reported:
                self._bar.update(member_steps - reported)

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def format_epoch_line(config: str, epoch: int, epochs: int, train_loss: np.ndarray,
                      val_loss: np.ndarray, val_acc: np.ndarray, seconds: float,
                      val_name: str, diverged: int = 0) -> str:
    """One line per configuration and epoch: means over the members that have not diverged."""
    def mean(values: np.ndarray, fmt: str, unit: str = "") -> str:
        return format(values.mean(), fmt) + unit if values.size else "n/a"

    note = f", {diverged} diverged" if diverged else ""
    return (f"[{config}] epoch {epoch}/{epochs}  train loss {mean(train_loss, '.4f')}  "
            f"{val_name} loss {mean(val_loss, '.4f')}  {val_name} acc "
            f"{mean(val_acc, '.2f', '%')}  ({plural(len(train_loss), 'seed')}{note}, "
            f"{seconds:.1f} s)")


class EpochLines:
    """Collects members' epoch numbers and prints a configuration's line when it is whole.

    ``expected[config]`` members report each epoch. A member resumed after epoch k
    reports its restored epochs 1..k with ``fresh=False``: a line mixing restored and
    new epochs averages every seed, and a line of restored epochs only (printed by the
    run that trained them) is not printed again.
    """

    def __init__(self, expected: dict[str, int], epochs: int, val_name: str,
                 names: dict[str, str] | None = None):
        self._lock = threading.Lock()
        self._expected = expected
        self._epochs = epochs
        self._val_name = val_name
        self._names = names or {}
        self._rows: dict[tuple[str, int], list] = defaultdict(list)
        self._started = time.perf_counter()

    def report(self, config: str, epoch: int, train_loss: float | None,
               val_loss: float | None, val_acc: float | None, alive: bool,
               fresh: bool = True) -> None:
        """One member's epoch ``epoch`` (1-based); values of a member not ``alive`` are
        not averaged (they may be None)."""
        with self._lock:
            key = (config, epoch)
            self._rows[key].append((train_loss, val_loss, val_acc, alive, fresh))
            if len(self._rows[key]) < self._expected[config]:
                return
            rows = self._rows.pop(key)
        if not any(r[4] for r in rows):
            return
        kept = np.array([r[:3] for r in rows if r[3]], float).reshape(-1, 3)
        log(format_epoch_line(self._names.get(config, config), epoch, self._epochs, kept[:, 0],
                              kept[:, 1], kept[:, 2], time.perf_counter() - self._started,
                              self._val_name, diverged=sum(not r[3] for r in rows)))


class Stopwatch:
    """Wall seconds since creation."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def seconds(self) -> float:
        return time.perf_counter() - self.start

"""Ctrl-C that takes effect within seconds: a scoped SIGINT handler and a stop flag.

An epoch is one compiled ``lax.scan``, which Python cannot interrupt: a
KeyboardInterrupt would only surface when the whole epoch (and every other
worker's) had finished. So the pieces work together:

- :func:`announce_sigint` (installed by the command line around a run) prints
  the "interrupted; rerun ..." line the moment Ctrl-C arrives and raises
  :class:`Interrupted` in the main thread; a second Ctrl-C exits at once
  (status 130) without waiting for anything.
- The training engine keeps its compiled work off the main thread, so the main
  thread only waits and the handler runs at once. When the wait is interrupted,
  the engine sets its :class:`StopFlag`.
- Inside every compiled epoch a host callback runs at each step boundary
  (:meth:`StopFlag.check`); once the flag is set it raises :class:`StopTrainingError`,
  which aborts the XLA computation. The engine turns the resulting runtime error
  back into the interrupt (:func:`is_stop_error`) and joins its workers, so the
  last checkpoint stays the last *finished* epoch.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator

EXIT_CODE = 130  # 128 + SIGINT, what a shell reports for a process ended by Ctrl-C
# jax logs a callback's exception (with a traceback) before failing the computation.
_CALLBACK_LOGGERS = ("jax._src.callback", "jax._src.debugging")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, raised in the main thread; ``announced`` when its message is already out."""

    def __init__(self, announced: bool = False):
        super().__init__()
        self.announced = announced


class StopTrainingError(Exception):
    """Raised inside a compiled epoch's host callback to abandon it."""


class StopFlag:
    """Set once a run must stop; compiled epochs poll it at every step boundary."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raises :class:`StopTrainingError` when set (called from inside the scan)."""
        if self._event.is_set():
            raise StopTrainingError("training stopped")


def is_stop_error(err: BaseException) -> bool:
    """Whether ``err`` is a compiled computation aborted by :meth:`StopFlag.check`.

    jax re-raises a callback's exception as a runtime error whose message carries
    the callback's traceback, so the class name is matched in the text.
    """
    return isinstance(err, StopTrainingError) or (
        isinstance(err, RuntimeError) and StopTrainingError.__name__ in str(err))


class _DropStopTraces(logging.Filter):
    """Drops jax's log record of a callback that raised :class:`StopTrainingError`."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, StopTrainingError)


@contextlib.contextmanager
def quiet_stop_traces() -> Iterator[None]:
    """While active, an abandoned epoch logs nothing (the interrupt line says it all)."""
    quiet = _DropStopTraces()
    loggers = [logging.getLogger(name) for name in _CALLBACK_LOGGERS]
    for logger in loggers:
        logger.addFilter(quiet)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(quiet)


@contextlib.contextmanager
def announce_sigint(message: str) -> Iterator[None]:
    """While active, the first SIGINT prints ``message`` at once and raises
    :class:`Interrupted` (announced) in the main thread; a second one exits with status
    130 immediately, also after the block has been left (while the process shuts down).
    Does nothing outside the main thread (signals go there only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    state = {"count": 0}

    def handler(signum, frame) -> None:
        state["count"] += 1
        if state["count"] > 1:
            os._exit(EXIT_CODE)  # the user insists: no cleanup, checkpoints are atomic
        print(message, file=sys.stderr, flush=True)
        raise Interrupted(announced=True)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        # After a first Ctrl-C the handler stays: the process is on its way out (cleanup,
        # JAX's exit handlers, interpreter shutdown), and a second Ctrl-C in that time
        # must still exit with 130 at once, not kill the process by the signal (-2) or
        # interrupt the shutdown half-way.
        if state["count"] == 0:
            signal.signal(signal.SIGINT, previous)

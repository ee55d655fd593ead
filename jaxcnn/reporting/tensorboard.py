"""TensorBoard event files through tensorboardX (no TensorFlow): one file of scalars a run.

tensorboardX's protobufs and record framing write the file; this module adds what its
``SummaryWriter`` does not: a fixed file name, so that a regenerated export *replaces* the
run's file instead of adding a second one (TensorBoard would show every curve twice), and
the first event's wall time kept from the file it replaces, so regenerating unchanged
curves leaves a committed file as it was. tensorboardX is imported only here, only when
exporting: a machine without it (the GPU machine) trains and reports all the same, with
one line saying the TensorBoard export was skipped.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

EVENT_FILE = "events.out.tfevents.0.jaxcnn"  # one fixed name: a rewrite replaces it
MISSING = "tensorboardX is not installed: TensorBoard files skipped (pip install tensorboardX)"


def available() -> bool:
    """Whether tensorboardX can be imported here."""
    try:
        import tensorboardX.record_writer  # noqa: F401
    except ImportError:
        return False
    return True


def _first_wall_time(path: Path) -> float | None:
    """The wall time of the first event of an event file (None if there is no such
    file, or it cannot be read as one)."""
    from tensorboardX.proto.event_pb2 import Event

    try:
        head = path.read_bytes()
        length = int.from_bytes(head[:8], "little")
        return Event.FromString(head[12:12 + length]).wall_time or None
    except Exception:  # noqa: BLE001 (not ours, or damaged: stamped anew)
        return None


def _events(scalars: Iterable[tuple[str, int, float]], wall_time: float) -> list[bytes]:
    """The serialized events of one file: its format version, then one scalar each."""
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.proto.summary_pb2 import Summary

    events = [Event(wall_time=wall_time, file_version="brain.Event:2")]
    events += [Event(wall_time=wall_time, step=int(step), summary=Summary(
        value=[Summary.Value(tag=tag, simple_value=float(value))]))
        for tag, step, value in scalars]
    return [e.SerializeToString() for e in events]


def write_scalars(run_dir: Path, scalars: Iterable[tuple[str, int, float]],
                  wall_time: float | None = None) -> Path:
    """Writes one event file in ``run_dir`` holding ``(tag, step, value)`` scalars.

    The file replaces the previous one atomically (written beside it, then renamed), and
    an unchanged file is not rewritten. ``wall_time``: seconds since the epoch stamped on
    every event (if None: the stamp of the file being replaced; now for a new file).
    Raises ImportError without tensorboardX (see :func:`available`).
    """
    from tensorboardX.record_writer import RecordWriter

    path = run_dir / EVENT_FILE
    if wall_time is None and path.is_file():
        wall_time = _first_wall_time(path)
    wall_time = time.time() if wall_time is None else float(wall_time)
    run_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=run_dir, prefix=".events.")
    os.close(fd)
    try:
        writer = RecordWriter(tmp)
        for event in _events(scalars, wall_time):
            writer.write(event)
        writer.close()
        if path.is_file() and path.read_bytes() == Path(tmp).read_bytes():
            Path(tmp).unlink()
            return path  # unchanged: not rewritten (no churn in a committed results folder)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; these are for reading by others too
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path

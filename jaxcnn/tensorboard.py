"""TensorBoard event files without TensorFlow: scalars hand-encoded as ``Event`` protos.

An event file is a sequence of TFRecords, each::

    uint64 length (little endian) | uint32 masked crc32c(length bytes)
    | data (length bytes)        | uint32 masked crc32c(data)

and each record's data is a serialized ``tensorflow.Event``. Only the fields a
scalar needs are written (field numbers from tensorflow/core/util/event.proto
and summary.proto)::

    Event   { double wall_time = 1; int64 step = 2; string file_version = 3;
              Summary summary = 5; }
    Summary { repeated Value value = 1; }
    Value   { string tag = 1; float simple_value = 2; }

The first record carries ``file_version = "brain.Event:2"``, as every writer's
does. TensorBoard reads these files as it reads its own; a test parses them with
``tensorboard.backend.event_processing``.
"""

from __future__ import annotations

import os
import struct
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

# --- crc32c (Castagnoli), as TFRecord frames use it ---------------------------------------

_CRC32C_POLY = 0x82F63B78  # the Castagnoli polynomial, bit-reversed


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _CRC32C_POLY if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    """CRC-32C of ``data`` (crc32c(b"123456789") == 0xE3069283)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """The TFRecord checksum: the CRC rotated right by 15 bits plus a constant, so that
    a CRC of data that itself holds CRCs is not trivially related to them."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord(data: bytes) -> bytes:
    """One TFRecord frame around ``data``."""
    length = struct.pack("<Q", len(data))
    return (length + struct.pack("<I", masked_crc32c(length)) + data
            + struct.pack("<I", masked_crc32c(data)))


# --- protobuf wire format, the three field kinds the Event needs ---------------------------

def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # int64 fields encode negatives as 10-byte two's complement
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint(field << 3 | wire_type)


def _bytes_field(field: int, payload: bytes) -> bytes:
    return _key(field, 2) + _varint(len(payload)) + payload


def scalar_event(wall_time: float, step: int, tag: str, value: float) -> bytes:
    """A serialized Event holding one scalar summary value."""
    summary_value = _bytes_field(1, tag.encode()) + _key(2, 5) + struct.pack("<f", value)
    summary = _bytes_field(1, summary_value)
    return (_key(1, 1) + struct.pack("<d", wall_time) + _key(2, 0) + _varint(step)
            + _bytes_field(5, summary))


def version_event(wall_time: float) -> bytes:
    """The first Event of every file: its format version."""
    return _key(1, 1) + struct.pack("<d", wall_time) + _bytes_field(3, b"brain.Event:2")


EVENT_FILE = "events.out.tfevents.0.jaxcnn"  # one fixed name: a rewrite replaces it


def _first_wall_time(path: Path) -> float | None:
    """The wall time of the first event in an event file we wrote (None if there is no
    such file, or it does not start as ours do)."""
    try:
        head = path.read_bytes()[:12 + 9]  # length (8), its crc (4), then the event
    except OSError:
        return None
    if len(head) < 21 or head[12] != _key(1, 1)[0]:
        return None
    return struct.unpack("<d", head[13:21])[0]


def write_scalars(run_dir: Path, scalars: Iterable[tuple[str, int, float]],
                  wall_time: float | None = None) -> Path:
    """Writes one event file in ``run_dir`` holding ``(tag, step, value)`` scalars.

    The file replaces the previous one atomically (written beside it, then renamed),
    so a regenerated export never shows a curve twice. ``wall_time``: seconds since
    the epoch stamped on every event (if None: the stamp of the file being replaced, so
    regenerating unchanged curves leaves the file as it was; now for a new file).
    """
    path = run_dir / EVENT_FILE
    if wall_time is None:
        wall_time = _first_wall_time(path)
    wall_time = time.time() if wall_time is None else float(wall_time)
    payload = tfrecord(version_event(wall_time)) + b"".join(
        tfrecord(scalar_event(wall_time, int(step), tag, float(value)))
        for tag, step, value in scalars)
    if path.is_file() and path.read_bytes() == payload:
        return path  # unchanged: not rewritten (no churn in a committed results folder)
    run_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=run_dir, prefix=".events.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; these are for reading by others too
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path

"""Parse the official CIFAR-10 archives (python pickles or binary records).

Python version (``cifar-10-python.tar.gz`` / ``cifar-10-batches-py/``):
``data_batch_1..5`` and ``test_batch`` are pickled dicts with ``b"data"``, a
(n, 3072) uint8 array in channel-major (C, H, W) order, and ``b"labels"``;
``batches.meta`` holds ``b"label_names"``.

Binary version (``cifar-10-binary.tar.gz`` / ``cifar-10-batches-bin/``):
``data_batch_1..5.bin`` and ``test_batch.bin`` are runs of 3,073-byte records
(one label byte, then 3,072 CHW pixel bytes); ``batches.meta.txt`` lists names.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Mapping

import numpy as np

from jaxcnn.data.dataset import CIFAR10_CLASSES, Dataset
from jaxcnn.errors import DataError

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
RECORD_BYTES = 1 + 32 * 32 * 3


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles the numpy arrays CIFAR batches hold and refuses anything else.

    A plain ``pickle.load`` runs whatever code a file names; a data file has no
    business doing that.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle API
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _chw_rows_to_nhwc(rows: np.ndarray) -> np.ndarray:
    """(n, 3072) CHW-ordered rows -> (n, 32, 32, 3) NHWC uint8."""
    return np.ascontiguousarray(rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def _find(files: Mapping[str, bytes], basename: str) -> str | None:
    for name in files:
        if name.rsplit("/", 1)[-1] == basename:
            return name
    return None


def _require(files: Mapping[str, bytes], prefix: str, basename: str, origin: str) -> bytes:
    name = prefix + basename
    if name not in files:
        raise DataError(
            f"{origin}: missing {basename} (an official CIFAR-10 archive has "
            "data_batch_1..5 and test_batch); is the download incomplete?"
        )
    return files[name]


def detect_official(files: Mapping[str, bytes]) -> tuple[str, str] | None:
    """Returns ("python" | "binary", member prefix) if ``files`` looks official."""
    for fmt, marker in (("python", "data_batch_1"), ("binary", "data_batch_1.bin"),
                        ("python", "test_batch"), ("binary", "test_batch.bin")):
        name = _find(files, marker)
        if name is not None:
            return fmt, name[: len(name) - len(marker)]
    return None


def _python_batch(blob: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = _ArrayOnlyUnpickler(io.BytesIO(blob), encoding="bytes").load()
        data = np.asarray(batch[b"data"])
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except Exception as err:  # a damaged pickle can raise almost anything
        raise DataError(f"{where}: not a readable CIFAR-10 python batch ({err})") from None
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(
            f"{where}: batch data is {data.dtype} {data.shape}, expected uint8 (n, 3072)"
        )
    if labels.shape != (len(data),):
        raise DataError(f"{where}: {len(data)} images but {labels.shape} labels")
    return _chw_rows_to_nhwc(data), labels


def _binary_batch(blob: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    if len(blob) == 0 or len(blob) % RECORD_BYTES:
        raise DataError(
            f"{where}: {len(blob):,} bytes is not a whole number of {RECORD_BYTES:,}-byte "
            "records (truncated, or not the CIFAR-10 binary version?)"
        )
    records = np.frombuffer(blob, dtype=np.uint8).reshape(-1, RECORD_BYTES)
    return _chw_rows_to_nhwc(records[:, 1:]), records[:, 0].astype(np.int64)


def _class_names(files: Mapping[str, bytes], fmt: str, prefix: str, origin: str) -> tuple[str, ...]:
    if fmt == "python":
        name = prefix + "batches.meta"
        if name not in files:
            return CIFAR10_CLASSES
        try:
            meta = _ArrayOnlyUnpickler(io.BytesIO(files[name]), encoding="bytes").load()
            names = tuple(n.decode() for n in meta[b"label_names"])
        except Exception as err:
            raise DataError(f"{origin}: batches.meta is not readable ({err})") from None
    else:
        name = prefix + "batches.meta.txt"
        if name not in files:
            return CIFAR10_CLASSES
        try:
            lines = files[name].decode().splitlines()
            names = tuple(line.strip() for line in lines if line.strip())
        except UnicodeDecodeError:
            raise DataError(f"{origin}: batches.meta.txt is not text") from None
    if not names:
        raise DataError(f"{origin}: the batches.meta file names no classes")
    return names


def parse_official(files: Mapping[str, bytes], fmt: str, prefix: str, origin: str,
                   fingerprint: str) -> Dataset:
    """Decodes an official archive already read into ``files``."""
    suffix = ".bin" if fmt == "binary" else ""
    read_batch = _binary_batch if fmt == "binary" else _python_batch

    def load(batch_names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        parts = [read_batch(_require(files, prefix, b + suffix, origin), f"{origin}: {b}{suffix}")
                 for b in batch_names]
        return (np.concatenate([p[0] for p in parts]),
                np.concatenate([p[1] for p in parts]).astype(np.int32))

    train_images, train_labels = load(TRAIN_BATCHES)
    test_images, test_labels = load((TEST_BATCH,))
    class_names = _class_names(files, fmt, prefix, origin)
    return Dataset(train_images, train_labels, test_images, test_labels,
                   class_names, origin, fingerprint)

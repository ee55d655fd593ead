"""A disk cache of decoded datasets, keyed by the content of their source.

Decoding 60,000 JPEGs takes seconds; loading the same arrays from an
uncompressed ``.npz`` takes a fraction of one. Entries are written atomically
(temp file + rename), so an interrupted write leaves no half file behind, and a
damaged entry is rebuilt rather than trusted.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from jaxcnn.data.dataset import Dataset, check_dataset
from jaxcnn.errors import DataError

# Bump when decoding changes, so old entries are not reused.
CACHE_FORMAT = "v1"


def default_cache_dir() -> Path:
    """``$JAXCNN_CACHE`` if set, else ``~/.cache/jaxcnn``."""
    env = os.environ.get("JAXCNN_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "jaxcnn"


def file_fingerprint(path: Path) -> str:
    """sha256 of a file's bytes, as "sha256:<hex>"."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def folder_fingerprint(root: Path) -> str:
    """sha256 over every visible file's relative path, size and mtime.

    Hashing the bytes of 60,000 small files would cost more than the cache
    saves; a file that changes changes its size or modification time.
    """
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(f for f in filenames if not f.startswith(".")):
            full = Path(dirpath) / name
            stat = full.stat()
            rel = full.relative_to(root).as_posix()
            digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        digest.update(f"{Path(dirpath).relative_to(root).as_posix()}/\n".encode())
    return "listing-sha256:" + digest.hexdigest()


def _entry(cache_dir: Path, fingerprint: str) -> Path:
    key = hashlib.sha256(f"{CACHE_FORMAT}:{fingerprint}".encode()).hexdigest()[:24]
    return cache_dir / f"decoded-{key}.npz"


def load_cached(cache_dir: Path, fingerprint: str, source: str) -> Dataset | None:
    """The cached dataset for ``fingerprint``, or None if absent or damaged."""
    path = _entry(cache_dir, fingerprint)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            ds = Dataset(
                train_images=npz["train_images"], train_labels=npz["train_labels"],
                test_images=npz["test_images"], test_labels=npz["test_labels"],
                class_names=tuple(str(c) for c in npz["class_names"]),
                source=source, fingerprint=str(npz["fingerprint"]),
            )
        if ds.fingerprint != fingerprint:
            raise ValueError("fingerprint mismatch")
        return check_dataset(ds)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError, DataError) as err:
        print(f"jaxcnn: cache file {path} is damaged ({err}); rebuilding it", file=sys.stderr)
        path.unlink(missing_ok=True)
        return None


def store(cache_dir: Path, ds: Dataset) -> None:
    """Writes ``ds`` under its fingerprint; failures only cost the speed-up."""
    path = _entry(cache_dir, ds.fingerprint)
    tmp = None
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".npz.tmp")
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, train_images=ds.train_images, train_labels=ds.train_labels,
                     test_images=ds.test_images, test_labels=ds.test_labels,
                     class_names=np.array(ds.class_names), fingerprint=np.array(ds.fingerprint))
        os.replace(tmp, path)
    except OSError as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        print(f"jaxcnn: could not write the data cache in {cache_dir} ({err}); "
              "continuing without it", file=sys.stderr)

"""Every member's predicted class of every test and validation image:
``OUT/<study>/predictions/<config>.npz``.

One file per configuration, written with its results (numpy's ``.npz``, read with
``np.load``):

- ``seeds`` (S,): the seeds, in the order of the rows below;
- ``test`` (S, N_test) int16: each seed's predicted class of every test image;
  ``test_labels`` (N_test,): the true classes;
- ``val`` (S, N_val) int16, ``val_labels`` (S, N_val) and ``val_indices`` (S, N_val): the
  final epoch's predictions on the validation images each seed held out, their true
  classes and their indices into the data's training images (each seed its own, unless
  ``--split-seed`` gave every seed one); absent where the test set was the validation set.

``100 * mean(test[s] == test_labels)`` is seed s's recorded test accuracy, exactly, and
the same of ``val[s]`` and ``val_labels[s]`` its last validation accuracy
(``tests/test_predictions.py``): the per-image outcomes paired statistics over test
images need.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np


def path_of(study_dir: Path, config: str) -> Path:
    return Path(study_dir) / "predictions" / f"{config}.npz"


def write(path: Path, seeds: Sequence[int], rows: Sequence[dict], test_labels: np.ndarray,
          val_labels: np.ndarray | None, val_indices: np.ndarray | None) -> None:
    """Writes one configuration's file (atomically: a temp file and a rename); ``rows``:
    per seed, {"test": (N_test,), "val": (N_val,)} predicted classes; ``val_labels`` and
    ``val_indices`` (S, N_val): each seed's validation images."""
    arrays = {"seeds": np.asarray(seeds, np.int64),
              "test": np.stack([np.asarray(r["test"]) for r in rows]).astype(np.int16),
              "test_labels": np.asarray(test_labels).astype(np.int16)}
    if val_labels is not None:
        arrays |= {"val": np.stack([np.asarray(r["val"]) for r in rows]).astype(np.int16),
                   "val_labels": np.asarray(val_labels).astype(np.int16),
                   "val_indices": np.asarray(val_indices, np.int64)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)


def read(path: Path) -> dict[int, dict] | None:
    """seed -> {"test": ..., "val": ...} of a configuration's file; None if there is none
    (results written before predictions were stored)."""
    if not Path(path).exists():
        return None
    with np.load(path) as f:
        return {int(seed): {"test": f["test"][i], "val": f["val"][i] if "val" in f else None}
                for i, seed in enumerate(f["seeds"])}


def test_reader(study_dir: Callable[[str], Path]
                ) -> Callable[[str, str], tuple[np.ndarray, dict[int, np.ndarray]] | None]:
    """(study, config) -> (true classes (N,), {seed: predicted classes (N,)}) of the test
    images, or None without a file: what the decisions read the test images' part of the
    error from (``stats/rounds.py``). ``study_dir``: study name -> its folder."""
    def read_test(study: str, config: str):
        path = path_of(study_dir(study), config)
        if not path.exists():
            return None
        with np.load(path) as f:
            return f["test_labels"], {int(s): f["test"][i] for i, s in enumerate(f["seeds"])}
    return read_test

"""Train / validation / test splits and normalisation statistics.

By default every seed draws its own stratified train / validation split (and, with
``--train-examples``, its own training subset) from ``Generator([SPLIT_STREAM, seed])``:
every configuration at seed i shares seed i's split, so comparisons stay paired, and a
verdict covers the split as well as the seed's other draws (Bouthillier et al. 2021: the
split often moves results more than the initialization). ``split_seed=N`` gives every
seed one split, drawn from ``Generator(N)`` (``--split-seed N``; before 2026-12-08 every
run used split seed 0). The test set is the same for every seed.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxcnn.data.dataset import Dataset
from jaxcnn.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Split:
    """images: (N, H, W, C) uint8; labels: (N,) int32."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclasses.dataclass(frozen=True)
class Normalization:
    """Per-channel ``(x / 255 - mean) / std``; mean and std are (C,) float32."""

    mean: np.ndarray
    std: np.ndarray


@dataclasses.dataclass(frozen=True)
class PreparedData:
    """What training needs: the three splits, the normalisation and names.

    ``val_is_test`` is True when ``--val-size 0`` made the test set double as
    the per-epoch validation set (the seed notebook's protocol); ``val_indices`` are the
    validation images' indices into the data's training images (None then), and
    ``train_indices`` the training images'. ``train`` and ``val`` are the split of
    ``split_seed`` (seed 0's where each seed draws its own: ``split_seed`` None, then
    :meth:`rows` gives a seed's own and ``pool`` holds every training image).
    """

    train: Split
    val: Split
    test: Split
    normalization: Normalization
    class_names: tuple[str, ...]
    val_is_test: bool
    val_indices: np.ndarray | None = None
    train_indices: np.ndarray | None = None
    pool: Split | None = None
    split_seed: int | None = 0
    sizes: tuple[int, int | None] = (0, None)  # (val_size, train_examples) to draw with

    @property
    def per_seed(self) -> bool:
        """Whether every seed draws its own split (``split_seed`` None)."""
        return self.split_seed is None

    def rows(self, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(training, validation) images of ``seed``: indices into the data's training
        images (validation None where the test set is the validation set)."""
        if not self.per_seed:
            return self.train_indices, self.val_indices
        return split_indices(self.pool.labels, *self.sizes,
                             np.random.default_rng([SPLIT_STREAM, seed]))


SPLIT_STREAM = 0x5EED  # per-seed splits draw from Generator([SPLIT_STREAM, seed])


def split_indices(labels: np.ndarray, val_size: int, train_examples: int | None,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """(training, validation) indices into ``labels`` (N,): ``val_size`` stratified
    validation images (none for 0) and, of the rest, ``train_examples`` stratified
    training images (None: all of them)."""
    if val_size:
        val_idx = stratified_indices(labels, val_size, rng)
        train_idx = np.setdiff1d(np.arange(len(labels)), val_idx)
    else:
        val_idx, train_idx = None, np.arange(len(labels))
    if train_examples is not None:
        train_idx = train_idx[stratified_indices(labels[train_idx], train_examples, rng)]
    return train_idx, val_idx


def half(channels: int) -> Normalization:
    """The seed notebook's ``Normalize((0.5,)*3, (0.5,)*3)``: mean = std = 0.5 per channel."""
    return Normalization(np.full(channels, 0.5, np.float32), np.full(channels, 0.5, np.float32))


def stratified_indices(labels: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` indices into ``labels`` with class proportions preserved.

    Each class gets its proportional share, rounded by largest remainder so the
    shares sum to ``count``; the result is sorted.
    """
    classes, sizes = np.unique(labels, return_counts=True)
    exact = sizes * count / len(labels)
    shares = np.floor(exact).astype(int)
    remainder = count - shares.sum()
    shares[np.argsort(-(exact - shares), kind="stable")[:remainder]] += 1
    picked = [rng.choice(np.flatnonzero(labels == c), size=k, replace=False)
              for c, k in zip(classes, shares)]
    return np.sort(np.concatenate(picked))


def channel_statistics(images: np.ndarray) -> Normalization:
    """Mean and std per channel of ``images`` (N, H, W, C) uint8, on the [0, 1] scale."""
    channels = images.shape[-1]
    total = np.zeros(channels)
    total_sq = np.zeros(channels)
    for start in range(0, len(images), 4096):  # chunks keep the float copy small
        chunk = images[start:start + 4096].reshape(-1, channels).astype(np.float64) / 255.0
        total += chunk.sum(0)
        total_sq += (chunk * chunk).sum(0)
    count = images.size // channels
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean * mean, 0.0))
    return Normalization(mean.astype(np.float32), std.astype(np.float32))


def prepare_data(ds: Dataset, *, val_size: int = 5000, train_examples: int | None = None,
                 normalization: str = "dataset", split_seed: int | None = 0) -> PreparedData:
    """Holds out a stratified validation split and picks the training subset.

    Args:
      ds: the decoded dataset.
      val_size: images held out of the training split for per-epoch curves;
        0 makes the test set the validation set (as the seed notebook did).
      train_examples: train on a stratified subset of this many images.
      normalization: "dataset" (per-channel statistics of the training images)
        or "half" (the seed's mean = std = 0.5).
      split_seed: fixes which images are held out, for every seed; None: each seed
        draws its own (see the module doc), and "dataset" normalisation takes the
        statistics of every training image.
    """
    n = len(ds.train_labels)
    if val_size < 0 or val_size >= n:
        raise ConfigError(
            f"--val-size {val_size} must be between 0 and {n - 1} "
            f"(the training split has {n} images)"
        )
    if train_examples is not None and not 0 < train_examples <= n - val_size:
        raise ConfigError(
            f"--train-examples {train_examples} must be between 1 and {n - val_size} "
            f"(the images left for training after --val-size {val_size})"
        )
    rng = np.random.default_rng(0 if split_seed is None else split_seed)
    train_idx, val_idx = split_indices(ds.train_labels, val_size, train_examples, rng)
    train = Split(ds.train_images[train_idx], ds.train_labels[train_idx])
    test = Split(ds.test_images, ds.test_labels)
    val = Split(ds.train_images[val_idx], ds.train_labels[val_idx]) if val_size else test
    pool = Split(ds.train_images, ds.train_labels)
    if normalization == "dataset":
        # one normaliser for every seed: each seed's own split would need its own
        norm = channel_statistics(train.images if split_seed is not None else pool.images)
    elif normalization == "half":
        norm = half(train.images.shape[-1])
    else:
        raise ConfigError(f"unknown normalization {normalization!r}; use 'dataset' or 'half'")
    return PreparedData(train, val, test, norm, ds.class_names, val_is_test=not val_size,
                        val_indices=val_idx, train_indices=train_idx, pool=pool,
                        split_seed=split_seed, sizes=(val_size, train_examples))

"""A small generated dataset (10 classes of 32x32x3 by default) for tests and smoke runs.

Each class has a fixed low-frequency colour pattern; an image is its class's
pattern, shifted by a few pixels, scaled in brightness and buried in pixel
noise. A small CNN learns it well above chance within one epoch; the shifts
keep a nearest-mean classifier on raw pixels far from perfect.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter

from jaxcnn.data.dataset import Dataset


def _draw(rng: np.random.Generator, templates: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    labels = np.arange(n) % len(templates)
    rng.shuffle(labels)
    shifts = rng.integers(-8, 9, size=(n, 2))
    images = np.empty((n, *templates.shape[1:]), np.float32)  # values in about [-1, 1]
    for i, (label, shift) in enumerate(zip(labels, shifts)):
        images[i] = np.roll(templates[label], tuple(shift), axis=(0, 1))
    images *= rng.uniform(0.6, 1.4, size=(n, 1, 1, 1)).astype(np.float32)  # brightness
    images += rng.standard_normal(size=images.shape, dtype=np.float32)  # pixel noise
    pixels = 128 + 60 * images
    return np.clip(pixels, 0, 255, out=pixels).astype(np.uint8), labels.astype(np.int32)


def make_synthetic(num_train: int = 10_000, num_test: int = 2_000, seed: int = 0,
                   image_shape: tuple[int, int, int] = (32, 32, 3),
                   num_classes: int = 10) -> Dataset:
    """Generates the dataset; the same arguments always give the same arrays.

    The default size leaves room for the default 5,000-image validation split.
    ``image_shape`` (H, W, C) and ``num_classes`` make other shapes (e.g. 28x28x1,
    3 classes) for code that must follow the data.
    """
    h, w, c = image_shape
    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=(num_classes, 4, 4, c))
    # Nearest-neighbour upsampling 4x4 -> HxW, then a box blur to soften edges.
    rows, cols = np.arange(h) * 4 // h, np.arange(w) * 4 // w
    templates = coarse[:, rows][:, :, cols]
    templates = uniform_filter(templates, size=(1, 5, 5, 1), mode="wrap")
    templates = (templates / np.abs(templates).max()).astype(np.float32)
    train_images, train_labels = _draw(rng, templates, num_train)
    test_images, test_labels = _draw(rng, templates, num_test)
    classes = tuple(f"pattern{i}" for i in range(num_classes))
    shape = "" if (tuple(image_shape), num_classes) == ((32, 32, 3), 10) else (
        f":{h}x{w}x{c}:{num_classes}")
    return Dataset(train_images, train_labels, test_images, test_labels, classes,
                   source="synthetic",
                   fingerprint=f"synthetic-v1:{num_train}:{num_test}:{seed}{shape}")

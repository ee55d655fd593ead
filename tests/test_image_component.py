"""The seed / test-image decomposition of benchmarks/image_component.py on layouts whose
answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.image_component import components


def test_identical_seeds_leave_only_the_image_component():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 2000)
    a_row = np.where(rng.random(2000) < 0.7, labels, (labels + 1) % 3)
    b_row = np.where(rng.random(2000) < 0.6, labels, (labels + 1) % 3)
    a, b = np.tile(a_row, (5, 1)), np.tile(b_row, (5, 1))  # every seed the same
    c = components(a, b, labels)
    x = 100.0 * ((a_row == labels).astype(float) - (b_row == labels))
    assert c["seed_se"] == 0.0 and c["mean_difference"] == pytest.approx(x.mean(), abs=1e-4)
    # The usual standard error of a mean over images (ddof 1), to rounding.
    assert c["image_se"] == pytest.approx(x.std(ddof=1) / np.sqrt(2000), rel=1e-3)


def test_independent_seed_noise_gives_no_image_component_on_average():
    rng = np.random.default_rng(1)
    labels = np.zeros(4000, int)
    image_se = [components(rng.integers(0, 2, (8, 4000)), rng.integers(0, 2, (8, 4000)),
                           labels)["image_se"] for _ in range(20)]
    seed_se = components(rng.integers(0, 2, (8, 4000)), rng.integers(0, 2, (8, 4000)),
                         labels)["seed_se"]
    assert np.mean(image_se) < 0.5 * seed_se  # images carry no effect of their own here

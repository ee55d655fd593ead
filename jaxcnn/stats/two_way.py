"""What the test images add to a comparison's uncertainty (issue 27, item 3).

A seed's test accuracy is a mean over N test images. Read as a sample of the images the
test set stands for, a comparison's mean difference has two errors: the seeds'
(``seed_se``: the s.e. of the mean of the per-seed differences, the test images held
fixed) and the images' (``image_se``), which more seeds do not shrink.

For a configuration A against its reference B on S seeds, ``x[s, i]`` is 100 times (A
right on image i at seed s) minus (B right): its mean over images is seed s's
difference. As a crossed two-way layout (seeds and images both random), with
``MS_image = S var_i(column means)`` and the residual mean square ``MS_res``, the
images' part of the variance of the grand mean is

    image_var = max(0, MS_image - MS_res) / (S N)

(unbiased for the variance of the images' main effects over N; the seed x image
interaction is already in the per-seed differences' spread).
"""

from __future__ import annotations

import numpy as np


def image_variance(x: np.ndarray) -> float:
    """The images' part of the variance of ``x.mean()`` (points^2): ``x`` (S, N) per-seed,
    per-image differences, S >= 2 and N >= 2 (see the module doc)."""
    x = np.asarray(x, dtype=float)
    s, n = x.shape
    if s < 2 or n < 2:
        raise ValueError(f"need at least 2 seeds and 2 images, got {s} x {n}")
    rows, cols, grand = x.mean(1), x.mean(0), x.mean()
    ms_image = s * cols.var(ddof=1)
    ms_res = ((x - rows[:, None] - cols[None, :] + grand) ** 2).sum() / ((s - 1) * (n - 1))
    return max(0.0, float(ms_image - ms_res)) / (s * n)

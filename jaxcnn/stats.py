"""Statistics across seeds (scipy.stats underneath)."""

from __future__ import annotations

import numpy as np
from scipy import stats as sps


def t_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided t confidence interval of the mean; (nan, nan) below 2 values."""
    values = np.asarray(values, dtype=float)
    if values.size < 2:
        return float("nan"), float("nan")
    mean = values.mean()
    sem = sps.sem(values)
    if sem == 0:
        return float(mean), float(mean)
    low, high = sps.t.interval(confidence, values.size - 1, loc=mean, scale=sem)
    return float(low), float(high)


def curve_band(matrix: np.ndarray, confidence: float = 0.95
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and t-interval per column of a (seeds, points) array, NaNs ignored."""
    mean = np.nanmean(matrix, axis=0)
    bounds = [t_interval(col[np.isfinite(col)], confidence) for col in matrix.T]
    low, high = (np.array(b) for b in zip(*bounds))
    return mean, low, high

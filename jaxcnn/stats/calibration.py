"""Critical values for the sequential verdicts that hold over a stated class of shapes.

Student's t interval promises its error only for normal per-seed differences. Over
skewed differences (and seeds far from the rest) its tails are much heavier at the tiny
per-look levels a family of 15 comparisons needs: at q = alpha / 30 and 20 seeds the
upper quantile of t is 3.36 for normal differences and 5.00 for a gamma of skewness
-1.5 (``benchmarks/results/class-errors.md``). This module replaces the t quantile by
critical values calibrated by Monte Carlo at the least favourable member of:

**The class** (``CLASS``): per-seed differences that are normal; Student t with 3
degrees of freedom; a standardized gamma of skewness between -1.5 and +1.5 (either
sign); or normal with up to 3 % of seeds shifted by up to 5 sd to one side.

**The statistic** is Hall's (1992) skew-corrected t, which makes the class's skewed
members less extreme than under plain t (so the calibrated values are smaller): with
``t = sqrt(n) (mean - delta) / sd`` and the sample skewness ``g`` (capped at
``SKEW_CAP``)::

    h(t) = t + g t^2 / (3 sqrt(n)) + g^2 t^3 / (27 n) + g / (6 sqrt(n))

h is increasing in t, so each test inverts to an interval (asymmetric where g != 0):
:func:`interval`. A look compares ``h`` with two critical values: ``direction`` (the
difference interval: better / worse) and ``equivalence`` (two one-sided tests at +-m).

**Calibration** (:func:`boundaries`). For every shape of ``SHAPES`` (the class's
extremes and midpoints, both signs) ``paths`` simulated sequences give h at every
look (centred: the null). A critical value at look k is the largest over the shapes of
h's upper quantile at a marginal level ``lam * w_k``; one scalar ``lam`` is set by
bisection so that the probability of crossing at *any* look, under the worst shape,
equals the target. Direction: each tail at most ``split * share``. Equivalence, one
tail, crossing either critical value (a "worse" verdict at delta >= m is wrong too): at
most ``share``. The weights ``w`` put the direction's error on looks up to
``DIRECTION_UNTIL`` seeds (where a real difference is found), ``TAIL`` of it after;
and all of the equivalence's on the last look (earlier ones cannot show it at the
spreads seen here). ``reserve`` of each target stays unspent for a continuation: a
rerun with a larger budget (``caps``) calibrates its new looks with the earlier ones
held fixed and spends half of what is left, so the error over every look of every run
stays within the targets. Results are cached on disk (``$JAXCNN_CACHE`` or
``~/.cache/jaxcnn``): the same design is calibrated once per machine.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

CLASS = ("normal; Student t with 3 degrees of freedom; a standardized gamma of skewness "
         "between -1.5 and +1.5; or normal with up to 3% of seeds shifted by up to 5 sd to "
         "one side")
SHAPES = ("normal", "t3", "gamma+0.5", "gamma-0.5", "gamma+1.0", "gamma-1.0", "gamma+1.5",
          "gamma-1.5", "outliers0.03+5", "outliers0.03-5", "outliers0.03+3", "outliers0.03-3",
          "outliers0.01+5", "outliers0.01-5")
SKEW_CAP = 1.5
DIRECTION_UNTIL = 30  # seeds: the direction's error is spent up to here (TAIL after)
TAIL = 0.05
SPLIT = 0.42  # each direction tail's part of the comparison's share
RESERVE = 0.05  # of every target, kept for a continuation
PATHS = 200_000
SIMULATED = tuple(s for s in SHAPES if "-" not in s)  # mirrors: see _Null
VERSION = 1  # of this calibration: part of the cache key
_MEMO: dict[str, Boundaries] = {}  # this process's calibrations, by key
_NULLS: dict[str, _Null] = {}  # the last simulated null (see _null)


def draw(rng: np.random.Generator, shape: str, size: tuple[int, ...]) -> np.ndarray:
    """Draws of mean 0 and sd 1 from one shape of the class (a name of ``SHAPES``)."""
    if shape == "normal":
        return rng.standard_normal(size)
    if shape == "t3":
        return rng.standard_t(3, size) / np.sqrt(3.0)
    if shape.startswith("gamma"):
        skew = float(shape[5:])
        k = 4.0 / skew ** 2  # gamma(k) has skewness 2 / sqrt(k)
        return np.sign(skew) * (rng.gamma(k, 1.0, size) - k) / np.sqrt(k)
    if shape.startswith("outliers"):
        share, shift = float(shape[8:12]), float(shape[12:])
        x = rng.standard_normal(size) + shift * (rng.random(size) < share)
        return (x - share * shift) / np.sqrt(1.0 + share * (1.0 - share) * shift ** 2)
    raise ValueError(f"unknown shape {shape!r}: choose one of {', '.join(SHAPES)}")


def moments(x: np.ndarray, looks: Sequence[int]) -> list[tuple[np.ndarray, ...]]:
    """(mean, sd, capped skewness) of the first n values of ``x`` (..., N) for each n in
    ``looks``; sd with n - 1, skewness the plain moment ratio m3 / m2^1.5 (0 where sd 0)."""
    # sums over the stretches between looks, then running sums at the looks only
    x = x[..., :looks[-1]]
    starts = np.r_[0, np.asarray(looks[:-1], dtype=int)]
    square = x * x
    sums = [np.cumsum(np.add.reduceat(v, starts, axis=-1), axis=-1)
            for v in (x, square, square * x)]
    out = []
    for k, n in enumerate(looks):
        s1, s2, s3 = (s[..., k] / n for s in sums)
        m2 = np.maximum(s2 - s1 * s1, 0.0)
        m3 = s3 - 3 * s1 * s2 + 2 * s1 ** 3
        with np.errstate(invalid="ignore", divide="ignore"):
            skew = np.where(m2 > 0, m3 / np.maximum(m2, 1e-300) ** 1.5, 0.0)
        out.append((s1, np.sqrt(m2 * n / max(n - 1, 1)), np.clip(skew, -SKEW_CAP, SKEW_CAP)))
    return out


def skewness(d: np.ndarray) -> float:
    """The capped sample skewness of one comparison's differences (n,), as h uses it."""
    d = np.asarray(d, dtype=float)
    return float(moments(d, [d.size])[0][2])


def statistic(mean, sd, skew, n, delta):
    """Hall's h at true difference ``delta`` (any broadcastable shapes; sd > 0)."""
    root = np.sqrt(n)
    t = (mean - delta) * root / sd
    return t + skew * t ** 2 / (3 * root) + skew ** 2 * t ** 3 / (27 * n) + skew / (6 * root)


def _inverse(y, skew, n):
    """The t with h(t) = y (h is increasing; its cube form inverts in closed form)."""
    root = np.sqrt(n)
    skew = np.asarray(skew, dtype=float)
    safe = np.where(np.abs(skew) < 1e-9, 1.0, skew)
    u = np.cbrt(1 + safe / root * (y - safe / (6 * root)))
    return np.where(np.abs(skew) < 1e-9, y, (u - 1) * 3 * root / safe)


def interval(mean, sd, skew, n, critical):
    """(low, high): every delta that h does not reject at ``critical`` on either side."""
    se = np.asarray(sd, dtype=float) / np.sqrt(n)
    return mean - se * _inverse(critical, skew, n), mean - se * _inverse(-critical, skew, n)


@dataclasses.dataclass(frozen=True)
class Boundaries:
    """Critical values of h at each look: ``direction[k]`` and ``equivalence[k]`` (inf:
    that look cannot give that verdict)."""

    looks: tuple[int, ...]
    direction: tuple[float, ...]
    equivalence: tuple[float, ...]

    def at(self, n: int) -> tuple[float, float]:
        if n not in self.looks:
            raise ValueError(f"{n} seeds is not a look of this design ({list(self.looks)})")
        k = self.looks.index(n)
        return self.direction[k], self.equivalence[k]


class _Null:
    """h at every look under every shape (centred), float32, and sorted per look.

    A shape's mirror image (-x) has h exactly -h, so each shape's lower tail stands for
    its mirror's upper tail: only the positive-skew members are simulated."""

    def __init__(self, looks: Sequence[int], paths: int, seed: int):
        self.h, self.sorted = {}, {}  # shape -> (looks, paths): one row per look
        for i, shape in enumerate(SIMULATED):
            # seed j of every path from its own stream: a longer design sees the same
            # first seeds, so a continuation's earlier looks cross exactly as they did
            x = np.stack([draw(np.random.default_rng([seed, i, j]), shape, (paths,))
                          for j in range(looks[-1])], axis=-1)
            h = np.stack([statistic(m, s, g, n, 0.0) for (m, s, g), n
                          in zip(moments(x, looks), looks)])
            self.h[shape] = np.nan_to_num(h, nan=0.0).astype(np.float32)
            self.sorted[shape] = np.sort(self.h[shape], axis=1)
        self.looks, self.paths, self.seed = tuple(looks), paths, seed

    def rows(self, looks: Sequence[int]) -> _Null:
        """The same paths at a subset of the looks (h at n seeds does not depend on how
        many seeds a path has after n)."""
        index = [self.looks.index(n) for n in looks]
        out = object.__new__(_Null)
        out.h = {k: v[index] for k, v in self.h.items()}
        out.sorted = {k: v[index] for k, v in self.sorted.items()}
        out.looks, out.paths, out.seed = tuple(looks), self.paths, self.seed
        return out


    def quantiles(self, levels: np.ndarray) -> np.ndarray:
        """Per look, the largest upper quantile (either tail) at its marginal level over
        every shape; inf where the level is 0."""
        out = np.full(levels.shape, np.inf)
        for k, q in enumerate(levels):
            if q > 0:
                high = min(self.paths - 1, int(np.ceil((1 - q) * self.paths)))
                low = max(0, self.paths - 1 - high)
                out[k] = max(max(float(s[k, high]), -float(s[k, low]))
                             for s in self.sorted.values())
        return out

    def crossing(self, critical: np.ndarray) -> float:
        """The worst shape and tail's probability that h crosses ``critical`` at any look."""
        c = critical.astype(np.float32)[:, None]
        return max(max(float(np.logical_or.reduce(h > c, axis=0).mean()),
                       float(np.logical_or.reduce(h < -c, axis=0).mean()))
                   for h in self.h.values())


def _null(looks: Sequence[int], paths: int, seed: int) -> _Null:
    """A _Null for these looks, from the last one simulated where it covers them (designs
    that differ only in their share of alpha, and a continuation's earlier runs, reuse
    it)."""
    last = _NULLS.get("last")
    if not (last and last.paths == paths and last.seed == seed
            and set(looks) <= set(last.looks)):
        last = _NULLS["last"] = _Null(looks, paths, seed)
    return last if tuple(looks) == last.looks else last.rows(looks)


def _calibrate(null: _Null, weights: np.ndarray, target: float, fixed: np.ndarray,
               other: np.ndarray | None = None) -> np.ndarray:
    """Critical values: ``fixed`` where finite (earlier runs' looks), else the worst-case
    marginal quantiles at ``lam * weights`` with lam bisected so that the crossing of
    min(critical, other) stays within ``target``."""
    def critical(lam):
        return np.where(np.isfinite(fixed), fixed, null.quantiles(lam * weights))

    def crossing(lam):
        c = critical(lam)
        return null.crossing(c if other is None else np.minimum(c, other))

    low, high = 0.0, 4 * target
    for _ in range(18):  # lam to 4 * target / 2**18: far finer than the Monte Carlo
        middle = (low + high) / 2
        low, high = (middle, high) if crossing(middle) <= target else (low, middle)
    return critical(low)


def _weights(looks: Sequence[int], new: np.ndarray, first: bool) -> tuple[np.ndarray, ...]:
    """(direction, equivalence) spending weights over the looks marked ``new``."""
    n = np.asarray(looks, dtype=float)
    direction = np.zeros(len(looks))
    if first:
        until = min(DIRECTION_UNTIL, n[new][-1])
        cumulative = np.minimum(n / until, 1.0) ** 1.5 * (1 - TAIL)
        after = new & (n > until)
        cumulative = cumulative + TAIL * (np.cumsum(after) / max(after.sum(), 1))
        cumulative[np.flatnonzero(new)[-1]] = 1.0
        direction[new] = np.diff(np.concatenate([[0.0], cumulative]))[new]
    else:
        direction[new] = 1.0 / new.sum()
    equivalence = np.zeros(len(looks))
    equivalence[np.flatnonzero(new)[-1]] = 1.0
    return np.maximum(direction, 0.0), equivalence


def boundaries(looks: Sequence[int], share: float, caps: Sequence[int] = (), *,
               reserve: float = RESERVE, split: float = SPLIT, paths: int = PATHS,
               seed: int = 0, cache: bool = True) -> Boundaries:
    """The critical values of a design's looks (sorted seed counts) for a comparison
    whose part of alpha is ``share``.

    caps: the budgets of earlier runs this one continues (each one a look): looks up to
    the first cap are calibrated as that run was, each later run's looks with the
    earlier ones fixed. reserve: the part of each target a first run leaves unspent
    (0 for a fixed design, which never continues); a continuation j spends up to
    ``1 - reserve / 2**j`` of it. About 20 s for 60 seeds at 200,000 paths; cached.
    """
    looks = tuple(int(n) for n in looks)
    caps = tuple(int(c) for c in caps if c < looks[-1])
    options = dict(reserve=reserve, split=split, paths=paths, seed=seed, cache=cache)
    key = dict(version=VERSION, looks=looks, share=float(share), caps=caps, reserve=reserve,
               split=split, paths=paths, seed=seed, shapes=SIMULATED, cap=SKEW_CAP,
               until=DIRECTION_UNTIL, tail=TAIL)
    memo = json.dumps(key, sort_keys=True)
    if cache and memo in _MEMO:
        return _MEMO[memo]
    path = _cache_file(key) if cache else None
    if path is not None and path.exists():
        record = json.loads(path.read_text())
        _MEMO[memo] = Boundaries(looks, tuple(record["direction"]), tuple(record["equivalence"]))
        return _MEMO[memo]
    _null(looks, paths, seed)  # simulated once, for this run and the earlier ones
    # the earlier runs' critical values, exactly as they were used, then this run's
    earlier = (boundaries([n for n in looks if n <= caps[-1]], share, caps[:-1], **options)
               if caps else Boundaries((), (), ()))
    done = np.arange(len(looks)) < len(earlier.looks)
    pad = np.full(len(looks) - len(earlier.looks), np.inf)
    fixed_dir = np.concatenate([earlier.direction, pad])
    fixed_eq = np.concatenate([earlier.equivalence, pad])
    spend = 1 - (reserve / 2 ** len(caps) if reserve else 0.0)
    w_dir, w_eq = _weights(looks, ~done, first=not caps)
    null = _null(looks, paths, seed)
    direction = _calibrate(null, w_dir, split * share * spend, fixed_dir)
    equivalence = _calibrate(null, w_eq, share * spend, fixed_eq, other=direction)
    out = Boundaries(looks, tuple(map(float, direction)), tuple(map(float, equivalence)))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": key, "direction": out.direction,
                                   "equivalence": out.equivalence}))
        tmp.replace(path)
        _MEMO[memo] = out
    return out


def _cache_file(key: dict) -> Path:
    root = Path(os.environ.get("JAXCNN_CACHE") or Path.home() / ".cache" / "jaxcnn")
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return root / "boundaries" / f"{digest[:24]}.json"

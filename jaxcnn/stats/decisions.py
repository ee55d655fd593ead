"""Every comparison decided: better, worse, equivalent within +-m, or undecided.

A comparison is a configuration against its reference, paired by seed: its data are
the per-seed differences ``d`` (configuration minus reference, accuracy points).

**Verdicts at one look** (n seeds): two intervals of the mean difference, the
*difference interval* at a critical value ``c_dir`` and the *equivalence interval* (two
one-sided tests, Schuirmann 1987; Lakens 2017) at ``c_eq``:

- **better** if the difference interval lies above 0, **worse** if below;
- otherwise **equivalent** if the equivalence interval lies inside (-m, m);
- otherwise **undecided**.

A directional claim takes precedence: a difference shown to be nonzero is reported
as better/worse even when it is also inside the margin (``within_margin`` says so).

**Two methods** (``Design.method``):

- ``"calibrated"`` (the default): Hall's (1992) skew-corrected t, its critical values
  calibrated by Monte Carlo so that the error over *all* looks stays within the
  comparison's share at the least favourable shape of a stated class of per-seed
  differences (normal, t3, skewness up to +-1.5, 3 % of seeds 5 sd out): see
  :mod:`jaxcnn.stats.calibration`. A first run keeps a reserve, so that a rerun with a
  larger budget continues (``caps``); each look records its critical values, the
  skewness, the most extreme seed and the verdict without it, and a final undecided look
  the probability that a rerun with twice the budget decides it.
- ``"t_union"`` (0d99cce's design, kept to compare with and to read old results): t
  intervals ``d_bar +- t(1 - a/2; n - 1) s / sqrt(n)`` (equivalence: ``t(1 - a)``) at
  a level ``a`` per look from a Lan-DeMets (1983) spending function of ``n / horizon``
  (O'Brien-Fleming-like, or Pocock-like), with a union bound over looks. Its error
  holds for normal and t3 differences, not for skewed ones
  (``benchmarks/results/class-errors.md``).

**Two sources of error** (``Design.test_set``, calibrated method): with ``"sample"`` (the
default) the test images are read as a sample too, and each look's intervals use the
two-way standard error ``sqrt(seed_se^2 + image_se^2)`` (:mod:`jaxcnn.stats.two_way`:
the images' part comes from the stored predictions and does not shrink with seeds; the
skewness correction is scaled to the seeds' share of the variance). ``"fixed"`` keeps
the reading conditional on these test images (``seed_se`` alone). Both components are
recorded either way. Where the images alone rule out every verdict at the observed mean
(equivalence needs a margin above the last look's ``c_eq * image_se``, a direction a
mean beyond the smallest ``c_dir * image_se`` of the looks left), the comparison stops:
more seeds cannot decide it (``test_limit``: the smallest margin these test images allow). Stopping
for futility never adds error. Metrics other than test accuracy keep ``"fixed"``: their
per-image values are not stored.

In both, each comparison of a family of K gets ``alpha / K`` (Bonferroni); the family
is every comparison passed in (``family="all"``) or each study (``family="study"``: the
name's part before the first "/"). Looks are taken at planned sizes only (rounds of a
fixed size), so when a comparison looks never depends on its data. A fixed design
(``--seeds N``) is one look that spends all of ``alpha / K``.

**Use per round** (pure functions; the state is the looks, a JSON-able dict)::

    design = Design(first_round=14, round_size=4, max_seeds=60)  # or Design.fixed(5)
    looks = {}                                                    # or looks_from_json(...)
    while True:
        wanted = next_round(looks, pairs, design)    # {config: total seeds it needs}
        if not wanted:
            break
        ...train seeds until each config in ``wanted`` has that many...
        looks = decide(differences, looks, design)  # {comparison: (d_1, ..., d_n)}
    record(design, looks)                           # results.json's "decisions" block

``differences`` must hold every comparison of the family every round (decided ones
too): a comparison's Bonferroni share depends on the family's size. Decided
comparisons keep their verdict; a call with no new seeds for a comparison adds no look.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import special
from scipy import stats as sps

from jaxcnn.stats import calibration

VERDICTS = ("undecided", "better", "worse", "equivalent")
UNDECIDED, BETTER, WORSE, EQUIVALENT = range(4)
SPENDING = ("obrien_fleming", "pocock")
FAMILIES = ("all", "study")
METHODS = ("calibrated", "t_union")
TEST_SETS = ("sample", "fixed")
MAX_SEARCH_SEEDS = 10_000  # seeds_needed above this are reported as None


# --- the design ------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Design:
    """How many seeds, when to look, and at what error rates.

    Attributes:
      first_round: seeds of the first look (at least 2).
      round_size: seeds added per later round; looks are at first_round,
        first_round + round_size, ..., and max_seeds.
      max_seeds: the budget per configuration.
      horizon: the n at which all of the error is spent (information fraction n /
        horizon); None: max_seeds. Above max_seeds it keeps a reserve for a rerun
        with a larger budget.
      alpha: family-wise error rate over all verdicts and looks.
      margin: m, in accuracy points: "equivalent" means |difference| < m shown.
      spending: "obrien_fleming" or "pocock" (Lan-DeMets spending functions).
      family: "all" (one multiplicity family) or "study" (one per study).
      caps: the budgets (max_seeds) of the earlier runs this one continues, smallest
        first: their last looks stay planned looks (a run capped at 12 looked at 12,
        and a rerun with max_seeds 16 goes on from there: 5, 10, 12, 16).
      method: "calibrated" (the default: Hall's skew-corrected t against critical
        values calibrated over a class of shapes, :mod:`jaxcnn.stats.calibration`) or
        "t_union" (0d99cce's repeated t intervals with alpha spending; ``spending`` and
        ``horizon`` apply to it alone).
      reserve: (calibrated) the part of the error a sequential design keeps for a rerun
        with a larger budget.
      test_set: (calibrated) "sample": intervals include the test images' part of the
        error; "fixed": conditional on these test images (see the module doc).
    """

    first_round: int = 14
    round_size: int = 4
    max_seeds: int = 60
    alpha: float = 0.05
    margin: float = 1.0
    spending: str = "obrien_fleming"
    family: str = "all"
    horizon: int | None = None
    caps: tuple[int, ...] = ()
    method: str = "calibrated"
    reserve: float = calibration.RESERVE
    test_set: str = "sample"

    def __post_init__(self) -> None:
        object.__setattr__(self, "caps", tuple(self.caps))  # a JSON list reads back
        problems = [
            (self.first_round < 2, f"first round {self.first_round}: need at least 2 seeds"),
            (self.max_seeds < self.first_round,
             f"max seeds {self.max_seeds} is below the first round {self.first_round}"),
            (self.round_size < 1, f"round size {self.round_size}: need at least 1 seed"),
            (not 0 < self.alpha < 1, f"alpha {self.alpha}: must lie in (0, 1)"),
            (not self.margin > 0, f"margin {self.margin}: must be positive"),
            (self.spending not in SPENDING,
             f"spending {self.spending!r}: choose one of {', '.join(SPENDING)}"),
            (self.method not in METHODS,
             f"method {self.method!r}: choose one of {', '.join(METHODS)}"),
            (not 0 <= self.reserve < 1, f"reserve {self.reserve}: must lie in [0, 1)"),
            (self.test_set not in TEST_SETS,
             f"test set {self.test_set!r}: choose one of {', '.join(TEST_SETS)}"),
            (self.family not in FAMILIES,
             f"family {self.family!r}: choose one of {', '.join(FAMILIES)}"),
            (self.horizon is not None and self.horizon < self.max_seeds,
             f"horizon {self.horizon} is below max seeds {self.max_seeds}: use at least that"),
        ]
        for bad, message in problems:
            if bad:
                raise ValueError(message)

    @classmethod
    def fixed(cls, seeds: int, **kwargs) -> Design:
        """The one-look design of ``--seeds N``: all of the error spent at n = N."""
        return cls(first_round=seeds, max_seeds=seeds, **kwargs)

    @property
    def with_images(self) -> bool:
        """Whether intervals include the test images' part of the error."""
        return self.method == "calibrated" and self.test_set == "sample"

    @property
    def kind(self) -> str:
        return "fixed" if self.first_round == self.max_seeds else "sequential"

    @property
    def information_max(self) -> int:
        """The n at which the whole error is spent."""
        return self.horizon or self.max_seeds

    def look_sizes(self) -> list[int]:
        """The planned n of every look: first_round, + round_size, ..., up to each earlier
        run's cap (see ``caps``) and on from it, ..., max_seeds."""
        sizes, start = [], self.first_round
        for cap in (*self.caps, self.max_seeds):
            if sizes and cap <= sizes[-1]:
                continue
            sizes += [*range(start, cap, self.round_size), cap]
            start = cap + self.round_size
        return sizes

    def next_size(self, n: int) -> int:
        """The planned look after one at ``n`` seeds (max_seeds at most)."""
        return next((s for s in self.look_sizes() if s > n), self.max_seeds)

    def family_of(self, comparison: str) -> str:
        """The multiplicity family of a comparison named "study/...": see the module doc."""
        return "all" if self.family == "all" else comparison.split("/", 1)[0]

    def to_json(self) -> dict:
        method = ("repeated t intervals; Bonferroni over the family, Lan-DeMets "
                  f"{self.spending} alpha spending over looks (information n / "
                  f"{self.information_max}), union bound over looks; TOST for "
                  "equivalence at the same level") if self.method == "t_union" else (
                  "Hall's skew-corrected t against critical values calibrated by Monte "
                  "Carlo to hold at the least favourable shape of the class ("
                  f"{calibration.CLASS}); Bonferroni over the family; TOST for "
                  "equivalence")
        return {**dataclasses.asdict(self), "kind": self.kind,
                "looks_planned": self.look_sizes(), "method": method,
                "method_name": self.method}

    def boundaries(self, share: float) -> calibration.Boundaries:
        """(calibrated) The critical values of every planned look for a comparison whose
        part of alpha is ``share`` (cached on disk: see :mod:`calibration`)."""
        sequential = self.kind == "sequential"
        return calibration.boundaries(
            self.look_sizes(), share, self.caps if sequential else (),
            reserve=self.reserve if sequential else 0.0,
            split=calibration.SPLIT if sequential else 0.5)

    def critical(self, share: float, n: int) -> tuple[float, float]:
        """(calibrated) The (direction, equivalence) critical values of a look at n seeds:
        those of the largest planned look at or below n (inf below the first). A fixed
        design with fewer seeds than planned (a seed missing or left out) gets the
        one-look values at its own n."""
        if self.kind == "fixed" and 2 <= n < self.max_seeds:
            return dataclasses.replace(self, first_round=n, max_seeds=n).critical(share, n)
        bounds = self.boundaries(share)
        planned = [k for k, size in enumerate(bounds.looks) if size <= n]
        if not planned:
            return math.inf, math.inf
        return bounds.direction[planned[-1]], bounds.equivalence[planned[-1]]

    @classmethod
    def from_json(cls, record: Mapping) -> Design:
        fields = {f.name for f in dataclasses.fields(cls)}
        out = {k: v for k, v in record.items() if k in fields}
        out["method"] = record.get("method_name", "t_union")  # blocks before it: t_union
        out["test_set"] = record.get("test_set", "fixed")  # blocks before it: seeds only
        return cls(**out)


def spent(design: Design, share: float, n: int) -> float:
    """Cumulative two-sided error of one comparison spent by a look at ``n`` seeds.

    share: the comparison's part of alpha (alpha / family size). S(t) at t = n /
    horizon, all of ``share`` from t = 1 on.
    """
    t = min(1.0, n / design.information_max)
    if t >= 1.0:
        return share
    if design.spending == "pocock":
        return float(share * math.log(1 + (math.e - 1) * t))
    z = sps.norm.isf(share / 2)
    return float(2 * sps.norm.sf(z / math.sqrt(t)))


# --- one look --------------------------------------------------------------------------

def intervals(mean: np.ndarray, sd: np.ndarray, n: np.ndarray | int, level: np.ndarray | float
              ) -> tuple[np.ndarray, np.ndarray]:
    """Half-widths of the difference and the equivalence interval, any broadcastable shape.

    mean is unused but fixes the shape; level: two-sided error spent at this look
    (0 gives infinite half-widths: nothing can be decided).
    """
    n = np.asarray(n, dtype=float)
    level = np.asarray(level, dtype=float)
    se = np.asarray(sd, dtype=float) / np.sqrt(n)
    df = np.maximum(n - 1, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        # -stdtrit(df, q) is t.isf(q, df) without scipy.stats' overhead, and exact
        # for the tiny q of early looks (no 1 - q)
        half = np.where(level > 0, -special.stdtrit(df, level / 2) * se, np.inf)
        half_eq = np.where(level > 0, -special.stdtrit(df, level) * se, np.inf)
    shape = np.broadcast(mean, half).shape
    return np.broadcast_to(half, shape), np.broadcast_to(half_eq, shape)


def verdict_codes(mean: np.ndarray, sd: np.ndarray, n: np.ndarray | int,
                  level: np.ndarray | float, margin: float) -> np.ndarray:
    """Verdict codes (indices into VERDICTS) of looks, vectorised over any shape.

    A zero sd (every seed moved by the same amount, which the 100/N steps of
    accuracy make possible with few seeds) leaves the t interval undefined: undecided.
    """
    mean = np.asarray(mean, dtype=float)
    half, half_eq = intervals(mean, sd, n, level)
    usable = (np.asarray(sd) > 0) & (np.asarray(n) >= 2)
    codes = np.full(np.broadcast(mean, half).shape, UNDECIDED)
    equivalent = (mean - half_eq > -margin) & (mean + half_eq < margin)
    codes = np.where(equivalent, EQUIVALENT, codes)
    codes = np.where(mean + half < 0, WORSE, codes)
    codes = np.where(mean - half > 0, BETTER, codes)
    return np.where(usable, codes, UNDECIDED)


def seeds_needed(mean: float, sd: float, level: float, margin: float
                 ) -> tuple[int | None, int | None]:
    """(to decide at the observed mean and sd, to guarantee a decision at the observed sd).

    Both for one look at per-comparison error ``level`` (a fixed design of that
    size); the guarantee is a difference half-width of at most margin / 2. None when
    above MAX_SEARCH_SEEDS or undefined (sd 0).
    """
    if not sd > 0:
        return None, None

    def decides(n: int) -> bool:
        half, half_eq = (float(h) for h in intervals(0.0, sd, n, level))
        return abs(mean) - half > 0 or abs(mean) + half_eq < margin

    def guarantees(n: int) -> bool:
        return float(intervals(0.0, sd, n, level)[0]) <= margin / 2

    return _smallest(decides), _smallest(guarantees)


def _smallest(holds) -> int | None:
    """The smallest n in [2, MAX_SEARCH_SEEDS] where ``holds`` (monotone in n: both
    half-widths shrink as n grows) is true, by bisection; None if none."""
    low, high = 2, MAX_SEARCH_SEEDS
    if not holds(high):
        return None
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if holds(middle) else (middle + 1, high)
    return low


@dataclasses.dataclass(frozen=True)
class Look:
    """One comparison at one look: n paired seeds, both intervals and the verdict.

    level: the two-sided error this look spent (per comparison); spent_total: all
    looks so far; share: the comparison's whole part of alpha (alpha / family size).
    interval: the (1 - level) interval of the mean difference; equivalence_interval:
    its (1 - 2 level) TOST interval. Intervals are None below 2 seeds, with sd 0 or
    with no error left to spend. seeds_needed / seeds_to_guarantee (undecided looks
    only): the seeds a fixed design at the comparison's whole share would need to
    decide at the observed mean and sd / to guarantee a decision at the observed sd.
    seed_se / image_se: the two standard errors of the mean (image_se None where no
    per-image outcomes are known); test_limit: set where the test images alone keep the
    comparison undecided at any budget: the smallest margin they allow.
    """

    n: int
    mean: float | None
    sd: float | None
    level: float
    spent_total: float
    interval: tuple[float, float] | None
    equivalence_interval: tuple[float, float] | None
    verdict: str
    within_margin: bool = False
    seeds_needed: int | None = None
    seeds_to_guarantee: int | None = None
    note: str | None = None
    share: float | None = None
    critical: tuple[float, float] | None = None
    skewness: float | None = None
    largest_z: float | None = None
    without_extreme: str | None = None
    continuation: tuple[int, float] | None = None
    seed_se: float | None = None
    image_se: float | None = None
    test_limit: float | None = None

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        for key in ("interval", "equivalence_interval", "critical"):
            # an infinite critical value (that look cannot give that verdict) as null
            out[key] = None if out[key] is None else [
                float(v) if math.isfinite(v) else None for v in out[key]]
        return out

    @classmethod
    def from_json(cls, record: Mapping) -> Look:
        fields = {f.name for f in dataclasses.fields(cls)}
        out = {k: v for k, v in record.items() if k in fields}
        for key in ("interval", "equivalence_interval", "critical", "continuation"):
            out[key] = None if out.get(key) is None else tuple(
                math.inf if v is None else v for v in out[key])
        return cls(**out)


def look(differences: np.ndarray, level: float, spent_total: float, margin: float,
         share: float | None = None) -> Look:
    """The Look of one comparison given its per-seed differences (n,) and error level.

    share: the comparison's alpha / family size (default: spent_total).
    """
    d = np.asarray(differences, dtype=float)
    n = int(d.size)
    share = spent_total if share is None else share
    if n < 2:
        return Look(n, float(d.mean()) if n else None, None, level, spent_total, None, None,
                    VERDICTS[UNDECIDED], note=f"{n} paired seed(s): need at least 2",
                    share=share)
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd == 0:
        return Look(n, mean, sd, level, spent_total, None, None, VERDICTS[UNDECIDED],
                    note="the same difference on every seed: the t interval is undefined",
                    share=share)
    if not level > 0:
        return Look(n, mean, sd, level, spent_total, None, None, VERDICTS[UNDECIDED],
                    note="no error left to spend: earlier looks spent all of it",
                    share=share)
    half, half_eq = (float(h) for h in intervals(mean, sd, n, level))
    code = int(verdict_codes(mean, sd, n, level, margin))
    needed = (None, None) if code != UNDECIDED else seeds_needed(mean, sd, share, margin)
    return Look(n, mean, sd, level, spent_total, (mean - half, mean + half),
                (mean - half_eq, mean + half_eq), VERDICTS[code],
                within_margin=bool(abs(mean) + half_eq < margin),
                seeds_needed=needed[0], seeds_to_guarantee=needed[1], share=share)


def two_way(sd, skew, n, image_var=0.0) -> tuple[np.ndarray, np.ndarray]:
    """(sd, skew) that make the one-sample formulas of :mod:`calibration` give the two-way
    statistic: the standard error ``sqrt(sd^2 / n + image_var)`` written as an sd at n,
    and the skewness scaled to the seeds' share of the variance of the mean (the images'
    part, a mean over many images, taken as normal). image_var 0: (sd, skew) unchanged."""
    seed_var = np.asarray(sd, dtype=float) ** 2 / n
    total = seed_var + image_var
    seeds_share = np.where(total > 0, seed_var / np.where(total > 0, total, 1.0), 1.0)
    return np.sqrt(total * n), np.asarray(skew, dtype=float) * seeds_share ** 1.5


def calibrated_codes(mean, sd, skew, n, critical: tuple, margin: float,
                     image_var: float = 0.0) -> np.ndarray:
    """Verdict codes of looks by the calibrated rule (any broadcastable shapes): better /
    worse where the direction interval excludes 0, else equivalent where the
    equivalence interval lies inside (-m, m). ``image_var``: the test images' part of
    the variance of the mean (:func:`two_way`). No error to build on or n < 2:
    undecided."""
    c_dir, c_eq = (np.asarray(c, dtype=float) for c in critical)
    sd, skew = two_way(sd, skew, n, image_var)
    usable = (sd > 0) & (np.asarray(n) >= 2)
    sd = np.where(usable, sd, 1.0)
    low, high = calibration.interval(mean, sd, skew, n, c_dir)
    eq_low, eq_high = calibration.interval(mean, sd, skew, n, c_eq)
    codes = np.where((eq_low > -margin) & (eq_high < margin), EQUIVALENT, UNDECIDED)
    codes = np.where(high < 0, WORSE, codes)
    codes = np.where(low > 0, BETTER, codes)
    return np.where(usable, codes, UNDECIDED)


def calibrated_look(differences: np.ndarray, critical: tuple[float, float], margin: float,
                    share: float, image_var: float | None = None,
                    with_images: bool = True) -> Look:
    """The Look of one comparison by the calibrated rule at critical values (direction,
    equivalence); it also records the sample skewness, the largest |z| of a seed, and the
    verdict the same critical values give without that seed (data outside the class
    show there: a skewness near 1.5, a seed many sd out, a verdict that changes).

    image_var: the test images' part of the variance of the mean (None: unknown); the
    intervals include it where ``with_images``; both standard errors are recorded.
    """
    d = np.asarray(differences, dtype=float)
    n = int(d.size)
    extra = float(image_var) if with_images and image_var else 0.0
    base = dict(level=0.0, spent_total=0.0, share=share, critical=tuple(critical),
                seed_se=float(d.std(ddof=1) / math.sqrt(n)) if n > 1 else None,
                image_se=None if image_var is None else math.sqrt(image_var))
    if n < 2 or not (d.std() > 0 or extra > 0):
        note = (f"{n} paired seed(s): need at least 2" if n < 2 else
                "the same difference on every seed: no spread to build an interval on")
        return Look(n, float(d.mean()) if n else None, float(d.std(ddof=1)) if n > 1 else None,
                    interval=None, equivalence_interval=None, verdict=VERDICTS[UNDECIDED],
                    note=note, **base)
    mean, sd, skew = float(d.mean()), float(d.std(ddof=1)), calibration.skewness(d)
    code = int(calibrated_codes(mean, sd, skew, n, critical, margin, extra))
    sd_both, skew_both = two_way(sd, skew, n, extra)
    ends = [tuple(float(v) for v in calibration.interval(mean, sd_both, skew_both, n, c))
            if math.isfinite(c) else None for c in critical]
    shape = {}
    if sd > 0:
        z = (d - mean) / sd
        extreme = int(np.argmax(np.abs(z)))
        rest = np.delete(d, extreme)
        again = (VERDICTS[int(calibrated_codes(rest.mean(), rest.std(ddof=1),
                                               calibration.skewness(rest), n - 1, critical,
                                               margin, extra))] if n > 2 else None)
        # as measured (scipy's biased skewness, without its warning on near-equal
        # values); h uses it capped
        centred = d - d.mean()
        shape = dict(skewness=float(np.mean(centred ** 3) / np.mean(centred ** 2) ** 1.5),
                     largest_z=float(z[extreme]), without_extreme=again)
    return Look(n, mean, sd, interval=ends[0], equivalence_interval=ends[1],
                verdict=VERDICTS[code],
                within_margin=ends[1] is not None and -margin < ends[1][0] and ends[1][1] < margin,
                **shape, **base)


def test_limited(look: Look, design: Design, image_var: float | None) -> Look:
    """``look`` with ``test_limit`` (the smallest margin the test images allow) set where
    they alone rule out every verdict at its mean, at any number of seeds
    (:func:`image_bound`). The rounds then stop adding seeds to it: a futility stop,
    which adds no error."""
    if (look.verdict != VERDICTS[UNDECIDED] or not design.with_images or not image_var
            or look.mean is None or look.share is None):
        return look
    hopeless, limit = image_bound(look.mean, image_var, design, look.share, look.n)
    return dataclasses.replace(look, test_limit=float(limit)) if hopeless else look


def image_bound(mean, image_var, design: Design, share: float, n: int
                ) -> tuple[np.ndarray, float | np.ndarray]:
    """(whether no look from n seeds on can decide at ``mean``, the smallest margin these
    test images allow): even with the seeds' part of the error gone, equivalence needs a
    margin above ``c_eq * image_se`` (the last look's, where all of its error is spent)
    and a direction a mean beyond the smallest ``c_dir * image_se`` of the looks left."""
    image_se = np.sqrt(image_var)
    left = [k for k in design.look_sizes() if k >= n] or [n]
    c_dir = min(design.critical(share, k)[0] for k in left)
    limit = design.critical(share, design.max_seeds)[1] * image_se
    return (limit >= design.margin) & (np.abs(mean) <= c_dir * image_se), limit


def continuation_power(differences: np.ndarray, design: Design, share: float, budget: int,
                       simulations: int = 2000, seed: int = 0, image_var: float = 0.0
                       ) -> float:
    """The probability that a rerun with ``--max-seeds budget`` decides a comparison left
    undecided at its last look (``differences``, n = design.max_seeds): the earlier
    seeds kept, each new seed's difference drawn normal at the observed mean and sd, and
    the continued design's new looks (:func:`calibration.boundaries` with this run's
    cap) applied, with the test images' part ``image_var`` as it was. A probability,
    not a seed count that a fresh study reaches half the time (issue 27)."""
    d = np.asarray(differences, dtype=float)
    grown = dataclasses.replace(design, max_seeds=budget, horizon=None,
                                caps=(*design.caps, design.max_seeds))
    rng = np.random.default_rng(seed)
    new = d.mean() + d.std(ddof=1) * rng.standard_normal((simulations, budget - d.size))
    x = np.concatenate([np.broadcast_to(d, (simulations, d.size)), new], axis=1)
    sizes = [n for n in grown.look_sizes() if n > d.size]
    decided = np.zeros(simulations, dtype=bool)
    for n, (mean, sd, skew) in zip(sizes, calibration.moments(x, sizes)):
        codes = calibrated_codes(mean, sd, skew, n, grown.critical(share, n), design.margin,
                                 image_var)
        decided |= codes != UNDECIDED
    return float(decided.mean())


def with_continuations(differences: Mapping[str, np.ndarray], looks: Looks,
                       design: Design, image_variances: Mapping[str, float] | None = None
                       ) -> Looks:
    """``looks`` with :func:`continuation_power` (at twice the budget) recorded in every
    calibrated sequential comparison whose last look is undecided at the budget (not
    where the test images are the limit)."""
    out = dict(looks)
    for name, history in looks.items():
        last = history[-1] if history else None
        if (design.method == "calibrated" and design.kind == "sequential" and last
                and last.verdict == VERDICTS[UNDECIDED] and last.n >= design.max_seeds
                and last.sd and last.continuation is None and last.test_limit is None):
            budget = 2 * design.max_seeds
            image_var = (image_variances or {}).get(name) if design.with_images else None
            power = continuation_power(np.asarray(differences[name])[:last.n], design,
                                       last.share, budget, image_var=image_var or 0.0)
            out[name] = (*history[:-1], dataclasses.replace(last,
                                                            continuation=(budget, power)))
    return out


def single_look(differences: np.ndarray, share: float, margin: float) -> Look:
    """One look of a fixed design at n = len(differences) seeds whose error is ``share``
    (for example an early-training claim), by the calibrated rule."""
    n = int(np.asarray(differences).size)
    critical = Design.fixed(max(n, 2), alpha=min(share, 0.5)).critical(share, n)
    return calibrated_look(differences, critical, margin, share)


# --- rounds ----------------------------------------------------------------------------

Looks = dict[str, tuple[Look, ...]]


def family_sizes(names: Sequence[str], design: Design) -> dict[str, int]:
    """comparison -> the size of its multiplicity family."""
    unnamed = [name for name in names if design.family == "study" and "/" not in name]
    if unnamed:
        raise ValueError(f"comparisons {unnamed} name no study: with family='study' name "
                         "them 'study/...'")
    labels = [design.family_of(name) for name in names]
    return {name: labels.count(label) for name, label in zip(names, labels)}


def is_final(history: Sequence[Look], design: Design) -> bool:
    """Decided, or undecided with the budget (seeds or error) spent."""
    if not history:
        return False
    last = history[-1]
    exhausted = last.share is not None and last.spent_total >= last.share * (1 - 1e-12)
    return (last.verdict != VERDICTS[UNDECIDED] or last.n >= design.max_seeds or exhausted
            or last.test_limit is not None)


def decide(differences: Mapping[str, np.ndarray], looks: Mapping[str, Sequence[Look]],
           design: Design, image_variances: Mapping[str, float] | None = None) -> Looks:
    """The looks after this round: a new Look for every open comparison with new seeds.

    differences: comparison -> (n,) per-seed differences so far, for every
    comparison of every family (decided ones too). looks: the previous result (empty
    at first). image_variances: comparison -> the test images' part of the variance of
    its mean difference at these seeds (:mod:`two_way`; absent: unknown). Returns a
    new dict; the inputs are not changed.
    """
    unknown = sorted(set(looks) - set(differences))
    if unknown:
        raise ValueError(f"comparisons {unknown} have looks but no differences: pass every "
                         "comparison of the family every round")
    sizes = family_sizes(list(differences), design)
    out: Looks = {}
    for name, d in differences.items():
        history = tuple(looks.get(name, ()))
        n = int(np.asarray(d).size)
        if history and n < history[-1].n:
            raise ValueError(f"comparison {name}: {n} seeds, fewer than the {history[-1].n} "
                             "of its last look")
        if is_final(history, design) or (history and n == history[-1].n):
            out[name] = history
            continue
        share = design.alpha / sizes[name]
        recorded = history[-1].share if history else None
        if recorded is not None and not math.isclose(recorded, share):
            raise ValueError(f"comparison {name}: its share of alpha was {recorded:.3g} and "
                             f"would now be {share:.3g}: keep the family (and alpha) of the "
                             "earlier looks")
        if design.method == "calibrated":
            image_var = (image_variances or {}).get(name)
            new = test_limited(calibrated_look(d, design.critical(share, n), design.margin,
                                               share, image_var, design.with_images),
                               design, image_var)
        else:
            before = history[-1].spent_total if history else 0.0
            total = max(before, spent(design, share, n))
            new = look(d, total - before, total, design.margin, share)
        out[name] = history + (new,)
    return out


def next_round(looks: Mapping[str, Sequence[Look]], pairs: Mapping[str, tuple[str, str]],
               design: Design) -> dict[str, int]:
    """config -> total seeds it needs for the next look; {} when every comparison is final.

    pairs: comparison -> (configuration, reference). A comparison with no look
    yet needs the first round; an open one needs the next planned look size, for
    both of its configurations (a configuration shared by several takes the most).
    """
    wanted: dict[str, int] = {}
    for name, (config, reference) in pairs.items():
        history = tuple(looks.get(name, ()))
        if is_final(history, design):
            continue
        target = design.next_size(history[-1].n) if history else design.first_round
        for c in (config, reference):
            wanted[c] = max(wanted.get(c, 0), target)
    return wanted


def record(design: Design, looks: Mapping[str, Sequence[Look]]) -> dict:
    """results.json's decisions block: the design, the family, every look, the verdicts."""
    names = list(looks)
    families: dict[str, list[str]] = {}
    for name in names:
        families.setdefault(design.family_of(name), []).append(name)
    return {
        "design": design.to_json(),
        "family": {"mode": design.family, "size": {k: len(v) for k, v in families.items()},
                   "members": families},
        "comparisons": {name: {"looks": [x.to_json() for x in looks[name]],
                               "final": _final(looks[name], design)} for name in names},
    }


def _final(history: Sequence[Look], design: Design) -> str | None:
    if not history:
        return None
    return history[-1].verdict if is_final(history, design) else None


def looks_from_json(block: Mapping) -> Looks:
    """The looks of a recorded decisions block, to resume a run."""
    return {name: tuple(Look.from_json(x) for x in entry["looks"])
            for name, entry in block["comparisons"].items()}


# --- simulation ------------------------------------------------------------------------

def simulate(differences: np.ndarray, design: Design, family_size: int | None = None,
             image_var: float | np.ndarray = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The design run on simulated studies, every comparison looked at on the planned grid.

    differences: (studies, comparisons, max_seeds) per-seed differences; all
    comparisons form one family of ``family_size`` (default: the comparisons axis).
    image_var: (calibrated) the test images' part of the variance of each mean (scalar
    or (studies, comparisons)); a simulation of both sources adds the images' common
    error to every seed of a study's comparison itself.
    Returns (verdict codes, seeds used), both (studies, comparisons). The same rules
    as :func:`decide`, vectorised (tests check that the two agree).
    """
    d = np.asarray(differences, dtype=float)
    studies, comparisons, available = d.shape
    if available < design.max_seeds:
        raise ValueError(f"{available} simulated seeds, the design needs {design.max_seeds}")
    share = design.alpha / (family_size or comparisons)
    codes = np.full((studies, comparisons), UNDECIDED)
    used = np.zeros((studies, comparisons), dtype=int)
    open_ = np.ones((studies, comparisons), dtype=bool)
    before = 0.0
    sizes = design.look_sizes()
    stats = calibration.moments(d, sizes) if design.method == "calibrated" else None
    for k, n in enumerate(sizes):
        if stats is not None:
            mean, sd, skew = stats[k]
            now = calibrated_codes(mean, sd, skew, n, design.critical(share, n), design.margin,
                                   image_var)
        else:
            total = max(before, spent(design, share, n))
            x = d[..., :n]
            now = verdict_codes(x.mean(-1), x.std(-1, ddof=1), n, total - before,
                                design.margin)
            before = total
        codes = np.where(open_, now, codes)
        used = np.where(open_, n, used)
        open_ &= now == UNDECIDED
        if stats is not None and design.with_images and np.any(image_var):
            open_ &= ~image_bound(stats[k][0], image_var, design, share, n)[0]
    return codes, used

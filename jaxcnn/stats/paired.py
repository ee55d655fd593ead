"""Statistics across seeds: which differences between configurations are real.

Scores are arrays over seeds; metrics are pure functions; results are points
with intervals (after rliable). scipy.stats does the distributions; the only
resampling here is the bootstrap, driven by an explicit ``numpy.random.Generator``.

Comparisons pair seeds by index: seed i of every configuration shares its data
order, and its initial weights when the configurations use the same
initializer, so per-seed differences cancel the seed's luck (see
:func:`pairing_note`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy import optimize
from scipy import stats as sps

CONFIDENCE = 0.95
ALPHA = 0.05
POWER = 0.80
BOOTSTRAP_RESAMPLES = 10_000
# Below this many seeds no bootstrap interval: at n = 5 the percentile interval is about
# 60 % of the t interval's width (too few distinct resamples), so it would claim more
# than the data say (GUIDE section 5; issue 18 section 5).
MIN_BOOTSTRAP_N = 10


# --- one configuration -----------------------------------------------------------------

def t_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
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


def bootstrap_ci(values: np.ndarray, rng: np.random.Generator,
                 statistic: Callable[[np.ndarray], float] = np.mean,
                 n_resamples: int = BOOTSTRAP_RESAMPLES,
                 confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(values)``, resampling seeds.

    The Generator makes it reproducible. (nan, nan) below ``MIN_BOOTSTRAP_N`` (10)
    values: with so few, the resamples take only a handful of distinct values and
    the interval comes out much narrower than the t interval (about 60 % of its
    width at 5 seeds), which accounts for how little a few seeds say.
    """
    values = np.asarray(values, dtype=float)
    if values.size < MIN_BOOTSTRAP_N:
        return float("nan"), float("nan")
    picks = rng.integers(0, values.size, size=(n_resamples, values.size))
    estimates = np.apply_along_axis(statistic, 1, values[picks])
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(estimates, [tail, 100 - tail])
    return float(low), float(high)


def curve_band(matrix: np.ndarray, confidence: float = CONFIDENCE
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and t-interval per column of a (seeds, points) array, NaNs ignored."""
    matrix = np.asarray(matrix, dtype=float)
    mean = np.array([col[np.isfinite(col)].mean() if np.isfinite(col).any() else np.nan
                     for col in matrix.T])
    bounds = [t_interval(col[np.isfinite(col)], confidence) for col in matrix.T]
    low, high = (np.array(b) for b in zip(*bounds))
    return mean, low, high


def summarize(values: np.ndarray, rng: np.random.Generator) -> dict:
    """n, mean, std, t and bootstrap 95% intervals of one configuration's scores."""
    values = np.asarray(values, dtype=float)
    n = int(values.size)
    return {
        "n": n,
        "mean": float(values.mean()) if n else None,
        "std": float(values.std(ddof=1)) if n > 1 else None,
        "ci95_t": _pair_or_none(t_interval(values)),
        "ci95_bootstrap": _pair_or_none(bootstrap_ci(values, rng)),
    }


def _pair_or_none(pair: tuple[float, float]) -> list[float] | None:
    return None if any(math.isnan(v) for v in pair) else [float(pair[0]), float(pair[1])]


# --- paired comparisons ----------------------------------------------------------------

def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down), in the input order.

    The i-th smallest p is multiplied by (m - i) (i from 0), running maxima
    keep the order, and values are capped at 1.
    """
    p = np.asarray(p_values, dtype=float)
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, (m - rank) * p[index])
        adjusted[index] = min(1.0, running)
    return adjusted.tolist()


def wilcoxon_p(differences: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p (scipy); 1.0 when every difference is zero.

    Zero differences are dropped (``zero_method="wilcox"``). Up to 13 nonzero
    differences scipy (1.17 here) enumerates every sign flip of the (mid)ranks, exact
    even with ties; above that, or in older scipy with ties, the normal approximation.
    """
    d = np.asarray(differences, dtype=float)
    if not np.any(d != 0):
        return 1.0
    return float(sps.wilcoxon(d, zero_method="wilcox").pvalue)


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y) + P(X = Y) / 2 over all pairs of runs: the Mann-Whitney U / (n m)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    return float(sps.mannwhitneyu(x, y).statistic / (x.size * y.size))


def minimum_detectable_difference(sd_diff: float, n: int, alpha: float = ALPHA,
                                  power: float = POWER) -> float | None:
    """Smallest true mean difference a two-sided paired t-test on ``n`` seeds detects
    with probability ``power`` at level ``alpha``, given the paired std ``sd_diff``.

    Solves power(d) = P(|T| > t_crit) with T noncentral t (scipy.stats.nct),
    df = n - 1 and noncentrality d sqrt(n) / sd_diff.
    """
    if n < 2 or not np.isfinite(sd_diff):
        return None
    if sd_diff == 0:
        return 0.0
    df = n - 1
    t_crit = sps.t.ppf(1 - alpha / 2, df)

    def shortfall(effect: float) -> float:
        nc = effect * math.sqrt(n)
        return sps.nct.sf(t_crit, df, nc) + sps.nct.cdf(-t_crit, df, nc) - power

    high = 1.0  # in units of sd_diff; grow until the power target is met
    while shortfall(high) < 0:
        high *= 2
        if high > 1e4 or not np.isfinite(shortfall(high)):
            return None  # scipy's nct cannot resolve it (e.g. 2 seeds)
    effect = optimize.brentq(shortfall, 1e-9, high)
    return float(effect * sd_diff)


def seed_ranges(seeds: Sequence[int]) -> str:
    """Seeds as runs of consecutive numbers: [0, 1, 2, 5, 7, 8] -> '0-2, 5, 7-8'."""
    runs: list[list[int]] = []
    for s in sorted(seeds):
        if runs and s == runs[-1][1] + 1:
            runs[-1][1] = s
        else:
            runs.append([s, s])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def compare(values: np.ndarray, reference: np.ndarray, rng: np.random.Generator) -> dict:
    """Config minus reference, paired by seed: differences, tests, effect size.

    values, reference: (n,) scores of the same seeds in the same order. With
    fewer than 2 pairs the tests are None and ``note`` says why.
    """
    x, y = np.asarray(values, float), np.asarray(reference, float)
    d = x - y
    n = int(d.size)
    out = {"n_pairs": n, "mean_difference": float(d.mean()) if n else None,
           "ci95": None, "ci95_bootstrap": None, "p_ttest": None, "p_wilcoxon": None,
           "effect_size": None, "prob_improvement": None, "sd_difference": None,
           "min_detectable_difference": None, "note": None}
    if n < 2:
        out["note"] = f"{n} paired seed(s): no intervals or p-values (need at least 2)"
        return out
    sd = float(d.std(ddof=1))
    out.update(sd_difference=sd, prob_improvement=probability_of_improvement(x, y),
               ci95_bootstrap=_pair_or_none(bootstrap_ci(d, rng)),
               min_detectable_difference=minimum_detectable_difference(sd, n))
    if sd == 0:
        # Every seed moved by exactly the same amount (accuracies are multiples of
        # 100/N, so this happens with few seeds): the t statistic is undefined, and
        # calling it infinitely significant would be a claim from an artefact.
        out.update(ci95=[float(d.mean())] * 2, p_wilcoxon=wilcoxon_p(d), effect_size=None,
                   note="the same difference on every seed: the t-test is undefined, no "
                        "verdict")
        return out
    test = sps.ttest_rel(x, y)
    ci = test.confidence_interval(CONFIDENCE)
    out.update(ci95=[float(ci.low), float(ci.high)], p_ttest=float(test.pvalue),
               p_wilcoxon=wilcoxon_p(d), effect_size=float(d.mean() / sd))
    if n < 5:
        out["note"] = f"only {n} seeds: too few for a claim, 5 is the minimum we trust"
    return out


# --- a whole study ---------------------------------------------------------------------

CURVES = ("train_loss", "val_loss", "val_accuracy")


def metric_of(results: dict) -> dict:
    """The metric a study's verdicts compare (``metadata.metric``; test accuracy for
    results written before studies could name one): name, key, higher_is_better, unit."""
    return results.get("metadata", {}).get("metric") or dict(ACCURACY_METRIC)


ACCURACY_METRIC = {"name": "test_accuracy", "key": "test_accuracy", "higher_is_better": True,
                   "unit": "points", "margin": None}


def metric_scale(metric: dict, margin: float) -> float:
    """What the decisions see per unit of the metric: -1 where lower is better (so that
    positive is better), times the run's margin over the metric's own (so that its
    equivalence margin is the run's)."""
    sign = 1.0 if metric["higher_is_better"] else -1.0
    return sign * margin / (metric.get("margin") or margin)


def diverged_score(results: dict, key: str | None = None) -> float | None:
    """What a seed that diverged counts as in its study's metric (or ``key``): chance, a uniform
    prediction over the data's classes (100 / classes % of test accuracy, ln(classes) of
    test loss). None for a metric of one's own or an unknown class count: such seeds are
    left out, with a note. Dropping them instead would favour the configuration that
    diverges."""
    classes = len(results.get("metadata", {}).get("data", {}).get("class_names") or ())
    key = key or metric_of(results)["key"]
    if classes < 2 or key not in ("test_accuracy", "test_loss"):
        return None
    return 100.0 / classes if key == "test_accuracy" else math.log(classes)


def kept_scores(seeds: list[dict], key: str = "test_accuracy",
                diverged: float | None = None) -> dict[int, float]:
    """seed -> its ``key`` value (test accuracy unless a study names another metric) for
    every finished seed; a seed that diverged counts as ``diverged`` (None: left out)."""
    out = {}
    for s in seeds:
        if s.get("diverged_epoch") is None and s.get(key) is not None:
            out[s["seed"]] = s[key]
        elif s.get("diverged_epoch") is not None and diverged is not None:
            out[s["seed"]] = diverged
    return out


def pairing_note(config: dict, reference: dict) -> str:
    """What seed i shares between two configurations, checked from the records."""
    shared = ["data order"]
    a = [s.get("initial_params_checksum") for s in config["seeds"]]
    b = [s.get("initial_params_checksum") for s in reference["seeds"]]
    if None not in a and None not in b and a == b[: len(a)]:
        shared.append("initial weights")
    elif config.get("init") == reference.get("init"):
        shared.append("initializer (weights not verified)")
    return "paired on " + " and ".join(shared)


def comparison_pairs(names: Sequence[str], reference: str,
                     extra_pairs: Sequence[tuple[str, str]] = (), all_pairs: bool = False
                     ) -> list[tuple[str, str]]:
    """The (configuration, reference) pairs a study compares, each once: every name
    against ``reference``, then ``extra_pairs`` (the notebook's claims: first minus
    second), then with ``all_pairs`` every other pair. Pairs naming a configuration not
    in ``names`` are left out."""
    pairs: list[tuple[str, str]] = []

    def add(a: str, b: str) -> None:
        if a in names and b in names and a != b and not {(a, b), (b, a)} & set(pairs):
            pairs.append((a, b))

    if reference in names:
        for name in names:
            add(name, reference)
    for a, b in extra_pairs:
        add(a, b)
    if all_pairs:
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                add(a, b)
    return pairs


def paired_comparison(config: dict, reference: dict, name: str, ref: str,
                      rng: np.random.Generator, key: str = "test_accuracy",
                      diverged: float | None = None, higher_is_better: bool = True) -> dict:
    """One entry of ``statistics.comparisons``: ``name`` minus ``ref`` (their results.json
    records) in ``key`` on the seeds both have (a diverged seed counted as ``diverged``,
    or left out where that is None), with a note on those seeds."""
    a, b = (kept_scores(config["seeds"], key, diverged),
            kept_scores(reference["seeds"], key, diverged))
    common = sorted(set(a) & set(b))
    entry = {"config": name, "reference": ref,
             **compare(np.array([a[s] for s in common]), np.array([b[s] for s in common]),
                       rng),
             "pairing": pairing_note(config, reference)}
    if not higher_is_better and entry["prob_improvement"] is not None:
        entry["prob_improvement"] = 1.0 - entry["prob_improvement"]  # P(a lower value)
    trained = {s["seed"] for s in config["seeds"]}
    trained_ref = {s["seed"] for s in reference["seeds"]}
    failed = sorted({s["seed"] for c in (config, reference) for s in c["seeds"]
                     if s.get("diverged_epoch") is not None} & trained & trained_ref)
    counted = (f"counted at chance ({diverged:.4g})" if diverged is not None
               else "left out")
    unpaired = sorted(trained ^ trained_ref)
    extras = ([f"seeds {seed_ranges(failed)} diverged in one of the two: {counted}"]
              if failed else []) + (
        [f"seeds {seed_ranges(unpaired)} trained for one of the two only (compared on "
         f"the {len(common)} seeds both have)"] if unpaired else [])
    if extras:
        entry["note"] = "; ".join(([entry["note"]] if entry["note"] else []) + extras)
    return entry


def study_statistics(results: dict, reference: str, seed: int = 0, all_pairs: bool = False,
                     extra_pairs: Sequence[tuple[str, str]] = ()) -> dict:
    """The ``statistics`` block of a results file (see docs/data.md, "Results layout").

    Compares every configuration with ``reference`` (config minus reference),
    then each of ``extra_pairs`` (first minus second; the notebook's claims that
    fall in this study), then with ``all_pairs`` every other pair. Holm's
    adjustment runs over all of them: one family per study, so each comparison
    has one verdict wherever it is shown.
    """
    rng = np.random.default_rng(seed)
    configs = results["configs"]
    metric, chance = metric_of(results), diverged_score(results)
    summary = {}
    for name, cfg in configs.items():
        kept = kept_scores(cfg["seeds"], metric["key"], chance)
        entry = summarize(np.array(list(kept.values())), rng)
        diverged = [s["seed"] for s in cfg["seeds"] if s.get("diverged_epoch") is not None]
        entry["diverged_seeds"] = diverged
        entry["note"] = (None if not diverged else
                         f"seeds {diverged} diverged and are excluded" if chance is None else
                         f"seeds {diverged} diverged: counted at chance ({chance:.4g})")
        entry["curves"] = {}
        for key in CURVES:  # a diverged seed's curves end where it diverged: left out
            rows = [s["history"][key] for s in cfg["seeds"]
                    if s["seed"] in kept and s.get("diverged_epoch") is None]
            if rows:
                matrix = np.array([[np.nan if v is None else v for v in r] for r in rows], float)
                mean, low, high = curve_band(matrix)
                entry["curves"][key] = {"mean": _list(mean), "ci95_low": _list(low),
                                        "ci95_high": _list(high)}
        summary[name] = entry

    comparisons = [paired_comparison(configs[name], configs[ref], name, ref, rng, metric["key"],
                                     chance, metric["higher_is_better"])
                   for name, ref in comparison_pairs(list(configs), reference, extra_pairs,
                                                     all_pairs)]
    testable = [i for i, c in enumerate(comparisons) if c["p_ttest"] is not None]
    adjusted = holm([comparisons[i]["p_ttest"] for i in testable]) if testable else []
    for c in comparisons:
        c["p_holm"] = None
    for i, p in zip(testable, adjusted):
        comparisons[i]["p_holm"] = p
    out = {"metric": metric["name"], "confidence": CONFIDENCE, "alpha": ALPHA,
            "bootstrap": {"resamples": BOOTSTRAP_RESAMPLES, "generator_seed": seed,
                          "min_n": MIN_BOOTSTRAP_N},
            "holm_family": f"the {len(testable)} comparisons listed here (each configuration "
                           "against the reference, and the notebook's claims in this study)",
            "summary": summary, "comparisons": comparisons}
    if reference not in configs:  # a --configs subset, its reference in neither run nor --out
        out["no_reference"] = no_reference_note(reference)
    return out


NO_REFERENCE = "no reference in this run"


def no_reference_note(reference: str) -> str:
    """What a study says of its comparisons with a reference it does not hold."""
    return (f"{NO_REFERENCE}: '{reference}' was neither trained nor found in --out, so no "
            f"configuration is compared with it; train it into the same --out (--configs "
            f"{reference}) to compare")


def find_comparison(statistics: dict, a: str, b: str) -> tuple[dict | None, int]:
    """The comparison of ``a`` with ``b`` and its orientation: +1 if it is a minus b,
    -1 if it is stored as b minus a; (None, 0) if absent."""
    for c in statistics["comparisons"]:
        if (c["config"], c["reference"]) == (a, b):
            return c, 1
        if (c["config"], c["reference"]) == (b, a):
            return c, -1
    return None, 0


def _list(array: np.ndarray) -> list[float | None]:
    return [float(v) if np.isfinite(v) else None for v in array]

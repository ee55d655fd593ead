"""Statistics against hand-computed and textbook values, scipy where it is an independent
implementation, and the study-level block."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from jaxcnn.stats import paired

X = np.array([66.1, 67.3, 65.9, 68.0, 66.7])
Y = np.array([65.2, 66.9, 66.1, 66.8, 65.0])


def test_t_interval_against_hand_computed_values():
    """X: mean 66.8, sd sqrt(0.75) = 0.866025 (squared deviations 0.49 + 0.25 + 0.81 +
    1.44 + 0.01 = 3.0, / 4), se 0.387298; textbook t table, 4 df: t(0.975) = 2.776.
    66.8 +- 2.776 x 0.387298 = 66.8 +- 1.0751 (the table's 3 decimals: +- 5e-4)."""
    assert paired.t_interval(X) == pytest.approx((65.7249, 67.8751), abs=5e-4)
    # d = 1..5: mean 3, se sqrt(2.5 / 5); the 90% interval uses t(0.95, 4 df) = 2.132
    assert paired.t_interval(np.arange(1.0, 6.0), 0.90) == pytest.approx((1.4925, 4.5075),
                                                                         abs=5e-4)
    assert paired.t_interval(np.full(4, 2.5)) == (2.5, 2.5)  # no spread, no width
    assert np.isnan(paired.t_interval(X[:1])[0])


def test_paired_comparison_matches_scipy():
    c = paired.compare(X, Y, np.random.default_rng(0))
    d = X - Y
    test = sps.ttest_rel(X, Y)
    assert c["mean_difference"] == pytest.approx(d.mean())
    assert c["p_ttest"] == pytest.approx(test.pvalue)
    ci = test.confidence_interval(0.95)
    assert c["ci95"] == pytest.approx([ci.low, ci.high])
    assert c["p_wilcoxon"] == pytest.approx(sps.wilcoxon(d).pvalue)
    assert c["effect_size"] == pytest.approx(d.mean() / d.std(ddof=1))
    brute = np.mean([(x > y) + 0.5 * (x == y) for x in X for y in Y])
    assert c["prob_improvement"] == pytest.approx(brute)
    assert c["note"] is None  # 5 seeds: no caveat


@pytest.mark.parametrize("d, p", [
    # |d| midranks 1, 2.5, 2.5, 4.5, 4.5, 6; the negative rank sum is 2.5. Of the 2^6
    # sign flips, 4 give a negative sum <= 2.5 ({}, {1}, either 2.5): p = 2 x 4/64.
    (np.array([1.0, -2.0, 2.0, 3.0, 3.0, 4.0]), 0.125),
    # zeros dropped: ranks 1 (-0.5), 2, 3, 4; negative sum 1; {} and {1} of 16: 2 x 2/16
    (np.array([0.0, 1.5, -0.5, 2.0, 0.0, 3.0]), 0.25),
    # zeros dropped, then midranks 2, 2, 2 (-1 among them), 4.5, 4.5; negative sum 2;
    # {} and any one of the three 2s of 32 flips: 2 x 4/32
    (np.array([0.0, 0.0, 1.0, 1.0, -1.0, 2.0, 2.0]), 0.25),
])
def test_wilcoxon_with_ties_and_zeros_against_hand_enumeration(d, p):
    """Up to 13 nonzero differences scipy enumerates every sign flip of the midranks,
    so the p-value is the exact permutation p, counted here by hand."""
    assert paired.wilcoxon_p(d) == pytest.approx(p)


def test_wilcoxon_all_zero_differences_is_one_not_an_error():
    assert paired.wilcoxon_p(np.zeros(5)) == 1.0


def test_holm_known_values():
    # m = 4: sorted p 0.01, 0.02, 0.03, 0.5 -> 0.04, 0.06, 0.06 (running max), 0.5
    assert paired.holm([0.03, 0.01, 0.5, 0.02]) == pytest.approx([0.06, 0.04, 0.5, 0.06])
    assert paired.holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert paired.holm([]) == []


def test_bootstrap_is_reproducible_with_a_fixed_generator():
    values = np.random.default_rng(0).normal(65, 1.5, size=20)
    a = paired.bootstrap_ci(values, np.random.default_rng(7))
    b = paired.bootstrap_ci(values, np.random.default_rng(7))
    c = paired.bootstrap_ci(values, np.random.default_rng(8))
    assert a == b and a != c
    assert a[0] < values.mean() < a[1]


def test_bootstrap_agrees_with_scipy_percentile_bootstrap():
    values = np.random.default_rng(0).normal(65, 1.5, size=20)
    ours = paired.bootstrap_ci(values, np.random.default_rng(1))
    ref = sps.bootstrap((values,), np.mean, method="percentile", n_resamples=10_000,
                        rng=np.random.default_rng(2)).confidence_interval
    assert ours == pytest.approx((ref.low, ref.high), abs=0.08)


def test_bootstrap_is_omitted_below_ten_seeds():
    """Below 10 seeds the percentile bootstrap is far too narrow (about 60 % of the t
    width at 5): no interval at all, while the t interval stays."""
    assert paired.MIN_BOOTSTRAP_N == 10
    nine = np.random.default_rng(0).normal(65, 1.5, size=9)
    assert all(np.isnan(paired.bootstrap_ci(nine, np.random.default_rng(0))))
    for few in (X, nine):
        summary = paired.summarize(few, np.random.default_rng(0))
        assert summary["ci95_bootstrap"] is None and summary["ci95_t"] is not None
    assert paired.compare(X, Y, np.random.default_rng(0))["ci95_bootstrap"] is None
    ten = np.append(nine, 66.0)
    assert paired.summarize(ten, np.random.default_rng(0))["ci95_bootstrap"] is not None


def test_minimum_detectable_difference_has_the_stated_power():
    n, sd = 5, 1.3
    mdd = paired.minimum_detectable_difference(sd, n)
    df, t_crit = n - 1, sps.t.ppf(0.975, n - 1)
    nc = mdd / sd * np.sqrt(n)
    power = sps.nct.sf(t_crit, df, nc) + sps.nct.cdf(-t_crit, df, nc)
    assert power == pytest.approx(0.80, abs=1e-6)
    # and a simulation agrees: paired normal differences of size mdd are detected ~80%
    rng = np.random.default_rng(0)
    hits = np.mean([sps.ttest_1samp(rng.normal(mdd, sd, n), 0).pvalue < 0.05
                    for _ in range(4000)])
    assert hits == pytest.approx(0.80, abs=0.03)


def test_the_same_difference_on_every_seed_gives_no_verdict():
    """Accuracies move in steps of 100/N: with few seeds every difference can be equal,
    and an undefined t-test must not read as infinitely significant."""
    c = paired.compare(X + 0.05, X, np.random.default_rng(0))
    assert c["p_ttest"] is None and "undefined" in c["note"]
    block = paired.study_statistics(_results({"base": list(X), "a": list(X + 0.05)}), "base")
    assert block["comparisons"][0]["p_holm"] is None


def test_fewer_than_two_seeds_gives_a_note_not_nan():
    c = paired.compare(X[:1], Y[:1], np.random.default_rng(0))
    assert c["p_ttest"] is None and c["ci95"] is None and "no intervals" in c["note"]
    s = paired.summarize(X[:1], np.random.default_rng(0))
    assert s["std"] is None and s["ci95_t"] is None and s["mean"] == X[0]


def _results(scores: dict[str, list[float | None]], diverged=None):
    diverged = diverged or {}
    configs = {}
    for name, values in scores.items():
        seeds = []
        for i, v in enumerate(values):
            div = diverged.get(name, {}).get(i)
            seeds.append({"seed": i, "test_accuracy": None if div else v,
                          "diverged_epoch": div, "initial_params_checksum": f"c{i}",
                          "history": {"train_loss": [1.0, 0.5], "val_loss": [1.0, 0.9],
                                      "val_accuracy": [50.0, v or 0.0]}})
        configs[name] = {"init": "lecun", "seeds": seeds}
    return {"configs": configs}


def test_study_statistics_block():
    results = _results({"base": list(Y), "a": list(X), "b": list(X + 0.1)})
    block = paired.study_statistics(results, "base")
    assert set(block["summary"]) == {"base", "a", "b"}
    assert [c["config"] for c in block["comparisons"]] == ["a", "b"]
    ps = [c["p_ttest"] for c in block["comparisons"]]
    assert [c["p_holm"] for c in block["comparisons"]] == pytest.approx(paired.holm(ps))
    assert block["comparisons"][0]["pairing"] == "paired on data order and initial weights"
    assert len(block["summary"]["a"]["curves"]["val_accuracy"]["mean"]) == 2
    all_pairs = paired.study_statistics(results, "base", all_pairs=True)
    assert len(all_pairs["comparisons"]) == 3


def test_extra_pairs_join_the_holm_family_once():
    results = _results({"base": list(Y), "a": list(X),
                        "b": list(X + np.array([0.1, -0.2, 0.3, 0.05, 0.0]))})
    block = paired.study_statistics(results, "base", extra_pairs=[("b", "a"), ("base", "a")])
    pairs = [(c["config"], c["reference"]) for c in block["comparisons"]]
    assert pairs == [("a", "base"), ("b", "base"), ("b", "a")]  # (base, a) is (a, base)
    ps = [c["p_ttest"] for c in block["comparisons"]]
    assert [c["p_holm"] for c in block["comparisons"]] == pytest.approx(paired.holm(ps))
    c, sign = paired.find_comparison(block, "base", "a")
    assert c["config"] == "a" and sign == -1


def test_diverged_seeds_are_counted_at_chance_never_dropped():
    """Issue 27 item 7: dropping a diverged seed would favour the configuration that
    diverges; it counts at chance (100 / classes %) in the summary, the comparison and
    the decisions, and the notes say how many and where."""
    from jaxcnn.stats import rounds
    from jaxcnn.stats.decisions import Design

    results = _results({"base": list(Y), "a": list(X)}, diverged={"a": {2: 1}})
    results["metadata"] = {"data": {"class_names": list("abcdefghij")}}
    block = paired.study_statistics(results, "base")
    assert block["summary"]["a"]["n"] == 5 and block["summary"]["a"]["diverged_seeds"] == [2]
    assert "counted at chance (10)" in block["summary"]["a"]["note"]
    comp = block["comparisons"][0]
    assert comp["n_pairs"] == 5 and "seeds 2 diverged in one of the two: counted at chance" \
        in comp["note"]
    expected = np.array([x if i != 2 else 10.0 for i, x in enumerate(X)]) - Y
    assert comp["mean_difference"] == pytest.approx(expected.mean())
    d = rounds.differences({"s": results}, {"s/a vs base": ("s", "a", "base")},
                           Design.fixed(5))["s/a vs base"]
    np.testing.assert_allclose(d, expected)
    # Without a class count (or for a metric of one's own) a diverged seed is left out.
    del results["metadata"]
    unknown = paired.study_statistics(results, "base")
    assert unknown["summary"]["a"]["n"] == 4 and "seeds 2 diverged in one of the two: left " \
        "out" in unknown["comparisons"][0]["note"]


def test_seed_ranges_are_runs_of_consecutive_seeds():
    from jaxcnn.stats.paired import seed_ranges

    assert seed_ranges([8, 0, 1, 2, 5, 7]) == "0-2, 5, 7-8"
    assert seed_ranges([3]) == "3"
    assert seed_ranges([]) == ""

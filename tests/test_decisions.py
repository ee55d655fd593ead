"""Four verdicts with error rates that hold under repeated looks: hand-computed values,
the round-by-round API, and simulations of thousands of studies (numpy only, seconds)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from jaxcnn.stats import decisions as dc

ALPHA = 0.05
STUDIES = 4000  # simulated studies per case; the Monte-Carlo s.e. of a 5% rate is 0.34%
# Many looks make a hard case for the spending: 3, 5, ..., 21 seeds (10 looks).
MANY_LOOKS = dict(first_round=3, round_size=2, max_seeds=21)


def bound(studies: int = STUDIES) -> float:
    """alpha + 3 Monte-Carlo standard errors."""
    return ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / studies)


def normal(rng, mean, shape, sd=1.5):
    return rng.normal(mean, sd, size=shape)


def heavy(rng, mean, shape, sd=1.5):
    """t with 3 df scaled to standard deviation ``sd`` (its variance is 3)."""
    return mean + rng.standard_t(3, size=shape) * sd / math.sqrt(3)


# --- hand-computed values --------------------------------------------------------------

# d: mean 0.2, sum of squared deviations 1.26, sd sqrt(0.14) = 0.374166, se 0.118322.
# Textbook t table, 9 df: t(0.95) = 1.833, t(0.975) = 2.262.
TOST_D = np.array([0.5, -0.3, 0.8, 0.1, -0.2, 0.4, 0.6, -0.1, 0.3, -0.1])


def test_tost_by_hand():
    """90% interval 0.2 +- 1.833 x 0.118322 = (-0.0169, 0.4169): equivalent within 1 and
    within 0.42, not within 0.4 (upper test t = (0.2 - 0.4) / 0.118322 = -1.690, p = 0.063);
    the 95% interval 0.2 +- 2.262 x 0.118322 = (-0.0676, 0.4676) contains 0: not better."""
    x = dc.look(TOST_D, ALPHA, ALPHA, margin=1.0)
    assert x.mean == pytest.approx(0.2) and x.sd == pytest.approx(0.374166, abs=1e-6)
    assert x.equivalence_interval == pytest.approx((-0.0169, 0.4169), abs=2e-4)
    assert x.interval == pytest.approx((-0.0676, 0.4676), abs=2e-4)
    assert x.verdict == "equivalent" and x.within_margin
    assert dc.look(TOST_D, ALPHA, ALPHA, margin=0.42).verdict == "equivalent"
    narrow = dc.look(TOST_D, ALPHA, ALPHA, margin=0.4)
    assert narrow.verdict == "undecided" and narrow.seeds_needed > 10


def test_better_and_worse_by_hand():
    """d = 1..5: mean 3, sd sqrt(2.5), se 0.70711; t(0.975, 4 df) = 2.776 (table):
    95% interval 3 +- 1.963 = (1.037, 4.963)."""
    d = np.arange(1.0, 6.0)
    x = dc.look(d, ALPHA, ALPHA, margin=1.0)
    assert x.interval == pytest.approx((1.037, 4.963), abs=1e-3)
    assert x.verdict == "better" and not x.within_margin
    assert dc.look(-d, ALPHA, ALPHA, margin=1.0).verdict == "worse"


def test_a_small_significant_difference_is_better_and_within_the_margin():
    d = np.array([0.30, 0.35, 0.40, 0.45, 0.50, 0.32, 0.48, 0.41])
    x = dc.look(d, ALPHA, ALPHA, margin=1.0)
    assert x.verdict == "better" and x.within_margin  # a direction shown takes precedence


def test_obrien_fleming_spending_matches_the_published_table():
    """Lan-DeMets O'Brien-Fleming-like spending at t = 1/4, 1/2, 3/4, 1 for alpha 0.05:
    0.0001, 0.0056, 0.0236, 0.0500 (e.g. Jennison & Turnbull 2000, table 7.6)."""
    design = dc.Design(first_round=2, round_size=1, max_seeds=20)
    cum = [dc.spent(design, ALPHA, n) for n in (5, 10, 15, 20)]
    assert cum == pytest.approx([0.0001, 0.0056, 0.0236, 0.05], abs=6e-5)
    # by hand: 2 - 2 Phi(1.959964 / sqrt(0.5)) = 2 x 0.002787
    assert cum[1] == pytest.approx(0.005575, abs=2e-6)
    pocock = dc.Design(first_round=2, round_size=1, max_seeds=20, spending="pocock")
    # 0.05 ln(1 + (e - 1) / 2) = 0.05 ln(1.859141) = 0.05 x 0.620115 = 0.031006
    assert dc.spent(pocock, ALPHA, 10) == pytest.approx(0.031006, abs=1e-6)
    assert dc.spent(pocock, ALPHA, 25) == ALPHA  # the budget exceeded: what is left


def test_seeds_needed_is_the_smallest_deciding_size():
    mean, sd = 0.6, 1.5
    needed, guarantee = dc.seeds_needed(mean, sd, ALPHA, margin=1.0)
    decides = [dc.look(_with(mean, sd, n), ALPHA, ALPHA, 1.0).verdict != "undecided"
               for n in (needed - 1, needed)]
    assert decides == [False, True]
    # guarantee: t(0.975, n - 1) x 1.5 / sqrt(n) <= 0.5, i.e. about (1.96 x 3)^2 = 35 and more
    assert 35 < guarantee < 40
    assert dc.seeds_needed(0.1, 0.0, ALPHA, 1.0) == (None, None)


def _with(mean: float, sd: float, n: int) -> np.ndarray:
    """n values with exactly this mean and sample sd."""
    z = np.linspace(-1, 1, n)
    return mean + (z - z.mean()) / z.std(ddof=1) * sd


# --- the round-by-round API ------------------------------------------------------------

PAIRS = {"s/a": ("a", "ref"), "s/b": ("b", "ref"), "s/c": ("c", "ref")}


def test_fixed_design_gives_all_four_verdicts():
    diffs = {"s/a": _with(3.0, 1.0, 5), "s/b": _with(-3.0, 1.0, 5),
             "s/c": _with(0.0, 0.2, 5), "s/d": _with(0.5, 3.0, 5)}
    design = dc.Design.fixed(5, method="t_union")
    looks = dc.decide(diffs, {}, design)
    verdicts = {k: v[-1].verdict for k, v in looks.items()}
    assert verdicts == {"s/a": "better", "s/b": "worse", "s/c": "equivalent",
                        "s/d": "undecided"}
    assert all(v[-1].level == pytest.approx(ALPHA / 4) for v in looks.values())  # Bonferroni
    assert looks["s/d"][-1].seeds_needed > 5
    assert dc.next_round(looks, {**PAIRS, "s/d": ("d", "ref")}, design) == {}  # budget spent
    block = dc.record(design, looks)
    assert block["design"]["kind"] == "fixed"
    assert block["comparisons"]["s/d"]["final"] == "undecided"


def test_rounds_look_only_where_needed_and_resume_from_json():
    rng = np.random.default_rng(3)
    full = {"s/a": rng.normal(4, 1, 20), "s/b": rng.normal(0.3, 1.5, 20),
            "s/c": rng.normal(0, 0.3, 20)}
    design = dc.Design(first_round=4, round_size=4, max_seeds=12, method="t_union")
    assert dc.next_round({}, PAIRS, design) == {"a": 4, "ref": 4, "b": 4, "c": 4}
    looks: dc.Looks = {}
    seeds = dict.fromkeys(["a", "b", "c", "ref"], 0)
    while wanted := dc.next_round(looks, PAIRS, design):
        seeds.update(wanted)
        diffs = {k: full[k][:min(seeds[c], seeds[r])] for k, (c, r) in PAIRS.items()}
        again = dc.decide(diffs, looks, design)
        assert dc.decide(diffs, again, design) == again  # no new seeds, no new look
        looks = dc.looks_from_json(json.loads(json.dumps(dc.record(design, again))))
        assert looks == again
    # O'Brien-Fleming-like spending leaves almost nothing for 4 seeds (3 df): the first
    # look decides nothing; at 8, "a" is better and "c" equivalent; "b" runs to the budget.
    verdicts = {k: [(x.n, x.verdict) for x in v] for k, v in looks.items()}
    assert verdicts == {"s/a": [(4, "undecided"), (8, "better")],
                        "s/b": [(4, "undecided"), (8, "undecided"), (12, "undecided")],
                        "s/c": [(4, "undecided"), (8, "equivalent")]}
    assert seeds == {"a": 8, "b": 12, "c": 8, "ref": 12}  # more seeds only where needed
    assert dc.record(design, looks)["comparisons"]["s/b"]["final"] == "undecided"
    spent = [x.spent_total for x in looks["s/b"]]
    assert spent == sorted(spent) and spent[-1] <= ALPHA / 3 + 1e-12


def _run(design: dc.Design, full: dict, looks: dc.Looks) -> tuple[dc.Looks, dict]:
    """Rounds until next_round asks for nothing: (looks, seeds each config reached)."""
    seeds: dict[str, int] = {}
    while wanted := dc.next_round(looks, PAIRS, design):
        seeds.update(wanted)
        have = {c: max(seeds.get(c, 0), max((x.n for x in looks.get(k, ())), default=0))
                for k, pair in PAIRS.items() for c in pair}
        diffs = {k: full[k][:min(have[c], have[r])] for k, (c, r) in PAIRS.items()}
        looks = dc.decide(diffs, looks, design)
    return looks, seeds


def test_a_larger_budget_continues_only_with_error_left_to_spend():
    rng = np.random.default_rng(4)
    full = {"s/a": rng.normal(0.4, 1.5, 30), "s/b": rng.normal(0.5, 1.5, 30),
            "s/c": rng.normal(-0.3, 1.5, 30)}
    small = dc.Design(first_round=4, round_size=4, max_seeds=12, method="t_union")
    looks, _ = _run(small, full, {})
    assert all(v[-1].n == 12 and v[-1].verdict == "undecided" for v in looks.values())
    # the budget's last look spent every comparison's whole share: a rerun with 16 seeds
    # has nothing left to spend, so it asks for no seeds rather than train in vain
    assert all(v[-1].spent_total == pytest.approx(ALPHA / 3) for v in looks.values())
    assert dc.next_round(looks, PAIRS, dc.Design(first_round=4, round_size=4,
                                                 max_seeds=16, method="t_union")) == {}
    # with a horizon of 16 the first run keeps a reserve, and the rerun spends it
    reserve = dc.Design(first_round=4, round_size=4, max_seeds=12, horizon=16, method="t_union")
    looks, _ = _run(reserve, full, {})
    assert all(v[-1].spent_total < ALPHA / 3 for v in looks.values())
    larger = dc.Design(first_round=4, round_size=4, max_seeds=16, horizon=16, method="t_union")
    assert dc.next_round(looks, PAIRS, larger) == {"a": 16, "b": 16, "c": 16, "ref": 16}
    more, _ = _run(larger, full, looks)
    for name, history in more.items():
        assert history[:len(looks[name])] == looks[name]  # earlier looks kept as they were
        assert history[-1].n == 16 and history[-1].spent_total == pytest.approx(ALPHA / 3)
    with pytest.raises(ValueError, match="horizon"):
        dc.Design(first_round=5, max_seeds=12, horizon=10)


def test_decide_agrees_with_the_vectorised_simulation():
    rng = np.random.default_rng(5)
    design = dc.Design(first_round=3, round_size=3, max_seeds=15)
    data = normal(rng, 0.8, (40, 3, 15))
    codes, used = dc.simulate(data, design)
    for s in range(40):
        looks: dc.Looks = {}
        for n in design.look_sizes():
            looks = dc.decide({f"x/{k}": data[s, k, :n] for k in range(3)}, looks, design)
        got = [(dc.VERDICTS.index(looks[f"x/{k}"][-1].verdict), looks[f"x/{k}"][-1].n)
               for k in range(3)]
        assert got == list(zip(codes[s], used[s]))


def test_family_per_study_and_its_size():
    design = dc.Design.fixed(5, family="study", method="t_union")
    names = ["r/a", "r/b", "i/a", "i/b", "i/c"]
    assert dc.family_sizes(names, design) == {"r/a": 2, "r/b": 2, "i/a": 3, "i/b": 3, "i/c": 3}
    looks = dc.decide({k: _with(3.0, 1.0, 5) for k in names}, {}, design)
    assert looks["r/a"][-1].level == pytest.approx(ALPHA / 2)
    assert dc.record(design, looks)["family"]["size"] == {"r": 2, "i": 3}
    assert dc.family_sizes(names, dc.Design.fixed(5)) == dict.fromkeys(names, 5)
    with pytest.raises(ValueError, match="name no study"):
        dc.family_sizes(["a-vs-b"], design)


def test_misuse_is_refused_with_a_reason():
    design = dc.Design.fixed(5)
    looks = dc.decide({"s/a": _with(0.0, 1.0, 5), "s/b": _with(0.0, 1.0, 5)}, {}, design)
    with pytest.raises(ValueError, match="pass every comparison"):
        dc.decide({"s/a": _with(0.0, 1.0, 6)}, looks, design)
    sequential = dc.Design(first_round=5, max_seeds=9)
    early = dc.decide({"s/a": _with(0.0, 1.0, 5), "s/b": _with(0.0, 1.0, 5)}, {}, sequential)
    with pytest.raises(ValueError, match="keep the family"):  # a third joins later
        dc.decide({"s/a": _with(0.0, 1.0, 6), "s/b": _with(0.0, 1.0, 6),
                   "s/c": _with(0.0, 1.0, 6)}, early, sequential)
    with pytest.raises(ValueError, match="fewer than"):
        dc.decide({"s/a": _with(0.0, 1.0, 4), "s/b": _with(0.0, 1.0, 5)}, looks, design)
    with pytest.raises(ValueError, match="below the first round"):
        dc.Design(first_round=5, max_seeds=4)
    with pytest.raises(ValueError, match="spending"):
        dc.Design(spending="naive")
    assert dc.Design.from_json(json.loads(json.dumps(design.to_json()))) == design


def test_a_constant_difference_is_undecided_not_infinitely_significant():
    x = dc.look(np.full(5, 0.5), ALPHA, ALPHA, 1.0)
    assert x.verdict == "undecided" and "undefined" in x.note and x.interval is None


# --- simulations -----------------------------------------------------------------------

DESIGNS = {"calibrated": dc.Design(**MANY_LOOKS),
           "obrien_fleming": dc.Design(**MANY_LOOKS, method="t_union"),
           "pocock": dc.Design(**MANY_LOOKS, spending="pocock", method="t_union"),
           "fixed5": dc.Design.fixed(5)}


def directional_rate(draw, design: dc.Design, seed: int) -> float:
    data = draw(np.random.default_rng(seed), 0.0, (STUDIES, 1, design.max_seeds))
    codes, _ = dc.simulate(data, design, family_size=1)
    return float(np.isin(codes, (dc.BETTER, dc.WORSE)).mean())


@pytest.mark.parametrize("design", DESIGNS.values(), ids=DESIGNS.keys())
@pytest.mark.parametrize("draw", [normal, heavy], ids=["normal", "t3"])
def test_no_difference_is_rarely_called_better_or_worse_despite_ten_looks(draw, design):
    assert directional_rate(draw, design, seed=11) <= bound()


def test_naive_retesting_fails_the_same_check():
    """The check has teeth: a t-test at 5% after every round exceeds the bound."""
    design = dc.Design(**MANY_LOOKS)
    data = normal(np.random.default_rng(11), 0.0, (STUDIES, 1, design.max_seeds))
    rejected = np.zeros(STUDIES, dtype=bool)
    for n in design.look_sizes():
        x = data[:, 0, :n]
        rejected |= dc.verdict_codes(x.mean(-1), x.std(-1, ddof=1), n, ALPHA, 1.0) \
            == dc.BETTER
        rejected |= dc.verdict_codes(x.mean(-1), x.std(-1, ddof=1), n, ALPHA, 1.0) == dc.WORSE
    assert rejected.mean() > bound()


@pytest.mark.parametrize("sign", [1, -1])
@pytest.mark.parametrize("draw", [normal, heavy], ids=["normal", "t3"])
def test_a_difference_of_exactly_the_margin_is_rarely_called_equivalent(draw, sign):
    design = dc.Design(**MANY_LOOKS)
    data = draw(np.random.default_rng(12), sign * 1.0, (STUDIES, 1, design.max_seeds))
    codes, _ = dc.simulate(data, design, family_size=1)
    assert (codes == dc.EQUIVALENT).mean() <= bound()


def equivalence_shown(data: np.ndarray, design: dc.Design, naive: bool = False) -> float:
    """Rate of studies whose TOST interval lies inside (-m, m) at any look, whatever the
    difference interval says: the equivalence half of the design on its own, a superset
    of its "equivalent" verdicts (a shown direction takes precedence over it)."""
    shown = np.zeros(data.shape[0], dtype=bool)
    before = 0.0
    for n in design.look_sizes():
        total = dc.spent(design, ALPHA, n)
        level, before = (ALPHA if naive else total - before), total
        x = data[:, 0, :n]
        mean = x.mean(-1)
        _, half_eq = dc.intervals(mean, x.std(-1, ddof=1), n, level)
        shown |= (mean - half_eq > -design.margin) & (mean + half_eq < design.margin)
    return float(shown.mean())


@pytest.mark.parametrize("sign", [1, -1])
@pytest.mark.parametrize("draw", [normal, heavy], ids=["normal", "t3"])
def test_the_equivalence_test_alone_keeps_its_error_at_the_margin(draw, sign):
    # sd 0.5: equivalence is within reach, so the error rate is tested where it can happen
    design = dc.Design(**MANY_LOOKS)
    data = draw(np.random.default_rng(13), sign * 1.0, (STUDIES, 1, design.max_seeds), sd=0.5)
    assert equivalence_shown(data, design) <= bound()
    if draw is normal:  # teeth: a TOST at 5% after every round exceeds the bound
        assert equivalence_shown(data, design, naive=True) > bound()
    inside = draw(np.random.default_rng(14), sign * 0.5, (STUDIES, 1, design.max_seeds), sd=0.5)
    assert equivalence_shown(inside, design) > 0.2  # and it has power inside the margin


# The 14 comparisons of the report: three studies sharing one reference model ("ref" is
# regularization's baseline, initialization's lecun and schedules' constant), each
# configuration against it and the notebook's claims. True means in accuracy points.
MEANS = {"ref": 0.0, "l2": 0.0, "dropout": -3.0, "glorot": 0.0, "he": 1.0, "torch": 0.0,
         "step": 0.0, "exponential": -5.0, "cyclic": 0.5}
COMPARISONS = [("l2", "ref"), ("dropout", "ref"), ("glorot", "ref"), ("he", "ref"),
               ("torch", "ref"), ("glorot", "torch"), ("torch", "he"), ("glorot", "he"),
               ("step", "ref"), ("exponential", "ref"), ("cyclic", "ref"),
               ("cyclic", "step"), ("cyclic", "exponential"), ("step", "exponential")]


def family_error(draw, family_size: int | None, seed: int) -> float:
    """P(at least one wrong verdict among the 14): a direction against the truth, or
    "equivalent" where |true difference| >= m."""
    design = dc.Design(first_round=3, round_size=3, max_seeds=24, margin=1.0)
    rng = np.random.default_rng(seed)
    names = list(MEANS)
    # seed luck shared by all configurations (cancels in differences) + per-config noise
    scores = (draw(rng, 0.0, (STUDIES, 1, design.max_seeds), sd=2.0)
              + draw(rng, 0.0, (STUDIES, len(names), design.max_seeds), sd=1.5 / math.sqrt(2))
              + np.array([MEANS[n] for n in names])[None, :, None])
    index = {n: i for i, n in enumerate(names)}
    diffs = np.stack([scores[:, index[a]] - scores[:, index[b]] for a, b in COMPARISONS], 1)
    truth = np.array([MEANS[a] - MEANS[b] for a, b in COMPARISONS])
    assert (truth == 0).sum() >= 4 and (np.abs(truth) == 1).sum() >= 3  # nulls of both kinds
    codes, _ = dc.simulate(diffs, design, family_size=family_size)
    wrong = (((codes == dc.BETTER) & (truth <= 0)) | ((codes == dc.WORSE) & (truth >= 0))
             | ((codes == dc.EQUIVALENT) & (np.abs(truth) >= design.margin)))
    return float(wrong.any(axis=1).mean())


@pytest.mark.parametrize("draw", [normal, heavy], ids=["normal", "t3"])
def test_fourteen_comparisons_keep_the_family_wise_error(draw):
    assert family_error(draw, None, seed=21) <= bound()


def test_without_the_family_adjustment_the_family_wise_error_is_exceeded():
    assert family_error(normal, 1, seed=21) > bound()


def test_a_continued_design_keeps_the_earlier_runs_last_looks():
    """A run capped at 12 seeds looked at 12; a rerun with --max-seeds 16 plans its
    looks on from there (issue 18: the rerun continues, it does not re-plan the past)."""
    from jaxcnn.stats.decisions import Design

    five = {"first_round": 5, "round_size": 5}
    assert Design(max_seeds=12, **five).look_sizes() == [5, 10, 12]
    assert Design(max_seeds=16, caps=(12,), **five).look_sizes() == [5, 10, 12, 16]
    assert (Design(max_seeds=30, caps=(12, 16), **five).look_sizes()
            == [5, 10, 12, 16, 21, 26, 30])
    again = Design.from_json(Design(max_seeds=16, caps=(12,), **five).to_json())
    assert again.caps == (12,) and again.look_sizes() == [5, 10, 12, 16]

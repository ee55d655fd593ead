"""The test images read as a sample (issue 27, item 3): each look's interval includes the
images' part of the error, recomputed from the stored predictions; with no seed-to-seed
variance the interval covers at its nominal rate; the error control holds when both
sources vary; a comparison the test images alone keep open stops taking seeds."""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest
from scipy import stats as sps

from jaxcnn.stats import calibration as cal
from jaxcnn.stats import decisions as dc
from jaxcnn.stats import two_way
from jaxcnn.training import predictions
from jaxcnn.training.results import read_results
from tests.test_run import grayscale_tree, jaxcnn

STUDY_FILE = textwrap.dedent('''
    import flax.linen as nn
    import optax

    import jaxcnn as jc


    class Tiny(nn.Module):
        num_classes: int

        @nn.compact
        def __call__(self, x, train: bool = False):
            return nn.Dense(self.num_classes)(nn.relu(nn.Dense(16)(x.reshape(len(x), -1))))


    study = jc.Study("pairs", model=lambda data: Tiny(data.num_classes), reference="sgd",
                     variants={"sgd": jc.Variant(optimizer=optax.sgd(0.05)),
                               # barely trained: it errs on its own images, seed after seed
                               "slow": jc.Variant(optimizer=optax.sgd(1e-4))})
''')


def _recomputed(study_dir, config: str, reference: str) -> tuple[np.ndarray, float]:
    """(per-seed differences, image variance) of a comparison, from its stored files."""
    with np.load(predictions.path_of(study_dir, config)) as a, \
            np.load(predictions.path_of(study_dir, reference)) as b:
        assert a["seeds"].tolist() == b["seeds"].tolist()
        labels = a["test_labels"]
        x = 100.0 * ((a["test"] == labels).astype(float) - (b["test"] == labels))
    return x.mean(1), two_way.image_variance(x)


@pytest.mark.slow
def test_a_five_seed_run_records_both_components_and_its_interval_includes_the_images(
        tmp_path):
    """`jaxcnn run` with 5 seeds on a 300-image test tree: the predictions reproduce every
    test accuracy; the final look's image_se equals a recomputation from the stored
    predictions, and its interval is the two-way one (wider than the seeds' alone);
    `jaxcnn report --test-set fixed` gives the conditional reading."""
    (tmp_path / "pairs.py").write_text(STUDY_FILE)
    grayscale_tree(tmp_path / "tree", train=40, test=100)  # 3 classes x 100 test images
    flags = ["--data", "tree", "--seeds", "5", "--epochs", "1", "--batch-size", "16",
             "--no-progress", "--out", "out"]
    proc = jaxcnn(["run", "pairs.py:study", *flags], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    study_dir = tmp_path / "out" / "pairs"
    results = read_results(study_dir / "results.json")  # its decisions block resolved
    for config, record in results["configs"].items():
        with np.load(predictions.path_of(study_dir, config)) as f:
            assert f["test"].shape == (5, 300)
            right = (f["test"] == f["test_labels"]).sum(1)
        assert (100.0 * right / 300).tolist() == [s["test_accuracy"] for s in record["seeds"]]

    d, image_var = _recomputed(study_dir, "slow", "sgd")
    look = results["decisions"]["comparisons"]["pairs/slow vs sgd"]["looks"][-1]
    assert look["n"] == 5 and look["image_se"] == pytest.approx(math.sqrt(image_var), rel=1e-9)
    assert look["seed_se"] == pytest.approx(d.std(ddof=1) / math.sqrt(5), rel=1e-9)
    assert image_var > 0  # the two err on different images
    c_dir = look["critical"][0]
    sd, skew = dc.two_way(d.std(ddof=1), cal.skewness(d), 5, image_var)
    both = cal.interval(d.mean(), sd, skew, 5, c_dir)
    assert look["interval"] == pytest.approx(list(both), rel=1e-9)
    assert sd > d.std(ddof=1)  # the standard error grew by the images' part
    seeds_only = cal.interval(d.mean(), d.std(ddof=1), cal.skewness(d), 5, c_dir)
    assert results["decisions"]["design"]["test_set"] == "sample"

    proc = jaxcnn(["report", "--out", "out", "--test-set", "fixed", "--no-progress"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    fixed = read_results(study_dir / "results.json")["decisions"]
    look = fixed["comparisons"]["pairs/slow vs sgd"]["looks"][-1]
    assert fixed["design"]["test_set"] == "fixed"
    assert look["interval"] == pytest.approx(list(seeds_only), rel=1e-9)
    assert look["image_se"] == pytest.approx(math.sqrt(image_var), rel=1e-9)  # still recorded
    assert "fixed" in (tmp_path / "out" / "REPORT.md").read_text()


@pytest.mark.parametrize("critical", [1.645, 1.96])
def test_with_no_seed_variance_the_interval_covers_at_its_nominal_rate(critical):
    """Every seed makes the same predictions (no seed-to-seed variance): the interval is
    the images' alone, and over fresh test sets of 300 images drawn from one population
    it covers the population's difference at 2 Phi(c) - 1."""
    rng = np.random.default_rng(int(critical * 100))
    p_worse, p_better = 0.06, 0.10  # per image: B right and A wrong / A right and B wrong
    truth = 100.0 * (p_better - p_worse)
    sets = 4000
    covered = 0
    for _ in range(sets):
        per_image = rng.choice([-100.0, 0.0, 100.0], size=300,
                               p=[p_worse, 1 - p_worse - p_better, p_better])
        x = np.tile(per_image, (5, 1))  # 5 seeds, the same predictions
        seen = dc.calibrated_look(x.mean(1), (critical, critical), 1.0, 0.05,
                                  two_way.image_variance(x))
        covered += seen.interval[0] <= truth <= seen.interval[1]
    nominal = 2 * sps.norm.cdf(critical) - 1
    assert covered / sets == pytest.approx(nominal, abs=3.5 * math.sqrt(nominal * (1 - nominal)
                                                                        / sets))


@pytest.mark.parametrize("shape,delta,image_se", [("gamma+1.5", 0.0, 0.3),
                                                  ("normal", 0.0, 0.6),
                                                  ("outliers0.03+5", 0.3, 0.3)])
def test_the_family_wise_error_holds_when_seeds_and_images_both_vary(shape, delta, image_se):
    """Per-seed differences of the class (sd 1) plus a test-set error common to every seed
    of a comparison (normal, image_se in sd): the calibrated design with the two-way
    interval keeps its family-wise error within alpha (margin 0.3 sd)."""
    design = dc.Design(first_round=6, round_size=3, max_seeds=12, margin=0.3)
    rng = np.random.default_rng(7)
    families, family = 6000, 5
    x = delta + cal.draw(rng, shape, (families, family, 12))
    x += image_se * rng.standard_normal((families, family, 1))
    codes, _ = dc.simulate(x, design, family_size=family, image_var=image_se ** 2)
    bad = [c for c, is_bad in ((dc.BETTER, delta <= 0), (dc.WORSE, delta >= 0),
                               (dc.EQUIVALENT, abs(delta) >= design.margin)) if is_bad]
    error = float(np.any(np.isin(codes, bad), axis=1).mean())
    assert error <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / families)
    if delta != 0.0:
        return
    # read as fixed, the same data's test-set error is ignored, and the error exceeds alpha
    codes, _ = dc.simulate(x, design, family_size=family)
    assert np.any(np.isin(codes, bad), axis=1).mean() > 0.05 + 2 * math.sqrt(0.05 * 0.95
                                                                            / families)


def test_a_comparison_the_test_images_keep_open_stops_and_names_its_smallest_margin():
    """An image s.e. of 0.5 with a margin of 1: equivalence would need c_eq * 0.5 < 1, which
    the budget's critical values do not allow, and the mean is too small for a direction:
    the comparison stops at its first look (no seeds asked for) and records the smallest
    margin these test images allow. Read as fixed, it goes on."""
    design = dc.Design(first_round=6, round_size=3, max_seeds=12)
    d = np.array([0.1, -0.2, 0.15, 0.05, -0.1, 0.0])
    looks = dc.decide({"s/a vs b": d}, {}, design, {"s/a vs b": 0.25})
    last = looks["s/a vs b"][-1]
    c_dir, c_eq = design.critical(last.share, 12)
    assert last.verdict == "undecided" and last.test_limit == pytest.approx(c_eq * 0.5)
    assert last.test_limit > design.margin
    assert dc.is_final(looks["s/a vs b"], design)
    assert dc.next_round(looks, {"s/a vs b": ("a", "b")}, design) == {}
    fixed = dc.Design(first_round=6, round_size=3, max_seeds=12, test_set="fixed")
    looks = dc.decide({"s/a vs b": d}, {}, fixed, {"s/a vs b": 0.25})
    assert looks["s/a vs b"][-1].test_limit is None
    assert dc.next_round(looks, {"s/a vs b": ("a", "b")}, fixed) == {"a": 9, "b": 9}


# --- the two-way decomposition on layouts whose answer is known -------------------------

def test_identical_seeds_leave_only_the_image_component():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 2000)
    a_row = np.where(rng.random(2000) < 0.7, labels, (labels + 1) % 3)
    b_row = np.where(rng.random(2000) < 0.6, labels, (labels + 1) % 3)
    x = np.tile(100.0 * ((a_row == labels).astype(float) - (b_row == labels)), (5, 1))
    assert x.mean(1).std() == 0.0  # no seed-to-seed variance
    # the usual standard error of a mean over images (ddof 1)
    assert math.sqrt(two_way.image_variance(x)) == pytest.approx(
        x[0].std(ddof=1) / np.sqrt(2000), rel=1e-9)


def test_independent_seed_noise_gives_no_image_component_on_average():
    rng = np.random.default_rng(1)
    image_se = [math.sqrt(two_way.image_variance(
        100.0 * (rng.integers(0, 2, (8, 4000)) - rng.integers(0, 2, (8, 4000)))))
        for _ in range(20)]
    x = 100.0 * (rng.integers(0, 2, (8, 4000)) - rng.integers(0, 2, (8, 4000)))
    seed_se = x.mean(1).std(ddof=1) / math.sqrt(8)
    assert np.mean(image_se) < 0.5 * seed_se  # images carry no effect of their own here

"""Every seed draws its own train/validation split (issue 27, item 4): shared by every
configuration at that seed (pairing stays), stratified and disjoint, the same on a rerun;
``--split-seed N`` gives every seed one split; an --out made before the option existed
(one split, split seed 0) is not continued with per-seed splits."""

from __future__ import annotations

import numpy as np
import optax
import pytest

import jaxcnn as jc
from jaxcnn.data import prepare_data
from jaxcnn.data.synthetic import make_synthetic
from jaxcnn.experiment import setting_differences
from jaxcnn.training import predictions
from tests.test_predictions import Tiny
from tests.test_run import grayscale_tree


def test_each_seed_draws_its_own_stratified_disjoint_split():
    ds = make_synthetic(600, 50)
    per_seed = prepare_data(ds, val_size=60, train_examples=200, split_seed=None)
    assert per_seed.per_seed and len(per_seed.train) == 200 and len(per_seed.val) == 60
    splits = {seed: per_seed.rows(seed) for seed in range(3)}
    for train_rows, val_rows in splits.values():
        assert len(train_rows) == 200 and len(val_rows) == 60
        assert not set(train_rows.tolist()) & set(val_rows.tolist())
        assert np.bincount(ds.train_labels[val_rows], minlength=10).tolist() == [6] * 10
    assert not np.array_equal(splits[0][1], splits[1][1])  # each seed its own
    assert not np.array_equal(splits[0][0], splits[1][0])  # and its own training subset
    np.testing.assert_array_equal(per_seed.rows(1)[1], splits[1][1])  # drawn again: same
    fixed = prepare_data(ds, val_size=60, train_examples=200, split_seed=0)
    assert not fixed.per_seed
    for seed in range(3):  # --split-seed 0: the same split for every seed, as before
        np.testing.assert_array_equal(fixed.rows(seed)[1], fixed.val_indices)
        np.testing.assert_array_equal(ds.train_images[fixed.rows(seed)[0]], fixed.train.images)


STUDY = jc.Study("splits", model=lambda data: Tiny(data.num_classes), reference="sgd",
                 variants={"sgd": jc.Variant(optimizer=optax.sgd(0.05)),
                           "adam": jc.Variant(optimizer=optax.adam(1e-3))})


def _held_out(out, split_seed=None) -> dict[str, np.ndarray]:
    flags = {} if split_seed is None else {"split_seed": split_seed}
    results = jc.run(STUDY, data=str(out.parent / "tree"), seeds=3, epochs=1, batch_size=16,
                     val_size=30, out=str(out), progress=False, **flags)["splits"]
    held = {}
    for config, record in results["configs"].items():
        with np.load(predictions.path_of(out / "splits", config)) as f:
            held[config] = f["val_indices"]
            for i, seed in enumerate(record["seeds"]):  # each seed's own images reproduce it
                right = (f["val"][i] == f["val_labels"][i]).sum()
                assert 100.0 * right / f["val"].shape[1] == seed["history"]["val_accuracy"][-1]
    return held


@pytest.mark.slow
def test_configurations_at_a_seed_share_its_split_and_split_seed_fixes_one(tmp_path):
    grayscale_tree(tmp_path / "tree", train=40, test=10)
    held = _held_out(tmp_path / "own")
    np.testing.assert_array_equal(held["sgd"], held["adam"])  # paired: one split per seed
    assert len({row.tobytes() for row in held["sgd"]}) == 3  # and each seed its own
    fixed = _held_out(tmp_path / "fixed", split_seed=0)
    assert len({row.tobytes() for row in fixed["sgd"]}) == 1
    assert "its own train/validation split" in jc.report(tmp_path / "own").read_text()


def test_results_from_before_per_seed_splits_are_not_continued_with_them():
    old = {"epochs": 2}  # recorded before --split-seed existed: one split, split seed 0
    assert setting_differences(old, {"epochs": 2, "split_seed": None}) == (
        "--split-seed 0", "--split-seed (default)")
    assert setting_differences(old, {"epochs": 2, "split_seed": 0}) is None


@pytest.mark.parametrize("split_seed,words", [(None, "its own train/validation split"),
                                              (3, "--split-seed 3")])
def test_the_report_says_which_sources_a_verdict_covers(split_seed, words):
    from jaxcnn.reporting.report import _decisions_line
    from jaxcnn.stats.decisions import Design, record

    line = _decisions_line(record(Design.fixed(5), {}), split_seed)
    assert words in line and "the test images, read as a sample" in line

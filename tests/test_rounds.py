"""Seeds until decided: the round planning (pure, on hand-made results) and --seeds auto
end to end on tiny synthetic data (rounds trained only where a comparison is open, a
rerun with a larger budget that retrains nothing, a run stopped between rounds and
continued equal to one that was not)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from jaxcnn.cli import study_main
from jaxcnn.stats import rounds
from jaxcnn.stats.decisions import Design
from jaxcnn.studies import REGULARIZATION
from jaxcnn.training.results import read_results
from tests.conftest import TINY_FLAGS


def _seeds(scores: list[float]) -> list[dict]:
    return [{"seed": i, "test_accuracy": s, "diverged_at_epoch": None}
            for i, s in enumerate(scores)]


def _results(**configs: list[float]) -> dict[str, dict]:
    """One regularization study whose configurations have these per-seed accuracies."""
    return {"regularization": {"metadata": {"reference": "baseline"},
                               "configs": {n: {"seeds": _seeds(v)} for n, v in configs.items()}}}


COMPS = rounds.comparisons([REGULARIZATION], {"regularization": "baseline"},
                           {"regularization": ["baseline", "l2", "dropout"]})


def test_comparisons_are_the_reference_pairs_and_claims_once():
    assert COMPS == {"regularization/l2 vs baseline": ("regularization", "l2", "baseline"),
                     "regularization/dropout vs baseline": ("regularization", "dropout",
                                                            "baseline")}


def test_first_round_for_everyone_then_only_the_open_comparisons():
    design = Design(first_round=4, round_size=2, max_seeds=8)
    keys = ["regularization/baseline", "regularization/l2", "regularization/dropout"]
    assert rounds.seed_counts(design, {}, COMPS, {}, keys) == dict.fromkeys(keys, 4)
    # l2 is clearly worse at 4 seeds (decided); dropout is noise (open).
    results = _results(baseline=[60.0, 61.0, 62.0, 60.0], l2=[50.0, 51.5, 51.5, 49.8],
                       dropout=[61.0, 59.0, 64.0, 59.0])
    looks = rounds.decide_round(results, COMPS, design, {})
    verdicts = {n: h[-1].verdict for n, h in looks.items()}
    assert verdicts == {"regularization/l2 vs baseline": "worse",
                        "regularization/dropout vs baseline": "undecided"}
    counts = rounds.seed_counts(design, looks, COMPS, rounds.seeds_of(results), keys)
    assert counts == {"regularization/baseline": 6, "regularization/l2": 4,
                      "regularization/dropout": 6}
    # every study carries the same record, with the family stated
    block = results["regularization"]["decisions"]
    assert block["family"]["size"] == {"all": 2}
    assert block["comparisons"]["regularization/l2 vs baseline"]["final"] == "worse"


def test_looks_wait_for_a_planned_size():
    design = Design(first_round=3, round_size=3, max_seeds=9)
    results = _results(baseline=[60.0, 61, 62, 60, 61], l2=[60.5, 61, 62, 61, 60])
    d = rounds.differences(results, {"regularization/l2 vs baseline": COMPS[
        "regularization/l2 vs baseline"]}, design)
    assert d["regularization/l2 vs baseline"].size == 3  # 5 pairs, planned looks 3, 6, 9
    fixed = rounds.differences(results, {"c": COMPS["regularization/l2 vs baseline"]},
                               Design.fixed(5))
    np.testing.assert_allclose(fixed["c"], [0.5, 0.0, 0.0, 1.0, -1.0])


def test_a_rerun_may_raise_the_budget_but_not_change_the_design():
    old = Design(first_round=4, round_size=4, max_seeds=8)
    grown = rounds.continued(old, Design(first_round=4, round_size=4, max_seeds=16))
    assert grown.max_seeds == 16 and grown.information_max == 16
    with pytest.raises(ValueError, match="--margin 1.0"):
        rounds.continued(old, Design(first_round=4, round_size=4, max_seeds=8, margin=2.0))


def test_report_block_decides_fixed_runs_over_one_family():
    results = _results(baseline=[60.0, 61.0, 62.0, 60.0], l2=[50.0, 51.5, 51.5, 49.8],
                       dropout=[61.0, 59.0, 64.0, 59.0])
    block = rounds.report_block(results, [REGULARIZATION])
    assert block["design"]["kind"] == "fixed" and block["design"]["max_seeds"] == 4
    rows = {name.split(" vs ")[0].split("/")[1]: e["final"] or e["looks"][-1]["verdict"]
            for name, e in block["comparisons"].items()}
    assert rows == {"l2": "worse", "dropout": "undecided"}
    rounds.annotate(results, block)
    results["regularization"]["statistics"] = {"comparisons": [
        {"config": "l2", "reference": "baseline"}]}
    rounds.annotate(results, block)
    decision = results["regularization"]["statistics"]["comparisons"][0]["decision"]
    assert decision["verdict"] == "worse" and decision["n"] == 4 and decision["family_size"] == 2


# --- end to end -------------------------------------------------------------------------

AUTO = [*TINY_FLAGS, "--configs", "baseline", "l2", "--seeds", "auto", "--first-round", "2",
        "--round-size", "2"]


def _run(out: Path, *flags: str) -> dict:
    assert study_main(REGULARIZATION, [*AUTO, *flags, "--out", str(out)]) == 0
    return read_results(out / "regularization" / "results.json")  # decisions resolved


def _numbers(results: dict) -> dict:
    return {"configs": {n: [(s["seed"], s["test_accuracy"], s["test_loss"]) for s in c["seeds"]]
                        for n, c in results["configs"].items()},
            "decisions": results["decisions"]["comparisons"]}


# near chance, l2 and the baseline are equivalent within +-1 at 10 seeds: a narrower margin
# keeps the comparison open
NARROW = ("--margin", "0.5")


@pytest.mark.slow
def test_a_larger_max_seeds_continues_what_the_smaller_budget_left_open(tmp_path: Path):
    """Issue 27's check as written, on tiny data: --seeds auto --max-seeds 10, then
    --max-seeds 20 on the same --out, trains more seeds for the comparison left open at 10
    and records its new looks; the earlier looks stay as they were, and the seeds equal
    one run of 20."""
    small = _run(tmp_path / "split", "--max-seeds", "10", *NARROW)
    looks = small["decisions"]["comparisons"]["regularization/l2 vs baseline"]["looks"]
    assert [look["n"] for look in looks] == [2, 4, 6, 8, 10]
    assert looks[-1]["verdict"] == "undecided"
    assert looks[-1]["continuation"][0] == 20  # the probability a rerun to 20 decides it
    grown = _run(tmp_path / "split", "--max-seeds", "20", *NARROW)
    again = grown["decisions"]["comparisons"]["regularization/l2 vs baseline"]["looks"]
    assert [look["n"] for look in again][:6] == [2, 4, 6, 8, 10, 12]
    assert again[:5] == [{**look} for look in looks]
    assert grown["decisions"]["design"]["caps"] == [10]
    trained = grown["metadata"]["members_trained_this_invocation"]
    assert trained == sum(len(c["seeds"]) - 10 for c in grown["configs"].values()) > 0
    whole = _run(tmp_path / "whole", "--max-seeds", "20", *NARROW)
    assert _numbers(grown)["configs"] == _numbers(whole)["configs"]


def test_a_larger_budget_continues_from_the_recorded_cap_and_a_smaller_is_refused():
    from jaxcnn.stats import rounds
    from jaxcnn.stats.decisions import Design

    def design(seeds):
        return Design(first_round=5, round_size=5, max_seeds=seeds)

    grown = rounds.continued(design(12), design(16))
    assert grown.caps == (12,) and rounds.planned_size(grown, 12) == 12
    assert rounds.continued(grown, design(16)).caps == (12,)
    with pytest.raises(ValueError, match="may raise it, not lower it"):
        rounds.continued(design(16), design(12))

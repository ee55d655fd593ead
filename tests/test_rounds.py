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


@pytest.mark.slow
def test_auto_stopped_between_rounds_and_continued_equals_one_run(tmp_path: Path):
    whole = _run(tmp_path / "whole", "--max-seeds", "4")
    looks = whole["decisions"]["comparisons"]["regularization/l2 vs baseline"]["looks"]
    assert [look["n"] for look in looks][0] == 2  # the first round, then more if open
    # The same design stopped after its first round (a budget of 2, the horizon kept at 4),
    # then continued with the budget of the whole run.
    _run(tmp_path / "split", "--max-seeds", "2", "--horizon", "4")
    split = _run(tmp_path / "split", "--max-seeds", "4", "--horizon", "4")
    assert _numbers(split) == _numbers(whole)
    trained = split["metadata"]["members_trained_this_invocation"]
    grown = sum(len(c["seeds"]) - 2 for c in split["configs"].values())
    assert trained == grown  # only the seeds beyond the first round were trained again
    # A larger budget after the error is spent trains nothing and changes nothing.
    again = _run(tmp_path / "whole", "--max-seeds", "6")
    assert again["metadata"]["members_trained_this_invocation"] == 0
    assert _numbers(again)["configs"] == _numbers(whole)["configs"]


def test_a_larger_budget_continues_from_the_recorded_cap_and_a_smaller_is_refused():
    from jaxcnn.stats import rounds
    from jaxcnn.stats.decisions import Design

    grown = rounds.continued(Design(max_seeds=12), Design(max_seeds=16))
    assert grown.caps == (12,) and rounds.planned_size(grown, 12) == 12
    assert rounds.continued(grown, Design(max_seeds=16)).caps == (12,)
    with pytest.raises(ValueError, match="may raise it, not lower it"):
        rounds.continued(Design(max_seeds=16), Design(max_seeds=12))

"""The planner, on plain dicts and stand-in configurations: no JAX, no training."""

from __future__ import annotations

import dataclasses

import pytest

from jaxcnn.errors import ResumeError
from jaxcnn.training.plan import plan_round, round_line, same_model_counts, same_models


@dataclasses.dataclass(frozen=True)
class Config:
    """A stand-in for ``configs.Configuration``: the same ``model`` is the same identity."""

    model: str

    def identity(self) -> str:
        return self.model

    def fingerprint(self) -> str:
        return f"fp-{self.model}"


def held(name: str, model: str, seeds: int) -> dict:
    return {name: {"identity": f"fp-{model}", "seeds": [{"seed": s} for s in range(seeds)]}}


CONFIGS = {"regularization": {"baseline": Config("base"), "l2": Config("l2")},
           "initialization": {"lecun": Config("base"), "he": Config("he")}}


def results_with(**configs: dict) -> dict:
    return {study: {"configs": configs.get(study, {})} for study in CONFIGS}


def test_a_model_in_two_studies_is_planned_once_under_its_first_entry():
    counts = dict.fromkeys(["regularization/baseline", "regularization/l2",
                            "initialization/lecun", "initialization/he"], 3)
    plan = plan_round(CONFIGS, results_with(), counts)
    assert list(plan.wants) == ["regularization/baseline", "regularization/l2",
                                "initialization/he"]
    assert [w.entry for w in plan.wants["regularization/baseline"]] == [
        "regularization/baseline", "initialization/lecun"]
    assert plan.members() == [(c, s) for c in plan.wants for s in range(3)]
    assert plan.finished == []


def test_a_later_round_trains_only_the_seeds_every_entry_lacks():
    """baseline holds 5 seeds, its twin lecun 3: seeds 3-4 are trained for both (the
    planner keeps only what every entry of the model holds); l2, finished at 5, is
    skipped; he goes from 0 to 5."""
    counts = dict.fromkeys(["regularization/baseline", "regularization/l2",
                            "initialization/lecun", "initialization/he"], 5)
    results = results_with(regularization={**held("baseline", "base", 5), **held("l2", "l2", 5)},
                           initialization=held("lecun", "base", 3))
    plan = plan_round(CONFIGS, results, counts)
    assert plan.finished == ["regularization/baseline", "regularization/l2"]
    assert plan.missing_seeds("initialization/lecun") == [3, 4]
    assert plan.missing_seeds("initialization/lecun", done=[3]) == [4]
    assert plan.missing_seeds("initialization/he") == [0, 1, 2, 3, 4]
    assert round_line(plan, counts) == ("initialization/lecun to 5 seeds; "
                                        "initialization/he to 5 seeds")


def test_another_model_under_an_entry_is_refused():
    results = results_with(regularization=held("l2", "something-else", 2))
    with pytest.raises(ResumeError, match="regularization/l2 in --out is another model"):
        plan_round(CONFIGS, results, dict.fromkeys(
            ["regularization/baseline", "regularization/l2", "initialization/lecun",
             "initialization/he"], 2))


def test_entries_of_one_model_get_the_same_seed_count():
    siblings = same_models(CONFIGS)
    assert siblings["regularization/baseline"] == ["initialization/lecun"]
    assert siblings["initialization/he"] == []
    counts = same_model_counts({"regularization/baseline": 5, "initialization/lecun": 12,
                                "initialization/he": 5}, siblings)
    assert counts == {"regularization/baseline": 12, "initialization/lecun": 12,
                      "initialization/he": 5}

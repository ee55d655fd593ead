"""A study names the metric its verdicts compare (issue 26, item 1): test accuracy by
default, test loss (lower is better), or a function of logits and labels computed in the
evaluation program."""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np
import optax
import pytest
from PIL import Image

import jaxcnn as jc
from jaxcnn.stats import rounds
from jaxcnn.stats.decisions import Design
from tests.test_run import grayscale_tree


class Tiny(nn.Module):
    num_classes: int

    @nn.compact
    def __call__(self, x, train: bool = False):
        return nn.Dense(self.num_classes)(nn.relu(nn.Dense(16)(x.reshape(len(x), -1))))


def top2(logits, labels):
    """Per image: 100 if the label is among the two largest logits."""
    return (jax.lax.top_k(logits, 2)[1] == labels[:, None]).any(-1) * 100.0


def test_an_own_metric_is_computed_per_seed_and_reproduced_from_the_saved_model(tmp_path):
    grayscale_tree(tmp_path / "tree", train=20, test=8)
    study = jc.Study("top", model=lambda data: Tiny(data.num_classes),
                     metric=jc.Metric("top2_accuracy", top2, unit="points"),
                     variants={"a": jc.Variant(optimizer=jc.Optimizer(optax.adam,
                                                                      learning_rate=3e-3)),
                               "b": jc.Variant(optimizer=optax.sgd(0.01))})
    results = jc.run(study, data=str(tmp_path / "tree"), seeds=2, epochs=1, batch_size=16,
                     out=str(tmp_path / "out"), progress=False)["top"]
    assert results["metadata"]["metric"] == {"name": "top2_accuracy", "key": "test_metric",
                                             "higher_is_better": True, "unit": "points",
                                             "margin": None}
    assert results["statistics"]["metric"] == "top2_accuracy"
    paths = sorted((tmp_path / "tree" / "test").rglob("*.png"))
    images = np.stack([np.asarray(Image.open(p))[..., None] for p in paths])
    labels = np.array(["abc".index(p.parent.name) for p in paths])
    model = jc.load(tmp_path / "out", "top", "b")
    for seed in results["configs"]["b"]["seeds"]:
        logits = model.logits(images, seed["seed"])
        expected = np.asarray(top2(logits, labels)).mean()
        assert seed["test_metric"] == pytest.approx(expected, abs=1e-4)
        assert seed["test_metric"] >= seed["test_accuracy"]  # top-2 contains top-1
    comparison = results["statistics"]["comparisons"][0]
    scores = {name: [s["test_metric"] for s in results["configs"][name]["seeds"]]
              for name in ("a", "b")}
    assert comparison["mean_difference"] == pytest.approx(
        np.mean(scores["b"]) - np.mean(scores["a"]))


def results_with_losses(config_losses, reference_losses, metric):
    def seeds(losses):
        return [{"seed": i, "test_loss": v, "test_accuracy": 50.0, "diverged_epoch": None}
                for i, v in enumerate(losses)]

    return {"s": {"metadata": {"metric": metric},
                  "configs": {"x": {"seeds": seeds(config_losses)},
                              "ref": {"seeds": seeds(reference_losses)}},
                  "statistics": {"comparisons": [{"config": "x", "reference": "ref"}]}}}


def test_a_lower_loss_is_better_and_its_numbers_stay_the_losses():
    metric = jc.Metric("test_loss", margin=0.05).record()
    assert metric == {"name": "test_loss", "key": "test_loss", "higher_is_better": False,
                      "unit": "nats", "margin": 0.05}
    lower = [1.0 - 0.3 - 0.001 * i for i in range(10)]
    results = results_with_losses(lower, [1.0] * 10, metric)
    comps = {"s/x vs ref": ("s", "x", "ref")}
    design = Design.fixed(10)  # the run's margin: 1 accuracy point; the loss's own is 0.05
    d = rounds.differences(results, comps, design)["s/x vs ref"]
    assert np.all(d > 0)  # reference minus configuration: positive is better
    looks = rounds.decide_round(results, comps, design, {})
    assert looks["s/x vs ref"][-1].verdict == "better"
    rounds.annotate(results, results["s"]["decisions"])
    decision = results["s"]["statistics"]["comparisons"][0]["decision"]
    assert decision["mean"] == pytest.approx(np.mean(lower) - 1.0)  # the losses' own sign
    assert decision["interval"][0] < decision["mean"] < decision["interval"][1] < 0
    assert (decision["margin"], decision["unit"]) == (0.05, "nats")
    # Equivalence is judged at the loss's own margin: 0.001 nats either way.
    close = results_with_losses([1.0 + 0.001 * (-1) ** i for i in range(10)], [1.0] * 10, metric)
    assert rounds.decide_round(close, comps, design, {})["s/x vs ref"][-1].verdict == \
        "equivalent"
    apart = results_with_losses([1.0 + 0.1 * (-1) ** i for i in range(10)], [1.0] * 10, metric)
    assert rounds.decide_round(apart, comps, design, {})["s/x vs ref"][-1].verdict != \
        "equivalent"
    # The same data read as accuracy would be a different study: lower would be worse.
    higher = results_with_losses(lower, [1.0] * 10, {**metric, "higher_is_better": True})
    assert rounds.decide_round(higher, comps, design, {})["s/x vs ref"][-1].verdict == "worse"


def test_bad_metrics_are_one_line_errors():
    with pytest.raises(ValueError, match="is built in"):
        jc.Metric("test_accuracy", top2)
    with pytest.raises(ValueError, match="give its per_example"):
        jc.Metric("top2")
    with pytest.raises(ValueError, match="letters, digits"):
        jc.Metric("top 2", top2, unit="points")
    with pytest.raises(ValueError, match="metric must be"):
        jc.Study("s", variants={"a": jc.Variant()}, metric=3)
    with pytest.raises(ValueError, match="give margin= in its own units"):
        jc.Metric("brier", top2, higher_is_better=False)  # unit "": no margin to borrow
    assert jc.Metric("test_loss").margin == 0.02  # nats, not the run's 1 point
    from jaxcnn.metric import check_per_example

    with pytest.raises(ValueError, match=r"must return one value per image, shape \(8,\)"):
        check_per_example(jc.Metric("total", lambda logits, labels: logits.sum(), unit="points"),
                          3)
    check_per_example(jc.Metric("top2", top2, unit="points"), 3)
    top2_study = jc.Study("s", variants={"a": jc.Variant()}, metric=top2)
    assert (top2_study.metric.name, top2_study.metric.unit) == ("top2", "points")
    assert jc.Study("s", variants={"a": jc.Variant()}).metric.key == "test_accuracy"


def test_the_report_names_a_studys_own_metric_and_margin():
    from jaxcnn.reporting import report

    metric = jc.Metric("test_loss").record()
    results = results_with_losses([0.9] * 5, [1.0] * 5, metric)
    from jaxcnn.stats import decisions

    results["s"]["decisions"] = decisions.record(Design.fixed(5), {})
    lines = report.decisions_lines({"s": {**results["s"], "decisions": None}})
    assert lines == []  # no decisions, nothing to say
    line = next(x for x in report.decisions_lines(results) if "compares" in x)
    assert line == "- s compares test loss (lower is better): equivalent means within ±0.02 nats."
    verdicts = [{"study": "s", "config": "x", "verdict": "equivalent", "difference": 0.01,
                 "interval": [0, 0.02], "equivalence_interval": [-0.01, 0.015], "n": 5,
                 "seeds_needed": None, "unit": "nats"}]
    cost = {"seeds": [5], "epochs": [1], "models": 2, "members": 10, "wall_seconds": 3.0,
            "members_timed": 10, "compile_seconds": 1.0, "compile_cache": None}
    assert "within its study's margin" in report.answer_paragraph(verdicts, cost, 1.0)

"""Seeds until decided: the comparisons of a run, their paired differences, how many
seeds each configuration needs next, and the verdicts after each round.

Pure functions over results dicts (numpy only, no JAX): ``pipeline.py`` calls them
between rounds of training. One round is:

1. :func:`seed_counts` - every configuration's seed count for this round: at least
   the design's first round, more where :func:`decisions.next_round` says an open
   comparison needs them, never fewer than it already has;
2. training the seeds still missing (``pipeline.py``, ``engine.py``);
3. :func:`decide_round` - the per-seed paired differences of every comparison
   (:func:`differences`) and the test images' part of their error, from the stored
   predictions (:func:`image_variances`), one more look where there are new seeds
   (:func:`decisions.decide`), recorded into every study's ``decisions`` block.

A fixed ``--seeds N`` is the same loop with the one-look design: one round.

Looks are taken only at the design's planned sizes (first round, + round size,
..., max seeds): a configuration shared by several comparisons may get more seeds
than one of them asked for, and those extra seeds wait for that comparison's next
planned look, so when a comparison looks never depends on another one's data.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from jaxcnn.stats import decisions, paired, two_way
from jaxcnn.stats.decisions import Design, Looks

Comparison = tuple[str, str, str]  # (study, configuration, reference)
# (study, configuration) -> (true classes (N,), {seed: predicted classes (N,)}), or None
# where no predictions are stored (``training/predictions.py`` reads them)
ReadPredictions = Callable[[str, str], "tuple[np.ndarray, Mapping[int, np.ndarray]] | None"]


def comparison_name(study: str, config: str, reference: str) -> str:
    """The name a comparison has in the decisions block: "study/config vs reference"."""
    return f"{study}/{config} vs {reference}"


def comparisons(studies: Sequence, references: Mapping[str, str],
                names: Mapping[str, Sequence[str]], all_pairs: bool = False
                ) -> dict[str, Comparison]:
    """Every comparison of the run, in report order: name -> (study, config, reference).

    studies: the Study objects; references: study -> its reference in this run;
    names: study -> its configuration names in this run.
    """
    out = {}
    for study in studies:
        claims = [(c.better, c.worse) for c in study.claims]
        for config, reference in paired.comparison_pairs(list(names[study.name]),
                                                        references[study.name], claims,
                                                        all_pairs):
            out[comparison_name(study.name, config, reference)] = (study.name, config,
                                                                   reference)
    return out


def seeds_of(results: Mapping[str, dict]) -> dict[str, int]:
    """"study/config" -> how many seeds results hold for it."""
    return {f"{study}/{name}": len(record["seeds"])
            for study, current in results.items()
            for name, record in current["configs"].items()}


def seed_counts(design: Design | None, looks: Looks, comps: Mapping[str, Comparison],
                have: Mapping[str, int], keys: Sequence[str], single: int = 1
                ) -> dict[str, int]:
    """"study/config" -> seeds it should have after this round, for every key in ``keys``.

    The first round for everyone, the next planned look for the configurations of
    open comparisons (``decisions.next_round``), and what each already has; without a
    design (a single seed), ``single`` seeds each.
    """
    if design is None:
        return {key: max(have.get(key, 0), single) for key in keys}
    pairs = {name: (f"{s}/{c}", f"{s}/{r}") for name, (s, c, r) in comps.items()}
    wanted = decisions.next_round(looks, pairs, design)
    return {key: max(have.get(key, 0), wanted.get(key, 0), design.first_round)
            for key in keys}


def planned_size(design: Design, n: int) -> int:
    """The largest planned look size at most ``n`` (0 below the first round); a fixed
    design looks once at all its pairs (fewer than planned where seeds diverged)."""
    if design.kind == "fixed":
        return n if n >= 2 else 0
    return max((s for s in design.look_sizes() if s <= n), default=0)


def differences(results: Mapping[str, dict], comps: Mapping[str, Comparison],
                design: Design) -> dict[str, np.ndarray]:
    """comparison -> (n,) paired differences in the study's metric, as the decisions see
    them (config minus reference, times ``paired.metric_scale``: positive is better, the
    run's margin is the metric's) on the seeds both have (a diverged seed counted at
    chance, ``paired.diverged_score``), in seed order, cut to a planned look size. A
    comparison with fewer seeds than the first round is left out."""
    out = {}
    for name, comp in comps.items():
        seeds = _paired_seeds(results, comp, design)
        if seeds:
            a, b, scale, used = seeds
            out[name] = np.array([scale * (a[s] - b[s]) for s in used], dtype=float)
    return out


def _paired_seeds(results: Mapping[str, dict], comp: Comparison, design: Design
                  ) -> tuple[dict, dict, float, list[int]] | None:
    """(config's scores, reference's scores, scale, the seeds a look uses) of one
    comparison, as :func:`differences` describes; None where it has no look yet."""
    study, config, reference = comp
    configs = results[study]["configs"]
    if config not in configs or reference not in configs:
        return None
    metric, chance = paired.metric_of(results[study]), paired.diverged_score(results[study])
    a = paired.kept_scores(configs[config]["seeds"], metric["key"], chance)
    b = paired.kept_scores(configs[reference]["seeds"], metric["key"], chance)
    common = sorted(set(a) & set(b))
    n = planned_size(design, len(common))
    return (a, b, paired.metric_scale(metric, design.margin), common[:n]) if n else None


def image_variances(results: Mapping[str, dict], comps: Mapping[str, Comparison],
                    design: Design, read: ReadPredictions | None) -> dict[str, float]:
    """comparison -> the test images' part of the variance of its mean difference
    (:mod:`two_way`, in the decisions' units) at the seeds :func:`differences` uses,
    from the stored predictions (a diverged seed counted at chance on every image).
    Left out where the metric is not test accuracy, a seed's predictions are missing,
    or they do not reproduce the recorded scores."""
    out: dict[str, float] = {}
    for name, comp in comps.items():
        seeds = _paired_seeds(results, comp, design) if read else None
        current = results[comp[0]]
        if seeds is None or paired.metric_of(current)["key"] != "test_accuracy":
            continue
        a, b, scale, used = seeds
        rows = [_right(current, config, read(comp[0], config), used)
                for config in comp[1:]]
        if any(r is None for r in rows):
            continue
        x = 100.0 * scale * (rows[0] - rows[1])
        if np.allclose(x.mean(1), scale * np.array([a[s] - b[s] for s in used]), atol=1e-9):
            out[name] = two_way.image_variance(x)
    return out


def _right(results: dict, config: str, stored, seeds: Sequence[int]) -> np.ndarray | None:
    """(seeds, N) 1.0 where a seed classified a test image right (a diverged seed: the
    chance of a uniform guess); None where a seed has no stored predictions."""
    if stored is None:
        return None
    labels, predicted = stored
    diverged = {r["seed"] for r in results["configs"][config]["seeds"]
                if r.get("diverged_epoch") is not None}
    chance = (paired.diverged_score(results) or 0.0) / 100.0
    rows = []
    for seed in seeds:
        if seed in diverged:
            rows.append(np.full(labels.shape, chance))
        elif seed in predicted:
            rows.append((np.asarray(predicted[seed]) == labels).astype(float))
        else:
            return None
    return np.stack(rows)


def recorded(results: Mapping[str, dict]) -> tuple[Design | None, Looks]:
    """The design and looks a run recorded (every study of it holds the same block)."""
    for current in results.values():
        block = current.get("decisions")
        if block:
            return Design.from_json(block["design"]), decisions.looks_from_json(block)
    return None, {}


def resume(results: Mapping[str, dict], design: Design | None
           ) -> tuple[Design | None, Looks]:
    """The design and looks a run starts from: a fixed design decides afresh (one look,
    recomputed); a sequential one continues the looks --out recorded
    (:func:`continued`); None (a single seed) decides nothing."""
    if design is None or design.kind == "fixed":
        return design, {}
    old, looks = recorded(results)
    # a fixed design, or looks by another method (0d99cce's t_union) or reading of the
    # test images, is decided afresh
    # from the seeds --out holds: a look at n uses seeds 0..n-1, which no earlier
    # stopping rule chose, so the new looks keep their error
    if old is not None and (old.kind == "fixed" or old.method != design.method
                            or old.test_set != design.test_set):
        old, looks = None, {}
    return continued(old, design), looks


def continued(recorded_design: Design | None, design: Design) -> Design:
    """The design of a rerun: the recorded one with the new budget. Only ``max_seeds``
    may change (a larger budget continues, its new looks calibrated with the earlier ones
    held fixed; for t_union looks the spending horizon stays what was recorded, so the
    error already spent keeps its meaning)."""
    if recorded_design is None:
        return design
    same = {"round_size", "alpha", "margin", "spending", "family", "reserve"}
    changed = [k for k in sorted(same) if getattr(recorded_design, k) != getattr(design, k)]
    if changed or recorded_design.kind != design.kind:
        what = (", ".join(f"--{k.replace('_', '-')} {getattr(recorded_design, k)}"
                          for k in changed) or f"a {recorded_design.kind} design")
        raise ValueError(f"the decisions in --out were made with {what}: use the same "
                         "decisions flags (only --max-seeds may grow), or --fresh")
    if design.kind == "fixed":
        return design
    # the first round already happened: a continuation keeps it (the default first round
    # is at most half of --max-seeds, so it grows with the budget)
    design = dataclasses.replace(design, first_round=recorded_design.first_round)
    if design.max_seeds < recorded_design.max_seeds:
        raise ValueError(f"the decisions in --out were made with --max-seeds "
                         f"{recorded_design.max_seeds}: a rerun may raise it, not lower it")
    caps = recorded_design.caps + ((recorded_design.max_seeds,)
                                   if design.max_seeds > recorded_design.max_seeds else ())
    return dataclasses.replace(design, caps=caps, horizon=max(recorded_design.information_max,
                                                              design.max_seeds))


def decide_round(results: Mapping[str, dict], comps: Mapping[str, Comparison],
                 design: Design | None, looks: Looks, read: ReadPredictions | None = None
                 ) -> Looks:
    """The looks after this round, recorded into every study's ``decisions`` block
    (nothing without a design); ``read`` gives the stored predictions (None: the test
    images' part of the error unknown, the verdicts conditional on them)."""
    if design is None:
        return looks
    seen = differences(results, comps, design)
    images = image_variances(results, comps, design, read)
    looks = decisions.with_continuations(seen, decisions.decide(seen, looks, design, images),
                                         design, images)
    block = decisions.record(design, looks)
    for current in results.values():
        current["decisions"] = block
    return looks


def annotate(results: Mapping[str, dict], block: Mapping) -> None:
    """Puts each comparison's verdict into its study's ``statistics.comparisons`` entry
    (key ``decision``), where the tables and sentences read it."""
    for study, current in results.items():
        for c in current.get("statistics", {}).get("comparisons", []):
            entry = block["comparisons"].get(comparison_name(study, c["config"], c["reference"]))
            if entry and entry["looks"]:
                metric = paired.metric_of(current)
                margin = block["design"]["margin"]
                last = _as_measured(entry["looks"][-1], paired.metric_scale(metric, margin))
                c["decision"] = {**{k: last.get(k) for k in (
                                     "verdict", "n", "mean", "interval", "equivalence_interval",
                                     "seeds_needed", "within_margin", "skewness", "largest_z",
                                     "without_extreme", "continuation", "seed_se",
                                     "image_se", "test_limit")},
                                 "final": entry["final"], "looks": len(entry["looks"]),
                                 "test_set": block["design"].get("test_set", "fixed"),
                                 "margin": metric.get("margin") or margin,
                                 "unit": metric["unit"],
                                 "family_size": _family_size(block, study)}


def _as_measured(look: Mapping, scale: float) -> dict:
    """A look's mean and intervals in the metric's own units and direction (config minus
    reference): the decisions saw them times ``scale``."""
    if scale == 1.0:
        return dict(look)
    ends = {key: None if look[key] is None else sorted(v / scale for v in look[key])
            for key in ("interval", "equivalence_interval")}
    # a negative scale (lower is better) turns the seeds' shape around too
    turned = {key: None if look.get(key) is None else look[key] * math.copysign(1, scale)
              for key in ("skewness", "largest_z")}
    sizes = {key: None if look.get(key) is None else look[key] / abs(scale)
             for key in ("seed_se", "image_se", "test_limit")}
    return {**look, **ends, **turned, **sizes,
            "mean": None if look["mean"] is None else look["mean"] / scale}


def _family_size(block: Mapping, study: str) -> int:
    sizes = block["family"]["size"]
    return sizes.get("all", sizes.get(study, 0))


def report_block(results: Mapping[str, dict], studies: Sequence, all_pairs: bool = False,
                 margin: float | None = None, family: str | None = None,
                 test_set: str | None = None, read: ReadPredictions | None = None) -> dict:
    """The decisions the report states. Fixed designs (``--seeds N``) are decided again
    over one family of every comparison in the report (the studies share their
    reference runs; ``family`` "study" keeps one per study), at the recorded margin
    unless ``margin`` is given; sequential runs keep the looks they recorded (their
    error was spent as they ran), merged across studies."""
    blocks = [r.get("decisions") for r in results.values()]
    designs = [Design.from_json(b["design"]) for b in blocks if b]
    if designs and any(d.kind == "sequential" for d in designs):
        runs = [b for b in blocks if b and b["design"]["kind"] == "sequential"]
        if all(b == runs[0] for b in runs):
            return runs[0]  # the studies ran together: one record
        merged = {"design": runs[0]["design"], "comparisons": {},
                  "family": {"mode": "run", "size": {}, "members": {}}}
        for b in runs:  # separate runs: each spent its error over its own family
            merged["comparisons"].update(b["comparisons"])
            for label, members in b["family"]["members"].items():
                key = f"{members[0].split('/')[0]}'s run ({label})"
                merged["family"]["size"][key] = len(members)
                merged["family"]["members"][key] = members
        return merged
    margin = margin or (designs[0].margin if designs else Design.margin)
    family = family or (designs[0].family if designs else Design.family)
    n = max((len(cfg["seeds"]) for r in results.values() for cfg in r["configs"].values()),
            default=2)
    test_set = test_set or (designs[0].test_set if designs else Design.test_set)
    design = Design.fixed(max(n, 2), margin=margin, family=family, test_set=test_set)
    comps = comparisons(studies, {s.name: results[s.name]["metadata"]["reference"]
                                  for s in studies},
                        {s.name: list(results[s.name]["configs"]) for s in studies}, all_pairs)
    return decisions.record(design, decisions.decide(
        differences(results, comps, design), {}, design,
        image_variances(results, comps, design, read)))

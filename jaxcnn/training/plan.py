"""Planning a round: which models are missing, which seeds each still needs.

Pure functions of the studies' configurations and of what ``--out`` already holds
(the results dicts); no JAX, no files. The pipeline (``pipeline.py``) asks for a
:class:`RoundPlan`, the results store (``store.py``) copies what another study of
``--out`` already finished, and the engine (``engine.py``) trains the rest:
:meth:`RoundPlan.missing_seeds` of every model.

Vocabulary: an *entry* is a "study/config" name; a *model* is a distinct
configuration (its ``identity()``), trained once under its *canonical* entry (the
first entry that has it) and written into every entry that has it.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from jaxcnn.errors import ResumeError

# A configuration as the planner sees it (``configs.Configuration``): ``identity()`` is
# hashable and equal for the same model, ``fingerprint()`` is what results.json records.
Config = Any


@dataclasses.dataclass
class Want:
    """A (study, configuration name) still missing seeds, and its configuration."""

    study: str
    name: str
    config: Config

    @property
    def entry(self) -> str:
        return f"{self.study}/{self.name}"


@dataclasses.dataclass
class RoundPlan:
    """One round's work.

    wants: canonical entry -> every entry of that model still missing seeds;
    configs: canonical entry -> its configuration;
    targets: canonical entry -> the seeds 0..n-1 the round brings it to;
    kept: canonical entry -> the seeds every one of its entries already holds in --out;
    finished: the entries that already have every seed they need (nothing to do).
    """

    wants: dict[str, list[Want]]
    configs: dict[str, Config]
    targets: dict[str, list[int]]
    kept: dict[str, set[int]]
    finished: list[str]

    def missing_seeds(self, canonical: str, done: Iterable[int] = ()) -> list[int]:
        """The target seeds of a model neither kept from --out nor in ``done``."""
        have = self.kept[canonical] | set(done)
        return [s for s in self.targets[canonical] if s not in have]

    def members(self, done: Mapping[str, Iterable[int]] | None = None) -> list[tuple[str, int]]:
        """Every (canonical entry, seed) still to train or copy, model by model, less the
        seeds ``done`` (canonical -> seeds) says are finished in this round."""
        return [(c, s) for c in self.wants
                for s in self.missing_seeds(c, (done or {}).get(c, ()))]


def same_models(all_configs: Mapping[str, Mapping[str, Config]]) -> dict[str, list[str]]:
    """entry -> the other entries that are the same model."""
    by_identity = defaultdict(list)
    for study, configs in all_configs.items():
        for name, config in configs.items():
            by_identity[config.identity()].append(f"{study}/{name}")
    return {entry: [e for e in entries if e != entry]
            for entries in by_identity.values() for entry in entries}


def same_model_counts(counts: Mapping[str, int],
                      siblings: Mapping[str, list[str]]) -> dict[str, int]:
    """Every entry of one model gets the most seeds any of them wants, so the same
    model has the same seeds (and numbers) in every study that has it."""
    return {key: max([n] + [counts[k] for k in siblings.get(key, []) if k in counts])
            for key, n in counts.items()}


def seeds_held(results: Mapping[str, dict], study: str, name: str) -> set[int]:
    """The seeds --out holds for ``study/name`` (``results``: study -> results dict)."""
    return {r["seed"] for r in results[study]["configs"].get(name, {}).get("seeds", [])}


def plan_round(configs: Mapping[str, Mapping[str, Config]], results: Mapping[str, dict],
               counts: Mapping[str, int]) -> RoundPlan:
    """The models with seeds still missing, each once under its canonical entry.

    configs: study -> name -> configuration (the run's, in order);
    results: study -> its results dict as --out holds it;
    counts: entry -> seeds wanted (seeds 0..n-1).
    Raises ResumeError when --out holds another model under an entry's name.
    """
    wants: dict[str, list[Want]] = {}
    identity_of: dict[str, Config] = {}
    canonical_of: dict[Any, str] = {}
    finished = []
    for study, study_configs in configs.items():
        for name, config in study_configs.items():
            existing = results[study]["configs"].get(name)
            if existing is not None:
                if existing.get("identity") not in (None, config.fingerprint()):
                    raise ResumeError(f"{study}/{name} in --out is another model than the "
                                      "one asked for; use another --out or --fresh")
                if len(existing["seeds"]) >= counts[f"{study}/{name}"]:
                    finished.append(f"{study}/{name}")
                    continue
            canonical = canonical_of.setdefault(config.identity(), f"{study}/{name}")
            identity_of[canonical] = config
            wants.setdefault(canonical, []).append(Want(study, name, config))
    targets = {c: list(range(max(counts[w.entry] for w in entries)))
               for c, entries in wants.items()}
    kept = {c: set.intersection(*[seeds_held(results, w.study, w.name) for w in entries])
            for c, entries in wants.items()}
    return RoundPlan(wants, identity_of, targets, kept, finished)


def round_line(plan: RoundPlan, counts: Mapping[str, int]) -> str:
    """One progress line: which entries get seeds up to how many."""
    return "; ".join(", ".join(w.entry for w in entries) + f" to {counts[entries[0].entry]} seeds"
                     for entries in plan.wants.values())


def batch_size_notice(batch_size: int, num_train: int) -> str | None:
    """A warning when one batch holds the whole training set, else None."""
    if batch_size <= num_train:
        return None
    return (f"warning: --batch-size {batch_size} is larger than the {num_train} training "
            "images: every epoch is one padded step (one update per epoch)")

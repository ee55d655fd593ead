"""results.json's schema as dataclasses: :class:`StudyRecord` <-> JSON.

A study's file is a :class:`StudyRecord` of :class:`ConfigRecord` of :class:`SeedRecord`.
``from_json`` checks every field the package reads (its type, its presence) and raises
ValueError naming the place of the first problem (``configs.l2.seeds[3].test_loss is 'x',
not a number``); ``to_json`` gives the dict back, keys it does not model included, so a
file read and written again is unchanged. ``results.read_results`` parses every file with
them before anything uses it; ``jaxcnn.results(out, study)`` gives the typed record::

    r = jc.results("results", "regularization")
    [s.test_accuracy for s in r.configs["l2"].seeds]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(record: Mapping, key: str, where: str, integer: bool = False) -> Any:
    """``record[key]``: a number (an int with ``integer``) or None; ValueError otherwise."""
    if key not in record:
        raise ValueError(f"{where} has no {key!r}")
    value = record[key]
    ok = isinstance(value, int) if integer else _is_number(value)
    if value is not None and (not ok or isinstance(value, bool)):
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{where}.{key} is {value!r}, not {kind}")
    return value


def _rest(record: Mapping, known: tuple[str, ...]) -> dict:
    return {k: v for k, v in record.items() if k not in known}


@dataclasses.dataclass(frozen=True)
class SeedRecord:
    """One member: ``configs.<name>.seeds[i]``. Test numbers are None for a seed that
    diverged (in ``diverged_epoch``); ``history`` holds the per-epoch (and per-step)
    curves, None where a value was not finite; ``other`` every further key
    (``initial_params_checksum``, a study's ``test_metric``)."""

    seed: int
    test_accuracy: float | None
    test_loss: float | None
    diverged_epoch: int | None
    history: Mapping[str, list] = dataclasses.field(default_factory=dict)
    other: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    KEYS = ("seed", "test_accuracy", "test_loss", "diverged_epoch", "history")

    @classmethod
    def from_json(cls, record: Any, where: str) -> SeedRecord:
        if not isinstance(record, Mapping):
            raise ValueError(f"{where} is not an object")
        seed = record.get("seed")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError(f"{where}.seed is {seed!r}, not an integer")
        history = record.get("history", {})
        if not isinstance(history, Mapping):
            raise ValueError(f"{where}.history is not an object")
        for name, values in history.items():
            if not isinstance(values, list):
                raise ValueError(f"{where}.history.{name} is not a list")
            bad = next((v for v in values if v is not None and not _is_number(v)), None)
            if bad is not None:
                raise ValueError(f"{where}.history.{name} holds {bad!r}, not a number")
        return cls(seed, _number(record, "test_accuracy", where),
                   _number(record, "test_loss", where),
                   _number(record, "diverged_epoch", where, integer=True), dict(history),
                   _rest(record, cls.KEYS))

    def to_json(self) -> dict:
        return {"seed": self.seed, **dict(self.other), "test_accuracy": self.test_accuracy,
                "test_loss": self.test_loss, "diverged_epoch": self.diverged_epoch,
                "history": dict(self.history)}


@dataclasses.dataclass(frozen=True)
class ConfigRecord:
    """One configuration: its seeds, and ``other`` (description, model, optimizer, ...)."""

    seeds: tuple[SeedRecord, ...]
    other: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_json(cls, record: Any, where: str) -> ConfigRecord:
        if not isinstance(record, Mapping) or not isinstance(record.get("seeds"), list):
            raise ValueError(f"{where} has no list of seeds")
        return cls(tuple(SeedRecord.from_json(s, f"{where}.seeds[{i}]")
                         for i, s in enumerate(record["seeds"])), _rest(record, ("seeds",)))

    def to_json(self) -> dict:
        return {**dict(self.other), "seeds": [s.to_json() for s in self.seeds]}


@dataclasses.dataclass(frozen=True)
class StudyRecord:
    """One study's results.json. ``metadata`` (its settings, data, reference, ...) and
    ``other`` (``statistics``, ``decisions``) stay the dicts the file holds; version 1
    files have no ``schema_version`` key, and get none back."""

    experiment: str
    metadata: Mapping[str, Any]
    configs: Mapping[str, ConfigRecord]
    schema_version: int = 1
    other: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    KEYS = ("experiment", "metadata", "configs", "schema_version")

    @classmethod
    def from_json(cls, payload: Any) -> StudyRecord:
        if not isinstance(payload, Mapping):
            raise ValueError("the file holds no JSON object")
        version = payload.get("schema_version", 1)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ValueError(f"schema_version is {version!r}, not a positive integer")
        for key, kind in (("experiment", str), ("metadata", Mapping), ("configs", Mapping)):
            if not isinstance(payload.get(key), kind):
                raise ValueError(f"no {key!r}" if key not in payload else
                                 f"{key!r} is not {'a string' if kind is str else 'an object'}")
        meta = payload["metadata"]
        for key, kind in (("settings", Mapping), ("data", Mapping), ("reference", str)):
            if not isinstance(meta.get(key), kind):
                raise ValueError(f"metadata.{key} is missing or not "
                                 f"{'a string' if kind is str else 'an object'}")
        configs = {name: ConfigRecord.from_json(c, f"configs.{name}")
                   for name, c in payload["configs"].items()}
        return cls(payload["experiment"], dict(meta), configs, version,
                   _rest(payload, cls.KEYS))

    def to_json(self) -> dict:
        version = {} if self.schema_version == 1 else {"schema_version": self.schema_version}
        return {**version, "experiment": self.experiment,
                "metadata": dict(self.metadata),
                "configs": {n: c.to_json() for n, c in self.configs.items()},
                **dict(self.other)}

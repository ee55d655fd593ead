"""The Python API: :func:`run` studies, :func:`report` them, :func:`load` a trained member.

    import jaxcnn as jc

    jc.run([study], data="my_images/", seeds="auto", out="results")
    jc.report("results")
    trained = jc.load("results", "mine", "sgd")

Each function does what its command does (``jaxcnn run``, ``jaxcnn report``,
``jaxcnn evaluate``): the keyword arguments of :func:`run` are the command line's flags
(``train_examples=1000`` for ``--train-examples 1000``), checked the same way, with the
``--out`` lock, resume and rounds of seeds; bad values raise ValueError with the
command line's message.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from jaxcnn import cli
from jaxcnn.errors import ConfigError, JaxcnnError
from jaxcnn.experiment import DecisionOptions, Experiment, Runtime
from jaxcnn.inference import TrainedModel, load_model
from jaxcnn.studies import Study
from jaxcnn.training.records import StudyRecord
from jaxcnn.training.results import read_results
from jaxcnn.user_code import locate


class _RaisingParser(argparse.ArgumentParser):
    """The command line's parser, raising ValueError instead of exiting."""

    def error(self, message: str):
        raise ValueError(message)


def _flags(options: dict[str, Any]) -> list[str]:
    """Keyword arguments as the command line's flags (``--name value``, switches)."""
    fields = {f.name: f for cls in (Experiment, DecisionOptions, Runtime)
              for f in dataclasses.fields(cls)}
    argv = []
    for name, value in options.items():
        if name not in fields:
            raise TypeError(f"run() got an unknown option {name!r}; options: "
                            f"{', '.join(sorted(fields))}")
        flag = "--" + name.replace("_", "-")
        default = fields[name].default
        if isinstance(default, bool):
            if bool(value) != default:
                argv.append(flag if not default else f"--no-{name.replace('_', '-')}")
        elif value is not None:
            argv += [flag, str(value)]
    return argv


def _with_entry(study: Study) -> Study:
    """``study`` with the command that reproduces it: ``jaxcnn run FILE.py:NAME`` when a
    module-level variable holds it, else its own."""
    if study.entry or study.name in _builtin_names():
        return study
    where = locate(study)
    return dataclasses.replace(study, entry=("jaxcnn", "run", where)) if where else study


def _builtin_names() -> set[str]:
    from jaxcnn.studies import STUDIES

    return set(STUDIES)


def run(studies: Study | Iterable[Study], *, data: str = "cifar10", seeds: int | str = 5,
        out: str | Path = "results", **options: Any) -> dict[str, dict]:
    """Trains (or resumes) ``studies`` together and returns each one's results dict
    (what ``OUT/<study>/results.json`` holds).

    Args:
      studies: one :class:`~jaxcnn.studies.Study` or several (a model they share is
        trained once).
      data: "cifar10", "synthetic", a folder tree or archive of images, or a registered
        source.
      seeds: a number, or "auto": seeds are added in rounds until every comparison is
        decided (or ``max_seeds`` is spent).
      out: the results folder (locked while running; rerunning resumes).
      **options: any other flag of ``jaxcnn run --help``, by its name (``epochs=2``,
        ``train_examples=1000``, ``progress=False``).
    """
    studies = [studies] if isinstance(studies, Study) else list(studies)
    if not studies or not all(isinstance(s, Study) for s in studies):
        raise TypeError("run() takes a jaxcnn Study or a list of them")
    parser = cli.add_run_arguments(_RaisingParser(prog="jaxcnn.run"))
    args = parser.parse_args(_flags({"data": data, "seeds": seeds, "out": out, **options}))
    from jaxcnn.pipeline import run_studies

    try:
        return run_studies([_with_entry(s) for s in studies], cli.experiment_from(args),
                           cli.runtime_from(args), decisions=cli.decisions_from(args))
    except ConfigError as err:
        raise ValueError(str(err)) from None


def report(out: str | Path = "results", *, all_pairs: bool = False) -> Path:
    """Writes ``OUT/REPORT.md`` (figures and exports beside it) over every study in
    ``out`` and returns its path."""
    from jaxcnn.commands import report as command

    argv = ["--out", str(out), "--no-progress"] + (["--all-pairs"] if all_pairs else [])
    if command.main(argv) != 0:
        raise JaxcnnError(f"no report written for {out} (the reason is printed above)")
    return Path(out) / "REPORT.md"


def results(out: str | Path, study: str) -> StudyRecord:
    """A study's results.json as typed records (``training/records.py``): ``configs[name]
    .seeds[i].test_accuracy`` and the rest; its decisions block resolved. One line
    (FileNotFoundError) when the study has no results in ``out``."""
    path = Path(out) / study / "results.json"
    payload = read_results(path)
    if payload is None:
        raise FileNotFoundError(f"{path}: no results of study {study!r} in {out}")
    return StudyRecord.from_json(payload)


def load(out: str | Path, study: str, config: str) -> TrainedModel:
    """A trained configuration: every seed's weights, with ``module()`` (the Flax module),
    ``variables(seed)``, ``input_shape``, ``predict`` and ``evaluate``. A model of one's
    own is imported from the file that defined it, as recorded by the run."""
    return load_model(out, study, config)

"""One Markdown report from every study in ``--out``: ``OUT/REPORT.md``, figures beside it.

    python -m experiments.report --out results            # all three studies done
    python -m experiments.report --out results --run-missing

Reads ``OUT/<study>/results.json`` of every study there: the built-in three
(regularization, initialization, schedules) first, in their order, then the rest
(studies of one's own, sweeps) by name. Where ``--out`` holds a built-in study, the
missing built-in ones are run (together, each distinct model trained once) when
``--run-missing`` is set, with the settings recorded by the studies already in OUT (the
flags given only when there are none); otherwise the report names the exact command.

Verdicts rest on families: the built-in studies form one (re-decided over all of them
for fixed designs), and every other study keeps the family of the run that trained it
(the studies run together), so adding a study to ``--out`` later never changes the
verdicts already there.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jaxcnn import cli
from jaxcnn.errors import ConfigError, JaxcnnError, ResumeError
from jaxcnn.experiment import DecisionOptions, Experiment, setting_differences
from jaxcnn.platform import outlock
from jaxcnn.platform.progress import log
from jaxcnn.reporting.report import STUDY_ORDER, build_report
from jaxcnn.stats import rounds
from jaxcnn.studies import STUDIES, Study
from jaxcnn.training import predictions
from jaxcnn.training.results import keep_decisions, read_results, write_results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxcnn report",  # = python -m experiments.report in a checkout
        description="Write OUT/REPORT.md from the regularization, initialization and schedules "
                    "studies' results. With --run-missing, studies not yet in OUT are trained "
                    "first, with the settings of the studies already there (or the training "
                    "flags given, when there are none); a model shared by several studies is "
                    "trained once.")
    parser.add_argument("--run-missing", action="store_true",
                        help="train the studies whose results are missing or incomplete, with "
                             "the settings recorded in OUT")
    return cli.add_run_arguments(parser)


def _complete(results: dict | None, name: str) -> bool:
    if results is None:
        return False
    parity = results["metadata"].get("settings", {}).get("torch_parity", False)
    expected = set(cli.config_names_for(STUDIES[name], parity))
    return expected <= set(results["configs"])


def suggested_command(name: str, found: dict[str, dict], experiment: Experiment,
                      out: str) -> str:
    """The command that runs study ``name`` with the settings of the studies already in
    ``out`` (so its results can be reported with them), or with the flags given."""
    for results in found.values():
        experiment = cli.experiment_from_settings(results["metadata"]["settings"])
        break
    return shlex.join(["python", "-m", f"experiments.{name}", *experiment.flags(),
                       "--out", out])


def study_names(out: Path) -> list[str]:
    """The built-in studies' names, then every other study folder of ``out`` (one holding
    a results.json), by name."""
    others = sorted(p.parent.name for p in Path(out).glob("*/results.json")
                    if p.parent.name not in STUDY_ORDER)
    return [*STUDY_ORDER, *others]


def study_of(name: str, results: dict) -> Study:
    """The Study ``name`` stands for: a built-in one, or (a study of one's own, whose
    definition lives in the user's file) one rebuilt from what its results record."""
    if name in STUDIES:
        return STUDIES[name]
    return Study(name, results["metadata"].get("title", name), lambda ctx: {},
                 reference=results["metadata"]["reference"])


def read_studies(out: Path, fresh: bool) -> dict[str, dict | None]:
    """Each study's results in ``out`` (None if absent). An unreadable file is an error
    naming the command that starts that study over, or with ``fresh`` is moved aside
    (``results.json.unreadable``) and counts as missing."""
    found = {}
    for name in study_names(out):
        path = out / name / "results.json"
        try:
            found[name] = read_results(path)
        except ResumeError as err:
            if not fresh:
                raise ResumeError(f"{err}; or add --fresh to --run-missing to set the file "
                                  "aside and train that study again") from None
            path.replace(path.with_name(path.name + ".unreadable"))
            log(f"--fresh: {path} could not be read; moved it to {path}.unreadable")
            found[name] = None
    return found


def with_reachable_data(recorded: Experiment, results: dict, out: Path,
                        given: str | None) -> Experiment:
    """``recorded`` with its --data reachable from here: a file given on this command
    line, else the recorded path, else (recorded relative to the folder the first run
    started in) the absolute path that run recorded. The run then checks that the file
    has the recorded content (its fingerprint), whatever path names it."""
    if recorded.data in ("cifar10", "synthetic"):
        return recorded
    if given is not None and Path(given).expanduser().exists():
        return dataclasses.replace(recorded, data=given)
    if Path(recorded.data).expanduser().exists():
        return recorded
    absolute = results["metadata"].get("data", {}).get("path")
    if absolute and Path(absolute).exists():
        return dataclasses.replace(recorded, data=absolute)
    raise ConfigError(f"--data {recorded.data}, recorded in {out}, is not found from "
                      f"{Path.cwd()}; run from the folder the studies were started in, or "
                      "give --data with the path of that file from here")


def recorded_experiment(present: dict[str, dict], args: argparse.Namespace,
                        parser: argparse.ArgumentParser) -> Experiment:
    """The Experiment the studies already in --out were run with, so the missing ones are
    run the same way (the flags given, when there are none). Refuses when the studies
    there disagree, or a flag given on this command line differs from them."""
    given = cli.experiment_from(args)
    if not present:
        return given
    (first, results), *others = present.items()
    settings = results["metadata"]["settings"]
    for name, other in others:
        differences = setting_differences(settings, other["metadata"]["settings"])
        if differences:
            raise ResumeError(
                f"{args.out}: {first} was run with {differences[0]}, {name} with "
                f"{differences[1]}; the missing studies cannot match both: rerun one with "
                "the other's flags and --fresh, or use separate --out folders")
    given_data = args.data if args.data != parser.get_default("data") else None
    recorded = with_reachable_data(cli.experiment_from_settings(settings), results, args.out,
                                   given_data)
    for field in dataclasses.fields(Experiment):
        value = getattr(args, field.name)
        if value != parser.get_default(field.name) and value != getattr(recorded, field.name):
            flag = "--" + field.name.replace("_", "-")
            raise ConfigError(
                f"{flag} {value} differs from the studies already in {args.out} "
                f"({flag} {getattr(recorded, field.name)}); leave it out to run the missing "
                "studies with their settings, or use another --out")
    return recorded


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()

    def body(args: argparse.Namespace) -> None:
        runtime = cli.runtime_from(args)
        found = read_studies(runtime.out, runtime.fresh and args.run_missing)
        present = {n: r for n, r in found.items() if r is not None}
        incomplete: dict[str, str] = {}
        builtin = any(found[n] is not None for n in STUDY_ORDER)
        # Only studies of one's own in --out: they are the report (the built-in three are
        # not missing from it).
        missing = ([n for n in STUDY_ORDER if not _complete(found[n], n)]
                   if builtin or not present else [])
        if missing and not args.run_missing:
            experiment = cli.experiment_from(args)
            commands = "; ".join(f"`{suggested_command(n, present, experiment, str(runtime.out))}`"
                                 for n in missing)
            if not present:
                raise JaxcnnError(f"{', '.join(missing)} missing in {runtime.out}; run "
                                  f"{commands} first, or add --run-missing")
            # What is there is reported; what is not is named with the command that adds it.
            log(f"{', '.join(missing)} missing or incomplete in {runtime.out}: the report "
                f"covers what is there; run {commands} to add the rest, or add --run-missing")
            incomplete = {n: suggested_command(n, present, experiment, str(runtime.out))
                          for n in missing}
        elif missing:
            from jaxcnn.pipeline import run_studies

            builtin_present = {n: r for n, r in present.items() if n in STUDY_ORDER}
            experiment = recorded_experiment(builtin_present, args, parser)
            run_studies([STUDIES[n] for n in missing], experiment, runtime,
                        decisions=cli.decisions_from(args))
        with outlock.hold(runtime.out, runtime.wait, notify=log):
            write_report(runtime.out, runtime.all_pairs, cli.decisions_from(args), incomplete)

    return cli.run_main(parser, argv, body)


def families(all_results: dict[str, dict]) -> list[list[str]]:
    """The studies whose verdicts are decided together: the built-in studies as one
    family, and every other study with those its run trained with it (the same recorded
    decisions block), so a study added later never changes earlier verdicts."""
    groups: list[list[str]] = []
    builtin = [n for n in all_results if n in STUDY_ORDER]
    if builtin:
        groups.append(builtin)
    recorded: list[tuple[Any, list[str]]] = []
    for name, results in all_results.items():
        if name in STUDY_ORDER:
            continue
        block = results.get("decisions")
        for known, names in recorded:
            if block and known == block:
                names.append(name)
                break
        else:
            recorded.append((block, [name]))
    return groups + [names for _, names in recorded]


def write_report(out: Path, all_pairs: bool, options: DecisionOptions | None = None,
                 incomplete: dict[str, str] | None = None) -> None:
    """Recomputes the statistics and figures of every study in ``out`` and writes
    ``out/REPORT.md``; ``incomplete`` (study -> the command that completes it) is named
    at its top."""
    from jaxcnn.pipeline import write_figures

    all_results = {name: read_results(out / name / "results.json")
                   for name in study_names(out) if (out / name / "results.json").exists()}
    studies = {name: study_of(name, results) for name, results in all_results.items()}
    default = DecisionOptions()
    chosen = {k: getattr(options, k) for k in ("margin", "family", "test_set")
              if options is not None and getattr(options, k) != getattr(default, k)}
    for family in families(all_results):
        # Fixed designs are decided again over the family; sequential runs keep the looks
        # they recorded (see rounds.report_block).
        members = {name: all_results[name] for name in family}
        block = rounds.report_block(members, [studies[n] for n in family], all_pairs,
                                    **chosen, read=predictions.test_reader(out.joinpath))
        for name, results in members.items():
            path = out / name / "results.json"
            # Recomputed here (statistics and figures), so --all-pairs and later fixes apply.
            results["statistics"] = studies[name].statistics(results, all_pairs)
            results["decisions"] = block
            rounds.annotate({name: results}, block)
            write_results(path, results)
            write_figures(studies[name], results, path.parent)
    keep_decisions(out, all_results)
    report = out / "REPORT.md"
    report.write_text(build_report(all_results, margin=block["design"]["margin"],
                                   missing=incomplete))
    print(f"wrote {report}")


if __name__ == "__main__":
    sys.exit(main())

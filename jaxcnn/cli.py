"""Command lines built from the fields of :class:`Experiment` and :class:`Runtime`.

Every flag, its help and its default come from the dataclass fields
(``experiment.option``), so the flags, the recorded settings and the resume
check cannot drift apart. Bad values get argparse-style errors (usage line,
one message, exit 2).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from jaxcnn.errors import ConfigError, JaxcnnError
from jaxcnn.experiment import AUTO, DecisionOptions, Experiment, Runtime
from jaxcnn.platform.interrupt import announce_sigint


def _number(kind, minimum, inclusive: bool, what: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        if value < minimum or (value == minimum and not inclusive):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return value

    return parse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a flag's default only where it says something (not None, not a switch's False/True)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is None or isinstance(action.default, bool) or "%(default)" in text:
            return text
        return super()._get_help_string(action)


def folder_path(text: str) -> Path:
    """A folder flag's value: any path but the empty string (which would mean the current
    folder, silently)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path; name a folder (e.g. results)")
    return Path(text)


positive_int = _number(int, 1, True, "a positive integer")


def seed_count(text: str) -> int | str:
    """--seeds: a positive integer, or 'auto'."""
    if text.strip().lower() == AUTO:
        return AUTO
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer or "
                                         f"'{AUTO}'") from None
nonnegative_int = _number(int, 0, True, "an integer >= 0")
positive_float = _number(float, 0.0, False, "a positive number")

# Types beyond what the field's annotation says.
_PARSERS: dict[str, Callable[[str], Any]] = {
    "seeds": seed_count, "epochs": positive_int, "batch_size": positive_int,
    "lr": positive_float, "val_size": nonnegative_int, "train_examples": positive_int,
    "split_seed": nonnegative_int,
    "workers": positive_int, "members_per_chunk": positive_int, "devices": positive_int,
    "memory_budget": positive_float, "num_processes": positive_int,
    "process_id": nonnegative_int, "init_timeout": positive_int,
    "margin": positive_float, "max_seeds": positive_int, "first_round": positive_int,
    "round_size": positive_int,
    "out": folder_path, "cache_dir": folder_path,
}
_CHOICES = {"normalization": ("dataset", "half")}


def _describe_default(field: dataclasses.Field) -> str:
    if field.default is None or isinstance(field.default, bool):
        return ""
    if "default:" in field.metadata["help"]:
        return ""
    return f" (default: {field.default})"


def _add_fields(parser: argparse.ArgumentParser, cls: type, groups: dict,
                skip: Sequence[str] = ()) -> None:
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        meta = dict(field.metadata["argparse"])
        group_name = meta.pop("group")
        if group_name not in groups:
            groups[group_name] = parser.add_argument_group(group_name)
        group = groups[group_name]
        flag = "--" + field.name.replace("_", "-")
        help_text = field.metadata["help"] + _describe_default(field)
        if isinstance(field.default, bool):
            if field.default:  # --no-progress turns a default-on option off
                group.add_argument(f"--no-{field.name.replace('_', '-')}", dest=field.name,
                                   action="store_false", help=help_text)
            else:
                group.add_argument(flag, dest=field.name, action="store_true", help=help_text)
            continue
        kind = _PARSERS.get(field.name, str)
        group.add_argument(flag, dest=field.name, type=kind, default=field.default,
                           choices=meta.get("choices", _CHOICES.get(field.name)),
                           metavar=meta.get("metavar"), help=help_text)


def add_run_arguments(parser: argparse.ArgumentParser, skip: Sequence[str] = ()
                      ) -> argparse.ArgumentParser:
    """The flags of every study run: Experiment's and Runtime's fields."""
    groups: dict = {}
    titles = {"speed": "speed (results do not depend on these beyond float rounding)",
              "hosts": "several hosts (see docs/scaling.md)"}
    titles["decisions"] = ("decisions (better / worse / equivalent within the margin / "
                           "undecided; see docs/statistics.md)")
    for name in ("data", "training", "decisions", "speed", "hosts", "output"):
        groups[name] = parser.add_argument_group(titles.get(name, name))
    _add_fields(parser, Experiment, groups, skip)
    _add_fields(parser, DecisionOptions, groups, skip)
    _add_fields(parser, Runtime, groups, skip)
    return parser


def study_parser(prog: str, description: str, config_names: Sequence[str] | None = None
                 ) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_run_arguments(parser)
    if config_names is not None:
        parser.add_argument("--configs", nargs="+", metavar="NAME", choices=list(config_names),
                            default=None,
                            help=f"run only these configurations: any of {', '.join(config_names)}"
                                 " (default: all). Each is compared with the study's reference "
                                 "when this run or --out holds it (else the table says 'no "
                                 "reference in this run'); --seeds auto trains the reference "
                                 "too, since every verdict needs it")
    return parser


def experiment_from(args: argparse.Namespace) -> Experiment:
    """The Experiment the parsed flags stand for (Experiment fills --torch-parity's
    defaults itself, so ``Experiment(torch_parity=True)`` is what ``--torch-parity`` gives)."""
    return Experiment(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Experiment)})


def decisions_from(args: argparse.Namespace) -> DecisionOptions:
    """The DecisionOptions the parsed flags stand for (defaults where a parser lacks them)."""
    options = DecisionOptions(**{f.name: getattr(args, f.name)
                                 for f in dataclasses.fields(DecisionOptions)
                                 if hasattr(args, f.name)})
    try:
        options.design(experiment_from(args))  # bad combinations: one line now, not later
    except ValueError as err:
        raise ConfigError(f"decisions: {err}") from None
    return options


def runtime_from(args: argparse.Namespace) -> Runtime:
    runtime = Runtime(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Runtime)
                         if hasattr(args, f.name)})
    if runtime.deterministic:
        # Must be set before the backend starts (the first device use).
        flags = os.environ.get("XLA_FLAGS", "")
        if "--xla_gpu_deterministic_ops" not in flags:
            os.environ["XLA_FLAGS"] = f"{flags} --xla_gpu_deterministic_ops=true".strip()
    return runtime


def run_main(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
             body: Callable[[argparse.Namespace], int | None]) -> int:
    """Parses ``argv`` and runs ``body``; project errors become one line and exit 2."""
    args = parser.parse_args(argv)
    interrupted = (f"\n{parser.prog}: interrupted; rerun the same command to resume from the "
                   "last finished epoch")
    try:
        with announce_sigint(interrupted):  # the line at once, a second Ctrl-C exits
            return body(args) or 0
    except ConfigError as err:
        parser.error(str(err))  # argparse style: usage line, message, exit 2
    except JaxcnnError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        if not getattr(err, "announced", False):
            print(interrupted, file=sys.stderr)
        return 130
    return 0


def config_names_for(study, torch_parity: bool) -> list[str]:
    """The configuration names a study has in one mode."""
    from jaxcnn.studies import StudyContext

    ctx = StudyContext(Experiment(torch_parity=torch_parity), steps_per_epoch=2)
    return list(study.build_configs(ctx))


def config_names(study) -> list[str]:
    """Every configuration name a study has, in either mode (for --configs' choices)."""
    return list(dict.fromkeys(config_names_for(study, False) + config_names_for(study, True)))


def experiment_from_settings(settings: dict) -> Experiment:
    """The Experiment recorded in a results file's ``metadata.settings``."""
    return Experiment(**{f.name: settings[f.name] for f in dataclasses.fields(Experiment)
                         if f.name in settings})


def study_main(study, argv: Sequence[str] | None = None) -> int:
    """``python -m experiments.<study>`` (or ``jaxcnn run FILE.py:NAME``): train every
    configuration over seeds, compare them."""
    parser = study_parser(
        # The installed command (python -m experiments.NAME needs the repository checkout).
        " ".join(study.entry) if study.entry else f"jaxcnn {study.name}",
        f"{study.title}: train every configuration of the study for several seeds (one "
        f"compiled program trains them all) and compare each with '{study.reference}' "
        f"('{study.parity_reference}' under --torch-parity), paired by seed. Writes "
        f"OUT/{study.name}/results.json, figures and the final parameters; rerunning the "
        "same command resumes an interrupted run.",
        config_names(study))

    def body(args: argparse.Namespace) -> None:
        from jaxcnn.pipeline import run_studies

        run_studies([study], experiment_from(args), runtime_from(args), configs=args.configs,
                    decisions=decisions_from(args))

    return run_main(parser, argv, body)

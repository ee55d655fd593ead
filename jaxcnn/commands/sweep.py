"""A sweep: one hyperparameter (or a grid of two) varied from a base configuration.

    python -m experiments.sweep --param weight_decay=0,1e-4,3e-4,1e-3,3e-3 --seeds 8
    python -m experiments.sweep --param lr=3e-4,1e-3,3e-3 --param dropout=0,0.3 \\
        --base regularization/dropout

Every (value, seed) member trains in the same compiled program. Writes
OUT/<name>/results.json (a configuration per value, in the studies' schema),
the paired statistics against the base's own value (Holm), and sweep.png (final
test accuracy against the value).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from jaxcnn import cli
from jaxcnn.errors import ConfigError
from jaxcnn.sweep import PARAMS, parse_param, sweep_study


def folder_name(text: str) -> str:
    """--name: one folder name inside --out (a path such as ../../evil would write outside
    it)."""
    if (not text or text.startswith(".")
            or not all(c.isalnum() or c in "-_." for c in text)):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a plain folder name: use letters, digits, '-', '_' and '.' "
            "(not first), e.g. lr_sweep; the sweep is written to OUT/NAME")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxcnn sweep",  # = python -m experiments.sweep in a checkout
        description="Train every value of a hyperparameter (two --param flags: every "
                    "combination) for several seeds in one compiled program, and compare each "
                    "with the base configuration's own value, paired by seed.")
    sweep = parser.add_argument_group("sweep")
    sweep.add_argument("--param", action="append", required=True, metavar="NAME=V1,V2,...",
                       help=f"a hyperparameter and its values; NAME is one of "
                            f"{', '.join(PARAMS)} (dropout sets both dropout rates; beta1 is "
                            "the peak of a cycling beta1), or a float argument of the base's "
                            "jaxcnn.Optimizer (learning_rate, momentum, ...)")
    sweep.add_argument("--base", default="regularization/baseline", metavar="STUDY/CONFIG",
                       help="the configuration the values are applied to: a built-in study's "
                            "(default: regularization/baseline), or one of a study of one's "
                            "own as FILE.py:NAME/CONFIG or module:NAME/CONFIG, whose "
                            "jaxcnn.Optimizer float arguments NAME may then be")
    sweep.add_argument("--name", default="sweep", type=folder_name,
                       help="the folder under --out and the study name (default: sweep)")
    return cli.add_run_arguments(parser)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()

    def body(args: argparse.Namespace) -> None:
        from jaxcnn.pipeline import run_studies

        own = None
        if ":" in args.base:  # FILE.py:NAME/CONFIG or module:NAME/CONFIG: a study of one's own
            from jaxcnn.commands.run import load_target

            target, _, config = args.base.rpartition("/")
            if not config or ":" not in target:
                raise ConfigError(f"--base {args.base!r}: give FILE.py:NAME/CONFIG, e.g. "
                                  "mystudy.py:study/sgd")
            own = load_target(target)
        study = sweep_study([parse_param(p) for p in args.param], args.base, args.name, own)
        run_studies([study], cli.experiment_from(args), cli.runtime_from(args),
                    decisions=cli.decisions_from(args))

    return cli.run_main(parser, argv, body)


if __name__ == "__main__":
    sys.exit(main())

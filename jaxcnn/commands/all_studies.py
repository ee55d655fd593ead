"""The whole study: regularization, initialization and schedules, then the report.

    python -m experiments.all --data ../shared/data/cifar10-jpeg.tar.xz --seeds 5 --out results

Trains the three studies together (every distinct model once: regularization's
``baseline``, initialization's ``lecun`` and schedules' ``constant`` are one
model; one compiled program per network) and writes ``OUT/REPORT.md``.
Rerunning the same command resumes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from jaxcnn import cli
from jaxcnn.commands import report
from jaxcnn.studies import STUDIES


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli.add_run_arguments(argparse.ArgumentParser(
        prog="jaxcnn all",  # = python -m experiments.all in a checkout
        description="Train the regularization, initialization and schedules studies together "
                    "(each distinct model once) and write OUT/REPORT.md. Rerunning the same "
                    "command resumes."))

    def body(args: argparse.Namespace) -> int:
        from jaxcnn.pipeline import run_studies

        run_studies(list(STUDIES.values()), cli.experiment_from(args), cli.runtime_from(args),
                    decisions=cli.decisions_from(args))
        return report.main(["--out", str(args.out), *(["--wait"] if args.wait else [])])

    return cli.run_main(parser, argv, body)


if __name__ == "__main__":
    sys.exit(main())

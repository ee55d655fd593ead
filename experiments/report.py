"""One Markdown report from the three studies: ``OUT/REPORT.md``, figures beside it.

    python -m experiments.report --out results            # all three studies done
    python -m experiments.report --out results --run-missing --data synthetic --seeds 5

Reads ``OUT/{regularization,initialization,schedules}/results.json``. A
missing study is run with the given study flags when ``--run-missing`` is set;
otherwise the report names the exact command to run it.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence

from experiments import initialization, regularization, schedules
from jaxcnn import cli, stats
from jaxcnn.errors import ConfigError, JaxcnnError
from jaxcnn.progress import log
from jaxcnn.report import build_report
from jaxcnn.results import read_results, write_json_atomic
from jaxcnn.study import run_study

STUDIES = {s.name: s for s in (regularization.STUDY, initialization.STUDY, schedules.STUDY)}
REPORT_ONLY = ("--run-missing",)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.report",
        description="Write OUT/REPORT.md from the regularization, initialization and schedules "
                    "studies' results; the study flags are used to run (or name the command "
                    "for) any study that is missing.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--run-missing", action="store_true",
                        help="run any study whose results.json is missing, with the flags given")
    return cli.add_study_arguments(parser, with_configs=False)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = cli.resolve_defaults(parser.parse_args(argv))
    study_flags = [a for a in argv if a not in REPORT_ONLY]
    args.argv = study_flags
    try:
        all_results = {}
        for name, study in STUDIES.items():
            path = args.out / name / "results.json"
            results = read_results(path)
            complete = results is not None and set(results["configs"]) == set(
                study.build_configs(_options(args)))
            if not complete:
                command = shlex.join(["python", "-m", f"experiments.{name}", *study_flags])
                if not args.run_missing:
                    raise JaxcnnError(f"{path} is missing or incomplete; run `{command}` "
                                      "first, or add --run-missing")
                log(f"report: running the missing study: {command}")
                results = run_study(study, args)
            reference = results["metadata"]["reference"]
            # Recomputed here, so --all-pairs and later statistics fixes apply.
            results["statistics"] = stats.study_statistics(results, reference,
                                                           all_pairs=args.all_pairs)
            write_json_atomic(path, results)
            all_results[name] = results
        report = args.out / "REPORT.md"
        report.write_text(build_report(all_results))
    except ConfigError as err:
        parser.error(str(err))
    except JaxcnnError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {report}")
    return 0


def _options(args: argparse.Namespace):
    from jaxcnn.study import StudyOptions

    return StudyOptions(lr=args.lr, torch_parity=args.torch_parity, conv_impl=args.conv)


if __name__ == "__main__":
    sys.exit(main())

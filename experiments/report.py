"""One Markdown report from the three studies: ``OUT/REPORT.md``, figures beside it.

    python -m experiments.report --out results            # all three studies done
    python -m experiments.report --out results --run-missing --data synthetic --seeds 5

Reads ``OUT/{regularization,initialization,schedules}/results.json``. Missing
studies are run (together, each distinct model trained once) when
``--run-missing`` is set; otherwise the report names the exact command to run.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence

from jaxcnn import cli
from jaxcnn.errors import JaxcnnError
from jaxcnn.experiment import Experiment
from jaxcnn.report import STUDY_ORDER, build_report
from jaxcnn.results import read_results, write_json_atomic
from jaxcnn.studies import STUDIES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.report",
        description="Write OUT/REPORT.md from the regularization, initialization and schedules "
                    "studies' results. With --run-missing, studies not yet in OUT are trained "
                    "first, with the training flags given (a model shared by several studies is "
                    "trained once).")
    parser.add_argument("--run-missing", action="store_true",
                        help="train the studies whose results are missing or incomplete")
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()

    def body(args: argparse.Namespace) -> None:
        experiment, runtime = cli.experiment_from(args), cli.runtime_from(args)
        found = {n: read_results(runtime.out / n / "results.json") for n in STUDY_ORDER}
        missing = [n for n in STUDY_ORDER if not _complete(found[n], n)]
        if missing and not args.run_missing:
            present = {n: r for n, r in found.items() if r is not None}
            commands = "; ".join(f"`{suggested_command(n, present, experiment, str(runtime.out))}`"
                                 for n in missing)
            raise JaxcnnError(f"{', '.join(missing)} missing or incomplete in {runtime.out}; "
                              f"run {commands} first, or add --run-missing")
        if missing:
            from jaxcnn.study import run_studies

            run_studies([STUDIES[n] for n in missing], experiment, runtime)
        from jaxcnn.study import write_figures

        all_results = {}
        for name in STUDY_ORDER:
            path = runtime.out / name / "results.json"
            results = read_results(path)
            # Recomputed here (statistics and figures), so --all-pairs and later fixes apply.
            results["statistics"] = STUDIES[name].statistics(results, runtime.all_pairs)
            write_json_atomic(path, results)
            write_figures(STUDIES[name], results, path.parent)
            all_results[name] = results
        report = runtime.out / "REPORT.md"
        report.write_text(build_report(all_results))
        print(f"wrote {report}")

    return cli.run_main(parser, argv, body)


if __name__ == "__main__":
    sys.exit(main())

r"""Operating characteristics of the sequential design (``--seeds auto``) by simulation.

    python -m benchmarks.sequential_design --max-seeds 12 30 60 \
        --json benchmarks/results/sequential-design.json \
        --markdown benchmarks/results/sequential-design.md    # about 10 s on 1 CPU core

For each budget and each true mean paired difference (0, m/2, m and 3m; normal
per-seed differences with sd 1.5 points), simulates many studies of one comparison
whose Bonferroni share is alpha / family size (14: the report's default family) and
runs :func:`jaxcnn.stats.decisions.simulate` on them: the rate of each verdict and the
seeds the comparison used (mean, median, 90th percentile, how often it reached the
budget). Beside it, the fixed design of ``--fixed`` seeds (today's 5) with the same
family: its verdict rates. numpy and scipy only, no training.

A configuration's seeds are the most that any of its comparisons needs, so a
study's cost is not simply the sum of these per-comparison numbers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from benchmarks.common import print_and_write
from jaxcnn.platform import environment as env
from jaxcnn.stats import decisions

PROG = "python -m benchmarks.sequential_design"
MULTIPLES = (0.0, 0.5, 1.0, 3.0)  # true differences in margins


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=_Formatter)
    parser.add_argument("--max-seeds", type=int, nargs="+", default=[12, 30, 60],
                        help="budgets (seeds per configuration) to simulate")
    parser.add_argument("--first-round", type=int, default=5, help="seeds of the first look")
    parser.add_argument("--round-size", type=int, default=5, help="seeds added per round")
    parser.add_argument("--spending", choices=decisions.SPENDING, nargs="+",
                        default=list(decisions.SPENDING), help="alpha-spending functions")
    parser.add_argument("--fixed", type=int, default=5, help="seeds of the fixed design")
    parser.add_argument("--family-size", type=int, default=14,
                        help="comparisons in the multiplicity family (alpha / size each)")
    parser.add_argument("--margin", type=float, default=1.0, help="m, accuracy points")
    parser.add_argument("--alpha", type=float, default=0.05, help="family-wise error rate")
    parser.add_argument("--sd", type=float, default=1.5, help="sd of per-seed differences")
    parser.add_argument("--studies", type=int, default=4000, help="simulated studies per cell")
    parser.add_argument("--seed", type=int, default=0, help="numpy Generator seed")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--markdown", type=Path, default=None, help="and a table here")
    args = parser.parse_args(argv)
    problems = [(args.studies < 100, f"--studies {args.studies}: use at least 100"),
                (args.family_size < 1, f"--family-size {args.family_size}: at least 1"),
                (args.fixed < 2, f"--fixed {args.fixed}: need at least 2 seeds"),
                (not args.sd > 0, f"--sd {args.sd}: must be positive")]
    for bad, message in problems:
        if bad:
            parser.error(message)
    return args


def rates(codes: np.ndarray) -> dict[str, float]:
    counts = np.bincount(codes.ravel(), minlength=len(decisions.VERDICTS)) / codes.size
    return {name: round(float(c), 4) for name, c in zip(decisions.VERDICTS, counts)}


def simulate_cell(design: decisions.Design, delta: float, args, rng) -> dict:
    """One design at one true difference: verdict rates and seeds used."""
    data = rng.normal(delta, args.sd, size=(args.studies, 1, design.max_seeds))
    codes, used = decisions.simulate(data, design, family_size=args.family_size)
    return {"rates": rates(codes),
            "expected_seeds": round(float(used.mean()), 2),
            "median_seeds": float(np.median(used)),
            "p90_seeds": float(np.percentile(used, 90)),
            "reached_budget": round(float((used >= design.max_seeds).mean()), 4)}


def run(args) -> dict:
    rng = np.random.default_rng(args.seed)
    common = dict(alpha=args.alpha, margin=args.margin)
    fixed = decisions.Design.fixed(args.fixed, **common)
    designs = [decisions.Design(first_round=min(args.first_round, budget),
                                round_size=args.round_size, max_seeds=budget,
                                spending=spending, **common)
               for budget in args.max_seeds for spending in args.spending]
    rows = []
    for multiple in MULTIPLES:
        delta = multiple * args.margin
        row = {"true_difference": delta, "in_margins": multiple,
               "fixed": {"seeds": args.fixed, **simulate_cell(fixed, delta, args, rng)},
               "sequential": [{"max_seeds": d.max_seeds, "spending": d.spending,
                               **simulate_cell(d, delta, args, rng)} for d in designs]}
        rows.append(row)
    return {"command": " ".join([PROG, *sys.argv[1:]]),
            "what": "verdict rates and seeds per comparison, simulated (numpy, no training)",
            "family_size": args.family_size, "sd_difference": args.sd,
            "studies_per_cell": args.studies, "generator_seed": args.seed,
            "fixed_design": fixed.to_json(), "designs": [d.to_json() for d in designs],
            "rows": rows,
            "environment": {"versions": {k: v for k, v in env.versions().items()
                                         if k in ("python", "numpy", "scipy")},
                            "git_commit": env.git_commit()}}


def markdown(result: dict) -> str:
    lines = ["# Sequential design: simulated operating characteristics\n",
             f"`{result['command']}`\n",
             f"{result['studies_per_cell']} simulated studies per cell; per-seed differences "
             f"normal with sd {result['sd_difference']}; each comparison gets alpha / "
             f"{result['family_size']} (the family). Rates: better / worse / equivalent / "
             "undecided. Seeds: mean (90th percentile), share reaching the budget.\n",
             "| true difference | design | better | worse | equivalent | undecided | seeds "
             "| at budget |", "|---|---|---|---|---|---|---|---|"]
    for row in result["rows"]:
        cells = [(f"fixed {row['fixed']['seeds']}", row["fixed"])]
        cells += [(f"auto <= {s['max_seeds']}, {s['spending']}", s) for s in row["sequential"]]
        for name, cell in cells:
            r = cell["rates"]
            lines.append(f"| {row['true_difference']:g} ({row['in_margins']:g} m) | {name} | "
                         f"{r['better']:.3f} | {r['worse']:.3f} | {r['equivalent']:.3f} | "
                         f"{r['undecided']:.3f} | {cell['expected_seeds']:.1f} "
                         f"({cell['p90_seeds']:g}) | {cell['reached_budget']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    args = parse_args(argv)
    result = run(args)
    print_and_write(markdown(result), result, args.json, args.markdown)


if __name__ == "__main__":
    main()

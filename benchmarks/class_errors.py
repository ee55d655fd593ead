r"""Where 0d99cce's sequential design (``method="t_union"``, shipped until the calibrated
design replaced it) keeps its error control, and where it does not (issue 27, item 1):
family-wise error by simulation over the distributions of the class the issue names, and
the t statistic's worst-case critical values across that class.

    python -m benchmarks.class_errors --json benchmarks/results/class-errors.json \
        --markdown benchmarks/results/class-errors.md     # about 3 minutes on 1 CPU core

1. **Family-wise error of 0d99cce's design** (``decisions.simulate``: repeated t
   intervals, Bonferroni over a family of ``--family-size``, O'Brien-Fleming spending over
   looks at 5, 10, ..., ``--max-seeds``): ``--families`` simulated families per scenario,
   every comparison of a family at the same true difference delta, per-seed differences
   of sd ``--sd`` drawn from one shape: normal, t(3), standardized gamma of skewness
   +-0.5, +-1.0, +-1.5, and normal with 3% of seeds shifted by +-5 sd. A family errs when
   any verdict is wrong: better or worse at delta = 0; worse or equivalent at delta = +m;
   better or equivalent at delta = -m. The promise is an error of at most alpha; the
   table gives each rate with two Monte-Carlo standard errors.
2. **Worst-case critical values** (``--quantiles``): the upper (1 - q) quantile of the
   one-sample t statistic at n seeds under each shape (centred: the null), the largest
   over the class, for tail levels q; what a look calibrated to hold over the whole class
   must use instead of Student's t. numpy and scipy only, no training.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import special

from benchmarks.common import print_and_write
from jaxcnn.platform import environment as env
from jaxcnn.stats import calibration, decisions

PROG = "python -m benchmarks.class_errors"
SHAPES = ("normal", "t3", "gamma+0.5", "gamma-0.5", "gamma+1.0", "gamma-1.0", "gamma+1.5",
          "gamma-1.5", "outliers+5", "outliers-5")
OUTLIER_SHARE = 0.03


def draw(rng: np.random.Generator, shape: str, size: tuple[int, ...]) -> np.ndarray:
    """Draws of mean 0 and sd 1 from one shape of the class (calibration's shapes;
    "outliers+5" here is its "outliers0.03+5")."""
    if shape.startswith("outliers"):
        shape = f"outliers{OUTLIER_SHARE:.2f}{shape[8:]}"
    return calibration.draw(rng, shape, size)


def wrong(codes: np.ndarray, delta: float) -> np.ndarray:
    """Per family (studies,): whether any of its verdicts is wrong at true difference delta."""
    bad = {decisions.BETTER: delta <= 0, decisions.WORSE: delta >= 0,
           decisions.EQUIVALENT: delta != 0}
    return np.any(np.isin(codes, [code for code, is_bad in bad.items() if is_bad]), axis=1)


def error_table(args, rng: np.random.Generator) -> list[dict]:
    design = decisions.Design(first_round=5, round_size=5, max_seeds=args.max_seeds,
                              margin=args.margin, alpha=args.alpha, method="t_union")
    rows = []
    for shape in SHAPES:
        row = {"shape": shape}
        for multiple in (0.0, 1.0, -1.0):
            delta = multiple * args.margin
            x = delta + args.sd * draw(rng, shape, (args.families, args.family_size,
                                                    args.max_seeds))
            codes, _ = decisions.simulate(x, design, family_size=args.family_size)
            rate = float(wrong(codes, delta).mean())
            se = float(np.sqrt(rate * (1 - rate) / args.families))
            row[f"{multiple:+g}m"] = {"rate": round(rate, 4), "two_se": round(2 * se, 4)}
        rows.append(row)
    return rows


def t_statistics(x: np.ndarray, sizes: list[int]) -> np.ndarray:
    """(paths, len(sizes)) one-sample t statistics of the first n draws of each path."""
    total, squares = np.cumsum(x, -1), np.cumsum(x * x, -1)
    out = []
    for n in sizes:
        mean = total[:, n - 1] / n
        var = (squares[:, n - 1] - n * mean * mean) / (n - 1)
        out.append(mean / np.sqrt(np.maximum(var, 1e-300) / n))
    return np.stack(out, -1)


def quantile_table(args, rng: np.random.Generator) -> dict:
    sizes, levels = args.sizes, args.levels
    per_shape = {}
    for shape in SHAPES:
        t = np.concatenate([t_statistics(draw(rng, shape, (args.paths // 8, max(sizes))), sizes)
                            for _ in range(8)])
        per_shape[shape] = np.quantile(t, [1 - q for q in levels], axis=0).round(3).tolist()
    worst = np.max([per_shape[s] for s in SHAPES], axis=0)
    student = [[float(-special.stdtrit(n - 1, q)) for n in sizes] for q in levels]
    return {"sizes": sizes, "levels": levels, "per_shape": per_shape,
            "worst": worst.round(3).tolist(), "student_t": np.round(student, 3).tolist(),
            "worst_shape": [[SHAPES[int(np.argmax([per_shape[s][i][j] for s in SHAPES]))]
                             for j in range(len(sizes))] for i in range(len(levels))]}


def markdown(result: dict) -> str:
    a = result["alpha"]
    lines = ["# Family-wise error of 0d99cce's design (t_union) across the class\n",
             f"`{result['command']}`\n",
             f"{result['families']} simulated families of {result['family_size']} comparisons "
             f"per cell, per-seed differences of sd {result['sd']}, margin m = "
             f"{result['margin']}, looks at 5, 10, ..., {result['max_seeds']} (0d99cce's "
             f"design); alpha = {a}. Each cell: the share of families with any wrong verdict "
             "(+- two Monte-Carlo standard errors); **bold** where it exceeds alpha by more "
             "than that.\n",
             "| shape | delta = 0 | delta = +m | delta = -m |", "|---|---|---|---|"]
    for row in result["errors"]:
        cells = []
        for key in ("+0m", "+1m", "-1m"):
            c = row[key]
            text = f"{c['rate']:.4f} ± {c['two_se']:.4f}"
            cells.append(f"**{text}**" if c["rate"] - c["two_se"] > a else text)
        lines.append(f"| {row['shape']} | " + " | ".join(cells) + " |")
    q = result.get("quantiles")
    if q:
        lines += ["", "## Worst-case critical values of the t statistic over the class\n",
                  f"Upper (1 - q) quantiles of the one-sample t statistic at n seeds under the "
                  f"null, {q['paths']} paths per shape: the largest over the shapes above "
                  "(and which shape), beside Student's t.\n",
                  "| q | " + " | ".join(f"n = {n}" for n in q["sizes"]) + " |",
                  "|---|" + "---|" * len(q["sizes"])]
        for i, level in enumerate(q["levels"]):
            lines.append(f"| {level:g} | " + " | ".join(
                f"{w:.2f} ({s}; t {t:.2f})" for w, s, t in
                zip(q["worst"][i], q["worst_shape"][i], q["student_t"][i])) + " |")
    return "\n".join(lines) + "\n"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", type=int, default=20_000,
                        help="simulated families per scenario (default 20000)")
    parser.add_argument("--family-size", type=int, default=15,
                        help="comparisons per family (default 15: the three studies')")
    parser.add_argument("--max-seeds", type=int, default=30, help="budget (default 30)")
    parser.add_argument("--margin", type=float, default=1.0, help="m, points (default 1)")
    parser.add_argument("--alpha", type=float, default=0.05, help="family-wise error (0.05)")
    parser.add_argument("--sd", type=float, default=1.5, help="sd of differences (1.5)")
    parser.add_argument("--quantiles", action="store_true",
                        help="also the worst-case critical values of the t statistic")
    parser.add_argument("--paths", type=int, default=2_000_000,
                        help="paths per shape for --quantiles (default 2000000)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 10, 15, 20, 30, 45, 60],
                        help="seed counts for --quantiles")
    parser.add_argument("--levels", type=float, nargs="+", default=[1e-4, 1e-3, 3.3e-3],
                        help="tail levels q for --quantiles")
    parser.add_argument("--seed", type=int, default=0, help="numpy Generator seed")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--markdown", type=Path, default=None, help="and the tables here")
    args = parser.parse_args(argv)
    if args.families < 100 or args.family_size < 1 or args.max_seeds < 5:
        parser.error("--families >= 100, --family-size >= 1 and --max-seeds >= 5, please")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    rng = np.random.default_rng(args.seed)
    result = {"command": " ".join([PROG, *sys.argv[1:]]), "alpha": args.alpha,
              "families": args.families, "family_size": args.family_size,
              "max_seeds": args.max_seeds, "margin": args.margin, "sd": args.sd,
              "errors": error_table(args, rng),
              "environment": {"versions": {k: v for k, v in env.versions().items()
                                           if k in ("python", "numpy", "scipy")},
                              "git_commit": env.git_commit()}}
    if args.quantiles:
        result["quantiles"] = {"paths": args.paths, **quantile_table(args, rng)}
    print_and_write(markdown(result), result, args.json, args.markdown)


if __name__ == "__main__":
    main()

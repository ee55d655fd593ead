r"""Error and power of the sequential verdicts (``--seeds auto``) by simulation: the
shipped design (``method="calibrated"``) beside 0d99cce's (``method="t_union"``).

    python -m benchmarks.sequential_design --json benchmarks/results/sequential-design.json \
        --markdown benchmarks/results/sequential-design.md   # about 25 minutes on 1 core

1. **Error table.** ``--families`` simulated families of ``--family-size`` comparisons
   per scenario, every comparison at the same true mean difference delta (0, +-m/2,
   +-m, +-2m), per-seed differences of sd ``--sd``: every shape of the class
   (``jaxcnn.stats.calibration.SHAPES``); shapes inside the class that the calibration
   never saw (t with 4 degrees of freedom, gamma of skewness +-1.25, 2 % of seeds at
   +-4 sd); and the committed studies' real per-seed differences (``--results``),
   resampled with replacement, centred and scaled to sd ``--sd``: all of them pooled,
   and each comparison alone. A family errs when any verdict is wrong: better when
   delta <= 0, worse when delta >= 0, equivalent when |delta| >= m. The promise is at
   most alpha; each rate comes with two Monte-Carlo standard errors.
2. **Power table.** Normal differences of sd ``--sd``: the share left undecided at
   delta = 0 and the mean seeds a comparison uses at delta = 2 (and 0), for each design
   at each budget.
3. **Both sources** (``--parts images``): the test images read as a sample. Each
   simulated comparison gets a test-set error common to all its seeds (normal, s.e.
   ``--image-se`` points) on top of its per-seed differences; the shipped design with
   the two-way interval (the images' variance known: on 10,000 images its estimate has
   about 10,000 degrees of freedom) beside the same data read as fixed, and its power
   at each image s.e.

numpy and scipy only, no training.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import numpy as np

from benchmarks.common import print_and_write
from jaxcnn.platform import environment as env
from jaxcnn.stats import calibration, decisions

PROG = "python -m benchmarks.sequential_design"
MULTIPLES = (0.0, 0.5, -0.5, 1.0, -1.0, 2.0, -2.0)  # true differences in margins
UNSEEN = ("t4", "gamma+1.25", "gamma-1.25", "outliers0.02+4", "outliers0.02-4")


def designs(budget: int) -> dict[str, decisions.Design]:
    """The designs compared at one budget: shipped, and 0d99cce's."""
    return {"calibrated (shipped)": decisions.Design(max_seeds=budget),
            "t_union (0d99cce)": decisions.Design(first_round=5, round_size=5,
                                                  max_seeds=budget, method="t_union")}


def draw(rng: np.random.Generator, scenario: str, size: tuple, real: dict) -> np.ndarray:
    """Mean 0, sd 1 draws of one scenario: a shape name, or "real:NAME" (resampled)."""
    if scenario.startswith("real:"):
        pool = real[scenario[5:]]
        return rng.choice((pool - pool.mean()) / pool.std(), size=size)
    if scenario == "t4":
        return rng.standard_t(4, size) / np.sqrt(2.0)
    return calibration.draw(rng, scenario, size)


def wrong(codes: np.ndarray, delta: float, margin: float) -> np.ndarray:
    """Per family: whether any verdict is wrong at true difference delta."""
    bad = [code for code, is_bad in ((decisions.BETTER, delta <= 0),
                                     (decisions.WORSE, delta >= 0),
                                     (decisions.EQUIVALENT, abs(delta) >= margin)) if is_bad]
    return np.any(np.isin(codes, bad), axis=1)


def real_differences(folder: Path) -> dict[str, np.ndarray]:
    """comparison -> its per-seed test-accuracy differences (config minus reference) in
    the committed results, for every comparison with at least 10 paired seeds."""
    out = {}
    for path in sorted(folder.glob("*/results.json")):
        results = json.loads(path.read_text())
        reference = results["metadata"].get("reference")
        configs = results["configs"]
        if reference not in configs:
            continue
        base = {s["seed"]: s["test_accuracy"] for s in configs[reference]["seeds"]}
        for name, record in configs.items():
            pairs = [(s["test_accuracy"], base.get(s["seed"])) for s in record["seeds"]]
            d = np.array([a - b for a, b in pairs if a is not None and b is not None])
            if name != reference and d.size >= 10 and d.std() > 0:
                out[f"{path.parent.name}/{name}"] = d
    if out:
        out["all (pooled)"] = np.concatenate([(d - d.mean()) / d.std() for d in out.values()])
    return out


def error_table(args, rng: np.random.Generator, real: dict) -> list[dict]:
    scenarios = (*calibration.SHAPES, *UNSEEN, *(f"real:{k}" for k in real))
    rows = []
    for budget in args.budgets:
        for label, design in designs(budget).items():
            design = decisions.Design(**{**design.__dict__, "margin": args.margin,
                                         "alpha": args.alpha})
            for scenario in scenarios:
                row = {"budget": budget, "design": label, "scenario": scenario}
                for multiple in MULTIPLES:
                    delta = multiple * args.margin
                    x = delta + args.sd * draw(rng, scenario, (args.families, args.family_size,
                                                               budget), real)
                    codes, _ = decisions.simulate(x, design, family_size=args.family_size)
                    rate = float(wrong(codes, delta, args.margin).mean())
                    row[f"{multiple:+g}m"] = {
                        "rate": round(rate, 4),
                        "two_se": round(2 * float(np.sqrt(rate * (1 - rate) / args.families)), 4)}
                rows.append(row)
                print(f"{budget} {label} {scenario}: "
                      + " ".join(f"{k} {v['rate']:.4f}" for k, v in row.items()
                                 if isinstance(v, dict)), file=sys.stderr, flush=True)
    return rows


IMAGE_SCENARIOS = ("normal", "t3", "gamma+1.5", "gamma-1.5", "outliers0.03+5", "outliers0.03-5",
                   "real:all (pooled)")


def images_table(args, rng: np.random.Generator, real: dict) -> list[dict]:
    """Family-wise error with seeds and test images both varying (see the module doc)."""
    rows = []
    for budget in args.budgets:
        design = decisions.Design(max_seeds=budget, margin=args.margin, alpha=args.alpha)
        for image_se in args.image_se:
            for scenario in (s for s in IMAGE_SCENARIOS if s[5:] in real or ":" not in s):
                row = {"budget": budget, "image_se": image_se, "scenario": scenario}
                for multiple in MULTIPLES:
                    delta = multiple * args.margin
                    size = (args.families, args.family_size, budget)
                    x = delta + args.sd * draw(rng, scenario, size, real)
                    x += image_se * rng.standard_normal((*size[:2], 1))
                    readings = {"sample": image_se ** 2, "fixed": 0.0}
                    for reading, image_var in readings.items():
                        if reading == "fixed" and multiple != 0:
                            continue  # the fixed reading's failure shows at delta 0
                        codes, _ = decisions.simulate(x, design, family_size=args.family_size,
                                                      image_var=image_var)
                        rate = float(wrong(codes, delta, args.margin).mean())
                        row[f"{multiple:+g}m {reading}"] = {
                            "rate": round(rate, 4), "two_se": round(2 * float(
                                np.sqrt(rate * (1 - rate) / args.families)), 4)}
                rows.append(row)
                print(f"{budget} images {image_se} {scenario}: " + " ".join(
                    f"{k} {v['rate']:.4f}" for k, v in row.items() if isinstance(v, dict)),
                    file=sys.stderr, flush=True)
    return rows


def images_power(args, rng: np.random.Generator) -> list[dict]:
    """Undecided at delta 0 and mean seeds at delta 2 of the shipped design, normal
    differences, at each image s.e. (0: the seeds alone)."""
    rows = []
    for budget in args.budgets:
        design = decisions.Design(max_seeds=budget, margin=args.margin, alpha=args.alpha)
        for image_se in (0.0, *args.image_se):
            row = {"budget": budget, "image_se": image_se}
            for delta in (0.0, 2.0):
                x = delta + args.sd * rng.standard_normal((args.power_studies, 1, budget))
                x += image_se * rng.standard_normal((args.power_studies, 1, 1))
                codes, used = decisions.simulate(x, design, family_size=args.family_size,
                                                 image_var=image_se ** 2)
                row[f"delta {delta:g}"] = {
                    "undecided": round(float(np.mean(codes == decisions.UNDECIDED)), 4),
                    "mean_seeds": round(float(used.mean()), 2)}
            rows.append(row)
    return rows


def alternatives(budget: int) -> dict[str, decisions.Design]:
    """The power table's designs: the two above, and the calibrated one with another
    first look or no reserve (what each design choice costs or buys)."""
    out = designs(budget)
    for first in (10, 18):
        out[f"calibrated, first look {first}"] = decisions.Design(first_round=first,
                                                                  max_seeds=budget)
    out["calibrated, no reserve"] = decisions.Design(max_seeds=budget, reserve=0.0)
    return out


def power_table(args, rng: np.random.Generator) -> list[dict]:
    rows = []
    for budget in args.budgets:
        for label, design in alternatives(budget).items():
            design = decisions.Design(**{**design.__dict__, "margin": args.margin,
                                         "alpha": args.alpha})
            row = {"budget": budget, "design": label, "looks": design.look_sizes()}
            if design.method == "calibrated":
                bounds = design.boundaries(args.alpha / args.family_size)
                row["first_critical"] = round(bounds.direction[0], 2)
                row["last_equivalence_critical"] = round(bounds.equivalence[-1], 2)
            for delta in (0.0, 2.0):
                x = delta + args.sd * rng.standard_normal((args.power_studies, 1, budget))
                codes, used = decisions.simulate(x, design, family_size=args.family_size)
                row[f"delta {delta:g}"] = {
                    "undecided": round(float(np.mean(codes == decisions.UNDECIDED)), 4),
                    "mean_seeds": round(float(used.mean()), 2)}
            rows.append(row)
    return rows


def images_markdown(out: dict) -> str:
    a = out["arguments"]
    lines = [f"# Sequential verdicts with the test images read as a sample ({out['date']})", "",
             f"`{out['command']}` on {out['machine']}, commit {out['commit']}.", "",
             f"Family of {a['family_size']}, alpha {a['alpha']}, margin {a['margin']}, "
             f"per-seed sd {a['sd']}; each comparison's test-set error is normal with the "
             "image s.e. given, common to all its seeds. sample: the shipped two-way "
             "interval; fixed: the same data with the images' part left out (the reading "
             "of `--test-set fixed`, not meant for this question).", "",
             "## Power (normal differences)", "",
             "| budget | image s.e. | undecided at delta 0 | mean seeds at delta 0 | "
             "undecided at delta 2 | mean seeds at delta 2 |", "|---|---|---|---|---|---|"]
    for r in out["images_power"]:
        z, t = r["delta 0"], r["delta 2"]
        lines.append(f"| {r['budget']} | {r['image_se']:g} | {z['undecided']:.3f} | "
                     f"{z['mean_seeds']:.1f} | {t['undecided']:.3f} | {t['mean_seeds']:.1f} |")
    keys = [k for k in out["images"][0] if isinstance(out["images"][0][k], dict)]
    lines += error_rows(out["images"], keys, keys, "image_se", "image s.e.", a)
    return "\n".join(lines) + "\n"


def error_rows(rows: list[dict], keys: list[str], headers: list[str], by: str, by_name: str,
               a: dict) -> list[str]:
    """The family-wise error table: one line per row of ``rows`` (its budget, ``by`` and
    scenario), a "rate +- two s.e." cell per key, bold above alpha by more than that."""
    lines = ["", f"## Family-wise error ({a['families']:,} families a cell; rate +- two "
             "Monte-Carlo s.e.; **bold**: above alpha by more than that)", "",
             f"| budget | {by_name} | scenario | " + " | ".join(headers) + " |",
             "|---|---|---|" + "---|" * len(keys)]
    for r in rows:
        cells = []
        for k in keys:
            rate, two = r[k]["rate"], r[k]["two_se"]
            text = f"{rate:.4f} ± {two:.4f}"
            cells.append(f"**{text}**" if rate - two > a["alpha"] else text)
        value = f"{r[by]:g}" if isinstance(r[by], float) else r[by]
        lines.append(f"| {r['budget']} | {value} | {r['scenario']} | " + " | ".join(cells)
                     + " |")
    return lines


def markdown(out: dict) -> str:
    a = out["arguments"]
    lines = [f"# Sequential verdicts: error and power ({out['date']})", "",
             f"`{out['command']}` on {out['machine']}, commit {out['commit']}.", "",
             f"Family of {a['family_size']}, alpha {a['alpha']}, margin {a['margin']}, "
             f"per-seed sd {a['sd']}. The class the calibrated design is built for: "
             f"{calibration.CLASS}.", "", "## Power (normal differences)", "",
             "| budget | design | looks | critical values (first look, last equivalence) | "
             "undecided at delta 0 | mean seeds at delta 0 | undecided at delta 2 | "
             "mean seeds at delta 2 |", "|---|---|---|---|---|---|---|---|"]
    for r in out["power"]:
        z, t = r["delta 0"], r["delta 2"]
        critical = (f"{r['first_critical']}, {r['last_equivalence_critical']}"
                    if "first_critical" in r else "t quantiles")
        lines.append(f"| {r['budget']} | {r['design']} | {r['looks'][0]}..{r['looks'][-1]} "
                     f"({len(r['looks'])}) | {critical} | {z['undecided']:.3f} | "
                     f"{z['mean_seeds']:.1f} | {t['undecided']:.3f} | {t['mean_seeds']:.1f} |")
    keys = [f"{m:+g}m" for m in MULTIPLES]
    over = {}
    for r in out["errors"]:
        worst = max(r[k]["rate"] - r[k]["two_se"] for k in keys)
        if worst > a["alpha"]:
            over.setdefault(f"{r['design']} at {r['budget']}", []).append(
                f"{r['scenario']} ({max(r[k]['rate'] for k in keys):.3f})")
    lines += ["", "The real scenarios resample one committed comparison's per-seed differences "
              "(a discrete distribution of that many values; `all (pooled)`: every comparison's, "
              "each standardized): " + ", ".join(
                  f"{k} ({v['seeds']} seeds, skewness {v['skewness']:+.2f})"
                  for k, v in out["real_comparisons"].items()) + "."]
    lines += ["", "## Where the 5% does not hold", ""] + (
        [f"- {design}: {', '.join(where)}" for design, where in over.items()]
        or ["- nowhere in these tables"])
    lines += error_rows(out["errors"], keys, [f"delta {k}" for k in keys], "design", "design", a)
    return "\n".join(lines) + "\n"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budgets", type=int, nargs="+", default=[30, 60],
                        help="budgets (max seeds) to simulate (default: 30 60)")
    parser.add_argument("--family-size", type=int, default=15, help="comparisons a family")
    parser.add_argument("--margin", type=float, default=1.0, help="m, accuracy points")
    parser.add_argument("--alpha", type=float, default=0.05, help="family-wise error rate")
    parser.add_argument("--sd", type=float, default=1.5, help="sd of per-seed differences")
    parser.add_argument("--families", type=int, default=20_000, help="families per cell")
    parser.add_argument("--power-studies", type=int, default=40_000,
                        help="simulated comparisons per power cell")
    parser.add_argument("--results", type=Path, default=Path("experiments/results"),
                        help="folder of committed results.json files (real differences)")
    parser.add_argument("--parts", choices=("design", "images"), default="design",
                        help="design: the error and power tables of the design (default); "
                        "images: seeds and test images both varying")
    parser.add_argument("--image-se", type=float, nargs="+", default=[0.1, 0.3],
                        help="--parts images: the test images' s.e. in points "
                        "(default: 0.1 0.3)")
    parser.add_argument("--seed", type=int, default=0, help="numpy Generator seed")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--markdown", type=Path, default=None, help="and a table here")
    args = parser.parse_args(argv)
    if args.families < 100 or args.power_studies < 100:
        parser.error("--families and --power-studies: use at least 100")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    rng = np.random.default_rng(args.seed)
    real = real_differences(args.results)
    out = {"command": " ".join([PROG, *(argv if argv is not None else sys.argv[1:])]),
           "date": datetime.date.today().isoformat(),
           "machine": env.cpu_model() or "an unnamed CPU", "commit": env.git_commit(),
           "dirty": env.git_dirty(),
           "arguments": {k: str(v) if isinstance(v, Path) else v
                         for k, v in vars(args).items()},
           "real_comparisons": {k: {"seeds": int(v.size),
                                    "skewness": round(calibration.skewness(v), 3)}
                                for k, v in real.items()}}
    if args.parts == "images":
        out["images_power"] = images_power(args, rng)
        out["images"] = images_table(args, rng, real)
        print_and_write(images_markdown(out), out, args.json, args.markdown)
        return
    out["power"] = power_table(args, rng)
    out["errors"] = error_table(args, rng, real)
    print_and_write(markdown(out), out, args.json, args.markdown)


if __name__ == "__main__":
    main()

r"""How much of a paired difference's uncertainty comes from the test images (issue 27,
item 3, measured): the seed and the image components of every comparison of a run, from
its stored predictions (``OUT/STUDY/predictions/CONFIG.npz``).

    python -m benchmarks.image_component --out OUT \
        --markdown benchmarks/results/image-component.md

For a comparison of A with its reference B on S seeds and N test images, x[s, i] is 100
times (A right on image i at seed s) minus (B right): the mean of x is the paired mean
difference in points. Read as a crossed two-way layout (seeds and images both samples),
with mean squares MS_seed = N var_s(row means), MS_image = S var_i(column means) and the
residual MS_res:

- seed s.e. = sqrt(MS_seed / (S N)): what the verdicts use today (the s.e. of the mean of
  the per-seed differences, the test images fixed);
- image s.e. = sqrt(max(0, MS_image - MS_res) / (S N)): the part the test images add when
  they are read as a sample of images; it does not shrink with more seeds;
- two-way s.e. = sqrt(seed s.e.^2 + image s.e.^2).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from benchmarks.common import print_and_write
from jaxcnn.stats import two_way
from jaxcnn.training import predictions

PROG = "python -m benchmarks.image_component"


def components(a: np.ndarray, b: np.ndarray, labels: np.ndarray) -> dict:
    """Seed and image components (points) of ``a`` minus ``b``: (S, N) predicted classes
    (:mod:`jaxcnn.stats.two_way`, as the verdicts compute them)."""
    x = 100.0 * ((a == labels).astype(float) - (b == labels).astype(float))
    s, n = x.shape
    seed_se = float(x.mean(1).std(ddof=1) / np.sqrt(s))  # the per-seed differences' s.e.
    image_se = float(np.sqrt(two_way.image_variance(x)))
    return {"seeds": s, "images": n, "mean_difference": round(float(x.mean()), 4),
            "seed_se": round(seed_se, 4), "image_se": round(image_se, 4),
            "two_way_se": round(float(np.hypot(seed_se, image_se)), 4),
            "disagreeing_images": round(float((x.mean(0) != 0).mean()), 4)}


def measure(out: Path) -> list[dict]:
    rows = []
    for results_path in sorted(out.glob("*/results.json")):
        study = results_path.parent
        reference = json.loads(results_path.read_text())["metadata"]["reference"]
        ref = predictions.path_of(study, reference)
        if not ref.exists():
            continue
        with np.load(ref) as f:
            b, seeds_b, labels = f["test"], list(f["seeds"]), f["test_labels"]
        for path in sorted((study / "predictions").glob("*.npz")):
            if path.stem == reference:
                continue
            with np.load(path) as f:
                a, seeds_a = f["test"], list(f["seeds"])
            common = sorted(set(seeds_a) & set(seeds_b))
            a = a[[seeds_a.index(s) for s in common]]
            rows.append({"comparison": f"{study.name}/{path.stem} vs {reference}",
                         **components(a, b[[seeds_b.index(s) for s in common]], labels)})
    return rows


def markdown(result: dict) -> str:
    lines = ["# Seed and test-image components of paired differences\n",
             f"`{result['command']}`, from `{result['out']}`.\n",
             "Points. seed s.e.: the verdicts' today (test images fixed); image s.e.: what "
             "the test images add read as a sample; disagreeing: the share of images whose "
             "mean outcome over seeds differs between the two.\n",
             "| comparison | seeds | images | mean diff | seed s.e. | image s.e. | two-way s.e. "
             "| disagreeing |", "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['comparison']} | {r['seeds']} | {r['images']} | "
                     f"{r['mean_difference']:+.2f} | {r['seed_se']:.3f} | {r['image_se']:.3f} | "
                     f"{r['two_way_se']:.3f} | {r['disagreeing_images']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True,
                        help="a run's --out holding OUT/STUDY/predictions/")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--markdown", type=Path, default=None, help="and the table here")
    args = parser.parse_args(argv)
    rows = measure(args.out)
    if not rows:
        parser.error(f"{args.out}: no stored predictions of a configuration and its reference "
                     "(runs since 2df59c0 store them)")
    result = {"command": " ".join([PROG, *sys.argv[1:]]), "out": str(args.out), "rows": rows}
    print_and_write(markdown(result), result, args.json, args.markdown)


if __name__ == "__main__":
    main()

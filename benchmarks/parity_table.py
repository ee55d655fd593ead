"""PARITY.md's tables from one run of ``benchmarks/parity_check.sh``.

Reads FOLDER/jaxcnn/<study>/results.json (``experiments.all --torch-parity``) and
FOLDER/torch/<setting>.json (``benchmarks.torch_reference``), and prints, in Markdown,
jaxcnn against the seed's torch loop per configuration, then the notebook's claims under
the notebook's protocol (paired by seed, jaxcnn's runs).

    python -m benchmarks.parity_table FOLDER
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from jaxcnn.studies import STUDIES

# study/config -> the torch_reference run that trains the same protocol (StepLR(5) never
# fires in 2 epochs, so the step schedule is the default run).
TORCH_RUN = {"regularization/baseline": "default", "regularization/l2": "l2",
             "regularization/dropout": "dropout", "initialization/torch": "default",
             "initialization/glorot": "xavier", "initialization/he": "kaiming",
             "schedules/step": "default", "schedules/exponential": "exponential",
             "schedules/cyclic": "cyclic"}


def accuracies(seeds: list[dict]) -> dict[int, float]:
    """seed -> final test accuracy (%)."""
    return {s["seed"]: s["test_accuracy"] for s in seeds}


def mean_std(values: dict[int, float]) -> str:
    v = np.array([values[k] for k in sorted(values)])
    each = ", ".join(f"{x:.2f}" for x in v)
    return f"{v.mean():.2f} ± {v.std(ddof=1):.2f} ({each})"


def parity_rows(folder: Path) -> list[str]:
    rows = ["| study/config | jaxcnn --torch-parity | seed's torch loop | torch run | diff |",
            "|---|---|---|---|---|"]
    for key, run in TORCH_RUN.items():
        study, config = key.split("/")
        ours = accuracies(json.loads((folder / "jaxcnn" / study / "results.json").read_text())
                          ["configs"][config]["seeds"])
        theirs = accuracies(json.loads((folder / "torch" / f"{run}.json").read_text())["runs"])
        diff = np.mean(list(ours.values())) - np.mean(list(theirs.values()))
        rows.append(f"| {key} | {mean_std(ours)} | {mean_std(theirs)} | {run} | {diff:+.2f} |")
    return rows


def claim_rows(folder: Path) -> list[str]:
    rows = ["| claim | tested as | jaxcnn --torch-parity, mean paired diff |", "|---|---|---|"]
    for name, study in STUDIES.items():
        configs = json.loads((folder / "jaxcnn" / name / "results.json").read_text())["configs"]
        for claim in study.claims:
            if claim.better not in configs or claim.worse not in configs:
                continue
            if claim.epoch is None:
                a, b = (accuracies(configs[c]["seeds"]) for c in (claim.better, claim.worse))
                when = "end of training (test)"
            else:
                a, b = ({s["seed"]: s["history"]["val_accuracy"][claim.epoch - 1]
                         for s in configs[c]["seeds"]} for c in (claim.better, claim.worse))
                when = f"after epoch {claim.epoch} (per-epoch evaluation)"
            common = sorted(set(a) & set(b))
            diff = np.mean([a[s] - b[s] for s in common])
            rows.append(f"| `{claim.better}` > `{claim.worse}` | {when} | {diff:+.2f} "
                        f"({len(common)} seeds) |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="parity_check.sh's runs, unpacked")
    args = parser.parse_args()
    print("\n".join(parity_rows(args.folder) + [""] + claim_rows(args.folder)))


if __name__ == "__main__":
    main()

"""Wall time of the whole study with jaxcnn, against the PyTorch reference's estimate.

    python -m benchmarks.study_time --data ../shared/data/cifar10-jpeg.tar.xz \
        --seeds 5 --epochs 2 --out runs/study_time --json benchmarks/results/study-time-cpu.json

Runs the three studies (every configuration x seeds x epochs) in one process,
into a fresh output folder, and times it end to end: data loading (from the
cache), compilation, training, evaluation, checkpoints, figures and
statistics. ``--from-results DIR`` instead sums the per-configuration wall
seconds of finished studies (without process start and data loading).

The torch reference is not run for the whole study: its per-image training
and evaluation times are measured on the same data (the seed's loop, one
model, after a warm-up), and multiplied out to the same work: every model-epoch
trains on the same training images and evaluates the validation images, and
every model evaluates the test set once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from benchmarks.common import Timer, environment, write_json


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-examples", type=int, default=None)
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--out", type=Path, default=Path("runs/study_time"),
                        help="where the studies write (must not hold earlier results)")
    parser.add_argument("--from-results", type=Path, default=None,
                        help="sum wall seconds of finished studies here instead of running")
    parser.add_argument("--torch-steps", type=int, default=150,
                        help="training steps timed for the torch reference's per-image cost")
    parser.add_argument("--json", type=Path, default=None)
    return parser.parse_args(argv)


STUDIES = ("regularization", "initialization", "schedules")


def run_jaxcnn(args) -> tuple[float, dict]:
    from experiments import initialization, regularization, schedules
    from jaxcnn import cli
    from jaxcnn.study import run_study

    if any((args.out / s / "results.json").exists() for s in STUDIES):
        raise SystemExit(f"{args.out} already holds results; give a fresh --out "
                         "(resumed studies would not be timed)")
    flags = ["--data", args.data, "--seeds", str(args.seeds), "--epochs", str(args.epochs),
             "--out", str(args.out), "--no-progress"]
    if args.train_examples:
        flags += ["--train-examples", str(args.train_examples)]
    all_results = {}
    with Timer() as total:
        for module in (regularization, initialization, schedules):
            study = module.STUDY
            parsed = cli.parse(cli.build_parser(study), flags)
            parsed.argv = flags
            all_results[study.name] = run_study(study, parsed)
    return total.seconds, all_results


def load_results(directory: Path) -> tuple[float, dict]:
    all_results = {s: json.loads((directory / s / "results.json").read_text()) for s in STUDIES}
    seconds = sum(sum(r["metadata"]["wall_seconds"].values()) for r in all_results.values())
    return seconds, all_results


def torch_costs(data: str, device: str, steps: int) -> dict:
    """Seconds per training image and per evaluated image of the seed's loop."""
    import torch
    from torch.utils.data import DataLoader, Subset

    from benchmarks.torch_models import SeedCNN
    from benchmarks.torch_reference import SeedTransformDataset, evaluate
    from jaxcnn.data import load_dataset

    torch_device = "cuda" if device == "gpu" else "cpu"
    ds = load_dataset(data, show_progress=False)
    train = SeedTransformDataset(ds.train_images, ds.train_labels)
    torch.manual_seed(0)
    model = SeedCNN().to(torch_device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    crit = torch.nn.CrossEntropyLoss()
    loader = DataLoader(Subset(train, range(64 * (steps + 20))), batch_size=64, shuffle=True)
    timed_from = 20  # warm-up steps not timed
    start = None
    for i, (x, y) in enumerate(loader):
        if i == timed_from:
            if torch_device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        loss = crit(model(x.to(torch_device)), y.to(torch_device))
        opt.zero_grad()
        loss.backward()
        opt.step()
    if torch_device == "cuda":
        torch.cuda.synchronize()
    train_per_image = (time.perf_counter() - start) / (64 * steps)
    test = SeedTransformDataset(ds.test_images, ds.test_labels)
    with Timer() as t:
        evaluate(model, DataLoader(test, batch_size=64))
    return {"train_seconds_per_image": train_per_image,
            "eval_seconds_per_image": t.seconds / len(test), "timed_train_steps": steps}


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device == "cpu":
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    if args.from_results:
        seconds, all_results = load_results(args.from_results)
        how = f"sum of per-configuration wall seconds in {args.from_results}"
    else:
        seconds, all_results = run_jaxcnn(args)
        how = "one process, end to end (data cache warm, compile included)"
    data_meta = next(iter(all_results.values()))["metadata"]["data"]
    configs = sum(len(r["configs"]) for r in all_results.values())
    seeds, epochs = args.seeds, args.epochs
    model_epochs = configs * seeds * epochs
    costs = torch_costs(args.data, args.device, args.torch_steps)
    n_train, n_val, n_test = (data_meta["train_examples"], data_meta["val_examples"],
                              data_meta["test_examples"])
    per_model_epoch = (costs["train_seconds_per_image"] * n_train
                       + costs["eval_seconds_per_image"] * (0 if data_meta["val_is_test"]
                                                            else n_val))
    torch_seconds = (model_epochs * per_model_epoch
                     + configs * seeds * costs["eval_seconds_per_image"] * n_test)
    payload = {"benchmark": "study_time", "environment": environment(args.device),
               "command": " ".join(["python -m benchmarks.study_time",
                                    *(argv if argv is not None else sys.argv[1:])]),
               "study": {"configs": configs, "seeds": seeds, "epochs": epochs,
                         "model_epochs": model_epochs, "train_images": n_train,
                         "val_images": n_val, "test_images": n_test},
               "jaxcnn_seconds": round(seconds, 1), "jaxcnn_measured_as": how,
               "torch_reference": {**{k: (round(v, 7) if isinstance(v, float) else v)
                                      for k, v in costs.items()},
                                   "seconds_per_model_epoch": round(per_model_epoch, 2),
                                   "estimated_study_seconds": round(torch_seconds, 1)},
               "speedup": round(torch_seconds / seconds, 3)}
    print(json.dumps(payload, indent=1))
    if args.json:
        write_json(args.json, payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

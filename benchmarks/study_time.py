"""Wall time of the whole study with jaxcnn, against the PyTorch reference's estimate.

    python -m benchmarks.study_time --data ../shared/data/cifar10-jpeg.tar.xz \
        --seeds 5 --epochs 2 --out runs/study_time --json benchmarks/results/study-time-cpu.json

Runs the three studies together in one process (every configuration x seeds x
epochs; a model shared by several studies trained once), into a fresh output
folder, and times it end to end: data loading (from the cache), compilation,
training, evaluation, checkpoints, figures and statistics. ``--from-results
DIR`` instead reads the recorded wall time of finished studies.

The torch reference is not run for the whole study: its per-image training
and evaluation times are measured on the same data (the seed's loop, one
model, after a warm-up), and multiplied out to the same work as the notebook
would do it (every configuration of every study, each seed, one model at a
time): every model-epoch trains on the same training images and evaluates the
validation images, and every model evaluates the test set once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from benchmarks.common import Timer, environment, require_torch, write_json
from jaxcnn.cli import HelpFormatter

PROG = "python -m benchmarks.study_time"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--data", required=True, help="any jaxcnn --data source")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per configuration")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs")
    parser.add_argument("--train-examples", type=int, default=None,
                        help="train on a stratified subset of this many images")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                        help="where jax and torch run")
    parser.add_argument("--out", type=Path, default=Path("runs/study_time"),
                        help="where the studies write (must not hold earlier results)")
    parser.add_argument("--from-results", type=Path, default=None,
                        help="sum wall seconds of finished studies here instead of running")
    parser.add_argument("--torch-steps", type=int, default=150,
                        help="training steps timed for the torch reference's per-image cost")
    parser.add_argument("--skip-torch", action="store_true",
                        help="time jaxcnn only (no torch estimate)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    return parser.parse_args(argv)


STUDY_NAMES = ("regularization", "initialization", "schedules")


def run_jaxcnn(args) -> tuple[float, dict]:
    """The three studies in one process, run together (each distinct model trained once)."""
    from jaxcnn.experiment import Experiment, Runtime
    from jaxcnn.pipeline import run_studies
    from jaxcnn.studies import STUDIES

    if any((args.out / s / "results.json").exists() for s in STUDY_NAMES):
        raise SystemExit(f"{PROG}: error: {args.out} already holds results; give a fresh --out "
                         "(resumed studies would not be timed)")
    experiment = Experiment(data=args.data, seeds=args.seeds, epochs=args.epochs,
                            train_examples=args.train_examples)
    with Timer() as total:
        all_results = run_studies(list(STUDIES.values()), experiment,
                                  Runtime(out=args.out, progress=False))
    return total.seconds, all_results


def load_results(directory: Path) -> tuple[float, dict]:
    all_results = {s: json.loads((directory / s / "results.json").read_text())
                   for s in STUDY_NAMES}
    seconds = max(r["metadata"]["total_wall_seconds_this_invocation"]
                  for r in all_results.values())
    return seconds, all_results


def torch_costs(data: str, device: str, steps: int) -> dict:
    """Seconds per training image and per evaluated image of the seed's loop."""
    torch = require_torch(PROG)
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
        evaluate(model, DataLoader(test, batch_size=64), torch_device)
    return {"train_seconds_per_image": train_per_image,
            "eval_seconds_per_image": t.seconds / len(test), "timed_train_steps": steps}


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device == "cpu":
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    if args.from_results:
        seconds, all_results = load_results(args.from_results)
        how = f"the studies' recorded wall seconds in {args.from_results}"
    else:
        seconds, all_results = run_jaxcnn(args)
        how = "one process, end to end (data cache warm, compile included)"
    meta = next(iter(all_results.values()))["metadata"]
    data_meta = meta["data"]
    configs = sum(len(r["configs"]) for r in all_results.values())
    distinct = len({c["identity"] for r in all_results.values() for c in r["configs"].values()})
    seeds, epochs = args.seeds, args.epochs
    model_epochs = configs * seeds * epochs
    base = {"benchmark": "study_time", "environment": environment(args.device),
            "command": " ".join([PROG, *(argv if argv is not None else sys.argv[1:])]),
            "study": {"configs": configs, "distinct_models": distinct, "seeds": seeds,
                      "epochs": epochs, "model_epochs": model_epochs,
                      "train_images": data_meta["train_examples"],
                      "val_images": data_meta["val_examples"],
                      "test_images": data_meta["test_examples"]},
            "jaxcnn_seconds": round(seconds, 1), "jaxcnn_measured_as": how,
            "jaxcnn_compile_seconds": meta.get("compile_seconds"),
            "jaxcnn_runtime": meta.get("runtime")}
    if args.skip_torch:
        print(json.dumps(base, indent=1))
        if args.json:
            write_json(args.json, base)
        return 0
    costs = torch_costs(args.data, args.device, args.torch_steps)
    n_train, n_val, n_test = (data_meta["train_examples"], data_meta["val_examples"],
                              data_meta["test_examples"])
    per_model_epoch = (costs["train_seconds_per_image"] * n_train
                       + costs["eval_seconds_per_image"] * (0 if data_meta["val_is_test"]
                                                            else n_val))
    torch_seconds = (model_epochs * per_model_epoch
                     + configs * seeds * costs["eval_seconds_per_image"] * n_test)
    payload = {**base,
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

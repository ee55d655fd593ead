"""Training throughput: jaxcnn against the PyTorch reference and the tuned PyTorch peer.

    python -m benchmarks.throughput --device cpu --seeds 1 2 4 --steps 40 --repeats 3 \
        --json benchmarks/results/throughput-cpu.json

Times training only (no evaluation) of the seed's CNN, batch 64, Adam, fp32, on
random CIFAR-shaped uint8 data (throughput does not depend on the pixels):

- ``torch_reference``: the seed's loop, one model, a DataLoader whose Dataset
  converts and normalises each sample (ToTensor + Normalize);
- ``torch_tuned/loop`` and ``torch_tuned/vmap``: S models on resident data
  (see ``torch_tuned.py``); the better of the two is the peer to beat;
- ``jaxcnn/<batching>[+<conv>]``: S members (the baseline configuration, seeds
  0..S-1) trained by one compiled epoch program (``lax.scan`` over the steps),
  batched by ``vmap``, ``map`` (``lax.map``) or ``threads`` (one-member programs
  on one worker thread per core);
- ``jaxcnn/study[+<conv>]``: the study program: every distinct configuration of
  the three studies (9 in default mode) x S seeds, one program, the device's
  default batching; images/s counts every member's images.

Every implementation is warmed up first (compile time reported separately), then
all are timed in turn, ``--repeats`` rounds alternating implementations, and
the median is reported. Model-epochs per hour is images/s * 3600 / 50,000.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import numpy as np

from benchmarks.common import (
    Timer,
    environment,
    model_epochs_per_hour,
    print_and_write,
    random_cifar,
    require_torch,
    save_figure,
)
from jaxcnn.cli import HelpFormatter

JAX_STRATEGIES = ("vmap", "map", "threads", "study")
PROG = "python -m benchmarks.throughput"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__.split("\n")[0],
        formatter_class=HelpFormatter)
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                        help="where jax and torch run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 4],
                        help="numbers of seeds S (members per configuration) trained at once")
    parser.add_argument("--strategies", nargs="+", choices=JAX_STRATEGIES,
                        default=list(JAX_STRATEGIES),
                        help="jaxcnn member batchings to time; 'study' is every distinct "
                             "configuration x S seeds in one program")
    parser.add_argument("--conv-impls", nargs="+", default=["auto"],
                        choices=("auto", "winograd", "patches", "xla"),
                        help="jaxcnn convolutions (auto: winograd on CPU, patches on GPU)")
    parser.add_argument("--steps", type=int, default=40,
                        help="optimizer steps (batches of 64) per timed epoch")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed rounds; the median is reported")
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=("torch_reference", "torch_tuned", "jaxcnn"),
                        help="implementations to leave out")
    parser.add_argument("--torch-tuned-max-seeds", type=int, default=16,
                        help="largest S for torch_tuned (its loop grows linearly)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--markdown", type=Path, default=None, help="write the table here")
    parser.add_argument("--png", type=Path, default=None, help="plot the results here")
    return parser.parse_args(argv)


def device_data(images, labels, mesh=None):
    """The arrays as jaxcnn's device-resident splits (validation and test: 256 images),
    replicated over ``mesh``'s devices if given."""
    import numpy as np

    from jaxcnn.data.splits import Normalization, PreparedData, Split
    from jaxcnn.training.runner import DeviceData

    small = Split(images[:256], labels[:256])
    half = Normalization(np.full(3, 0.5, np.float32), np.full(3, 0.5, np.float32))
    return DeviceData(PreparedData(Split(images, labels), small, small, half,
                                   tuple(f"c{i}" for i in range(10)), val_is_test=False), mesh)


def study_configs(steps_per_epoch: int) -> list:
    """Every distinct configuration of the three studies (default mode, 2 epochs)."""
    from jaxcnn.experiment import Experiment
    from jaxcnn.studies import STUDIES, StudyContext

    ctx = StudyContext(Experiment(epochs=2), steps_per_epoch)
    distinct = {}
    for study in STUDIES.values():
        for config in study.build_configs(ctx).values():
            distinct.setdefault(config.identity(), config)
    return list(distinct.values())


class JaxRun:
    """One epoch of ``steps`` steps for a set of members, by one chunk program."""

    def __init__(self, seeds: int, strategy: str, conv: str, images, labels):
        import jax

        from jaxcnn.configs import Configuration, hyperparams, stack
        from jaxcnn.models.model import Network
        from jaxcnn.training.batching import default_batching, default_workers
        from jaxcnn.training.runner import chunk_program, chunks_of
        from jaxcnn.training.train import stack_seed_keys

        self.jax = jax
        self.data = device_data(images, labels)
        steps = len(labels) // 64
        configs = study_configs(steps) if strategy == "study" else [Configuration()]
        batching = default_batching(jax.default_backend()) if strategy == "study" else strategy
        self.members = [(c, s) for c in configs for s in range(seeds)]
        self.workers = default_workers(batching)
        width = 1 if batching == "threads" else len(self.members)
        self.program = chunk_program(Network(), conv, batching, width, len(labels), 64, None)
        chunks = chunks_of(self.members, width)
        self.keys = [stack_seed_keys([s for _, s in chunk]) for chunk in chunks]
        hps = [stack([hyperparams(c, steps) for c, _ in chunk]) for chunk in chunks]
        self.states = [self.program.init(k, h) for k, h in zip(self.keys, hps)]
        self.epoch = 0

    def run(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        def one(i: int):
            self.states[i], _ = self.program.epoch(self.states[i], self.keys[i], self.data,
                                                   self.epoch, i % self.workers)
            self.jax.block_until_ready(self.states[i])

        if self.workers > 1:
            with ThreadPoolExecutor(self.workers) as pool:
                list(pool.map(one, range(len(self.states))))
        else:
            for i in range(len(self.states)):
                one(i)
        self.epoch += 1


class TorchReferenceRun:
    """The seed's loop: DataLoader with per-sample transforms, one model."""

    def __init__(self, images, labels, device: str):
        import torch
        from torch.utils.data import DataLoader

        from benchmarks.torch_models import SeedCNN
        from benchmarks.torch_reference import SeedTransformDataset

        self.torch, self.device = torch, device
        torch.manual_seed(0)
        self.model = SeedCNN().to(device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.loader = DataLoader(SeedTransformDataset(images, labels), batch_size=64,
                                 shuffle=True)
        self.crit = torch.nn.CrossEntropyLoss()

    def run(self) -> None:
        for x, y in self.loader:
            x, y = x.to(self.device), y.to(self.device)
            loss = self.crit(self.model(x), y)
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
        if self.device == "cuda":
            self.torch.cuda.synchronize()


class TorchTunedRun:
    def __init__(self, seeds: int, kind: str, images, labels, device: str):
        import torch

        from benchmarks import torch_tuned

        self.torch, self.device, self.tt = torch, device, torch_tuned
        self.data, self.labels = torch_tuned.resident_dataset(images, labels, device)
        self.trainer = torch_tuned.TRAINERS[kind](list(range(seeds)), device)
        gen = torch.Generator(device="cpu").manual_seed(0)
        self.orders = torch.stack([torch.randperm(len(labels), generator=gen)
                                   for _ in range(seeds)]).to(device)

    def run(self) -> None:
        self.tt.run_epoch(self.trainer, self.data, self.labels, self.orders, 64)
        if self.device == "cuda":
            self.torch.cuda.synchronize()


def images_per_run(impl: str, seeds: int, n: int, steps: int) -> int:
    """Images trained by one timed run of ``impl`` (the study row trains 9 configs x S)."""
    if impl.startswith("jaxcnn/study"):
        return len(study_configs(steps)) * seeds * n
    return seeds * n


def warm_runs(args: argparse.Namespace, images: np.ndarray, labels: np.ndarray
              ) -> tuple[dict[tuple[str, int], object], dict[tuple[str, int], float]]:
    """Builds every (implementation, S) run asked for and runs it twice (compile, then a
    steady call); returns the runs and each one's compile seconds. A run that fails to
    build (out of memory at large S, for example) is skipped with a line."""
    torch_device = "cuda" if args.device == "gpu" else "cpu"
    runs: dict[tuple[str, int], object] = {}
    compile_seconds: dict[tuple[str, int], float] = {}

    def add(key, factory):
        try:
            with Timer() as build:
                run = factory()
            with Timer() as first:
                run.run()
            with Timer() as second:  # a steady run, to separate compile from the first call
                run.run()
        except Exception as err:
            print(f"skipping {key}: {type(err).__name__}: {str(err)[:200]}", file=sys.stderr)
            return
        runs[key] = run
        compile_seconds[key] = max(0.0, build.seconds + first.seconds - second.seconds)
        print(f"warmed {key[0]} S={key[1]}: first {first.seconds:.2f} s (setup "
              f"{build.seconds:.2f} s), steady {second.seconds:.2f} s", file=sys.stderr)

    if "torch_reference" not in args.skip:
        add(("torch_reference", 1), lambda: TorchReferenceRun(images, labels, torch_device))
    if "torch_tuned" not in args.skip:
        for s in [s for s in args.seeds if s <= args.torch_tuned_max_seeds]:
            for kind in ("loop", "vmap"):
                add((f"torch_tuned/{kind}", s),
                    lambda s=s, kind=kind: TorchTunedRun(s, kind, images, labels, torch_device))
    if "jaxcnn" not in args.skip:
        import jax

        from jaxcnn.models.conv import default_conv

        convs = [default_conv(jax.default_backend()) if c == "auto" else c
                 for c in args.conv_impls]
        for conv in dict.fromkeys(convs):
            suffix = f"+{conv}" if len(set(convs)) > 1 else ""
            for s in args.seeds:
                for strategy in args.strategies:
                    if strategy == "threads" and s == 1:
                        continue  # one member: the same program as map
                    add((f"jaxcnn/{strategy}{suffix}", s),
                        lambda s=s, strategy=strategy, conv=conv: JaxRun(
                            s, strategy, conv, images, labels))
    return runs, compile_seconds


def time_runs(runs: dict[tuple[str, int], object], repeats: int
              ) -> dict[tuple[str, int], list[float]]:
    """Seconds of every run in each of ``repeats`` rounds, the order rotated per round
    (no run always first or last)."""
    times: dict[tuple[str, int], list[float]] = {key: [] for key in runs}
    keys = list(runs)
    for r in range(repeats):
        order = keys[r % len(keys):] + keys[: r % len(keys)]
        for key in order:
            with Timer() as t:
                runs[key].run()
            times[key].append(t.seconds)
        print(f"round {r + 1}/{repeats} done", file=sys.stderr)
    return times


def result_rows(times: dict, compile_seconds: dict, n: int, steps: int) -> list[dict]:
    """One row per (implementation, S): images per second from the median run."""
    rows = []
    for (impl, s), seconds in times.items():
        median = statistics.median(seconds)
        images_done = images_per_run(impl, s, n, steps)
        ips = images_done / median
        rows.append({"impl": impl, "seeds": s, "members": images_done // n,
                     "images_per_s": round(ips, 1),
                     "model_epochs_per_hour": round(model_epochs_per_hour(ips), 2),
                     "median_seconds": round(median, 4), "seconds": [round(x, 4) for x in seconds],
                     "compile_seconds": round(compile_seconds[(impl, s)], 2)})
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device == "cpu":
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    if not set(args.skip) >= {"torch_reference", "torch_tuned"}:
        require_torch(PROG)
    n = args.steps * 64
    images, labels = random_cifar(n)
    runs, compile_seconds = warm_runs(args, images, labels)
    rows = result_rows(time_runs(runs, args.repeats), compile_seconds, n, args.steps)
    payload = {"benchmark": "throughput", "environment": environment(args.device),
               "config": {"steps": args.steps, "batch_size": 64, "repeats": args.repeats,
                          "images_per_run_per_member": n, "dtype": "float32",
                          "command": " ".join([PROG, *(argv if argv is not None
                                                       else sys.argv[1:])])},
               "results": rows, "summary": summarize(rows)}
    print_and_write(markdown_table(payload), payload, args.json, args.markdown)
    if args.png:
        plot(payload, args.png)
    return 0


def summarize(rows: list[dict]) -> dict:
    """Ratios: jaxcnn's best at each S against torch_reference and the best torch_tuned."""
    ref = next((r["images_per_s"] for r in rows if r["impl"] == "torch_reference"), None)
    out = {"torch_reference_images_per_s": ref, "by_seeds": {}}
    for s in sorted({r["seeds"] for r in rows}):
        jax_rows = [r for r in rows if r["seeds"] == s and r["impl"].startswith("jaxcnn")]
        tuned = [r for r in rows if r["seeds"] == s and r["impl"].startswith("torch_tuned")]
        if not jax_rows:
            continue
        best = max(jax_rows, key=lambda r: r["images_per_s"])
        entry = {"best_jaxcnn": best["impl"], "jaxcnn_images_per_s": best["images_per_s"]}
        if ref:
            entry["vs_torch_reference"] = round(best["images_per_s"] / ref, 3)
        if tuned:
            peer = max(tuned, key=lambda r: r["images_per_s"])
            entry["best_torch_tuned"] = peer["impl"]
            entry["vs_torch_tuned"] = round(best["images_per_s"] / peer["images_per_s"], 3)
        out["by_seeds"][str(s)] = entry
    return out


def markdown_table(payload: dict) -> str:
    env = payload["environment"]
    card = f", {env['torch_device']}" if env.get("torch_device") else ""
    config = payload["config"]
    lines = [f"Throughput on {env['jax_device']} ({env.get('cpu_model') or ''}, "
             f"{env['host_cpus']} CPUs{card}), {config['steps']} steps of batch 64 "
             f"per run, median of {config['repeats']}; command: `{config['command']}`",
             "", "| implementation | seeds | members | images/s | model-epochs/hour "
             "| first-run overhead s (jaxcnn: compile) |",
             "|---|---|---|---|---|---|"]
    for r in sorted(payload["results"], key=lambda r: (r["seeds"], r["impl"])):
        lines.append(f"| {r['impl']} | {r['seeds']} | {r.get('members', r['seeds'])} | "
                     f"{r['images_per_s']:.0f} | {r['model_epochs_per_hour']:.1f} | "
                     f"{r['compile_seconds']:.1f} |")
    lines += ["", "| seeds | best jaxcnn | x torch_reference (1 model) | x best torch_tuned |",
              "|---|---|---|---|"]
    for s, e in payload["summary"]["by_seeds"].items():
        lines.append(f"| {s} | {e['best_jaxcnn']} | {e.get('vs_torch_reference', 'n/a')} | "
                     f"{e.get('vs_torch_tuned', 'n/a')} ({e.get('best_torch_tuned', '')}) |")
    return "\n".join(lines) + "\n"


def plot(payload: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    impls = sorted({r["impl"] for r in payload["results"]})
    for impl in impls:
        rows = sorted((r for r in payload["results"] if r["impl"] == impl),
                      key=lambda r: r["seeds"])
        xs = [r.get("members", r["seeds"]) for r in rows]
        ys = [r["images_per_s"] for r in rows]
        style = dict(marker="*", markersize=12, ls="none") if len(xs) == 1 else dict(marker="o")
        ax.plot(xs, ys, label=impl, **style)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("models (members) trained at once")
    ax.set_ylabel("training images per second, all members")
    ax.set_title(f"Training throughput, {payload['environment']['jax_device']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


if __name__ == "__main__":
    raise SystemExit(main())

"""The strongest PyTorch peer we could write for the same job.

Same model, batch 64, Adam, fp32; unlike the seed's loop: the whole dataset is
normalised once and stays resident as a tensor (no DataLoader, no per-sample
transforms), and S models train together. Two ways of training S models are
offered and the benchmark keeps whichever is faster at each S:

- ``vmap``: ``torch.func.stack_module_state`` + ``functional_call`` +
  ``vmap(grad(...))`` over the stacked parameters, and one Adam over the
  stacked tensors (``torch.optim.Adam(foreach=True)``);
- ``loop``: S ordinary models stepped one after another on resident data.

``torch.compile`` can wrap the per-step function (``compile=True``); on the CPU
it needs a C++ toolchain and minutes of compile time (see NOTES.md).

``benchmarks.throughput`` imports these trainers as its ``torch_tuned`` rows. Run
alone, the module times them on random CIFAR-shaped data:

    python -m benchmarks.torch_tuned --seeds 1 2 4 --steps 40 --trainer loop vmap
"""

from __future__ import annotations

import argparse
import copy
import sys
import time

import numpy as np

from benchmarks.common import require_torch
from jaxcnn.cli import HelpFormatter, positive_int

torch = require_torch("python -m benchmarks.torch_tuned")

from torch import nn  # noqa: E402
from torch.func import functional_call, grad_and_value, stack_module_state, vmap  # noqa: E402

from benchmarks.torch_models import SeedCNN  # noqa: E402


def resident_dataset(images: np.ndarray, labels: np.ndarray, device: str
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 NHWC -> normalised float32 NCHW on ``device``, once."""
    x = torch.from_numpy(images).to(device).permute(0, 3, 1, 2).contiguous().float().div_(255.0)
    return (x - 0.5) / 0.5, torch.from_numpy(labels.astype(np.int64)).to(device)


class VmapTrainer:
    """S SeedCNNs trained in lockstep through torch.func.vmap."""

    def __init__(self, seeds: list[int], device: str, lr: float = 1e-3, compile: bool = False):
        models = []
        for seed in seeds:
            torch.manual_seed(seed)
            models.append(SeedCNN().to(device))
        params, buffers = stack_module_state(models)
        self.params = {k: v.detach().requires_grad_(False) for k, v in params.items()}
        self.buffers = buffers
        self.base = copy.deepcopy(models[0]).to("meta")
        self.opt = torch.optim.Adam(list(self.params.values()), lr=lr, foreach=True)
        base = self.base

        def loss_fn(p, b, x, y):
            return nn.functional.cross_entropy(functional_call(base, (p, b), (x,)), y)

        step = vmap(grad_and_value(loss_fn), in_dims=(0, 0, 0, 0))
        self.step_fn = torch.compile(step) if compile else step

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x: (S, B, 3, 32, 32), y: (S, B); one Adam step for every model."""
        grads, loss = self.step_fn(self.params, self.buffers, x, y)
        for name, tensor in self.params.items():
            tensor.grad = grads[name]
        self.opt.step()
        return loss


class LoopTrainer:
    """S ordinary SeedCNNs, each with its own Adam, stepped one after another."""

    def __init__(self, seeds: list[int], device: str, lr: float = 1e-3, compile: bool = False):
        self.models, self.opts = [], []
        for seed in seeds:
            torch.manual_seed(seed)
            model = SeedCNN().to(device)
            self.models.append(torch.compile(model) if compile else model)
            self.opts.append(torch.optim.Adam(model.parameters(), lr=lr))

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        losses = []
        for model, opt, xs, ys in zip(self.models, self.opts, x, y):
            loss = nn.functional.cross_entropy(model(xs), ys)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.detach())
        return torch.stack(losses)


TRAINERS = {"vmap": VmapTrainer, "loop": LoopTrainer}


def run_epoch(trainer, data: torch.Tensor, labels: torch.Tensor, orders: torch.Tensor,
              batch_size: int) -> torch.Tensor:
    """One pass of ``orders`` (S, N) index permutations, B at a time; returns last losses."""
    loss = None
    for start in range(0, orders.shape[1], batch_size):
        idx = orders[:, start:start + batch_size]  # (S, B)
        loss = trainer.step(data[idx], labels[idx])
    return loss


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.torch_tuned", formatter_class=HelpFormatter,
        description="Time the tuned PyTorch peer (resident data, S models as a loop or "
                    "torch.func.vmap) on random CIFAR-shaped data: training images/s summed "
                    "over the S models, after one untimed warm-up epoch. benchmarks.throughput "
                    "runs the same trainers beside jaxcnn.")
    parser.add_argument("--seeds", type=positive_int, nargs="+", default=[1, 2, 4], metavar="S",
                        help="numbers of models trained together")
    parser.add_argument("--trainer", nargs="+", choices=tuple(TRAINERS), default=["loop"],
                        help="how the S models train (loop: one after another; vmap: "
                             "torch.func.vmap over stacked parameters)")
    parser.add_argument("--steps", type=positive_int, default=40,
                        help="steps of batch 64 per timed epoch")
    parser.add_argument("--repeats", type=positive_int, default=3,
                        help="timed epochs; the median is printed")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                        help="where the models train")
    return parser


def time_trainer(kind: str, seeds: int, steps: int, repeats: int, device: str) -> float:
    """Median training images/s of ``seeds`` models of ``kind`` over ``repeats`` epochs."""
    from benchmarks.common import random_cifar

    n = steps * 64
    data, labels = resident_dataset(*random_cifar(n), device)
    trainer = TRAINERS[kind](list(range(seeds)), device)
    gen = torch.Generator().manual_seed(0)
    orders = torch.stack([torch.randperm(n, generator=gen) for _ in range(seeds)]).to(device)
    rates = []
    for repeat in range(repeats + 1):  # the first epoch warms up and is not timed
        start = time.perf_counter()
        run_epoch(trainer, data, labels, orders, 64)
        if device == "cuda":
            torch.cuda.synchronize()
        if repeat:
            rates.append(seeds * n / (time.perf_counter() - start))
    return float(np.median(rates))


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if args.device == "gpu" else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        print("python -m benchmarks.torch_tuned: error: --device gpu, but torch sees no CUDA "
              "device", file=sys.stderr)
        return 2
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {device}, "
          f"{args.steps} steps of batch 64 per epoch, median of {args.repeats}")
    for kind in args.trainer:
        for seeds in args.seeds:
            rate = time_trainer(kind, seeds, args.steps, args.repeats, device)
            print(f"torch_tuned/{kind} S={seeds}: {rate:,.0f} images/s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

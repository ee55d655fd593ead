"""What the per-step extras cost on the CPU: the Ctrl-C/progress callback and the batch
regularizers' transform, each on or off, for the baseline configuration.

    python -m benchmarks.step_overheads --variant hook+transform   # as the runner trains
    python -m benchmarks.step_overheads --variant plain            # neither

One variant per process (the transform is switched off by replacing
``regularizers.transform_batch`` before anything is compiled). Each trains 4 members
(seeds 0-3) as one-member programs on 2 worker threads, as the CPU default does, for
``--steps`` steps an epoch on random CIFAR-shaped data; one warm-up epoch, then
``--epochs`` timed epochs; prints the median seconds per epoch of all 4 members.
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

VARIANTS = ("hook+transform", "hook", "transform", "plain")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.step_overheads",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--variant", choices=VARIANTS, default="hook+transform")
    parser.add_argument("--steps", type=int, default=120, help="steps of batch 64 an epoch")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs")
    args = parser.parse_args(argv)

    import jax

    from jaxcnn.optim import regularizers

    if "transform" not in args.variant:
        regularizers.transform_batch = lambda key, step, images, strengths: images
    from benchmarks.common import random_cifar
    from benchmarks.throughput import device_data
    from jaxcnn.configs import Configuration, hyperparams, stack
    from jaxcnn.models.conv import default_conv
    from jaxcnn.models.model import Network
    from jaxcnn.training.runner import StepHook, chunk_program
    from jaxcnn.training.train import stack_seed_keys

    images, labels = random_cifar(64 * args.steps)
    data = device_data(images, labels)
    hook = StepHook() if "hook" in args.variant else None
    program = chunk_program(Network(), default_conv("cpu"), "threads", 1, len(labels), 64, hook)
    keys = [stack_seed_keys([seed]) for seed in range(4)]
    states = [program.init(k, stack([hyperparams(Configuration(), args.steps)])) for k in keys]

    def one(i: int, epoch: int) -> None:
        states[i], _ = program.epoch(states[i], keys[i], data, epoch, i % 2)
        jax.block_until_ready(states[i])

    for i in range(4):
        one(i, 0)
    seconds = []
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda i, e=epoch: one(i, e), range(4)))
        seconds.append(time.perf_counter() - start)
    print(f"{args.variant}: median {statistics.median(seconds):.2f} s per epoch of 4 members "
          f"x {args.steps} steps ({', '.join(f'{s:.2f}' for s in seconds)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

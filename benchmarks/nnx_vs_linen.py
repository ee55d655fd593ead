"""What a Flax NNX model costs against the same network written in linen.

    python -m benchmarks.nnx_vs_linen --members 1 8 --steps 20 \
        --json benchmarks/results/nnx-vs-linen-cpu.json

The network is README's example (conv 3x3 of 16 channels without bias, BatchNorm, ReLU,
global average pool, Dropout 0.2, dense) in both module systems, on random 28x28x1 images
of 3 classes, batch 64. Both become ``modelfns.ModelFns`` and are trained by the same
program: ``train.make_train_epoch`` (an epoch as ``lax.scan`` over the steps), vmapped over
the members, Adam. Printed per module system and member count: the compile seconds
(``jit(...).lower(...).compile()``) and training images/s over all members (median of
``--repeats`` timed epochs after one warm-up). NNX's ``split``/``merge`` run at trace
time only, so the compiled programs should be alike; the numbers say whether they are.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

SHAPE, CLASSES = (28, 28, 1), 3


def linen_net():
    import flax.linen as nn

    class Net(nn.Module):
        num_classes: int

        @nn.compact
        def __call__(self, x, train: bool = False):
            x = nn.Conv(16, (3, 3), use_bias=False)(x)
            x = nn.relu(nn.BatchNorm(use_running_average=not train)(x))
            x = nn.Dropout(0.2, deterministic=not train)(x.mean(axis=(1, 2)))
            return nn.Dense(self.num_classes)(x)

    return lambda network: Net(network.num_classes)


def nnx_net():
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, in_channels: int, num_classes: int, *, rngs: nnx.Rngs):
            self.conv = nnx.Conv(in_channels, 16, (3, 3), use_bias=False, rngs=rngs)
            self.norm = nnx.BatchNorm(16, rngs=rngs)
            self.drop = nnx.Dropout(0.2, rngs=rngs)
            self.head = nnx.Linear(16, num_classes, rngs=rngs)

        def __call__(self, x):
            x = nnx.relu(self.norm(self.conv(x)))
            return self.head(self.drop(x.mean(axis=(1, 2))))

    return Net


def measure(name: str, members: int, steps: int, repeats: int) -> dict:
    """Compile seconds and images/s of ``members`` members of model ``name``."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxcnn.configs import Configuration, hyperparams, stack
    from jaxcnn.models.model import Network
    from jaxcnn.models.modelfns import model_fns
    from jaxcnn.training import train
    from jaxcnn.training.batching import over_members

    network = Network(num_classes=CLASSES, image_shape=SHAPE, model=name)
    fns = model_fns(network)
    n = 64 * steps
    rng = np.random.default_rng(0)
    data = train.ImageData(jnp.asarray(rng.integers(0, 256, (n, *SHAPE), dtype=np.uint8)),
                           jnp.asarray(np.arange(n) % CLASSES, jnp.int32))
    norm = train.Normalizer(jnp.full(1, 0.5), jnp.full(1, 0.5))
    keys = train.stack_seed_keys(list(range(members)))
    hp = stack([hyperparams(Configuration(network), steps)] * members)
    init = jax.jit(over_members(lambda k, h: train.init_state(k, fns, h), "vmap", 2))
    states = init(keys, hp)
    epoch = jax.jit(over_members(train.make_train_epoch(fns, num_train=n, batch_size=64),
                                 "vmap", 2))
    args = (states, keys, data, norm, jnp.int32(0), jnp.int32(0))
    start = time.perf_counter()
    compiled = epoch.lower(*args).compile()
    compile_s = time.perf_counter() - start
    jax.block_until_ready(compiled(*args))  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - start)
    return {"compile_s": round(compile_s, 2),
            "images_per_s": round(members * n / statistics.median(times), 1),
            "epoch_s": [round(t, 4) for t in times]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.nnx_vs_linen",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, nargs="+", default=[1, 8],
                        help="member counts to time (default 1 8)")
    parser.add_argument("--steps", type=int, default=20, help="steps of batch 64 an epoch")
    parser.add_argument("--repeats", type=int, default=5, help="timed epochs")
    parser.add_argument("--json", type=Path, help="write the numbers here too")
    args = parser.parse_args(argv)

    import jax

    from benchmarks.common import environment, write_json
    from jaxcnn.models import registry

    registry.register_model("bench_linen", linen_net())
    registry.register_model("bench_nnx", nnx_net())
    rows = []
    for members in args.members:
        for system, name in (("linen", "bench_linen"), ("nnx", "bench_nnx")):
            row = {"system": system, "members": members,
                   **measure(name, members, args.steps, args.repeats)}
            rows.append(row)
            print(f"{system:5s} {members:3d} members: {row['images_per_s']:10.0f} images/s, "
                  f"compile {row['compile_s']:.2f} s", flush=True)
    device = jax.devices()[0]
    print(f"({device.platform}: {device.device_kind}, jax {jax.__version__}; batch 64, "
          f"{args.steps} steps an epoch, median of {args.repeats} epochs)")
    if args.json:
        write_json(args.json, {"command": "python -m benchmarks.nnx_vs_linen "
                               + " ".join(sys.argv[1:] if argv is None else argv),
                               "steps": args.steps, "repeats": args.repeats, "rows": rows,
                               "environment": environment(device.platform)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""What a user's stock ``nn.Conv`` model costs on the CPU, against the seed CNN.

    python -m benchmarks.user_model_cpu --steps 40

One member, batch 64, random CIFAR-shaped data; the same architecture three ways:

- ``seed CNN (scan)``: the seed CNN as training runs it (its own convolution, an epoch as
  ``lax.scan`` over the steps: ``train.make_train_epoch``);
- ``nn.Conv (scan)``: the seed's layers written with stock ``nn.Conv`` / ``nn.max_pool``,
  registered as a user's model and trained by the same epoch (what the engine does with
  a user's model today);
- ``nn.Conv (step loop)``: that module, one jitted train step per batch from Python.

GUIDE section 3 measured a convolution inside ``lax.scan`` on XLA:CPU at 30-50x slower than
outside a loop (jax 0.10.2). Prints images/s of each (median of ``--repeats`` timed epochs
after one warm-up) and the compile seconds.
"""

from __future__ import annotations

import argparse
import statistics
import time


def conv_model():
    import flax.linen as nn

    class StockCNN(nn.Module):
        """The seed's network with stock layers: conv3x3 64-64-32, 2x2 max-pools, fc 512."""

        num_classes: int

        @nn.compact
        def __call__(self, x):
            for features in (64, 64, 32):
                x = nn.max_pool(nn.relu(nn.Conv(features, (3, 3))(x)), (2, 2), (2, 2))
            x = nn.relu(nn.Dense(512)(x.reshape(x.shape[0], -1)))
            return nn.Dense(self.num_classes)(x)

    return StockCNN


def timed(run, repeats: int) -> tuple[float, float]:
    """(compile-and-first-run seconds, median seconds of the next ``repeats`` runs)."""
    start = time.perf_counter()
    run()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.user_model_cpu",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="steps of batch 64 an epoch")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs")
    args = parser.parse_args(argv)

    import jax
    import jax.numpy as jnp

    from benchmarks.common import random_cifar
    from jaxcnn.configs import Configuration, hyperparams
    from jaxcnn.models import registry
    from jaxcnn.models.model import Network
    from jaxcnn.models.modelfns import model_fns
    from jaxcnn.training import train

    registry.register_model("stock_cnn", lambda network: conv_model()(network.num_classes))
    n = 64 * args.steps
    images, labels = random_cifar(n)
    data = train.ImageData(jnp.asarray(images), jnp.asarray(labels, jnp.int32))
    norm = train.Normalizer(jnp.full(3, 0.5), jnp.full(3, 0.5))
    keys = train.seed_keys(0)
    rows = []
    for name, network, conv in (("seed CNN (scan)", Network(), "winograd"),
                                ("nn.Conv (scan)", Network(model="stock_cnn"), "xla")):
        fns = model_fns(network, conv)
        hp = jax.tree.map(jnp.asarray, hyperparams(Configuration(network), args.steps))
        state = train.init_state(keys, fns, hp)
        epoch = jax.jit(train.make_train_epoch(fns, num_train=n, batch_size=64))
        first, median = timed(lambda e=epoch, s=state: jax.block_until_ready(
            e(s, keys, data, norm, jnp.int32(0))), args.repeats)
        rows.append((name, first, n / median))
    network = Network(model="stock_cnn")
    fns = model_fns(network)
    hp = jax.tree.map(jnp.asarray, hyperparams(Configuration(network), args.steps))
    state = train.init_state(keys, fns, hp)
    step = jax.jit(train.make_train_step(fns))
    batches = [train.Batch(train.normalize(data.images[i:i + 64], norm), data.labels[i:i + 64],
                           jnp.ones(64, bool)) for i in range(0, n, 64)]

    def loop():
        s = state
        for i, batch in enumerate(batches):
            s, _ = step(s, batch, jax.random.fold_in(keys.dropout, i))
        jax.block_until_ready(s.params)

    first, median = timed(loop, args.repeats)
    rows.append(("nn.Conv (step loop)", first, n / median))
    print(f"{jax.devices()[0].device_kind}, jax {jax.__version__}, one member, batch 64, "
          f"{args.steps} steps an epoch")
    for name, first, rate in rows:
        print(f"{name:22s} {rate:8.0f} images/s   (compile + first epoch {first:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

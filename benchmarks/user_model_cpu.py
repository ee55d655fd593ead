"""What a user's stock ``nn.Conv`` model costs on the CPU, against the seed CNN.

    python -m benchmarks.user_model_cpu --steps 40

One member, batch 64, random CIFAR-shaped data; the engine's own chunk program
(``training.runner.ChunkProgram``, as a run compiles it on the CPU) for:

- ``seed CNN (scan)``: the seed CNN, an epoch as one ``lax.scan`` over the steps;
- ``nn.Conv (stepped)``: the seed's layers written with stock ``nn.Conv`` /
  ``nn.max_pool``, registered as a user's model: one compiled step per batch, what the
  engine does with a user's model on the CPU;
- ``nn.Conv (scan)``: that model forced into the one-``lax.scan`` epoch (what it got
  before the engine stepped user models on the CPU).

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.user_model_cpu",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="steps of batch 64 an epoch")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs")
    args = parser.parse_args(argv)

    import jax

    from jaxcnn.configs import Configuration, hyperparams, stack
    from jaxcnn.data.splits import prepare_data
    from jaxcnn.data.synthetic import make_synthetic
    from jaxcnn.models import registry
    from jaxcnn.models.model import Network
    from jaxcnn.training import train
    from jaxcnn.training.runner import ChunkProgram, DeviceData

    registry.register_model("stock_cnn", lambda network: conv_model()(network.num_classes))
    dataset = make_synthetic(64 * args.steps + 100, 100, seed=0)
    data = DeviceData(prepare_data(dataset, val_size=100, train_examples=None,
                                   normalization="dataset"))
    keys = train.stack_seed_keys([0])
    print(f"{jax.devices()[0].device_kind}, jax {jax.__version__}, one member, batch 64, "
          f"{args.steps} steps an epoch")
    for name, network, conv, stepped in (
            ("seed CNN (scan)", Network(), "winograd", None),
            ("nn.Conv (stepped)", Network(model="stock_cnn"), "xla", None),
            ("nn.Conv (scan)", Network(model="stock_cnn"), "xla", False)):
        hparams = hyperparams(Configuration(network), args.steps)
        program = ChunkProgram(network, conv, "threads", 1, data.num_train, 64, None,
                               stepped=stepped)
        start = time.perf_counter()
        program.warm_up(data, hparams)
        compile_s = time.perf_counter() - start
        states = program.init(keys, stack([hparams]))
        times = []
        for epoch in range(args.repeats + 1):  # the first is a warm-up
            start = time.perf_counter()
            states, _ = program.epoch(states, keys, data, epoch, 0)
            jax.block_until_ready(states.params)
            times.append(time.perf_counter() - start)
        rate = data.num_train / statistics.median(times[1:])
        print(f"{name:20s} {rate:8.0f} images/s   (compile {compile_s:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

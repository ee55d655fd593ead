"""Probe for the next CPU lever: train two seeds at the same time, one per core.

    python -m benchmarks.seed_parallel_probe seq 3       # seed 0 then seed 1
    python -m benchmarks.seed_parallel_probe pair 3      # both epochs in one program
    python -m benchmarks.seed_parallel_probe threads 6   # two Python threads, one each
    XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \\
        taskset -c 0 python -m benchmarks.seed_parallel_probe single 12   # (and -c 1 at once)

One compiled epoch of 40 steps (batch 64, Winograd, Adam) per seed on random
images; prints images/s, the median of the given number of repeats. Not wired
into the trainer yet; results in NOTES.md ("Not integrated yet").
"""

from __future__ import annotations

import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp

from benchmarks.common import random_cifar
from jaxcnn import train
from jaxcnn.model import CNN, ModelConfig
from jaxcnn.optim import OptimizerConfig, build_optimizer


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    mode, repeats = argv[0], int(argv[1]) if len(argv) > 1 else 3
    steps = 40
    n = 64 * steps
    data = train.ImageData(*map(jnp.asarray, random_cifar(n)))
    norm = train.Normalizer(jnp.full(3, 0.5), jnp.full(3, 0.5))
    model = CNN(ModelConfig())
    tx = build_optimizer(OptimizerConfig(), steps)
    epoch = train.make_train_epoch(model, tx, num_train=n, batch_size=64, seed_batching="map")
    keys = [train.stack_seed_keys([s]) for s in (0, 1)]
    states = [jax.tree.map(lambda x: x[None], train.init_state(k.init[0], model, tx))
              for k in keys]
    e = jnp.int32(0)
    one = jax.jit(lambda s, k, d, nm, ep: epoch(s, k, d, nm, ep)[0])
    if mode == "pair":
        both = jax.jit(lambda s0, k0, s1, k1, d, nm, ep: (epoch(s0, k0, d, nm, ep)[0],
                                                          epoch(s1, k1, d, nm, ep)[0]))

        def run():
            return both(states[0], keys[0], states[1], keys[1], data, norm, e)
    elif mode == "seq":
        def run():
            return [one(states[i], keys[i], data, norm, e) for i in (0, 1)]
    elif mode == "threads":
        pool = ThreadPoolExecutor(2)

        def run():
            futures = [pool.submit(lambda i=i: jax.block_until_ready(
                one(states[i], keys[i], data, norm, e))) for i in (0, 1)]
            return [f.result() for f in futures]
    elif mode == "single":
        def run():
            return one(states[0], keys[0], data, norm, e)
    else:
        raise SystemExit(f"unknown mode {mode!r}: use seq, pair, threads or single")
    images = n if mode == "single" else 2 * n
    jax.block_until_ready(run())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(run())
        times.append(time.perf_counter() - start)
    print(f"{mode}: {images / statistics.median(times):.0f} images/s "
          f"(median of {repeats})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Micro-benchmarks behind the speed choices recorded in NOTES.md.

    python -m benchmarks.levers            # about 5 minutes on 2 CPU cores

1. conv2 (64 images, 16x16x64 -> 64, then the 2x2 pool) in milliseconds per step,
   alone and inside a ``lax.scan``: forward; forward + weight gradient;
   forward + both gradients; for lax.conv, patches + matmul and Winograd.
3. Float32 rounding of each convolution: the max error of conv2 (+ pool) on float32
   inputs against the same inputs in float64, over 5 random draws.
2. Evaluation throughput (forward only, in the ``lax.scan`` over chunks that
   ``train.make_evaluate`` builds) with each convolution implementation, for
   1 and 4 seeds and chunks of 250 and 1000 images, alternated, medians of 3.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from benchmarks.common import random_cifar, write_json
from jaxcnn.models.conv import conv3x3_patches, conv3x3_pool_winograd, conv3x3_xla, max_pool_2x2
from jaxcnn.models.model import Network, init_params
from jaxcnn.models.modelfns import seed_cnn_fns
from jaxcnn.training import train
from jaxcnn.training.batching import over_members

IMPLS = {
    "xla": lambda x, k: max_pool_2x2(conv3x3_xla(x, k)),
    "patches": lambda x, k: max_pool_2x2(conv3x3_patches(x, k)),
    "winograd": conv3x3_pool_winograd,
}


def _ms(fn, *args, repeats: int = 3) -> float:
    jax.block_until_ready(fn(*args))
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / repeats * 1000


def conv_in_scan(steps: int = 10) -> dict:
    x = jax.random.normal(jax.random.key(0), (64, 16, 16, 64))
    k = jax.random.normal(jax.random.key(1), (3, 3, 64, 64)) * 0.05
    out = {}
    for name, conv in IMPLS.items():
        def loss(x, k, conv=conv):
            return (conv(x, k) ** 2).sum()

        def weight_grad_body(carry, _, loss=loss):
            return (carry[0], carry[1] - 1e-6 * jax.grad(loss, 1)(*carry)), None

        def both_grads_body(carry, _, loss=loss):
            dx, dk = jax.grad(loss, (0, 1))(*carry)
            return (carry[0] - 1e-6 * dx, carry[1] - 1e-6 * dk), None

        row = {"forward_alone_ms": _ms(jax.jit(conv), x, k),
               "weight_grad_alone_ms": _ms(jax.jit(jax.grad(loss, 1)), x, k)}
        for label, body in (("weight_grad_in_scan_ms", weight_grad_body),
                            ("both_grads_in_scan_ms", both_grads_body)):
            scan = jax.jit(lambda c, body=body: jax.lax.scan(body, c, None, length=steps)[0])
            row[label] = _ms(scan, (x, k), repeats=1) / steps
        out[name] = {key: round(value, 2) for key, value in row.items()}
        print(name, out[name], flush=True)
    return out


def evaluation(images: int = 5000, seeds: tuple[int, ...] = (1, 4),
               chunks: tuple[int, ...] = (250, 1000), repeats: int = 3) -> dict:
    """Images/s of ``train.make_evaluate`` per convolution, S and chunk size.

    Every variant is compiled first, then all are timed in turn ``repeats``
    times (alternated, so drift in the machine hits them alike); medians.
    """
    data = train.ImageData(*map(jnp.asarray, random_cifar(images)))
    norm = train.Normalizer(jnp.full(3, 0.5), jnp.full(3, 0.5))
    params = init_params(jax.random.key(0), Network(), "lecun")
    runs = {}
    for s in seeds:
        stacked = jax.tree.map(lambda p, s=s: jnp.stack([p] * s), params)
        for impl in IMPLS:
            for chunk in chunks:
                fn = jax.jit(over_members(train.make_evaluate(seed_cnn_fns(Network(), impl),
                                                              eval_batch=chunk), "map", 2))
                jax.block_until_ready(fn(stacked, {}, data, norm))
                runs[f"S={s} {impl} chunk={chunk}"] = (fn, stacked, s)
    times = {key: [] for key in runs}
    for _ in range(repeats):
        for key, (fn, stacked, _s) in runs.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(stacked, {}, data, norm))
            times[key].append(time.perf_counter() - start)
    out = {}
    for key, (_fn, _stacked, s) in runs.items():
        out[key] = round(s * images / statistics.median(times[key]), 1)
        print(f"evaluate {key}: {out[key]:.0f} images/s", flush=True)
    return out


def float32_error(draws: int = 5) -> dict:
    """Max |float32 output - float64 output| of conv2 + pool, per implementation."""
    errors = {name: [] for name in IMPLS}
    with jax.enable_x64(True):
        for seed in range(draws):
            x = jax.random.normal(jax.random.key(seed), (64, 16, 16, 64), jnp.float32)
            k = jax.random.normal(jax.random.key(100 + seed), (3, 3, 64, 64), jnp.float32) / 24
            exact = IMPLS["xla"](x.astype(jnp.float64), k.astype(jnp.float64))
            for name, conv in IMPLS.items():
                out = jax.jit(conv)(x, k).astype(jnp.float64)
                errors[name].append(float(jnp.abs(out - exact).max()))
    out = {name: max(values) for name, values in errors.items()}
    print("float32 max error against float64:", out, flush=True)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.levers",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    payload = {"conv2_float32_max_error": float32_error(),
               "conv2_ms_per_step": conv_in_scan(), "evaluate_images_per_s": evaluation(),
               "device": str(jax.devices()[0]), "jax": jax.__version__}
    if args.json:
        write_json(args.json, payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

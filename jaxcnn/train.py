"""Pure training and evaluation functions for S seeds at once.

Shapes: S seeds, B batch size, N examples, T steps per epoch = ceil(N / B).

- :func:`init_state` ``(key, model, tx) -> TrainState`` for one seed.
- :func:`make_train_step` gives ``train_step(state, batch, key) -> (state, metrics)``.
- :func:`make_train_epoch` gives ``train_epoch(states, keys, data, epoch) ->
  (states, metrics)``: one epoch for all S seeds as a ``lax.scan`` over the T
  steps, each step applied to every seed by the chosen seed batching.
- :func:`make_evaluate` gives ``evaluate(params, data, norm) -> (loss, correct)``.

Nothing here is jitted; callers jit at the call site. The dataset is an
argument, never a closure constant, so one compiled epoch serves every call.

Each epoch's order is a permutation of the N training examples drawn from
``fold_in(seed's data key, epoch)``, sliced into T batches of B. The last
batch is padded to B with a mask, so every example is used once per epoch and
the last, partial batch (N mod B examples) contributes a mean over only its
real examples, exactly as PyTorch's DataLoader with ``drop_last=False``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

SEED_BATCHINGS = ("vmap", "map", "sequential")


class TrainState(NamedTuple):
    """One seed's (or, with a leading S axis on every leaf, S seeds') state."""

    params: Any
    opt_state: Any
    step: jax.Array  # () int32: optimizer updates applied so far


class SeedKeys(NamedTuple):
    """A seed's PRNG keys, split by purpose so each stream is independent.

    Two configurations of the same seed share ``init`` and ``data`` (same
    initial weights when shapes match, same example order) whatever their
    dropout does, so comparisons between them are paired.
    """

    init: jax.Array
    data: jax.Array
    dropout: jax.Array


class ImageData(NamedTuple):
    """A split on the device. images: (N, 32, 32, 3) uint8; labels: (N,) int32."""

    images: jax.Array
    labels: jax.Array


class Normalizer(NamedTuple):
    """Per-channel mean and std, (3,) each, on the [0, 1] pixel scale."""

    mean: jax.Array
    std: jax.Array


def seed_keys(seed: int) -> SeedKeys:
    """The keys of integer seed ``seed``."""
    init, data, dropout = jax.random.split(jax.random.key(seed), 3)
    return SeedKeys(init, data, dropout)


def stack_seed_keys(seeds: list[int]) -> SeedKeys:
    """Keys of several seeds with a leading (S,) axis."""
    per_seed = [seed_keys(s) for s in seeds]
    return SeedKeys(*(jnp.stack(k) for k in zip(*per_seed)))


def normalize(images: jax.Array, norm: Normalizer, dtype=jnp.float32) -> jax.Array:
    """uint8 (..., 3) -> ``(x / 255 - mean) / std`` in ``dtype``."""
    x = images.astype(dtype) / 255.0
    return (x - norm.mean.astype(dtype)) / norm.std.astype(dtype)


def init_state(key: jax.Array, model: nn.Module, tx: optax.GradientTransformation) -> TrainState:
    """Fresh parameters from ``key`` and the optimizer state for them."""
    params = model.init(key, jnp.zeros((1, 32, 32, 3), jnp.float32))["params"]
    return TrainState(params, tx.init(params), jnp.zeros((), jnp.int32))


def masked_loss(model: nn.Module, params: Any, images: jax.Array, labels: jax.Array,
                mask: jax.Array, dropout_key: jax.Array | None
                ) -> tuple[jax.Array, jax.Array]:
    """Mean cross-entropy over the real (mask=1) examples, and the logits.

    images: (B, 32, 32, 3) float; labels, mask: (B,). A dropout key turns
    training mode on.
    """
    train = dropout_key is not None
    rngs = {"dropout": dropout_key} if train else {}
    logits = model.apply({"params": params}, images, train=train, rngs=rngs)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    mask = mask.astype(losses.dtype)
    return (losses * mask).sum() / mask.sum(), logits


class Batch(NamedTuple):
    """images: (B, 32, 32, 3) float; labels: (B,) int32; mask: (B,) bool."""

    images: jax.Array
    labels: jax.Array
    mask: jax.Array


def make_train_step(model: nn.Module, tx: optax.GradientTransformation
                    ) -> Callable[[TrainState, Batch, jax.Array], tuple[TrainState, dict]]:
    """``train_step(state, batch, key) -> (state, {"loss": ()})`` for one seed.

    ``key`` drives dropout for this step only.
    """

    def train_step(state: TrainState, batch: Batch, key: jax.Array) -> tuple[TrainState, dict]:
        def loss_fn(params):
            return masked_loss(model, params, batch.images, batch.labels, batch.mask, key)

        (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return TrainState(params, opt_state, state.step + 1), {"loss": loss}

    return train_step


def over_seeds(fn: Callable, seed_batching: str) -> Callable:
    """Applies ``fn(*per_seed_args)`` to every seed of arguments with an S axis.

    "vmap" vectorises the seeds into one wider computation (best on the GPU);
    "map" runs them one after another inside the compiled program
    (``lax.map``), which on XLA:CPU avoids vmap's batched kernels; "sequential"
    is handled by the caller (one program per seed) and behaves like "map" here.
    """
    if seed_batching == "vmap":
        return jax.vmap(fn)
    if seed_batching in ("map", "sequential"):
        return lambda *args: jax.lax.map(lambda a: fn(*a), args)
    raise ValueError(f"seed_batching must be one of {', '.join(SEED_BATCHINGS)}, "
                     f"got {seed_batching!r}")


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Number of batches in an epoch, counting the last partial one."""
    return math.ceil(num_examples / batch_size)


def make_train_epoch(model: nn.Module, tx: optax.GradientTransformation, *, num_train: int,
                     batch_size: int, seed_batching: str = "map",
                     on_step: Callable[[Any], None] | None = None, report_every: int = 25
                     ) -> Callable[..., tuple[TrainState, dict]]:
    """Builds ``train_epoch(states, keys, data, norm, epoch) -> (states, metrics)``.

    Args:
      model, tx: the network and the optimizer chain.
      num_train: N; static because it fixes the permutation's length.
      batch_size: B.
      seed_batching: how the S seeds share each step (see :func:`over_seeds`).
      on_step: optional host callback, called with the number of steps done
        every ``report_every`` steps (progress bars); it must be the same
        object on every call, or the epoch recompiles.

    The returned function takes states (leaves (S, ...)), keys (SeedKeys of
    (S,) keys), data (ImageData of the training split), norm (Normalizer) and
    epoch (() int32, 0-based), and returns the new states and
    ``{"loss": (T, S)}``: each step's mean training loss per seed.
    """
    train_step = make_train_step(model, tx)
    num_steps = steps_per_epoch(num_train, batch_size)
    padded = num_steps * batch_size
    # The last batch's padding: its slots point at example 0 and are masked out.
    mask = (jnp.arange(padded) < num_train).reshape(num_steps, batch_size)

    def epoch_order(data_key: jax.Array, epoch: jax.Array) -> jax.Array:
        perm = jax.random.permutation(jax.random.fold_in(data_key, epoch), num_train)
        return jnp.pad(perm, (0, padded - num_train)).reshape(num_steps, batch_size)

    def train_epoch(states: TrainState, keys: SeedKeys, data: ImageData, norm: Normalizer,
                    epoch: jax.Array) -> tuple[TrainState, dict]:
        dtype = jax.tree.leaves(states.params)[0].dtype
        orders = jax.vmap(epoch_order, in_axes=(0, None))(keys.data, epoch)  # (S, T, B)

        def one_seed(state, indices, dropout_key, batch_mask):
            batch = Batch(normalize(data.images[indices], norm, dtype), data.labels[indices],
                          batch_mask)
            return train_step(state, batch, jax.random.fold_in(dropout_key, state.step))

        def body(states, xs):
            indices, batch_mask, i = xs  # (S, B), (B,), ()
            masks = jnp.broadcast_to(batch_mask, indices.shape)
            states, metrics = over_seeds(one_seed, seed_batching)(
                states, indices, keys.dropout, masks)
            if on_step is not None:
                jax.lax.cond((i + 1) % report_every == 0,
                             lambda: jax.debug.callback(on_step, i + 1), lambda: None)
            return states, metrics

        xs = (jnp.swapaxes(orders, 0, 1), mask, jnp.arange(num_steps))
        return jax.lax.scan(body, states, xs)

    return train_epoch


def make_evaluate(model: nn.Module, *, seed_batching: str = "map", eval_batch: int = 250
                  ) -> Callable[..., tuple[jax.Array, jax.Array]]:
    """Builds ``evaluate(params, data, norm) -> (loss (S,), correct (S,))``.

    params carry a leading S axis; data is an ImageData of M examples. Loss is
    the mean cross-entropy over all M examples; correct counts the right
    predictions (int32), so accuracy = 100 * correct / M exactly, on the host.
    """

    def evaluate(params: Any, data: ImageData, norm: Normalizer) -> tuple[jax.Array, jax.Array]:
        m = data.labels.shape[0]
        chunks = math.ceil(m / eval_batch)
        flat = jnp.arange(chunks * eval_batch)
        valid = (flat < m).reshape(chunks, eval_batch)
        indices = jnp.minimum(flat, m - 1).reshape(chunks, eval_batch)
        dtype = jax.tree.leaves(params)[0].dtype

        def one_seed(p, idx, ok):
            logits = model.apply({"params": p}, normalize(data.images[idx], norm, dtype))
            labels = data.labels[idx]
            losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
            correct = (logits.argmax(-1) == labels) & ok
            return (losses * ok).sum(), correct.sum()

        def body(totals, xs):
            idx, ok = xs
            seeds = jax.tree.leaves(params)[0].shape[0]
            loss_sum, correct = over_seeds(one_seed, seed_batching)(
                params, jnp.broadcast_to(idx, (seeds, *idx.shape)),
                jnp.broadcast_to(ok, (seeds, *ok.shape)))
            return (totals[0] + loss_sum, totals[1] + correct), None

        seeds = jax.tree.leaves(params)[0].shape[0]
        zeros = (jnp.zeros(seeds, dtype), jnp.zeros(seeds, jnp.int32))
        (loss_sum, correct), _ = jax.lax.scan(body, zeros, (indices, valid))
        return loss_sum / m, correct

    return evaluate

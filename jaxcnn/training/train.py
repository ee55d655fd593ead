"""Pure training and evaluation functions for one member.

A member is one (configuration, seed): its state carries its hyperparameters
(``TrainState.hparams``), its keys come from its seed. Everything here is
written for one member; ``batching.py`` applies it to many (``vmap``,
``lax.map``, worker threads, devices), as purejaxrl's ``make_train`` is vmapped.

Shapes: B batch size, N examples, T = ceil(N / B) steps per epoch.

- :func:`init_state` ``(keys, fns, hparams, optimizer) -> TrainState``.
- :func:`make_train_step` gives ``train_step(state, batch, key) -> (state, metrics)``.
- :func:`make_train_epoch` gives ``train_epoch(state, keys, data, norm, epoch,
  slot) -> (state, metrics)``: one epoch as a ``lax.scan`` over the T steps.
- :func:`make_evaluate` gives ``evaluate(params, data, norm) -> (losses, correct,
  predicted)``, per example (and a study's own metric).

Nothing here is jitted; callers jit at the call site. The dataset is an
argument, never a closure constant, so one compiled epoch serves every call.

Each epoch's order is a permutation of the N training examples drawn from
``fold_in(member's data key, epoch)``, sliced into T batches of B. The last
batch is padded to B with a mask, so every example is used once per epoch and
the last, partial batch (N mod B examples) contributes a mean over only its
real examples, exactly as PyTorch's DataLoader with ``drop_last=False``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcnn.configs import Hyperparams
from jaxcnn.models.modelfns import ModelFns
from jaxcnn.optim import regularizers
from jaxcnn.optim.adam import member_optimizer
from jaxcnn.optim.optax_optimizer import applied_rates

# hparams.optimizer -> the member's optax transformation: the built-in Adam chain
# (optim.member_optimizer) or a configuration's own (configs.ProgramSpec.transform).
OptimizerOf = Callable[[Any], optax.GradientTransformation]


class TrainState(NamedTuple):
    """One member's state (a leading (M,) axis on every leaf for M members).

    params: the network's; opt_state: the member chain's (see ``optim``);
    step: () int32 optimizer updates applied so far; hparams: the member's
    hyperparameters, constant during training; model_state: the model's variables
    other than its parameters (``modelfns.ModelFns``: e.g. BatchNorm's statistics; {}
    for the seed CNN).
    """

    params: Any
    opt_state: Any
    step: jax.Array
    hparams: Hyperparams
    model_state: Any = {}  # never mutated: each step builds a new dict


class SeedKeys(NamedTuple):
    """A seed's PRNG keys, split by purpose so each stream is independent.

    Every configuration's member of seed i gets the same ``init`` and ``data``
    keys (same initial weights when the initializer is the same, same example
    order) whatever its dropout does, so comparisons between them are paired.
    ``rows`` (N_train,) int32: the seed's own training images, indices into the data a
    step is given (None: all of it): where each seed draws its own split
    (``data/splits.py``) the data is every training image.
    """

    init: jax.Array
    data: jax.Array
    dropout: jax.Array
    rows: jax.Array | None = None


class ImageData(NamedTuple):
    """A split on the device. images: (N, 32, 32, 3) uint8; labels: (N,) int32."""

    images: jax.Array
    labels: jax.Array


class Normalizer(NamedTuple):
    """Per-channel mean and std, (3,) each, on the [0, 1] pixel scale."""

    mean: jax.Array
    std: jax.Array


class Batch(NamedTuple):
    """images: (B, 32, 32, 3) float; labels: (B,) int32; mask: (B,) bool."""

    images: jax.Array
    labels: jax.Array
    mask: jax.Array


def seed_keys(seed: int) -> SeedKeys:
    """The keys of integer seed ``seed``."""
    init, data, dropout = jax.random.split(jax.random.key(seed), 3)
    return SeedKeys(init, data, dropout)


def stack_seed_keys(seeds: list[int], rows: np.ndarray | None = None) -> SeedKeys:
    """Keys of several members' seeds with a leading (M,) axis; ``rows`` (M, N_train):
    each member's own training images (see :class:`SeedKeys`)."""
    per_seed = [seed_keys(s)[:3] for s in seeds]
    return SeedKeys(*(jnp.stack(k) for k in zip(*per_seed)),
                    rows=None if rows is None else jnp.asarray(rows, jnp.int32))


def normalize(images: jax.Array, norm: Normalizer, dtype=jnp.float32) -> jax.Array:
    """uint8 (..., 3) -> ``(x / 255 - mean) / std`` in ``dtype``.

    Written with explicit reciprocals: XLA may turn a division by a broadcast value into
    a multiplication by its reciprocal in one program and not in another, which would
    make a member's numbers depend on the program that trains it.
    """
    x = images.astype(dtype) * (1.0 / 255.0)
    return (x - norm.mean.astype(dtype)) * (1.0 / norm.std.astype(dtype))


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Number of batches in an epoch, counting the last partial one."""
    return math.ceil(num_examples / batch_size)


def init_state(keys: SeedKeys, fns: ModelFns, hparams: Hyperparams,
               optimizer: OptimizerOf = member_optimizer) -> TrainState:
    """A member's fresh state: parameters (and model state) from its init key and
    initializer, the optimizer's state."""
    hparams = jax.tree.map(jnp.asarray, hparams)
    params, model_state = fns.init(keys.init, hparams.init)
    opt_state = optimizer(hparams.optimizer).init(params)
    return TrainState(params, opt_state, jnp.zeros((), jnp.int32), hparams, model_state)


def masked_loss(fns: ModelFns, params: Any, model_state: Any, batch: Batch,
                values: dict | None, dropout_key: jax.Array | None
                ) -> tuple[jax.Array, tuple[jax.Array, Any]]:
    """Mean cross-entropy over the real (mask=1) examples, and (the logits, the model's
    new state).

    With a dropout key the network runs in training mode, with the member's ``values``
    (its ``Hyperparams.values``: dropout rates and any a configuration gives).
    """
    logits, model_state = fns.apply(params, model_state, batch.images, values, dropout_key)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch.labels)
    mask = batch.mask.astype(losses.dtype)
    return (losses * mask).sum() / mask.sum(), (logits, model_state)


def make_train_step(fns: ModelFns, optimizer: OptimizerOf = member_optimizer
                    ) -> Callable[[TrainState, Batch, jax.Array], tuple[TrainState, dict]]:
    """``train_step(state, batch, key) -> (state, metrics)`` for one member.

    ``key`` drives this step's dropout. metrics: () each of "loss", and the
    "learning_rate" and "beta1" the optimizer applied (read from its state; NaN where
    an optax optimizer's state does not hold them).
    """

    def train_step(state: TrainState, batch: Batch, key: jax.Array) -> tuple[TrainState, dict]:
        tx = optimizer(state.hparams.optimizer)

        def loss_fn(params):
            return masked_loss(fns, params, state.model_state, batch, state.hparams.values, key)

        (loss, (_, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        learning_rate, beta1 = applied_rates(opt_state, loss.dtype)
        metrics = {"loss": loss, "learning_rate": learning_rate, "beta1": beta1}
        return TrainState(params, opt_state, state.step + 1, state.hparams,
                          model_state), metrics

    return train_step


def epoch_order(keys: SeedKeys, epoch: jax.Array, num_train: int, batch_size: int,
                split_last: bool) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One member's batches of one epoch: (rows (S, B) example indices, mask (S, B), rest).

    A permutation of the N examples from ``fold_in(keys.data, epoch)`` (of the seed's own
    ``keys.rows`` where given: then the indices are into every training image), sliced into S
    batches of B. The last batch's padding (where it is padded) takes example 0, masked
    out; with ``split_last`` the last, partial batch is ``rest`` (N mod B indices), taken
    at its own size instead (``rest`` is empty otherwise).
    """
    perm = jax.random.permutation(jax.random.fold_in(keys.data, epoch), num_train)
    if keys.rows is not None:  # the seed's own training images, out of every one
        perm = keys.rows[perm]
    full = num_train // batch_size if split_last else steps_per_epoch(num_train, batch_size)
    padded = full * batch_size
    order = jnp.pad(perm[:padded], (0, max(padded - num_train, 0)))
    mask = jnp.arange(padded) < num_train
    return (order.reshape(full, batch_size), mask.reshape(full, batch_size),
            perm[padded:] if split_last else perm[:0])


def make_batch_step(fns: ModelFns, optimizer: OptimizerOf = member_optimizer
                    ) -> Callable[..., tuple[TrainState, dict]]:
    """``batch_step(state, keys, data, norm, indices, mask) -> (state, metrics)``: one
    training step on the examples ``indices`` (B,) of ``data`` (batch regularizers on the
    uint8 images, normalisation, then :func:`make_train_step` with the dropout key of the
    member's step)."""
    train_step = make_train_step(fns, optimizer)

    def batch_step(state: TrainState, keys: SeedKeys, data: ImageData, norm: Normalizer,
                   indices: jax.Array, mask: jax.Array) -> tuple[TrainState, dict]:
        dtype = jax.tree.leaves(state.params)[0].dtype
        # Batch regularizers (augmentation) act on the uint8 images; at strength 0 they
        # return them unchanged.
        images = regularizers.transform_batch(keys.data, state.step, data.images[indices],
                                              state.hparams.transforms)
        batch = Batch(normalize(images, norm, dtype), data.labels[indices], mask)
        return train_step(state, batch, jax.random.fold_in(keys.dropout, state.step))

    return batch_step


def make_train_epoch(fns: ModelFns, *, num_train: int, batch_size: int,
                     on_step: Callable[[Any, Any], None] | None = None, report_every: int = 25,
                     optimizer: OptimizerOf = member_optimizer
                     ) -> Callable[..., tuple[TrainState, dict]]:
    """Builds ``train_epoch(state, keys, data, norm, epoch, slot) -> (state, metrics)``.

    Args:
      fns: the model (``modelfns.model_fns``); optimizer: ``hparams.optimizer ->
        GradientTransformation`` (default: the built-in Adam chain).
      num_train: N (static: it fixes the permutation's length); batch_size: B.
      on_step: optional host callback ``(slot, steps_done)``, called every
        ``report_every`` steps (progress bars; the runner's hook, called at every step,
        also abandons the epoch on Ctrl-C by raising). It must be the same object on
        every call, or the epoch recompiles. Its arguments do not depend on the member,
        so under ``vmap`` it is called once per report for all members.

    The returned function takes one member's state and keys (SeedKeys), data (ImageData
    of the training split), norm (Normalizer), epoch (() int32, 0-based) and slot (()
    int32, passed to ``on_step`` to say which worker reports), and returns the new state
    and ``{name: (T,)}`` for each of "loss", "learning_rate" and "beta1": the steps of
    :func:`make_batch_step` over :func:`epoch_order`'s batches, as one ``lax.scan``.

    A model without state takes the last, partial batch padded to B and masked; a
    model with state (BatchNorm) takes it at its own size (N mod B, a second traced
    step), so padding never enters its batch statistics.
    """
    batch_step = make_batch_step(fns, optimizer)
    split_last = fns.stateful and num_train % batch_size != 0

    def train_epoch(state: TrainState, keys: SeedKeys, data: ImageData, norm: Normalizer,
                    epoch: jax.Array, slot: jax.Array | int = 0) -> tuple[TrainState, dict]:
        rows, masks, rest = epoch_order(keys, epoch, num_train, batch_size, split_last)

        def body(state, xs):
            indices, batch_mask, i = xs
            state, metrics = batch_step(state, keys, data, norm, indices, batch_mask)
            _report(on_step, report_every, slot, i)
            return state, metrics

        state, metrics = jax.lax.scan(body, state, (rows, masks, jnp.arange(len(rows))))
        if not split_last:
            return state, metrics
        state, last = body(state, (rest, jnp.ones(rest.shape, bool), jnp.int32(len(rows))))
        return state, jax.tree.map(lambda a, b: jnp.concatenate([a, b[None]]), metrics, last)

    return train_epoch


def _report(on_step: Callable[[Any, Any], None] | None, every: int, slot: Any,
            i: jax.Array) -> None:
    """Calls the host's ``on_step(slot, steps_done)`` after step ``i`` (0-based), every
    ``every`` steps."""
    if on_step is not None and every == 1:  # every step boundary
        jax.debug.callback(on_step, slot, i + 1)
    elif on_step is not None:
        jax.lax.cond((i + 1) % every == 0, lambda: jax.debug.callback(on_step, slot, i + 1),
                     lambda: None)


EVAL_BATCH = 250  # images per evaluation step


def make_evaluate(fns: ModelFns, *, eval_batch: int = EVAL_BATCH,
                  metric: Callable[[jax.Array, jax.Array], jax.Array] | None = None
                  ) -> Callable[..., tuple[jax.Array, ...]]:
    """Builds ``evaluate(params, model_state, data, norm) -> (losses (M,), correct (M,),
    predicted (M,) int32)`` for one member (the model in evaluation mode: no dropout, its
    running statistics), and a fourth output, ``metric(logits, labels)`` (M,), when a
    study's metric is given.

    data is an ImageData of M examples, taken ``eval_batch`` at a time by a loop inside
    the program; the result is each example's cross-entropy and whether it was
    classified right. Sums are left to the host (in float64, in a fixed order). Apply
    it to many members with ``vmap`` only: nested inside another loop (``lax.map`` over
    members) XLA fuses it differently, and the last bits would depend on how many
    members share the program (``runner.ChunkProgram`` evaluates one member at a time
    instead).
    """

    def evaluate(params: Any, model_state: Any, data: ImageData, norm: Normalizer
                 ) -> tuple[jax.Array, ...]:
        m = data.labels.shape[0]
        chunks = math.ceil(m / eval_batch)
        indices = jnp.minimum(jnp.arange(chunks * eval_batch), m - 1).reshape(chunks, eval_batch)
        dtype = jax.tree.leaves(params)[0].dtype

        def one_chunk(idx):
            logits, _ = fns.apply(params, model_state, normalize(data.images[idx], norm, dtype))
            labels = data.labels[idx]
            losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
            own = () if metric is None else (jnp.asarray(metric(logits, labels), dtype),)
            predicted = logits.argmax(-1).astype(jnp.int32)
            return losses, predicted == labels, predicted, *own

        return tuple(out.reshape(-1)[:m] for out in jax.lax.map(one_chunk, indices))

    return evaluate


def summarize_evaluation(losses: Any, correct: Any, predicted: Any = None, values: Any = None
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Per-member mean loss, accuracy (%) and own metric (None without one) from
    :func:`make_evaluate`'s (..., M) outputs, in float64 on the host: 6672 right of 10000
    reads exactly 66.72."""
    losses = np.asarray(losses, np.float64)
    correct = np.asarray(correct)
    mean = None if values is None else np.asarray(values, np.float64).mean(axis=-1)
    return losses.mean(axis=-1), 100.0 * correct.sum(axis=-1) / correct.shape[-1], mean

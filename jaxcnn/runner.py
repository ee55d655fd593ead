"""Train one configuration for S seeds: the loop around the compiled epoch.

:func:`train_config` initialises every seed's state from its own init key,
runs the epochs (each one compiled ``lax.scan``, seeds batched as chosen),
evaluates on the validation split after each epoch and on the test split at
the end, and records each seed's history. After every epoch it hands the
state to an ``on_epoch`` hook (checkpointing); given a saved state it resumes
from there. A seed whose loss turns NaN or infinite is marked diverged with
its epoch; the others carry on.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Callable
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn import train
from jaxcnn.data.splits import PreparedData
from jaxcnn.model import CNN, ModelConfig
from jaxcnn.optim import OptimizerConfig, build_optimizer
from jaxcnn.progress import StepBar, Stopwatch, format_epoch_line, log

STEP_LOSS_EVERY = 100  # the seed notebook recorded the loss of every 100th step
# A seed has diverged when a loss is NaN or infinite, or when a step's loss exceeds this:
# cross-entropy over 10 classes starts near ln 10 = 2.3, and a step above 1e4 means the
# weights have blown up (with --lr 10 losses reach 1e13 while staying finite, and the
# seed ends at chance).
DIVERGENCE_LOSS = 1e4


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """One configuration of a study: the network and its optimizer."""

    model: ModelConfig
    optimizer: OptimizerConfig
    description: str = ""


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """How to train; every field but ``show_progress`` is fixed per study."""

    epochs: int = 2
    batch_size: int = 64
    seed_batching: str = "map"
    show_progress: bool = True


class DeviceData:
    """The prepared splits, moved to the device once and shared by every run."""

    def __init__(self, prepared: PreparedData):
        def put(split) -> train.ImageData:
            return train.ImageData(jax.device_put(split.images),
                                   jax.device_put(split.labels.astype(np.int32)))

        self.train = put(prepared.train)
        self.test = put(prepared.test)
        self.val = self.test if prepared.val_is_test else put(prepared.val)
        self.val_is_test = prepared.val_is_test
        self.norm = train.Normalizer(jnp.asarray(prepared.normalization.mean),
                                     jnp.asarray(prepared.normalization.std))
        self.num_train = len(prepared.train)


@dataclasses.dataclass
class Progress:
    """A configuration's state after ``epochs_done`` epochs (what a checkpoint holds).

    states: TrainState with leaves (S, ...) as numpy arrays.
    histories: one dict per seed (see :func:`empty_history`).
    """

    epochs_done: int
    states: train.TrainState
    histories: list[dict]


@dataclasses.dataclass
class ConfigResult:
    """A finished configuration: per-seed records and the final parameters."""

    seeds: list[dict]
    params: Any  # leaves (S, ...) numpy
    wall_seconds: float  # of this invocation only, when resumed
    resumed_from_epoch: int = 0


def empty_history() -> dict:
    return {"train_loss": [], "val_loss": [], "val_accuracy": [], "train_step_loss": [],
            "diverged_epoch": None}


def _finite_or_none(value: float) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def params_checksums(params: Any) -> list[str]:
    """sha256 (16 hex digits) of each seed's parameters; leaves have a leading S axis.

    Stored per seed so the statistics can check, rather than assume, that two
    configurations started seed i from the same weights.
    """
    leaves = [np.asarray(x) for x in jax.tree.leaves(params)]
    out = []
    for s in range(leaves[0].shape[0]):
        digest = hashlib.sha256()
        for leaf in leaves:
            digest.update(np.ascontiguousarray(leaf[s]).tobytes())
        out.append(digest.hexdigest()[:16])
    return out


def _percent(correct: jax.Array, split: train.ImageData) -> np.ndarray:
    """Accuracy in percent, in float64 so 6672 of 10000 reads 66.72."""
    return 100.0 * np.asarray(correct, np.float64) / split.labels.shape[0]


def seed_groups(seeds: list[int], seed_batching: str) -> list[list[int]]:
    """Seeds trained by one compiled program each: all at once, or one by one."""
    return [[s] for s in seeds] if seed_batching == "sequential" else [list(seeds)]


def _stack(trees: list[Any]) -> Any:
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def _concat_to_host(trees: list[Any]) -> Any:
    return jax.tree.map(lambda *xs: np.concatenate([np.asarray(x) for x in xs]), *trees)


def _split(tree: Any, sizes: list[int]) -> list[Any]:
    bounds = np.cumsum([0, *sizes])
    return [jax.tree.map(lambda x, a=a, b=b: jnp.asarray(x[a:b]), tree)
            for a, b in zip(bounds[:-1], bounds[1:])]


@functools.lru_cache(maxsize=32)
def compiled_functions(model_config: ModelConfig, optimizer_config: OptimizerConfig,
                       num_train: int, batch_size: int, seed_batching: str,
                       on_step: StepBar | None) -> tuple[Callable, Callable, Callable]:
    """Jitted (init, train_epoch, evaluate) for one configuration, built once.

    Cached so that runs with the same configuration and sizes (seeds trained
    one by one, tests, benchmarks) share compiled programs.
    """
    model = CNN(model_config)
    tx = build_optimizer(optimizer_config, train.steps_per_epoch(num_train, batch_size))
    init_fn = jax.jit(lambda key: train.init_state(key, model, tx))
    epoch_fn = jax.jit(train.make_train_epoch(
        model, tx, num_train=num_train, batch_size=batch_size, seed_batching=seed_batching,
        on_step=on_step), donate_argnums=0)
    return init_fn, epoch_fn, compiled_evaluate(model_config, seed_batching)


@functools.lru_cache(maxsize=32)
def compiled_evaluate(model_config: ModelConfig, seed_batching: str) -> Callable:
    """Jitted evaluate: it depends on the network only, so optimizers share it.

    It uses the training convolution: on the CPU, Winograd evaluates 1.3-1.7x
    faster than lax.conv (measured twice, see benchmarks/NOTES.md), even though
    forward-only lax.conv has no loop trap.
    """
    return jax.jit(train.make_evaluate(CNN(model_config), seed_batching=seed_batching))


class Checkpointer(Protocol):
    """Where :func:`train_config` saves progress each epoch and resumes from."""

    def save(self, progress: Progress) -> None: ...

    def restore(self, template_states: Any) -> Progress | None: ...


def train_config(name: str, config: RunConfig, data: DeviceData, seeds: list[int],
                 settings: TrainSettings, *, checkpointer: Checkpointer | None = None
                 ) -> ConfigResult:
    """Trains ``config`` for every seed in ``seeds`` and evaluates it.

    Args:
      name: the configuration's name, for progress lines.
      config: model and optimizer.
      data: the device-resident splits.
      seeds: integer seeds; seed i's keys come from ``train.seed_keys(i)``.
      settings: epochs, batch size, seed batching.
      checkpointer: if given, the run resumes from its latest saved progress
        and saves after every epoch.
    """
    clock = Stopwatch()
    steps = train.steps_per_epoch(data.num_train, settings.batch_size)
    groups = seed_groups(seeds, settings.seed_batching)
    group_keys = [train.stack_seed_keys(g) for g in groups]
    bar = StepBar(settings.show_progress)
    # "sequential" is "map" over groups of one seed: the same compiled program.
    batching = "map" if settings.seed_batching == "sequential" else settings.seed_batching
    init_fn, epoch_fn, eval_fn = compiled_functions(
        config.model, config.optimizer, data.num_train, settings.batch_size, batching,
        bar if bar.enabled else None)

    states = [_stack([init_fn(k) for k in keys.init]) for keys in group_keys]
    checksums = params_checksums(_concat_to_host([s.params for s in states]))
    histories = [empty_history() for _ in seeds]
    start = 0
    resume = checkpointer.restore(_concat_to_host(states)) if checkpointer else None
    if resume is not None:
        states = _split(resume.states, [len(g) for g in groups])
        histories = [dict(h) for h in resume.histories]
        start = resume.epochs_done
        log(f"[{name}] resuming after epoch {start} from the checkpoint")

    val_name = "test" if data.val_is_test else "val"
    for epoch in range(start, settings.epochs):
        epoch_clock = Stopwatch()
        step_losses, val_losses, val_accs = [], [], []
        for gi, keys in enumerate(group_keys):
            bar.start(steps, f"{name} epoch {epoch + 1}/{settings.epochs}")
            states[gi], metrics = epoch_fn(states[gi], keys, data.train, data.norm,
                                           jnp.int32(epoch))
            loss, correct = eval_fn(states[gi].params, data.val, data.norm)
            step_losses.append(np.asarray(metrics["loss"]))
            val_losses.append(np.asarray(loss))
            val_accs.append(_percent(correct, data.val))
            bar.close()
        step_loss = np.concatenate(step_losses, axis=1)  # (T, S)
        val_loss, val_acc = np.concatenate(val_losses), np.concatenate(val_accs)
        train_loss = step_loss.mean(axis=0)
        for s, history in enumerate(histories):
            history["train_loss"].append(_finite_or_none(train_loss[s]))
            history["val_loss"].append(_finite_or_none(val_loss[s]))
            history["val_accuracy"].append(_finite_or_none(val_acc[s]) if np.isfinite(val_loss[s])
                                           else None)
            history["train_step_loss"] += [_finite_or_none(v) for v in
                                           step_loss[STEP_LOSS_EVERY - 1::STEP_LOSS_EVERY, s]]
            healthy = (np.isfinite(step_loss[:, s]).all() and np.isfinite(val_loss[s])
                       and step_loss[:, s].max() <= DIVERGENCE_LOSS)
            if not healthy and history["diverged_epoch"] is None:
                history["diverged_epoch"] = epoch + 1
                log(f"[{name}] seed {seeds[s]} diverged in epoch {epoch + 1} (a loss was NaN, "
                    f"infinite or above {DIVERGENCE_LOSS:g}); it carries on but is excluded "
                    "from the statistics and figures")
        alive = np.array([h["diverged_epoch"] is None for h in histories])
        log(format_epoch_line(name, epoch + 1, settings.epochs, train_loss[alive],
                              val_loss[alive], val_acc[alive], epoch_clock.seconds(), val_name,
                              diverged=int((~alive).sum())))
        if checkpointer is not None:
            checkpointer.save(Progress(epoch + 1, _concat_to_host(states), histories))

    test_loss, test_acc = [], []
    for gi in range(len(groups)):
        loss, correct = eval_fn(states[gi].params, data.test, data.norm)
        test_loss.append(np.asarray(loss))
        test_acc.append(_percent(correct, data.test))
    test_loss, test_acc = np.concatenate(test_loss), np.concatenate(test_acc)
    records = []
    for s, seed in enumerate(seeds):
        diverged = histories[s]["diverged_epoch"] is not None or not np.isfinite(test_loss[s])
        records.append({
            "seed": seed,
            "initial_params_checksum": checksums[s],
            "test_accuracy": None if diverged else float(test_acc[s]),
            "test_loss": None if diverged else float(test_loss[s]),
            "diverged_epoch": histories[s]["diverged_epoch"],
            "history": {k: v for k, v in histories[s].items() if k != "diverged_epoch"},
        })
    params = _concat_to_host([s.params for s in states])
    return ConfigResult(records, params, clock.seconds(), resumed_from_epoch=start)

"""Train the members of one network: compiled chunk programs, epochs, checkpoints.

A *group* is every member (configuration, seed) whose configuration has the same
:class:`~jaxcnn.model.Network`; one :class:`ChunkProgram` (init, epoch,
evaluation, compiled once) trains all of them, a chunk of members at a time.
:func:`train_members` runs the chunks, ``settings.workers`` of them at once
(worker threads on the CPU), and hands each chunk's finished members to a
callback as soon as they are done, so the caller can write results while the
rest train. After every epoch a chunk's state goes to its checkpointer; given a
saved state the chunk resumes from there. A member whose loss turns NaN,
infinite or huge is marked diverged with its epoch; the others carry on.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn import history as hist
from jaxcnn import train
from jaxcnn.batching import over_members
from jaxcnn.configs import Hyperparams, stack
from jaxcnn.data.splits import PreparedData
from jaxcnn.model import CNN, Network
from jaxcnn.progress import EpochLines, StepBoard, Stopwatch

REPORT_EVERY = 25  # steps between progress callbacks from inside an epoch


@dataclasses.dataclass(frozen=True)
class Member:
    """One (configuration, seed) to train.

    config: the name results are reported under (unique per distinct model);
    hparams: host scalars (see ``configs.hyperparams``).
    """

    config: str
    seed: int
    hparams: Hyperparams

    @property
    def key(self) -> str:
        return f"{self.config}#{self.seed}"


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """How a group is trained; only ``epochs`` and ``batch_size`` change results."""

    epochs: int
    batch_size: int
    batching: str = "threads"
    conv: str = "winograd"
    workers: int = 1
    members_per_chunk: int = 1
    show_progress: bool = False


class DeviceData:
    """The prepared splits, moved to the device once and shared by every chunk."""

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
        self.num_classes = len(prepared.class_names)


@dataclasses.dataclass
class ChunkProgress:
    """A chunk's state after ``epochs_done`` epochs (what a checkpoint holds).

    states: TrainState with leaves (M, ...) as numpy arrays (padding included);
    histories, schedules: one per real member.
    """

    epochs_done: int
    states: train.TrainState
    histories: list[dict]
    schedules: list[dict | None]


@dataclasses.dataclass
class MemberResult:
    """A finished member: its results.json seed entry, applied schedule and parameters."""

    member: Member
    record: dict
    schedule: dict
    params: Any  # numpy leaves, no member axis
    resumed_from_epoch: int = 0


class Checkpointer(Protocol):
    """Where a chunk saves its progress each epoch and resumes from."""

    def save(self, progress: ChunkProgress) -> None: ...

    def restore(self, template_states: Any) -> ChunkProgress | None: ...


def params_checksums(params: Any) -> list[str]:
    """sha256 (16 hex digits) of each member's parameters; leaves have a leading M axis.

    Stored per seed so the statistics can check, rather than assume, that two
    configurations started seed i from the same weights.
    """
    leaves = [np.asarray(x) for x in jax.tree.leaves(params)]
    out = []
    for m in range(leaves[0].shape[0]):
        digest = hashlib.sha256()
        for leaf in leaves:
            digest.update(np.ascontiguousarray(leaf[m]).tobytes())
        out.append(digest.hexdigest()[:16])
    return out


def to_host(tree: Any) -> Any:
    return jax.tree.map(np.asarray, tree)


class ChunkProgram:
    """The compiled init, epoch and evaluation for chunks of ``width`` members.

    Compiled ahead of time once (``jit(...).lower(...).compile()``), so worker
    threads share one executable and the compile time is known. Evaluation
    compiles once per split size (validation, test).
    """

    def __init__(self, network: Network, conv: str, batching: str, width: int,
                 num_train: int, batch_size: int, on_step: StepBoard | None):
        self.network, self.width = network, width
        self.compile_seconds = 0.0
        model = CNN(network, conv=conv)
        self._batching = batching
        init = over_members(lambda keys, hparams: train.init_state(keys, network, hparams),
                            batching, 2)
        epoch = over_members(train.make_train_epoch(model, num_train=num_train,
                                                    batch_size=batch_size, on_step=on_step,
                                                    report_every=REPORT_EVERY),
                             batching, 2)
        self._evaluate_one = train.make_evaluate(model)
        self._init_jit = jax.jit(lambda keys, hparams: init(keys, hparams))
        self._epoch_jit = jax.jit(epoch, donate_argnums=0)
        self._compiled: dict[Any, Any] = {}
        self._lock = threading.Lock()

    def _compile(self, key: Any, jitted, *args) -> Any:
        with self._lock:
            if key not in self._compiled:
                clock = Stopwatch()
                self._compiled[key] = jitted.lower(*args).compile()
                self.compile_seconds += clock.seconds()
            return self._compiled[key]

    def init(self, keys: train.SeedKeys, hparams: Hyperparams) -> train.TrainState:
        return self._compile("init", self._init_jit, keys, hparams)(keys, hparams)

    def epoch(self, states: train.TrainState, keys: train.SeedKeys, data: DeviceData,
              epoch: int, slot: int) -> tuple[train.TrainState, dict]:
        args = (states, keys, data.train, data.norm, jnp.int32(epoch), jnp.int32(slot))
        return self._compile("epoch", self._epoch_jit, *args)(*args)

    def evaluate(self, params: Any, split: train.ImageData, norm: train.Normalizer
                 ) -> tuple[jax.Array, jax.Array]:
        """Per-example (losses, correct) of every member on ``split``: (M, N) each.

        With vmap, one program for the chunk. Otherwise each member is evaluated by
        the same one-member program, whatever the chunk's width, so a member's
        numbers cannot depend on how many members shared its chunk (XLA may fuse a
        reduction differently in a program for another width).
        """
        if self._batching == "vmap":
            key = ("evaluate", split.labels.shape[0])
            if key not in self._compiled:
                self._compile(key, jax.jit(over_members(self._evaluate_one, "vmap", 1)),
                              params, split, norm)
            return self._compiled[key](params, split, norm)
        key = ("evaluate_one", split.labels.shape[0])
        one = jax.tree.map(lambda x: x[0], params)
        if key not in self._compiled:
            self._compile(key, jax.jit(self._evaluate_one), one, split, norm)
        outputs = [self._compiled[key](jax.tree.map(lambda x, i=i: x[i], params), split, norm)
                   for i in range(self.width)]
        return tuple(jnp.stack(parts) for parts in zip(*outputs))

    def warm_up(self, data: DeviceData, hparams: Hyperparams) -> None:
        """Compiles everything with a dummy chunk, before workers start."""
        keys = train.stack_seed_keys([0] * self.width)
        hp = stack([hparams] * self.width)
        states = jax.eval_shape(lambda: self._init_jit(keys, hp))
        self._compile("init", self._init_jit, keys, hp)
        args = (states, keys, data.train, data.norm, jnp.int32(0), jnp.int32(0))
        self._compile("epoch", self._epoch_jit, *args)
        for split in {id(data.val): data.val, id(data.test): data.test}.values():
            if self._batching == "vmap":
                evaluate = jax.jit(over_members(self._evaluate_one, "vmap", 1))
                self._compile(("evaluate", split.labels.shape[0]), evaluate, states.params,
                              split, data.norm)
            else:
                one = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype),
                                   states.params)
                self._compile(("evaluate_one", split.labels.shape[0]),
                              jax.jit(self._evaluate_one), one, split, data.norm)


@functools.lru_cache(maxsize=16)
def chunk_program(network: Network, conv: str, batching: str, width: int, num_train: int,
                  batch_size: int, on_step: StepBoard | None) -> ChunkProgram:
    """One program per (network, conv, batching, chunk width, data and batch size), shared
    by every study, test and benchmark in the process."""
    return ChunkProgram(network, conv, batching, width, num_train, batch_size, on_step)


def chunks_of(members: list[Member], width: int) -> list[list[Member]]:
    """Consecutive chunks of at most ``width`` members (the last may be shorter)."""
    return [members[i:i + width] for i in range(0, len(members), width)]


def _padded(members: list[Member], width: int) -> list[Member]:
    # A short last chunk repeats its last member; the copies' results are dropped.
    return members + [members[-1]] * (width - len(members))


def train_chunk(program: ChunkProgram, members: list[Member], data: DeviceData,
                settings: RunSettings, *, slot: int = 0, board: StepBoard | None = None,
                lines: EpochLines | None = None,
                checkpointer: Checkpointer | None = None) -> list[MemberResult]:
    """Trains and evaluates one chunk of members through every epoch."""
    real = len(members)
    padded = _padded(members, program.width)
    keys = train.stack_seed_keys([m.seed for m in padded])
    states = program.init(keys, stack([m.hparams for m in padded]))
    checksums = params_checksums(states.params)[:real]
    histories = [hist.empty_history() for _ in members]
    schedules: list[dict | None] = [None] * real
    start = 0
    resume = checkpointer.restore(to_host(states)) if checkpointer else None
    if resume is not None:
        states = jax.tree.map(jnp.asarray, resume.states)
        histories, schedules = resume.histories, resume.schedules
        start = resume.epochs_done
    if lines is not None:
        for m in members:
            lines.skip(m.config, start)
    steps = train.steps_per_epoch(data.num_train, settings.batch_size)
    stride = hist.schedule_stride(steps * settings.epochs)
    for epoch in range(start, settings.epochs):
        if board is not None:
            board.begin_epoch(slot, program.width if settings.batching == "vmap" else 1)
        states, metrics = program.epoch(states, keys, data, epoch, slot)
        val_loss, val_acc = train.summarize_evaluation(
            *program.evaluate(states.params, data.val, data.norm))
        metrics = to_host(metrics)  # {name: (M, T)}
        if board is not None:
            width = program.width
            board.end_epoch(slot, steps * width, (steps // REPORT_EVERY) * REPORT_EVERY * width)
        for i, m in enumerate(members):
            hist.record_epoch(histories[i], epoch + 1, metrics["loss"][i], val_loss[i],
                              val_acc[i])
            schedules[i] = hist.schedule_record(schedules[i], epoch, metrics["learning_rate"][i],
                                                metrics["beta1"][i], stride)
            if lines is not None:
                lines.report(m.config, epoch + 1, float(metrics["loss"][i].mean()),
                             float(val_loss[i]), float(val_acc[i]),
                             histories[i]["diverged_epoch"] is None)
        if checkpointer is not None:
            checkpointer.save(ChunkProgress(epoch + 1, to_host(states), histories, schedules))
    test_loss, test_acc = train.summarize_evaluation(
        *program.evaluate(states.params, data.test, data.norm))
    params = to_host(states.params)
    return [MemberResult(m, hist.member_record(m.seed, checksums[i], histories[i], test_loss[i],
                                               test_acc[i]),
                         schedules[i], jax.tree.map(lambda x, i=i: x[i], params),
                         resumed_from_epoch=start)
            for i, m in enumerate(members)]


def train_members(network: Network, members: list[Member], data: DeviceData,
                  settings: RunSettings, *, on_done: Callable[[list[MemberResult]], None],
                  checkpointer_for: Callable[[list[Member]], Checkpointer | None] | None = None,
                  lines: EpochLines | None = None, board: StepBoard | None = None
                  ) -> ChunkProgram:
    """Trains every member of one network, chunk by chunk, ``settings.workers`` at a time.

    ``on_done`` receives each chunk's results in the calling thread, as chunks
    finish (results can be written while others train). Returns the program
    (its ``compile_seconds`` say what compilation cost).
    """
    width = min(settings.members_per_chunk, len(members))
    program = chunk_program(network, settings.conv, settings.batching, width, data.num_train,
                            settings.batch_size, board if board and board.enabled else None)
    program.warm_up(data, members[0].hparams)
    chunks = chunks_of(members, width)

    def run(slot: int, chunk: list[Member]) -> list[MemberResult]:
        ckpt = checkpointer_for(chunk) if checkpointer_for else None
        return train_chunk(program, chunk, data, settings, slot=slot, board=board, lines=lines,
                           checkpointer=ckpt)

    if settings.workers <= 1:
        for chunk in chunks:
            on_done(run(0, chunk))
        return program
    free_slots = list(range(settings.workers))
    slot_lock = threading.Lock()

    def run_in_worker(chunk: list[Member]) -> list[MemberResult]:
        with slot_lock:
            slot = free_slots.pop()
        try:
            return run(slot, chunk)
        finally:
            with slot_lock:
                free_slots.append(slot)

    with ThreadPoolExecutor(settings.workers, thread_name_prefix="jaxcnn-worker") as pool:
        futures = [pool.submit(run_in_worker, chunk) for chunk in chunks]
        try:
            for future in as_completed(futures):
                on_done(future.result())
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return program

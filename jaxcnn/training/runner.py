"""Train the members of one network: compiled chunk programs, epochs, checkpoints.

A *group* is every member (configuration, seed) whose configuration has the same
:class:`~jaxcnn.models.model.Network`; one :class:`ChunkProgram` (init, epoch,
evaluation, compiled once) trains all of them, a chunk of members at a time.
With several local devices the chunk's member axis is split over them
(``shard_map`` over a one-axis ``Mesh``, the data replicated), each device
batching its share as the chunk does. :func:`train_members` runs the chunks,
``settings.workers`` of them at once (worker threads), and yields each chunk's
finished members as soon as they are done, so the caller can write results
while the rest train. After every epoch a chunk's state goes to
its checkpointer; given a saved state the chunk resumes from there. A member
whose loss turns NaN, infinite or huge is marked diverged with its epoch; the
others carry on.

State lives in objects a run creates and drops: its :class:`Programs` (the
compiled programs, keyed by what fixes them, and the :class:`StepHook` they
call at every step) and its :class:`DeviceData` (the splits on the devices, and
their copies on the first device). Nothing is cached at module level. The hook
makes Ctrl-C take effect at the next step boundary (see ``interrupt.py``), on
one device or split over several.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import threading
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxcnn.configs import Hyperparams, ProgramSpec, as_program, stack
from jaxcnn.data.splits import PreparedData
from jaxcnn.models.conv import check_conv, default_conv
from jaxcnn.models.model import Network
from jaxcnn.models.modelfns import model_fns, saved_weights
from jaxcnn.models.registry import DEFAULT_MODEL
from jaxcnn.platform.interrupt import Interrupted, StopFlag, is_stop_error, quiet_stop_traces
from jaxcnn.platform.progress import EpochLines, StepBoard, Stopwatch, log
from jaxcnn.training import history as hist
from jaxcnn.training import train
from jaxcnn.training.batching import BATCHINGS, default_batching, default_workers, over_members
from jaxcnn.training.checkpoint import ChunkProgress
from jaxcnn.training.members import Member, MemberResult
from jaxcnn.training.memory import MemoryEstimate, compiled_member_bytes, plan_chunk

REPORT_EVERY = 25  # steps between updates of the progress bar from inside an epoch
MEMBERS = "members"  # the mesh axis the member axis is split over


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """How a group is trained; only ``epochs`` and ``batch_size`` change results.

    ``batching``, ``conv`` and ``workers`` left as "auto"/None mean what the
    command line would choose on this device (:meth:`resolved`).
    ``members_per_chunk`` None means every member of the group in one chunk
    (one member per chunk with threads); ``devices`` the local devices the
    member axis is split over. ``memory_free`` (bytes per device, None: unchecked) is
    what a chunk may use: the chunk is narrowed when its compiled program says it does
    not fit (:func:`fitted_program`).
    """

    epochs: int
    batch_size: int
    batching: str = "auto"
    conv: str = "auto"
    workers: int | None = None
    members_per_chunk: int | None = None
    devices: int = 1
    show_progress: bool = False
    memory_free: int | None = None

    def resolved(self, platform: str | None = None) -> RunSettings:
        """``auto`` and None replaced by the defaults for ``platform`` (default: JAX's)."""
        platform = platform or jax.default_backend()
        batching = default_batching(platform) if self.batching == "auto" else self.batching
        if batching not in BATCHINGS:
            raise ValueError(f"batching must be auto or one of {', '.join(BATCHINGS)}, "
                             f"got {batching!r}")
        if self.devices > 1 and batching == "threads":
            batching = "map"  # each device maps over its own members instead
        conv = default_conv(platform) if self.conv == "auto" else check_conv(self.conv)
        per_chunk = self.members_per_chunk or (1 if batching == "threads" else None)
        workers = self.workers or default_workers(batching)
        return dataclasses.replace(self, batching=batching, conv=conv, workers=workers,
                                   members_per_chunk=per_chunk)


class DeviceData:
    """The prepared splits, moved to the device(s) once and shared by every chunk.

    With a ``mesh`` every array is replicated on each of its devices.
    """

    def __init__(self, prepared: PreparedData, mesh: Mesh | None = None):
        where = NamedSharding(mesh, P()) if mesh is not None else None

        def put(x):
            return jax.device_put(x, where)

        def split(s) -> train.ImageData:
            return train.ImageData(put(s.images), put(s.labels.astype(np.int32)))

        self.mesh = mesh
        self.prepared = prepared
        self.per_seed = prepared.per_seed
        # each seed's own split (the default): every training image on the device, each
        # member's rows picking its own (train.SeedKeys.rows)
        self.train = split(prepared.pool if self.per_seed else prepared.train)
        self.test = split(prepared.test)
        self.val = self.test if prepared.val_is_test else split(prepared.val)
        self.val_is_test = prepared.val_is_test
        self.norm = train.Normalizer(put(np.asarray(prepared.normalization.mean)),
                                     put(np.asarray(prepared.normalization.std)))
        self.num_train = len(prepared.train)
        self.num_classes = len(prepared.class_names)
        self.nbytes = sum(x.nbytes for x in (self.train.images, prepared.test.images,
                                             *(() if prepared.val_is_test
                                               else (prepared.val.images,))))
        self._local: dict[str, tuple[train.ImageData, train.Normalizer]] = {}
        self._lock = threading.Lock()

    def keys_for(self, seeds: list[int]) -> train.SeedKeys:
        """The members' keys, with each seed's own training images where it has its own."""
        rows = (np.stack([self.prepared.rows(s)[0] for s in seeds])
                if self.per_seed else None)
        return train.stack_seed_keys(seeds, rows)

    @property
    def own_val(self) -> bool:
        """Whether each seed is validated on its own held-out images."""
        return self.per_seed and not self.val_is_test

    def val_rows(self, seeds: list[int]) -> np.ndarray:
        """(M, N_val) int32: each seed's validation images, indices into ``train``."""
        return np.stack([self.prepared.rows(s)[1] for s in seeds]).astype(np.int32)

    def val_of(self, seed: int) -> train.ImageData:
        """Seed ``seed``'s validation images on the (first) device."""
        rows = self.prepared.rows(seed)[1]
        where = self.mesh.devices.flat[0] if self.mesh is not None else None
        return jax.device_put(train.ImageData(self.prepared.pool.images[rows],
                                              self.prepared.pool.labels[rows].astype(np.int32)),
                              where)

    def eval_splits(self) -> tuple[str, ...]:
        """The names of the splits evaluated during a run ("val" is "test" when they agree)."""
        return ("test",) if self.val_is_test else ("val", "test")

    def on_first_device(self, name: str) -> tuple[train.ImageData, train.Normalizer]:
        """Split ``name`` and the normalizer on the mesh's first device (as they are
        without a mesh). Copied once and kept with this data, since evaluation runs after
        every epoch; dropped with it."""
        split = getattr(self, name)
        if self.mesh is None:
            return split, self.norm
        name = "test" if self.val_is_test else name
        with self._lock:
            if name not in self._local:
                self._local[name] = jax.device_put((split, self.norm),
                                                   self.mesh.devices.flat[0])
            return self._local[name]


class Checkpointer(Protocol):
    """Where a chunk saves its progress each epoch and resumes from."""

    def save(self, progress: ChunkProgress) -> None: ...

    def restore(self, template_states: Any) -> ChunkProgress | None: ...


class ChunkCheckpoints(Protocol):
    """Gives each chunk its checkpointer (``checkpoint.CheckpointFolder``)."""

    def for_chunk(self, members: list[Member]) -> Checkpointer | None: ...


@dataclasses.dataclass
class FinishedChunk:
    """What :func:`train_members` yields: a chunk's finished members, and the checkpointer
    that holds its progress (None without checkpoints); the caller clears it once every
    member is written."""

    results: list[MemberResult]
    checkpointer: Checkpointer | None


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


def member_mesh(devices: int) -> Mesh | None:
    """A one-axis mesh over the first ``devices`` local devices (None for one)."""
    local = jax.local_devices()
    if devices > len(local):
        raise ValueError(f"--devices {devices}: only {len(local)} local devices")
    return Mesh(np.array(local[:devices]), (MEMBERS,)) if devices > 1 else None


class StepHook:
    """The host callback each compiled epoch makes at every step boundary: ``(slot, steps)``.

    It checks the run's :class:`~jaxcnn.platform.interrupt.StopFlag` (raising there abandons the
    epoch within one step of Ctrl-C) and feeds the run's step bar every ``REPORT_EVERY``
    steps. The compiled epochs close over this object, so it belongs to the
    :class:`Programs` that holds them; each run :meth:`attach`-es its own board and flag.
    """

    def __init__(self) -> None:
        self.board: StepBoard | None = None
        self.stop = StopFlag()

    def attach(self, board: StepBoard | None, stop: StopFlag) -> None:
        self.board, self.stop = board, stop

    def __call__(self, slot: Any, steps_done: Any) -> None:
        self.stop.check()
        board = self.board
        if board is not None and int(steps_done) % REPORT_EVERY == 0:
            board(slot, steps_done)

    def check_stop(self, slot: Any, steps_done: Any) -> None:
        """The hook of a program split over devices: each device calls it for its share,
        so it only checks the stop flag (the bar advances at the epoch's end)."""
        self.stop.check()


class ChunkProgram:
    """The compiled init, epoch and evaluation for chunks of ``width`` members.

    Compiled ahead of time once (``jit(...).lower(...).compile()``), so worker
    threads share one executable and the compile time is known; evaluation
    compiles once per split size. With a mesh, each function is a ``shard_map``
    over the member axis: every device runs the chunk's batching on its own
    ``width / devices`` members, with no communication between devices.
    ``on_step`` (a :class:`StepHook`, or None for no callback) is called at every step.
    """

    def __init__(self, spec: Network | ProgramSpec, conv: str, batching: str, width: int,
                 num_train: int, batch_size: int, on_step: StepHook | None,
                 mesh: Mesh | None = None, stepped: bool | None = None):
        spec = as_program(spec)
        self.network, self.width, self.mesh = spec.network, width, mesh
        self.compile_seconds = 0.0
        # A user's model on the CPU trains one compiled step per batch, called from Python:
        # XLA:CPU runs a stock convolution inside a loop (the epoch's lax.scan, or lax.map
        # over members) tens of times slower (docs/performance.md). The seed CNN's own
        # convolutions do not fall into it, and keep the one-program epoch.
        self.stepped = (stepped if stepped is not None else
                        mesh is None and spec.network.model != DEFAULT_MODEL
                        and jax.default_backend() == "cpu")
        self.on_step = on_step
        local = "map" if batching == "threads" else batching
        if self.stepped and width == 1:
            local = "vmap"  # one member: no loop over members either
        fns = model_fns(spec.network, conv)  # network.model: the CNN or a user's module
        tx = spec.transform()  # the built-in Adam chain, or the configurations' own optax
        init = over_members(lambda keys, hparams: train.init_state(keys, fns, hparams, tx),
                            local, 2)
        split_last = fns.stateful and num_train % batch_size != 0
        order = over_members(lambda keys, epoch: train.epoch_order(
            keys, epoch, num_train, batch_size, split_last), local, 1)
        batch_step = train.make_batch_step(fns, tx)
        step = over_members(lambda state, keys, rows, mask, data, norm: batch_step(
            state, keys, data, norm, rows, mask), local, 4)
        epoch = over_members(train.make_train_epoch(
            fns, num_train=num_train, batch_size=batch_size, report_every=1, optimizer=tx,
            on_step=on_step if mesh is None or on_step is None else on_step.check_stop),
            local, 2)
        # Evaluation: vmapped over the chunk; otherwise one member at a time by a
        # one-member program on the first device, whatever the chunk's width or device
        # count (see train.make_evaluate: the same executable, so the same bits).
        self._vmap_eval = local == "vmap"
        one = train.make_evaluate(
            fns, metric=spec.metric.per_example if spec.metric is not None else None)
        evaluate = over_members(one, "vmap", 2) if self._vmap_eval else one
        # each member on its own validation images (rows (M, N_val) into the training pool)
        own = over_members(lambda params, state, rows, pool, norm: one(
            params, state, train.ImageData(pool.images[rows], pool.labels[rows]), norm),
            "vmap", 3)
        if mesh is not None:
            shard = functools.partial(jax.shard_map, mesh=mesh, check_vma=False)
            m, r = P(MEMBERS), P()
            init = shard(init, in_specs=(m, m), out_specs=m)
            epoch = shard(epoch, in_specs=(m, m, r, r, r, r), out_specs=m)
            if self._vmap_eval:
                evaluate = shard(evaluate, in_specs=(m, m, r, r), out_specs=m)
                own = shard(own, in_specs=(m, m, m, r, r), out_specs=m)
        self._jitted = {"init": jax.jit(init), "epoch": jax.jit(epoch, donate_argnums=0),
                        "evaluate": jax.jit(evaluate), "evaluate_own": jax.jit(own),
                        "order": jax.jit(order), "step": jax.jit(step, donate_argnums=0)}
        self._first_device = (mesh.devices.flat[0] if mesh is not None
                              else jax.local_devices()[0])
        self._compiled: dict[Any, Any] = {}
        self._lock = threading.Lock()

    @property
    def compilations(self) -> int:
        """How many executables this program has compiled (init, epoch, one per eval size)."""
        return len(self._compiled)

    def _compiled_for(self, name: str, key: Any, *args) -> Any:
        with self._lock:
            if key not in self._compiled:
                clock = Stopwatch()
                self._compiled[key] = self._jitted[name].lower(*args).compile()
                self.compile_seconds += clock.seconds()
            return self._compiled[key]

    def _call(self, name: str, key: Any, *args) -> Any:
        return self._compiled_for(name, key, *args)(*args)

    def place(self, tree: Any) -> Any:
        """Puts member-axis arrays where the program wants them (split over the mesh)."""
        if self.mesh is None:
            return jax.tree.map(jnp.asarray, tree)
        return jax.device_put(tree, NamedSharding(self.mesh, P(MEMBERS)))

    def init(self, keys: train.SeedKeys, hparams: Hyperparams) -> train.TrainState:
        keys, hparams = self.place(keys), self.place(hparams)
        return self._call("init", "init", keys, hparams)

    def epoch(self, states: train.TrainState, keys: train.SeedKeys, data: DeviceData,
              epoch: int, slot: int) -> tuple[train.TrainState, dict]:
        if self.stepped:
            return self._stepped_epoch(states, self.place(keys), data, epoch, slot)
        args = (states, self.place(keys), data.train, data.norm, jnp.int32(epoch),
                jnp.int32(slot))
        return self._call("epoch", "epoch", *args)

    def _stepped_epoch(self, states: train.TrainState, keys: train.SeedKeys, data: DeviceData,
                       epoch: int, slot: int) -> tuple[train.TrainState, dict]:
        """The epoch of :func:`train.make_train_epoch`, one compiled step per batch: the
        same batches and steps, ``{name: (M, T)}`` metrics."""
        rows, masks, rest = self._call("order", "order", keys, jnp.int32(epoch))
        batches = [(rows[:, i], masks[:, i]) for i in range(rows.shape[1])]
        if rest.shape[1]:  # a stateful model's last, partial batch at its own size
            batches.append((rest, jnp.ones(rest.shape, bool)))
        metrics = []
        for i, (indices, mask) in enumerate(batches):
            states, step_metrics = self._call("step", ("step", indices.shape[1]), states, keys,
                                              indices, mask, data.train, data.norm)
            metrics.append(step_metrics)
            if self.on_step is not None:
                self.on_step(slot, i + 1)
        return states, jax.tree.map(lambda *steps: jnp.stack(steps, axis=1), *metrics)

    def evaluate(self, states: train.TrainState, data: DeviceData, name: str,
                 seeds: list[int] | None = None) -> tuple[np.ndarray, ...]:
        """Per-example (losses, correct, predicted[, metric]) of every member of ``states``
        on split ``name`` ("val" or "test") of ``data``: (M, N) each. ``seeds`` (M,): the
        members' seeds, whose own validation images "val" means where each has its own."""
        if name == "val" and data.own_val:
            return self._evaluate_own(states, data, seeds)
        split = getattr(data, name)
        key = ("evaluate", split.labels.shape[0])
        weights = (states.params, states.model_state)
        if self._vmap_eval:
            outputs = self._call("evaluate", key, *weights, split, data.norm)
            return tuple(np.asarray(o) for o in outputs)
        split, norm = data.on_first_device(name)
        # Through the host: slicing an array split over devices on the devices would
        # itself be a program (with collectives) competing with training for the cores.
        host = to_host(weights) if self.mesh is not None else weights
        outputs = [self._call("evaluate", key, *self._member(host, i), split, norm)
                   for i in range(self.width)]
        return tuple(np.stack([np.asarray(o[j]) for o in outputs])
                     for j in range(len(outputs[0])))

    def _evaluate_own(self, states: train.TrainState, data: DeviceData, seeds: list[int]
                      ) -> tuple[np.ndarray, ...]:
        """:meth:`evaluate` of "val" where each seed holds out its own images."""
        weights = (states.params, states.model_state)
        if self._vmap_eval:
            rows = self.place(data.val_rows(seeds))
            outputs = self._call("evaluate_own", ("evaluate_own", rows.shape[1]), *weights,
                                 rows, data.train, data.norm)
            return tuple(np.asarray(o) for o in outputs)
        norm = data.on_first_device("test")[1]
        host = to_host(weights) if self.mesh is not None else weights
        outputs = []
        for i, seed in enumerate(seeds):
            split = data.val_of(seed)
            outputs.append(self._call("evaluate", ("evaluate", split.labels.shape[0]),
                                      *self._member(host, i), split, norm))
        return tuple(np.stack([np.asarray(o[j]) for o in outputs])
                     for j in range(len(outputs[0])))

    def _member(self, params: Any, i: int) -> Any:
        return jax.device_put(jax.tree.map(lambda x: x[i], params), self._first_device)

    def member_bytes(self, data: DeviceData) -> MemoryEstimate | None:
        """One member's bytes per XLA's accounting of the compiled epoch and the largest
        compiled evaluation (after :meth:`warm_up`)."""
        evals = sorted((k[1], v) for k, v in self._compiled.items()
                       if isinstance(k, tuple) and k[0] == "evaluate")
        train_key = next((k for k in self._compiled if k == "epoch" or k[0] == "step"), None)
        if train_key is None or not evals:
            return None
        data_bytes = sum(x.nbytes for x in jax.tree.leaves((data.train, data.norm)))
        return compiled_member_bytes(self._compiled[train_key], evals[-1][1], self.width,
                                     self.width if self._vmap_eval else 1, data_bytes,
                                     lockstep=self._vmap_eval)

    def warm_up(self, data: DeviceData, hparams: Hyperparams) -> None:
        """Compiles everything with a dummy chunk, before workers start."""
        keys = data.keys_for([0] * self.width)
        states = self.init(keys, stack([hparams] * self.width))
        if self.stepped:
            rows, masks, rest = self._call("order", "order", self.place(keys), jnp.int32(0))
            for indices in (rows[:, 0], rest) if rest.shape[1] else (rows[:, 0],):
                self._compiled_for("step", ("step", indices.shape[1]), states,
                                   self.place(keys), indices, jnp.ones(indices.shape, bool),
                                   data.train, data.norm)
        else:
            self._compiled_for("epoch", "epoch", states, self.place(keys), data.train,
                               data.norm, jnp.int32(0), jnp.int32(0))
        for name in data.eval_splits():
            split = getattr(data, name)
            key = ("evaluate", split.labels.shape[0])
            weights = (states.params, states.model_state)
            if self._vmap_eval and name == "val" and data.own_val:
                rows = self.place(data.val_rows([0] * self.width))
                self._compiled_for("evaluate_own", ("evaluate_own", rows.shape[1]), *weights,
                                   rows, data.train, data.norm)
            elif self._vmap_eval:
                self._compiled_for("evaluate", key, *weights, split, data.norm)
            else:
                self._compiled_for("evaluate", key, *self._member(weights, 0),
                                   *data.on_first_device(name))


def chunk_program(spec: Network | ProgramSpec, conv: str, batching: str, width: int,
                  num_train: int, batch_size: int, on_step: StepHook | None,
                  devices: int = 1) -> ChunkProgram:
    """A new program for (network and optimizer, conv, batching, chunk width, data and
    batch size, devices); nothing is cached here (see :class:`Programs` for a run's own
    cache)."""
    return ChunkProgram(spec, conv, batching, width, num_train, batch_size, on_step,
                        member_mesh(devices))


class Programs:
    """The compiled chunk programs of one run, and the step hook they call.

    Created by a run and dropped with it: nothing compiled outlives it unless a
    caller deliberately hands the same object to the next run (tests share one to
    compile once). Programs are keyed by what fixes the executable (network, optimizer
    structure, sizes, batching, devices), never by object identity.
    """

    def __init__(self) -> None:
        self.hook = StepHook()
        self._programs: dict[tuple, ChunkProgram] = {}

    @classmethod
    def for_run(cls) -> Programs:
        """A run's own programs: a new, empty set. (The test suite substitutes one shared
        set here, explicitly in its conftest, so that its many tiny runs compile once.)"""
        return cls()

    def program(self, spec: Network | ProgramSpec, settings: RunSettings, width: int,
                num_train: int, per_seed: bool = False) -> ChunkProgram:
        """The program for ``spec`` in chunks of ``width`` (resolved ``settings``);
        ``per_seed``: for data where each seed has its own split (its keys carry rows)."""
        key = (as_program(spec), settings.conv, settings.batching, width, num_train,
               settings.batch_size, settings.devices, per_seed)
        if key not in self._programs:
            self._programs[key] = chunk_program(*key[:6], self.hook, settings.devices)
        return self._programs[key]

    @property
    def compilations(self) -> int:
        """Executables compiled so far by every program of this run."""
        return sum(p.compilations for p in self._programs.values())

    @property
    def compile_seconds(self) -> float:
        return sum(p.compile_seconds for p in self._programs.values())


def chunks_of(members: list, width: int) -> list[list]:
    """Consecutive chunks of at most ``width`` members (the last may be shorter)."""
    return [members[i:i + width] for i in range(0, len(members), width)]


def _padded(members: list[Member], width: int) -> list[Member]:
    # A short chunk repeats its last member (the mesh needs whole shares, the compiled
    # program its width); the copies are trained like the rest and their results dropped.
    return members + [members[-1]] * (width - len(members))


def _start_or_resume(program: ChunkProgram, members: list[Member], data: DeviceData,
                     checkpointer: Checkpointer | None) -> tuple:
    """(keys, states, initial checksums, histories, schedules, epochs done) of a chunk:
    fresh, or from its checkpointer's last finished epoch."""
    padded = _padded(members, program.width)
    keys = data.keys_for([m.seed for m in padded])
    states = program.init(keys, stack([m.hparams for m in padded]))
    checksums = params_checksums(states.params)[:len(members)]
    resume = checkpointer.restore(to_host(states)) if checkpointer else None
    if resume is None:
        return (keys, states, checksums, [hist.empty_history() for _ in members],
                [None] * len(members), 0)
    return (keys, program.place(resume.states), checksums, resume.histories,
            resume.schedules, resume.epochs_done)


def _epoch_line(lines: EpochLines, member: Member, history: dict, epoch: int,
                fresh: bool) -> None:
    """Hands member's epoch ``epoch`` (1-based) from its history to the epoch lines."""
    alive = history["diverged_epoch"] is None or history["diverged_epoch"] > epoch
    values = [history[k][epoch - 1] for k in ("train_loss", "val_loss", "val_accuracy")]
    lines.report(member.config, epoch, *values, alive, fresh=fresh)


def train_chunk(program: ChunkProgram, members: list[Member], data: DeviceData,
                settings: RunSettings, *, slot: int = 0, board: StepBoard | None = None,
                lines: EpochLines | None = None, checkpointer: Checkpointer | None = None,
                stop: StopFlag | None = None) -> list[MemberResult]:
    """Trains and evaluates one chunk of members through every epoch.

    A resumed chunk hands its restored epochs to ``lines`` and ``board`` too, so epoch
    lines average every seed and the bar reaches its end. ``stop`` is checked before
    each epoch (inside one, the program's :class:`StepHook` checks it every step).
    """
    keys, states, checksums, histories, schedules, start = _start_or_resume(
        program, members, data, checkpointer)
    seeds = [m.seed for m in _padded(members, program.width)]
    steps = train.steps_per_epoch(data.num_train, settings.batch_size)
    stride = hist.schedule_stride(steps * settings.epochs)
    lockstep = settings.batching == "vmap"  # the bar advances every member at once
    if board is not None:
        board.advance(start * steps * len(members))
    for i, m in enumerate(members):
        for done in range(1, start + 1):
            if lines is not None:
                _epoch_line(lines, m, histories[i], done, fresh=False)
    for epoch in range(start, settings.epochs):
        if stop is not None:
            stop.check()
        if board is not None:
            board.begin_epoch(slot, len(members) if lockstep else 1)
        states, metrics = program.epoch(states, keys, data, epoch, slot)
        val = program.evaluate(states, data, "val", seeds)
        val_loss, val_acc, _ = train.summarize_evaluation(*val)
        metrics = to_host(metrics)  # {name: (M, T)}
        if board is not None:
            reported = 0 if program.mesh is not None else (steps // REPORT_EVERY) * REPORT_EVERY
            board.end_epoch(slot, steps * len(members), reported * len(members))
        for i, m in enumerate(members):
            hist.record_epoch(histories[i], epoch + 1, metrics["loss"][i], val_loss[i],
                              val_acc[i])
            schedules[i] = hist.schedule_record(schedules[i], epoch, metrics["learning_rate"][i],
                                                metrics["beta1"][i], stride)
            if lines is not None:
                _epoch_line(lines, m, histories[i], epoch + 1, fresh=True)
        if checkpointer is not None:
            checkpointer.save(ChunkProgress(epoch + 1, to_host(states), histories, schedules))
    test = program.evaluate(states, data, "test")
    test_loss, test_acc, own = train.summarize_evaluation(*test)
    if start == settings.epochs:  # every epoch restored: the final validation again
        val = program.evaluate(states, data, "val", seeds)
    params = to_host(saved_weights(states.params, states.model_state))
    return [MemberResult(m, hist.member_record(m.seed, checksums[i], histories[i], test_loss[i],
                                               test_acc[i], None if own is None else own[i]),
                         schedules[i], jax.tree.map(lambda x, i=i: x[i], params),
                         resumed_from_epoch=start,
                         predictions={"test": test[2][i], "val": val[2][i]})
            for i, m in enumerate(members)]


def chunk_width(settings: RunSettings, members: int) -> int:
    """Members per chunk: the setting (or every member), capped by the group's size and
    rounded up to whole shares of the devices."""
    width = min(settings.members_per_chunk or members, members)
    return -(-width // settings.devices) * settings.devices


def fitted_program(programs: Programs, spec: ProgramSpec, members: list[Member],
                   data: DeviceData, settings: RunSettings) -> ChunkProgram:
    """The compiled program for ``members`` in chunks of the planned width, narrowed when
    XLA's accounting of it says the chunk does not fit ``settings.memory_free`` (the
    planned width came from an estimate; this one from the compiler)."""
    program = programs.program(spec, settings, chunk_width(settings, len(members)),
                               data.num_train, data.per_seed)
    program.warm_up(data, members[0].hparams)
    measured = program.member_bytes(data) if settings.memory_free is not None else None
    if measured is None:
        return program
    plan = plan_chunk(len(members), settings.devices, measured, data.nbytes,
                      settings.memory_free)
    if plan.members_per_device * settings.devices >= program.width:
        return program
    log(f"{plan.notice} (measured on the compiled program)")
    narrower = dataclasses.replace(settings,
                                   members_per_chunk=plan.members_per_device * settings.devices)
    program = programs.program(spec, narrower, chunk_width(narrower, len(members)),
                               data.num_train, data.per_seed)
    program.warm_up(data, members[0].hparams)
    return program


WAKE_SECONDS = 0.25  # how often the waiting main thread wakes to run signal handlers


def _as_completed_awake(futures: list[Future]) -> Iterator[Future]:
    """``futures`` as they complete, the waiting thread waking every ``WAKE_SECONDS``.

    A process-directed SIGINT may be delivered to any thread, e.g. one of XLA's; Python
    then runs its handler in the main thread only when that thread next runs bytecode,
    which a plain wait on a lock would put off until a chunk finishes (minutes). Waking
    regularly makes Ctrl-C take effect within a fraction of a second wherever it lands.
    """
    pending = set(futures)
    while pending:
        done, pending = wait(pending, timeout=WAKE_SECONDS, return_when=FIRST_COMPLETED)
        yield from done


def train_members(spec: Network | ProgramSpec, members: list[Member], data: DeviceData,
                  settings: RunSettings, *, checkpoints: ChunkCheckpoints | None = None,
                  lines: EpochLines | None = None, board: StepBoard | None = None,
                  programs: Programs | None = None) -> Iterator[FinishedChunk]:
    """Trains every member of one program (``spec``: a network and an optimizer
    structure; a network alone for the built-in Adam chain), chunk by chunk,
    ``settings.workers`` at a time, and yields each chunk (:class:`FinishedChunk`) as it
    finishes, so the caller writes results while the rest train.

    Each chunk saves its progress after every epoch to ``checkpoints.for_chunk(chunk)``
    and resumes from what that holds. The program comes from ``programs`` (the run's; a
    new one, dropped on return, when None); ``programs.compile_seconds`` says what
    compilation cost. Compilation and training run in worker threads while the calling
    thread waits, so Ctrl-C reaches it at once: the workers then abandon their epochs at
    the next step and are joined before :class:`~jaxcnn.platform.interrupt.Interrupted`
    propagates (their last checkpoints are finished epochs). Closing the generator early
    (the caller failed) stops and joins the workers the same way.
    """
    settings = settings.resolved()
    programs = programs if programs is not None else Programs()
    stop = StopFlag()
    programs.hook.attach(board if board is not None and board.enabled else None, stop)
    free_slots = list(range(settings.workers))
    slot_lock = threading.Lock()

    def run_in_worker(program: ChunkProgram, chunk: list[Member]) -> FinishedChunk:
        with slot_lock:
            slot = free_slots.pop()
        try:
            ckpt = checkpoints.for_chunk(chunk) if checkpoints is not None else None
            return FinishedChunk(train_chunk(program, chunk, data, settings, slot=slot,
                                             board=board, lines=lines, checkpointer=ckpt,
                                             stop=stop), ckpt)
        finally:
            with slot_lock:
                free_slots.append(slot)

    pool = ThreadPoolExecutor(settings.workers, thread_name_prefix="jaxcnn-worker")
    with quiet_stop_traces():  # abandoned epochs log no traceback, until every worker is joined
        try:
            compiled = programs.compile_seconds
            program = next(_as_completed_awake([pool.submit(
                fitted_program, programs, as_program(spec), members, data,
                settings)])).result()
            if programs.compile_seconds > compiled:
                log(f"compiled in {programs.compile_seconds - compiled:.1f} s")
            futures = [pool.submit(run_in_worker, program, chunk)
                       for chunk in chunks_of(members, program.width)]
            for future in _as_completed_awake(futures):
                yield future.result()
        except BaseException as err:  # Ctrl-C, a failed chunk, or the caller closing us
            stop.set()  # the other workers stop at their next step, not at their epoch's end
            pool.shutdown(wait=True, cancel_futures=True)
            if is_stop_error(err):
                raise Interrupted() from None
            raise
        finally:
            pool.shutdown(wait=True)
            programs.hook.attach(None, StopFlag())

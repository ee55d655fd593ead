"""The engine: trains a round's members and yields them as they finish.

An :class:`Engine` is created per run and dropped with it. It holds what the run's
rounds share: the resolved :class:`~jaxcnn.training.runner.RunSettings`, the data on the
devices (:class:`~jaxcnn.training.runner.DeviceData`) and the compiled programs
(:class:`~jaxcnn.training.runner.Programs`). :meth:`Engine.train` takes the members to
train, groups them by program (network and optimizer structure; ``runner.py``),
sizes each group's chunks to the memory the device has, and yields each chunk
(:class:`~jaxcnn.training.runner.FinishedChunk`) as it finishes. It calls nothing of its
caller's: the caller (``pipeline.py``) hands what comes out to the results store.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterator

import jax

from jaxcnn.configs import ProgramSpec
from jaxcnn.errors import ConfigError
from jaxcnn.experiment import Runtime
from jaxcnn.models.model import Network
from jaxcnn.platform import distributed
from jaxcnn.platform.progress import EpochLines, StepBoard, log, plural
from jaxcnn.training.checkpoint import CheckpointFolder
from jaxcnn.training.members import Member, MemberResult
from jaxcnn.training.memory import free_bytes, member_bytes, plan_chunk
from jaxcnn.training.runner import (
    DeviceData,
    FinishedChunk,
    Programs,
    RunSettings,
    member_mesh,
    train_members,
)


def resolve_settings(runtime: Runtime, epochs: int, batch_size: int) -> RunSettings:
    """The run settings the runtime flags stand for on this machine, resolved once."""
    local = jax.local_device_count()
    devices = runtime.devices or local
    if devices > local:
        raise ConfigError(f"--devices {devices}: this process has {local} local device(s)")
    return RunSettings(epochs=epochs, batch_size=batch_size, batching=runtime.batching,
                       conv=runtime.conv, workers=runtime.workers,
                       members_per_chunk=runtime.members_per_chunk, devices=devices,
                       show_progress=runtime.progress).resolved()


class Engine:
    """A run's training machinery (see the module docstring).

    run: resolved settings; prepared: the data splits (``data.PreparedData``), put on
    the devices once here; checkpoints: where chunks keep their progress;
    memory_budget_mb: what one device may use (None: what it has free).
    """

    def __init__(self, run: RunSettings, prepared, checkpoints: CheckpointFolder | None,
                 memory_budget_mb: float | None = None, progress: bool = False,
                 programs: Programs | None = None):
        self.run, self.checkpoints, self.progress = run, checkpoints, progress
        self.memory_budget_mb = memory_budget_mb
        self.data = DeviceData(prepared, member_mesh(run.devices))
        self.val_name = "test" if prepared.val_is_test else "val"
        self.programs = programs if programs is not None else Programs.for_run()
        self.compile_seconds: dict[str, float] = {}

    def _group_settings(self, network: Network, members: int) -> RunSettings:
        """Chunks of as many members as fit in memory (lockstep batchings without an
        explicit --members-per-chunk); the runner narrows the width if the compiled
        program says it does not fit."""
        run = self.run
        if run.members_per_chunk is not None:
            return run
        budget = (self.memory_budget_mb * 2**20 if self.memory_budget_mb
                  else free_bytes(devices_sharing=run.devices))
        plan = plan_chunk(members, run.devices, member_bytes(network, run.batch_size, run.conv),
                          self.data.nbytes, budget)
        if plan.notice and distributed.is_main():
            log(plan.notice)
        return dataclasses.replace(run, members_per_chunk=plan.members_per_device * run.devices,
                                   memory_free=budget)

    def train(self, members: list[Member], specs: dict[str, ProgramSpec],
              steps_per_epoch: int) -> Iterator[FinishedChunk]:
        """Trains this process's share of ``members`` (``specs``: member.config -> its
        program: network and optimizer structure), group by group, and yields each chunk
        as it finishes."""
        mine = distributed.share(members)
        groups: dict[ProgramSpec, list[Member]] = defaultdict(list)
        for m in mine:
            groups[specs[m.config]].append(m)
        configs = list(dict.fromkeys(m.config for m in members))
        lines = EpochLines({c: sum(m.config == c for m in mine) for c in configs},
                           self.run.epochs, self.val_name)
        several = jax.process_count() > 1
        for spec, group in groups.items():
            network = spec.network
            board = StepBoard(self.progress and distributed.is_main())
            board.start(len(group) * self.run.epochs * steps_per_epoch, "training")
            log(f"training {plural(len(group), 'member')} "
                f"({plural(len({m.config for m in group}), 'configuration')} x seeds) of one "
                f"network ({spec.describe()}) with one compiled program"
                + (f", on {plural(self.run.devices, 'device')}" if self.run.devices > 1 else "")
                + (f", process {jax.process_index()} of {jax.process_count()}"
                   if several else ""))
            compiled = self.programs.compile_seconds
            try:
                yield from train_members(spec, group, self.data,
                                         self._group_settings(network, len(group)),
                                         checkpoints=self.checkpoints, lines=lines,
                                         board=board, programs=self.programs)
            finally:
                board.close()
            seconds = self.programs.compile_seconds - compiled
            self.compile_seconds[network.describe()] = round(
                self.compile_seconds.get(network.describe(), 0.0) + seconds, 2)


def gather(local: list[MemberResult]) -> list[MemberResult]:
    """Every process's finished members, on every process (one allgather)."""
    blob = distributed.pack(
        [{"config": r.member.config, "seed": r.member.seed, "record": r.record,
          "schedule": r.schedule, "resumed_from_epoch": r.resumed_from_epoch} for r in local],
        [{"params": r.params, "predictions": r.predictions or {}} for r in local])
    everyone = []
    for part in distributed.allgather_bytes(blob):
        records, trees = distributed.unpack(part)
        everyone += [MemberResult(Member(r["config"], r["seed"], None), r["record"],
                                  r["schedule"], t["params"], r["resumed_from_epoch"],
                                  t["predictions"] or None)
                     for r, t in zip(records, trees)]
    return everyone


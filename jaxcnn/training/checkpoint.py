"""Checkpoints (orbax) so that nothing computed is lost when a run dies.

Layout under the output folder::

    checkpoints/<chunk>/<epoch>/     a chunk's state after that epoch + histories
    <study>/params/<config>/         final parameters of every seed, kept

A chunk's folder name is a hash of its members and of every setting that
changes results (:func:`chunk_key`), so the same command finds it again and a
changed one cannot resume from it. orbax writes each checkpoint into a
temporary folder and renames it when complete, so a run killed mid-save leaves
the previous checkpoint intact. Restoring needs a target structure (the
optimizer state is a tree of namedtuples), which the caller builds from the
same members.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import shutil
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

_OPTIONS = dict(max_to_keep=1, enable_async_checkpointing=False)


def _this_process_only() -> ocp.options.MultiprocessingOptions:
    """Every save and restore here is one process's own (a chunk belongs to one process;
    results are written by process 0): no barriers with the other processes."""
    me = jax.process_index()
    return ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me},
                                              barrier_sync_key_prefix=f"jaxcnn-p{me}")


# Worker threads save their chunks at any time; orbax's managers are not meant to be
# driven from several threads at once, so saves and restores take turns.
_IO_LOCK = threading.Lock()


@dataclasses.dataclass
class ChunkProgress:
    """A chunk's state after ``epochs_done`` epochs (what a checkpoint holds).

    states: TrainState with leaves (M, ...) as numpy arrays (padding included);
    histories, schedules: one per real member.
    """

    epochs_done: int
    states: Any
    histories: list[dict]
    schedules: list[dict | None]


class _OrbaxChatter(logging.Filter):
    """Drops what orbax says on every save (INFO lines through absl) and its warning that
    a one-process save has no OCDBT checkpoints of other processes to merge."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return False
        return "Skipping merge of OCDBT checkpoints" not in str(record.msg)


@contextlib.contextmanager
def _quiet_orbax() -> Iterator[None]:
    """While orbax works (under ``_IO_LOCK``), its routine messages are filtered out of the
    absl logger; the logger's level and everything logged outside stay untouched."""
    logger, chatter = logging.getLogger("absl"), _OrbaxChatter()
    logger.addFilter(chatter)
    try:
        yield
    finally:
        logger.removeFilter(chatter)


@contextlib.contextmanager
def _orbax_turn() -> Iterator[None]:
    """One thread at a time talks to orbax, quietly."""
    with _IO_LOCK, _quiet_orbax():
        yield


def chunk_key(members: Sequence[Any], settings: dict) -> str:
    """A stable name for a chunk's checkpoint folder: its members (``members.Member``: a
    ``key`` and ``hparams`` each) and the result settings."""
    text = json.dumps({"members": [m.key for m in members],
                       "hparams": [jax.tree.map(float, m.hparams) for m in members],
                       "settings": settings}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class ChunkCheckpointer:
    """Saves and restores one chunk's :class:`ChunkProgress`."""

    def __init__(self, directory: Path):
        self.directory = Path(directory).absolute()

    def _manager(self) -> ocp.CheckpointManager:
        self.directory.mkdir(parents=True, exist_ok=True)  # orbax will not, per process
        return ocp.CheckpointManager(self.directory, options=ocp.CheckpointManagerOptions(
            **_OPTIONS, create=False, multiprocessing_options=_this_process_only()))

    def save(self, progress: ChunkProgress) -> None:
        with _orbax_turn(), self._manager() as manager:
            manager.save(progress.epochs_done, args=ocp.args.Composite(
                state=ocp.args.StandardSave(progress.states),
                history=ocp.args.JsonSave({"histories": progress.histories,
                                           "schedules": progress.schedules})), force=True)
            manager.wait_until_finished()

    def restore(self, template_states: Any) -> ChunkProgress | None:
        """The latest complete checkpoint, restored into ``template_states``' structure."""
        if not self.directory.exists() or not any(self.directory.iterdir()):
            return None
        with _orbax_turn(), self._manager() as manager:
            step = manager.latest_step()
            if step is None:
                return None
            restored = manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(template_states),
                history=ocp.args.JsonRestore()))
        states = jax.tree.unflatten(jax.tree.structure(template_states),
                                    [np.asarray(x) for x in jax.tree.leaves(restored.state)])
        return ChunkProgress(int(step), states, restored.history["histories"],
                             restored.history["schedules"])

    def clear(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


@dataclasses.dataclass(frozen=True)
class CheckpointFolder:
    """Where a run's chunks keep their progress: ``root/<chunk_key>`` per chunk.

    ``fresh`` (--fresh) drops what a chunk's folder holds before the chunk starts, so
    it trains from the start instead of resuming.
    """

    root: Path
    settings: dict
    fresh: bool = False

    def for_chunk(self, members: Sequence[Any]) -> ChunkCheckpointer:
        """The checkpointer of the chunk of ``members`` (``members.Member``)."""
        checkpointer = ChunkCheckpointer(Path(self.root) / chunk_key(members, self.settings))
        if self.fresh:
            checkpointer.clear()
        return checkpointer


def save_params(directory: Path, params: Any, seeds: list[int], meta: dict) -> None:
    """Keeps a configuration's final parameters (leaves (S, ...)) and what made them.

    ``meta`` (JSON) must let :func:`jaxcnn.inference.load_model` rebuild the
    network: the model record and the normalisation.
    """
    directory = Path(directory).absolute()
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with _orbax_turn(), ocp.StandardCheckpointer(
            multiprocessing_options=_this_process_only()) as checkpointer:
        checkpointer.save(tmp / "params", params)
    (tmp / "meta.json").write_text(json.dumps({"seeds": seeds, **meta}, indent=1))
    if directory.exists():
        shutil.rmtree(directory)
    tmp.rename(directory)


def load_params_tree(directory: Path) -> tuple[Any, dict]:
    """(params with leaves (S, ...), meta) saved by :func:`save_params`."""
    directory = Path(directory).absolute()
    meta = json.loads((directory / "meta.json").read_text())
    with _orbax_turn(), ocp.StandardCheckpointer(
            multiprocessing_options=_this_process_only()) as checkpointer:
        params = checkpointer.restore(directory / "params")
    return params, meta

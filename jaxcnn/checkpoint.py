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

import hashlib
import json
import logging
import shutil
import threading
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxcnn.runner import ChunkProgress, Member

# orbax logs every save at INFO level; a run saves after every epoch.
logging.getLogger("absl").setLevel(logging.WARNING)

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


def chunk_key(members: list[Member], settings: dict) -> str:
    """A stable name for a chunk's checkpoint folder: its members and the result settings."""
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
        with _IO_LOCK, self._manager() as manager:
            manager.save(progress.epochs_done, args=ocp.args.Composite(
                state=ocp.args.StandardSave(progress.states),
                history=ocp.args.JsonSave({"histories": progress.histories,
                                           "schedules": progress.schedules})), force=True)
            manager.wait_until_finished()

    def restore(self, template_states: Any) -> ChunkProgress | None:
        """The latest complete checkpoint, restored into ``template_states``' structure."""
        if not self.directory.exists() or not any(self.directory.iterdir()):
            return None
        with _IO_LOCK, self._manager() as manager:
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


def save_params(directory: Path, params: Any, seeds: list[int], meta: dict) -> None:
    """Keeps a configuration's final parameters (leaves (S, ...)) and what made them.

    ``meta`` (JSON) must let :func:`jaxcnn.inference.load_model` rebuild the
    network: the model record and the normalisation.
    """
    directory = Path(directory).absolute()
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with _IO_LOCK, ocp.StandardCheckpointer(
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
    with _IO_LOCK, ocp.StandardCheckpointer(
            multiprocessing_options=_this_process_only()) as checkpointer:
        params = checkpointer.restore(directory / "params")
    return params, meta

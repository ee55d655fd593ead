"""Checkpoints (orbax) so that nothing computed is lost when a run dies.

Layout under a study's output folder::

    checkpoints/<config>/<epoch>/   state of all seeds after that epoch + history
    params/<config>/                final parameters of every seed, kept

orbax writes each checkpoint into a temporary folder and renames it when
complete, so a run killed mid-save leaves the previous checkpoint intact.
Restoring needs a target structure (the optimizer state is a tree of
namedtuples), which the caller builds from the same configuration.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxcnn.runner import Progress

# orbax logs every save at INFO level; a study saves after every epoch.
logging.getLogger("absl").setLevel(logging.WARNING)

_OPTIONS = dict(max_to_keep=1, enable_async_checkpointing=False)


class ConfigCheckpointer:
    """Saves and restores one configuration's :class:`Progress`."""

    def __init__(self, directory: Path):
        self.directory = Path(directory).absolute()

    def _manager(self) -> ocp.CheckpointManager:
        return ocp.CheckpointManager(self.directory,
                                     options=ocp.CheckpointManagerOptions(**_OPTIONS))

    def save(self, progress: Progress) -> None:
        with self._manager() as manager:
            manager.save(progress.epochs_done, args=ocp.args.Composite(
                state=ocp.args.StandardSave(progress.states),
                history=ocp.args.JsonSave({"histories": progress.histories})), force=True)
            manager.wait_until_finished()

    def restore(self, template_states: Any) -> Progress | None:
        """The latest complete checkpoint, restored into ``template_states``' structure."""
        if not self.directory.exists():
            return None
        with self._manager() as manager:
            step = manager.latest_step()
            if step is None:
                return None
            restored = manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(template_states),
                history=ocp.args.JsonRestore()))
        states = jax.tree.unflatten(jax.tree.structure(template_states),
                                    [np.asarray(x) for x in jax.tree.leaves(restored.state)])
        return Progress(int(step), states, restored.history["histories"])

    def clear(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def save_params(directory: Path, params: Any, seeds: list[int], meta: dict) -> None:
    """Keeps a configuration's final parameters (leaves (S, ...)) and what made them.

    ``meta`` (JSON) must let :func:`jaxcnn.inference.load_model` rebuild the
    network: the model configuration and the normalisation.
    """
    directory = Path(directory).absolute()
    if directory.exists():
        shutil.rmtree(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(tmp / "params", params)
    (tmp / "meta.json").write_text(json.dumps({"seeds": seeds, **meta}, indent=1))
    tmp.rename(directory)


def load_params_tree(directory: Path) -> tuple[Any, dict]:
    """(params with leaves (S, ...), meta) saved by :func:`save_params`."""
    directory = Path(directory).absolute()
    meta = json.loads((directory / "meta.json").read_text())
    with ocp.StandardCheckpointer() as checkpointer:
        params = checkpointer.restore(directory / "params")
    return params, meta

"""Several processes (hosts) on JAX's own distributed runtime.

Each process trains its own share of the members on its own devices (members
are independent, so training needs no communication); the coordination service
started by ``jax.distributed.initialize`` lines the processes up, and the
results are gathered to every process (``multihost_utils.process_allgather``)
so that process 0 alone writes them. Checkpoints are per chunk and each chunk
belongs to one process, so a restarted process resumes its own members.

Launching: every process runs the same command with ``--coordinator HOST:PORT
--num-processes N --process-id I`` (or, under SLURM and other clusters JAX
detects, ``--distributed`` alone). ``--out`` must be a filesystem every process
sees (the results are read by all and written by process 0).
"""

from __future__ import annotations

import io
import json
from typing import Any

import jax
import numpy as np

from jaxcnn.errors import ConfigError


def initialize(coordinator: str | None, num_processes: int | None,
               process_id: int | None, detect: bool = False) -> None:
    """Starts JAX's distributed runtime when asked to (no-op otherwise).

    On the CPU the processes' collectives go through gloo (needed to gather the
    results); it must be chosen before the backend starts.
    """
    explicit = (coordinator, num_processes, process_id)
    if not detect and all(v is None for v in explicit):
        return
    if not detect and any(v is None for v in explicit):
        raise ConfigError("--coordinator, --num-processes and --process-id go together "
                          "(or --distributed alone, to let JAX read a cluster's environment)")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if detect:
        jax.distributed.initialize()
    else:
        jax.distributed.initialize(coordinator, num_processes=num_processes,
                                   process_id=process_id)


def is_main() -> bool:
    """Process 0: the one that writes results, figures and the report."""
    return jax.process_index() == 0


def share(items: list) -> list:
    """This process's share of ``items``: every process_count-th, from its index."""
    return items[jax.process_index()::jax.process_count()]


def barrier(name: str) -> None:
    """Waits until every process gets here (a no-op with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def allgather_bytes(blob: bytes) -> list[bytes]:
    """Every process's ``blob``, in process order, on every process."""
    if jax.process_count() == 1:
        return [blob]
    from jax.experimental import multihost_utils

    sizes = np.asarray(multihost_utils.process_allgather(np.array([len(blob)], np.int64)))
    padded = np.zeros(int(sizes.max()), np.uint8)
    padded[:len(blob)] = np.frombuffer(blob, np.uint8)
    gathered = np.asarray(multihost_utils.process_allgather(padded))
    return [gathered[i, :int(sizes[i, 0])].tobytes() for i in range(len(gathered))]


def pack(records: list[dict], arrays: list[Any]) -> bytes:
    """JSON records and their numpy pytrees as one blob (npz; no pickles)."""
    leaves, treedef_strings = [], []
    for tree in arrays:
        flat, treedef = jax.tree_util.tree_flatten(tree)
        leaves.append(flat)
        treedef_strings.append(json.dumps(jax.tree.unflatten(treedef, list(range(len(flat))))))
    buffer = io.BytesIO()
    np.savez(buffer, **{f"a{i}_{j}": np.asarray(leaf) for i, flat in enumerate(leaves)
                        for j, leaf in enumerate(flat)})
    header = json.dumps({"records": records, "trees": treedef_strings}).encode()
    return len(header).to_bytes(8, "little") + header + buffer.getvalue()


def unpack(blob: bytes) -> tuple[list[dict], list[Any]]:
    """The inverse of :func:`pack` (trees come back as nested dicts of arrays)."""
    size = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + size])
    with np.load(io.BytesIO(blob[8 + size:]), allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    trees = []
    for i, layout in enumerate(header["trees"]):
        trees.append(jax.tree.map(lambda j, i=i: arrays[f"a{i}_{j}"], json.loads(layout)))
    return header["records"], trees

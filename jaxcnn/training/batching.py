"""How one member's functions are applied to many members.

``train.py`` writes the epoch and the evaluation for one member; here they are
lifted to a chunk of M members (every leaf gains a leading (M,) axis):

- ``"vmap"``: one wide program, every member's step in lockstep (the GPU's way:
  the members' matmuls become one batched matmul);
- ``"map"``: ``lax.map`` inside the program, one member after another; on
  XLA:CPU this keeps every kernel a plain one. A member trained in a chunk by
  ``map`` equals the member trained alone bit for bit;
- ``"threads"``: chunks of one member, run by one worker thread per CPU core,
  each calling the same compiled one-member program (``map`` over one member).
  XLA:CPU's intra-op parallelism leaves a core idle much of the time on a
  network this small; two programs at once keep both busy (benchmarks/NOTES.md).

:func:`default_batching` picks per device; ``--batching`` overrides.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import jax

BATCHINGS = ("vmap", "map", "threads")


def default_batching(platform: str) -> str:
    """threads on the CPU, vmap on accelerators (one wide program per device)."""
    return "threads" if platform == "cpu" else "vmap"


def default_workers(batching: str) -> int:
    """Concurrent chunks: one per core with threads, else one."""
    if batching != "threads":
        return 1
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def check_batching(batching: str) -> str:
    if batching not in BATCHINGS:
        raise ValueError(f"batching must be one of {', '.join(BATCHINGS)}, got {batching!r}")
    return batching


def over_members(fn: Callable, batching: str, member_args: int) -> Callable:
    """Lifts ``fn(*args)`` so that its first ``member_args`` arguments carry an (M,) axis.

    The other arguments (data, normalisation, epoch, ...) are shared by every
    member. Outputs gain the (M,) axis.
    """
    check_batching(batching)
    if batching == "vmap":
        def vmapped(*args):
            axes = (0,) * member_args + (None,) * (len(args) - member_args)
            return jax.vmap(fn, in_axes=axes)(*args)

        return vmapped

    def mapped(*args):  # "map", and "threads" (whose chunks hold one member)
        shared = args[member_args:]
        return jax.lax.map(lambda per_member: fn(*per_member, *shared), args[:member_args])

    return mapped

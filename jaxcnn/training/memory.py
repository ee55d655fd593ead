"""Memory planning: how many members fit on a device at once.

The compiler's own accounting decides: every chunk program is compiled ahead of
time, and :func:`compiled_member_bytes` reads what XLA reports for it
(``compiled.memory_analysis()``: arguments and temporaries). Before anything is
compiled, an estimate picks the first chunk width (:func:`member_bytes`): per
member, its state (parameters, Adam's two moments, the gradient and the update:
5 x the parameters) and the activations of one batch, in training every layer's
forward values and about as much again for the backward pass, in evaluation the
forward values of one evaluation chunk and a quarter more; the resident data
(uint8 images) is held once per device. On the CPU what XLA reports came to
0.35-0.9x of this estimate (4 vmapped members), so the first width errs on the
safe side; the runner then re-plans from the compiled program when it does not fit.

:func:`plan_chunk` turns either into a chunk width, given the memory free on each
device (the allocator's limit minus what is in use on a GPU; the host's available
memory, shared by its CPU devices).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import jax

from jaxcnn.models.model import Network, count_params
from jaxcnn.models.modelfns import variable_shapes
from jaxcnn.training.train import EVAL_BATCH

SAFETY = 0.8  # plan for this fraction of the free memory: the allocator needs headroom
FLOAT_BYTES = 4


def forward_floats(network: Network, conv: str) -> int:
    """Floats one image's forward pass produces, layer by layer, for ``conv``.

    The layer sizes are read from the network itself (its image shape and the shapes of
    its parameters), so a new network shape needs nothing here. Each 3x3 convolution
    forms patches (9 x input channels per pixel), Winograd's transformed tiles (16 per
    2x2 output tile, inputs and products; ``conv`` uses them above 3 input channels, as
    ``conv.conv3x3_pool`` does) or only its output (``"xla"``), then its output and the
    2x2-pooled output; each dense layer but the last its output and its activation.
    """
    shapes = variable_shapes(network)[0]
    height, width, channels = network.image_shape
    floats = height * width * channels  # the normalised image
    convs = sorted(name for name in shapes if name.startswith("conv"))
    for name in convs:
        _, _, cin, cout = shapes[name]["kernel"].shape
        pixels = height * width
        if conv == "xla":
            work = 0
        elif conv == "winograd" and cin > 3:
            work = 16 * (pixels // 4) * (cin + cout)
        else:
            work = pixels * 9 * cin
        height, width = height // 2, width // 2
        floats += work + pixels * cout + height * width * cout  # output, pooled output
    dense = [shapes[name]["kernel"].shape[-1] for name in sorted(shapes) if name not in convs]
    return floats + 2 * sum(dense[:-1]) + dense[-1]


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one member needs on its device (state + the larger of its activations)."""

    state: int
    training: int
    evaluation: int

    @property
    def total(self) -> int:
        return self.state + max(self.training, self.evaluation)


def member_bytes(network: Network, batch_size: int, conv: str,
                 eval_batch: int = EVAL_BATCH) -> MemoryEstimate:
    """The estimate for one member of ``network`` trained in batches of ``batch_size``."""
    params = count_params(variable_shapes(network))
    per_image = forward_floats(network, conv) * FLOAT_BYTES
    return MemoryEstimate(state=5 * params * FLOAT_BYTES, training=2 * batch_size * per_image,
                          evaluation=int(1.25 * eval_batch * per_image))


def compiled_member_bytes(epoch: Any, evaluate: Any, width: int, eval_members: int,
                          data_bytes: int, lockstep: bool) -> MemoryEstimate | None:
    """One member's bytes as XLA accounts them for compiled programs (None where the
    backend reports nothing).

    epoch: the compiled epoch of ``width`` members, whose arguments are their states,
    keys and the ``data_bytes`` of training data; evaluate: the largest compiled
    evaluation, of ``eval_members`` members at once. With ``lockstep`` (vmap) the
    temporaries grow with the members and are shared out; otherwise (members one after
    another) each member is charged all of them, which errs on the safe side.
    """
    train, ev = epoch.memory_analysis(), evaluate.memory_analysis()
    if train is None or ev is None:
        return None
    state = max(0, train.argument_size_in_bytes - data_bytes) // width
    share = width if lockstep else 1
    return MemoryEstimate(state=state, training=train.temp_size_in_bytes // share,
                          evaluation=ev.temp_size_in_bytes // (eval_members if lockstep else 1))


def host_available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def free_bytes(device: jax.Device | None = None, devices_sharing: int = 1) -> int | None:
    """Memory free on ``device``: the allocator's limit minus its use on an accelerator;
    on the CPU the host's available memory over the ``devices_sharing`` it."""
    device = device or jax.local_devices()[0]
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    host = host_available_bytes()
    return None if host is None else host // max(1, devices_sharing)


@dataclasses.dataclass(frozen=True)
class ChunkPlan:
    """How many members train at once per device, and why."""

    members_per_device: int
    per_member: int
    free: int | None
    notice: str | None


def plan_chunk(members: int, devices: int, estimate: MemoryEstimate, data_bytes: int,
               free: int | None) -> ChunkPlan:
    """The largest number of members per device that fits in ``free`` bytes (per device).

    ``members`` over ``devices`` if they all fit; else the largest count that fits
    (at least one), with a one-line notice. ``free`` None (unknown) plans no limit.
    """
    wanted = math.ceil(members / devices)
    if free is None:
        return ChunkPlan(wanted, estimate.total, None, None)
    room = int(free * SAFETY) - data_bytes
    fits = max(1, room // estimate.total)
    if fits >= wanted:
        return ChunkPlan(wanted, estimate.total, free, None)
    chunks = math.ceil(members / (fits * devices))
    return ChunkPlan(fits, estimate.total, free,
                     f"memory plan: {members} members need about "
                     f"{members * estimate.total / 2**30:.1f} GiB but each device has "
                     f"{free / 2**30:.1f} GiB free; training in {chunks} successive chunks "
                     f"of {fits * devices} ({fits} per device, ~{estimate.total / 2**20:.0f} "
                     "MiB each); --members-per-chunk overrides")

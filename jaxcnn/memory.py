"""Memory planning: how many members fit on a device at once, before compiling anything.

Per member, a device holds its state (parameters, Adam's two moments, the
gradient and the update: 5 x the parameters) and the activations of one batch:
in training every layer's forward values and about as much again for the
backward pass; in evaluation the forward values of one evaluation chunk, and a
quarter more. The resident data (uint8 images) is held once per device. What
XLA reports for the compiled programs on the CPU (``compiled.memory_analysis()``
of 4 vmapped members: 57-119 MB of temporaries per member in training and
125-281 MB in evaluation, by convolution) came to between 0.35x and 0.9x of this
estimate, so it errs on the safe side (tests/test_memory.py holds it to 0.3-1x).

:func:`plan_chunk` turns the estimate and the memory free on each device (the
allocator's limit minus what is in use on a GPU; the host's available memory,
shared by its CPU devices) into a chunk width.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import jax

from jaxcnn.model import Network, count_params, param_shapes
from jaxcnn.train import EVAL_BATCH

SAFETY = 0.8  # plan for this fraction of the free memory: the allocator needs headroom
FLOAT_BYTES = 4


def forward_floats(network: Network, conv: str) -> int:
    """Floats one image's forward pass produces, layer by layer, for ``conv``.

    conv1 (3 channels) computes patches (27 per pixel) unless conv is "xla";
    conv2/conv3 form patches (9 x channels per pixel), Winograd's transformed
    tiles (16 per 2x2 output tile, inputs and products), or only the output.
    """
    floats = 32 * 32 * 3  # the normalised image
    for size, cin, cout in ((32, 3, 64), (16, 64, 64), (8, 64, 32)):
        pixels = size * size
        if conv == "xla":
            work = 0
        elif conv == "winograd" and cin > 3:
            work = 16 * (pixels // 4) * (cin + cout)
        else:
            work = pixels * 9 * cin
        floats += work + pixels * cout + pixels // 4 * cout  # output, pooled output
    return floats + 512 + 512 + network.num_classes


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
    params = count_params(param_shapes(network))
    per_image = forward_floats(network, conv) * FLOAT_BYTES
    return MemoryEstimate(state=5 * params * FLOAT_BYTES, training=2 * batch_size * per_image,
                          evaluation=int(1.25 * eval_batch * per_image))


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

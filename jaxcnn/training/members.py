"""Members: what the engine trains and what it hands back.

A *member* is one (configuration, seed). The planner (``plan.py``) says which are
missing, the engine (``engine.py``, ``runner.py``) trains them and yields each as a
:class:`MemberResult`, and the results store (``store.py``) writes them. This module
sits below all three and imports none of them (and no JAX).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jaxcnn.configs import Hyperparams


@dataclasses.dataclass(frozen=True)
class Member:
    """One (configuration, seed) to train.

    config: the name results are reported under (unique per distinct model: the
    model's canonical "study/config");
    hparams: host scalars (see ``configs.hyperparams``); None for a member copied from
    results already on disk, which is never trained.
    """

    config: str
    seed: int
    hparams: Hyperparams | None

    @property
    def key(self) -> str:
        return f"{self.config}#{self.seed}"


@dataclasses.dataclass
class MemberResult:
    """A finished member: its results.json seed entry, applied schedule, parameters and
    predicted classes ({"test": (N_test,), "val": (N_val,)} ints; None where unknown)."""

    member: Member
    record: dict
    schedule: dict
    params: Any  # numpy leaves, no member axis
    resumed_from_epoch: int = 0
    predictions: dict | None = None

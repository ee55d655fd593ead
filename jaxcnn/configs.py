"""A configuration (what the studies compare) and its hyperparameters as member data.

A :class:`Configuration` is a network structure plus numbers: initializer,
dropout rates and optimizer. :func:`hyperparams` turns the numbers into a
:class:`Hyperparams` pytree of scalars that travels with each member's state, so
every configuration with the same :class:`~jaxcnn.model.Network` trains in one
compiled program. Two configurations are the same model when they are equal
apart from their description (:meth:`Configuration.identity`); such a model is
trained once wherever it appears.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn.initializers import INIT_NAMES, check_init
from jaxcnn.model import Network, Rates
from jaxcnn.optim import MemberOptimizer, OptimizerConfig, member_values


@dataclasses.dataclass(frozen=True)
class Configuration:
    """One configuration of a study.

    Attributes:
      network: the structure (fixes the compiled program).
      init: initializer scheme (see ``initializers.py``).
      spatial_dropout: Dropout2d rate after conv2 (whole channels); 0 = off.
      dropout: element dropout rate after fc1; 0 = off.
      optimizer: Adam, weight decay and schedule.
      description: for people; not part of what the model is.
    """

    network: Network = Network()
    init: str = "lecun"
    spatial_dropout: float = 0.0
    dropout: float = 0.0
    optimizer: OptimizerConfig = OptimizerConfig()
    description: str = ""

    def __post_init__(self) -> None:
        check_init(self.init)
        for rate in (self.spatial_dropout, self.dropout):
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"dropout rates must be in [0, 1), got {rate}")

    def identity(self) -> Configuration:
        """What makes the model: equal identities train to equal results."""
        return dataclasses.replace(self, description="")

    def fingerprint(self) -> str:
        """A short stable hash of :meth:`identity` (for checkpoint folder names)."""
        text = json.dumps(dataclasses.asdict(self.identity()), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def model_record(self) -> dict:
        """The network, initializer and dropout rates, for results and saved parameters."""
        return {**dataclasses.asdict(self.network), "init": self.init,
                "spatial_dropout": self.spatial_dropout, "dropout": self.dropout}


class Hyperparams(NamedTuple):
    """Everything numeric that tells one member's configuration from another's.

    Each leaf is a () array (a (M,) array once members are stacked).
    init: int32 index into ``INIT_NAMES``; rates: dropout; optimizer: see
    ``optim.MemberOptimizer``.
    """

    init: jax.Array
    rates: Rates
    optimizer: MemberOptimizer


def hyperparams(config: Configuration, steps_per_epoch: int) -> Hyperparams:
    """``config``'s numbers as host scalars (numpy), ready to stack over members.

    Every member gets the same dtypes (int32 for the initializer index and the
    schedule's unit, bool for staircase, float64 for the rest), so stacking any
    configurations gives one array type and one compiled program. Floats become
    the default float type of the arrays they are stacked into (float32, or
    float64 under ``jax_enable_x64``).
    """
    opt = member_values(config.optimizer, steps_per_epoch)
    schedule = opt.schedule._replace(
        unit=np.int32(opt.schedule.unit), staircase=np.bool_(opt.schedule.staircase),
        **{name: np.float64(getattr(opt.schedule, name)) for name in opt.schedule._fields
           if name not in ("unit", "staircase")})
    opt = MemberOptimizer(schedule, *(np.float64(v) for v in opt[1:]))
    return Hyperparams(np.int32(INIT_NAMES.index(config.init)),
                       Rates(np.float64(config.spatial_dropout), np.float64(config.dropout)), opt)


def stack(trees: list) -> object:
    """Stacks per-member pytrees (numpy or jax leaves) along a new leading axis."""
    return jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *trees)

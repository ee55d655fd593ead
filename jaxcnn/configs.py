"""A configuration (what the studies compare) and its hyperparameters as member data.

A :class:`Configuration` is a network structure plus numbers: initializer,
dropout rates, optimizer and the strengths of registered regularizers
(``regularizers.py``). :func:`hyperparams` turns the numbers into a
:class:`Hyperparams` pytree of scalars that travels with each member's state, so
every configuration with the same :class:`~jaxcnn.models.model.Network` trains in one
compiled program. Two configurations are the same model when they are equal
apart from their description (:meth:`Configuration.identity`); such a model is
trained once wherever it appears.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcnn.metric import Metric
from jaxcnn.models.initializers import DEFAULT, INIT_CHOICES, OWN, check_init
from jaxcnn.models.model import Network
from jaxcnn.optim import regularizers
from jaxcnn.optim.adam import MemberOptimizer, OptimizerConfig, member_optimizer, member_values
from jaxcnn.optim.optax_optimizer import Optimizer, OptimizerProgram, is_transform

# Fields added after results folders existed, with their defaults: left out of
# fingerprints while at the default, so a configuration's identity (and the folders
# and resumed runs keyed by it) is what it was before the field existed.
LATER_DEFAULTS = {("regularizers",): [], ("optimizer", "schedule", "params"): [],
                  ("network", "image_shape"): [32, 32, 3], ("network", "model"): "cnn",
                  ("metric",): None, ("values",): []}


@dataclasses.dataclass(frozen=True)
class Configuration:
    """One configuration of a study.

    Attributes:
      network: the structure (fixes the compiled program).
      init: initializer scheme (see ``initializers.py``); None: the model's own (for a
        user's model, ``"model"``: no re-draw; for the seed CNN, ``"lecun"``, Flax's).
      spatial_dropout: Dropout2d rate after conv2 (whole channels); 0 = off.
      dropout: element dropout rate after fc1; 0 = off.
      optimizer: Adam with PyTorch's rules, its weight decay and schedule
        (:class:`~jaxcnn.optim.adam.OptimizerConfig`), or any Optax optimizer
        (:class:`~jaxcnn.optim.optax_optimizer.Optimizer`; a plain ``GradientTransformation``
        is wrapped in one).
      description: for people; not part of what the model is.
      regularizers: strength of each registered regularizer used, name -> value
        (e.g. ``{"augment": 1.0}``); stored as sorted pairs. Weight decay is set in
        ``optimizer``.
      metric: a study's own :class:`~jaxcnn.metric.Metric`, computed in the
        evaluation program (None: test accuracy and loss only).
      values: numbers a model of one's own (linen or NNX) reads while training with
        ``jaxcnn.member_value(self, name)`` (a dropout rate, a noise scale), name ->
        float; members' data, so configurations differing only in them share one
        compiled program. Stored as sorted pairs.
    """

    network: Network = Network()
    init: str | None = None
    spatial_dropout: float = 0.0
    dropout: float = 0.0
    optimizer: OptimizerConfig | Optimizer = OptimizerConfig()
    description: str = ""
    regularizers: Mapping[str, float] | tuple = ()
    metric: Metric | None = None
    values: Mapping[str, float] | tuple = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "regularizers", tuple(sorted(dict(self.regularizers).items())))
        object.__setattr__(self, "values", tuple(sorted(dict(self.values).items())))
        for name, value in self.values:
            if not (isinstance(name, str) and name.isidentifier()):
                raise ValueError(f"value name {name!r}: use letters, digits and _ only")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not \
                    np.isfinite(value):
                raise ValueError(f"value {name} must be a finite number, got {value!r}")
        regularizers.check_strengths(dict(self.regularizers))
        if is_transform(self.optimizer):
            object.__setattr__(self, "optimizer", Optimizer(self.optimizer))
        if not isinstance(self.optimizer, (OptimizerConfig, Optimizer)):
            raise ValueError(f"optimizer must be an optax GradientTransformation, a "
                             f"jaxcnn Optimizer or an OptimizerConfig, got "
                             f"{type(self.optimizer).__name__}")
        links = [name for name, value in self.regularizers
                 if value and regularizers.get(name).kind == "link"]
        if isinstance(self.optimizer, Optimizer) and links:
            raise ValueError(f"regularizer {links[0]!r} links into the built-in Adam chain; "
                             "with an optax optimizer put it in the optax chain instead")
        seed_cnn = self.network.model == "cnn"
        if seed_cnn and self.values:
            raise ValueError("values are read by a model of one's own; the seed CNN's are "
                             "its dropout rates (spatial_dropout=, dropout=)")
        if self.init is None or (seed_cnn and self.init == OWN):
            object.__setattr__(self, "init", DEFAULT if seed_cnn else OWN)
        check_init(self.init)
        if not seed_cnn and (self.spatial_dropout or self.dropout):
            raise ValueError(f"dropout rates belong to the seed CNN; model "
                             f"{self.network.model!r} sets its own (its nn.Dropout layers)")
        for rate in (self.spatial_dropout, self.dropout):
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"dropout rates must be in [0, 1), got {rate}")

    def identity(self) -> Configuration:
        """What makes the model: equal identities train to equal results."""
        return dataclasses.replace(self, description="")

    def fingerprint(self) -> str:
        """A short stable hash of :meth:`identity` (for checkpoint folder names)."""
        record = dataclasses.asdict(self.identity())
        if isinstance(self.optimizer, Optimizer):  # its stable text, never an address
            record["optimizer"] = self.optimizer.identity
        record["metric"] = self.metric.identity if self.metric else None
        record = json.loads(json.dumps(record, default=str))
        for path, default in LATER_DEFAULTS.items():
            *parents, leaf = path
            holder = record
            for key in parents:
                holder = holder.get(key, {}) if isinstance(holder, dict) else {}
            if isinstance(holder, dict) and holder.get(leaf, default) == default:
                holder.pop(leaf, None)
        text = json.dumps(record, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def program(self) -> ProgramSpec:
        """What fixes this configuration's compiled program."""
        opt = self.optimizer
        return ProgramSpec(self.network, opt.program() if isinstance(opt, Optimizer) else None,
                           self.metric, tuple(name for name, _ in self.values))

    def model_record(self) -> dict:
        """The network, initializer, dropout rates and other regularizers in use, for
        results and saved parameters (``regularizers`` only when there are any)."""
        used = {name: value for name, value in self.regularizers if value}
        return {**dataclasses.asdict(self.network), "init": self.init,
                "spatial_dropout": self.spatial_dropout, "dropout": self.dropout,
                **({"regularizers": used} if used else {})}


class ProgramSpec(NamedTuple):
    """What fixes a compiled program: the network, and the optimizer's structure (None:
    the built-in Adam chain, whose every number is member data)."""

    network: Network
    optimizer: OptimizerProgram | None = None
    metric: Metric | None = None
    values: tuple[str, ...] = ()  # the names of the members' values (their structure)

    def transform(self) -> Callable[[Any], optax.GradientTransformation]:
        """``hparams.optimizer -> GradientTransformation`` of a member of this program."""
        return member_optimizer if self.optimizer is None else self.optimizer.build

    def describe(self) -> str:
        return self.network.describe() + ("" if self.optimizer is None else ", own optimizer")


def as_program(spec: Network | ProgramSpec) -> ProgramSpec:
    """A network alone stands for the built-in optimizer's program."""
    return spec if isinstance(spec, ProgramSpec) else ProgramSpec(spec)


class Hyperparams(NamedTuple):
    """Everything numeric that tells one member's configuration from another's.

    Each leaf is a () array (a (M,) array once members are stacked).
    init: int32 index into ``INIT_CHOICES``; values: name -> () float, what the model
    reads from its ``"member"`` collection (the seed CNN: its dropout rates); optimizer: see
    ``optim.MemberOptimizer`` (link regularizers included); transforms: the
    strength of every registered batch regularizer (``augment``), by name.
    """

    init: jax.Array
    values: dict
    optimizer: MemberOptimizer | dict
    transforms: dict


def hyperparams(config: Configuration, steps_per_epoch: int) -> Hyperparams:
    """``config``'s numbers as host scalars (numpy), ready to stack over members.

    Every member gets the same dtypes and structure (int32 for the initializer
    index and the schedule's index and unit, float64 for the rest; every registered
    regularizer, at 0 where unused), so stacking any configurations gives one array
    type and one compiled program. Floats become the default float type of the
    arrays they are stacked into (float32, or float64 under ``jax_enable_x64``).
    """
    strengths = dict(config.regularizers)
    if isinstance(config.optimizer, Optimizer):
        opt = config.optimizer.member_values()
    else:
        opt = member_values(config.optimizer, steps_per_epoch, strengths)
        s = opt.schedule
        schedule = s._replace(kind=np.int32(s.kind), unit=np.int32(s.unit),
                              lr=np.float64(s.lr), b1=np.float64(s.b1),
                              values=tuple(np.float64(v) for v in s.values))
        opt = MemberOptimizer(schedule, np.float64(opt.b2), np.float64(opt.eps),
                              {k: np.float64(v) for k, v in opt.regularizers.items()})
    transforms = {k: np.float64(v)
                  for k, v in regularizers.member_strengths(strengths, "batch").items()}
    values = ({"spatial_dropout": config.spatial_dropout, "dropout": config.dropout}
              if config.network.model == "cnn" else dict(config.values))
    return Hyperparams(np.int32(INIT_CHOICES.index(config.init)),
                       {k: np.float64(v) for k, v in values.items()}, opt, transforms)


def stack(trees: list) -> object:
    """Stacks per-member pytrees (numpy or jax leaves) along a new leading axis."""
    return jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *trees)

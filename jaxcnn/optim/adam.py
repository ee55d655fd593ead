"""Adam with PyTorch's update rule, regularizer links and a schedule, as one Optax chain.

:func:`member_optimizer` builds the chain every member runs, with
``optax.inject_hyperparams`` over :func:`_adam_chain`: its hyperparameters are
arrays carried per member (:class:`MemberOptimizer`, built by
:func:`member_values`): the schedule (``schedules.py``, chosen by index), beta2,
eps and the strength of every registered link regularizer
(``regularizers.py``)::

    [links before Adam] -> scale_by_adam -> [links after Adam] -> scale_by_learning_rate

The built-in links are the two weight decays. Coupled L2
(``torch.optim.Adam(weight_decay=wd)``) adds the decay to the gradient before the
moments; decoupled decay (``torch.optim.AdamW``, ``optax.adamw``) bypasses them.
They are different techniques: with coupled L2 Adam normalises the decay away for
weights with large gradients; decoupled decay shrinks every weight by
``lr * wd`` per step. A strength of 0 adds ``0 * params`` (exactly nothing), so
every member runs the same chain.

The tests hold this chain to each configuration's own Optax chain (Python
constants, Optax's schedules; ``tests/torch_oracles.py``) in float64, step by step,
and to PyTorch's optimizers and schedulers.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Mapping
from typing import NamedTuple

import jax
import optax

from jaxcnn.optim import regularizers, schedules
from jaxcnn.optim.schedules import ScheduleParams

BUILTIN_SCHEDULES = ("constant", "step", "exponential", "cyclic")


def _pairs(mapping: Mapping[str, float] | tuple) -> tuple[tuple[str, float], ...]:
    """A mapping as sorted (name, value) pairs: hashable, and stable in fingerprints."""
    return tuple(sorted(dict(mapping).items()))


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    """A learning-rate schedule, in PyTorch's terms; periods count scheduler steps.

    Attributes:
      kind: a registered schedule (``schedules.names()``): built in, "constant",
        "step" (StepLR), "exponential" (ExponentialLR) or "cyclic" (CyclicLR).
      per_epoch: the scheduler steps once per epoch, as the seed notebook's
        ``scheduler.step()`` after each epoch; else once per optimizer step.
      period: StepLR's step_size; ExponentialLR's time unit (1 when stepped per
        epoch; the steps per epoch for a smooth per-step decay by ``gamma`` per epoch).
      gamma: the decay factor per period; CyclicLR's exp_range gamma.
      staircase: decay in whole periods (StepLR) or smoothly.
      max_lr_factor: CyclicLR's max_lr as a multiple of the base rate.
      step_size_up, step_size_down: CyclicLR's half-cycles.
      mode: CyclicLR's mode: triangular, triangular2 or exp_range.
      cycle_momentum: cycle Adam's beta1 between base_momentum and max_momentum.
      params: a registered (non-built-in) schedule's parameters, name -> value
        (missing ones take the registered defaults); stored as sorted pairs.
    """

    kind: str = "constant"
    per_epoch: bool = False
    period: float = 1.0
    gamma: float = 0.1
    staircase: bool = True
    max_lr_factor: float = 5.0
    step_size_up: float = 2000
    step_size_down: float | None = None
    mode: str = "triangular"
    cycle_momentum: bool = True
    base_momentum: float = 0.8
    max_momentum: float = 0.9
    params: Mapping[str, float] | tuple = ()

    def __post_init__(self) -> None:
        schedules.get(self.kind)  # a ValueError naming the registered kinds
        object.__setattr__(self, "params", _pairs(self.params))
        if self.params and self.kind in BUILTIN_SCHEDULES:
            raise ValueError(f"schedule {self.kind!r} takes its parameters from the "
                             "PyTorch-named fields (period, gamma, ...), not params=")
        for name, value in self.params:
            if isinstance(value, bool) or not (isinstance(value, (int, float))
                                               and math.isfinite(value)):
                raise ValueError(f"schedule parameter {name} must be a finite number, "
                                 f"got {value!r}")
        if self.kind in ("step", "exponential"):
            schedules.positive("period", self.period)
            schedules.positive("gamma", self.gamma)
        if self.kind == "cyclic":
            schedules.positive("max_lr", self.max_lr_factor)
            if self.max_lr_factor < 1:
                raise ValueError(f"max_lr_factor ({self.max_lr_factor}) must be >= 1: "
                                 "max_lr must not be below base_lr")
            schedules.check_cycle(self.step_size_up, self.step_size_down, self.mode, self.gamma)
            if self.cycle_momentum:
                schedules.check_momentum(self.base_momentum, self.max_momentum)
        self.values(1e-3, 0.9, 1)  # unknown parameter names fail here, not in training

    def values(self, lr: float, b1: float, steps_per_epoch: int) -> ScheduleParams:
        """This schedule for base rate ``lr`` and beta1 ``b1``, as member data (host numbers)."""
        kind = schedules.get(self.kind)
        values = (kind.to_values(self, lr) if kind.to_values is not None
                  else dict(self.params))
        return schedules.member_params(self.kind, values, lr, b1,
                                       steps_per_epoch if self.per_epoch else 1)

    def describe(self, lr: float) -> str:
        when = "stepped per epoch" if self.per_epoch else "per optimizer step"
        if self.kind == "constant":
            return f"constant {lr:g}"
        if self.kind == "step":
            return f"StepLR({lr:g}, step_size={self.period:g}, gamma={self.gamma:g}), {when}"
        if self.kind == "exponential":
            smooth = "" if self.staircase else f", smooth over {self.period:g} steps"
            return f"ExponentialLR({lr:g}, gamma={self.gamma:g}{smooth}), {when}"
        if self.kind == "cyclic":
            beta = (f", beta1 {self.max_momentum:g}<->{self.base_momentum:g}"
                    if self.cycle_momentum else "")
            return (f"CyclicLR({lr:g}..{lr * self.max_lr_factor:g}, up={self.step_size_up:g}, "
                    f"{self.mode}{beta}), {when}")
        merged = {**schedules.get(self.kind).defaults, **dict(self.params)}
        return (f"{self.kind}(lr={lr:g}"
                + "".join(f", {k}={v:g}" for k, v in merged.items()) + f"), {when}")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """Adam hyperparameters, weight decay and the learning-rate schedule.

    ``decay`` is "coupled" (L2 through the gradient, PyTorch Adam) or
    "decoupled" (AdamW); ``weight_decay=0`` turns either off.
    """

    lr: float = 1e-3
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    decay: str = "coupled"
    schedule: ScheduleConfig = ScheduleConfig()

    def __post_init__(self) -> None:
        schedules.positive("lr", self.lr)
        for name in ("b1", "b2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)!r}")
        if self.decay not in ("coupled", "decoupled"):
            raise ValueError(f"decay must be 'coupled' or 'decoupled', got {self.decay!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")


# --- the member chain ------------------------------------------------------------------

ADAM_ARGS = ("learning_rate", "b1", "b2", "eps")


class MemberOptimizer(NamedTuple):
    """One member's optimizer hyperparameters; () arrays (or numbers) each.

    schedule: learning rate and beta1 as functions of the step; regularizers: the
    strength of every registered link regularizer, by name (``coupled_decay`` and
    ``decoupled_decay`` built in).
    """

    schedule: ScheduleParams
    b2: jax.Array | float
    eps: jax.Array | float
    regularizers: dict


def _adam_chain(names: tuple[str, ...]):
    """The chain's factory, its arguments Adam's and one per link regularizer.

    ``inject_hyperparams`` reads the factory's signature to tell which arguments it
    injects, so the link strengths are named parameters, not ``**kwargs``.
    """

    def chain(**values) -> optax.GradientTransformation:
        strengths = {name: values[name] for name in names}
        return optax.chain(*regularizers.links(strengths, before_adam=True),
                           optax.scale_by_adam(values["b1"], values["b2"], values["eps"]),
                           *regularizers.links(strengths, before_adam=False),
                           optax.scale_by_learning_rate(values["learning_rate"]))

    chain.__signature__ = inspect.Signature(
        [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY) for n in (*ADAM_ARGS, *names)])
    return chain


def member_optimizer(h: MemberOptimizer) -> optax.GradientTransformation:
    """The member chain with ``h``'s values.

    Built inside traced code, so ``h``'s leaves may be per-member tracers (under
    ``vmap`` they are: traced hyperparameters must go through
    ``inject_hyperparams``, optax#932). The state's ``hyperparams`` holds the values
    used by the last update (learning_rate and b1 included), so what was trained
    with can be read back rather than recomputed.
    """
    return optax.inject_hyperparams(_adam_chain(tuple(h.regularizers)))(
        learning_rate=lambda count: schedules.learning_rate(count, h.schedule),
        b1=lambda count: schedules.beta1(count, h.schedule),
        b2=h.b2, eps=h.eps, **h.regularizers)


def schedule_params(cfg: OptimizerConfig, steps_per_epoch: int) -> ScheduleParams:
    """``cfg``'s schedule as member data (host numbers)."""
    return cfg.schedule.values(cfg.lr, cfg.b1, steps_per_epoch)


def link_strengths(cfg: OptimizerConfig, strengths: Mapping[str, float] = ()
                   ) -> dict[str, float]:
    """Every registered link regularizer's strength: the weight decay from ``cfg``, the
    rest from ``strengths`` (a configuration's regularizers), 0 where not given."""
    decays = {"coupled_decay": cfg.weight_decay if cfg.decay == "coupled" else 0.0,
              "decoupled_decay": cfg.weight_decay if cfg.decay == "decoupled" else 0.0}
    return regularizers.member_strengths({**dict(strengths), **decays}, "link")


def member_values(cfg: OptimizerConfig, steps_per_epoch: int,
                  strengths: Mapping[str, float] = ()) -> MemberOptimizer:
    """``cfg`` (and the link regularizers among ``strengths``) as the member chain's
    hyperparameters (host numbers)."""
    return MemberOptimizer(schedule_params(cfg, steps_per_epoch), cfg.b2, cfg.eps,
                           link_strengths(cfg, strengths))


def describe_chain(cfg: OptimizerConfig, strengths: Mapping[str, float] = ()) -> str:
    """The member chain with ``cfg``'s values, link by link, as text; links at
    strength 0 (they add nothing) are left out."""
    sc = cfg.schedule
    b1 = "cyclic" if sc.kind == "cyclic" and sc.cycle_momentum else f"{cfg.b1:g}"
    used = {k: v for k, v in link_strengths(cfg, strengths).items() if v}

    def side(before: bool) -> list[str]:
        return [f"add_decayed_weights(weight_decay={used[name]:g})"
                if name in regularizers.OPTIMIZER_DECAYS else f"{name}({used[name]:g})"
                for name in regularizers.names("link")
                if name in used and regularizers.get(name).before_adam == before]

    adam = f"scale_by_adam(b1={b1}, b2={cfg.b2:g}, eps={cfg.eps:g})"
    rate = f"scale_by_learning_rate(learning_rate={sc.describe(cfg.lr)})"
    return " -> ".join([*side(True), adam, *side(False), rate])

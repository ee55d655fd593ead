"""Adam with PyTorch's update rule, weight decay and a schedule, as Optax chains.

Two ways to build the same optimizer:

- :func:`member_optimizer` (what training uses): one chain for every member,
  ``optax.inject_hyperparams`` over :data:`ADAM_CHAIN`, its hyperparameters arrays
  carried per member (:class:`MemberOptimizer`, built by :func:`member_values`):
  the schedules' parameters, beta2, eps, and both weight decays. A decay of 0 adds
  ``0 * params`` (exactly nothing), so every member runs the same chain.
- :func:`build_optimizer`: the configuration's own chain with Python constants and
  Optax's schedules (the per-configuration reference the tests hold the member
  chain to, in float64, step by step).

Coupled L2 (``torch.optim.Adam(weight_decay=wd)``) adds the decay to the gradient
before the moments; decoupled decay (``torch.optim.AdamW``, ``optax.adamw``)
bypasses them. They are different techniques: with coupled L2 Adam normalises the
decay away for weights with large gradients; decoupled decay shrinks every weight
by ``lr * wd`` per step.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import optax

from jaxcnn import schedules
from jaxcnn.schedules import ScheduleParams

SCHEDULE_KINDS = ("constant", "step", "exponential", "cyclic")


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    """A learning-rate schedule, in PyTorch's terms; periods count scheduler steps.

    Attributes:
      kind: "constant", "step" (StepLR), "exponential" (ExponentialLR) or
        "cyclic" (CyclicLR).
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

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULE_KINDS:
            raise ValueError(f"schedule kind must be one of {', '.join(SCHEDULE_KINDS)}, "
                             f"got {self.kind!r}")
        if self.kind in ("step", "exponential"):
            schedules.positive("period", self.period)
            schedules.positive("gamma", self.gamma)
        if self.kind == "cyclic":  # the factories validate every argument
            schedules.cyclic(1.0, self.max_lr_factor, self.step_size_up, self.step_size_down,
                             self.mode, self.gamma)
            if self.cycle_momentum:
                schedules.cyclic_momentum(self.base_momentum, self.max_momentum,
                                          self.step_size_up, self.step_size_down, self.mode,
                                          self.gamma)

    def describe(self, lr: float) -> str:
        when = "stepped per epoch" if self.per_epoch else "per optimizer step"
        if self.kind == "constant":
            return f"constant {lr:g}"
        if self.kind == "step":
            return f"StepLR({lr:g}, step_size={self.period:g}, gamma={self.gamma:g}), {when}"
        if self.kind == "exponential":
            smooth = "" if self.staircase else f", smooth over {self.period:g} steps"
            return f"ExponentialLR({lr:g}, gamma={self.gamma:g}{smooth}), {when}"
        beta = (f", beta1 {self.max_momentum:g}<->{self.base_momentum:g}"
                if self.cycle_momentum else "")
        return (f"CyclicLR({lr:g}..{lr * self.max_lr_factor:g}, up={self.step_size_up:g}, "
                f"{self.mode}{beta}), {when}")


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

# The one chain every member runs: (optax factory, {its argument: hyperparameter name}).
ADAM_CHAIN = (
    ("add_decayed_weights", {"weight_decay": "coupled_decay"}),  # L2: into the moments
    ("scale_by_adam", {"b1": "b1", "b2": "b2", "eps": "eps"}),
    ("add_decayed_weights", {"weight_decay": "decoupled_decay"}),  # AdamW: past them
    ("scale_by_learning_rate", {"learning_rate": "learning_rate"}),
)


class MemberOptimizer(NamedTuple):
    """One member's optimizer hyperparameters; () arrays (or numbers) each."""

    schedule: ScheduleParams  # learning rate and beta1, as functions of the step
    b2: jax.Array | float
    eps: jax.Array | float
    coupled_decay: jax.Array | float
    decoupled_decay: jax.Array | float


def _adam_chain(learning_rate, b1, b2, eps, coupled_decay, decoupled_decay
                ) -> optax.GradientTransformation:
    values = dict(learning_rate=learning_rate, b1=b1, b2=b2, eps=eps,
                  coupled_decay=coupled_decay, decoupled_decay=decoupled_decay)
    return optax.chain(*(getattr(optax, name)(**{arg: values[key] for arg, key in args.items()})
                         for name, args in ADAM_CHAIN))


def member_optimizer(h: MemberOptimizer) -> optax.GradientTransformation:
    """The member chain with ``h``'s values.

    Built inside traced code, so ``h``'s leaves may be per-member tracers (under
    ``vmap`` they are: traced hyperparameters must go through
    ``inject_hyperparams``, optax#932). The state's ``hyperparams`` holds the values
    used by the last update (learning_rate and b1 included), so what was trained
    with can be read back rather than recomputed.
    """
    return optax.inject_hyperparams(_adam_chain)(
        learning_rate=lambda count: schedules.learning_rate(count, h.schedule),
        b1=lambda count: schedules.beta1(count, h.schedule),
        b2=h.b2, eps=h.eps, coupled_decay=h.coupled_decay, decoupled_decay=h.decoupled_decay)


def schedule_params(cfg: OptimizerConfig, steps_per_epoch: int) -> ScheduleParams:
    """``cfg``'s schedule as a point of the schedule family (host numbers)."""
    sc = cfg.schedule
    base = dict(lr=cfg.lr, unit=steps_per_epoch if sc.per_epoch else 1, b1=cfg.b1)
    if sc.kind in ("step", "exponential"):
        return ScheduleParams(**base, decay_rate=sc.gamma, decay_period=sc.period,
                              staircase=sc.staircase)
    if sc.kind == "cyclic":
        momentum = (dict(b1=sc.max_momentum, b1_amplitude=sc.max_momentum - sc.base_momentum)
                    if sc.cycle_momentum else {})
        return ScheduleParams(**{**base, **momentum},
                              cycle_amplitude=cfg.lr * sc.max_lr_factor - cfg.lr,
                              **schedules.cycle_shape(sc.step_size_up, sc.step_size_down,
                                                      sc.mode, sc.gamma))
    return ScheduleParams(**base)


def member_values(cfg: OptimizerConfig, steps_per_epoch: int) -> MemberOptimizer:
    """``cfg`` as the member chain's hyperparameters (host numbers)."""
    coupled = cfg.weight_decay if cfg.decay == "coupled" else 0.0
    decoupled = cfg.weight_decay if cfg.decay == "decoupled" else 0.0
    return MemberOptimizer(schedule_params(cfg, steps_per_epoch), cfg.b2, cfg.eps,
                           coupled, decoupled)


def describe_chain(cfg: OptimizerConfig) -> str:
    """The member chain with ``cfg``'s values, link by link, as text."""
    sc = cfg.schedule
    values = member_values(cfg, 1)
    text = {"learning_rate": sc.describe(cfg.lr),
            "b1": "cyclic" if sc.kind == "cyclic" and sc.cycle_momentum else f"{cfg.b1:g}",
            "b2": f"{cfg.b2:g}", "eps": f"{cfg.eps:g}",
            "coupled_decay": f"{values.coupled_decay:g}",
            "decoupled_decay": f"{values.decoupled_decay:g}"}
    links = []
    for name, args in ADAM_CHAIN:
        if name == "add_decayed_weights" and text[args["weight_decay"]] == "0":
            continue  # adds 0 * params: leave it out of the text
        links.append(f"{name}({', '.join(f'{a}={text[k]}' for a, k in args.items())})")
    return " -> ".join(links)


# --- the per-configuration reference chain ---------------------------------------------

def make_schedules(cfg: OptimizerConfig, steps_per_epoch: int
                   ) -> tuple[schedules.Schedule, schedules.Schedule | None]:
    """The configuration's own learning-rate schedule and, if beta1 cycles, beta1's.

    Built from Optax's schedules (and the validated CyclicLR factories), independent
    of the member family in ``schedules.learning_rate``.
    """
    sc = cfg.schedule
    unit = steps_per_epoch if sc.per_epoch else 1
    if sc.kind == "constant":
        return optax.constant_schedule(cfg.lr), None
    if sc.kind in ("step", "exponential"):
        decay = optax.exponential_decay(cfg.lr, transition_steps=sc.period * unit,
                                        decay_rate=sc.gamma, staircase=sc.staircase)
        # optax divides the count by transition_steps in the count's dtype: an int32
        # count (optax's own) gives a float32 rate even under jax_enable_x64. A float
        # count keeps the default float's precision.
        return (lambda count: decay(schedules.as_float(count))), None
    shape = dict(step_size_up=sc.step_size_up, step_size_down=sc.step_size_down, mode=sc.mode,
                 gamma=sc.gamma if sc.mode == "exp_range" else 1.0, steps_per_unit=unit)
    lr = schedules.cyclic(cfg.lr, cfg.lr * sc.max_lr_factor, **shape)
    b1 = (schedules.cyclic_momentum(sc.base_momentum, sc.max_momentum, **shape)
          if sc.cycle_momentum else None)
    return lr, b1


def build_optimizer(cfg: OptimizerConfig, steps_per_epoch: int) -> optax.GradientTransformation:
    """The configuration's own Optax chain, Python constants and Optax schedules."""
    lr_schedule, b1_schedule = make_schedules(cfg, steps_per_epoch)
    if b1_schedule is None:
        adam = optax.scale_by_adam(b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)
    else:
        # inject_hyperparams recomputes b1 from the step count before each
        # update; the bias correction then uses the current beta1, as torch does.
        adam = optax.inject_hyperparams(optax.scale_by_adam)(b1=b1_schedule, b2=cfg.b2,
                                                             eps=cfg.eps)
    links = [adam]
    if cfg.weight_decay:
        decay = optax.add_decayed_weights(cfg.weight_decay)
        links = [decay, adam] if cfg.decay == "coupled" else [adam, decay]
    return optax.chain(*links, optax.scale_by_learning_rate(lr_schedule))


def applied_hyperparams(opt_state: Any) -> dict:
    """The values the member chain used in its last update, from its state."""
    return opt_state.hyperparams

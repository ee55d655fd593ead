"""Turn an :class:`OptimizerConfig` into one Optax chain.

Adam with PyTorch's update rule, optional weight decay, any learning-rate
schedule and, for CyclicLR's ``cycle_momentum``, a scheduled beta1:

- coupled L2 (``torch.optim.Adam(weight_decay=wd)``): the decay is added to the
  gradient before the moments: ``add_decayed_weights -> scale_by_adam -> lr``;
- decoupled (``torch.optim.AdamW``, ``optax.adamw``): the decay bypasses the
  moments: ``scale_by_adam -> add_decayed_weights -> lr``.

They are different techniques: with coupled L2 Adam normalises the decay
away for weights with large gradients; decoupled decay shrinks every weight by
``lr * wd`` per step.
"""

from __future__ import annotations

import dataclasses

import optax

from jaxcnn import schedules

SCHEDULE_KINDS = ("constant", "step", "exponential", "cyclic")


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    """A learning-rate schedule (PyTorch names and defaults).

    Attributes:
      kind: "constant", "step" (StepLR), "exponential" (ExponentialLR) or
        "cyclic" (CyclicLR).
      per_epoch: advance the schedule once per epoch, as the seed notebook's
        ``scheduler.step()`` after each epoch did; else once per optimizer step.
      step_size: StepLR period, in epochs.
      gamma: StepLR / ExponentialLR factor per period; CyclicLR exp_range gamma.
      staircase: ExponentialLR in whole epochs (PyTorch) or smoothly per step.
      max_lr_factor: CyclicLR max_lr as a multiple of the base rate (the seed:
        base 0.001, max 0.005).
      step_size_up, step_size_down: CyclicLR half-cycles in scheduler steps.
      mode: CyclicLR mode: triangular, triangular2 or exp_range.
      cycle_momentum: cycle Adam's beta1 between base_momentum and max_momentum.
    """

    kind: str = "constant"
    per_epoch: bool = False
    step_size: int = 5
    gamma: float = 0.1
    staircase: bool = True
    max_lr_factor: float = 5.0
    step_size_up: int = 2000
    step_size_down: int | None = None
    mode: str = "triangular"
    cycle_momentum: bool = True
    base_momentum: float = 0.8
    max_momentum: float = 0.9

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULE_KINDS:
            raise ValueError(f"schedule kind must be one of {', '.join(SCHEDULE_KINDS)}, "
                             f"got {self.kind!r}")


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
        if self.decay not in ("coupled", "decoupled"):
            raise ValueError(f"decay must be 'coupled' or 'decoupled', got {self.decay!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")


def make_schedules(cfg: OptimizerConfig, steps_per_epoch: int
                   ) -> tuple[schedules.Schedule, schedules.Schedule | None]:
    """The learning-rate schedule and, if beta1 cycles, the beta1 schedule."""
    sc = cfg.schedule
    unit = steps_per_epoch if sc.per_epoch else 1  # steps per scheduler step
    if sc.kind == "constant":
        return schedules.constant(cfg.lr), None
    if sc.kind == "step":
        # StepLR's step_size counts epochs: per-step schedules convert it.
        period = sc.step_size if sc.per_epoch else sc.step_size * steps_per_epoch
        return schedules.step_decay(cfg.lr, period, sc.gamma, unit), None
    if sc.kind == "exponential":
        # gamma is per epoch; a per-step schedule measures time in epochs too.
        return schedules.exponential_decay(cfg.lr, sc.gamma, steps_per_epoch,
                                           staircase=sc.staircase or sc.per_epoch), None
    shape = dict(step_size_up=sc.step_size_up, step_size_down=sc.step_size_down, mode=sc.mode,
                 gamma=sc.gamma if sc.mode == "exp_range" else 1.0, steps_per_unit=unit)
    lr = schedules.cyclic(cfg.lr, cfg.lr * sc.max_lr_factor, **shape)
    b1 = (schedules.cyclic_momentum(sc.base_momentum, sc.max_momentum, **shape)
          if sc.cycle_momentum else None)
    return lr, b1


def build_optimizer(cfg: OptimizerConfig, steps_per_epoch: int) -> optax.GradientTransformation:
    """One Optax chain for ``cfg``; ``steps_per_epoch`` converts epoch-based schedules."""
    lr_schedule, b1_schedule = make_schedules(cfg, steps_per_epoch)
    if b1_schedule is None:
        adam = optax.scale_by_adam(b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)
    else:
        # inject_hyperparams recomputes b1 from the step count before each
        # update; the bias correction then uses the current beta1, as torch does.
        adam = optax.inject_hyperparams(optax.scale_by_adam)(b1=b1_schedule, b2=cfg.b2, eps=cfg.eps)
    links = [adam]
    if cfg.weight_decay:
        decay = optax.add_decayed_weights(cfg.weight_decay)
        links = [decay, adam] if cfg.decay == "coupled" else [adam, decay]
    return optax.chain(*links, optax.scale_by_learning_rate(lr_schedule))


def describe_chain(cfg: OptimizerConfig) -> str:
    """A one-line human description of the chain ``build_optimizer`` makes."""
    sc = cfg.schedule
    adam = f"scale_by_adam(b1={'cyclic' if sc.kind == 'cyclic' and sc.cycle_momentum else cfg.b1})"
    links = [adam]
    if cfg.weight_decay:
        decay = f"add_decayed_weights({cfg.weight_decay:g})"
        links = [decay, adam] if cfg.decay == "coupled" else [adam, decay]
    when = "per epoch" if sc.per_epoch else "per step"
    lr = f"{cfg.lr:g}" if sc.kind == "constant" else f"{sc.kind} schedule of {cfg.lr:g}, {when}"
    return " -> ".join(links + [f"scale_by_learning_rate({lr})"])

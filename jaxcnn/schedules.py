"""Learning-rate and beta1 schedules: one parametrised family, its parameters as data.

A schedule is a function ``count -> value`` of the number of optimizer updates
applied so far (0 for the first). Every schedule the studies use is one member of
a single family whose parameters are arrays (:class:`ScheduleParams`), so members
with different schedules share one compiled program::

    t        = count // unit                          scheduler steps taken
    decay    = decay_rate ** (t / decay_period)       floored when staircase
    height   = CyclicLR's triangle in [0, 1] at t     x cycle_decay ** (cycle - 1)
                                                      x cycle_gamma ** t
    lr       = lr0 * decay + cycle_amplitude * height
    beta1    = b1 - b1_amplitude * height

``unit`` is 1 (the schedule advances every optimizer step) or the steps per epoch
(it advances once an epoch, as the seed notebook's ``scheduler.step()`` after each
epoch did). PyTorch's schedulers are points of the family:

=========================  ===========================================================
``StepLR(s, gamma)``       decay_rate gamma, decay_period s, staircase
``ExponentialLR(gamma)``   decay_rate gamma, decay_period 1 (per epoch) or the steps
                           per epoch with staircase off (smooth, per step)
``CyclicLR``               cycle_amplitude max_lr - base_lr, cycle_up/down the
                           half-cycles; triangular2: cycle_decay 1/2; exp_range:
                           cycle_gamma gamma; ``cycle_momentum``: b1_amplitude
                           max_momentum - base_momentum
constant                   decay_rate 1, cycle_amplitude 0
=========================  ===========================================================

Neutral values are exact: ``1 ** p == 1``, ``0 * height == 0``, so a constant
member's rate is ``lr0`` bit for bit. The CyclicLR factories below validate their
arguments at once (a ValueError naming the bad one) and serve as the per-
configuration reference; ``optim.build_optimizer`` builds the other references
from ``optax.exponential_decay``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

Schedule = Callable[[jnp.ndarray], jnp.ndarray]
CYCLIC_MODES = ("triangular", "triangular2", "exp_range")


class ScheduleParams(NamedTuple):
    """One member's learning-rate and beta1 schedule; every field a () array or number.

    See the module docstring for the formula. ``unit`` is an integer (optimizer
    steps per scheduler step); ``staircase`` a bool; the rest are floats.
    """

    lr: jax.Array | float
    unit: jax.Array | int = 1
    decay_rate: jax.Array | float = 1.0
    decay_period: jax.Array | float = 1.0
    staircase: jax.Array | bool = False
    cycle_amplitude: jax.Array | float = 0.0
    cycle_up: jax.Array | float = 1.0
    cycle_down: jax.Array | float = 1.0
    cycle_decay: jax.Array | float = 1.0
    cycle_gamma: jax.Array | float = 1.0
    b1: jax.Array | float = 0.9
    b1_amplitude: jax.Array | float = 0.0


def as_float(x: jnp.ndarray) -> jnp.ndarray:
    # The default float (float64 under jax_enable_x64): an int32 count divided by an
    # int would give float32 and cost the schedule ~1e-8 of precision there.
    return jnp.asarray(x, dtype=jnp.result_type(float))


def scheduler_time(count: jnp.ndarray, unit: jnp.ndarray | int) -> jnp.ndarray:
    """Scheduler steps taken after ``count`` updates: ``count // unit`` as a float."""
    return as_float(jnp.asarray(count) // unit)


def cycle_height(t: jnp.ndarray, up, down, cycle_decay=1.0, cycle_gamma=1.0) -> jnp.ndarray:
    """PyTorch CyclicLR's height in [0, 1] at scheduler time ``t``, its scale_fn applied.

    Rises linearly over ``up`` scheduler steps, falls over ``down``; then multiplied
    by ``cycle_decay ** (cycle - 1)`` (triangular2: 1/2) and ``cycle_gamma ** t``
    (exp_range, which scales by iterations, not cycles).
    """
    total = as_float(up) + as_float(down)
    ratio = as_float(up) / total
    cycle = jnp.floor(1 + t / total)
    x = 1.0 + t / total - cycle
    scale = jnp.where(x <= ratio, x / ratio, (x - 1) / (ratio - 1))
    return scale * as_float(cycle_decay) ** (cycle - 1) * as_float(cycle_gamma) ** t


def learning_rate(count: jnp.ndarray, p: ScheduleParams) -> jnp.ndarray:
    """The rate used for the update after ``count`` updates (see the module formula)."""
    t = scheduler_time(count, p.unit)
    exponent = t / as_float(p.decay_period)
    exponent = jnp.where(p.staircase, jnp.floor(exponent), exponent)
    height = cycle_height(t, p.cycle_up, p.cycle_down, p.cycle_decay, p.cycle_gamma)
    decayed = as_float(p.lr) * as_float(p.decay_rate) ** exponent
    return decayed + as_float(p.cycle_amplitude) * height


def beta1(count: jnp.ndarray, p: ScheduleParams) -> jnp.ndarray:
    """Adam's beta1 for that update: ``b1 - b1_amplitude * height`` (CyclicLR's momentum)."""
    t = scheduler_time(count, p.unit)
    height = cycle_height(t, p.cycle_up, p.cycle_down, p.cycle_decay, p.cycle_gamma)
    return as_float(p.b1) - as_float(p.b1_amplitude) * height


# --- validated per-configuration factories (the reference the member family is tested on)

def positive(name: str, value: float) -> None:
    """Raises ValueError unless ``value`` is a finite number > 0."""
    if isinstance(value, bool) or not (isinstance(value, (int, float)) and math.isfinite(value)
                                       and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def _check_cycle(step_size_up: float, step_size_down: float | None, mode: str, gamma: float,
                 steps_per_unit: int) -> None:
    positive("step_size_up", step_size_up)
    if step_size_down is not None:
        positive("step_size_down", step_size_down)
    if mode not in CYCLIC_MODES:
        raise ValueError(f"mode must be one of {', '.join(CYCLIC_MODES)}, got {mode!r}")
    positive("gamma", gamma)
    positive("steps_per_unit", steps_per_unit)


def cycle_shape(step_size_up: float, step_size_down: float | None, mode: str,
                gamma: float) -> dict:
    """CyclicLR's mode as the family's (cycle_up, cycle_down, cycle_decay, cycle_gamma)."""
    return {"cycle_up": float(step_size_up),
            "cycle_down": float(step_size_down if step_size_down is not None else step_size_up),
            "cycle_decay": 0.5 if mode == "triangular2" else 1.0,
            "cycle_gamma": gamma if mode == "exp_range" else 1.0}


def cyclic(base_lr: float, max_lr: float, step_size_up: float = 2000,
           step_size_down: float | None = None, mode: str = "triangular",
           gamma: float = 1.0, steps_per_unit: int = 1) -> Schedule:
    """PyTorch CyclicLR's learning rate: ``base + (max - base) * height(t)``.

    ``height`` rises linearly from 0 to 1 over ``step_size_up`` units and falls
    back over ``step_size_down`` (default: the same); ``triangular2`` halves the
    amplitude each cycle, ``exp_range`` multiplies it by ``gamma ** t``.
    """
    positive("base_lr", base_lr)
    positive("max_lr", max_lr)
    if max_lr < base_lr:
        raise ValueError(f"max_lr ({max_lr}) must not be below base_lr ({base_lr})")
    _check_cycle(step_size_up, step_size_down, mode, gamma, steps_per_unit)
    shape = cycle_shape(step_size_up, step_size_down, mode, gamma)

    def schedule(count: jnp.ndarray) -> jnp.ndarray:
        t = scheduler_time(count, steps_per_unit)
        return base_lr + (max_lr - base_lr) * cycle_height(
            t, shape["cycle_up"], shape["cycle_down"], shape["cycle_decay"], shape["cycle_gamma"])

    return schedule


def cyclic_momentum(base_momentum: float = 0.8, max_momentum: float = 0.9,
                    step_size_up: float = 2000, step_size_down: float | None = None,
                    mode: str = "triangular", gamma: float = 1.0,
                    steps_per_unit: int = 1) -> Schedule:
    """CyclicLR's ``cycle_momentum``: beta1 moves opposite to the rate.

    ``max_momentum - (max_momentum - base_momentum) * height(t)``: 0.9 when the
    rate is at its base, 0.8 at its peak, with PyTorch's defaults.
    """
    for name, value in (("base_momentum", base_momentum), ("max_momentum", max_momentum)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    if max_momentum < base_momentum:
        raise ValueError(f"max_momentum ({max_momentum}) must not be below "
                         f"base_momentum ({base_momentum})")
    _check_cycle(step_size_up, step_size_down, mode, gamma, steps_per_unit)
    shape = cycle_shape(step_size_up, step_size_down, mode, gamma)

    def schedule(count: jnp.ndarray) -> jnp.ndarray:
        t = scheduler_time(count, steps_per_unit)
        return max_momentum - (max_momentum - base_momentum) * cycle_height(
            t, shape["cycle_up"], shape["cycle_down"], shape["cycle_decay"], shape["cycle_gamma"])

    return schedule

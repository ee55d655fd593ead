"""Learning-rate (and beta1) schedules as Optax schedules of the optimizer step.

A schedule is a function ``count -> value`` where ``count`` is the number of
updates applied so far (0 for the first). Factories validate their arguments
at once and raise ValueError with the bad value named.

Each factory takes ``steps_per_unit``: the schedule's own unit of time in
optimizer steps. With 1 the schedule advances every step; with the number of
steps per epoch it advances once an epoch, which is what the seed notebook did
by calling ``scheduler.step()`` after each epoch (``per_epoch``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax.numpy as jnp

Schedule = Callable[[jnp.ndarray], jnp.ndarray]
CYCLIC_MODES = ("triangular", "triangular2", "exp_range")


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def _float(x: jnp.ndarray) -> jnp.ndarray:
    # The default float (float64 under jax_enable_x64): int32 / int would give
    # float32 and cost the schedule ~1e-8 of precision.
    return jnp.asarray(x, dtype=jnp.result_type(float))


def _time(count: jnp.ndarray, steps_per_unit: int) -> jnp.ndarray:
    """Schedule time as a float: whole units elapsed (floor division when a unit > 1 step)."""
    return _float(count // steps_per_unit if steps_per_unit > 1 else count)


def constant(lr: float) -> Schedule:
    """lr at every step."""
    _positive("lr", lr)
    return lambda count: jnp.full(jnp.shape(count), lr, jnp.result_type(float))


def step_decay(lr: float, step_size: int, gamma: float, steps_per_unit: int = 1) -> Schedule:
    """PyTorch StepLR: ``lr * gamma ** floor(t / step_size)`` with t in units."""
    _positive("lr", lr)
    _positive("step_size", step_size)
    _positive("gamma", gamma)
    _positive("steps_per_unit", steps_per_unit)

    def schedule(count: jnp.ndarray) -> jnp.ndarray:
        return lr * gamma ** (_time(count, steps_per_unit) // step_size)

    return schedule


def exponential_decay(lr: float, gamma: float, steps_per_unit: int = 1,
                      staircase: bool = True) -> Schedule:
    """PyTorch ExponentialLR: ``lr * gamma ** t`` with t in units.

    With ``staircase=False`` t is fractional (``count / steps_per_unit``): the
    same value at every unit boundary, decaying smoothly in between.
    """
    _positive("lr", lr)
    _positive("gamma", gamma)
    _positive("steps_per_unit", steps_per_unit)

    def schedule(count: jnp.ndarray) -> jnp.ndarray:
        t = _time(count, steps_per_unit) if staircase else _float(count) / steps_per_unit
        return lr * gamma ** t

    return schedule


def _cyclic_shape(step_size_up: float, step_size_down: float | None, mode: str,
                  gamma: float, steps_per_unit: int) -> Callable[[jnp.ndarray], jnp.ndarray]:
    """Returns ``count -> height in [0, 1]`` of PyTorch CyclicLR, scale_fn applied."""
    _positive("step_size_up", step_size_up)
    if step_size_down is not None:
        _positive("step_size_down", step_size_down)
    if mode not in CYCLIC_MODES:
        raise ValueError(f"mode must be one of {', '.join(CYCLIC_MODES)}, got {mode!r}")
    _positive("gamma", gamma)
    _positive("steps_per_unit", steps_per_unit)
    up = float(step_size_up)
    total = up + float(step_size_down if step_size_down is not None else step_size_up)
    ratio = up / total

    def height(count: jnp.ndarray) -> jnp.ndarray:
        t = _time(count, steps_per_unit)
        cycle = jnp.floor(1 + t / total)
        x = 1.0 + t / total - cycle
        scale = jnp.where(x <= ratio, x / ratio, (x - 1) / (ratio - 1))
        if mode == "triangular":
            return scale
        if mode == "triangular2":
            return scale / 2.0 ** (cycle - 1)
        return scale * gamma ** t  # exp_range scales by iterations, not cycles

    return height


def cyclic(base_lr: float, max_lr: float, step_size_up: float = 2000,
           step_size_down: float | None = None, mode: str = "triangular",
           gamma: float = 1.0, steps_per_unit: int = 1) -> Schedule:
    """PyTorch CyclicLR's learning rate: ``base + (max - base) * height(t)``.

    ``height`` rises linearly from 0 to 1 over ``step_size_up`` units and falls
    back over ``step_size_down`` (default: the same); ``triangular2`` halves the
    amplitude each cycle, ``exp_range`` multiplies it by ``gamma ** t``.
    """
    _positive("base_lr", base_lr)
    _positive("max_lr", max_lr)
    if max_lr < base_lr:
        raise ValueError(f"max_lr ({max_lr}) must not be below base_lr ({base_lr})")
    height = _cyclic_shape(step_size_up, step_size_down, mode, gamma, steps_per_unit)
    return lambda count: base_lr + (max_lr - base_lr) * height(count)


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
    height = _cyclic_shape(step_size_up, step_size_down, mode, gamma, steps_per_unit)
    return lambda count: max_momentum - (max_momentum - base_momentum) * height(count)

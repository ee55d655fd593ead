"""Learning-rate and beta1 schedules: a registry of pure functions, chosen per member by index.

A schedule is a pure function ``fn(step, p)`` returning the learning rate, or the pair
``(learning_rate, beta1)`` when it moves Adam's beta1 too:

- ``step``: () float, scheduler steps taken (optimizer updates so far, or whole
  epochs when the schedule is stepped per epoch, as the seed notebook's
  ``scheduler.step()`` after each epoch);
- ``p``: a mapping from name to () float: ``"lr"`` (the base rate), ``"b1"``
  (Adam's base beta1) and the parameters the schedule was registered with.

Each member carries a :class:`ScheduleParams`: the index of its schedule in the
registry and the schedule's parameter values as a fixed-length vector. The
optimizer evaluates ``lax.switch(index, [every registered schedule], ...)``, so
members with different schedules, and different values, share one compiled
program (under ``vmap`` the switch computes every branch and selects: a few
scalars per step).

A new schedule is one function and one call::

    def warmup(step, p):
        return p["lr"] * jnp.minimum(1.0, (step + 1) / p["warmup"])

    schedules.register_schedule("warmup", warmup, params={"warmup": 100.0})
    OptimizerConfig(lr=1e-3, schedule=ScheduleConfig("warmup", params={"warmup": 50}))

Register before building configurations and programs: a compiled program holds the
branches registered when it was traced.

The built-in schedules are PyTorch's (their values are checked against torch's
schedulers in ``tests/test_parity.py``)::

    constant     lr
    step         lr * gamma ** floor(t / period)                   StepLR
    exponential  lr * gamma ** (t / period), floored if staircase  ExponentialLR
    cyclic       lr + amplitude * height(t),                       CyclicLR
                 beta1 = b1 - b1_amplitude * height(t)             (cycle_momentum)

``height`` is CyclicLR's triangle in [0, 1], times ``cycle_decay ** (cycle - 1)``
(triangular2: 1/2) and ``cycle_gamma ** t`` (exp_range). Their parameters come from
``optim.ScheduleConfig``'s PyTorch-named fields (``to_values`` below).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

Schedule = Callable[[jnp.ndarray], jnp.ndarray]
ScheduleFn = Callable[[jax.Array, Mapping[str, jax.Array]], Any]
CYCLIC_MODES = ("triangular", "triangular2", "exp_range")
MAX_PARAMS = 8  # length of every member's parameter vector (the most any schedule may take)
RESERVED = ("lr", "b1")  # given to every schedule; not registrable as its own parameters


@dataclasses.dataclass(frozen=True)
class ScheduleKind:
    """A registered schedule.

    Attributes:
      name: what ``ScheduleConfig.kind`` names.
      fn: ``fn(step, p) -> lr | (lr, beta1)`` (see the module docstring).
      params: its own parameters' names, in the order of the member's vector.
      defaults: a value for each of ``params``.
      to_values: optional ``(schedule_config, lr) -> {name: value}`` that reads the
        parameters from other fields of the configuration (the built-ins read
        PyTorch's names); ``"b1"`` in the result replaces the base beta1. Default:
        ``defaults`` updated with ``schedule_config.params``.
    """

    name: str
    fn: ScheduleFn
    params: tuple[str, ...]
    defaults: Mapping[str, float]
    to_values: Callable[[Any, float], dict[str, float]] | None = None


_REGISTRY: dict[str, ScheduleKind] = {}


def register_schedule(name: str, fn: ScheduleFn, params: Mapping[str, float] | None = None, *,
                      to_values: Callable[[Any, float], dict[str, float]] | None = None
                      ) -> ScheduleKind:
    """Adds schedule ``name``: ``fn(step, p)`` with parameters ``params`` (name -> default).

    Returns the registered kind. Raises ValueError for a name already taken, a
    parameter named ``lr`` or ``b1`` (every schedule gets those), or more than
    ``MAX_PARAMS`` parameters.
    """
    params = dict(params or {})
    if not isinstance(name, str) or not name:
        raise ValueError(f"a schedule's name must be a non-empty string, got {name!r}")
    if name in _REGISTRY:
        raise ValueError(f"a schedule named {name!r} is already registered")
    if clash := sorted(set(params) & set(RESERVED)):
        raise ValueError(f"schedule {name!r}: {clash} are given to every schedule; "
                         "choose other parameter names")
    if len(params) > MAX_PARAMS:
        raise ValueError(f"schedule {name!r} takes {len(params)} parameters; "
                         f"at most {MAX_PARAMS} fit a member's vector")
    kind = ScheduleKind(name, fn, tuple(params), {k: float(v) for k, v in params.items()},
                        to_values)
    _REGISTRY[name] = kind
    return kind


def names() -> tuple[str, ...]:
    """Registered schedules, in registration order (the order of their indices)."""
    return tuple(_REGISTRY)


def get(name: str) -> ScheduleKind:
    """The registered schedule ``name``; ValueError naming the choices otherwise."""
    if name not in _REGISTRY:
        raise ValueError(f"schedule kind must be one of {', '.join(_REGISTRY)}, got {name!r}")
    return _REGISTRY[name]


class ScheduleParams(NamedTuple):
    """One member's schedule; () arrays or numbers (a leading (M,) axis once stacked).

    kind: int index into :func:`names`; unit: int optimizer steps per scheduler
    step (1, or the steps per epoch); lr, b1: the base rate and beta1; values:
    MAX_PARAMS floats, the schedule's own parameters in registration order,
    zero-padded (a tuple of scalars, so every leaf of a member's hyperparameters is
    a scalar).
    """

    kind: jax.Array | int
    unit: jax.Array | int
    lr: jax.Array | float
    b1: jax.Array | float
    values: tuple


def member_params(kind: str, values: Mapping[str, float], lr: float, b1: float,
                  unit: int) -> ScheduleParams:
    """Schedule ``kind`` with parameter ``values`` (missing ones at their defaults), as host
    numbers: kind and unit int, lr and b1 float, values MAX_PARAMS floats."""
    entry = get(kind)
    if unknown := sorted(set(values) - set(entry.params) - {"b1"}):
        raise ValueError(f"schedule {kind!r} has no parameter {unknown}; "
                         f"its parameters: {', '.join(entry.params) or 'none'}")
    merged = {**entry.defaults, **values}
    vector = [float(merged[name]) for name in entry.params]
    vector += [0.0] * (MAX_PARAMS - len(vector))
    return ScheduleParams(names().index(kind), int(unit), float(lr),
                          float(merged.get("b1", b1)), tuple(vector))


def as_float(x: jnp.ndarray) -> jnp.ndarray:
    # The default float (float64 under jax_enable_x64): an int32 count divided by an
    # int would give float32 and cost the schedule ~1e-8 of precision there.
    return jnp.asarray(x, dtype=jnp.result_type(float))


def scheduler_time(count: jnp.ndarray, unit: jnp.ndarray | int) -> jnp.ndarray:
    """Scheduler steps taken after ``count`` updates: ``count // unit`` as a float."""
    return as_float(jnp.asarray(count) // unit)


def _branch(kind: ScheduleKind, t: jax.Array, lr: jax.Array, b1: jax.Array,
            values: tuple[jax.Array, ...]) -> tuple[jax.Array, jax.Array]:
    p = {"lr": lr, "b1": b1, **{name: values[i] for i, name in enumerate(kind.params)}}
    out = kind.fn(t, p)
    rate, beta = out if isinstance(out, tuple) else (out, b1)
    # Every branch of a switch must return the same types.
    return jnp.broadcast_to(as_float(rate), ()), jnp.broadcast_to(as_float(beta), ())


def evaluate(count: jnp.ndarray, p: ScheduleParams) -> tuple[jax.Array, jax.Array]:
    """(learning rate, beta1) for the update after ``count`` updates, each a () float."""
    t = scheduler_time(count, p.unit)
    branches = [functools.partial(_branch, kind) for kind in _REGISTRY.values()]
    values = tuple(as_float(v) for v in p.values)
    return jax.lax.switch(jnp.asarray(p.kind, jnp.int32), branches, t, as_float(p.lr),
                          as_float(p.b1), values)


def learning_rate(count: jnp.ndarray, p: ScheduleParams) -> jnp.ndarray:
    """The rate used for the update after ``count`` updates."""
    return evaluate(count, p)[0]


def beta1(count: jnp.ndarray, p: ScheduleParams) -> jnp.ndarray:
    """Adam's beta1 for that update."""
    return evaluate(count, p)[1]


# --- the built-in schedules ---------------------------------------------------------------

def positive(name: str, value: float) -> None:
    """Raises ValueError unless ``value`` is a finite number > 0."""
    if isinstance(value, bool) or not (isinstance(value, (int, float)) and math.isfinite(value)
                                       and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def check_cycle(step_size_up: float, step_size_down: float | None, mode: str,
                gamma: float) -> None:
    """Raises ValueError naming the first bad CyclicLR shape argument."""
    positive("step_size_up", step_size_up)
    if step_size_down is not None:
        positive("step_size_down", step_size_down)
    if mode not in CYCLIC_MODES:
        raise ValueError(f"mode must be one of {', '.join(CYCLIC_MODES)}, got {mode!r}")
    positive("gamma", gamma)


def check_momentum(base_momentum: float, max_momentum: float) -> None:
    """Raises ValueError unless 0 <= base_momentum <= max_momentum < 1."""
    for name, value in (("base_momentum", base_momentum), ("max_momentum", max_momentum)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    if max_momentum < base_momentum:
        raise ValueError(f"max_momentum ({max_momentum}) must not be below "
                         f"base_momentum ({base_momentum})")


def cycle_shape(step_size_up: float, step_size_down: float | None, mode: str,
                gamma: float) -> dict:
    """CyclicLR's mode as (cycle_up, cycle_down, cycle_decay, cycle_gamma)."""
    return {"cycle_up": float(step_size_up),
            "cycle_down": float(step_size_down if step_size_down is not None else step_size_up),
            "cycle_decay": 0.5 if mode == "triangular2" else 1.0,
            "cycle_gamma": gamma if mode == "exp_range" else 1.0}


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


def constant(step: jax.Array, p: Mapping[str, jax.Array]) -> jax.Array:
    """The base rate at every step."""
    return p["lr"]


def decay(step: jax.Array, p: Mapping[str, jax.Array]) -> jax.Array:
    """``lr * gamma ** (step / period)``, the exponent floored when ``staircase`` > 0."""
    exponent = step / p["period"]
    exponent = jnp.where(p["staircase"] > 0, jnp.floor(exponent), exponent)
    return p["lr"] * p["gamma"] ** exponent


def cyclic(step: jax.Array, p: Mapping[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
    """CyclicLR: ``lr + amplitude * height``; beta1 ``b1 - b1_amplitude * height``."""
    height = cycle_height(step, p["cycle_up"], p["cycle_down"], p["cycle_decay"],
                          p["cycle_gamma"])
    return p["lr"] + p["amplitude"] * height, p["b1"] - p["b1_amplitude"] * height


def _decay_values(sc: Any, lr: float) -> dict[str, float]:
    return {"gamma": sc.gamma, "period": sc.period, "staircase": float(sc.staircase)}


def _cyclic_values(sc: Any, lr: float) -> dict[str, float]:
    momentum = ({"b1": sc.max_momentum, "b1_amplitude": sc.max_momentum - sc.base_momentum}
                if sc.cycle_momentum else {})
    return {"amplitude": lr * sc.max_lr_factor - lr, **momentum,
            **cycle_shape(sc.step_size_up, sc.step_size_down, sc.mode, sc.gamma)}


register_schedule("constant", constant, to_values=lambda sc, lr: {})
register_schedule("step", decay, {"gamma": 0.1, "period": 1.0, "staircase": 1.0},
                  to_values=_decay_values)
register_schedule("exponential", decay, {"gamma": 0.1, "period": 1.0, "staircase": 1.0},
                  to_values=_decay_values)
register_schedule("cyclic", cyclic, {"amplitude": 0.0, "cycle_up": 1.0, "cycle_down": 1.0,
                                     "cycle_decay": 1.0, "cycle_gamma": 1.0,
                                     "b1_amplitude": 0.0}, to_values=_cyclic_values)

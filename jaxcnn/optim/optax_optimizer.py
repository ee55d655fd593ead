"""Any Optax optimizer for a configuration: :class:`Optimizer`.

The seed's studies train Adam with PyTorch's rules (``adam.py``). A configuration may
instead name any Optax optimizer, in one of two forms:

- ``Optimizer(optax.sgd(0.05, momentum=0.9))``: a ready ``GradientTransformation``
  (a plain one may also be given to ``Configuration`` / ``Variant`` directly). Its
  numbers are baked in, so each such optimizer is a program of its own;
- ``Optimizer(optax.sgd, learning_rate=0.05, momentum=0.9)``: a factory and its
  arguments. Float arguments are the member's *data*, injected per member through
  ``optax.inject_hyperparams``, so configurations that differ only in them (two learning
  rates, say) share one compiled program; every other argument (a schedule such as
  ``optax.warmup_cosine_decay_schedule(...)``, a bool, an int) is part of the program.
  A schedule is evaluated by ``inject_hyperparams`` at every step, so the learning rate
  actually applied is recorded (schedules.png) as for the built-in schedules.

Identity: two optimizers are equal when their stable text (:func:`stable_text`: the
factory's module and name and every argument, closures of schedules included) is equal;
that text, not an object's address, goes into a configuration's fingerprint, so resume
finds the same model again in a new process.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

MAX_DEPTH = 12  # how deep stable_text follows closures and containers


def is_transform(value: Any) -> bool:
    """Whether ``value`` is an Optax ``GradientTransformation`` (init and update)."""
    return isinstance(value, optax.GradientTransformation) or (
        callable(getattr(value, "init", None)) and callable(getattr(value, "update", None))
        and isinstance(value, tuple))


def stable_text(value: Any, _depth: int = 0, _path: frozenset = frozenset()) -> str:
    """A description of ``value`` that is the same in every process: numbers and strings
    by value, functions by module, qualified name, closure and defaults, arrays by their
    contents; never an address. Used for identity (fingerprints), not shown to people."""
    if _depth > MAX_DEPTH or id(value) in _path:
        return "..."
    deeper = functools.partial(_stable_children, depth=_depth + 1, path=_path | {id(value)})
    if value is None or isinstance(value, (bool, int, str)):
        return repr(value)
    if isinstance(value, float):
        return repr(float(value))
    if isinstance(value, (np.ndarray, np.generic, jax.Array)):
        array = np.asarray(value)
        if array.size <= 16:
            return f"array({array.tolist()}, {array.dtype})"
        digest = hashlib.sha256(array.tobytes()).hexdigest()[:16]
        return f"array({array.shape}, {array.dtype}, {digest})"
    if isinstance(value, functools.partial):
        return f"partial({deeper([value.func, value.args, value.keywords])})"
    if isinstance(value, Mapping):
        return "{" + deeper(sorted(value.items(), key=lambda kv: str(kv[0]))) + "}"
    if isinstance(value, (tuple, list)):
        return f"{type(value).__name__}({deeper(list(value))})"
    code = getattr(value, "__code__", None)
    if code is not None:  # a function: what it is and what it closes over
        cells = []
        for cell in value.__closure__ or ():
            try:
                cells.append(cell.cell_contents)
            except ValueError:  # an empty cell
                cells.append(None)
        name = f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', '?')}"
        return f"{name}[{deeper([cells, value.__defaults__, value.__kwdefaults__])}]"
    kind = type(value)
    fields = getattr(value, "__dict__", None)
    return f"{kind.__module__}.{kind.__qualname__}" + (
        "{" + deeper(sorted(fields.items())) + "}" if fields else "")


def _stable_children(values: list, depth: int, path: frozenset) -> str:
    return ", ".join(stable_text(v, depth, path) for v in values)


def _argument_text(value: Any) -> str:
    """An argument as people read it: numbers by value, functions by name."""
    if isinstance(value, float):
        return f"{value:g}"
    name = getattr(value, "__qualname__", None) or getattr(getattr(value, "func", None),
                                                            "__qualname__", None)
    return f"<{name}>" if callable(value) and name else repr(value)


class Optimizer:
    """An Optax optimizer for a configuration (see the module docstring).

    Args:
      optimizer: an ``optax.GradientTransformation``, or a factory returning one
        (``optax.sgd``, ``optax.adamw``, ``optax.lion``, one's own function).
      **arguments: the factory's arguments (none for a transformation). Floats are per
        member data; the rest are fixed in the program.
    """

    def __init__(self, optimizer: Any, /, **arguments: Any) -> None:
        if is_transform(optimizer):
            if arguments:
                raise ValueError("an optax GradientTransformation takes no arguments; give "
                                 "its factory instead, e.g. Optimizer(optax.sgd, "
                                 "learning_rate=0.05)")
            self.factory, self.transform_value = None, optimizer
        elif callable(optimizer):
            self.factory, self.transform_value = optimizer, None
        else:
            raise ValueError(f"an optimizer must be an optax GradientTransformation or a "
                             f"function returning one, got {type(optimizer).__name__}")
        bad = [k for k, v in arguments.items()
               if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            raise ValueError(f"optimizer argument {bad[0]} must be finite, got "
                             f"{arguments[bad[0]]!r}")
        self.arguments = dict(arguments)  # in the caller's order, for describe()
        self.values = {k: float(v) for k, v in arguments.items()
                       if isinstance(v, float) and not isinstance(v, bool)}
        self.fixed = {k: v for k, v in arguments.items() if k not in self.values}
        self.structure = stable_text([self.factory or self.transform_value,
                                      sorted(self.values), sorted(self.fixed.items())])
        self.identity = stable_text([self.structure, sorted(self.values.items())])
        if self.factory is not None:
            try:  # a wrong argument name is one line now, not a traceback in training
                optax.inject_hyperparams(self.factory)(**arguments)
            except TypeError as err:
                raise ValueError(f"{self.name}: {err}") from None

    @property
    def name(self) -> str:
        if self.factory is None:
            return "own optax transformation"
        module = getattr(self.factory, "__module__", "") or ""
        qualname = getattr(self.factory, "__qualname__", type(self.factory).__name__)
        return f"optax.{qualname}" if module.startswith("optax") else qualname

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Optimizer) and other.identity == self.identity

    def __hash__(self) -> int:
        return hash(self.identity)

    def __repr__(self) -> str:
        return self.describe()

    def describe(self) -> str:
        """E.g. ``optax.sgd(learning_rate=0.05, momentum=0.9)``."""
        if self.factory is None:
            return self.name
        return f"{self.name}(" + ", ".join(f"{k}={_argument_text(v)}"
                                           for k, v in self.arguments.items()) + ")"

    def record(self) -> dict:
        """What results.json and fingerprints keep: stable across processes."""
        return {"optax": self.describe(), "values": dict(self.values),
                "structure": hashlib.sha256(self.structure.encode()).hexdigest()[:16]}

    def member_values(self) -> dict[str, np.float64]:
        """The per-member data (the float arguments), as host numbers."""
        return {k: np.float64(v) for k, v in sorted(self.values.items())}

    def program(self) -> OptimizerProgram:
        """What fixes the compiled program: the factory and the fixed arguments."""
        return OptimizerProgram(self.structure, self.transform)

    def transform(self, values: Mapping[str, Any]) -> optax.GradientTransformation:
        """The transformation with one member's ``values`` (tracers inside the program)."""
        if self.factory is None:
            return self.transform_value
        static = tuple(k for k, v in self.fixed.items() if not callable(v))
        return optax.inject_hyperparams(self.factory, static_args=static)(
            **self.fixed, **dict(values))


class OptimizerProgram:
    """The part of an :class:`Optimizer` that fixes a compiled program; equal structures
    share one. ``build(values) -> GradientTransformation``."""

    def __init__(self, structure: str, build: Callable[[Mapping[str, Any]],
                                                       optax.GradientTransformation]):
        self.structure, self.build = structure, build

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OptimizerProgram) and other.structure == self.structure

    def __hash__(self) -> int:
        return hash(self.structure)


def applied_rates(opt_state: Any, dtype: Any) -> tuple[jax.Array, jax.Array]:
    """(learning rate, beta1 or momentum) the last update applied, read from an
    ``inject_hyperparams`` state; NaN where the state does not hold them (a ready
    transformation keeps its numbers to itself)."""
    found = getattr(opt_state, "hyperparams", None) or {}
    nan = jnp.full((), jnp.nan, dtype)

    def get(*names: str) -> jax.Array:
        for name in names:
            value = found.get(name)
            if value is not None and jnp.ndim(value) == 0:
                return jnp.asarray(value, dtype)
        return nan

    return get("learning_rate"), get("b1", "momentum")

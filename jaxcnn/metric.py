"""What a study's verdicts compare: :class:`Metric`.

Test accuracy by default; ``"test_loss"`` (lower is better); or one's own function of
the model's logits and the labels, evaluated on every test image inside the compiled
evaluation program::

    def top2(logits, labels):                 # (N, C) float, (N,) int -> (N,) per image
        return (jax.lax.top_k(logits, 2)[1] == labels[:, None]).any(-1) * 100.0

    jc.Study("mine", ..., metric=jc.Metric("top2_accuracy", top2))

A seed's value is the mean over the test images (float64 on the host), stored in its
record as ``test_metric``. Verdicts say "better" for the direction ``higher_is_better``
names, and "equivalent" within +-``margin`` of the metric's own units; the numbers shown
stay the metric's own (configuration minus reference).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxcnn.optim.optax_optimizer import stable_text

# name -> (higher is better, unit, default margin: None is the run's --margin, in points)
BUILT_IN = {"test_accuracy": (True, "points", None), "test_loss": (False, "nats", 0.02)}


@dataclasses.dataclass(frozen=True)
class Metric:
    """A per-seed score a study's verdicts compare.

    Attributes:
      name: "test_accuracy", "test_loss", or a name of one's own (then ``per_example``).
      per_example: ``(logits (N, C), labels (N,)) -> (N,)`` values, traceable by JAX.
      higher_is_better: which direction "better" means (built-ins: their own).
      unit: how the report labels differences (built-ins: points, nats).
      margin: "equivalent" means a difference within +-margin in the metric's units
        (test loss: 0.02 nats unless given; None: the run's ``--margin``, which is in
        accuracy points, so only for ``unit="points"``).
    """

    name: str = "test_accuracy"
    per_example: Callable | None = dataclasses.field(default=None, compare=False)
    higher_is_better: bool = True
    unit: str = ""
    margin: float | None = None
    identity: str = dataclasses.field(default="", init=False, repr=False)

    def __post_init__(self) -> None:
        if self.name in BUILT_IN:
            if self.per_example is not None:
                raise ValueError(f"metric {self.name!r} is built in: give one's own function "
                                 "another name, e.g. Metric('top2_accuracy', top2)")
            better, unit, margin = BUILT_IN[self.name]
            object.__setattr__(self, "higher_is_better", better)
            object.__setattr__(self, "unit", self.unit or unit)
            object.__setattr__(self, "margin", self.margin or margin)
        elif not callable(self.per_example):
            raise ValueError(f"metric {self.name!r} is not built in ({', '.join(BUILT_IN)}): "
                             "give its per_example(logits, labels) function")
        if self.margin is not None and not self.margin > 0:
            raise ValueError(f"metric {self.name!r}: margin {self.margin} must be positive")
        if self.margin is None and self.unit != "points":
            raise ValueError(f"metric {self.name!r}: give margin= in its own units (equivalent "
                             "means a difference within +-margin); the run's --margin is in "
                             "accuracy points, so it applies only to unit='points'")
        if not self.name.isidentifier():
            raise ValueError(f"metric name {self.name!r}: use letters, digits and _ only")
        text = stable_text([self.name, self.per_example, self.higher_is_better])
        object.__setattr__(self, "identity", hashlib.sha256(text.encode()).hexdigest()[:16])

    @property
    def key(self) -> str:
        """The seed record's field holding it."""
        return record_key(self.name)

    def record(self) -> dict:
        """results.json's ``metadata.metric``: what the statistics and report read."""
        return {"name": self.name, "key": self.key, "higher_is_better": self.higher_is_better,
                "unit": self.unit, "margin": self.margin}


def record_key(name: str) -> str:
    """The seed record's field holding metric ``name``: its own name for a built-in one,
    ``test_metric`` for one of one's own."""
    return name if name in BUILT_IN else "test_metric"


def check_per_example(metric: Metric, num_classes: int) -> None:
    """ValueError, one line, when a metric of one's own does not give one value per image
    for (logits (N, num_classes), labels (N,))."""
    if metric.per_example is None:
        return
    logits = jax.ShapeDtypeStruct((8, num_classes), jnp.float32)
    labels = jax.ShapeDtypeStruct((8,), jnp.int32)
    try:
        out = jax.eval_shape(metric.per_example, logits, labels)
    except Exception as err:  # the user's own function: any error, in one line
        raise ValueError(f"metric {metric.name!r} fails on logits (8, {num_classes}) and labels "
                         f"(8,): {type(err).__name__}: {err}") from None
    if getattr(out, "shape", None) != (8,):
        raise ValueError(f"metric {metric.name!r} returns shape {getattr(out, 'shape', out)} for "
                         "8 images; it must return one value per image, shape (8,)")


ACCURACY = Metric()


def as_metric(value: str | Metric | Callable | None) -> Metric:
    """A study's ``metric=`` argument as a Metric: a built-in name, a Metric, or a
    function (named by its ``__name__``, read as points, higher is better: the run's
    ``--margin`` applies; a ``Metric`` says otherwise)."""
    if value is None:
        return ACCURACY
    if isinstance(value, Metric):
        return value
    if isinstance(value, str):
        return Metric(value)
    if callable(value):
        return Metric(getattr(value, "__name__", "metric"), value, unit="points")
    raise ValueError(f"metric must be 'test_accuracy', 'test_loss', a jaxcnn Metric or a "
                     f"function of (logits, labels), got {type(value).__name__}")

"""Regularizers: a registry of optax links, penalty terms and batch transforms.

Each regularizer has a strength, carried per member as data (a () float), so
members with and without it, or with different strengths, share one compiled
program. A strength of 0 must change nothing, bit for bit: every member runs every
registered regularizer, and those it does not use run at 0.

Three shapes, one registration call each (:func:`register_regularizer`):

- ``link``: ``strength -> optax.GradientTransformation``, placed before Adam
  (its output goes through the moments, as PyTorch Adam's coupled L2) or after
  it (decoupled, as AdamW's decay). Built-ins: ``coupled_decay`` and
  ``decoupled_decay`` (``optax.add_decayed_weights``; set through
  ``OptimizerConfig(weight_decay=..., decay=...)``).
- ``term``: ``params -> () float``, a penalty whose gradient, times the strength,
  is added to the loss's gradient before Adam (the training loss reported stays
  the data loss, as with PyTorch's ``weight_decay``).
- ``batch``: ``(key, images, strength) -> images``, applied to each training
  batch of (B, H, W, C) uint8 images before normalisation; shapes and dtype kept.
  Built-in: ``augment`` (random crop and flip, ``augment.py``).

A new regularizer, e.g. an L1 penalty::

    regularizers.register_regularizer("l1", term=lambda params: sum(
        jnp.abs(w).sum() for w in jax.tree.leaves(params)))
    Configuration(regularizers={"l1": 1e-5})

Register before building configurations and programs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import optax

from jaxcnn.data import augment

KINDS = ("link", "term", "batch")
# Set through OptimizerConfig(weight_decay, decay), not Configuration.regularizers.
OPTIMIZER_DECAYS = ("coupled_decay", "decoupled_decay")
AUGMENT_STREAM = 0x61756720  # fold_in tag of the augmentation key ("aug "): no epoch number


@dataclasses.dataclass(frozen=True)
class Regularizer:
    """A registered regularizer (see the module docstring for ``kind`` and ``fn``).

    before_adam: links only: True puts the link before Adam's moments. max_strength:
    the largest strength allowed (1 for probabilities).
    """

    name: str
    kind: str
    fn: Callable
    before_adam: bool = True
    max_strength: float = math.inf


_REGISTRY: dict[str, Regularizer] = {}


def register_regularizer(name: str, *, link: Callable | None = None, term: Callable | None = None,
                         batch: Callable | None = None, before_adam: bool = True,
                         max_strength: float = math.inf) -> Regularizer:
    """Adds regularizer ``name``: exactly one of ``link``, ``term`` or ``batch``.

    Args:
      name: what ``Configuration(regularizers={name: strength})`` names.
      link: ``strength -> optax.GradientTransformation``; ``before_adam`` says where.
      term: ``params -> () float``, a penalty added (times the strength) before Adam.
      batch: ``(key, images (B, H, W, C) uint8, strength) -> images``, same shape and dtype.
      max_strength: strengths above it are rejected (e.g. 1 for a probability).

    Raises ValueError for a taken name or not exactly one of link, term, batch.
    """
    given = {kind: fn for kind, fn in zip(KINDS, (link, term, batch)) if fn is not None}
    if len(given) != 1:
        raise ValueError(f"regularizer {name!r}: give exactly one of link=, term=, batch=")
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"a regularizer's name must be a Python identifier, got {name!r}")
    if name in _REGISTRY:
        raise ValueError(f"a regularizer named {name!r} is already registered")
    (kind, fn), = given.items()
    if kind == "term":
        kind, fn, before_adam = "link", _penalty_link(fn), True
    entry = Regularizer(name, kind, fn, before_adam, max_strength)
    _REGISTRY[name] = entry
    return entry


def names(kind: str | None = None) -> tuple[str, ...]:
    """Registered regularizers (of ``kind``: "link" or "batch"), in registration order."""
    return tuple(n for n, r in _REGISTRY.items() if kind is None or r.kind == kind)


def get(name: str) -> Regularizer:
    """The registered regularizer ``name`` (KeyError if none)."""
    return _REGISTRY[name]


def check_strengths(strengths: Mapping[str, float]) -> None:
    """Raises ValueError for an unknown name or a strength out of range."""
    for name, value in strengths.items():
        if name in OPTIMIZER_DECAYS:
            raise ValueError(f"{name} is set by OptimizerConfig(weight_decay=..., decay=...)")
        if name not in _REGISTRY:
            raise ValueError(f"unknown regularizer {name!r}; registered: "
                             f"{', '.join(n for n in _REGISTRY if n not in OPTIMIZER_DECAYS)}")
        top = _REGISTRY[name].max_strength
        if isinstance(value, bool) or not (isinstance(value, (int, float))
                                           and 0 <= value <= top):
            raise ValueError(f"regularizer {name} strength must be a number in [0, {top:g}], "
                             f"got {value!r}")


def member_strengths(strengths: Mapping[str, float], kind: str) -> dict[str, float]:
    """Every registered regularizer of ``kind`` with its strength (0 where not given)."""
    return {name: float(strengths.get(name, 0.0)) for name in names(kind)}


def links(strengths: Mapping[str, Any], before_adam: bool) -> list[optax.GradientTransformation]:
    """The link regularizers on one side of Adam, in registration order, at ``strengths``."""
    return [r.fn(strengths[r.name]) for r in _REGISTRY.values()
            if r.kind == "link" and r.before_adam == before_adam]


def _penalty_link(term: Callable[[Any], jax.Array]
                  ) -> Callable[[jax.Array], optax.GradientTransformation]:
    def link(strength: jax.Array) -> optax.GradientTransformation:
        def update(updates, state, params=None):
            penalty = jax.grad(term)(params)
            return jax.tree.map(lambda g, d: g + strength * d, updates, penalty), state

        return optax.GradientTransformation(lambda params: optax.EmptyState(), update)

    return link


def transform_batch(data_key: jax.Array, step: jax.Array, images: jax.Array,
                    strengths: Mapping[str, jax.Array]) -> jax.Array:
    """Applies every batch regularizer, at its strength, to one member's training batch.

    Args:
      data_key: the member's data key; the augmentation stream is derived from it
        under its own tag, so the example order and dropout draws stay as they are.
      step: () int, the member's optimizer updates so far (a fresh draw each step).
      images: (B, H, W, C) uint8.
      strengths: {name: () float} for every batch regularizer (``Hyperparams.transforms``).

    Returns (B, H, W, C) uint8: ``images`` itself when every strength is 0.
    """
    key = jax.random.fold_in(jax.random.fold_in(data_key, AUGMENT_STREAM), step)
    for index, name in enumerate(names("batch")):
        # A member at strength 0 skips the transform's work (a real branch where members
        # are not vmapped, e.g. CPU threads; under vmap both sides run, and the select
        # keeps ``images``). Either way its batch is ``images`` bit for bit.
        images = jax.lax.cond(strengths[name] > 0, _REGISTRY[name].fn,
                              lambda _key, batch, _strength: batch,
                              jax.random.fold_in(key, index), images, strengths[name])
    return images


register_regularizer("coupled_decay", link=optax.add_decayed_weights, before_adam=True)
register_regularizer("decoupled_decay", link=optax.add_decayed_weights, before_adam=False)
register_regularizer("augment", batch=augment.crop_and_flip, max_strength=1.0)

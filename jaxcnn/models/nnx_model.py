"""A user's Flax NNX model as the same pure functions a linen model becomes.

An NNX module owns its variables and is built with ``rngs: nnx.Rngs``; the engine wants
pure functions over pytrees (``modelfns.ModelFns``). This module is the bridge, written
once: ``nnx.split`` the module into its graph definition (static: the layers and their
settings) and three states, and ``nnx.merge`` them back inside each pure call.

- ``nnx.Param`` variables are the member's ``params``;
- every other ``nnx.Variable`` (``nnx.BatchNorm``'s ``mean`` and ``var``, a counter of
  one's own) is the member's ``state``: updated in training, used in evaluation, saved
  and restored with the parameters;
- the module's random streams (``nnx.RngState``: what ``nnx.Dropout(..., rngs=rngs)``
  keeps) are never state: every training step refills their keys from the step's dropout
  key (``fold_in(key, i)`` for the i-th stream), so each member draws its own masks and a
  resumed run draws the same ones.

Both states are plain nested dicts (string keys, ``"0"`` for the first layer of an
``nnx.List``), as a linen model's variables are; nothing downstream knows which module
system a model came from.

A member's module is built with ``nnx.Rngs(init key)``: layers drawing from
``rngs.params()`` (or any stream) draw from the member's initialization key. It is put in
training or evaluation mode explicitly, whatever its defaults: ``module.train()`` /
``module.eval()`` (``deterministic`` and ``use_running_average`` of every layer), and the
``train`` / ``training`` / ``is_training`` / ``deterministic`` argument of ``__call__``
where it has one (``modelfns.mode_flag``). A ``__call__`` taking ``rngs`` gets
``nnx.Rngs(dropout key)``.

Three ways to give the model (``registry.register_model`` / ``Study(model=...)``):

- ``lambda data, rngs: Net(data.num_classes, rngs=rngs)``: a function of the data
  (:class:`~jaxcnn.models.model.Network`) and the member's ``nnx.Rngs``;
- ``Net``, an ``nnx.Module`` class: built as ``Net(rngs=rngs, num_classes=...)`` with the
  constructor's data arguments filled in by name (:data:`DATA_ARGUMENTS`);
- ``functools.partial(Net, hidden=64)``: the class with some arguments fixed.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxcnn.models.model import MEMBER_ATTRIBUTE

# Constructor arguments an NNX model class gets from the data, by name.
DATA_ARGUMENTS: dict[str, Callable[[Any], Any]] = {
    "num_classes": lambda network: network.num_classes,
    "image_shape": lambda network: tuple(network.image_shape),
    "in_channels": lambda network: network.image_shape[-1],
}

Builder = Callable[[Any, nnx.Rngs], nnx.Module]  # (network, rngs) -> the member's module


def nnx_class(factory: Any) -> type | None:
    """The ``nnx.Module`` class ``factory`` is (or a functools.partial of), else None."""
    target = factory.func if isinstance(factory, functools.partial) else factory
    return target if inspect.isclass(target) and issubclass(target, nnx.Module) else None


def builder(factory: Callable[..., Any], name: str) -> Builder | None:
    """``(network, rngs) -> nnx.Module`` for an NNX model's factory (a function taking
    ``rngs`` or two arguments, a class, or a partial of one); None for a linen factory
    (a function of the data alone)."""
    cls = nnx_class(factory)
    if cls is not None:
        return functools.partial(_construct, factory, cls, name)
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin or C callable: taken as a linen factory
        return None
    if "rngs" in params:
        return lambda network, rngs: factory(network, rngs=rngs)
    positional = [p for p in params.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                  and p.default is p.empty]
    if len(positional) >= 2:
        return lambda network, rngs: factory(network, rngs)
    return None


def _construct(factory: Callable[..., nnx.Module], cls: type, name: str, network: Any,
               rngs: nnx.Rngs) -> nnx.Module:
    """``factory(rngs=rngs, **data arguments)`` for an NNX class (or a partial of one)."""
    params = inspect.signature(cls.__init__).parameters
    bound = set(factory.keywords) if isinstance(factory, functools.partial) else set()
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    if "rngs" not in params and not takes_any:
        raise ValueError(f"model {name!r}: {cls.__name__}.__init__ takes no rngs, so every "
                         f"member would start from the same weights; give it "
                         f"'*, rngs: nnx.Rngs' and pass rngs to each layer")
    given = {arg: DATA_ARGUMENTS[arg](network) for arg in params
             if arg in DATA_ARGUMENTS and arg not in bound}
    skipped = 1 + (len(factory.args) if isinstance(factory, functools.partial) else 0)
    missing = [arg for arg, p in list(params.items())[skipped:]
               if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
               and arg not in given and arg not in bound and arg != "rngs"]
    if missing:
        raise ValueError(f"model {name!r}: {cls.__name__} needs {missing[0]!r}, which jaxcnn "
                         f"cannot give (it fills in {', '.join(DATA_ARGUMENTS)} by name); "
                         f"give functools.partial({cls.__name__}, {missing[0]}=...) or "
                         f"lambda data, rngs: {cls.__name__}(..., rngs=rngs)")
    return factory(rngs=rngs, **given)


def _pure(state: nnx.State) -> dict:
    """A State as nested dicts with string keys (an nnx.List's layers are "0", "1", ...)."""

    def visit(node: Any) -> Any:
        if isinstance(node, Mapping):
            return {str(k): visit(v) for k, v in node.items()}
        return node

    return visit(nnx.to_pure_dict(state))


def _paths(state: nnx.State) -> set[tuple[str, ...]]:
    return {tuple(map(str, path)) for path, _ in nnx.to_flat_state(state)}


def _fill_streams(template: nnx.State, key: jax.Array) -> dict:
    """Values for the module's random streams: the i-th key leaf ``fold_in(key, i)``
    (split to its shape), every count 0."""
    counter = iter(range(1 << 30))

    def fill(leaf: Any) -> jax.Array:
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            stream = jax.random.fold_in(key, next(counter))
            if leaf.shape:
                return jax.random.split(stream, math.prod(leaf.shape)).reshape(leaf.shape)
            return stream
        return jnp.zeros(leaf.shape, leaf.dtype)

    return jax.tree.map(fill, _pure(template))


class NnxModel:
    """An NNX model of one network as pure functions (see the module docstring).

    build: ``rngs -> nnx.Module`` for the network; name: the registered model's name
    (for messages); mode_flag: ``module -> (train -> keyword arguments of __call__)``
    (``modelfns.mode_flag``, shared with linen).
    """

    def __init__(self, build: Callable[[nnx.Rngs], nnx.Module], name: str,
                 mode_flag: Callable[[Any], Callable[[bool], dict]]) -> None:
        self.build, self.name = build, name
        self.abstract = nnx.eval_shape(lambda: build(nnx.Rngs(jax.random.key(0))))
        if not isinstance(self.abstract, nnx.Module):
            raise ValueError(f"model {name!r}: its factory returned "
                             f"{type(self.abstract).__name__}, not an nnx.Module")
        graphdef, params, _, state = self._split(self.abstract)
        self.graphdef = graphdef
        self.param_paths, self.state_paths = _paths(params), _paths(state)
        self.flags = mode_flag(self.abstract)
        self.takes_rngs = "rngs" in inspect.signature(type(self.abstract).__call__).parameters

    @staticmethod
    def _split(module: nnx.Module) -> tuple[Any, nnx.State, nnx.State, nnx.State]:
        """(graph definition, parameters, random streams, every other variable)."""
        return nnx.split(module, nnx.Param, nnx.RngState, ...)

    def init(self, key: jax.Array) -> tuple[dict, dict]:
        """(params, state) of a member's module built with ``nnx.Rngs(key)``."""
        _, params, _, state = self._split(self.build(nnx.Rngs(key)))
        return _pure(params), _pure(state)

    def module(self, params: Any, state: Any, key: jax.Array, train: bool) -> nnx.Module:
        """The module holding ``params`` and ``state``, its streams keyed from ``key``, in
        training or evaluation mode."""
        _, p, streams, s = self._split(self.abstract)  # fresh States of the right structure
        nnx.replace_by_pure_dict(p, params)
        nnx.replace_by_pure_dict(s, state)
        nnx.replace_by_pure_dict(streams, _fill_streams(streams, key))
        module = nnx.merge(self.graphdef, p, streams, s)
        if train:
            module.train()
        else:
            module.eval()
        return module

    def apply(self, params: Any, state: Any, x: jax.Array, values: Any = None,
              key: jax.Array | None = None) -> tuple[jax.Array, Any]:
        """(N, H, W, C) -> ((N, classes) logits, the new state); training mode with a key,
        the member's ``values`` held by the module for the call (``model.member_value``;
        a plain attribute, set and removed around the call, never part of its state)."""
        train = key is not None
        stream_key = key if train else jax.random.key(0)
        module = self.module(params, state, stream_key, train)
        kwargs = dict(self.flags(train))
        if self.takes_rngs:
            kwargs["rngs"] = nnx.Rngs(dropout=jax.random.fold_in(stream_key, 1 << 20))
        if train and values:
            object.__setattr__(module, MEMBER_ATTRIBUTE, dict(values))
        try:
            logits = module(x, **kwargs)
        finally:
            if MEMBER_ATTRIBUTE in vars(module):
                object.__delattr__(module, MEMBER_ATTRIBUTE)
        _, new_params, _, new_state = self._split(module)
        created = (_paths(new_params) - self.param_paths) | (_paths(new_state) - self.state_paths)
        if created:
            where = "/".join(sorted(created)[0])
            raise ValueError(f"model {self.name!r} creates variables while it runs ({where}): "
                             "create every layer and variable in __init__")
        return logits, (_pure(new_state) if train else state)

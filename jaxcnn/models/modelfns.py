"""One representation for every model: pure functions over (params, state) pytrees.

The engine never asks what a model is. :func:`model_fns` turns a :class:`Network` into
:class:`ModelFns`, two pure functions of one member:

- ``init(key, scheme) -> (params, state)``: the member's initial parameters (the
  ``"params"`` collection) and its other variables (``state``: every other collection,
  e.g. ``{"batch_stats": ...}`` of ``nn.BatchNorm``; ``{}`` for a model with none);
- ``apply(params, state, x, values, key) -> (logits, state)``: (N, H, W, C) normalised
  floats to (N, classes) logits. With ``key`` the model runs in training mode (dropout
  from ``key``, its state updated, the member's ``values`` readable with
  ``model.member_value``); with None it evaluates (state returned unchanged).

Three kinds of model become these functions:

- the seed CNN (``network.model == "cnn"``, :class:`jaxcnn.models.model.CNN`): its dropout rates
  are the member's values, so every configuration shares one program;
- a user's Flax NNX module (``nnx_model.py``: split into the same two pytrees; nothing
  below this module knows which module system a model came from);
- a user's plain Flax linen module, registered with ``registry.register_model(name,
  factory)`` where ``factory(network) -> nn.Module``. It is called as its author wrote it:
  ``module(x, train=...)`` when ``__call__`` takes ``train`` (passed explicitly, True in
  training and False in evaluation, whatever its default; ``training`` and
  ``is_training`` likewise, ``deterministic`` inverted: :func:`mode_flag`), else
  ``module(x)``; its
  ``nn.Dropout`` draws from the ``"dropout"`` stream (the member's key); every mutable
  collection (``nn.BatchNorm``'s ``batch_stats``, or any a module keeps) is the member's
  state, updated in training and used in evaluation. Its own initializers make its
  parameters; a configuration's ``init`` scheme other than ``"model"`` re-draws every
  ``kernel`` leaf with the scheme's kernel initializer and the ``bias`` beside it with the
  scheme's bias initializer (of the kernel's fan-in); every other parameter (BatchNorm's
  ``scale``, an embedding) keeps the module's own initialization.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.models import initializers, nnx_model, registry
from jaxcnn.models.initializers import OWN, SchemeRef
from jaxcnn.models.model import CNN, MEMBER, Network, init_params
from jaxcnn.models.nnx_model import NnxModel


class ModelFns(NamedTuple):
    """A model as the engine sees it (see the module docstring).

    stateful: whether ``init`` gives a non-empty state (a batch whose padding must not
    reach the state is then trained on its real examples only: ``train.make_train_epoch``).
    """

    init: Callable[[jax.Array, SchemeRef], tuple[Any, Any]]
    apply: Callable[..., tuple[jax.Array, Any]]
    stateful: bool


def member(values: Mapping[str, Any] | None) -> dict:
    """The ``"member"`` collection of a member's values ({} without any)."""
    return {MEMBER: dict(values)} if values else {}


def seed_cnn_fns(network: Network, conv: str = "xla") -> ModelFns:
    """The seed CNN: dropout rates as data, no state."""
    model = CNN(network, conv=conv)

    def init(key: jax.Array, scheme: SchemeRef) -> tuple[Any, Any]:
        return init_params(key, network, scheme), {}

    def apply(params: Any, state: Any, x: jax.Array, values: dict | None = None,
              key: jax.Array | None = None) -> tuple[jax.Array, Any]:
        return model.apply({"params": params, **member(values)}, x, key), state

    return ModelFns(init, apply, stateful=False)


# Names model code bases give the mode flag: True while training, and one that is False
# while training (flax's own nn.Dropout convention).
TRAIN_FLAGS = ("train", "training", "is_training")
INVERSE_FLAGS = ("deterministic", "use_running_average")


def mode_flag(module: nn.Module) -> Callable[[bool], dict]:
    """``train -> the keyword arguments`` that put ``module`` in that mode: its
    ``train`` / ``training`` / ``is_training`` parameter, or the inverse of its
    ``deterministic`` one; nothing for a module whose ``__call__`` takes ``x`` alone."""
    params = inspect.signature(type(module).__call__).parameters
    for name in TRAIN_FLAGS:
        if name in params:
            return lambda train, name=name: {name: train}
    for name in INVERSE_FLAGS:
        if name in params:
            return lambda train, name=name: {name: not train}
    return lambda train: {}


def redraw(params: Any, key: jax.Array, scheme: SchemeRef) -> Any:
    """``params`` with every ``kernel`` leaf drawn anew by ``scheme``'s kernel initializer
    and the ``bias`` beside it (where there is one) by its bias initializer of the kernel's
    fan-in (all input axes of the kernel: kh * kw * Cin for a convolution). Each layer
    draws from its own key, folded from ``key`` by the layer's place in the tree."""
    kernel_init = initializers.kernel_init(scheme)
    bias_init = initializers.bias_init(scheme)
    counter = iter(range(1 << 30))

    def visit(node: Any) -> Any:
        if not isinstance(node, Mapping):
            return node
        out = {name: visit(child) for name, child in node.items()}
        kernel = node.get("kernel")
        if hasattr(kernel, "shape"):
            layer_key = jax.random.fold_in(key, next(counter))
            k_kernel, k_bias = jax.random.split(layer_key)
            out["kernel"] = kernel_init(k_kernel, kernel.shape, kernel.dtype)
            bias = node.get("bias")
            if bias is not None and hasattr(bias, "shape"):
                fan_in = math.prod(kernel.shape[:-1])
                out["bias"] = bias_init(fan_in)(k_bias, bias.shape, bias.dtype)
        return out

    return visit(params)


def with_scheme(params: Any, key: jax.Array, scheme: SchemeRef) -> Any:
    """A user model's own ``params``, or (scheme other than ``"model"``) its kernels
    re-drawn by the scheme (:func:`redraw`). ``scheme`` is a name, or a traced index into
    ``initializers.INIT_CHOICES`` when it is a member's data."""
    if isinstance(scheme, str):
        return params if scheme == OWN else redraw(params, key, scheme)
    drawn = redraw(params, key, jnp.minimum(scheme, len(initializers.INIT_NAMES) - 1))
    own = jnp.asarray(scheme) == initializers.INIT_CHOICES.index(OWN)
    return jax.tree.map(lambda a, b: jnp.where(own, a, b), params, drawn)


def linen_fns(module: nn.Module, network: Network) -> ModelFns:
    """A plain linen module (see the module docstring) as :class:`ModelFns`."""
    flags = mode_flag(module)

    sample = jnp.zeros((1, *network.image_shape), jnp.float32)
    shapes = jax.eval_shape(lambda: module.init(
        {"params": jax.random.key(0), "dropout": jax.random.key(1)}, sample, **flags(False)))
    collections = tuple(name for name in shapes if name != "params")

    def init(key: jax.Array, scheme: SchemeRef) -> tuple[Any, Any]:
        k_params, k_dropout, k_redraw = jax.random.split(key, 3)
        variables = module.init({"params": k_params, "dropout": k_dropout}, sample,
                                **flags(False))
        state = {name: variables[name] for name in collections}
        return with_scheme(variables["params"], k_redraw, scheme), state

    def apply(params: Any, state: Any, x: jax.Array, values: dict | None = None,
              key: jax.Array | None = None) -> tuple[jax.Array, Any]:
        variables = {"params": params, **state}
        if key is None:  # evaluation: the running statistics, no dropout, default values
            return module.apply(variables, x, **flags(False)), state
        variables.update(member(values))
        logits, updates = module.apply(variables, x, **flags(True), rngs={"dropout": key},
                                       mutable=list(collections))
        return logits, {**state, **updates}

    return ModelFns(init, apply, stateful=bool(collections))


def model_fns(network: Network, conv: str = "xla") -> ModelFns:
    """The :class:`ModelFns` of ``network``: the seed CNN, or the user's module registered
    as ``network.model`` (``conv`` matters to the seed CNN only)."""
    if network.model == registry.DEFAULT_MODEL:
        return seed_cnn_fns(network, conv)
    build = nnx_model.builder(registry.factory(network.model), network.model)
    if build is not None:
        return nnx_fns(NnxModel(lambda rngs: build(network, rngs), network.model,
                                mode_flag))
    return linen_fns(registry.build_model(network.model, network), network)


def nnx_fns(model: NnxModel) -> ModelFns:
    """A user's NNX module (``nnx_model.py``) as :class:`ModelFns`: its own ``nnx.Rngs``
    from the member's init key, ``init=`` schemes applied to its parameters as to a linen
    model's."""

    def init(key: jax.Array, scheme: SchemeRef) -> tuple[Any, Any]:
        k_module, k_redraw = jax.random.split(key)
        params, state = model.init(k_module)
        return with_scheme(params, k_redraw, scheme), state

    stateful = bool(model.state_paths)
    return ModelFns(init, model.apply, stateful=stateful)


def check_model(network: Network) -> None:
    """Raises ValueError, one line, when a user's model cannot train on ``network``'s data:
    its factory fails, it fails on a batch of the data's images, its output is not
    (N, classes) float logits, it creates variables while it runs, or (NNX) its
    parameters do not depend on the rngs it is given. The seed CNN is not checked."""
    if network.model == registry.DEFAULT_MODEL:
        return
    name = network.model
    fns = model_fns(network)
    x = jax.ShapeDtypeStruct((2, *network.image_shape), jnp.float32)
    shape = "x".join(map(str, network.image_shape))
    try:
        params, state = jax.eval_shape(lambda: fns.init(jax.random.key(0), OWN))
        for train in (True, False):
            logits, _ = jax.eval_shape(
                lambda p, s, x, train=train: fns.apply(
                    p, s, x, None, jax.random.key(1) if train else None), params, state, x)
    except ValueError as err:
        if str(err).startswith(f"model {name!r}"):
            raise
        raise ValueError(f"model {name!r} fails on a batch of {shape} images: "
                         f"{_first_line(err)}") from None
    except Exception as err:  # the user's own code: any error, named in one line
        raise ValueError(f"model {name!r} fails on a batch of {shape} images: "
                         f"{type(err).__name__}: {_first_line(err)}") from None
    expected = (2, network.num_classes)
    if (not hasattr(logits, "shape") or tuple(logits.shape) != expected
            or not jnp.issubdtype(logits.dtype, jnp.floating)):
        got = (f"{logits.dtype} {tuple(logits.shape)}" if hasattr(logits, "shape")
               else type(logits).__name__)
        raise ValueError(f"model {name!r} returns {got} on 2 images; it must return float "
                         f"logits (N, {network.num_classes}), one per class of the data")
    if nnx_model.builder(registry.factory(name), name) is None:
        return  # linen: module.init draws from the member's keys by construction
    init = jax.jit(lambda key: fns.init(key, OWN)[0])
    first, second = init(jax.random.key(0)), init(jax.random.key(1))
    if all(bool(jnp.array_equal(a, b)) for a, b in zip(jax.tree.leaves(first),
                                                        jax.tree.leaves(second))):
        raise ValueError(f"model {name!r}: its parameters are the same whatever rngs it is "
                         "given, so every member would start alike; pass the factory's rngs "
                         "to every layer (Net(..., rngs=rngs)), not an nnx.Rngs of its own")


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def variable_shapes(network: Network) -> tuple[Any, Any]:
    """(params, state) of ``network`` as ShapeDtypeStructs, without computing anything."""
    fns = model_fns(network)
    return jax.eval_shape(lambda: fns.init(jax.random.key(0), initializers.DEFAULT))


def saved_weights(params: Any, model_state: Any) -> Any:
    """What is saved of a member (``params/<config>/``) and loaded back: its parameters,
    or ``{"params": ..., "model_state": ...}`` for a model with state."""
    if not jax.tree.leaves(model_state):
        return params
    return {"params": params, "model_state": model_state}


def split_weights(weights: Any) -> tuple[Any, Any]:
    """(params, model_state) of what :func:`saved_weights` gave."""
    if isinstance(weights, Mapping) and set(weights) == {"params", "model_state"}:
        return weights["params"], weights["model_state"]
    return weights, {}

"""A user's own Flax models by name, beside the built-in seed CNN ("cnn").

A model is a factory: ``factory(network) -> nn.Module`` returning a *plain* linen module,
or for a Flax NNX model ``factory(network, rngs) -> nnx.Module`` (or the ``nnx.Module``
class itself: ``nnx_model.py`` says how it is built), written as its author would write it
for any code base:

- ``network`` (:class:`~jaxcnn.models.model.Network`) gives the data's image shape
  (``network.image_shape``, (H, W, C)) and class count (``network.num_classes``);
- ``module(x)`` or ``module(x, train=...)`` maps (N, H, W, C) normalised floats to
  (N, num_classes) logits; ``nn.Dropout`` and ``nn.BatchNorm`` (or any layer keeping a
  mutable collection) work as usual: the library passes ``train`` explicitly, the
  ``"dropout"`` key of each member, and keeps every collection other than ``params`` as
  the member's state (``modelfns.py`` says exactly how).

    class MLP(nn.Module):
        num_classes: int

        @nn.compact
        def __call__(self, x, train: bool = False):
            x = nn.relu(nn.Dense(64)(x.reshape(x.shape[0], -1)))
            x = nn.Dropout(0.2, deterministic=not train)(x)
            return nn.Dense(self.num_classes)(x)

    register_model("mlp", lambda network: MLP(network.num_classes))

Register at a module's top level, before building configurations: a trained model
records the module that registered it, so a new process can import it to load the model
(``inference.load_model``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
from flax import nnx

ModelFactory = Callable[[Any], nn.Module]
DEFAULT_MODEL = "cnn"  # the seed CNN (model.py); not in the registry, never registered over

_MODELS: dict[str, ModelFactory] = {}


def register_model(name: str, factory: ModelFactory, replace: bool = False) -> None:
    """Makes ``name`` build ``factory(network)``.

    Raises ValueError for an empty name, ``"cnn"``, or one already registered (unless
    ``replace``: a study defining its model again, as a rerun of its file does).
    """
    if isinstance(factory, nnx.Module):
        raise ValueError(f"model {name!r}: got a {type(factory).__name__} object, but each "
                         "member builds its own; give its class, or lambda data, rngs: "
                         f"{type(factory).__name__}(..., rngs=rngs)")
    if isinstance(factory, nn.Module):
        raise ValueError(f"model {name!r}: got a {type(factory).__name__} object; give a "
                         "function of the data that builds it: lambda data: "
                         f"{type(factory).__name__}(data.num_classes)")
    if not callable(factory):
        raise ValueError(f"model {name!r}: give a function of the data that builds a flax "
                         f"linen Module, e.g. lambda data: Net(data.num_classes); got "
                         f"{type(factory).__name__}")
    if (not isinstance(name, str) or not name or (name in _MODELS and not replace)
            or name == DEFAULT_MODEL):
        raise ValueError(f"a model needs a new, non-empty name other than {DEFAULT_MODEL!r}; "
                         f"got {name!r} (registered: {', '.join(_MODELS) or 'none'})")
    _MODELS[name] = factory


def is_registered(name: str) -> bool:
    return name == DEFAULT_MODEL or name in _MODELS


def source_module(name: str) -> str | None:
    """The module that defined ``name``'s factory (recorded with a trained model, so that
    another process can import it before loading; a script run directly by its path), or
    None for the seed CNN or a name not registered."""
    from jaxcnn.user_code import module_source

    factory = _MODELS.get(name)
    if isinstance(factory, functools.partial):
        factory = factory.func  # a partial's __module__ is functools'
    return None if factory is None else module_source(getattr(factory, "__module__", None))


def factory(name: str) -> ModelFactory:
    """The factory registered as ``name`` (linen or NNX: ``modelfns.model_fns`` tells)."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(_MODELS) or 'none'}")
    return _MODELS[name]


def build_model(name: str, network: Any) -> nn.Module:
    """The linen module registered as ``name`` for ``network``."""
    module = factory(name)(network)
    if isinstance(module, nnx.Module):
        raise ValueError(f"model {name!r}: its factory builds an NNX {type(module).__name__} "
                         "without the member's rngs, so every member would start alike; "
                         f"take them: lambda data, rngs: {type(module).__name__}(..., "
                         "rngs=rngs)")
    if not isinstance(module, nn.Module):
        raise ValueError(f"model {name!r}: its factory returned {type(module).__name__}, not a "
                         "flax.linen Module; register a function of the network that builds "
                         "the module")
    return module

"""Models by name: the seed CNN built in, a user's own Flax linen module registered beside it.

A model is a factory ``factory(network, *, conv, kernel_init, bias_init) -> nn.Module``:

- ``network``: the :class:`~jaxcnn.model.Network` (the data's image shape and class
  count, ``network.image_shape`` and ``network.num_classes``);
- ``conv``: how the seed CNN computes convolutions (``conv.py``); other models may
  ignore it;
- ``kernel_init``: a Flax initializer for kernels; ``bias_init``: ``fan_in -> a Flax
  initializer`` for biases (PyTorch's default bias depends on fan_in). They are the
  member's initialization scheme (``initializers.py``), so ``--init`` studies and
  the ``init`` field of a configuration act on any registered model.

The module's ``__call__(x, rates=None, dropout_key=None)`` maps (N, H, W, C)
normalised floats to (N, num_classes) logits; with ``rates`` (``model.Rates``) and a
``dropout_key`` it runs in training mode (a model without dropout ignores them).

    class MLP(nn.Module):
        num_classes: int
        kernel_init: Callable = nn.initializers.lecun_normal()
        bias_init: Callable = lambda fan_in: nn.initializers.zeros

        @nn.compact
        def __call__(self, x, rates=None, dropout_key=None):
            x = x.reshape(x.shape[0], -1)
            x = nn.relu(nn.Dense(64, kernel_init=self.kernel_init,
                                 bias_init=self.bias_init(x.shape[-1]))(x))
            return nn.Dense(self.num_classes, kernel_init=self.kernel_init,
                            bias_init=self.bias_init(64))(x)

    register_model("mlp", lambda network, *, conv, kernel_init, bias_init: MLP(
        network.num_classes, kernel_init, bias_init))

Register before building configurations and programs. The seed CNN registers itself
as ``cnn`` in ``model.py`` (which imports this module; this module imports no model).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn

from jaxcnn import initializers

ModelFactory = Callable[..., nn.Module]
DEFAULT_MODEL = "cnn"

_MODELS: dict[str, ModelFactory] = {}


def register_model(name: str, factory: ModelFactory) -> None:
    """Makes ``name`` build ``factory(network, conv=..., kernel_init=..., bias_init=...)``.

    Raises ValueError for an empty name or one already registered.
    """
    if not isinstance(name, str) or not name or name in _MODELS:
        raise ValueError(f"a model needs a new, non-empty name; got {name!r} "
                         f"(registered: {', '.join(_MODELS)})")
    _MODELS[name] = factory


def is_registered(name: str) -> bool:
    return name in _MODELS


def source_module(name: str) -> str | None:
    """The module that defined ``name``'s factory (recorded with a trained model, so that
    another process can import it before loading), or None if ``name`` is unknown."""
    factory = _MODELS.get(name)
    return None if factory is None else getattr(factory, "__module__", None)


def build_model(name: str, network: Any, *, conv: str = "xla", kernel_init: Any = None,
                bias_init: Any = None) -> nn.Module:
    """The module registered as ``name`` for ``network``.

    ``kernel_init`` / ``bias_init`` default to the built-in default scheme's (LeCun
    normal kernels, zero biases), as a module built without a member's scheme.
    """
    if name not in _MODELS:  # "cnn" is registered once jaxcnn.model is imported
        raise ValueError(f"unknown model {name!r}; registered: {', '.join(_MODELS)}")
    if kernel_init is None:
        kernel_init = initializers.kernel_init(initializers.DEFAULT)
    if bias_init is None:
        bias_init = initializers.bias_init(initializers.DEFAULT)
    return _MODELS[name](network, conv=conv, kernel_init=kernel_init, bias_init=bias_init)


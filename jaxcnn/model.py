"""The seed notebook's CNN in Flax linen, NHWC, with its hyperparameters as inputs.

    conv3x3(3->64) relu pool  conv3x3(64->64) relu [Dropout2d] pool
    conv3x3(64->32) relu pool  flatten(4*4*32=512)  fc(512->512) relu [Dropout]
    fc(512->C)                         324,970 parameters for C = 10

Only the :class:`Network` (which layers a ReLU follows, the number of classes)
fixes the shape of the compiled program. Everything numeric that tells one
configuration from another is an input: the dropout rates (:class:`Rates`, one
scalar each, a rate of 0 leaves the activations untouched bit for bit) and the
initializer (an index into ``initializers.INIT_NAMES``, see :func:`init_params`). So one
compiled program trains every configuration of a network, each member with its
own values.

How the convolutions are computed (``conv``, see ``conv.py``) is chosen at run
time; it changes float rounding only, never the parameters or the function.

Flatten order is H, W, C (NHWC), where PyTorch's is C, H, W: copying fc1
weights between the two needs a row permutation (see ``torch_compat.py``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn import initializers
from jaxcnn.conv import check_conv, conv3x3_pool

LAYERS = ("conv1", "conv2", "conv3", "fc1")  # the layers a ReLU may follow
IMAGE_SHAPE = (32, 32, 3)


@dataclasses.dataclass(frozen=True)
class Network:
    """The structure of the network: what one compiled program is built for.

    Attributes:
      relu_after: layers followed by a ReLU. The seed's dropout model has only
        ("conv1",): its nn.Sequential leaves out the other ReLUs.
      num_classes: outputs of the last layer (the data's class count).
    """

    relu_after: tuple[str, ...] = LAYERS
    num_classes: int = 10

    def __post_init__(self) -> None:
        if unknown := set(self.relu_after) - set(LAYERS):
            raise ValueError(f"relu_after names unknown layers {sorted(unknown)}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {self.num_classes}")

    def describe(self) -> str:
        relus = ("ReLU after every layer" if set(self.relu_after) == set(LAYERS)
                 else f"ReLU after {', '.join(self.relu_after) or 'no layer'} only")
        return f"seed CNN, {self.num_classes} classes, {relus}"


class Rates(NamedTuple):
    """Dropout rates of one member, () floats in [0, 1).

    spatial: Dropout2d after conv2 (whole channels); dense: Dropout after fc1.
    """

    spatial: jax.Array | float
    dense: jax.Array | float


NO_DROPOUT = Rates(0.0, 0.0)


def dropout(x: jax.Array, rate: jax.Array | float, key: jax.Array,
            broadcast_dims: tuple[int, ...] = ()) -> jax.Array:
    """Zeroes each element (or each slice along ``broadcast_dims``) with probability ``rate``.

    Survivors are multiplied by 1 / (1 - rate), as torch's Dropout and Dropout2d. ``rate``
    may be traced. With rate 0 every draw is kept and x * 1 == x, so the result is x
    exactly: a member without dropout trains as a network without dropout layers.
    """
    keep = 1.0 - jnp.asarray(rate, x.dtype)
    shape = tuple(1 if d in broadcast_dims else s for d, s in enumerate(x.shape))
    mask = jax.random.bernoulli(key, keep, shape)
    return jnp.where(mask, x * (1.0 / keep), jnp.zeros_like(x))


class ConvPool(nn.Module):
    """3x3 'SAME' convolution with a bias, then a 2x2 max-pool.

    Params ``kernel`` (3, 3, Cin, Cout) and ``bias`` (Cout,), whatever the impl.
    The bias is added after the pool: max(y) + b == max(y + b).
    """

    features: int
    conv: str

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cin = x.shape[-1]
        kernel = self.param("kernel", nn.initializers.zeros, (3, 3, cin, self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        kernel, bias = kernel.astype(x.dtype), bias.astype(x.dtype)
        return conv3x3_pool(x, kernel, self.conv) + bias


class CNN(nn.Module):
    """The seed's network: (N, 32, 32, 3) normalised floats -> (N, C) logits.

    Attributes:
      network: the structure.
      conv: how the convolutions are computed (a run-time choice).

    Flax's ``init`` gives zeros of the right shapes; initial weights are drawn by
    :func:`init_params`, with the scheme as data.

    Call with ``rates`` and ``dropout_key`` to train with dropout; without them the
    network is deterministic (evaluation).
    """

    network: Network = Network()
    conv: str = "winograd"

    @nn.compact
    def __call__(self, x: jax.Array, rates: Rates | None = None,
                 dropout_key: jax.Array | None = None) -> jax.Array:
        check_conv(self.conv)
        relus = self.network.relu_after
        train = rates is not None and dropout_key is not None
        if train:
            rates = Rates(*rates)
            spatial_key, dense_key = jax.random.split(dropout_key)

        def act(name: str, y: jax.Array) -> jax.Array:
            return nn.relu(y) if name in relus else y

        # ReLU is applied after each 2x2 max-pool: relu(pool(x)) == pool(relu(x)) (both
        # are monotone), with the same gradient, on a quarter of the elements.
        x = act("conv1", ConvPool(64, self.conv, name="conv1")(x))
        x = act("conv2", ConvPool(64, self.conv, name="conv2")(x))
        if train:
            # One draw per (image, channel), broadcast over H and W, as Dropout2d. Zeroing
            # or scaling a whole channel commutes with the pool and the ReLU, so the mask
            # may act after them.
            x = dropout(x, rates.spatial, spatial_key, broadcast_dims=(1, 2))
        x = act("conv3", ConvPool(32, self.conv, name="conv3")(x))
        x = x.reshape(x.shape[0], -1)  # (N, 4 * 4 * 32), H-W-C order
        x = act("fc1", self._dense(512, "fc1", x))
        if train:
            x = dropout(x, rates.dense, dense_key)
        return self._dense(self.network.num_classes, "fc2", x)

    def _dense(self, features: int, name: str, x: jax.Array) -> jax.Array:
        return nn.Dense(features, kernel_init=nn.initializers.zeros,
                        bias_init=nn.initializers.zeros, name=name)(x)


def param_shapes(network: Network) -> Any:
    """{layer: {"kernel", "bias"}} of ShapeDtypeStructs, without computing anything."""
    return jax.eval_shape(lambda: CNN(network, conv="xla").init(
        jax.random.key(0), jnp.zeros((1, *IMAGE_SHAPE), jnp.float32)))["params"]


def init_params(key: jax.Array, network: Network, init: jax.Array | int | str) -> Any:
    """A member's initial parameters: scheme ``init`` (a name or an index into
    ``INIT_NAMES``, possibly traced) drawn from ``key`` (see ``initializers.py``)."""
    return initializers.init_params(key, param_shapes(network), init)


def count_params(params: Any) -> int:
    """Total number of scalars in a parameter pytree."""
    return sum(p.size for p in jax.tree.leaves(params))

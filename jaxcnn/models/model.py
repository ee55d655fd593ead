"""The seed notebook's CNN in Flax linen, NHWC, with its hyperparameters as inputs.

    conv3x3(C->64) relu pool  conv3x3(64->64) relu [Dropout2d] pool
    conv3x3(64->32) relu pool  flatten(H/8*W/8*32)  fc(->512) relu [Dropout]
    fc(512->K)                 324,970 parameters for 32x32x3 images and K = 10

The images' shape and the class count come from the data (:class:`Network`):
28x28x1 images with 3 classes are as welcome as CIFAR-10's 32x32x3 with 10. The
flatten size is whatever the three pools leave (pools round down, as PyTorch's
MaxPool2d: 28 -> 14 -> 7 -> 3); ``nn.Dense`` reads it from the input at init.

Only the :class:`Network` (image shape, which layers a ReLU follows, the number
of classes) fixes the shape of the compiled program. Everything numeric that
tells one configuration from another is an input: the dropout rates (the
member's values in the :data:`MEMBER` collection, the mechanism a user's model may
use too; a rate of 0 leaves the activations untouched bit for bit) and the
initializer (a name, or an index into ``initializers.INIT_NAMES`` that may be traced,
see :func:`init_params`). So one
compiled program trains every configuration of a network, each member with its
own values.

The modules declare their parameters with Flax initializers taken as attributes
(``kernel_init``, a Flax initializer; ``bias_init``, a function of fan_in giving
one, see ``initializers.py``). A :class:`Network` names its model (``network.model``:
"cnn" for :class:`CNN`, else a user's module registered in ``registry.py``);
``modelfns.py`` turns either into the functions the engine trains.

How the convolutions are computed (``conv``, see ``conv.py``) is chosen at run
time; it changes float rounding only, never the parameters or the function.

Flatten order is H, W, C (NHWC), where PyTorch's is C, H, W: copying fc1
weights between the two needs a row permutation (see ``torch_compat.py``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.nn.initializers import Initializer

from jaxcnn.models import initializers, registry
from jaxcnn.models.conv import check_conv, conv3x3_patches, conv3x3_pool, conv3x3_xla, max_pool_2x2
from jaxcnn.models.initializers import FanInInit, SchemeRef

LAYERS = ("conv1", "conv2", "conv3", "fc1")  # the layers a ReLU may follow
POOLS = 3  # each conv halves H and W (rounding down): inputs need at least 2**3 pixels


@dataclasses.dataclass(frozen=True)
class Network:
    """The structure of the network: what one compiled program is built for.

    Attributes:
      relu_after: layers followed by a ReLU. The seed's dropout model has only
        ("conv1",): its nn.Sequential leaves out the other ReLUs.
      num_classes: outputs of the last layer (the data's class count).
      image_shape: (H, W, C) of one input image (the data's; defaults are CIFAR-10's).
      model: the registered model's name (``registry.py``): "cnn" is this module's
        :class:`CNN`; ``relu_after`` applies to it only.
    """

    relu_after: tuple[str, ...] = LAYERS
    num_classes: int = 10
    image_shape: tuple[int, int, int] = (32, 32, 3)
    model: str = registry.DEFAULT_MODEL

    def __post_init__(self) -> None:
        if unknown := set(self.relu_after) - set(LAYERS):
            raise ValueError(f"relu_after names unknown layers {sorted(unknown)}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {self.num_classes}")
        # A tuple of ints whatever came in (a list from JSON, numpy ints from an array's
        # shape), so equal networks compare and hash equal.
        shape = tuple(int(s) for s in self.image_shape)
        object.__setattr__(self, "image_shape", shape)
        if len(shape) != 3 or min(shape[:2]) < 2 ** POOLS or shape[2] < 1:
            raise ValueError(f"image_shape must be (H, W, C) with H, W >= {2 ** POOLS} and "
                             f"C >= 1, got {shape}")
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"model must be a registered model's name, got {self.model!r}")

    def describe(self) -> str:
        relus = ("ReLU after every layer" if set(self.relu_after) == set(LAYERS)
                 else f"ReLU after {', '.join(self.relu_after) or 'no layer'} only")
        images = "x".join(map(str, self.image_shape))
        if self.model != registry.DEFAULT_MODEL:
            return f"model {self.model!r}, {images} images, {self.num_classes} classes"
        return f"seed CNN, {images} images, {self.num_classes} classes, {relus}"


# The variable collection holding a member's values (``Configuration.values``, the seed
# CNN's dropout rates): numbers that differ between members of one compiled program.
MEMBER = "member"


def member_value(module: Any, name: str, default: float = 0.0) -> jax.Array | float:
    """A member's value ``name`` inside a model's ``__call__`` (linen or NNX): what the
    configuration gave (a () array, traced), or ``default`` where it gave none (in
    evaluation, at init, and in a model loaded back). Read it in the top module and pass
    it down: a linen model's values fill its top-level collection, an NNX model's are
    handed to the top module for the duration of the call."""
    if isinstance(module, nn.Module):
        return module.get_variable(MEMBER, name, default)
    return (getattr(module, MEMBER_ATTRIBUTE, None) or {}).get(name, default)


# Where an NNX module holds its member's values during a training call (nnx_model.py).
MEMBER_ATTRIBUTE = "_jaxcnn_member_values"


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


def conv_pool(x: jax.Array, kernel: jax.Array, impl: str) -> jax.Array:
    """3x3 'SAME' convolution, then a 2x2 max-pool that drops an odd last row or column
    (PyTorch's MaxPool2d): (N, H, W, Cin) -> (N, H // 2, W // 2, Cout)."""
    h, w = x.shape[1:3]
    if h % 2 == 0 and w % 2 == 0:
        return conv3x3_pool(x, kernel, impl)
    # conv.py's paths assume even sizes (Winograd's 2x2 tiles are the pooling windows):
    # convolve at full size, crop to even, pool. Only small late layers take this path.
    y = (conv3x3_xla if impl == "xla" else conv3x3_patches)(x, kernel)
    return max_pool_2x2(y[:, :h - h % 2, :w - w % 2, :])


class ConvPool(nn.Module):
    """3x3 'SAME' convolution with a bias, then a 2x2 max-pool.

    Params ``kernel`` (3, 3, Cin, Cout) from ``kernel_init`` and ``bias`` (Cout,) from
    ``bias_init(9 * Cin)``, whatever the impl. The bias is added after the pool:
    max(y) + b == max(y + b).
    """

    features: int
    conv: str
    kernel_init: Initializer = initializers.kernel_init(initializers.DEFAULT)
    bias_init: FanInInit = initializers.bias_init(initializers.DEFAULT)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cin = x.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (3, 3, cin, self.features), jnp.float32)
        bias = self.param("bias", self.bias_init(9 * cin), (self.features,), jnp.float32)
        kernel, bias = kernel.astype(x.dtype), bias.astype(x.dtype)
        return conv_pool(x, kernel, self.conv) + bias


class CNN(nn.Module):
    """The seed's network: (N, H, W, C) normalised floats -> (N, K) logits.

    Attributes:
      network: the structure.
      conv: how the convolutions are computed (a run-time choice).
      kernel_init: Flax initializer of every kernel (default lecun_normal, Flax's).
      bias_init: fan_in -> Flax initializer of every bias (default zeros, Flax's).

    Training applies parameters made by :func:`init_params`, which passes the
    initializers of a member's scheme (possibly chosen by a traced index).

    Call with ``dropout_key`` to train, with the member's dropout rates in the
    :data:`MEMBER` collection (``spatial_dropout``, ``dropout``; 0 where absent); without
    a key the network is deterministic (evaluation).
    """

    network: Network = Network()
    conv: str = "winograd"
    kernel_init: Initializer = initializers.kernel_init(initializers.DEFAULT)
    bias_init: FanInInit = initializers.bias_init(initializers.DEFAULT)

    @nn.compact
    def __call__(self, x: jax.Array, dropout_key: jax.Array | None = None) -> jax.Array:
        check_conv(self.conv)
        relus = self.network.relu_after
        train = dropout_key is not None
        if train:
            spatial_key, dense_key = jax.random.split(dropout_key)

        def act(name: str, y: jax.Array) -> jax.Array:
            return nn.relu(y) if name in relus else y

        def conv(features: int, name: str, y: jax.Array) -> jax.Array:
            return ConvPool(features, self.conv, self.kernel_init, self.bias_init, name=name)(y)

        # ReLU is applied after each 2x2 max-pool: relu(pool(x)) == pool(relu(x)) (both
        # are monotone), with the same gradient, on a quarter of the elements.
        x = act("conv1", conv(64, "conv1", x))
        x = act("conv2", conv(64, "conv2", x))
        if train:
            # One draw per (image, channel), broadcast over H and W, as Dropout2d. Zeroing
            # or scaling a whole channel commutes with the pool and the ReLU, so the mask
            # may act after them.
            x = dropout(x, member_value(self, "spatial_dropout"), spatial_key,
                        broadcast_dims=(1, 2))
        x = act("conv3", conv(32, "conv3", x))
        x = x.reshape(x.shape[0], -1)  # (N, H/8 * W/8 * 32), H-W-C order
        x = act("fc1", self._dense(512, "fc1", x))
        if train:
            x = dropout(x, member_value(self, "dropout"), dense_key)
        return self._dense(self.network.num_classes, "fc2", x)

    def _dense(self, features: int, name: str, x: jax.Array) -> jax.Array:
        return nn.Dense(features, kernel_init=self.kernel_init,
                        bias_init=self.bias_init(x.shape[-1]), name=name)(x)


def make_model(network: Network, conv: str = "xla",
               init: SchemeRef = initializers.DEFAULT) -> CNN:
    """The seed CNN of ``network``, declaring its parameters with scheme ``init``'s
    initializers (any other model is built by ``modelfns.model_fns``).

    Applying parameters needs no scheme (any ``init`` gives the same function); ``init``
    matters for ``init``/``lazy_init`` only.
    """
    return CNN(network, conv=conv, kernel_init=initializers.kernel_init(init),
               bias_init=initializers.bias_init(init))


def _sample(network: Network) -> jax.ShapeDtypeStruct:
    """One image of ``network``'s shape, as a shape only: init needs no real input."""
    return jax.ShapeDtypeStruct((1, *network.image_shape), jnp.float32)


def init_params(key: jax.Array, network: Network, init: SchemeRef) -> Any:
    """A member's initial parameters {layer: {"kernel", "bias"}} (float32), drawn from
    ``key`` by scheme ``init``: a name, or an index into ``INIT_NAMES`` (may be traced,
    e.g. a member's hyperparameter under ``vmap``: one program serves every scheme)."""
    # lazy_init runs only what the parameters need, not the forward pass.
    return make_model(network, init=init).lazy_init(key, _sample(network))["params"]


def count_params(params: Any) -> int:
    """Total number of scalars in a parameter pytree."""
    return sum(p.size for p in jax.tree.leaves(params))

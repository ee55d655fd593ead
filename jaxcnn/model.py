"""The seed notebook's CNN in Flax linen, NHWC.

    conv3x3(3->64) relu pool  conv3x3(64->64) relu [Dropout2d] pool
    conv3x3(64->32) relu pool  flatten(4*4*32=512)  fc(512->512) relu [Dropout]
    fc(512->10)                                     324,970 parameters

Two ways to compute the 3x3 convolutions, with identical parameters:
``conv_impl="patches"`` gathers the nine shifted copies of the input and does
one matmul; ``"xla"`` calls ``lax.conv_general_dilated``. On XLA:CPU (jax
0.10.2) the *weight gradient* of a convolution inside a ``lax.scan`` runs about
65x slower than outside one (measured: 1.9 s against 29 ms per step for conv2),
while the forward convolution is as fast inside a loop as outside. Training is
a scan, so it uses "patches"; evaluation is forward only and uses "xla", about
twice as fast there (see benchmarks/NOTES.md). Max-pooling is a reshape and a
max, which has a deterministic gradient on the GPU (``select_and_scatter`` does not).

Flatten order is H, W, C (NHWC), where PyTorch's is C, H, W: copying fc1
weights between the two needs a row permutation (see ``torch_compat.py``).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcnn.initializers import bias_init, kernel_init

LAYERS = ("conv1", "conv2", "conv3", "fc1")  # the layers a ReLU may follow


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """What defines the network.

    Attributes:
      init: initializer scheme name (see ``initializers.py``).
      spatial_dropout: Dropout2d rate after conv2 (whole channels); 0 = off.
      dropout: element dropout rate after fc1; 0 = off.
      relu_after: layers followed by a ReLU. The seed's dropout model has only
        ("conv1",): its nn.Sequential leaves out the other ReLUs.
      conv_impl: "patches" (im2col + matmul) or "xla" (lax.conv).
    """

    init: str = "lecun"
    spatial_dropout: float = 0.0
    dropout: float = 0.0
    relu_after: tuple[str, ...] = LAYERS
    conv_impl: str = "patches"

    def __post_init__(self) -> None:
        kernel_init(self.init)
        for rate in (self.spatial_dropout, self.dropout):
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"dropout rates must be in [0, 1), got {rate}")
        if unknown := set(self.relu_after) - set(LAYERS):
            raise ValueError(f"relu_after names unknown layers {sorted(unknown)}")
        if self.conv_impl not in ("patches", "xla"):
            raise ValueError(f"conv_impl must be 'patches' or 'xla', got {self.conv_impl!r}")

    @property
    def uses_dropout(self) -> bool:
        return self.spatial_dropout > 0 or self.dropout > 0


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 max-pool, stride 2: (N, H, W, C) -> (N, H/2, W/2, C)."""
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def conv3x3_patches(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """'SAME' 3x3 convolution as one matmul over the nine shifted inputs.

    x: (N, H, W, Cin); kernel: (3, 3, Cin, Cout) -> (N, H, W, Cout).
    """
    n, h, w, cin = x.shape
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    # Concatenation order (dy, dx, cin) matches kernel.reshape(9 * cin, cout).
    patches = jnp.concatenate(
        [padded[:, dy:dy + h, dx:dx + w, :] for dy in range(3) for dx in range(3)], axis=-1)
    out = patches.reshape(n * h * w, 9 * cin) @ kernel.reshape(9 * cin, -1)
    return out.reshape(n, h, w, -1)


def conv3x3_xla(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """The same convolution through ``lax.conv_general_dilated``."""
    return jax.lax.conv_general_dilated(
        x, kernel, window_strides=(1, 1), padding="SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"))


class Conv3x3(nn.Module):
    """3x3 'SAME' convolution with a bias; params ``kernel`` (3,3,Cin,Cout), ``bias``."""

    features: int
    scheme: str  # initializer name
    impl: str

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cin = x.shape[-1]
        kernel = self.param("kernel", kernel_init(self.scheme), (3, 3, cin, self.features))
        bias = self.param("bias", bias_init(self.scheme, 9 * cin), (self.features,))
        kernel, bias = kernel.astype(x.dtype), bias.astype(x.dtype)
        conv = conv3x3_patches if self.impl == "patches" else conv3x3_xla
        return conv(x, kernel) + bias


class CNN(nn.Module):
    """The seed's network. Input (N, 32, 32, 3) normalised floats -> (N, 10) logits.

    Dropout needs ``train=True`` and an rng named "dropout".
    """

    config: ModelConfig
    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        cfg = self.config

        def act(name: str, y: jax.Array) -> jax.Array:
            return nn.relu(y) if name in cfg.relu_after else y

        # ReLU is applied after each 2x2 max-pool: relu(pool(x)) == pool(relu(x)) (both
        # are monotone), with the same gradient, on a quarter of the elements.
        x = act("conv1", max_pool_2x2(Conv3x3(64, cfg.init, cfg.conv_impl, name="conv1")(x)))
        x = act("conv2", max_pool_2x2(Conv3x3(64, cfg.init, cfg.conv_impl, name="conv2")(x)))
        if cfg.spatial_dropout:
            # One draw per (image, channel), broadcast over H and W, as Dropout2d. Zeroing
            # or scaling a whole channel commutes with the pool and the ReLU, so the mask
            # may act after them.
            x = nn.Dropout(cfg.spatial_dropout, broadcast_dims=(1, 2), deterministic=not train)(x)
        x = act("conv3", max_pool_2x2(Conv3x3(32, cfg.init, cfg.conv_impl, name="conv3")(x)))
        x = x.reshape(x.shape[0], -1)  # (N, 4 * 4 * 32), H-W-C order
        x = act("fc1", self._dense(512, "fc1", x))
        if cfg.dropout:
            x = nn.Dropout(cfg.dropout, deterministic=not train)(x)
        return self._dense(self.num_classes, "fc2", x)

    def _dense(self, features: int, name: str, x: jax.Array) -> jax.Array:
        init = self.config.init
        return nn.Dense(features, kernel_init=kernel_init(init),
                        bias_init=bias_init(init, x.shape[-1]), name=name)(x)


def count_params(params) -> int:
    """Total number of scalars in a parameter pytree."""
    return sum(p.size for p in jax.tree.leaves(params))

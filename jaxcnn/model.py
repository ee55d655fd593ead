"""The seed notebook's CNN in Flax linen, NHWC.

    conv3x3(3->64) relu pool  conv3x3(64->64) relu [Dropout2d] pool
    conv3x3(64->32) relu pool  flatten(4*4*32=512)  fc(512->512) relu [Dropout]
    fc(512->10)                                     324,970 parameters

Three ways to compute each 3x3 convolution and the 2x2 max-pool after it, with
the same parameters and the same function (``conv_impl``):

- ``"winograd"`` (CPU default): Winograd F(2x2, 3x3) for conv2 and conv3, 16
  plain matmuls per layer with the pool folded into the output transform;
  conv1 (3 input channels) uses patches;
- ``"patches"``: the nine shifted copies of the input, concatenated, one matmul;
- ``"xla"``: ``lax.conv_general_dilated`` (GPU default).

Why not simply ``lax.conv`` on the CPU: on XLA:CPU (jax 0.10.2) the *weight
gradient* of a convolution inside a ``lax.scan`` runs about 40x slower than
outside one (measured: 1.93 s against 46 ms per step for conv2), and training
is a scan. Evaluation uses the training convolution too: Winograd's forward
pass beats lax.conv there by 1.3-1.7x. Numbers: benchmarks/NOTES.md.
Max-pooling is a reshape and a max, which has a deterministic gradient on the
GPU (``select_and_scatter`` does not).

Flatten order is H, W, C (NHWC), where PyTorch's is C, H, W: copying fc1
weights between the two needs a row permutation (see ``torch_compat.py``).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxcnn.initializers import bias_init, kernel_init

LAYERS = ("conv1", "conv2", "conv3", "fc1")  # the layers a ReLU may follow
CONV_IMPLS = ("winograd", "patches", "xla")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """What defines the network.

    Attributes:
      init: initializer scheme name (see ``initializers.py``).
      spatial_dropout: Dropout2d rate after conv2 (whole channels); 0 = off.
      dropout: element dropout rate after fc1; 0 = off.
      relu_after: layers followed by a ReLU. The seed's dropout model has only
        ("conv1",): its nn.Sequential leaves out the other ReLUs.
      conv_impl: how the 3x3 convolutions (each followed by its max-pool) are
        computed: "winograd" (Winograd F(2x2,3x3) as 16 matmuls for conv2 and
        conv3, patches for conv1), "patches" (im2col + one matmul) or "xla"
        (lax.conv). The parameters and the function are the same.
    """

    init: str = "lecun"
    spatial_dropout: float = 0.0
    dropout: float = 0.0
    relu_after: tuple[str, ...] = LAYERS
    conv_impl: str = "winograd"

    def __post_init__(self) -> None:
        kernel_init(self.init)
        for rate in (self.spatial_dropout, self.dropout):
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"dropout rates must be in [0, 1), got {rate}")
        if unknown := set(self.relu_after) - set(LAYERS):
            raise ValueError(f"relu_after names unknown layers {sorted(unknown)}")
        if self.conv_impl not in CONV_IMPLS:
            raise ValueError(f"conv_impl must be one of {', '.join(CONV_IMPLS)}, "
                             f"got {self.conv_impl!r}")

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


# Winograd F(2x2, 3x3) (Lavin & Gray 2016): a 2x2 output tile from a 4x4 input tile
# with 16 multiplications instead of 36. Y = A^T [(G g G^T) * (B^T d B)] A with
#   B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
#   G   = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]
#   A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]
# Every entry is 0, +-1 or 1/2, so float rounding matches a direct convolution's.
_WINOGRAD_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])


def conv3x3_pool_winograd(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """'SAME' 3x3 convolution followed by a 2x2 max-pool, by Winograd F(2x2, 3x3).

    x: (N, H, W, Cin) with H, W even; kernel: (3, 3, Cin, Cout) -> (N, H/2, W/2, Cout).
    The 2x2 output tiles are exactly the pooling windows, so the pool is a max over
    the four outputs of each tile and the full-size output is never formed. The 16
    products are 16 plain matmuls of (tiles, Cin) x (Cin, Cout): plain dots stay
    fast inside ``lax.scan`` on XLA:CPU, where batched dots and convolutions do not.
    """
    n, h, w, cin = x.shape
    tiles = n * (h // 2) * (w // 2)
    p = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    # d[a][b]: element (a, b) of every 4x4 input tile (tiles overlap, stride 2).
    d = [[p[:, a:a + h:2, b:b + w:2, :] for b in range(4)] for a in range(4)]
    t = [[d[0][j] - d[2][j] for j in range(4)], [d[1][j] + d[2][j] for j in range(4)],
         [d[2][j] - d[1][j] for j in range(4)], [d[1][j] - d[3][j] for j in range(4)]]  # B^T d
    v = [[r[0] - r[2], r[1] + r[2], r[2] - r[1], r[1] - r[3]] for r in t]  # (B^T d) B
    g = jnp.asarray(_WINOGRAD_G, kernel.dtype)
    u = jnp.einsum("ua,abcf,vb->uvcf", g, kernel, g)  # G g G^T: (4, 4, Cin, Cout)
    m = [[(v[i][j].reshape(tiles, cin) @ u[i, j]).reshape(n, h // 2, w // 2, -1)
          for j in range(4)] for i in range(4)]
    r0 = [m[0][j] + m[1][j] + m[2][j] for j in range(4)]  # A^T m, first row
    r1 = [m[1][j] - m[2][j] - m[3][j] for j in range(4)]  # second row
    outputs = [r[0] + r[1] + r[2] for r in (r0, r1)] + [r[1] - r[2] - r[3] for r in (r0, r1)]
    return jnp.maximum(jnp.maximum(outputs[0], outputs[1]), jnp.maximum(outputs[2], outputs[3]))


class ConvPool(nn.Module):
    """3x3 'SAME' convolution with a bias, then a 2x2 max-pool.

    Params ``kernel`` (3, 3, Cin, Cout) and ``bias`` (Cout,), whatever the impl.
    The bias is added after the pool: max(y) + b == max(y + b).
    """

    features: int
    scheme: str  # initializer name
    impl: str

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cin = x.shape[-1]
        kernel = self.param("kernel", kernel_init(self.scheme), (3, 3, cin, self.features))
        bias = self.param("bias", bias_init(self.scheme, 9 * cin), (self.features,))
        kernel, bias = kernel.astype(x.dtype), bias.astype(x.dtype)
        if self.impl == "winograd":
            return conv3x3_pool_winograd(x, kernel) + bias
        conv = conv3x3_patches if self.impl == "patches" else conv3x3_xla
        return max_pool_2x2(conv(x, kernel)) + bias


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

        # Winograd needs many input channels to pay off; conv1 has 3, so patches there.
        first = "patches" if cfg.conv_impl == "winograd" else cfg.conv_impl
        # ReLU is applied after each 2x2 max-pool: relu(pool(x)) == pool(relu(x)) (both
        # are monotone), with the same gradient, on a quarter of the elements.
        x = act("conv1", ConvPool(64, cfg.init, first, name="conv1")(x))
        x = act("conv2", ConvPool(64, cfg.init, cfg.conv_impl, name="conv2")(x))
        if cfg.spatial_dropout:
            # One draw per (image, channel), broadcast over H and W, as Dropout2d. Zeroing
            # or scaling a whole channel commutes with the pool and the ReLU, so the mask
            # may act after them.
            x = nn.Dropout(cfg.spatial_dropout, broadcast_dims=(1, 2), deterministic=not train)(x)
        x = act("conv3", ConvPool(32, cfg.init, cfg.conv_impl, name="conv3")(x))
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

"""The 3x3 'SAME' convolutions (each followed by its 2x2 max-pool), three ways.

Same parameters, same function; which one runs is a run-time choice
(:func:`default_conv`), never part of a model's configuration:

- ``"winograd"``: Winograd F(2x2, 3x3) for inputs with many channels, 16 plain
  matmuls with the pool folded into the output transform;
- ``"patches"``: the nine shifted copies of the input, concatenated (im2col),
  one matmul;
- ``"xla"``: ``lax.conv_general_dilated``.

Why three. On XLA:CPU (jax 0.10.2) the weight gradient of ``lax.conv`` inside a
``lax.scan`` runs about 40x slower than outside one (benchmarks/NOTES.md), and an
epoch is a scan; Winograd is fastest there, for training and evaluation. On a GPU,
``vmap`` over members turns ``lax.conv`` into a grouped convolution that cuDNN runs
slowly (an H200 measured 160-194k images/s at 8-128 members), while patches (a
batched matmul) reached 406-478k and Winograd 287-476k (issue 11's table), so
patches is the GPU default.

Max-pooling is a reshape and a max: its gradient is deterministic on the GPU
(``select_and_scatter``, the gradient of ``reduce_window`` max, is not).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

CONV_IMPLS = ("winograd", "patches", "xla")


def default_conv(platform: str) -> str:
    """The convolution measured fastest on ``platform`` ("cpu", "gpu", "tpu").

    CPU: Winograd (training 1265 vs 1068 img/s for patches at one member; evaluation
    1.3-1.7x lax.conv). GPU: patches (see the module docstring). Other platforms:
    lax.conv, the one XLA optimises everywhere.
    """
    return {"cpu": "winograd", "gpu": "patches", "cuda": "patches"}.get(platform, "xla")


def check_conv(impl: str) -> str:
    if impl not in CONV_IMPLS:
        raise ValueError(f"conv must be one of {', '.join(CONV_IMPLS)}, got {impl!r}")
    return impl


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
# The transforms add and subtract inputs before multiplying, so the float rounding
# differs from a direct convolution's (it is not the same): for conv2 on float32 inputs
# the max error against float64 was 1.8e-6 for this path, 4.3e-6 for lax.conv and
# 4.6e-6 for patches (`benchmarks/levers.py`, float32_error, 5 draws), all far below
# training noise; in float64 the paths agree to 1e-12 (tests/test_model.py).
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


def conv3x3_pool(x: jax.Array, kernel: jax.Array, impl: str) -> jax.Array:
    """3x3 'SAME' convolution then 2x2 max-pool: (N, H, W, Cin) -> (N, H/2, W/2, Cout).

    Winograd pays off only with many input channels; with 3 (the first layer) its
    transforms cost more than they save, so that layer uses patches instead.
    """
    if impl == "winograd" and x.shape[-1] > 3:
        return conv3x3_pool_winograd(x, kernel)
    conv = conv3x3_xla if impl == "xla" else conv3x3_patches
    return max_pool_2x2(conv(x, kernel))

"""Weight initialisation schemes, chosen by name.

=================  ======================================  ===================
name               kernel                                  bias
=================  ======================================  ===================
``lecun``          truncated normal, var 1/fan_in          zeros  (Flax default)
``glorot``         truncated normal, var 2/(fan_in+out)    zeros
``he``             truncated normal, var 2/fan_in          zeros
``torch``          U(+-1/sqrt(fan_in))                     U(+-1/sqrt(fan_in))
``torch_xavier``   plain normal, var 2/(fan_in+fan_out)    U(+-1/sqrt(fan_in))
``torch_kaiming``  plain normal, var 2/fan_in              U(+-1/sqrt(fan_in))
=================  ======================================  ===================

``torch`` is PyTorch's default for Conv2d and Linear (kaiming_uniform with
a=sqrt(5) works out to U(+-1/sqrt(fan_in))). ``torch_xavier`` and
``torch_kaiming`` are what the seed's ``nn.init.xavier_normal_`` /
``kaiming_normal_`` on the weights give: untruncated normals over PyTorch's
default biases. JAX's ``glorot_normal`` / ``he_normal`` are *truncated* normals
of matched variance: a different distribution with the same std.

fan_in = in_channels * kh * kw and fan_out = out_channels * kh * kw for a
convolution kernel of shape (kh, kw, in, out); in and out for a dense kernel.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.nn import initializers

Initializer = initializers.Initializer

KERNEL_INITS: dict[str, Initializer] = {
    "lecun": initializers.lecun_normal(),
    "glorot": initializers.glorot_normal(),
    "he": initializers.he_normal(),
    "torch": initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform"),
    "torch_xavier": initializers.variance_scaling(1.0, "fan_avg", "normal"),
    "torch_kaiming": initializers.variance_scaling(2.0, "fan_in", "normal"),
}
INIT_NAMES = tuple(KERNEL_INITS)
_TORCH_BIAS = ("torch", "torch_xavier", "torch_kaiming")


def torch_bias_init(fan_in: int) -> Initializer:
    """PyTorch's default bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def kernel_init(name: str) -> Initializer:
    """The kernel initializer called ``name`` (one of INIT_NAMES)."""
    try:
        return KERNEL_INITS[name]
    except KeyError:
        choices = ", ".join(INIT_NAMES)
        raise ValueError(f"unknown initializer {name!r}; choose from {choices}") from None


def bias_init(name: str, fan_in: int) -> Initializer:
    """The bias initializer that goes with kernel scheme ``name``."""
    kernel_init(name)  # validates the name
    return torch_bias_init(fan_in) if name in _TORCH_BIAS else initializers.zeros

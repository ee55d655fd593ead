"""Weight initialisation schemes, chosen by name or by index as data.

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
default biases. ``lecun``, ``glorot`` and ``he`` are JAX's ``lecun_normal``,
``glorot_normal`` and ``he_normal``: normals *truncated* at two standard
deviations, rescaled to the stated variance: a different distribution with the
same std.

fan_in = in_channels * kh * kw and fan_out = out_channels * kh * kw for a
convolution kernel of shape (kh, kw, in, out); in and out for a dense kernel.

:func:`init_params` draws a whole network from one key with the scheme given as
an integer (which may differ per member under ``vmap``): three draws of every
kernel entry (truncated normal, normal, uniform) and one of every bias entry,
the scheme's distribution selected and scaled per layer. The same seed and
distribution give the same underlying draws whatever the scheme, so members that
differ only in their initializer start from draws that differ only in scale.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# name: (distribution, variance scale, fan, PyTorch's default bias), as
# jax.nn.initializers.variance_scaling(scale, fan, distribution).
SCHEMES: dict[str, tuple[str, float, str, bool]] = {
    "lecun": ("truncated_normal", 1.0, "fan_in", False),
    "glorot": ("truncated_normal", 1.0, "fan_avg", False),
    "he": ("truncated_normal", 2.0, "fan_in", False),
    "torch": ("uniform", 1.0 / 3.0, "fan_in", True),
    "torch_xavier": ("normal", 1.0, "fan_avg", True),
    "torch_kaiming": ("normal", 2.0, "fan_in", True),
}
INIT_NAMES = tuple(SCHEMES)
DISTRIBUTIONS = ("truncated_normal", "normal", "uniform")
# The std of a standard normal truncated to (-2, 2), as jax.nn.initializers uses.
TRUNCATED_STD = 0.87962566103423978


def check_init(name: str) -> str:
    """``name`` if it is a scheme, else a ValueError listing the schemes."""
    if name not in SCHEMES:
        raise ValueError(f"unknown initializer {name!r}; choose from {', '.join(INIT_NAMES)}")
    return name


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of a kernel: (kh, kw, in, out) or (in, out)."""
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def kernel_multiplier(name: str, shape: tuple[int, ...]) -> float:
    """What scheme ``name`` multiplies its unit draw by for a kernel of ``shape``.

    Unit draws: a normal truncated to (-2, 2), a standard normal, or U(-1, 1).
    """
    distribution, scale, fan, _ = SCHEMES[check_init(name)]
    fan_in, fan_out = fans(shape)
    variance = scale / (fan_in if fan == "fan_in" else (fan_in + fan_out) / 2)
    if distribution == "truncated_normal":
        return math.sqrt(variance) / TRUNCATED_STD
    if distribution == "normal":
        return math.sqrt(variance)
    return math.sqrt(3 * variance)  # U(-1, 1) has variance 1/3


def bias_bound(name: str, fan_in: int) -> float:
    """Half-width of scheme ``name``'s uniform bias, 0 for zero biases."""
    return 1.0 / math.sqrt(fan_in) if SCHEMES[check_init(name)][3] else 0.0


def init_params(key: jax.Array, template: Any, scheme: jax.Array | int | str) -> Any:
    """Parameters shaped like ``template`` ({layer: {"kernel", "bias"}} of shapes or
    arrays), drawn by ``scheme``: a name, or an index into ``INIT_NAMES`` (may be traced).

    Kernels and biases are float32 (the default float type).
    """
    if isinstance(scheme, str):
        scheme = INIT_NAMES.index(check_init(scheme))
    scheme = jnp.asarray(scheme, jnp.int32)
    layers = sorted(template)
    kernel_shapes = {layer: tuple(np.shape(template[layer]["kernel"])) for layer in layers}
    bias_shapes = {layer: tuple(np.shape(template[layer]["bias"])) for layer in layers}
    n_kernel = sum(math.prod(s) for s in kernel_shapes.values())
    n_bias = sum(math.prod(s) for s in bias_shapes.values())
    k_trunc, k_normal, k_uniform, k_bias = jax.random.split(key, 4)
    unit = {"truncated_normal": jax.random.truncated_normal(k_trunc, -2.0, 2.0, (n_kernel,)),
            "normal": jax.random.normal(k_normal, (n_kernel,)),
            "uniform": jax.random.uniform(k_uniform, (n_kernel,), minval=-1.0, maxval=1.0)}
    distribution = jnp.asarray([DISTRIBUTIONS.index(SCHEMES[n][0]) for n in INIT_NAMES])[scheme]
    draws = unit["truncated_normal"]
    for index, name in enumerate(DISTRIBUTIONS[1:], start=1):
        draws = jnp.where(distribution == index, unit[name], draws)
    bias_draws = jax.random.uniform(k_bias, (n_bias,), minval=-1.0, maxval=1.0)
    params, k_at, b_at = {}, 0, 0
    for layer in layers:
        k_shape, b_shape = kernel_shapes[layer], bias_shapes[layer]
        k_size, b_size = math.prod(k_shape), math.prod(b_shape)
        multiplier = jnp.asarray([kernel_multiplier(n, k_shape) for n in INIT_NAMES],
                                 jnp.float32)[scheme]
        bound = jnp.asarray([bias_bound(n, fans(k_shape)[0]) for n in INIT_NAMES],
                            jnp.float32)[scheme]
        kernel = draws[k_at:k_at + k_size].reshape(k_shape) * multiplier
        bias = bias_draws[b_at:b_at + b_size].reshape(b_shape)
        params[layer] = {"kernel": kernel,
                         "bias": jnp.where(bound > 0, bias * bound, jnp.zeros_like(bias))}
        k_at, b_at = k_at + k_size, b_at + b_size
    return params

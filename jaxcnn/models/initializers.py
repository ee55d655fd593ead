"""Weight initialisation schemes as Flax initializers, chosen by name or by index as data.

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

Every kernel initializer is ``jax.nn.initializers.variance_scaling(scale, mode,
distribution)`` with the scheme's arguments (drawn as a vector, the same values bit
for bit, see :func:`vector_variance_scaling`): ``lecun``, ``glorot`` and ``he`` are
exactly JAX's ``lecun_normal``, ``glorot_normal`` and ``he_normal``, normals
*truncated* at two standard deviations and rescaled to the stated variance.
``torch`` is PyTorch's default for Conv2d and Linear: ``kaiming_uniform_(a=sqrt(5))``
has gain sqrt(2 / (1 + 5)) and bound gain * sqrt(3 / fan_in) = 1 / sqrt(fan_in),
which is ``variance_scaling(1/3, "fan_in", "uniform")``. ``torch_xavier`` and
``torch_kaiming`` are what the seed's ``nn.init.xavier_normal_`` /
``kaiming_normal_`` give: untruncated normals (a different distribution from
glorot/he with the same std), over PyTorch's default biases.

fan_in = in_channels * kh * kw and fan_out = out_channels * kh * kw for a
convolution kernel of shape (kh, kw, in, out); in and out for a dense kernel.

A kernel initializer is a Flax initializer, ``(key, shape, dtype) -> array``. A
bias initializer needs the layer's fan_in (PyTorch's default bias depends on it,
which a bias's own shape does not tell), so it is a :data:`FanInInit`: a function
of fan_in returning a Flax initializer. Modules take both as attributes (see
``model.CNN``); :func:`kernel_init` and :func:`bias_init` build them from a
scheme's name, or from its index into :data:`INIT_NAMES`, which may be a traced
array: ``lax.switch`` then picks the scheme inside the compiled program, so one
program initializes members with different schemes.

Every branch of the switch draws from the same key, so schemes of one
distribution give the same underlying draw: from one seed, the lecun, glorot and
he kernels of a layer are scalar multiples of each other (likewise torch_xavier
and torch_kaiming).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.nn.initializers import Initializer, variance_scaling

# A bias initializer: fan_in of the layer -> Flax initializer of the bias.
FanInInit = Callable[[int], Initializer]


def vector_variance_scaling(scale: float, mode: str, distribution: str) -> Initializer:
    """``jax.nn.initializers.variance_scaling(scale, mode, distribution)`` for a kernel of
    shape (..., in, out), its random draw made as one vector and reshaped.

    The values are the same bit for bit (``tests/test_model.py`` checks every layer and
    scheme): jax.random's draws are reshape-invariant, element i's bits depending on i
    only. Only the compile time differs: XLA:CPU compiles a draw of a 4-D shape under
    ``vmap`` several times slower than a flat one (measured here, on the network's five
    kernels and six schemes: 58 s against 15 s on a loaded 2-core machine), and the
    members' init is compiled once per program.

    fan_in = in * receptive field and fan_out = out * receptive field, as jax computes
    them for its default axes (and as PyTorch does).
    """
    if mode not in ("fan_in", "fan_out", "fan_avg"):
        raise ValueError(f"mode must be fan_in, fan_out or fan_avg, got {mode!r}")

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        receptive = math.prod(shape[:-2])
        fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
        denominator = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}
        size = math.prod(shape)
        # On a vector with in_axis 0 and no out axis, variance_scaling's fan_in is the
        # vector's size: scaling by size / denominator gives scale / denominator.
        vector = variance_scaling(scale * size / denominator[mode], "fan_in", distribution,
                                  in_axis=0, out_axis=())
        return vector(key, (size,), dtype).reshape(shape)

    return init


def zeros_bias(fan_in: int) -> Initializer:
    """Flax's default bias, whatever the fan_in: positive zeros."""
    del fan_in  # Flax's default bias does not depend on it
    return jax.nn.initializers.zeros


def torch_bias(fan_in: int) -> Initializer:
    """PyTorch's default bias of Conv2d and Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / fan_in ** 0.5

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, minval=-bound, maxval=bound)

    return init


class Scheme(NamedTuple):
    """One initialisation scheme: ``variance_scaling(scale, mode, distribution)`` kernels
    and a bias initializer of fan_in."""

    scale: float
    mode: str
    distribution: str
    bias: FanInInit

    @property
    def kernel(self) -> Initializer:
        """The kernel initializer (a Flax initializer)."""
        return vector_variance_scaling(self.scale, self.mode, self.distribution)


SCHEMES: dict[str, Scheme] = {
    "lecun": Scheme(1.0, "fan_in", "truncated_normal", zeros_bias),
    "glorot": Scheme(1.0, "fan_avg", "truncated_normal", zeros_bias),
    "he": Scheme(2.0, "fan_in", "truncated_normal", zeros_bias),
    "torch": Scheme(1.0 / 3.0, "fan_in", "uniform", torch_bias),
    "torch_xavier": Scheme(1.0, "fan_avg", "normal", torch_bias),
    "torch_kaiming": Scheme(2.0, "fan_in", "normal", torch_bias),
}
INIT_NAMES = tuple(SCHEMES)
# A user's model may keep its own initializers (``modelfns.linen_fns``): the choice after
# the schemes, so every scheme keeps its index. The seed CNN's own are ``DEFAULT``'s.
OWN = "model"
INIT_CHOICES = (*INIT_NAMES, OWN)
DEFAULT = "lecun"  # Flax's own defaults: lecun_normal kernels, zero biases

SchemeRef = str | int | jax.Array  # a name, or an index into INIT_NAMES (may be traced)


def check_init(name: str) -> str:
    """``name`` if it is a scheme or ``OWN``, else a ValueError listing them."""
    if name not in INIT_CHOICES:
        raise ValueError(f"unknown initializer {name!r}; choose from {', '.join(INIT_CHOICES)}")
    return name


def _scheme_name(name: str) -> str:
    """The scheme ``name`` draws from: ``OWN`` is the default scheme's where a model's own
    initializers are these (the seed CNN)."""
    return DEFAULT if check_init(name) == OWN else name


def _index(scheme: int | jax.Array) -> jax.Array:
    """A () int32 index; a concrete Python int out of range is an error (lax.switch
    would silently clamp it)."""
    if isinstance(scheme, int) and not 0 <= scheme < len(INIT_NAMES):
        raise ValueError(f"initializer index {scheme} out of range 0..{len(INIT_NAMES) - 1}")
    return jnp.asarray(scheme, jnp.int32)


def kernel_init(scheme: SchemeRef) -> Initializer:
    """The Flax kernel initializer of ``scheme`` (a name, or an index, possibly traced)."""
    if isinstance(scheme, str):
        return SCHEMES[_scheme_name(scheme)].kernel
    index = _index(scheme)

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        # Closures, not operands: lax.switch's operands must be arrays, shape is static.
        branches = [lambda k, s=s: s.kernel(k, shape, dtype) for s in SCHEMES.values()]
        return jax.lax.switch(index, branches, key)

    return init


def bias_init(scheme: SchemeRef) -> FanInInit:
    """The bias initializer (a function of fan_in) of ``scheme``, a name or an index."""
    if isinstance(scheme, str):
        return SCHEMES[_scheme_name(scheme)].bias
    index = _index(scheme)

    def for_fan_in(fan_in: int) -> Initializer:
        def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
            branches = [lambda k, s=s: s.bias(fan_in)(k, shape, dtype) for s in SCHEMES.values()]
            return jax.lax.switch(index, branches, key)

        return init

    return for_fan_in

"""The CNN: shapes, parameter count, convolution paths, initializers as data, dropout."""

from __future__ import annotations

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.conv import conv3x3_patches, conv3x3_pool_winograd, conv3x3_xla, max_pool_2x2
from jaxcnn.initializers import INIT_NAMES
from jaxcnn.model import CNN, Network, count_params, dropout, init_params, param_shapes

X = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))


def apply(model: CNN, params, *args):
    """The forward pass, jitted (op by op, Winograd's many small ops take seconds)."""
    return jax.jit(lambda p, *a: model.apply({"params": p}, X, *a))(params, *args)


DEFAULT_NETWORK = Network()


def params_of(scheme: str = "lecun", seed: int = 0, network: Network = DEFAULT_NETWORK):
    return init_params(jax.random.key(seed), network, scheme)


def test_output_shape_and_parameter_count():
    params = params_of()
    assert count_params(params) == 324_970
    chex.assert_shape(params["conv1"]["kernel"], (3, 3, 3, 64))
    chex.assert_shape(params["fc1"]["kernel"], (512, 512))
    logits = apply(CNN(), params)
    chex.assert_shape(logits, (4, 10))
    assert logits.dtype == jnp.float32


def test_class_count_sets_the_last_layer():
    params = params_of(network=Network(num_classes=12))
    chex.assert_shape(params["fc2"]["kernel"], (512, 12))
    assert apply(CNN(Network(num_classes=12)), params).shape == (4, 12)


@pytest.mark.parametrize("impl", ["patches", "winograd"])
def test_convolution_impls_equal_lax_conv(impl):
    params = params_of("torch")
    ours, xla = CNN(conv=impl), CNN(conv="xla")
    np.testing.assert_allclose(apply(ours, params), apply(xla, params), rtol=1e-5, atol=1e-5)

    def loss(model, p):
        return model.apply({"params": p}, X).sum()

    g1 = jax.jit(jax.grad(lambda p: loss(ours, p)))(params)
    g2 = jax.jit(jax.grad(lambda p: loss(xla, p)))(params)
    chex.assert_trees_all_close(g1, g2, rtol=1e-4, atol=1e-5)


def test_winograd_conv_pool_is_exact_in_float64_and_close_in_float32():
    paths = [jax.jit(conv3x3_pool_winograd),
             jax.jit(lambda x, k: max_pool_2x2(conv3x3_xla(x, k))),
             jax.jit(lambda x, k: max_pool_2x2(conv3x3_patches(x, k)))]
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(0), (2, 8, 12, 5), jnp.float64)
        k = jax.random.normal(jax.random.key(1), (3, 3, 5, 7), jnp.float64)
        reference = paths[1](x, k)
        assert paths[0](x, k).shape == (2, 4, 6, 7)
        for path in (paths[0], paths[2]):
            np.testing.assert_allclose(path(x, k), reference, rtol=0, atol=1e-12)
        # In float32 no path is exact; each stays within float32 rounding of float64.
        x32, k32 = x.astype(jnp.float32), k.astype(jnp.float32)
        exact = paths[1](x32.astype(jnp.float64), k32.astype(jnp.float64))
        for path in paths:
            error = float(jnp.abs(path(x32, k32).astype(jnp.float64) - exact).max())
            assert 0 < error < 1e-5


FANS = {  # layer: (fan_in, fan_out) as PyTorch computes them
    "conv1": (27, 576), "conv2": (576, 576), "conv3": (576, 288),
    "fc1": (512, 512), "fc2": (512, 10),
}


def expected_std(scheme: str, fan_in: int, fan_out: int) -> float:
    return {
        "lecun": math.sqrt(1 / fan_in),
        "glorot": math.sqrt(2 / (fan_in + fan_out)),
        "he": math.sqrt(2 / fan_in),
        "torch": 1 / math.sqrt(fan_in) / math.sqrt(3),  # U(+-1/sqrt(fan_in))
        "torch_xavier": math.sqrt(2 / (fan_in + fan_out)),
        "torch_kaiming": math.sqrt(2 / fan_in),
    }[scheme]


@pytest.mark.parametrize("scheme", INIT_NAMES)
def test_initializer_std_per_layer_matches_formula(scheme):
    # Several seeds pooled, so the smallest layer (fc2: 5,120 weights) is measured well.
    kernels = {layer: [] for layer in FANS}
    for seed in range(4):
        params = params_of(scheme, seed)
        for layer in FANS:
            kernels[layer].append(np.asarray(params[layer]["kernel"]).ravel())
    for layer, (fan_in, fan_out) in FANS.items():
        values = np.concatenate(kernels[layer])
        assert abs(values.mean()) < 4 * values.std() / math.sqrt(values.size)
        assert values.std() == pytest.approx(expected_std(scheme, fan_in, fan_out), rel=0.05), layer


@pytest.mark.parametrize("scheme", INIT_NAMES)
def test_bias_rule(scheme):
    params = params_of(scheme)
    for layer, (fan_in, _) in FANS.items():
        bias = np.asarray(params[layer]["bias"])
        if scheme.startswith("torch"):  # PyTorch default bias U(+-1/sqrt(fan_in))
            bound = 1 / math.sqrt(fan_in)
            assert np.abs(bias).max() <= bound and np.abs(bias).max() > 0.5 * bound
        else:  # Flax default: zeros (positive zeros: checksums hash the bytes)
            assert not bias.any() and not np.signbit(bias).any()


@pytest.mark.parametrize("scheme,truncated", [("lecun", True), ("glorot", True), ("he", True),
                                              ("torch_xavier", False), ("torch_kaiming", False)])
def test_truncated_versus_plain_normal(scheme, truncated):
    """JAX's glorot/he are truncated at 2 std (before rescaling); torch's are not."""
    kernel = np.asarray(params_of(scheme)["fc1"]["kernel"]).ravel()
    z = np.abs(kernel) / kernel.std()
    if truncated:
        assert z.max() < 2.0 / 0.8796 + 0.01
    else:
        assert z.max() > 3.5  # 262,144 normal draws exceed 3.5 std about 120 times


def test_initializer_as_data_equals_the_named_scheme_under_vmap():
    """One program draws every member's scheme: the same weights as drawing each by name."""
    keys = jax.random.split(jax.random.key(5), len(INIT_NAMES))
    batched = jax.jit(jax.vmap(lambda k, i: init_params(k, Network(), i)))(
        keys, jnp.arange(len(INIT_NAMES)))
    for i, name in enumerate(INIT_NAMES):
        alone = init_params(keys[i], Network(), name)
        chex.assert_trees_all_equal(jax.tree.map(lambda x, i=i: x[i], batched), alone)
    assert jax.tree.map(lambda x: x.shape, param_shapes(Network())) == jax.tree.map(
        lambda x: x.shape, init_params(keys[0], Network(), 0))


def test_spatial_dropout_zeroes_whole_channels():
    x = jax.random.normal(jax.random.key(2), (4, 8, 8, 64)) + 3.0  # no zeros of its own
    after = dropout(x, 0.5, jax.random.key(3), broadcast_dims=(1, 2))
    kept = np.asarray(jnp.all(after != 0, axis=(1, 2)))  # (N, C)
    dropped = np.asarray(jnp.all(after == 0, axis=(1, 2)))
    assert (kept | dropped).all()  # every channel all kept or all zero
    np.testing.assert_allclose(np.asarray(after)[kept.nonzero()[0], :, :, kept.nonzero()[1]],
                               np.asarray(x / 0.5)[kept.nonzero()[0], :, :, kept.nonzero()[1]],
                               rtol=1e-6)
    assert 0.3 < kept.mean() < 0.7


def test_rate_zero_is_exactly_no_dropout_and_eval_ignores_rates():
    params = params_of()
    model = CNN(conv="xla")
    plain = apply(model, params)
    key = jax.random.key(0)
    # Traced rates of 0, as members carry them: bit for bit the network without dropout.
    zero = jax.jit(lambda p, r: model.apply({"params": p}, X, (r, r), key))(params, 0.0)
    np.testing.assert_array_equal(zero, plain)
    trained = apply(model, params, (0.3, 0.3), key)
    assert not np.allclose(trained, plain)
    # No key: evaluation mode, rates ignored.
    np.testing.assert_array_equal(apply(model, params, (0.3, 0.3)), plain)


def test_relu_after_only_conv1_changes_the_function():
    params = params_of()
    full = apply(CNN(conv="xla"), params)
    seed_dropout_model = apply(CNN(Network(relu_after=("conv1",)), conv="xla"), params)
    assert not np.allclose(full, seed_dropout_model)


def test_bad_network_and_conv_are_rejected():
    with pytest.raises(ValueError, match="unknown layers"):
        Network(relu_after=("conv9",))
    with pytest.raises(ValueError, match="num_classes"):
        Network(num_classes=1)
    with pytest.raises(ValueError, match="conv must be one of"):
        CNN(conv="fft").apply({"params": params_of()}, X)
    with pytest.raises(ValueError, match="unknown initializer"):
        init_params(jax.random.key(0), Network(), "xavier")

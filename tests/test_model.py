"""The CNN: shapes, parameter count, convolution paths, initializers, dropout."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.initializers import INIT_NAMES
from jaxcnn.model import CNN, ModelConfig, count_params

X = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))


def init_params(config: ModelConfig, seed: int = 0):
    return CNN(config).init(jax.random.key(seed), X[:1])["params"]


def test_output_shape_and_parameter_count():
    params = init_params(ModelConfig())
    assert count_params(params) == 324_970
    assert params["conv1"]["kernel"].shape == (3, 3, 3, 64)
    assert params["fc1"]["kernel"].shape == (512, 512)
    logits = CNN(ModelConfig()).apply({"params": params}, X)
    assert logits.shape == (4, 10) and logits.dtype == jnp.float32


@pytest.mark.parametrize("impl", ["patches", "winograd"])
def test_convolution_impls_equal_lax_conv(impl):
    params = init_params(ModelConfig(init="torch"))
    ours, xla = CNN(ModelConfig(conv_impl=impl)), CNN(ModelConfig(conv_impl="xla"))
    np.testing.assert_allclose(ours.apply({"params": params}, X),
                               xla.apply({"params": params}, X), rtol=1e-5, atol=1e-5)

    def loss(model, p):
        return model.apply({"params": p}, X).sum()

    g1 = jax.grad(lambda p: loss(ours, p))(params)
    g2 = jax.grad(lambda p: loss(xla, p))(params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), g1, g2)


def test_winograd_conv_pool_is_exact_in_float64():
    from jaxcnn.model import conv3x3_pool_winograd, conv3x3_xla, max_pool_2x2

    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(0), (2, 8, 12, 5), jnp.float64)
        k = jax.random.normal(jax.random.key(1), (3, 3, 5, 7), jnp.float64)
        ours = conv3x3_pool_winograd(x, k)
        reference = max_pool_2x2(conv3x3_xla(x, k))
        assert ours.shape == (2, 4, 6, 7)
        np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-12)


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
        params = init_params(ModelConfig(init=scheme), seed)
        for layer in FANS:
            kernels[layer].append(np.asarray(params[layer]["kernel"]).ravel())
    for layer, (fan_in, fan_out) in FANS.items():
        values = np.concatenate(kernels[layer])
        assert abs(values.mean()) < 4 * values.std() / math.sqrt(values.size)
        assert values.std() == pytest.approx(expected_std(scheme, fan_in, fan_out), rel=0.05), layer


@pytest.mark.parametrize("scheme", INIT_NAMES)
def test_bias_rule(scheme):
    params = init_params(ModelConfig(init=scheme))
    for layer, (fan_in, _) in FANS.items():
        bias = np.asarray(params[layer]["bias"])
        if scheme.startswith("torch"):  # PyTorch default bias U(+-1/sqrt(fan_in))
            bound = 1 / math.sqrt(fan_in)
            assert np.abs(bias).max() <= bound and np.abs(bias).max() > 0.5 * bound
        else:  # Flax default: zeros
            assert not bias.any()


@pytest.mark.parametrize("scheme,truncated", [("lecun", True), ("glorot", True), ("he", True),
                                              ("torch_xavier", False), ("torch_kaiming", False)])
def test_truncated_versus_plain_normal(scheme, truncated):
    """JAX's glorot/he are truncated at 2 std (before rescaling); torch's are not."""
    kernel = np.asarray(init_params(ModelConfig(init=scheme))["fc1"]["kernel"]).ravel()
    z = np.abs(kernel) / kernel.std()
    if truncated:
        assert z.max() < 2.0 / 0.8796 + 0.01
    else:
        assert z.max() > 3.5  # 262,144 normal draws exceed 3.5 std about 120 times


def test_spatial_dropout_zeroes_whole_channels():
    config = ModelConfig(spatial_dropout=0.5)
    model = CNN(config)
    params = init_params(config)
    _, state = model.apply({"params": params}, X, train=True, rngs={"dropout": jax.random.key(3)},
                           capture_intermediates=True)
    inter = state["intermediates"]
    before = jax.nn.relu(inter["conv2"]["__call__"][0])  # pooled conv2: (N, 8, 8, 64)
    after = inter["Dropout_0"]["__call__"][0]
    kept = np.asarray(jnp.all(after == 0, axis=(1, 2)) == 0)  # (N, C)
    scaled = np.asarray(before) / 0.5
    assert after.shape == (4, 8, 8, 64)
    for n in range(X.shape[0]):
        for c in range(64):
            expected = scaled[n, :, :, c] if kept[n, c] else 0 * scaled[n, :, :, c]
            np.testing.assert_allclose(after[n, :, :, c], expected, rtol=1e-6)
    assert 0.2 < kept.mean() < 0.8


def test_dropout_off_in_eval_mode_and_rate_zero():
    config = ModelConfig(spatial_dropout=0.3, dropout=0.3)
    params = init_params(config)
    plain = CNN(ModelConfig()).apply({"params": params}, X)
    np.testing.assert_array_equal(CNN(config).apply({"params": params}, X), plain)
    trained = CNN(config).apply({"params": params}, X, train=True,
                                rngs={"dropout": jax.random.key(0)})
    assert not np.allclose(trained, plain)


def test_relu_after_only_conv1_changes_the_function():
    params = init_params(ModelConfig())
    full = CNN(ModelConfig()).apply({"params": params}, X)
    seed_dropout_model = CNN(ModelConfig(relu_after=("conv1",))).apply({"params": params}, X)
    assert not np.allclose(full, seed_dropout_model)


def test_bad_model_config_is_rejected():
    with pytest.raises(ValueError, match="initializer"):
        ModelConfig(init="xavier")
    with pytest.raises(ValueError, match="dropout"):
        ModelConfig(dropout=1.0)

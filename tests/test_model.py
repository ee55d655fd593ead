"""The CNN: shapes, parameter count, convolution paths, initializers as data, dropout."""

from __future__ import annotations

import math

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.configs import Configuration
from jaxcnn.models import initializers, registry
from jaxcnn.models.conv import conv3x3_patches, conv3x3_pool_winograd, conv3x3_xla, max_pool_2x2
from jaxcnn.models.initializers import INIT_NAMES
from jaxcnn.models.model import (
    CNN,
    MEMBER,
    Network,
    conv_pool,
    count_params,
    dropout,
    init_params,
)
from jaxcnn.models.modelfns import variable_shapes

X = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))


def apply(model: CNN, params, *args):
    """The forward pass, jitted (op by op, Winograd's many small ops take seconds)."""
    return jax.jit(lambda p, *a: model.apply({"params": p}, X, *a))(params, *args)


DEFAULT_NETWORK = Network()


# One compiled init per network, the scheme an index traced as data: every scheme and
# seed below reuses it (op by op, each init would take seconds).
jit_init = jax.jit(init_params, static_argnums=1)


def params_of(scheme: str = "lecun", seed: int = 0, network: Network = DEFAULT_NETWORK):
    return jit_init(jax.random.key(seed), network, jnp.int32(INIT_NAMES.index(scheme)))


def test_output_shape_and_parameter_count():
    params = params_of()
    assert count_params(params) == 324_970
    chex.assert_shape(params["conv1"]["kernel"], (3, 3, 3, 64))
    chex.assert_shape(params["fc1"]["kernel"], (512, 512))
    logits = apply(CNN(), params)
    chex.assert_shape(logits, (4, 10))
    assert logits.dtype == jnp.float32


@pytest.mark.slow
def test_class_count_sets_the_last_layer():
    params = params_of(network=Network(num_classes=12))
    chex.assert_shape(params["fc2"]["kernel"], (512, 12))
    assert apply(CNN(Network(num_classes=12)), params).shape == (4, 12)


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_initializer_as_data_equals_the_named_scheme_under_vmap():
    """One program draws every member's scheme: the same weights as drawing each by name."""
    keys = jax.random.split(jax.random.key(5), len(INIT_NAMES))
    batched = jax.jit(jax.vmap(lambda k, i: init_params(k, Network(), i)))(
        keys, jnp.arange(len(INIT_NAMES)))
    # Each scheme by name, compiled too (op by op, XLA may round a normal's erf_inv
    # differently, by an ulp), all in one program to compile once.
    named = jax.jit(lambda ks: [init_params(ks[i], Network(), name)
                                for i, name in enumerate(INIT_NAMES)])(keys)
    for i, alone in enumerate(named):
        chex.assert_trees_all_equal(jax.tree.map(lambda x, i=i: x[i], batched), alone)
    assert jax.tree.map(lambda x: x.shape, variable_shapes(Network())[0]) == jax.tree.map(
        lambda x: x.shape, named[0])


def test_one_compiled_program_initializes_members_of_every_scheme():
    network = Network(num_classes=3, image_shape=(8, 8, 1))  # small: compiles faster
    keys = jnp.stack([jax.random.key(7)] * len(INIT_NAMES))  # one seed for every member
    order = jnp.arange(len(INIT_NAMES), dtype=jnp.int32)
    program = jax.jit(jax.vmap(lambda k, i: init_params(k, network, i))).lower(
        keys, order).compile()  # one executable: the calls below cannot recompile
    forward, backward = program(keys, order), program(keys, order[::-1])
    last = len(INIT_NAMES) - 1
    for i in range(len(INIT_NAMES)):
        member = jax.tree.map(lambda x, i=i: x[i], forward)
        # The scheme follows the index, not the member's position in the chunk.
        chex.assert_trees_all_equal(jax.tree.map(lambda x, i=i: x[last - i], backward), member)
        if i:  # and the schemes really differ
            assert not np.array_equal(member["fc1"]["kernel"], forward["fc1"]["kernel"][0])
    fc1_std = np.asarray(forward["fc1"]["kernel"]).reshape(len(INIT_NAMES), -1).std(axis=1)
    expected = [expected_std(name, 32, 512) for name in INIT_NAMES]  # fc1: 1*1*32 -> 512
    np.testing.assert_allclose(fc1_std, expected, rtol=0.05)


@pytest.mark.parametrize("family", [("lecun", "glorot", "he"), ("torch_xavier", "torch_kaiming")])
def test_schemes_of_one_distribution_scale_the_same_draw(family):
    """From one key, each layer's kernels differ by a scalar only: the std ratio."""
    draws = {name: params_of(name, seed=3) for name in family}
    first = family[0]
    for name in family[1:]:
        for layer, (fan_in, fan_out) in FANS.items():
            ratio = (expected_std(name, fan_in, fan_out)
                     / expected_std(first, fan_in, fan_out))
            np.testing.assert_allclose(draws[name][layer]["kernel"],
                                       ratio * draws[first][layer]["kernel"],
                                       rtol=2e-6, atol=1e-9, err_msg=f"{name} {layer}")


JAX_NAMED = {"lecun": jax.nn.initializers.lecun_normal(),
             "glorot": jax.nn.initializers.glorot_normal(),
             "he": jax.nn.initializers.he_normal()}


@pytest.mark.slow
def test_kernel_initializers_are_jax_variance_scaling_bit_for_bit():
    """The vector draw equals jax's own variance_scaling (and lecun/glorot/he_normal) on
    a convolution kernel (fan_in != fan_out) and a dense one."""
    key = jax.random.key(11)
    for name, scheme in initializers.SCHEMES.items():
        reference = jax.nn.initializers.variance_scaling(scheme.scale, scheme.mode,
                                                         scheme.distribution)
        for shape in [(3, 3, 64, 32), (512, 10)]:
            ours = initializers.kernel_init(name)(key, shape)
            np.testing.assert_array_equal(ours, reference(key, shape, jnp.float32))
            if name in JAX_NAMED:
                np.testing.assert_array_equal(ours, JAX_NAMED[name](key, shape, jnp.float32))


def test_modules_take_their_initializers_as_attributes():
    """Any Flax initializer goes in: the model declares its parameters with them."""
    network = Network(num_classes=3, image_shape=(8, 8, 1))
    model = CNN(network, conv="xla", kernel_init=jax.nn.initializers.ones,
                bias_init=lambda fan_in: jax.nn.initializers.constant(1.0 / fan_in))
    params = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))["params"]
    assert all(np.all(np.asarray(p["kernel"]) == 1) for p in params.values())
    for layer, fan_in in {"conv1": 9, "conv2": 576, "conv3": 576, "fc1": 32, "fc2": 512}.items():
        np.testing.assert_allclose(params[layer]["bias"], 1.0 / fan_in, rtol=1e-7)


class Linear(nn.Module):
    """A user's own model as its author wrote it: one dense layer, Flax's initializers."""

    num_classes: int

    @nn.compact
    def __call__(self, x):
        return nn.Dense(self.num_classes)(x.reshape(x.shape[0], -1))


def test_a_registered_model_is_initialized_by_the_member_scheme(monkeypatch):
    """A user's plain module keeps its own initializers under init "model", and is re-drawn
    by any other scheme: every kernel by the scheme, the bias beside it as the scheme says
    (of the kernel's fan-in), each member's scheme chosen by a traced index."""
    from jaxcnn.models.initializers import INIT_CHOICES
    from jaxcnn.models.modelfns import model_fns

    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))
    registry.register_model("linear", lambda network: Linear(network.num_classes))
    network = Network(num_classes=3, image_shape=(8, 8, 1), model="linear")
    assert "'linear'" in network.describe()
    fns = model_fns(network)
    names = ("lecun", "he", "torch", "model")
    keys = jnp.stack([jax.random.key(2)] * len(names))
    params, state = jax.jit(jax.vmap(fns.init))(
        keys, jnp.asarray([INIT_CHOICES.index(n) for n in names]))
    assert state == {} and not fns.stateful
    kernel, bias = params["Dense_0"]["kernel"], params["Dense_0"]["bias"]
    assert kernel.shape == (4, 64, 3)
    assert variable_shapes(network)[0]["Dense_0"]["bias"].shape == (3,)
    np.testing.assert_allclose(kernel[1], math.sqrt(2) * kernel[0], rtol=2e-6)  # he = 2 lecun
    assert not bias[:2].any() and 0 < np.abs(bias[2]).max() <= 1 / 8  # torch: U(+-1/sqrt(64))
    own = fns.init(jax.random.key(2), "model")[0]["Dense_0"]  # Flax's own draw, not re-drawn
    np.testing.assert_array_equal(kernel[3], own["kernel"])
    assert not np.allclose(kernel[3], kernel[0]) and not bias[3].any()


@pytest.mark.slow
@pytest.mark.parametrize("classes", [3, 12])
def test_28x28x1_images_init_and_apply(classes):
    network = Network(num_classes=classes, image_shape=(28, 28, 1))
    params = params_of("torch", network=network)
    chex.assert_shape(params["conv1"]["kernel"], (3, 3, 1, 64))
    chex.assert_shape(params["fc1"]["kernel"], (3 * 3 * 32, 512))  # 28 -> 14 -> 7 -> 3
    chex.assert_shape(params["fc2"]["kernel"], (512, classes))
    assert variable_shapes(network)[0]["fc1"]["kernel"].shape == (288, 512)
    images = jax.random.normal(jax.random.key(4), (2, 28, 28, 1))
    # Winograd, the CPU default: conv2 (14x14) takes its tiles, conv3 (7x7) the odd path.
    logits = jax.jit(lambda p, x: CNN(network, conv="winograd").apply({"params": p}, x))(
        params, images)
    chex.assert_shape(logits, (2, classes))
    assert np.isfinite(logits).all() and np.asarray(logits).std() > 0


@pytest.mark.slow
def test_odd_sizes_pool_as_torch_floor_mode():
    """A 7x7 map pools to 3x3 from its first 6 rows and columns, as MaxPool2d(2)."""
    x = jax.random.normal(jax.random.key(0), (2, 7, 7, 4))
    k = jax.random.normal(jax.random.key(1), (3, 3, 4, 5))
    full = np.asarray(conv3x3_xla(x, k))[:, :6, :6, :]
    expected = full.reshape(2, 3, 2, 3, 2, 5).max(axis=(2, 4))
    for impl in ("xla", "patches", "winograd"):
        np.testing.assert_allclose(conv_pool(x, k, impl), expected, rtol=1e-5, atol=1e-5)


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

    def with_rates(p, r, key):  # the member's rates in its "member" collection
        return model.apply({"params": p, MEMBER: {"spatial_dropout": r, "dropout": r}}, X, key)

    # Traced rates of 0, as members carry them: bit for bit the network without dropout.
    zero = jax.jit(with_rates)(params, 0.0, key)
    np.testing.assert_array_equal(zero, plain)
    trained = jax.jit(with_rates)(params, 0.3, key)
    assert not np.allclose(trained, plain)
    # No key: evaluation mode, rates ignored.
    np.testing.assert_array_equal(jax.jit(with_rates)(params, 0.3, None), plain)


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
    with pytest.raises(ValueError, match="out of range"):
        init_params(jax.random.key(0), Network(), len(INIT_NAMES))
    with pytest.raises(ValueError, match="image_shape"):
        Network(image_shape=(4, 4, 3))  # three 2x2 pools need at least 8x8
    assert Network(image_shape=[28, 28, 1]) == Network(image_shape=(28, 28, 1))  # from JSON


def test_dropout_rates_belong_to_the_seed_cnn_and_model_init_resolves(monkeypatch):
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))
    registry.register_model("linear", lambda network: Linear(network.num_classes))
    user = Network(model="linear")
    assert Configuration(user).init == "model" and Configuration(Network()).init == "lecun"
    assert Configuration(Network(), init="model").init == "lecun"  # the CNN's own: Flax's
    with pytest.raises(ValueError, match="its nn.Dropout layers"):
        Configuration(user, dropout=0.3)

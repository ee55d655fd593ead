"""Parity with PyTorch 2.13: the same weights and batches give the same training.

Semantics are proven in float64 (``jax.enable_x64``, ``torch.double()``): over
40 Adam steps losses and parameters agree to a relative 1e-10. In float32 the
two drift apart after a few steps (Adam turns rounding in near-zero gradients
into full-size updates), so float32 is compared over one step only.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

torch = pytest.importorskip("torch")

from benchmarks.torch_models import SeedCNN, SeedDropoutCNN, init_weights  # noqa: E402
from jaxcnn.configs import Configuration, hyperparams  # noqa: E402
from jaxcnn.models.model import CNN, Network, init_params  # noqa: E402
from jaxcnn.models.modelfns import seed_cnn_fns  # noqa: E402
from jaxcnn.optim import schedules  # noqa: E402
from jaxcnn.optim.adam import (  # noqa: E402
    OptimizerConfig,
    ScheduleConfig,
    member_optimizer,
    schedule_params,
)
from jaxcnn.training import train  # noqa: E402
from tests.torch_oracles import (  # noqa: E402
    flax_to_torch_arrays,
    make_schedules,
    torch_arrays_to_flax,
)

pytestmark = pytest.mark.torch

STEPS, BATCH, STEPS_PER_EPOCH = 40, 8, 10


def make_batches(dtype, steps=STEPS, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(BATCH, 32, 32, 3)).astype(dtype),
             rng.integers(0, 10, BATCH).astype(np.int64)) for _ in range(steps)]


def load_into_torch(model, params, dtype):
    model = model.to(dtype)  # first, so the copied weights keep every bit
    for name, layer in model.layers().items():
        arrays = flax_to_torch_arrays(params)[name]
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(np.array(arrays["weight"])))
            layer.bias.copy_(torch.from_numpy(np.array(arrays["bias"])))
    return model


def torch_optimizer(model, cfg: OptimizerConfig):
    kwargs = dict(lr=cfg.lr, betas=(cfg.b1, cfg.b2), eps=cfg.eps)
    if cfg.decay == "decoupled":
        return torch.optim.AdamW(model.parameters(), weight_decay=cfg.weight_decay, **kwargs)
    return torch.optim.Adam(model.parameters(), weight_decay=cfg.weight_decay, **kwargs)


def torch_scheduler(opt, cfg: OptimizerConfig, steps_per_epoch: int):
    """The PyTorch scheduler our ScheduleConfig stands for, and whether it steps per batch."""
    sc = cfg.schedule
    lr_sched = torch.optim.lr_scheduler
    if sc.kind == "constant":
        return None
    if sc.kind == "step":
        return lr_sched.StepLR(opt, step_size=int(sc.period), gamma=sc.gamma)
    if sc.kind == "exponential":
        if sc.staircase:
            assert sc.period == 1, "a staircase over several steps has no single torch scheduler"
            return lr_sched.ExponentialLR(opt, gamma=sc.gamma)
        return lr_sched.ExponentialLR(opt, gamma=sc.gamma ** (1 / sc.period))
    return lr_sched.CyclicLR(opt, base_lr=cfg.lr, max_lr=cfg.lr * sc.max_lr_factor,
                             step_size_up=sc.step_size_up, step_size_down=sc.step_size_down,
                             mode=sc.mode, gamma=sc.gamma, cycle_momentum=sc.cycle_momentum,
                             base_momentum=sc.base_momentum, max_momentum=sc.max_momentum)


def run_torch(model, cfg: OptimizerConfig, batches, dtype):
    opt = torch_optimizer(model, cfg)
    sched = torch_scheduler(opt, cfg, STEPS_PER_EPOCH)
    losses = []
    for i, (images, labels) in enumerate(batches):
        x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().to(dtype)
        loss = torch.nn.functional.cross_entropy(model(x), torch.from_numpy(labels))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if sched is not None and (not cfg.schedule.per_epoch or (i + 1) % STEPS_PER_EPOCH == 0):
            sched.step()
        losses.append(loss.item())
    arrays = {name: {"weight": layer.weight.detach().numpy(), "bias": layer.bias.detach().numpy()}
              for name, layer in model.layers().items()}
    return np.array(losses), torch_arrays_to_flax(arrays)


@functools.lru_cache(maxsize=4)
def member_step(network: Network):
    """The member train step, compiled once per network: hyperparameters are inputs."""
    return jax.jit(train.make_train_step(seed_cnn_fns(network, "xla")))


def run_jax(network: Network, params, cfg: OptimizerConfig, batches):
    """The member train step (the one training uses), the configuration's values as data."""
    hp = jax.tree.map(jnp.asarray, hyperparams(Configuration(network, optimizer=cfg),
                                               STEPS_PER_EPOCH))
    default_float = jnp.result_type(float)  # float64 under enable_x64
    hp = jax.tree.map(lambda x: x.astype(default_float) if x.dtype == jnp.float32 else x, hp)
    state = train.TrainState(params, member_optimizer(hp.optimizer).init(params),
                             jnp.zeros((), jnp.int32), hp)
    step = member_step(network)
    losses = []
    for images, labels in batches:
        batch = train.Batch(jnp.asarray(images), jnp.asarray(labels, jnp.int32),
                            jnp.ones(len(labels), bool))
        state, metrics = step(state, batch, None)
        losses.append(float(metrics["loss"]))
    return np.array(losses), jax.tree.map(np.asarray, state.params)


def relative_error(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


DEFAULT_NETWORK = Network()


def compare_training(opt_cfg: OptimizerConfig, network: Network = DEFAULT_NETWORK,
                     torch_model=SeedCNN, steps=STEPS):
    with jax.enable_x64(True):
        params = init_params(jax.random.key(0), network, "torch")
        params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), params)
        batches = make_batches(np.float64, steps)
        model = load_into_torch(torch_model(), params, torch.float64)
        torch_losses, torch_params = run_torch(model, opt_cfg, batches, torch.float64)
        jax_losses, jax_params = run_jax(network, params, opt_cfg, batches)
    assert relative_error(jax_losses, torch_losses) < 1e-10
    errors = jax.tree.map(relative_error, jax_params, torch_params)
    assert max(jax.tree.leaves(errors)) < 1e-10, errors
    # And training really moved the weights (a no-op on both sides would also agree).
    moved = jax.tree.map(relative_error, jax_params, jax.tree.map(np.asarray, params))
    assert min(jax.tree.leaves(moved)) > 1e-4


SCHEDULES = {
    "step_per_epoch": ScheduleConfig("step", per_epoch=True, period=2, gamma=0.1),
    "step_per_step": ScheduleConfig("step", per_epoch=False, period=20, gamma=0.1),
    "exponential_per_epoch": ScheduleConfig("exponential", per_epoch=True, gamma=0.5),
    "exponential_per_step": ScheduleConfig("exponential", per_epoch=False, gamma=0.5,
                                           period=STEPS_PER_EPOCH, staircase=False),
    "cyclic_triangular_per_step": ScheduleConfig("cyclic", step_size_up=7),
    "cyclic_triangular2_per_step": ScheduleConfig("cyclic", step_size_up=5, step_size_down=3,
                                                  mode="triangular2"),
    "cyclic_exp_range_per_step": ScheduleConfig("cyclic", step_size_up=6, mode="exp_range",
                                                gamma=0.97),
    "cyclic_per_epoch": ScheduleConfig("cyclic", per_epoch=True, step_size_up=1),
    "cyclic_no_momentum": ScheduleConfig("cyclic", step_size_up=7, cycle_momentum=False),
}


# The default tier (what CI runs) proves parity in float64 for plain Adam, coupled L2,
# AdamW and two schedules (about 1 s each after the first compile); the other schedules
# are in the slow tier.
def test_plain_adam_float64():
    compare_training(OptimizerConfig(lr=1e-3))


def test_coupled_l2_float64():
    compare_training(OptimizerConfig(lr=1e-3, weight_decay=0.01, decay="coupled"))


def test_adamw_float64():
    compare_training(OptimizerConfig(lr=1e-3, weight_decay=0.05, decay="decoupled"))


@pytest.mark.parametrize("name", [
    n if n in ("step_per_epoch", "cyclic_triangular_per_step") else
    pytest.param(n, marks=pytest.mark.slow) for n in SCHEDULES])
def test_schedules_float64(name):
    compare_training(OptimizerConfig(lr=1e-3, schedule=SCHEDULES[name]))


def test_seed_dropout_model_forward_eval_float64():
    network = Network(relu_after=("conv1",))
    with jax.enable_x64(True):
        params = init_params(jax.random.key(1), network, "torch")
        params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), params)
        images = make_batches(np.float64, 1)[0][0]
        ours = np.asarray(jax.jit(lambda p, x: CNN(network, conv="xla").apply(
            {"params": p}, x))(params, jnp.asarray(images)))
    model = load_into_torch(SeedDropoutCNN(0.3), params, torch.float64).eval()
    with torch.no_grad():
        theirs = model(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()).numpy()
    assert relative_error(ours, theirs) < 1e-10


def test_float32_one_step():
    params = init_params(jax.random.key(2), Network(), "torch")
    batches = make_batches(np.float32, 1)
    cfg = OptimizerConfig(lr=1e-3, weight_decay=0.003)
    model = load_into_torch(SeedCNN(), params, torch.float32)
    torch_losses, torch_params = run_torch(model, cfg, batches, torch.float32)
    jax_losses, jax_params = run_jax(Network(), params, cfg, batches)
    assert relative_error(jax_losses, torch_losses) < 1e-5
    errors = jax.tree.map(relative_error, jax_params, torch_params)
    assert max(jax.tree.leaves(errors)) < 1e-5, errors


def test_weight_conversion_round_trip():
    params = init_params(jax.random.key(3), Network(), "lecun")
    back = torch_arrays_to_flax(flax_to_torch_arrays(params))
    jax.tree.map(np.testing.assert_array_equal, back, jax.tree.map(np.asarray, params))


# --- initializers against torch's own, in distribution ---------------------------------

TORCH_INITS = {"torch": "default", "torch_xavier": "xavier", "torch_kaiming": "kaiming"}


def torch_layer_samples(scheme: str, seed: int) -> dict[str, np.ndarray]:
    torch.manual_seed(seed)
    model = init_weights(SeedCNN(), scheme)
    return {name: (layer.weight.detach().numpy().ravel(), layer.bias.detach().numpy().ravel())
            for name, layer in model.layers().items()}


def jax_layer_samples(scheme: str, seed: int) -> dict[str, np.ndarray]:
    params = init_params(jax.random.key(seed), Network(), scheme)
    return {name: (np.asarray(p["kernel"]).ravel(), np.asarray(p["bias"]).ravel())
            for name, p in params.items()}


@pytest.mark.parametrize("ours, theirs", list(TORCH_INITS.items()))
def test_initializers_match_torch_in_distribution(ours, theirs):
    # Fixed seeds: the KS p-values are deterministic, so the test cannot flake.
    mine, reference = jax_layer_samples(ours, 0), torch_layer_samples(theirs, 0)
    for layer in mine:
        for kind in (0, 1):  # weight, bias
            p = stats.ks_2samp(mine[layer][kind], reference[layer][kind]).pvalue
            assert p > 0.001, (layer, "weight" if kind == 0 else "bias", p)
        fan_in = {"conv1": 27, "conv2": 576, "conv3": 576, "fc1": 512, "fc2": 512}[layer]
        assert np.abs(mine[layer][1]).max() <= 1 / math.sqrt(fan_in)  # the bias rule


def test_jax_truncated_glorot_differs_from_torch_xavier():
    """Same variance, different distribution: the KS test tells them apart on fc1."""
    mine = jax_layer_samples("glorot", 0)["fc1"][0]
    reference = torch_layer_samples("xavier", 0)["fc1"][0]
    assert mine.std() == pytest.approx(reference.std(), rel=0.01)
    assert stats.ks_2samp(mine, reference).pvalue < 1e-6


# --- schedule values, step by step, for 5,000 steps ------------------------------------

VALUE_CASES = {
    "step_per_epoch": ScheduleConfig("step", per_epoch=True, period=2, gamma=0.1),
    "step_per_step": ScheduleConfig("step", period=2 * 782, gamma=0.1),
    "exponential_per_epoch": ScheduleConfig("exponential", per_epoch=True, gamma=0.5),
    "exponential_smooth": ScheduleConfig("exponential", gamma=0.5, period=782, staircase=False),
    "cyclic_seed": ScheduleConfig("cyclic"),  # base 1e-3, max 5e-3, up 2000: the seed's
    "cyclic_seed_per_epoch": ScheduleConfig("cyclic", per_epoch=True),
    "cyclic_triangular2": ScheduleConfig("cyclic", step_size_up=300, step_size_down=500,
                                         mode="triangular2"),
    "cyclic_exp_range": ScheduleConfig("cyclic", step_size_up=400, mode="exp_range",
                                       gamma=0.9995),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(VALUE_CASES))
def test_schedule_values_equal_torch_for_5000_steps(name):
    steps_per_epoch, total = 782, 5000
    cfg = OptimizerConfig(lr=1e-3, schedule=VALUE_CASES[name])
    param = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = torch.optim.Adam([param], lr=cfg.lr)
    sched = torch_scheduler(opt, cfg, steps_per_epoch)
    lrs, betas = [], []
    for i in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        betas.append(opt.param_groups[0]["betas"][0])
        param.grad = torch.zeros_like(param)
        opt.step()
        if not cfg.schedule.per_epoch or (i + 1) % steps_per_epoch == 0:
            sched.step()
    with jax.enable_x64(True):
        lr_schedule, b1_schedule = make_schedules(cfg, steps_per_epoch)
        counts = jnp.arange(total, dtype=jnp.int32)
        ours_lr = np.asarray(jax.jit(jax.vmap(lr_schedule))(counts))
        ours_b1 = (np.asarray(jax.vmap(b1_schedule)(counts)) if b1_schedule is not None
                   else np.full(total, 0.9))
        # The member family (what training runs), its parameters as arrays.
        params = jax.tree.map(jnp.asarray, schedule_params(cfg, steps_per_epoch))
        member_lr = np.asarray(jax.jit(jax.vmap(
            lambda c: schedules.learning_rate(c, params)))(counts))
        member_b1 = np.asarray(jax.jit(jax.vmap(lambda c: schedules.beta1(c, params)))(counts))
    for lr_values, b1_values in ((ours_lr, ours_b1), (member_lr, member_b1)):
        np.testing.assert_allclose(lr_values, lrs, rtol=1e-12, atol=0)
        np.testing.assert_allclose(b1_values, betas, rtol=1e-12, atol=0)
    assert len(set(lrs)) > 1  # the schedule really moved within the 5,000 steps

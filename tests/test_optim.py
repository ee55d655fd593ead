"""The member chain (hyperparameters as data) against each configuration's own Optax chain.

In float64, for 40 steps on the same batches, the member's train step with a
configuration's hyperparameter values must match the configuration's own chain
(Python constants, Optax's schedules, dropout at a fixed rate) to a relative
1e-10 in every loss and parameter. The member step is compiled once for all the
cases: its hyperparameters are inputs.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcnn.configs import Configuration, hyperparams
from jaxcnn.models.model import Network, init_params
from jaxcnn.models.modelfns import seed_cnn_fns
from jaxcnn.optim.adam import OptimizerConfig, ScheduleConfig, describe_chain
from jaxcnn.training import train
from tests.torch_oracles import build_optimizer, make_schedules

STEPS, BATCH, STEPS_PER_EPOCH = 40, 8, 10

CASES = {
    "l2": Configuration(optimizer=OptimizerConfig(weight_decay=0.01, decay="coupled")),
    "decoupled": Configuration(optimizer=OptimizerConfig(weight_decay=0.05, decay="decoupled")),
    "dropout_0": Configuration(init="torch"),
    "dropout": Configuration(spatial_dropout=0.3, dropout=0.2),
    "step_per_epoch": Configuration(optimizer=OptimizerConfig(
        schedule=ScheduleConfig("step", per_epoch=True, period=2, gamma=0.1))),
    "step_per_step": Configuration(optimizer=OptimizerConfig(
        schedule=ScheduleConfig("step", period=15, gamma=0.1))),
    "exponential_per_epoch": Configuration(optimizer=OptimizerConfig(
        schedule=ScheduleConfig("exponential", per_epoch=True, period=1, gamma=0.5))),
    "exponential_smooth": Configuration(optimizer=OptimizerConfig(
        schedule=ScheduleConfig("exponential", period=STEPS_PER_EPOCH, gamma=0.5,
                                staircase=False))),
    "cyclic": Configuration(optimizer=OptimizerConfig(
        schedule=ScheduleConfig("cyclic", step_size_up=7))),
    "cyclic_triangular2": Configuration(optimizer=OptimizerConfig(
        schedule=ScheduleConfig("cyclic", step_size_up=5, step_size_down=3,
                                mode="triangular2"))),
    "cyclic_exp_range_no_momentum": Configuration(optimizer=OptimizerConfig(
        schedule=ScheduleConfig("cyclic", step_size_up=6, mode="exp_range", gamma=0.97,
                                cycle_momentum=False))),
    "cyclic_per_epoch": Configuration(optimizer=OptimizerConfig(
        schedule=ScheduleConfig("cyclic", per_epoch=True, step_size_up=1))),
}


def batches(steps: int = STEPS) -> list[train.Batch]:
    rng = np.random.default_rng(0)
    return [train.Batch(jnp.asarray(rng.normal(size=(BATCH, 32, 32, 3))),
                        jnp.asarray(rng.integers(0, 10, BATCH), jnp.int32),
                        jnp.ones(BATCH, bool)) for _ in range(steps)]


def to_float64(tree):
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float64)
                        if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating) else x, tree)


def relative_error(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


# A single step, no loop: lax.conv is fast and exact in float64.
MODEL = seed_cnn_fns(Network(), "xla")


@pytest.fixture(scope="module")
def member_step():
    return jax.jit(train.make_train_step(MODEL))


def reference_run(config: Configuration, params, data: list[train.Batch], keys):
    """The configuration's own chain and fixed dropout rates, step by step."""
    tx = build_optimizer(config.optimizer, STEPS_PER_EPOCH)
    rates = {"spatial_dropout": config.spatial_dropout, "dropout": config.dropout}

    @jax.jit
    def step(params, opt_state, batch, key):
        def loss_fn(p):
            return train.masked_loss(MODEL, p, {}, batch, rates, key)[0]

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    opt_state, losses = tx.init(params), []
    for batch, key in zip(data, keys):
        params, opt_state, loss = step(params, opt_state, batch, key)
        losses.append(float(loss))
    return np.array(losses), params


# Each kind of hyperparameter in the default run; the other schedule variants in the slow one.
DEFAULT_TIER = ("l2", "decoupled", "dropout_0", "dropout", "step_per_step", "exponential_smooth",
                "cyclic")


@pytest.mark.parametrize("name", [n if n in DEFAULT_TIER else
                                  pytest.param(n, marks=pytest.mark.slow) for n in CASES])
@pytest.mark.slow
def test_member_chain_equals_the_configurations_own_chain_float64(name, member_step):
    config = CASES[name]
    with jax.enable_x64(True):
        params = to_float64(init_params(jax.random.key(1), Network(), config.init))
        data = batches()
        keys = [jax.random.fold_in(jax.random.key(9), i) for i in range(STEPS)]
        ref_losses, ref_params = reference_run(config, params, data, keys)
        hp = to_float64(jax.tree.map(jnp.asarray, hyperparams(config, STEPS_PER_EPOCH)))
        state = train.TrainState(params, None, jnp.zeros((), jnp.int32), hp)
        from jaxcnn.optim.adam import member_optimizer

        state = state._replace(opt_state=member_optimizer(hp.optimizer).init(params))
        losses, applied = [], []
        for batch, key in zip(data, keys):
            state, metrics = member_step(state, batch, key)
            losses.append(float(metrics["loss"]))
            applied.append(float(metrics["learning_rate"]))
    assert relative_error(losses, ref_losses) < 1e-10
    errors = jax.tree.map(relative_error, state.params, ref_params)
    assert max(jax.tree.leaves(errors)) < 1e-10, errors
    # Training really moved the weights (a no-op on both sides would also agree).
    moved = jax.tree.map(relative_error, state.params, params)
    assert min(jax.tree.leaves(moved)) > 1e-4
    # The applied rate read from the optimizer state is the schedule's.
    with jax.enable_x64(True):
        lr, _ = make_schedules(config.optimizer, STEPS_PER_EPOCH)
        expected = [float(lr(jnp.asarray(i))) for i in range(STEPS)]
    np.testing.assert_allclose(applied, expected, rtol=1e-12)


@pytest.mark.slow
def test_zero_rates_and_decays_change_nothing_bit_for_bit_float32():
    """A member without dropout or decay still runs those ops: dropout with rate 0 keeps
    every activation (x / 1) and a decay of 0 adds 0 * params, so its gradients and
    updates equal those of the network and chain without them, bit for bit."""
    params = init_params(jax.random.key(1), Network(), "lecun")
    batch = batches(1)[0]
    key = jax.random.key(3)

    def grads(rates):
        return jax.jit(jax.grad(lambda p, r: train.masked_loss(MODEL, p, {}, batch, r, key)[0]))(
            params, rates)

    with_ops = grads({"spatial_dropout": jnp.float32(0.0), "dropout": jnp.float32(0.0)})
    without = jax.jit(jax.grad(lambda p: train.masked_loss(MODEL, p, {}, batch, None, None)[0]))(
        params)
    chex.assert_trees_all_equal(with_ops, without)

    from jaxcnn.optim.adam import member_optimizer, member_values

    values = jax.tree.map(jnp.float32, member_values(OptimizerConfig(), STEPS_PER_EPOCH))
    values = values._replace(schedule=values.schedule._replace(
        kind=jnp.int32(0), unit=jnp.int32(1)))
    no_decay = optax.inject_hyperparams(
        lambda learning_rate, b1, b2, eps: optax.chain(
            optax.scale_by_adam(b1, b2, eps), optax.scale_by_learning_rate(learning_rate)))(
        learning_rate=values.schedule.lr, b1=values.schedule.b1, b2=values.b2, eps=values.eps)

    @jax.jit
    def updates(g):
        member, plain = member_optimizer(values), no_decay
        u1, _ = member.update(g, member.init(params), params)
        u2, _ = plain.update(g, plain.init(params), params)
        return u1, u2

    u1, u2 = updates(with_ops)
    chex.assert_trees_all_equal(u1, u2)


def test_describe_chain_follows_the_chain():
    text = describe_chain(OptimizerConfig(weight_decay=0.003))
    assert text.startswith("add_decayed_weights(weight_decay=0.003) -> scale_by_adam(")
    decoupled = describe_chain(OptimizerConfig(weight_decay=0.01, decay="decoupled"))
    assert "scale_by_adam(" in decoupled.split("add_decayed_weights")[0]
    assert "add_decayed" not in describe_chain(OptimizerConfig())
    cyclic = describe_chain(OptimizerConfig(schedule=ScheduleConfig("cyclic")))
    assert "b1=cyclic" in cyclic and "CyclicLR" in cyclic


@pytest.mark.parametrize("kwargs, message", [
    (dict(lr=0), "lr must be a positive number"),
    (dict(b1=1.0), "b1 must be in"),
    (dict(decay="l1"), "decay must be"),
    (dict(weight_decay=-1), "weight_decay must be >= 0"),
])
def test_bad_optimizer_config_is_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        OptimizerConfig(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    (dict(kind="cosine"), "schedule kind"),
    (dict(kind="step", period=0), "period must be a positive number"),
    (dict(kind="cyclic", mode="zigzag"), "mode must be one of"),
    (dict(kind="cyclic", step_size_up=-3), "step_size_up"),
    (dict(kind="cyclic", max_lr_factor=0.5), "max_lr"),
    (dict(kind="cyclic", base_momentum=0.95), "max_momentum"),
])
def test_bad_schedule_config_is_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ScheduleConfig(**kwargs)


# --- the registries: schedules and regularizers as data ---------------------------------

@pytest.fixture
def fresh_registries(monkeypatch):
    """The schedule and regularizer registries as they are, restored after the test."""
    from jaxcnn.optim import regularizers, schedules

    monkeypatch.setattr(schedules, "_REGISTRY", dict(schedules._REGISTRY))
    monkeypatch.setattr(regularizers, "_REGISTRY", dict(regularizers._REGISTRY))


def test_a_registered_schedule_runs_beside_the_built_ins_in_one_program(fresh_registries):
    from jaxcnn.configs import stack
    from jaxcnn.optim import schedules

    schedules.register_schedule(
        "halving", lambda step, p: (p["lr"] * 0.5 ** jnp.floor(step / p["every"]), p["b1"] / 2),
        {"every": 3.0})
    configs = [OptimizerConfig(lr=0.1, schedule=ScheduleConfig("halving", params={"every": 2})),
               OptimizerConfig(lr=0.1), OptimizerConfig(lr=0.1, schedule=ScheduleConfig(
                   "step", period=4, gamma=0.1))]
    members = stack([hyperparams(Configuration(optimizer=c), 5).optimizer.schedule
                     for c in configs])
    counts = jnp.arange(8)
    lr, b1 = jax.jit(jax.vmap(jax.vmap(schedules.evaluate, (0, None)), (None, 0)))(counts,
                                                                                   members)
    np.testing.assert_allclose(lr[0], 0.1 * 0.5 ** (np.arange(8) // 2), rtol=1e-6)
    np.testing.assert_allclose(b1[0], 0.45, rtol=1e-6)
    np.testing.assert_array_equal(lr[1], np.float32(0.1))  # the base rate, exactly
    np.testing.assert_allclose(lr[2], 0.1 * 0.1 ** (np.arange(8) // 4), rtol=1e-6)
    np.testing.assert_allclose(b1[1:], 0.9, rtol=1e-7)
    assert "halving(lr=0.1, every=2)" in describe_chain(configs[0])


@pytest.mark.parametrize("kwargs, message", [
    (dict(kind="halving2", params={"evry": 2}), "has no parameter"),
    (dict(kind="halving2", params={"every": float("nan")}), "finite number"),
    (dict(kind="step", params={"every": 2}), "PyTorch-named fields"),
])
def test_bad_registered_schedule_config_is_rejected(fresh_registries, kwargs, message):
    from jaxcnn.optim import schedules

    schedules.register_schedule("halving2", lambda step, p: p["lr"], {"every": 3.0})
    with pytest.raises(ValueError, match=message):
        ScheduleConfig(**kwargs)


def test_schedule_registration_is_checked(fresh_registries):
    from jaxcnn.optim import schedules

    with pytest.raises(ValueError, match="already registered"):
        schedules.register_schedule("cyclic", lambda step, p: p["lr"])
    with pytest.raises(ValueError, match="given to every schedule"):
        schedules.register_schedule("mine", lambda step, p: p["lr"], {"lr": 1.0})
    with pytest.raises(ValueError, match="at most"):
        schedules.register_schedule("big", lambda step, p: p["lr"],
                                    {f"p{i}": 1.0 for i in range(schedules.MAX_PARAMS + 1)})


@pytest.mark.slow
def test_a_penalty_term_adds_its_gradient_times_the_strength_before_adam(fresh_registries):
    """An L1 term registered from outside: at strength 0 the chain's updates are the
    built-in chain's bit for bit; at strength s the gradient entering Adam gains
    s * sign(w), which the first Adam update shows as a changed direction."""
    from jaxcnn.optim import regularizers
    from jaxcnn.optim.adam import member_optimizer, member_values

    params = {"w": jnp.array([0.5, -2.0, 3.0]), "b": jnp.array([1.0])}
    grads = {"w": jnp.array([1e-3, 1e-3, -1e-3]), "b": jnp.array([0.0])}

    def first_update(strengths, register):
        if register:
            regularizers.register_regularizer("l1", term=lambda p: sum(
                jnp.abs(x).sum() for x in jax.tree.leaves(p)))
        values = jax.tree.map(jnp.asarray, member_values(OptimizerConfig(), 1, strengths))
        tx = member_optimizer(values)
        return tx.update(grads, tx.init(params), params)[0]

    plain = first_update({}, register=False)
    off = first_update({"l1": 0.0}, register=True)
    chex.assert_trees_all_equal(off, plain)
    on = first_update({"l1": 0.01}, register=False)
    # Adam's first update is -lr * sign(g): g + 0.01 * sign(w) flips the first weight's.
    np.testing.assert_allclose(on["w"], -1e-3 * np.sign([1e-3 + 0.01, 1e-3 - 0.01, -1e-3
                                                         + 0.01]), rtol=1e-4)
    np.testing.assert_allclose(on["b"], -1e-3, rtol=1e-4)  # sign(1.0) * 0.01 moves it too


def test_every_study_configuration_stacks_into_one_member_structure():
    """The hyperparameters of every configuration (augmentation, schedules, decays,
    dropout) have one pytree structure and dtype: one compiled program per network."""
    from jaxcnn.configs import stack
    from jaxcnn.experiment import Experiment
    from jaxcnn.studies import STUDIES, StudyContext

    ctx = StudyContext(Experiment(epochs=2), steps_per_epoch=7)
    configs = [c for study in STUDIES.values() for c in study.build_configs(ctx).values()]
    assert any(dict(c.regularizers).get("augment") for c in configs)
    trees = [hyperparams(c, 7) for c in configs]
    assert len({jax.tree.structure(t) for t in trees}) == 1
    stacked = stack(trees)
    assert {leaf.shape for leaf in jax.tree.leaves(stacked)} == {(len(configs),)}

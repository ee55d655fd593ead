"""Members: batching equivalence, the epoch's order and masking, compile-once, dropout keys."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.configs import Configuration, hyperparams, stack
from jaxcnn.models.model import Network
from jaxcnn.models.modelfns import seed_cnn_fns
from jaxcnn.optim.adam import OptimizerConfig, ScheduleConfig, member_optimizer
from jaxcnn.training import train
from jaxcnn.training.batching import over_members
from jaxcnn.training.members import Member
from jaxcnn.training.runner import RunSettings, train_members
from tests.chunks import finished_members
from tests.conftest import TINY_BATCH, TINY_TRAIN, count_compiles

STEPS = -(-TINY_TRAIN // TINY_BATCH)
DEFAULT_NET = Network()
PARITY_NET = Network(relu_after=("conv1",))  # the seed's dropout model: its own group

CONFIGS = {
    "plain": Configuration(),
    "l2": Configuration(optimizer=OptimizerConfig(weight_decay=1e-3)),
    "dropout": Configuration(spatial_dropout=0.3, dropout=0.3),
    "cyclic_he": Configuration(init="he", optimizer=OptimizerConfig(
        schedule=ScheduleConfig("cyclic", step_size_up=3))),
}
PARITY_CONFIGS = {"parity_dropout": Configuration(PARITY_NET, "torch", spatial_dropout=0.3,
                                                  dropout=0.3)}


def members_of(configs: dict, seeds=(0, 1)) -> list[Member]:
    return [Member(name, seed, hyperparams(c, STEPS)) for name, c in configs.items()
            for seed in seeds]


def run(network, members, data, batching, width, workers=1, epochs=2, programs=None) -> dict:
    settings = RunSettings(epochs, TINY_BATCH, batching, "winograd", workers, width)
    results = finished_members(train_members(network, members, data, settings,
                                             programs=programs))
    return {r.member.key: r for r in results}


def assert_same_member(a, b):
    chex.assert_trees_all_equal(a.params, b.params)
    assert a.record == b.record and a.schedule == b.schedule


@pytest.mark.parametrize("network, configs", [
    (DEFAULT_NET, CONFIGS),
    pytest.param(PARITY_NET, PARITY_CONFIGS, marks=pytest.mark.slow, id="parity_network")])
@pytest.mark.slow
def test_member_alone_equals_member_in_any_cpu_batch_bit_for_bit(tiny_data, network, configs,
                                                                 programs):
    """map (lax.map inside one program) and threads (one member per worker, two at once)
    run each member's own computation: the same bits as training it alone."""
    members = members_of(configs)
    in_map = run(network, members, tiny_data, "map", width=len(members), programs=programs)
    in_threads = run(network, members, tiny_data, "threads", width=1, workers=2,
                     programs=programs)
    for member in (members[1], members[-1]):
        alone = run(network, [member], tiny_data, "threads", width=1,
                    programs=programs)[member.key]
        assert_same_member(in_map[member.key], alone)
        assert_same_member(in_threads[member.key], alone)
    # The members really differ (test losses: on tiny data every accuracy can sit at chance).
    losses = {r.record["test_loss"] for r in in_map.values()}
    assert len(losses) > 1


@pytest.mark.slow
def test_vmap_matches_a_member_alone_to_float_rounding(tiny_data):
    """vmap batches the members' matmuls, whose float32 sums may round differently: one
    step's losses and gradients agree to float32 noise, not bit for bit. (Over many steps
    Adam turns rounding in near-zero gradients into full-size updates, so whole runs are
    compared statistically, never digit by digit.)"""
    configs = list(CONFIGS.values())
    hp = stack([hyperparams(c, STEPS) for c in configs])
    keys = train.stack_seed_keys([0, 1, 2, 3])
    fns = seed_cnn_fns(DEFAULT_NET)
    states = jax.jit(over_members(lambda k, h: train.init_state(k, fns, h), "vmap", 2))(keys, hp)
    batch = train.Batch(train.normalize(tiny_data.train.images[:TINY_BATCH], tiny_data.norm),
                        tiny_data.train.labels[:TINY_BATCH], jnp.ones(TINY_BATCH, bool))
    model = seed_cnn_fns(DEFAULT_NET, "patches")  # any convolution shows it; patches compiles fast

    def grads(state, key):
        loss_fn = lambda p: train.masked_loss(model, p, {}, batch, state.hparams.values,  # noqa: E731
                                              key)[0]
        return jax.value_and_grad(loss_fn)(state.params)

    dropout_keys = jax.vmap(lambda k: jax.random.fold_in(k, 0))(keys.dropout)
    batched = jax.jit(jax.vmap(grads))(states, dropout_keys)
    one = jax.jit(grads)
    for i in range(len(configs)):
        loss, g = one(jax.tree.map(lambda x, i=i: x[i], states), dropout_keys[i])
        np.testing.assert_allclose(batched[0][i], loss, rtol=1e-6)
        chex.assert_trees_all_close(jax.tree.map(lambda x, i=i: x[i], batched[1]), g,
                                    rtol=1e-4, atol=1e-6)


def test_epoch_visits_every_example_once_and_masks_the_last_batch():
    """Run the real epoch on N=10, B=4 with a recording model: each step's images, and
    its loss against the mean over that step's real examples."""
    n, b = 10, 4
    seen: list[tuple[np.ndarray, float]] = []

    class Recorder:
        """Logits [w x, 0, ..., 0] of image value x: each example has its own loss."""

        stateful = False

        def apply(self, params, state, images, values=None, key=None):
            x, w = images[:, 0, 0, 0], params["w"]
            jax.debug.callback(lambda v, w: seen.append((np.asarray(v), float(w))), x, w,
                               ordered=True)
            return jnp.zeros((len(x), 10)).at[:, 0].set(x * w), state

    images = jnp.broadcast_to(jnp.arange(n, dtype=jnp.uint8)[:, None, None, None],
                              (n, 32, 32, 3))
    data = train.ImageData(images, jnp.zeros(n, jnp.int32))
    norm = train.Normalizer(jnp.zeros(3), jnp.full(3, 1 / 255))  # normalised value = pixel
    hp = jax.tree.map(jnp.asarray, hyperparams(Configuration(), 3))
    params = {"w": jnp.float32(1.0)}
    state = train.TrainState(params, member_optimizer(hp.optimizer).init(params),
                             jnp.int32(0), hp)
    epoch = jax.jit(train.make_train_epoch(Recorder(), num_train=n, batch_size=b))
    keys = train.seed_keys(0)
    orders = []
    for e in range(2):
        seen.clear()
        state, metrics = epoch(state, keys, data, norm, jnp.int32(e), jnp.int32(0))
        jax.effects_barrier()
        steps = np.array([v for v, _ in seen])  # (T, B) image values = example indices
        assert steps.shape == (3, b)
        real = np.concatenate([steps[0], steps[1], steps[2][:n % b]])
        assert sorted(real.tolist()) == list(range(n))  # every example exactly once
        assert (steps[2][n % b:] == 0).all()  # padding slots point at example 0...
        w = seen[2][1]  # ...and the last step's loss averages its real examples only
        expected = np.log1p(9 * np.exp(-w * steps[2][:n % b].astype(np.float64))).mean()
        assert float(metrics["loss"][2]) == pytest.approx(expected, rel=1e-5)
        orders.append(real)
    assert not np.array_equal(orders[0], orders[1])  # reshuffled every epoch


def test_training_compiles_once_whatever_the_configurations(tiny_data, programs):
    """After a warm-up, more epochs and other configurations of the same network (their
    hyperparameters are data) compile nothing, given the same programs."""
    run(DEFAULT_NET, members_of({"plain": CONFIGS["plain"]}, seeds=(0,)), tiny_data, "threads",
        1, epochs=1, programs=programs)  # warm-up (or compiled by another test already)
    with count_compiles() as compiles:
        others = {"glorot_l2": Configuration(init="glorot", optimizer=OptimizerConfig(
            lr=3e-3, weight_decay=1e-2, decay="decoupled")), **CONFIGS}
        results = run(DEFAULT_NET, members_of(others, seeds=(3, 4)), tiny_data, "threads", 1,
                      workers=2, epochs=3, programs=programs)
    assert len(results) == 2 * len(others)
    assert all(len(r.record["history"]["train_loss"]) == 3 for r in results.values())
    assert compiles == []


@pytest.mark.slow
def test_each_member_draws_its_own_dropout_masks(tiny_data):
    """Same weights and data order, different dropout keys: different results (flax#4973);
    with dropout off the dropout key is unused, so the two must agree exactly."""
    model = seed_cnn_fns(DEFAULT_NET, "patches")
    epoch = jax.jit(over_members(train.make_train_epoch(model, num_train=TINY_TRAIN,
                                                        batch_size=TINY_BATCH), "vmap", 2))
    base = train.seed_keys(0)
    keys = train.SeedKeys(jnp.stack([base.init] * 2), jnp.stack([base.data] * 2),
                          jnp.stack([base.dropout, train.seed_keys(1).dropout]))
    for config, differ in ((CONFIGS["dropout"], True), (CONFIGS["plain"], False)):
        hp = stack([hyperparams(config, STEPS)] * 2)
        states = jax.vmap(lambda k, h: train.init_state(k, seed_cnn_fns(DEFAULT_NET), h))(keys, hp)
        states, _ = epoch(states, keys, tiny_data.train, tiny_data.norm, jnp.int32(0),
                          jnp.int32(0))
        fc2 = np.asarray(states.params["fc2"]["kernel"])
        assert (not np.allclose(fc2[0], fc2[1])) if differ else np.array_equal(fc2[0], fc2[1])


@pytest.mark.slow
def test_masked_partial_batch_equals_mean_over_real_examples():
    model = seed_cnn_fns(DEFAULT_NET, "xla")
    hp = jax.tree.map(jnp.asarray, hyperparams(Configuration(), 7))
    state = train.init_state(train.seed_keys(0), seed_cnn_fns(DEFAULT_NET), hp)
    step = jax.jit(train.make_train_step(model))
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.normal(size=(8, 32, 32, 3)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 10, 8), jnp.int32)
    padded, m1 = step(state, train.Batch(images, labels, jnp.arange(8) < 3), None)
    real, m2 = step(state, train.Batch(images[:3], labels[:3], jnp.ones(3, bool)), None)
    np.testing.assert_allclose(m1["loss"], m2["loss"], rtol=1e-6)
    chex.assert_trees_all_close(padded.params, real.params, rtol=1e-5, atol=1e-7)
    assert float(m1["learning_rate"]) == pytest.approx(1e-3)


def test_optimizer_state_records_the_applied_schedule():
    hp = jax.tree.map(jnp.asarray, hyperparams(CONFIGS["cyclic_he"], STEPS))
    tx = member_optimizer(hp.optimizer)
    params = {"w": jnp.ones(3)}
    state = tx.init(params)
    rates = []
    for _ in range(7):
        _, state = tx.update({"w": jnp.ones(3)}, state, params)
        rates.append(float(state.hyperparams["learning_rate"]))
    # Triangular, up 3 steps from 1e-3 to 5e-3 and down again: 1, 2.33, 3.67, 5, 3.67, ...
    np.testing.assert_allclose(rates, np.array([1, 7 / 3, 11 / 3, 5, 11 / 3, 7 / 3, 1]) * 1e-3,
                               rtol=1e-6)
    # beta1 cycles against the rate: 0.9 at the base rate, 0.8 at the peak (step 4).
    assert float(state.hyperparams["b1"]) == pytest.approx(0.9)

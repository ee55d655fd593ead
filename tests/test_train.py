"""The trainer: seed batching, masking, dropout keys, compile-once, learning."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcnn import train
from jaxcnn.data import prepare_data
from jaxcnn.data.synthetic import make_synthetic
from jaxcnn.model import CNN, ModelConfig
from jaxcnn.optim import OptimizerConfig, build_optimizer
from jaxcnn.runner import DeviceData, RunConfig, TrainSettings, train_config


@pytest.fixture(scope="module")
def tiny_data() -> DeviceData:
    # 100 training images with batch 16: 7 steps, the last one partial (4 images).
    ds = make_synthetic(300, 50)  # val and test both 50: one eval shape
    return DeviceData(prepare_data(ds, val_size=50, train_examples=100))


DROPOUT_RUN = RunConfig(ModelConfig(spatial_dropout=0.3, dropout=0.3),
                        OptimizerConfig(weight_decay=1e-3))


def run(data, seeds, batching, epochs=2, config=DROPOUT_RUN):
    settings = TrainSettings(epochs=epochs, batch_size=16, seed_batching=batching,
                             show_progress=False)
    return train_config("t", config, data, seeds, settings)


def assert_same_seed(batched, alone, index, **tol):
    compare = np.testing.assert_allclose if tol else np.testing.assert_array_equal
    jax.tree.map(lambda a, b: compare(a[index], b[0], **tol), batched.params, alone.params)
    a, b = batched.seeds[index], alone.seeds[0]
    assert a["seed"] == b["seed"]
    compare(a["history"]["train_loss"], b["history"]["train_loss"], **tol)
    compare(a["test_accuracy"], b["test_accuracy"], **tol)


@pytest.mark.parametrize("batching", ["map", "sequential"])
def test_seed_batched_equals_seed_alone_exactly(tiny_data, batching):
    batched = run(tiny_data, [0, 1, 2], batching)
    alone = run(tiny_data, [1], batching)
    assert_same_seed(batched, alone, 1)


def test_vmap_batched_matches_seed_alone(tiny_data):
    """vmap batches the seeds' matmuls, so rounding may differ: equal to float32 noise."""
    batched = run(tiny_data, [0, 1, 2], "vmap", epochs=1)
    alone = run(tiny_data, [1], "map", epochs=1)
    assert_same_seed(batched, alone, 1, rtol=2e-3, atol=2e-5)


def test_seeds_differ(tiny_data):
    result = run(tiny_data, [0, 1], "map", epochs=1)
    kernels = result.params["conv1"]["kernel"]
    assert not np.allclose(kernels[0], kernels[1])


def _two_seeds_same_except_dropout(model_config: ModelConfig, data: DeviceData):
    model = CNN(model_config)
    tx = build_optimizer(OptimizerConfig(), 7)
    state = train.init_state(jax.random.key(0), model, tx)
    states = jax.tree.map(lambda x: jnp.stack([x, x]), state)
    base = train.seed_keys(0)
    keys = train.SeedKeys(jnp.stack([base.init] * 2), jnp.stack([base.data] * 2),
                          jnp.stack([base.dropout, train.seed_keys(1).dropout]))
    epoch = jax.jit(train.make_train_epoch(model, tx, num_train=data.num_train, batch_size=16))
    states, _ = epoch(states, keys, data.train, data.norm, jnp.int32(0))
    return states.params


def test_each_seed_draws_its_own_dropout_masks(tiny_data):
    """Same weights and data order, different dropout keys: different results (flax#4973)."""
    params = _two_seeds_same_except_dropout(DROPOUT_RUN.model, tiny_data)
    assert not np.allclose(params["fc2"]["kernel"][0], params["fc2"]["kernel"][1])
    # Without dropout the dropout key is unused, so the two must agree exactly.
    params = _two_seeds_same_except_dropout(ModelConfig(), tiny_data)
    np.testing.assert_array_equal(params["fc2"]["kernel"][0], params["fc2"]["kernel"][1])


def test_masked_partial_batch_equals_mean_over_real_examples():
    model = CNN(ModelConfig())
    tx = optax.sgd(0.1)
    state = train.init_state(jax.random.key(0), model, tx)
    step = jax.jit(train.make_train_step(model, tx))
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.normal(size=(8, 32, 32, 3)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 10, 8), jnp.int32)
    mask = jnp.arange(8) < 3
    padded, m1 = step(state, train.Batch(images, labels, mask), None)
    real, m2 = step(state, train.Batch(images[:3], labels[:3], jnp.ones(3, bool)), None)
    np.testing.assert_allclose(m1["loss"], m2["loss"], rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
                 padded.params, real.params)


def test_epoch_visits_every_example_once(tiny_data):
    """The order is a permutation: padded slots are masked, nothing repeats or is skipped."""
    n, batch = tiny_data.num_train, 16
    fn = train.make_train_epoch(CNN(ModelConfig()), optax.sgd(0.0), num_train=n, batch_size=batch)
    orders = []
    for epoch in range(2):
        key = train.seed_keys(0).data
        perm = jax.random.permutation(jax.random.fold_in(key, epoch), n)
        orders.append(np.asarray(perm))
        assert sorted(perm.tolist()) == list(range(n))
    assert not np.array_equal(orders[0], orders[1])  # reshuffled every epoch
    assert train.steps_per_epoch(n, batch) == 7
    assert callable(fn)


def test_epoch_compiles_once(tiny_data):
    """A 3-epoch run compiles exactly what a 1-epoch run compiles: nothing per epoch."""
    compiles = []

    def listener(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        config = RunConfig(ModelConfig(), OptimizerConfig(lr=2e-3))  # fresh: nothing cached
        run(tiny_data, [0, 1], "map", epochs=1, config=config)
        one_epoch = len(compiles)
        compiles.clear()
        config = RunConfig(ModelConfig(), OptimizerConfig(lr=3e-3))
        run(tiny_data, [0, 1], "map", epochs=3, config=config)
        three_epochs = len(compiles)
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert one_epoch > 0
    assert three_epochs == one_epoch


def test_history_layout(tiny_data):
    result = run(tiny_data, [0], "map", epochs=2)
    record = result.seeds[0]
    assert set(record["history"]) == {"train_loss", "val_loss", "val_accuracy", "train_step_loss"}
    assert len(record["history"]["train_loss"]) == 2
    assert record["history"]["train_step_loss"] == []  # 7 steps an epoch: no 100th step
    assert 0 <= record["test_accuracy"] <= 100 and record["diverged_epoch"] is None

"""Any Optax optimizer per configuration (issue 26, item 3): ``jaxcnn.Optimizer``.

A ready ``GradientTransformation`` or a factory with its arguments trains exactly as
Optax does; float arguments are per-member data, so configurations differing only in
them share one compiled program; identities are the same in every process; bad
optimizers are one line.
"""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcnn.cli import study_main
from jaxcnn.configs import Configuration, hyperparams
from jaxcnn.models.model import Network
from jaxcnn.models.modelfns import seed_cnn_fns
from jaxcnn.optim.optax_optimizer import Optimizer
from jaxcnn.studies import Study
from jaxcnn.training import train
from tests.conftest import TINY_FLAGS

NET = Network()


def two_steps(config: Configuration):
    """A seed CNN member's params after two steps of ``config``'s optimizer, and the same
    two steps written with plain Optax (same gradients, same keys)."""
    fns = seed_cnn_fns(NET)
    tx_of = config.program().transform()
    hp = jax.tree.map(jnp.asarray, hyperparams(config, 7))
    keys = train.seed_keys(0)
    state = train.init_state(keys, fns, hp, tx_of)
    rng = np.random.default_rng(0)
    batches = [train.Batch(jnp.asarray(rng.normal(size=(8, 32, 32, 3)), jnp.float32),
                           jnp.asarray(rng.integers(0, 10, 8), jnp.int32), jnp.ones(8, bool))
               for _ in range(2)]
    step = jax.jit(train.make_train_step(fns, tx_of))
    for i, batch in enumerate(batches):
        state, metrics = step(state, batch, jax.random.key(i))
    return state, metrics, (fns, keys, batches, hp)


def test_a_factory_and_its_arguments_train_as_plain_optax():
    config = Configuration(NET, optimizer=Optimizer(optax.sgd, learning_rate=0.05,
                                                    momentum=0.9))
    state, metrics, (fns, keys, batches, hp) = two_steps(config)
    params, _ = fns.init(keys.init, hp.init)
    tx = optax.sgd(0.05, momentum=0.9)
    opt_state = tx.init(params)
    for i, batch in enumerate(batches):
        grads = jax.grad(lambda p, b=batch, i=i: train.masked_loss(
            fns, p, {}, b, hp.values, jax.random.key(i))[0])(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
    for got, want in zip(jax.tree.leaves(state.params), jax.tree.leaves(params)):
        np.testing.assert_allclose(got, want, atol=1e-6)
    assert float(metrics["learning_rate"]) == pytest.approx(0.05)
    assert float(metrics["beta1"]) == pytest.approx(0.9)  # sgd's momentum


def test_a_ready_transformation_trains_and_records_no_rate():
    config = Configuration(NET, optimizer=optax.adamw(1e-3, weight_decay=0.01))
    assert isinstance(config.optimizer, Optimizer)
    state, metrics, _ = two_steps(config)
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state.params))
    assert np.isnan(float(metrics["learning_rate"]))  # its numbers are inside it


def test_float_arguments_are_data_and_the_rest_make_the_program():
    def sgd(**kw):
        return Configuration(NET, optimizer=Optimizer(optax.sgd, **kw))

    fast, slow = sgd(learning_rate=0.05, momentum=0.9), sgd(learning_rate=0.01, momentum=0.9)
    assert fast.program() == slow.program() and hash(fast.program()) == hash(slow.program())
    assert fast.fingerprint() != slow.fingerprint() and fast.identity() != slow.identity()
    assert sgd(learning_rate=0.05, momentum=0.9).identity() == fast.identity()
    nesterov = sgd(learning_rate=0.05, momentum=0.9, nesterov=True)
    assert nesterov.program() != fast.program()
    assert Configuration(NET).program() != fast.program()
    # Ready transformations: numbers baked in, so equal only when built the same way.
    a, b = (Configuration(NET, optimizer=optax.lion(lr)) for lr in (1e-4, 3e-4))
    assert a.program() != b.program()
    assert Configuration(NET, optimizer=optax.lion(1e-4)).identity() == a.identity()


FINGERPRINT = """
import optax
from jaxcnn.configs import Configuration
from jaxcnn.optim.optax_optimizer import Optimizer
schedule = optax.warmup_cosine_decay_schedule(0.0, 0.1, 5, 100)
found = (Configuration(optimizer=Optimizer(optax.sgd, learning_rate=schedule)).fingerprint(),
         Configuration(optimizer=optax.adamw(1e-3, weight_decay=0.01)).fingerprint())
print(*found)
"""


def test_an_optimizers_fingerprint_is_the_same_in_a_new_process():
    """No address enters it, so resume finds the same model again."""
    namespace: dict = {}
    exec(FINGERPRINT.replace("print(*found)", ""), namespace)  # noqa: S102
    out = subprocess.run([sys.executable, "-c", FINGERPRINT], capture_output=True, text=True,
                         check=True).stdout.split()
    assert tuple(out) == namespace["found"]


@pytest.mark.parametrize("make, message", [
    (lambda: Optimizer(optax.sgd, learnin_rate=0.1), "optax.sgd: "),
    (lambda: Optimizer(3), "must be an optax GradientTransformation or a function"),
    (lambda: Optimizer(optax.sgd(0.1), learning_rate=0.1), "takes no arguments"),
    (lambda: Optimizer(optax.sgd, learning_rate=float("nan")), "must be finite"),
    (lambda: Configuration(NET, optimizer="adam"), "optimizer must be an optax"),
    (lambda: Configuration(NET, optimizer=optax.sgd(0.1), regularizers={"augment": 1.0}),
     None),  # a batch regularizer works with any optimizer
])
def test_bad_optimizers_are_one_line(make, message):
    if message is None:
        make()
        return
    with pytest.raises(ValueError, match=message) as err:
        make()
    assert "\n" not in str(err.value)


def study_configs(ctx):
    net = ctx.network()
    schedule = optax.linear_schedule(0.05, 0.0, ctx.total_steps)
    return {"adam": Configuration(net, optimizer=Optimizer(optax.adam, learning_rate=1e-3)),
            "adam_fast": Configuration(net, optimizer=Optimizer(optax.adam, learning_rate=3e-3)),
            "sgd_decay": Configuration(net, optimizer=Optimizer(
                optax.sgd, learning_rate=schedule, momentum=0.9))}


@pytest.mark.slow  # 28 s on 2 cores: four seed-CNN programs compiled, then a second run
def test_a_study_of_optax_optimizers_runs_resumes_and_records_what_was_applied(
        tmp_path, capsys):
    study = Study("optax_study", "Optax", study_configs, reference="adam")
    argv = [*TINY_FLAGS, "--out", str(tmp_path)]
    assert study_main(study, argv) == 0
    err = capsys.readouterr().err
    # Two learning rates of one factory: one compiled program for both.
    assert "training 4 members (2 configurations x seeds)" in err
    results = json.loads((tmp_path / "optax_study" / "results.json").read_text())
    configs = results["configs"]
    assert configs["adam_fast"]["optimizer"] == "optax.adam(learning_rate=0.003)"
    rates = configs["sgd_decay"]["schedule"]["learning_rate"]
    steps = configs["sgd_decay"]["schedule"]["step"]
    total = 7  # TINY_TRAIN / TINY_BATCH rounded up, one epoch
    np.testing.assert_allclose(rates, [0.05 * (1 - (s - 1) / total) for s in steps], rtol=1e-5)
    for record in configs.values():
        assert all(s["test_accuracy"] is not None for s in record["seeds"])
    assert (tmp_path / "optax_study" / "schedules.png").exists()
    # A rerun finds every model again (identities recorded in another process compare
    # equal): nothing is trained.
    assert study_main(study, argv) == 0
    err = capsys.readouterr().err
    assert err.count("already finished; skipping") == 3 and "training " not in err
    again = json.loads((tmp_path / "optax_study" / "results.json").read_text())
    assert again["configs"]["sgd_decay"]["seeds"] == configs["sgd_decay"]["seeds"]

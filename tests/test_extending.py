"""Extending jaxcnn from outside the package: a schedule, a regularizer, a data source, a model.

Each is added here the way docs/extending.md's recipes say (one function
and one registration call), with no file under ``jaxcnn/`` touched, and trained by a
study through the same command-line entry point the built-in studies use. The
registries are restored after each test, so nothing registered here leaks into other
tests of the same process.
"""

from __future__ import annotations

import json

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.cli import study_main
from jaxcnn.configs import Configuration
from jaxcnn.data import sources
from jaxcnn.data.synthetic import make_synthetic
from jaxcnn.models import registry
from jaxcnn.models.model import Network
from jaxcnn.optim import regularizers, schedules
from jaxcnn.optim.adam import OptimizerConfig, ScheduleConfig
from jaxcnn.studies import Study, StudyContext

WARMUP = 4.0  # steps of linear warm-up in the added schedule
DIGITS_SHAPE, DIGITS_CLASSES = (28, 28, 1), 3
FLAGS = ["--seeds", "2", "--epochs", "1", "--train-examples", "96", "--val-size", "30",
         "--batch-size", "16", "--no-progress"]


@pytest.fixture
def fresh_registries(monkeypatch):
    """Every registry as it is now, restored when the test ends."""
    for module, name in ((schedules, "_REGISTRY"), (regularizers, "_REGISTRY"),
                         (sources, "_SOURCES"), (registry, "_MODELS")):
        monkeypatch.setattr(module, name, dict(getattr(module, name)))


# --- the four additions, as a user writes them --------------------------------------------

def warmup(step: jax.Array, p) -> jax.Array:
    """Linear warm-up to the base rate over p["warmup"] steps, then constant."""
    return p["lr"] * jnp.minimum(1.0, (step + 1.0) / p["warmup"])


def l1_penalty(params) -> jax.Array:
    """Sum of absolute weights: its gradient (sign of each weight) times the strength."""
    return sum(jnp.abs(w).sum() for w in jax.tree.leaves(params))


def digits(options: sources.LoadOptions) -> sources.Dataset:
    """A 28x28 grey-scale, 3-class source (generated; a real one would read files)."""
    return make_synthetic(156, 60, seed=5, image_shape=DIGITS_SHAPE,
                          num_classes=DIGITS_CLASSES)


class TinyNet(nn.Module):
    """A user's own linen model, written as for any code base: conv, BatchNorm, global
    average pool, dropout, dense. (N, H, W, C) -> (N, num_classes). Its ``train`` flag
    defaults to True (as some model zoos do): the library must pass it explicitly."""

    num_classes: int

    @nn.compact
    def __call__(self, x, train: bool = True):
        # No bias before BatchNorm (as ResNets write it): its true gradient is 0, and Adam
        # turns the float noise in it into full-size steps (GUIDE section 4b).
        x = nn.Conv(8, (3, 3), use_bias=False)(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        x = nn.relu(x).mean(axis=(1, 2))
        x = nn.Dropout(0.3, deterministic=not train)(x)
        return nn.Dense(self.num_classes)(x)


def register_all() -> None:
    schedules.register_schedule("warmup", warmup, {"warmup": 10.0})
    regularizers.register_regularizer("l1", term=l1_penalty)
    sources.register_source("digits28", digits)
    registry.register_model("tiny", lambda network: TinyNet(network.num_classes))


def run(study: Study, out, data: str) -> dict:
    assert study_main(study, ["--data", data, *FLAGS, "--out", str(out)]) == 0
    return json.loads((out / study.name / "results.json").read_text())


# --- the tests ---------------------------------------------------------------------------

def extension_configs(ctx: StudyContext) -> dict[str, Configuration]:
    network = Network(num_classes=ctx.num_classes, image_shape=DIGITS_SHAPE)
    return {
        "baseline": Configuration(network),
        "warmup": Configuration(network, optimizer=OptimizerConfig(
            schedule=ScheduleConfig("warmup", params={"warmup": WARMUP}))),
        "l1": Configuration(network, regularizers={"l1": 1e-4}),
        "augment": Configuration(network, regularizers={"augment": 1.0}),
    }


# All three run in the default tier (about 15 s together on 2 cores): the extension
# recipes of docs/extending.md are what CI checks.
def test_a_schedule_a_regularizer_and_a_28x28x1_source_from_outside(fresh_registries,
                                                                     tmp_path):
    register_all()
    study = Study("extended", "Extended", extension_configs, reference="baseline",
                  parity_reference="baseline")
    results = run(study, tmp_path, "digits28")
    configs = results["configs"]
    assert set(configs) == {"baseline", "warmup", "l1", "augment"}
    for name, record in configs.items():
        assert len(record["seeds"]) == 2, name
        for seed in record["seeds"]:
            assert seed["test_accuracy"] is not None and 0 <= seed["test_accuracy"] <= 100
    # The warm-up ran: the rate applied at step k is lr * min(1, k / WARMUP).
    applied = configs["warmup"]["schedule"]
    expected = [1e-3 * min(1.0, step / WARMUP) for step in applied["step"]]
    np.testing.assert_allclose(applied["learning_rate"], expected, rtol=1e-6)
    assert configs["baseline"]["schedule"]["learning_rate"][0] == pytest.approx(1e-3)
    # The penalty and the augmentation changed training (same seeds, same data order).
    losses = {name: [s["test_loss"] for s in record["seeds"]] for name, record in
              configs.items()}
    assert losses["l1"] != losses["baseline"] and losses["augment"] != losses["baseline"]
    assert configs["l1"]["model"]["regularizers"] == {"l1": 1e-4}
    assert "regularizers" not in configs["baseline"]["model"]


def tiny_model_configs(ctx: StudyContext) -> dict[str, Configuration]:
    # Network(model=...) names a registered model: the runner's side of the registry.
    network = Network(num_classes=ctx.num_classes, image_shape=DIGITS_SHAPE, model="tiny")
    return {"tiny": Configuration(network), "tiny_he": Configuration(network, init="he")}


def test_a_users_linen_model_from_outside(fresh_registries, tmp_path, capsys):
    register_all()
    study = Study("tiny_model", "A user's model", tiny_model_configs, reference="tiny",
                  parity_reference="tiny")
    results = run(study, tmp_path, "digits28")
    for record in results["configs"].values():
        assert all(s["test_accuracy"] is not None for s in record["seeds"])
    # The saved model loads as the user's module and predicts 28x28x1 images.
    from jaxcnn.inference import load_model

    model = load_model(tmp_path, "tiny_model", "tiny_he")
    meta = json.loads((tmp_path / "tiny_model" / "params" / "tiny_he" / "meta.json").read_text())
    assert meta["model"]["model_source"] == __name__  # where register_model was called
    images = digits(sources.LoadOptions(None, False)).test_images[:5]
    probs = model.predict_proba(images, seed=model.seeds[0])
    assert probs.shape == (5, DIGITS_CLASSES)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    # `jaxcnn predict` reads any image file as the model's input: 28x28 grayscale here.
    from PIL import Image

    from jaxcnn import console

    Image.new("RGB", (40, 30), (200, 10, 10)).save(tmp_path / "red.png")
    assert console.main(["predict", str(tmp_path / "tiny_model"), "tiny_he",
                         str(tmp_path / "red.png")]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "converted from RGB to L, resized from 40x30" in line and line.count(" 0.") == 3


def test_the_registered_model_trains_a_member_through_train_py(fresh_registries):
    """What the runner does with a registered model, one member, by hand: parameters and
    BatchNorm statistics move, the statistics are used at evaluation."""
    from jaxcnn.configs import hyperparams
    from jaxcnn.models.modelfns import model_fns
    from jaxcnn.training import train

    register_all()
    network = Network(num_classes=DIGITS_CLASSES, image_shape=DIGITS_SHAPE, model="tiny")
    fns = model_fns(network)
    assert fns.stateful
    keys = train.seed_keys(0)
    hp = jax.tree.map(jnp.asarray, hyperparams(Configuration(network, init="he"), 6))
    state = train.init_state(keys, fns, hp)
    assert set(state.model_state) == {"batch_stats"}
    ds = digits(None)
    data = train.ImageData(jnp.asarray(ds.train_images[:90]), jnp.asarray(ds.train_labels[:90]))
    norm = train.Normalizer(jnp.full(1, 0.5), jnp.full(1, 0.5))
    # 90 = 5 x 16 + 10: the last batch trains at its own size (no padding in the statistics)
    epoch = jax.jit(train.make_train_epoch(fns, num_train=90, batch_size=16))
    new, metrics = epoch(state, keys, data, norm, jnp.int32(0))
    assert metrics["loss"].shape == (6,) and np.isfinite(metrics["loss"]).all()
    moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), new.params, state.params)
    assert min(jax.tree.leaves(moved)) > 0
    stats = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), new.model_state,
                         state.model_state)
    assert min(jax.tree.leaves(stats)) > 0  # the running mean and variance were updated
    evaluate = jax.jit(train.make_evaluate(fns))
    losses, *_ = evaluate(new.params, new.model_state, data, norm)
    other, *_ = evaluate(new.params, state.model_state, data, norm)
    assert not np.allclose(losses, other)  # evaluation reads the member's statistics
    again, *_ = evaluate(new.params, new.model_state, data, norm)
    np.testing.assert_array_equal(losses, again)  # and is deterministic (no dropout)


def test_a_registered_model_loads_in_a_process_that_never_registered_it(
        fresh_registries, tmp_path, monkeypatch):
    """meta.json records the module that registered the model; loading imports it there,
    and where it cannot, one line says what to import (issue 26: `predict` on a registered
    model died with `ValueError: unknown model`)."""
    from jaxcnn.errors import JaxcnnError
    from jaxcnn.inference import _import_model

    module = tmp_path / "my_models.py"
    module.write_text("from jaxcnn.models import registry\n"
                      "from tests.test_extending import TinyNet\n"
                      "registry.register_model('mine', lambda network, **_: "
                      "TinyNet(network.num_classes))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert not registry.is_registered("mine")
    _import_model("mine", "my_models", tmp_path)
    assert registry.is_registered("mine")
    assert registry.source_module("mine") == "my_models"
    with pytest.raises(JaxcnnError) as err:
        _import_model("theirs", "no_such_module", tmp_path)
    assert "'theirs' is not registered" in str(err.value) and "no_such_module" in str(err.value)
    assert "\n" not in str(err.value)
    with pytest.raises(JaxcnnError, match="registered by a script run directly"):
        _import_model("theirs", "__main__", tmp_path)


class Counter(nn.Module):
    """A model keeping its own mutable collection: how many examples training showed it."""

    num_classes: int

    @nn.compact
    def __call__(self, x, train: bool = False):
        seen = self.variable("counts", "examples", lambda: jnp.zeros((), jnp.int32))
        if train:
            seen.value += x.shape[0]
        return nn.Dense(self.num_classes)(x.reshape(x.shape[0], -1))


def test_a_padded_last_batch_never_reaches_a_models_state(fresh_registries):
    """90 examples in batches of 16: the state sees exactly 90 a epoch (the last batch at
    its own size, 10), never the 6 padded slots; the collection's name is the model's."""
    from jaxcnn.configs import hyperparams
    from jaxcnn.models.modelfns import model_fns
    from jaxcnn.training import train

    registry.register_model("counter", lambda network: Counter(network.num_classes))
    network = Network(num_classes=DIGITS_CLASSES, image_shape=DIGITS_SHAPE, model="counter")
    fns = model_fns(network)
    hp = jax.tree.map(jnp.asarray, hyperparams(Configuration(network), 6))
    keys = train.seed_keys(0)
    state = train.init_state(keys, fns, hp)
    ds = digits(None)
    data = train.ImageData(jnp.asarray(ds.train_images[:90]), jnp.asarray(ds.train_labels[:90]))
    norm = train.Normalizer(jnp.full(1, 0.5), jnp.full(1, 0.5))
    epoch = jax.jit(train.make_train_epoch(fns, num_train=90, batch_size=16))
    for e in range(2):
        state, metrics = epoch(state, keys, data, norm, jnp.int32(e))
        assert int(state.model_state["counts"]["examples"]) == 90 * (e + 1)
        assert metrics["loss"].shape == (6,)
    evaluate = jax.jit(train.make_evaluate(fns))
    evaluate(state.params, state.model_state, data, norm)  # evaluation does not count


def vmapped_against_alone(fns, network: Network, data, norm, tolerance: float):
    """Three members (three configurations, seeds 0-2) of ``network`` trained two epochs of
    6 steps in one vmapped program, each checked against the member trained alone: every
    parameter and state leaf within ``tolerance``. Returns (initial, trained) states."""
    from jaxcnn.configs import hyperparams, stack
    from jaxcnn.training import train
    from jaxcnn.training.batching import over_members

    configs = [Configuration(network), Configuration(network, init="he"),
               Configuration(network, optimizer=OptimizerConfig(lr=3e-3))]
    seeds = [0, 1, 2]
    one_epoch = train.make_train_epoch(fns, num_train=90, batch_size=16)  # padded last batch
    init = jax.jit(over_members(lambda k, h: train.init_state(k, fns, h), "vmap", 2))
    keys = train.stack_seed_keys(seeds)
    first = states = init(keys, stack([hyperparams(c, 6) for c in configs]))
    epoch = jax.jit(over_members(one_epoch, "vmap", 2))
    alone_epoch = jax.jit(one_epoch)
    for e in range(2):
        states, _ = epoch(states, keys, data, norm, jnp.int32(e), jnp.int32(0))
    for k, (config, seed) in enumerate(zip(configs, seeds)):
        key = train.seed_keys(seed)
        alone = train.init_state(key, fns, jax.tree.map(jnp.asarray, hyperparams(config, 6)))
        for e in range(2):
            alone, _ = alone_epoch(alone, key, data, norm, jnp.int32(e))
        member = jax.tree.map(lambda x, k=k: x[k], (states.params, states.model_state))
        gaps = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), member,
                            (alone.params, alone.model_state))
        assert max(jax.tree.leaves(gaps)) < tolerance, (k, gaps)
    return first, states


@pytest.mark.slow
def test_member_k_of_a_vmapped_run_equals_its_single_run(fresh_registries):
    """Three members of the BatchNorm + Dropout model in one vmapped epoch equal each
    member trained alone, to float32 reassociation: parameters and statistics within 1e-4
    after two epochs of 6 steps (measured on the 2-core CPU, 2026-12-07: at most 1.1e-5,
    6e-8 and 1.8e-7 for the three members; vmap batches the members' matmuls, which may
    sum in another order). A shared dropout key or shared statistics would differ by far more: the
    members' keys and seeds differ. (With a bias before the BatchNorm, that bias alone
    drifted by 3e-3: a zero true gradient that Adam turns into +-lr steps of noise.)"""
    from jaxcnn.models.modelfns import model_fns
    from jaxcnn.training import train

    register_all()
    network = Network(num_classes=DIGITS_CLASSES, image_shape=DIGITS_SHAPE, model="tiny")
    ds = digits(None)
    data = train.ImageData(jnp.asarray(ds.train_images[:90]), jnp.asarray(ds.train_labels[:90]))
    norm = train.Normalizer(jnp.full(1, 0.5), jnp.full(1, 0.5))
    _, states = vmapped_against_alone(model_fns(network), network, data, norm, 1e-4)
    spread = float(jnp.abs(states.params["Dense_0"]["kernel"][0]
                           - states.params["Dense_0"]["kernel"][1]).max())
    assert spread > 1e-2  # the members really differ


@pytest.mark.parametrize("system", ["linen", "nnx"])
def test_a_models_state_is_checkpointed_and_restored(system, fresh_registries, tmp_path):
    """The chunk checkpoint (what resume after a kill reads) holds the members' BatchNorm
    statistics beside their parameters, and restores both, for a linen model and an NNX
    one (tests/test_nnx.py's Net)."""
    from jaxcnn.configs import hyperparams, stack
    from jaxcnn.models.modelfns import model_fns
    from jaxcnn.training import train
    from jaxcnn.training.batching import over_members
    from jaxcnn.training.checkpoint import ChunkCheckpointer, ChunkProgress
    from tests.test_nnx import Net

    register_all()
    if system == "nnx":
        registry.register_model("tiny", Net, replace=True)
    network = Network(num_classes=DIGITS_CLASSES, image_shape=DIGITS_SHAPE, model="tiny")
    fns = model_fns(network)
    keys = train.stack_seed_keys([0, 1])
    states = jax.jit(over_members(lambda k, h: train.init_state(k, fns, h), "vmap", 2))(
        keys, stack([hyperparams(Configuration(network), 6)] * 2))
    stats = jax.tree.map(lambda x: np.asarray(x) + 0.5, states.model_state)  # not the init's
    saved = jax.tree.map(np.asarray, states._replace(model_state=stats))
    checkpointer = ChunkCheckpointer(tmp_path / "chunk")
    checkpointer.save(ChunkProgress(1, saved, [{}, {}], [None, None]))
    restored = checkpointer.restore(jax.tree.map(np.asarray, states))
    assert restored.epochs_done == 1
    chex.assert_trees_all_equal(restored.states.model_state, stats)
    chex.assert_trees_all_equal(restored.states.params, saved.params)


def test_on_the_cpu_a_users_model_trains_step_by_step_as_the_scan_would(fresh_registries):
    """The engine's stepped epoch (one compiled step per batch, what a user's model gets on
    the CPU: out of the convolution-in-a-loop trap) trains what the one-scan epoch trains:
    the same batches, keys and last partial batch (126 = 7 x 16 + 14, BatchNorm), two epochs,
    parameters and statistics within 1e-5 (measured on the 2-core CPU, 2026-12-07: 2.4e-7;
    the two programs may fuse the same arithmetic differently), metrics (M, T) alike; the
    step hook is called after every step."""
    from jaxcnn.configs import hyperparams, stack
    from jaxcnn.data.splits import prepare_data
    from jaxcnn.training import train
    from jaxcnn.training.runner import ChunkProgram, DeviceData

    register_all()
    network = Network(num_classes=DIGITS_CLASSES, image_shape=DIGITS_SHAPE, model="tiny")
    data = DeviceData(prepare_data(digits(None), val_size=30, train_examples=None,
                                   normalization="dataset"))
    assert data.num_train == 126
    hparams = hyperparams(Configuration(network, init="he"), 8)
    keys = train.stack_seed_keys([3])
    calls = []
    trained = {}
    for stepped in (True, False):
        program = ChunkProgram(network, "xla", "threads", 1, data.num_train, 16,
                               lambda slot, done: calls.append(int(done)), stepped=stepped)
        assert program.stepped == stepped
        states = program.init(keys, stack([hparams]))
        for epoch in range(2):
            states, metrics = program.epoch(states, keys, data, epoch, 0)
            assert metrics["loss"].shape == (1, 8)
        trained[stepped] = (states.params, states.model_state, metrics["loss"])
    assert calls[:16] == [*range(1, 9)] * 2  # the stepped epochs, after every step
    gaps = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), trained[True], trained[False])
    assert max(jax.tree.leaves(gaps)) < 1e-5, gaps
    auto = ChunkProgram(network, "xla", "threads", 1, data.num_train, 16, None)
    assert auto.stepped == (jax.default_backend() == "cpu")
    assert not ChunkProgram(Network(), "xla", "threads", 1, data.num_train, 16, None).stepped

"""A researcher's own Flax NNX model (issue 31), trained as a linen model is.

README's NNX example runs as written on a 28x28 grayscale tree of 3 classes (SGD with
momentum and AdamW, 2 seeds x 2 epochs), through the Python API and (slow tier) through
``jaxcnn run FILE.py:study`` and ``jaxcnn sweep``, and ``jaxcnn evaluate`` in a new process
gives back every recorded test accuracy; member k of a vmapped run equals its single run;
bad models end in one line before anything trains.
"""

from __future__ import annotations

import functools
import json
import re
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxcnn.models import registry
from jaxcnn.models.model import Network
from jaxcnn.models.modelfns import check_model, model_fns
from jaxcnn.training import train
from tests.test_api import assert_reproduced, python
from tests.test_extending import vmapped_against_alone
from tests.test_readme import README, python_blocks
from tests.test_run import grayscale_tree, jaxcnn

SHAPE, CLASSES = (28, 28, 1), 3


@pytest.fixture
def fresh_models(monkeypatch):
    """The model registry as it is now, restored when the test ends."""
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))


class Net(nnx.Module):
    """Conv, BatchNorm, global average pool, Dropout, Linear: (N, H, W, C) -> (N, classes).
    No bias before the BatchNorm (its true gradient is 0; GUIDE section 4b)."""

    def __init__(self, in_channels: int, num_classes: int, *, rngs: nnx.Rngs):
        self.conv = nnx.Conv(in_channels, 8, (3, 3), use_bias=False, rngs=rngs)
        self.norm = nnx.BatchNorm(8, momentum=0.9, rngs=rngs)
        self.drop = nnx.Dropout(0.3, rngs=rngs)
        self.head = nnx.Linear(8, num_classes, rngs=rngs)

    def __call__(self, x):
        x = nnx.relu(self.norm(self.conv(x))).mean(axis=(1, 2))
        return self.head(self.drop(x))


def digits() -> tuple[train.ImageData, train.Normalizer]:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, CLASSES, 90)
    images = np.clip(rng.normal(60 + 70 * labels[:, None, None, None], 40, (90, *SHAPE)),
                     0, 255).astype(np.uint8)
    return (train.ImageData(jnp.asarray(images), jnp.asarray(labels, jnp.int32)),
            train.Normalizer(jnp.full(1, 0.5), jnp.full(1, 0.5)))


@pytest.mark.slow
def test_member_k_of_a_vmapped_nnx_run_equals_its_single_run(fresh_models):
    """Three members of the BatchNorm + Dropout NNX model in one vmapped program equal each
    member trained alone: parameters and BatchNorm statistics within 1e-5 after two epochs
    of 6 steps (measured on the 2-core CPU, 2026-12-07: at most 1.5e-7; vmap batches the
    members' matmuls, which may sum in another order). A dropout stream or statistics
    shared between members would differ by far more. Training moves the statistics, and
    evaluation reads them and draws no dropout."""
    registry.register_model("nnx_net", Net)
    network = Network(num_classes=CLASSES, image_shape=SHAPE, model="nnx_net")
    fns = model_fns(network)
    assert fns.stateful
    data, norm = digits()
    first, states = vmapped_against_alone(fns, network, data, norm, 1e-5)
    assert set(states.model_state) == {"norm"} and set(states.model_state["norm"]) == {
        "mean", "var"}
    spread = float(jnp.abs(states.params["head"]["kernel"][0]
                           - states.params["head"]["kernel"][1]).max())
    assert spread > 1e-2  # the members really differ
    moved = float(jnp.abs(states.model_state["norm"]["var"] - first.model_state["norm"]["var"])
                  .min())
    assert moved > 0  # every member's statistics were updated
    params, state = jax.tree.map(lambda x: x[0], (states.params, states.model_state))
    evaluate = jax.jit(train.make_evaluate(fns))
    losses, *_ = evaluate(params, state, data, norm)
    np.testing.assert_array_equal(losses, evaluate(params, state, data, norm)[0])
    other, *_ = evaluate(params, jax.tree.map(lambda x: x[0], first.model_state), data, norm)
    assert not np.allclose(losses, other)  # evaluation reads the member's statistics


def test_init_schemes_redraw_an_nnx_models_kernels_and_biases_only(fresh_models):
    """``init="he"`` re-draws every kernel (and the bias beside it); BatchNorm's scale keeps
    the module's own initialization."""
    registry.register_model("nnx_net", functools.partial(Net, in_channels=1))
    network = Network(num_classes=CLASSES, image_shape=SHAPE, model="nnx_net")
    fns = model_fns(network)
    own, _ = fns.init(jax.random.key(3), "model")
    he, _ = fns.init(jax.random.key(3), "he")
    assert not np.allclose(own["conv"]["kernel"], he["conv"]["kernel"])
    assert not np.allclose(own["head"]["kernel"], he["head"]["kernel"])
    np.testing.assert_array_equal(own["norm"]["scale"], he["norm"]["scale"])
    fan_in = 3 * 3 * 1
    assert abs(float(he["conv"]["kernel"].std()) - np.sqrt(2 / fan_in)) < 0.2


def test_a_loaded_nnx_model_gives_its_module_back_with_a_seeds_weights(fresh_models):
    """``TrainedModel.module(seed)``: the NNX module holding that seed's parameters and
    statistics, in evaluation mode, computes the logits ``TrainedModel.logits`` gives."""
    from jaxcnn.inference import TrainedModel
    from jaxcnn.models.modelfns import saved_weights

    registry.register_model("nnx_net", Net)
    network = Network(num_classes=CLASSES, image_shape=SHAPE, model="nnx_net")
    fns = model_fns(network)
    members = [fns.init(jax.random.key(seed), "model") for seed in (4, 5)]
    members = [(p, jax.tree.map(lambda v, s=s: v + s, st)) for s, (p, st) in enumerate(members)]
    weights = jax.tree.map(lambda *xs: np.stack(xs), *[saved_weights(p, s) for p, s in members])
    data, norm = digits()
    trained = TrainedModel(network, weights, (4, 5), norm, ())
    module = trained.module(seed=5)
    assert isinstance(module, Net) and module.drop.deterministic
    assert module.norm.use_running_average
    np.testing.assert_allclose(module.norm.mean[...], members[1][1]["norm"]["mean"])
    images = np.asarray(data.images[:8])
    expected = trained.logits(images, seed=5)
    got = module(train.normalize(jnp.asarray(images), norm))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


class NoRngs(nnx.Module):
    def __init__(self, num_classes: int):
        self.head = nnx.Linear(SHAPE[-1], num_classes, rngs=nnx.Rngs(0))

    def __call__(self, x):
        return self.head(x.mean(axis=(1, 2)))


class Lazy(nnx.Module):
    def __init__(self, num_classes: int, *, rngs: nnx.Rngs):
        self.head = nnx.Linear(SHAPE[-1], num_classes, rngs=rngs)

    def __call__(self, x):
        self.seen = nnx.BatchStat(jnp.zeros(()))  # a variable created on the first call
        return self.head(x.mean(axis=(1, 2)))


class OwnRngs(nnx.Module):
    def __init__(self, num_classes: int, *, rngs: nnx.Rngs):
        self.head = nnx.Linear(SHAPE[-1], num_classes, rngs=nnx.Rngs(0))

    def __call__(self, x):
        return self.head(x.mean(axis=(1, 2)))


class Features(nnx.Module):
    def __init__(self, *, rngs: nnx.Rngs):
        self.head = nnx.Linear(SHAPE[-1], 16, rngs=rngs)

    def __call__(self, x):
        return self.head(x.mean(axis=(1, 2)))


class Hidden(nnx.Module):
    def __init__(self, hidden: int, num_classes: int, *, rngs: nnx.Rngs):
        self.head = nnx.Linear(SHAPE[-1], num_classes, rngs=rngs)

    def __call__(self, x):
        return self.head(x.mean(axis=(1, 2)))


@pytest.mark.parametrize("factory, message", [
    (NoRngs, "NoRngs.__init__ takes no rngs"),
    (Lazy, "creates variables while it runs (seen): create every layer and variable in "
           "__init__"),
    (OwnRngs, "its parameters are the same whatever rngs it is given"),
    (lambda data, rngs: NoRngs(data.num_classes), "are the same whatever rngs"),
    (Features, "returns float32 (2, 16) on 2 images; it must return float logits (N, 3)"),
    (Hidden, "Hidden needs 'hidden', which jaxcnn cannot give"),
    (lambda data: OwnRngs(data.num_classes, rngs=nnx.Rngs(0)),
     "builds an NNX OwnRngs without the member's rngs"),
])
def test_a_bad_nnx_model_is_one_line_naming_the_fix(factory, message, fresh_models):
    registry.register_model("bad", factory)
    with pytest.raises(ValueError) as err:
        check_model(Network(num_classes=CLASSES, image_shape=SHAPE, model="bad"))
    assert message in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_a_model_object_where_a_factory_belongs_is_refused(fresh_models):
    import jaxcnn as jc

    with pytest.raises(ValueError, match=r"got a Net object, but each member builds its own; "
                                         r"give its class, or lambda data, rngs"):
        jc.Study("bad", model=Net(1, 3, rngs=nnx.Rngs(0)),
                 variants={"a": jc.Variant()})


BAD_STUDY = textwrap.dedent('''
    import jaxcnn as jc
    from flax import nnx


    class Wide(nnx.Module):
        def __init__(self, in_channels, *, rngs):
            self.head = nnx.Linear(in_channels, 5, rngs=rngs)

        def __call__(self, x):
            return self.head(x.mean(axis=(1, 2)))


    study = jc.Study("mine_nnx", model=Wide, variants={"sgd": jc.Variant()})
''')


def readme_nnx_study(root: Path) -> None:
    """README's NNX example as ``root/nnxstudy.py``, beside a 28x28 grayscale tree of 3
    classes (``my_images``; 26 steps of 64 in 2 epochs)."""
    block = next(b for b in python_blocks(README.read_text()) if "nnx.Module" in b)
    (root / "nnxstudy.py").write_text(block)
    grayscale_tree(root / "my_images", train=300)


@pytest.mark.slow
def test_the_readmes_nnx_example_runs_as_written(tmp_path):
    """The Python API (SGD with momentum and AdamW, 2 seeds x 2 epochs), evaluated in new
    processes; then a bad model run into the same --out ends in one line and exit status 2,
    the results intact."""
    readme_nnx_study(tmp_path)
    proc = python(["nnxstudy.py"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    report = (tmp_path / "results" / "REPORT.md").read_text()
    assert "## Mine_nnx" in report and "`mine_nnx/adamw`" in report, report[:2000]
    assert "- Verdicts: every comparison ends" in report
    assert "each configuration's own Optax optimizer" in report and "Adam lr" not in report
    results = assert_reproduced(tmp_path, "mine_nnx")
    for config in ("sgd", "adamw"):
        accuracies = [s["test_accuracy"] for s in results["configs"][config]["seeds"]]
        assert len(accuracies) == 2 and min(accuracies) > 100 / 3, (config, accuracies)
    assert results["metadata"]["command"].startswith("jaxcnn run nnxstudy.py:study ")
    before = (tmp_path / "results" / "mine_nnx" / "results.json").read_bytes()
    (tmp_path / "bad.py").write_text(BAD_STUDY)
    proc = jaxcnn(["run", "bad.py:study", "--data", "my_images", "--seeds", "2",
                   "--no-progress", "--out", "results"], tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].endswith(
        "model 'mine_nnx' returns float32 (2, 5) on 2 images; it must return float logits "
        "(N, 3), one per class of the data"), proc.stderr[-2000:]
    assert (tmp_path / "results" / "mine_nnx" / "results.json").read_bytes() == before


@pytest.mark.slow  # two runs and two evaluations in new processes: about 30 s on 2 cores
def test_the_readmes_nnx_study_runs_and_sweeps_from_the_shell(tmp_path):
    """``jaxcnn run nnxstudy.py:study``: both variants trained above chance and evaluated in
    new processes; ``jaxcnn sweep`` of its own optimizer's learning rate (issue 26 item 5):
    the base's 3e-3 added to the values, both in one program."""
    readme_nnx_study(tmp_path)
    proc = jaxcnn(["run", "nnxstudy.py:study", "--data", "my_images", "--seeds", "2",
                   "--epochs", "2", "--no-progress", "--out", "results"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = assert_reproduced(tmp_path, "mine_nnx")
    for config in ("sgd", "adamw"):
        accuracies = [s["test_accuracy"] for s in results["configs"][config]["seeds"]]
        assert len(accuracies) == 2 and min(accuracies) > 100 / 3, (config, accuracies)
    proc = jaxcnn(["sweep", "--param", "learning_rate=0.001", "--base",
                   "nnxstudy.py:study/adamw", "--data", "my_images", "--seeds", "2",
                   "--epochs", "1", "--no-progress", "--out", "results"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    swept = json.loads((tmp_path / "results" / "sweep" / "results.json").read_text())
    assert set(swept["configs"]) == {"learning_rate=0.001", "learning_rate=0.003"}
    assert swept["configs"]["learning_rate=0.001"]["model"]["model"] == "mine_nnx"
    assert "training 4 members (2 configurations x seeds) of one network" in proc.stderr, (
        proc.stderr[-2000:])


def test_a_sweep_takes_a_float_argument_of_a_studys_own_optimizer(fresh_models):
    """``--base FILE.py:NAME/CONFIG``: the values of a ``jaxcnn.Optimizer`` argument become
    configurations (the base's own value added); anything else is one line naming what
    can be swept."""
    import optax

    import jaxcnn as jc
    from jaxcnn.errors import ConfigError
    from jaxcnn.experiment import Experiment
    from jaxcnn.studies import StudyContext
    from jaxcnn.sweep import sweep_study

    study = jc.Study("own", model=Net, entry=("jaxcnn", "run", "own.py:study"), variants={
        "sgd": jc.Variant(optimizer=jc.Optimizer(optax.sgd, learning_rate=0.05,
                                                 momentum=0.9)),
        "ready": jc.Variant(optimizer=optax.adam(1e-3))})
    ctx = StudyContext(Experiment(), 4, CLASSES, SHAPE)
    configs = sweep_study([("momentum", [0.5, 0.99])], "own.py:study/sgd", "s",
                          study).build_configs(ctx)
    assert list(configs) == ["momentum=0.5", "momentum=0.9", "momentum=0.99"]
    assert [c.optimizer.values for c in configs.values()] == [
        {"learning_rate": 0.05, "momentum": m} for m in (0.5, 0.9, 0.99)]
    assert configs["momentum=0.9"].network.model == "own"
    for param, base, message in (
            ("lr", "own.py:study/sgd", "sweep one of its float arguments (learning_rate, "
                                       "momentum)"),
            ("learning_rate", "own.py:study/ready", "(none: give it as jaxcnn.Optimizer"),
            ("momentum", "own.py:study/nope", "choose from own.py:study/sgd, "
                                              "own.py:study/ready")):
        with pytest.raises(ConfigError, match=re.escape(message)):
            sweep_study([(param, [0.1])], base, "s", study).build_configs(ctx)


@pytest.mark.slow  # three runs of an NNX study: about 40 s on 2 cores
def test_an_nnx_run_that_dies_after_a_checkpoint_resumes_to_identical_results(
        fresh_models, tmp_path, monkeypatch):
    """The process dies right after the first checkpoint (parameters, BatchNorm statistics,
    optimizer state); the rerun gives the numbers of a run never interrupted."""
    import optax

    import jaxcnn as jc
    from jaxcnn.experiment import Experiment, Runtime
    from jaxcnn.pipeline import run_studies
    from jaxcnn.training import checkpoint
    from tests.conftest import TINY_BATCH, TINY_TRAIN
    from tests.test_reliability import SimulatedCrashError, numbers

    study = jc.Study("own_nnx", model=Net, variants={
        "adam": jc.Variant(optimizer=optax.adam(1e-3)),
        "sgd": jc.Variant(optimizer=jc.Optimizer(optax.sgd, learning_rate=0.05,
                                                 momentum=0.9))})
    experiment = Experiment(data="synthetic", seeds=2, epochs=2, train_examples=TINY_TRAIN,
                            val_size=50, batch_size=TINY_BATCH)

    def runtime(out: str) -> Runtime:
        return Runtime(progress=False, out=tmp_path / out)

    run_studies([study], experiment, runtime("whole"), configs=None)
    real_save = checkpoint.ChunkCheckpointer.save

    def save_then_die(self, progress) -> None:
        real_save(self, progress)
        raise SimulatedCrashError()

    monkeypatch.setattr(checkpoint.ChunkCheckpointer, "save", save_then_die)
    with pytest.raises(SimulatedCrashError):
        run_studies([study], experiment, runtime("killed"), configs=None)
    monkeypatch.setattr(checkpoint.ChunkCheckpointer, "save", real_save)
    resumed = run_studies([study], experiment, runtime("killed"), configs=None)
    assert resumed["own_nnx"]["metadata"]["resumed_from_epoch"]
    assert numbers(tmp_path / "killed", "own_nnx") == numbers(tmp_path / "whole", "own_nnx")

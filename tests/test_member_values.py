"""Member values (issue 26, item 2): the one public mechanism for numbers that must stay
data inside one compiled program. A linen model of one's own reads them with
``jc.member_value``; the seed CNN's dropout rates travel the same way."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxcnn as jc
from jaxcnn.configs import Configuration, hyperparams
from jaxcnn.models.model import Network
from tests.test_run import grayscale_tree


class Noisy(nn.Module):
    """Dense layers with a dropout whose rate is the member's value "rate"."""
    num_classes: int

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(nn.Dense(32)(x.reshape(len(x), -1) / 255.0))
        if train:
            x = jc.dropout(x, jc.member_value(self, "rate"), self.make_rng("dropout"))
        return nn.Dense(self.num_classes)(x)


class NoisyNnx(nnx.Module):
    """Noisy in Flax NNX: the same mechanism, jc.member_value(self, "rate")."""

    def __init__(self, in_channels: int, num_classes: int, image_shape, *, rngs: nnx.Rngs):
        size = int(np.prod(image_shape))
        self.hidden = nnx.Linear(size, 32, rngs=rngs)
        self.out = nnx.Linear(32, num_classes, rngs=rngs)
        self.rngs = rngs

    def __call__(self, x, train: bool = False):
        x = nnx.relu(self.hidden(x.reshape(len(x), -1) / 255.0))
        if train:
            x = jc.dropout(x, jc.member_value(self, "rate"), self.rngs.dropout())
        return self.out(x)


class PlainNnx(nnx.Module):
    def __init__(self, in_channels: int, num_classes: int, image_shape, *, rngs: nnx.Rngs):
        size = int(np.prod(image_shape))
        self.hidden = nnx.Linear(size, 32, rngs=rngs)
        self.out = nnx.Linear(32, num_classes, rngs=rngs)

    def __call__(self, x):
        return self.out(nnx.relu(self.hidden(x.reshape(len(x), -1) / 255.0)))


class Plain(nn.Module):
    """The same network without the dropout."""
    num_classes: int

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(nn.Dense(32)(x.reshape(len(x), -1) / 255.0))  # Dense_0, as in Noisy
        return nn.Dense(self.num_classes)(x)


@pytest.mark.parametrize("system", ["linen", "nnx"])
def test_values_are_member_data_of_one_program_and_rate_zero_is_no_dropout(tmp_path, capsys,
                                                                           system):
    grayscale_tree(tmp_path / "tree", train=20, test=8)
    opt = jc.Optimizer(optax.adam, learning_rate=3e-3)
    noisy, plain = ((lambda data: Noisy(data.num_classes), lambda data: Plain(data.num_classes))
                    if system == "linen" else (NoisyNnx, PlainNnx))
    study = jc.Study(f"noisy_{system}", model=noisy, variants={
        "none": jc.Variant(optimizer=opt, values={"rate": 0.0}),
        "half": jc.Variant(optimizer=opt, values={"rate": 0.5}),
        "plain": jc.Variant(optimizer=opt, model=plain)})
    results = jc.run(study, data=str(tmp_path / "tree"), seeds=2, epochs=2, batch_size=16,
                     out=str(tmp_path / "out"), progress=False)[f"noisy_{system}"]
    log = capsys.readouterr().err
    # "none" and "half" differ only in their value: one compiled program trains both.
    assert "training 4 members (2 configurations x seeds) of one network" in log, log
    accuracy = {name: [s["test_accuracy"] for s in c["seeds"]]
                for name, c in results["configs"].items()}
    losses = {name: [s["test_loss"] for s in c["seeds"]]
              for name, c in results["configs"].items()}
    # Rate 0 keeps every activation (x / 1): the network trains as one without dropout
    # (to the last bits a program of another width may round differently).
    np.testing.assert_allclose(losses["none"], losses["plain"], rtol=1e-6)
    assert accuracy["none"] == accuracy["plain"]
    assert losses["half"] != losses["none"]


def test_the_seed_cnn_carries_its_dropout_rates_as_values():
    config = Configuration(Network(), dropout=0.3, spatial_dropout=0.1)
    assert hyperparams(config, 10).values == {"spatial_dropout": 0.1, "dropout": 0.3}
    user = Configuration(Network(model="someone"), values={"rate": 0.2, "noise": 1})
    assert user.values == (("noise", 1), ("rate", 0.2))
    assert user.program().values == ("noise", "rate")  # part of the program's structure
    assert hyperparams(user, 10).values == {"noise": 1.0, "rate": 0.2}
    assert user.fingerprint() != Configuration(Network(model="someone")).fingerprint()
    # A configuration without values keeps the fingerprint it had before values existed.
    assert Configuration(Network(model="someone")).fingerprint() == \
        Configuration(Network(model="someone"), values={}).fingerprint()


def test_bad_values_are_one_line_errors():
    with pytest.raises(ValueError, match="must be a finite number"):
        Configuration(Network(model="someone"), values={"rate": float("nan")})
    with pytest.raises(ValueError, match="letters, digits"):
        Configuration(Network(model="someone"), values={"drop rate": 0.1})
    with pytest.raises(ValueError, match="the seed CNN's are its dropout rates"):
        Configuration(Network(), values={"rate": 0.1})


def test_member_value_defaults_outside_training():
    module = Noisy(3)
    x = jnp.ones((2, 28, 28, 1))
    variables = module.init(jax.random.key(0), x)
    assert set(variables) == {"params"}  # no "member" collection is created
    evaluated = module.apply(variables, x)  # no value given: the default rate, 0
    trained = module.apply({**variables, "member": {"rate": 0.0}}, x, train=True,
                           rngs={"dropout": jax.random.key(1)})
    np.testing.assert_array_equal(evaluated, trained)
    dropped = module.apply({**variables, "member": {"rate": 0.5}}, x, train=True,
                           rngs={"dropout": jax.random.key(1)})
    assert not np.allclose(dropped, evaluated)

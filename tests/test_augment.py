"""Data augmentation (random crop with zero padding, horizontal flip) as a batch regularizer."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcnn.configs import Configuration, hyperparams
from jaxcnn.data import augment, prepare_data
from jaxcnn.data.synthetic import make_synthetic
from jaxcnn.models.model import Network
from jaxcnn.models.modelfns import seed_cnn_fns
from jaxcnn.optim import regularizers
from jaxcnn.training import train

PAD = augment.PAD


def images(n: int = 64, shape=(32, 32, 3), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 256, size=(n, *shape), dtype=np.uint8)


def candidates(image: np.ndarray) -> list[np.ndarray]:
    """Every crop of the zero-padded image, and its mirror: what augmentation may give."""
    h, w, _ = image.shape
    padded = np.pad(image, ((PAD, PAD), (PAD, PAD), (0, 0)))
    crops = [padded[i:i + h, j:j + w] for i in range(2 * PAD + 1) for j in range(2 * PAD + 1)]
    return crops + [c[:, ::-1] for c in crops]


@pytest.mark.parametrize("shape", [(32, 32, 3), (28, 28, 1)])
def test_strength_zero_returns_the_batch_bit_for_bit(shape):
    x = images(shape=shape)
    out = jax.jit(augment.crop_and_flip)(jax.random.key(0), x, jnp.float32(0.0))
    assert out.shape == x.shape and out.dtype == x.dtype
    np.testing.assert_array_equal(np.asarray(out), x)


@pytest.mark.parametrize("shape", [(32, 32, 3), (28, 28, 1)])
def test_strength_one_crops_and_flips_every_image(shape):
    x = images(32, shape)
    out = np.asarray(jax.jit(augment.crop_and_flip)(jax.random.key(1), x, jnp.float32(1.0)))
    assert out.shape == x.shape and out.dtype == np.uint8
    matches = [[k for k, c in enumerate(candidates(img)) if np.array_equal(c, o)]
               for img, o in zip(x, out)]
    assert all(matches), "an output is not a crop of its zero-padded image"
    # Pixel values start at 1, so a 0 is padding: most crops move off-centre.
    assert (out == 0).any(axis=(1, 2, 3)).mean() > 0.5
    flipped = [min(m) >= (2 * PAD + 1) ** 2 for m in matches]  # only its mirror matches
    assert 0 < sum(flipped) < len(flipped)  # both flipped and unflipped images
    assert len({m[0] % (2 * PAD + 1) ** 2 for m in matches}) > 5  # offsets differ per image


def test_strength_is_the_probability_per_image():
    x = images(400)
    out = np.asarray(augment.crop_and_flip(jax.random.key(2), x, 0.25))
    changed = (out != x).any(axis=(1, 2, 3)).mean()
    # 25% chosen; a chosen image stays the same only at the centre crop, unflipped (1/162).
    assert 0.18 < changed < 0.32


def test_members_draw_their_own_augmentation():
    x = images(16)
    strengths = {name: jnp.float32(1.0) for name in regularizers.names("batch")}
    a = regularizers.transform_batch(jax.random.key(1), jnp.int32(0), x, strengths)
    b = regularizers.transform_batch(jax.random.key(2), jnp.int32(0), x, strengths)
    c = regularizers.transform_batch(jax.random.key(1), jnp.int32(1), x, strengths)
    assert not np.array_equal(a, b) and not np.array_equal(a, c)  # per member, per step


def test_bad_strength_is_rejected():
    with pytest.raises(ValueError, match="augment strength must be a number in"):
        Configuration(regularizers={"augment": 1.5})
    with pytest.raises(ValueError, match="unknown regularizer 'cutout'"):
        Configuration(regularizers={"cutout": 0.5})
    with pytest.raises(ValueError, match="OptimizerConfig"):
        Configuration(regularizers={"coupled_decay": 0.1})


def _epoch_program():
    """One member's epoch (16 images, batches of 8), compiled on its first call."""
    return jax.jit(train.make_train_epoch(seed_cnn_fns(Network(), "patches"), num_train=16,
                                          batch_size=8))


def _epoch(program, data, norm, config: Configuration):
    """One epoch of one member (seed 0) on ``data``: its final parameters and step losses."""
    keys = train.seed_keys(0)
    hp = jax.tree.map(jnp.asarray, hyperparams(config, 2))
    state, metrics = program(train.init_state(keys, seed_cnn_fns(Network()), hp), keys, data, norm,
                             jnp.int32(0))
    return jax.device_get(state.params), np.asarray(metrics["loss"])


@pytest.mark.slow  # two compiled epochs
def test_augmentation_off_trains_as_without_augmentation_bit_for_bit(monkeypatch):
    """The augment configuration's strength-0 twin against the same epoch compiled with
    no augmentation op at all (transform_batch replaced by the identity): equal bit for
    bit. At strength 1 the weights differ."""
    prepared = prepare_data(make_synthetic(40, 10), val_size=0, train_examples=16)
    data = train.ImageData(jnp.asarray(prepared.train.images), jnp.asarray(prepared.train.labels))
    norm = train.Normalizer(jnp.asarray(prepared.normalization.mean),
                            jnp.asarray(prepared.normalization.std))
    program = _epoch_program()  # members' strengths are data: one program for both
    off_params, off_loss = _epoch(program, data, norm, Configuration(regularizers={"augment": 0}))
    on_params, _ = _epoch(program, data, norm, Configuration(regularizers={"augment": 1.0}))
    monkeypatch.setattr(regularizers, "transform_batch", lambda key, step, x, strengths: x)
    plain_params, plain_loss = _epoch(_epoch_program(), data, norm, Configuration())
    np.testing.assert_array_equal(off_loss, plain_loss)
    for a, b in zip(jax.tree.leaves(off_params), jax.tree.leaves(plain_params)):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in
               zip(jax.tree.leaves(on_params), jax.tree.leaves(off_params)))

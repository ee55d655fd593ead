"""Load a finished configuration's parameters back, to evaluate or predict.

    from jaxcnn.inference import load_model

    model = load_model("results", "regularization", "baseline")   # every seed
    probs = model.predict_proba(images)            # images: (N, 32, 32, 3) uint8
    labels = model.predict(images, seed=0)         # (N,) int, seed 0's network
    loss, accuracy = model.evaluate(images, labels_true, seed=0)

The parameters come from ``OUT/<study>/params/<config>/``, written when the
configuration finished, with the model configuration and normalisation needed
to rebuild the exact network.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxcnn.checkpoint import load_params_tree
from jaxcnn.errors import JaxcnnError
from jaxcnn.model import CNN, ModelConfig
from jaxcnn.train import Normalizer, normalize


@dataclasses.dataclass(frozen=True)
class TrainedModel:
    """A configuration's network and every seed's final parameters.

    params: pytree with leaves (S, ...); seeds: the S seed numbers in order.
    """

    model_config: ModelConfig
    params: Any
    seeds: tuple[int, ...]
    normalization: Normalizer
    class_names: tuple[str, ...]

    def _seed_params(self, seed: int) -> Any:
        if seed not in self.seeds:
            raise JaxcnnError(f"seed {seed} was not trained; available seeds: {list(self.seeds)}")
        index = self.seeds.index(seed)
        return jax.tree.map(lambda x: x[index], self.params)

    def logits(self, images: np.ndarray, seed: int | None = None, batch: int = 1000) -> np.ndarray:
        """(N, 32, 32, 3) uint8 -> (N, C) logits of one seed, or (S, N, C) of all."""
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
            raise JaxcnnError(f"images must be uint8 (N, 32, 32, 3), got {images.dtype} "
                              f"{images.shape}")
        if seed is None:
            return np.stack([self.logits(images, s, batch) for s in self.seeds])
        params = self._seed_params(seed)
        apply = _apply_fn(self.model_config)
        chunks = [apply(params, jnp.asarray(images[i:i + batch]), self.normalization)
                  for i in range(0, len(images), batch)]
        return np.concatenate([np.asarray(c) for c in chunks])

    def predict_proba(self, images: np.ndarray, seed: int | None = None) -> np.ndarray:
        """Class probabilities; with seed None, the average over seeds (an ensemble)."""
        probs = jax.nn.softmax(self.logits(images, seed), axis=-1)
        return np.asarray(probs.mean(0) if seed is None else probs)

    def predict(self, images: np.ndarray, seed: int | None = None) -> np.ndarray:
        """(N,) predicted labels."""
        return self.predict_proba(images, seed).argmax(-1)

    def evaluate(self, images: np.ndarray, labels: np.ndarray, seed: int = 0
                 ) -> tuple[float, float]:
        """(mean cross-entropy, accuracy in %) of one seed on the given images."""
        logits = self.logits(images, seed)
        labels = np.asarray(labels)
        loss = optax.softmax_cross_entropy_with_integer_labels(jnp.asarray(logits),
                                                               jnp.asarray(labels))
        return float(loss.mean()), float(100.0 * (logits.argmax(-1) == labels).mean())


def _apply_fn(config: ModelConfig):
    model = CNN(dataclasses.replace(config, conv_impl="xla"))  # forward only: lax.conv is fastest

    @jax.jit
    def apply(params, images, norm):
        return model.apply({"params": params}, normalize(images, norm))

    return apply


def load_model(out: str | Path, study: str, config: str) -> TrainedModel:
    """The trained model of ``config`` in ``study`` under the results folder ``out``."""
    directory = Path(out) / study / "params" / config
    if not (directory / "meta.json").exists():
        raise JaxcnnError(f"{directory}: no saved parameters (has {study}/{config} finished?)")
    params, meta = load_params_tree(directory)
    model = meta["model"]
    model_config = ModelConfig(**{**model, "relu_after": tuple(model["relu_after"])})
    norm = Normalizer(jnp.asarray(meta["normalization"]["mean"], jnp.float32),
                      jnp.asarray(meta["normalization"]["std"], jnp.float32))
    return TrainedModel(model_config, params, tuple(meta["seeds"]), norm,
                        tuple(meta.get("class_names", ())))

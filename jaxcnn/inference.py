"""Load a finished configuration's parameters back, to evaluate or predict.

    from jaxcnn.inference import load_model

    model = load_model("results", "regularization", "baseline")   # every seed
    print(model)                                   # study, config, seeds, parameter count
    probs = model.predict_proba(images)            # images: (N, 32, 32, 3) uint8
    labels = model.predict(images, seed=model.seeds[0])   # (N,) int, one seed's network
    loss, accuracy = model.evaluate(images, labels_true, seed=model.seeds[0])

The parameters come from ``OUT/<study>/params/<config>/``, written when the
configuration finished, with the network and normalisation needed to rebuild
it exactly. The forward pass is compiled once per loaded model (and batch
size), with the convolution that trains fastest on this device (the same one
evaluation uses during training); probabilities and losses are computed from the
logits on the host, in float64.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import log_softmax, softmax

from jaxcnn.errors import JaxcnnError
from jaxcnn.models import nnx_model, registry
from jaxcnn.models.conv import default_conv
from jaxcnn.models.model import Network
from jaxcnn.models.modelfns import mode_flag, model_fns, split_weights
from jaxcnn.training.checkpoint import load_params_tree
from jaxcnn.training.train import Normalizer, normalize
from jaxcnn.user_code import import_code


@dataclasses.dataclass(frozen=True)
class TrainedModel:
    """A configuration's network and every seed's final parameters.

    params: what was saved of each member (``modelfns.saved_weights``: the parameters, with
    the model's state where it has one), leaves (S, ...); seeds: the S seed numbers in order;
    study and config: where it was loaded from (for its summary).
    """

    network: Network
    params: Any
    seeds: tuple[int, ...]
    normalization: Normalizer
    class_names: tuple[str, ...]
    conv: str = dataclasses.field(default_factory=lambda: default_conv(jax.default_backend()))
    study: str = ""
    config: str = ""

    @property
    def num_parameters(self) -> int:
        """Trainable parameters of one seed's network (leaves are (S, ...))."""
        return int(sum(np.prod(np.shape(leaf)[1:], dtype=np.int64)
                       for leaf in jax.tree.leaves(split_weights(self.params)[0])))

    def __repr__(self) -> str:
        # A summary, not the dataclass default: that one prints every weight array.
        name = f"{self.study}/{self.config}" if self.study else "(unnamed)"
        relu = ",".join(self.network.relu_after)
        what = (f"ReLU after {relu or 'nothing'}, conv {self.conv}"
                if self.network.model == "cnn" else f"model {self.network.model!r}")
        return (f"TrainedModel({name}: seeds {list(self.seeds)}, "
                f"{self.num_parameters:,} parameters per seed, "
                f"{len(self.class_names) or self.network.num_classes} classes, {what})")

    def check_seed(self, seed: int) -> int:
        """The index of ``seed`` in ``seeds``; a JaxcnnError naming the trained seeds if absent."""
        if seed not in self.seeds:
            raise JaxcnnError(f"seed {seed} was not trained; trained seeds: {list(self.seeds)}")
        return self.seeds.index(seed)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of the images the model takes (uint8; :meth:`logits` normalises them)."""
        return tuple(self.network.image_shape)

    def module(self, seed: int | None = None) -> Any:
        """The model as its author built it for this data. Linen: the module, to call as
        ``module().apply(variables(seed), x)`` (for the seed CNN ``model.CNN``, called as
        ``apply(variables, x)``: evaluation). NNX: the ``nnx.Module`` holding
        ``seed``'s weights (default: the first seed), in evaluation mode."""
        name = self.network.model
        if name == registry.DEFAULT_MODEL:
            from jaxcnn.models.model import CNN

            return CNN(self.network, conv=self.conv)
        build = nnx_model.builder(registry.factory(name), name)
        if build is None:
            return registry.build_model(name, self.network)
        params, state = split_weights(self._seed_params(self.seeds[0] if seed is None
                                                        else seed))
        model = nnx_model.NnxModel(lambda rngs: build(self.network, rngs), name, mode_flag)
        return model.module(params, state, jax.random.key(0), train=False)

    def variables(self, seed: int = 0) -> dict:
        """One seed's variables: ``{"params": ..., **state}`` (its BatchNorm statistics and
        any other collection; for an NNX model its other variables by layer, e.g.
        ``{"bn": {"mean": ..., "var": ...}}``), host arrays, for a linen
        ``module().apply``. Inputs are normalised floats:
        ``(x / 255 - normalization.mean) / normalization.std``."""
        params, state = split_weights(self._seed_params(seed))
        return {"params": params, **state}

    def _seed_params(self, seed: int) -> Any:
        index = self.check_seed(seed)
        return jax.tree.map(lambda x: x[index], self.params)

    @functools.cached_property
    def _apply(self):
        """The jitted forward pass, built once per model (jit caches per input shape)."""
        fns = model_fns(self.network, self.conv)

        @jax.jit
        def apply(weights, images, norm):  # evaluation mode: no dropout, running statistics
            params, model_state = split_weights(weights)
            return fns.apply(params, model_state, normalize(images, norm))[0]

        return apply

    def logits(self, images: np.ndarray, seed: int | None = None, batch: int = 1000) -> np.ndarray:
        """(N, H, W, C) uint8 images of the network's shape -> (N, classes) logits of one
        seed, or (S, N, classes) of all."""
        images = np.asarray(images)
        shape = tuple(self.network.image_shape)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != shape:
            raise JaxcnnError(f"images must be uint8 (N, {', '.join(map(str, shape))}), "
                              f"got {images.dtype} "
                              f"{images.shape}")
        if seed is None:
            return np.stack([self.logits(images, s, batch) for s in self.seeds])
        params = self._seed_params(seed)
        chunks = []
        for start in range(0, len(images), batch):
            part = images[start:start + batch]
            # Pad the last chunk to the batch size: one compiled shape for every call.
            padded = np.concatenate([part, np.zeros((batch - len(part), *part.shape[1:]),
                                                    np.uint8)]) if len(part) < batch else part
            chunks.append(np.asarray(self._apply(params, jnp.asarray(padded),
                                                 self.normalization))[:len(part)])
        return np.concatenate(chunks)

    def predict_proba(self, images: np.ndarray, seed: int | None = None) -> np.ndarray:
        """Class probabilities; with seed None, the average over seeds (an ensemble)."""
        probs = softmax(self.logits(images, seed).astype(np.float64), axis=-1)
        return probs.mean(0) if seed is None else probs

    def predict(self, images: np.ndarray, seed: int | None = None) -> np.ndarray:
        """(N,) predicted labels."""
        return self.predict_proba(images, seed).argmax(-1)

    def evaluate(self, images: np.ndarray, labels: np.ndarray, seed: int = 0
                 ) -> tuple[float, float]:
        """(mean cross-entropy, accuracy in %) of one seed on the given images."""
        logits = self.logits(images, seed).astype(np.float64)
        labels = np.asarray(labels)
        losses = -log_softmax(logits, axis=-1)[np.arange(len(labels)), labels]
        return float(losses.mean()), float(100.0 * (logits.argmax(-1) == labels).mean())


def load_model(out: str | Path, study: str, config: str) -> TrainedModel:
    """The trained model of ``config`` in ``study`` under the results folder ``out``."""
    study_dir = Path(out) / study
    directory = study_dir / "params" / config
    if not (directory / "meta.json").exists():
        raise JaxcnnError(_missing_reason(study_dir, config))
    try:
        params, meta = load_params_tree(directory)
    except (OSError, ValueError, KeyError) as err:
        raise JaxcnnError(f"{directory}: cannot read the saved parameters ({err}); "
                          "rerun the configuration with --fresh --configs "
                          f"{config}") from None
    model = meta["model"]
    _import_model(model.get("model", "cnn"), model.get("model_source"), directory)
    network = Network(relu_after=tuple(model["relu_after"]),
                      num_classes=int(model["num_classes"]),
                      image_shape=tuple(model.get("image_shape", (32, 32, 3))),
                      model=model.get("model", "cnn"))
    norm = Normalizer(jnp.asarray(meta["normalization"]["mean"], jnp.float32),
                      jnp.asarray(meta["normalization"]["std"], jnp.float32))
    return TrainedModel(network, params, tuple(meta["seeds"]), norm,
                        tuple(meta.get("class_names", ())), study=study, config=config)


def _import_model(name: str, source: str | None, directory: Path) -> None:
    """Makes sure model ``name`` is registered here: imports the module that registered it
    when the run did (``source``, recorded in meta.json), or ends with one line saying
    what to import."""
    if registry.is_registered(name):
        return
    if source and source != "__main__":
        with contextlib.suppress(JaxcnnError):
            import_code(source)  # a module name, or a script's path
        if registry.is_registered(name):
            return
    where = (f"it was registered by module {source!r}, which cannot be imported from here"
             if source and source != "__main__" else
             "it was registered by a script run directly" if source else
             "the run did not record where it was registered")
    raise JaxcnnError(f"{directory}: model {name!r} is not registered in this process ({where}); "
                      f"import the module that calls register_model({name!r}, ...) first")


def trained_configs(study_dir: str | Path) -> list[str]:
    """The configurations of a study folder whose parameters were saved."""
    params = Path(study_dir) / "params"
    if not params.is_dir():
        return []
    return sorted(p.name for p in params.iterdir() if (p / "meta.json").exists())


def _missing_reason(study_dir: Path, config: str) -> str:
    """One line on why ``study_dir/params/config`` has no model, and what to do."""
    if not study_dir.is_dir():
        return (f"{study_dir}: no such study folder (expected OUT/<study>, e.g. "
                "results/regularization, written by a finished run)")
    done = trained_configs(study_dir)
    if not done:
        return (f"{study_dir}: no trained configuration saved yet (run or finish the study "
                "first)")
    return (f"{study_dir}: no trained configuration {config!r}; trained: {', '.join(done)}")

"""Every member's predicted class of every test and validation image is stored (issue 27,
item 3): OUT/STUDY/predictions/CONFIG.npz reproduces every recorded test accuracy and
last validation accuracy exactly, also after a rerun adds seeds."""

from __future__ import annotations

import flax.linen as nn
import numpy as np
import optax

import jaxcnn as jc
from jaxcnn.training import predictions
from tests.test_run import grayscale_tree


class Tiny(nn.Module):
    num_classes: int

    @nn.compact
    def __call__(self, x, train: bool = False):
        return nn.Dense(self.num_classes)(nn.relu(nn.Dense(16)(x.reshape(len(x), -1))))


def accuracy(predicted: np.ndarray, labels: np.ndarray) -> float:
    """As the run computes it: right answers over images, in float64, times 100."""
    right = (predicted == labels).sum()
    return 100.0 * right / labels.shape[-1]


def check(out, study: str, config: str, seeds: int) -> dict:
    results = jc.run(STUDY, data=str(out.parent / "tree"), seeds=seeds, epochs=1,
                     batch_size=16, out=str(out), progress=False)[study]
    path = predictions.path_of(out / study, config)
    with np.load(path) as f:
        stored = {k: f[k] for k in f.files}
    records = results["configs"][config]["seeds"]
    assert stored["seeds"].tolist() == [r["seed"] for r in records]
    assert stored["test"].dtype == np.int16 and stored["test"].shape == (seeds, 300)
    for i, record in enumerate(records):
        assert accuracy(stored["test"][i], stored["test_labels"]) == record["test_accuracy"]
        assert accuracy(stored["val"][i], stored["val_labels"][i]) == \
            record["history"]["val_accuracy"][-1]
    # The validation images are the held-out training images the indices name.
    assert stored["val_indices"].shape == stored["val"].shape
    assert len(set(stored["val_indices"][0].tolist())) == stored["val"].shape[1]
    return stored


STUDY = jc.Study("pred", model=lambda data: Tiny(data.num_classes),
                 variants={"sgd": jc.Variant(optimizer=optax.sgd(0.05))})


def test_predictions_reproduce_every_recorded_accuracy_also_after_more_seeds(tmp_path):
    grayscale_tree(tmp_path / "tree", train=40, test=100)  # a 300-image test tree
    first = check(tmp_path / "out", "pred", "sgd", seeds=5)
    more = check(tmp_path / "out", "pred", "sgd", seeds=7)  # the rerun trains seeds 5, 6
    np.testing.assert_array_equal(more["test"][:5], first["test"])  # kept, not retrained
    assert predictions.read(predictions.path_of(tmp_path / "out" / "pred", "sgd")).keys() == \
        set(range(7))

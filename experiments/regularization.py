"""Experiment 1 of the seed notebook: no regularization, L2, dropout.

    python -m experiments.regularization --data synthetic --seeds 2 --epochs 1
"""

from __future__ import annotations

import sys

from jaxcnn.model import ModelConfig
from jaxcnn.optim import OptimizerConfig
from jaxcnn.runner import RunConfig
from jaxcnn.study import Study, StudyOptions, main

L2 = 0.003  # the seed's Adam(weight_decay=0.003): coupled L2
DROPOUT = 0.3  # the seed's Dropout2d(0.3) after conv2 and Dropout(0.3) after fc1


def build_configs(opts: StudyOptions) -> dict[str, RunConfig]:
    init = "torch" if opts.torch_parity else "lecun"
    base = ModelConfig(init=init, conv_impl=opts.conv_impl)
    # The seed's dropout model (nn.Sequential) has a ReLU after conv1 only.
    relus = ("conv1",) if opts.torch_parity else base.relu_after
    dropout = ModelConfig(init=init, spatial_dropout=DROPOUT, dropout=DROPOUT,
                          relu_after=relus, conv_impl=opts.conv_impl)
    adam = OptimizerConfig(lr=opts.lr)
    return {
        "baseline": RunConfig(base, adam, f"no regularization, {init} init"),
        "l2": RunConfig(base, OptimizerConfig(lr=opts.lr, weight_decay=L2, decay="coupled"),
                        f"coupled L2 {L2} (torch Adam weight_decay), {init} init"),
        "dropout": RunConfig(dropout, adam,
                             f"Dropout2d {DROPOUT} after conv2, Dropout {DROPOUT} after fc1"
                             + (", ReLU after conv1 only (the seed's model)"
                                if opts.torch_parity else ", with ReLUs")),
    }


STUDY = Study(name="regularization", title="Regularization", build_configs=build_configs,
              reference="baseline", parity_reference="baseline")

if __name__ == "__main__":
    sys.exit(main(STUDY))

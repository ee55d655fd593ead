"""Experiment 2 of the seed notebook: weight initialization.

    python -m experiments.initialization --data synthetic --seeds 2 --epochs 1

Default mode compares JAX's initializers (truncated normals) with PyTorch's
default; ``--torch-parity`` compares what the seed ran: PyTorch's default and
its plain-normal ``xavier_normal_`` / ``kaiming_normal_`` (over default biases).
"""

from __future__ import annotations

import sys

from jaxcnn.model import ModelConfig
from jaxcnn.optim import OptimizerConfig
from jaxcnn.runner import RunConfig
from jaxcnn.study import Study, StudyOptions, main

DESCRIPTIONS = {
    "lecun": "LeCun truncated normal, var 1/fan_in, zero bias (Flax's default)",
    "glorot": "Glorot/Xavier truncated normal, var 2/(fan_in+fan_out), zero bias",
    "he": "He/Kaiming truncated normal, var 2/fan_in, zero bias",
    "torch": "PyTorch default: U(+-1/sqrt(fan_in)) weights and biases",
    "torch_xavier": "torch xavier_normal_: plain normal, var 2/(fan_in+fan_out); default bias",
    "torch_kaiming": "torch kaiming_normal_: plain normal, var 2/fan_in; default bias",
}


def build_configs(opts: StudyOptions) -> dict[str, RunConfig]:
    # name shown to users -> initializer scheme
    if opts.torch_parity:
        schemes = {"torch": "torch", "glorot": "torch_xavier", "he": "torch_kaiming"}
    else:
        schemes = {"lecun": "lecun", "glorot": "glorot", "he": "he", "torch": "torch"}
    adam = OptimizerConfig(lr=opts.lr)
    return {name: RunConfig(ModelConfig(init=scheme, conv_impl=opts.conv_impl), adam,
                            DESCRIPTIONS[scheme])
            for name, scheme in schemes.items()}


STUDY = Study(name="initialization", title="Initialization", build_configs=build_configs,
              reference="lecun", parity_reference="torch")

if __name__ == "__main__":
    sys.exit(main(STUDY))

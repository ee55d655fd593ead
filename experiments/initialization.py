"""Experiment 2 of the seed notebook: weight initialization.

    python -m experiments.initialization --data synthetic --seeds 2 --epochs 1

Default mode compares JAX's initializers (truncated normals) with PyTorch's
default; ``--torch-parity`` compares what the seed ran: PyTorch's default and
its plain-normal ``xavier_normal_`` / ``kaiming_normal_`` (over default biases).
The configurations are defined in ``jaxcnn/studies.py``.
"""

import sys

from jaxcnn.cli import study_main
from jaxcnn.studies import INITIALIZATION as STUDY

if __name__ == "__main__":
    sys.exit(study_main(STUDY))

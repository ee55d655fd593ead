"""Experiment 1 of the seed notebook: no regularization, L2, dropout.

    python -m experiments.regularization --data synthetic --seeds 2 --epochs 1

The configurations are defined in ``jaxcnn/studies.py``.
"""

import sys

from jaxcnn.cli import study_main
from jaxcnn.studies import REGULARIZATION as STUDY

if __name__ == "__main__":
    sys.exit(study_main(STUDY))

"""Experiment 3 of the seed notebook: learning-rate schedules.

    python -m experiments.schedules --data synthetic --seeds 2 --epochs 2

By default each schedule is scaled to the run so that it acts within --epochs:
``constant`` (the reference), ``step`` (10x down at the run's midpoint),
``exponential`` (x0.1 per epoch, smoothly) and ``cyclic`` (whole triangular
cycles between lr and 5 lr, beta1 cycling against it). ``--torch-parity`` steps
the notebook's three schedulers once per epoch, exactly as it did. The
configurations are defined in ``jaxcnn/studies.py``.
"""

import sys

from jaxcnn.cli import study_main
from jaxcnn.studies import SCHEDULES as STUDY

if __name__ == "__main__":
    sys.exit(study_main(STUDY))

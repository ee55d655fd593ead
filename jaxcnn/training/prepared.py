"""What a run knows before it trains: the data, the studies' configurations, the settings.

:func:`jaxcnn.pipeline.prepare` builds it; the results store (``store.py``) and the
pipeline read it. It lives below both so that neither imports the other for it.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jaxcnn.configs import Configuration
    from jaxcnn.data import Dataset, PreparedData
    from jaxcnn.experiment import Experiment
    from jaxcnn.studies import StudyContext


@dataclasses.dataclass
class Prepared:
    """Everything a run needs before training: data, configurations, settings."""

    dataset: Dataset
    prepared: PreparedData
    ctx: StudyContext
    settings: dict
    configs: dict[str, dict[str, Configuration]]  # study -> name -> configuration
    siblings: dict[str, list[str]]  # "study/config" -> the same model elsewhere
    experiment: Experiment  # as run: a defaulted --val-size fitted to the data

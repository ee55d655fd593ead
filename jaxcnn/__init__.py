"""jaxcnn: train many seeds of a Flax model at once, and say which differences are real.

    import flax.linen as nn, optax, jaxcnn as jc

    study = jc.Study("mine", model=lambda data: Net(data.num_classes), reference="adam",
                     variants={"adam": jc.Variant(optimizer=optax.adam(1e-3)),
                               "sgd": jc.Variant(optimizer=optax.sgd(0.05, momentum=0.9))})
    jc.run([study], data="my_images/", seeds="auto", out="results")
    jc.report("results")

The names below are the public API; everything else is the library's inside (see
docs/architecture.md). They load on first use, so ``import jaxcnn`` and the ``jaxcnn``
command start without importing JAX.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> the module that defines it
_EXPORTS = {
    "Study": "jaxcnn.studies", "Variant": "jaxcnn.studies", "STUDIES": "jaxcnn.studies",
    "Optimizer": "jaxcnn.optim.optax_optimizer", "Metric": "jaxcnn.metric",
    "OptimizerConfig": "jaxcnn.optim.adam", "ScheduleConfig": "jaxcnn.optim.adam",
    "Configuration": "jaxcnn.configs", "Network": "jaxcnn.models.model",
    "member_value": "jaxcnn.models.model", "dropout": "jaxcnn.models.model",
    "run": "jaxcnn.api", "report": "jaxcnn.api", "load": "jaxcnn.api", "results": "jaxcnn.api",
    "TrainedModel": "jaxcnn.inference",
    "register_model": "jaxcnn.models.registry", "register_source": "jaxcnn.data.sources",
    "register_schedule": "jaxcnn.optim.schedules",
    "register_regularizer": "jaxcnn.optim.regularizers",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'jaxcnn' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups find it directly
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)

"""Reading and writing ``results.json``, atomically.

Layout (one file per study, ``OUT/<study>/results.json``)::

    {"experiment": "regularization",
     "metadata": {"versions": {...}, "device": {...}, "data": {...},
                  "flags": {...}, "settings": {...}, "wall_seconds": {config: s}},
     "configs": {"baseline": {"description": ..., "optimizer": ..., "init": ...,
                              "seeds": [{"seed": 0, "test_accuracy": 66.1,
                                         "test_loss": 0.97, "diverged_epoch": null,
                                         "history": {"train_loss": [...], "val_loss": [...],
                                                     "val_accuracy": [...],
                                                     "train_step_loss": [...]}}, ...]},
                 ...},
     "statistics": {...}}

Non-finite numbers are written as null (JSON has no NaN); a diverged seed has
null test numbers and the epoch it diverged in.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from jaxcnn.errors import ResumeError

# Read once at import (os.umask can only be read by setting it, which is not thread-safe).
_UMASK = os.umask(0)
os.umask(_UMASK)


def write_json_atomic(path: Path, payload: Any) -> None:
    """Writes ``payload`` to ``path`` via a temp file and a rename.

    A reader (or a rerun after a crash) sees the old file or the new one,
    never half of one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle, indent=1, allow_nan=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it private; a results file is not
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_results(path: Path) -> dict | None:
    """The results file at ``path``, None if there is none."""
    if not path.exists():
        return None
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, json.JSONDecodeError) as err:
        raise ResumeError(
            f"{path}: cannot read the existing results ({err}); rerun with --fresh to start over"
        ) from None

"""Reading and writing ``results.json``, atomically.

Layout (one file per study, ``OUT/<study>/results.json``)::

    {"experiment": "regularization",
     "metadata": {"versions": {...}, "device": {...}, "git_commit": ..., "data": {...},
                  "settings": {...}, "reference": "baseline", "runtime": {...},
                  "command": "python -m experiments.regularization ..." (an equivalent
                  rerun of this study), "invoked_as": the command line that ran,
                  "finished_after_seconds": {config: s from the start to its writing},
                  "compile_seconds": {...}, ...},
     "configs": {"baseline": {"description": ..., "optimizer": ..., "init": ...,
                              "seeds": [{"seed": 0, "test_accuracy": 66.1,
                                         "test_loss": 0.97, "diverged_epoch": null,
                                         "history": {"train_loss": [...], "val_loss": [...],
                                                     "val_accuracy": [...],
                                                     "train_step_loss": [...]}}, ...]},
                 ...},
     "statistics": {...}}

``schema_version`` says which layout a file has: files without it are version 1 (written
before 2026-12-07, the same layout), which this code reads as they are; a file of a later
version than :data:`SCHEMA_VERSION` was written by a newer jaxcnn and is refused in one line.

The sequential decisions of a run (its design, family and every look, one block for all the
studies it trained together) are stored once per --out, in ``OUT/decisions.json``
(``{"runs": {"<its studies joined by +>": block}}``); each study's results.json holds
``"decisions": {"stored_in": "decisions.json", "run": "<key>"}`` (schema 3 on).
:func:`write_results` and :func:`read_results` do the swap, so every reader sees the block
itself; a version-2 file holding its own copy is read as it is.

Non-finite numbers are written as null (JSON has no NaN); a diverged seed has
null test numbers and the epoch it diverged in. :func:`read_results` parses every file
with the schema's dataclasses (``records.py``), so a hand-edited or damaged file is one
line naming the file, the place and the fix, never a KeyError later on.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from jaxcnn.errors import ResumeError
from jaxcnn.training.records import StudyRecord

SCHEMA_VERSION = 3  # 1: no "schema_version" key; 2: the key, and metadata.git_dirty;
# 3: the decisions block in OUT/decisions.json, a reference to it in results.json
DECISIONS = "decisions.json"
FIX = ("restore the file, or rerun that study with --fresh to start it over (its "
       "finished results are then lost)")


def write_json_atomic(path: Path, payload: Any) -> None:
    """Writes ``payload`` to ``path`` via a temp file and a rename.

    A reader (or a rerun after a crash) sees the old file or the new one,
    never half of one. The temp file is created with mode 0o666, so the kernel
    applies the process's umask as for any new file (mkstemp would make it 0600,
    and reading the umask means setting it, which is not thread-safe).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle, indent=1, allow_nan=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_results(path: Path) -> dict | None:
    """The results file at ``path`` (its shape checked), None if there is none.

    Raises ResumeError, one line naming the file, what is wrong and the fix, for a file
    that cannot be read, is not JSON, or is not shaped as written by this package.
    """
    if not path.exists():
        return None
    try:
        with open(path) as handle:
            payload = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ResumeError(f"{path}: cannot read the existing results ({err}); {FIX}") from None
    version = payload.get("schema_version", 1) if isinstance(payload, dict) else 1
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise ResumeError(f"{path}: written by a newer jaxcnn (results schema {version}; this "
                          f"one reads up to {SCHEMA_VERSION}); upgrade jaxcnn, or give "
                          "another --out")
    problem = results_problem(payload)
    if problem is not None:
        raise ResumeError(f"{path}: {problem} (edited by hand, or not a jaxcnn results file); "
                          f"{FIX}")
    reference = payload.get("decisions")
    if isinstance(reference, dict) and "stored_in" in reference:
        block = _read_blocks(path.parent.parent / DECISIONS).get(reference.get("run"))
        if block is None:
            raise ResumeError(f"{path}: its decisions (run {reference.get('run')!r}) are not in "
                              f"{path.parent.parent / DECISIONS}; restore that file, or rerun "
                              "the study with --fresh")
        payload["decisions"] = block
    return payload


def _block_key(block: dict, study: str) -> str:
    """A run's key in decisions.json: the studies its comparisons belong to, joined by +
    (``study``'s name for a block of no comparison)."""
    studies = {name.split("/")[0] for name in block.get("comparisons", {})}
    return "+".join(sorted(studies)) or study


def _read_blocks(path: Path) -> dict:
    """The runs' decisions blocks in ``path`` (OUT/decisions.json), {} if there is none."""
    if not path.exists():
        return {}
    try:
        with open(path) as handle:
            runs = json.load(handle).get("runs")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as err:
        raise ResumeError(f"{path}: cannot read the recorded decisions ({err}); restore it, "
                          "or rerun with --fresh") from None
    return runs if isinstance(runs, dict) else {}


def write_results(path: Path, results: dict) -> None:
    """Writes a study's results to ``path`` (OUT/<study>/results.json): its decisions
    block once into OUT/decisions.json (first, so a reference never points at nothing),
    a reference in results.json."""
    block = results.get("decisions")
    if isinstance(block, dict) and "design" in block:
        key, store = _block_key(block, path.parent.name), path.parent.parent / DECISIONS
        blocks = _read_blocks(store)
        if blocks.get(key) != block:
            write_json_atomic(store, {"schema_version": SCHEMA_VERSION,
                                      "runs": {**blocks, key: block}})
        results = {**results, "decisions": {"stored_in": DECISIONS, "run": key}}
    write_json_atomic(path, results)


def keep_decisions(out: Path, all_results: dict[str, dict]) -> None:
    """Drops from OUT/decisions.json every block no study of ``all_results`` (every study
    in --out) refers to any more (a report merging separate runs replaces theirs)."""
    store = Path(out) / DECISIONS
    blocks = _read_blocks(store)
    used = {_block_key(r["decisions"], name) for name, r in all_results.items()
            if isinstance(r.get("decisions"), dict) and "design" in r["decisions"]}
    if set(blocks) - used:
        write_json_atomic(store, {"schema_version": SCHEMA_VERSION,
                                  "runs": {k: v for k, v in blocks.items() if k in used}})


def results_problem(payload: Any) -> str | None:
    """What keeps ``payload`` from being a results file this package reads, None if
    nothing: :class:`~jaxcnn.training.records.StudyRecord` parses it."""
    try:
        StudyRecord.from_json(payload)
    except ValueError as err:
        return str(err)
    return None

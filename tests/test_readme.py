"""The README's Python blocks run as written after the quick start's run; its numbers hold.

The quick start trains into ``results/`` on CIFAR-10 (``python -m experiments.all``).
Here a tiny run on synthetic data stands in for it: ``jaxcnn regularization --data
synthetic --seeds 2 ... --out results`` in a temporary working directory, and the blocks
are executed there with one substitution (SUBSTITUTIONS below): the data source
``"cifar10"`` becomes ``"synthetic"``, the data the tiny run trained on. Nothing else in
the README's text is changed, so the blocks are what a user would paste.
"""

from __future__ import annotations

import contextlib
import io
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TINY_BATCH, TINY_TRAIN

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))


def documentation() -> str:
    """README and every page of docs/, one text: where the runnable examples live."""
    return "\n".join(p.read_text() for p in [README, *DOCS])
# README text -> what runs here instead (each must occur in the README's Python blocks).
SUBSTITUTIONS = {'load_dataset("cifar10")': 'load_dataset("synthetic")'}


def python_blocks(text: str) -> list[str]:
    """The ```python fences of a Markdown text (indented ones too, e.g. inside a list)."""
    blocks = re.findall(r"^([ \t]*)```python\n(.*?)^\1```", text, re.MULTILINE | re.DOTALL)
    return [textwrap.dedent(body) for _, body in blocks]


def test_python_blocks_are_found():
    blocks = python_blocks(documentation())
    assert blocks, "the README has no ```python block"
    for old in SUBSTITUTIONS:
        assert any(old in block for block in blocks), f"{old} is no longer in the README"


@pytest.mark.slow
def test_readme_python_blocks_run_after_the_quick_start(tmp_path, monkeypatch):
    from jaxcnn import console

    monkeypatch.chdir(tmp_path)
    assert console.main(["regularization", "--data", "synthetic", "--seeds", "2", "--epochs",
                         "1", "--train-examples", str(TINY_TRAIN), "--val-size", "50",
                         "--batch-size", str(TINY_BATCH), "--configs", "baseline",
                         "--no-progress", "--out", "results"]) == 0
    for block in python_blocks(documentation()):
        for old, new in SUBSTITUTIONS.items():
            block = block.replace(old, new)
        namespace: dict = {"__name__": "__readme__"}
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            # dont_inherit: not this file's `from __future__ import annotations` (string
            # annotations make a dataclass look its module up in sys.modules).
            exec(compile(block, "README.md", "exec", dont_inherit=True), namespace)  # noqa: S102
        check_inference_block(namespace, printed.getvalue())


def check_inference_block(namespace: dict, printed: str) -> None:
    """What the inference snippet promises: a short summary, spread images, 8 predictions."""
    if "model" not in namespace:
        return
    lines = printed.splitlines()
    summary = lines[0]
    assert summary.startswith("TrainedModel(regularization/baseline: seeds [0, 1]"), summary
    assert "parameters per seed" in summary and len(summary) < 250, summary
    assert "Array" not in printed and "[[" not in printed
    assert re.fullmatch(r"seed 0: test accuracy [\d.]+%, test loss [\d.]+", lines[1]), lines[1]
    predictions = [line for line in lines if " -> " in line]
    assert len(predictions) == 8
    ds, pick = namespace["ds"], namespace["pick"]
    assert len(np.unique(ds.test_labels[pick])) > 1, "the sample holds one class only"


@pytest.mark.parametrize("path", ["README.md", "experiments/results/PARITY.md",
                                  "benchmarks/NOTES.md", "experiments/results/README.md",
                                  *(f"docs/{p.name}" for p in DOCS)])
def test_docs_cite_commits_not_work_periods(path):
    """Runs are labelled by commit and date, not by internal names like "session 1"."""
    text = (ROOT / path).read_text()
    assert not re.search(r"\b(this|that|last|next) session\b|\bsession \d", text, re.I), path

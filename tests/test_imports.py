"""Importing jaxcnn changes nothing in the process, and lower layers never import higher ones.

Both are checked in a fresh interpreter: this test process has long imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_python(code: str) -> dict:
    """Runs ``code`` in a fresh interpreter at the repository root; its last stdout line
    is JSON."""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# The third-party libraries are imported (and JAX's backend started) before the first
# snapshot: jax itself sets TF_CPP_MIN_LOG_LEVEL and TPU_SKIP_MDS_QUERY, which is not ours.
EVERY_MODULE = """
import importlib, json, logging, os, pkgutil
import jax, matplotlib, optax, orbax.checkpoint, flax.linen
import jaxcnn
jax.devices()

def snapshot():
    umask = os.umask(0o022)
    os.umask(umask)
    loggers = {name: logging.getLogger(name).level for name in ("", "absl", "jax", "orbax")}
    return {"environ": dict(os.environ), "umask": umask, "backend": matplotlib.get_backend(),
            "levels": loggers, "absl_filters": len(logging.getLogger("absl").filters)}

before = snapshot()
names = sorted(m.name for m in pkgutil.walk_packages(jaxcnn.__path__, "jaxcnn."))
for name in names:
    importlib.import_module(name)
print(json.dumps({"before": before, "after": snapshot(), "modules": names}))
"""


def test_importing_every_module_leaves_the_process_as_it_was():
    """No environment variable, umask, matplotlib backend or logging level is changed by
    an import: they are set where needed, scoped."""
    seen = run_python(EVERY_MODULE)
    assert "jaxcnn.training.runner" in seen["modules"]
    assert "jaxcnn.reporting.plots" in seen["modules"]
    before, after = seen["before"], seen["after"]
    changed = {k for k in {*before["environ"], *after["environ"]}
               if before["environ"].get(k) != after["environ"].get(k)}
    assert changed == set()
    for key in ("umask", "backend", "levels", "absl_filters"):
        assert after[key] == before[key], key


LOADING = """
import json, sys
import jaxcnn.inference, jaxcnn.training.checkpoint, jaxcnn.training.results
print(json.dumps(sorted(m for m in sys.modules if m.startswith("jaxcnn."))))
"""


def test_loading_a_model_imports_neither_the_runner_nor_the_plots():
    """inference, checkpoint and results are the lower layers: loading a trained model
    pulls in no training machinery and no plotting."""
    modules = run_python(LOADING)
    assert "jaxcnn.training.checkpoint" in modules
    for higher in ("jaxcnn.training.runner", "jaxcnn.training.engine", "jaxcnn.reporting.plots",
                   "jaxcnn.pipeline", "jaxcnn.reporting.report"):
        assert higher not in modules, higher


STORE = """
import json, sys
import jaxcnn.training.store
print(json.dumps(sorted(m for m in sys.modules if m.startswith("jaxcnn."))))
"""


def test_the_results_store_does_not_import_the_training_machinery():
    """The store takes finished members (``jaxcnn.training.members``) and writes them; the engine
    and runner that produce them sit above it, and so does the pipeline that joins them."""
    modules = run_python(STORE)
    assert "jaxcnn.training.members" in modules and "jaxcnn.training.checkpoint" in modules
    for higher in ("jaxcnn.training.runner", "jaxcnn.training.engine",
                   "jaxcnn.pipeline", "jaxcnn.reporting.plots"):
        assert higher not in modules, higher


PLANNER = """
import json, sys
import jaxcnn.training.plan, jaxcnn.training.members
print(json.dumps(sorted(m for m in sys.modules
                        if m.split(".")[0] in ("jax", "jaxlib", "flax", "optax", "jaxcnn"))))
"""


def test_the_planner_needs_no_jax():
    """Planning a round is a pure function of configurations and results dicts: importing
    the planner (and the members it plans) loads neither JAX nor any other jaxcnn layer
    but the error types."""
    modules = run_python(PLANNER)
    assert set(modules) <= {"jaxcnn", "jaxcnn.training", "jaxcnn.training.plan",
                            "jaxcnn.training.members", "jaxcnn.errors"}, modules


def test_no_function_in_the_package_is_over_60_lines():
    """Issue 17's bar for reading the code: every function of jaxcnn/ fits on a screen."""
    import ast

    long = []
    for path in sorted((ROOT / "jaxcnn").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > 60:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines})")
    assert long == []

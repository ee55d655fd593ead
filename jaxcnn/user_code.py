"""Importing a user's code again in a new process: a file or module, and where an object lives.

A study of one's own (its model, its data source) is defined in the user's file. A later
``jaxcnn evaluate`` / ``predict`` / ``jax.load`` in a new process imports that file again
to find it, and results.json records ``jaxcnn run FILE.py:NAME`` as the command that
reproduces a run started from Python.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from jaxcnn.errors import JaxcnnError


def import_code(where: str) -> ModuleType:
    """The module ``where`` names: a ``.py`` file (imported from its folder under its own
    name, its folder first on ``sys.path``) or a dotted module name. One-line
    JaxcnnError when it cannot be imported."""
    if where.endswith(".py"):
        path = Path(where).expanduser().resolve()
        if not path.is_file():
            raise JaxcnnError(f"{where}: no such file")
        folder = str(path.parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        where = path.stem
    try:
        return importlib.import_module(where)
    except SyntaxError as err:
        raise JaxcnnError(f"{err.filename}:{err.lineno}: {err.msg}") from None
    except ImportError as err:
        raise JaxcnnError(f"cannot import {where!r} ({err}); give FILE.py:NAME or an "
                          "importable module:NAME") from None


def module_source(module_name: str | None) -> str | None:
    """How a new process imports ``module_name`` again: its name, or for ``__main__`` (a
    script run directly) the script's path; None when neither is known."""
    if module_name != "__main__":
        return module_name
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    return str(Path(path).resolve()) if path and path.endswith(".py") else None


def locate(obj: Any) -> str | None:
    """Where a module-level variable holds ``obj``: ``FILE.py:NAME`` for a script run
    directly (``__main__``), ``module:NAME`` for an imported module; None if no module
    imported so far (the package's own left out) has one."""
    for module_name, module in list(sys.modules.items()):
        if module_name.split(".")[0] == "jaxcnn" or not getattr(module, "__file__", None):
            continue
        for name, value in list(vars(module).items()):
            if value is obj and not name.startswith("_"):
                if module_name != "__main__":
                    return f"{module_name}:{name}"
                path = Path(module.__file__).resolve()
                if path.is_relative_to(Path.cwd()):
                    path = path.relative_to(Path.cwd())
                return f"{path}:{name}"
    return None

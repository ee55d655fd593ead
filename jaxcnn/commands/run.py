"""``jaxcnn run TARGET [flags]``: a study of one's own, from a file or an importable module.

    jaxcnn run mystudy.py:study --data digits28 --seeds auto
    jaxcnn run mypackage.studies:study --seeds 5 --out results

TARGET names a :class:`~jaxcnn.studies.Study` as ``FILE.py:NAME`` or ``module:NAME``. A
file is imported as a module named after it, from its own folder (which goes first on
``sys.path``), so what it registers (a model, a data source) is recorded under that name
and a later ``jaxcnn evaluate`` / ``predict`` run from the same place imports it again.
The flags are a built-in study's (``jaxcnn run TARGET --help``); results.json records
``jaxcnn run TARGET ...`` as the command that reproduces the run.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence

from jaxcnn.cli import study_main
from jaxcnn.errors import JaxcnnError
from jaxcnn.studies import Study
from jaxcnn.user_code import import_code

USAGE = ("usage: jaxcnn run FILE.py:NAME | module:NAME [flags]\n\n"
         "Runs the jaxcnn.studies.Study named NAME in FILE.py (or an importable module) with "
         "a built-in study's flags; `jaxcnn run TARGET --help` lists them.")


def load_target(target: str) -> Study:
    """The Study ``target`` (``FILE.py:NAME`` or ``module:NAME``) names, or a JaxcnnError
    of one line saying what is wrong."""
    where, sep, name = target.rpartition(":")
    if not sep or not where or not name:
        raise JaxcnnError(f"{target!r}: give FILE.py:NAME or module:NAME, e.g. "
                          "mystudy.py:study")
    module = import_code(where)
    if not hasattr(module, name):
        names = [n for n, v in vars(module).items() if isinstance(v, Study)]
        raise JaxcnnError(f"{where} defines no {name!r}"
                          + (f"; its studies: {', '.join(names)}" if names else
                             "; define a jaxcnn.studies.Study there"))
    study = getattr(module, name)
    if not isinstance(study, Study):
        raise JaxcnnError(f"{target}: {name} is a {type(study).__name__}, not a "
                          "jaxcnn.studies.Study")
    return dataclasses.replace(study, entry=("jaxcnn", "run", target))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    try:
        study = load_target(argv[0])
    except JaxcnnError as err:
        print(f"jaxcnn run: error: {err}", file=sys.stderr)
        return 2
    return study_main(study, argv[1:])

"""JAX's persistent compilation cache, on by default: a rerun does not compile again.

A run turns it on (:func:`enable`) before it compiles anything, in a folder of the
user's cache directory (``$JAXCNN_CACHE`` or ``~/.cache/jaxcnn``, ``--cache-dir``):
``xla/<jax version>-<platform>-<CPU>``. JAX keys each program by its HLO, compile options
and backend; the folder adds the CPU's model and feature flags, so a cache shared between
machines (a home directory on NFS) never hands one CPU's code to another.
``--no-compile-cache`` (or ``JAXCNN_COMPILE_CACHE=0``) leaves it off; a folder JAX was
already given (``JAX_COMPILATION_CACHE_DIR``) is kept.

JAX decides once per process whether the cache is in use, at the first compilation: a
process that compiled before the run began (a notebook that ran JAX code, a test session)
runs without it. :func:`counts` says what happened, from JAX's own monitoring events.
"""

from __future__ import annotations

import hashlib
import os
import platform
import threading
from pathlib import Path

_lock = threading.Lock()
_counts = {"requests": 0, "hits": 0}
_listening = False

_EVENTS = {"/jax/compilation_cache/compile_requests_use_cache": "requests",
           "/jax/compilation_cache/cache_hits": "hits"}


def _count(event: str, **_: object) -> None:
    name = _EVENTS.get(event)
    if name is not None:
        with _lock:
            _counts[name] += 1


def _cpu_signature() -> str:
    """The CPU's model and feature flags (Linux: /proc/cpuinfo), else the machine type."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.machine()
    keep = [line for line in lines if line.startswith(("model name", "flags", "Features"))]
    return "\n".join(dict.fromkeys(keep)) or platform.machine()


def folder(cache_dir: Path) -> Path:
    """The cache folder for this jax version, platform and CPU under ``cache_dir``."""
    import jax

    cpu = hashlib.sha256(_cpu_signature().encode()).hexdigest()[:12]
    return Path(cache_dir) / "xla" / f"jax{jax.__version__}-{jax.default_backend()}-{cpu}"


def enable(cache_dir: Path, wanted: bool = True) -> Path | None:
    """Turns the persistent cache on in ``folder(cache_dir)`` (every program, however
    quick to compile); returns the folder in use, or None when it stays off."""
    import jax  # here, not above: the report reads :func:`phrase` without JAX

    global _listening
    with _lock:
        if not _listening:
            jax.monitoring.register_event_listener(_count)
            _listening = True
    if not wanted or os.environ.get("JAXCNN_COMPILE_CACHE", "1") == "0":
        return None
    if not jax.config.jax_enable_compilation_cache:
        return None
    where = jax.config.jax_compilation_cache_dir
    if not where:
        where = str(folder(cache_dir))
        jax.config.update("jax_compilation_cache_dir", where)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return Path(where)


def counts() -> dict[str, int]:
    """Compilations that consulted the cache since :func:`enable`, and how many of them it
    answered: ``{"requests": n, "hits": h}``."""
    with _lock:
        return dict(_counts)


def phrase(record: dict | None) -> str:
    """'3 of 5 programs from the compile cache', or why none came from it."""
    if not record or not record.get("folder"):
        return "compile cache off"
    if not record.get("requests"):
        return "compile cache not used (JAX had compiled before the run began)"
    return f"{record['hits']} of {record['requests']} programs from the compile cache"

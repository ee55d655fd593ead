"""Facts about the machine and the software, recorded with every result and benchmark."""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "scipy", "torch")


def versions() -> dict:
    """Python's and the installed packages' versions (None where absent)."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def device() -> dict:
    """The JAX device runs use: platform, kind, how many, host CPUs, CPU model."""
    import jax

    first = jax.devices()[0]
    return {"platform": first.platform, "kind": first.device_kind,
            "count": jax.device_count(), "local_count": jax.local_device_count(),
            "processes": jax.process_count(), "host_cpus": os.cpu_count(),
            "machine": platform.machine(), "cpu_model": cpu_model()}


def cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def git_commit() -> str | None:
    """The checkout's commit, or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def git_dirty(where: Path = Path(__file__).parent) -> bool | None:
    """Whether the checkout holding ``where`` (default: this package's) has changes not
    committed to its HEAD, untracked files included, or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "status", "--porcelain"], cwd=where,
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def command_line() -> str:
    """This process's command line as typed (``python -m module ...`` for a module)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    first = sys.argv[0] if sys.argv else ""
    if spec is not None and spec.name:
        head = ["python", "-m", spec.name]
    elif first == "-c":
        head = ["python", "-c", "..."]
    else:  # a script, or a console entry point
        head = ["python", first] if first.endswith(".py") else [first]
    return shlex.join([*head, *sys.argv[1:]])

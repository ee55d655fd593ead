"""Shared pieces of the benchmarks: environment facts, timing, output files."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path

import numpy as np

CIFAR_EPOCH = 50_000  # images in one CIFAR-10 training epoch, for model-epochs per hour


def environment(device: str) -> dict:
    """Versions, device and git commit, for the JSON of every benchmark."""
    import jax

    versions = {"python": platform.python_version()}
    for name in ("jax", "jaxlib", "flax", "optax", "torch", "numpy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    jax_device = jax.devices()[0]
    info = {"versions": versions, "requested_device": device,
            "jax_device": f"{jax_device.platform}:{jax_device.device_kind}",
            "host_cpus": os.cpu_count(), "machine": platform.machine(),
            "cpu_model": _cpu_model()}
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if device == "gpu" and torch.cuda.is_available():
            info["torch_device"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    try:
        info["git_commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        info["git_commit"] = None
    return info


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds``."""

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.start


def random_cifar(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-shaped stand-in data: uint8 images (n, 32, 32, 3), int32 labels (n,).

    Speed does not depend on the pixels, so the benchmarks time on these.
    """
    images = np.random.default_rng(seed).integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
    return images, (np.arange(n) % 10).astype(np.int32)


def model_epochs_per_hour(images_per_second: float) -> float:
    return images_per_second * 3600.0 / CIFAR_EPOCH


def write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1))

"""Shared pieces of the benchmarks: environment facts, timing, output files."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from jaxcnn.platform import environment as env
from jaxcnn.training.results import write_json_atomic

CIFAR_EPOCH = 50_000  # images in one CIFAR-10 training epoch, for model-epochs per hour


def require_torch(prog: str):
    """``import torch``, or exit with one line saying how to install it."""
    try:
        import torch
    except ImportError:
        raise SystemExit(f"{prog}: error: PyTorch is not installed; it comes with the bench "
                         "extra: pip install -e '.[bench]'") from None
    return torch


def environment(device: str) -> dict:
    """Versions, device and git commit, for the JSON of every benchmark."""
    import jax

    jax_device = jax.devices()[0]
    info = {"versions": env.versions(), "requested_device": device,
            "jax_device": f"{jax_device.platform}:{jax_device.device_kind}",
            "device": env.device(), "host_cpus": env.device()["host_cpus"],
            "cpu_model": env.cpu_model(), "git_commit": env.git_commit()}
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if device == "gpu" and torch.cuda.is_available():
            info["torch_device"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


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
    """Atomically (temp file + rename), like every results file."""
    write_json_atomic(Path(path), payload)


def print_and_write(text: str, payload: dict, json_path: Path | None,
                    markdown_path: Path | None) -> None:
    """Prints a benchmark's Markdown table and writes it and its JSON where asked."""
    print(text)
    if json_path:
        write_json(json_path, payload)
    if markdown_path:
        markdown_path.parent.mkdir(parents=True, exist_ok=True)
        markdown_path.write_text(text)


def save_figure(fig, path: Path) -> None:
    """Lays out, writes (creating the folder) and closes a matplotlib figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)

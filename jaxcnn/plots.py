"""Figures, as PNG files readable without the code.

- :func:`plot_curves`: the seed's three panels (train loss, validation loss,
  validation accuracy by epoch), a mean line and a 95% band per configuration.
- :func:`plot_final_accuracy`: each seed's test accuracy as a point, with the
  mean and its 95% interval per configuration; the reference is marked.
- :func:`plot_schedules`: learning rate (and beta1) against the optimizer step.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from jaxcnn import stats  # noqa: E402

CURVE_PANELS = (("train_loss", "train loss"), ("val_loss", "{val} loss"),
                ("val_accuracy", "{val} accuracy (%)"))


def _curve_matrix(seeds: list[dict], key: str) -> np.ndarray:
    """(kept seeds, epochs) array of one history curve, diverged seeds left out."""
    rows = [s["history"][key] for s in seeds if s.get("diverged_epoch") is None]
    return np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=float)


def plot_curves(configs: Mapping[str, dict], path: Path, title: str, val_name: str = "val") -> Path:
    """Three panels by epoch; per config a mean line and a 95% t-interval band."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for name, cfg in configs.items():
        for ax, (key, _) in zip(axes, CURVE_PANELS):
            matrix = _curve_matrix(cfg["seeds"], key)
            if matrix.size == 0:
                continue
            epochs = np.arange(1, matrix.shape[1] + 1)
            mean, low, high = stats.curve_band(matrix)
            label = f"{name} (n={matrix.shape[0]})"
            (line,) = ax.plot(epochs, mean, marker="o", label=label)
            if matrix.shape[0] > 1:
                ax.fill_between(epochs, low, high, color=line.get_color(), alpha=0.2)
                # Error bars too, so a one-epoch run still shows its interval.
                ax.errorbar(epochs, mean, yerr=[mean - low, high - mean], fmt="none",
                            ecolor=line.get_color(), capsize=4, alpha=0.8)
            ax.set_xticks(epochs)
    for ax, (_, label) in zip(axes, CURVE_PANELS):
        ax.set_xlabel("epoch")
        ax.set_ylabel(label.format(val=val_name))
        ax.grid(alpha=0.3)
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend()
    else:
        axes[0].text(0.5, 0.5, "no seed finished without diverging", ha="center",
                     transform=axes[0].transAxes)
    fig.suptitle(f"{title}: mean over seeds, band = 95% t-interval")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_schedules(configs: Mapping, steps_per_epoch: int, epochs: int, path: Path) -> Path:
    """Learning rate and beta1 against the optimizer step, one line per configuration.

    configs: name -> RunConfig; the schedules are evaluated exactly as the
    optimizer evaluates them (``optim.make_schedules``).
    """
    import jax.numpy as jnp

    from jaxcnn.optim import make_schedules

    counts = jnp.arange(steps_per_epoch * epochs)
    fig, (ax_lr, ax_b1) = plt.subplots(1, 2, figsize=(12, 4))
    for name, config in configs.items():
        lr, b1 = make_schedules(config.optimizer, steps_per_epoch)
        ax_lr.plot(counts, lr(counts), label=name)
        beta1 = b1(counts) if b1 is not None else np.full(counts.shape, config.optimizer.b1)
        ax_b1.plot(counts, beta1, label=name)
    for epoch in range(1, epochs):
        for ax in (ax_lr, ax_b1):
            ax.axvline(epoch * steps_per_epoch, color="grey", lw=0.6, ls=":")
    ax_lr.set_ylabel("learning rate")
    ax_b1.set_ylabel("Adam beta1")
    for ax in (ax_lr, ax_b1):
        ax.set_xlabel("optimizer step (dotted: epoch boundaries)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"Schedules as trained: {steps_per_epoch} steps per epoch, {epochs} epochs")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_final_accuracy(configs: Mapping[str, dict], statistics: dict, reference: str,
                        path: Path, title: str) -> Path:
    """Each seed's final test accuracy as a point; mean and 95% t-interval per config.

    Seeds are jittered sideways so equal scores stay visible; the reference is
    drawn with a shaded column and a dashed line at its mean.
    """
    names = list(configs)
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 2.5, 4.5))
    rng = np.random.default_rng(0)  # fixed jitter: the same picture every time
    summary = statistics["summary"]
    for x, name in enumerate(names):
        seeds = [s for s in configs[name]["seeds"] if s.get("test_accuracy") is not None]
        values = np.array([s["test_accuracy"] for s in seeds], float)
        jitter = rng.uniform(-0.12, 0.12, values.size)
        ax.scatter(x + jitter, values, s=22, alpha=0.6, color="grey", zorder=2,
                   label="one seed" if x == 0 else None)
        entry = summary[name]
        if entry["mean"] is None:
            continue
        ci = entry["ci95_t"]
        yerr = None if ci is None else [[entry["mean"] - ci[0]], [ci[1] - entry["mean"]]]
        ax.errorbar(x + 0.3, entry["mean"], yerr=yerr, fmt="o", color="C0", capsize=5,
                    zorder=3, label="mean, 95% t-interval" if x == 0 else None)
        diverged = len(entry["diverged_seeds"])
        if diverged:
            ax.annotate(f"{diverged} diverged", (x, ax.get_ylim()[0]), ha="center", fontsize=8)
        if name == reference:
            ax.axvspan(x - 0.45, x + 0.45, color="C1", alpha=0.08)
            ax.axhline(entry["mean"], color="C1", ls="--", lw=1, label=f"{reference} mean")
    ax.set_xticks(range(len(names)),
                  [f"{n}\n(reference)" if n == reference else n for n in names])
    ax.set_ylabel("final test accuracy (%)")
    ax.set_title(f"{title}: test accuracy per seed")
    ax.grid(axis="y", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

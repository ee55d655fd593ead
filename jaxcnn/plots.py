"""Figures, as PNG files readable without the code.

- :func:`plot_curves`: training loss against the optimizer step (every 100th
  step's loss, as the notebook recorded it; per-epoch means when epochs are
  shorter), validation loss and accuracy per epoch; per configuration a mean and
  a 95% t-interval (a band over several points, error bars at a single one).
- :func:`plot_final_accuracy`: each seed's test accuracy as a point, with the
  mean and its 95% interval per configuration; the reference is marked.
- :func:`plot_schedules`: the learning rate and beta1 the optimizer applied, as
  recorded in results.json, against the step.

Diverged seeds are left out and counted in the legend; a figure with nothing to
show says so in words.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from jaxcnn import stats  # noqa: E402
from jaxcnn.history import step_loss_steps  # noqa: E402

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", "-.", ":")


def _curve_matrix(seeds: list[dict], key: str) -> np.ndarray:
    """(kept seeds, points) array of one history curve, diverged seeds left out."""
    rows = [s["history"][key] for s in seeds if s.get("diverged_epoch") is None]
    return np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=float)


# Below this many seeds a 95% t-interval is too wide to read (with 2 seeds its half-width
# is 12.7 standard errors; with 3, 4.3): figures show the seeds' range instead, and say so.
MIN_T_BAND = 3


def _spread(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and band per column: the 95% t-interval, or the range below MIN_T_BAND seeds."""
    if matrix.shape[0] >= MIN_T_BAND:
        return stats.curve_band(matrix)
    with np.errstate(all="ignore"):
        return (np.nanmean(matrix, axis=0), np.nanmin(matrix, axis=0),
                np.nanmax(matrix, axis=0))


def band_words(seeds: int) -> str:
    return "95% t-interval over seeds" if seeds >= MIN_T_BAND else (
        f"range over the {seeds} seeds (fewer than {MIN_T_BAND}: a t-interval would be "
        "uninformative)")


def _band(ax, xs: np.ndarray, matrix: np.ndarray, label: str, style: dict) -> None:
    mean, low, high = _spread(matrix)
    (line,) = ax.plot(xs, mean, label=label, **style)
    if matrix.shape[0] > 1:
        if len(xs) > 1:
            ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.18)
        else:  # one point: a band would be invisible
            ax.errorbar(xs, mean, yerr=[mean - low, high - mean], fmt="none",
                        ecolor=line.get_color(), capsize=5)


def _no_data(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=10,
            color="0.3", wrap=True)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_curves(configs: Mapping[str, dict], path: Path, title: str, val_name: str = "val",
                steps_per_epoch: int | None = None) -> Path:
    """Training loss by step, validation loss and accuracy by epoch; mean and 95% interval."""
    fig, (ax_step, ax_loss, ax_acc) = plt.subplots(1, 3, figsize=(16, 4.4))
    plotted = 0
    one_epoch = True
    fewest = min((sum(s.get("diverged_epoch") is None for s in cfg["seeds"])
                  for cfg in configs.values()), default=0)
    for i, (name, cfg) in enumerate(configs.items()):
        style = dict(marker=MARKERS[i % len(MARKERS)], ls=LINESTYLES[i % len(LINESTYLES)],
                     markersize=4)
        kept = sum(s.get("diverged_epoch") is None for s in cfg["seeds"])
        if kept == 0:
            continue
        plotted += 1
        label = f"{name} (n={kept})"
        step_losses = _curve_matrix(cfg["seeds"], "train_step_loss")
        epoch_losses = _curve_matrix(cfg["seeds"], "train_loss")
        epochs = epoch_losses.shape[1]
        one_epoch = one_epoch and epochs == 1
        if step_losses.size and steps_per_epoch:
            xs = np.array(step_loss_steps(steps_per_epoch, epochs), float)[:step_losses.shape[1]]
            _band(ax_step, xs, step_losses, label, {**style, "markersize": 2})
            ax_step.set_xlabel("optimizer step (loss of every 100th step)")
        else:  # epochs shorter than 100 steps: the epoch means instead
            xs = np.arange(1, epochs + 1) * (steps_per_epoch or 1)
            _band(ax_step, xs, epoch_losses, label, style)
            ax_step.set_xlabel("optimizer step (mean loss of each epoch)")
        for ax, key in ((ax_loss, "val_loss"), (ax_acc, "val_accuracy")):
            matrix = _curve_matrix(cfg["seeds"], key)
            _band(ax, np.arange(1, matrix.shape[1] + 1), matrix, label, style)
    for ax, ylabel in ((ax_step, "training loss"), (ax_loss, f"{val_name} loss"),
                       (ax_acc, f"{val_name} accuracy (%)")):
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    for ax in (ax_loss, ax_acc):
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
    if plotted:
        ax_step.legend(fontsize=8)
    else:
        for ax in (ax_step, ax_loss, ax_acc):
            _no_data(ax, "every seed diverged:\nnothing to plot")
    interval = ("error bars: " if one_epoch else "shaded: ") + band_words(max(fewest, 1))
    fig.suptitle(f"{title}: mean over seeds; {interval}")
    return _save(fig, path)


def plot_schedules(configs: Mapping[str, dict], steps_per_epoch: int, epochs: int,
                   path: Path) -> Path:
    """Learning rate and beta1 as applied, from each configuration's recorded ``schedule``.

    Lines that coincide (e.g. every schedule's beta1 but cyclic's) stay visible:
    each has its own marker and dash pattern, later ones drawn thinner on top.
    """
    fig, (ax_lr, ax_b1) = plt.subplots(1, 2, figsize=(13, 4.2))
    drawn = 0
    for i, (name, cfg) in enumerate(configs.items()):
        record = cfg.get("schedule") or {}
        if not record.get("step"):
            continue
        drawn += 1
        style = dict(marker=MARKERS[i % len(MARKERS)], ls=LINESTYLES[i % len(LINESTYLES)],
                     lw=2.2 - 0.4 * (i % 4), markersize=5, label=name,
                     markevery=max(1, len(record["step"]) // 12))
        ax_lr.plot(record["step"], record["learning_rate"], **style)
        ax_b1.plot(record["step"], record["beta1"], **style)
    for epoch in range(1, epochs):
        for ax in (ax_lr, ax_b1):
            ax.axvline(epoch * steps_per_epoch, color="grey", lw=0.6, ls=":")
    ax_lr.set_ylabel("learning rate")
    ax_b1.set_ylabel("Adam beta1")
    for ax in (ax_lr, ax_b1):
        ax.set_xlabel("optimizer step (dotted: epoch boundaries)")
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=8)
        else:
            _no_data(ax, "no schedule recorded")
    fig.suptitle(f"Schedules as applied by the optimizer (read from its state): "
                 f"{steps_per_epoch} steps per epoch, {epochs} epochs")
    return _save(fig, path)


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
    any_points = False
    for x, name in enumerate(names):
        seeds = [s for s in configs[name]["seeds"] if s.get("test_accuracy") is not None]
        values = np.array([s["test_accuracy"] for s in seeds], float)
        any_points = any_points or values.size > 0
        jitter = rng.uniform(-0.12, 0.12, values.size)
        ax.scatter(x + jitter, values, s=22, alpha=0.6, color="grey", zorder=2,
                   label="one seed" if x == 0 else None)
        entry = summary[name]
        diverged = len(entry["diverged_seeds"])
        few = 0 < values.size < MIN_T_BAND
        if diverged:
            ax.text(x, 0.02, f"{diverged} diverged", ha="center", fontsize=8,
                    transform=ax.get_xaxis_transform())
        if entry["mean"] is None:
            continue
        ci = [values.min(), values.max()] if few else entry["ci95_t"]
        yerr = None if ci is None else [[entry["mean"] - ci[0]], [ci[1] - entry["mean"]]]
        ax.errorbar(x + 0.3, entry["mean"], yerr=yerr, fmt="o", color="C0", capsize=5,
                    zorder=3, label=(f"mean, range of seeds (n < {MIN_T_BAND})" if few
                                     else "mean, 95% t-interval") if x == 0 else None)
        if name == reference:
            ax.axvspan(x - 0.45, x + 0.45, color="C1", alpha=0.08)
            ax.axhline(entry["mean"], color="C1", ls="--", lw=1, label=f"{reference} mean")
    ax.set_xticks(range(len(names)),
                  [f"{n}\n(reference)" if n == reference else n for n in names])
    ax.set_ylabel("final test accuracy (%)")
    ax.set_title(f"{title}: test accuracy per seed")
    ax.grid(axis="y", alpha=0.3)
    if not any_points:
        _no_data(ax, "every seed diverged: no test accuracy to show")
    elif ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def sweep_axis(ax, values: np.ndarray) -> str:
    """Log scale where the swept values span a decade or more (symlog when 0 is among
    them, linear below its smallest positive value); linear otherwise. Returns the scale."""
    positive = values[values > 0]
    if positive.size >= 2 and positive.max() / positive.min() >= 10 and (values >= 0).all():
        if (values == 0).any():
            ax.set_xscale("symlog", linthresh=float(positive.min()))
            return "symlog"
        ax.set_xscale("log")
        return "log"
    return "linear"


def plot_sweep(results: dict, path: Path, names: list[str]) -> Path:
    """Final test accuracy against the swept value: every seed's point, the mean and a
    95% t band; with two parameters, one line per value of the second."""
    from jaxcnn.sweep import values_of

    configs = results["configs"]
    reference = results["metadata"]["reference"]
    lines: dict[float | None, list[tuple[float, list[float]]]] = {}
    for name, cfg in configs.items():
        values = values_of(name)
        key = values[names[1]] if len(names) > 1 else None
        scores = [s["test_accuracy"] for s in cfg["seeds"] if s.get("test_accuracy") is not None]
        lines.setdefault(key, []).append((values[names[0]], scores))
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    xs_all = np.array(sorted({v for points in lines.values() for v, _ in points}), float)
    scale = sweep_axis(ax, xs_all)
    drawn = False
    for i, (key, points) in enumerate(sorted(lines.items(), key=lambda kv: (kv[0] is None,
                                                                            kv[0] or 0))):
        points.sort()
        fewest = min(len(sc) for _, sc in points)
        label = (f"{names[1]}={key:g}" if key is not None else
                 "mean" + (", 95% t-interval" if fewest >= MIN_T_BAND else ", range of seeds"))
        color = f"C{i}"
        xs, means, lows, highs = [], [], [], []
        for x, scores in points:
            if not scores:
                continue
            spread = (np.array([0.985, 1.0, 1.015])[:len(scores)] if scale == "log"
                      else np.zeros(len(scores)))
            if scale == "log" and len(scores) > 3:
                spread = np.exp(np.linspace(-0.03, 0.03, len(scores)))
            ax.scatter(x * spread if scale == "log" else np.full(len(scores), x), scores, s=14,
                       alpha=0.45, color=color, zorder=2)
            mean, low, high = (float(v[0]) for v in _spread(np.array(scores)[:, None]))
            xs.append(x)
            means.append(mean)
            lows.append(low if np.isfinite(low) else mean)
            highs.append(high if np.isfinite(high) else mean)
        if xs:
            drawn = True
            ax.plot(xs, means, marker=MARKERS[i % len(MARKERS)], color=color, label=label)
            ax.fill_between(xs, lows, highs, color=color, alpha=0.15)
    ref_values = values_of(reference)
    ax.axvline(ref_values[names[0]], color="grey", ls="--", lw=1,
               label=f"base: {names[0]}={ref_values[names[0]]:g}")
    ax.set_xlabel(names[0] + (" (symlog axis: linear near 0)" if scale == "symlog" else ""))
    ax.set_ylabel("final test accuracy (%)")
    ax.set_title(f"{results['experiment']}: test accuracy against {names[0]}; dots: one seed "
                 f"each", fontsize=10)
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=8)
    else:
        _no_data(ax, "every seed diverged: nothing to plot")
    return _save(fig, path)

"""Figures, as PNG files readable without the code.

- :func:`draw_curves`: training loss against the optimizer step (every 100th
  step's loss, as the notebook recorded it; about ten per epoch when epochs are
  shorter), validation loss and accuracy per epoch; per configuration a mean and
  a 95% t-interval (a band over several points, error bars at a single one).
- :func:`draw_final_accuracy`: each seed's test accuracy as a point, with the
  mean and its 95% interval per configuration; the reference is marked.
- :func:`draw_schedules`: the learning rate (log axis) and beta1 the optimizer
  applied, as recorded in results.json, against the step.
- :func:`draw_sweep`: final test accuracy against a swept hyperparameter.
- :func:`draw_estimation`: per comparison, the per-seed paired differences,
  their interval, the equivalence band ±m and the verdict.

:func:`save` writes one as PNG. Diverged seeds are left out and counted in the legend;
a figure with nothing to show says so in words. Figures are drawn on
:class:`matplotlib.figure.Figure` objects and saved with Agg directly: importing this
module selects no backend and opens no window (pyplot is not used).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from jaxcnn.metric import record_key
from jaxcnn.platform.progress import plural
from jaxcnn.stats import paired
from jaxcnn.training.history import step_loss_every, step_loss_steps

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", "-.", ":")
ACCURACY_RANGE = (0.0, 100.0)  # an accuracy interval is shown clipped to what can happen


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
        return paired.curve_band(matrix)
    with np.errstate(all="ignore"):
        return (np.nanmean(matrix, axis=0), np.nanmin(matrix, axis=0),
                np.nanmax(matrix, axis=0))


def band_words(seeds: int) -> str:
    return "95% t-interval over seeds" if seeds >= MIN_T_BAND else (
        f"range over the {plural(seeds, 'seed')} (fewer than {MIN_T_BAND}: a t-interval would "
        "be uninformative)")


def _band(ax, xs: np.ndarray, matrix: np.ndarray, label: str, style: dict,
          clip: tuple[float, float] | None = None) -> None:
    """Mean line with its band (several points) or error bar (one point); the band is
    clipped to ``clip`` (e.g. 0-100 for an accuracy)."""
    mean, low, high = _spread(matrix)
    if clip is not None:
        low, high = np.clip(low, *clip), np.clip(high, *clip)
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


def save(fig: Figure, path: Path) -> Path:
    """Writes ``fig`` as PNG; bbox "tight" keeps legends placed outside the axes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def _dodge(index: int, count: int, unit: float) -> float:
    """Sideways offset of the ``index``-th of ``count`` series at a single x position, so
    their error bars do not sit on top of each other (``unit``: the spacing of x)."""
    width = min(0.08, 0.4 / max(count, 1)) * unit
    return (index - (count - 1) / 2) * width


def _kept(cfg: dict) -> int:
    return sum(s.get("diverged_epoch") is None for s in cfg["seeds"])


def _step_panel(ax, cfg: dict, label: str, style: dict, steps_per_epoch: int,
                offset: float) -> None:
    """The training loss of the recorded steps; per-epoch means where none was recorded
    (results written before short epochs kept step losses)."""
    step_losses = _curve_matrix(cfg["seeds"], "train_step_loss")
    epoch_losses = _curve_matrix(cfg["seeds"], "train_loss")
    epochs = epoch_losses.shape[1]
    if step_losses.size:
        xs = np.array(step_loss_steps(steps_per_epoch, epochs), float)[:step_losses.shape[1]]
        if xs.size == 1:  # one recorded step (e.g. 100 of 156): error bars, set apart
            xs = xs + offset * steps_per_epoch
        _band(ax, xs, step_losses, label, {**style, "markersize": 3 if xs.size > 1 else 5})
    else:
        xs = np.arange(1, epochs + 1) * steps_per_epoch + offset * steps_per_epoch
        _band(ax, xs, epoch_losses, label, style)


def _epoch_axis(ax, epochs: int) -> None:
    """Whole epochs only, with room either side of the first and last."""
    ax.set_xlabel("epoch")
    ax.set_xlim(0.5, epochs + 0.5)
    if epochs <= 12:
        ax.set_xticks(range(1, epochs + 1))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _step_axis(ax, steps_per_epoch: int, epochs: int, recorded: bool) -> None:
    every = step_loss_every(steps_per_epoch)
    ax.set_xlabel("optimizer step (" + ((f"loss of every {every}th step" if every > 1
                                         else "loss of every step") if recorded
                                        else "mean loss of each epoch") + ")")
    ax.set_xlim(0, steps_per_epoch * epochs * 1.02 + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    for epoch in range(1, epochs):
        ax.axvline(epoch * steps_per_epoch, color="grey", lw=0.6, ls=":")


def draw_curves(configs: Mapping[str, dict], title: str, val_name: str = "val",
                steps_per_epoch: int | None = None) -> Figure:
    """Training loss by step, validation loss and accuracy by epoch; mean and 95% interval.

    With a single epoch every panel but the step loss has one point per
    configuration: markers with error bars, set slightly apart, on an axis of whole
    epochs.
    """
    fig = Figure(figsize=(16, 4.4))
    ax_step, ax_loss, ax_acc = fig.subplots(1, 3)
    drawn = [name for name, cfg in configs.items() if _kept(cfg)]
    epochs = max((len(s["history"]["train_loss"]) for cfg in configs.values()
                  for s in cfg["seeds"]), default=1)
    spe = steps_per_epoch or 1
    recorded = False
    for i, (name, cfg) in enumerate(configs.items()):
        if name not in drawn:
            continue
        style = dict(marker=MARKERS[i % len(MARKERS)], ls=LINESTYLES[i % len(LINESTYLES)],
                     markersize=5 if epochs == 1 else 4)
        label = f"{name} (n={_kept(cfg)})"
        offset = _dodge(drawn.index(name), len(drawn), 1.0) if epochs == 1 else 0.0
        _step_panel(ax_step, cfg, label, style, spe, offset)
        recorded = recorded or _curve_matrix(cfg["seeds"], "train_step_loss").size > 0
        for ax, key in ((ax_loss, "val_loss"), (ax_acc, "val_accuracy")):
            matrix = _curve_matrix(cfg["seeds"], key)
            _band(ax, np.arange(1, matrix.shape[1] + 1) + offset, matrix, label, style,
                  clip=ACCURACY_RANGE if key == "val_accuracy" else None)
    for ax, ylabel in ((ax_step, "training loss"), (ax_loss, f"{val_name} loss"),
                       (ax_acc, f"{val_name} accuracy (%)")):
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    _step_axis(ax_step, spe, epochs, recorded)
    for ax in (ax_loss, ax_acc):
        _epoch_axis(ax, epochs)
    if drawn:
        ax_step.legend(fontsize=8)
    else:
        for ax in (ax_step, ax_loss, ax_acc):
            _no_data(ax, "every seed diverged:\nnothing to plot")
    fewest = min((_kept(configs[n]) for n in drawn), default=1)
    marks = "shaded or error bars" if epochs == 1 else "shaded"
    fig.suptitle(f"{title}: mean over seeds, {plural(epochs, 'epoch')}; {marks}: "
                 f"{band_words(fewest)}")
    fig.tight_layout()
    return fig


def draw_schedules(configs: Mapping[str, dict], steps_per_epoch: int, epochs: int) -> Figure:
    """Learning rate (log axis) and beta1 as applied, from each configuration's ``schedule``.

    Lines that coincide (e.g. every schedule's beta1 but cyclic's) stay visible:
    each has its own marker and dash pattern, later ones drawn thinner on top. The
    learning rate is on a log axis: decays of 10x and 100x are then as far apart as
    they are different, instead of sitting on zero.
    """
    fig = Figure(figsize=(13, 4.2))
    ax_lr, ax_b1 = fig.subplots(1, 2)
    drawn, hidden = 0, []
    positive = True
    for i, (name, cfg) in enumerate(configs.items()):
        record = cfg.get("schedule") or {}
        # None: a value an optax optimizer's state does not hold (not drawn)
        rates = np.array([np.nan if v is None else v
                          for v in record.get("learning_rate", [])], float)
        betas = np.array([np.nan if v is None else v for v in record.get("beta1", [])], float)
        if not record.get("step") or np.isnan(rates).all():
            hidden += [name] if record.get("step") else []
            continue
        drawn += 1
        positive = positive and np.nanmin(rates) > 0
        style = dict(marker=MARKERS[i % len(MARKERS)], ls=LINESTYLES[i % len(LINESTYLES)],
                     lw=2.2 - 0.4 * (i % 4), markersize=5, label=name,
                     markevery=max(1, len(record["step"]) // 12))
        ax_lr.plot(record["step"], rates, **style)
        ax_b1.plot(record["step"], betas, **style)
    if drawn and positive:
        ax_lr.set_yscale("log")
    for epoch in range(1, epochs):
        for ax in (ax_lr, ax_b1):
            ax.axvline(epoch * steps_per_epoch, color="grey", lw=0.6, ls=":")
    ax_lr.set_ylabel("learning rate" + (" (log scale)" if drawn and positive else ""))
    ax_b1.set_ylabel("beta1 (Adam) or momentum")
    for ax in (ax_lr, ax_b1):
        ax.set_xlabel("optimizer step" + (" (dotted: epoch boundaries)" if epochs > 1 else ""))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3, which="both" if ax is ax_lr else "major")
        if drawn:
            ax.legend(fontsize=8)
        else:
            _no_data(ax, "no schedule recorded")
    if hidden:  # a ready optax transformation keeps its rate to itself: say so, not nothing
        fig.text(0.5, 0.01, f"not drawn (their optimizer's state holds no rate): "
                 f"{', '.join(hidden)}", ha="center", fontsize=8)
    fig.suptitle(f"Schedules as applied by the optimizer (read from its state): "
                 f"{plural(steps_per_epoch, 'step')} per epoch, {plural(epochs, 'epoch')}")
    fig.tight_layout()
    return fig


def _tick_label(name: str, reference: str) -> str:
    """A configuration's axis label: one assignment per line ('a=1,\\nb=2'), so the long
    names of a grid sweep do not run into each other."""
    text = name.replace(",", ",\n")
    return f"{text}\n(reference)" if name == reference else text


def _interval_for(entry: dict, values: np.ndarray, clip: bool = True
                  ) -> tuple[list[float] | None, bool]:
    """The interval drawn around a configuration's mean: its 95% t-interval (clipped to
    0-100 for accuracy), or the seeds' range below MIN_T_BAND seeds (True: the range)."""
    if 0 < values.size < MIN_T_BAND:
        return [float(values.min()), float(values.max())], True
    if entry["ci95_t"] is None:
        return None, False
    return [float(np.clip(v, *ACCURACY_RANGE)) if clip else float(v)
            for v in entry["ci95_t"]], False


def draw_final_accuracy(configs: Mapping[str, dict], statistics: dict, reference: str,
                        title: str) -> Figure:
    """Each seed's final test accuracy as a point; mean and 95% t-interval per config.

    Seeds are jittered sideways so equal scores stay visible; the reference is
    drawn with a shaded column and a dashed line at its mean. The legend sits
    outside the axes so it hides no point or error bar.
    """
    names = list(configs)
    fig = Figure(figsize=(1.6 * len(names) + 4.0, 4.8))
    ax = fig.subplots()
    rng = np.random.default_rng(0)  # fixed jitter: the same picture every time
    summary = statistics["summary"]
    metric = statistics.get("metric", "test_accuracy")  # the study's own metric, if any
    key = record_key(metric)
    any_points = False
    for x, name in enumerate(names):
        seeds = [s for s in configs[name]["seeds"] if s.get(key) is not None]
        values = np.array([s[key] for s in seeds], float)
        any_points = any_points or values.size > 0
        jitter = rng.uniform(-0.12, 0.12, values.size)
        ax.scatter(x + jitter, values, s=22, alpha=0.6, color="grey", zorder=2,
                   label="one seed" if x == 0 else None)
        entry = summary[name]
        diverged = len(entry["diverged_seeds"])
        if diverged:
            ax.text(x, 0.02, f"{diverged} diverged", ha="center", fontsize=8,
                    transform=ax.get_xaxis_transform())
        if entry["mean"] is None:
            continue
        ci, few = _interval_for(entry, values, clip=key == "test_accuracy")
        yerr = None if ci is None else [[entry["mean"] - ci[0]], [ci[1] - entry["mean"]]]
        ax.errorbar(x + 0.3, entry["mean"], yerr=yerr, fmt="o", color="C0", capsize=5,
                    zorder=3, label=(f"mean, range of seeds (n < {MIN_T_BAND})" if few
                                     else "mean, 95% t-interval") if x == 0 else None)
        if name == reference:
            ax.axvspan(x - 0.45, x + 0.45, color="C1", alpha=0.08)
            ax.axhline(entry["mean"], color="C1", ls="--", lw=1, label=f"{reference} mean")
    long = max((len(n) for n in names), default=0) > 14 and len(names) > 4
    ax.set_xticks(range(len(names)), [_tick_label(n, reference) for n in names],
                  fontsize=8 if long else None)
    ax.set_xlim(-0.6, len(names) - 0.3)
    label = "test accuracy" if key == "test_accuracy" else metric.replace("_", " ")
    ax.set_ylabel("final test accuracy (%)" if key == "test_accuracy" else f"final {label}")
    ax.set_title(f"{title}: {label} per seed" + (
        "" if reference in configs else f"\n({paired.NO_REFERENCE}: '{reference}')"))
    ax.grid(axis="y", alpha=0.3)
    if not any_points:
        _no_data(ax, "every seed diverged: no test accuracy to show")
    elif ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    return fig


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


def _sweep_lines(results: dict, names: list[str], values: Mapping[str, Mapping[str, float]]
                 ) -> dict[float | None, list[tuple[float, list[float]]]]:
    """{second parameter's value (None for one parameter): [(first's value, scores)]}."""
    lines: dict[float | None, list[tuple[float, list[float]]]] = {}
    for name, cfg in results["configs"].items():
        point = values[name]
        key = point[names[1]] if len(names) > 1 else None
        scores = [s["test_accuracy"] for s in cfg["seeds"] if s.get("test_accuracy") is not None]
        lines.setdefault(key, []).append((point[names[0]], scores))
    return lines


def _sweep_line(ax, points: list[tuple[float, list[float]]], scale: str, color: str,
                label: str, marker: str) -> bool:
    """One line of the sweep figure: every seed's dot, the mean and its band."""
    xs, means, lows, highs = [], [], [], []
    for x, scores in sorted(points):
        if not scores:
            continue
        spread = np.ones(len(scores))
        if scale == "log":  # seeds of one value set a little apart on a log axis
            spread = np.exp(np.linspace(-0.03, 0.03, len(scores))) if len(scores) > 1 else spread
        ax.scatter(x * spread, scores, s=14, alpha=0.45, color=color, zorder=2)
        mean, low, high = (float(v[0]) for v in _spread(np.array(scores)[:, None]))
        xs.append(x)
        means.append(mean)
        lows.append(float(np.clip(low, *ACCURACY_RANGE)) if np.isfinite(low) else mean)
        highs.append(float(np.clip(high, *ACCURACY_RANGE)) if np.isfinite(high) else mean)
    if xs:
        ax.plot(xs, means, marker=marker, color=color, label=label)
        ax.fill_between(xs, lows, highs, color=color, alpha=0.15)
    return bool(xs)


def draw_sweep(results: dict, names: list[str],
               values: Mapping[str, Mapping[str, float]]) -> Figure:
    """Final test accuracy against the swept value: every seed's point, the mean and a
    95% t band; with two parameters, one line per value of the second.

    values: {configuration name: {parameter: value}} for every configuration in
    ``results`` and its reference (the sweep module parses its names; this module does
    not import it).
    """
    reference = results["metadata"]["reference"]
    lines = _sweep_lines(results, names, values)
    fig = Figure(figsize=(8.5, 4.6))
    ax = fig.subplots()
    xs_all = np.array(sorted({v for points in lines.values() for v, _ in points}), float)
    scale = sweep_axis(ax, xs_all)
    drawn = False
    for i, (key, points) in enumerate(sorted(lines.items(), key=lambda kv: (kv[0] is None,
                                                                            kv[0] or 0))):
        fewest = min(len(sc) for _, sc in points)
        label = (f"{names[1]}={key:g}" if key is not None else
                 "mean" + (", 95% t-interval" if fewest >= MIN_T_BAND else ", range of seeds"))
        drawn = _sweep_line(ax, points, scale, f"C{i}", label, MARKERS[i % len(MARKERS)]) or drawn
    base = values[reference][names[0]]
    ax.axvline(base, color="grey", ls="--", lw=1, label=f"base: {names[0]}={base:g}")
    ax.set_xlabel(names[0] + (" (symlog axis: linear near 0)" if scale == "symlog" else ""))
    ax.set_ylabel("final test accuracy (%)")
    ax.set_title(f"{results['experiment']}: test accuracy against {names[0]}; dots: one seed "
                 f"each", fontsize=10)
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    else:
        _no_data(ax, "every seed diverged: nothing to plot")
    return fig


VERDICT_COLORS = {"better": "tab:green", "worse": "tab:red", "equivalent": "tab:blue",
                  "undecided": "0.45"}


SE_BARS = ((0.22, "seed_se", "black", "±1 s.e. from the seeds"),
           (0.32, "image_se", "tab:orange", "±1 s.e. from the test images"))


def _estimation_row(ax, y: int, comparison: dict, rng: np.random.Generator) -> None:
    """One comparison: its seeds' differences as dots, the mean and interval as a bar, and
    under it the two standard errors (seeds, test images) as thin bars of +-1 s.e."""
    diffs = np.asarray(comparison["differences"], float)
    diffs = diffs[np.isfinite(diffs)]
    word = comparison["verdict"].split()[0] if comparison["verdict"] else "undecided"
    color = VERDICT_COLORS.get(word, "0.45")
    ax.scatter(diffs, y + rng.uniform(-0.15, 0.15, diffs.size), s=18, color="grey",
               alpha=0.6, zorder=2, label="one seed's paired difference" if y == 0 else None)
    interval = comparison.get("interval")
    if diffs.size:
        ax.plot([diffs.mean()], [y], "o", color=color, ms=7, zorder=4)
    if interval is not None and all(v is not None and np.isfinite(v) for v in interval):
        ax.plot(list(interval), [y, y], color=color, lw=3, zorder=3)
    for offset, key, bar_color, label in SE_BARS:
        se = comparison.get(key)
        if se is not None and diffs.size:
            ax.plot([diffs.mean() - se, diffs.mean() + se], [y + offset] * 2, color=bar_color,
                    lw=1.2, label=label if y == 0 else None)
    ax.text(1.01, y, comparison["verdict"], transform=ax.get_yaxis_transform(), va="center",
            fontsize=9, color=color, fontweight="bold")


def draw_estimation(comparisons: list[dict], margin: float,
                    title: str = "Paired differences by seed",
                    empty: str = "no comparison to show", unit: str = "accuracy points"
                    ) -> Figure:
    """An estimation plot: one row per comparison, the difference (in ``unit``) across.

    comparisons: each ``{"name": str, "differences": per-seed paired differences
    (n,), "interval": (lo, hi) or None, "verdict": str}``, optionally ``"seed_se"`` and
    ``"image_se"`` (the two parts of the standard error, drawn under the interval); the
    verdict's first word (better / worse / equivalent / undecided) sets the colour. margin: the
    equivalence margin m, drawn as the band [-m, m] around 0. empty: the text shown
    where there is no comparison.
    """
    # constrained layout places the legend below the x label ("outside"), whatever the rows
    fig = Figure(figsize=(10, 1.5 + 0.55 * max(len(comparisons), 1)), layout="constrained")
    ax = fig.subplots()
    rng = np.random.default_rng(0)  # fixed jitter: the same picture every time
    ax.axvspan(-margin, margin, color="tab:blue", alpha=0.1,
               label=f"equivalence band ±{margin:g}")
    ax.axvline(0.0, color="black", lw=0.8)
    for y, comparison in enumerate(comparisons):
        _estimation_row(ax, y, comparison, rng)
    ax.plot([], [], color="0.2", lw=3, marker="o",
            label="mean and interval (colour: verdict; the equivalence interval where equivalent)")
    ax.set_yticks(range(len(comparisons)), [c["name"] for c in comparisons])
    ax.set_ylim(max(len(comparisons), 1) - 0.5, -0.5)  # first comparison on top
    ax.set_xlabel(f"paired difference, configuration minus reference ({unit})")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    if not comparisons:
        _no_data(ax, empty)
    fig.legend(*ax.get_legend_handles_labels(), fontsize=8, loc="outside lower center",
               ncol=3, frameon=False)
    return fig

"""A Markdown report generated from the three studies' results files.

Every number and every verdict in the text comes from the computed statistics
(``stats.py``); the only constants are the seed notebook's own single-run
numbers, quoted so its conclusions can be checked against ours.
"""

from __future__ import annotations

import math

import numpy as np

from jaxcnn import stats

STUDY_ORDER = ("regularization", "initialization", "schedules")

# The seed notebook's claims, as (study, better, worse, its accuracy for each, its words).
# Its "default initialization" is PyTorch's default, our "torch"; its step-decay run is
# its baseline model (the same run), so both read 67.84. Its L2 run's output stops after
# epoch 1 (58.89%), so only the direction of that claim can be checked.
SEED_CLAIMS = (
    ("regularization", "baseline", "dropout", 67.84, 65.76,
     "the baseline (no regularization) outperforms dropout"),
    ("regularization", "baseline", "l2", 67.84, None,
     "the baseline outperforms L2 regularization"),
    ("initialization", "glorot", "torch", 68.45, 67.84,
     "Xavier initialization is marginally better than the default"),
    ("initialization", "torch", "he", 67.84, 67.13, "the default beats Kaiming initialization"),
    ("initialization", "glorot", "he", 68.45, 67.13, "Xavier beats Kaiming initialization"),
    ("schedules", "cyclic", "step", 69.22, 67.84, "cyclic learning rates beat step decay"),
    ("schedules", "cyclic", "exponential", 69.22, 66.30,
     "cyclic learning rates beat exponential decay"),
    ("schedules", "step", "exponential", 67.84, 66.30, "step decay beats exponential decay"),
)


def _fmt(value: float | None, digits: int = 2, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _p(value: float | None) -> str:
    if value is None:
        return "n/a"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _ci(pair: list[float] | None) -> str:
    return f"[{pair[0]:.2f}, {pair[1]:.2f}]" if pair else "n/a"


def _min_wilcoxon_p(n: int) -> float:
    """The smallest two-sided p an exact Wilcoxon signed-rank test can give on n pairs."""
    return min(1.0, 2.0 / 2 ** n)


def comparison_sentence(c: dict, alpha: float) -> str:
    """One generated sentence about a paired comparison."""
    head = f"**{c['config']}** vs {c['reference']}"
    if c["p_holm"] is None:
        return f"{head}: {c['note'] or 'not testable'}."
    diff = c["mean_difference"]
    detail = (f"{_fmt(diff, signed=True)} points (95% CI {_ci(c['ci95'])}; paired t p = "
              f"{_p(c['p_ttest'])}, Holm p = {_p(c['p_holm'])}, Wilcoxon p = "
              f"{_p(c['p_wilcoxon'])}; d_z = {_fmt(c['effect_size'])}, "
              f"P(improvement) = {_fmt(c['prob_improvement'])})")
    if c["p_holm"] < alpha:
        direction = "better than" if diff > 0 else "worse than"
        text = (f"{head}: {detail}. **Significant** after Holm at {alpha:.0%}: "
                f"{c['config']} is {direction} {c['reference']}.")
    elif c["p_ttest"] is not None and c["p_ttest"] < alpha:
        # The interval excludes zero but the family-wise correction does not let it
        # through: say both, so the reader does not take it for a null result.
        text = (f"{head}: {detail}. Not significant after Holm at {alpha:.0%} across the "
                f"study's comparisons, though the unadjusted paired t-test is (p = "
                f"{_p(c['p_ttest'])}): suggestive only; more seeds would settle it.")
    else:
        mdd = c["min_detectable_difference"]
        text = (f"{head}: {detail}. Not distinguishable at {c['n_pairs']} seeds"
                + (f"; with the observed paired spread (sd {_fmt(c['sd_difference'])}) this run "
                   f"could detect a true difference of about {_fmt(mdd)} points (80% power, "
                   f"two-sided {alpha:.0%})." if mdd is not None else "."))
    if c.get("note"):
        text += f" Note: {c['note']}."
    return text


def study_section(name: str, results: dict, figure_prefix: str) -> list[str]:
    meta, statistics = results["metadata"], results["statistics"]
    reference = meta["reference"]
    lines = [f"## {name.capitalize()}", ""]
    lines.append(f"Command: `{meta.get('command', '?')}`  ")
    lines.append(f"Reference: `{reference}`. Wall time per configuration (s): "
                 + ", ".join(f"{k} {v:.0f}" for k, v in meta["wall_seconds"].items()) + ".")
    lines += ["", "| config | description | n | mean ± std | 95% CI (t) | 95% CI (bootstrap) "
              "| diff vs ref | diff 95% CI | p (t) | p (Wilcoxon) | p (Holm) | d_z | P(impr.) |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    by_config = {c["config"]: c for c in statistics["comparisons"] if c["reference"] == reference}
    for cfg_name, entry in statistics["summary"].items():
        c = by_config.get(cfg_name, {})
        desc = results["configs"][cfg_name]["description"]
        std = f" ± {_fmt(entry['std'])}" if entry["std"] is not None else ""
        lines.append(
            f"| {cfg_name}{' (ref)' if cfg_name == reference else ''} | {desc} | {entry['n']} | "
            f"{_fmt(entry['mean'])}{std} | {_ci(entry['ci95_t'])} | "
            f"{_ci(entry['ci95_bootstrap'])} | {_fmt(c.get('mean_difference'), signed=True)} | "
            f"{_ci(c.get('ci95'))} | {_p(c.get('p_ttest'))} | {_p(c.get('p_wilcoxon'))} | "
            f"{_p(c.get('p_holm'))} | {_fmt(c.get('effect_size'))} | "
            f"{_fmt(c.get('prob_improvement'))} |")
    lines += ["", f"![curves]({figure_prefix}/curves.png)", "",
              f"![test accuracy]({figure_prefix}/test_accuracy.png)", ""]
    if name == "schedules":
        lines += [f"![learning rate and beta1 per step]({figure_prefix}/schedules.png)", ""]
    lines += ["Findings:", ""]
    alpha = statistics["alpha"]
    for c in statistics["comparisons"]:
        lines.append(f"- {comparison_sentence(c, alpha)}")
    pairing = sorted({c["pairing"] for c in statistics["comparisons"]})
    if pairing:
        lines.append(f"- Pairing: seed i is {'; '.join(pairing)} across these configurations "
                     "(checked from the stored initial-weight checksums).")
    diverged = {k: v["diverged_seeds"] for k, v in statistics["summary"].items()
                if v["diverged_seeds"]}
    if diverged:
        lines.append(f"- Diverged seeds (excluded from every statistic): {diverged}.")
    n_max = max((c["n_pairs"] for c in statistics["comparisons"]), default=0)
    if n_max and _min_wilcoxon_p(n_max) >= alpha:
        lines.append(f"- With {n_max} pairs the Wilcoxon signed-rank test cannot reach "
                     f"p < {alpha:.0%} (its smallest two-sided p is "
                     f"{_min_wilcoxon_p(n_max):.4f}); the paired t-test carries the verdicts.")
    return lines + [""]


def seed_claims_section(all_results: dict[str, dict], seed: int = 0) -> list[str]:
    """The notebook's single-run conclusions against our paired multi-seed differences."""
    rng = np.random.default_rng(seed)
    rows = []
    parity = any(r["metadata"]["settings"].get("torch_parity") for r in all_results.values())
    for study, better, worse, acc_better, acc_worse, words in SEED_CLAIMS:
        results = all_results.get(study)
        if results is None or better not in results["configs"] or worse not in results["configs"]:
            continue
        a = stats.kept_scores(results["configs"][better]["seeds"])
        b = stats.kept_scores(results["configs"][worse]["seeds"])
        common = sorted(set(a) & set(b))
        comparison = stats.compare(np.array([a[s] for s in common]),
                                   np.array([b[s] for s in common]), rng)
        rows.append((study, better, worse, acc_better, acc_worse, words, comparison))
    testable = [i for i, r in enumerate(rows) if r[6]["p_ttest"] is not None]
    adjusted = dict(zip(testable, stats.holm([rows[i][6]["p_ttest"] for i in testable])))
    lines = ["## The seed's single-run conclusions, revisited", "",
             "The notebook ranked techniques from one run each. Here each of its claims is "
             "tested as a paired difference (first minus second) over our seeds, Holm-adjusted "
             "across the claims in this table. "
             + ("These runs follow the notebook's protocol (`--torch-parity`)."
                if parity else
                "These runs use jaxcnn's corrected defaults, not the notebook's protocol "
                "(schedules step per optimizer step, so the cyclic schedule really cycles and "
                "the exponential one decays 10x per epoch; Flax initializers; see the README's "
                "parity table): a claim can fail here because the setting differs, not only "
                "because one run is noisy. `--torch-parity` tests the claims as the notebook ran "
                "them."), "",
             "| study | claim (the notebook's words) | its gap (one run) | our mean diff | "
             "95% CI | p (t) | Holm p | verdict |", "|---|---|---|---|---|---|---|---|"]
    for i, (study, better, worse, acc_b, acc_w, words, c) in enumerate(rows):
        gap = _fmt(acc_b - acc_w, signed=True) if acc_w is not None else "n/a (run cut off)"
        p_holm = adjusted.get(i)
        if p_holm is None:
            verdict = "not testable (fewer than 2 paired seeds)"
        elif p_holm < stats.ALPHA:
            verdict = "holds" if c["mean_difference"] > 0 else "reversed: significant the other way"
        elif c["p_ttest"] < stats.ALPHA:
            verdict = (f"suggestive only: unadjusted p = {_p(c['p_ttest'])}, not significant "
                       f"after Holm across the {len(testable)} claims")
        else:
            verdict = f"not supported at {c['n_pairs']} seeds (not distinguishable)"
        lines.append(f"| {study} | {words} (`{better}` > `{worse}`) | {gap} | "
                     f"{_fmt(c['mean_difference'], signed=True)} | {_ci(c['ci95'])} | "
                     f"{_p(c['p_ttest'])} | {_p(p_holm)} | {verdict} |")
    held = sum(1 for i, r in enumerate(rows) if adjusted.get(i) is not None
               and adjusted[i] < stats.ALPHA and r[6]["mean_difference"] > 0)
    lines += ["", f"Of {len(rows)} claims, {held} hold at 5% after Holm with our seeds.", ""]
    return lines


def build_report(all_results: dict[str, dict]) -> str:
    """The whole report as Markdown; figures are referenced relative to the report."""
    first = next(iter(all_results.values()))
    meta = first["metadata"]
    data, settings, device = meta["data"], meta["settings"], meta["device"]
    differing = sorted({key for r in all_results.values() for key, value in
                        r["metadata"]["settings"].items() if value != settings.get(key)})
    lines = ["# jaxcnn report: regularization, initialization and learning-rate schedules", "",
             "Generated by `python -m experiments.report` from the studies' results.json files; "
             "every number below is computed from them.", "",
             f"- Data: `{data['source']}` ({data['fingerprint']}), "
             f"{data['train_examples']} training images, "
             + (f"the test set ({data['test_examples']}) as per-epoch validation set"
                if data["val_is_test"] else f"{data['val_examples']} held-out validation images")
             + f", {data['test_examples']} test images.",
             f"- Protocol: {settings['seeds']} seeds per configuration, {settings['epochs']} "
             f"epochs, batch {settings['batch_size']}, Adam lr {settings['lr']}, normalization "
             f"{settings['normalization']}, torch parity mode {settings['torch_parity']}"
             + (f", training subset of {settings['train_examples']} images"
                if settings["train_examples"] else "") + ".",
             f"- Machine: {device['kind']} ({device['platform']}, {device['host_cpus']} host "
             f"CPUs); jax {meta['versions'].get('jax')}, flax {meta['versions'].get('flax')}, "
             f"optax {meta['versions'].get('optax')}.",
             "- Method: configurations are compared with their study's reference, paired by seed "
             "(seed i shares data order and, where the initializer is the same, initial weights); "
             "95% intervals are t-based and percentile-bootstrap (10,000 resamples, fixed "
             "Generator); p-values are Holm-adjusted within each study; d_z is the mean paired "
             "difference over its std; P(impr.) is P(config > reference) over all run pairs.", ""]
    if differing:
        lines += [f"**Warning:** the studies were run with different settings "
                  f"({', '.join(differing)}); the protocol line above is the first study's.", ""]
    for name in STUDY_ORDER:
        if name in all_results:
            lines += study_section(name, all_results[name], name)
    lines += seed_claims_section(all_results)
    return "\n".join(lines) + "\n"

"""Tables and the Markdown report, generated from the studies' results files.

Every number and every verdict comes from the computed statistics (``stats.py``);
the only constants are the seed notebook's own single-run numbers (the studies'
claims), quoted so its conclusions can be checked against ours. Each comparison
has one verdict, from one Holm family per study (the comparisons with the
reference and the notebook's claims in that study), shown identically in the
console table, the report's tables, its sentences and its claims table.
"""

from __future__ import annotations

import math

from jaxcnn.stats import MIN_BOOTSTRAP_N, find_comparison
from jaxcnn.studies import STUDIES

STUDY_ORDER = ("regularization", "initialization", "schedules")


def fmt(value: float | None, digits: int = 2, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def fmt_p(value: float | None) -> str:
    if value is None:
        return "n/a"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def fmt_interval(pair: list[float] | None, sign: int = 1) -> str:
    if not pair:
        return "n/a"
    low, high = sorted((sign * pair[0], sign * pair[1]))
    return f"[{low:.2f}, {high:.2f}]"


def verdict(c: dict, alpha: float, sign: int = 1) -> str:
    """The one verdict of a comparison (``sign`` -1 reads it the other way round)."""
    if c.get("p_holm") is None:
        return "not testable"
    if c["p_holm"] < alpha:
        return "better" if sign * c["mean_difference"] > 0 else "worse"
    if c["p_ttest"] < alpha:
        return "suggestive only"
    return "not distinguishable"


VERDICT_WORDS = {
    "better": "**significant** (Holm): better",
    "worse": "**significant** (Holm): worse",
    "suggestive only": "suggestive only: p < 5% before Holm, not after",
    "not distinguishable": "not distinguishable",
    "not testable": "not testable",
}


def table_rows(results: dict) -> list[dict]:
    """One row per configuration with every cell formatted; the console and Markdown
    tables are two views of these rows."""
    statistics = results["statistics"]
    reference = results["metadata"]["reference"]
    alpha = statistics["alpha"]
    rows = []
    for name, entry in statistics["summary"].items():
        c, _ = find_comparison(statistics, name, reference)
        c = c or {}
        mean = (f"{entry['mean']:.2f} ± {entry['std']:.2f}" if entry["std"] is not None
                else fmt(entry["mean"]))
        notes = [n for n in (c.get("note"), entry["note"]) if n]
        rows.append({
            "config": name, "is_reference": name == reference,
            "description": results["configs"][name]["description"], "n": str(entry["n"]),
            "mean": mean, "ci_t": fmt_interval(entry["ci95_t"]),
            "ci_bootstrap": (fmt_interval(entry["ci95_bootstrap"]) if entry["n"] >= MIN_BOOTSTRAP_N
                             else f"n/a (n < {MIN_BOOTSTRAP_N})"),
            "diff": fmt(c.get("mean_difference"), signed=True) if c else "",
            "diff_ci": fmt_interval(c.get("ci95")) if c else "",
            "p_t": fmt_p(c.get("p_ttest")), "p_wilcoxon": fmt_p(c.get("p_wilcoxon")),
            "p_holm": fmt_p(c.get("p_holm")) if c else "",
            "d_z": fmt(c.get("effect_size")), "p_improvement": fmt(c.get("prob_improvement")),
            "verdict": "reference" if name == reference else verdict(c, alpha) if c else "",
            "notes": "; ".join(notes),
        })
    return rows


def console_table(results: dict) -> str:
    """The console's summary: mean ± std, interval, paired difference, Holm p, verdict."""
    reference = results["metadata"]["reference"]
    rows = table_rows(results)
    width = max([len("config"), *(len(r["config"]) for r in rows)])
    lines = [f"\n{results['experiment']}: final test accuracy (%), paired by seed against "
             f"'{reference}'; Holm-adjusted p over the study's comparisons",
             f"{'config':<{width}} {'n':>2} {'mean ± std':>14} {'95% CI':>16} {'diff':>7} "
             f"{'diff 95% CI':>17} {'Holm p':>8}  verdict"]
    for r in rows:
        notes = f" ({r['notes']})" if r["notes"] else ""
        lines.append(f"{r['config']:<{width}} {r['n']:>2} {r['mean']:>14} {r['ci_t']:>16} "
                     f"{r['diff']:>7} {r['diff_ci']:>17} {r['p_holm']:>8}  "
                     f"{r['verdict']}{notes}")
    return "\n".join(lines)


def comparison_sentence(c: dict, alpha: float) -> str:
    """One generated sentence about a paired comparison."""
    head = f"**{c['config']}** vs {c['reference']}"
    if c["p_holm"] is None:
        return f"{head}: {c['note'] or 'not testable'}."
    diff = c["mean_difference"]
    detail = (f"{fmt(diff, signed=True)} points (95% CI {fmt_interval(c['ci95'])}; paired t p = "
              f"{fmt_p(c['p_ttest'])}, Holm p = {fmt_p(c['p_holm'])}, Wilcoxon p = "
              f"{fmt_p(c['p_wilcoxon'])}; d_z = {fmt(c['effect_size'])}, "
              f"P(improvement) = {fmt(c['prob_improvement'])})")
    which = verdict(c, alpha)
    if which in ("better", "worse"):
        text = (f"{head}: {detail}. **Significant** after Holm at {alpha:.0%}: "
                f"{c['config']} is {which} than {c['reference']}.")
    elif which == "suggestive only":
        # The interval excludes zero but the family-wise correction does not let it
        # through: say both, so the reader does not take it for a null result.
        text = (f"{head}: {detail}. Suggestive only: the unadjusted paired t-test is below "
                f"{alpha:.0%} (p = {fmt_p(c['p_ttest'])}) but not after Holm across the "
                "study's comparisons; more seeds would settle it.")
    else:
        mdd = c["min_detectable_difference"]
        text = (f"{head}: {detail}. Not distinguishable at {c['n_pairs']} seeds"
                + (f"; with the observed paired spread (sd {fmt(c['sd_difference'])}) this run "
                   f"could detect a true difference of about {fmt(mdd)} points (80% power, "
                   f"two-sided {alpha:.0%})." if mdd is not None else "."))
    if c.get("note"):
        text += f" Note: {c['note']}."
    return text


def _min_wilcoxon_p(n: int) -> float:
    """The smallest two-sided p an exact Wilcoxon signed-rank test can give on n pairs."""
    return min(1.0, 2.0 / 2 ** n)


def same_model_lines(all_results: dict[str, dict]) -> list[str]:
    """'a = b = c' for configurations that are one model (same network, init, optimizer,
    hyperparameters), with how it was trained."""
    groups, seen = [], set()
    for study in STUDY_ORDER:
        for name, record in all_results.get(study, {}).get("configs", {}).items():
            entry = f"{study}/{name}"
            if entry in seen or not record.get("same_model_as"):
                continue
            present = [e for e in [entry, *record["same_model_as"]]
                       if e.split("/")[0] in all_results
                       and e.split("/")[1] in all_results[e.split("/")[0]]["configs"]]
            seen.update(present)
            if len(present) > 1:
                groups.append(present)
    lines = []
    for group in groups:
        trained = {all_results[e.split("/")[0]]["configs"][e.split("/")[1]].get("trained_as")
                   for e in group}
        once = len(trained) == 1 and None not in trained
        lines.append(f"- {' = '.join(f'`{e}`' for e in group)}: one model"
                     + (f", trained once (as `{trained.pop()}`) and reported in each study"
                        if once else ", trained separately in each study (same numbers)"))
    return lines


def study_section(name: str, results: dict, figure_prefix: str) -> list[str]:
    meta, statistics = results["metadata"], results["statistics"]
    reference = meta["reference"]
    lines = [f"## {name.capitalize()}", "",
             f"Command: `{meta.get('command', '?')}`  ",
             f"Reference: `{reference}`."]
    lines += ["", "| config | description | n | mean ± std | 95% CI (t) | 95% CI (bootstrap) "
              "| diff vs ref | diff 95% CI | p (t) | p (Wilcoxon) | p (Holm) | d_z | P(impr.) "
              "| verdict |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in table_rows(results):
        lines.append(
            f"| {r['config']}{' (ref)' if r['is_reference'] else ''} | {r['description']} | "
            f"{r['n']} | {r['mean']} | {r['ci_t']} | {r['ci_bootstrap']} | {r['diff'] or 'n/a'} "
            f"| {r['diff_ci'] or 'n/a'} | {r['p_t']} | {r['p_wilcoxon']} | "
            f"{r['p_holm'] or 'n/a'} | {r['d_z']} | {r['p_improvement']} | {r['verdict']} |")
    lines += ["", f"![curves]({figure_prefix}/curves.png)", "",
              f"![test accuracy]({figure_prefix}/test_accuracy.png)", ""]
    if name == "schedules":
        lines += [f"![learning rate and beta1 as applied]({figure_prefix}/schedules.png)", ""]
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
    if any(entry["n"] < MIN_BOOTSTRAP_N for entry in statistics["summary"].values()):
        lines.append(f"- Bootstrap intervals are omitted below {MIN_BOOTSTRAP_N} seeds: "
                     "resampling so few values gives intervals far narrower than the truth; "
                     "the t interval is the one to read.")
    if name == "schedules" and meta["settings"].get("torch_parity"):
        lines.append("- Under the notebook's protocol the schedulers step once per epoch: in "
                     f"{meta['settings']['epochs']} epochs StepLR(step_size=5) never fires and "
                     "CyclicLR (step_size_up=2000 scheduler steps) barely moves, so `step` "
                     "and `cyclic` train at an almost constant rate (see the schedule figure).")
    return lines + [""]


def seed_claims_section(all_results: dict[str, dict]) -> list[str]:
    """The notebook's single-run conclusions, each read from its study's statistics."""
    parity = any(r["metadata"]["settings"].get("torch_parity") for r in all_results.values())
    lines = ["## The seed's single-run conclusions, revisited", "",
             "The notebook ranked techniques from one run each. Each of its claims is a paired "
             "comparison (first minus second, by seed) in its study's statistics, adjusted "
             "with Holm in the same family as that study's comparisons with its reference, so "
             "it carries the same verdict as in the study's table. "
             + ("These runs follow the notebook's protocol (`--torch-parity`)."
                if parity else
                "These runs use jaxcnn's corrected defaults, not the notebook's protocol "
                "(schedules scaled to the run: `step` decays 10x at the midpoint, `cyclic` "
                "completes whole cycles, `exponential` decays 10x per epoch; Flax "
                "initializers; see the README's parity table): a claim can fail here because "
                "the setting differs, not only because one run is noisy. `--torch-parity` "
                "tests the claims as the notebook ran them."), "",
             "| study | claim (the notebook's words) | its gap (one run) | our mean diff | "
             "95% CI | p (t) | p (Holm) | verdict |", "|---|---|---|---|---|---|---|---|"]
    counts = {"holds": 0, "total": 0}
    for study_name in STUDY_ORDER:
        results = all_results.get(study_name)
        if results is None:
            continue
        alpha = results["statistics"]["alpha"]
        for claim in STUDIES[study_name].claims:
            c, sign = find_comparison(results["statistics"], claim.better, claim.worse)
            if c is None:
                continue
            gap = (fmt(claim.acc_better - claim.acc_worse, signed=True)
                   if claim.acc_worse is not None else "n/a (run cut off)")
            which = verdict(c, alpha, sign)
            text = {"better": "holds", "worse": "reversed: significant the other way",
                    "suggestive only": "suggestive only (p < 5% before Holm, not after)",
                    "not distinguishable": f"not supported at {c['n_pairs']} seeds "
                                           "(not distinguishable)",
                    "not testable": "not testable (fewer than 2 paired seeds)"}[which]
            counts["total"] += 1
            counts["holds"] += which == "better"
            diff = None if c["mean_difference"] is None else sign * c["mean_difference"]
            lines.append(f"| {study_name} | {claim.words} (`{claim.better}` > `{claim.worse}`) | "
                         f"{gap} | {fmt(diff, signed=True)} | {fmt_interval(c['ci95'], sign)} | "
                         f"{fmt_p(c['p_ttest'])} | {fmt_p(c['p_holm'])} | {text} |")
    lines += ["", f"Of {counts['total']} claims, {counts['holds']} hold at 5% after Holm with "
              "our seeds.", ""]
    return lines


def build_report(all_results: dict[str, dict]) -> str:
    """The whole report as Markdown; figures are referenced relative to the report."""
    first = next(iter(all_results.values()))
    meta = first["metadata"]
    data, settings, device = meta["data"], meta["settings"], meta["device"]
    differing = sorted({key for r in all_results.values() for key, value in
                        r["metadata"]["settings"].items() if value != settings.get(key)})
    runtime = meta.get("runtime", {})
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
             f"optax {meta['versions'].get('optax')}"
             + (f"; members batched by {runtime['batching']}, conv {runtime['conv']}"
                if runtime else "") + ".",
             "- Method: configurations are compared paired by seed (seed i shares data order "
             "and, where the initializer is the same, initial weights); 95% intervals are "
             "t-based and percentile-bootstrap (10,000 resamples, fixed Generator; omitted "
             f"below {MIN_BOOTSTRAP_N} seeds); every verdict uses Holm-adjusted p-values over "
             "its study's comparisons (each configuration against the reference, and the "
             "notebook's claims in that study): one family per study, so each comparison has "
             "one verdict wherever it appears; d_z is the mean paired difference over its "
             "std; P(impr.) is P(config > reference) over all run pairs.", ""]
    same = same_model_lines(all_results)
    if same:
        lines += ["Configurations that are the same model (same network, initializer, "
                  "optimizer and hyperparameters) have the same numbers by construction:", "",
                  *same, ""]
    if differing:
        lines += [f"**Warning:** the studies were run with different settings "
                  f"({', '.join(differing)}); the protocol line above is the first study's.", ""]
    for name in STUDY_ORDER:
        if name in all_results:
            lines += study_section(name, all_results[name], name)
    lines += seed_claims_section(all_results)
    return "\n".join(lines) + "\n"

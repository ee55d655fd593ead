"""Tables and the Markdown report, generated from the studies' results files.

Every number and every verdict comes from the computed statistics (``stats/paired.py``);
the only constants are the seed notebook's own single-run numbers (the studies'
claims), quoted so its conclusions can be checked against ours. Each comparison
has one verdict, the sequential decisions' (``stats/decisions.py``), shown identically
in the console table, the report's tables, its sentences and its claims table;
Holm-adjusted p-values within a study are a labelled column beside it, never a verdict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from jaxcnn.platform.compile_cache import phrase
from jaxcnn.platform.progress import plural
from jaxcnn.stats.decisions import Design, single_look
from jaxcnn.stats.paired import (
    MIN_BOOTSTRAP_N,
    NO_REFERENCE,
    compare,
    diverged_score,
    find_comparison,
    kept_scores,
    metric_of,
)
from jaxcnn.studies import STUDIES

STUDY_ORDER = tuple(STUDIES)  # the report's sections, in the studies' own order
# Below this many seeds a 95% t-interval of an accuracy is wider than 0-100 can hold
# (at 2 seeds its half-width is 12.7 standard errors): the tables show the seeds' range.
MIN_T_INTERVAL = 3
ACCURACY_RANGE = (0.0, 100.0)


def fmt(value: float | None, digits: int = 2, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def fmt_p(value: float | None) -> str:
    """A p-value for a table cell: '0.012', '<0.001'."""
    if value is None:
        return "n/a"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def p_equals(value: float | None) -> str:
    """A p-value in a sentence: 'p = 0.012', 'p < 0.001' (never 'p = <0.001')."""
    text = fmt_p(value)
    return f"p {text[0]} {text[1:]}" if text.startswith("<") else f"p = {text}"


def fmt_interval(pair: list[float] | None, sign: int = 1) -> str:
    if not pair:
        return "n/a"
    low, high = sorted((sign * pair[0], sign * pair[1]))
    return f"[{low:.2f}, {high:.2f}]"


def decided(c: dict, sign: int = 1) -> str | None:
    """The comparison's verdict from the decisions (better / worse / equivalent /
    undecided; ``sign`` -1 reads it the other way round), or None without one."""
    decision = c.get("decision")
    if decision is None:
        return None
    word = decision["verdict"]
    if sign < 0 and word in ("better", "worse"):
        word = "worse" if word == "better" else "better"
    return word


def verdict(c: dict, sign: int = 1) -> str:
    """The one verdict of a comparison (``sign`` -1 reads it the other way round), as a
    table cell: the sequential decisions', with what it rests on. A comparison they did
    not decide (fewer than 2 paired seeds, or outside the run's family) is "not testable"
    or "undecided", whatever its p-values say: Holm's p is shown beside it as a number,
    never read as a verdict."""
    decision, word = c.get("decision"), decided(c, sign)
    if decision is None:
        return "not testable" if c.get("p_holm") is None else "undecided"
    if word == "equivalent":
        return f"equivalent (±{decision['margin']:g})"
    if word == "undecided":
        return f"undecided at {decision['n']} seeds"
    return word


def accuracy_interval(entry: dict, seeds: list[dict], results: dict | None = None) -> str:
    """The interval cell of a configuration's score (the study's metric): its 95%
    t-interval (clipped to 0-100 for accuracy), or, below MIN_T_INTERVAL seeds, the seeds'
    range (marked 'range'), diverged seeds counted as in the statistics."""
    metric = metric_of(results or {})
    scores = list(kept_scores(seeds, metric["key"], diverged_score(results or {})).values())
    if 0 < len(scores) < MIN_T_INTERVAL:
        return f"range {fmt_interval([min(scores), max(scores)])}"
    if not entry["ci95_t"]:
        return "n/a"
    if metric["key"] != "test_accuracy":
        return fmt_interval(entry["ci95_t"])
    return fmt_interval([min(max(v, ACCURACY_RANGE[0]), ACCURACY_RANGE[1])
                         for v in entry["ci95_t"]])


def metric_label(results: dict) -> str:
    """What a study's tables hold: "final test accuracy (%)", or its metric and unit."""
    metric = metric_of(results)
    if metric["key"] == "test_accuracy":
        return "final test accuracy (%)"
    return f"final {metric['name'].replace('_', ' ')}" + (
        f" ({metric['unit']})" if metric["unit"] else "")


def table_rows(results: dict) -> list[dict]:
    """One row per configuration with every cell formatted; the console and Markdown
    tables are two views of these rows."""
    statistics = results["statistics"]
    reference = results["metadata"]["reference"]
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
            "mean": mean, "ci_t": accuracy_interval(entry, results["configs"][name]["seeds"],
                                                     results),
            "ci_bootstrap": (fmt_interval(entry["ci95_bootstrap"]) if entry["n"] >= MIN_BOOTSTRAP_N
                             else f"n/a (n < {MIN_BOOTSTRAP_N})"),
            "diff": fmt(c.get("mean_difference"), signed=True) if c else "",
            "diff_ci": fmt_interval(c.get("ci95")) if c else "",
            "p_t": fmt_p(c.get("p_ttest")), "p_wilcoxon": fmt_p(c.get("p_wilcoxon")),
            "p_holm": fmt_p(c.get("p_holm")) if c else "",
            "d_z": fmt(c.get("effect_size")), "p_improvement": fmt(c.get("prob_improvement")),
            "verdict": ("reference" if name == reference else verdict(c) if c
                        else NO_REFERENCE if "no_reference" in statistics else ""),
            "notes": "; ".join(notes),
        })
    return rows


def console_table(results: dict) -> str:
    """The console's summary: mean ± std, interval, paired difference, Holm p, verdict."""
    reference = results["metadata"]["reference"]
    rows = table_rows(results)
    width = max([len("config"), *(len(r["config"]) for r in rows)])
    missing = results["statistics"].get("no_reference")
    lines = [f"\n{results['experiment']}: {metric_label(results)}, paired by seed against "
             f"'{reference}'; "
             + ("verdicts from the decisions (see the report); Holm p within the study for "
                "reference" if results.get("decisions") else
                "one seed decides nothing; Holm p within the study for reference")
             + (f"\n{missing}" if missing else ""),
             f"{'config':<{width}} {'n':>2} {'mean ± std':>14} {'95% CI':>20} {'diff':>7} "
             f"{'diff 95% CI':>17} {'Holm p':>8}  verdict"]
    for r in rows:
        notes = f" ({r['notes']})" if r["notes"] else ""
        lines.append(f"{r['config']:<{width}} {r['n']:>2} {r['mean']:>14} {r['ci_t']:>20} "
                     f"{r['diff']:>7} {r['diff_ci']:>17} {r['p_holm']:>8}  "
                     f"{r['verdict']}{notes}")
    return "\n".join(lines)


def comparison_sentence(c: dict, alpha: float) -> str:
    """One generated sentence about a paired comparison."""
    head = f"**{c['config']}** vs {c['reference']}"
    if c["p_holm"] is None:
        return f"{head}: {c['note'] or 'not testable'}."
    diff, unit = c["mean_difference"], c.get("decision", {}).get("unit", "points")
    detail = (f"{fmt(diff, signed=True)} {unit} (95% CI {fmt_interval(c['ci95'])}; paired t "
              f"{p_equals(c['p_ttest'])}, Holm {p_equals(c['p_holm'])}, Wilcoxon "
              f"{p_equals(c['p_wilcoxon'])}; d_z = {fmt(c['effect_size'])}, "
              f"P(improvement) = {fmt(c['prob_improvement'])})")
    if c.get("decision") is not None:
        return (f"{head}: {detail}. {decision_sentence(c)}{shape_note(c['decision'])}"
                f"{error_note(c['decision'])}") + (
            f" Note: {c['note']}." if c.get("note") else "")
    # Not among the run's decisions: its p-values are shown, and no verdict is drawn.
    text = (f"{head}: {detail}. **Undecided**: no decision was made for this comparison "
            f"at {c['n_pairs']} seeds (it was not in the run's decided family).")
    if c.get("note"):
        text += f" Note: {c['note']}."
    return text


def decision_sentence(c: dict) -> str:
    """What the decisions say of a comparison, in words that match its verdict."""
    d, word = c["decision"], decided(c)
    unit = d.get("unit", "points")
    where = (f"at {d['n']} seeds ({plural(d['looks'], 'look')}, family of "
             f"{d['family_size']} comparisons)")
    if word in ("better", "worse"):
        margin = (f"; the difference is also within ±{d['margin']:g} {unit}"
                  if d.get("within_margin") else "")
        return (f"**{word.capitalize()}** {where}: the adjusted interval "
                f"{fmt_interval(d['interval'])} excludes 0{margin}.")
    if word == "equivalent":
        return (f"**Equivalent within ±{d['margin']:g} {unit}** {where}: the equivalence "
                f"interval {fmt_interval(d['equivalence_interval'])} lies inside "
                f"(-{d['margin']:g}, {d['margin']:g}), so {c['config']} ends where "
                f"{c['reference']} does.")
    needed = more_seeds(d)
    return (f"**Undecided** {where}: neither a difference (adjusted interval "
            f"{fmt_interval(d['interval'])}) nor equivalence within ±{d['margin']:g} {unit} "
            f"is shown{needed}.")


def more_seeds(d: dict) -> str:
    """What more seeds would do for an undecided comparison: nothing where the test images
    are the limit, else the recorded probability that a rerun with a larger --max-seeds
    decides it (calibrated looks), or, for looks of 0d99cce's method, the seeds that would
    decide it at the observed mean and spread."""
    if d.get("test_limit"):
        return (f"; the test set, not the seeds, is the limit: these test images allow no "
                f"equivalence margin below ±{d['test_limit']:.2f} {d.get('unit', 'points')} "
                "and no direction at this mean, whatever the seeds, so no more were trained")
    if d.get("continuation"):
        budget, p = d["continuation"]
        return (f"; a rerun with --max-seeds {budget:g} on the same --out decides it with "
                f"probability {p:.2f} at the observed mean and spread")
    return (f"; about {d['seeds_needed']} seeds would decide it at the observed spread"
            if d.get("seeds_needed") else "")


def shape_note(d: dict) -> str:
    """A sentence where a comparison's seeds lie near or outside the class the verdicts
    are calibrated for (sample skewness of 1.5 or more, a seed over 3.5 sd out: rare on
    normal seeds, where a skewness of 1 or a seed at 3 sd is common), saying whether
    its verdict holds without its most extreme seed; "" otherwise."""
    skew, z, again = d.get("skewness"), d.get("largest_z"), d.get("without_extreme")
    flags = ([f"sample skewness {skew:+.2f}"] if skew is not None and abs(skew) >= 1.5
             else []) + (
        [f"one seed {z:+.1f} sd from the mean"] if z is not None and abs(z) > 3.5 else [])
    if not flags:
        return ""
    held = ("its verdict is the same without its most extreme seed" if again == d["verdict"]
            else f"without its most extreme seed it would be {again}" if again else "")
    return (f" Its seeds are at the edge of the class the verdicts hold for ("
            f"{' and '.join(flags)}; the class covers a population skewness up to 1.5 and "
            f"3% of seeds 5 sd out){'; ' + held if held else ''}.")


def error_note(d: dict) -> str:
    """The two parts of a verdict's standard error and what it covers, as a sentence
    ("" for looks recorded before both were)."""
    seed_se, image_se = d.get("seed_se"), d.get("image_se")
    if seed_se is None:
        return ""
    unit = d.get("unit", "points")
    if image_se is None:
        return (f" Standard error {seed_se:.2f} {unit} from the seeds; the test images' part "
                "is not known (no stored per-image outcomes), so the verdict is about these "
                "test images.")
    if d.get("test_set") == "fixed":
        return (f" Standard errors: {seed_se:.2f} {unit} from the seeds, {image_se:.2f} from "
                "the test images, not in the interval (--test-set fixed: the verdict is "
                "about these test images).")
    return (f" Standard errors: {seed_se:.2f} {unit} from the seeds, {image_se:.2f} from the "
            "test images; the interval includes both.")


def _min_wilcoxon_p(n: int) -> float:
    """The smallest two-sided p an exact Wilcoxon signed-rank test can give on n pairs."""
    return min(1.0, 2.0 / 2 ** n)


def _entry(all_results: dict[str, dict], entry: str) -> dict | None:
    """The configuration record of 'study/config', or None where it is not reported."""
    study, _, name = entry.partition("/")
    return all_results.get(study, {}).get("configs", {}).get(name)


def setting_differences(all_results: dict[str, dict], studies: list[str]) -> list[str]:
    """The settings (metadata.settings keys) on which ``studies`` ran differently."""
    settings = [all_results[s]["metadata"].get("settings", {}) for s in studies]
    keys = sorted({k for one in settings for k in one})
    return [k for k in keys if len({repr(one.get(k)) for one in settings}) > 1]


def same_model_lines(all_results: dict[str, dict]) -> list[str]:
    """'a = b = c' for configurations that are one model (same network, init, optimizer,
    hyperparameters), with how it was trained. "Same numbers" is said only where the
    studies ran under the same settings; otherwise the differing settings are named."""
    groups, seen = [], set()
    for study in all_results:
        for name, record in all_results[study].get("configs", {}).items():
            entry = f"{study}/{name}"
            if entry in seen or not record.get("same_model_as"):
                continue
            present = [e for e in [entry, *record["same_model_as"]]
                       if _entry(all_results, e) is not None]
            seen.update(present)
            if len(present) > 1:
                groups.append(present)
    lines = []
    for group in groups:
        names = " = ".join(f"`{e}`" for e in group)
        differing = setting_differences(all_results, sorted({e.split("/")[0] for e in group}))
        if differing:
            lines.append(f"- {names}: the same configuration, but its studies ran under "
                         f"different settings ({', '.join(differing)}): not the same model, "
                         "and their numbers differ")
            continue
        trained = {_entry(all_results, e).get("trained_as") for e in group}
        once = len(trained) == 1 and None not in trained
        lines.append(f"- {names}: one model"
                     + (f", trained once (as `{trained.pop()}`) and reported in each study"
                        if once else ", trained separately in each study under the same "
                                     "settings (same numbers)"))
    return lines


def schedules_differ(results: dict) -> bool:
    """True when the study's configurations differ in their learning-rate schedule (or
    optax optimizer): its figures then include the schedules as applied (schedules.png)."""
    # An optax optimizer's record has no schedule field: its text names its rate.
    kinds = {repr(cfg.get("optimizer_config", {}).get("schedule", cfg.get("optimizer")))
             for cfg in results["configs"].values()}
    return len(kinds) > 1


def figure_lines(results: dict, figure_prefix: str,
                 figures: list[str] | None = None) -> list[str]:
    """Markdown image lines for a study's figures: ``figures`` (file names in the study's
    folder, as written), or the ones every study has plus the schedules where they
    differ."""
    if figures is None:
        figures = ["curves.png", "test_accuracy.png"]
        figures += ["schedules.png"] if schedules_differ(results) else []
    alt = {"curves.png": "curves", "test_accuracy.png": "test accuracy",
           "schedules.png": "learning rate and beta1 as applied"}
    return [line for f in figures
            for line in (f"![{alt.get(f, Path(f).stem)}]({figure_prefix}/{f})", "")]


def per_epoch_schedule_lines(results: dict) -> list[str]:
    """Under schedules stepped once per epoch (the notebook's protocol), what each one
    did within the run: a step decay that never fires, a cycle that barely moves."""
    epochs = results["metadata"]["settings"]["epochs"]
    notes = []
    for name, cfg in results["configs"].items():
        schedule = cfg.get("optimizer_config", {}).get("schedule") or {}
        if not schedule.get("per_epoch") or schedule.get("kind") == "constant":
            continue
        if schedule["kind"] == "step":
            fires = int(epochs // schedule["period"])
            notes.append(f"`{name}` decays every {schedule['period']:g} epochs: "
                         + (f"{plural(fires, 'time')} in {plural(epochs, 'epoch')}" if fires
                            else f"never within {plural(epochs, 'epoch')}"))
        elif schedule["kind"] == "cyclic":
            notes.append(f"`{name}` climbs a half-cycle of {schedule['step_size_up']:g} "
                         f"scheduler steps, {epochs / schedule['step_size_up']:.2%} of it in "
                         f"{plural(epochs, 'epoch')}")
    if not notes:
        return []
    return ["- The schedulers step once per epoch here (the notebook's protocol): "
            + "; ".join(notes) + " (see the schedule figure)."]


def study_table(results: dict) -> list[str]:
    """The study's Markdown table: one row per configuration."""
    lines = ["| config | description | n | mean ± std | 95% CI (t) | 95% CI (bootstrap) "
             "| diff vs ref | diff 95% CI | p (t) | p (Wilcoxon) | p (Holm) | d_z | P(impr.) "
             "| verdict |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in table_rows(results):
        lines.append(
            f"| {r['config']}{' (ref)' if r['is_reference'] else ''} | {r['description']} | "
            f"{r['n']} | {r['mean']} | {r['ci_t']} | {r['ci_bootstrap']} | {r['diff'] or 'n/a'} "
            f"| {r['diff_ci'] or 'n/a'} | {r['p_t']} | {r['p_wilcoxon']} | "
            f"{r['p_holm'] or 'n/a'} | {r['d_z']} | {r['p_improvement']} | {r['verdict']} |")
    return lines


def study_notes(results: dict) -> list[str]:
    """The findings' closing notes: pairing, diverged seeds, what few seeds cannot do."""
    statistics = results["statistics"]
    alpha = statistics["alpha"]
    lines = []
    pairing = sorted({c["pairing"] for c in statistics["comparisons"]})
    if pairing:
        lines.append(f"- Pairing: seed i is {'; '.join(pairing)} across these configurations "
                     "(checked from the stored initial-weight checksums).")
    diverged = {k: v["diverged_seeds"] for k, v in statistics["summary"].items()
                if v["diverged_seeds"]}
    if diverged:
        chance = diverged_score(results)
        how = ("left out of every statistic (a metric of one's own has no chance value)"
               if chance is None else f"each counted at chance ({chance:.4g}) in every "
               "statistic and verdict, never dropped")
        count = sum(len(v) for v in diverged.values())
        lines.append(f"- {count} diverged seed{'s' if count > 1 else ''}, {how}: {diverged}.")
    n_max = max((c["n_pairs"] for c in statistics["comparisons"]), default=0)
    if n_max and _min_wilcoxon_p(n_max) >= alpha:
        lines.append(f"- With {n_max} pairs the Wilcoxon signed-rank test cannot reach "
                     f"p < {alpha:.0%} (its smallest two-sided p is "
                     f"{_min_wilcoxon_p(n_max):.4f}); the paired t-test carries the verdicts.")
    if any(entry["n"] < MIN_BOOTSTRAP_N for entry in statistics["summary"].values()):
        lines.append(f"- Bootstrap intervals are omitted below {MIN_BOOTSTRAP_N} seeds: "
                     "resampling so few values gives intervals far narrower than the truth; "
                     "the t interval is the one to read.")
    if any(0 < entry["n"] < MIN_T_INTERVAL for entry in statistics["summary"].values()):
        lines.append(f"- Below {MIN_T_INTERVAL} seeds the interval column shows the seeds' "
                     "range: a 95% t-interval from 2 seeds spans 12.7 standard errors either "
                     "side and runs outside 0-100%. Intervals are clipped to 0-100%.")
    return lines + per_epoch_schedule_lines(results)


def study_section(name: str, results: dict, figure_prefix: str,
                  figures: list[str] | None = None) -> list[str]:
    """A study's section: command, table, figures, one sentence per comparison, notes.

    figures: the figure files written in the study's folder (default: what every
    study draws, and the schedules where its configurations' schedules differ).
    """
    meta, statistics = results["metadata"], results["statistics"]
    lines = [f"## {name.capitalize()}", "", f"Command: `{meta.get('command', '?')}`  ",
             f"Reference: `{meta['reference']}`.", "", *study_table(results), "",
             *figure_lines(results, figure_prefix, figures), "Findings:", ""]
    if statistics.get("no_reference"):
        lines.append(f"- {statistics['no_reference'][0].upper()}"
                     f"{statistics['no_reference'][1:]}.")
    for c in statistics["comparisons"]:
        lines.append(f"- {comparison_sentence(c, statistics['alpha'])}")
    return lines + study_notes(results) + [""]


def epoch_comparison(configs: Mapping[str, dict], better: str, worse: str, epoch: int
                     ) -> np.ndarray | None:
    """``better`` minus ``worse`` in validation accuracy after ``epoch``, paired by seed:
    (n,) differences in seed order, or None when either configuration is missing."""
    if better not in configs or worse not in configs:
        return None

    def at_epoch(name: str) -> dict[int, float]:
        out = {}
        for s in configs[name]["seeds"]:
            curve = s.get("history", {}).get("val_accuracy") or []
            if len(curve) >= epoch and curve[epoch - 1] is not None:
                out[s["seed"]] = curve[epoch - 1]
        return out

    a, b = at_epoch(better), at_epoch(worse)
    return np.array([a[s] - b[s] for s in sorted(set(a) & set(b))], dtype=float)


def _claim_row(claim, results: dict, alpha: float, n_early: int) -> tuple[str, str, bool]:
    """One claims-table row: (the row, how it came out, whether it holds).

    A claim about early training gets its verdict from the same rule as every other
    (``decisions.look``): one look at level alpha / (early-training claims), a family of
    their own, at the run's margin."""
    margin = (results.get("decisions") or {}).get("design", {}).get("margin", Design.margin)
    if claim.epoch is None:
        c, sign = find_comparison(results["statistics"], claim.better, claim.worse)
        if c is None:
            return "", "", False
        which = decided(c, sign) or verdict(c, sign)
        margin = c.get("decision", {}).get("margin", margin)
        p_adj, when = c["p_holm"], "end of training"
        n, diff, ci, p = (c.get("decision", {}).get("n", c["n_pairs"]), c["mean_difference"],
                          c["ci95"], c["p_ttest"])
        diff = None if diff is None else sign * diff
    else:
        d = epoch_comparison(results["configs"], claim.better, claim.worse, claim.epoch)
        if d is None:
            return "", "", False
        seen = single_look(d, alpha / n_early, margin)
        which = "not testable" if seen.interval is None else seen.verdict
        c = compare(d, np.zeros_like(d), np.random.default_rng(0))
        p, sign, n, diff, ci = c["p_ttest"], 1, d.size, seen.mean, c["ci95"]
        p_adj = None if p is None else min(1.0, p * n_early)  # Bonferroni, a column only
        when = f"validation accuracy after epoch {claim.epoch} (\"early training\")"
    text = {"better": "holds", "worse": "reversed: significant the other way",
            "equivalent": f"not supported: equivalent within ±{margin:g} points",
            "undecided": f"undecided at {n} seeds",
            "not testable": "not testable (fewer than 2 paired seeds, or no spread)"}[which]
    gap = (fmt(claim.acc_better - claim.acc_worse, signed=True)
           if claim.acc_worse is not None else "n/a (run cut off)")
    row = (f"| \"{claim.quote}\" ({claim.cell}) | `{claim.better}` > `{claim.worse}`, {when} | "
           f"{gap} | {fmt(diff, signed=True)} | {fmt_interval(ci, sign)} | "
           f"{fmt_p(p)} | {fmt_p(p_adj)} | {text} |")
    return row, which, which == "better"


def seed_claims_section(all_results: dict[str, dict]) -> list[str]:
    """The notebook's single-run conclusions, quoted, each tested as it was made: at the
    end of training from its study's statistics, or after epoch 1 where the notebook
    spoke of early training."""
    parity = any(r["metadata"]["settings"].get("torch_parity") for r in all_results.values())
    claims = [(name, claim) for name in STUDY_ORDER if name in all_results
              for claim in STUDIES[name].claims]
    if not claims:  # only studies of one's own: the notebook made no claim about them
        return []
    n_early = sum(claim.epoch is not None for _, claim in claims)
    lines = ["## The seed's single-run conclusions, revisited", "",
             "The notebook ranked techniques from one run each. Each claim below is quoted "
             "from the notebook with its place, and tested as a paired comparison (first "
             "minus second, by seed). A claim about the end of training carries the verdict "
             "of that comparison in its study (p adj.: Holm within the study, beside the "
             "decisions' verdict); a claim about early training is decided by the same rule on "
             "the validation accuracy after epoch 1 (one look, the "
             f"{plural(n_early, 'early-training claim')} a family of their own, p adj. "
             "Bonferroni). "
             + ("These runs follow the notebook's protocol (`--torch-parity`)."
                if parity else
                "These runs use jaxcnn's corrected defaults, not the notebook's protocol "
                "(schedules scaled to the run: `step` decays 10x at the midpoint, `cyclic` "
                "completes whole cycles, `exponential` decays 10x per epoch; Flax "
                "initializers; see the parity table in docs/studies.md): a claim can fail "
                "here because the setting differs, not only because one run is noisy. "
                "`--torch-parity` "
                "tests the claims as the notebook ran them."), "",
             "| the notebook's words (where) | tested as | its gap (one run) | our mean diff | "
             "95% CI | p (t) | p (adj.) | verdict |", "|---|---|---|---|---|---|---|---|"]
    holds = total = 0
    for name, claim in claims:
        row, _, ok = _claim_row(claim, all_results[name],
                                all_results[name]["statistics"]["alpha"], n_early)
        if row:
            lines.append(row)
            total += 1
            holds += ok
    if not total:  # the studies in --out hold no pair a claim names
        return lines[:3] + ["None of the notebook's claims can be tested: the configurations "
                            "they compare are not in these results.", ""]
    lines += ["", f"Of {total} claims, {holds} hold with our seeds.", ""]
    return lines


# --- the opening answer ------------------------------------------------------------------

VERDICTS = ("better", "worse", "equivalent", "undecided")


def comparison_verdicts(all_results: dict[str, dict]) -> list[dict]:
    """One entry per comparison with its study's reference, for :func:`answer_paragraph`:
    ``{"study", "config", "reference", "verdict" (one of VERDICTS), "difference",
    "interval", "n", "equivalence_interval", "seeds_needed", "continuation"}``: the decisions' look
    where the run made decisions, else undecided."""
    out = []
    for study, results in all_results.items():
        for c in results["statistics"]["comparisons"]:
            if c["reference"] != results["metadata"]["reference"]:
                continue  # the notebook's claims between two non-reference configurations
            d = c.get("decision") or {  # no decision (one seed): undecided, its numbers
                "verdict": "undecided", "mean": c.get("mean_difference"),
                "interval": c.get("ci95"), "n": c.get("n_pairs"), "seeds_needed": None,
                "unit": metric_of(results)["unit"]}
            out.append({"study": study, "config": c["config"], "reference": c["reference"],
                        "verdict": d["verdict"], "difference": d["mean"],
                        "interval": d["interval"], "n": d["n"],
                        "equivalence_interval": d.get("equivalence_interval"),
                        "seeds_needed": d["seeds_needed"], "continuation": d.get("continuation"),
                        "test_limit": d.get("test_limit"),
                        "unit": d.get("unit", "points")})
    return out


def run_cost(all_results: dict[str, dict]) -> dict:
    """What the studies cost: ``{"seeds": sorted seeds per configuration, "epochs",
    "models": distinct models, "members": model x seed trained, "wall_seconds", and
    "members_timed": how many of the members those seconds trained (None if unrecorded),
    "compile_seconds": of those seconds, compiling, "compile_cache": the last run's record
    of the persistent compilation cache}``.

    A model shared by studies counts once; studies run together record one invocation's
    time, so equal recorded times count once.
    """
    models: dict[str, int] = {}
    seeds, times, compiles, cache = set(), {}, {}, None
    for study, results in all_results.items():
        meta = results["metadata"]
        time = round(float(meta.get("total_wall_seconds_this_invocation") or 0.0), 1)
        times[time] = meta.get("members_trained_this_invocation")
        compiles[time] = sum((meta.get("compile_seconds") or {}).values())
        cache = meta.get("compile_cache", cache)
        for name, cfg in results["configs"].items():
            models[cfg.get("trained_as") or f"{study}/{name}"] = len(cfg["seeds"])
            seeds.add(len(cfg["seeds"]))
    epochs = sorted({r["metadata"]["settings"]["epochs"] for r in all_results.values()})
    return {"seeds": sorted(seeds), "epochs": epochs, "models": len(models),
            "members": sum(models.values()), "wall_seconds": sum(times),
            "members_timed": (None if None in times.values() else sum(times.values())),
            "compile_seconds": sum(compiles.values()), "compile_cache": cache}


def _verdict_item(v: dict) -> str:
    """'`study/config` (-2.22 points at 15 seeds, adjusted CI [...])': the numbers of the
    look that decided it, as the study's findings give them."""
    at = f" at {v['n']} seeds" if v.get("n") else ""
    if v["verdict"] == "equivalent" and v.get("equivalence_interval"):
        interval = f"equivalence interval {fmt_interval(v['equivalence_interval'])}"
    else:
        interval = f"CI {fmt_interval(v['interval'])}"
    text = (f"`{v['study']}/{v['config']}` ({fmt(v['difference'], signed=True)} "
            f"{v.get('unit', 'points')}{at}, "
            f"{interval}")
    if v["verdict"] == "undecided":
        text += more_seeds(v)
    return text + ")"


def answer_paragraph(verdicts: list[dict], cost: dict, margin: float | None = None) -> str:
    """The report's opening answer, built only from ``verdicts`` (see
    :func:`comparison_verdicts`) and ``cost`` (see :func:`run_cost`): what helps, what
    hurts, what is equivalent (within ±margin), what stays undecided, and at what cost."""
    groups = {word: [v for v in verdicts if v["verdict"] == word] for word in VERDICTS}
    heads = {"better": "**Helps** (better than its reference)",
             "worse": "**Hurts** (worse than its reference)",
             "equivalent": "**Equivalent** to its reference"
                           + (f" within ±{margin:g} points" if margin and all(
                               v.get("unit", "points") == "points" for v in verdicts)
                              else " within its study's margin" if margin else ""),
             "undecided": "**Undecided** at this budget"}
    parts = [f"{heads[w]}: " + ("; ".join(_verdict_item(v) for v in groups[w]) or "none")
             for w in VERDICTS if groups[w] or w != "equivalent" or margin]
    def counted(values: list[int], noun: str) -> str:  # [5] -> '5 seeds', [1, 3] -> '1/3 ...'
        return ("/".join(str(n) for n in values) + f" {noun}s" if len(values) > 1
                else plural(values[0] if values else 0, noun))

    return (f"**Answer.** Of {plural(len(verdicts), 'comparison')} with a study's reference "
            "(paired by seed; verdicts as in the tables below): " + ". ".join(parts)
            + f". Cost: {counted(cost['seeds'], 'seed')} per configuration x "
            f"{counted(cost['epochs'], 'epoch')}, "
            f"{plural(cost['models'], 'distinct model')}, {plural(cost['members'], 'member')} "
            f"(model x seed), {cost['wall_seconds']:,.0f} s of recorded wall time"
            + _earlier(cost) + _compiling(cost) + ".")


def _compiling(cost: dict) -> str:
    """How much of the recorded time went to compiling, and what the cache gave."""
    if not cost.get("compile_seconds"):
        return ""
    return (f", {cost['compile_seconds']:,.0f} s of it compiling ("
            f"{phrase(cost.get('compile_cache'))})")


def _earlier(cost: dict) -> str:
    """Where the recorded time covers only the last run into --out, say so."""
    timed = cost.get("members_timed")
    if timed is None or timed >= cost["members"]:
        return ""
    return (f" (the last run's, which trained {timed} of them; the other "
            f"{cost['members'] - timed} were trained by an earlier run into the same --out)")


def _drawn_interval(c: dict) -> list[float] | None:
    """The interval the estimation figure draws: the one the verdict rests on (the
    equivalence interval where equivalence was shown, else the adjusted one)."""
    d = c.get("decision")
    if d is None:
        return c.get("ci95")
    if d["verdict"] == "equivalent" and d.get("equivalence_interval"):
        return d["equivalence_interval"]
    return d["interval"]


def estimation_comparisons(results: dict, verdicts: list[dict] | None = None) -> list[dict]:
    """The rows of :func:`jaxcnn.reporting.plots.draw_estimation` for one study: per comparison
    with the reference, ``{"name", "differences" (per paired seed, config minus
    reference), "interval", "verdict", "seed_se", "image_se"}``. ``verdicts`` (as
    :func:`comparison_verdicts` gives them) override today's four-way reading of the Holm
    verdicts."""
    reference = results["metadata"]["reference"]
    statistics = results["statistics"]
    if reference not in results["configs"]:
        return []  # "no reference in this run": the figure says so
    given = {(v["config"], v["reference"]): v["verdict"] for v in verdicts or []}
    key, chance = metric_of(results)["key"], diverged_score(results)
    base = kept_scores(results["configs"][reference]["seeds"], key, chance)
    rows = []
    for c in statistics["comparisons"]:
        if c["reference"] != reference:
            continue
        scores = kept_scores(results["configs"][c["config"]]["seeds"], key, chance)
        d = c.get("decision") or {}
        rows.append({"name": f"{c['config']} - {reference}",
                     "differences": [scores[k] - base[k] for k in sorted(scores) if k in base],
                     "interval": _drawn_interval(c),
                     "seed_se": d.get("seed_se"), "image_se": d.get("image_se"),
                     "verdict": given.get((c["config"], reference),
                                          decided(c) or "undecided")})
    return rows


# --- the whole report ----------------------------------------------------------------------

def optimizer_phrase(all_results: dict[str, dict], settings: dict) -> str:
    """"Adam lr X" when every configuration trains with the built-in Adam chain, else what
    the configurations' own Optax optimizers are called in the tables."""
    records = [c.get("optimizer_config") for r in all_results.values()
               for c in r["configs"].values()]
    own = sum(not (isinstance(r, dict) and "lr" in r) for r in records)
    if not own:
        return f"Adam lr {settings['lr']}"
    if own == len(records):
        return "each configuration's own Optax optimizer (its description)"
    return (f"Adam lr {settings['lr']} or the configuration's own Optax optimizer (its "
            "description)")


def report_header(all_results: dict[str, dict]) -> list[str]:
    """Data, protocol, machine and method lines, from the first study's metadata."""
    meta = next(iter(all_results.values()))["metadata"]
    data, settings, device = meta["data"], meta["settings"], meta["device"]
    runtime = meta.get("runtime", {})
    decided_run = any(r.get("decisions") for r in all_results.values())
    return [
        f"- Data: `{data['source']}` ({data['fingerprint']}), {data['train_examples']} training "
        "images, " + (f"the test set ({data['test_examples']}) as per-epoch validation set"
                      if data["val_is_test"] else
                      f"{data['val_examples']} held-out validation images")
        + f", {data['test_examples']} test images.",
        f"- Protocol: {settings['seeds']} seeds per configuration"
        + (" (rounds until decided; see Verdicts), " if settings["seeds"] == "auto" else ", ")
        + f"{plural(settings['epochs'], 'epoch')}, batch {settings['batch_size']}, "
        + optimizer_phrase(all_results, settings)
        + f", normalization {settings['normalization']}, torch parity mode "
        f"{settings['torch_parity']}"
        + (f", training subset of {settings['train_examples']} images"
           if settings["train_examples"] else "") + ".",
        f"- Machine: {device['kind']} ({device['platform']}, {device['host_cpus']} host "
        f"CPUs); jax {meta['versions'].get('jax')}, flax {meta['versions'].get('flax')}, "
        f"optax {meta['versions'].get('optax')}"
        + (f"; members batched by {runtime['batching']}, conv {runtime['conv']}"
           if runtime else "") + ".",
        "- Method: configurations are compared paired by seed (seed i shares data order "
        "and, where the initializer is the same, initial weights); 95% intervals are "
        "t-based (accuracy intervals clipped to 0-100%; the seeds' range below "
        f"{MIN_T_INTERVAL} seeds) and percentile-bootstrap (10,000 resamples, fixed Generator; "
        f"omitted below {MIN_BOOTSTRAP_N} seeds); "
        + ("the verdict column is the decisions' (see Verdicts below); Holm-adjusted "
           "p-values over each study's comparisons are shown beside it for reference"
           if decided_run else
           "no run here made decisions (one seed per configuration decides nothing: every "
           "verdict reads not testable or undecided); Holm-adjusted p-values over each "
           "study's comparisons are shown for reference")
        + "; d_z is the mean paired difference over its std; P(impr.) is P(config > "
        "reference) over all run pairs.", ""]


def decisions_lines(all_results: dict[str, dict]) -> list[str]:
    """The design and the multiplicity family the verdicts rest on (from the decisions
    block every study carries), one line per family where the studies' verdicts rest on
    several (studies run separately), each naming its studies; nothing for results
    without one."""
    families: list[tuple[dict, list[str]]] = []
    for name, results in all_results.items():
        block = results.get("decisions")
        if not block:
            continue
        for known, names in families:
            if known == block:
                names.append(name)
                break
        else:
            families.append((block, [name]))
    lines = []
    for block, names in families:
        settings = all_results[names[0]].get("metadata", {}).get("settings", {})
        line = _decisions_line(block, settings.get("split_seed", 0))
        if len(families) > 1:
            line = line.replace("- Verdicts:", f"- Verdicts of {', '.join(names)}:", 1)
        lines += [line, ""]
    for name, results in all_results.items():  # a study comparing another metric
        metric = metric_of(results)
        if metric["key"] != "test_accuracy" and results.get("decisions"):
            unit = metric["unit"] or "its units"
            margin = metric.get("margin") or results["decisions"]["design"]["margin"]
            lines += [f"- {name} compares {metric['name'].replace('_', ' ')} "
                      f"({'higher' if metric['higher_is_better'] else 'lower'} is better): "
                      f"equivalent means within ±{margin:g} {unit}.", ""]
    return lines


def _decisions_line(block: dict, split_seed: int | None = 0) -> str:
    """One family's design and error control, as a sentence; ``split_seed``: the run's
    (None: each seed drew its own split)."""
    design, family = block["design"], block["family"]
    sizes = ", ".join(f"{k}: {v}" for k, v in family["size"].items())
    horizon = design.get("horizon") or design["max_seeds"]
    spent = (f"error spent over looks up to {horizon} seeds"
             if design.get("method_name", "t_union") == "t_union" else
             f"{design.get('reserve', 0):.0%} of the error kept for a rerun with a larger "
             "--max-seeds")
    plan = (f"one look at {design['max_seeds']} seeds per configuration (--seeds "
            f"{design['max_seeds']})" if design["kind"] == "fixed" else
            f"seeds in rounds (--seeds auto: first {design['first_round']}, then "
            f"+{design['round_size']} only where a comparison is open, at most "
            f"{design['max_seeds']}; {spent})")
    return (f"- Verdicts: every comparison ends **better**, **worse**, **equivalent** within "
            f"±{design['margin']:g} points, or **undecided** at the budget; {plan}; "
            f"family-wise error {design['alpha']:.0%} over one family "
            + {"all": "of every comparison of these studies", "study": "per study",
               "run": "per run (the studies ran separately)"}[family["mode"]]
            + f" (sizes {sizes}); method: {design['method']}. " + _covers(design, split_seed))


def _covers(design: dict, split_seed: int | None) -> str:
    """Which sources of randomness the verdicts cover, as a sentence."""
    images = ("the test images, read as a sample of the images they stand for (the "
              "intervals include their part of the error; `--test-set fixed` reads them as "
              "fixed)" if design.get("test_set") == "sample" and
              design.get("method_name") == "calibrated" else
              "not the test images: they are held fixed, so the verdicts are about these "
              "test images")
    split = ("its own train/validation split, " if split_seed is None else "")
    fixed = ("" if split_seed is None else
             f"; the train/validation split is the same for every seed (--split-seed "
             f"{split_seed})")
    return (f"A verdict covers what each seed draws ({split}initialization, batch order, "
            f"dropout, augmentation) and {images}{fixed}.")


def build_report(all_results: dict[str, dict], figures: Mapping[str, list[str]] | None = None,
                 verdicts: list[dict] | None = None, margin: float | None = None,
                 missing: Mapping[str, str] | None = None) -> str:
    """The whole report as Markdown; figures are referenced relative to the report.

    figures: per study, the figure files written in its folder (default: see
    :func:`figure_lines`); verdicts: per comparison, as :func:`comparison_verdicts`
    returns them (the default) for the opening answer; margin: the equivalence margin;
    missing: study -> the command that adds what --out lacks of it (named up front).
    """
    first_settings = next(iter(all_results.values()))["metadata"]["settings"]
    differing = sorted({key for r in all_results.values() for key, value in
                        r["metadata"]["settings"].items() if value != first_settings.get(key)})
    verdicts = comparison_verdicts(all_results) if verdicts is None else verdicts
    answer = answer_paragraph(verdicts, run_cost(all_results), margin)
    builtin = set(all_results) <= set(STUDY_ORDER)
    title = ("regularization, initialization and learning-rate schedules" if builtin
             else ", ".join(all_results))
    lines = [f"# jaxcnn report: {title}", "",
             answer, "",
             "Generated by `jaxcnn report` from the studies' results.json files; "
             "every number below is computed from them.", "", *report_header(all_results),
             *decisions_lines(all_results)]
    if missing:
        lines += ["**Incomplete:** " + "; ".join(
            f"{name} is missing or lacks configurations (add them with `{command}`)"
            for name, command in missing.items()) + ".", ""]
    same = same_model_lines(all_results)
    if same:
        lines += ["Configurations that are the same model (same network, initializer, "
                  "optimizer and hyperparameters) have the same numbers by construction when "
                  "their studies ran under the same settings:", "", *same, ""]
    if differing:
        lines += [f"**Warning:** the studies were run with different settings "
                  f"({', '.join(differing)}); the protocol line above is the first study's.", ""]
    for name, results in all_results.items():  # the built-in studies first (the caller's order)
        lines += study_section(name, results, name, (figures or {}).get(name))
    lines += seed_claims_section(all_results)
    return "\n".join(lines) + "\n"

"""The report and the studies run together, end to end on tiny synthetic data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from experiments import report
from jaxcnn.report import comparison_sentence, console_table, verdict
from tests.conftest import TINY_BATCH, TINY_TRAIN

FLAGS = ["--data", "synthetic", "--seeds", "2", "--epochs", "2", "--train-examples",
         str(TINY_TRAIN), "--val-size", "50", "--batch-size", str(TINY_BATCH), "--no-progress"]
STUDIES = ("regularization", "initialization", "schedules")


@pytest.fixture(scope="module")
def report_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    assert report.main(["--run-missing", *FLAGS, "--out", str(out)]) == 0
    return out, {s: json.loads((out / s / "results.json").read_text()) for s in STUDIES}


def test_missing_studies_name_the_exact_command(tmp_path, capsys):
    out = tmp_path / "results"
    assert report.main([*FLAGS, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert ("python -m experiments.regularization --data synthetic --seeds 2 "
            f"--batch-size {TINY_BATCH} --val-size 50 --train-examples {TINY_TRAIN}") in err
    assert not (out / "REPORT.md").exists()


def test_suggested_command_carries_the_flags_of_the_studies_already_there(report_run, tmp_path,
                                                                         capsys):
    """Only schedules missing: its command repeats the other studies' flags, not the
    (default) ones given to the report."""
    out, _ = report_run
    partial = tmp_path / "partial"
    for study in ("regularization", "initialization"):
        (partial / study).mkdir(parents=True)
        (partial / study / "results.json").write_text((out / study / "results.json").read_text())
    assert report.main(["--out", str(partial)]) == 2
    err = capsys.readouterr().err
    assert "schedules missing" in err
    assert (f"python -m experiments.schedules --data synthetic --seeds 2 --batch-size "
            f"{TINY_BATCH} --val-size 50 --train-examples {TINY_TRAIN} --out {partial}") in err


def test_shared_models_are_trained_once_and_named(report_run):
    out, results = report_run
    trained = results["regularization"]["metadata"]["members_trained_this_invocation"]
    # 11 configurations in three studies, 9 distinct models (baseline = lecun = constant)
    assert trained == 9 * 2
    seeds = [results[s]["configs"][c]["seeds"] for s, c in
             (("regularization", "baseline"), ("initialization", "lecun"),
              ("schedules", "constant"))]
    assert seeds[0] == seeds[1] == seeds[2]
    text = (out / "REPORT.md").read_text()
    assert ("`regularization/baseline` = `initialization/lecun` = `schedules/constant`: one "
            "model, trained once (as `regularization/baseline`)") in text


def test_schedules_act_within_the_run(report_run):
    configs = report_run[1]["schedules"]["configs"]
    total = 2 * -(-TINY_TRAIN // TINY_BATCH)
    for name in ("constant", "step", "exponential", "cyclic"):
        record = configs[name]["schedule"]
        assert record["step"] == list(range(1, total + 1))  # a short run: every step
    constant = np.array(configs["constant"]["schedule"]["learning_rate"])
    assert (constant == constant[0]).all()
    step = np.array(configs["step"]["schedule"]["learning_rate"])
    assert step[-1] == pytest.approx(step[0] / 10, rel=1e-6) and len(set(step)) == 2
    exponential = np.array(configs["exponential"]["schedule"]["learning_rate"])
    assert (np.diff(exponential) < 0).all() and exponential[-1] < exponential[0] / 5
    cyclic = np.array(configs["cyclic"]["schedule"]["learning_rate"])
    turns = np.diff(np.sign(np.diff(cyclic)))
    assert (turns < 0).sum() >= 2 and (turns > 0).sum() >= 1  # up and down at least twice
    beta1 = np.array(configs["cyclic"]["schedule"]["beta1"])
    assert beta1.min() < 0.85 and np.corrcoef(beta1, cyclic)[0, 1] < -0.99  # against the rate


def test_report_has_one_verdict_per_comparison(report_run):
    out, results = report_run
    text = (out / "REPORT.md").read_text()
    for heading in ("## Regularization", "## Initialization", "## Schedules",
                    "## The seed's single-run conclusions, revisited"):
        assert heading in text
    for study in STUDIES:
        statistics = results[study]["statistics"]
        assert f"({study}/curves.png)" in text and (out / study / "curves.png").exists()
        assert (out / study / "test_accuracy.png").exists()
        for c in statistics["comparisons"]:
            which = verdict(c, statistics["alpha"])
            line = next(ln for ln in text.splitlines()
                        if ln.startswith(f"- **{c['config']}** vs {c['reference']}"))
            assert line == f"- {comparison_sentence(c, statistics['alpha'])}"
            if c["reference"] == results[study]["metadata"]["reference"]:
                row = next(ln for ln in text.splitlines() if ln.startswith(f"| {c['config']} |"))
                assert row.endswith(f"| {which} |")
                assert which in console_table(results[study])
    assert (out / "schedules" / "schedules.png").exists()
    assert "hold at 5% after Holm" in text and "omitted below 5 seeds" in text


def test_claims_table_reads_the_studies_own_comparisons(report_run):
    """A claim and the study's comparison of the same pair are one test with one p."""
    out, results = report_run
    text = (out / "REPORT.md").read_text()
    comparison = next(c for c in results["regularization"]["statistics"]["comparisons"]
                      if c["config"] == "dropout" and c["reference"] == "baseline")
    row = next(ln for ln in text.splitlines() if "outperforms dropout" in ln)
    cells = [cell.strip() for cell in row.split("|")]
    assert cells[4] == f"{-comparison['mean_difference']:+.2f}"  # claim: baseline - dropout
    p_holm = comparison["p_holm"]
    assert cells[7] == ("<0.001" if p_holm < 0.001 else f"{p_holm:.3f}")


def test_second_call_only_rewrites_the_report(report_run):
    out, _ = report_run
    before = json.loads((out / "regularization" / "results.json").read_text())["configs"]
    assert report.main([*FLAGS, "--out", str(out)]) == 0
    after = json.loads((out / "regularization" / "results.json").read_text())["configs"]
    assert before == after


def _comparison(p_ttest: float, p_holm: float) -> dict:
    return {"config": "l2", "reference": "baseline", "mean_difference": -2.0,
            "ci95": [-3.5, -0.5], "p_ttest": p_ttest, "p_holm": p_holm, "p_wilcoxon": 0.0625,
            "effect_size": -1.4, "prob_improvement": 0.2, "n_pairs": 5,
            "min_detectable_difference": 1.9, "sd_difference": 1.1, "note": None}


def test_comparison_sentences_separate_holm_from_unadjusted_significance():
    assert "**Significant**" in comparison_sentence(_comparison(0.01, 0.02), 0.05)
    suggestive = comparison_sentence(_comparison(0.02, 0.10), 0.05)
    assert "Suggestive only" in suggestive and "p = 0.020" in suggestive
    null = comparison_sentence(_comparison(0.30, 0.60), 0.05)
    assert "Not distinguishable at 5 seeds" in null and "1.90 points" in null
    assert verdict(_comparison(0.01, 0.02), 0.05) == "worse"
    assert verdict(_comparison(0.01, 0.02), 0.05, sign=-1) == "better"

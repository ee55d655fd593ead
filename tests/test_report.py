"""The report, end to end from synthetic data: studies run, statistics, Markdown."""

from __future__ import annotations

import json

from experiments import report

# 5 seeds and 1 epoch as the acceptance asks; a 1,000-image training subset keeps CI short.
FLAGS = ["--data", "synthetic", "--seeds", "5", "--epochs", "1", "--train-examples", "1000",
         "--val-size", "500", "--no-progress"]


def test_report_end_to_end(tmp_path, capsys):
    out = tmp_path / "results"
    # Without --run-missing the report names the exact command and writes nothing.
    assert report.main([*FLAGS, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "python -m experiments.regularization --data synthetic --seeds 5" in err
    assert not (out / "REPORT.md").exists()

    assert report.main(["--run-missing", *FLAGS, "--out", str(out)]) == 0
    text = (out / "REPORT.md").read_text()
    for heading in ("## Regularization", "## Initialization", "## Schedules",
                    "## The seed's single-run conclusions, revisited"):
        assert heading in text
    for study in ("regularization", "initialization", "schedules"):
        results = json.loads((out / study / "results.json").read_text())
        comparisons = results["statistics"]["comparisons"]
        assert comparisons and all(c["p_holm"] is not None for c in comparisons)
        assert f"({study}/curves.png)" in text and (out / study / "curves.png").exists()
        assert (out / study / "test_accuracy.png").exists()
        # each generated verdict appears in the text, computed from the statistics
        for c in comparisons:
            verdict = ("**Significant**" if c["p_holm"] < 0.05
                       else "Not significant after Holm" if c["p_ttest"] < 0.05
                       else "Not distinguishable")
            line = next(ln for ln in text.splitlines()
                        if ln.startswith(f"- **{c['config']}** vs {c['reference']}"))
            assert verdict in line
    assert (out / "schedules" / "schedules.png").exists()
    assert "claims, " in text and "hold at 5% after Holm" in text

    # A second call finds everything and only rewrites the report.
    assert report.main([*FLAGS, "--out", str(out)]) == 0


def _comparison(p_ttest: float, p_holm: float) -> dict:
    return {"config": "l2", "reference": "baseline", "mean_difference": -2.0,
            "ci95": [-3.5, -0.5], "p_ttest": p_ttest, "p_holm": p_holm, "p_wilcoxon": 0.0625,
            "effect_size": -1.4, "prob_improvement": 0.2, "n_pairs": 5,
            "min_detectable_difference": 1.9, "sd_difference": 1.1, "note": None}


def test_comparison_sentences_separate_holm_from_unadjusted_significance():
    from jaxcnn.report import comparison_sentence

    assert "**Significant**" in comparison_sentence(_comparison(0.01, 0.02), 0.05)
    suggestive = comparison_sentence(_comparison(0.02, 0.10), 0.05)
    assert "Not significant after Holm" in suggestive and "p = 0.020" in suggestive
    null = comparison_sentence(_comparison(0.30, 0.60), 0.05)
    assert "Not distinguishable at 5 seeds" in null and "1.90 points" in null

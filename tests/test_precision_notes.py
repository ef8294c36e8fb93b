"""Numbers that could read as certainty carry their caveat in the cell, legend or row itself.

Seven acne-vs-rosacea images, perfectly ranked but all scored below 0.5: the AUC is 100% with a
DeLong Wald interval (``--auc-ci wald``; the logit default gives a score interval there) of zero
width, and the sensitivity at 0.5 is 0/3. The expected texts are
written out by hand: the exact upper bound of 0/3 is 1 − 0.025^(1/3) = 70.76%.
"""

import json

import pandas as pd
from click.testing import CliRunner

from skin_cnn.cli import cli
from skin_cnn.reporting.plots import roc_labels

SEVEN = [(1, 0.40), (1, 0.35), (1, 0.30), (0, 0.20), (0, 0.10), (0, 0.05), (0, 0.01)]


def _predictions(path, pairs, task="acne_vs_rosacea"):
    rows = [{"image_path": f"img{i}.jpg", "patient_id": f"p{i}", "task": task, "y_true": y, "y_prob": p}
            for i, (y, p) in enumerate(pairs)]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _evaluate(tmp_path, pairs):
    pred = _predictions(tmp_path / "pred.csv", pairs)
    out = tmp_path / "eval"
    result = CliRunner().invoke(cli, ["evaluate", "--predictions", str(pred), "-o", str(out), "--n-bootstrap", "0",
                                      "--auc-ci", "wald", "--quiet"])
    assert result.exit_code == 0, result.output
    return out


def _row(report, heading, first_cell):
    section = report.split(heading)[1].split("\n## ")[0]
    return next(line for line in section.splitlines() if line.startswith(f"| {first_cell} |"))


def test_a_perfect_auc_on_seven_images_says_why_it_is_not_certainty(tmp_path):
    out = _evaluate(tmp_path, SEVEN)
    report = (out / "report.md").read_text()
    auc_row = _row(report, "## AUC and accuracy", "Acne vs rosacea")
    assert ("1.000 (1.000–1.000) **[zero-width interval (not certainty); only 3 positive images and "
            "4 negative images (minimum 10)]**") in auc_row
    sens = _row(report, "## Sensitivity, specificity", "Acne vs rosacea").split(" | ")[2]
    assert sens == ("0.00% (0.00–70.76%) **[no image predicted positive at this threshold; only 3 positive images "
                    "(minimum 10)]**")
    html = (out / "report.html").read_text()
    assert "<b>[zero-width interval (not certainty); only 3 positive images" in html

    table = pd.read_csv(out / "metrics.csv", keep_default_na=False).set_index("metric")
    assert "zero-width interval" in table.at["auc", "note"]
    assert "only 3 positive images and 4 negative images (minimum 10)" in table.at["auc", "note"]
    assert table.at["specificity", "note"] == "only 4 negative images (minimum 10)"

    entry = json.loads((out / "metrics.json").read_text())["tasks"]["acne_vs_rosacea"]
    curve, point = roc_labels(entry)
    assert curve.splitlines() == ["AUC 1.000 (95% CI 1.000–1.000)", "zero-width interval (not certainty)",
                                  "only 3 positive images and 4 negative images (minimum 10)"]
    assert point.splitlines() == ["threshold 0.5: sens 0.00, spec 1.00",
                                  "no image predicted positive at this threshold"]


def test_enough_images_and_a_real_interval_carry_no_caveat(tmp_path):
    # 12 positives and 12 negatives, overlapping scores: AUC below 1, both classes predicted
    pairs = [(1, 0.3 + 0.05 * i) for i in range(12)] + [(0, 0.1 + 0.05 * i) for i in range(12)]
    out = _evaluate(tmp_path, pairs)
    report = (out / "report.md").read_text()
    for heading in ("## Sensitivity, specificity", "## AUC and accuracy"):
        assert "**[" not in _row(report, heading, "Acne vs rosacea")
    notes = pd.read_csv(out / "metrics.csv", keep_default_na=False)["note"]
    assert (notes == "").all()
    entry = json.loads((out / "metrics.json").read_text())["tasks"]["acne_vs_rosacea"]
    assert len(roc_labels(entry)[0].splitlines()) == 1


def test_compare_tables_carry_the_caveats(tmp_path):
    a = _predictions(tmp_path / "a.csv", SEVEN)
    b = _predictions(tmp_path / "b.csv", [(y, 1 - p if i in (0, 3) else p) for i, (y, p) in enumerate(SEVEN)])
    out = tmp_path / "cmp"
    result = CliRunner().invoke(cli, ["compare", str(a), str(b), "-o", str(out), "--n-bootstrap", "0",
                                      "--auc-ci", "wald"])
    assert result.exit_code == 0, result.output
    md = (out / "compare.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| Acne vs rosacea |")]
    perfect = next(r for r in rows if "1.000 (1.000–1.000)" in r)  # the AUC, a proportion
    assert "**[zero-width interval (not certainty); only 3 positive images and 4 negative images" in perfect
    table = pd.read_csv(out / "compare.csv", keep_default_na=False)
    assert table["note"].str.contains("only 3 positive images and 4 negative images").all()
    assert table.loc[table["auc"] == 1.0, "note"].str.contains("zero-width interval").all()

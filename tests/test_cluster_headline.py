"""Headline intervals that respect clustered images: cluster bootstrap first when patients hold
several images, image-level intervals as a labelled second view; compare's primary test is the
paired cluster bootstrap there; the default AUC interval is on the logit scale."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy import stats

from skin_cnn.cli import cli
from skin_cnn.stats.bootstrap import paired_auc_difference
from skin_cnn.evaluation.compare import aligned, compare_predictions, holm
from skin_cnn.evaluation.metrics import task_metrics
from skin_cnn.reporting.cells import fmt_interval
from skin_cnn.core.specs import EvalSettings

METRICS = ("sensitivity", "specificity", "ppv", "npv", "accuracy", "auc")
SECONDARY = "## Image-level intervals (secondary: every image treated as independent)"


def _predictions(path, images_per_patient, n_patients=24, seed=0, shift=0.0):
    """Acne-vs-rosacea predictions: ``n_patients`` patients, each of one class, with
    ``images_per_patient`` photos scored around a per-patient level (so photos of one patient
    are correlated, as in practice)."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n_patients):
        y = k % 2
        level = rng.normal(0.9 * y, 0.7)
        for j in range(images_per_patient):
            score = 1 / (1 + math.exp(-(level + shift + rng.normal(0, 0.3) - 0.45)))
            rows.append({"image_path": f"img/{k}_{j}.jpg", "patient_id": f"pt{k}", "task": "acne_vs_rosacea",
                         "y_true": y, "y_prob": score})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _evaluate(tmp_path, images_per_patient):
    pred = _predictions(tmp_path / "pred.csv", images_per_patient)
    out = tmp_path / "eval"
    result = CliRunner().invoke(cli, ["evaluate", "--predictions", str(pred), "-o", str(out),
                                      "--n-bootstrap", "300", "--quiet"])
    assert result.exit_code == 0, result.output
    return out, json.loads((out / "metrics.json").read_text()), (out / "report.md").read_text()


def _section(md, heading):
    return md.split(heading)[1].split("\n## ")[0]


def test_report_on_several_photos_per_patient_shows_cluster_intervals_first(tmp_path):
    out, metrics, md = _evaluate(tmp_path, images_per_patient=3)
    entry = metrics["tasks"]["acne_vs_rosacea"]
    boot = entry["bootstrap"]
    assert (boot["unit"], boot["n_units"], entry["n_images"]) == ("patient", 24, 72)
    assert metrics["primary_interval"] == "cluster bootstrap" and entry["interval_unit"] == "patient"
    tp, fn = entry["tp"], entry["fn"]
    exact = stats.binomtest(tp, tp + fn).proportion_ci(method="exact")
    for m in METRICS:
        # the primary interval is the patient bootstrap's; the image-level one is kept, labelled
        assert entry[m]["ci"] == boot[m]
        assert entry[m]["method"] == "cluster bootstrap (patient, percentile)"
    assert entry["sensitivity"]["image_level"] == {"ci": pytest.approx([exact.low, exact.high]),
                                                   "method": "clopper-pearson"}
    assert entry["auc"]["image_level"]["method"] == "delong-logit"

    # the main table's cells carry the bootstrap intervals; the exact ones only come later
    main = _section(md, "## Sensitivity, specificity and predictive values")
    header = next(line for line in main.splitlines() if line.startswith("| Task |"))
    row = next(line for line in main.splitlines() if line.startswith("| Acne vs rosacea |"))
    column = header.split(" | ").index("Sensitivity")
    assert f"({fmt_interval(boot['sensitivity'])})" in row.split(" | ")[column]
    assert fmt_interval([exact.low, exact.high]) not in row
    assert "**cluster bootstrap** intervals" in main and "resampling unit: **patient**" in main
    assert "24 patients for 72 images" in main
    assert md.index("## AUC and accuracy") < md.index(SECONDARY)
    secondary = _section(md, SECONDARY)
    assert fmt_interval([exact.low, exact.high]) in secondary
    assert "## Bootstrap intervals" not in md
    # metrics.csv: primary columns hold the bootstrap interval, the image-level ones beside them
    table = pd.read_csv(out / "metrics.csv").set_index("metric")
    assert table.at["sensitivity", "ci_low"] == pytest.approx(boot["sensitivity"][0])
    assert table.at["sensitivity", "image_ci_low"] == pytest.approx(exact.low)
    assert table.at["sensitivity", "image_method"] == "clopper-pearson"


def test_one_photo_per_patient_keeps_image_level_intervals_first(tmp_path):
    _, metrics, md = _evaluate(tmp_path, images_per_patient=1)
    entry = metrics["tasks"]["acne_vs_rosacea"]
    assert metrics["primary_interval"] == "image-level" and entry["interval_unit"] == "image"
    tp, fn = entry["tp"], entry["fn"]
    exact = stats.binomtest(tp, tp + fn).proportion_ci(method="exact")
    assert entry["sensitivity"]["ci"] == pytest.approx([exact.low, exact.high])
    assert "image_level" not in entry["sensitivity"]
    assert SECONDARY not in md and "## Bootstrap intervals" in md
    assert "Intervals in these tables are image-level" in md


def test_logit_auc_interval_is_the_default_and_matches_a_hand_computation():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0])
    p = np.array([0.9, 0.8, 0.4, 0.35, 0.7, 0.3, 0.2, 0.2, 0.1])
    pos, neg = p[y == 1], p[y == 0]

    def psi(a, b):
        return 1.0 if a > b else 0.5 if a == b else 0.0

    # DeLong's structural components by explicit loops
    v10 = [sum(psi(a, b) for b in neg) / len(neg) for a in pos]
    v01 = [sum(psi(a, b) for a in pos) / len(pos) for b in neg]
    auc = sum(v10) / len(pos)
    assert auc == pytest.approx(18 / 20)  # 0.9, 0.8 beat all 5 negatives; 0.4, 0.35 all but 0.7
    var = np.var(v10, ddof=1) / len(pos) + np.var(v01, ddof=1) / len(neg)
    logit, half = math.log(auc / (1 - auc)), 1.959963984540054 * math.sqrt(var) / (auc * (1 - auc))
    expected = [1 / (1 + math.exp(-(logit - half))), 1 / (1 + math.exp(-(logit + half)))]
    entry = task_metrics(y, p, settings=EvalSettings(n_bootstrap=0))["auc"]
    assert entry["method"] == "delong-logit"
    assert entry["ci"] == pytest.approx(expected, abs=1e-12)
    assert entry["ci"][0] < auc < entry["ci"][1] < 1


def _frames(tmp_path):
    """Three models on the same 72 photos of 24 patients, each adding its own noise on the logit scale."""
    base = pd.read_csv(_predictions(tmp_path / "base.csv", 3))
    logit = np.log(base["y_prob"] / (1 - base["y_prob"]))
    frames = {}
    for k, name in enumerate("ABC"):
        noisy = logit + np.random.default_rng(k).normal(0, 0.4 + k, len(base))
        frames[name] = base.assign(y_prob=1 / (1 + np.exp(-noisy)))
    return frames


def test_compare_primary_test_is_the_paired_cluster_bootstrap_with_holm(tmp_path):
    frames = _frames(tmp_path)
    _, tests = compare_predictions(frames, settings=EvalSettings(n_bootstrap=300, seed=4))
    assert (tests["primary"] == "cluster bootstrap").all() and (tests["boot_unit"] == "patient").all()
    data = aligned(frames)  # the images in the order compare draws their patients
    for _, r in tests.iterrows():  # the same p-value as the bootstrap run on its own
        ref = paired_auc_difference(data["y_true"], data[r["model_a"]], data[r["model_b"]],
                                    patient_ids=data["patient_id"].tolist(), n_resamples=300, seed=4)
        assert r["boot_p_value"] == pytest.approx(ref["p_value"])
    assert tests["boot_p_holm"].tolist() == pytest.approx(holm(tests["boot_p_value"].tolist()))
    assert tests["primary_p_holm"].tolist() == tests["boot_p_holm"].tolist()

    for name, frame in frames.items():
        frame.to_csv(tmp_path / f"model_{name}.csv", index=False)
    result = CliRunner().invoke(cli, ["compare", *(str(tmp_path / f"model_{n}.csv") for n in frames),
                                      "-o", str(tmp_path / "cmp"), "--n-bootstrap", "300", "--seed", "4"])
    assert result.exit_code == 0, result.output
    assert "**Primary test: the paired cluster bootstrap**" in result.output
    header = next(line for line in result.output.splitlines() if line.startswith("| Task | A | B |"))
    assert header.split(" | ")[4:7] == ["Cluster bootstrap 95% CI", "Cluster bootstrap p", "p (Holm)"]
    assert "DeLong p (secondary)" in header
    first = tests.iloc[0]
    lines = result.output.splitlines()
    row = next(line for line in lines if line.startswith("| Acne vs rosacea | model_A | model_B |"))
    cells = row.split(" | ")
    assert cells[5] == (f"{first['boot_p_value']:.4f}" if first["boot_p_value"] >= 1e-4 else "< 0.0001")
    assert cells[6] == (f"{first['boot_p_holm']:.4f}" if first["boot_p_holm"] >= 1e-4 else "< 0.0001")

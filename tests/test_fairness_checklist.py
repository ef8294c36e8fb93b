"""Fairness section, calibration figures and reporting checklists of ``skin-cnn evaluate``.

Expected values are worked out by hand in the comments, never taken from the code under test.
"""

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from skin_cnn.cli import cli
from skin_cnn.stats.calibration import (
    brier_score,
    calibration_slope_intercept,
    expected_calibration_error,
)
from skin_cnn.reporting.checklist import baseline_table, disjointness, run_context
from skin_cnn.evaluation.fairness import UNKNOWN, fairness_analysis, small_statements
from skin_cnn.evaluation.failures import failure_cases
from skin_cnn.core.specs import EvalSettings

# ---------------------------------------------------------------------------------------------
# calibration


def test_ece_and_brier_by_hand():
    # one image per bin: |0.05-0| + |0.15-1| + |0.85-1| + |0.95-0| = 0.05+0.85+0.15+0.95 = 2.0
    # each weighted 1/4 -> ECE 0.5; Brier (0.0025 + 0.7225 + 0.0225 + 0.9025) / 4 = 0.4125
    y, p = [0, 1, 1, 0], [0.05, 0.15, 0.85, 0.95]
    assert expected_calibration_error(y, p) == pytest.approx(0.5)
    assert brier_score(y, p) == pytest.approx(0.4125)


def test_ece_shares_a_bin_and_bin_edges():
    # 0.1 and 0.19 both fall in [0.1, 0.2): mean 0.145, share positive 0.5 -> ECE 0.355
    assert expected_calibration_error([1, 0], [0.1, 0.19]) == pytest.approx(0.355)
    # 1.0 belongs to the last, closed bin with 0.95: mean 0.975, share 1 -> 0.025
    assert expected_calibration_error([1, 1], [0.95, 1.0]) == pytest.approx(0.025)
    # a perfectly calibrated pair of bins has ECE 0
    y = [0] * 8 + [1] * 2 + [0] * 2 + [1] * 8
    assert expected_calibration_error(y, [0.2] * 10 + [0.8] * 10) == pytest.approx(0.0, abs=1e-12)


def test_calibration_slope_and_intercept_by_hand():
    # two score levels, two parameters: the fit passes through both observed shares exactly.
    # shares 0.2 at p=0.2 and 0.8 at p=0.8 -> slope 1, intercept 0
    p = [0.2] * 10 + [0.8] * 10
    slope, intercept, note = calibration_slope_intercept([0] * 8 + [1] * 2 + [0] * 2 + [1] * 8, p)
    assert note is None and slope == pytest.approx(1) and intercept == pytest.approx(0, abs=1e-9)
    # shares 0.5 at p=0.2 and 0.8 at p=0.8: logit 0 = a - b ln4, ln4 = a + b ln4
    # -> b = 1/2, a = ln4 / 2 = ln 2 (predictions too extreme: slope below 1)
    slope, intercept, _ = calibration_slope_intercept([0] * 5 + [1] * 5 + [0] * 2 + [1] * 8, p)
    assert slope == pytest.approx(0.5) and intercept == pytest.approx(np.log(2))


def test_calibration_slope_undefined_cases_say_why():
    assert calibration_slope_intercept([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])[2].startswith(
        "undefined: the scores separate")
    assert "one class" in calibration_slope_intercept([1, 1, 1], [0.2, 0.5, 0.9])[2]
    assert "same score" in calibration_slope_intercept([0, 1, 0, 1], [0.5] * 4)[2]


# ---------------------------------------------------------------------------------------------
# fairness


def _group_rows(group, positives, negatives, prefix):
    """Rows of one group: ``positives``/``negatives`` are lists of probabilities, one patient each."""
    rows = []
    for k, (y, probs) in enumerate(((1, positives), (0, negatives))):
        for i, p in enumerate(probs):
            rows.append({"image_path": f"{prefix}{k}_{i}.jpg", "patient_id": f"{prefix}{k}_{i}",
                         "task": "acne_vs_rosacea", "y_true": y, "y_prob": p, "fitz": group})
    return rows


def fairness_frame():
    # group 2: 9 of 10 positives at >= 0.5 (sensitivity 0.9), 8 of 10 negatives below (spec 0.8)
    # group 5: 6 of 10 positives (sensitivity 0.6), 10 of 10 negatives (specificity 1.0)
    # group 6: 3 images only; missing: 2 images
    rows = _group_rows(2, [0.9] * 9 + [0.1], [0.2] * 8 + [0.7] * 2, "a")
    rows += _group_rows(5, [0.8] * 6 + [0.3] * 4, [0.1] * 10, "b")
    rows += _group_rows(6, [0.9, 0.2], [0.4], "c")
    rows += _group_rows(None, [0.9], [0.1], "d")
    return pd.DataFrame(rows)


def test_fairness_groups_gaps_and_small_groups():
    r = fairness_analysis(fairness_frame(), "fitz", 0.5, settings=EvalSettings(n_bootstrap=400, seed=1))
    t = r["tasks"]["acne_vs_rosacea"]
    assert r["groups"] == ["2", "5", "6", UNKNOWN] and r["n_unknown"] == 2
    assert t["groups"]["2"]["sensitivity"]["value"] == pytest.approx(0.9)
    assert t["groups"]["5"]["specificity"]["value"] == pytest.approx(1.0)
    assert t["groups"]["2"]["sensitivity"]["ci"] is not None  # each group value has its interval
    sens, spec = t["gaps"]["sensitivity"], t["gaps"]["specificity"]
    # 0.9 - 0.6 = 0.3 between groups 2 and 5; 1.0 - 0.8 = 0.2 the other way round
    assert (sens["high"], sens["low"], sens["value"]) == ("2", "5", pytest.approx(0.3))
    assert (spec["high"], spec["low"], spec["value"]) == ("5", "2", pytest.approx(0.2))
    # the small group and the unknown group never enter a gap
    assert sens["compared"] == ["2", "5"]
    lo, hi = sens["ci"]
    assert -1 <= lo < 0.3 < hi <= 1
    # group 5's negatives all score 0.1, so its specificity is 1 in every resample: no resampled
    # difference 1 - spec(group 2) can fall below zero
    assert 0 <= spec["ci"][0] <= 0.2 <= spec["ci"][1] <= 1
    assert set(t["small"]["6"]) == {"auc", "sensitivity", "specificity"}
    text = " ".join(small_statements(r))
    assert "too small to conclude anything: 6 (2/1)" in text
    assert r["bootstrap"]["unit"] == "patient"


def test_fairness_gap_of_identical_groups_reaches_zero():
    # the same data twice: gap 0, and an interval on both sides of zero, said plainly
    one = _group_rows("I", [0.9] * 8 + [0.2] * 4, [0.1] * 9 + [0.6] * 3, "a")
    two = _group_rows("II", [0.9] * 8 + [0.2] * 4, [0.1] * 9 + [0.6] * 3, "b")
    r = fairness_analysis(pd.DataFrame(one + two), "fitz", 0.5, settings=EvalSettings(n_bootstrap=500, seed=0))
    gap = r["tasks"]["acne_vs_rosacea"]["gaps"]["sensitivity"]
    assert gap["value"] == pytest.approx(0.0)
    assert gap["ci"][0] < 0 < gap["ci"][1]
    assert "no difference shown" in gap["note"]


def test_fairness_with_one_large_group_estimates_no_gap():
    rows = _group_rows(1, [0.9] * 10, [0.1] * 10, "a") + _group_rows(2, [0.9], [0.1], "b")
    r = fairness_analysis(pd.DataFrame(rows), "fitz", 0.5, settings=EvalSettings(n_bootstrap=50))
    gap = r["tasks"]["acne_vs_rosacea"]["gaps"]["auc"]
    assert gap["value"] is None and "fewer than two groups" in gap["note"]


# ---------------------------------------------------------------------------------------------
# partitions and baseline


def crafted_split():
    return pd.DataFrame({
        "image_path": [f"{i}.jpg" for i in range(8)],
        "patient_id": ["p1", "p1", "p2", "p3", "p4", "", "p6", "p7"],
        "split_group": ["1", "1", "2", "3", "4", "5", "5", "7"],
        "diagnosis": ["acne", "acne", "rosacea", "acne", "rosacea", "acne", "acne", "rosacea"],
        "fitzpatrick_scale": ["2", "2", "", "3", "3", "", "2", "2"],
        # p1 in train and test; group 5 in val and test
        "split": ["train", "test", "train", "train", "val", "val", "test", "test"],
    })


def test_disjointness_detects_crafted_overlap():
    checks = {c["column"]: c for c in disjointness(crafted_split())}
    assert checks["patient_id"]["shared"] == {"p1": ["train", "test"]}
    assert checks["patient_id"]["n_missing"] == 1
    # group 1 holds p1's two images, so it crosses too
    assert checks["split_group"]["shared"] == {"1": ["train", "test"], "5": ["val", "test"]}
    assert not checks["patient_id"]["disjoint"] and not checks["split_group"]["disjoint"]
    clean = crafted_split().assign(split=["train", "train", "train", "train", "val", "test", "test", "test"])
    assert all(c["disjoint"] for c in disjointness(clean))


def test_baseline_table_counts_per_partition():
    header, rows = baseline_table(crafted_split())
    assert header == ["Characteristic", "train (n = 3)", "val (n = 2)", "test (n = 3)"]
    table = {r[0]: r[1:] for r in rows}
    assert table["Images"] == ["3", "2", "3"]
    # val: p4 and one image without id
    assert table["Patients"][1] == "1 (+1 images without id)"
    assert table["diagnosis: acne"] == ["2 (66.7%)", "1 (50.0%)", "2 (66.7%)"]
    # missing Fitzpatrick values are counted, not dropped: train row 2, val row 5
    assert table["fitzpatrick_scale: unknown"] == ["1 (33.3%)", "1 (50.0%)", "0 (0.0%)"]


# ---------------------------------------------------------------------------------------------
# failure gallery


def test_failure_cases_most_confident_first():
    frame = pd.DataFrame({
        "image_path": list("abcdefgh"), "task": "acne_vs_rosacea",
        "y_true": [0, 0, 0, 1, 1, 1, 0, 1],
        "y_prob": [0.6, 0.95, 0.7, 0.1, 0.45, 0.02, 0.2, 0.9],
    })
    cases = failure_cases(frame, 0.5, k=2)
    fp = cases[cases["kind"] == "false positive"]["image_path"].tolist()
    fn = cases[cases["kind"] == "false negative"]["image_path"].tolist()
    assert fp == ["b", "c"]  # 0.95, then 0.7 (0.6 is third)
    assert fn == ["f", "d"]  # 0.02, then 0.1


# ---------------------------------------------------------------------------------------------
# end to end


def _predictions(path, rng):
    rows = []
    for i in range(120):
        y = i % 2
        rows.append({
            "image_path": f"img/{i}.jpg", "patient_id": f"p{i // 2}", "task": "psoriasis_vs_eczema",
            "y_true": y, "y_prob": float(np.clip(0.35 + 0.3 * y + rng.normal(0, 0.2), 0, 1)),
            "fitzpatrick_scale": [1, 2, None, 3][i % 4] if i < 116 else 6,
        })
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_cli_fairness_and_checklist_from_a_predictions_file(tmp_path):
    pred = _predictions(tmp_path / "pred.csv", np.random.default_rng(0))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["evaluate", "--predictions", str(pred), "-o", str(out),
                                      "--fairness", "fitzpatrick_scale", "--n-bootstrap", "200",
                                      "--quiet"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    page = (out / "report.html").read_text()
    for text in ("Fairness by fitzpatrick_scale", "Reporting checklists", "TRIPOD+AI", "CLAIM",
                 "STARD-AI", "Calibration", "For the authors to fill", "14 Fairness"):
        assert text in page
    assert (out / "forest_fitzpatrick_scale.png").is_file()
    # no run folder: nothing about partitions or the model is claimed
    assert "Baseline characteristics per partition</a>" not in page
    assert "Baseline characteristics per partition (evaluate the run folder)" in page
    # images are missing: the failure cases are listed instead of drawn
    assert not (out / "failure_gallery.png").exists()
    assert "could not be read" in page
    m = json.loads((out / "metrics.json").read_text())
    fair = m["fairness"]["fitzpatrick_scale"]
    assert fair["n_unknown"] == 29  # i % 4 == 2 for i < 116
    assert "6" in fair["groups"] and "6" not in fair["tasks"]["psoriasis_vs_eczema"]["gaps"]["auc"]["compared"]
    y = np.array([r % 2 for r in range(120)])
    p = pd.read_csv(pred)["y_prob"].to_numpy()
    assert m["calibration"]["psoriasis_vs_eczema"]["brier"] == pytest.approx(np.mean((p - y) ** 2))
    # every checklist link points at a heading of the page
    import re

    ids = set(re.findall(r"id='([^']+)'", page))
    links = re.findall(r"href='#([^']+)'", page)
    assert links and set(links) <= ids


def test_cli_unknown_fairness_column_is_one_clear_error(tmp_path):
    pred = _predictions(tmp_path / "pred.csv", np.random.default_rng(0))
    result = CliRunner().invoke(cli, ["evaluate", "--predictions", str(pred), "-o", str(tmp_path / "o"),
                                      "--fairness", "skin_type", "--n-bootstrap", "0", "--quiet"])
    assert result.exit_code != 0
    assert "--fairness skin_type" in result.output


def test_run_folder_context_hashes_history_and_split(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.keras").write_bytes(b"not really a model")
    weights = tmp_path / "vgg16_notop.h5"
    weights.write_bytes(b"weights")
    (run / "config.json").write_text(json.dumps({
        "train": {"variant": "P", "weights": str(weights), "epochs": 30, "patience": 3,
                  "lr_patience": 2, "lr_factor": 0.5, "seed": 7, "zoom": 0.2},
        "preprocessing": {"image_size": [250, 250], "crop": True, "resize": "stretch"},
        "versions": {"tensorflow": "2.99"},
    }))
    # best validation mean AUC at epoch 2; stopped after 3 more without improvement
    pd.DataFrame({"epoch": [1, 2, 3, 4, 5], "val_mean_auc": [0.7, 0.9, 0.85, 0.88, 0.8]}).to_csv(
        run / "history.csv", index=False)
    crafted_split().to_csv(run / "split.csv", index=False)
    ctx = run_context(run)
    assert ctx["files"]["best.keras"] == hashlib.sha256(b"not really a model").hexdigest()
    assert ctx["files"][str(weights)] == hashlib.sha256(b"weights").hexdigest()
    h = ctx["history"]
    assert (h["epochs_run"], h["best_epoch"], h["best_value"], h["patience"]) == (5, 2, 0.9, 3)
    assert ctx["seed"] == 7
    assert not ctx["disjointness"][0]["disjoint"]


def test_failure_gradcams_of_a_run_and_a_missing_image_skipped():
    from model_fixtures import shared_run

    from skin_cnn.inference.predictor import load_predictor
    from skin_cnn.app.evaluate_run import failure_gradcams

    run = shared_run()
    split = pd.read_csv(run / "split.csv")
    test = split[split["split"] == "test"]
    cases = pd.DataFrame({"task": "acne_vs_rosacea", "kind": "false positive", "rank": [1, 2, 3],
                          "image_path": [*test["image_path"], "/nowhere/missing.jpg"],
                          "y_prob": 0.9, "threshold": 0.5})
    predictor = load_predictor(run)
    cams = failure_gradcams(predictor, cases, split)
    size = tuple(predictor.image_size)
    assert set(cams) == {(p, "acne_vs_rosacea") for p in test["image_path"]}
    for picture in cams.values():
        assert picture.dtype == np.uint8 and picture.shape == (*size, 3)


def test_fitzpatrick_minus_one_is_unknown_not_a_skin_type():
    from skin_cnn.evaluation.fairness import group_labels

    values = pd.Series([2.0, -1.0, float("nan"), 6.0, 0.0, "IV", " 3 "])
    assert list(group_labels(values, "fitzpatrick_scale")) == ["2", "unknown", "unknown", "6", "unknown", "IV", "3"]
    assert list(group_labels(values, "site"))[:2] == ["2", "-1"]  # elsewhere -1 is a value like any other
    split = crafted_split().assign(fitzpatrick_scale=["2", "-1", "", "3", "3", "-1", "2", "2"])
    table = {r[0]: r[1:] for r in baseline_table(split)[1]}
    assert "fitzpatrick_scale: -1" not in table
    assert table["fitzpatrick_scale: unknown"] == ["1 (33.3%)", "1 (50.0%)", "1 (33.3%)"]


def test_fitzpatrick_minus_one_is_no_subgroup_of_its_own_in_by_tables():
    from skin_cnn.evaluation.metrics import metrics_by

    rows = [{"image_path": f"{i}.jpg", "patient_id": f"p{i}", "task": "acne_vs_rosacea", "y_true": i % 2,
             "y_prob": (i % 7) / 7, "fitzpatrick_scale": [2.0, -1.0, 3.0, float("nan")][i % 4]} for i in range(40)]
    table, per_group = metrics_by(pd.DataFrame(rows), "fitzpatrick_scale", settings=EvalSettings(n_bootstrap=0))
    assert set(per_group) == {"2", "3", "(missing)"}
    assert sum(g["tasks"]["acne_vs_rosacea"]["n_images"] for g in per_group.values()) == 40

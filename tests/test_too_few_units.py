"""Too few patients per class for a cluster bootstrap: no (zero-width) cluster interval is shown;
the image-level intervals stay primary, labelled, and the metrics and report say why."""
import json

import numpy as np
import pandas as pd
from click.testing import CliRunner

from skin_cnn.cli import cli
from skin_cnn.core.specs import EvalSettings
from skin_cnn.stats.bootstrap import MIN_UNITS_PER_CLASS, bootstrap_intervals, paired_auc_difference
from skin_cnn.evaluation.compare import compare_predictions
from skin_cnn.reporting.comparison import comparison_report
from skin_cnn.evaluation.metrics import task_metrics

METRICS = ("sensitivity", "specificity", "ppv", "npv", "accuracy", "auc")


def _patients(n_per_class, images=3, seed=0):
    """Labels, scores and patient ids: ``n_per_class`` patients of each class, ``images`` photos each."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(2 * n_per_class) % 2, images)
    ids = np.repeat([f"pt{k}" for k in range(2 * n_per_class)], images)
    return y, 1 / (1 + np.exp(-rng.normal(1.2 * y - 0.6, 1.0))), ids.tolist()


def test_two_patients_give_no_cluster_interval_and_say_why():
    y, p, ids = _patients(1)  # one patient per class: every stratified resample is the data itself
    boot = bootstrap_intervals(y, p, patient_ids=ids, settings=EvalSettings(n_bootstrap=200))
    assert all(boot[m] is None for m in METRICS)
    assert boot["too_few_units"].startswith("too few units for a cluster interval: 1 patient(s) with a positive")
    assert f"at least {MIN_UNITS_PER_CLASS} of each" in boot["too_few_units"]


def test_enough_patients_per_class_keep_a_cluster_interval_of_real_width():
    y, p, ids = _patients(MIN_UNITS_PER_CLASS)
    boot = bootstrap_intervals(y, p, patient_ids=ids, settings=EvalSettings(n_bootstrap=200))
    assert "too_few_units" not in boot and boot["auc"][1] - boot["auc"][0] > 0.05
    assert bootstrap_intervals(*_patients(MIN_UNITS_PER_CLASS - 1)[:2],
                               patient_ids=_patients(MIN_UNITS_PER_CLASS - 1)[2],
                               settings=EvalSettings(n_bootstrap=50))["auc"] is None


def test_one_image_per_unit_is_not_limited_by_the_cluster_minimum():
    y, p, _ = _patients(2, images=1)
    boot = bootstrap_intervals(y, p, settings=EvalSettings(n_bootstrap=50))  # no ids: images drawn
    assert boot["unit"] == "image" and boot["auc"] is not None and "too_few_units" not in boot


def test_with_too_few_patients_the_primary_intervals_stay_image_level():
    y, p, ids = _patients(2)
    entry = task_metrics(y, p, patient_ids=ids, settings=EvalSettings(n_bootstrap=100))
    assert entry["interval_unit"] == "image"
    assert entry["sensitivity"]["method"] == "clopper-pearson" and "image_level" not in entry["sensitivity"]
    low, high = entry["auc"]["ci"]
    assert high - low > 0.1  # the image-level interval, not a degenerate one
    assert "too few units" in entry["bootstrap"]["too_few_units"]


def test_the_report_says_there_were_too_few_patients(tmp_path):
    y, p, ids = _patients(2)
    pred = tmp_path / "pred.csv"
    pd.DataFrame({"image_path": [f"{i}.jpg" for i in range(len(y))], "patient_id": ids,
                  "task": "acne_vs_rosacea", "y_true": y, "y_prob": p}).to_csv(pred, index=False)
    out = tmp_path / "eval"
    result = CliRunner().invoke(cli, ["evaluate", "--predictions", str(pred), "-o", str(out),
                                      "--n-bootstrap", "100", "--quiet"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["primary_interval"] == "image-level"
    md = (out / "report.md").read_text()
    assert "No cluster bootstrap interval for Acne vs rosacea: too few units for a cluster interval" in md
    assert "holds one image" not in md  # the patients hold several: never claimed otherwise


def test_paired_bootstrap_and_compare_with_too_few_patients(tmp_path):
    y, p, ids = _patients(2)
    paired = paired_auc_difference(y, p, p[::-1], patient_ids=ids, n_resamples=100)
    assert paired["ci"] is None and paired["p_value"] is None and "too few units" in paired["too_few_units"]
    frames = {name: pd.DataFrame({"image_path": [f"{i}.jpg" for i in range(len(y))], "patient_id": ids,
                                  "task": "acne_vs_rosacea", "y_true": y, "y_prob": score})
              for name, score in (("A", p), ("B", np.clip(p + 0.1, 0, 1)))}
    table, tests = compare_predictions(frames, settings=EvalSettings(n_bootstrap=100))
    assert (tests["primary"] == "delong").all()
    assert table["auc_boot_ci_low"].isna().all()
    text = comparison_report(table, tests, {"A": "a.csv", "B": "b.csv"}, 0.5).markdown(tmp_path)
    assert "no cluster bootstrap interval where there are too few units for a cluster interval" in text


def test_the_threshold_choice_interval_is_not_computed_with_too_few_patients(tmp_path):
    from skin_cnn.reporting.document import Report
    from skin_cnn.evaluation.threshold import parse_threshold
    from skin_cnn.evaluation.threshold_choice import threshold_choice_entry
    from skin_cnn.reporting.choice_section import add_choice_table

    y, p, ids = _patients(2)
    frame = pd.DataFrame({"patient_id": ids, "task": "acne_vs_rosacea", "y_true": y, "y_prob": p})
    entry = threshold_choice_entry(frame, frame, parse_threshold("youden"), np.full(len(y), 0.5),
                                   settings=EvalSettings(n_bootstrap=50))
    assert entry["sensitivity"] is None and entry["fixed"]["specificity"] is None
    assert "too few units for a cluster interval" in entry["too_few_units"]
    rep = Report("r")
    add_choice_table(rep, {"tasks": {"acne_vs_rosacea": {"threshold_choice": entry, "sensitivity": {"value": 0.5}}}})
    text = rep.markdown(tmp_path)
    assert "No interval including the threshold choice for Acne vs rosacea: too few units" in text
    assert "| Task |" not in text

"""Sensitivity and specificity intervals that include the uncertainty of choosing the threshold."""
import numpy as np
import pandas as pd
import pytest

from skin_cnn.evaluation.metrics import task_metrics
from skin_cnn.evaluation.threshold import choose_threshold, parse_threshold
from skin_cnn.evaluation.threshold_choice import rule_of_label, threshold_choice_entry
from skin_cnn.core.specs import EvalSettings

TASK = "psoriasis_vs_eczema"


def _predictions(n, seed, prefix, separation=1.0):
    rng = np.random.default_rng(seed)
    y = np.tile([0, 1], n // 2)
    p = 1 / (1 + np.exp(-(rng.normal(size=n) + separation * (2 * y - 1))))
    return pd.DataFrame({"image_path": [f"{prefix}{i}.jpg" for i in range(n)], "patient_id": "", "task": TASK,
                         "y_true": y, "y_prob": p})


def _width(interval):
    return interval[1] - interval[0]


@pytest.mark.parametrize("seed", range(5))
def test_refitting_the_threshold_in_every_resample_widens_the_fixed_threshold_interval(seed):
    # a threshold chosen on 30 validation photos and applied to 300 test photos
    val, test = _predictions(30, seed, "v"), _predictions(300, 100 + seed, "t")
    rule = parse_threshold("youden")
    cut = choose_threshold(val["y_true"], val["y_prob"], "youden")
    entry = threshold_choice_entry(test, val, rule, cut, settings=EvalSettings(n_bootstrap=400, seed=seed))
    for metric in ("sensitivity", "specificity"):
        assert _width(entry[metric]) > 1.2 * _width(entry["fixed"][metric]), (metric, entry)
    # the comparison is the fixed-threshold bootstrap itself: same resamples, same interval
    fixed = task_metrics(test["y_true"], test["y_prob"], cut, test["patient_id"].tolist(),
                         settings=EvalSettings(n_bootstrap=400, seed=seed))["bootstrap"]
    for metric in ("sensitivity", "specificity"):
        assert entry["fixed"][metric] == pytest.approx(fixed[metric])


def test_a_larger_validation_set_adds_less_width():
    # with thousands of validation photos the refitted threshold moves less than with 30: the
    # widening shrinks (Youden's J is flat near its maximum, so it does not vanish)
    small, big = _predictions(30, 1, "v"), _predictions(4000, 2, "w")
    test = _predictions(300, 3, "t")
    rule = parse_threshold("youden")
    ratios = []
    for val in (small, big):
        cut = choose_threshold(val["y_true"], val["y_prob"], "youden")
        entry = threshold_choice_entry(test, val, rule, cut, settings=EvalSettings(n_bootstrap=300, seed=0))
        ratios.append(_width(entry["sensitivity"]) / _width(entry["fixed"]["sensitivity"]))
    assert ratios[1] < ratios[0]


def test_each_fold_refits_its_own_threshold_on_its_own_validation_rows():
    # fold 2's validation predictions are shifted far up: its refitted thresholds follow them, so
    # fold 2's evaluated rows (all below 0.9) are never called positive in any resample
    val = pd.concat([_predictions(20, 4, "a").assign(fold=1),
                     _predictions(20, 5, "b").assign(fold=2, y_prob=lambda f: 0.95 + 0.04 * f["y_true"])])
    test = pd.concat([_predictions(40, 6, "c").assign(fold=1),
                      _predictions(40, 7, "d").assign(fold=2, y_prob=lambda f: 0.1 + 0.8 * f["y_prob"])])
    cuts = np.where(test["fold"] == 1, choose_threshold(val.y_true[val.fold == 1], val.y_prob[val.fold == 1]),
                    choose_threshold(val.y_true[val.fold == 2], val.y_prob[val.fold == 2]))
    entry = threshold_choice_entry(test, val, parse_threshold("youden"), cuts,
                                   settings=EvalSettings(n_bootstrap=200, seed=0), key="fold")
    only_fold1 = threshold_choice_entry(test[test.fold == 1], val[val.fold == 1], parse_threshold("youden"),
                                        cuts[test["fold"].to_numpy() == 1],
                                        settings=EvalSettings(n_bootstrap=200, seed=0))
    # fold 2 adds only negatives called negative and positives called negative
    assert entry["sensitivity"][1] <= only_fold1["sensitivity"][1]
    assert entry["specificity"][0] >= only_fold1["specificity"][0] - 1e-9


def test_stored_rule_labels_read_back_as_rules():
    assert rule_of_label("youden").method == "youden"
    r = rule_of_label("sensitivity >= 0.9")
    assert (r.method, r.target) == ("sensitivity", 0.9)
    assert rule_of_label("youden, not validated for the ensemble's averaged scores").method == "youden"
    assert rule_of_label("fixed") is None and rule_of_label("default") is None


def test_the_study_rule_is_refitted_with_each_tasks_own_operating_point():
    from skin_cnn.core.tasks import STUDY_OPERATING_POINTS

    val, test = _predictions(60, 8, "v"), _predictions(200, 9, "t")
    rule = parse_threshold("study")
    cut = choose_threshold(val["y_true"], val["y_prob"], "margin", STUDY_OPERATING_POINTS[TASK])
    entry = threshold_choice_entry(test, val, rule, cut, settings=EvalSettings(n_bootstrap=200, seed=0))
    for metric in ("sensitivity", "specificity"):
        assert entry[metric][0] < entry[metric][1] and "study" in entry["method"]
    # the refit asks for the task's own point: a task the study did not report is refused
    other = lambda f: f.assign(task="nevus_vs_melanoma")  # noqa: E731
    with pytest.raises(ValueError, match="no operating point for task 'nevus_vs_melanoma'"):
        threshold_choice_entry(other(test), other(val), rule, cut, settings=EvalSettings(n_bootstrap=20, seed=0))

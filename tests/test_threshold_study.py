"""``--threshold study``: per task, the cut-off with the widest margin over the study's
sensitivity and specificity."""
import numpy as np
import pandas as pd
import pytest

from skin_cnn.core.tasks import STUDY_OPERATING_POINTS, TASK_NAMES
from skin_cnn.evaluation.threshold import ThresholdRule, fit_thresholds, parse_threshold
from skin_cnn.evaluation.threshold_choice import rule_of_label
from skin_cnn.stats.threshold import choose_threshold

Y = [1, 1, 1, 1, 0, 0, 0, 0]
P = [0.9, 0.8, 0.7, 0.3, 0.6, 0.4, 0.2, 0.1]


def test_the_margin_rule_by_hand():
    # cut 0.7: sens 3/4, spec 4/4 -> margins 0.25, 0.5; cut 0.6: 3/4, 3/4 -> 0.25, 0.25: both
    # have the smaller margin 0.25, 0.7 has the larger sum: halfway from 0.7 to 0.6
    assert choose_threshold(Y, P, "margin", (0.5, 0.5)) == pytest.approx(0.65)
    # a reference that asks for sensitivity: cut 0.3 gives 4/4 and 2/4 (margins 0.1, 0.3)
    assert choose_threshold(Y, P, "margin", (0.9, 0.2)) == pytest.approx(0.25)
    # unreachable on both: the cut that misses by least (0.7: 3/4, 4/4 -> -0.2 and 0.0)
    assert choose_threshold(Y, P, "margin", (0.95, 1.0)) == pytest.approx(0.65)


def _smaller_margin(y, p, cut, reference):
    y, called = np.asarray(y, bool), np.asarray(p) >= cut
    sens, spec = (called & y).sum() / y.sum(), (~called & ~y).sum() / (~y).sum()
    return min(sens - reference[0], spec - reference[1])


@pytest.mark.parametrize("seed", range(5))
def test_no_cut_off_beats_the_chosen_one_on_the_smaller_margin(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 60)
    y[:2] = [0, 1]
    p = np.round(np.clip(0.5 + 0.25 * (y - 0.5) + rng.normal(0, 0.2, 60), 0, 1), 2)  # ties on purpose
    reference = (rng.uniform(0.6, 0.9), rng.uniform(0.6, 0.9))
    chosen = choose_threshold(y, p, "margin", reference)
    best = _smaller_margin(y, p, chosen, reference)
    every_cut = np.concatenate([np.unique(p), [np.inf]])
    assert best >= max(_smaller_margin(y, p, c, reference) for c in every_cut) - 1e-12
    assert not np.isclose(p, chosen).any()  # no photo sits on the cut-off


def test_study_uses_each_tasks_own_operating_point():
    rng = np.random.default_rng(0)
    rows = []
    for task in TASK_NAMES:
        y = rng.integers(0, 2, 80)
        rows.append(pd.DataFrame({"task": task, "y_true": y, "y_prob": rng.uniform(size=80) * 0.6 + 0.4 * y}))
    frame = pd.concat(rows, ignore_index=True)
    got, method = fit_thresholds(parse_threshold("study"), TASK_NAMES, frame)
    for task in TASK_NAMES:
        part = frame[frame["task"] == task]
        assert got[task] == choose_threshold(part["y_true"], part["y_prob"], "margin", STUDY_OPERATING_POINTS[task])
    assert "study" in method and "81.8%/73.6%" in method


def test_the_study_rule_survives_the_model_files_label():
    rule = parse_threshold("Study")
    assert rule == ThresholdRule("study") and rule.needs_validation
    assert rule_of_label(rule.label()) == rule


def test_a_task_without_a_study_figure_is_refused_in_one_line():
    with pytest.raises(ValueError, match="no operating point for task 'nevus_vs_melanoma'"):
        ThresholdRule("study").choose(Y, P, "nevus_vs_melanoma")


def test_the_study_figures_are_the_studys_table_2():
    # sensitivity / specificity (%) as the study's Table 2 prints them for VGG-16P
    table_2 = {"psoriasis_vs_eczema": (81.79, 73.57), "acne_vs_rosacea": (85.42, 89.53),
               "ctcl_vs_eczema": (74.29, 84.09)}
    assert {t: (round(s * 100, 2), round(p * 100, 2)) for t, (s, p) in STUDY_OPERATING_POINTS.items()} == table_2


def test_a_linear_run_stores_the_study_rule_fitted_on_its_out_of_fold_predictions(tmp_path):
    from test_training import tiny_config, tiny_split

    from skin_cnn.app.train_run import train
    from skin_cnn.models import read_file_info

    split = tiny_split(tmp_path, patients=6)
    out = tmp_path / "run"
    train(tiny_config(split, out, head="linear", threshold="study", cache_views=0), progress=False,
          echo=lambda *_: None)
    preds = pd.read_csv(out / "val_predictions.csv")
    stored = read_file_info(out / "best.keras")["thresholds"]
    for task, part in preds.groupby("task"):
        assert stored[task]["rule"] == "study"
        assert stored[task]["value"] == pytest.approx(
            choose_threshold(part["y_true"], part["y_prob"], "margin", STUDY_OPERATING_POINTS[task]))
    assert "widest margin over the study's" in (out / "model_card.md").read_text()

"""Per-task metrics, the metrics.json layout, edge cases and threshold choice."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from skin_cnn.evaluation.metrics import (
    evaluate_predictions,
    metrics_by,
    metrics_table,
    task_metrics,
)
from skin_cnn.evaluation.threshold import choose_threshold, parse_threshold, resolve_thresholds
from skin_cnn.core.specs import EvalSettings

METRICS = ("sensitivity", "specificity", "ppv", "npv", "accuracy", "auc")


def test_ten_images_counted_by_hand():
    y = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    p = [0.9, 0.7, 0.5, 0.2, 0.6, 0.4, 0.3, 0.1, 0.05, 0.49]
    # threshold 0.5, y_prob >= 0.5 positive: TP 0.9 0.7 0.5 | FN 0.2 | FP 0.6 | TN the other five
    m = task_metrics(
        y, p, 0.5, patient_ids=list("aabbccddee"), task="acne_vs_rosacea", settings=EvalSettings(n_bootstrap=0)
    )
    assert (m["tp"], m["fn"], m["tn"], m["fp"]) == (3, 1, 5, 1)
    assert (m["positive"], m["negative"]) == ("acne", "rosacea")
    assert m["n_images"] == 10 and m["n_patients"] == 5
    assert m["sensitivity"]["value"] == 0.75
    assert m["specificity"]["value"] == pytest.approx(5 / 6)
    assert m["ppv"]["value"] == 0.75 and m["npv"]["value"] == pytest.approx(5 / 6)
    assert m["accuracy"]["value"] == 0.8
    # AUC by counting pairs: of 24 positive/negative pairs the positive scores higher in
    # 6 + 6 + 5 + 2 = 19 (0.9 and 0.7 beat all six negatives, 0.5 all but 0.6, 0.2 two)
    assert m["auc"]["value"] == pytest.approx(19 / 24)
    assert m["auc"]["value"] == pytest.approx(roc_auc_score(y, p))
    ref = stats.binomtest(3, 4).proportion_ci(method="exact")
    assert m["sensitivity"]["ci"] == pytest.approx([ref.low, ref.high])
    assert [m[k]["method"] for k in METRICS] == ["clopper-pearson"] * 2 + ["logit"] * 2 + [
        "clopper-pearson",
        "delong-logit",  # the default AUC interval is on the logit scale
    ]


def test_contract_layout_with_bootstrap():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    p = rng.random(60)
    m = task_metrics(y, p, patient_ids=[f"p{i % 20}" for i in range(60)],
                     settings=EvalSettings(n_bootstrap=100, seed=3))
    for k in METRICS:
        assert set(m[k]) >= {"value", "ci", "method"}
        assert 0 <= m[k]["ci"][0] <= m[k]["value"] <= m[k]["ci"][1] <= 1
    b = m["bootstrap"]
    assert (b["n_resamples"], b["unit"], b["seed"]) == (100, "patient", 3)
    assert all(len(b[k]) == 2 for k in METRICS)


def test_threshold_boundary_counts_as_positive():
    m = task_metrics([1, 0], [0.3, 0.3], threshold=0.3, settings=EvalSettings(n_bootstrap=0))
    assert (m["tp"], m["fp"]) == (1, 1)


@pytest.mark.parametrize(
    "y,p",
    [
        ([0, 0, 0, 0], [0.1, 0.6, 0.2, 0.7]),  # no positives
        ([1, 1, 1], [0.9, 0.8, 0.2]),  # no negatives
        ([1, 0, 1, 0], [0.1, 0.2, 0.3, 0.4]),  # everything predicted negative
        ([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.6]),  # everything predicted positive
        ([1, 1, 0, 0], [0.9, 0.8, 0.1, 0.2]),  # perfect: 100% everywhere
        ([1], [0.9]),
    ],
)
def test_edge_cases_give_defined_json_without_nan(y, p):
    m = task_metrics(y, p, settings=EvalSettings(n_bootstrap=50))
    json.dumps(m, allow_nan=False)  # raises on NaN or infinity
    for k in METRICS:
        e = m[k]
        if e["value"] is None:
            assert e["ci"] is None and e.get("note")
        else:
            assert 0 <= e["value"] <= 1


def test_undefined_auc_is_null_with_a_note():
    m = task_metrics([0, 0, 0], [0.2, 0.4, 0.6], settings=EvalSettings(n_bootstrap=0))
    assert m["auc"]["value"] is None and "no positive" in m["auc"]["note"]
    assert m["sensitivity"]["value"] is None and m["specificity"]["value"] == pytest.approx(2 / 3)


def test_no_patient_ids_means_unknown_patient_count():
    assert (
        task_metrics([0, 1], [0.2, 0.8], patient_ids=["", ""],
                     settings=EvalSettings(n_bootstrap=0))["n_patients"] is None
    )


def _frame():
    rng = np.random.default_rng(1)
    rows = []
    for task, n in (("acne_vs_rosacea", 50), ("psoriasis_vs_eczema", 70)):
        for i in range(n):
            y = int(rng.random() < 0.4)
            rows.append(
                {
                    "image_path": f"{task}/{i}.jpg",
                    "patient_id": f"{task}{i // 2}",
                    "task": task,
                    "y_true": y,
                    "y_prob": float(np.clip(rng.normal(0.3 + 0.4 * y, 0.2), 0, 1)),
                    "source": "a" if i % 3 else "b",
                }
            )
    return pd.DataFrame(rows)


def test_evaluate_predictions_per_task_and_table():
    df = _frame()
    res = evaluate_predictions(
        df, {"acne_vs_rosacea": 0.4, "psoriasis_vs_eczema": 0.6}, "youden (x)", settings=EvalSettings(n_bootstrap=0)
    )
    assert list(res["tasks"]) == ["psoriasis_vs_eczema", "acne_vs_rosacea"]  # TASK_NAMES order
    assert res["threshold"] == {"psoriasis_vs_eczema": 0.6, "acne_vs_rosacea": 0.4}
    part = df[df.task == "acne_vs_rosacea"]
    assert res["tasks"]["acne_vs_rosacea"]["tp"] == int(
        ((part.y_prob >= 0.4) & (part.y_true == 1)).sum()
    )
    table = metrics_table(res)
    assert len(table) == 2 * 6
    assert set(table.columns) >= {"task", "metric", "value", "ci_low", "ci_high", "method"}
    assert evaluate_predictions(df, 0.5, settings=EvalSettings(n_bootstrap=0))["threshold"] == 0.5


def test_subgroups_partition_the_images():
    df = _frame()
    table, groups = metrics_by(df, "source", 0.5, settings=EvalSettings(n_bootstrap=0))
    assert set(groups) == {"a", "b"}
    for task in ("acne_vs_rosacea", "psoriasis_vs_eczema"):
        total = sum(g["tasks"][task]["n_images"] for g in groups.values())
        assert total == (df.task == task).sum()
        tp = sum(g["tasks"][task]["tp"] for g in groups.values())
        part = df[df.task == task]
        assert tp == ((part.y_prob >= 0.5) & (part.y_true == 1)).sum()
    assert table["source"].isin(["a", "b"]).all()
    with pytest.raises(ValueError, match="no column"):
        metrics_by(df, "fitzpatrick", 0.5)


# -- thresholds ------------------------------------------------------------------------------


def _next_lower(p, t):
    """The largest observed score below ``t`` (what the chosen cut-off sits just above)."""
    return max(s for s in set(p) if s < t)


def test_youden_threshold_maximises_sens_plus_spec_by_brute_force():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 200)
    p = np.round(rng.normal(y * 0.8, 1.0), 2)
    chosen = choose_threshold(y, p, "youden")
    js = {
        t: ((p >= t) & (y == 1)).sum() / y.sum() + ((p < t) & (y == 0)).sum() / (1 - y).sum()
        for t in set(p)
    }
    best = max(js.values())
    top = max(t for t, j in js.items() if abs(j - best) < 1e-12)  # ties: the fewest positive calls
    assert chosen == pytest.approx((top + _next_lower(p, top)) / 2)
    assert chosen not in set(p)
    assert ((p >= chosen) == (p >= top)).all()  # the same calls as the observed score it replaces


def test_youden_cut_off_lies_halfway_between_two_photos_by_hand():
    # scores 0.1 (neg), 0.3 (neg), 0.4 (pos), 0.6 (neg), 0.8 (pos), 0.9 (pos)
    # cut above 0.3: sens 3/3, spec 2/3, J 0.667; above 0.6: sens 2/3, spec 3/3, J 0.667 (tie,
    # fewer positive calls wins); above 0.1: J 0.333; above 0.4: J 0.333. Youden: calls >= 0.8,
    # the cut-off halfway between 0.6 and 0.8.
    y = [0, 0, 1, 0, 1, 1]
    p = [0.1, 0.3, 0.4, 0.6, 0.8, 0.9]
    assert choose_threshold(y, p, "youden") == pytest.approx(0.7)
    # sensitivity >= 0.9 needs every positive: calls >= 0.4, cut-off halfway between 0.3 and 0.4
    assert choose_threshold(y, p, "sensitivity", 0.9) == pytest.approx(0.35)
    # specificity >= 0.6 (2 of 3 negatives below): calls >= 0.4 is the most positive calls allowed
    assert choose_threshold(y, p, "specificity", 0.6) == pytest.approx(0.35)
    # every photo positive: just below the lowest score, never on it
    low = choose_threshold([1, 0, 1], [0.2, 0.5, 0.9], "sensitivity", 1.0)
    assert low < 0.2 and low == pytest.approx(0.2)


def test_sensitivity_target_gives_highest_threshold_reaching_it():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 150)
    p = rng.random(150) + 0.3 * y
    t = choose_threshold(y, p, "sensitivity", 0.9)
    sens = lambda th: ((p >= th) & (y == 1)).sum() / y.sum()  # noqa: E731
    assert sens(t) >= 0.9
    point = min(s for s in set(p) if s > t)  # the lowest score called positive
    assert sens(point) == sens(t) and t == pytest.approx((point + _next_lower(p, point)) / 2)
    assert all(sens(s) < 0.9 for s in set(p) if s > point)
    spec = lambda th: ((p < th) & (y == 0)).sum() / (1 - y).sum()  # noqa: E731
    ts = choose_threshold(y, p, "specificity", 0.8)
    assert spec(ts) >= 0.8 and all(spec(s) < 0.8 for s in set(p) if s < ts)


def test_parse_threshold_forms_and_errors():
    assert parse_threshold("0.3").value == 0.3 and parse_threshold("0.3").method == "fixed"
    assert parse_threshold("youden").method == "youden"
    r = parse_threshold("sens:0.90")
    assert (r.method, r.target) == ("sensitivity", 0.9)
    assert parse_threshold("spec=0.8").method == "specificity"
    for bad in ("1.5", "maybe", "sens:2"):
        with pytest.raises(ValueError):
            parse_threshold(bad)


def test_fitted_threshold_without_validation_is_refused():
    with pytest.raises(ValueError, match="validation"):
        resolve_thresholds("youden", ["acne_vs_rosacea"], None)
    val = _frame()
    test = _frame().assign(image_path=lambda f: "test/" + f.image_path, patient_id=lambda f: "t" + f.patient_id)
    with pytest.raises(ValueError, match="evaluated predictions"):
        resolve_thresholds("youden", ["acne_vs_rosacea"], val, "val.csv")
    th, method = resolve_thresholds("youden", ["acne_vs_rosacea"], val, "val.csv", evaluated=test)
    part = val[val.task == "acne_vs_rosacea"]
    assert th["acne_vs_rosacea"] == choose_threshold(part.y_true, part.y_prob, "youden")
    assert "youden" in method and "val.csv" in method
    with pytest.raises(ValueError, match="both classes"):
        choose_threshold([1, 1], [0.2, 0.3])


def test_a_repeated_image_and_task_is_refused():
    df = _frame()
    doubled = pd.concat([df, df.iloc[[3]]], ignore_index=True)
    with pytest.raises(ValueError, match="repeat an \\(image, task\\) pair.*acne_vs_rosacea/3.jpg"):
        evaluate_predictions(doubled, settings=EvalSettings(n_bootstrap=0))
    # the same image under two tasks is two rows of the table, not a repeat
    both = df.iloc[[0]].assign(task="psoriasis_vs_eczema")
    evaluate_predictions(pd.concat([df, both], ignore_index=True), settings=EvalSettings(n_bootstrap=0))


def test_logit_auc_interval_is_recorded_and_stays_inside_zero_one():
    # perfectly separated: the Wald interval collapses to [1, 1], the logit option does not
    y = np.array([1, 1, 1, 0, 0, 0, 0])
    p = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1, 0.05])
    wald = task_metrics(y, p, settings=EvalSettings(n_bootstrap=0, auc_ci="wald"))["auc"]
    logit = task_metrics(y, p, settings=EvalSettings(n_bootstrap=0))["auc"]  # logit is the default
    assert wald["ci"] == [1.0, 1.0] and wald["method"] == "delong"
    assert logit["value"] == 1.0 and 0 < logit["ci"][0] < 0.95 and logit["ci"][1] == 1.0
    assert logit["method"] == "newcombe-score" and "logit" in logit["note"]
    df = _frame()
    m = evaluate_predictions(df, settings=EvalSettings(n_bootstrap=0, auc_ci="logit"))
    assert m["auc_ci"] == "logit"
    assert all(e["auc"]["method"] == "delong-logit" for e in m["tasks"].values())


def test_bootstrap_resamples_the_split_groups_when_the_predictions_carry_them():
    df = _frame()
    # no patient ids, but the split grouped images three by three (near duplicates)
    df = df.assign(patient_id="", split_group=[i // 3 for i in range(len(df))])
    m = evaluate_predictions(df, settings=EvalSettings(n_bootstrap=50))
    acne = m["tasks"]["acne_vs_rosacea"]["bootstrap"]
    assert acne["unit"] == "split group" and acne["n_units"] == 17  # 50 images, groups of 3: 16 + 1 of 2
    table = metrics_table(m)
    assert set(table["bootstrap_unit"]) == {"split group"}
    # without ids and groups the unit is the image, and it says so
    plain = evaluate_predictions(df.drop(columns="split_group"), settings=EvalSettings(n_bootstrap=50))
    assert plain["tasks"]["acne_vs_rosacea"]["bootstrap"]["unit"] == "image"
    assert plain["tasks"]["acne_vs_rosacea"]["bootstrap"]["n_units"] == 50


def test_per_row_thresholds_count_each_row_at_its_own_cut_off():
    from skin_cnn.evaluation.threshold import PER_ROW

    # fold 1 at 0.3: 0.4 (pos) TP, 0.2 (pos) FN, 0.35 (neg) FP; fold 2 at 0.6: 0.5 (pos) FN, 0.7 (pos) TP,
    # 0.55 (neg) TN, 0.1 (neg) TN
    frame = pd.DataFrame({
        "image_path": [f"{i}.jpg" for i in range(7)], "patient_id": [str(i) for i in range(7)],
        "task": "acne_vs_rosacea", "y_true": [1, 1, 0, 1, 1, 0, 0],
        "y_prob": [0.4, 0.2, 0.35, 0.5, 0.7, 0.55, 0.1], "fold": [1, 1, 1, 2, 2, 2, 2],
        "threshold": [0.3, 0.3, 0.3, 0.6, 0.6, 0.6, 0.6]})
    m = evaluate_predictions(frame, PER_ROW, "per fold", settings=EvalSettings(n_bootstrap=20))
    e = m["tasks"]["acne_vs_rosacea"]
    assert (e["tp"], e["fn"], e["tn"], e["fp"]) == (2, 2, 2, 1)
    assert e["threshold"] == {"1": 0.3, "2": 0.6}
    # one shared cut-off reads as a plain number, as before
    same = evaluate_predictions(frame.assign(threshold=0.45), PER_ROW, settings=EvalSettings(n_bootstrap=0))
    assert same["threshold"] == 0.45 and same["tasks"]["acne_vs_rosacea"]["tp"] == 2
    with pytest.raises(ValueError, match="'threshold' column"):
        evaluate_predictions(frame.drop(columns=["threshold"]), PER_ROW, settings=EvalSettings(n_bootstrap=0))

"""``skin-cnn compare``: one table of models and paired DeLong tests on the same images."""

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from sklearn.metrics import roc_auc_score

from skin_cnn.cli import cli
from skin_cnn.stats.bootstrap import iter_resample_indices, paired_auc_difference
from skin_cnn.evaluation.compare import compare_predictions, holm
from skin_cnn.stats.delong import delong_test
from skin_cnn.evaluation.threshold import choose_threshold
from skin_cnn.core.specs import EvalSettings


def frame(seed, noise, n=80, tasks=("acne_vs_rosacea", "psoriasis_vs_eczema")):
    rng = np.random.default_rng(0)
    noise_rng = np.random.default_rng(seed)
    rows = []
    for task in tasks:
        y = (rng.random(n) < 0.4).astype(int)
        base = rng.normal(y * 1.2, 1.0)
        p = 1 / (1 + np.exp(-(base + noise_rng.normal(0, noise, n))))
        rows += [
            {
                "image_path": f"{task}/{i}.jpg",
                "patient_id": f"p{i}",
                "task": task,
                "y_true": int(y[i]),
                "y_prob": float(p[i]),
            }
            for i in range(n)
        ]
    return pd.DataFrame(rows)


def test_table_and_tests_match_independent_computations():
    frames = {"A": frame(1, 0.2), "B": frame(2, 1.0), "C": frame(3, 2.0)}
    table, tests = compare_predictions(frames)
    assert len(table) == 2 * 3 and len(tests) == 2 * 3
    for _, r in table.iterrows():
        f = frames[r["model"]]
        part = f[f.task == r["task"]]
        assert r["auc"] == pytest.approx(roc_auc_score(part.y_true, part.y_prob))
        assert r["accuracy"] == pytest.approx(((part.y_prob >= 0.5) == part.y_true).mean())
        assert r["auc_ci_low"] < r["auc"] < r["auc_ci_high"]
    r = tests[
        (tests.task == "acne_vs_rosacea") & (tests.model_a == "A") & (tests.model_b == "C")
    ].iloc[0]
    a, c = frames["A"], frames["C"]
    ref = delong_test(
        a[a.task == "acne_vs_rosacea"].y_true,
        a[a.task == "acne_vs_rosacea"].y_prob,
        c[c.task == "acne_vs_rosacea"].y_prob,
    )
    assert r["p_value"] == pytest.approx(ref["p_value"])
    assert r["difference"] == pytest.approx(
        roc_auc_score(a[a.task == "acne_vs_rosacea"].y_true, a[a.task == "acne_vs_rosacea"].y_prob)
        - roc_auc_score(
            c[c.task == "acne_vs_rosacea"].y_true, c[c.task == "acne_vs_rosacea"].y_prob
        )
    )


def test_rows_are_matched_by_image_and_task_not_by_order():
    a = frame(1, 0.5)
    b = frame(2, 0.5)
    shuffled = b.sample(frac=1, random_state=0)
    _, t1 = compare_predictions({"A": a, "B": b})
    _, t2 = compare_predictions({"A": a, "B": shuffled})
    np.testing.assert_allclose(t1["p_value"], t2["p_value"])


def test_different_image_sets_are_an_error():
    a = frame(1, 0.5)
    b = frame(2, 0.5).iloc[:-3]
    with pytest.raises(ValueError, match="same images"):
        compare_predictions({"A": a, "B": b})
    c = frame(2, 0.5)
    c.loc[0, "y_true"] = 1 - c.loc[0, "y_true"]
    with pytest.raises(ValueError, match="disagree on the label"):
        compare_predictions({"A": a, "B": c})


def test_models_that_name_an_images_patient_differently_are_refused_and_an_empty_id_is_filled():
    from skin_cnn.evaluation.compare import aligned

    a, b = frame(1, 0.5), frame(2, 0.5)
    b.loc[3, "patient_id"] = "someone-else"
    with pytest.raises(ValueError, match=r"B and A disagree on the patient_id of acne_vs_rosacea/3.jpg "
                                         r"\(someone-else against p3\)"):
        compare_predictions({"A": a, "B": b})
    # a file without patient ids (e.g. predictions of a folder) takes them from the file that has them
    anonymous = frame(2, 0.5).assign(patient_id="")
    for order in (("A", "B"), ("B", "A")):
        frames = dict(zip(order, (a, anonymous) if order[0] == "A" else (anonymous, a)))
        merged = aligned(frames)
        assert merged.set_index(["image_path", "task"])["patient_id"].to_dict() == \
            a.set_index(["image_path", "task"])["patient_id"].to_dict()
    # the clusters change the paired bootstrap: one patient over two images is one unit
    paired = a.copy()
    paired["patient_id"] = [f"q{i // 2}" for i in range(len(a))]
    _, by_image = compare_predictions({"A": a, "B": frame(2, 0.5)}, settings=EvalSettings(n_bootstrap=200))
    _, by_pair = compare_predictions({"A": paired, "B": frame(2, 0.5).assign(patient_id="")},
                                     settings=EvalSettings(n_bootstrap=200))
    assert (by_pair["boot_n_units"] < by_image["boot_n_units"]).all()


def test_holm_adjustment_by_hand():
    # sorted p: 0.01 (x3 = 0.03), 0.02 (x2 = 0.04), 0.04 (x1 = 0.04); original order kept
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm([0.5, None]) == [0.5, None]
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])


def test_compare_command_writes_table_and_tests(tmp_path):
    frame(1, 0.3).to_csv(tmp_path / "VGG16P.csv", index=False)
    run_b = tmp_path / "runs" / "VGG16N" / "eval_test"
    run_b.mkdir(parents=True)
    frame(2, 1.0).to_csv(run_b / "predictions_test.csv", index=False)
    out = tmp_path / "cmp"
    result = CliRunner().invoke(
        cli,
        [
            "compare",
            str(tmp_path / "VGG16P.csv"),
            str(tmp_path / "runs" / "VGG16N"),
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "compare.csv")
    assert set(table["model"]) == {"VGG16P", "VGG16N"}
    tests = pd.read_csv(out / "compare_delong.csv")
    assert len(tests) == 2 and tests["p_value"].between(0, 1).all()
    md = (out / "compare.md").read_text()
    assert "Paired tests" in md and "| Acne vs rosacea | VGG16P |" in md
    assert "Bootstrap 95% CI" in md and "resampling unit: **patient**" in md


def test_run_folder_without_evaluation_is_a_clear_error(tmp_path):
    (tmp_path / "runA").mkdir()
    frame(1, 0.3).to_csv(tmp_path / "b.csv", index=False)
    result = CliRunner().invoke(
        cli, ["compare", str(tmp_path / "runA"), str(tmp_path / "b.csv"), "-o", str(tmp_path / "o")]
    )
    assert result.exit_code != 0 and "skin-cnn evaluate" in result.output


def test_paired_bootstrap_equals_a_plain_loop_over_whole_patients():
    rng = np.random.default_rng(5)
    n = 90
    ids = [f"p{i}" for i in rng.integers(0, 30, n)]
    y = (rng.random(n) < 0.4).astype(int)
    a, b = rng.normal(y * 1.5, 1.0), rng.normal(y * 0.5, 1.0)
    res = paired_auc_difference(y, a, b, patient_ids=ids, n_resamples=300, seed=2)
    # units by hand: patients in order of first appearance; strata: all negative, all positive, both
    order = list(dict.fromkeys(ids))
    members = [np.flatnonzero(np.array(ids) == pid) for pid in order]
    strata = [0 if not y[m].any() else 1 if y[m].all() else 2 for m in members]
    diffs = []
    for batch in iter_resample_indices(len(order), 300, 2, strata=strata):
        for drawn in batch:
            rows = np.concatenate([members[u] for u in drawn])
            diffs.append(roc_auc_score(y[rows], a[rows]) - roc_auc_score(y[rows], b[rows]))
    assert res["unit"] == "patient" and res["n_units"] == len(order)
    assert res["difference"] == pytest.approx(roc_auc_score(y, a) - roc_auc_score(y, b))
    assert res["ci"] == pytest.approx(list(np.quantile(diffs, [0.025, 0.975])), abs=1e-12)
    diffs = np.array(diffs)
    assert res["p_value"] == pytest.approx(min(1, 2 * min((diffs <= 0).mean(), (diffs >= 0).mean())))


def test_compare_reports_the_paired_bootstrap_beside_delong():
    frames = {"A": frame(1, 0.2), "B": frame(2, 1.5)}
    _, tests = compare_predictions(frames, settings=EvalSettings(n_bootstrap=200))
    assert {"boot_ci_low", "boot_ci_high", "boot_p_value", "boot_unit"} <= set(tests.columns)
    assert (tests["boot_unit"] == "patient").all()
    assert (tests["boot_ci_low"] <= tests["difference"]).all() and (tests["difference"] <= tests["boot_ci_high"]).all()
    same = compare_predictions({"A": frames["A"], "B": frames["A"].copy()}, settings=EvalSettings(n_bootstrap=100))[1]
    assert (same["boot_ci_low"] == 0).all() and (same["boot_ci_high"] == 0).all()


def _relabelled(df, prefix):
    """The same scores on other images of other patients."""
    return df.assign(image_path=prefix + df["image_path"], patient_id=prefix + df["patient_id"])


def test_fitted_threshold_in_compare_refuses_validation_that_overlaps_the_test_images(tmp_path):
    a, b = frame(1, 0.3), frame(2, 1.0)
    a.to_csv(tmp_path / "A.csv", index=False)
    b.to_csv(tmp_path / "B.csv", index=False)
    # a copy of A's test predictions that calls itself validation
    a.assign(split="val").to_csv(tmp_path / "A_val.csv", index=False)
    _relabelled(frame(4, 1.0), "v/").to_csv(tmp_path / "B_val.csv", index=False)
    args = ["compare", str(tmp_path / "A.csv"), str(tmp_path / "B.csv"), "-o", str(tmp_path / "o"),
            "--threshold", "youden", "--n-bootstrap", "0"]
    result = CliRunner().invoke(
        cli, args + ["--val-predictions", str(tmp_path / "A_val.csv"), "--val-predictions", str(tmp_path / "B_val.csv")]
    )
    assert result.exit_code != 0 and "A_val.csv" in result.output and "images" in result.output
    val_a = _relabelled(frame(3, 0.3), "v/")
    val_a.to_csv(tmp_path / "A_val.csv", index=False)
    result = CliRunner().invoke(
        cli, args + ["--val-predictions", str(tmp_path / "A_val.csv"), "--val-predictions", str(tmp_path / "B_val.csv")]
    )
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "o" / "compare.csv")
    row = table[(table.model == "A") & (table.task == "acne_vs_rosacea")].iloc[0]
    part = val_a[val_a.task == "acne_vs_rosacea"]
    assert row["threshold"] == pytest.approx(choose_threshold(part.y_true, part.y_prob, "youden"))


def test_compare_report_shows_how_often_each_run_test_split_was_evaluated(tmp_path):
    run = tmp_path / "runP"
    (run / "eval_test").mkdir(parents=True)
    frame(1, 0.3).to_csv(run / "eval_test" / "predictions_test.csv", index=False)
    (run / "test_evaluations.json").write_text('{"count": 3, "evaluations": []}')
    frame(2, 1.0).to_csv(tmp_path / "b.csv", index=False)
    result = CliRunner().invoke(
        cli, ["compare", str(run), str(tmp_path / "b.csv"), "-o", str(tmp_path / "o"), "--n-bootstrap", "0"]
    )
    assert result.exit_code == 0, result.output
    md = (tmp_path / "o" / "compare.md").read_text()
    assert "test split evaluated 3 time(s)" in md and "test-split evaluations not known" in md


def test_per_model_auc_interval_is_the_cluster_bootstrap_first_when_patients_hold_several_images(tmp_path):
    from skin_cnn.reporting.comparison import comparison_report

    rng = np.random.default_rng(3)
    n = 60
    ids = [f"p{i // 3:02d}" for i in range(n)]  # three photos per patient, one label per patient (names sort
    # in row order, so the aligned frame keeps this order and the units are numbered as below)
    y = np.repeat((rng.random(n // 3) < 0.5).astype(int), 3)
    frames = {}
    for name, signal in (("A", 1.5), ("B", 0.4)):
        p = 1 / (1 + np.exp(-rng.normal(y * signal, 1.0)))
        frames[name] = pd.DataFrame({"image_path": [f"{i:03d}.jpg" for i in range(n)], "patient_id": ids,
                                     "task": "acne_vs_rosacea", "y_true": y, "y_prob": p})
    table, tests = compare_predictions(frames, settings=EvalSettings(n_bootstrap=300, seed=4))
    # by hand: whole patients drawn within their class (all negative / all positive), 300 resamples
    members = [np.arange(3 * k, 3 * k + 3) for k in range(n // 3)]
    strata = [int(y[m[0]]) for m in members]
    for name in ("A", "B"):
        p = frames[name]["y_prob"].to_numpy()
        aucs = [roc_auc_score(y[rows], p[rows]) for batch in iter_resample_indices(n // 3, 300, 4, strata=strata)
                for rows in (np.concatenate([members[u] for u in drawn]) for drawn in batch)]
        row = table[table["model"] == name].iloc[0]
        assert (row["auc_boot_unit"], row["auc_boot_n_units"]) == ("patient", 20)
        assert [row["auc_boot_ci_low"], row["auc_boot_ci_high"]] == pytest.approx(
            list(np.quantile(aucs, [0.025, 0.975])), abs=1e-12)
    text = comparison_report(table, tests, {"A": "a.csv", "B": "b.csv"}, 0.5).markdown(tmp_path)
    header = next(line for line in text.splitlines() if line.startswith("| Task | Model"))
    assert header.index("AUC (cluster bootstrap 95% CI)") < header.index("AUC (image-level 95% CI, secondary)")
    a = table[table["model"] == "A"].iloc[0]
    row_a = next(line for line in text.splitlines() if "| A |" in line)
    assert f"({a['auc_boot_ci_low']:.3f}–{a['auc_boot_ci_high']:.3f})" in row_a.split("|")[4]
    assert f"({a['auc_ci_low']:.3f}–{a['auc_ci_high']:.3f})" in row_a.split("|")[5]
    # one image per patient: the image-level interval stays the only one
    single = {k: v.assign(patient_id=[f"q{i}" for i in range(n)]) for k, v in frames.items()}
    table1, tests1 = compare_predictions(single, settings=EvalSettings(n_bootstrap=100))
    header1 = next(line for line in comparison_report(table1, tests1, {"A": "a", "B": "b"}, 0.5).markdown(tmp_path)
                   .splitlines() if line.startswith("| Task | Model"))
    assert "cluster bootstrap" not in header1 and "| AUC |" in header1

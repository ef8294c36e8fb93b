"""``skin-cnn evaluate`` end to end on hand-made predictions files."""

import json

import numpy as np
import pandas as pd
import pytest

from skin_cnn.core.tasks import task_title
from click.testing import CliRunner
from PIL import Image

from skin_cnn.cli import cli

# acne vs rosacea, counted by hand at threshold 0.5 (y_prob >= 0.5 positive):
# TP: 0.9 0.7 0.5 | FN: 0.2 | FP: 0.6 | TN: 0.4 0.3 0.1 0.05 0.49
ACNE = [
    (1, 0.9),
    (1, 0.7),
    (1, 0.5),
    (1, 0.2),
    (0, 0.6),
    (0, 0.4),
    (0, 0.3),
    (0, 0.1),
    (0, 0.05),
    (0, 0.49),
]
# ctcl vs eczema: TP 0.8 | FN 0.1 0.3 | TN 0.2 0.45 | FP 0.55 0.7
CTCL = [(1, 0.8), (1, 0.1), (1, 0.3), (0, 0.2), (0, 0.45), (0, 0.55), (0, 0.7)]


def write_predictions(path, shift=0.0, prefix=""):
    rows = []
    for task, data in (("acne_vs_rosacea", ACNE), ("ctcl_vs_eczema", CTCL)):
        for i, (y, p) in enumerate(data):
            rows.append(
                {
                    "image_path": f"img/{prefix}{task}_{i}.jpg",
                    "patient_id": f"{prefix}{task[:4]}{i // 2}",
                    "task": task,
                    "y_true": y,
                    "y_prob": min(1.0, max(0.0, p + shift)),
                    "source": "clinic" if i % 2 else "home",
                }
            )
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def run(*args):
    result = CliRunner().invoke(cli, list(map(str, args)), catch_exceptions=False)
    return result


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    pred = write_predictions(tmp / "pred.csv")
    out = tmp / "out"
    result = run(
        "evaluate",
        "--predictions",
        pred,
        "-o",
        out,
        "--n-bootstrap",
        200,
        "--by",
        "source",
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    return out, result


def test_metrics_json_has_hand_counted_values(evaluated):
    out, _ = evaluated
    m = json.loads((out / "metrics.json").read_text())
    assert m["threshold"] == 0.5 and m["threshold_method"] == "fixed"
    a = m["tasks"]["acne_vs_rosacea"]
    assert (a["tp"], a["fn"], a["tn"], a["fp"]) == (3, 1, 5, 1)
    assert (a["n_images"], a["n_patients"], a["positive"], a["negative"]) == (
        10,
        5,
        "acne",
        "rosacea",
    )
    assert a["sensitivity"]["value"] == 0.75 and a["accuracy"]["value"] == 0.8
    assert a["auc"]["value"] == pytest.approx(19 / 24)
    c = m["tasks"]["ctcl_vs_eczema"]
    assert (c["tp"], c["fn"], c["tn"], c["fp"]) == (1, 2, 2, 2)
    assert c["ppv"]["value"] == pytest.approx(1 / 3) and c["npv"]["value"] == 0.5
    # AUC: 0.8 beats all four negatives, 0.3 beats 0.2, 0.1 none -> 5 of 12 pairs
    assert c["auc"]["value"] == pytest.approx(5 / 12)
    assert c["bootstrap"]["unit"] == "patient" and c["bootstrap"]["n_resamples"] == 200
    assert "psoriasis_vs_eczema" not in m["tasks"]


def test_all_outputs_are_written_and_images_load(evaluated):
    out, result = evaluated
    for name in ("metrics.csv", "report.md", "report.html", "metrics_by_source.csv"):
        assert (out / name).stat().st_size > 0
    pngs = ["calibration.png", "stard_flow.png"] + [
        f"{k}_{t}.png" for k in ("roc", "confusion") for t in ("acne_vs_rosacea", "ctcl_vs_eczema")
    ]
    for name in pngs:
        with Image.open(out / name) as im:
            im.load()
            assert im.width > 300 and im.height > 300
            assert np.asarray(im.convert("L")).std() > 5  # not a blank canvas
    table = pd.read_csv(out / "metrics.csv")
    assert len(table) == 2 * 6
    row = table[(table.task == "acne_vs_rosacea") & (table.metric == "sensitivity")].iloc[0]
    # 10 images of 5 patients, too few per class for a cluster interval: the exact one stays primary
    assert row["value"] == 0.75 and row["method"] == row["image_method"] == "clopper-pearson"
    assert [row["ci_low"], row["ci_high"]] == [row["image_ci_low"], row["image_ci_high"]]
    assert pd.isna(row["bootstrap_low"]) and pd.isna(row["bootstrap_high"])
    by = pd.read_csv(out / "metrics_by_source.csv")
    assert set(by["source"]) == {"clinic", "home"}
    assert "acne_vs_rosacea" in result.output


def test_report_has_study_style_tables(evaluated):
    out, _ = evaluated
    html = (out / "report.html").read_text()
    md = (out / "report.md").read_text()
    assert html.count("<table>") >= 4 and "data:image/png;base64," in html
    assert "75.00% (" in md and "80.00% (" in md  # sensitivity and accuracy, two decimals
    assert "| predicted acne | 3 | 1 | 4 |" in md  # 2×2 table row: TP, FP, total
    assert "STARD" in md and "**19**" in md and "**23**" in md
    assert "Limitations" in md and "Subgroups by source" in md


def test_fitted_threshold_needs_validation_predictions(tmp_path):
    pred = write_predictions(tmp_path / "pred.csv")
    result = CliRunner().invoke(
        cli,
        [
            "evaluate",
            "--predictions",
            str(pred),
            "-o",
            str(tmp_path / "o"),
            "--threshold",
            "youden",
        ],
    )
    assert result.exit_code != 0 and "--val-predictions" in result.output
    result = CliRunner().invoke(
        cli,
        [
            "evaluate",
            "--predictions",
            str(pred),
            "-o",
            str(tmp_path / "o"),
            "--threshold",
            "youden",
            "--val-predictions",
            str(pred),
        ],
    )
    assert result.exit_code != 0 and "not on the predictions being evaluated" in result.output


def test_youden_threshold_chosen_on_validation_is_applied_to_test(tmp_path):
    pred = write_predictions(tmp_path / "test.csv")
    val = write_predictions(tmp_path / "val.csv", shift=0.15, prefix="val_")
    out = tmp_path / "o"
    result = run(
        "evaluate",
        "--predictions",
        pred,
        "-o",
        out,
        "--threshold",
        "youden",
        "--val-predictions",
        val,
        "--n-bootstrap",
        0,
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    m = json.loads((out / "metrics.json").read_text())
    # on the shifted validation scores the best cut for acne calls 0.65 (0.5 + 0.15) and above positive:
    # J = 3/4 + 5/6 - 1; the cut-off lies halfway to the next lower validation score, 0.64 (0.49 + 0.15)
    assert m["tasks"]["acne_vs_rosacea"]["threshold"] == pytest.approx(0.645)
    a = m["tasks"]["acne_vs_rosacea"]
    assert (a["tp"], a["fn"], a["tn"], a["fp"]) == (2, 2, 6, 0)  # 0.9 0.7 ≥ 0.65 on test
    assert "youden" in m["threshold_method"] and "val.csv" in m["threshold_method"]


def test_a_fitted_threshold_gets_intervals_that_redo_its_choice_beside_the_fixed_ones(tmp_path):
    pred, val = write_predictions(tmp_path / "test.csv"), write_predictions(tmp_path / "val.csv", shift=0.15,
                                                                              prefix="val_")
    for path in (pred, val):  # one photo per patient: too few patients per class for a cluster interval
        pd.read_csv(path).assign(patient_id=lambda f: f["image_path"]).to_csv(path, index=False)
    out = tmp_path / "o"
    result = run("evaluate", "--predictions", pred, "-o", out, "--threshold", "youden", "--val-predictions", val,
                 "--n-bootstrap", 200, "--quiet")
    assert result.exit_code == 0, result.output
    m = json.loads((out / "metrics.json").read_text())
    for entry in m["tasks"].values():
        choice = entry["threshold_choice"]
        assert choice["fixed"]["sensitivity"] == pytest.approx(entry["bootstrap"]["sensitivity"])
        assert choice["unit"] == entry["bootstrap"]["unit"] and "val.csv" in choice["method"]
        assert choice["sensitivity"][0] <= choice["sensitivity"][1]
    report = (out / "report.md").read_text()
    assert "uncertainty of choosing the threshold" in report
    # the main section shows both intervals beside each other, from metrics.json, one row per task
    main = report.split("## Sensitivity, specificity and predictive values")[1].split("\n## ")[0]
    assert "| Task | Sensitivity, threshold choice included | Sensitivity, threshold held fixed |" in main
    for task, entry in m["tasks"].items():
        row = next(line for line in main.splitlines() if line.startswith(f"| {task_title(task)} | ")
                   and "threshold" not in line and line.count("(") == 4)
        cells = [c.strip() for c in row.strip("|").split("|")]
        choice, value = entry["threshold_choice"], f"{100 * entry['sensitivity']['value']:.2f}%"
        assert cells[1] == f"{value} ({100 * choice['sensitivity'][0]:.2f}–{100 * choice['sensitivity'][1]:.2f}%)"
        assert cells[2] == (f"{value} ({100 * choice['fixed']['sensitivity'][0]:.2f}–"
                            f"{100 * choice['fixed']['sensitivity'][1]:.2f}%)")
        spec = choice["specificity"]
        assert cells[3].endswith(f"({100 * spec[0]:.2f}–{100 * spec[1]:.2f}%)")
    fixed = run("evaluate", "--predictions", pred, "-o", tmp_path / "f", "--n-bootstrap", 50, "--quiet")
    assert fixed.exit_code == 0
    assert "threshold choice included" not in (tmp_path / "f" / "report.md").read_text()
    assert not any("threshold_choice" in e for e in json.loads((tmp_path / "f" / "metrics.json").read_text())[
        "tasks"].values())


def test_flow_file_is_drawn_and_bad_flow_is_refused(tmp_path):
    pred = write_predictions(tmp_path / "pred.csv")
    flow = tmp_path / "flow.json"
    flow.write_text(
        json.dumps(
            {
                "steps": [
                    {"name": "manifest", "images": 40, "patients": 20},
                    {
                        "name": "validation",
                        "images": 30,
                        "patients": 18,
                        "excluded": {"missing file": 10},
                    },
                    {
                        "name": "split",
                        "train": {"images": 10, "patients": 6},
                        "val": {"images": 3, "patients": 2},
                        "test": {"images": 17, "patients": 10},
                    },
                ]
            }
        )
    )
    result = run(
        "evaluate",
        "--predictions",
        pred,
        "-o",
        tmp_path / "o",
        "--flow",
        flow,
        "--n-bootstrap",
        0,
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "o" / "stard_flow.png") as im:
        assert im.height > 500  # four rows of boxes
    flow.write_text(json.dumps({"steps": [{"images": 3}]}))
    result = CliRunner().invoke(
        cli,
        ["evaluate", "--predictions", str(pred), "-o", str(tmp_path / "p"), "--flow", str(flow)],
    )
    assert result.exit_code != 0 and "name" in result.output


def test_needs_exactly_one_input(tmp_path):
    result = CliRunner().invoke(cli, ["evaluate", "-o", str(tmp_path)])
    assert result.exit_code != 0 and "exactly one" in result.output


def _run_folder(tmp_path, model):
    """A run folder holding ``model`` as best.keras (32×32, no crop) and a split of random photos."""
    rng = np.random.default_rng(0)
    rows = []
    for i, (dx, split) in enumerate(
        [
            (d, s)
            for s in ("val", "test")
            for d in ("acne", "rosacea", "psoriasis", "eczema", "ctcl") * 2
        ]
    ):
        path = tmp_path / "img" / f"{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(path)
        rows.append(
            {"image_path": str(path), "patient_id": f"p{i}", "diagnosis": dx, "split": split}
        )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    pd.DataFrame(rows).to_csv(run_dir / "split.csv", index=False)
    model.save(run_dir / "best.keras")
    (run_dir / "config.json").write_text(
        json.dumps({"preprocessing": {"image_size": [32, 32], "crop": False, "resize": "stretch"}})
    )
    return run_dir


def test_run_folder_form_predicts_the_test_split(tmp_path):
    import keras

    from skin_cnn.core.tasks import TASK_NAMES

    inputs = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    outputs = {t: keras.layers.Dense(1, activation="sigmoid", name=t)(pooled) for t in TASK_NAMES}
    run_dir = _run_folder(tmp_path, keras.Model(inputs, outputs))
    result = run("evaluate", run_dir, "--n-bootstrap", 50, "--quiet")
    assert result.exit_code == 0, result.output
    out = run_dir / "eval_test"
    preds = pd.read_csv(out / "predictions_test.csv")
    assert len(preds) == 12  # 10 test images, the two eczema ones in two tasks
    assert (
        json.loads((out / "metrics.json").read_text())["tasks"]["ctcl_vs_eczema"]["n_images"] == 4
    )
    assert (out / "stard_flow.png").is_file() and (out / "report.html").is_file()


def test_report_states_the_resampling_unit_it_used(evaluated, tmp_path):
    out, _ = evaluated
    md = (out / "report.md").read_text()
    assert "Resampling unit: **patient**" in md and "within each class" in md
    assert "too few units for a cluster interval: 2 patient(s) with a positive image" in md
    pred = pd.read_csv(write_predictions(tmp_path / "p.csv")).assign(patient_id="")
    pred.to_csv(tmp_path / "anon.csv", index=False)
    result = run("evaluate", "--predictions", tmp_path / "anon.csv", "-o", tmp_path / "o",
                 "--n-bootstrap", 50, "--quiet")
    assert result.exit_code == 0, result.output
    md = (tmp_path / "o" / "report.md").read_text()
    assert "Resampling unit: **image**" in md and "images are treated as independent" in md
    assert "patient-level" not in md


@pytest.mark.parametrize("option", ["--by", "--fairness"])
def test_a_missing_column_is_refused_before_the_model_is_loaded(tmp_path, monkeypatch, option):
    import skin_cnn.inference.predictor as predict
    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(predict, "load_predictor", no_model)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    pd.DataFrame(
        [{"image_path": f"{i}.png", "patient_id": f"p{i}", "diagnosis": "acne", "split": "test",
          "source_repo": "a"} for i in range(3)]
    ).to_csv(run_dir / "split.csv", index=False)
    (run_dir / "config.json").write_text("{}")
    result = run("evaluate", run_dir, option, "source", "--n-bootstrap", 0, "--quiet")
    assert result.exit_code != 0
    message = result.output.strip().splitlines()[-1]
    assert f"{option} source" in message and "'source'" in message and "source_repo" in message
    assert "Traceback" not in result.output and not (run_dir / "eval_test").exists()


def _header(md, first):
    return next(line for line in md.splitlines() if line.startswith(f"| {first} |")).split("|")


def test_every_table_puts_sensitivity_before_specificity_and_the_auc_as_a_proportion(evaluated):
    out, result = evaluated
    md = (out / "report.md").read_text()
    metrics = json.loads((out / "metrics.json").read_text())["tasks"]
    for header in (_header(md, "Task"), _header(md, "source")):
        names = [h.strip() for h in header]
        assert names.index("Sensitivity") < names.index("Specificity")
    console = result.output.splitlines()
    names = next(line for line in console if line.startswith("task")).split()
    assert names.index("sens%") < names.index("spec%") and "auc" in names and "auc%" not in names
    auc = metrics["acne_vs_rosacea"]["auc"]
    lo, hi = auc["ci"]
    assert f"{auc['value']:.3f} ({lo:.3f}–{hi:.3f})" in md  # a proportion, three decimals
    row = next(line for line in console if line.startswith("acne_vs_rosacea")).split()
    assert row[-1] == f"{auc['value']:.3f}"
    assert f"{100 * auc['value']:.2f}%" not in md


def test_a_report_on_synthetic_images_says_so_under_every_section(tmp_path, evaluated):
    import re

    pred = write_predictions(tmp_path / "pred.csv")
    frame = pd.read_csv(pred)
    frame["synthetic"] = "true"  # the demo set's column
    frame.to_csv(pred, index=False)
    result = run("evaluate", "--predictions", pred, "-o", tmp_path / "out", "--n-bootstrap", 0, "--quiet")
    assert result.exit_code == 0, result.output
    html = (tmp_path / "out" / "report.html").read_text()
    sections = re.split(r"<h2 ", html)[1:]
    assert len(sections) > 5
    assert all("SYNTHETIC DEMO DATA" in part.split("</h2>", 1)[1][:300] for part in sections)
    assert "banner-fixed'>SYNTHETIC DEMO DATA" in html.split("<h1>")[0]
    md = (tmp_path / "out" / "report.md").read_text()
    assert md.count("SYNTHETIC DEMO DATA") == 1 + md.count("\n## ")
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["synthetic"] is True
    real = evaluated[0]  # no synthetic column: no banner
    assert "SYNTHETIC" not in (real / "report.html").read_text()


@pytest.mark.parametrize("synthetic", [True, False])
def test_a_model_trained_on_synthetic_images_gets_its_own_banner_when_evaluated_on_real_photos(tmp_path,
                                                                                             synthetic):
    import re

    from model_fixtures import plain_model

    from skin_cnn.models import with_model_info

    model = with_model_info(plain_model(), synthetic=synthetic, preprocessing={"image_size": [32, 32], "crop": False})
    run_dir = _run_folder(tmp_path, model)
    result = run("evaluate", run_dir, "--n-bootstrap", 0, "--no-leakage-audit", "--quiet")
    assert result.exit_code == 0, result.output
    out = run_dir / "eval_test"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["synthetic_model"] is synthetic
    assert "synthetic" not in metrics  # the photos are not marked synthetic: not the images' banner
    html, md = (out / "report.html").read_text(), (out / "report.md").read_text()
    assert "SYNTHETIC DEMO DATA" not in html + md
    assert ("warning: MODEL TRAINED ON SYNTHETIC IMAGES" in result.output) is synthetic
    if not synthetic:
        assert "SYNTHETIC" not in html + md
        return
    assert "banner-fixed'>MODEL TRAINED ON SYNTHETIC IMAGES" in html.split("<h1>")[0]
    sections = re.split(r"<h2 ", html)[1:]
    assert len(sections) > 5
    assert all("MODEL TRAINED ON SYNTHETIC IMAGES" in part.split("</h2>", 1)[1][:400] for part in sections)
    assert md.count("MODEL TRAINED ON SYNTHETIC IMAGES") == 1 + md.count("\n## ")
    assert "not from photos of patients" in md


@pytest.mark.parametrize("synthetic", [True, False])
def test_a_predictions_file_of_a_run_folder_is_reported_with_what_the_runs_model_says_it_learnt_from(
        tmp_path, synthetic):
    from model_fixtures import plain_model

    from skin_cnn.models import with_model_info

    model = with_model_info(plain_model(), synthetic=synthetic, preprocessing={"image_size": [32, 32], "crop": False})
    run_dir = _run_folder(tmp_path, model)
    assert run("evaluate", run_dir, "--n-bootstrap", 0, "--no-leakage-audit", "--quiet").exit_code == 0
    written = run_dir / "eval_test" / "predictions_test.csv"
    result = run("evaluate", "--predictions", written, "-o", tmp_path / "again", "--n-bootstrap", 0, "--quiet")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "again" / "metrics.json").read_text())["synthetic_model"] is synthetic
    assert ("warning: MODEL TRAINED ON SYNTHETIC IMAGES" in result.output) is synthetic
    assert ("MODEL TRAINED ON SYNTHETIC IMAGES" in (tmp_path / "again" / "report.md").read_text()) is synthetic
    # the same file moved out of the run folder: no model to ask, so nothing is claimed either way
    moved = tmp_path / "elsewhere" / "predictions.csv"
    moved.parent.mkdir()
    moved.write_bytes(written.read_bytes())
    result = run("evaluate", "--predictions", moved, "-o", tmp_path / "moved", "--n-bootstrap", 0, "--quiet")
    assert result.exit_code == 0, result.output
    assert "synthetic_model" not in json.loads((tmp_path / "moved" / "metrics.json").read_text())


@pytest.mark.parametrize("synthetic", [True, False])
def test_out_of_fold_predictions_of_a_cv_folder_are_reported_with_what_its_fold_models_learnt_from(
        tmp_path, synthetic):
    import shutil

    from model_fixtures import plain_model

    from skin_cnn.models import with_model_info

    def info(flag):
        return with_model_info(plain_model(), synthetic=flag, preprocessing={"image_size": [32, 32], "crop": False})

    run_dir = _run_folder(tmp_path, info(False))
    assert run("evaluate", run_dir, "--n-bootstrap", 0, "--no-leakage-audit", "--quiet").exit_code == 0
    cv_dir = tmp_path / "cv"
    cv_dir.mkdir()
    (cv_dir / "cv.json").write_text(json.dumps({"folds": 2}))
    oof = cv_dir / "oof_predictions.csv"
    shutil.copy(run_dir / "eval_test" / "predictions_test.csv", oof)

    def evaluated(name):
        result = run("evaluate", "--predictions", oof, "-o", tmp_path / name, "--n-bootstrap", 0, "--quiet")
        assert result.exit_code == 0, result.output
        return json.loads((tmp_path / name / "metrics.json").read_text()), result.output

    metrics, _ = evaluated("no_models")  # no fold model written yet: nothing claimed
    assert "synthetic_model" not in metrics
    for k, flag in ((1, False), (2, synthetic)):  # one synthetic-trained fold model is enough
        (cv_dir / f"fold{k}").mkdir()
        info(flag).save(cv_dir / f"fold{k}" / "best.keras")
    metrics, output = evaluated("folds")
    assert metrics["synthetic_model"] is synthetic
    assert ("warning: MODEL TRAINED ON SYNTHETIC IMAGES" in output) is synthetic


def test_a_report_on_synthetic_images_by_a_synthetic_trained_model_carries_both_banners(tmp_path, evaluated):
    from skin_cnn.reporting.report import ReportInputs, write_evaluation

    frame = pd.read_csv(write_predictions(tmp_path / "pred.csv")).assign(synthetic="true")
    metrics = write_evaluation(frame, tmp_path / "out", inputs=ReportInputs(synthetic_model=True))
    assert metrics["synthetic"] is True and metrics["synthetic_model"] is True
    md = (tmp_path / "out" / "report.md").read_text()
    assert md.count("SYNTHETIC DEMO DATA") == md.count("MODEL TRAINED ON SYNTHETIC IMAGES") == 1 + md.count("\n## ")
    # a predictions file says nothing of its model: nothing is recorded about it
    assert "synthetic_model" not in json.loads((evaluated[0] / "metrics.json").read_text())

"""Evaluating a run folder: the threshold-leak check on that path and the test-evaluation count.

The model is replaced by a stand-in that scores each image from its file name, so these tests
need no TensorFlow; the real model path is covered in test_evaluate_cli.py.
"""

import json
import shutil
import types

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from skin_cnn.cli import cli
from skin_cnn.core.tasks import TASK_NAMES
from skin_cnn.app.evaluate_run import RunEvaluationOptions, evaluate_run
from skin_cnn.core.specs import EvalSettings

DISEASES = ("acne", "rosacea", "psoriasis", "eczema", "ctcl")


def _fake_predict(monkeypatch):
    """Probabilities from a hash of the path: deterministic, class-blind, different per image."""
    import skin_cnn.inference.predictor as predict
    def predict_frame(predictor, frame, *args, **kwargs):
        n = len(frame)
        seeds = [sum(map(ord, str(p))) for p in frame["image_path"]]
        probs = {t: np.array([(s * (k + 7)) % 97 / 97 for s in seeds]) for k, t in enumerate(TASK_NAMES)}
        return predict.FramePredictions(probs, np.ones(n, dtype=bool), [])

    from skin_cnn.core.compute_precision import Precision
    from skin_cnn.core.specs import Preprocessing

    # a model with the study's outputs
    model = types.SimpleNamespace(tasks=tuple(TASK_NAMES), precision=Precision("float32"),
                                  preprocessing=Preprocessing())
    monkeypatch.setattr(predict, "load_predictor", lambda run_dir, *a, **k: model)
    monkeypatch.setattr(predict, "predict_frame", predict_frame)
    import skin_cnn.app.evaluate_run as run_evaluation

    # no model, so no trunk features to audit (tests/test_duplicates_audit.py runs the audit)
    monkeypatch.setattr(run_evaluation, "audit_leakage", lambda *a, **k: None)


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    _fake_predict(monkeypatch)
    rng = np.random.default_rng(0)
    rows = []
    for split in ("train", "val", "test"):
        for i in range(20):
            path = tmp_path / "img" / f"{split}{i}.png"
            path.parent.mkdir(exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(path)
            rows.append({"image_path": str(path), "patient_id": f"{split}-p{i // 2}",
                         "diagnosis": DISEASES[(i // 2) % 5], "split": split})
    run = tmp_path / "run"
    run.mkdir()
    pd.DataFrame(rows).to_csv(run / "split.csv", index=False)
    (run / "config.json").write_text(json.dumps({"preprocessing": {"image_size": [8, 8]}}))
    return run


def _count(run):
    return json.loads((run / "test_evaluations.json").read_text())["count"]


def test_a_copy_of_the_test_predictions_called_validation_is_refused(run_dir, tmp_path):
    evaluate_run(run_dir, settings=EvalSettings(n_bootstrap=0), progress=False)
    test = pd.read_csv(run_dir / "eval_test" / "predictions_test.csv")
    fake_val = tmp_path / "val_copy.csv"
    test.assign(split="val").to_csv(fake_val, index=False)
    with pytest.raises(ValueError, match=r"val_copy\.csv: .*overlap.*images.*patients"):
        evaluate_run(run_dir, threshold="youden", options=RunEvaluationOptions(val_predictions=fake_val),
                     settings=EvalSettings(n_bootstrap=0), progress=False)
    result = CliRunner().invoke(
        cli, ["evaluate", str(run_dir), "--threshold", "youden", "--val-predictions", str(fake_val), "--quiet"]
    )
    assert result.exit_code != 0 and "val_copy.csv" in result.output
    assert _count(run_dir) == 1  # the refused evaluations did not count


def test_the_run_val_split_is_a_valid_source_of_a_fitted_threshold(run_dir):
    m = evaluate_run(run_dir, threshold="youden", settings=EvalSettings(n_bootstrap=0), progress=False)
    assert "val split" in m["threshold_method"]


def test_every_test_evaluation_is_counted_and_shown(run_dir):
    out = run_dir / "eval_test"
    first = evaluate_run(run_dir, settings=EvalSettings(n_bootstrap=0), progress=False)
    assert first["test_evaluations"] == {"count": 1, "split": "test"}
    assert "evaluated **1** time(s)" in (out / "report.md").read_text()
    second = evaluate_run(run_dir, settings=EvalSettings(n_bootstrap=0), progress=False)
    assert second["test_evaluations"]["count"] == 2 and _count(run_dir) == 2
    report = (out / "report.md").read_text()
    assert "evaluated **2** time(s)" in report and "tuned" in report
    # the validation split is not the test split: shown, not counted
    val = evaluate_run(run_dir, split="val", settings=EvalSettings(n_bootstrap=0), progress=False)
    assert val["test_evaluations"] == {"count": 2, "split": "val"} and _count(run_dir) == 2
    assert "evaluated **2** time(s)" in (run_dir / "eval_val" / "report.md").read_text()
    # re-evaluating the run's test predictions file is one more look at the test split
    result = CliRunner().invoke(
        cli, ["evaluate", "--predictions", str(out / "predictions_test.csv"), "-o", str(run_dir / "again"),
              "--n-bootstrap", "0", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert _count(run_dir) == 3 and "3 time(s)" in result.output


def test_predictions_outside_a_run_folder_say_the_count_is_not_known(run_dir, tmp_path):
    evaluate_run(run_dir, settings=EvalSettings(n_bootstrap=0), progress=False)
    lone = tmp_path / "elsewhere" / "predictions_test.csv"
    lone.parent.mkdir()
    shutil.copy(run_dir / "eval_test" / "predictions_test.csv", lone)
    result = CliRunner().invoke(
        cli, ["evaluate", "--predictions", str(lone), "-o", str(tmp_path / "o"), "--n-bootstrap", "0", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["test_evaluations"] is None
    assert "is not known" in (tmp_path / "o" / "report.md").read_text()


def test_evaluation_package_does_not_import_model_code():
    import subprocess
    import sys

    code = (
        "import sys, skin_cnn.evaluation, skin_cnn.reporting.report, skin_cnn.evaluation.compare;"
        "bad = [m for m in sys.modules if m.startswith(('skin_cnn.training', 'skin_cnn.models', "
        "'skin_cnn.inference.predictor', 'tensorflow', 'keras')) and m != 'skin_cnn.core.predictions'];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr

"""The STARD flow along the README path: manifest check → split → cleanse apply → crop → train →
evaluate, on the synthetic demo data with broken rows, photos that are not skin, and images that
break between steps.

Every number of the evaluated split's flow is counted here by hand from the CSV files each step
wrote (its kept rows, ``*.removed.csv``, ``crop_errors.csv``, ``skipped_images.csv``,
``predictions_test.csv``), never taken from the flow code. Training is replaced by the run folder
it writes (``config.json``, ``split.csv``, ``skipped_images.csv`` with one unreadable training
image), and the model by a stand-in that scores readable images from their path and skips the
unreadable ones as the real predictor does, and the skin/non-skin filter by one that calls an
image non-skin when most of its pixels are grey (paper, forms), so the test trains no network.
"""

import json
import types

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import broken_files as bf
from skin_cnn.cli import cli
from skin_cnn.data.demo_data import generate_demo_dataset
from skin_cnn.core.tasks import TASK_NAMES
from skin_cnn.core.specs import Preprocessing
from skin_cnn.core.io import sha256_file
from skin_cnn.evaluation.flow import chain

SPLITS = ("train", "val", "test")


def _invoke(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def _csv(path):
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _fake_model(monkeypatch):
    """Probabilities from the path; an image that cannot be read is skipped with its reason."""
    import skin_cnn.inference.predictor as predict
    from skin_cnn.data.reading import ImageReadError, read_image

    def predict_frame(predictor, frame, *args, **kwargs):
        ok, skipped = [], []
        for index, row in frame.iterrows():
            try:
                read_image(row["image_path"])
                ok.append(True)
            except ImageReadError as exc:
                ok.append(False)
                skipped.append({"index": index, "image_path": row["image_path"], "split": row["split"],
                                "reason": exc.reason})
        seeds = [sum(map(ord, str(p))) for p in frame["image_path"]]
        probs = {t: np.array([(s * (k + 7)) % 97 / 97 for s in seeds]) for k, t in enumerate(TASK_NAMES)}
        return predict.FramePredictions(probs, ok, skipped)

    # a model with the study's outputs, loaded in float32
    model = types.SimpleNamespace(tasks=tuple(TASK_NAMES), preprocessing=Preprocessing(),
                                  precision=types.SimpleNamespace(describe=lambda: "precision: float32"))
    monkeypatch.setattr(predict, "load_predictor", lambda run_dir, *a, **k: model)
    monkeypatch.setattr(predict, "predict_frame", predict_frame)
    import skin_cnn.app.evaluate_run as run_evaluation

    # no model, so no trunk features to audit (tests/test_duplicates_audit.py runs the audit)
    monkeypatch.setattr(run_evaluation, "audit_leakage", lambda *a, **k: None)


class GreyFilter:
    """Stand-in skin classifier: P(non-skin) is the share of grey pixels (R, G, B within 30)."""

    input_shape = (None, 32, 32, 3)

    def predict_on_batch(self, images):
        images = np.asarray(images, dtype=float)
        if images.max() <= 1.0:
            images = images * 255
        spread = images.max(axis=-1) - images.min(axis=-1)
        return (spread < 30).mean(axis=(1, 2))


@pytest.fixture(scope="module")
def readme_path(tmp_path_factory):
    """Run the README commands once; returns the folder holding every file they wrote."""
    from skin_cnn.cleanse.nonskin_examples import make_examples

    root = tmp_path_factory.mktemp("readme")
    data = root / "data"
    generate_demo_dataset(data, n_patients_per_disease=8, images_per_patient=(2, 3), image_size=(96, 128))
    manifest = _csv(data / "manifest.csv")
    # broken rows: a missing file, a cut-off upload, the same path listed twice
    bf.truncated_jpeg(data / "images" / "cut.jpg")
    extra = [
        {"image_path": "images/gone.jpg", "patient_id": "broken-1", "diagnosis": "acne"},
        {"image_path": "images/cut.jpg", "patient_id": "broken-2", "diagnosis": "eczema"},
        {"image_path": manifest.at[0, "image_path"], "patient_id": "broken-3", "diagnosis": "acne"},
    ]
    # photos of ID slips and forms filed as patients' photos, one patient each
    make_examples(data / "nonskin", 24, seed=5, size=96, progress=False)
    diseases = ("acne", "rosacea", "psoriasis", "eczema", "ctcl")
    for k, path in enumerate(sorted((data / "nonskin").glob("*.jpg"))):
        extra.append({"image_path": f"nonskin/{path.name}", "patient_id": f"slip-{k}",
                      "diagnosis": diseases[k % 5]})
    pd.concat([manifest, pd.DataFrame(extra)], ignore_index=True).fillna("").to_csv(
        data / "manifest.csv", index=False)

    result = CliRunner().invoke(cli, ["manifest", "check", str(data / "manifest.csv"), "-o", str(root / "report"),
                                      "--quiet"])
    assert result.exit_code == 1 and "3 errors" in result.output  # broken rows reported before the split
    _invoke("split", data / "manifest.csv", "-o", data / "split.csv", "--quiet")
    import skin_cnn.cleanse.classifier as classifier

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(classifier, "load_skin_classifier", lambda folder: GreyFilter())
        _invoke("cleanse", "apply", data / "split.csv", "-o", data / "clean.csv", "--model", data, "--apply")
    # a test image damaged after cleansing: crop cannot read it
    clean = _csv(data / "clean.csv")
    test_rows = clean[clean["split"] == "test"]
    bf.truncated_jpeg(data / test_rows["image_path"].iloc[0])
    _invoke("crop", data / "clean.csv", "-o", root / "crops", "--sample", 0, "--quiet")

    # what `skin-cnn train crops/split.csv -o runs/p` leaves in its run folder
    from skin_cnn.data.split import load_split, write_split

    run = root / "runs" / "p"
    run.mkdir(parents=True)
    frame = load_split(root / "crops" / "split.csv")
    write_split(frame, run / "split.csv")
    (run / "config.json").write_text(json.dumps({
        "split": str(root / "crops" / "split.csv"),
        "split_sha256": sha256_file(root / "crops" / "split.csv"),
        "preprocessing": {"image_size": [32, 32]},
    }))
    train_image = frame.loc[frame["split"] == "train", "image_path"].iloc[0]
    pd.DataFrame([{"image_path": train_image, "split": "train", "reason": "damaged image header (OSError)"}]).to_csv(
        run / "skipped_images.csv", index=False)
    # a test image damaged after training: the model cannot read it
    second = frame.loc[frame["split"] == "test", "image_path"].iloc[1]
    bf.truncated_jpeg(second)
    return root


@pytest.fixture
def evaluated(readme_path, monkeypatch):
    _fake_model(monkeypatch)
    _invoke("evaluate", readme_path / "runs" / "p", "--n-bootstrap", 0, "--quiet")
    return readme_path / "runs" / "p" / "eval_test"


def _in(frame, split):
    part = frame[frame["split"] == split] if "split" in frame.columns else frame.iloc[:0]
    return len(part), part["patient_id"].nunique()


def test_every_number_of_the_test_flow_matches_the_files(readme_path, evaluated):
    data, crops = readme_path / "data", readme_path / "crops"
    manifest = _csv(data / "manifest.csv")
    split = _csv(data / "split.csv")
    clean, removed, unreadable = (_csv(data / f"clean{s}.csv") for s in ("", ".removed", ".unreadable"))
    cropped, crop_errors = _csv(crops / "split.csv"), _csv(crops / "crop_errors.csv")
    predictions = _csv(evaluated / "predictions_test.csv")
    steps = json.loads((evaluated / "flow.json").read_text())["steps"]
    assert [s["step"] for s in steps] == ["manifest", "validation", "split", "cleansing", "crop", "training",
                                          "evaluation"]
    manifest_step, valid, assigned, cleansing, crop, training, result = steps

    # manifest: every row, 3 broken ones among them (each its own patient id)
    assert (manifest_step["images"], manifest_step["patients"]) == (len(manifest), manifest["patient_id"].nunique())
    assert valid["images"] == len(manifest) - 3 == len(split)
    assert valid["excluded"] == {"missing file": 1, "unreadable image": 1, "duplicate image path": 1}

    # split: the test split's images, the others assigned (not excluded) to train and val
    n_test, p_test = _in(split, "test")
    assert (assigned["images"], assigned["patients"]) == (n_test, p_test)
    assert assigned["assigned"] == {"train": _in(split, "train")[0], "val": _in(split, "val")[0]}
    assert assigned["excluded"] == {}

    # cleansing: test-split rows of the kept, removed and unreadable lists
    assert (cleansing["images"], cleansing["patients"]) == _in(clean, "test")
    assert _in(removed, "test")[0] >= 1 and _in(unreadable, "test")[0] == 0  # the files say so
    assert cleansing["excluded"] == {"non-skin": _in(removed, "test")[0]}

    # crop: the test image damaged after cleansing, the one row of crop_errors.csv
    assert len(crop_errors) == 1
    assert (crop["images"], crop["patients"]) == _in(cropped, "test") and crop["images"] == cleansing["images"] - 1
    assert crop["excluded"] == {crop_errors["reason"].iloc[0].split(" (")[0]: 1}

    # training never reads the test split
    assert (training["images"], training["excluded"]) == (crop["images"], {})

    # evaluation: the images with predictions; the one damaged after training is excluded
    assert result["images"] == predictions["image_path"].nunique() == crop["images"] - 1
    assert sum(result["excluded"].values()) == 1
    assert all(s["unexplained"] == 0 for s in steps)


def test_the_report_states_the_chain_and_calls_no_split_excluded(evaluated):
    report = (evaluated / "report.md").read_text()
    flow = json.loads((evaluated / "flow.json").read_text())
    table = report.split("## Flow of images (test split)")[1].split("\n## ")[0]
    for step in flow["steps"]:
        assert f"| {step['name']} | {step['images']:,} |" in table
    train, val = flow["steps"][2]["assigned"]["train"], flow["steps"][2]["assigned"]["val"]
    assert f"assigned to train: {train:,} (not evaluated)" in table
    assert f"assigned to val: {val:,} (not evaluated)" in table
    assert "excluded, in train" not in report and "train split (not evaluated)" not in report
    assert (evaluated / "stard_flow.png").stat().st_size > 10_000


def test_the_train_split_chain_counts_the_image_training_left_out(readme_path):
    from skin_cnn.app.evaluate_run import run_record
    from skin_cnn.data.split import load_split

    run = readme_path / "runs" / "p"
    record = run_record(run, load_split(run / "split.csv"))
    steps = {s["step"]: s for s in chain(record, "train")["steps"]}
    cropped = _csv(readme_path / "crops" / "split.csv")
    assert steps["crop"]["images"] == _in(cropped, "train")[0]
    assert steps["training"]["images"] == _in(cropped, "train")[0] - 1
    assert steps["training"]["excluded"] == {"damaged image header": 1}
    assert all(s["unexplained"] == 0 for s in steps.values())


def test_a_record_beside_an_edited_csv_is_not_carried_on(readme_path, tmp_path):
    from skin_cnn.evaluation.flow import read_record

    data = readme_path / "data"
    copy = tmp_path / "clean.csv"
    copy.write_bytes((data / "clean.csv").read_bytes())
    (tmp_path / "clean.flow.json").write_bytes((data / "clean.flow.json").read_bytes())
    assert read_record(copy)["steps"][-1]["name"] == "cleansing"
    copy.write_text(copy.read_text().rsplit("\n", 2)[0] + "\n")  # one row removed by hand
    with pytest.warns(UserWarning, match="earlier version"):
        assert read_record(copy) is None


def test_a_flow_file_given_by_hand_draws_the_test_split_and_shows_what_it_cannot_explain(
        readme_path, evaluated, tmp_path):
    data = readme_path / "data"
    lone = tmp_path / "predictions_test.csv"  # outside the run folder: only --flow tells the story
    lone.write_bytes((evaluated / "predictions_test.csv").read_bytes())
    _invoke("evaluate", "--predictions", lone, "-o", tmp_path / "o", "--flow", data / "clean.flow.json",
            "--n-bootstrap", 0, "--quiet")
    steps = json.loads((tmp_path / "o" / "flow.json").read_text())["steps"]
    clean, removed = _csv(data / "clean.csv"), _csv(data / "clean.removed.csv")
    cleansing = next(s for s in steps if s["step"] == "cleansing")
    assert cleansing["images"] == _in(clean, "test")[0] != len(clean)  # test-split numbers, not whole-set
    assert cleansing["excluded"] == {"non-skin": _in(removed, "test")[0]}
    last = steps[-1]
    n_predicted = _csv(lone)["image_path"].nunique()
    # crop and the model each lost one test image; this record does not know why
    assert (last["images"], last["unexplained"]) == (n_predicted, cleansing["images"] - n_predicted) and n_predicted
    assert last["unexplained"] == 2
    assert f"not accounted for: {last['unexplained']}" in (tmp_path / "o" / "report.md").read_text()


def test_a_record_written_by_training_is_the_one_evaluated(readme_path, tmp_path):
    import shutil

    from skin_cnn.evaluation.flow import record_training
    from skin_cnn.app.evaluate_run import run_record
    from skin_cnn.data.split import load_split

    run = tmp_path / "run"
    shutil.copytree(readme_path / "runs" / "p", run, ignore=shutil.ignore_patterns("eval_*"))
    frame = load_split(run / "split.csv")
    skipped = _csv(run / "skipped_images.csv").to_dict("records")
    record_training(readme_path / "crops" / "split.csv", run, frame, skipped)
    (run / "config.json").write_text("{}")  # the split's folder is no longer known
    steps = [s["name"] for s in run_record(run, frame)["steps"]]
    assert steps == ["manifest", "validation", "split", "cleansing", "crop", "training"]
    training = chain(run_record(run, frame), "train")["steps"][-1]
    assert training["images"] == _in(_csv(readme_path / "crops" / "split.csv"), "train")[0] - 1

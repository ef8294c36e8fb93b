"""Prediction with a trained model: the run's own preprocessing, bad files skipped one by one,
and ``skin-cnn predict`` tables for photos and manifests."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from model_fixtures import preprocessing_for, shared_run, write_manifest, write_photos


@pytest.fixture(scope="module")
def run():
    return shared_run()


@pytest.fixture(scope="module")
def predictor(run):
    from skin_cnn.inference.predictor import load_predictor

    return load_predictor(run)


@pytest.fixture()
def photos(tmp_path):
    return write_photos(tmp_path / "photos", 4, seed=5)


def _bordered_photo(path, skin=(200, 150, 120), border=(0, 0, 255), size=(200, 160), width=32):
    """A photo of uniform skin colour framed by a saturated blue band of known width."""
    from PIL import Image

    pixels = np.empty((size[1], size[0], 3), np.uint8)
    pixels[:] = border
    pixels[width:-width, width:-width] = skin
    Image.fromarray(pixels).save(path)
    return (width, width, size[0] - width, size[1] - width)


def test_preprocess_cuts_the_skin_out_and_resizes_it_to_the_model(predictor, tmp_path):
    """The model sees the skin region only (a constant image), as whole numbers in 0..255."""
    known = _bordered_photo(tmp_path / "framed.png")
    tensor, box = predictor.preprocess(predictor.read(tmp_path / "framed.png"))
    assert max(abs(a - b) for a, b in zip(box, known)) <= 4
    assert tensor.dtype == np.float32 and tensor.shape == (32, 32, 3)
    np.testing.assert_array_equal(tensor, np.round(tensor))  # prepared as uint8, like training
    np.testing.assert_allclose(tensor.reshape(-1, 3).mean(axis=0), (200, 150, 120), atol=3)
    assert np.abs(tensor - np.array([200, 150, 120])).max() <= 12  # no blue band left


def test_probabilities_equal_the_model_on_the_prepared_inputs(predictor, photos):
    from skin_cnn.data.reading import read_image

    tensors = np.stack([predictor.preprocess(read_image(p))[0] for p in photos])
    expected = predictor.model.predict(tensors, verbose=0)
    probs = predictor.predict_images([read_image(p) for p in photos], batch_size=3)
    for task in predictor.tasks:
        np.testing.assert_allclose(probs[task], expected[task][:, 0], atol=1e-6)
    # the trained heads learned the synthetic task: the square photos score higher
    assert probs["acne_vs_rosacea"][1] > probs["acne_vs_rosacea"][0]


def test_run_folder_preprocessing_is_read_from_config_json(run, tmp_path):
    from skin_cnn.inference.predictor import load_predictor

    other = tmp_path / "run_nocrop"
    shutil.copytree(run, other)
    config = json.loads((other / "config.json").read_text())
    config["preprocessing"] = preprocessing_for(32, crop=False)
    (other / "config.json").write_text(json.dumps(config))

    from_dir = load_predictor(other)
    from_file = load_predictor(other / "best.keras")
    assert from_dir.preprocessing.crop is False and from_file.preprocessing.crop is False
    image = np.zeros((20, 30, 3), np.uint8)
    assert from_dir.preprocess(image)[1] == (0, 0, 30, 20)

    alone = tmp_path / "elsewhere" / "model.keras"
    alone.parent.mkdir()
    shutil.copy(run / "best.keras", alone)
    default = load_predictor(alone)
    assert default.preprocessing.crop is True
    assert default.preprocessing.image_size == (32, 32)
    assert default.preprocessing.resize == "stretch"


def test_missing_model_and_bad_config_are_clear_errors(run, tmp_path):
    from skin_cnn.inference.predictor import load_predictor

    with pytest.raises(FileNotFoundError, match="no such model file or run folder"):
        load_predictor(tmp_path / "nothing")
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(FileNotFoundError, match="none of best.keras, last.keras"):
        load_predictor(tmp_path / "empty_run")
    broken = tmp_path / "broken"
    shutil.copytree(run, broken)
    (broken / "config.json").write_text(json.dumps({"preprocessing": {"image_size": [64, 64]}}))
    with pytest.raises(ValueError, match="64×64 but model"):
        load_predictor(broken)
    (broken / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="no 'preprocessing' entry"):
        load_predictor(broken)


def test_predict_frame_skips_unreadable_files_and_keeps_row_order(predictor, photos, tmp_path):
    from skin_cnn.data.reading import read_image
    from skin_cnn.inference.predictor import predict_frame

    garbage = tmp_path / "not_an_image.jpg"
    garbage.write_text("<html>error page</html>")
    paths = [photos[0], tmp_path / "missing.png", photos[1], garbage, photos[2]]
    frame = pd.DataFrame({"image_path": [str(p) for p in paths]}, index=[10, 11, 12, 13, 14])
    result = predict_frame(predictor, frame, batch_size=2, progress=False)

    assert result.ok.tolist() == [True, False, True, False, True]
    assert [s["index"] for s in result.skipped] == [11, 13]
    assert "file not found" in result.skipped[0]["reason"]
    assert "not an image" in result.skipped[1]["reason"]
    expected = predictor.predict_images([read_image(p) for p in (photos[0], photos[1], photos[2])])
    kept, probs = result.kept(frame)
    assert kept.index.tolist() == [10, 12, 14]
    for task in predictor.tasks:
        assert np.isnan(result[task][[1, 3]]).all()
        np.testing.assert_allclose(probs[task], expected[task], atol=1e-6)


def test_predict_frame_uses_the_frames_crop_boxes(predictor, photos):
    from skin_cnn.inference.predictor import predict_frame

    box = (5, 3, 30, 25)
    frame = pd.DataFrame(
        {
            "image_path": [str(photos[1])],
            "crop_left": [box[0]],
            "crop_top": [box[1]],
            "crop_right": [box[2]],
            "crop_bottom": [box[3]],
        }
    )
    result = predict_frame(predictor.model, frame, predictor.preprocessing, progress=False)
    tensor, used = predictor.preprocess(predictor.read(photos[1]), box)
    assert used == box
    expected = predictor.predict_tensors(tensor[None])
    for task in predictor.tasks:
        assert result[task][0] == pytest.approx(expected[task][0], abs=1e-6)


# ----------------------------------------------------------------------------------------------
# the command line


def _invoke(*args):
    from skin_cnn.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_cli_photos_give_a_table_of_classes_and_gradcam_overlays(run, predictor, photos, tmp_path):
    from PIL import Image

    from skin_cnn.data.reading import read_image
    from skin_cnn.core.tasks import TASKS

    bad = tmp_path / "truncated.png"
    bad.write_bytes(photos[0].read_bytes()[:60])
    out = tmp_path / "out.csv"
    result = _invoke(
        "predict",
        run,
        photos[0],
        photos[1],
        bad,
        "-o",
        out,
        "--gradcam",
        tmp_path / "cam",
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    assert f"skipped {bad}" in result.stderr

    table = pd.read_csv(out)
    assert len(table) == 2 * 3
    expected = predictor.predict_images([read_image(photos[0]), read_image(photos[1])])
    for i, path in enumerate(photos[:2]):
        for task in predictor.tasks:
            row = table[(table.image_path == str(path)) & (table.task == task)].iloc[0]
            p = expected[task][i]
            assert row.y_prob == pytest.approx(p, abs=1e-6)
            assert row.predicted == (TASKS[task].positive if p >= 0.5 else TASKS[task].negative)
            assert row.probability == pytest.approx(max(p, 1 - p), abs=1e-6)
            assert row.threshold == 0.5 and row.threshold_rule == "default"
            assert row.question == (
                f"If it is {TASKS[task].positive.capitalize()} or "
                f"{TASKS[task].negative.capitalize()}: which one?"
            ).replace("Ctcl", "CTCL")
            # the heat map is drawn on the photo itself (48×40 here), caption below
            picture = np.asarray(Image.open(tmp_path / "cam" / f"{path.stem}_{task}_gradcam.png"))
            assert picture.shape[0] > 40 and picture.shape[1] >= 48


def test_cli_prints_a_table_and_writes_json_for_one_task(run, photos, tmp_path):
    printed = _invoke("predict", run, photos[0], "--task", "acne_vs_rosacea", "--quiet")
    assert printed.exit_code == 0
    lines = printed.stdout.strip().splitlines()
    assert "if the photo shows one of these two diseases, which one?" in lines[0]
    header = next(i for i, line in enumerate(lines) if line.startswith("image_path"))
    assert lines[header].split() == ["image_path", "task", "answer", "probability"]
    row = lines[header + 1].split()
    assert row[0] == str(photos[0]) and row[1] == "acne_vs_rosacea"
    assert row[2] in ("Acne", "Rosacea") and row[3] == "P(Acne)"
    side = "above" if row[2] == "Acne" else "below"
    assert row[5] == "—" and " ".join(row[6:]) == f"{side} this model's cut-off of 50% for acne"
    assert lines[header + 2] == (
        "cut-off (answer = first class when P >= cut-off): acne_vs_rosacea 0.5 (default)"
    )

    out = tmp_path / "one.json"
    result = _invoke(
        "predict", run, photos[0], photos[1], "--task", "ctcl_vs_eczema", "-o", out, "--quiet"
    )
    assert result.exit_code == 0
    records = json.loads(out.read_text())
    assert [r["task"] for r in records] == ["ctcl_vs_eczema"] * 2
    assert {r["predicted"] for r in records} <= {"ctcl", "eczema"}
    for r in records:
        side = "above" if r["predicted"] == "ctcl" else "below"
        assert r["reading"].endswith(f"— {side} this model's cut-off of 50% for CTCL")


@pytest.mark.parametrize("p, t, text", [
    (0.30, 0.29, "30% — above this model's cut-off of 29% for psoriasis"),
    (0.10, 0.29, "10% — below this model's cut-off of 29% for psoriasis"),
    (0.291, 0.29, "29.1% — above this model's cut-off of 29.0% for psoriasis"),
    (0.29, 0.29, "29% — at this model's cut-off of 29% for psoriasis"),
])
def test_a_probability_is_read_against_the_cut_off(p, t, text):
    from skin_cnn.inference.predictor import cutoff_reading

    assert cutoff_reading(p, t, "psoriasis") == text


def test_cli_manifest_gives_the_predictions_csv_of_each_images_tasks(run, tmp_path):
    from skin_cnn.core.predictions import read_predictions

    manifest, frame = write_manifest(tmp_path / "m", n=5)  # acne, rosacea, psoriasis, eczema, ctcl
    out = tmp_path / "preds.csv"
    result = _invoke("predict", run, manifest, "-o", out, "--quiet")
    assert result.exit_code == 0, result.output
    preds = read_predictions(out)
    got = sorted(
        zip(preds.image_path.map(lambda p: p.rsplit("/", 1)[-1]), preds.task, preds.y_true)
    )
    names = [p.rsplit("/", 1)[-1] for p in frame.image_path]
    assert got == sorted(
        [
            (names[0], "acne_vs_rosacea", 1),
            (names[1], "acne_vs_rosacea", 0),
            (names[2], "psoriasis_vs_eczema", 1),
            (names[3], "psoriasis_vs_eczema", 0),
            (names[3], "ctcl_vs_eczema", 0),
            (names[4], "ctcl_vs_eczema", 1),
        ]
    )
    assert set(preds.site) == {"site0", "site1"}  # the manifest's other columns are kept


def test_cli_fails_only_when_nothing_could_be_predicted(run, tmp_path):
    bad = tmp_path / "a.jpg"
    bad.write_bytes(b"")
    result = _invoke("predict", run, bad, tmp_path / "gone.png", "--quiet")
    assert result.exit_code != 0
    assert "no image could be predicted" in result.output
    assert "empty file" in result.stderr and "file not found" in result.stderr


def test_cli_prints_long_file_names_whole(run, tmp_path):
    deep = tmp_path / ("a folder with a long name " * 3).strip() / "patient_0412_left_forearm.png"
    deep.parent.mkdir(parents=True)
    shutil.copy(write_photos(tmp_path / "p", 1)[0], deep)
    printed = _invoke("predict", run, deep, "--task", "ctcl_vs_eczema", "--quiet").stdout
    assert str(deep) in printed and "…" not in printed


def test_help_says_what_is_printed():
    text = " ".join(_invoke("predict", "--help").stdout.split())
    for words in ("which one?", "answer", "P(first class)", "cut-off", "never shortened",
                  "y_prob", "reading", "skin-cnn train --threshold youden"):
        assert words in text, words


def test_cli_refuses_mixed_inputs_and_unknown_tasks(run, photos, tmp_path):
    manifest, _ = write_manifest(tmp_path / "m", n=2)
    assert _invoke("predict", run, photos[0], manifest).exit_code == 2
    result = _invoke("predict", run, photos[0], "--task", "warts")
    assert result.exit_code != 0 and "unknown task 'warts'" in result.output

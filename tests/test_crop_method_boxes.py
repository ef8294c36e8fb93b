"""Crop boxes name the crop method that made them, and only a model cropping that way cuts with them.

A box written by ``skin-cnn crop --method study`` is not the box a ``--crop-method circular`` model
cuts: used by that model it would feed inputs that ``predict`` on the bare photo never gives it.
"""
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image
from test_crop_circular import _scene

from skin_cnn.cli import cli
from skin_cnn.core.specs import Preprocessing
from skin_cnn.data.preprocessing import model_input, run_over_photos

#: A box no hue crop would find on the scenes here: when it shapes the input, the box was used.
ODD_BOX = (10, 12, 50, 44)


def _photo(folder):
    """A photo whose skin straddles red (the two methods' boxes differ) and its skin rectangle."""
    image, skin = _scene(0.97, 0.03)
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(folder / "scene.png")
    return folder / "scene.png", image, skin


def _prep(method, **settings):
    return Preprocessing(image_size=(32, 32), crop_params=dict(settings, method=method))


def _row(path, box, named):
    row = {"image_path": str(path), **dict(zip(("crop_left", "crop_top", "crop_right", "crop_bottom"), box))}
    return row if named is None else dict(row, crop_method=named)


@pytest.mark.parametrize("method", ["study", "circular"])
def test_crop_names_the_method_of_every_box_it_writes(tmp_path, method):
    path, image, skin = _photo(tmp_path / "data")
    manifest = tmp_path / "data" / "manifest.csv"
    pd.DataFrame([{"image_path": "scene.png", "patient_id": "p1", "diagnosis": "eczema"}]).to_csv(manifest, index=False)
    out = tmp_path / "crops"
    result = CliRunner().invoke(cli, ["crop", str(manifest), "-o", str(out), "--method", method, "--sample", "0",
                                      "--quiet"])
    assert result.exit_code == 0, result.output
    for name in ("crop_boxes.csv", "manifest.csv"):
        written = pd.read_csv(out / name)
        assert list(written["crop_method"]) == [method], name
    box = tuple(pd.read_csv(out / "manifest.csv").iloc[0][["crop_left", "crop_top", "crop_right", "crop_bottom"]])
    assert (box == skin) == (method == "circular")  # only the circular hue keeps the whole skin here


@pytest.mark.parametrize("named, model, used", [
    ("study", _prep("study"), True),
    ("circular", _prep("circular"), True),
    ("study", _prep("circular"), False),  # the study's box, a circular model: its own box instead
    ("circular", _prep("study"), False),
    (None, _prep("study"), True),  # no crop_method column: boxes from before it, the study's
    ("", _prep("study"), True),
    (None, _prep("circular"), False),
    ("study", _prep("study", n_clusters=3), False),  # same method, other settings than crop uses
])
def test_a_box_shapes_the_model_input_only_when_the_models_crop_made_it(tmp_path, named, model, used):
    path, image, _ = _photo(tmp_path)
    got = {}
    unreadable = run_over_photos([_row(path, ODD_BOX, named)], model,
                                 lambda index, pixels: got.update(zip(index.tolist(), pixels)))
    assert unreadable == []
    own, own_box = model_input(image, model)  # no box given: the model's own crop of the photo
    expected = model_input(image, model, ODD_BOX)[0] if used else own
    np.testing.assert_array_equal(got[0], expected)
    assert own_box != ODD_BOX


def test_the_circular_model_cuts_the_skin_rectangle_not_the_study_box(tmp_path):
    path, image, skin = _photo(tmp_path)
    from skin_cnn.data.crop import hue_crop_box

    study_box = hue_crop_box(image, method="study")
    assert study_box != skin
    got = {}
    run_over_photos([_row(path, study_box, "study")], _prep("circular"),
                    lambda index, pixels: got.update(zip(index.tolist(), pixels)))
    np.testing.assert_array_equal(got[0], model_input(image[skin[1]:skin[3], skin[0]:skin[2]],
                                                      Preprocessing(image_size=(32, 32), crop=False))[0])


def fitting_crop_boxes(frame, preprocessing, source):
    from skin_cnn.data.crop import fitting_crop_boxes

    return fitting_crop_boxes(frame, preprocessing, source)


def _frame():
    """Four rows: a study box, a circular box, a box naming no method, and no box."""
    boxes = [(1, 2, 30, 40), (3, 4, 31, 41), (5, 6, 32, 42), (None,) * 4]
    frame = pd.DataFrame([dict(zip(("crop_left", "crop_top", "crop_right", "crop_bottom"), b)) for b in boxes])
    return frame.assign(image_path=[f"{i}.png" for i in range(4)], crop_method=["study", "circular", np.nan, np.nan])


def _boxes(frame):
    return [None if pd.isna(r.crop_left) else (int(r.crop_left), int(r.crop_top), int(r.crop_right),
                                                int(r.crop_bottom)) for r in frame.itertuples()]


def test_a_circular_model_keeps_only_the_circular_box_and_says_what_it_recomputes_in_one_line():
    out, note = fitting_crop_boxes(_frame(), _prep("circular"), "split.csv")
    assert _boxes(out) == [None, (3, 4, 31, 41), None, None]
    assert list(out["crop_method"]) == [None, "circular", None, None]
    assert "\n" not in note and note.startswith("split.csv: ")
    assert "1 crop box(es) name no crop method" in note and "taken as the study method's" in note
    assert "2 box(es) made by the study crop do not fit this model's circular crop" in note


def test_a_study_model_keeps_study_and_unnamed_boxes_and_names_their_method():
    out, note = fitting_crop_boxes(_frame(), _prep("study"), "split.csv")
    assert _boxes(out) == [(1, 2, 30, 40), None, (5, 6, 32, 42), None]
    assert list(out["crop_method"]) == ["study", None, "study", None]
    assert "1 box(es) made by the circular crop do not fit this model's study crop" in note
    # read again (the run's own split.csv), nothing is left to say
    again, second = fitting_crop_boxes(out, _prep("study"), "run/split.csv")
    assert second == "" and _boxes(again) == _boxes(out)


def test_boxes_of_the_same_method_with_other_settings_are_recomputed_and_said_so():
    frame = _frame().drop(columns="crop_method").iloc[:1]
    out, note = fitting_crop_boxes(frame, _prep("study", downscale=2), "m.csv")
    assert _boxes(out) == [None] and "this model's study (other settings) crop" in note


def test_without_the_crop_boxes_are_left_alone_and_nothing_is_said():
    frame = _frame()
    out, note = fitting_crop_boxes(frame, Preprocessing(image_size=(32, 32), crop=False), "split.csv")
    assert note == "" and out is frame


def test_predict_on_a_manifest_recomputes_boxes_of_another_crop_in_one_line(tmp_path):
    from model_fixtures import shared_run, write_manifest

    from skin_cnn.core.predictions import read_predictions

    run = shared_run()  # crops with the study method
    manifest, frame = write_manifest(tmp_path / "m", n=5)
    boxed = tmp_path / "m" / "boxed.csv"
    pd.DataFrame(frame).assign(crop_left=0, crop_top=0, crop_right=9, crop_bottom=9,
                               crop_method="circular").to_csv(boxed, index=False)
    printed = {}
    for name, source in (("plain", manifest), ("boxed", boxed)):
        result = CliRunner().invoke(cli, ["predict", str(run), str(source), "-o", str(tmp_path / f"{name}.csv"),
                                          "--quiet"])
        assert result.exit_code == 0, result.output
        printed[name] = result.output
    lines = [line for line in printed["boxed"].splitlines() if "crop" in line and "recomputed" in line]
    assert len(lines) == 1 and "boxed.csv" in lines[0] and "5 box(es) made by the circular crop" in lines[0]
    assert "recomputed" not in printed["plain"]
    plain, boxed_preds = (read_predictions(tmp_path / f"{n}.csv") for n in ("plain", "boxed"))
    np.testing.assert_array_equal(boxed_preds["y_prob"].to_numpy(), plain["y_prob"].to_numpy())


def test_a_circular_run_on_study_boxes_says_so_once_and_keeps_none_of_them(tmp_path):
    from test_training import tiny_config, tiny_split

    from skin_cnn.app.train_run import train
    from skin_cnn.data.crop import hue_crop_box
    from skin_cnn.data.reading import read_image
    from skin_cnn.data.split import load_split, write_split

    split = tiny_split(tmp_path, patients=3, broken=False)
    frame = load_split(split)
    boxes = [hue_crop_box(read_image(p), method="study") for p in frame["image_path"]]
    for i, column in enumerate(("crop_left", "crop_top", "crop_right", "crop_bottom")):
        frame[column] = [b[i] for b in boxes]
    write_split(frame, split)  # boxes from before crop_method was recorded: the study's
    lines = []
    train(tiny_config(split, tmp_path / "run", crop_method="circular", epochs=1), progress=False, echo=lines.append)
    said = [line for line in lines if "crop" in line and "recomputed" in line]
    assert len(said) == 1 and f"{len(frame)} box(es) made by the study crop" in said[0]
    assert f"{len(frame)} crop box(es) name no crop method" in said[0]
    used = load_split(tmp_path / "run" / "split.csv")
    assert len(used) == len(frame)
    for column in ("crop_left", "crop_top", "crop_right", "crop_bottom", "crop_method"):
        assert used[column].fillna("").astype(str).str.strip().eq("").all(), column
    again, note = fitting_crop_boxes(used, _prep("circular"), "run/split.csv")
    assert note == ""

"""A photo too small, or too long and thin, for the model is refused with its size, on every path."""

import numpy as np
import pandas as pd
import pytest
from model_fixtures import shared_run, write_photos
from PIL import Image

from skin_cnn.core.specs import Preprocessing
from skin_cnn.data.preprocessing import (
    MAX_ENLARGEMENT,
    MAX_SHAPE_RATIO,
    PhotoSizeError,
    model_input,
    photo_size_problem,
)


def _pre(size=250, resize="stretch"):
    return Preprocessing(image_size=(size, size), crop=False, resize=resize)


@pytest.mark.parametrize("height, width", [(46, 61), (25, 25), (100, 800), (800, 100), (3000, 4000)])
def test_photos_within_both_limits_pass(height, width):
    # 250 / 25 = 10× enlargement; 800 / 100 = 8.0 times longer than wide: both at most the limit
    assert photo_size_problem(height, width, _pre()) == ""


@pytest.mark.parametrize("height, width, words", [
    (1, 1, "enlarge it 250×"),
    (24, 24, "enlarge it 10.4×"),       # more than 10, said so
    (3, 20000, "enlarge it 83.3×"),      # the short side: 250 / 3
    (100, 801, "8.01 times longer than wide"),
    (2000, 200, "10 times longer than wide"),
])
def test_too_small_or_too_thin_photos_are_refused_with_their_size(height, width, words):
    problem = photo_size_problem(height, width, _pre())
    assert problem.startswith("too ") and f"(photo {width}×{height} pixels: " in problem and words in problem


def test_padding_judges_the_enlargement_of_the_longer_side_and_the_shape():
    # padded, a 3 × 20000 strip is shrunk, not enlarged; its shape is what is wrong
    problem = photo_size_problem(3, 20000, _pre(resize="pad"))
    assert "6667 times longer than wide" in problem and "enlarge" not in problem
    # 40 × 20 padded into 250²: the longer side is enlarged 250 / 40 = 6.25×, allowed
    assert photo_size_problem(40, 20, _pre(resize="pad")) == ""
    # 20 × 30: padded, its longer side is enlarged 250 / 30 = 8.3× (allowed); stretched, its
    # shorter side 250 / 20 = 12.5× (refused)
    assert photo_size_problem(20, 30, _pre(resize="pad")) == ""
    assert "enlarge it 12.5×" in photo_size_problem(20, 30, _pre(resize="stretch"))
    assert "enlarge it 15.6×" in photo_size_problem(16, 16, _pre(resize="pad"))


def test_the_shape_is_judged_against_a_non_square_input():
    wide = Preprocessing(image_size=(100, 400), crop=False)  # a 4:1 input
    assert photo_size_problem(100, 400, wide) == ""       # the input's own shape
    assert photo_size_problem(100, 3200, wide) == ""      # 8 times the input's ratio
    assert "9 times longer than wide" in photo_size_problem(100, 3600, wide)
    assert photo_size_problem(800, 400, wide) == ""       # 1:2 next to 4:1 is 8 times
    assert "9 times longer than wide" in photo_size_problem(900, 400, wide)  # tall next to a wide input


def test_limits_are_what_the_messages_say():
    assert f"more than {MAX_ENLARGEMENT:g}×" in photo_size_problem(1, 1, _pre())
    assert f"more than {MAX_SHAPE_RATIO:g};" in photo_size_problem(100, 900, _pre())


def test_model_input_refuses_a_one_pixel_photo():
    with pytest.raises(PhotoSizeError, match=r"too small for the model \(photo 1×1 pixels"):
        model_input(np.zeros((1, 1, 3), np.uint8), _pre(32))
    pixels, box = model_input(np.zeros((4, 4, 3), np.uint8), _pre(40))  # 10×: allowed
    assert pixels.shape == (40, 40, 3) and box == (0, 0, 4, 4)


@pytest.fixture(scope="module")
def predictor():
    from skin_cnn.inference.predictor import load_predictor

    return load_predictor(shared_run())


def test_predict_frame_skips_a_one_pixel_image_and_says_why(predictor, tmp_path):
    from skin_cnn.inference.predictor import predict_frame

    photos = write_photos(tmp_path / "photos", 2, seed=3)
    dot = tmp_path / "dot.png"
    Image.fromarray(np.full((1, 1, 3), 200, np.uint8)).save(dot)
    frame = pd.DataFrame({"image_path": [str(photos[0]), str(dot), str(photos[1])]})
    result = predict_frame(predictor, frame, batch_size=2, progress=False)
    assert result.ok.tolist() == [True, False, True]
    assert [s["image_path"] for s in result.skipped] == [str(dot)]
    assert "too small for the model (photo 1×1 pixels" in result.skipped[0]["reason"]


def test_cli_predict_names_the_tiny_photo_and_the_reason(tmp_path):
    from click.testing import CliRunner

    from skin_cnn.cli import cli

    photos = write_photos(tmp_path / "photos", 1, seed=4)
    strip = tmp_path / "photos" / "strip.png"
    Image.fromarray(np.full((3, 2000, 3), 120, np.uint8)).save(strip)
    result = CliRunner().invoke(cli, ["predict", str(shared_run()), str(photos[0]), str(strip), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "strip.png" in result.output and "too small for the model (photo 2000×3 pixels" in result.output
    assert str(photos[0].name) in result.output


def test_serve_answers_a_one_pixel_upload_with_422_and_the_reason(predictor):
    import io

    from fastapi.testclient import TestClient

    from skin_cnn.serve.app import create_app

    client = TestClient(create_app(predictor), base_url="http://localhost")
    buffer = io.BytesIO()
    Image.fromarray(np.full((1, 1, 3), 200, np.uint8)).save(buffer, format="PNG")
    response = client.post("/api/predict", files={"file": ("dot.png", buffer.getvalue(), "image/png")})
    assert response.status_code == 422
    assert response.json()["detail"].startswith("too small for the model (photo 1×1 pixels")


def test_a_flow_diagram_counts_every_size_under_one_cause():
    from skin_cnn.evaluation.flow import excluded_by_reason

    reasons = [photo_size_problem(1, 1, _pre()), photo_size_problem(20, 30, _pre()),
               photo_size_problem(100, 2000, _pre()), photo_size_problem(2000, 100, _pre())]
    rows = pd.DataFrame({"image_path": list("abcd"), "reason": reasons})
    grouped = excluded_by_reason(rows)
    assert {cause: len(r) for cause, r in grouped.items()} == {"too small for the model": 2,
                                                               "too long and thin for the model": 2}

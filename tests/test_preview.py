"""skin-cnn preview: a grid of augmented training images with their diagnoses."""
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from skin_cnn.data.augment import AugmentConfig
from skin_cnn.data.pipeline import PipelineConfig, load_images
from skin_cnn.data.preview import augmented_images, sample_rows


def _split(tmp_path, n_train=6, n_val=3):
    rows = []
    diseases = ["acne", "rosacea", "psoriasis", "eczema", "ctcl"]
    for i in range(n_train + n_val):
        colour = np.array([40 * (i % 6), 200 - 20 * i, 90], dtype=np.uint8)
        image = np.broadcast_to(colour, (20, 28, 3)).copy()
        image[:5, :7] = 255  # asymmetric: flips move the white corner
        path = tmp_path / f"img{i}.png"
        Image.fromarray(image).save(path)
        rows.append({"image_path": str(path), "patient_id": f"p{i}", "diagnosis": diseases[i % 5],
                     "split": "train" if i < n_train else "val"})
    return pd.DataFrame(rows)


def test_sample_rows_draws_only_training_rows_reproducibly(tmp_path):
    frame = _split(tmp_path)
    a, b = sample_rows(frame, n=4, seed=1), sample_rows(frame, n=4, seed=1)
    assert list(a["image_path"]) == list(b["image_path"])
    assert set(a["split"]) == {"train"} and a["image_path"].is_unique
    assert len(sample_rows(frame, n=50)) == 6  # never more than there are
    with pytest.raises(ValueError, match="no training rows"):
        sample_rows(frame[frame["split"] == "val"])


def test_augmented_images_are_pipeline_images_transformed(tmp_path):
    frame = _split(tmp_path).head(4)
    plain = PipelineConfig(image_size=(20, 28), crop="none",
                           augment=AugmentConfig(0, 0, 0, False, False))
    np.testing.assert_array_equal(augmented_images(frame, plain), load_images(frame, plain, progress=False))
    flips = PipelineConfig(image_size=(20, 28), crop="none", augment=AugmentConfig(0, 0, 0, True, True))
    flipped = augmented_images(frame, flips, seed=0)
    originals = load_images(frame, plain, progress=False)
    for out, original in zip(flipped, originals):  # each output is one of the four flips
        candidates = [original, original[::-1], original[:, ::-1], original[::-1, ::-1]]
        assert min(np.abs(out - c).max() for c in candidates) < 1e-3


def test_preview_command_writes_a_grid(tmp_path):
    from skin_cnn.cli import cli

    frame = _split(tmp_path)
    csv = tmp_path / "split.csv"
    frame.to_csv(csv, index=False)
    out = tmp_path / "grid.png"
    result = CliRunner().invoke(cli, ["preview", str(csv), "-o", str(out), "--n", "4", "--image-size", "16"])
    assert result.exit_code == 0, result.output
    assert "4 images" in result.output
    with Image.open(out) as grid:
        assert grid.format == "PNG" and grid.size[0] > 100

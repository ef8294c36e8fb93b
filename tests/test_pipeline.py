"""tf.data pipeline: per-task masks, crop boxes, decoding, augmentation, determinism, balance."""
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from skin_cnn.data.augment import AugmentConfig, augmentation_layers
from skin_cnn.data.pipeline import (
    PipelineConfig,
    balanced_weights,
    load_images,
    make_dataset,
    prepare_frame,
    preprocess_image,
)
from skin_cnn.data.reading import read_image

NO_AUGMENT = AugmentConfig(zoom=0, rotation=0, translation=0, horizontal_flip=False, vertical_flip=False)

# Hand-written from DESIGN.md §1: (task -> (weight, label)) for each disease.
EXPECTED_TARGETS = {
    "acne": {"acne_vs_rosacea": (1, 1), "psoriasis_vs_eczema": (0, None), "ctcl_vs_eczema": (0, None)},
    "rosacea": {"acne_vs_rosacea": (1, 0), "psoriasis_vs_eczema": (0, None), "ctcl_vs_eczema": (0, None)},
    "psoriasis": {"psoriasis_vs_eczema": (1, 1), "acne_vs_rosacea": (0, None), "ctcl_vs_eczema": (0, None)},
    "eczema": {"psoriasis_vs_eczema": (1, 0), "ctcl_vs_eczema": (1, 0), "acne_vs_rosacea": (0, None)},
    "ctcl": {"ctcl_vs_eczema": (1, 1), "psoriasis_vs_eczema": (0, None), "acne_vs_rosacea": (0, None)},
}


def _gradient(height, width, seed=0):
    """An asymmetric test picture (flips and rotations change it)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([255 * x / max(width - 1, 1), 255 * y / max(height - 1, 1), 60 + 0 * x], axis=-1)
    image[: height // 3, : width // 4] = rng.integers(0, 255, 3)
    return image.astype(np.uint8)


def _write(path, array, fmt=None, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format=fmt, **kwargs)
    return str(path)


def _frame(tmp_path, diagnoses, size=(24, 32), fmt="png"):
    rows = []
    for i, diagnosis in enumerate(diagnoses):
        path = _write(tmp_path / f"{diagnosis}_{i}.{fmt}", _gradient(*size, seed=i))
        rows.append({"image_path": path, "patient_id": f"p{i}", "diagnosis": diagnosis, "split": "train"})
    return pd.DataFrame(rows)


def _batches(dataset):
    images, labels, weights = [], {}, {}
    for x, y, w in dataset:
        images.append(x.numpy())
        for task in y:
            labels.setdefault(task, []).append(y[task].numpy())
            weights.setdefault(task, []).append(w[task].numpy())
    return (np.concatenate(images), {t: np.concatenate(v) for t, v in labels.items()},
            {t: np.concatenate(v) for t, v in weights.items()})


def test_masks_give_each_disease_exactly_its_tasks(tmp_path):
    diagnoses = ["acne", "rosacea", "psoriasis", "eczema", "ctcl", "eczema"]
    frame = _frame(tmp_path, diagnoses)
    config = PipelineConfig(image_size=(8, 8), batch_size=4, crop="none")
    images, labels, weights = _batches(make_dataset(frame, config, training=False))
    assert images.shape == (6, 8, 8, 3) and images.dtype == np.float32
    for task in labels:
        assert labels[task].shape == (6, 1) and weights[task].shape == (6,)
    for i, diagnosis in enumerate(diagnoses):
        for task, (weight, label) in EXPECTED_TARGETS[diagnosis].items():
            assert weights[task][i] == weight, (diagnosis, task)
            if label is not None:
                assert labels[task][i, 0] == label, (diagnosis, task)


def test_crop_boxes_are_applied_before_resizing(tmp_path):
    image = np.full((60, 80, 3), 128, dtype=np.uint8)
    image[10:40, 20:70] = (200, 30, 40)
    path = _write(tmp_path / "rect.png", image)
    frame = pd.DataFrame({"image_path": [path], "diagnosis": ["acne"],
                          "crop_left": [20], "crop_top": [10], "crop_right": [70], "crop_bottom": [40]})
    for crop in ("boxes", "auto", "hue"):
        batch = load_images(frame, PipelineConfig(image_size=(16, 16), crop=crop))
        np.testing.assert_allclose(batch[0], np.broadcast_to([200, 30, 40], (16, 16, 3)), atol=1e-3)
    uncropped = load_images(frame, PipelineConfig(image_size=(16, 16), crop="none"))
    assert np.abs(uncropped[0] - [200, 30, 40]).max() > 50  # grey border is still there


def test_hue_crop_mode_computes_boxes_for_rows_without_them(tmp_path):
    image = np.empty((120, 160, 3), dtype=np.uint8)
    image[:] = (40, 70, 170)
    image[24:96, 32:128] = (224, 172, 140)  # block-aligned skin rectangle
    path = _write(tmp_path / "skin.png", image)
    frame = pd.DataFrame({"image_path": [path], "diagnosis": ["eczema"]})
    batch = load_images(frame, PipelineConfig(image_size=(12, 12), crop=True))  # True = "hue"
    np.testing.assert_allclose(batch[0], np.broadcast_to([224, 172, 140], (12, 12, 3)), atol=1e-3)


def test_missing_box_columns_with_crop_boxes_is_a_clear_error(tmp_path):
    frame = _frame(tmp_path, ["acne"])
    with pytest.raises(ValueError, match="crop_left"):
        make_dataset(frame, PipelineConfig(crop="boxes"), training=False)


def test_jpeg_decoding_gives_the_same_pixels_as_read_image(tmp_path):
    paths = [_write(tmp_path / f"photo{i}.jpg", _gradient(45, 61, seed=i), quality=80) for i in range(3)]
    frame = pd.DataFrame({"image_path": paths, "diagnosis": ["psoriasis"] * 3})
    ok, skipped = prepare_frame(frame, progress=False)
    assert list(ok["decoder"]) == ["jpeg"] * 3 and skipped.empty
    loaded = load_images(frame, PipelineConfig(image_size=(45, 61), crop="none"))
    for path, array in zip(paths, loaded):
        np.testing.assert_allclose(array, read_image(path).astype(np.float32), atol=1e-3)


def test_exif_rotated_photos_are_decoded_upright(tmp_path):
    array = _gradient(20, 40)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    path = str(tmp_path / "phone.jpg")
    Image.fromarray(array).save(path, exif=exif.tobytes(), quality=95)
    frame = pd.DataFrame({"image_path": [path], "diagnosis": ["acne"]})
    ok, _ = prepare_frame(frame, progress=False)
    assert ok["decoder"].iloc[0] == "pillow"
    upright = read_image(path)
    assert upright.shape == (40, 20, 3)  # rotated by read_image
    loaded = load_images(frame, PipelineConfig(image_size=(40, 20), crop="none"))
    np.testing.assert_allclose(loaded[0], upright.astype(np.float32), atol=1e-3)


def test_bad_files_are_listed_with_reasons_not_dropped_silently(tmp_path):
    frame = _frame(tmp_path, ["acne", "rosacea", "ctcl"])
    good = _write(tmp_path / "good.jpg", _gradient(30, 30))
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(Path(good).read_bytes()[:200])
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    html = tmp_path / "page.jpg"
    html.write_text("<html>not found</html>")
    bad = pd.DataFrame({
        "image_path": [str(truncated), str(empty), str(html), str(tmp_path / "missing.jpg"), good],
        "diagnosis": ["eczema", "eczema", "acne", "acne", "melanoma"],
    })
    frame = pd.concat([frame, bad], ignore_index=True)
    ok, skipped = prepare_frame(frame, progress=False)
    assert len(ok) == 3
    assert set(skipped["image_path"]) == set(bad["image_path"])
    reasons = dict(zip(skipped["image_path"], skipped["reason"]))
    assert "empty" in reasons[str(empty)]
    assert "not found" in reasons[str(tmp_path / "missing.jpg")]
    assert "diagnosis" in reasons[good]
    assert all(isinstance(r, str) and r for r in reasons.values())

    dataset = make_dataset(frame, PipelineConfig(image_size=(8, 8), batch_size=2, crop="none"),
                           training=False, progress=False)
    images, _, _ = _batches(dataset)
    assert len(images) == 3
    assert set(dataset.skipped["image_path"]) == set(bad["image_path"])
    with pytest.raises(ValueError, match="truncated.jpg"):
        load_images(frame, PipelineConfig(image_size=(8, 8)))


def test_augmentation_happens_only_in_training(tmp_path):
    frame = _frame(tmp_path, ["acne"] * 4)
    config = PipelineConfig(image_size=(24, 32), batch_size=4, crop="none")
    expected = np.stack([preprocess_image(read_image(p), (24, 32)) for p in frame["image_path"]])
    evaluation, _, _ = _batches(make_dataset(frame, config, training=False))
    np.testing.assert_allclose(evaluation, expected, atol=1e-3)  # frame order, untouched

    trained, _, _ = _batches(make_dataset(frame, config, training=True))
    # Shuffled, so compare each training image with its nearest original.
    distances = [min(np.abs(t - e).mean() for e in expected) for t in trained]
    assert max(distances) > 1.0

    plain = PipelineConfig(image_size=(24, 32), batch_size=4, crop="none", augment=NO_AUGMENT)
    unaugmented, _, _ = _batches(make_dataset(frame, plain, training=True))
    distances = [min(np.abs(t - e).max() for e in expected) for t in unaugmented]
    assert max(distances) < 1e-3


def test_same_seed_gives_identical_batches_and_another_seed_does_not(tmp_path):
    frame = _frame(tmp_path, ["acne", "rosacea", "psoriasis", "eczema", "ctcl"] * 2)

    def first(seed):
        config = PipelineConfig(image_size=(16, 16), batch_size=5, crop="none", seed=seed, num_parallel_calls=2)
        x, y, _ = next(iter(make_dataset(frame, config, training=True, progress=False)))
        return x.numpy(), {t: v.numpy() for t, v in y.items()}

    a, b, c = first(1), first(1), first(2)
    np.testing.assert_array_equal(a[0], b[0])
    for task in a[1]:
        np.testing.assert_array_equal(a[1][task], b[1][task])
    assert np.abs(a[0] - c[0]).max() > 1.0


def test_epochs_are_reshuffled_and_reaugmented(tmp_path):
    frame = _frame(tmp_path, ["acne", "rosacea", "psoriasis", "eczema"] * 2)
    dataset = make_dataset(frame, PipelineConfig(image_size=(8, 8), batch_size=8, crop="none"), training=True)
    first, second = (next(iter(dataset))[0].numpy() for _ in range(2))
    assert np.abs(first - second).max() > 1.0


def test_balanced_weights_equalise_every_task():
    weights = balanced_weights(["acne"] * 50 + ["rosacea"] * 2 + ["eczema"] * 9 + ["psoriasis"] + ["ctcl"] * 3)
    assert weights == pytest.approx({d: 0.2 for d in ("acne", "rosacea", "psoriasis", "eczema", "ctcl")})
    assert balanced_weights(["acne", "rosacea", "rosacea"]) == pytest.approx({"acne": 0.5, "rosacea": 0.5})
    with pytest.raises(ValueError):
        balanced_weights([])


def test_balanced_mode_draws_each_task_class_equally_often(tmp_path):
    counts = {"acne": 12, "rosacea": 2, "psoriasis": 8, "eczema": 3, "ctcl": 1}
    diagnoses = [d for d, k in counts.items() for _ in range(k)]
    frame = _frame(tmp_path, diagnoses, size=(6, 6))
    config = PipelineConfig(image_size=(4, 4), batch_size=26, crop="none", balanced=True, augment=NO_AUGMENT)
    dataset = make_dataset(frame, config, training=True, progress=False)
    positives, members = Counter(), Counter()
    n_images = 0
    for _ in range(40):  # 40 epochs x 26 images
        for _, y, w in dataset:
            n_images += len(w["acne_vs_rosacea"])
            for task in y:
                members[task] += float(w[task].numpy().sum())
                positives[task] += float((w[task].numpy() * y[task].numpy()[:, 0]).sum())
    assert n_images == 40 * len(frame)  # an epoch keeps the training-set size
    for task in members:
        share = positives[task] / members[task]
        assert 0.44 < share < 0.56, (task, share)
    # Unbalanced, acne would be 12 / 14 of its task.
    plain = make_dataset(frame, PipelineConfig(image_size=(4, 4), batch_size=26, crop="none", augment=NO_AUGMENT),
                         training=True, progress=False)
    _, y, w = next(iter(plain))
    assert float((w["acne_vs_rosacea"].numpy() * y["acne_vs_rosacea"].numpy()[:, 0]).sum()) == 12


def test_pad_mode_keeps_the_aspect_ratio_with_black_bars(tmp_path):
    image = np.full((20, 40, 3), 200, dtype=np.uint8)
    out = preprocess_image(image, (32, 32), resize="pad")
    assert out.shape == (32, 32, 3)
    np.testing.assert_allclose(out[:7], 0.0, atol=1e-3)  # (32 - 16) / 2 = 8 rows of padding
    np.testing.assert_allclose(out[-7:], 0.0, atol=1e-3)
    np.testing.assert_allclose(out[10:22], 200.0, atol=1e-3)
    stretched = preprocess_image(image, (32, 32))
    np.testing.assert_allclose(stretched, 200.0, atol=1e-3)


def test_config_round_trips_and_accepts_training_spellings():
    config = PipelineConfig(image_size=64, crop=True, num_parallel_calls=2, augment=AugmentConfig(zoom=0.1))
    assert config.image_size == (64, 64) and config.crop == "hue"
    again = PipelineConfig.from_dict(config.to_dict())
    assert again == config
    flat = PipelineConfig.from_dict({"image_size": [32, 48], "crop": False, "zoom": 0.3, "flip": False})
    assert flat.crop == "none" and flat.augment.zoom == 0.3
    assert not flat.augment.horizontal_flip and not flat.augment.vertical_flip
    assert config.preprocessing()["crop"] is True
    assert flat.preprocessing() == {"image_size": [32, 48], "crop": False, "crop_params": {}, "resize": "stretch"}
    for bad in ({"crop": "maybe"}, {"resize": "squash"}, {"num_parallel_calls": 0}, {"image_size": (0, 3)}):
        with pytest.raises(ValueError):
            PipelineConfig(**bad)
    with pytest.raises(ValueError, match="unknown"):
        PipelineConfig.from_dict({"colour": "red"})


def test_augmentation_layers_keep_shape_and_are_identity_outside_training():
    batch = np.stack([_gradient(16, 16, seed=i) for i in range(3)]).astype("float32")
    layers = augmentation_layers(AugmentConfig(), seed=3)
    out = np.asarray(layers(batch, training=True))
    assert out.shape == batch.shape and np.abs(out - batch).max() > 1.0
    assert out.min() >= -1e-3 and out.max() <= 255 + 1e-3
    np.testing.assert_array_equal(np.asarray(layers(batch, training=False)), batch)
    again = np.asarray(augmentation_layers(AugmentConfig(), seed=3)(batch, training=True))
    np.testing.assert_allclose(out, again)
    identity = augmentation_layers(NO_AUGMENT)
    np.testing.assert_array_equal(np.asarray(identity(batch, training=True)), batch)
    names = [layer.name for layer in augmentation_layers(PipelineConfig()).layers]
    assert names == ["random_flip", "random_rotation", "random_zoom", "random_translation"]


def test_pipeline_module_imports_without_tensorflow():
    import subprocess
    import sys

    code = "import sys, skin_cnn.data.pipeline, skin_cnn.data.crop; print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.stdout.strip() == "False", result.stderr

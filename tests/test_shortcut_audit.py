"""Shortcut audit: Grad-CAM mass on the lesion box, the border band and known watermarks."""
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from skin_cnn.evaluation.shortcut import (
    DEFAULT_WATERMARKS,
    REGIONS,
    WatermarkRegion,
    cam_mass_shares,
    pick_images,
    region_labels,
    summarise_audit,
)

W_ = REGIONS.index("watermark")
B_ = REGIONS.index("border")
L_ = REGIONS.index("lesion")
O_ = REGIONS.index("other")


def test_regions_are_disjoint_in_order_of_precedence_hand_counted():
    # 10 × 20 photo: the 10% band is 1 row and 2 columns; lesion box x 4..12, y 2..8;
    # watermark x 0..5 (0.0–0.25 of 20), y 5..10 (0.5–1.0 of 10)
    labels = region_labels((10, 20, 3), (4, 2, 12, 8), [(0.0, 0.5, 0.25, 1.0)], border=0.10)
    assert labels.shape == (10, 20)
    assert (labels[5:, :5] == W_).all()                          # watermark wins over border and lesion
    assert labels[0, 10] == B_ and labels[4, 19] == B_ and labels[4, 0] == B_
    assert labels[3, 6] == L_ and labels[7, 11] == L_
    assert labels[3, 15] == O_ and labels[8, 12] == O_            # right/bottom exclusive
    counts = np.bincount(labels.ravel(), minlength=4)
    watermark = 5 * 5
    border = 20 + 20 + 2 * 8 * 2 - (5 + 2 * 4)  # band minus its part under the watermark (bottom row, left columns)
    lesion = 8 * 6 - (1 * 3)                                     # box minus rows 5..7 of columns 4 (watermark)
    assert counts[W_] == watermark and counts[B_] == border and counts[L_] == lesion
    assert counts.sum() == 200 and counts[O_] == 200 - watermark - border - lesion


def test_mass_shares_follow_the_map_and_area_shares_follow_what_was_seen():
    labels = region_labels((10, 20), (4, 2, 12, 8), [(0.0, 0.5, 0.25, 1.0)])
    only_watermark = np.where(labels == W_, 0.7, 0.0)
    shares = cam_mass_shares(only_watermark, labels)
    assert shares["mass_watermark"] == 1.0 and shares["mass_lesion"] == 0.0
    uniform = cam_mass_shares(np.ones((10, 20)), labels)
    for region in REGIONS:  # a flat map spreads its mass like the area
        assert uniform[f"mass_{region}"] == pytest.approx(uniform[f"area_{region}"])
    assert sum(uniform[f"area_{r}"] for r in REGIONS) == pytest.approx(1.0)
    # outside a crop box the model saw nothing: NaN there counts for neither mass nor area
    cam = np.full((10, 20), np.nan)
    cam[2:8, 4:12] = 1.0
    seen = cam_mass_shares(cam, labels)
    assert seen["area_watermark"] == pytest.approx(3 / 48) and seen["mass_lesion"] == pytest.approx(45 / 48)
    empty = cam_mass_shares(np.zeros((10, 20)), labels)
    assert np.isnan(empty["mass_lesion"]) and empty["area_other"] > 0
    with pytest.raises(ValueError, match="does not match"):
        cam_mass_shares(np.ones((5, 5)), labels)


def test_watermarks_apply_by_source_column_and_refuse_bad_boxes():
    dermnet = DEFAULT_WATERMARKS[0]
    assert dermnet.applies_to({"original_dataset": "DermNet NZ (dermnetnz.org) web scrape"})
    assert not dermnet.applies_to({"original_dataset": "SD-198 (Sun et al.)"})
    assert not dermnet.applies_to({})
    assert WatermarkRegion("everywhere", (0, 0, 1, 0.1)).applies_to({})
    with pytest.raises(ValueError, match="left < right"):
        WatermarkRegion("bad", (0.5, 0.0, 0.2, 1.0))


def test_summary_means_per_task_and_counts_empty_maps():
    table = pd.DataFrame([
        {"image_path": "a", "task": "t", **{f"mass_{r}": v for r, v in zip(REGIONS, (0.5, 0.5, 0, 0))},
         **{f"area_{r}": v for r, v in zip(REGIONS, (0.1, 0.3, 0.6, 0))}},
        {"image_path": "b", "task": "t", **{f"mass_{r}": v for r, v in zip(REGIONS, (0.0, 0.1, 0.9, 0))},
         **{f"area_{r}": v for r, v in zip(REGIONS, (0.0, 0.4, 0.6, 0))}},
        {"image_path": "c", "task": "t", **{f"mass_{r}": np.nan for r in REGIONS},
         **{f"area_{r}": 0.25 for r in REGIONS}},
    ])
    row = summarise_audit(table).iloc[0]
    assert row["n_images"] == 2 and row["empty_maps"] == 1 and row["with_watermark"] == 1
    assert row["mass_watermark"] == pytest.approx(0.25) and row["mass_lesion"] == pytest.approx(0.45)
    assert row["area_border"] == pytest.approx(0.35)


def test_images_are_drawn_by_seed_without_repeats():
    preds = pd.DataFrame({"image_path": [f"p{i}" for i in range(10)] * 2, "task": ["a"] * 10 + ["b"] * 10})
    first = pick_images(preds, 4, seed=1)
    assert first == pick_images(preds, 4, seed=1) and len(set(first)) == 4
    assert pick_images(preds, 50) == sorted(f"p{i}" for i in range(10))


def _red_channel_model(size=32):
    """Identity 1×1 conv, global average, heads weighing only red: Grad-CAM is the red channel."""
    import keras

    from skin_cnn.core.tasks import TASK_NAMES

    inputs = keras.Input((size, size, 3), name="image")
    conv = keras.layers.Conv2D(3, 1, name="conv")
    pooled = keras.layers.GlobalAveragePooling2D()(conv(keras.layers.Rescaling(1 / 255)(inputs)))
    outputs = {t: keras.layers.Dense(1, activation="sigmoid", name=t)(pooled) for t in TASK_NAMES}
    model = keras.Model(inputs, outputs)
    conv.set_weights([np.eye(3, dtype="float32").reshape(1, 1, 3, 3), np.zeros(3, "float32")])
    for t in TASK_NAMES:  # positive logit everywhere: the map explains the positive class
        model.get_layer(t).set_weights([np.array([[4.0], [0.0], [0.0]], "float32"), np.array([3.0], "float32")])
    return model


def test_evaluate_reports_the_red_patch_in_the_dermnet_watermark(tmp_path):
    from click.testing import CliRunner

    from skin_cnn.cli import cli

    size = 64
    wm = DEFAULT_WATERMARKS[0].box
    patch = (slice(int(0.72 * size), int(0.88 * size)), slice(int(0.12 * size), int(0.38 * size)))
    rows = []
    for i, dx in enumerate(("acne", "rosacea", "psoriasis", "eczema") * 2):
        photo = np.zeros((size, size, 3), np.uint8)
        photo[...] = (0, 60, 90)  # no red: the map is zero outside the patch
        photo[patch] = (230, 40, 40)
        path = tmp_path / "img" / f"{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(photo).save(path)
        rows.append({"image_path": str(path), "patient_id": f"p{i}", "diagnosis": dx, "split": "test",
                     "original_dataset": "DermNet NZ" if i % 2 else "SD-198"})
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    pd.DataFrame(rows).to_csv(run_dir / "split.csv", index=False)
    _red_channel_model().save(run_dir / "best.keras")
    (run_dir / "config.json").write_text(
        json.dumps({"preprocessing": {"image_size": [32, 32], "crop": False, "resize": "stretch"}}))
    result = CliRunner().invoke(cli, ["evaluate", str(run_dir), "--n-bootstrap", "0", "--quiet",
                                      "--shortcut-audit", "6"])
    assert result.exit_code == 0, result.output
    out = run_dir / "eval_test"
    table = pd.read_csv(out / "shortcut_audit.csv")
    assert table["image_path"].nunique() == 6
    # independent expectation: the share of red above the background inside the watermark box
    red = np.zeros((size, size))
    red[patch] = 1.0
    box = (slice(int(np.floor(wm[1] * size)), int(np.ceil(wm[3] * size))),
           slice(int(np.floor(wm[0] * size)), int(np.ceil(wm[2] * size))))
    assert red[box].sum() == red.sum()  # the patch lies inside the watermark box
    dermnet = table["image_path"].map({r["image_path"]: r["original_dataset"] for r in rows}) == "DermNet NZ"
    assert (table.loc[dermnet, "mass_watermark"] > 0.9).all()
    assert (table.loc[~dermnet, "mass_watermark"] == 0).all() and (table.loc[~dermnet, "area_watermark"] == 0).all()
    masses = table[[f"mass_{r}" for r in REGIONS]].sum(axis=1)
    np.testing.assert_allclose(masses, 1.0)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["shortcut_audit"]) <= {"acne_vs_rosacea", "psoriasis_vs_eczema", "ctcl_vs_eczema"}
    assert "Shortcut audit" in (out / "report.md").read_text()


def test_the_audit_needs_a_model():
    from click.testing import CliRunner

    from skin_cnn.cli import cli

    result = CliRunner().invoke(cli, ["evaluate", "--predictions", "p.csv", "-o", "x", "--shortcut-audit", "3"])
    assert result.exit_code != 0 and "needs the model" in result.output

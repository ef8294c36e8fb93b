"""Hue crop: exact 2-means, hue definition, edge scans and the box convention."""
import colorsys
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.colors import rgb_to_hsv

from skin_cnn.data.crop import (
    crop_image,
    downscaled_hue,
    hue_crop,
    hue_crop_box,
    rgb_hue,
    two_means_threshold,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from published_crop import box_iou, published_crop_box  # noqa: E402

SKIN = (224, 172, 140)
BLUE = (40, 70, 170)


def _brute_force_two_means(values):
    """Within-cluster sum of squares of every admissible cut, computed directly."""
    x = np.sort(np.asarray(values, dtype=float))
    best = (np.inf, None)
    for k in range(1, len(x)):
        if x[k] == x[k - 1]:
            continue
        lo, hi = x[:k], x[k:]
        sse = ((lo - lo.mean()) ** 2).sum() + ((hi - hi.mean()) ** 2).sum()
        if sse < best[0] - 1e-12:
            best = (sse, x[k])
    return best


def _sse(values, labels):
    return sum(((values[labels == c] - values[labels == c].mean()) ** 2).sum() for c in np.unique(labels))


# ---------------------------------------------------------------------------------------------
# hue


def test_hue_matches_matplotlib_and_colorsys_including_ties_and_greys():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (5000, 3), dtype=np.uint8)
    pixels[:300, 1] = pixels[:300, 0]  # red = green ties
    pixels[300:600, 2] = pixels[300:600, 1]  # green = blue ties
    pixels[600:900, 2] = pixels[600:900, 0]  # red = blue ties
    pixels[900:1200] = pixels[900:1200, :1]  # greys
    expected = rgb_to_hsv(pixels / 255.0)[:, 0]
    np.testing.assert_allclose(rgb_hue(pixels), expected, atol=1e-12)
    for rgb, h in zip(pixels[::97], rgb_hue(pixels[::97])):
        assert h == pytest.approx(colorsys.rgb_to_hsv(*(rgb / 255.0))[0], abs=1e-12)


def test_grey_white_and_black_pixels_have_hue_zero():
    pixels = np.array([[0, 0, 0], [255, 255, 255], [128, 128, 128], [255, 0, 0]], dtype=np.uint8)
    np.testing.assert_array_equal(rgb_hue(pixels), [0.0, 0.0, 0.0, 0.0])


def test_downscaled_hue_uses_block_means_with_partial_edge_blocks():
    # 6 x 7 image: reduced grid is ceil(6/4) x ceil(7/4) = 2 x 2; the last row/column of blocks
    # average only the pixels that exist.
    image = np.zeros((6, 7, 3), dtype=np.uint8)
    image[:4, :4] = (200, 0, 0)  # full block: pure red, hue 0
    image[:4, 4:] = (0, 200, 0)  # partial block 4x3: pure green, hue 1/3
    image[4:, :4] = (0, 0, 200)  # partial block 2x4: pure blue, hue 2/3
    image[4:, 4:] = (200, 200, 0)  # partial 2x3: yellow, hue 1/6
    hue = downscaled_hue(image)
    np.testing.assert_allclose(hue, [[0.0, 1 / 3], [2 / 3, 1 / 6]], atol=1e-12)


# ---------------------------------------------------------------------------------------------
# exact 2-means


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=2, max_size=60))
def test_two_means_threshold_is_the_brute_force_optimum(ints):
    values = np.asarray(ints, dtype=float) / 40.0  # many ties on purpose
    threshold = two_means_threshold(values)
    if len(set(ints)) == 1:
        assert threshold is None
        return
    best_sse, _ = _brute_force_two_means(values)
    labels = (values >= threshold).astype(int)
    assert _sse(values, labels) == pytest.approx(best_sse, rel=1e-9, abs=1e-12)


def test_two_means_is_never_worse_than_sklearn_kmeans():
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(3)
    for _ in range(5):
        values = np.concatenate([rng.normal(0.05, 0.03, 400), rng.normal(0.6, 0.1, 150), rng.uniform(0, 1, 50)])
        exact = (values >= two_means_threshold(values)).astype(int)
        with threadpool_limits(limits=1):
            km = KMeans(n_clusters=2, n_init=10, random_state=0).fit(values.reshape(-1, 1)).labels_
        assert _sse(values, exact) <= _sse(values, km) + 1e-9
        # Well-separated data: the partitions coincide (up to the naming of the clusters).
        agreement = max((exact == km).mean(), (exact != km).mean())
        assert agreement > 0.99


# ---------------------------------------------------------------------------------------------
# boxes


def _scene(width=400, height=300, rect=(80, 60, 320, 240), seed=0, clutter=True):
    """Skin-coloured rectangle on a noisy blue background with small clutter outside it."""
    rng = np.random.default_rng(seed)
    image = np.empty((height, width, 3), dtype=np.float64)
    image[:] = BLUE
    left, top, right, bottom = rect
    image[top:bottom, left:right] = SKIN
    image += rng.normal(0, 6, image.shape)
    if clutter:
        colours = [(250, 230, 40), (30, 160, 60), (240, 240, 240), (200, 30, 30)]
        for k in range(12):
            for _ in range(100):
                y, x = rng.integers(0, height - 10), rng.integers(0, width - 10)
                if x + 10 < left or x > right or y + 10 < top or y > bottom:
                    break
            image[y : y + 8, x : x + 8] = colours[k % len(colours)]
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    "rect",
    [(80, 60, 320, 240), (81, 63, 318, 237), (100, 40, 340, 220), (62, 90, 302, 270)],
)
def test_box_matches_a_skin_rectangle_on_a_cluttered_blue_background(rect):
    image = _scene(rect=rect, seed=sum(rect))
    box = hue_crop_box(image)
    # Edges fall on 4-pixel blocks; a block straddling the rectangle edge may be either side.
    assert np.abs(np.subtract(box, rect)).max() <= 4, (box, rect)
    # Block-aligned rectangles are found exactly: the stopping block is kept (inclusive).
    if all(v % 4 == 0 for v in rect):
        assert box == rect


def test_box_equals_the_published_loop_reference_on_synthetic_scenes():
    for seed in range(4):
        image = _scene(rect=(60 + 4 * seed, 50, 300 + 4 * seed, 230), seed=seed)
        assert hue_crop_box(image) == published_crop_box(image, estimator="kmeans", n_init=4)


def test_hand_computed_box_on_a_tiny_image_with_partial_blocks():
    # 30 x 41 image: reduced grid 8 x 11 (last block row holds 2 pixel rows, last column 1).
    # Skin occupies reduced rows 2..5 and columns 3..7; background elsewhere.
    image = np.empty((30, 41, 3), dtype=np.uint8)
    image[:] = BLUE
    image[8:24, 12:32] = SKIN
    # Skin share = 4*5/88 = 0.227 -> ratio 0.227. Rows 2..5: 5/11 = 0.45 skin -> stop.
    # Columns 3..7: 4/8 = 0.5 -> stop. Scan limits: floor(8/2.3) = 3 rows, floor(11/2.1) = 5 cols.
    # Top: row 2 (< 3) stops -> top = 8. Bottom: rows 7, 6, 5 scanned, row 5 stops -> bottom =
    # 4 * 6 = 24. Left: column 3 -> 12. Right: columns 10, 9, 8, 7 -> column 7 -> 32.
    assert hue_crop_box(image) == (12, 8, 32, 24)


def test_stop_line_beyond_the_scan_limit_leaves_the_side_uncropped():
    # 40 x 40 image, reduced 10 x 10; scan limit floor(10/2.3) = 4 rows from top and bottom.
    image = np.empty((40, 40, 3), dtype=np.uint8)
    image[:] = BLUE
    image[16:40, 8:32] = SKIN  # skin starts on reduced row 4: just beyond the top scan
    left, top, right, bottom = hue_crop_box(image)
    assert top == 0  # not found within rows 0..3 -> not cropped
    assert bottom == 40  # the bottom rows are mixed from row 9 upwards: stop at row 9, keep it
    assert (left, right) == (8, 32)


def test_lines_with_a_single_cluster_never_stop_a_scan():
    # Top half blue, bottom half skin: every row holds one cluster, so no row stops; every
    # column is half and half, so the first column stops the left and right scans at once.
    image = np.empty((64, 48, 3), dtype=np.uint8)
    image[:32] = BLUE
    image[32:] = SKIN
    assert hue_crop_box(image) == (0, 0, 48, 64)


@pytest.mark.parametrize("value", [(128, 128, 128), (0, 0, 0), SKIN])
def test_uniform_images_are_not_cropped(value):
    image = np.empty((37, 53, 3), dtype=np.uint8)
    image[:] = value
    assert hue_crop_box(image) == (0, 0, 53, 37)


def test_more_clusters_fall_back_to_kmeans_and_return_a_valid_box():
    image = _scene(seed=5)
    left, top, right, bottom = hue_crop_box(image, n_clusters=3)
    assert 0 <= left < right <= image.shape[1] and 0 <= top < bottom <= image.shape[0]


def test_ratio_bounds_change_the_crop_as_documented():
    # With a lower bound above the rectangle rows' background share, no row stops the scan.
    image = _scene(rect=(80, 60, 320, 240), clutter=False)
    # Rows inside the rectangle are 60% skin, 40% blue: a ratio of 0.45 is never exceeded by rows;
    # columns are 60% skin as well, so nothing is cropped.
    assert hue_crop_box(image, ratio_bounds=(0.45, 0.45)) == (0, 0, 400, 300)
    assert hue_crop_box(image, ratio_bounds=(0.1, 0.3)) == (80, 60, 320, 240)


def test_crop_image_slices_clips_and_rejects_empty_boxes():
    image = np.arange(5 * 6 * 3, dtype=np.uint8).reshape(5, 6, 3)
    np.testing.assert_array_equal(crop_image(image, (1, 2, 4, 5)), image[2:5, 1:4])
    np.testing.assert_array_equal(crop_image(image, (-3, -1, 99, 99)), image)
    with pytest.raises(ValueError, match="empty"):
        crop_image(image, (4, 0, 4, 5))


def test_hue_crop_is_the_image_inside_the_box():
    image = _scene(seed=2)
    left, top, right, bottom = hue_crop_box(image)
    np.testing.assert_array_equal(hue_crop(image), image[top:bottom, left:right])


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((10, 10), dtype=np.uint8), "RGB image"),
        (np.zeros((10, 10, 3), dtype=np.float32), "uint8"),
        (np.zeros((10, 10, 4), dtype=np.uint8), "RGB image"),
    ],
)
def test_invalid_images_are_rejected_with_a_clear_message(bad, message):
    with pytest.raises(ValueError, match=message):
        hue_crop_box(bad)


def test_box_iou_helper_is_correct():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0


# ---------------------------------------------------------------------------------------------
# skin-cnn crop


def test_crop_command_writes_boxes_errors_manifest_copies_and_sheet(tmp_path):
    import pandas as pd
    from click.testing import CliRunner
    from PIL import Image

    from skin_cnn.cli import cli

    images = tmp_path / "data"
    rects = {}
    rows = []
    for i, rect in enumerate([(80, 60, 320, 240), (100, 40, 340, 220)]):
        path = images / "eczema" / f"scene{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_scene(rect=rect, seed=i)).save(path)
        rects[str(path)] = rect
        rows.append({"image_path": f"eczema/scene{i}.png", "patient_id": f"p{i}", "diagnosis": "eczema"})
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    rows.append({"image_path": "broken.jpg", "patient_id": "p9", "diagnosis": "acne"})
    manifest = images / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)

    out = tmp_path / "cropped"
    result = CliRunner().invoke(cli, ["crop", str(manifest), "-o", str(out), "--copies", "--sample", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "2 of 3 images cropped" in result.output
    assert "1 unreadable" in result.output and "broken.jpg" in result.output

    boxes = pd.read_csv(out / "crop_boxes.csv")
    assert list(boxes.columns) == [
        "image_path",
        "crop_left",
        "crop_top",
        "crop_right",
        "crop_bottom",
        "crop_method",
        "width",
        "height",
    ]
    for row in boxes.itertuples(index=False):
        box = (row.crop_left, row.crop_top, row.crop_right, row.crop_bottom)
        assert box == rects[str(Path(row.image_path).resolve())]
        assert (row.width, row.height) == (400, 300)
    errors = pd.read_csv(out / "crop_errors.csv")
    assert len(errors) == 1 and errors["image_path"][0].endswith("broken.jpg") and errors["reason"][0]

    cropped_manifest = pd.read_csv(out / "manifest.csv")
    assert len(cropped_manifest) == 2 and {"crop_left", "crop_bottom", "patient_id"} <= set(cropped_manifest.columns)
    copies = pd.read_csv(out / "manifest_copies.csv")
    for rel in copies["image_path"]:
        with Image.open(out / rel) as copy:
            left, top, right, bottom = rects[str((images / Path(rel).relative_to("images")).resolve())]
            assert copy.size == (right - left, bottom - top)
    with Image.open(out / "contact_sheet.png") as sheet:
        assert sheet.size[0] > 100 and sheet.size[1] > 100
    # the copies are marked, and training with the crop on over them is refused in one line
    assert set(copies["hue_cropped"]) == {"study"}
    split = copies.assign(split=["train", "val"])
    split.to_csv(out / "split_copies.csv", index=False)
    refused = CliRunner().invoke(cli, ["train", str(out / "split_copies.csv"), "-o", str(tmp_path / "run"),
                                       "--weights", "none", "--image-size", "32", "--epochs", "1"])
    assert refused.exit_code != 0 and "Traceback" not in refused.output
    message = [line for line in refused.output.splitlines() if "hue_cropped" in line]
    assert len(message) == 1 and "split_copies.csv" in message[0] and "--no-crop" in message[0]
    assert not (tmp_path / "run" / "best.keras").exists()


def test_cropped_copies_may_train_without_the_crop_and_originals_with_it():
    import pandas as pd

    from skin_cnn.data.crop import check_not_cropped_twice

    marked = pd.DataFrame({"image_path": ["a.jpg", "b.jpg"], "hue_cropped": ["study", ""]})
    check_not_cropped_twice(marked, False, "copies.csv")  # no crop: nothing to refuse
    check_not_cropped_twice(marked.drop(columns=["hue_cropped"]), True, "raw.csv")
    check_not_cropped_twice(marked.assign(hue_cropped=float("nan")), True, "read back empty")
    with pytest.raises(ValueError, match="copies.csv: 1 photo"):
        check_not_cropped_twice(marked, True, "copies.csv")

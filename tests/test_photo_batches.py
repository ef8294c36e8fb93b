"""Photos decoded in parallel on tf.data give the pixels of the one preparation path, in order."""
import numpy as np
import pytest
from model_fixtures import write_photos

from skin_cnn.data.preprocessing import photo_batches, run_over_photos
from skin_cnn.core.specs import Preprocessing
from skin_cnn.data.preprocessing import load_model_input


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    paths = write_photos(folder, 7, size=(53, 41))
    (folder / "broken.png").write_bytes(b"not a png")
    records = [{"image_path": str(p)} for p in paths]
    records.insert(3, {"image_path": str(folder / "broken.png")})
    records[5]["crop_left"], records[5]["crop_top"], records[5]["crop_right"], records[5]["crop_bottom"] = 2, 3, 30, 40
    return records


@pytest.mark.parametrize("crop, resize", [(True, "stretch"), (False, "pad")])
def test_batches_hold_the_pixels_of_model_input_in_frame_order(rows, crop, resize):
    preprocessing = Preprocessing(image_size=(32, 32), crop=crop, resize=resize)
    seen_index, seen_pixels, reasons = [], [], []
    for index, pixels, reason in photo_batches(rows, preprocessing, batch_size=3, parallel=4).as_numpy_iterator():
        seen_index.extend(index.tolist())
        seen_pixels.extend(pixels)
        reasons.extend(r.decode() for r in reason)
    assert seen_index == list(range(len(rows)))  # parallel decoding, order kept
    for i, row in enumerate(rows):
        if i == 3:
            assert reasons[i] and not seen_pixels[i].any()
            continue
        box = (row["crop_left"], row["crop_top"], row["crop_right"], row["crop_bottom"]) if "crop_left" in row else None
        expected, _ = load_model_input(row["image_path"], preprocessing, box)
        assert reasons[i] == ""
        np.testing.assert_array_equal(seen_pixels[i], expected)  # bit for bit


def test_run_over_photos_sees_every_readable_photo_once_and_lists_the_unreadable(rows):
    calls = []
    unreadable = run_over_photos(rows, Preprocessing(image_size=(32, 32)),
                                 lambda idx, x: calls.append((idx.tolist(), x.dtype, x.shape)), batch_size=4)
    assert [i for idx, _, _ in calls for i in idx] == [0, 1, 2, 4, 5, 6, 7]
    assert {str(dtype) for _, dtype, _ in calls} == {"uint8"}
    assert len(unreadable) == 1 and unreadable[0][0] == 3 and "broken.png" in rows[3]["image_path"]


def test_prepare_images_hands_each_batch_on_as_it_writes_the_store(rows, tmp_path):
    import pandas as pd

    from skin_cnn.data.preprocessing import prepare_images

    frame = pd.DataFrame(rows).assign(split="train")
    seen = {}
    prepared, skipped = prepare_images(frame, Preprocessing(image_size=(32, 32)), tmp_path, splits=("train",),
                                       progress=False, on_batch=lambda s, r, x: seen.update(zip(r.tolist(), x)))
    train = prepared["train"]
    assert train.positions.tolist() == [0, 1, 2, 4, 5, 6, 7] and [s["split"] for s in skipped] == ["train"]
    assert sorted(seen) == list(range(len(train.store)))  # every stored row handed on once
    for row, pixels in seen.items():
        np.testing.assert_array_equal(train.store.read([row])[0], pixels)
    # only some rows asked for (preview): the others stay zero and keep their place
    part, _ = prepare_images(frame, Preprocessing(image_size=(32, 32)), tmp_path / "part", splits=("train",),
                             progress=False, rows={"train": {1, 3, 6}})
    assert part["train"].positions.tolist() == [0, 1, 2, 4, 5, 6, 7]  # row 3 unreadable: left out
    stored = part["train"].store.read(np.arange(7))
    assert not stored[[0, 2, 3, 4, 6]].any()
    np.testing.assert_array_equal(stored[1], train.store.read([1])[0])
    np.testing.assert_array_equal(stored[5], train.store.read([5])[0])

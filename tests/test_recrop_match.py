"""Re-crop-aware matching: a crop or zoom of a photo matches the photo (skin_cnn.evaluation.recrop_match)."""
import numpy as np
import pandas as pd
import pytest

from skin_cnn.evaluation.recrop_match import describe, match_scores, window_gem, window_starts


def _gem(block):
    return np.cbrt((np.maximum(block, 0) ** 3).mean(axis=(0, 1)))


def _unit(v):
    return v / np.linalg.norm(v)


def test_window_descriptors_are_the_gem_of_each_window():
    maps = np.random.default_rng(0).normal(size=(2, 7, 6, 5)).astype(np.float32)
    got = window_gem(maps, (4, 3), stride=2)
    rows, cols = window_starts(7, 4, 2), window_starts(6, 3, 2)
    assert rows == [0, 2, 3] and cols == [0, 2, 3]  # every second cell, and the last position reaching the edge
    expected = [[_gem(m[r:r + 4, c:c + 3]) for r in rows for c in cols] for m in maps]
    np.testing.assert_allclose(got, np.array(expected), rtol=1e-5, atol=1e-6)


def _photo_and_crop(rng, top, left, d=16):
    """A full-size map (12 × 12) and the map of a crop of it as the trunk would see it shrunk: its
    inner 6 × 6 cells are the photo's cells at (top, left), its border ring is padding noise."""
    photo = rng.gamma(1.0, size=(12, 12, d)).astype(np.float32) * (rng.random((12, 12, 1)) < 0.5)
    crop = rng.gamma(1.0, size=(8, 8, d)).astype(np.float32)
    crop[1:7, 1:7] = photo[top:top + 6, left:left + 6]
    return photo, crop


def test_a_crop_matches_the_window_it_was_cut_from_and_the_score_is_symmetric():
    rng = np.random.default_rng(1)
    pairs = [_photo_and_crop(rng, top, left) for top, left in ((3, 3), (0, 6), (5, 1))]
    photo_full = np.stack([p for p, _ in pairs])
    photo_shrunk = np.stack([p[:8, :8] for p, _ in pairs])  # stands in for the photo seen shrunk
    crop_full = rng.gamma(1.0, size=(3, 12, 12, 16)).astype(np.float32)  # the crop seen at full size
    crop_shrunk = np.stack([c for _, c in pairs])
    photos = describe({1.0: photo_full, 0.7: photo_shrunk})
    crops = describe({1.0: crop_full, 0.7: crop_shrunk})
    scores = match_scores(crops, photos)
    # crop k was cut from photo k: its inner cells equal one 6 × 6 window of the photo exactly
    np.testing.assert_allclose(np.diag(scores), 1.0, atol=1e-5)
    # by hand, crop 0 against photo 1: the best of the whole maps at full size, the crop's inner
    # shrunk cells against every 6 × 6 window of the photo, and the photo's against the crop's
    windows = [(r, c) for r in range(7) for c in range(7)]
    by_hand = max(
        [float(_unit(_gem(crop_full[0])) @ _unit(_gem(photo_full[1])))]
        + [float(_unit(_gem(crop_shrunk[0, 1:7, 1:7])) @ _unit(_gem(photo_full[1, r:r + 6, c:c + 6])))
           for r, c in windows]
        + [float(_unit(_gem(photo_shrunk[1, 1:7, 1:7])) @ _unit(_gem(crop_full[0, r:r + 6, c:c + 6])))
           for r, c in windows])
    assert scores[0, 1] == pytest.approx(by_hand, abs=1e-5)
    assert scores[0, 1] < 0.99  # another photo's window is not the crop
    np.testing.assert_allclose(match_scores(photos, crops), scores.T, atol=1e-6)
    # the whole-photo similarity alone does not find the crops
    whole = crops.whole[1.0] @ photos.whole[1.0].T
    assert np.diag(whole).max() < 0.99


def test_blocks_give_the_same_scores_as_one_product():
    rng = np.random.default_rng(2)
    maps = {1.0: rng.gamma(1.0, size=(5, 10, 10, 8)).astype(np.float32),
            0.5: rng.gamma(1.0, size=(5, 6, 6, 8)).astype(np.float32)}
    d = describe(maps)
    np.testing.assert_allclose(match_scores(d, d, block=2), match_scores(d, d), atol=1e-7)
    assert np.allclose(np.diag(match_scores(d, d)), 1.0, atol=1e-5)


def test_pairs_at_threshold_lists_every_pair_at_or_above_it_highest_first():
    from skin_cnn.evaluation.duplicates import pairs_at_threshold

    evaluated = pd.DataFrame({"image_path": ["t0", "t1"], "patient_id": ["a", ""]})
    training = pd.DataFrame({"image_path": ["r0", "r1", "r2"]})
    scores = np.array([[0.95, 0.2, 0.9], [0.91, 0.95, 0.1]])
    pairs = pairs_at_threshold(evaluated, training, scores, 0.9)
    assert pairs[["image_path", "train_image_path"]].values.tolist() == [["t0", "r0"], ["t1", "r1"], ["t1", "r0"],
                                                                         ["t0", "r2"]]
    assert pairs["patient_id"].tolist() == ["a", "", "", "a"] and (pairs["train_patient_id"] == "").all()
    with pytest.raises(ValueError, match="do not match"):
        pairs_at_threshold(evaluated, training, scores.T, 0.9)

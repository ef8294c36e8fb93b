"""Pixel check of the leakage audit: a re-crop lies on its photo (skin_cnn.evaluation.pixel_match)."""
import numpy as np
import pytest

from skin_cnn.evaluation import pixel_match as pm
from skin_cnn.evaluation.duplicates import verified_scores


def test_resize_matrix_averages_by_area():
    np.testing.assert_allclose(pm.resize_matrix(4, 2), [[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]])
    # 3 -> 2: each output pixel covers 1.5 input pixels, the middle one shared half and half
    np.testing.assert_allclose(pm.resize_matrix(3, 2), [[2 / 3, 1 / 3, 0], [0, 1 / 3, 2 / 3]])
    np.testing.assert_allclose(pm.resize_matrix(2, 4), [[1, 0], [1, 0], [0, 1], [0, 1]])  # enlarging repeats
    image = np.arange(16.0).reshape(4, 4)
    np.testing.assert_allclose(pm.resize(image, (2, 2)), [[2.5, 4.5], [10.5, 12.5]])  # means of 2 × 2 blocks


def test_ncc_of_a_cut_out_template_is_1_at_its_place_and_a_pearson_correlation_everywhere():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(64, 64))
    template = image[10:30, 5:40]
    scores = pm.ncc_map(template, image)
    assert scores.shape == (45, 30)
    assert scores[10, 5] == pytest.approx(1.0, abs=1e-9)
    assert np.unravel_index(scores.argmax(), scores.shape) == (10, 5)
    for r, c in ((0, 0), (3, 7), (44, 29)):
        expected = np.corrcoef(image[r:r + 20, c:c + 35].ravel(), template.ravel())[0, 1]
        assert scores[r, c] == pytest.approx(expected, abs=1e-9)
    # brightness and contrast do not matter
    np.testing.assert_allclose(pm.ncc_map(3.0 * template + 40.0, image), scores, atol=1e-9)


def test_ncc_of_unrelated_noise_is_near_0():
    rng = np.random.default_rng(1)
    scores = pm.ncc_map(rng.normal(size=(32, 32)), rng.normal(size=(64, 64)))
    # 33² correlations of 1,024 independent pixels: each about N(0, 1/32²)
    assert abs(scores.mean()) < 0.01 and scores.std() == pytest.approx(1 / 32, rel=0.2)
    assert np.abs(scores).max() < 0.2
    assert np.all(pm.ncc_map(np.ones((8, 8)), rng.normal(size=(16, 16))) == 0)  # a flat template matches nothing


def _photo(rng, side=250):
    """A random RGB picture with structure at several scales (blobs of 6 to 60 pixels)."""
    gray = sum(pm.resize(rng.normal(size=(n, n)), (side, side)) * side / n for n in (4, 12, 40))
    return np.stack([gray, 0.8 * gray, 0.5 * gray], axis=-1) * 20 + 128


def _crop_as_the_model_sees_it(photo, fraction, corner=False):
    """``fraction`` of the photo's side cut out (centred, or at the top left) and enlarged back."""
    side = photo.shape[0]
    size = round(fraction * side)
    start = 0 if corner else (side - size) // 2
    cut = photo[start:start + size, start:start + size]
    return np.stack([pm.resize(cut[..., k], (side, side)) for k in range(3)], axis=-1)


def test_a_centre_crop_scores_near_1_against_its_photo_and_low_against_another():
    rng = np.random.default_rng(2)
    photos = np.stack([_photo(rng) for _ in range(3)])
    # 70% and 50% centre crops start 37 and 62 pixels in: 9.5 and 15.9 thumbnail pixels, off any grid
    crops = np.stack([_crop_as_the_model_sees_it(photos[0], 0.7), _crop_as_the_model_sees_it(photos[1], 0.5),
                      _crop_as_the_model_sees_it(photos[2], 0.7, corner=True)])
    a, b = pm.thumbnails(crops), pm.thumbnails(photos)
    assert a.shape == (3, pm.THUMB_SIDE, pm.THUMB_SIDE) and a.dtype == np.float32
    pairs = np.array([(i, j) for i in range(3) for j in range(3)])
    scores = pm.crop_scores(a, b, pairs).reshape(3, 3)
    assert np.diag(scores).min() > 0.95  # each crop against its own photo
    assert scores[~np.eye(3, dtype=bool)].max() < 0.8  # against the other photos: well below the 0.90 default
    # either image may be the crop: swapping the two sides gives the same scores
    np.testing.assert_allclose(pm.crop_scores(b, a, pairs[:, ::-1]).reshape(3, 3), scores, atol=1e-6)
    # the same photo scores 1 at the fraction 1.0
    assert pm.crop_scores(b, b, np.array([[0, 0], [1, 1]])) == pytest.approx([1.0, 1.0], abs=1e-5)


def test_verified_scores_check_only_the_best_candidates_and_keep_the_higher_number():
    rng = np.random.default_rng(3)
    photos = np.stack([_photo(rng) for _ in range(3)])
    train = pm.thumbnails(photos)
    evaluated = pm.thumbnails(np.stack([_crop_as_the_model_sees_it(photos[1], 0.7), _photo(rng)]))
    features = np.array([[0.50, 0.80, 0.70],   # the crop of training photo 1: its best candidate
                         [0.60, 0.20, 0.95]])  # an unrelated photo: feature score 0.95 with photo 2
    score, pixel = verified_scores(features, evaluated, train, candidates=1)
    checked = np.array([[False, True, False], [False, False, True]])
    assert np.array_equal(~np.isnan(pixel), checked)
    assert pixel[0, 1] > 0.95 and pixel[1, 2] < 0.8
    np.testing.assert_allclose(score[~checked], features[~checked])  # unchecked pairs keep the feature score
    assert score[0, 1] == pytest.approx(pixel[0, 1]) and score[1, 2] == pytest.approx(0.95)
    # with two candidates the second best by features is checked too
    _, two = verified_scores(features, evaluated, train, candidates=2)
    assert np.array_equal(~np.isnan(two), checked | np.array([[False, False, True], [True, False, False]]))

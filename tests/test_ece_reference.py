"""The ECE a perfectly calibrated model would show (consistency resampling) against hand-computed
cases, a second implementation drawing the same outcomes, and what the report and metrics say."""

import numpy as np
import pytest

from skin_cnn.stats.calibration import calibration_summary, ece_if_calibrated, expected_calibration_error


def test_certain_probabilities_have_a_reference_of_zero():
    # p of 0 or 1: every draw repeats the probabilities, so each bin's share equals its mean
    reference = ece_if_calibrated([0.0, 1.0, 1.0, 0.0], observed=0.0)
    assert reference["median"] == 0 and reference["p95"] == 0 and reference["p_value"] == 1.0


def test_one_image_at_one_half_is_always_half_a_bin_off():
    # a single outcome at p = 0.5 is 0 or 1: |share − 0.5| = 0.5 in every draw
    reference = ece_if_calibrated([0.5], observed=0.5, n_resamples=100)
    assert reference["median"] == pytest.approx(0.5) and reference["p95"] == pytest.approx(0.5)
    assert reference["p_value"] == 1.0


def test_the_draws_equal_a_loop_over_expected_calibration_error_with_the_same_outcomes():
    rng = np.random.default_rng(3)
    p = rng.random(157)
    fast = ece_if_calibrated(p, observed=0.07, n_resamples=600, seed=11, chunk=250)
    again = np.random.default_rng(11)  # the same outcomes, drawn chunk by chunk as the function does
    draws = []
    for size in (250, 250, 100):
        draws += [expected_calibration_error(row.astype(int), p) for row in again.random((size, p.size)) < p]
    assert fast["median"] == pytest.approx(np.median(draws))
    assert fast["p95"] == pytest.approx(np.quantile(draws, 0.95))
    assert fast["p_value"] == pytest.approx(np.mean(np.array(draws) >= 0.07))


def test_the_reference_shrinks_with_more_images_and_a_miscalibrated_model_falls_outside_it():
    rng = np.random.default_rng(0)
    small, large = rng.random(100), rng.random(10_000)
    assert ece_if_calibrated(large)["median"] < ece_if_calibrated(small)["median"] / 5  # about 1/√n
    # every probability 0.2, every image positive: ECE 0.8, far beyond what sampling gives
    summary = calibration_summary([1] * 200, [0.2] * 200)
    assert summary["ece"] == pytest.approx(0.8)
    assert summary["ece_if_calibrated"]["p95"] < 0.1 and summary["ece_if_calibrated"]["p_value"] == 0.0


def test_outcomes_drawn_from_the_probabilities_are_rarely_outside_the_95th_percentile():
    rng = np.random.default_rng(5)
    outside = 0
    for _ in range(200):
        p = rng.random(300)
        y = (rng.random(300) < p).astype(int)
        reference = ece_if_calibrated(p, observed=expected_calibration_error(y, p), n_resamples=400,
                                      seed=int(rng.integers(1 << 30)))
        outside += reference["p_value"] < 0.05
    assert outside / 200 < 0.10  # 5% expected


def test_a_fixed_seed_gives_the_same_reference_and_no_resamples_give_none():
    p = np.linspace(0.05, 0.95, 40)
    assert ece_if_calibrated(p, seed=4) == ece_if_calibrated(p, seed=4)
    assert ece_if_calibrated(p, n_resamples=0) is None and ece_if_calibrated([]) is None
    assert calibration_summary([0, 1] * 20, p, n_resamples=0)["ece_if_calibrated"] is None


def test_reliability_bins_give_the_binomial_range_of_a_calibrated_model():
    from skin_cnn.stats.calibration import reliability_bins

    # ten images at p = 0.5 (one bin): Binomial(10, 0.5) has 2.5% and 97.5% quantiles 2 and 8
    # (P(X <= 1) = 0.011, P(X <= 2) = 0.055; P(X <= 7) = 0.945, P(X <= 8) = 0.989)
    # two images at p = 0.95 (the last bin): Binomial(2, 0.95) quantiles 1 and 2
    # (P(X = 0) = 0.0025, P(X <= 1) = 0.0975)
    bins = reliability_bins([1] * 3 + [0] * 7 + [1, 1], [0.5] * 10 + [0.95] * 2)
    assert bins["count"].tolist() == [10, 2]
    assert bins["share"].tolist() == pytest.approx([0.3, 1.0])
    assert bins["calibrated_low"].tolist() == pytest.approx([0.2, 0.5])
    assert bins["calibrated_high"].tolist() == pytest.approx([0.8, 1.0])

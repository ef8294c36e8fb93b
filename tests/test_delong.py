"""DeLong variance and paired test against a slow pairwise implementation and sklearn."""

import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from skin_cnn.stats.delong import (
    delong_ci,
    delong_covariance,
    delong_test,
    structural_components,
)


def slow_components(y, score):
    """V10, V01 by explicit double loops over all positive/negative pairs (DeLong 1988)."""
    pos = [s for s, t in zip(score, y) if t == 1]
    neg = [s for s, t in zip(score, y) if t == 0]

    def psi(x, z):
        return 1.0 if x > z else 0.5 if x == z else 0.0

    v10 = [sum(psi(x, z) for z in neg) / len(neg) for x in pos]
    v01 = [sum(psi(x, z) for x in pos) / len(pos) for z in neg]
    return np.array(v10), np.array(v01)


def slow_covariance(y, scores):
    comps = [slow_components(y, s) for s in scores]
    m, n = len(comps[0][0]), len(comps[0][1])
    k = len(scores)
    cov = np.zeros((k, k))
    for a in range(k):
        for b in range(k):
            s10 = sum(
                (comps[a][0][i] - comps[a][0].mean()) * (comps[b][0][i] - comps[b][0].mean())
                for i in range(m)
            ) / (m - 1)
            s01 = sum(
                (comps[a][1][j] - comps[a][1].mean()) * (comps[b][1][j] - comps[b][1].mean())
                for j in range(n)
            ) / (n - 1)
            cov[a, b] = s10 / m + s01 / n
    return np.array([c[0].mean() for c in comps]), cov


@pytest.fixture
def data():
    rng = np.random.default_rng(11)
    y = (rng.random(90) < 0.4).astype(int)
    a = rng.normal(y * 1.0, 1.0)
    b = np.round(0.6 * a + rng.normal(0, 0.8, 90), 1)  # rounded: many ties
    return y, a, b


def test_auc_matches_sklearn_with_and_without_ties(data):
    y, a, b = data
    auc, _, _ = structural_components(y, np.vstack([a, b]))
    assert auc == pytest.approx([roc_auc_score(y, a), roc_auc_score(y, b)], abs=1e-12)


def test_structural_components_match_double_loops(data):
    y, _, b = data
    _, v10, v01 = structural_components(y, b)
    s10, s01 = slow_components(y, b)
    np.testing.assert_allclose(v10[0], s10, atol=1e-12)
    np.testing.assert_allclose(v01[0], s01, atol=1e-12)


def test_covariance_matches_slow_implementation(data):
    y, a, b = data
    auc, cov = delong_covariance(y, np.vstack([a, b]))
    slow_auc, slow_cov = slow_covariance(y, [a, b])
    np.testing.assert_allclose(auc, slow_auc, atol=1e-12)
    np.testing.assert_allclose(cov, slow_cov, atol=1e-12)


def test_ci_is_wald_interval_of_slow_variance(data):
    y, a, _ = data
    value, ci, var = delong_ci(y, a)
    _, slow_cov = slow_covariance(y, [a])
    half = stats.norm.ppf(0.975) * math.sqrt(slow_cov[0, 0])
    assert var == pytest.approx(slow_cov[0, 0], abs=1e-14)
    assert ci == pytest.approx((value - half, value + half), abs=1e-12)


def test_paired_test_p_value_matches_slow_version(data):
    y, a, b = data
    res = delong_test(y, a, b)
    slow_auc, cov = slow_covariance(y, [a, b])
    z = (slow_auc[0] - slow_auc[1]) / math.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    assert res["z"] == pytest.approx(z, rel=1e-10)
    assert res["p_value"] == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-9)
    assert res["difference"] == pytest.approx(slow_auc[0] - slow_auc[1], abs=1e-12)


def test_identical_scores_have_no_difference_and_no_p_value(data):
    y, a, _ = data
    res = delong_test(y, a, a)
    assert res["difference"] == 0 and res["p_value"] is None


def test_ci_is_clipped_to_unit_interval_and_perfect_separation_has_zero_width():
    y = np.array([0] * 5 + [1] * 5)
    value, ci, var = delong_ci(y, np.arange(10.0))
    assert value == 1.0 and var == 0.0 and ci == (1.0, 1.0)
    # nearly perfect with few cases: the upper bound would pass 1 without clipping
    s = np.array([0.1, 0.2, 0.3, 0.4, 0.95, 0.5, 0.6, 0.7, 0.8, 0.9])
    value, ci, var = delong_ci(y, s)
    assert value + 1.96 * math.sqrt(var) > 1 and ci[1] == 1.0


def test_too_few_cases_give_no_interval_and_one_class_is_an_error():
    y = np.array([0, 0, 0, 1])
    value, ci, var = delong_ci(y, [0.1, 0.2, 0.3, 0.9])
    assert value == 1.0 and ci is None and var is None
    with pytest.raises(ValueError, match="positive and one negative"):
        delong_ci([0, 0, 0], [0.1, 0.2, 0.3])


def test_logit_interval_is_the_delta_method_interval_of_the_slow_variance(data):
    y, a, _ = data
    auc, cov = slow_covariance(y, [a])
    se = math.sqrt(cov[0, 0]) / (auc[0] * (1 - auc[0]))  # delta method: d logit(A)/dA = 1/(A(1-A))
    z = stats.norm.ppf(0.975)
    expected = 1 / (1 + np.exp(-(np.log(auc[0] / (1 - auc[0])) + np.array([-z, z]) * se)))
    value, ci, var = delong_ci(y, a, scale="logit")
    assert value == pytest.approx(auc[0]) and var == pytest.approx(cov[0, 0])
    assert ci == pytest.approx(tuple(expected), abs=1e-12)


def test_logit_interval_stays_inside_zero_one_where_wald_is_clipped():
    y = np.array([0] * 5 + [1] * 5)
    s = np.array([0.1, 0.2, 0.3, 0.4, 0.95, 0.5, 0.6, 0.7, 0.8, 0.9])  # AUC 0.96
    _, wald, _ = delong_ci(y, s)
    value, logit, _ = delong_ci(y, s, scale="logit")
    assert wald[1] == 1.0  # clipped
    assert 0 < logit[0] < value < logit[1] < 1
    assert logit[1] - value < value - logit[0]  # asymmetric: shorter towards 1


def _hanley_mcneil(theta, m, n):
    """Hanley & McNeil (Radiology 1982) variance, written with Q1 and Q2, with Newcombe's (2006)
    m − 1 and n − 1 both replaced by (m + n)/2 − 1."""
    q1, q2 = theta / (2 - theta), 2 * theta**2 / (1 + theta)
    k = (m + n) / 2 - 1
    return (theta * (1 - theta) + k * (q1 - theta**2) + k * (q2 - theta**2)) / (m * n)


@pytest.mark.parametrize("m, n", [(5, 5), (3, 8), (20, 20)])
def test_logit_option_does_not_collapse_to_one_one_on_perfect_separation(m, n):
    from skin_cnn.stats.delong import auc_interval

    y = np.array([1] * m + [0] * n)
    s = np.r_[np.arange(m) + n + 1.0, np.arange(n, dtype=float)]  # every positive above every negative
    assert delong_ci(y, s)[1] == (1.0, 1.0)  # the Wald interval collapses
    value, (low, high), _, method = auc_interval(y, s, scale="logit")
    assert value == 1.0 and high == 1.0 and 0.5 < low < 1 and method == "newcombe-score"
    # the lower bound is the score-interval root: (1 - L)^2 = z^2 V_HM(L)
    z = stats.norm.ppf(0.975)
    assert (1 - low) ** 2 == pytest.approx(z**2 * _hanley_mcneil(low, m, n), rel=1e-9)
    # and no other root lies between it and 1 (a grid check of the sign)
    grid = np.linspace(low + 1e-6, 1 - 1e-9, 2000)
    assert np.all((1 - grid) ** 2 < z**2 * _hanley_mcneil(grid, m, n))


def test_more_perfectly_separated_images_give_a_higher_lower_bound():
    from skin_cnn.stats.delong import newcombe_score_interval

    lows = [newcombe_score_interval(1.0, k, k)[0] for k in (3, 5, 10, 40)]
    assert lows == sorted(lows) and lows[-1] > 0.95
    assert newcombe_score_interval(0.0, 5, 5) == pytest.approx((0.0, 1 - lows[1]))  # mirror image


def test_unknown_scale_is_refused():
    with pytest.raises(ValueError, match="wald, logit"):
        delong_ci([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4], scale="log")

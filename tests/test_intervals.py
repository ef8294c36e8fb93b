"""Clopper–Pearson and Mercaldo logit intervals against scipy, hand formulas and the study."""

import math

import numpy as np
import pytest
from scipy import stats

from skin_cnn.stats.intervals import clopper_pearson, npv, ppv

Z = stats.norm.ppf(0.975)


@pytest.mark.parametrize(
    "k,n", [(0, 1), (1, 1), (0, 10), (3, 10), (10, 10), (41, 48), (154, 172), (500, 1000)]
)
def test_clopper_pearson_bounds_have_the_defining_binomial_tails(k, n):
    # Clopper & Pearson (1934): the lower bound is the p with P(X >= k) = 2.5%, the upper the p
    # with P(X <= k) = 2.5%; 0 and 1 at the ends. Checked with binomial tails, not beta quantiles.
    est = clopper_pearson(k, n)
    low, high = est.ci
    assert est.value == pytest.approx(k / n)
    assert est.method == "clopper-pearson"
    if k == 0:
        assert low == 0.0 and high == pytest.approx(1 - 0.025 ** (1 / n), abs=1e-12)
    else:
        assert stats.binom.sf(k - 1, n, low) == pytest.approx(0.025, abs=1e-9)
    if k == n:
        assert high == 1.0 and low == pytest.approx(0.025 ** (1 / n), abs=1e-12)
    else:
        assert stats.binom.cdf(k, n, high) == pytest.approx(0.025, abs=1e-9)


def test_clopper_pearson_reproduces_textbook_values():
    # 95% exact intervals as printed in tables (e.g. Newcombe, Stat Med 1998, Table II):
    # 5/10 -> 0.1871-0.8129, 1/10 -> 0.0025-0.4450, 81/263 -> 0.2527-0.3676.
    assert clopper_pearson(5, 10).ci == pytest.approx((0.1871, 0.8129), abs=5e-5)
    assert clopper_pearson(1, 10).ci == pytest.approx((0.0025, 0.4450), abs=5e-5)
    assert clopper_pearson(81, 263).ci == pytest.approx((0.2527, 0.3676), abs=5e-5)


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_clopper_pearson_matches_beta_quantiles_by_hand(confidence):
    k, n = 7, 23
    a = 1 - confidence
    low = stats.beta(k, n - k + 1).ppf(a / 2)
    high = stats.beta(k + 1, n - k).ppf(1 - a / 2)
    assert clopper_pearson(k, n, confidence).ci == pytest.approx((low, high), abs=1e-12)


def test_clopper_pearson_with_empty_denominator_is_undefined_not_nan():
    est = clopper_pearson(0, 0).as_dict()
    assert est["value"] is None and est["ci"] is None and est["note"]


def test_clopper_pearson_rejects_impossible_counts():
    with pytest.raises(ValueError):
        clopper_pearson(5, 3)
    with pytest.raises(ValueError):
        clopper_pearson(1, 3, confidence=1.5)


def _mercaldo_by_hand(tp, fn, tn, fp):
    """Mercaldo, Lau & Zhou (2007) eq. for the logit PPV / NPV variance, written in sens/spec."""
    n1, n0 = tp + fn, tn + fp
    se, sp = tp / n1, tn / n0
    p = n1 / (n1 + n0)
    ppv_value = se * p / (se * p + (1 - sp) * (1 - p))
    npv_value = sp * (1 - p) / ((1 - se) * p + sp * (1 - p))
    var_ppv = (1 - se) / (se * n1) + sp / ((1 - sp) * n0)
    var_npv = se / ((1 - se) * n1) + (1 - sp) / (sp * n0)

    def interval(v, var):
        lg = math.log(v / (1 - v))
        return (
            1 / (1 + math.exp(-(lg - Z * math.sqrt(var)))),
            1 / (1 + math.exp(-(lg + Z * math.sqrt(var)))),
        )

    return ppv_value, interval(ppv_value, var_ppv), npv_value, interval(npv_value, var_npv)


@pytest.mark.parametrize(
    "cells", [(41, 7, 154, 18), (30, 10, 75, 15), (5, 45, 100, 2), (99, 1, 3, 60), (1, 1, 1, 1)]
)
def test_logit_interval_matches_mercaldo_formula_by_hand(cells):
    tp, fn, tn, fp = cells
    pv, pci, nv, nci = _mercaldo_by_hand(*cells)
    p, n = ppv(*cells), npv(*cells)
    assert p.method == "logit" and n.method == "logit"
    assert p.value == pytest.approx(pv, abs=1e-12)
    assert n.value == pytest.approx(nv, abs=1e-12)
    assert p.ci == pytest.approx(pci, abs=1e-12)
    assert n.ci == pytest.approx(nci, abs=1e-12)


def test_reproduces_the_study_table_2_acne_vs_rosacea_row():
    # Table 2 of the study: specificity 89.53% (83.97–93.68%), sensitivity 85.42% (72.24–93.93%),
    # PPV 69.49% (59.16–78.17%), NPV 95.65% (91.72–97.76%); Table 3: accuracy 88.64% (83.68–92.51%).
    # These percentages fit exactly one table: 41 TP, 7 FN, 154 TN, 18 FP.
    tp, fn, tn, fp = 41, 7, 154, 18

    def pct(est):
        return [round(100 * est.value, 2), round(100 * est.ci[0], 2), round(100 * est.ci[1], 2)]

    assert pct(clopper_pearson(tn, tn + fp)) == [89.53, 83.97, 93.68]
    assert pct(clopper_pearson(tp, tp + fn)) == [85.42, 72.24, 93.93]
    assert pct(ppv(tp, fn, tn, fp)) == [69.49, 59.16, 78.17]
    assert pct(npv(tp, fn, tn, fp)) == [95.65, 91.72, 97.76]
    assert pct(clopper_pearson(tp + tn, 220)) == [88.64, 83.68, 92.51]


def test_ppv_of_zero_falls_back_to_clopper_pearson_on_predicted_positives():
    est = ppv(tp=0, fn=10, tn=80, fp=5)
    assert est.value == 0.0
    assert "clopper-pearson" in est.method and "logit undefined" in est.method
    ref = stats.binomtest(0, 5).proportion_ci(method="exact")
    assert est.ci == pytest.approx((ref.low, ref.high))


def test_ppv_of_one_falls_back_and_npv_stays_logit():
    p, n = ppv(tp=20, fn=5, tn=30, fp=0), npv(tp=20, fn=5, tn=30, fp=0)
    assert p.value == 1.0 and p.ci[1] == 1.0 and "clopper-pearson" in p.method
    ref = stats.binomtest(20, 20).proportion_ci(method="exact")
    assert p.ci == pytest.approx((ref.low, ref.high))
    assert n.method == "logit" and 0 < n.ci[0] < n.value < n.ci[1] < 1


def test_no_predicted_positives_leaves_ppv_undefined_with_a_note():
    d = ppv(tp=0, fn=10, tn=40, fp=0).as_dict()  # tn = every negative, nothing called positive
    assert d["value"] is None and d["ci"] is None and "predicted positive" in d["note"]
    n = npv(tp=0, fn=10, tn=40, fp=0)  # everything called negative: NPV is 1 - prevalence
    assert n.value == pytest.approx(0.8) and "clopper-pearson" in n.method


def test_everything_predicted_positive_gives_a_nondegenerate_interval():
    # PPV equals the sample prevalence and the logit variance is zero: fall back, do not
    # report a zero-width interval
    est = ppv(tp=12, fn=0, tn=0, fp=28)
    assert est.value == pytest.approx(0.3)
    assert "clopper-pearson" in est.method
    assert est.ci[0] < 0.3 < est.ci[1]


def test_intervals_contain_their_value_over_many_tables():
    rng = np.random.default_rng(3)
    for _ in range(200):
        cells = rng.integers(0, 30, size=4)
        for est in (ppv(*cells), npv(*cells)):
            if est.value is not None:
                assert 0 <= est.ci[0] <= est.value <= est.ci[1] <= 1

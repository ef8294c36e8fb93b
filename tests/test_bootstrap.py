"""The vectorised stratified cluster bootstrap against a plain loop on the same resamples, and
BCa against scipy."""

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from skin_cnn.core.specs import EvalSettings
from skin_cnn.stats.bootstrap import (
    bootstrap_distribution,
    bootstrap_intervals,
    cluster_units,
    iter_resample_indices,
    weighted_auc,
)


def make_data(n=150, n_patients=None, seed=0, decimals=None):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.35).astype(int)
    p = 1 / (1 + np.exp(-rng.normal(1.2 * y - 0.4, 1.0)))
    if decimals is not None:
        p = np.round(p, decimals)  # ties
    ids = None if n_patients is None else [f"p{i}" for i in rng.integers(0, n_patients, n)]
    return y, p, ids


def loop_metrics(y, p, rows, threshold=0.5):
    yy, pp = y[rows], p[rows]
    pred = pp >= threshold
    tp, fn = np.sum(yy & pred), np.sum(yy & ~pred)
    tn, fp = np.sum(~yy & ~pred), np.sum(~yy & pred)
    return {
        "sensitivity": tp / (tp + fn),
        "specificity": tn / (tn + fp),
        "ppv": tp / (tp + fp),
        "npv": tn / (tn + fn),
        "accuracy": (tp + tn) / len(rows),
        "auc": roc_auc_score(yy, pp) if 0 < yy.sum() < len(yy) else np.nan,
    }


@pytest.mark.parametrize("decimals", [None, 1])
def test_image_bootstrap_equals_plain_loop_on_same_resamples(decimals):
    y, p, _ = make_data(decimals=decimals)
    dist, unit, _ = bootstrap_distribution(y, p, settings=EvalSettings(n_bootstrap=150, seed=5))
    assert unit == "image"
    expected = {m: [] for m in dist}
    # image level: each image is a unit, its stratum is its class
    for batch in iter_resample_indices(len(y), 150, 5, strata=y):
        for rows in batch:
            for m, v in loop_metrics(y.astype(bool), p, rows).items():
                expected[m].append(v)
    for m in dist:
        np.testing.assert_allclose(dist[m], expected[m], atol=1e-12, err_msg=m)


def test_patient_bootstrap_draws_whole_patients_like_a_plain_loop():
    y, p, ids = make_data(n=120, n_patients=40, seed=2)
    dist, unit, _ = bootstrap_distribution(y, p, patient_ids=ids, settings=EvalSettings(n_bootstrap=150, seed=9))
    assert unit == "patient"
    units, n_units, _ = cluster_units(ids)
    members = [np.flatnonzero(units == u) for u in range(n_units)]
    # stratum by hand: 0 every image negative, 1 every image positive, 2 both
    strata = [0 if not y[m].any() else 1 if y[m].all() else 2 for m in members]
    auc = []
    for batch in iter_resample_indices(n_units, 150, 9, strata=strata):
        for drawn in batch:
            rows = np.concatenate([members[u] for u in drawn])
            auc.append(loop_metrics(y.astype(bool), p, rows)["auc"])
    np.testing.assert_allclose(dist["auc"], auc, atol=1e-12)


def test_images_without_patient_id_are_their_own_cluster():
    units, n_units, unit = cluster_units(["a", "", "b", "a", None, "b"])
    assert unit == "patient" and n_units == 4
    assert units[0] == units[3] and units[2] == units[5]
    assert len({units[1], units[4], units[0], units[2]}) == 4
    assert cluster_units(["", ""])[2] == "image"


def test_weighted_auc_equals_auc_of_repeated_rows():
    y, p, _ = make_data(n=40, decimals=1)
    w = np.random.default_rng(0).integers(0, 4, size=(3, 40))
    for row, weights in zip(weighted_auc(y, p, w), w):
        rep = np.repeat(np.arange(40), weights)
        assert row == pytest.approx(roc_auc_score(y[rep], p[rep]), abs=1e-12)


def test_same_seed_same_intervals_other_seed_other_intervals():
    y, p, ids = make_data(n_patients=50)
    a = bootstrap_intervals(y, p, patient_ids=ids, settings=EvalSettings(n_bootstrap=200, seed=1))
    b = bootstrap_intervals(y, p, patient_ids=ids, settings=EvalSettings(n_bootstrap=200, seed=1))
    c = bootstrap_intervals(y, p, patient_ids=ids, settings=EvalSettings(n_bootstrap=200, seed=2))
    assert a == b and a["auc"] != c["auc"]
    assert a["unit"] == "patient" and a["n_resamples"] == 200 and a["seed"] == 1


class _Previous:
    """Stands in for a scipy BootstrapResult so scipy uses our bootstrap distribution."""

    def __init__(self, distribution):
        self.bootstrap_distribution = np.asarray(distribution)


@pytest.mark.parametrize("method", ["bca", "percentile"])
def test_image_level_intervals_match_scipy_bootstrap(method):
    y, p, _ = make_data(n=120, seed=4)
    dist, _, _ = bootstrap_distribution(y, p, settings=EvalSettings(n_bootstrap=999, seed=3))
    ours = bootstrap_intervals(y, p, settings=EvalSettings(n_bootstrap=999, seed=3, bootstrap_method=method))
    statistics = {
        "auc": lambda yy, pp: roc_auc_score(yy, pp),
        "accuracy": lambda yy, pp: np.mean((pp >= 0.5) == yy),
    }
    for name, statistic in statistics.items():
        # scipy computes z0, the jackknife acceleration and the quantiles from our distribution
        # resampled values equal to the estimate as fractions are ties (class-stratified resamples
        # share the estimate's denominator); give scipy them exactly equal, not off by rounding
        theta = statistic(y, p)
        values = np.where(np.isclose(dist[name], theta, rtol=0, atol=1e-12), theta, dist[name])
        ref = stats.bootstrap(
            (y, p),
            statistic,
            paired=True,
            vectorized=False,
            n_resamples=0,
            bootstrap_result=_Previous(values),
            method=method,
            confidence_level=0.95,
        )
        ci = ref.confidence_interval
        assert ours[name] == pytest.approx([ci.low, ci.high], abs=1e-10), name


def test_patient_level_bca_matches_hand_computation_with_cluster_jackknife():
    y, p, ids = make_data(n=90, n_patients=30, seed=8)
    res = bootstrap_intervals(y, p, patient_ids=ids,
                              settings=EvalSettings(n_bootstrap=500, seed=0, bootstrap_method="bca"))
    dist, _, _ = bootstrap_distribution(y, p, patient_ids=ids, settings=EvalSettings(n_bootstrap=500, seed=0))
    units, n_units, _ = cluster_units(ids)
    theta = roc_auc_score(y, p)
    jack = np.array([roc_auc_score(y[units != u], p[units != u]) for u in range(n_units)])
    d = jack.mean() - jack
    a = np.sum(d**3) / (6 * np.sum(d**2) ** 1.5)
    b = np.where(np.isclose(dist["auc"], theta, rtol=0, atol=1e-12), theta, dist["auc"])
    z0 = stats.norm.ppf((np.sum(b < theta) + np.sum(b <= theta)) / (2 * b.size))
    zl, zh = stats.norm.ppf([0.025, 0.975])
    lo = stats.norm.cdf(z0 + (z0 + zl) / (1 - a * (z0 + zl)))
    hi = stats.norm.cdf(z0 + (z0 + zh) / (1 - a * (z0 + zh)))
    assert res["auc"] == pytest.approx(list(np.quantile(b, [lo, hi])), abs=1e-12)


def test_one_positive_image_is_in_every_resample():
    # unstratified, a resample of these 8 images misses the one positive with probability
    # (7/8)^8 = 34%, leaving sensitivity and AUC undefined; drawn within each class it is always in
    y = np.array([1, 0, 0, 0, 0, 0, 0, 0])
    p = np.linspace(0.9, 0.1, 8)  # the positive scores highest: sensitivity 1 and AUC 1 always
    res = bootstrap_intervals(y, p, settings=EvalSettings(n_bootstrap=400, seed=0))
    assert "sensitivity" not in res.get("n_undefined", {}) and "auc" not in res.get("n_undefined", {})
    assert res["sensitivity"] == [1.0, 1.0] and res["auc"] == [1.0, 1.0]
    assert res["stratified"] is True


def test_every_resample_keeps_the_number_of_positive_and_negative_patients():
    # 3 positive patients (2 images each), 5 negative patients (1-3 images), 2 patients with both
    ids = ["a", "a", "b", "b", "c", "c", "n1", "n2", "n2", "n3", "n4", "n4", "n4", "n5", "m1", "m1", "m2", "m2"]
    y = np.array([1] * 6 + [0] * 8 + [1, 0, 0, 1])
    units, n_units, unit = cluster_units(ids)
    assert unit == "patient" and n_units == 10
    members = [np.flatnonzero(units == u) for u in range(n_units)]
    strata = [0 if not y[m].any() else 1 if y[m].all() else 2 for m in members]
    for batch in iter_resample_indices(n_units, 300, 4, strata=strata):
        for drawn in batch:
            kinds = [strata[u] for u in drawn]
            assert (kinds.count(0), kinds.count(1), kinds.count(2)) == (5, 3, 2)


def test_ppv_without_predicted_positives_is_still_counted_as_undefined():
    # 2 of 40 negatives score above 0.5 and no positive does: a resample without those two
    # has no positive prediction and no PPV (probability (38/40)^38 ≈ 14% per resample)
    y = np.array([1] * 10 + [0] * 40)
    p = np.r_[np.full(10, 0.4), np.full(38, 0.1), [0.8, 0.9]]
    res = bootstrap_intervals(y, p, settings=EvalSettings(n_bootstrap=500, seed=1))
    assert 20 < res["n_undefined"]["ppv"] < 140
    assert "sensitivity" not in res["n_undefined"]


def test_split_groups_join_patients_and_near_duplicates():
    # images 0 and 1 share split group 0 though only 0 has an id; patient "a" also owns image 3
    # in group 5, so 0, 1 and 3 are one unit; image 2 ("b", group 1) and image 4 are their own
    units, n_units, unit = cluster_units(["a", "", "b", "a", ""], groups=[0, 0, 1, 5, 7])
    assert unit == "split group" and n_units == 3
    assert units[0] == units[1] == units[3] and len({units[0], units[2], units[4]}) == 3
    units, n_units, unit = cluster_units(None, groups=["g1", "g1", "g2"])
    assert unit == "split group" and n_units == 2


def test_interval_reports_its_unit_and_the_number_of_units():
    y, p, ids = make_data(n=60, n_patients=20, seed=3)
    groups = [int(i[1:]) // 2 for i in ids]  # patients two by two
    res = bootstrap_intervals(y, p, patient_ids=ids, groups=groups, settings=EvalSettings(n_bootstrap=50))
    assert res["unit"] == "split group" and res["n_units"] == len(set(groups))

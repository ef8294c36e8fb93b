"""Seeded, vectorised, stratified cluster bootstrap of the diagnostic metrics.

Images of one patient are not independent (same skin, same camera, same day), so the bootstrap
draws *clusters* with replacement and takes all their images. A cluster is a patient; when the
predictions carry the ``split_group`` of ``skin-cnn split`` (patients joined with their
near-duplicate images), clusters are those groups joined with the patient ids; an image with
neither is a cluster of its own. Without any of them it draws images.

Clusters are drawn *within each class* (all-positive, all-negative, and mixed clusters are three
strata, each resampled to its own size), so every resample has as many positive and negative
clusters as the data: sensitivity, specificity and AUC are defined in every resample.

A resample is represented by how many times each unit was drawn (a count vector), never by a
copied table. Every metric is then a weighted sum:

* the 2×2 counts of a resample are ``counts @ per_unit_tallies``;
* the AUC is the weighted Mann–Whitney statistic. Scores are sorted once and grouped into tied
  values; ``P[k]``, ``N[k]`` (weight of positives, negatives with the k-th smallest score value) are
  one sparse matrix product for a whole batch of resamples, and
  ``AUC = Σ_k P[k]·(N[<k] + N[k]/2) / (ΣP·ΣN)``, i.e. ties count one half.

2,000 resamples of the AUC over 10,000 scores take about a second on two CPU cores, instead of a
minute for a loop over ``sklearn.metrics.roc_auc_score`` (``benchmarks/bench_bootstrap.py``).

Intervals are percentile or BCa (bias-corrected and accelerated, Efron & Tibshirani 1993, §14.3),
with the acceleration from a leave-one-unit-out jackknife, so it is clustered like the resampling.

With fewer than :data:`MIN_UNITS_PER_CLASS` patients (or split groups) holding a positive image,
or holding a negative one, a cluster bootstrap cannot show the uncertainty (with one patient per
class every resample is the data, and the interval has zero width): no cluster interval is
computed then, and the result says so (``too_few_units``).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import sparse, special

from skin_cnn.core.specs import BOOTSTRAP_METHODS, EvalSettings

METRICS = ("sensitivity", "specificity", "ppv", "npv", "accuracy", "auc")
METHODS = BOOTSTRAP_METHODS
# resamples drawn per batch; fixed so that the draws depend on the seed only
BATCH = 250


#: Fewest clusters (patients, split groups) with a positive image, and with a negative one, for a
#: cluster bootstrap interval. Below it the resamples hardly differ from the data and the interval
#: shrinks to (almost) zero width: a false claim of precision.
MIN_UNITS_PER_CLASS = 5


def too_few_units(y_true, units, n_units, unit):
    """Why there is no cluster bootstrap interval for these units, or None when there can be one.

    Only clusters are checked (``unit`` patient or split group, fewer units than images); a unit
    counts for a class when it holds an image of that class.
    """
    y = np.asarray(y_true).astype(bool)
    if unit == "image" or not n_units or n_units >= y.size:
        return None
    positive = np.unique(np.asarray(units)[y]).size
    negative = np.unique(np.asarray(units)[~y]).size
    if min(positive, negative) >= MIN_UNITS_PER_CLASS:
        return None
    return (f"too few units for a cluster interval: {positive} {unit}(s) with a positive image, "
            f"{negative} with a negative one (at least {MIN_UNITS_PER_CLASS} of each needed)")


def _clean_ids(values):
    """Strings with ``""`` for missing (None, NaN, empty)."""
    return ["" if v is None or (isinstance(v, float) and v != v) else str(v).strip() for v in values]


def cluster_units(patient_ids, n=None, groups=None):
    """Map images to resampling units (clusters).

    Parameters
    ----------
    patient_ids : sequence of str or None
        Patient id per image; empty strings or None mean unknown. ``None`` for the whole argument
        means no ids at all (then ``n`` or ``groups`` is required).
    groups : sequence, optional
        A grouping that must stay together as well (the ``split_group`` column of a split:
        patients joined with their near-duplicate images). Images sharing a patient id *or* a
        group are one unit (connected components of both relations).

    Returns
    -------
    units : int array of shape (n,)
        Unit index of each image, 0..n_units−1, numbered in order of first appearance.
    n_units : int
    unit : str
        ``"split group"`` when ``groups`` is given, else ``"patient"`` when at least one image has
        a patient id, else ``"image"``.
    """
    if patient_ids is None and groups is None:
        if n is None:
            raise ValueError("give patient_ids, groups or n")
        return np.arange(n), int(n), "image"
    size = len(patient_ids) if patient_ids is not None else len(groups)
    ids = _clean_ids(patient_ids) if patient_ids is not None else [""] * size
    keys = [("p", pid) if pid else None for pid in ids]
    if groups is not None:
        gids = _clean_ids(groups)
        if len(gids) != size:
            raise ValueError(f"{len(gids)} groups for {size} images")
        return _components(keys, [("g", g) if g else None for g in gids]) + ("split group",)
    if not any(ids):
        return np.arange(size), size, "image"
    return _components(keys, [None] * size) + ("patient",)


def _components(keys_a, keys_b):
    """Units joining images that share a non-None key of either list (union of two relations)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(keys_a)
    edges = []
    for keys in (keys_a, keys_b):
        first = {}
        edges += [(first.setdefault(k, i), i) for i, k in enumerate(keys) if k is not None]
    edges = np.asarray(edges + [(i, i) for i in range(n)], dtype=np.int64).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, raw = connected_components(graph, directed=False)
    _, first = np.unique(raw, return_index=True)  # renumber by first appearance
    order = np.argsort(np.argsort(first))
    units = order[raw].astype(np.int64)
    return units, int(units.max() + 1) if n else 0


def unit_strata(y_true, units, n_units):
    """Stratum of each unit: 0 all images negative, 1 all positive, 2 mixed.

    Drawing within these strata keeps the number of positive and negative clusters of the data
    in every resample.
    """
    y = np.asarray(y_true).astype(bool)
    pos = np.bincount(units, weights=y, minlength=n_units)
    size = np.bincount(units, minlength=n_units)
    return np.where(pos == 0, 0, np.where(pos == size, 1, 2)).astype(np.int64)


def iter_resample_indices(n_units, n_resamples, seed, strata=None):
    """Yield batches of resampled unit indices, arrays of shape (≤ BATCH, n_units).

    Row ``b`` lists the units drawn (with replacement) in resample ``b``. With ``strata`` (one
    label per unit, see :func:`unit_strata`) each stratum is resampled to its own size, strata in
    ascending order, so every resample holds as many units of each stratum as the data. Batches
    come from one ``numpy.random.default_rng(seed)`` in a fixed order, so the resamples depend
    only on the seed, and any other implementation given the same indices sees exactly the same
    resamples.
    """
    rng = np.random.default_rng(seed)
    if strata is None:
        members = [np.arange(n_units)]
    else:
        strata = np.asarray(strata)
        members = [np.flatnonzero(strata == s) for s in np.unique(strata)]
    done = 0
    while done < n_resamples:
        size = min(BATCH, n_resamples - done)
        yield np.concatenate(
            [m[rng.integers(0, m.size, size=(size, m.size))] for m in members], axis=1
        )
        done += size


def indices_to_counts(indices, n_units):
    """Count vectors (batch, n_units): how often each unit was drawn in each resample."""
    b = indices.shape[0]
    flat = indices + (np.arange(b) * n_units)[:, None]
    # float32 holds every count exactly (< 2**24) at half the memory traffic of float64
    return np.bincount(flat.ravel(), minlength=b * n_units).reshape(b, n_units).astype(np.float32)


class _Design:
    """Everything about one task's data that does not change between resamples."""

    def __init__(self, y_true, y_prob, threshold, units, n_units):
        y = np.asarray(y_true).astype(bool)
        p = np.asarray(y_prob, dtype=float)
        self.n_units = n_units
        pred = p >= threshold
        cells = np.stack([y & pred, y & ~pred, ~y & ~pred, ~y & pred], axis=1).astype(float)
        # per-unit tp, fn, tn, fp
        tallies = np.zeros((n_units, 4))
        np.add.at(tallies, units, cells)
        self.tallies = tallies.astype(np.float32)
        # tied score groups, ascending
        values, group = np.unique(p, return_inverse=True)
        k = values.size
        shape = (k, n_units)
        ones = np.ones
        self.pos = sparse.csr_matrix((ones(y.sum(), np.float32), (group[y], units[y])), shape=shape)
        self.neg = sparse.csr_matrix(
            (ones((~y).sum(), np.float32), (group[~y], units[~y])), shape=shape
        )

    def metrics(self, counts, which=METRICS):
        """Metrics for count vectors of shape (batch, n_units); NaN where undefined.

        Counts may be float32: sums of integer counts below 2**24 are exact in it; ratios are
        formed in float64.
        """
        out = {}
        if set(which) - {"auc"}:
            tp, fn, tn, fp = (counts @ self.tallies).astype(np.float64).T
            with np.errstate(invalid="ignore", divide="ignore"):
                out = {
                    "sensitivity": tp / (tp + fn),
                    "specificity": tn / (tn + fp),
                    "ppv": tp / (tp + fp),
                    "npv": tn / (tn + fn),
                    "accuracy": (tp + tn) / (tp + fn + tn + fp),
                }
        if "auc" in which:
            out["auc"] = self.auc(counts)
        return {m: out[m] for m in which}

    def auc(self, counts):
        ct = np.ascontiguousarray(counts.T)
        # (k, batch): weight of positives (negatives) at each distinct score value
        p = np.asarray(self.pos @ ct, dtype=np.float64)
        q = np.asarray(self.neg @ ct, dtype=np.float64)
        below = np.cumsum(q, axis=0) - q
        num = (p * (below + 0.5 * q)).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return num / (p.sum(axis=0) * q.sum(axis=0))


def weighted_auc(y_true, y_prob, weights):
    """AUC (Mann–Whitney, ties one half) of cases weighted by ``weights`` of shape (batch, n).

    Integer weights give exactly the AUC of the table with each case repeated that many times.
    """
    w = np.atleast_2d(np.asarray(weights, dtype=float))
    n = w.shape[1]
    design = _Design(y_true, y_prob, 0.5, np.arange(n), n)
    return design.auc(w)


def _percentile_interval(dist, alpha):
    return np.quantile(dist, [alpha / 2, 1 - alpha / 2])


def _bca_interval(dist, theta_hat, jackknife, alpha):
    """BCa bounds from a bootstrap distribution and leave-one-unit-out estimates.

    Follows Efron & Tibshirani (1993) eq. 14.14–14.15; ``z0`` counts ties one half, as
    ``scipy.stats.bootstrap`` does. Returns None when the correction is undefined (all
    resamples on one side of the estimate, or a constant jackknife).
    """
    # values within rounding error of the estimate are ties: with class-stratified resampling the
    # AUC of every resample has the estimate's denominator, so exact ties are common
    tol = 1e-12 * max(1.0, abs(theta_hat))
    below, tied = np.count_nonzero(dist < theta_hat - tol), np.count_nonzero(np.abs(dist - theta_hat) <= tol)
    share = (below + 0.5 * tied) / dist.size
    z0 = special.ndtri(share)
    d = jackknife.mean() - jackknife
    den = (d**2).sum()
    if not np.isfinite(z0) or den <= 0:
        return None
    a = (d**3).sum() / (6 * den**1.5)
    za = special.ndtri(alpha / 2)
    levels = [special.ndtr(z0 + (z0 + z) / (1 - a * (z0 + z))) for z in (za, -za)]
    if not all(np.isfinite(levels)):
        return None
    return np.quantile(dist, levels)


def bootstrap_distribution(
    y_true,
    y_prob,
    threshold=0.5,
    patient_ids=None,
    settings: EvalSettings = EvalSettings(),
    progress=False,
    metrics=METRICS,
    groups=None,
):
    """Bootstrap replicates of the metrics (all six, or those named in ``metrics``).

    Units (see :func:`cluster_units`) are drawn within their class stratum
    (:func:`unit_strata`), the draws being those of :func:`iter_resample_indices`;
    ``settings.n_bootstrap`` resamples seeded by ``settings.seed``.

    Returns
    -------
    dist : dict of str -> array of shape (settings.n_bootstrap,)
        NaN where a resample leaves the metric undefined (e.g. no positive prediction drawn,
        for the PPV).
    unit : str
        ``"split group"``, ``"patient"`` or ``"image"``.
    design : _Design
    """
    y = np.asarray(y_true)
    units, n_units, unit = cluster_units(patient_ids, n=len(y), groups=groups)
    design = _Design(y, y_prob, threshold, units, n_units)
    strata = unit_strata(y, units, n_units)
    unknown = set(metrics) - set(METRICS)
    if unknown:
        raise ValueError(
            f"unknown metric(s) {', '.join(sorted(unknown))}; expected {', '.join(METRICS)}"
        )
    parts = {m: [] for m in metrics}
    batches = iter_resample_indices(n_units, settings.n_bootstrap, settings.seed, strata)
    if progress:
        from skin_cnn.core.progress import progress_bar

        batches = progress_bar(
            batches,
            total=math.ceil(settings.n_bootstrap / BATCH),
            desc="bootstrap",
            unit="batch",
            leave=False,
        )
    for idx in batches:
        for m, values in design.metrics(indices_to_counts(idx, n_units), metrics).items():
            parts[m].append(values)
    dist = {m: np.concatenate(v) if v else np.empty(0) for m, v in parts.items()}
    return dist, unit, design


def _jackknife(design):
    """Leave-one-unit-out estimates of every metric (arrays of shape (n_units,))."""
    c = design.n_units
    parts = {m: [] for m in METRICS}
    for start in range(0, c, BATCH):
        rows = np.arange(start, min(start + BATCH, c))
        counts = np.ones((rows.size, c), dtype=np.float32)
        counts[np.arange(rows.size), rows] = 0.0
        for m, values in design.metrics(counts).items():
            parts[m].append(values)
    return {m: np.concatenate(v) for m, v in parts.items()}


def _intervals_header(settings, unit, n_units):
    """How the intervals of :func:`bootstrap_intervals` were drawn (the first keys of its result)."""
    return {"n_resamples": int(settings.n_bootstrap), "unit": unit, "n_units": int(n_units), "stratified": True,
            "seed": int(settings.seed), "method": settings.bootstrap_method, "confidence": settings.confidence}


def bootstrap_intervals(
    y_true,
    y_prob,
    threshold=0.5,
    patient_ids=None,
    settings: EvalSettings = EvalSettings(),
    progress=False,
    groups=None,
):
    """Bootstrap confidence intervals of the diagnostic metrics of one task.

    Parameters
    ----------
    y_true, y_prob : arrays of shape (n,)
    threshold : float
        ``y_prob >= threshold`` counts as a positive prediction.
    patient_ids : sequence of str, optional
        Cluster the resampling by patient; images with an empty id are their own cluster.
    settings : EvalSettings
        ``n_bootstrap`` resamples (at least 1) seeded by ``seed``; ``confidence`` and
        ``bootstrap_method`` (percentile or BCa) of the intervals.
    groups : sequence, optional
        ``split_group`` labels; clusters then join patients and groups (:func:`cluster_units`).

    Returns
    -------
    dict
        The ``bootstrap`` entry of ``metrics.json``: ``n_resamples``, ``unit``, ``seed``,
        ``method``, ``confidence`` and ``metric: [low, high]`` (``None`` when undefined).
        Resamples in which a metric is undefined are left out of its interval; their number is
        in ``n_undefined``. A BCa interval that cannot be computed falls back to percentile and
        is listed in ``percentile_fallback``. With too few clusters per class
        (:func:`too_few_units`) every interval is ``None`` and ``too_few_units`` says why.
    """
    if settings.n_bootstrap < 1:
        raise ValueError("n_bootstrap must be at least 1 for bootstrap intervals")
    method = settings.bootstrap_method
    alpha = 1 - settings.confidence
    units, n_units, unit = cluster_units(patient_ids, n=len(np.asarray(y_true)), groups=groups)
    out = _intervals_header(settings, unit, n_units)
    note = too_few_units(y_true, units, n_units, unit)
    if note:
        return {**out, **{m: None for m in METRICS}, "too_few_units": note}
    dist, unit, design = bootstrap_distribution(
        y_true, y_prob, threshold, patient_ids, settings, progress, groups=groups
    )
    undefined, fallback = {}, []
    if method == "bca":
        full = design.metrics(np.ones((1, design.n_units)))
        jack = _jackknife(design)
    for m in METRICS:
        values = dist[m]
        ok = values[np.isfinite(values)]
        if ok.size < values.size:
            undefined[m] = int(values.size - ok.size)
        if ok.size == 0:
            out[m] = None
            continue
        ci = None
        if method == "bca":
            theta = float(full[m][0])
            j = jack[m]
            if np.isfinite(theta) and np.isfinite(j).all():
                ci = _bca_interval(ok, theta, j, alpha)
            if ci is None:
                fallback.append(m)
        if ci is None:
            ci = _percentile_interval(ok, alpha)
        out[m] = [float(ci[0]), float(ci[1])]
    if undefined:
        out["n_undefined"] = undefined
    if fallback:
        out["percentile_fallback"] = fallback
    return out


def paired_auc_difference(
    y_true,
    score_a,
    score_b,
    patient_ids=None,
    groups=None,
    n_resamples=2000,
    seed=0,
    confidence=0.95,
):
    """Paired cluster bootstrap of ``AUC_a − AUC_b`` on the same images.

    Both models see the same resamples (the same count vector per resample), so the correlation
    of their AUCs is kept, as in DeLong's paired test; unlike that test, images of one cluster
    (patient or split group) are drawn together, within their class stratum.

    Returns
    -------
    dict
        ``difference`` (on all images), ``ci`` (percentile interval), ``p_value`` (two-sided: twice
        the smaller share of resampled differences at or beyond zero on either side, at most 1),
        ``unit``, ``n_units``, ``n_resamples``, ``seed``. With too few clusters per class
        (:func:`too_few_units`) ``ci`` and ``p_value`` are None and ``too_few_units`` says why.
    """
    y = np.asarray(y_true)
    units, n_units, unit = cluster_units(patient_ids, n=len(y), groups=groups)
    note = too_few_units(y, units, n_units, unit)
    if note:
        return {"difference": None, "ci": None, "p_value": None, "unit": unit, "n_units": int(n_units),
                "n_resamples": int(n_resamples), "seed": int(seed), "too_few_units": note}
    design_a = _Design(y, score_a, 0.5, units, n_units)
    design_b = _Design(y, score_b, 0.5, units, n_units)
    strata = unit_strata(y, units, n_units)
    full = np.ones((1, n_units), dtype=np.float32)
    diff = float(design_a.auc(full)[0] - design_b.auc(full)[0])
    parts = []
    for idx in iter_resample_indices(n_units, n_resamples, seed, strata):
        counts = indices_to_counts(idx, n_units)
        parts.append(design_a.auc(counts) - design_b.auc(counts))
    dist = np.concatenate(parts)
    dist = dist[np.isfinite(dist)]
    ci = _percentile_interval(dist, 1 - confidence)
    p = min(1.0, 2 * min(np.mean(dist <= 0), np.mean(dist >= 0)))
    return {
        "difference": diff,
        "ci": [float(ci[0]), float(ci[1])],
        "p_value": float(p),
        "unit": unit,
        "n_units": int(n_units),
        "n_resamples": int(n_resamples),
        "seed": int(seed),
    }

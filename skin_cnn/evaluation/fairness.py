"""Fairness: does the model work as well for every group of a column (e.g. Fitzpatrick type)?

For each task and each value of the column this gives the number of images, the AUC,
sensitivity and specificity with their intervals (the same methods and the same threshold as the
whole evaluation), and for each of the three metrics the **largest between-group gap** with a
bootstrap interval.

Choices, and why:

* Rows without a value form their own group, ``unknown``, shown and counted, because leaving
  them out would hide how much of the data the analysis cannot speak for. The unknown group is a
  mixture of types, so it takes no part in a gap.
* A group enters a metric's gap only with enough images behind that metric, by the minimum of
  :mod:`skin_cnn.stats.precision` (:data:`~skin_cnn.stats.precision.MIN_COUNT`
  positive images for sensitivity, negative for specificity, both for the AUC). Smaller groups
  are shown with their numbers and a plain statement that they are too small to conclude
  anything; a gap between a group of 4 and one of 400 would only measure the noise of the 4.
* The gap is the difference between the groups with the highest and the lowest value on the
  evaluated images, signed so it is positive; the pair is kept fixed in every bootstrap
  resample. A fixed pair gives an interval that can reach zero (a range recomputed per
  resample cannot go below zero and is biased upwards). The pair was chosen on the same data,
  so the interval is somewhat optimistic; read it as exploratory.
* The bootstrap resamples *within each group*, each group keeping its size, with the clusters
  of the whole evaluation (:func:`skin_cnn.stats.bootstrap.cluster_units`: split groups,
  else patients, else images) drawn within their class stratum, so images of one patient stay
  together and every resample has the group's numbers of positive and negative clusters.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from skin_cnn.core.specs import EvalSettings
from skin_cnn.core.tasks import TASK_NAMES
from skin_cnn.stats.bootstrap import (
    _Design,
    _percentile_interval,
    cluster_units,
    indices_to_counts,
    iter_resample_indices,
    unit_strata,
)
from skin_cnn.stats.precision import MIN_COUNT

from skin_cnn.evaluation.groups import UNKNOWN, group_labels  # noqa: F401 (group_labels: public here too)
FAIRNESS_METRICS = ("auc", "sensitivity", "specificity")
_NEEDS = {
    "sensitivity": ("n_positive",),
    "specificity": ("n_negative",),
    "auc": ("n_positive", "n_negative"),
}
_WHAT = {"n_positive": "positive", "n_negative": "negative"}




def _order(labels):
    """Groups sorted naturally (``2`` before ``10``), ``unknown`` last."""
    def key(g):
        try:
            return (0, float(g), "")
        except ValueError:
            return (1, 0.0, g)

    known = sorted({g for g in labels if g != UNKNOWN}, key=key)
    return known + ([UNKNOWN] if UNKNOWN in set(labels) else [])


def too_small(metric, entry, min_count=MIN_COUNT):
    """The counts behind ``metric`` that fall below ``min_count``, as text (empty when enough)."""
    return [
        f"{entry[k]} {_WHAT[k]} image{'s' if entry[k] != 1 else ''}"
        for k in _NEEDS[metric]
        if entry[k] < min_count
    ]


def _group_distributions(part, threshold, n_bootstrap, seed):
    """Bootstrap replicates of AUC, sensitivity and specificity of one group's rows."""
    y = part["y_true"].to_numpy().astype(int)
    p = part["y_prob"].to_numpy(dtype=float)
    ids = part["patient_id"].tolist() if "patient_id" in part else None
    groups = part["split_group"].tolist() if "split_group" in part else None
    units, n_units, unit = cluster_units(ids, n=len(y), groups=groups)
    design = _Design(y, p, threshold, units, n_units)
    strata = unit_strata(y, units, n_units)
    parts = {m: [] for m in FAIRNESS_METRICS}
    for idx in iter_resample_indices(n_units, n_bootstrap, seed, strata):
        for m, values in design.metrics(indices_to_counts(idx, n_units), FAIRNESS_METRICS).items():
            parts[m].append(values)
    return {m: np.concatenate(v) for m, v in parts.items()}, unit


def fairness_analysis(
    predictions,
    column,
    thresholds=0.5,
    settings: EvalSettings = EvalSettings(),
    min_count=MIN_COUNT,
):
    """Per-group AUC, sensitivity and specificity of ``column`` and the largest gap of each.

    Parameters
    ----------
    predictions : pandas.DataFrame
        Predictions table (``skin_cnn.core.predictions`` layout) with ``column``.
    column : str
        E.g. ``fitzpatrick_scale``; missing values form the group ``unknown``.
    thresholds : float, dict of str -> float, or ``"per row"``
        The thresholds of the whole evaluation, never re-chosen per group.
    settings : EvalSettings
        ``n_bootstrap`` resamples for the gap intervals (0: gaps without intervals), their
        ``seed`` and ``confidence``; ``auc_ci`` for the per-group AUC intervals (the bootstrap
        method is always percentile here).
    min_count : int
        Fewest images behind a metric for a group to enter its gap.

    Returns
    -------
    dict
        ``column``, ``min_count``, ``n_unknown`` (rows in the unknown group), ``groups`` (in
        order), ``bootstrap`` (``n_resamples``, ``seed``, ``unit``, ``confidence``) and per task
        ``{"groups": {group: task entry}, "small": {group: {metric: [reasons]}}, "gaps":
        {metric: {"value", "ci", "high", "low", "compared", "note"}}}``; task entries are those
        of :func:`skin_cnn.evaluation.metrics.task_metrics` (without bootstrap).
    """
    n_bootstrap, seed, confidence = settings.n_bootstrap, settings.seed, settings.confidence

    if column not in predictions.columns:
        raise ValueError(
            f"--fairness {column}: the predictions have no column {column!r} "
            f"(columns: {', '.join(map(str, predictions.columns))})"
        )
    labels = group_labels(predictions[column].reset_index(drop=True), column)
    frame = predictions.reset_index(drop=True).assign(_group=labels)
    order = _order(labels)
    result = {
        "column": column,
        "min_count": int(min_count),
        "n_unknown": int((labels == UNKNOWN).sum()),
        "groups": order,
        "bootstrap": None,
        "tasks": {},
    }
    units = set()
    for task in [t for t in TASK_NAMES if (frame["task"] == t).any()]:
        result["tasks"][task] = _task_fairness(
            frame[frame["task"] == task], task, order, thresholds, settings, min_count, units
        )
    if n_bootstrap:
        result["bootstrap"] = {
            "n_resamples": int(n_bootstrap),
            "seed": int(seed),
            "unit": " and ".join(sorted(units)) if units else None,
            "confidence": confidence,
            "method": "percentile, resampled within each group",
        }
    return result



def _task_fairness(rows, task, order, thresholds, settings, min_count, units):
    """One task's entry of :func:`fairness_analysis`: per-group metrics, small groups and gaps.

    Adds the bootstrap unit of every resampled group to the set ``units``.
    """
    from skin_cnn.evaluation.metrics import task_metrics
    from skin_cnn.evaluation.threshold import row_thresholds

    entries, small, dists = {}, {}, {}
    for k, group in enumerate(order):
        part = rows[rows["_group"] == group]
        if part.empty:
            continue
        threshold = row_thresholds(part, thresholds, task)
        entry = task_metrics(
            part["y_true"].to_numpy(),
            part["y_prob"].to_numpy(),
            threshold,
            part["patient_id"].tolist() if "patient_id" in part else None,
            settings=settings.replace(n_bootstrap=0),
        )
        entries[group] = entry
        small[group] = {m: r for m in FAIRNESS_METRICS if (r := too_small(m, entry, min_count))}
        if group != UNKNOWN and settings.n_bootstrap and len(small[group]) < len(FAIRNESS_METRICS):
            dists[group], unit = _group_distributions(
                part, threshold, settings.n_bootstrap, [int(settings.seed), TASK_NAMES.index(task), k]
            )
            units.add(unit)
    gaps = {}
    for m in FAIRNESS_METRICS:
        eligible = [
            g for g, e in entries.items()
            if g != UNKNOWN and m not in small[g] and e[m]["value"] is not None
        ]
        gaps[m] = _gap(m, eligible, entries, dists, settings.confidence, min_count)
    return {"groups": entries, "small": small, "gaps": gaps}

def _gap(metric, eligible, entries, dists, confidence, min_count):
    """The largest gap of ``metric`` among ``eligible`` groups, with its bootstrap interval."""
    needs = " and ".join(f"{min_count} {_WHAT[k]}" for k in _NEEDS[metric])
    if len(eligible) < 2:
        return {
            "value": None, "ci": None, "high": None, "low": None, "compared": eligible,
            "note": f"fewer than two groups with at least {needs} images: no gap can be estimated",
        }
    values = {g: entries[g][metric]["value"] for g in eligible}
    ranked = sorted(eligible, key=lambda g: values[g])  # stable: tied groups stay two groups
    low, high = ranked[0], ranked[-1]
    gap = {"value": float(values[high] - values[low]), "ci": None, "high": high, "low": low,
           "compared": eligible, "note": None}
    if high in dists and low in dists:
        diff = dists[high][metric] - dists[low][metric]
        diff = diff[np.isfinite(diff)]
        if diff.size:
            lo, hi = _percentile_interval(diff, 1 - confidence)
            gap["ci"] = [float(lo), float(hi)]
            if lo <= 0:
                gap["note"] = "the interval reaches zero: no difference shown"
    return gap


def small_statements(result):
    """Plain sentences, one per task, naming the groups too small to conclude anything from.

    Groups with too few images for all three metrics are named first; then, per set of
    metrics, the groups too small for those only (typically a group with hardly any images of
    one class). Counts are given as ``positive/negative`` images.
    """
    from skin_cnn.core.tasks import task_title

    out = []
    n = result["min_count"]
    for task, entry in result["tasks"].items():
        whole, partly = [], {}
        for group, reasons in entry["small"].items():
            if not reasons:
                continue
            e = entry["groups"][group]
            label = f"{group} ({e['n_positive']}/{e['n_negative']})"
            if len(reasons) == len(FAIRNESS_METRICS):
                whole.append(label)
            else:
                partly.setdefault(tuple(reasons), []).append(label)
        parts = []
        if whole:
            parts.append(f"too small to conclude anything: {', '.join(whole)}")
        for metrics, groups in partly.items():
            parts.append(f"too small to conclude anything about {' or '.join(metrics)}: {', '.join(groups)}")
        if parts:
            out.append(
                f"{task_title(task)} — {'; '.join(parts)} (positive/negative images; minimum {n} "
                "of each class the metric uses). Shown, but left out of the gaps."
            )
    return out


def fairness_table(result):
    """The per-group table as rows of a CSV (``fairness_<column>.csv``)."""
    rows = []
    for task, entry in result["tasks"].items():
        for group, e in entry["groups"].items():
            for m in FAIRNESS_METRICS:
                ci = e[m]["ci"] or [None, None]
                rows.append({
                    result["column"]: group, "task": task, "metric": m,
                    "value": e[m]["value"], "ci_low": ci[0], "ci_high": ci[1],
                    "method": e[m]["method"], "n_images": e["n_images"],
                    "n_positive": e["n_positive"], "n_negative": e["n_negative"],
                    "too_small": "; ".join(entry["small"][group].get(m, [])) or None,
                })
        for m, gap in entry["gaps"].items():
            ci = gap["ci"] or [None, None]
            rows.append({
                result["column"]: f"gap {gap['high']} − {gap['low']}" if gap["value"] is not None else "gap",
                "task": task, "metric": m, "value": gap["value"], "ci_low": ci[0],
                "ci_high": ci[1], "method": "bootstrap within groups", "n_images": None,
                "n_positive": None, "n_negative": None, "too_small": gap["note"],
            })
    return pd.DataFrame(rows)

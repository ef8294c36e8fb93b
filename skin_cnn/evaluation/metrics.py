"""Diagnostic metrics per task with confidence intervals, in the ``metrics.json`` layout.

The layout (docs/evaluate.md) is a contract with its readers: fractions in [0, 1]; per task the class names, image
and patient counts, the 2×2 cells, each metric as ``{"value", "ci", "method"}`` and a
``bootstrap`` block. Undefined quantities are ``None`` (JSON ``null``) with a ``note``, never NaN.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from skin_cnn.core.specs import EvalSettings
from skin_cnn.core.tasks import TASK_NAMES, TASKS
from skin_cnn.stats import intervals
from skin_cnn.stats.bootstrap import METRICS, bootstrap_intervals
from skin_cnn.stats.delong import auc_interval
from skin_cnn.evaluation.threshold import describe_thresholds, is_per_row, row_thresholds

METRIC_LABELS = {
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
    "ppv": "PPV",
    "npv": "NPV",
    "accuracy": "Accuracy",
    "auc": "AUC",
}


def confusion_counts(y_true, y_prob, threshold=0.5):
    """``tp, fn, tn, fp`` with ``y_prob >= threshold`` counted as a positive prediction."""
    y = np.asarray(y_true).astype(bool)
    pred = np.asarray(y_prob, dtype=float) >= threshold
    return (
        int((y & pred).sum()),
        int((y & ~pred).sum()),
        int((~y & ~pred).sum()),
        int((~y & pred).sum()),
    )


def auc_estimate(y_true, y_prob, confidence=0.95, scale="logit"):
    """AUC with its DeLong interval as a ``metrics.json`` entry.

    ``scale`` is ``logit`` (the default: the interval stays inside (0, 1) and keeps its coverage
    near an AUC of 1 and at small n, where the Wald interval is clipped or collapses) or ``wald``
    (the AUC scale, as the study); ``method`` names the interval actually used (see
    :func:`skin_cnn.stats.delong.auc_interval`).
    """
    method = "delong" if scale == "wald" else "delong-logit"
    y = np.asarray(y_true).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        missing = "positive" if n_pos == 0 else "negative"
        return intervals.Estimate(
            None, None, method, note=f"AUC undefined: no {missing} images"
        ).as_dict()
    value, ci, var, method = auc_interval(y, y_prob, confidence, scale)
    note = None
    if ci is None:
        note = "DeLong variance needs at least two positive and two negative images"
    elif var == 0 and method == "delong":
        note = "DeLong variance is zero (the classes are perfectly separated or reversed)"
    elif method == "newcombe-score":
        note = "logit interval undefined (AUC of 0 or 1, or zero DeLong variance): Newcombe score interval"
    return intervals.Estimate(value, ci, method, note=note).as_dict()


def _n_patients(patient_ids):
    if patient_ids is None:
        return None
    ids = {str(p) for p in patient_ids if p is not None and str(p) not in ("", "nan")}
    return len(ids) if ids else None


def task_metrics(
    y_true,
    y_prob,
    threshold=0.5,
    patient_ids=None,
    task=None,
    settings: EvalSettings = EvalSettings(),
    progress=False,
    groups=None,
):
    """Every metric of one binary task as a ``metrics.json`` task entry.

    Parameters
    ----------
    y_true, y_prob : arrays of shape (n,)
    threshold : float or array of shape (n,)
        ``y_prob >= threshold`` is a positive prediction (an array: each image's own threshold).
    patient_ids : sequence of str, optional
        Counted in ``n_patients`` (``None`` when absent) and used as bootstrap clusters.
    task : str, optional
        Adds ``positive`` and ``negative`` class names.
    settings : EvalSettings
        Confidence level, the DeLong AUC interval's scale and the bootstrap (``n_bootstrap=0``
        skips it).
    groups : sequence, optional
        ``split_group`` labels: bootstrap clusters join them with the patient ids.

    Returns
    -------
    dict
        When the cluster bootstrap ran and the images come from fewer units (patients, split
        groups) than images, each metric's ``ci`` and ``method`` are the cluster bootstrap's and
        the image-level interval moves to ``image_level`` (:func:`promote_cluster_intervals`);
        ``interval_unit`` names the unit of the ``ci`` values.
    """
    y = np.asarray(y_true).astype(int)
    p = np.asarray(y_prob, dtype=float)
    if y.shape != p.shape:
        raise ValueError(f"y_true has {y.size} values, y_prob {p.size}")
    tp, fn, tn, fp = confusion_counts(y, p, threshold)
    out = {}
    if task is not None:
        out["positive"], out["negative"] = TASKS[task].positive, TASKS[task].negative
    out.update(
        {
            "n_images": int(y.size),
            "n_patients": _n_patients(patient_ids),
            "n_positive": tp + fn,
            "n_negative": tn + fp,
            "threshold": describe_thresholds(threshold),
            "tp": tp,
            "fn": fn,
            "tn": tn,
            "fp": fp,
        }
    )
    confidence = settings.confidence
    sens = intervals.clopper_pearson(tp, tp + fn, confidence)
    spec = intervals.clopper_pearson(tn, tn + fp, confidence)
    acc = intervals.clopper_pearson(tp + tn, y.size, confidence)
    if sens.value is None:
        sens = intervals.Estimate(None, None, sens.method, note="no positive images")
    if spec.value is None:
        spec = intervals.Estimate(None, None, spec.method, note="no negative images")
    if acc.value is None:
        acc = intervals.Estimate(None, None, acc.method, note="no images")
    out["sensitivity"] = sens.as_dict()
    out["specificity"] = spec.as_dict()
    out["ppv"] = intervals.ppv(tp, fn, tn, fp, confidence).as_dict()
    out["npv"] = intervals.npv(tp, fn, tn, fp, confidence).as_dict()
    out["accuracy"] = acc.as_dict()
    out["auc"] = auc_estimate(y, p, confidence, settings.auc_ci)
    if settings.n_bootstrap and y.size:
        out["bootstrap"] = bootstrap_intervals(y, p, threshold, patient_ids, settings, progress=progress, groups=groups)
    return promote_cluster_intervals(out)


def clustered(entry):
    """Whether a task entry's images come from fewer bootstrap units than images.

    Only then do the image-level intervals (Clopper–Pearson, DeLong, Mercaldo) understate the
    uncertainty: images of one patient or one near-duplicate group are not independent.
    """
    boot = entry.get("bootstrap") or {}
    return boot.get("unit") in ("patient", "split group") and int(boot.get("n_units", 0)) < int(entry["n_images"])


def promote_cluster_intervals(entry):
    """Make the cluster bootstrap interval the primary ``ci`` of every metric of a task entry.

    Applies when :func:`clustered` holds. Each metric then reads ``{"value", "ci": cluster
    bootstrap interval, "method": "cluster bootstrap (<unit>, <method>)", "image_level": {"ci",
    "method"}}``: readers of ``value``/``ci`` get the interval that respects the clustering, and
    the image-level one stays available, labelled. A metric whose bootstrap interval is undefined
    (no resample defined it) keeps its image-level interval as primary. ``interval_unit`` is the
    unit of the primary intervals (``image`` when nothing was promoted, also when there were too
    few clusters for a cluster interval: ``bootstrap.too_few_units``). Returns ``entry``.
    """
    entry["interval_unit"] = "image"
    if not clustered(entry) or entry["bootstrap"].get("too_few_units"):
        return entry
    boot = entry["bootstrap"]
    for m in METRICS:
        metric, ci = entry[m], boot.get(m)
        if metric.get("value") is None or ci is None:
            continue
        entry[m] = {
            **metric,
            "ci": [float(ci[0]), float(ci[1])],
            "method": f"cluster bootstrap ({boot['unit']}, {boot['method']})",
            "image_level": {"ci": metric["ci"], "method": metric["method"]},
        }
    entry["interval_unit"] = boot["unit"]
    return entry


def primary_interval(metrics):
    """``"cluster bootstrap"`` when any task's headline intervals are cluster bootstrap ones,
    else ``"image-level"``."""
    units = {e.get("interval_unit", "image") for e in metrics["tasks"].values()}
    return "cluster bootstrap" if units - {"image"} else "image-level"


def evaluate_predictions(
    predictions,
    thresholds=0.5,
    threshold_method="fixed",
    settings: EvalSettings = EvalSettings(),
    progress=False,
):
    """``metrics.json`` content for a predictions frame (``skin_cnn.core.predictions`` layout).

    Parameters
    ----------
    predictions : pandas.DataFrame
        One row per (image, task); a repeated pair is refused, since it would count one image
        twice. A ``split_group`` column (from ``skin-cnn split``) joins the bootstrap clusters.
    thresholds : float, dict of str -> float, or ``"per row"``
        One threshold for all tasks, one per task, or each row's own ``threshold`` column
        (:data:`skin_cnn.evaluation.threshold.PER_ROW`: pooled out-of-fold predictions, each at
        its fold model's threshold).
    threshold_method : str
        How the thresholds were obtained (recorded as is).
    settings : EvalSettings
        The intervals' settings; ``confidence`` and ``auc_ci`` are recorded.

    Returns
    -------
    dict
        ``threshold`` is a number when all tasks share one, else a mapping task -> threshold;
        each task entry also carries its own ``threshold``. ``primary_interval`` says whether
        the metrics' ``ci`` values are cluster bootstrap or image-level intervals
        (:func:`promote_cluster_intervals`).
    """
    from skin_cnn.core.predictions import check_unique_rows

    check_unique_rows(predictions, "the predictions")
    tasks = [t for t in TASK_NAMES if (predictions["task"] == t).any()]
    if not tasks:
        raise ValueError("the predictions contain no rows for any task")
    if not isinstance(thresholds, dict) and not is_per_row(thresholds):
        thresholds = {t: float(thresholds) for t in tasks}
    missing = [] if is_per_row(thresholds) else [t for t in tasks if t not in thresholds]
    if missing:
        raise ValueError(f"no threshold for task(s) {', '.join(missing)}")
    cuts = {t: row_thresholds(predictions[predictions["task"] == t], thresholds, t) for t in tasks}
    shown = {t: describe_thresholds(cuts[t], _folds(predictions[predictions["task"] == t])) for t in tasks}
    numbers = all(isinstance(v, float) for v in shown.values())
    result = {
        "threshold": shown[tasks[0]] if numbers and len(set(shown.values())) == 1 else shown,
        "threshold_method": threshold_method,
        "confidence": settings.confidence,
        "auc_ci": settings.auc_ci,
        "tasks": {},
    }
    for task in tasks:
        part = predictions[predictions["task"] == task]
        result["tasks"][task] = task_metrics(
            part["y_true"].to_numpy(),
            part["y_prob"].to_numpy(),
            cuts[task],
            part["patient_id"].tolist() if "patient_id" in part else None,
            task=task,
            settings=settings,
            progress=progress,
            groups=part["split_group"].tolist() if "split_group" in part else None,
        )
        result["tasks"][task]["threshold"] = shown[task]
    result["primary_interval"] = primary_interval(result)
    return result


def _folds(part):
    return part["fold"].to_numpy() if "fold" in part.columns else None


def _note(metric, entry, boot, task):
    """The ``note`` of a ``metrics.csv`` row: the entry's own note and what a reader must know
    before quoting the value (:func:`skin_cnn.stats.precision.caveats`)."""
    from skin_cnn.stats.precision import caveats

    parts = [entry["note"]] if entry.get("note") else []
    parts += caveats(metric, entry, task)
    if boot[0] is not None and boot[1] is not None and abs(boot[1] - boot[0]) < 1e-12:
        parts.append("zero-width bootstrap interval (not certainty)")
    return "; ".join(dict.fromkeys(parts)) or None


def metrics_table(metrics, **extra):
    """One row per task × metric: ``task, metric, value, ci_low, ci_high, method`` (the primary
    interval: cluster bootstrap where the images are clustered), the bootstrap interval
    (``bootstrap_low, bootstrap_high``), the unit it resampled (``bootstrap_unit``), ``n_images``,
    a ``note`` saying what must be known before the value is quoted (undefined value, zero-width
    interval, too few images) and the image-level interval (``image_ci_low, image_ci_high,
    image_method``, equal to the primary one where that is image-level); ``extra`` columns go
    first."""
    rows = []
    for task, entry in metrics["tasks"].items():
        boot = entry.get("bootstrap") or {}
        for m in METRICS:
            e = entry[m]
            ci = e["ci"] or [None, None]
            b = boot.get(m) or [None, None]
            image = e.get("image_level") or e
            image_ci = image["ci"] or [None, None]
            rows.append(
                {
                    **extra,
                    "task": task,
                    "metric": m,
                    "value": e["value"],
                    "ci_low": ci[0],
                    "ci_high": ci[1],
                    "method": e["method"],
                    "bootstrap_low": b[0],
                    "bootstrap_high": b[1],
                    "bootstrap_unit": boot.get("unit"),
                    "n_images": entry["n_images"],
                    "note": _note(m, e, b, entry),
                    "image_ci_low": image_ci[0],
                    "image_ci_high": image_ci[1],
                    "image_method": image["method"],
                }
            )
    return pd.DataFrame(rows)


def metrics_by(
    predictions,
    column,
    thresholds=0.5,
    settings: EvalSettings = EvalSettings(),
):
    """Metrics per subgroup of ``column`` (e.g. source, Fitzpatrick type) as one long table.

    The thresholds are those of the whole evaluation, never re-chosen per subgroup. Rows with an
    empty value (in a Fitzpatrick column also one that is no skin type, such as ``-1``) form the
    subgroup ``"(missing)"`` (:func:`skin_cnn.evaluation.groups.group_labels`).

    Returns
    -------
    table : pandas.DataFrame
        :func:`metrics_table` rows with ``column`` first.
    per_group : dict
        Subgroup value -> ``metrics.json``-style content.
    """
    from skin_cnn.core.predictions import check_columns
    from skin_cnn.evaluation.groups import group_labels

    check_columns(predictions.columns, {"--by": (column,)})
    keys = group_labels(predictions[column], column, missing="(missing)")  # Fitzpatrick -1: missing
    frames, per_group = [], {}
    for value in sorted(pd.unique(keys), key=str):
        part = predictions[keys == value]
        tasks = [t for t in TASK_NAMES if (part["task"] == t).any()]
        th = thresholds if not isinstance(thresholds, dict) else {t: thresholds[t] for t in tasks}
        res = evaluate_predictions(part, th, settings=settings)
        per_group[value] = res
        frames.append(metrics_table(res, **{column: value}))
    return pd.concat(frames, ignore_index=True), per_group

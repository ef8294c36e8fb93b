"""Sensitivity and specificity intervals that include the uncertainty of choosing the threshold.

A threshold fitted on validation predictions (Youden, a sensitivity or specificity target) is
itself an estimate: chosen on a few dozen validation photos, it would have come out elsewhere on
another few dozen. The usual intervals (Clopper–Pearson, the cluster bootstrap at the chosen
threshold) treat it as fixed. This bootstrap redoes the choice in every resample:

1. resample the threshold-fitting predictions (clusters within class strata, as
   :mod:`skin_cnn.stats.bootstrap` does) and refit the threshold by the same rule;
2. resample the evaluated predictions — the very resamples of the fixed-threshold bootstrap (same
   seed, same units), so the two intervals differ only by the threshold's variation;
3. score the evaluated resample at the refitted threshold.

Both intervals are reported side by side (``threshold_choice`` of a task in ``metrics.json``).
Pooled cross-validation predictions, each at its own fold model's threshold, refit every fold's
threshold on a resample of that fold's validation predictions.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from skin_cnn.core.specs import EvalSettings
from skin_cnn.stats.bootstrap import (cluster_units, indices_to_counts, iter_resample_indices, too_few_units,
                                      unit_strata)
from skin_cnn.evaluation.threshold import STUDY, ThresholdRule, parse_threshold

CHOICE_METRICS = ("sensitivity", "specificity")


@dataclass
class ThresholdFitting:
    """How the evaluated thresholds were fitted, so that the fit can be redone on resamples.

    Attributes
    ----------
    rules : dict of str -> ThresholdRule
        The rule of each task.
    validation : pandas.DataFrame
        The predictions the thresholds were fitted on (predictions layout).
    key : str, optional
        A column of both frames naming which fitting rows serve which evaluated rows (``fold``:
        each fold's threshold was fitted on that fold's validation predictions only).
    source : str
        What the fitting predictions are, for the method text.
    """

    rules: dict
    validation: pd.DataFrame = field(repr=False)
    key: str | None = None
    source: str = "validation predictions"


def rule_of_label(label):
    """The :class:`ThresholdRule` of a stored rule label (``youden``, ``study``, ``sensitivity >= 0.9``, …);
    None for a fixed or unknown one."""
    text = str(label).split(",")[0].strip()
    if text in ("youden", STUDY):
        return ThresholdRule(text)
    for method, short in (("sensitivity", "sens"), ("specificity", "spec")):
        if text.startswith(method + " >="):
            return parse_threshold(f"{short}:{text.split('>=')[1].strip()}")
    return None


def _units_note(frame):
    """:func:`~skin_cnn.stats.bootstrap.too_few_units` for the clusters of ``frame``."""
    ids = frame["patient_id"].tolist() if "patient_id" in frame else None
    groups = frame["split_group"].tolist() if "split_group" in frame else None
    y = frame["y_true"].to_numpy().astype(int)
    return too_few_units(y, *cluster_units(ids, n=len(y), groups=groups))


def _draws(frame, n_resamples, seed):
    """Per-batch row weights of ``frame``'s stratified cluster resamples, with its unit name."""
    ids = frame["patient_id"].tolist() if "patient_id" in frame else None
    groups = frame["split_group"].tolist() if "split_group" in frame else None
    y = frame["y_true"].to_numpy().astype(int)
    units, n_units, unit = cluster_units(ids, n=len(y), groups=groups)
    strata = unit_strata(y, units, n_units)
    batches = (indices_to_counts(idx, n_units)[:, units] for idx in
               iter_resample_indices(n_units, n_resamples, seed, strata))
    return batches, unit


def _refitted(fitting_part, rule, n_resamples, seed):
    """The threshold refitted by ``rule`` on each of ``n_resamples`` resamples of ``fitting_part``."""
    y = fitting_part["y_true"].to_numpy().astype(int)
    p = fitting_part["y_prob"].to_numpy(dtype=float)
    task = fitting_part["task"].iloc[0] if "task" in fitting_part else None
    batches, unit = _draws(fitting_part, n_resamples, seed)
    out = []
    for weights in batches:
        for w in weights.astype(np.int64):
            rows = np.repeat(np.arange(len(y)), w)
            out.append(rule.choose(y[rows], p[rows], task))
    return np.asarray(out), unit


def choice_distribution(evaluated, fitting, rule, thresholds, *, n_resamples=2000, seed=0, key=None):
    """Bootstrap replicates of sensitivity and specificity, at the refitted and at the fixed threshold.

    Parameters
    ----------
    evaluated : pandas.DataFrame
        One task's evaluated predictions.
    fitting : pandas.DataFrame
        That task's threshold-fitting predictions.
    rule : ThresholdRule
    thresholds : float or array (n,)
        The thresholds actually used for ``evaluated`` (the fixed-threshold comparison).
    key : str, optional
        Column of both frames: each value's evaluated rows use thresholds fitted on that value's
        fitting rows only.
    seed : int
        The evaluated resamples are those of the fixed-threshold bootstrap of the same seed.

    Returns
    -------
    refit, fixed : dict of str -> array (n_resamples,)
    units : tuple of str
        The evaluated and the fitting resampling units.
    """
    y = evaluated["y_true"].to_numpy().astype(bool)
    p = evaluated["y_prob"].to_numpy(dtype=float)
    keys = evaluated[key].to_numpy() if key else np.zeros(len(y), dtype=int)
    cut = np.zeros((n_resamples, len(y)))
    fit_unit = None
    for i, value in enumerate(pd.unique(keys)):
        part = fitting[fitting[key] == value] if key else fitting
        if part.empty:
            raise ValueError(f"no threshold-fitting predictions for {key} {value}")
        refits, fit_unit = _refitted(part, rule, n_resamples, [int(seed), 1, i])
        cut[:, keys == value] = refits[:, None]
    fixed_cut = np.broadcast_to(np.asarray(thresholds, dtype=float), y.shape)
    batches, unit = _draws(evaluated, n_resamples, seed)
    refit = {m: [] for m in CHOICE_METRICS}
    fixed = {m: [] for m in CHOICE_METRICS}
    done = 0
    for weights in batches:
        b = weights.shape[0]
        for store, called in ((refit, p[None, :] >= cut[done:done + b]), (fixed, p[None, :] >= fixed_cut[None, :])):
            store["sensitivity"].append((weights * (called & y)).sum(1) / (weights * y).sum(1))
            store["specificity"].append((weights * (~called & ~y)).sum(1) / (weights * ~y).sum(1))
        done += b
    return ({m: np.concatenate(v) for m, v in refit.items()}, {m: np.concatenate(v) for m, v in fixed.items()},
            (unit, fit_unit))


def _interval(values, confidence):
    values = values[np.isfinite(values)]
    if not values.size:
        return None
    alpha = 1 - confidence
    return [float(v) for v in np.quantile(values, [alpha / 2, 1 - alpha / 2])]


def threshold_choice_entry(evaluated, fitting, rule, thresholds, *, settings: EvalSettings = EvalSettings(),
                           key=None, source="validation predictions"):
    """The ``threshold_choice`` entry of one task in ``metrics.json``.

    ``sensitivity`` and ``specificity``: percentile intervals with the threshold refitted in every
    resample; ``fixed``: the same resamples of the evaluated images at the threshold used. With
    too few patients or split groups among the evaluated images every interval is None and
    ``too_few_units`` says why.
    ``settings`` gives the resamples (``n_bootstrap``), their ``seed`` and the ``confidence``.
    """
    n_resamples, seed, confidence = settings.n_bootstrap, settings.seed, settings.confidence
    note = _units_note(evaluated)
    if note:  # as the task's own cluster bootstrap: no interval of (almost) zero width
        return {"method": "not computed", "too_few_units": note, "n_resamples": int(n_resamples),
                "seed": int(seed), "confidence": confidence, **{m: None for m in CHOICE_METRICS},
                "fixed": {m: None for m in CHOICE_METRICS}}
    refit, fixed, (unit, fit_unit) = choice_distribution(evaluated, fitting, rule, thresholds,
                                                         n_resamples=n_resamples, seed=seed, key=key)
    return {
        "method": f"percentile bootstrap: the threshold-fitting predictions ({source}) resampled by {fit_unit} "
                  f"and the threshold refitted ({rule.short()}), the evaluated images resampled by {unit}",
        "n_resamples": int(n_resamples), "seed": int(seed), "confidence": confidence,
        "unit": unit, "fitting_unit": fit_unit,
        **{m: _interval(refit[m], confidence) for m in CHOICE_METRICS},
        "fixed": {m: _interval(fixed[m], confidence) for m in CHOICE_METRICS},
    }


def add_threshold_choice(metrics, predictions, fitting, thresholds, *, settings: EvalSettings = EvalSettings()):
    """Add ``threshold_choice`` to every task of ``metrics`` whose threshold ``fitting`` can refit."""
    from skin_cnn.evaluation.threshold import row_thresholds

    for task, entry in metrics["tasks"].items():
        rule = fitting.rules.get(task)
        if rule is None or not rule.needs_validation:
            continue
        part = predictions[predictions["task"] == task]
        fit_part = fitting.validation[fitting.validation["task"] == task]
        entry["threshold_choice"] = threshold_choice_entry(
            part, fit_part, rule, row_thresholds(part, thresholds, task), settings=settings,
            key=fitting.key, source=fitting.source)
    return metrics

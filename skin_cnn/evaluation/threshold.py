"""The decision threshold: fixed, or chosen on validation predictions and then frozen.

A probability ``y_prob >= threshold`` is a positive prediction (the convention of
``sklearn.metrics.roc_curve``). The default, 0.5, is pre-specified. A threshold chosen to
maximise Youden's J or to reach a target sensitivity is *fitted*: choosing it on the test split
would make the test sensitivity and specificity optimistic, so it is always chosen on the
validation split and applied unchanged to test (STARD item 12a asks to say which cut-offs were
pre-specified and which were not).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from skin_cnn.core.tasks import STUDY_OPERATING_POINTS
from skin_cnn.stats.threshold import CHOSEN_METHODS, choose_threshold, midpoint_cut  # noqa: F401 (public here too)

DEFAULT_THRESHOLD = 0.5
#: ``--threshold stored``: whatever the evaluated model file stores (0.5 where it stores nothing).
STORED = "stored"
#: ``--threshold study``: per task, the widest margin over the study's operating point.
STUDY = "study"


@dataclass(frozen=True)
class ThresholdRule:
    """How to obtain the threshold: ``method`` is "fixed" (with ``value``) or a chosen method
    (with ``target`` for the sensitivity/specificity rules)."""

    method: str
    value: float | None = None
    target: float | None = None

    @property
    def needs_validation(self):
        return self.method not in ("fixed", STORED)

    def label(self):
        """The rule as stored beside a threshold in a model file: ``youden``, ``sensitivity >= 0.9``."""
        return self.method if self.target is None else f"{self.method} >= {self.target:g}"

    def choose(self, y_true, y_prob, task=None):
        """The threshold this rule fits on validation labels and scores of ``task``."""
        if self.method == STUDY:
            if task not in STUDY_OPERATING_POINTS:
                raise ValueError(f"--threshold study: the study reported no operating point for task {task!r}")
            return choose_threshold(y_true, y_prob, "margin", STUDY_OPERATING_POINTS[task])
        return choose_threshold(y_true, y_prob, self.method, self.target if self.target is not None else 0.9)

    def short(self):
        """``youden (maximum sensitivity + specificity - 1)``, ``sensitivity >= 0.9``, …"""
        if self.method == "youden":
            return "youden (maximum sensitivity + specificity - 1)"
        if self.method == STUDY:
            return ("study (the widest margin over the study's sensitivity and specificity: "
                    + ", ".join(f"{t} {s:.1%}/{p:.1%}" for t, (s, p) in STUDY_OPERATING_POINTS.items()) + ")")
        if self.target is not None:
            return f"{self.method} >= {self.target:g}"
        return self.describe()

    def describe(self):
        if self.method == "fixed":
            return "fixed"
        if self.method == STORED:
            return "stored in the model (fitted when it was trained, on the predictions its method names), else 0.5"
        if self.method == "youden":
            return "youden (maximum sensitivity + specificity - 1 on validation predictions)"
        if self.method == STUDY:
            return f"{self.short()} on validation predictions"
        return f"{self.method} >= {self.target:g} on validation predictions"


def parse_threshold(text):
    """Parse ``--threshold``: a number in [0, 1], ``youden``, ``study``, ``sens:0.90``, ``spec:0.90`` or
    ``stored``."""
    if isinstance(text, ThresholdRule):
        return text
    if text is None:
        return ThresholdRule("fixed", DEFAULT_THRESHOLD)
    s = str(text).strip().lower()
    if s == STORED:
        return ThresholdRule(STORED)
    if s == "youden":
        return ThresholdRule("youden")
    if s == STUDY:
        return ThresholdRule(STUDY)
    m = re.fullmatch(r"(sens|sensitivity|spec|specificity)\s*[:=]\s*([0-9.]+)", s)
    if m:
        target = float(m.group(2))
        if not 0 < target <= 1:
            raise ValueError(f"threshold target must be in (0, 1], got {target} in {text!r}")
        method = "sensitivity" if m.group(1).startswith("sens") else "specificity"
        return ThresholdRule(method, target=target)
    try:
        value = float(s)
    except ValueError:
        raise ValueError(
            "--threshold must be a number in [0, 1], 'youden', 'study', 'sens:0.90' or 'spec:0.90'; "
            f"got {text!r}"
        ) from None
    if not 0 <= value <= 1:
        raise ValueError(f"--threshold must lie in [0, 1], got {value}")
    return ThresholdRule("fixed", value)


def resolve_thresholds(
    rule, tasks, validation=None, source="validation predictions", evaluated=None, evaluated_name=None
):
    """Thresholds per task for a :class:`ThresholdRule`.

    Parameters
    ----------
    rule : ThresholdRule or str
    tasks : sequence of str
    validation : pandas.DataFrame, optional
        Validation predictions (predictions CSV layout); required unless the rule is fixed.
    source : str
        Where the validation predictions came from, recorded in the method text.
    evaluated : pandas.DataFrame
        The predictions the thresholds will be applied to; required with a fitted rule. The
        validation predictions may share no image, patient or split group with them
        (:func:`skin_cnn.evaluation.leakage.check_disjoint`).
    evaluated_name : str, optional
        How to name ``evaluated`` in an error.

    Returns
    -------
    thresholds : dict of str -> float
    method : str
        How they were obtained, for ``metrics.json``'s ``threshold_method``.
    """
    rule = parse_threshold(rule)
    if rule.method == STORED:
        raise ValueError("--threshold stored reads the thresholds of a model file: evaluate a run folder, "
                         "or give a number or a fitted rule")
    if not rule.needs_validation:
        return {t: float(rule.value) for t in tasks}, "fixed"
    if validation is None:
        raise ValueError(
            f"--threshold {rule.method} is fitted to data and must be chosen on validation "
            "predictions, never on the test split: pass --val-predictions FILE (or evaluate a run "
            "folder, whose validation split is used)"
        )
    if evaluated is None:
        raise ValueError("a fitted threshold needs the evaluated predictions, to check they differ")
    from skin_cnn.evaluation.leakage import check_disjoint

    check_disjoint(validation, evaluated, source, evaluated_name or "the evaluated predictions")
    return fit_thresholds(rule, tasks, validation, source)


def fit_thresholds(rule, tasks, validation, source="validation predictions"):
    """Fit a :class:`ThresholdRule` per task on predictions the caller knows to be held out.

    :func:`resolve_thresholds` calls it after checking that the predictions share nothing with
    the evaluated ones; training calls it on its own validation (or out-of-fold) predictions.

    Returns
    -------
    thresholds : dict of str -> float
    method : str
    """
    rule = parse_threshold(rule)
    out = {}
    for task in tasks:
        part = validation[validation["task"] == task]
        if part.empty:
            raise ValueError(f"{source}: no validation predictions for task {task}")
        try:
            out[task] = rule.choose(part["y_true"].to_numpy(), part["y_prob"].to_numpy(), task)
        except ValueError as exc:
            raise ValueError(f"{source}: task {task}: {exc}") from None
    return out, f"{rule.describe()} ({source})"


# -- thresholds that differ between rows (pooled out-of-fold predictions) ----------------------
#: ``thresholds=PER_ROW``: every prediction row carries its own ``threshold`` column, e.g. the pooled
#: out-of-fold predictions of cross-validation, each scored at the threshold its fold model stores.
PER_ROW = "per row"


def is_per_row(thresholds):
    return isinstance(thresholds, str) and thresholds == PER_ROW


def row_thresholds(part, thresholds, task):
    """The threshold(s) of one task's rows ``part``: a number, or an array aligned with ``part``.

    Parameters
    ----------
    part : pandas.DataFrame
        Prediction rows of ``task``.
    thresholds : float, dict of str -> float, or :data:`PER_ROW`
    task : str
    """
    if is_per_row(thresholds):
        if "threshold" not in part.columns:
            raise ValueError("per-row thresholds need a 'threshold' column in the predictions")
        values = part["threshold"].to_numpy(dtype=float)
        if not np.isfinite(values).all() or ((values < 0) | (values > 1)).any():
            raise ValueError(f"task {task}: every per-row threshold must be a number in [0, 1]")
        return float(values[0]) if values.size and (values == values[0]).all() else values
    return float(thresholds[task]) if isinstance(thresholds, dict) else float(thresholds)


def describe_thresholds(threshold, folds=None):
    """A task's threshold for ``metrics.json``: a number when every row shares one; else one per
    fold (``{"1": 0.41, …}``) when ``folds`` labels the rows, else the sorted distinct values."""
    values = np.atleast_1d(np.asarray(threshold, dtype=float))
    if values.size == 1 or (values == values[0]).all():
        return float(values[0])
    if folds is not None:
        folds = np.asarray(folds)
        out = {}
        for fold in sorted(set(folds.tolist())):
            distinct = np.unique(values[folds == fold])
            if distinct.size != 1:
                break
            out[str(fold)] = float(distinct[0])
        else:
            return out
    return sorted(set(values.tolist()))


def threshold_label(threshold, spec=".4g"):
    """Text of a :func:`describe_thresholds` value: ``0.5``, ``per fold 1: 0.41, 2: 0.38`` or
    ``per row 0.38–0.52``."""
    if isinstance(threshold, dict):
        return "per fold " + ", ".join(f"{k}: {format(v, spec)}" for k, v in threshold.items())
    if isinstance(threshold, (list, tuple)):
        return f"per row {format(min(threshold), spec)}–{format(max(threshold), spec)}"
    return format(float(threshold), spec)

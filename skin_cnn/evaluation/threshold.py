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

DEFAULT_THRESHOLD = 0.5
CHOSEN_METHODS = ("youden", "sensitivity", "specificity")
#: ``--threshold stored``: whatever the evaluated model file stores (0.5 where it stores nothing).
STORED = "stored"


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

    def short(self):
        """``youden (maximum sensitivity + specificity - 1)``, ``sensitivity >= 0.9``, …"""
        if self.method == "youden":
            return "youden (maximum sensitivity + specificity - 1)"
        if self.target is not None:
            return f"{self.method} >= {self.target:g}"
        return self.describe()

    def describe(self):
        if self.method == "fixed":
            return "fixed"
        if self.method == STORED:
            return "stored in the model (fitted on validation predictions when it was trained), else 0.5"
        if self.method == "youden":
            return "youden (maximum sensitivity + specificity - 1 on validation predictions)"
        return f"{self.method} >= {self.target:g} on validation predictions"


def parse_threshold(text):
    """Parse ``--threshold``: a number in [0, 1], ``youden``, ``sens:0.90``, ``spec:0.90`` or ``stored``."""
    if isinstance(text, ThresholdRule):
        return text
    if text is None:
        return ThresholdRule("fixed", DEFAULT_THRESHOLD)
    s = str(text).strip().lower()
    if s == STORED:
        return ThresholdRule(STORED)
    if s == "youden":
        return ThresholdRule("youden")
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
            "--threshold must be a number in [0, 1], 'youden', 'sens:0.90' or 'spec:0.90'; "
            f"got {text!r}"
        ) from None
    if not 0 <= value <= 1:
        raise ValueError(f"--threshold must lie in [0, 1], got {value}")
    return ThresholdRule("fixed", value)


def _operating_points(y_true, y_prob):
    """Candidate thresholds (each distinct score, descending) with their sensitivity and
    specificity under the ``y_prob >= t`` rule."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thr = roc_curve(y_true, y_prob, drop_intermediate=False)
    keep = np.isfinite(thr)  # the first point (t = +inf) predicts nothing positive
    return thr[keep], tpr[keep], 1 - fpr[keep]


def choose_threshold(y_true, y_prob, method="youden", target=0.9):
    """Choose a threshold on *validation* predictions.

    Parameters
    ----------
    y_true, y_prob : arrays of shape (n,)
        Validation labels and probabilities; both classes must be present.
    method : {"youden", "sensitivity", "specificity"}
        * ``youden``: the threshold maximising sensitivity + specificity − 1; among equal
          maxima the highest threshold.
        * ``sensitivity``: the highest threshold whose sensitivity reaches ``target`` (so the
          specificity is the best possible at that sensitivity).
        * ``specificity``: the lowest threshold whose specificity reaches ``target``.
    target : float

    Returns
    -------
    float
        One of the observed scores, so the validation predictions at that threshold are exactly
        the operating point chosen.
    """
    y = np.asarray(y_true)
    if y.size == 0 or y.min() == y.max():
        raise ValueError("choosing a threshold needs validation predictions of both classes")
    thr, sens, spec = _operating_points(y, np.asarray(y_prob, dtype=float))
    if method == "youden":
        j = sens + spec - 1
        return float(thr[int(np.argmax(j))])
    if method == "sensitivity":
        ok = np.flatnonzero(sens >= target - 1e-12)
        return float(thr[ok[0]])  # thresholds descend; the last point has sensitivity 1
    if method == "specificity":
        ok = np.flatnonzero(spec >= target - 1e-12)
        if ok.size == 0:
            # every threshold at or below the highest score calls at least that case positive
            return float(np.nextafter(thr[0], np.inf))
        return float(thr[ok[-1]])
    raise ValueError(
        f"unknown threshold method {method!r}; expected one of {', '.join(CHOSEN_METHODS)}"
    )


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
            out[task] = choose_threshold(
                part["y_true"].to_numpy(),
                part["y_prob"].to_numpy(),
                rule.method,
                rule.target if rule.target is not None else 0.9,
            )
        except ValueError as exc:
            raise ValueError(f"{source}: task {task}: {exc}") from None
    return out, f"{rule.describe()} ({source})"

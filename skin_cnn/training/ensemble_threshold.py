"""The threshold of the cross-validation ensemble, fitted on scores of the kind it will judge.

``ensemble.keras`` answers with the *mean* probability of the k fold models. A mean of several
models' probabilities is pulled towards the middle, so a cut-off fitted on single-model
out-of-fold probabilities does not give the ensemble the sensitivity and specificity it was
chosen for. The ensemble's threshold is therefore fitted on **nested out-of-fold ensemble
scores**: for each outer fold k, the k − 1 other folds train one model per left-out inner fold
(every fold but k and j, for each j ≠ k), and the images of fold k get the mean of those k − 1
models' probabilities. Every image is scored by an average of models that never saw it, as the
ensemble averages models, each trained on a little less data than the ensemble's own.

For the linear heads (``--head linear``, the ``frozen-linear`` recipe) this is cheap: k (k − 1)
logistic regressions on the cached features, each at the inverse regularisation ``C`` fold k's
model chose (on data without fold k). scikit-learn's ``cross_validate`` with a
``PredefinedSplit`` over the outer folds fits the k − 1 inner models. Heads trained by gradient
descent would need k (k − 1) more trainings; their ensemble threshold is fitted on the pooled
single-model out-of-fold predictions and stored marked *not validated for the ensemble*.
"""
from __future__ import annotations

import numpy as np

from skin_cnn.training.linear import on_one_blas_thread

#: Rule label suffix of an ensemble threshold fitted on single-model out-of-fold scores.
UNVALIDATED = "not validated for the ensemble's averaged scores"
#: Where ``skin-cnn cv`` writes the nested out-of-fold ensemble scores.
NESTED_FILE = "oof_ensemble_predictions.csv"


@on_one_blas_thread
def nested_ensemble_probabilities(x, y, folds, c_of_fold, platt_of_fold=None):
    """Nested out-of-fold ensemble probabilities of one task.

    Parameters
    ----------
    x : array (views, n, d)
        Features of the task's images; view 0 is the clean view (the photo as a user sends it),
        the others augmented views used for training only.
    y : array (n,)
        1 for the task's positive disease.
    folds : array (n,)
        Outer fold of every image.
    c_of_fold : mapping fold -> float
        Inverse L2 strength of the fold's own model (chosen without that fold).
    platt_of_fold : mapping fold -> dict, optional
        The Platt map the fold's own model folded into its weights (``calibration`` of
        ``linear_fit.json``), applied to each of its k − 1 inner models' probabilities.

    Returns
    -------
    numpy.ndarray (n,)
        For an image of fold k: the mean probability of the k − 1 logistic regressions trained
        on all folds but k and one other.

    Raises
    ------
    ValueError
        When an inner training part holds one class only (too few images per fold).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import PredefinedSplit, cross_validate
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from skin_cnn.training.linear import apply_platt

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    folds = np.asarray(folds)
    views, n, d = x.shape
    out = np.full(n, np.nan)
    for k in np.unique(folds):
        held, rest = folds == k, np.flatnonzero(folds != k)
        inner = np.unique(folds[rest])
        if inner.size < 2:
            raise ValueError("nested ensemble scores need at least 3 folds")
        for j in inner:
            train = rest[folds[rest] != j]
            if np.unique(y[train]).size < 2:
                raise ValueError(f"the folds other than {k} and {j} hold one class only")
        rows = x[:, rest].reshape(-1, d)  # every view of every image of the other folds
        model = make_pipeline(StandardScaler(), LogisticRegression(C=float(c_of_fold[k]), max_iter=5000))
        fitted = cross_validate(model, rows, np.tile(y[rest], views), cv=PredefinedSplit(np.tile(folds[rest], views)),
                                return_estimator=True, error_score="raise")["estimator"]
        platt = (platt_of_fold or {}).get(k)
        out[held] = np.mean([apply_platt(m.predict_proba(x[0, held])[:, 1], platt) for m in fitted], axis=0)
    return out


def nested_ensemble_predictions(frame, folds, features, fold_dirs, tasks):
    """The nested out-of-fold ensemble scores of every task, as a predictions table plus ``fold``.

    Parameters
    ----------
    frame : pandas.DataFrame
        The cross-validated images (``image_path``, ``diagnosis``, …), readable ones only.
    folds : array (n,)
        Outer fold (1..k) of each row of ``frame``.
    features : array (views, n, d)
        Cached features of each row of ``frame``.
    fold_dirs : sequence of Path
        Fold run folders; each ``linear_fit.json`` gives the fold model's ``C`` per task.
    tasks : sequence of str
    """
    import json
    from pathlib import Path

    from skin_cnn.core.tasks import TASKS
    from skin_cnn.core.predictions import predictions_frame

    c = {k + 1: json.loads((Path(d) / "linear_fit.json").read_text(encoding="utf-8"))["tasks"]
         for k, d in enumerate(fold_dirs)}
    frame = frame.reset_index(drop=True)
    folds = np.asarray(folds)
    probabilities = {}
    for task in tasks:
        labels = frame["diagnosis"].map(TASKS[task].label)
        rows = np.flatnonzero(labels.notna().to_numpy())
        p = np.full(len(frame), np.nan)
        p[rows] = nested_ensemble_probabilities(features[:, rows], labels.iloc[rows].astype(int).to_numpy(),
                                                folds[rows], {k: c[k][task]["C"] for k in c},
                                                {k: c[k][task].get("calibration") for k in c})
        probabilities[task] = p
    table = predictions_frame(frame[["image_path", "patient_id", "diagnosis"]].assign(fold=folds), probabilities,
                              tasks=tasks)
    return table


def operating_point(y_true, y_prob, threshold):
    """Sensitivity and specificity of ``y_prob >= threshold``."""
    y = np.asarray(y_true).astype(bool)
    called = np.asarray(y_prob, dtype=float) >= threshold
    return {"sensitivity": float((called & y).sum() / y.sum()), "specificity": float((~called & ~y).sum() / (~y).sum())}


def ensemble_threshold_entries(rule, scores, source, validated):
    """Fit ``rule`` per task on ``scores`` (predictions table) into stored threshold entries.

    Each entry carries the sensitivity and specificity the threshold gives on the scores it was
    fitted on (``claims``), so anyone holding those scores can check them.

    Parameters
    ----------
    rule : ThresholdRule
    scores : pandas.DataFrame
    source : str
        What the scores are (file name and kind), for the method text.
    validated : bool
        False when the scores are not of the ensemble's kind (single-model out-of-fold
        probabilities): the rule label and method then say so.
    """
    from skin_cnn.evaluation.threshold import fit_thresholds

    tasks = list(dict.fromkeys(scores["task"]))
    thresholds, _ = fit_thresholds(rule, tasks, scores, source)
    label = rule.label()
    method = f"{rule.short()} on the {source}"
    if not validated:
        label, method = f"{label}, {UNVALIDATED}", f"{method}; {UNVALIDATED}"
    out = {}
    for task, value in thresholds.items():
        part = scores[scores["task"] == task]
        claims = operating_point(part["y_true"], part["y_prob"], value)
        out[task] = {"value": float(value), "rule": label, "method": method, "claims": claims}
    return out


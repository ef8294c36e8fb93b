"""The false positives and false negatives the model was most sure of, per task.

Aggregate metrics say how often the model errs, not how; the most confident errors are where a
reader learns most (a mislabelled reference, an image that is not skin, a shortcut). This module
picks them from a predictions table; :mod:`skin_cnn.reporting.gallery` draws them.
"""

from __future__ import annotations

import pandas as pd

from skin_cnn.core.tasks import TASK_NAMES
from skin_cnn.evaluation.threshold import row_thresholds


def failure_cases(predictions, thresholds=0.5, k=4):
    """The ``k`` most confident false positives and false negatives of each task.

    A false positive is a reference-negative image with ``y_prob >= threshold``, most
    confident when ``y_prob`` is highest; a false negative is a reference-positive image below
    the threshold, most confident when ``y_prob`` is lowest.

    Returns
    -------
    pandas.DataFrame
        ``task, kind ("false positive"/"false negative"), rank, image_path, patient_id, y_prob,
        threshold``, tasks in the package's order.
    """
    rows = []
    for task in [t for t in TASK_NAMES if (predictions["task"] == t).any()]:
        part = predictions[predictions["task"] == task]
        part = part.assign(_cut=row_thresholds(part, thresholds, task))
        y, p, th = part["y_true"].astype(int), part["y_prob"].astype(float), part["_cut"]
        fp = part[(y == 0) & (p >= th)].sort_values("y_prob", ascending=False, kind="stable")
        fn = part[(y == 1) & (p < th)].sort_values("y_prob", ascending=True, kind="stable")
        for kind, sel in (("false positive", fp), ("false negative", fn)):
            for rank, (_, r) in enumerate(sel.head(k).iterrows(), 1):
                rows.append({
                    "task": task, "kind": kind, "rank": rank, "image_path": str(r["image_path"]),
                    "patient_id": str(r.get("patient_id", "")), "y_prob": float(r["y_prob"]),
                    "threshold": float(r["_cut"]),
                })
    return pd.DataFrame(rows, columns=["task", "kind", "rank", "image_path", "patient_id",
                                       "y_prob", "threshold"])

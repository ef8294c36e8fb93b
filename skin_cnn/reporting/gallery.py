"""Failure gallery: the false positives and false negatives the model was most sure of.

Aggregate metrics say how often the model errs, not how. The most confident errors — a
negative image scored near 1, a positive near 0 — are where a reader learns most: a mislabelled
reference, an image that is not skin, a look-alike the model cannot tell apart, a shortcut
(ruler, marker, background). CLAIM asks for such a failure analysis. The gallery shows, per
task, the ``k`` most confident false positives and false negatives as thumbnails with their
probability, and beside each its Grad-CAM when the caller supplies one (only the run-folder
form can: Grad-CAM needs the model, which this layer never loads).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def resolve_image(path, base=None):
    """The file of an ``image_path``: as given when it exists, else relative to ``base``."""
    p = Path(path)
    if p.is_file():
        return p
    if base is not None and not p.is_absolute():
        q = Path(os.path.normpath(Path(base) / p))
        if q.is_file():
            return q
    return None


def _thumbnail(path, size):
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((size, size))
            return np.asarray(im)
    except (OSError, ValueError):
        return None


def plot_failure_gallery(cases, path, base=None, cams=None, size=160):
    """Draw the gallery, one row per task and kind; None when no image of any case can be read.

    Parameters
    ----------
    cases : pandas.DataFrame
        From :func:`skin_cnn.evaluation.failures.failure_cases`.
    base : str or Path, optional
        Folder relative image paths are resolved against (the predictions CSV's).
    cams : dict of (image_path, task) -> numpy.ndarray, optional
        Grad-CAM overlays (uint8 RGB) drawn beside the photo.

    Returns
    -------
    (Path or None, int)
        The figure and how many cases had no readable image (shown as such).
    """
    from skin_cnn.core.tasks import task_title
    from skin_cnn.reporting.plots import _figure, _save

    if cases.empty:
        return None, 0
    cams = cams or {}
    keys = list(dict.fromkeys(zip(cases["task"], cases["kind"])))
    k = int(cases["rank"].max())
    per_case = 2 if cams else 1
    thumbs = {i: _thumbnail(f, size) if (f := resolve_image(r["image_path"], base)) else None
              for i, r in cases.iterrows()}
    missing = sum(t is None for t in thumbs.values())
    if missing == len(thumbs) and not cams:
        return None, missing
    fig = _figure(1.7 * k * per_case, 2.0 * len(keys))
    axes = fig.subplots(len(keys), k * per_case, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for row, (task, kind) in enumerate(keys):
        sel = cases[(cases["task"] == task) & (cases["kind"] == kind)]
        for i, r in sel.iterrows():
            col = (int(r["rank"]) - 1) * per_case
            ax = axes[row, col]
            if thumbs[i] is not None:
                ax.imshow(thumbs[i])
            else:
                ax.text(0.5, 0.5, "image not found", ha="center", va="center", fontsize=7)
            name = Path(r["image_path"]).name
            ax.set_title(f"p={r['y_prob']:.3f}\n{name[:24]}", fontsize=6.5)
            cam = cams.get((r["image_path"], task))
            if per_case == 2:
                if cam is not None:
                    axes[row, col + 1].imshow(cam)
                    axes[row, col + 1].set_title("Grad-CAM", fontsize=6.5)
        axes[row, 0].text(-0.08, 0.5, f"{task_title(task)}\n{kind}s", transform=axes[row, 0].transAxes,
                          ha="right", va="center", fontsize=8, rotation=90)
    fig.suptitle("Most confident errors (p: predicted probability of the task's first class)",
                 fontsize=9)
    return _save(fig, path), missing


def plot_pairs(pairs, path, base=None, max_pairs=12, size=150):
    """Thumbnails of the suspected pairs, evaluated image beside training image, one pair a row.

    Returns the figure's path, or None when there is no pair.
    """
    from skin_cnn.reporting.plots import _figure, _save

    if pairs.empty:
        return None
    shown = pairs.head(max_pairs)
    fig = _figure(4.4, 2.0 * len(shown) + 0.5)
    axes = fig.subplots(len(shown), 2, squeeze=False)
    for row, (_, r) in enumerate(shown.iterrows()):
        for col, (key, who) in enumerate((("image_path", "patient_id"), ("train_image_path", "train_patient_id"))):
            ax = axes[row, col]
            ax.axis("off")
            found = resolve_image(r[key], base)
            thumb = _thumbnail(found, size) if found else None
            if thumb is not None:
                ax.imshow(thumb)
            else:
                ax.text(0.5, 0.5, "image not found", ha="center", va="center", fontsize=7)
            label = "evaluated" if col == 0 else "training"
            patient = f", patient {r[who]}" if r[who] else ""
            name = str(r[key]).replace("\\", "/").rsplit("/", 1)[-1]
            ax.set_title(f"{label}{patient}\n{name[:28]}", fontsize=6.5)
        axes[row, 0].text(1.05, -0.06, f"score {r['similarity']:.3f}", transform=axes[row, 0].transAxes,
                          ha="center", va="top", fontsize=7)
    more = f" (first {len(shown)} of {len(pairs)})" if len(pairs) > len(shown) else ""
    fig.suptitle(f"Suspected duplicates of training images{more}", fontsize=9)
    return _save(fig, path)

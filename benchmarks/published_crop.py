"""Reference implementation of the study's hue crop, written the way the study ran it.

One scikit-learn k-means per image on the hue of the 4× reduced photo, then a plain Python loop
over rows and columns from each edge, counting the clusters of each line with ``np.unique``. It
is deliberately unoptimised: ``benchmarks/bench_crop.py`` times it against
:func:`skin_cnn.data.crop.hue_crop_box`, and ``tests/test_crop_agreement.py`` checks that both
give the same boxes. The box convention is the one documented for ``hue_crop_box`` (the
stopping line is kept; a side without a stopping line is not cropped).
"""
from __future__ import annotations

import numpy as np
from matplotlib.colors import rgb_to_hsv
from PIL import Image


def reference_labels(hue, *, estimator="minibatch", seed=0, n_init=3):
    """Cluster hue values into two groups with scikit-learn, as the study did.

    ``estimator="minibatch"`` is the study's ``MiniBatchKMeans``; ``"kmeans"`` is full-batch
    ``KMeans`` (Lloyd) with ``n_init`` restarts, which converges to the exact optimum on 1-D data
    far more reliably than the mini-batch variant. scikit-learn runs single-threaded here: on a
    small machine shared with other work its thread pool costs more than it gains, and the fast
    implementation it is compared with is single-threaded too.
    """
    from sklearn.cluster import KMeans, MiniBatchKMeans
    from threadpoolctl import threadpool_limits

    flat = hue.reshape(-1, 1)
    if np.unique(flat).size < 2:
        return np.zeros(hue.shape, dtype=int)
    if estimator == "minibatch":
        model = MiniBatchKMeans(n_clusters=2, random_state=seed, n_init=n_init)
    elif estimator == "kmeans":
        model = KMeans(n_clusters=2, random_state=seed, n_init=n_init)
    else:
        raise ValueError(f"unknown estimator {estimator!r}")
    with threadpool_limits(limits=1):
        return model.fit(flat).labels_.reshape(hue.shape)


def _line_changes(line, ratio):
    """True when the line's less frequent cluster covers more than ``ratio`` of it."""
    values, counts = np.unique(line, return_counts=True)
    if len(values) < 2:
        return False
    second = sorted(counts, reverse=True)[1]
    return second / len(line) > ratio


def _scan(labels, indices, ratio, rows):
    for i in indices:
        line = labels[i, :] if rows else labels[:, i]
        if _line_changes(line, ratio):
            return i
    return None


def published_crop_box(image, *, estimator="minibatch", seed=0, n_init=3,
                       ratio_bounds=(0.1, 0.3), scan_height=2.3, scan_width=2.1):
    """``(left, top, right, bottom)`` of the study's crop of a uint8 RGB array, loop by loop."""
    height, width = image.shape[:2]
    small = np.asarray(Image.fromarray(image).reduce(4))
    hue = rgb_to_hsv(small / 255.0)[:, :, 0]
    labels = reference_labels(hue, estimator=estimator, seed=seed, n_init=n_init)

    _, counts = np.unique(labels, return_counts=True)
    share = counts.min() / labels.size if len(counts) > 1 else 0.0
    ratio = min(max(share, ratio_bounds[0]), ratio_bounds[1])

    h, w = labels.shape
    n_rows = int(h / scan_height)
    n_cols = int(w / scan_width)
    top = _scan(labels, range(n_rows), ratio, rows=True)
    bottom = _scan(labels, range(h - 1, h - 1 - n_rows, -1), ratio, rows=True)
    left = _scan(labels, range(n_cols), ratio, rows=False)
    right = _scan(labels, range(w - 1, w - 1 - n_cols, -1), ratio, rows=False)

    box_left = 0 if left is None else 4 * left
    box_top = 0 if top is None else 4 * top
    box_right = width if right is None else min(4 * right + 4, width)
    box_bottom = height if bottom is None else min(4 * bottom + 4, height)
    return box_left, box_top, box_right, box_bottom


def box_iou(a, b):
    """Intersection over union of two ``(left, top, right, bottom)`` boxes."""
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 1.0

"""Hue-clustering crop: cut background, clothes and jewellery away from a clinical photo.

The study segmented each photo into two hue clusters (skin and not skin) and scanned inwards
from each edge until a row or column held enough of both clusters, then cropped there
(the study's Methods). The published code ran a mini-batch k-means and a Python loop over lines for
every image; here the same procedure is computed exactly and vectorised:

* in one dimension the optimal two-cluster k-means partition is a threshold on the sorted values,
  found exactly with cumulative sums (no random initialisation, no iterations);
* the per-line cluster counts of all rows and columns are two array sums, and each scan is an
  ``argmax`` over a boolean vector.

Two methods are kept (``method`` in the crop settings):

* ``"study"`` — the faithful one: hue as a number in [0, 1), every pixel clustered. Hue wraps at
  red, and grey, white and black pixels get hue 0 (= red), so on many photos both clusters are
  shades of skin-red and the cut separates skin from skin rather than skin from background.
* ``"circular"`` — hue as an angle: pixels without a meaningful hue (low saturation, very dark or
  very bright) are left out, and the others are split into the two arcs of the hue circle that
  minimise the within-cluster sum of squares of their points ``(cos 2πh, sin 2πh)``
  (:func:`circular_two_means`). The ratio clipping, the line scans and their limits are the
  study's, with the image's ratio and each line's shares taken among the pixels that have a
  hue, so a grey border never stops a scan and does not dilute the lines it crosses.

Only NumPy, Pillow and matplotlib are needed, so the crop runs anywhere an image can be read.
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import numpy as np
from PIL import Image

from skin_cnn.core.io import PathLike
from skin_cnn.core.specs import (CIRCULAR_CROP_PARAMS, CROP_METHODS, Preprocessing, check_scan_limits,
                                 resolve_crop_params)

if TYPE_CHECKING:
    import pandas as pd

#: Columns holding a crop box on a manifest or split frame (full-resolution pixels,
#: right/bottom exclusive).
BOX_COLUMNS = ("crop_left", "crop_top", "crop_right", "crop_bottom")
#: Column naming the crop method that made a row's box (``skin-cnn crop`` writes it beside the box).
CROP_METHOD_COLUMN = "crop_method"
#: The method of a box whose row names none: boxes written before the method was recorded were
#: all made by the study's method, the only one there was.
UNNAMED_BOX_METHOD = "study"


def _validate_image(image):
    """Return ``image`` as a C-contiguous uint8 (H, W, 3) array or raise one clear ValueError."""
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an RGB image of shape (height, width, 3); got shape {array.shape}")
    if array.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGB image (values 0..255); got dtype {array.dtype}")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"image has no pixels (shape {array.shape})")
    return np.ascontiguousarray(array)


def rgb_hue(rgb):
    """HSV hue in [0, 1) of uint8 RGB pixels, as :func:`matplotlib.colors.rgb_to_hsv` defines it.

    Red is 0, green 1/3, blue 2/3. Grey, white and black pixels (no saturation) have hue 0,
    the same as pure red. When two channels tie for the maximum, blue takes precedence over
    green and green over red, as in matplotlib. The hue is computed from the integer channels
    (``(g - b) / (max - min)`` and so on), which is the same value matplotlib computes from
    ``rgb / 255`` up to rounding in the last bit, about ten times faster, and gives exactly
    equal hues to pixels whose channel differences are in the same proportion.
    """
    rgb = np.asarray(rgb)
    if rgb.shape[-1] != 3:
        raise ValueError(f"expected RGB pixels in the last axis; got shape {rgb.shape}")
    # Channel planes first: element-wise maximum of three planes is far faster than a
    # reduction over a length-3 last axis.
    r, g, b = np.moveaxis(rgb, -1, 0).astype(np.int16)
    top = np.maximum(np.maximum(r, g), b)
    delta = (top - np.minimum(np.minimum(r, g), b)).astype(np.float64)
    blue_max = b == top
    green_max = g == top
    numerator = np.where(blue_max, r - g, np.where(green_max, b - r, g - b))
    offset = np.where(blue_max, 4.0, np.where(green_max, 2.0, 0.0))
    grey = delta == 0
    delta[grey] = 1.0
    hue = (offset + numerator / delta) / 6.0
    hue[grey] = 0.0
    hue[hue < 0] += 1.0  # red sector wraps: (g - b) < 0 is just below 1
    return hue


def downscaled_rgb(image, downscale=4):
    """The uint8 RGB image reduced by ``downscale`` in each dimension (block means).

    The reduction is Pillow's ``Image.reduce``: each small pixel is the mean of a
    ``downscale × downscale`` block, rounded to uint8; when a side is not a multiple of
    ``downscale`` the last block is the mean of the pixels that remain, so the small image has
    ``ceil(H / downscale) × ceil(W / downscale)`` pixels.
    """
    image = _validate_image(image)
    if int(downscale) != downscale or downscale < 1:
        raise ValueError(f"downscale must be a positive integer; got {downscale!r}")
    if downscale == 1:
        return image
    return np.asarray(Image.fromarray(image).reduce(int(downscale)))


def downscaled_hue(image, downscale=4):
    """HSV hue (0..1, float64) of the image reduced by ``downscale`` (:func:`downscaled_rgb`).

    Hue is :func:`rgb_hue` (the matplotlib / ``colorsys`` definition; grey pixels have hue 0).
    The hue stays in floating point: quantising it moves cluster boundaries and hence crop edges.
    """
    return rgb_hue(downscaled_rgb(image, downscale))


def two_means_threshold(values):
    """Exact 1-D k-means with two clusters: the threshold splitting ``values`` optimally.

    In one dimension every optimal k-means partition is contiguous in sorted order, so the best
    two-cluster partition is one of the ``n - 1`` cuts between consecutive sorted values. Its
    within-cluster sum of squares is ``Σx² - S₁²/n₁ - S₂²/n₂`` with ``S`` the cluster sums, all
    read off cumulative sums at once. Cuts between equal values are not allowed (k-means gives
    equal values the same label). The global optimum is also a fixed point of Lloyd's
    algorithm, so it is the answer a well-initialised ``sklearn.cluster.KMeans`` reaches.

    Parameters
    ----------
    values : array-like of float
        The 1-D data (e.g. hue of every pixel).

    Returns
    -------
    float or None
        ``t`` such that the two clusters are ``values < t`` and ``values >= t`` (``t`` is the
        smallest value of the upper cluster), or ``None`` when all values are equal and there is
        only one cluster.
    """
    x = np.sort(np.asarray(values, dtype=np.float64).ravel())
    n = x.size
    if n < 2 or x[0] == x[-1]:
        return None
    # Centre the data: the sums of squares then lose no precision to a large common offset.
    csum = np.cumsum(x - x.mean())
    total = csum[-1]
    n_low = np.arange(1, n, dtype=np.float64)  # size of the lower cluster for cut k = 1..n-1
    s_low = csum[:-1]
    # Maximising S₁²/n₁ + S₂²/n₂ is minimising the within-cluster sum of squares.
    score = s_low**2 / n_low + (total - s_low) ** 2 / (n - n_low)
    score[x[1:] == x[:-1]] = -np.inf  # no cut between ties
    k = int(np.argmax(score)) + 1
    return float(x[k])


def rgb_saturation_value(rgb):
    """HSV saturation and value (both 0..1) of uint8 RGB pixels, as matplotlib defines them.

    Value is ``max / 255``; saturation ``(max - min) / max`` (0 for black).
    """
    rgb = np.asarray(rgb)
    if rgb.shape[-1] != 3:
        raise ValueError(f"expected RGB pixels in the last axis; got shape {rgb.shape}")
    r, g, b = np.moveaxis(rgb, -1, 0).astype(np.int16)
    top = np.maximum(np.maximum(r, g), b).astype(np.float64)
    delta = top - np.minimum(np.minimum(r, g), b)
    saturation = np.divide(delta, top, out=np.zeros_like(top), where=top > 0)
    return saturation, top / 255.0


def circular_two_means(hue, bins=720):
    """Two-means of hues on the circle: the arc of one cluster, found by exhaustive search.

    Each hue ``h`` is the point ``(cos 2πh, sin 2πh)``. Two k-means clusters of points on a
    circle are split by a straight line (the bisector of their means), which cuts the circle into
    two arcs, so the optimal partition is two arcs, contiguous in angular order. Hues are
    grouped into ``bins`` equal arcs (0.5° for 720), the exact sums of cos and sin are kept per
    arc, and every pair of cut points between arcs is scored at once from cumulative sums: the
    within-cluster sum of squares is ``n - |S₁|²/n₁ - |S₂|²/n₂`` with ``S`` the vector sums
    (every point has length 1). Only cuts between occupied arcs are scored (a photo occupies a
    few hundred of 720), so the search is about 10⁴–10⁵ candidates. Unlike
    :func:`two_means_threshold` this has no preferred origin: hues 0.97 and 0.03 are neighbours.

    Parameters
    ----------
    hue : array-like of float
        Hues in [0, 1).
    bins : int
        Arcs the circle is divided into; cuts fall only between arcs.

    Returns
    -------
    numpy.ndarray of bool or None
        Same shape as ``hue``: True for the points of the arc that does not pass hue 0 (or, when
        neither does, the one starting at the lower hue), False for the other; None when all
        hues fall into one bin (one cluster).
    """
    hue = np.asarray(hue, dtype=np.float64)
    which = np.minimum((np.mod(hue, 1.0) * bins).astype(np.int64), bins - 1).ravel()
    # Only occupied bins matter (a cut anywhere in a run of empty bins is the same partition):
    # number them 0 .. m-1 in circular order and sum cos and sin per occupied bin.
    occupied, position = np.unique(which, return_inverse=True)
    m = occupied.size
    if m < 2:
        return None
    angle = 2 * np.pi * hue.ravel()
    count = np.bincount(position, minlength=m).astype(np.float64)
    cos = np.bincount(position, weights=np.cos(angle), minlength=m)
    sin = np.bincount(position, weights=np.sin(angle), minlength=m)
    # Every split into two arcs has one arc that does not pass the origin: [i, j) with i < j.
    sums = [np.concatenate([[0.0], np.cumsum(v)]) for v in (count, cos, sin)]
    start, end = np.triu_indices(m + 1, k=1)
    keep = (end - start) < m  # not the whole circle
    start, end = start[keep], end[keep]
    n_in, c_in, s_in = (v[end] - v[start] for v in sums)
    n_out, c_out, s_out = count.sum() - n_in, cos.sum() - c_in, sin.sum() - s_in
    score = (c_in**2 + s_in**2) / n_in + (c_out**2 + s_out**2) / n_out
    best = int(np.argmax(score))
    inside = (position >= start[best]) & (position < end[best])
    return inside.reshape(hue.shape)


def circular_hue_labels(rgb, *, min_saturation, min_value, max_value, bins=720):
    """Cluster of every pixel for the circular crop: 0 or 1, and -1 for a pixel without hue.

    Pixels with saturation below ``min_saturation`` or value outside
    ``[min_value, max_value]`` have no meaningful hue (grey, white, black, clipped highlights)
    and get -1. The rest are split by :func:`circular_two_means` (all 0 when they share one
    hue bin).
    """
    hue = rgb_hue(rgb)
    saturation, value = rgb_saturation_value(rgb)
    has_hue = (saturation >= min_saturation) & (value >= min_value) & (value <= max_value)
    labels = np.where(has_hue, 0, -1)
    if has_hue.sum() >= 2:
        inside = circular_two_means(hue[has_hue], bins=bins)
        if inside is not None:
            labels[has_hue] = inside.astype(np.int64)
    return labels.astype(np.int64)


def cluster_hue(hue, n_clusters=2, *, seed=0):
    """Label each hue value with its k-means cluster (0 .. K-1).

    ``n_clusters=2`` uses the exact threshold of :func:`two_means_threshold` (label 1 for the
    upper cluster). Other values of K fall back to ``sklearn.cluster.KMeans`` (``n_init=4``,
    seeded), which is slower but keeps the parameter usable.
    """
    hue = np.asarray(hue, dtype=np.float64)
    if int(n_clusters) != n_clusters or n_clusters < 2:
        raise ValueError(f"n_clusters must be an integer >= 2; got {n_clusters!r}")
    if n_clusters == 2:
        threshold = two_means_threshold(hue)
        if threshold is None:
            return np.zeros(hue.shape, dtype=np.int64)
        return (hue >= threshold).astype(np.int64)
    from sklearn.cluster import KMeans

    flat = hue.reshape(-1, 1)
    n_distinct = np.unique(flat).size
    k = min(int(n_clusters), n_distinct)
    if k < 2:
        return np.zeros(hue.shape, dtype=np.int64)
    labels = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(flat).labels_
    return labels.reshape(hue.shape).astype(np.int64)


def _line_stops(labels, n_clusters, ratio, axis):
    """Boolean per line: does the line's second most frequent cluster exceed ``ratio`` of it?

    For two clusters that is the line's less frequent cluster. A line holding a single cluster
    has a second count of 0 and never stops a scan. Pixels labelled -1 (no hue, circular method)
    are not part of the line: the share is taken among the line's clustered pixels.
    """
    counts = np.stack([(labels == c).sum(axis=axis) for c in range(n_clusters)], axis=-1)
    length = np.maximum(counts.sum(axis=-1), 1) if (labels < 0).any() else labels.shape[axis]
    if n_clusters == 2:
        second = counts.min(axis=-1)
    else:
        second = np.sort(counts, axis=-1)[:, -2]
    return (second > 0) & (second / length > ratio)


def _first_stop(stops, limit):
    """Index of the first True among ``stops[:limit]``, or None."""
    window = stops[:limit]
    if window.size and window.any():
        return int(np.argmax(window))
    return None


def hue_crop_box(
    image,
    *,
    method="study",
    downscale=4,
    n_clusters=2,
    ratio_bounds=(0.1, 0.3),
    max_scan_height=1 / 2.3,
    max_scan_width=1 / 2.1,
    **circular,
):
    """The study's hue-clustering crop box of an RGB image, in full-resolution pixels.

    Steps (as in the study's Methods):

    1. Reduce the image by ``downscale`` (block means, Pillow ``Image.reduce``) and take the
       HSV hue in floating point (:func:`downscaled_hue`; grey pixels have hue 0).
    2. Cluster the hue into ``n_clusters`` groups by k-means (exact for K = 2,
       :func:`cluster_hue`).
    3. ``ratio`` = share of pixels in the smallest cluster, clipped to ``ratio_bounds``.
    4. Scan rows from the top and from the bottom, columns from the left and from the right. A
       line *stops* the scan when its second most frequent cluster (for K = 2: its less frequent
       cluster) covers strictly more than ``ratio`` of the line; a line with a single cluster
       never stops it. The first stopping line met from a side is that side's edge and is
       **kept** in the crop.
    5. The top and bottom scans each look at the ``floor(h · max_scan_height)`` rows nearest
       their edge, the left and right scans at the ``floor(w · max_scan_width)`` columns nearest
       theirs (``h × w`` is the reduced size). A side whose scan finds no stopping line is not
       cropped.
    6. Scale back: a stopping line with index ``i`` on the reduced grid covers full-resolution
       pixels ``downscale·i .. downscale·(i+1) - 1``; the box starts at ``downscale·i`` on the
       top/left and ends (exclusive) at ``min(downscale·(i+1), H or W)`` on the bottom/right, so
       the whole block of the stopping line is kept.

    Parameters
    ----------
    image : numpy.ndarray or PIL.Image.Image
        ``uint8`` RGB, shape (H, W, 3), as returned by :func:`skin_cnn.data.reading.read_image`.
    method : {"study", "circular"}
        ``"study"`` runs steps 1–2 as above (faithful). ``"circular"`` replaces them with
        :func:`circular_hue_labels` on the reduced image: pixels without a meaningful hue are
        left out and the others are split into two arcs of the hue circle (``n_clusters`` must
        stay 2). Steps 3–6 are the same, with the ratio and each line's shares taken among the
        pixels that have a hue.
    **circular
        The circular method's settings (:data:`~skin_cnn.core.specs.CIRCULAR_CROP_PARAMS`: ``min_saturation``,
        ``min_value``, ``max_value``); an error with the study's method.
    downscale : int
        Reduction factor before clustering (4 in the study).
    n_clusters : int
        K of the k-means (2 in the study; other values use scikit-learn's KMeans).
    ratio_bounds : (float, float)
        Lower and upper clip of the image-level ratio; the lower bound avoids cropping on a few
        stray pixels, the upper one avoids cropping too little when the background is large.
    max_scan_height, max_scan_width : float
        How far into the image, as a fraction of its height or width, each scan may go.

    Returns
    -------
    tuple of int
        ``(left, top, right, bottom)`` with ``0 <= left < right <= W`` and
        ``0 <= top < bottom <= H``; ``image[top:bottom, left:right]`` is the crop.
    """
    image = _validate_image(image)
    settings = resolve_crop_params(dict(circular, method=method))
    lo, hi = check_scan_limits(ratio_bounds, max_scan_height, max_scan_width)
    labels = _hue_labels(image, method, downscale, n_clusters, settings)
    clustered = labels[labels >= 0]  # the circular method leaves pixels without hue out (-1)
    k = int(clustered.max()) + 1 if clustered.size else 1
    shares = np.bincount(clustered, minlength=k) / max(clustered.size, 1)
    ratio = float(np.clip(shares.min() if k > 1 else 0.0, lo, hi))

    h, w = labels.shape
    row_stops = _line_stops(labels, max(k, 2), ratio, axis=1)
    col_stops = _line_stops(labels, max(k, 2), ratio, axis=0)
    n_rows = int(np.floor(h * max_scan_height))
    n_cols = int(np.floor(w * max_scan_width))
    stops = (_first_stop(col_stops, n_cols), _first_stop(row_stops, n_rows),
             _first_stop(col_stops[::-1], n_cols), _first_stop(row_stops[::-1], n_rows))
    return _full_resolution_box(stops, labels.shape, image.shape[:2], int(downscale))


def _hue_labels(image, method, downscale, n_clusters, settings):
    """Steps 1–2 of :func:`hue_crop_box`: the cluster of each pixel of the reduced image
    (-1: no hue, left out by the circular method)."""
    if method == "circular":
        if n_clusters != 2:
            raise ValueError(f"the circular crop splits hue into 2 arcs; got n_clusters={n_clusters!r}")
        return circular_hue_labels(downscaled_rgb(image, downscale),
                                   **{k: settings[k] for k in CIRCULAR_CROP_PARAMS})
    return cluster_hue(downscaled_hue(image, downscale), n_clusters)


def _full_resolution_box(stops, reduced_shape, full_shape, d):
    """Step 6 of :func:`hue_crop_box`: the box ``(left, top, right, bottom)`` in full pixels.

    ``stops`` are the first stopping lines from the left, top, right and bottom (each counted
    from its own side on the reduced grid of shape ``reduced_shape``; None: that side is not
    cropped). The stopping line's whole block of ``d`` full-resolution pixels is kept.
    """
    left, top, right, bottom = stops
    h, w = reduced_shape
    height, width = full_shape
    box_left = 0 if left is None else d * left
    box_top = 0 if top is None else d * top
    box_right = width if right is None else min(d * (w - right), width)
    box_bottom = height if bottom is None else min(d * (h - bottom), height)
    return (int(box_left), int(box_top), int(box_right), int(box_bottom))


def crop_image(image, box):
    """Cut ``box = (left, top, right, bottom)`` (right/bottom exclusive) out of an (H, W, C) array.

    The box is clipped to the image, so a box computed on a slightly different decode of the
    same photo never fails; a box that is empty after clipping is an error.
    """
    array = np.asarray(image)
    if array.ndim < 2:
        raise ValueError(f"expected an image array of shape (height, width[, channels]); got {array.shape}")
    left, top, right, bottom = (int(v) for v in box)
    height, width = array.shape[:2]
    left, right = max(0, left), min(width, right)
    top, bottom = max(0, top), min(height, bottom)
    if right <= left or bottom <= top:
        raise ValueError(f"crop box {tuple(box)} is empty on an image of size {width}×{height}")
    return array[top:bottom, left:right]


def hue_crop(image, **params):
    """The image cropped by :func:`hue_crop_box` (keyword arguments are passed on)."""
    image = _validate_image(image)
    return crop_image(image, hue_crop_box(image, **params))


# ---------------------------------------------------------------------------------------------
# A frame's boxes are used only by the crop that made them
#
# ``skin-cnn crop --method M`` writes the boxes of method M (with its default settings) and names M
# in the ``crop_method`` column. A model that crops another way (another method, or other
# settings) must not cut its photos with them: its inputs would differ from what ``predict``
# gives it on a photo without a box. Such boxes count as absent and the model's own crop is
# computed from the photo instead, which is always possible, since the photo is read anyway.


def _settings_key(params):
    """Crop settings in a comparable form (lists and tuples alike, numbers as floats)."""
    def plain(value):
        if isinstance(value, (list, tuple)):
            return tuple(plain(v) for v in value)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value

    return tuple(sorted((k, plain(v)) for k, v in resolve_crop_params(params).items()))


@functools.lru_cache(maxsize=None)
def _method_key(method):
    return _settings_key({"method": method})


def _empty(value):
    return value is None or (isinstance(value, float) and np.isnan(value)) or not str(value).strip()


def named_box_method(value: Any) -> str:
    """The crop method a row's ``crop_method`` cell names; an empty cell (or none) is the study's."""
    return UNNAMED_BOX_METHOD if _empty(value) else str(value).strip()


def box_method_label(params: Mapping[str, Any] | None = None) -> str:
    """What the ``crop_method`` column says of boxes made with ``params``: the method's name when
    they are its default settings (as ``skin-cnn crop`` uses), else ``"METHOD (other settings)"``,
    which no model's crop takes for its own."""
    params = resolve_crop_params(params)
    method = params["method"]
    return method if _settings_key(params) == _method_key(method) else f"{method} (other settings)"


def box_fits_crop(method: Any, crop_params: Mapping[str, Any]) -> bool:
    """Whether a box made by ``skin-cnn crop --method METHOD`` is the box ``crop_params`` cut.

    ``skin-cnn crop`` uses each method's default settings, so the box fits only a crop of that
    method with those settings. ``method`` is the row's ``crop_method`` cell (empty: the study's).
    """
    method = named_box_method(method)
    return method in CROP_METHODS and _method_key(method) == _settings_key(crop_params)


def _box_present(frame):
    """Rows whose four box cells are all filled (as :func:`~skin_cnn.data.preprocessing.box_from_row` reads them)."""
    present = np.ones(len(frame), dtype=bool)
    for column in BOX_COLUMNS:
        cells = frame[column]
        present &= (cells.notna() & (cells.astype(str).str.strip() != "")).to_numpy()
    return present


def fitting_crop_boxes(frame: pd.DataFrame, preprocessing: Preprocessing, source: str) -> tuple[pd.DataFrame, str]:
    """``frame`` keeping only the crop boxes its model's crop would cut, and the line saying what changed.

    Boxes made by another crop (another method, or a crop with other settings) are emptied, so the
    model's own box is computed from each photo; the boxes kept get their method written into
    :data:`CROP_METHOD_COLUMN` (boxes naming none are the study method's). The line (empty when
    there is nothing to say) names ``source``, how many boxes were recomputed and with what, and
    whether boxes named no method. Nothing changes when the crop is off: boxes are not used then.

    Parameters
    ----------
    frame : pandas.DataFrame
        A manifest or split frame, with or without box columns.
    preprocessing : skin_cnn.core.specs.Preprocessing
        The model's (its ``crop`` and ``crop_params``).
    source : str
        The file the frame came from, for the line.
    """
    if not preprocessing.crop or any(c not in frame.columns for c in BOX_COLUMNS) or not len(frame):
        return frame, ""
    present = _box_present(frame)
    cells = list(frame[CROP_METHOD_COLUMN]) if CROP_METHOD_COLUMN in frame.columns else [None] * len(frame)
    methods = [named_box_method(v) for v in cells]
    unnamed = present & np.array([_empty(v) for v in cells], dtype=bool)
    kept = present & np.array([box_fits_crop(m, preprocessing.crop_params) for m in methods], dtype=bool)
    stale = present & ~kept
    out = frame.copy()
    for column in (*BOX_COLUMNS, CROP_METHOD_COLUMN):
        if column not in out.columns:
            out[column] = None
        out[column] = out[column].astype(object)  # emptied cells stay empty, whole numbers stay whole
        out.loc[~kept, column] = None
    out.loc[kept, CROP_METHOD_COLUMN] = [m for m, keep in zip(methods, kept) if keep]
    parts = []
    if unnamed.any():
        parts.append(f"{int(unnamed.sum())} crop box(es) name no crop method (no {CROP_METHOD_COLUMN}: written "
                     f"before skin-cnn crop recorded it) and are taken as the {UNNAMED_BOX_METHOD} method's")
    if stale.any():
        made = " and ".join(sorted({m for m, s in zip(methods, stale) if s}))
        method = preprocessing.crop_params["method"]
        own = method if box_fits_crop(method, preprocessing.crop_params) else f"{method} (other settings)"
        parts.append(f"{int(stale.sum())} box(es) made by the {made} crop do not fit this model's {own} crop "
                     "and are recomputed with it from the photos")
    return out, (f"{source}: " + "; ".join(parts)) if parts else ""


# ---------------------------------------------------------------------------------------------
# Cropped copies are marked, so that they are never cropped a second time

#: Column of a ``skin-cnn crop --copies`` manifest: the crop method that cut each copy.
CROPPED_COLUMN = "hue_cropped"


def check_not_cropped_twice(frame, crop, source):
    """Refuse to hue-crop photos that already are cropped copies (``crop --copies`` marks them).

    Training with the crop on over cropped copies crops every photo twice, while ``predict`` on a
    raw photo crops it once: the model would learn from inputs it never gets.

    Raises
    ------
    ValueError
        One line naming ``source``, when ``crop`` is on and any row carries :data:`CROPPED_COLUMN`.
    """
    if not crop or CROPPED_COLUMN not in frame.columns:
        return
    values = frame[CROPPED_COLUMN]
    marked = values.notna() & (values.astype(str).str.strip() != "")
    if marked.any():
        raise ValueError(f"{source}: {int(marked.sum())} photo(s) are already hue-cropped copies (column "
                         f"{CROPPED_COLUMN}, from skin-cnn crop --copies); the crop would cut them twice while "
                         "predict crops a raw photo once: train with --no-crop, or on the original photos")


# ---------------------------------------------------------------------------------------------
# Many images: boxes for a whole manifest, cropped copies, a contact sheet


def _box_for_file(task):
    """Worker: ``(box, (width, height), None)`` or ``(None, None, reason)`` for one file."""
    from skin_cnn.data.reading import ImageReadError, read_image

    path, params, copy_to = task
    try:
        image = read_image(path)
        box = hue_crop_box(image, **params)
        if copy_to is not None:
            _save_copy(crop_image(image, box), copy_to)
    except ImageReadError as exc:
        return None, None, exc.reason
    except (OSError, ValueError) as exc:
        return None, None, f"{type(exc).__name__}: {exc}"
    return box, (int(image.shape[1]), int(image.shape[0])), None


def _save_copy(array, path):
    from pathlib import Path

    from skin_cnn.core.io import atomic_path

    path = Path(path)
    options = {"quality": 95} if path.suffix.lower() in (".jpg", ".jpeg") else {}
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format=Image.registered_extensions().get(path.suffix.lower(), "PNG"),
                                    **options)


def compute_crop_boxes(paths: Iterable[PathLike], *, params: Mapping[str, Any] | None = None,
                       copies_to: Iterable[PathLike] | None = None, workers: int = 1,
                       progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hue crop boxes of many image files, with every failure kept and explained.

    Parameters
    ----------
    paths : sequence of str
        Image files.
    params : dict, optional
        Keyword arguments of :func:`hue_crop_box` (default :data:`~skin_cnn.core.specs.DEFAULT_CROP_PARAMS`, the
        study's method; ``{"method": "circular"}`` for hue as a circle).
    copies_to : sequence of str or None, optional
        Where to save each cropped copy (same length as ``paths``); None saves none.
    workers : int
        Processes; 1 computes in this process (about 5 ms per 640 × 480 photo, decoding
        included, so most folders need no more).
    progress : bool
        Show a progress bar.

    Returns
    -------
    boxes : pandas.DataFrame
        One row per readable file: ``image_path``, ``crop_left``, ``crop_top``, ``crop_right``,
        ``crop_bottom``, ``crop_method`` (:func:`box_method_label`: only a model cropping with
        that method's settings uses the box) and the upright image's ``width`` and ``height``.
    errors : pandas.DataFrame
        ``image_path`` and ``reason`` for every file that could not be read.
    """
    import pandas as pd
    from skin_cnn.core.progress import progress_bar

    params = resolve_crop_params(params)
    label = box_method_label(params)
    paths = [str(p) for p in paths]
    copies = list(copies_to) if copies_to is not None else [None] * len(paths)
    if len(copies) != len(paths):
        raise ValueError("copies_to must give one destination per path")
    tasks = [(p, params, c) for p, c in zip(paths, copies)]
    bar = {"total": len(tasks), "desc": "crop boxes", "unit": "img", "disable": not progress}
    if workers and workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=int(workers)) as pool:
            results = list(progress_bar(pool.map(_box_for_file, tasks, chunksize=8), **bar))
    else:
        results = [_box_for_file(t) for t in progress_bar(tasks, **bar)]
    rows, errors = [], []
    for path, (box, size, reason) in zip(paths, results):
        if reason is not None:
            errors.append({"image_path": path, "reason": reason})
        else:
            rows.append(dict(zip(("image_path",) + BOX_COLUMNS + (CROP_METHOD_COLUMN, "width", "height"),
                                 (path, *box, label, *size))))
    boxes = pd.DataFrame(rows, columns=["image_path", *BOX_COLUMNS, CROP_METHOD_COLUMN, "width", "height"])
    return boxes, pd.DataFrame(errors, columns=["image_path", "reason"])


def draw_contact_sheet(items, path, *, columns=4, thumb=3.0):
    """Save a before/after sheet: each photo with its crop box drawn, next to the crop.

    Parameters
    ----------
    items : sequence of (image, box, title)
        ``image`` uint8 RGB, ``box`` ``(left, top, right, bottom)``, ``title`` a short label.
    path : str or Path
        PNG to write.
    columns : int
        Before/after pairs per row.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    from skin_cnn.core.io import atomic_path

    items = list(items)
    if not items:
        raise ValueError("no images for the contact sheet")
    columns = max(1, min(columns, len(items)))
    rows = -(-len(items) // columns)
    fig = Figure(figsize=(2 * columns * thumb, rows * thumb))
    axes = fig.subplots(rows, 2 * columns, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for k, (image, box, title) in enumerate(items):
        before, after = axes[k // columns, 2 * (k % columns)], axes[k // columns, 2 * (k % columns) + 1]
        left, top, right, bottom = box
        before.imshow(image)
        before.add_patch(Rectangle((left - 0.5, top - 0.5), right - left, bottom - top,
                                   fill=False, edgecolor="yellow", linewidth=2))
        before.set_title(title, fontsize=8)
        after.imshow(crop_image(image, box))
        after.set_title(f"crop {right - left}×{bottom - top}", fontsize=8)
    fig.suptitle("Hue crop: original with box (left) and crop (right)", fontsize=11)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    return path

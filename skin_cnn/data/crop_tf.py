"""The hue-clustering crop box in TensorFlow ops, equal to :func:`skin_cnn.data.crop.hue_crop_box`.

An exported model that takes a raw photo has to crop it inside the TensorFlow graph, and its
crop must be the one the model was trained with, box for box. Every step here therefore repeats
the NumPy reference operation for operation, in the same number types and the same order:

* **downscale**: Pillow's ``Image.reduce`` block means, with Pillow's own integer rounding,
  ``((sum + count // 2) * m) >> 24`` with ``m = (uint32)((float)2**32 / (float)(256 * count))``,
  and smaller blocks on the right and bottom edges when a side is not a multiple of the factor;
* **hue**: :func:`~skin_cnn.data.crop.rgb_hue` from the integer channels, in float64;
* **two-means threshold**: :func:`~skin_cnn.data.crop.two_means_threshold` by sort and
  cumulative sums, in float64, with the data centred on a mean summed in NumPy's pairwise order
  (so the mean has the same last bit, and near-tied cuts are broken the same way);
* **line scans**: per-row and per-column cluster counts, the first stopping line from each side.

Only two clusters are supported (the study's choice and the only exact one). The float64 steps
and the tensor lists of the pairwise sum are why the crop is not part of a TFLite export:
TFLite's built-in kernels have neither, and float32 would move cluster boundaries (a float32
two-means changed the partition of 1 of 105 public photos tried).
"""

from __future__ import annotations

import tensorflow as tf

from skin_cnn.core.specs import DEFAULT_CROP_PARAMS, check_scan_limits

#: NumPy's pairwise summation sums blocks of at most this many values with eight accumulators.
_PAIRWISE_BLOCK = 128


def _check_params(downscale, n_clusters, ratio_bounds, max_scan_height, max_scan_width):
    """The parameters as Python numbers; one ValueError for anything the graph cannot do."""
    if int(downscale) != downscale or downscale < 1:
        raise ValueError(f"downscale must be a positive integer; got {downscale!r}")
    if n_clusters != 2:
        raise ValueError(f"the TensorFlow hue crop supports n_clusters=2 only; got {n_clusters!r}")
    lo, hi = check_scan_limits(ratio_bounds, max_scan_height, max_scan_width)
    return int(downscale), lo, hi, float(max_scan_height), float(max_scan_width)


def block_mean_downscale(photo, downscale):
    """Pillow's ``Image.reduce(downscale)`` of a uint8 (H, W, 3) photo, as int32 (h, w, 3).

    Each output pixel is the mean of a ``downscale × downscale`` block, or of the pixels left
    on the right and bottom edges, so the output has ``ceil(H / d) × ceil(W / d)`` pixels.
    Pillow rounds with a fixed-point reciprocal whose multiplier is a float32 quotient
    truncated to an integer; the same arithmetic is done here in int64, so every pixel equals
    Pillow's (a plain rounded mean differs by one now and then, and moves hue clusters).
    """
    d = int(downscale)
    photo = tf.convert_to_tensor(photo, tf.uint8)
    if d == 1:
        return tf.cast(photo, tf.int32)
    shape = tf.shape(photo)
    height, width = shape[0], shape[1]
    h = (height + d - 1) // d
    w = (width + d - 1) // d
    padded = tf.pad(tf.cast(photo, tf.int32), [[0, h * d - height], [0, w * d - width], [0, 0]])
    sums = tf.reduce_sum(tf.reshape(padded, [h, d, w, d, 3]), axis=[1, 3])
    rows = tf.minimum(d, height - tf.range(h) * d)
    cols = tf.minimum(d, width - tf.range(w) * d)
    count = rows[:, None] * cols[None, :]
    multiplier = tf.cast(
        tf.constant(2.0**32, tf.float32) / tf.cast(256 * count, tf.float32), tf.int64
    )
    amend = tf.cast(count // 2, tf.int64)
    value = (tf.cast(sums, tf.int64) + amend[..., None]) * multiplier[..., None]
    return tf.cast(tf.bitwise.right_shift(value, tf.constant(24, tf.int64)), tf.int32)


def rgb_hue(rgb):
    """HSV hue in [0, 1) (float64) of integer RGB pixels, exactly as :func:`skin_cnn.data.crop.rgb_hue`.

    Grey pixels have hue 0; ties for the maximum go to blue, then green, then red.
    """
    rgb = tf.cast(rgb, tf.int32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    top = tf.maximum(tf.maximum(r, g), b)
    delta = tf.cast(top - tf.minimum(tf.minimum(r, g), b), tf.float64)
    blue_max = tf.equal(b, top)
    green_max = tf.equal(g, top)
    numerator = tf.where(blue_max, r - g, tf.where(green_max, b - r, g - b))
    zeros = tf.zeros_like(delta)
    offset = tf.where(blue_max, zeros + 4.0, tf.where(green_max, zeros + 2.0, zeros))
    grey = tf.equal(delta, 0.0)
    delta = tf.where(grey, tf.ones_like(delta), delta)
    hue = (offset + tf.cast(numerator, tf.float64) / delta) / tf.constant(6.0, tf.float64)
    hue = tf.where(grey, zeros, hue)
    return tf.where(hue < 0.0, hue + 1.0, hue)


def _leaf_sums(x, starts, sizes):
    """NumPy's sum of each leaf ``x[start:start + size]`` (size <= 128) of its pairwise tree.

    A leaf of 8 or more values is summed by eight accumulators over blocks of eight, combined
    as ``((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))``, then the last ``size % 8`` values
    are added one by one; a leaf of fewer than 8 values is summed one by one. Padding is zeros,
    and ``a + 0.0 == a``, so leaves of different sizes share one fixed loop.
    """
    n = tf.size(x)
    offsets = tf.range(_PAIRWISE_BLOCK)
    index = starts[:, None] + offsets[None, :]
    inside = offsets[None, :] < sizes[:, None]
    values = tf.where(inside, tf.gather(x, tf.minimum(index, n - 1)), tf.zeros([], x.dtype))
    main = sizes - sizes % 8
    blocks = tf.reshape(values, [-1, _PAIRWISE_BLOCK // 8, 8])
    acc = blocks[:, 0, :]
    for block in range(1, _PAIRWISE_BLOCK // 8):
        acc = tf.where((block * 8 < main)[:, None], acc + blocks[:, block, :], acc)
    total = ((acc[:, 0] + acc[:, 1]) + (acc[:, 2] + acc[:, 3])) + (
        (acc[:, 4] + acc[:, 5]) + (acc[:, 6] + acc[:, 7])
    )
    small = tf.zeros_like(total)
    for j in range(8):
        rest = main + j
        total = tf.where(rest < sizes, total + tf.gather(values, tf.minimum(rest, _PAIRWISE_BLOCK - 1),
                                                         axis=1, batch_dims=1), total)
        if j < 7:
            small = tf.where(j < sizes, small + values[:, j], small)
    return tf.where(sizes < 8, small, total)


def pairwise_sum(x):
    """Sum of a 1-D float tensor in NumPy's pairwise order, so it equals ``numpy.sum`` bit for bit.

    NumPy splits a run of ``n > 128`` values at ``n // 2`` rounded down to a multiple of 8, sums
    each half recursively and adds the two; runs of at most 128 are leaves
    (:func:`_leaf_sums`). The tree is built level by level in a ``tf.while_loop`` (a node that
    is already a leaf passes to the next level unchanged), the leaves are summed at once, and
    the levels are folded back up with segment sums of one or two children
    (``0 + a + b == a + b``).
    """
    x = tf.reshape(tf.convert_to_tensor(x), [-1])
    n = tf.size(x)
    parents = tf.TensorArray(tf.int32, size=0, dynamic_size=True, infer_shape=False,
                             element_shape=tf.TensorShape([None]))

    def split_more(starts, sizes, parents, depth):
        return tf.reduce_any(sizes > _PAIRWISE_BLOCK)

    def split(starts, sizes, parents, depth):
        splits = sizes > _PAIRWISE_BLOCK
        half = sizes // 2
        first = tf.where(splits, half - half % 8, sizes)
        child_starts = tf.stack([starts, starts + first], axis=1)
        child_sizes = tf.stack([first, sizes - first], axis=1)
        keep = tf.reshape(tf.where(tf.reshape(tf.stack([tf.ones_like(splits), splits], axis=1), [-1])), [-1])
        parent = tf.reshape(tf.tile(tf.range(tf.size(sizes))[:, None], [1, 2]), [-1])
        parents = parents.write(depth, tf.gather(parent, keep))
        return (tf.gather(tf.reshape(child_starts, [-1]), keep), tf.gather(tf.reshape(child_sizes, [-1]), keep),
                parents, depth + 1)

    starts, sizes, parents, depth = tf.while_loop(
        split_more, split, [tf.zeros([1], tf.int32), tf.reshape(n, [1]), parents, tf.constant(0)],
        shape_invariants=[tf.TensorShape([None]), tf.TensorShape([None]), None, tf.TensorShape([])],
    )
    sums = _leaf_sums(x, starts, sizes)

    def fold(sums, level):
        parent = parents.read(level - 1)
        return tf.math.unsorted_segment_sum(sums, parent, tf.reduce_max(parent) + 1), level - 1

    sums, _ = tf.while_loop(lambda sums, level: level > 0, fold, [sums, depth],
                            shape_invariants=[tf.TensorShape([None]), tf.TensorShape([])])
    return sums[0]


def two_means_threshold(values):
    """Exact two-cluster 1-D k-means, as :func:`skin_cnn.data.crop.two_means_threshold`.

    Returns
    -------
    threshold : tf.Tensor, float64 scalar
        The smallest value of the upper cluster (the clusters are ``values < t`` and
        ``values >= t``); meaningless when ``found`` is False.
    found : tf.Tensor, bool scalar
        False when all values are equal (one cluster), where the reference returns None.
    """
    x = tf.sort(tf.reshape(tf.cast(values, tf.float64), [-1]))
    n = tf.size(x)
    found = tf.logical_and(n >= 2, x[0] < x[-1])

    def threshold():
        count = tf.cast(n, tf.float64)
        csum = tf.cumsum(x - pairwise_sum(x) / count)
        total = csum[-1]
        n_low = tf.cast(tf.range(1, n), tf.float64)
        s_low = csum[:-1]
        score = s_low * s_low / n_low + (total - s_low) * (total - s_low) / (count - n_low)
        score = tf.where(tf.equal(x[1:], x[:-1]), tf.constant(-float("inf"), tf.float64), score)
        cuts = tf.range(1, n)
        first_best = tf.reduce_min(tf.where(tf.equal(score, tf.reduce_max(score)), cuts, n))
        return x[first_best]

    return tf.cond(found, threshold, lambda: x[0]), found


def _first_stop(stops, limit):
    """(index of the first True among ``stops[:limit]``, whether there is one)."""
    index = tf.range(tf.size(stops))
    window = tf.logical_and(stops, index < limit)
    return tf.reduce_min(tf.where(window, index, tf.size(stops))), tf.reduce_any(window)


def hue_crop_box(
    photo,
    *,
    method=DEFAULT_CROP_PARAMS["method"],
    downscale=DEFAULT_CROP_PARAMS["downscale"],
    n_clusters=DEFAULT_CROP_PARAMS["n_clusters"],
    ratio_bounds=DEFAULT_CROP_PARAMS["ratio_bounds"],
    max_scan_height=DEFAULT_CROP_PARAMS["max_scan_height"],
    max_scan_width=DEFAULT_CROP_PARAMS["max_scan_width"],
):
    """The hue-clustering crop box of a uint8 (H, W, 3) photo tensor, in TensorFlow ops.

    Same parameters, steps and result as :func:`skin_cnn.data.crop.hue_crop_box` (see there);
    the parameters are fixed when the graph is built. Only the study's method exists in
    TensorFlow ops: ``method="circular"`` is a ValueError.

    Returns
    -------
    tf.Tensor
        int32 ``(left, top, right, bottom)``, right and bottom exclusive, in the photo's pixels.
    """
    if method != "study":
        raise ValueError(f"the {method} hue crop has no TensorFlow version (only the study's crop has); "
                         "crop in Python with skin_cnn.data.crop.hue_crop_box")
    d, lo, hi, scan_height, scan_width = _check_params(
        downscale, n_clusters, ratio_bounds, max_scan_height, max_scan_width
    )
    photo = tf.convert_to_tensor(photo, tf.uint8)
    shape = tf.shape(photo)
    height, width = shape[0], shape[1]
    hue = rgb_hue(block_mean_downscale(photo, d))
    threshold, found = two_means_threshold(hue)
    upper = tf.logical_and(found, hue >= threshold)
    h, w = tf.shape(hue)[0], tf.shape(hue)[1]

    n_upper = tf.reduce_sum(tf.cast(upper, tf.int64))
    size = tf.cast(h * w, tf.int64)
    smallest = tf.cast(tf.minimum(n_upper, size - n_upper), tf.float64) / tf.cast(size, tf.float64)
    ratio = tf.minimum(tf.maximum(tf.where(found, smallest, tf.constant(0.0, tf.float64)), lo), hi)

    def stops(axis, length):
        upper_count = tf.reduce_sum(tf.cast(upper, tf.int64), axis=axis)
        second = tf.minimum(upper_count, tf.cast(length, tf.int64) - upper_count)
        share = tf.cast(second, tf.float64) / tf.cast(length, tf.float64)
        return tf.logical_and(second > 0, share > ratio)

    row_stops = stops(1, w)
    col_stops = stops(0, h)
    n_rows = tf.cast(tf.floor(tf.cast(h, tf.float64) * scan_height), tf.int32)
    n_cols = tf.cast(tf.floor(tf.cast(w, tf.float64) * scan_width), tf.int32)

    top, has_top = _first_stop(row_stops, n_rows)
    bottom, has_bottom = _first_stop(tf.reverse(row_stops, [0]), n_rows)
    left, has_left = _first_stop(col_stops, n_cols)
    right, has_right = _first_stop(tf.reverse(col_stops, [0]), n_cols)
    return tf.stack([
        tf.where(has_left, d * left, 0),
        tf.where(has_top, d * top, 0),
        tf.where(has_right, tf.minimum(d * (w - right), width), width),
        tf.where(has_bottom, tf.minimum(d * (h - bottom), height), height),
    ])


__all__ = ["block_mean_downscale", "hue_crop_box", "pairwise_sum", "rgb_hue", "two_means_threshold"]

"""Pixel-level check of suspected re-crops: does one image reappear, shrunk, inside the other?

A re-crop, zoom or re-compressed copy of a photo shares its pixels with that photo: shrunk to the
size its content has in the photo it came from, it lies on that photo almost exactly, wherever it
was cut. Two different photos of one disease do not, however alike their trunk features are. So
the leakage audit's feature score (:mod:`skin_cnn.evaluation.recrop_match`) only proposes
candidates, and this module scores each candidate pair by the **normalised cross-correlation**
(NCC, the Pearson correlation of the overlapping pixels) of small grayscale versions of the two
images: one image is shrunk to each of :data:`FRACTIONS` of the other's side and slid over every
whole-pixel position inside it; the pair's score is the highest correlation found, either image
playing the crop. A crop gives a score near 1 at its own fraction and place, whatever the place
(the feature grid's 16-pixel cells do not matter here); an unrelated image gives a low one.

Both images are band-passed at the scale they are compared at (a 3-pixel box blur minus a
9-pixel one, after shrinking): a smooth gradient of light across two photos does not correlate,
and a half-pixel shift of a crop against the thumbnail's pixels barely changes what is left.
Correlations are computed with numpy's FFT on :data:`THUMB_SIDE`-pixel thumbnails. Nothing here
reads a file or runs a model: the caller gives the images as the model saw them
(:func:`skin_cnn.app.evaluate_run.audit_descriptors`). How the fractions and the threshold were
chosen: ``docs/experiments/leakage-threshold.md``.
"""

from __future__ import annotations

import numpy as np

#: Side, in pixels, of the square grayscale thumbnail each image is compared by.
THUMB_SIDE = 64
#: Fractions of the other image's side at which an image is looked for inside it (1.0: same framing).
FRACTIONS = tuple(float(f) for f in np.round(np.geomspace(0.5, 1.0, 13), 4))
#: Sides, in thumbnail pixels, of the two box blurs whose difference band-passes the thumbnails.
LOW_PASS, HIGH_PASS = 3, 9


def resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` matrix that resamples a line of ``n_in`` pixels to ``n_out`` by area.

    Output pixel ``k`` covers input coordinates ``[k, k + 1) * n_in / n_out``; its value is the
    mean of the input over that interval, each input pixel weighted by how much of it lies
    inside (so shrinking averages and enlarging repeats; every row sums to 1).
    """
    if n_in < 1 or n_out < 1:
        raise ValueError(f"cannot resample {n_in} pixels to {n_out}")
    scale = n_in / n_out
    starts = np.arange(n_out)[:, None] * scale
    edges = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(starts + scale, edges + 1) - np.maximum(starts, edges), 0.0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


def resize(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(..., h, w)`` grayscale images resampled by area to ``size = (rows, cols)``."""
    images = np.asarray(images, dtype=np.float64)
    rows = resize_matrix(images.shape[-2], int(size[0]))
    cols = resize_matrix(images.shape[-1], int(size[1]))
    return rows @ images @ cols.T


def _box_blur(images, side):
    """Mean over a ``side``-pixel square around each pixel (edges repeated)."""
    pad = side // 2
    padded = np.pad(images, [(0, 0)] * (images.ndim - 2) + [(pad, side - 1 - pad)] * 2, mode="edge")
    table = np.zeros(padded.shape[:-2] + (padded.shape[-2] + 1, padded.shape[-1] + 1))
    table[..., 1:, 1:] = padded.cumsum(axis=-2).cumsum(axis=-1)
    h, w = images.shape[-2:]
    total = (table[..., side:side + h, side:side + w] - table[..., :h, side:side + w]
             - table[..., side:side + h, :w] + table[..., :h, :w])
    return total / side**2


def thumbnails(images: np.ndarray, side: int = THUMB_SIDE) -> np.ndarray:
    """Grayscale ``side`` × ``side`` thumbnails of ``(n, h, w, 3)`` RGB images.

    Luma (ITU-R BT.601 weights) shrunk by area; :func:`crop_scores` band-passes them.

    Returns
    -------
    numpy.ndarray of shape (n, side, side), float32
    """
    rgb = np.asarray(images, dtype=np.float64)
    if rgb.ndim != 4 or rgb.shape[-1] != 3:
        raise ValueError(f"expected (n, h, w, 3) RGB images, got shape {rgb.shape}")
    return resize(rgb @ np.array([0.299, 0.587, 0.114]), (side, side)).astype(np.float32)


def band_pass(images: np.ndarray, low: int = LOW_PASS, high: int = HIGH_PASS) -> np.ndarray:
    """``(..., h, w)`` images blurred by a ``low``-pixel box minus their ``high``-pixel box blur.

    Removes the slow gradients of light two unrelated photos share and the pixel-level detail
    that a half-pixel shift of a crop changes; what is left is the shape of the skin's features.
    """
    images = np.asarray(images, dtype=np.float64)
    return _box_blur(images, low) - _box_blur(images, high) if low > 1 else images - _box_blur(images, high)


def ncc_map(template: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Normalised cross-correlation of ``template`` at every position wholly inside ``image``.

    Entry ``(r, c)`` is the Pearson correlation of ``template`` with ``image[r:r+m, c:c+n]``
    (0 where either is constant). Computed with the FFT at the image's size: for positions that
    keep the template inside, circular correlation does not wrap.

    Returns
    -------
    numpy.ndarray of shape (h - m + 1, w - n + 1)
    """
    t, im = np.asarray(template, np.float64), np.asarray(image, np.float64)
    return _ncc(_Templates(t[None], im.shape), _Images(im[None]), np.zeros(1, int), np.zeros(1, int))[0]


class _Images:
    """What the correlation needs of the images searched: spectra and running sums."""

    def __init__(self, images):
        self.shape = images.shape[1:]
        self.spectra = np.fft.rfft2(images)
        self.table = np.zeros((len(images), self.shape[0] + 1, self.shape[1] + 1, 2))
        self.table[:, 1:, 1:, 0] = images.cumsum(axis=1).cumsum(axis=2)
        self.table[:, 1:, 1:, 1] = (images**2).cumsum(axis=1).cumsum(axis=2)

    def window_spread(self, rows, m, n):
        """sqrt(sum of squared deviations) of every m × n window of images ``rows``."""
        t = self.table[rows]
        h, w = self.shape[0] - m + 1, self.shape[1] - n + 1
        sums = t[:, m:m + h, n:n + w] - t[:, :h, n:n + w] - t[:, m:m + h, :w] + t[:, :h, :w]
        return np.sqrt(np.maximum(sums[..., 1] - sums[..., 0] ** 2 / (m * n), 0.0))


class _Templates:
    """Zero-mean, unit-length templates and their spectra, padded to the searched images' size."""

    def __init__(self, templates, image_shape):
        self.size = templates.shape[1:]
        centred = templates - templates.mean(axis=(1, 2), keepdims=True)
        norms = np.sqrt((centred**2).sum(axis=(1, 2), keepdims=True))
        self.unit = np.divide(centred, norms, out=np.zeros_like(centred), where=norms > 1e-9)
        self.spectra = np.conj(np.fft.rfft2(self.unit, s=image_shape))


def _ncc(templates, images, t_rows, i_rows):
    """NCC maps of template ``t_rows[k]`` over image ``i_rows[k]`` for every k: (k, h', w')."""
    m, n = templates.size
    h, w = images.shape
    corr = np.fft.irfft2(templates.spectra[t_rows] * images.spectra[i_rows], s=(h, w))[:, :h - m + 1, :w - n + 1]
    spread = images.window_spread(i_rows, m, n)
    return np.divide(corr, spread, out=np.zeros_like(corr), where=spread > 1e-9)


def _template(shrunk, band):
    """A shrunk image band-passed at its new size (the scale of the image it is looked for in),
    without the margin where the blur saw the repeated edge instead of the photo around it."""
    filtered = band_pass(shrunk, *band)
    margin = band[1] // 2
    if min(filtered.shape[1:]) - 2 * margin < 8:
        return filtered
    return filtered[:, margin:-margin, margin:-margin]


def crop_scores(a: np.ndarray, b: np.ndarray, pairs: np.ndarray, fractions=FRACTIONS,
                band: tuple[int, int] = (LOW_PASS, HIGH_PASS), block: int = 512) -> np.ndarray:
    """Pixel score of each pair ``(i, j)``: thumbnail ``a[i]`` against thumbnail ``b[j]``.

    The highest NCC of ``a[i]`` shrunk to each fraction of ``b[j]``'s side and slid over it, and
    of ``b[j]`` shrunk and slid over ``a[i]`` (either may be the crop of the other).

    Parameters
    ----------
    a, b : arrays of shape (n_a, s, s), (n_b, s, s)
        :func:`thumbnails`.
    pairs : int array of shape (k, 2)
        Rows of ``a`` and ``b`` to compare.
    fractions : sequence of float in (0, 1]
    band : (int, int)
        The box blurs of :func:`band_pass`, applied to each image searched and to each shrunk
        image after shrinking (so both are filtered at one scale).
    block : int
        Pairs per batch of FFTs (memory).

    Returns
    -------
    numpy.ndarray of shape (k,), float32, in [-1, 1]
    """
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    best = np.full(len(pairs), -1.0)
    if not len(pairs):
        return best.astype(np.float32)
    # only the images in a pair are transformed: a large training set costs nothing more
    rows_a, pairs_a = np.unique(pairs[:, 0], return_inverse=True)
    rows_b, pairs_b = np.unique(pairs[:, 1], return_inverse=True)
    a, b = np.asarray(a, np.float64)[rows_a], np.asarray(b, np.float64)[rows_b]
    pairs = np.stack([pairs_a.ravel(), pairs_b.ravel()], axis=1)
    searched = (_Images(band_pass(a, *band)), _Images(band_pass(b, *band)))
    for fraction in fractions:
        for crops, where, (ci, wi) in ((a, 1, (0, 1)), (b, 0, (1, 0))):
            side = (max(2, round(fraction * crops.shape[1])), max(2, round(fraction * crops.shape[2])))
            templates = _Templates(_template(resize(crops, side), band), searched[where].shape)
            for start in range(0, len(pairs), block):
                part = pairs[start:start + block]
                scores = _ncc(templates, searched[where], part[:, ci], part[:, wi]).max(axis=(1, 2))
                np.maximum(best[start:start + block], scores, out=best[start:start + block])
    return np.clip(best, -1.0, 1.0).astype(np.float32)

"""Re-crop-aware matching of trunk feature maps: a crop or zoom of a photo matches the photo.

A whole-image descriptor (the pooled feature map) of a 70% centre crop, enlarged back to the
model's input size, is a different picture to the descriptor of the photo it came from: the crop
shows its lesion 1.4 times larger and without its surroundings. Two changes make them comparable:

* **scale**: the trunk also sees every photo shrunk to 0.7 and 0.5 of its side, so that a crop's
  content appears at the size it has in the photo it was cut from;
* **place**: the full-size feature map of every photo is also pooled over windows the size of a
  shrunk photo's map, at every cell, so that one window covers what a crop shows.

The border cells of a shrunk photo's map are left out of its descriptor (and the windows are that
much smaller): there the trunk saw the zero padding around the crop, where the photo it was cut
from had more skin. A pair ``(a, b)`` scores the highest cosine similarity among: the two whole
photos at full size; ``a`` shrunk against every window of ``b`` of that size; and the same with
the roles swapped (``b`` a crop of ``a``). Descriptors are the generalised mean (p = 3) of the
feature map, scaled to length 1. Everything here is numpy on maps the caller computed with the
evaluated model (:func:`skin_cnn.app.evaluate_run.audit_descriptors`). A crop whose content
sits a fraction of a cell off the map's grid (most centre crops) matches no window well; the
audit therefore checks each evaluated image's best candidates by this score pixel by pixel
(:mod:`skin_cnn.evaluation.pixel_match`). How this was chosen and how well it finds altered
copies: ``docs/experiments/leakage-threshold.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Fractions of the photo's side: the shrunk copies the trunk sees and the windows of the full map.
CROP_FRACTIONS = (0.7, 0.5)
#: Cells between two window positions on the full-size feature map.
WINDOW_STRIDE = 1
#: Cells along each edge of a shrunk photo's map left out of its descriptor (they saw padding).
BORDER = 1
GEM_POWER = 3.0


def unit_rows(x):
    """Vectors along the last axis scaled to length 1 (float32); an all-zero vector stays zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def gem(maps, p=GEM_POWER):
    """Generalised mean over the two spatial axes of ``(n, h, w, d)`` maps (negative values as 0)."""
    cubed = np.maximum(np.asarray(maps, dtype=np.float32), 0.0) ** p
    return cubed.mean(axis=(1, 2)) ** (1.0 / p)


def window_starts(side, size, stride=WINDOW_STRIDE):
    """Start cells of windows of ``size`` cells along a side of ``side`` cells, every ``stride``
    cells and always including the last position, so that the windows reach both edges."""
    size = min(max(int(size), 1), side)
    return sorted(set(range(0, side - size + 1, stride)) | {side - size})


def window_gem(maps, size, stride=WINDOW_STRIDE, p=GEM_POWER):
    """GeM descriptors of windows of ``size = (rows, cols)`` cells at every ``stride`` cells.

    Returns
    -------
    numpy.ndarray of shape (n, windows, d)
    """
    maps = np.maximum(np.asarray(maps, dtype=np.float32), 0.0) ** p
    _, h, w, _ = maps.shape
    rows, cols = min(max(int(size[0]), 1), h), min(max(int(size[1]), 1), w)
    # a summed-area table gives every window's sum with four lookups
    table = np.zeros((maps.shape[0], h + 1, w + 1, maps.shape[3]), np.float64)
    table[:, 1:, 1:] = maps.cumsum(axis=1).cumsum(axis=2)
    out = []
    for r in window_starts(h, rows, stride):
        for c in window_starts(w, cols, stride):
            total = table[:, r + rows, c + cols] - table[:, r, c + cols] - table[:, r + rows, c] + table[:, r, c]
            out.append(np.maximum(total / (rows * cols), 0.0) ** (1.0 / p))
    return np.stack(out, axis=1).astype(np.float32)


def inner(maps, border=BORDER):
    """The maps without ``border`` cells along each edge (all of them when that would leave none)."""
    _, h, w, _ = maps.shape
    if h <= 2 * border or w <= 2 * border:
        return maps
    return maps[:, border:h - border, border:w - border]


@dataclass
class Descriptors:
    """Each image's descriptors (unit rows, float32).

    Attributes
    ----------
    whole : dict of float -> array (n, d)
        The whole feature map pooled, at scale 1.0 and at each of :data:`CROP_FRACTIONS`.
    windows : dict of float -> array (n, w, d)
        Windows of the full-size map covering each fraction of its side.
    thumbs : array (n, s, s), optional
        Each image's grayscale thumbnail for the pixel-level check
        (:func:`skin_cnn.evaluation.pixel_match.thumbnails`); None when not computed.
    """

    whole: dict
    windows: dict
    thumbs: np.ndarray | None = None

    def __len__(self):
        return len(self.whole[1.0])

    def take(self, rows):
        """The descriptors of ``rows`` (indices or a boolean mask)."""
        return Descriptors({s: v[rows] for s, v in self.whole.items()}, {s: v[rows] for s, v in self.windows.items()},
                           None if self.thumbs is None else self.thumbs[rows])

    @staticmethod
    def concatenate(parts, width):
        """One :class:`Descriptors` of several (an empty one of ``width`` features without parts)."""
        fractions = CROP_FRACTIONS if not parts else tuple(s for s in parts[0].whole if s != 1.0)
        if not parts:
            return Descriptors({s: np.zeros((0, width), np.float32) for s in (1.0, *fractions)},
                               {s: np.zeros((0, 1, width), np.float32) for s in fractions})
        thumbs = None if any(p.thumbs is None for p in parts) else np.concatenate([p.thumbs for p in parts])
        return Descriptors({s: np.concatenate([p.whole[s] for p in parts]) for s in parts[0].whole},
                           {s: np.concatenate([p.windows[s] for p in parts]) for s in parts[0].windows}, thumbs)


def describe(maps_by_scale, stride=WINDOW_STRIDE, border=BORDER):
    """:class:`Descriptors` from the feature maps of the same photos at several scales.

    Parameters
    ----------
    maps_by_scale : dict of float -> array (n, h, w, d)
        ``1.0``: the maps of the photos at the model's input size; each other key a fraction of
        that size (the photos shrunk before the trunk). For each fraction, the shrunk maps
        without their ``border`` (:func:`inner`) give the whole-photo descriptor and the full-size
        map is pooled over windows of that inner size.
    """
    full = maps_by_scale[1.0]
    whole, windows = {1.0: unit_rows(gem(full))}, {}
    for fraction, maps in maps_by_scale.items():
        if fraction == 1.0:
            continue
        core = inner(np.asarray(maps), border)
        whole[fraction] = unit_rows(gem(core))
        windows[fraction] = unit_rows(window_gem(full, core.shape[1:3], stride))
    return Descriptors(whole, windows)


def _crop_of(crops, photos, fraction):
    """(n_a, n_b): the best window of each ``photos`` image against each shrunk ``crops`` image."""
    best = np.full((len(crops.whole[1.0]), len(photos.whole[1.0])), -1.0, np.float32)
    shrunk, windows = crops.whole[fraction], photos.windows[fraction]
    for w in range(windows.shape[1]):
        np.maximum(best, shrunk @ windows[:, w].T, out=best)
    return best


def match_scores(a, b, block=256):
    """Re-crop-aware similarity of every image of ``a`` with every image of ``b`` (n_a, n_b).

    The maximum of the whole-photo cosine similarity and, for each crop fraction, of ``a`` as a
    crop of ``b`` and ``b`` as a crop of ``a`` (module docstring). Formed a block of ``a`` at a
    time; symmetric: ``match_scores(a, b) == match_scores(b, a).T``.
    """
    fractions = [s for s in a.windows if s in b.windows]
    out = np.empty((len(a), len(b)), np.float32)
    for start in range(0, len(a), block):
        part = a.take(slice(start, start + block))
        score = part.whole[1.0] @ b.whole[1.0].T
        for fraction in fractions:
            np.maximum(score, _crop_of(part, b, fraction), out=score)
            np.maximum(score, _crop_of(b, part, fraction).T, out=score)
        out[start:start + block] = score
    return np.clip(out, -1.0, 1.0)

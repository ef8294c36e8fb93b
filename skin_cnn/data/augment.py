"""Training-time augmentation: random zoom in and out, flips, rotation and shift, seeded per image.

The study augmented training images with random zoom in or out, horizontal and vertical flips,
rotation and shift. Here every image's transformation is a pure function of
``(seed, key, image index)``: :func:`augmentation_params` draws its numbers with NumPy from
exactly that, and :func:`apply_augmentation` applies them in TensorFlow as one projective
transform per image (``ImageProjectiveTransformV3``, the op Keras' random layers use). Nothing
carries state from one call to the next, so

* a run resumed at epoch ``k`` shows every image exactly as an uninterrupted run does;
* an image's augmentation does not depend on which batch it lands in or on how many workers
  share the batch;
* ``skin-cnn preview RUN --epoch E`` redraws, pixel for pixel, what training fed in epoch ``E``.

The training stream uses the key ``(EPOCH, e)``; the feature cache's stored view ``v`` uses
``(CACHED_VIEW, v)``, so the two never draw the same numbers by accident.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import tensorflow as tf

FILL_MODES = ("reflect", "wrap", "constant", "nearest")
#: First element of the key of an epoch's augmentation and of a cached view's.
EPOCH, CACHED_VIEW = 0, 1
#: Columns of :func:`augmentation_params`.
PARAM_NAMES = ("scale", "angle", "shift_x", "shift_y", "flip_x", "flip_y")


@dataclass
class AugmentConfig:
    """Strengths of the random transformations applied to training images.

    Attributes
    ----------
    zoom : float
        Maximum zoom, both in and out: the sampled region's size is multiplied by a factor
        drawn uniformly from ``[1 - zoom, 1 + zoom]`` (the same for height and width, so skin
        texture is not distorted); above 1 shows more of the photo (zoom out).
    rotation : float
        Maximum rotation as a fraction of a full turn, both directions: 0.1 is up to ±36°.
        Skin photos have no canonical "up".
    translation : float
        Maximum shift as a fraction of height and width, both directions.
    horizontal_flip, vertical_flip : bool
        Mirror left-right and top-bottom, each with probability 1/2.
    fill_mode : {"reflect", "wrap", "constant", "nearest"}
        How pixels uncovered by zoom-out, rotation or shift are filled. ``reflect`` continues
        the skin texture instead of adding black corners.
    """

    zoom: float = 0.2
    rotation: float = 0.1
    translation: float = 0.1
    horizontal_flip: bool = True
    vertical_flip: bool = True
    fill_mode: str = "reflect"

    def __post_init__(self):
        for name in ("zoom", "rotation", "translation"):
            value = float(getattr(self, name))
            if not 0.0 <= value < 1.0:
                raise ValueError(f"augmentation {name} must lie in [0, 1); got {value!r}")
            setattr(self, name, value)
        if self.fill_mode not in FILL_MODES:
            raise ValueError(f"fill_mode must be one of {', '.join(FILL_MODES)}; got {self.fill_mode!r}")
        self.horizontal_flip = bool(self.horizontal_flip)
        self.vertical_flip = bool(self.vertical_flip)

    @property
    def enabled(self):
        """True when at least one transformation is switched on."""
        return bool(self.zoom or self.rotation or self.translation or self.horizontal_flip or self.vertical_flip)

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, values):
        """Build from a dict; a single ``flip`` key sets both flips (the ``skin-cnn train`` option)."""
        values = dict(values or {})
        if "flip" in values:
            flip = bool(values.pop("flip"))
            values.setdefault("horizontal_flip", flip)
            values.setdefault("vertical_flip", flip)
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown augmentation settings {unknown}; expected some of {sorted(known)}")
        return cls(**values)


NO_AUGMENTATION = AugmentConfig(0.0, 0.0, 0.0, False, False)


def augmentation_params(seed, key, indices, config):
    """The transformation of every image in ``indices``, a function of (seed, key, index) only.

    Parameters
    ----------
    seed : int
        The run's seed.
    key : tuple of int
        ``(EPOCH, epoch)`` in the training stream, ``(CACHED_VIEW, view)`` for the feature cache.
    indices : array of int
        Image indices (rows of the prepared training images); repeats draw the same numbers.
    config : AugmentConfig

    Returns
    -------
    numpy.ndarray
        float32 (len(indices), 6): scale, angle (radians), shift x and y (fractions of the
        width and height), flip x and flip y (0 or 1); the identity for switched-off parts.
    """
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    out = np.zeros((len(indices), len(PARAM_NAMES)), dtype=np.float32)
    out[:, 0] = 1.0
    if not config.enabled:
        return out
    base = [int(seed)] + [int(k) for k in key]
    for row, index in enumerate(indices):
        u = np.random.default_rng(base + [int(index)]).random(6)
        out[row] = (1.0 + config.zoom * (2 * u[0] - 1),
                    2 * np.pi * config.rotation * (2 * u[1] - 1),
                    config.translation * (2 * u[2] - 1),
                    config.translation * (2 * u[3] - 1),
                    float(config.horizontal_flip and u[4] < 0.5),
                    float(config.vertical_flip and u[5] < 0.5))
    return out


def apply_augmentation(images, params, fill_mode="reflect"):
    """Transform a float batch ``(B, H, W, C)`` by per-image ``params`` (:func:`augmentation_params`).

    Output pixel ``p`` samples the input at ``c + s·R(angle)·F·(p - c) - shift`` (bilinear), with
    ``c`` the image centre, ``F`` the flips and ``s`` the scale. Identity parameters return the
    batch unchanged, bit for bit; pure flips are exact mirror images.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    params = tf.convert_to_tensor(params, tf.float32)
    height, width = images.shape[1], images.shape[2]
    if height is None or width is None:
        shape = tf.shape(images)
        height, width = shape[1], shape[2]
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
    scale, angle, shift_x, shift_y, flip_x, flip_y = tf.unstack(params, axis=1)
    fx, fy = 1.0 - 2.0 * flip_x, 1.0 - 2.0 * flip_y
    cos, sin = tf.cos(angle), tf.sin(angle)
    a, b = scale * cos * fx, -scale * sin * fy
    c, d = scale * sin * fx, scale * cos * fy
    cx, cy = (w - 1.0) / 2.0, (h - 1.0) / 2.0
    zeros = tf.zeros_like(scale)
    transforms = tf.stack([a, b, cx - a * cx - b * cy - shift_x * w,
                           c, d, cy - c * cx - d * cy - shift_y * h, zeros, zeros], axis=1)
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.stack([height, width]),
        fill_value=0.0, interpolation="BILINEAR", fill_mode=fill_mode.upper())
    return tf.clip_by_value(out, 0.0, 255.0)
